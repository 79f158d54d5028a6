"""Element-wise activations and (log-)softmax, forward and backward.

All keep the input's shape. Softmax is computed stably (the max is subtracted first:
softmax is shift-invariant, so the result is the same and exp never overflows).
"""

from __future__ import annotations

from typing import Any

import numpy as np

from ..backend import as_float
from ._op import Context, Op


def relu_forward(x: Any) -> tuple[np.ndarray, Context]:
    """ReLU: max(0, x). Negative values become 0; positive values stay (not abs!)."""
    x = as_float(x, "relu input")
    return np.maximum(x, x.dtype.type(0)), Context(mask=x > 0)


def relu_backward(grad: np.ndarray, ctx: Context) -> tuple[np.ndarray]:
    """d relu/dx = 1 where x > 0, else 0 (0 at x = 0, as in PyTorch)."""
    return (np.where(ctx.mask, grad, grad.dtype.type(0)),)


relu = Op(relu_forward, relu_backward)


def leaky_relu_forward(x: Any, negative_slope: float = 0.01) -> tuple[np.ndarray, Context]:
    """Leaky ReLU: x for x > 0, negative_slope·x otherwise."""
    if isinstance(negative_slope, bool) or not isinstance(negative_slope, int | float | np.number):
        raise TypeError(f"leaky_relu: negative_slope must be a number, got {negative_slope!r}")
    if not np.isfinite(negative_slope):
        raise ValueError(f"leaky_relu: negative_slope must be a finite number, got {negative_slope!r}")
    x = as_float(x, "leaky_relu input")
    mask = x > 0
    slope = np.where(mask, x.dtype.type(1), x.dtype.type(negative_slope))
    return x * slope, Context(slope=slope)


def leaky_relu_backward(grad: np.ndarray, ctx: Context) -> tuple[np.ndarray]:
    """Slope 1 where x > 0, negative_slope elsewhere."""
    return (grad * ctx.slope,)


leaky_relu = Op(leaky_relu_forward, leaky_relu_backward)


def relu6_forward(x: Any) -> tuple[np.ndarray, Context]:
    """ReLU6: min(max(0, x), 6), the activation of MobileNet and EfficientNet-Lite."""
    x = as_float(x, "relu6 input")
    return np.clip(x, x.dtype.type(0), x.dtype.type(6)), Context(mask=(x > 0) & (x < 6))


def relu6_backward(grad: np.ndarray, ctx: Context) -> tuple[np.ndarray]:
    """Slope 1 where 0 < x < 6, else 0 (0 at both kinks, as in PyTorch)."""
    return (np.where(ctx.mask, grad, grad.dtype.type(0)),)


relu6 = Op(relu6_forward, relu6_backward)


def sigmoid_forward(x: Any) -> tuple[np.ndarray, Context]:
    """σ(x) = 1 / (1 + e^(−x)), squeezing to (0, 1); computed without overflow."""
    x = as_float(x, "sigmoid input")
    e = np.exp(-np.abs(x))
    out = np.where(x >= 0, 1 / (1 + e), e / (1 + e)).astype(x.dtype, copy=False)
    return out, Context(out=out)


def sigmoid_backward(grad: np.ndarray, ctx: Context) -> tuple[np.ndarray]:
    """σ'(x) = σ(x)·(1 − σ(x))."""
    return (grad * ctx.out * (1 - ctx.out),)


sigmoid = Op(sigmoid_forward, sigmoid_backward)


def tanh_forward(x: Any) -> tuple[np.ndarray, Context]:
    """Hyperbolic tangent."""
    out = np.tanh(as_float(x, "tanh input"))
    return out, Context(out=out)


def tanh_backward(grad: np.ndarray, ctx: Context) -> tuple[np.ndarray]:
    """tanh'(x) = 1 − tanh(x)²."""
    return (grad * (1 - ctx.out * ctx.out),)


tanh = Op(tanh_forward, tanh_backward)


def softmax_forward(x: Any, axis: int = -1) -> tuple[np.ndarray, Context]:
    """softmax(z)_i = e^(z_i) / Σ_{j=1..K} e^(z_j) along ``axis``; sums to 1."""
    x = as_float(x, "softmax input")
    e = np.exp(x - x.max(axis=axis, keepdims=True))
    out = e / e.sum(axis=axis, keepdims=True)
    return out, Context(out=out, axis=axis)


def softmax_backward(grad: np.ndarray, ctx: Context) -> tuple[np.ndarray]:
    """dx = y ⊙ (g − Σ g ⊙ y), y = softmax(x)."""
    y = ctx.out
    return (y * (grad - (grad * y).sum(axis=ctx.axis, keepdims=True)),)


softmax = Op(softmax_forward, softmax_backward)


def log_softmax_forward(x: Any, axis: int = -1) -> tuple[np.ndarray, Context]:
    """log softmax(z) = z − max − log Σ e^(z − max) (the stable log-sum-exp)."""
    x = as_float(x, "log_softmax input")
    shifted = x - x.max(axis=axis, keepdims=True)
    out = shifted - np.log(np.exp(shifted).sum(axis=axis, keepdims=True))
    return out, Context(out=out, axis=axis)


def log_softmax_backward(grad: np.ndarray, ctx: Context) -> tuple[np.ndarray]:
    """dx = g − softmax(x)·Σ g."""
    return (grad - np.exp(ctx.out) * grad.sum(axis=ctx.axis, keepdims=True),)


log_softmax = Op(log_softmax_forward, log_softmax_backward)
