"""Shape-only rules of the functional ops, for :func:`glassnet.trace`.

When an op receives shape-only tensors it computes nothing: its ``meta`` function gets
the same arguments as its forward, with every array replaced by a
:class:`~glassnet.autograd.function.MetaArray` (a shape and a dtype), and returns a
:class:`~glassnet.autograd.function.Meta`: the output shape, the multiply-accumulates
and the window the op slides over its input (which is how receptive fields grow).
Ops without a rule here are element-wise (output shaped like the first input).

``window`` is ``(kernel, stride, dilation, pads)`` per axis (h, w), with ``pads`` the
``((top, bottom), (left, right))`` padding; ``"whole"`` when every output sees all of
the input.
"""

from __future__ import annotations

import math
from typing import Any

from ._args import pair
from ._op import Meta
from .conv import conv2d, conv2d_geometry
from .linear import flatten, linear
from .loss import binary_cross_entropy_with_logits, cross_entropy, mse_loss
from .pool import adaptive_avg_pool2d, avg_pool2d, global_avg_pool2d, max_pool2d, pool_geometry


def _4d(x: Any, op: str) -> tuple[int, ...]:
    if len(x.shape) != 4:
        raise ValueError(f"{op} expected a 4-D input [N, C, H, W], got shape {tuple(x.shape)}")
    return tuple(x.shape)


def conv2d_meta(
    x: Any,
    weight: Any,
    bias: Any = None,
    stride: Any = 1,
    padding: Any = 0,
    dilation: Any = 1,
    groups: int = 1,
    flip: bool = False,
    algorithm: Any = None,
) -> Meta:
    """[N, C, H, W] * [F, C/groups, kh, kw] → [N, F, H_out, W_out]; N·F·H_out·W_out·(C/groups·kh·kw) MACs."""
    n, c = _4d(x, "conv2d")[:2]
    f, cg, kh, kw = weight.shape
    if cg * groups != c:
        raise ValueError(f"conv2d: weight {list(weight.shape)} expects {cg * groups} input channels, got {c}")
    s, d, pads, (ho, wo) = conv2d_geometry(tuple(x.shape), tuple(weight.shape), stride, padding, dilation)
    return Meta((n, f, ho, wo), macs=n * f * ho * wo * cg * kh * kw, window=((kh, kw), s, d, pads))


def max_pool2d_meta(
    x: Any, kernel_size: Any, stride: Any = None, padding: Any = 0, dilation: Any = 1, ceil_mode: bool = False
) -> Meta:
    """[N, C, H, W] → [N, C, H_out, W_out], as :func:`pool_geometry` counts windows."""
    k, s, d, pads, out = pool_geometry(
        "max_pool2d", _4d(x, "max_pool2d"), kernel_size, stride, padding, dilation, ceil_mode
    )
    return Meta((*x.shape[:2], *out), window=(k, s, d, pads))


def avg_pool2d_meta(
    x: Any,
    kernel_size: Any,
    stride: Any = None,
    padding: Any = 0,
    ceil_mode: bool = False,
    count_include_pad: bool = True,
) -> Meta:
    """[N, C, H, W] → [N, C, H_out, W_out]."""
    k, s, d, pads, out = pool_geometry("avg_pool2d", _4d(x, "avg_pool2d"), kernel_size, stride, padding, 1, ceil_mode)
    return Meta((*x.shape[:2], *out), window=(k, s, d, pads))


def adaptive_avg_pool2d_meta(x: Any, output_size: Any) -> Meta:
    """[N, C, H, W] → [N, C, oh, ow]; cell i of an axis averages cells ⌊i·n/o⌋ … ⌈(i+1)·n/o⌉ − 1."""
    n, c, h, w = _4d(x, "adaptive_avg_pool2d")
    if isinstance(output_size, tuple | list) and len(output_size) == 2:
        oh, ow = (h if output_size[0] is None else output_size[0]), (w if output_size[1] is None else output_size[1])
    else:
        oh = ow = output_size
    oh, ow = pair((oh, ow), "output_size")
    if (oh, ow) == (h, w):
        window: Any = None
    elif (oh, ow) == (1, 1):
        window = "whole"
    else:  # the widest window and the smallest step between windows
        window = ((math.ceil(h / oh), math.ceil(w / ow)), (max(h // oh, 1), max(w // ow, 1)), (1, 1))
    return Meta((n, c, oh, ow), window=window)


def global_avg_pool2d_meta(x: Any) -> Meta:
    """[N, C, H, W] → [N, C, 1, 1]."""
    return Meta((*_4d(x, "global_avg_pool2d")[:2], 1, 1), window="whole")


def linear_meta(x: Any, weight: Any, bias: Any = None) -> Meta:
    """[..., in] · [out, in]ᵀ → [..., out]; (elements of ...)·in·out MACs."""
    out, fan_in = weight.shape
    if len(x.shape) < 1 or x.shape[-1] != fan_in:
        raise ValueError(
            f"linear: weight {list(weight.shape)} expects {fan_in} input features, got input of shape {tuple(x.shape)}"
        )
    return Meta((*x.shape[:-1], out), macs=math.prod(x.shape[:-1]) * fan_in * out, window="whole")


def flatten_meta(x: Any, start_dim: int = 1) -> Meta:
    """[N, C, H, W] → [N, C·H·W]."""
    return Meta((*x.shape[:start_dim], math.prod(x.shape[start_dim:])), window="whole")


def _loss_meta(pred: Any, reduction: str, per_sample: bool = False) -> Meta:
    """A scalar for reduction 'mean' or 'sum'; for 'none' one loss per sample (cross-entropy) or per element."""
    if reduction != "none":
        return Meta((), window="whole")
    return Meta(tuple(pred.shape[:1]) if per_sample else tuple(pred.shape), window="whole")


def cross_entropy_meta(logits: Any, target: Any, label_smoothing: float = 0.0, reduction: str = "mean") -> Meta:
    """logits [N, K], labels [N] → a scalar ([N] with reduction 'none')."""
    return _loss_meta(logits, reduction, per_sample=True)


def elementwise_loss_meta(pred: Any, target: Any, reduction: str = "mean") -> Meta:
    """pred and target of one shape → a scalar (that shape with reduction 'none')."""
    return _loss_meta(pred, reduction)


RULES = {
    conv2d: conv2d_meta,
    max_pool2d: max_pool2d_meta,
    avg_pool2d: avg_pool2d_meta,
    adaptive_avg_pool2d: adaptive_avg_pool2d_meta,
    global_avg_pool2d: global_avg_pool2d_meta,
    linear: linear_meta,
    flatten: flatten_meta,
    cross_entropy: cross_entropy_meta,
    binary_cross_entropy_with_logits: elementwise_loss_meta,
    mse_loss: elementwise_loss_meta,
}
for _op, _rule in RULES.items():
    if _op.meta is None:  # an op that states its own rule keeps it
        _op.meta = _rule
