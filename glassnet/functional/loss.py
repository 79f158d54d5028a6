"""Losses on logits, forward and backward. Each returns a 0-d array (or per-sample
values with ``reduction='none'``) and refuses to return a non-finite loss."""

from __future__ import annotations

from typing import Any

import numpy as np

from ..backend import as_float
from ._op import Context, Op

_REDUCTIONS = ("mean", "sum", "none")


class NonFiniteLossError(FloatingPointError):
    """A loss came out NaN or infinite (the message says why, and where)."""


def _reduce(values: np.ndarray, reduction: str, op: str) -> np.ndarray:
    if reduction == "mean":
        return np.asarray(values.mean())
    if reduction == "sum":
        return np.asarray(values.sum())
    if reduction == "none":
        return values
    raise ValueError(f"{op}: reduction must be one of {_REDUCTIONS}, got {reduction!r}")


def _scale(reduction: str, count: int, grad: Any) -> Any:
    g = np.asarray(grad)
    if reduction == "mean":
        return g / count
    return g if reduction == "sum" else g[..., None] if g.ndim == 1 else g


def _check_finite(loss: np.ndarray, op: str, **inputs: np.ndarray) -> None:
    if np.all(np.isfinite(loss)):
        return
    bad = loss if loss.ndim == 0 else loss[~np.isfinite(loss)].flat[0]
    where = []
    for name, a in inputs.items():
        n_nan, n_inf = int(np.isnan(a).sum()), int(np.isinf(a).sum())
        if n_nan or n_inf:
            where.append(f"{name} contain {n_nan} NaN and {n_inf} infinite values")
    detail = "; ".join(where) if where else "the inputs are finite (overflow in the loss itself)"
    raise NonFiniteLossError(f"{op}: the loss is {float(bad)} (expected a finite number): {detail}")


def cross_entropy_forward(
    logits: Any, target: Any, label_smoothing: float = 0.0, reduction: str = "mean"
) -> tuple[np.ndarray, Context]:
    """Cross-entropy from logits [N, K] and integer labels [N] in 0..K−1.

    loss_n = −(1−ε)·log p_n[y_n] − ε·mean_k log p_n[k], with log p = log_softmax(logits)
    computed by the stable log-sum-exp; ε is ``label_smoothing`` (PyTorch's
    definition). Averaged over the batch by default.
    """
    logits = as_float(logits, "cross_entropy logits")
    target = np.asarray(target)
    if logits.ndim != 2:
        raise ValueError(f"cross_entropy expected logits [N, K], got shape {logits.shape}")
    n, k = logits.shape
    if target.shape != (n,):
        raise ValueError(f"cross_entropy expected {n} integer labels (shape ({n},)), got shape {target.shape}")
    if target.dtype.kind not in "iu":
        raise TypeError(f"cross_entropy expected integer class labels, got dtype {target.dtype}")
    if k == 0:
        raise ValueError(f"cross_entropy: logits of shape {logits.shape} have 0 classes; expected at least 1")
    if n == 0 and reduction == "mean":
        raise ValueError("cross_entropy: the batch is empty (0 samples): its mean loss is undefined")
    if n and (target.min() < 0 or target.max() >= k):
        raise ValueError(
            f"cross_entropy: labels must be in [0, {k - 1}], got values in [{target.min()}, {target.max()}]"
        )
    if not 0.0 <= label_smoothing <= 1.0:
        raise ValueError(f"cross_entropy: label_smoothing must be in [0, 1], got {label_smoothing!r}")
    shifted = logits - logits.max(axis=1, keepdims=True)
    logp = shifted - np.log(np.exp(shifted).sum(axis=1, keepdims=True))
    nll = -logp[np.arange(n), target]
    per = (1 - label_smoothing) * nll - label_smoothing * logp.mean(axis=1) if label_smoothing else nll
    loss = _reduce(per, reduction, "cross_entropy")
    _check_finite(loss, "cross_entropy", logits=logits)
    return loss, Context(logp=logp, target=target, eps=label_smoothing, reduction=reduction)


