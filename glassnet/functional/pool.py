"""Pooling: max, average, adaptive average and global average, forward and backward: the reference.

Output size per axis (``s`` defaults to the kernel size ``k``):

    floor mode: H_out = floor((H + 2P − d·(k−1) − 1) / s) + 1
    ceil mode:  H_out = ceil((H + 2P − d·(k−1) − 1) / s) + 1, minus one if the last
                window would start inside the bottom/right padding (PyTorch's rule)

so a 5×5 map pooled 2×2 / stride 2 gives 2×2 in floor mode and 3×3 in ceil mode,
where the partial windows at the right and bottom edges reduce over their valid
cells only (the lectures' "if at the end of the row, we just continue").

Both poolings run over the window taps of :mod:`glassnet.functional.window`: average
pooling adds the taps' grids, max pooling keeps a running maximum and the tap that
produced it. Written against the Array API (NumPy, CuPy, array-api-strict);
:mod:`glassnet.fast.pool` is a faster max pooling on NumPy, tested equal to this one.
"""

from __future__ import annotations

import math
from typing import Any

from ..backend import array_namespace, as_float, as_grad, asarray_like, device_of
from ._args import Pads, Pair, conv_padding, is_int, pair, window_out
from ._op import Context, Meta, Op
from .window import axis_is_real, check_4d, describe_window, pad2d, padded_extent, taps, unpad2d


def pool_geometry(
    op: str, x: Any, kernel_size: Any, stride: Any, padding: Any, dilation: Any, ceil_mode: bool
) -> tuple[Pair, Pair, Pair, Pads, Pair]:
    """Normalised (kernel, stride, dilation, pads, (H_out, W_out)) of a pooling.

    ``x`` is the input or just its shape. Raises ``ValueError`` naming the received
    value when the window does not fit or the padding exceeds half the window.
    """
    shape = tuple(x) if isinstance(x, tuple) else None
    if shape is None:
        check_4d(x, op)
        shape = tuple(x.shape)
    elif len(shape) != 4:
        raise ValueError(f"{op} expected a 4-D input [N, C, H, W], got shape {shape}")
    k = pair(kernel_size, "kernel_size")
    s = k if stride is None else pair(stride, "stride")
    d = pair(dilation, "dilation")
    if isinstance(padding, str):
        raise ValueError(f"{op}: padding must be an int or a pair, got {padding!r}")
    pads = conv_padding(padding, k, s, d, shape[2:])
    for axis, (kk, dd, (lo, hi)) in enumerate(zip(k, d, pads, strict=True)):
        span = dd * (kk - 1) + 1
        if max(lo, hi) > span // 2:
            raise ValueError(
                f"{op}: padding {padding!r} must be at most half the window "
                f"({describe_window(k, d)}): got {max(lo, hi)} > {span // 2} on axis {axis}"
            )
    h, w = shape[2:]
    out = (
        window_out(h, k[0], s[0], *pads[0], d[0], ceil_mode),
        window_out(w, k[1], s[1], *pads[1], d[1], ceil_mode),
    )
    if out[0] < 1 or out[1] < 1:
        raise ValueError(
            f"{op}: window {describe_window(k, d)} is larger than the padded input "
            f"{h + sum(pads[0])}×{w + sum(pads[1])} (input {h}×{w}, padding {padding!r})"
        )
    return k, s, d, pads, out


