"""Fast max pooling: a windowed-max Numba kernel, split over worker threads (NumPy fallback).

The definition is :func:`glassnet.functional.pool.max_pool2d_forward`: padding cells are −∞
and never win, and a window's cells are scanned in row-major order, a cell replacing the
running maximum when it is greater or NaN (PyTorch's rule). So ties go to the first
maximum, a window holding NaN to its last NaN, an all-−∞ window to its first real cell, and
a window wholly in the padding (possible with ceil mode or dilation) outputs −∞ and routes
no gradient. This module computes the same outputs and routes the gradient to the same cells:

* forward (:func:`_forward_kernel`): for each output, a direct scan of its window's real
  cells (those inside the input: no padded copy is made) under that rule, written without
  data-dependent branches (random data would mispredict them): it keeps the first strictly
  greater cell and, apart, the last NaN, which wins when there is one. In a plane without
  NaN the windows wholly inside it need only the first (2×2 windows unrolled). The winner
  is recorded as a flat index ``r·W + q`` into the input's H×W plane (−1: none), int32
  (int64 for planes of 2³¹ cells or more), so windows of any size are pooled;
* backward (:func:`_backward_kernel`): ``dx[n, c, winner] += dOut`` over the outputs in
  reverse row-major order, which for every input cell is the reference's order (its taps
  in row-major order), so sums over overlapping windows round the same bit for bit;
* large inputs are split over the worker threads (:func:`glassnet.backend.parallel`) in
  ranges of images, one Numba call (no GIL) per range; every image is pooled on its own,
  so the result is the same bit for bit on any thread count.

Inputs under :data:`NUMBA_MIN` elements (a single-image prediction, which then needs no
Numba: importing it takes about a second) unless their windows exceed 255 cells, and every
input where Numba cannot be imported (:data:`AVAILABLE`), take the NumPy path instead:
separable (per column the max over the k_h row taps and the row it came from, then the max
over the k_w column taps), winners in uint8 (so at most 255 cells a window; larger windows
run the reference there), NaN and −∞ windows given their winner by a slow loop
(:func:`_nonfinite_windows`). Its outputs and winners are the same; its backward adds
overlapping windows' gradients in another order (equal to rounding).
"""

from __future__ import annotations

import functools
from types import SimpleNamespace
from typing import Any

import numpy as np

from ..backend import as_float, num_workers, parallel
from ..functional._args import Pads, Pair, pair
from ..functional._op import Context
from ..functional.pool import pool_geometry
from ..functional.window import axis_taps, pad2d, padded_extent, unpad2d
from ._jit import AVAILABLE as AVAILABLE
from ._jit import compile_kernels

# Inputs with at least this many elements are pooled in parts, one per worker thread (the kernels
# pool LeNet-5's first layer at batch 64, 3·10⁵ elements, in 0.24 ms on one thread, 0.15 on two).
POOL_PARALLEL_MIN = 2**17
# Inputs with at least this many elements (or windows of more than NUMPY_MAX_CELLS cells) run the
# Numba kernels, where AVAILABLE; smaller ones the NumPy path, which needs no Numba.
NUMBA_MIN = 2**14
# The NumPy path's winners are uint8 tap indices: windows of at most this many cells.
NUMPY_MAX_CELLS = 255


