"""Losses on logits, forward and backward: the reference.

Each returns a 0-d array (or per-sample values with ``reduction='none'``) and refuses
to return a non-finite loss. Written against the Array API (``xp`` is the logits'
namespace); the finiteness check reads one number back to the host.
"""

from __future__ import annotations

import math
from typing import Any

import numpy as np

from ..backend import array_namespace, as_float, as_grad, asarray_like, device_of, dtype_name, is_numpy
from ._args import shape_of
from ._op import Context, Meta, Op

_REDUCTIONS = ("mean", "sum", "none")


class NonFiniteLossError(FloatingPointError):
    """A loss came out NaN or infinite (the message says why, and where)."""


def _check_reduction(reduction: str, op: str) -> None:
    if reduction not in _REDUCTIONS:
        raise ValueError(f"{op}: reduction must be one of {_REDUCTIONS}, got {reduction!r}")


def _reduce(values: Any, reduction: str) -> Any:
    """mean or sum of the per-element losses as a 0-d array; 'none' keeps them."""
    xp = array_namespace(values)
    if reduction == "none":
        return values
    total = xp.mean(values) if reduction == "mean" else xp.sum(values)
    return xp.asarray(total, dtype=values.dtype, device=device_of(values))


def _scale(reduction: str, count: int, grad: Any, dtype: Any) -> Any:
    """The upstream gradient of the loss, shaped to multiply the per-element gradients."""
    g = as_grad(grad, dtype)
    if reduction == "mean":
        return g / count
    return g if reduction == "sum" or g.ndim != 1 else array_namespace(g).reshape(g, (-1, 1))


def _check_finite(loss: Any, op: str, **inputs: Any) -> None:
    xp = array_namespace(loss)
    if bool(xp.all(xp.isfinite(loss))):
        return
    flat = xp.reshape(loss, (-1,))
    bad = flat[int(xp.argmax(xp.astype(~xp.isfinite(flat), xp.int8)))]  # the first non-finite value
    where = []
    for name, a in inputs.items():
        n_nan, n_inf = int(xp.sum(xp.astype(xp.isnan(a), xp.int64))), int(xp.sum(xp.astype(xp.isinf(a), xp.int64)))
        if n_nan or n_inf:
            where.append(f"{name} contain {n_nan} NaN and {n_inf} infinite values")
    detail = "; ".join(where) if where else "the inputs are finite (overflow in the loss itself)"
    raise NonFiniteLossError(f"{op}: the loss is {float(bad)} (expected a finite number): {detail}")


def _check_labels(logits: Any, target: Any) -> Any:
    """Integer labels [N] in 0..K−1 for logits [N, K], as an array beside the logits."""
    if logits.ndim != 2:
        raise ValueError(f"cross_entropy expected logits [N, K], got shape {tuple(logits.shape)}")
    n, k = logits.shape
    if not hasattr(target, "shape"):  # a list of labels: an array beside the logits
        target = (
            np.asarray(target)
            if is_numpy(logits)
            else array_namespace(logits).asarray(target, device=device_of(logits))
        )
    if shape_of(target) != (n,):
        raise ValueError(f"cross_entropy expected {n} integer labels (shape ({n},)), got shape {shape_of(target)}")
    if not dtype_name(target.dtype).startswith(("int", "uint")):
        raise TypeError(f"cross_entropy expected integer class labels, got dtype {dtype_name(target.dtype)}")
    if k == 0:
        raise ValueError(f"cross_entropy: logits of shape {tuple(logits.shape)} have 0 classes; expected at least 1")
    xp = array_namespace(target)
    low, high = (int(xp.min(target)), int(xp.max(target))) if n else (0, 0)
    if low < 0 or high >= k:
        raise ValueError(f"cross_entropy: labels must be in [0, {k - 1}], got values in [{low}, {high}]")
    return target


def cross_entropy_forward(
    logits: Any, target: Any, label_smoothing: float = 0.0, reduction: str = "mean"
) -> tuple[Any, Context]:
    """Cross-entropy from logits [N, K] and integer labels [N] in 0..K−1.

    loss_n = −(1−ε)·log p_n[y_n] − ε·mean_k log p_n[k], with log p = log_softmax(logits)
    computed by the stable log-sum-exp; ε is ``label_smoothing`` (PyTorch's
    definition). Averaged over the batch by default.
    """
    logits = as_float(logits, "cross_entropy logits")
    target = _check_labels(logits, target)
    if logits.shape[0] == 0 and reduction == "mean":
        raise ValueError("cross_entropy: the batch is empty (0 samples): its mean loss is undefined")
    if not 0.0 <= label_smoothing <= 1.0:
        raise ValueError(f"cross_entropy: label_smoothing must be in [0, 1], got {label_smoothing!r}")
    _check_reduction(reduction, "cross_entropy")
    xp, (n, k) = array_namespace(logits), logits.shape
    shifted = logits - xp.max(logits, axis=1, keepdims=True)
    logp = shifted - xp.log(xp.sum(xp.exp(shifted), axis=1, keepdims=True))
    onehot = xp.reshape(target, (n, 1)) == xp.reshape(xp.arange(k, device=device_of(logits)), (1, k))
    nll = -xp.sum(xp.where(onehot, logp, 0.0), axis=1)  # −log p_n[y_n]
    per = (1 - label_smoothing) * nll - label_smoothing * xp.mean(logp, axis=1) if label_smoothing else nll
    loss = _reduce(per, reduction)
    _check_finite(loss, "cross_entropy", logits=logits)
    return loss, Context(logp=logp, onehot=onehot, eps=label_smoothing, reduction=reduction)


