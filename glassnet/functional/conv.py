"""2-D convolution (cross-correlation by default), forward and backward: the reference.

Shapes: ``x`` [N, C_in, H, W], ``weight`` [C_out, C_in/groups, k_h, k_w], ``bias`` [C_out],
output [N, C_out, H_out, W_out] with, per axis,

    H_out = floor((H + pad_top + pad_bottom − d·(k−1) − 1) / s) + 1

which for symmetric padding P, no dilation, is the lectures' (W − F + 2P)/S + 1.

Definition (cross-correlation, what every worked example in the lectures computes):

    out[n, o, y, x] = b[o] + Σ_c Σ_i Σ_j  x_pad[n, g(o)·C_g + c, y·s_h + i·d_h, x·s_w + j·d_w] · w[o, c, i, j]

``flip=True`` computes true convolution, Σ I(i−m, j−n)·K(m, n), which is the same sum
with the kernel rotated by 180°.

How it is computed (im2col): each kernel tap (i, j) sees one strided (H_out, W_out) grid
of the padded input (:func:`~glassnet.functional.window.taps`). Stacking the grids of all
taps gives ``cols`` [N, groups, C_g·k_h·k_w, H_out·W_out], so the whole layer is one matrix
product per group, ``W[F_g, C_g·k_h·k_w] @ cols``. Backward is the same picture read
backwards: ``dW = dOut @ colsᵀ`` (summed over the batch) and ``dcols = Wᵀ @ dOut``, whose
tap grids are added back where they were read (col2im) to give dx.

This file is the definition, written against the Array API (it runs on NumPy, CuPy and
array-api-strict). :mod:`glassnet.fast.conv` computes the same on NumPy, faster; the tests
check the two against each other.
"""

from __future__ import annotations

import math
from typing import Any

from ..backend import array_namespace, as_float, as_grad, asarray_like, device_of, result_dtype
from ._args import Pads, Pair, check_grad_shape, conv_padding, is_int, pair, shape_of, window_out
from ._op import Context, Meta, Op
from .window import check_4d, describe_window, pad2d, taps, unpad2d

# How glassnet.fast computes a convolution (``algorithm=``): three im2col layouts, or Winograd
# F(2×2, 3×3) or F(4×4, 3×3) for 3×3 stride-1 kernels (glassnet.fast.winograd). The reference
# ignores it.
ALGORITHMS = ("shift", "gather", "hwn", "winograd", "winograd4")
WINOGRAD = ("winograd", "winograd4")


def _check(x: Any, weight: Any, bias: Any, groups: Any) -> None:
    check_4d(x, "conv2d")
    if weight.ndim != 4:
        raise ValueError(f"conv2d expected a 4-D weight [C_out, C_in/groups, kH, kW], got shape {tuple(weight.shape)}")
    if not is_int(groups) or groups < 1:
        raise ValueError(f"conv2d: groups must be a positive int, got {groups!r}")
    c, f, cg = x.shape[1], weight.shape[0], weight.shape[1]
    if c % groups:
        raise ValueError(f"conv2d: groups={groups} does not divide the {c} input channels")
    if f % groups:
        raise ValueError(f"conv2d: groups={groups} does not divide the {f} output channels")
    if cg * groups != c:
        raise ValueError(
            f"conv2d: weight {list(weight.shape)} expects {cg * groups} input channels "
            f"(C_in/groups = {cg}, groups = {groups}), got {c}"
        )
    if bias is not None and shape_of(bias) != (f,):
        raise ValueError(f"conv2d: bias must have shape ({f},), got {shape_of(bias)}")


def conv2d_geometry(
    x_shape: tuple[int, ...], w_shape: tuple[int, ...], stride: Any, padding: Any, dilation: Any
) -> tuple[Pair, Pair, Pads, Pair]:
    """Normalised (stride, dilation, pads, (H_out, W_out)) for shapes [N,C,H,W] and [F,C_g,kH,kW].

    Raises ``ValueError`` when the (dilated) kernel is larger than the padded input.
    """
    h, w = x_shape[2:]
    kh, kw = w_shape[2:]
    stride, dilation = pair(stride, "stride"), pair(dilation, "dilation")
    pads = conv_padding(padding, (kh, kw), stride, dilation, (h, w))
    (pt, pb), (pl, pr) = pads
    ho = window_out(h, kh, stride[0], pt, pb, dilation[0])
    wo = window_out(w, kw, stride[1], pl, pr, dilation[1])
    if ho < 1 or wo < 1:
        raise ValueError(
            f"conv2d: kernel {describe_window((kh, kw), dilation)} is larger than the padded input "
            f"{h + pt + pb}×{w + pl + pr} (input {h}×{w}, padding {pads})"
        )
    return stride, dilation, pads, (ho, wo)


