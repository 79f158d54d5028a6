"""Element-wise activations and (log-)softmax, forward and backward: the reference.

All keep the input's shape. Softmax is computed stably (the max is subtracted first:
softmax is shift-invariant, so the result is the same and exp never overflows).
Written against the Array API (``xp`` is the input's namespace).
"""

from __future__ import annotations

import math
from typing import Any

from ..backend import array_namespace, as_float, device_of
from ._op import Context, Op


def relu_forward(x: Any) -> tuple[Any, Context]:
    """ReLU: max(0, x). Negative values become 0; positive values stay (not abs!)."""
    x = as_float(x, "relu input")
    return array_namespace(x).maximum(x, 0.0), Context(mask=x > 0)


def relu_backward(grad: Any, ctx: Context) -> tuple[Any]:
    """d relu/dx = 1 where x > 0, else 0 (0 at x = 0, as in PyTorch)."""
    return (array_namespace(grad).where(ctx.mask, grad, 0.0),)


relu = Op(relu_forward, relu_backward)


def leaky_relu_forward(x: Any, negative_slope: float = 0.01) -> tuple[Any, Context]:
    """Leaky ReLU: x for x > 0, negative_slope·x otherwise."""
    if isinstance(negative_slope, bool) or not isinstance(negative_slope, int | float):
        raise TypeError(f"leaky_relu: negative_slope must be a number, got {negative_slope!r}")
    if not math.isfinite(negative_slope):
        raise ValueError(f"leaky_relu: negative_slope must be a finite number, got {negative_slope!r}")
    x = as_float(x, "leaky_relu input")
    xp = array_namespace(x)
    slope = xp.where(x > 0, xp.ones((), dtype=x.dtype, device=device_of(x)), negative_slope)  # dy/dx per cell
    return x * slope, Context(slope=slope)


def leaky_relu_backward(grad: Any, ctx: Context) -> tuple[Any]:
    """Slope 1 where x > 0, negative_slope elsewhere."""
    return (grad * ctx.slope,)


leaky_relu = Op(leaky_relu_forward, leaky_relu_backward)


def relu6_forward(x: Any) -> tuple[Any, Context]:
    """ReLU6: min(max(0, x), 6), the activation of MobileNet and EfficientNet-Lite."""
    x = as_float(x, "relu6 input")
    return array_namespace(x).clip(x, 0.0, 6.0), Context(mask=(x > 0) & (x < 6))


def relu6_backward(grad: Any, ctx: Context) -> tuple[Any]:
    """Slope 1 where 0 < x < 6, else 0 (0 at both kinks, as in PyTorch)."""
    return (array_namespace(grad).where(ctx.mask, grad, 0.0),)


relu6 = Op(relu6_forward, relu6_backward)


def sigmoid_forward(x: Any) -> tuple[Any, Context]:
    """σ(x) = 1 / (1 + e^(−x)), squeezing to (0, 1); computed without overflow (e^(−|x|) ≤ 1)."""
    x = as_float(x, "sigmoid input")
    xp = array_namespace(x)
    e = xp.exp(-xp.abs(x))
    out = xp.where(x >= 0, 1 / (1 + e), e / (1 + e))
    return out, Context(out=out)


def sigmoid_backward(grad: Any, ctx: Context) -> tuple[Any]:
    """σ'(x) = σ(x)·(1 − σ(x))."""
    return (grad * ctx.out * (1 - ctx.out),)


sigmoid = Op(sigmoid_forward, sigmoid_backward)


def tanh_forward(x: Any) -> tuple[Any, Context]:
    """Hyperbolic tangent."""
    x = as_float(x, "tanh input")
    out = array_namespace(x).tanh(x)
    return out, Context(out=out)


def tanh_backward(grad: Any, ctx: Context) -> tuple[Any]:
    """tanh'(x) = 1 − tanh(x)²."""
    return (grad * (1 - ctx.out * ctx.out),)


tanh = Op(tanh_forward, tanh_backward)


def softmax_forward(x: Any, axis: int = -1) -> tuple[Any, Context]:
    """softmax(z)_i = e^(z_i) / Σ_{j=1..K} e^(z_j) along ``axis``; sums to 1."""
    x = as_float(x, "softmax input")
    xp = array_namespace(x)
    e = xp.exp(x - xp.max(x, axis=axis, keepdims=True))
    out = e / xp.sum(e, axis=axis, keepdims=True)
    return out, Context(out=out, axis=axis)


def softmax_backward(grad: Any, ctx: Context) -> tuple[Any]:
    """dx = y ⊙ (g − Σ g ⊙ y), y = softmax(x)."""
    xp, y = array_namespace(grad), ctx.out
    return (y * (grad - xp.sum(grad * y, axis=ctx.axis, keepdims=True)),)


softmax = Op(softmax_forward, softmax_backward)


def log_softmax_forward(x: Any, axis: int = -1) -> tuple[Any, Context]:
    """log softmax(z) = z − max − log Σ e^(z − max) (the stable log-sum-exp)."""
    x = as_float(x, "log_softmax input")
    xp = array_namespace(x)
    shifted = x - xp.max(x, axis=axis, keepdims=True)
    out = shifted - xp.log(xp.sum(xp.exp(shifted), axis=axis, keepdims=True))
    return out, Context(out=out, axis=axis)


def log_softmax_backward(grad: Any, ctx: Context) -> tuple[Any]:
    """dx = g − softmax(x)·Σ g."""
    xp = array_namespace(grad)
    return (grad - xp.exp(ctx.out) * xp.sum(grad, axis=ctx.axis, keepdims=True),)


log_softmax = Op(log_softmax_forward, log_softmax_backward)