def cross_entropy_backward(grad: Any, ctx: Context) -> tuple[Any, None]:
    """d loss / d logits = softmax(logits) − q, q = (1−ε)·onehot(y) + ε/K (÷ N for 'mean')."""
    xp, (n, k) = array_namespace(ctx.logp), ctx.logp.shape
    q = xp.astype(ctx.onehot, ctx.logp.dtype) * (1 - ctx.eps) + ctx.eps / k if ctx.eps else ctx.onehot
    d = xp.exp(ctx.logp) - xp.astype(q, ctx.logp.dtype)
    return d * _scale(ctx.reduction, n, grad, ctx.logp.dtype), None


def _ce_meta(logits: Any, target: Any, label_smoothing: float = 0.0, reduction: str = "mean") -> Meta:
    _check_reduction(reduction, "cross_entropy")
    return Meta(tuple(logits.shape[:1]) if reduction == "none" else (), window="whole")


cross_entropy = Op(cross_entropy_forward, cross_entropy_backward, meta=_ce_meta, nondifferentiable=("target",))


def _same_shape(op: str, what: str, target: Any, x: Any) -> Any:
    target = asarray_like(target, x)
    if tuple(target.shape) != tuple(x.shape):
        raise ValueError(f"{op}: target shape {tuple(target.shape)} != {what} shape {tuple(x.shape)}")
    return target


def binary_cross_entropy_with_logits_forward(logits: Any, target: Any, reduction: str = "mean") -> tuple[Any, Context]:
    """Binary cross-entropy on logits z with targets y in [0, 1] (same shape).

    loss = −y·log σ(z) − (1−y)·log(1 − σ(z)) = max(z, 0) − z·y + log(1 + e^(−|z|)),
    the stable form. P(class 1) = σ(z), P(class 0) = σ(−z).
    """
    logits = as_float(logits, "binary_cross_entropy logits")
    target = _same_shape("binary_cross_entropy_with_logits", "logits", target, logits)
    xp = array_namespace(logits)
    bad = (target < 0) | (target > 1)  # NaN and infinity are named by the finiteness check below
    outside = int(xp.sum(xp.astype(bad, xp.int64)))
    if outside:
        example = float(xp.max(xp.where(bad, target, -xp.inf))) if bool(xp.any(target > 1)) else float(xp.min(target))
        raise ValueError(
            f"binary_cross_entropy_with_logits: targets must be probabilities in [0, 1], got {outside} value(s) "
            f"outside, e.g. {example}"
        )
    _check_reduction(reduction, "binary_cross_entropy_with_logits")
    xp = array_namespace(logits)
    per = xp.maximum(logits, 0.0) - logits * target + xp.log1p(xp.exp(-xp.abs(logits)))
    loss = _reduce(per, reduction)
    _check_finite(loss, "binary_cross_entropy_with_logits", logits=logits, targets=target)
    return loss, Context(logits=logits, target=target, reduction=reduction)


def binary_cross_entropy_with_logits_backward(grad: Any, ctx: Context) -> tuple[Any, Any]:
    """d/dz = σ(z) − y;  d/dy = −z (÷ count for 'mean')."""
    xp, z = array_namespace(ctx.logits), ctx.logits
    e = xp.exp(-xp.abs(z))
    sig = xp.where(z >= 0, 1 / (1 + e), e / (1 + e))
    g = as_grad(grad, z.dtype)
    g = g / math.prod(z.shape) if ctx.reduction == "mean" else g
    return (sig - ctx.target) * g, -z * g


def _elementwise_loss_meta(x: Any, target: Any, reduction: str = "mean") -> Meta:
    return Meta(tuple(x.shape) if reduction == "none" else (), window="whole")


binary_cross_entropy_with_logits = Op(
    binary_cross_entropy_with_logits_forward, binary_cross_entropy_with_logits_backward, meta=_elementwise_loss_meta
)


def mse_loss_forward(pred: Any, target: Any, reduction: str = "mean") -> tuple[Any, Context]:
    """Mean squared error: mean((pred − target)²) over all elements."""
    pred = as_float(pred, "mse_loss input")
    target = _same_shape("mse_loss", "input", target, pred)
    _check_reduction(reduction, "mse_loss")
    diff = pred - target
    loss = _reduce(diff * diff, reduction)
    _check_finite(loss, "mse_loss", input=pred, target=target)
    return loss, Context(diff=diff, reduction=reduction)


def mse_loss_backward(grad: Any, ctx: Context) -> tuple[Any, Any]:
    """d/dpred = 2·(pred − target) (÷ count for 'mean'); d/dtarget is its negative."""
    g = as_grad(grad, ctx.diff.dtype)
    g = g / math.prod(ctx.diff.shape) if ctx.reduction == "mean" else g
    d = 2 * ctx.diff * g
    return d, -d


mse_loss = Op(mse_loss_forward, mse_loss_backward, meta=_elementwise_loss_meta)