def winograd_fits(kernel: Any, stride: Pair, dilation: Pair, groups: int, pads: Pads) -> bool:
    """Whether ``algorithm='winograd'`` (or ``'winograd4'``) can compute these (normalised) arguments: a 3×3 kernel,
    stride 1, dilation 1, one group and each padding 0..2 (its dx runs as a forward with
    padding 2 − P). The one rule, for the argument check here and the fast kernel's choice."""
    return (
        tuple(kernel) == (3, 3)
        and tuple(stride) == (1, 1)
        and tuple(dilation) == (1, 1)
        and groups == 1
        and all(0 <= p <= 2 for side in pads for p in side)
    )


def conv2d_arguments(
    x: Any, weight: Any, bias: Any, stride: Any, padding: Any, dilation: Any, groups: Any, algorithm: Any
) -> tuple[Any, Any, Any, tuple[Pair, Pair, Pads, Pair]]:
    """Validate and normalise conv2d's arguments, for the reference and the fast kernels alike.

    Returns ``(x, weight, bias, (stride, dilation, pads, (H_out, W_out)))`` with the three
    arrays in one float dtype (float64 if any of them is float64). Every error message of
    conv2d comes from here, so both implementations raise the same errors.
    """
    x = as_float(x, "conv2d input")
    weight = as_float(weight, "conv2d weight")
    _check(x, weight, bias, groups)
    if algorithm is not None and algorithm not in ALGORITHMS:
        raise ValueError(f"conv2d: algorithm must be None or one of {ALGORITHMS}, got {algorithm!r}")
    geometry = conv2d_geometry(tuple(x.shape), tuple(weight.shape), stride, padding, dilation)
    if algorithm == "shift" and geometry[0] != (1, 1):
        raise ValueError(f"conv2d: algorithm='shift' needs stride 1, got stride {geometry[0]}")
    if algorithm in WINOGRAD:
        stride, dilation, pads, _ = geometry
        kernel = tuple(weight.shape[2:])
        if not winograd_fits(kernel, stride, dilation, groups, pads):
            raise ValueError(
                f"conv2d: algorithm={algorithm!r} needs a 3×3 kernel, stride 1, dilation 1, groups 1 and "
                f"padding 0..2 on each side; got kernel {kernel[0]}×{kernel[1]}, stride {stride}, "
                f"dilation {dilation}, groups {groups}, padding {pads}"
            )
    dtype = result_dtype(x, weight, bias)
    xp = array_namespace(x, weight)
    x, weight = xp.astype(x, dtype, copy=False), xp.astype(weight, dtype, copy=False)
    if bias is not None:
        bias = asarray_like(as_float(bias, "conv2d bias"), x)
    return x, weight, bias, geometry


