"""A convolution, its batch norm with fixed statistics and ReLU as one op: the reference.

``conv2d_bn_relu`` is defined as the ops it replaces, in a row: :func:`~glassnet.functional.conv.conv2d`
then :func:`~glassnet.functional.norm.batch_norm_relu` with ``training=False`` (the running
statistics normalise, as in inference or with a frozen batch norm). It exists for the fast
kernel, which folds the batch norm into the convolution's weights and bias and applies the
residual and ReLU as the convolution writes its output (:mod:`glassnet.fast.fused`): one pass
over the output instead of two. :class:`glassnet.models.BasicBlock` calls it in inference.
"""

from __future__ import annotations

from typing import Any

from ._op import Context, Meta, Op
from .conv import conv2d_backward, conv2d_forward, conv2d_meta
from .norm import batch_norm_relu_backward, batch_norm_relu_forward


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
) -> tuple[Any, Context]:
    """relu(batch_norm(conv2d(x, weight, bias), running statistics) + residual).

    x [N, C_in, H, W], weight [C_out, C_in/groups, k_h, k_w], bias [C_out] or None;
    ``running_mean``/``running_var``/``bn_weight``/``bn_bias`` [C_out]; residual None or
    [N, C_out, H_out, W_out] (the output's shape, H_out = floor((H + P_t + P_b − d·(k_h−1) − 1)/s) + 1).
    """
    y, conv_ctx = conv2d_forward(x, weight, bias, stride, padding, dilation, groups, flip)
    out, bnr_ctx = batch_norm_relu_forward(y, running_mean, running_var, bn_weight, bn_bias, False, 0.1, eps, residual)
    return out, Context(conv=conv_ctx, bnr=bnr_ctx)


def conv2d_bn_relu_backward(grad: Any, ctx: Context) -> tuple[Any, ...]:
    """batch_norm_relu's backward, then conv2d's: ``(dx, dweight, dbias, None, None, dbn_weight,
    dbn_bias, None, dresidual)``."""
    dy, _, _, dbn_weight, dbn_bias, *_, dresidual = batch_norm_relu_backward(grad, ctx.bnr)
    ctx.conv["needs_input_grad"] = ctx.get("needs_input_grad", (True,))[:1]
    dx, dweight, dbias = conv2d_backward(dy, ctx.conv)
    return dx, dweight, dbias, None, None, dbn_weight, dbn_bias, None, dresidual


def conv2d_bn_relu_meta(
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
) -> Meta:
    """Shape-only: the convolution's output shape, multiply-accumulates and window."""
    return conv2d_meta(x, weight, bias, stride, padding, dilation, groups, flip)


conv2d_bn_relu = Op(
    conv2d_bn_relu_forward,
    conv2d_bn_relu_backward,
    meta=conv2d_bn_relu_meta,
    nondifferentiable=("running_mean", "running_var"),
)
