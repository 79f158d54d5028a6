"""Normalisation: batch normalisation (alone, or followed by a residual addition and ReLU in one op)
and local response normalisation (AlexNet's "Norm").

The reference, written against the Array API (``xp`` is the input's namespace).
"""

from __future__ import annotations

import math
from typing import Any

from ..backend import array_namespace, as_float, asarray_like, device_of
from ._args import shape_of
from ._op import Context, Op
from .activation import relu, relu_forward


def _bn_check(x: Any, training: bool, **per_channel: Any) -> tuple[tuple[int, ...], tuple[int, ...]]:
    """Validate batch_norm's arguments; the reduced axes and the per-channel broadcast shape."""
    if x.ndim not in (2, 4):
        raise ValueError(f"batch_norm expected [N, C, H, W] or [N, C] input, got shape {tuple(x.shape)}")
    c = x.shape[1]
    for name, a in per_channel.items():
        if a is not None and shape_of(a) != (c,):
            raise ValueError(f"batch_norm: {name} must have shape ({c},), got {shape_of(a)}")
    if training and math.prod(x.shape) // c < 2:
        raise ValueError(f"batch_norm: training needs more than 1 value per channel, got input shape {tuple(x.shape)}")
    if not training and (per_channel["running_mean"] is None or per_channel["running_var"] is None):
        raise ValueError("batch_norm: inference (training=False) needs running_mean and running_var")
    return ((0, 2, 3), (1, -1, 1, 1)) if x.ndim == 4 else ((0,), (1, -1))


def batch_norm_arguments(
    x: Any, running_mean: Any, running_var: Any, weight: Any, bias: Any, training: bool, momentum: Any, eps: Any
) -> tuple[Any, tuple[int, ...], tuple[int, ...]]:
    """Check batch_norm's arguments (shared by the fast kernel): ``(x as float, axes, shape)``."""
    for name, v, ok, expected in (
        ("eps", eps, lambda v: v > 0, "a finite number > 0"),
        ("momentum", momentum, lambda v: 0 <= v <= 1, "a number in [0, 1]"),
    ):
        if isinstance(v, bool) or not isinstance(v, int | float) or not math.isfinite(v) or not ok(v):
            raise ValueError(f"batch_norm: {name} must be {expected}, got {v!r}")
    if running_var is not None:
        low = float(array_namespace(running_var).min(running_var))
        if low < 0:
            raise ValueError(f"batch_norm: running_var must be >= 0 (a variance), got a minimum of {low}")
    x = as_float(x, "batch_norm input")
    axes, shape = _bn_check(x, training, weight=weight, bias=bias, running_mean=running_mean, running_var=running_var)
    return x, axes, shape


def batch_norm_forward(
    x: Any,
    running_mean: Any,
    running_var: Any,
    weight: Any = None,
    bias: Any = None,
    training: bool = True,
    momentum: float = 0.1,
    eps: float = 1e-5,
) -> tuple[Any, Context]:
    """Batch normalisation per channel: y = (x − μ) / √(σ² + ε) · γ + β.

    x [N, C, H, W] (statistics over N, H, W) or [N, C] (over N). Training uses the
    batch's mean and biased variance, and updates ``running_mean`` / ``running_var``
    in place with ``momentum`` (running = (1 − m)·running + m·batch, the variance
    unbiased), as PyTorch does. Inference (``training=False``) uses the running
    statistics.
    """
    x, axes, shape = batch_norm_arguments(x, running_mean, running_var, weight, bias, training, momentum, eps)
    xp = array_namespace(x)
    if training:
        count = math.prod(x.shape) // x.shape[1]
        mean = xp.mean(x, axis=axes)
        xc = x - xp.reshape(mean, shape)
        var = xp.mean(xc * xc, axis=axes)
        if running_mean is not None:
            running_mean *= 1 - momentum
            running_mean += momentum * mean
        if running_var is not None:
            running_var *= 1 - momentum
            running_var += momentum * var * (count / (count - 1))
    else:
        mean, var = asarray_like(running_mean, x), asarray_like(running_var, x)
        xc = x - xp.reshape(mean, shape)
    inv_std = 1.0 / xp.sqrt(var + eps)
    xhat = xc * xp.reshape(inv_std, shape)
    out = xhat
    if weight is not None:
        out = out * xp.reshape(asarray_like(weight, x), shape)
    if bias is not None:
        out = out + xp.reshape(asarray_like(bias, x), shape)
    ctx = Context(xhat=xhat, inv_std=inv_std, weight=weight, has_bias=bias is not None, training=training)
    ctx.update(axes=axes, shape=shape)
    return out, ctx


def batch_norm_backward(grad: Any, ctx: Context) -> tuple[Any, ...]:
    """Returns (dx, None, None, dweight, dbias).

    Training: dx = γ/√(σ²+ε) · (g − mean(g) − x̂·mean(g·x̂)) (the batch statistics
    depend on x); inference: dx = γ/√(σ²+ε) · g.
    """
    xp, axes, shape, xhat = array_namespace(grad), ctx.axes, ctx.shape, ctx.xhat
    dweight = xp.sum(grad * xhat, axis=axes) if ctx.weight is not None else None
    dbias = xp.sum(grad, axis=axes) if ctx.has_bias else None
    scale = ctx.inv_std if ctx.weight is None else ctx.inv_std * asarray_like(ctx.weight, xhat)
    if ctx.training:
        gmean = xp.reshape(xp.mean(grad, axis=axes), shape)
        gxmean = xp.reshape(xp.mean(grad * xhat, axis=axes), shape)
        dx = xp.reshape(scale, shape) * (grad - gmean - xhat * gxmean)
    else:
        dx = grad * xp.reshape(scale, shape)
    return dx, None, None, dweight, dbias