# ------------------------------------------------------------------------------------ Numba kernels
def _forward_kernel(x, n0, n1, h, w, kh, kw, sh, sw, dh, dw, pt, pl, ho, wo, out, winner):  # noqa: ANN001, ANN202
    """Max pooling of images n0 ≤ n < n1: x [N, C, H·W] → out, winner [N, C, H_out·W_out] (planes flattened).

    Window (oy, ox) covers rows ``oy·sh − pt + i·dh`` (i < kh) and columns ``ox·sw − pl + j·dw``
    (j < kw) of the H×W plane. Its real cells (those inside the plane) are scanned in row-major
    order, the first always taken, a later one when greater than the running maximum or NaN:
    out = the value taken last, winner = its flat index ``r·W + q`` in the plane. A window with
    no real cell (wholly in the padding) gets out = −∞ and winner = −1.

    No branch depends on how the values compare (random data would mispredict it about every
    other window): the scan keeps the first strictly greater cell and, apart, the last NaN, which
    replaces it when there is one (the rule's winner). In a plane without NaN, the windows wholly
    inside it, most of them, need only the first: one tap loop, unrolled for 2×2 windows.
    Indices are cast to unsigned (they are never negative), which spares Numba's checks for
    negative indices.
    """
    u = np.uint64
    c_count = x.shape[1]
    taps = np.empty(kh * kw, dtype=np.int64)  # tap (i, j)'s offset from the window's first cell
    for i in range(kh):
        for j in range(kw):
            taps[i * kw + j] = i * dh * w + j * dw
    row_lo = np.empty(ho, dtype=np.int64)  # window oy's real row taps: row_lo[oy] ≤ i < row_hi[oy]
    row_hi = np.empty(ho, dtype=np.int64)
    for oy in range(ho):
        top = oy * sh - pt
        row_lo[oy] = max(0, -(top // dh))  # the first i with top + i·dh ≥ 0
        row_hi[oy] = max(row_lo[oy], min(kh, -((top - h) // dh)))  # past the last i with top + i·dh < H
    col_lo = np.empty(wo, dtype=np.int64)  # and its real column taps: col_lo[ox] ≤ j < col_hi[ox]
    col_hi = np.empty(wo, dtype=np.int64)
    for ox in range(wo):
        left = ox * sw - pl
        col_lo[ox] = max(0, -(left // dw))
        col_hi[ox] = max(col_lo[ox], min(kw, -((left - w) // dw)))
    # The windows wholly inside the plane: rows oy_a ≤ oy < oy_b, columns ox_a ≤ ox < ox_b.
    oy_a = min(ho, -(-pt // sh))
    oy_b = max(oy_a, min(ho, (h - 1 - (kh - 1) * dh + pt) // sh + 1))
    ox_a = min(wo, -(-pl // sw))
    ox_b = max(ox_a, min(wo, (w - 1 - (kw - 1) * dw + pl) // sw + 1))
    for n in range(n0, n1):
        for c in range(c_count):
            nans = 0
            for k in range(h * w):
                nans += x[n, c, u(k)] != x[n, c, u(k)]
            for oy in range(ho):
                top = oy * sh - pt
                rest = (0, wo, wo, wo)  # the columns left to the full scan: [rest[0], rest[1]) and [rest[2], rest[3])
                if nans == 0 and oy_a <= oy < oy_b:  # the inside windows of a plane without NaN
                    rest = (0, ox_a, ox_b, wo)
                    if kh == 2 and kw == 2:
                        for ox in range(ox_a, ox_b):
                            k = top * w + ox * sw - pl
                            v0, v1 = x[n, c, u(k)], x[n, c, u(k + dw)]
                            v2, v3 = x[n, c, u(k + dh * w)], x[n, c, u(k + dh * w + dw)]
                            best, at = v0, k
                            best, at = (v1, k + dw) if v1 > best else (best, at)
                            best, at = (v2, k + dh * w) if v2 > best else (best, at)
                            best, at = (v3, k + dh * w + dw) if v3 > best else (best, at)
                            out[n, c, u(oy * wo + ox)] = best
                            winner[n, c, u(oy * wo + ox)] = at
                    else:
                        for ox in range(ox_a, ox_b):
                            k = top * w + ox * sw - pl
                            best, at = x[n, c, u(k)], k
                            for t in range(1, kh * kw):
                                v = x[n, c, u(k + taps[t])]
                                best, at = (v, k + taps[t]) if v > best else (best, at)
                            out[n, c, u(oy * wo + ox)] = best
                            winner[n, c, u(oy * wo + ox)] = at
                i0, i1 = row_lo[oy], row_hi[oy]
                for part in range(2):  # the full scan of the rest
                    for ox in range(rest[2 * part], rest[2 * part + 1]):
                        o = oy * wo + ox
                        j0, j1 = col_lo[ox], col_hi[ox]
                        if i0 == i1 or j0 == j1:  # wholly in the padding
                            out[n, c, u(o)] = -np.inf
                            winner[n, c, u(o)] = -1
                            continue
                        row = (top + i0 * dh) * w + ox * sw - pl  # cell j = 0 of the first real row
                        at = row + j0 * dw
                        best = x[n, c, u(at)]
                        last_nan = -1
                        for _ in range(i0, i1):
                            for j in range(j0, j1):
                                k = row + j * dw
                                v = x[n, c, u(k)]
                                best, at = (v, k) if v > best else (best, at)
                                last_nan = k if v != v else last_nan
                            row += dh * w
                        if last_nan >= 0:
                            at = last_nan
                            best = x[n, c, u(at)]
                        out[n, c, u(o)] = best
                        winner[n, c, u(o)] = at


def _backward_kernel(grad, winner, n0, n1, dx):  # noqa: ANN001, ANN202
    """dx[n, c, :] = 0, then ``dx[n, c, winner[n, c, o]] += grad[n, c, o]`` for images n0 ≤ n < n1.

    grad and winner are [N, C, H_out·W_out], dx is [N, C, H·W]; winner −1 routes nothing. The
    outputs o go in reverse row-major order: the windows that reach one cell then come in the
    order of the taps that reach it (a later window reaches it by an earlier tap), which is the
    order the reference adds them in, so the sums round the same.
    """
    u = np.uint64
    _, c_count, m = dx.shape
    o_count = grad.shape[2]
    for n in range(n0, n1):
        for c in range(c_count):
            for k in range(m):
                dx[n, c, u(k)] = 0.0
            for o in range(o_count - 1, -1, -1):
                at = winner[n, c, u(o)]
                if at >= 0:
                    dx[n, c, u(at)] += grad[n, c, u(o)]


@functools.cache
def _kernels() -> SimpleNamespace:
    """The kernels compiled by Numba (``nogil``, cached on disk) at the first pooling that uses them."""
    return compile_kernels(forward=_forward_kernel, backward=_backward_kernel)


def _uses_numba(x: np.ndarray, kernel: Pair) -> bool:
    return AVAILABLE and (x.size >= NUMBA_MIN or kernel[0] * kernel[1] > NUMPY_MAX_CELLS)


def _ranges(n: int, size: int) -> list[tuple[int, int]]:
    """The ranges of images pooled as one part each: one per worker thread for large inputs."""
    parts = max(1, min(num_workers(), n)) if size >= POOL_PARALLEL_MIN else 1
    return [(n * k // parts, n * (k + 1) // parts) for k in range(parts)]


def max_pool2d_forward(
    x: Any,
    kernel_size: Any,
    stride: Any = None,
    padding: Any = 0,
    dilation: Any = 1,
    ceil_mode: bool = False,
) -> tuple[np.ndarray, Context]:
    """Max pooling, the reference's arguments, output and winners. x [N, C, H, W] → [N, C, H_out, W_out].

    Output size per axis: floor((H + P_t + P_b − d·(k−1) − 1)/s) + 1 (``ceil_mode``: ceil,
    dropping a window that would start in the bottom/right padding). Large inputs are split
    among glassnet's worker threads (:func:`glassnet.backend.parallel`) by images; every image
    is pooled on its own, so the result is the same bit for bit.
    """
    x = as_float(x, "max_pool2d input")
    k, s, d, pads, out_hw = pool_geometry("max_pool2d", x, kernel_size, stride, padding, dilation, ceil_mode)
    if not _uses_numba(x, k):
        return _numpy_forward(x, kernel_size, stride, padding, dilation, ceil_mode)
    n, c, h, w = x.shape
    x3 = np.ascontiguousarray(x).reshape(n, c, h * w)
    out = np.empty((n, c, *out_hw), dtype=x.dtype)
    winner = np.empty(out.shape, dtype=np.int32 if h * w < 2**31 else np.int64)
    geometry = (h, w, *k, *s, *d, pads[0][0], pads[1][0], *out_hw)
    out3, winner3 = out.reshape(n, c, -1), winner.reshape(n, c, -1)
    forward = _kernels().forward
    ranges = _ranges(n, x.size)
    parallel(lambda part, _: forward(x3, *ranges[part], *geometry, out3, winner3), len(ranges))
    return out, Context(winner=winner, ranges=ranges, x_shape=x.shape, dtype=x.dtype)


def max_pool2d_backward(grad: np.ndarray, ctx: Context) -> tuple[np.ndarray]:
    """Route each output gradient to its window's winning cell, as the reference does; dx [N, C, H, W].

    ``dx[n, c, cell] = Σ over the windows that cell won of dOut[n, c, window]``, added in the
    reference's order (see :func:`_backward_kernel`), in the forward's ranges of images.
    """
    if "winner" not in ctx:
        return (_numpy_backward(grad, ctx),)
    n, c, h, w = ctx.x_shape
    grad = np.ascontiguousarray(grad, dtype=ctx.dtype).reshape(n, c, -1)
    winner = ctx.winner.reshape(n, c, -1)
    dx = np.empty(ctx.x_shape, dtype=ctx.dtype)
    dx3 = dx.reshape(n, c, h * w)
    backward = _kernels().backward
    parallel(lambda part, _: backward(grad, winner, *ctx.ranges[part], dx3), len(ctx.ranges))
    return (dx,)


def warm_up(dtype: Any = np.float32) -> None:
    """Load (or compile, the first time on a machine) the kernels for ``dtype`` by pooling a tiny
    input forward and backward, with the argument types :func:`max_pool2d_forward` passes them.
    Does nothing without Numba."""
    if not AVAILABLE:
        return
    kernels = _kernels()
    x = np.zeros((1, 1, 4), dtype=dtype)  # a 2×2 plane, one 2×2 window
    out, winner, dx = np.empty((1, 1, 1), dtype=dtype), np.empty((1, 1, 1), dtype=np.int32), np.empty_like(x)
    kernels.forward(x, 0, 1, 2, 2, 2, 2, 2, 2, 1, 1, 0, 0, 1, 1, out, winner)
    kernels.backward(out, winner, 0, 1, dx)


def supports(x: Any = None, kernel_size: Any = None, *args: Any, **kwargs: Any) -> bool:
    """NumPy input; windows of any size where Numba runs, else of at most 255 cells (the NumPy
    path's uint8 winners); the rest (and every error) runs the reference."""
    x = kwargs.get("x", x)
    if hasattr(x, "__array_namespace__") and not isinstance(x, np.ndarray):
        return False  # passed by keyword: the dispatcher only looks at positional arguments
    try:
        kh, kw = pair(kwargs.get("kernel_size", kernel_size), "kernel_size")
    except (TypeError, ValueError):
        return False  # the reference raises the error
    return AVAILABLE or kh * kw <= NUMPY_MAX_CELLS


# ------------------------------------------------------------------------------- the NumPy path
def _running_max(views: list[np.ndarray]) -> tuple[np.ndarray, np.ndarray]:
    """Element-wise max over ``views`` and the index of the first view that holds it.

    Strictly greater replaces, so among equal values the earliest view wins. Since
    view indices only grow, ``idx = max(idx, t·[v > best])`` records the winner with
    one fast uint8 maximum instead of a masked copy.
    """
    if len(views) == 2:  # the common 2-wide window: one comparison, no bookkeeping
        gt = np.greater(views[1], views[0])
        return np.maximum(views[0], views[1]), gt.view(np.uint8)
    best = views[0].copy()
    idx = np.zeros(best.shape, dtype=np.uint8)
    for t, v in enumerate(views[1:], start=1):
        gt = np.greater(v, best)
        np.maximum(best, v, out=best)
        np.maximum(idx, np.multiply(gt, t, dtype=np.uint8), out=idx)
    return best, idx


def _numpy_forward(
    x: np.ndarray, kernel_size: Any, stride: Any, padding: Any, dilation: Any, ceil_mode: bool
) -> tuple[np.ndarray, Context]:
    """The NumPy path of :func:`max_pool2d_forward` (same output and winners), in parts over the worker threads."""
    n = x.shape[0]
    parts = min(num_workers(), n) if x.size >= POOL_PARALLEL_MIN else 1
    if parts == 1:
        return _numpy_forward_part(x, kernel_size, stride, padding, dilation, ceil_mode)
    pieces = parallel(
        lambda k, p: _numpy_forward_part(
            x[n * k // p : n * (k + 1) // p], kernel_size, stride, padding, dilation, ceil_mode
        ),
        parts,
    )
    out = np.concatenate([o for o, _ in pieces])
    return out, Context(pieces=[c for _, c in pieces], x_shape=x.shape, dtype=x.dtype)


def _numpy_forward_part(
    x: np.ndarray, kernel_size: Any, stride: Any, padding: Any, dilation: Any, ceil_mode: bool
) -> tuple[np.ndarray, Context]:
    """The NumPy path's max pooling of one batch (or part of one), in the calling thread.

    Separable: the max of a window is the max over its columns of each column's max.
    A first pass takes the k_h row taps (whole rows, contiguous in memory) and keeps,
    per column, the max and the row it came from; a second pass takes the k_w column
    taps of that smaller array. Ties go to the first maximum in row-major order
    (PyTorch's choice): a later column wins only if strictly greater, or equal and
    from an earlier row.
    """
    k, s, d, pads, out_hw = pool_geometry("max_pool2d", x, kernel_size, stride, padding, dilation, ceil_mode)
    _, extra = padded_extent(x.shape[2:], k, s, d, pads, out_hw)
    xp = pad2d(x, pads, -np.inf, extra)
    row_taps = axis_taps(k[0], s[0], d[0], out_hw[0])
    col_taps = axis_taps(k[1], s[1], d[1], out_hw[1])
    col_max, ridx = _running_max([xp[:, :, r, :] for r in row_taps])
    if len(col_taps) == 2:
        v0, v1 = col_max[:, :, :, col_taps[0]], col_max[:, :, :, col_taps[1]]
        take = np.greater(v1, v0)
        tie = np.equal(v1, v0)
        tie &= np.less(ridx[:, :, :, col_taps[1]], ridx[:, :, :, col_taps[0]])
        take |= tie
        best, cidx = np.maximum(v0, v1), take.view(np.uint8)
        col_taps_rest: list[slice] = []
    else:
        best = col_max[:, :, :, col_taps[0]].copy()
        best_row = ridx[:, :, :, col_taps[0]].copy()
        cidx = np.zeros(best.shape, dtype=np.uint8)
        col_taps_rest = col_taps[1:]
    for t, c in enumerate(col_taps_rest, start=1):
        v, r = col_max[:, :, :, c], ridx[:, :, :, c]
        take = np.greater(v, best)
        tie = np.equal(v, best)
        tie &= np.less(r, best_row)
        take |= tie
        np.maximum(best, v, out=best)  # the value is the same whichever of equal cells wins
        best_row += take * (r - best_row)  # uint8 arithmetic wraps: = r where take, else unchanged
        np.maximum(cidx, np.multiply(take, t, dtype=np.uint8), out=cidx)
    special = None
    if not np.isfinite(best.sum()):
        special = _nonfinite_windows(xp, best, pads, x.shape[2:], row_taps, col_taps)
    ctx = Context(x_shape=x.shape, ridx=ridx, cidx=cidx, row_taps=row_taps, col_taps=col_taps, pads=pads,
                  special=special,
                  padded=xp.shape[2:], dtype=x.dtype,
                  span=(d[0] * (k[0] - 1) + 1, d[1] * (k[1] - 1) + 1))  # fmt: skip
    return best, ctx


def _nonfinite_windows(
    xp: np.ndarray, best: np.ndarray, pads: Pads, size: Pair, row_taps: list[slice], col_taps: list[slice]
) -> tuple[tuple[np.ndarray, ...], np.ndarray, np.ndarray] | None:
    """PyTorch's choice for windows whose maximum is NaN or −∞ (slow, but rare).

    PyTorch scans a window's real cells in row-major order and takes a cell when it is
    greater than the running maximum or NaN: so a NaN window routes its gradient to its
    last NaN, and an all-−∞ window to its first real cell (never to the padding).
    Returns (output positions, input rows, input columns) in padded coordinates.
    """
    bad = np.nonzero(np.isnan(best) | np.isneginf(best))
    if not bad[0].size:
        return None
    (pt, _), (pl, _) = pads
    rows_out, cols_out = [], []
    for n, c, oh, ow in zip(*bad, strict=True):
        rs = [r.start + r.step * oh for r in row_taps]
        cs = [cc.start + cc.step * ow for cc in col_taps]
        real = [(r, cc) for r in rs for cc in cs if pt <= r < pt + size[0] and pl <= cc < pl + size[1]]
        if not real:  # a window entirely in the padding: output −∞, no gradient
            rows_out.append(-1)
            cols_out.append(-1)
            continue
        nans = [rc for rc in real if np.isnan(xp[n, c, rc[0], rc[1]])]
        r, cc = nans[-1] if nans else real[0]
        rows_out.append(r)
        cols_out.append(cc)
    return bad, np.array(rows_out), np.array(cols_out)


def _scatter(grad: np.ndarray, idx: np.ndarray, slices: list[slice], out: np.ndarray, axis: int, span: int) -> None:
    """out[..., slices[t], ...] += grad where idx == t, along ``axis`` (2: rows, 3: cols).

    When the stride exceeds the window's span no cell is reached by two taps, so the
    masked gradient is written straight into place instead of added.
    """
    disjoint = len(slices) == 1 or slices[0].step >= span
    if disjoint and len(slices) == 2:  # idx is 0 or 1: second tap gets g·idx, first g − g·idx (exact)
        second = out[:, :, slices[1]] if axis == 2 else out[:, :, :, slices[1]]
        first = out[:, :, slices[0]] if axis == 2 else out[:, :, :, slices[0]]
        np.multiply(grad, idx, out=second)
        np.subtract(grad, second, out=first)
        return
    for t, sl in enumerate(slices):
        view = out[:, :, sl] if axis == 2 else out[:, :, :, sl]
        if disjoint:
            np.multiply(grad, idx == t, out=view)
        else:
            view += np.where(idx == t, grad, 0)


def _numpy_backward(grad: np.ndarray, ctx: Context) -> np.ndarray:
    """The NumPy path of :func:`max_pool2d_backward`: dx [N, C, H, W].

    Two passes mirroring forward: to the winning column of each window, then within
    that column to the winning row.
    """
    if "pieces" not in ctx:
        return _numpy_backward_part(grad, ctx, None)
    grad = np.asarray(grad, dtype=ctx.dtype)
    n = ctx.x_shape[0]
    dx = np.empty(ctx.x_shape, dtype=ctx.dtype)
    starts = [n * k // len(ctx.pieces) for k in range(len(ctx.pieces) + 1)]

    def work(k: int, p: int) -> None:
        a, b = starts[k], starts[k + 1]
        _numpy_backward_part(grad[a:b], ctx.pieces[k], dx[a:b])

    parallel(work, len(ctx.pieces))
    return dx


def _numpy_backward_part(grad: np.ndarray, ctx: Context, out: np.ndarray | None) -> np.ndarray:
    """dx of one part (into ``out`` if given): the masked gradient scattered to the winning
    columns, then rows, in the padded frame; NaN and −∞ windows added at their winners."""
    n, c, h, w = ctx.x_shape
    grad = np.asarray(grad, dtype=ctx.dtype)
    hp, wp = ctx.padded
    special = ctx.special
    if special is not None:
        (pos, rows, cols), grad = special, grad.copy()
        special_grad = grad[pos]
        grad[pos] = 0
    g_cols = np.zeros((n, c, grad.shape[2], wp), dtype=ctx.dtype)
    _scatter(grad, ctx.cidx, ctx.col_taps, g_cols, 3, ctx.span[1])
    dxp = np.zeros((n, c, hp, wp), dtype=ctx.dtype)
    _scatter(g_cols, ctx.ridx, ctx.row_taps, dxp, 2, ctx.span[0])
    if special is not None:
        keep = rows >= 0
        np.add.at(dxp, (pos[0][keep], pos[1][keep], rows[keep], cols[keep]), special_grad[keep])
    if out is None:
        return np.ascontiguousarray(unpad2d(dxp, ctx.pads, (h, w)))
    out[...] = unpad2d(dxp, ctx.pads, (h, w))
    return out
