"""Fast NumPy max pooling: separable, two passes, split over worker threads.

The definition is :func:`glassnet.functional.pool.max_pool2d_forward` (a running maximum
over the window's taps, the winner recorded per window). This module computes the same
outputs and routes the gradient to the same cells, faster on NumPy:

* separable: the max of a window is the max over its columns of each column's max. A first
  pass takes the k_h row taps (whole rows, contiguous in memory) and keeps, per column,
  the max and the row it came from; a second pass takes the k_w column taps of that
  smaller array. Ties go to the first maximum in row-major order (a later column wins
  only if strictly greater, or equal and from an earlier row);
* tap indices are kept in uint8 (a quarter of the memory traffic of int32), so windows
  of more than 255 cells are left to the reference (:func:`supports`);
* windows whose maximum is NaN or −∞ are rare: they are found after the fact and given
  PyTorch's winner by a slow loop (:func:`_nonfinite_windows`);
* large batches are pooled in parts, one per worker thread; every sample is pooled on
  its own, so the result is the same bit for bit.
"""

from __future__ import annotations

from typing import Any

import numpy as np

from ..backend import as_float, num_workers, parallel
from ..functional._args import Pads, Pair, pair
from ..functional._op import Context
from ..functional.pool import pool_geometry
from ..functional.window import axis_taps, pad2d, padded_extent, unpad2d

# Inputs with at least this many elements are pooled in parts, one per worker thread.
POOL_PARALLEL_MIN = 2**20


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


def max_pool2d_forward(
    x: Any,
    kernel_size: Any,
    stride: Any = None,
    padding: Any = 0,
    dilation: Any = 1,
    ceil_mode: bool = False,
) -> tuple[np.ndarray, Context]:
    """Fast NumPy max pooling: the reference's arguments, output and winners (see the module docstring).

    Large batches are split among glassnet's worker threads (:func:`glassnet.backend.parallel`);
    every sample is pooled on its own, so the result is the same bit for bit.
    """
    x = as_float(x, "max_pool2d input")
    pool_geometry("max_pool2d", x, kernel_size, stride, padding, dilation, ceil_mode)  # errors name the whole input
    n = x.shape[0]
    parts = min(num_workers(), n) if x.size >= POOL_PARALLEL_MIN else 1
    if parts == 1:
        return _max_pool2d_forward(x, kernel_size, stride, padding, dilation, ceil_mode)
    pieces = parallel(
        lambda k, p: _max_pool2d_forward(
            x[n * k // p : n * (k + 1) // p], kernel_size, stride, padding, dilation, ceil_mode
        ),
        parts,
    )
    out = np.concatenate([o for o, _ in pieces])
    return out, Context(pieces=[c for _, c in pieces], x_shape=x.shape, dtype=x.dtype)


def _max_pool2d_forward(
    x: np.ndarray, kernel_size: Any, stride: Any, padding: Any, dilation: Any, ceil_mode: bool
) -> tuple[np.ndarray, Context]:
    """Max pooling of one batch (or part of one), in the calling thread.

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


def max_pool2d_backward(grad: np.ndarray, ctx: Context) -> tuple[np.ndarray]:
    """Route each output gradient to its window's winning cell, as the reference does.

    Two passes mirroring forward: to the winning column of each window, then within
    that column to the winning row. dx has the input's shape [N, C, H, W].
    """
    if "pieces" not in ctx:
        return (_max_pool2d_backward(grad, ctx, None),)
    grad = np.asarray(grad, dtype=ctx.dtype)
    n = ctx.x_shape[0]
    dx = np.empty(ctx.x_shape, dtype=ctx.dtype)
    starts = [n * k // len(ctx.pieces) for k in range(len(ctx.pieces) + 1)]

    def work(k: int, p: int) -> None:
        a, b = starts[k], starts[k + 1]
        _max_pool2d_backward(grad[a:b], ctx.pieces[k], dx[a:b])

    parallel(work, len(ctx.pieces))
    return (dx,)


def _max_pool2d_backward(grad: np.ndarray, ctx: Context, out: np.ndarray | None) -> np.ndarray:
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


def supports(x: Any = None, kernel_size: Any = None, *args: Any, **kwargs: Any) -> bool:
    """NumPy input and windows of at most 255 cells (the winners are uint8); the rest runs the reference."""
    x = kwargs.get("x", x)
    if hasattr(x, "__array_namespace__") and not isinstance(x, np.ndarray):
        return False  # passed by keyword: the dispatcher only looks at positional arguments
    try:
        kh, kw = pair(kwargs.get("kernel_size", kernel_size), "kernel_size")
    except (TypeError, ValueError):
        return False  # the reference raises the error
    return kh * kw <= 255