batch_norm = Op(batch_norm_forward, batch_norm_backward, nondifferentiable=("running_mean", "running_var"))


def residual_argument(x: Any, residual: Any) -> Any:
    """``residual`` as a float array of ``x``'s shape (or None): batch_norm_relu's check, shared by the fast kernel."""
    if residual is None:
        return None
    residual = as_float(residual, "batch_norm_relu residual")
    if shape_of(residual) != shape_of(x):
        raise ValueError(
            f"batch_norm_relu: residual must have the input's shape {shape_of(x)}, got {shape_of(residual)}"
        )
    return residual


def batch_norm_relu_forward(
    x: Any,
    running_mean: Any,
    running_var: Any,
    weight: Any = None,
    bias: Any = None,
    training: bool = True,
    momentum: float = 0.1,
    eps: float = 1e-5,
    residual: Any = None,
) -> tuple[Any, Context]:
    """relu(batch_norm(x) + residual): batch norm, the shortcut's addition and ReLU as one op.

    The definition is these three ops in a row (``residual`` is optional: then
    relu(batch_norm(x))), with batch_norm's arguments and rules. x and residual
    [N, C, H, W] (or [N, C]) → the same shape. It is what a ResNet block ends with
    (:class:`glassnet.models.BasicBlock` calls it under the fast backend), and it exists for
    the fast kernel (:mod:`glassnet.fast.norm`), which reads and writes the activations in
    one pass where the three ops take five: the output is the three ops' bit for bit, the
    gradients to rounding.
    """
    y, bn_ctx = batch_norm_forward(x, running_mean, running_var, weight, bias, training, momentum, eps)
    residual = residual_argument(x, residual)
    if residual is not None:
        y = y + residual
    out, relu_ctx = relu_forward(y)
    return out, Context(bn=bn_ctx, relu=relu_ctx, has_residual=residual is not None)


def batch_norm_relu_backward(grad: Any, ctx: Context) -> tuple[Any, ...]:
    """ReLU's rule, then batch norm's: ``(dx, None, None, dweight, dbias, None, None, None, dresidual)``.

    ReLU's rule is looked up as ReLU's own (``relu.backward_for``), so a rule that replaces
    it (:meth:`Op.override_backward`, e.g. guided backpropagation) applies here too. The
    residual receives the gradient of the sum, ReLU's output gradient.
    """
    (g,) = relu.backward_for("reference")(grad, ctx.relu)
    dx, _, _, dweight, dbias = batch_norm_backward(g, ctx.bn)
    return dx, None, None, dweight, dbias, None, None, None, (g if ctx.has_residual else None)


batch_norm_relu = Op(
    batch_norm_relu_forward, batch_norm_relu_backward, nondifferentiable=("running_mean", "running_var")
)


def _channel_window_sum(a: Any, before: int, after: int) -> Any:
    """out[:, c] = Σ a[:, c − before … c + after] (zero outside the channels)."""
    xp, c = array_namespace(a), a.shape[1]
    padded = xp.zeros((a.shape[0], c + before + after, *a.shape[2:]), dtype=a.dtype, device=device_of(a))
    padded[:, before : before + c, ...] = a
    out = xp.asarray(padded[:, 0:c, ...], copy=True)
    for o in range(1, before + after + 1):
        out += padded[:, o : o + c, ...]
    return out


def local_response_norm_forward(
    x: Any, size: int, alpha: float = 1e-4, beta: float = 0.75, k: float = 1.0
) -> tuple[Any, Context]:
    """Local response normalisation across channels (AlexNet's "Norm" layer).

    b_c = a_c / (k + α/n · Σ_{c'} a_{c'}²)^β, the sum running over the ``size`` = n
    channels c − ⌊n/2⌋ … c + ⌊(n−1)/2⌋ (missing channels count as zero), exactly
    PyTorch's definition (AlexNet used n=5, α=1e-4, β=0.75, k=2). No parameters.
    x [N, C, ...] → same shape.
    """
    x = as_float(x, "local_response_norm input")
    if x.ndim < 3:
        raise ValueError(f"local_response_norm expected [N, C, H, W] input, got shape {tuple(x.shape)}")
    if not isinstance(size, int) or size < 1:
        raise ValueError(f"local_response_norm: size must be a positive int, got {size!r}")
    before, after = size // 2, (size - 1) // 2
    s = k + (alpha / size) * _channel_window_sum(x * x, before, after)
    s_pow = s ** (-beta)
    out = x * s_pow
    ctx = Context(x=x, s=s, s_pow=s_pow, before=before, after=after, coef=2 * alpha * beta / size)
    return out, ctx


def local_response_norm_backward(grad: Any, ctx: Context) -> tuple[Any]:
    """dx_c = g_c·s_c^(−β) − (2αβ/n)·x_c·Σ_{c' whose window holds c} g_{c'}·x_{c'}·s_{c'}^(−β−1)."""
    t = grad * ctx.x * ctx.s_pow / ctx.s
    back = _channel_window_sum(t, ctx.after, ctx.before)
    return (grad * ctx.s_pow - ctx.coef * ctx.x * back,)


local_response_norm = Op(local_response_norm_forward, local_response_norm_backward)