# -------------------------------------------------------------------------------------------- max pooling
def max_pool2d_forward(
    x: Any, kernel_size: Any, stride: Any = None, padding: Any = 0, dilation: Any = 1, ceil_mode: bool = False
) -> tuple[Any, Context]:
    """Max pooling over k_h×k_w windows. x [N, C, H, W] → [N, C, H_out, W_out].

    ``out[n, c, y, x] = max_{i,j} x_pad[n, c, y·s_h + i·d_h, x·s_w + j·d_w]``, padding
    cells −∞ (they never win). ``stride`` defaults to ``kernel_size``. Output size per
    axis: floor((H + P_t + P_b − d·(k−1) − 1)/s) + 1 (``ceil_mode``: ceil, dropping a
    window that would start in the right/bottom padding).

    Which cell wins, scanning the taps in row-major order as PyTorch does: a cell
    replaces the running maximum when it is greater, or NaN; so ties go to the first
    maximum, a window with NaN to its last NaN, and an all-−∞ window to its first real
    cell (never to padding; a window wholly in the padding has no winner, no gradient).
    """
    x = as_float(x, "max_pool2d input")
    k, s, d, pads, out_hw = pool_geometry("max_pool2d", x, kernel_size, stride, padding, dilation, ceil_mode)
    xp, dev = array_namespace(x), device_of(x)
    _, extra = padded_extent(tuple(x.shape[2:]), k, s, d, pads, out_hw)
    x_pad = pad2d(x, pads, -math.inf, extra)
    best = xp.full((*x.shape[:2], *out_hw), -math.inf, dtype=x.dtype, device=dev)
    winner = xp.full(best.shape, -1, dtype=xp.int64, device=dev)  # tap index, −1: none yet
    real_r = axis_is_real(x.shape[2], pads[0][0], k[0], s[0], d[0], out_hw[0])
    real_c = axis_is_real(x.shape[3], pads[1][0], k[1], s[1], d[1], out_hw[1])
    for t, (rows, cols) in taps(k, s, d, out_hw):
        v = x_pad[:, :, rows, cols]
        first = winner < 0
        if extra != (0, 0) or pads != ((0, 0), (0, 0)):  # the first *real* cell wins an all-−∞ window
            r, c = xp.asarray(real_r[t // k[1]], device=dev), xp.asarray(real_c[t % k[1]], device=dev)
            first = first & (r[:, None] & c[None, :])
        take = (v > best) | xp.isnan(v) | first
        best, winner = xp.where(take, v, best), xp.where(take, t, winner)
    ctx = Context(winner=winner, x_shape=tuple(x.shape), padded=tuple(x_pad.shape[2:]), pads=pads, dtype=x.dtype)
    ctx.update(k=k, s=s, d=d, out_hw=out_hw)
    return best, ctx


def max_pool2d_backward(grad: Any, ctx: Context) -> tuple[Any]:
    """Route each output gradient to its window's winning cell (see forward); dx [N, C, H, W].

    ``dx[n, c, cell] = Σ over the windows that cell won of dOut[n, c, window]``.
    """
    grad = as_grad(grad, ctx.dtype)
    xp = array_namespace(grad)
    dx_pad = xp.zeros((*ctx.x_shape[:2], *ctx.padded), dtype=grad.dtype, device=device_of(grad))
    for t, (rows, cols) in taps(ctx.k, ctx.s, ctx.d, ctx.out_hw):
        dx_pad[:, :, rows, cols] += xp.where(ctx.winner == t, grad, 0.0)
    return (unpad2d(dx_pad, ctx.pads, ctx.x_shape[2:]),)


def max_pool2d_meta(
    x: Any, kernel_size: Any, stride: Any = None, padding: Any = 0, dilation: Any = 1, ceil_mode: bool = False
) -> Meta:
    """Shape-only max pooling: [N, C, H_out, W_out], window (k, s, d, pads)."""
    k, s, d, pads, out_hw = pool_geometry(
        "max_pool2d", tuple(x.shape), kernel_size, stride, padding, dilation, ceil_mode
    )
    return Meta((*x.shape[:2], *out_hw), window=(k, s, d, pads))


max_pool2d = Op(max_pool2d_forward, max_pool2d_backward, meta=max_pool2d_meta)


# ---------------------------------------------------------------------------------------- average pooling
def _avg_divisors(n: int, k: int, s: int, pad: tuple[int, int], out: int, include_pad: bool) -> list[int]:
    """Per output position along one axis, how many cells its window counts (PyTorch's rule).

    Window o covers padded cells o·s … o·s + k − 1; with ``count_include_pad`` it counts
    the padding cells it covers but not the part of a ceil-mode window hanging past the
    padding, otherwise only real cells.
    """
    lengths = []
    for o in range(out):
        start, end = o * s - pad[0], min(o * s - pad[0] + k, n + pad[1])
        lengths.append(end - start if include_pad else min(end, n) - max(start, 0))
    return lengths


def avg_pool2d_forward(
    x: Any,
    kernel_size: Any,
    stride: Any = None,
    padding: Any = 0,
    ceil_mode: bool = False,
    count_include_pad: bool = True,
    divisor_override: int | None = None,
) -> tuple[Any, Context]:
    """Average pooling. x [N, C, H, W] → [N, C, H_out, W_out].

    ``out[n, c, y, x] = (1 / D[y, x]) Σ_{i,j} x_pad[n, c, y·s_h + i, x·s_w + j]``: the window
    sum over the window size D. With ``count_include_pad=True`` (the default) zero-padding
    cells count, otherwise only real cells do; partial ceil-mode windows never count
    cells past the padding. ``divisor_override`` replaces D.
    """
    x = as_float(x, "avg_pool2d input")
    k, s, d, pads, out_hw = pool_geometry("avg_pool2d", x, kernel_size, stride, padding, 1, ceil_mode)
    if divisor_override is not None and (not is_int(divisor_override) or divisor_override < 1):
        raise ValueError(f"avg_pool2d: divisor_override must be a positive int, got {divisor_override!r}")
    _, extra = padded_extent(tuple(x.shape[2:]), k, s, d, pads, out_hw)
    x_pad = pad2d(x, pads, 0.0, extra)
    total = None
    for _, (rows, cols) in taps(k, s, d, out_hw):
        total = x_pad[:, :, rows, cols] if total is None else total + x_pad[:, :, rows, cols]
    if divisor_override is not None:
        div = [[divisor_override] * out_hw[1]] * out_hw[0]
    else:
        dh = _avg_divisors(x.shape[2], k[0], s[0], pads[0], out_hw[0], count_include_pad)
        dw = _avg_divisors(x.shape[3], k[1], s[1], pads[1], out_hw[1], count_include_pad)
        div = [[a * b for b in dw] for a in dh]
    div = asarray_like(div, x)
    ctx = Context(div=div, x_shape=tuple(x.shape), padded=tuple(x_pad.shape[2:]), pads=pads, k=k, s=s, out_hw=out_hw)
    return total / div, ctx


def avg_pool2d_backward(grad: Any, ctx: Context) -> tuple[Any]:
    """Spread each output gradient evenly over its window: every cell of it gets dOut / D."""
    g = as_grad(grad, ctx.div.dtype) / ctx.div
    xp = array_namespace(g)
    dx_pad = xp.zeros((*ctx.x_shape[:2], *ctx.padded), dtype=g.dtype, device=device_of(g))
    for _, (rows, cols) in taps(ctx.k, ctx.s, (1, 1), ctx.out_hw):
        dx_pad[:, :, rows, cols] += g
    return (unpad2d(dx_pad, ctx.pads, ctx.x_shape[2:]),)


def _avg_pool2d_meta(
    x: Any, kernel_size: Any, stride: Any = None, padding: Any = 0, ceil_mode: bool = False, *_: Any, **__: Any
) -> Meta:
    k, s, d, pads, out_hw = pool_geometry("avg_pool2d", tuple(x.shape), kernel_size, stride, padding, 1, ceil_mode)
    return Meta((*x.shape[:2], *out_hw), window=(k, s, d, pads))


avg_pool2d = Op(avg_pool2d_forward, avg_pool2d_backward, meta=_avg_pool2d_meta)


# ------------------------------------------------------------------------------- adaptive / global pooling
def _adaptive_size(shape: tuple[int, ...], output_size: Any) -> Pair:
    h, w = shape[2:]
    if isinstance(output_size, tuple | list) and len(output_size) == 2:
        oh = h if output_size[0] is None else output_size[0]
        ow = w if output_size[1] is None else output_size[1]
    else:
        oh = ow = output_size
    return pair((oh, ow), "output_size")


def _adaptive_matrix(n: int, out: int) -> list[list[float]]:
    """[out, n] averaging matrix: row i averages cells floor(i·n/out) … ceil((i+1)·n/out)−1."""
    rows = []
    for i in range(out):
        lo, hi = (i * n) // out, -(-(i + 1) * n // out)
        rows.append([1.0 / (hi - lo) if lo <= j < hi else 0.0 for j in range(n)])
    return rows


def adaptive_avg_pool2d_forward(x: Any, output_size: Any) -> tuple[Any, Context]:
    """Average-pool to a fixed output size. x [N, C, H, W] → [N, C, H_out, W_out].

    Output cell i along an axis of length n averages input cells
    ``floor(i·n/out) … ceil((i+1)·n/out) − 1`` (PyTorch's windows, which may overlap):
    ``out = P_h · x · P_wᵀ`` with the two averaging matrices.
    ``output_size`` is an int, a pair, or a pair with None for "keep this axis".
    """
    x = as_float(x, "adaptive_avg_pool2d input")
    check_4d(x, "adaptive_avg_pool2d")
    xp = array_namespace(x)
    (h, w), (oh, ow) = x.shape[2:], _adaptive_size(tuple(x.shape), output_size)
    ph, pw = asarray_like(_adaptive_matrix(h, oh), x), asarray_like(_adaptive_matrix(w, ow), x)
    if (oh, ow) == (h, w):
        out = xp.asarray(x, copy=True)
    elif (oh, ow) == (1, 1):
        out = xp.mean(x, axis=(2, 3), keepdims=True)
    else:
        out = xp.matmul(ph, xp.matmul(x, xp.matrix_transpose(pw)))
    return out, Context(ph=ph, pw=pw)


def adaptive_avg_pool2d_backward(grad: Any, ctx: Context) -> tuple[Any]:
    """dx = P_hᵀ · dOut · P_w (the transposes of the two averaging matrices)."""
    g = as_grad(grad, ctx.ph.dtype)
    xp = array_namespace(g)
    return (xp.matmul(xp.matrix_transpose(ctx.ph), xp.matmul(g, ctx.pw)),)


def _adaptive_meta(x: Any, output_size: Any) -> Meta:
    check_4d(x, "adaptive_avg_pool2d")
    (h, w), (oh, ow) = x.shape[2:], _adaptive_size(tuple(x.shape), output_size)
    if (oh, ow) == (h, w):
        window = None
    elif (oh, ow) == (1, 1):
        window = "whole"
    else:  # windows of up to ceil(n/out) cells, about n/out apart
        window = ((-(-h // oh), -(-w // ow)), (max(h // oh, 1), max(w // ow, 1)), (1, 1))
    return Meta((*x.shape[:2], oh, ow), window=window)


adaptive_avg_pool2d = Op(adaptive_avg_pool2d_forward, adaptive_avg_pool2d_backward, meta=_adaptive_meta)


def global_avg_pool2d_forward(x: Any) -> tuple[Any, Context]:
    """Mean over each whole feature map: out[n, c] = (1/(H·W)) Σ_{y,x} x[n, c, y, x]. [N, C, H, W] → [N, C, 1, 1]."""
    x = as_float(x, "global_avg_pool2d input")
    check_4d(x, "global_avg_pool2d")
    return array_namespace(x).mean(x, axis=(2, 3), keepdims=True), Context(x_shape=tuple(x.shape), dtype=x.dtype)


def global_avg_pool2d_backward(grad: Any, ctx: Context) -> tuple[Any]:
    """Every cell of a map receives 1/(H·W) of its output's gradient."""
    g = as_grad(grad, ctx.dtype) / (ctx.x_shape[2] * ctx.x_shape[3])
    xp = array_namespace(g)
    return (xp.asarray(xp.broadcast_to(g, ctx.x_shape), copy=True),)


def _global_meta(x: Any) -> Meta:
    check_4d(x, "global_avg_pool2d")
    return Meta((*x.shape[:2], 1, 1), window="whole")


global_avg_pool2d = Op(global_avg_pool2d_forward, global_avg_pool2d_backward, meta=_global_meta)
