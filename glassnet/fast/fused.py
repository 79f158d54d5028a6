"""Fast conv2d + batch norm (fixed statistics) + residual + ReLU, for inference.

The definition is :func:`glassnet.functional.fused.conv2d_bn_relu_forward`: the convolution,
then batch norm with the running statistics, the residual's addition and ReLU. With fixed
statistics batch norm is a per-channel affine map y = conv·a + b, a = γ/√(σ² + ε),
b = β − μ·a, so it folds into the convolution: weights w·a, bias (bias − μ)·a + β (PyTorch's
``fuse_conv_bn_eval`` folds the same way). Where the convolution runs as Winograd (F(2×2) or F(4×4)),
the residual and ReLU are applied by its output transform as it writes each tile
(:func:`glassnet.fast.winograd.conv3x3` with ``relu=True``): the output is written once and
never read again, where the two ops take a second pass over it. The result equals the
reference's to rounding (the products are scaled before they are summed instead of after).

This runs only when no gradient is recorded (inference). With gradients (a frozen batch norm
being fine-tuned around), and for layers that Winograd does not take, the op runs as the fast
conv2d and the fast batch_norm_relu, one after the other, and keeps their contexts; a backward
of a folded forward (called by hand under ``no_grad``) recomputes those first.
"""

from __future__ import annotations

import math
from typing import Any

import numpy as np

from ..backend import num_workers
from ..functional._op import Context
from ..functional.conv import conv2d, conv2d_arguments
from ..functional.norm import batch_norm_relu
from . import conv, winograd

_OPTIONS = ("eps", "residual", "stride", "padding", "dilation", "groups", "flip")


def _folded(
    x: Any,
    weight: Any,
    bias: Any,
    running_mean: Any,
    running_var: Any,
    bn_weight: Any,
    bn_bias: Any,
    eps: Any,
    residual: Any,
    stride: Any,
    padding: Any,
    dilation: Any,
    groups: int,
    flip: bool,
) -> np.ndarray | None:
    """The output by Winograd with the batch norm folded in, or None where that does not apply
    (then the two ops run, and raise the errors of anything wrong)."""
    if not winograd.AVAILABLE or isinstance(eps, bool) or not isinstance(eps, int | float) or not eps > 0:
        return None
    try:
        x, weight, bias, (stride, dilation, pads, out_hw) = conv2d_arguments(
            x, weight, bias, stride, padding, dilation, groups, None
        )
    except (TypeError, ValueError):
        return None
    n, f = x.shape[0], weight.shape[0]
    dtype = x.dtype
    algorithm = conv.choose_algorithm(x.shape, weight.shape, stride, dilation, pads, groups, out_hw, dtype)
    if algorithm not in winograd.TILES:
        return None
    per_channel = (running_mean, running_var, bn_weight, bn_bias)
    if any(v is not None and (not isinstance(v, np.ndarray) or v.shape != (f,)) for v in per_channel):
        return None
    if running_mean is None or running_var is None or not np.all(running_var >= 0):
        return None
    if residual is not None and (
        not isinstance(residual, np.ndarray) or residual.dtype != dtype or residual.shape != (n, f, *out_hw)
    ):
        return None
    a = 1.0 / np.sqrt(running_var.astype(dtype) + dtype.type(eps))
    if bn_weight is not None:
        a = a * bn_weight.astype(dtype)
    shift = -running_mean.astype(dtype) if bias is None else bias.astype(dtype) - running_mean.astype(dtype)
    b = shift * a if bn_bias is None else shift * a + bn_bias.astype(dtype)
    wk = weight[:, :, ::-1, ::-1] if flip else weight
    w_folded = np.ascontiguousarray(wk * a.reshape(f, 1, 1, 1), dtype=dtype)
    parts = num_workers() if math.prod(weight.shape[1:]) * n * math.prod(out_hw) >= conv.PARALLEL_MIN else 1
    tile = winograd.TILES[algorithm]
    return winograd.conv3x3(np.ascontiguousarray(x), w_folded, b, pads, parts, relu=True, residual=residual, tile=tile)


def conv2d_bn_relu_forward(
    x: Any,
    weight: Any,
    bias: Any,
    running_mean: Any,
    running_var: Any,
    bn_weight: Any = None,
    bn_bias: Any = None,
    eps: float = 1e-5,
    residual: Any = None,
    stride: Any = 1,
    padding: Any = 0,
    dilation: Any = 1,
    groups: int = 1,
    flip: bool = False,
) -> tuple[np.ndarray, Context]:
    """As :func:`glassnet.functional.fused.conv2d_bn_relu_forward`."""
    from ..autograd import is_grad_enabled

    args = (x, weight, bias, running_mean, running_var, bn_weight, bn_bias)
    options = dict(zip(_OPTIONS, (eps, residual, stride, padding, dilation, groups, flip), strict=True))
    if not is_grad_enabled():
        out = _folded(*args, **options)
        if out is not None:
            return out, Context(folded=True, args=args, options=options)
    return _in_two(args, options)


def _in_two(args: tuple[Any, ...], options: dict[str, Any]) -> tuple[Any, Context]:
    """conv2d, then batch_norm_relu (each its fast pair where it applies), contexts kept."""
    x, weight, bias, running_mean, running_var, bn_weight, bn_bias = args
    o = options
    y, conv_ctx = conv2d.forward(x, weight, bias, o["stride"], o["padding"], o["dilation"], o["groups"], o["flip"])
    out, bnr_ctx = batch_norm_relu.forward(
        y, running_mean, running_var, bn_weight, bn_bias, False, 0.1, o["eps"], residual=o["residual"]
    )
    return out, Context(folded=False, conv=conv_ctx, bnr=bnr_ctx)


def conv2d_bn_relu_backward(grad: Any, ctx: Context) -> tuple[Any, ...]:
    """As :func:`glassnet.functional.fused.conv2d_bn_relu_backward` (a folded forward is first
    recomputed as the two ops)."""
    if ctx.folded:
        from ..autograd import enable_grad

        with enable_grad():
            _, two = _in_two(ctx.args, ctx.options)
        ctx = Context(two, needs_input_grad=ctx.get("needs_input_grad", (True,)))
    dy, _, _, dbn_weight, dbn_bias, *_, dresidual = batch_norm_relu.backward(grad, ctx.bnr)
    ctx.conv["needs_input_grad"] = ctx.get("needs_input_grad", (True,))[:1]
    dx, dweight, dbias = conv2d.backward(dy, ctx.conv)
    return dx, dweight, dbias, None, None, dbn_weight, dbn_bias, None, dresidual


def supports(x: Any = None, *args: Any, **kwargs: Any) -> bool:
    """Float32/float64 NumPy input [N, C, H, W]; the rest (and every error) is the reference's."""
    x = kwargs.get("x", x)
    return isinstance(x, np.ndarray) and x.ndim == 4 and x.dtype in (np.float32, np.float64)