def conv2d_forward(
    x: Any,
    weight: Any,
    bias: Any = None,
    stride: Any = 1,
    padding: Any = 0,
    dilation: Any = 1,
    groups: int = 1,
    flip: bool = False,
    algorithm: str | None = None,
) -> tuple[Any, Context]:
    """2-D cross-correlation (``flip=True``: true convolution). Returns ``(out, ctx)``.

    Args:
        x: input [N, C_in, H, W].
        weight: filters [C_out, C_in/groups, k_h, k_w]; ``weight[o]`` is a filter,
            ``weight[o, c]`` the kernel it applies to input channel c.
        bias: [C_out] or None; one bias per output channel.
        stride, dilation: int or (h, w).
        padding: int, (ph, pw), ((top, bottom), (left, right)), 'same' or 'valid'.
        groups: input and output channels are split into this many groups.
        flip: rotate the kernel by 180° (true convolution).
        algorithm: how the fast kernel computes it: an im2col layout (``'shift'``, ``'hwn'``,
            ``'gather'``), ``'winograd'`` (F(2×2, 3×3): 3×3, stride 1), ``'winograd4'``
            (F(4×4, 3×3)) or None: by cost. Checked here as
            there, otherwise unused: the reference always builds the im2col tap by tap.

    Output: [N, C_out, H_out, W_out], H_out = floor((H + P_t + P_b − d·(k_h−1) − 1)/s) + 1.
    """
    x, weight, bias, (stride, dilation, pads, out_hw) = conv2d_arguments(
        x, weight, bias, stride, padding, dilation, groups, algorithm
    )
    xp = array_namespace(x, weight)
    n, f, (kh, kw) = x.shape[0], weight.shape[0], weight.shape[2:]
    x_pad = pad2d(x, pads)
    # im2col: tap (i, j)'s (H_out, W_out) grid of every channel; the taps stacked after the channel
    grids = [x_pad[:, :, rows, cols] for _, (rows, cols) in taps((kh, kw), stride, dilation, out_hw)]
    cols = xp.reshape(xp.stack(grids, axis=2), (n, groups, -1, out_hw[0] * out_hw[1]))  # [N, G, C_g·k·k, P]
    w_mat = xp.reshape(xp.flip(weight, axis=(2, 3)) if flip else weight, (groups, f // groups, -1))
    out = xp.reshape(xp.matmul(w_mat, cols), (n, f, *out_hw))  # [G, F_g, C_g·k·k] @ [N, G, C_g·k·k, P]
    if bias is not None:
        out = out + xp.reshape(bias, (1, f, 1, 1))
    ctx = Context(cols=cols, w_mat=w_mat, x_shape=tuple(x.shape), w_shape=tuple(weight.shape), pads=pads)
    ctx.update(stride=stride, dilation=dilation, out_hw=out_hw, groups=groups, flip=flip, has_bias=bias is not None)
    return out, ctx


def conv2d_backward(grad: Any, ctx: Context, need_dx: bool | None = None) -> tuple[Any, Any, Any]:
    """Gradients of :func:`conv2d_forward`: ``(dx, dweight, dbias or None)``.

    ``dweight[o, c, i, j] = Σ_{n,y,x} dOut[n, o, y, x] · x_pad[n, c, y·s + i·d, x·s + j·d]``
    (the lectures' ∂L/∂filter = Σ ∂L/∂out · image, a cross-correlation of the input with
    the output gradient): ``dW = dOut @ colsᵀ``. ``dx`` is the transposed convolution of
    dOut: ``dcols = Wᵀ @ dOut``, each tap's grid added back where forward read it (col2im).
    ``need_dx=False`` (or ``ctx.needs_input_grad[0]`` False: a network's first layer)
    skips dx and returns None for it.
    """
    grad = as_grad(grad, ctx.cols.dtype)
    xp = array_namespace(grad)
    need_dx = ctx.get("needs_input_grad", (True,))[0] if need_dx is None else need_dx
    (n, c, h, w), (f, _, kh, kw), groups = ctx.x_shape, ctx.w_shape, ctx.groups
    check_grad_shape("conv2d", grad, (n, f, *ctx.out_hw))
    g = xp.reshape(grad, (n, groups, f // groups, -1))  # [N, G, F_g, P]
    dw = xp.reshape(xp.sum(xp.matmul(g, xp.matrix_transpose(ctx.cols)), axis=0), ctx.w_shape)
    dw = xp.flip(dw, axis=(2, 3)) if ctx.flip else dw
    db = xp.sum(grad, axis=(0, 2, 3)) if ctx.has_bias else None
    if not need_dx:
        return None, dw, db
    dcols = xp.reshape(xp.matmul(xp.matrix_transpose(ctx.w_mat), g), (n, c, kh * kw, *ctx.out_hw))
    (pt, pb), (pl, pr) = ctx.pads
    dx_pad = xp.zeros((n, c, h + pt + pb, w + pl + pr), dtype=grad.dtype, device=device_of(grad))
    for t, (rows, cols) in taps((kh, kw), ctx.stride, ctx.dilation, ctx.out_hw):
        dx_pad[:, :, rows, cols] += dcols[:, :, t, :, :]
    return unpad2d(dx_pad, ctx.pads, (h, w)), dw, db


def conv2d_meta(
    x: Any,
    weight: Any,
    bias: Any = None,
    stride: Any = 1,
    padding: Any = 0,
    dilation: Any = 1,
    groups: int = 1,
    flip: bool = False,
    algorithm: str | None = None,
) -> Meta:
    """Shape-only conv2d: [N, F, H_out, W_out], N·F·H_out·W_out·(C/groups)·k_h·k_w MACs, window (k, s, d, pads)."""
    _check(x, weight, bias, groups)
    stride, dilation, pads, (ho, wo) = conv2d_geometry(tuple(x.shape), tuple(weight.shape), stride, padding, dilation)
    n, f = x.shape[0], weight.shape[0]
    macs = n * f * ho * wo * math.prod(weight.shape[1:])
    return Meta((n, f, ho, wo), macs=macs, window=(tuple(weight.shape[2:]), stride, dilation, pads))


conv2d = Op(conv2d_forward, conv2d_backward, meta=conv2d_meta)