def cross_entropy_backward(grad: Any, ctx: Context) -> tuple[np.ndarray, None]:
    """d loss / d logits = softmax(logits) − q, q = (1−ε)·onehot(y) + ε/K (÷ N for 'mean')."""
    n, k = ctx.logp.shape
    d = np.exp(ctx.logp)
    d[np.arange(n), ctx.target] -= 1 - ctx.eps
    if ctx.eps:
        d -= ctx.eps / k
    return (d * _scale(ctx.reduction, n, grad)).astype(ctx.logp.dtype, copy=False), None


cross_entropy = Op(cross_entropy_forward, cross_entropy_backward, nondifferentiable=("target",))


def binary_cross_entropy_with_logits_forward(
    logits: Any, target: Any, reduction: str = "mean"
) -> tuple[np.ndarray, Context]:
    """Binary cross-entropy on logits z with targets y in [0, 1] (same shape).

    loss = −y·log σ(z) − (1−y)·log(1 − σ(z)) = max(z, 0) − z·y + log(1 + e^(−|z|)),
    the stable form. P(class 1) = σ(z), P(class 0) = σ(−z).
    """
    logits = as_float(logits, "binary_cross_entropy logits")
    target = np.asarray(target, dtype=logits.dtype)
    if target.shape != logits.shape:
        raise ValueError(
            f"binary_cross_entropy_with_logits: target shape {target.shape} != logits shape {logits.shape}"
        )
    outside = target[(target < 0) | (target > 1)]  # NaN and infinity are named by the finiteness check below
    if outside.size:
        raise ValueError(
            f"binary_cross_entropy_with_logits: targets must be probabilities in [0, 1], got {outside.size} "
            f"value(s) outside, e.g. {float(outside.flat[0])}"
        )
    per = np.maximum(logits, 0) - logits * target + np.log1p(np.exp(-np.abs(logits)))
    loss = _reduce(per, reduction, "binary_cross_entropy_with_logits")
    _check_finite(loss, "binary_cross_entropy_with_logits", logits=logits, targets=target)
    return loss, Context(logits=logits, target=target, reduction=reduction)


def binary_cross_entropy_with_logits_backward(grad: Any, ctx: Context) -> tuple[np.ndarray, np.ndarray]:
    """d/dz = σ(z) − y;  d/dy = −z (÷ count for 'mean')."""
    z = ctx.logits
    e = np.exp(-np.abs(z))
    sig = np.where(z >= 0, 1 / (1 + e), e / (1 + e))
    g = np.asarray(grad) / z.size if ctx.reduction == "mean" else np.asarray(grad)
    return ((sig - ctx.target) * g).astype(z.dtype, copy=False), (-z * g).astype(z.dtype, copy=False)


binary_cross_entropy_with_logits = Op(
    binary_cross_entropy_with_logits_forward, binary_cross_entropy_with_logits_backward
)


def mse_loss_forward(pred: Any, target: Any, reduction: str = "mean") -> tuple[np.ndarray, Context]:
    """Mean squared error: mean((pred − target)²) over all elements."""
    pred = as_float(pred, "mse_loss input")
    target = np.asarray(target, dtype=pred.dtype)
    if target.shape != pred.shape:
        raise ValueError(f"mse_loss: target shape {target.shape} != input shape {pred.shape}")
    diff = pred - target
    loss = _reduce(diff * diff, reduction, "mse_loss")
    _check_finite(loss, "mse_loss", input=pred, target=target)
    return loss, Context(diff=diff, reduction=reduction)


def mse_loss_backward(grad: Any, ctx: Context) -> tuple[np.ndarray, np.ndarray]:
    """d/dpred = 2·(pred − target) (÷ count for 'mean'); d/dtarget is its negative."""
    g = np.asarray(grad) / ctx.diff.size if ctx.reduction == "mean" else np.asarray(grad)
    d = (2 * ctx.diff * g).astype(ctx.diff.dtype, copy=False)
    return d, -d


mse_loss = Op(mse_loss_forward, mse_loss_backward)
