"""Normalisation: batch normalisation and local response normalisation (AlexNet's "Norm")."""

from __future__ import annotations

from typing import Any

import numpy as np

from ..backend import as_float
from ._op import Context, Op


def _bn_axes(x: np.ndarray) -> tuple[tuple[int, ...], tuple[int, ...]]:
    if x.ndim == 4:
        return (0, 2, 3), (1, -1, 1, 1)
    if x.ndim == 2:
        return (0,), (1, -1)
    raise ValueError(f"batch_norm expected [N, C, H, W] or [N, C] input, got shape {x.shape}")


def batch_norm_forward(
    x: Any,
    running_mean: np.ndarray | None,
    running_var: np.ndarray | None,
    weight: Any = None,
    bias: Any = None,
    training: bool = True,
    momentum: float = 0.1,
    eps: float = 1e-5,
) -> tuple[np.ndarray, Context]:
    """Batch normalisation per channel: y = (x − μ) / √(σ² + ε) · γ + β.

    x [N, C, H, W] (statistics over N, H, W) or [N, C] (over N). Training uses the
    batch's mean and biased variance, and updates ``running_mean`` / ``running_var``
    in place with ``momentum`` (running = (1 − m)·running + m·batch, the variance
    unbiased), as PyTorch does. Inference (``training=False``) uses the running
    statistics.
    """
    for name, v, ok, expected in (
        ("eps", eps, lambda v: v > 0, "a finite number > 0"),
        ("momentum", momentum, lambda v: 0 <= v <= 1, "a number in [0, 1]"),
    ):
        if isinstance(v, bool) or not isinstance(v, int | float | np.number) or not np.isfinite(v) or not ok(v):
            raise ValueError(f"batch_norm: {name} must be {expected}, got {v!r}")
    if running_var is not None and np.any(np.asarray(running_var) < 0):
        raise ValueError(
            f"batch_norm: running_var must be >= 0 (a variance), got a minimum of {float(np.min(running_var))}"
        )
    x = as_float(x, "batch_norm input")
    axes, shape = _bn_axes(x)
    c = x.shape[1]
    for name, a in (
        ("weight", weight),
        ("bias", bias),
        ("running_mean", running_mean),
        ("running_var", running_var),
    ):
        if a is not None and np.shape(a) != (c,):
            raise ValueError(f"batch_norm: {name} must have shape ({c},), got {np.shape(a)}")
    if training:
        count = x.size // c
        if count < 2:
            raise ValueError(f"batch_norm: training needs more than 1 value per channel, got input shape {x.shape}")
        mean = x.mean(axis=axes)
        xc = x - mean.reshape(shape)
        var = np.mean(xc * xc, axis=axes)
        if running_mean is not None:
            running_mean *= 1 - momentum
            running_mean += momentum * mean
        if running_var is not None:
            running_var *= 1 - momentum
            running_var += momentum * var * (count / (count - 1))
    else:
        if running_mean is None or running_var is None:
            raise ValueError("batch_norm: inference (training=False) needs running_mean and running_var")
        mean, var = running_mean.astype(x.dtype), running_var.astype(x.dtype)
        xc = x - mean.reshape(shape)
    inv_std = (1.0 / np.sqrt(var + eps)).astype(x.dtype)
    xhat = xc * inv_std.reshape(shape)
    out = xhat
    if weight is not None:
        out = out * np.asarray(weight, dtype=x.dtype).reshape(shape)
    if bias is not None:
        out = out + np.asarray(bias, dtype=x.dtype).reshape(shape)
    ctx = Context(
        xhat=xhat,
        inv_std=inv_std,
        weight=weight,
        has_bias=bias is not None,
        training=training,
        axes=axes,
        shape=shape,
    )
    return out, ctx


def batch_norm_backward(grad: np.ndarray, ctx: Context) -> tuple[Any, ...]:
    """Returns (dx, None, None, dweight, dbias).

    Training: dx = γ/√(σ²+ε) · (g − mean(g) − x̂·mean(g·x̂)) (the batch statistics
    depend on x); inference: dx = γ/√(σ²+ε) · g.
    """
    axes, shape = ctx.axes, ctx.shape
    xhat = ctx.xhat
    dweight = (grad * xhat).sum(axis=axes) if ctx.weight is not None else None
    dbias = grad.sum(axis=axes) if ctx.has_bias else None
    scale = ctx.inv_std if ctx.weight is None else ctx.inv_std * np.asarray(ctx.weight, dtype=xhat.dtype)
    if ctx.training:
        gmean = grad.mean(axis=axes).reshape(shape)
        gxmean = (grad * xhat).mean(axis=axes).reshape(shape)
        dx = scale.reshape(shape) * (grad - gmean - xhat * gxmean)
    else:
        dx = grad * scale.reshape(shape)
    return dx, None, None, dweight, dbias


batch_norm = Op(batch_norm_forward, batch_norm_backward)


def _channel_window_sum(a: np.ndarray, before: int, after: int) -> np.ndarray:
    """out[:, c] = Σ a[:, c − before … c + after] (zero outside the channels)."""
    c = a.shape[1]
    padded = np.zeros((a.shape[0], c + before + after, *a.shape[2:]), dtype=a.dtype)
    padded[:, before : before + c] = a
    out = padded[:, 0:c].copy()
    for o in range(1, before + after + 1):
        out += padded[:, o : o + c]
    return out


def local_response_norm_forward(
    x: Any, size: int, alpha: float = 1e-4, beta: float = 0.75, k: float = 1.0
) -> tuple[np.ndarray, Context]:
    """Local response normalisation across channels (AlexNet's "Norm" layer).

    b_c = a_c / (k + α/n · Σ_{c'} a_{c'}²)^β, the sum running over the ``size`` = n
    channels c − ⌊n/2⌋ … c + ⌊(n−1)/2⌋ (missing channels count as zero), exactly
    PyTorch's definition (AlexNet used n=5, α=1e-4, β=0.75, k=2). No parameters.
    x [N, C, ...] → same shape.
    """
    x = as_float(x, "local_response_norm input")
    if x.ndim < 3:
        raise ValueError(f"local_response_norm expected [N, C, H, W] input, got shape {x.shape}")
    if not isinstance(size, int) or size < 1:
        raise ValueError(f"local_response_norm: size must be a positive int, got {size!r}")
    before, after = size // 2, (size - 1) // 2
    s = k + (alpha / size) * _channel_window_sum(x * x, before, after)
    s_pow = s ** (-beta)
    out = x * s_pow
    ctx = Context(x=x, s=s, s_pow=s_pow, before=before, after=after, coef=2 * alpha * beta / size)
    return out, ctx


def local_response_norm_backward(grad: np.ndarray, ctx: Context) -> tuple[np.ndarray]:
    """dx_c = g_c·s_c^(−β) − (2αβ/n)·x_c·Σ_{c' whose window holds c} g_{c'}·x_{c'}·s_{c'}^(−β−1)."""
    t = grad * ctx.x * ctx.s_pow / ctx.s
    back = _channel_window_sum(t, ctx.after, ctx.before)
    return (grad * ctx.s_pow - ctx.coef * ctx.x * back,)


local_response_norm = Op(local_response_norm_forward, local_response_norm_backward)
