"""Pooling: max, average, adaptive average and global average, forward and backward.

Output size per axis (``s`` defaults to the kernel size ``k``):

    floor mode: H_out = floor((H + 2P − d·(k−1) − 1) / s) + 1
    ceil mode:  H_out = ceil((H + 2P − d·(k−1) − 1) / s) + 1, minus one if the last
                window would start inside the bottom/right padding (PyTorch's rule)

so a 5×5 map pooled 2×2 / stride 2 gives 2×2 in floor mode and 3×3 in ceil mode,
where the partial windows at the right and bottom edges reduce over their valid
cells only (the lectures' "if at the end of the row, we just continue").

Both poolings run over the window taps of :mod:`glassnet.functional.window`:
max pooling keeps a running maximum and the index of the tap that produced it
(strictly greater replaces, so ties go to the first maximum in row-major order, as
in PyTorch); backward sends each output gradient to that one cell.
"""

from __future__ import annotations

import math
from typing import Any

import numpy as np

from ..backend import as_float, num_workers, parallel
from ._args import Pads, Pair, conv_padding, pair, window_out
from ._op import Context, Op
from .window import check_4d, describe_window, pad2d, padded_extent, taps, unpad2d

# Inputs with at least this many elements are pooled in parts, one per worker thread.
POOL_PARALLEL_MIN = 2**20


def pool_geometry(
    op: str, x: Any, kernel_size: Any, stride: Any, padding: Any, dilation: Any, ceil_mode: bool
) -> tuple[Pair, Pair, Pair, Pads, Pair]:
    """Normalised (kernel, stride, dilation, pads, (H_out, W_out)) of a pooling.

    ``x`` is the input or just its shape. Raises ``ValueError`` naming the received
    value when the window does not fit or the padding exceeds half the window.
    """
    if isinstance(x, tuple):
        if len(x) != 4:
            raise ValueError(f"{op} expected a 4-D input [N, C, H, W], got shape {x}")
        x = np.empty((0, 0, *x[2:]), dtype=np.float32)
    check_4d(x, op)
    k = pair(kernel_size, "kernel_size")
    s = k if stride is None else pair(stride, "stride")
    d = pair(dilation, "dilation")
    if isinstance(padding, str):
        raise ValueError(f"{op}: padding must be an int or a pair, got {padding!r}")
    pads = conv_padding(padding, k, s, d, x.shape[2:])
    for axis, (kk, dd, (lo, hi)) in enumerate(zip(k, d, pads, strict=True)):
        span = dd * (kk - 1) + 1
        if max(lo, hi) > span // 2:
            raise ValueError(
                f"{op}: padding {padding!r} must be at most half the window "
                f"({describe_window(k, d)}): got {max(lo, hi)} > {span // 2} on axis {axis}"
            )
    h, w = x.shape[2:]
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


def _axis_taps(k: int, s: int, d: int, out: int) -> list[slice]:
    """The k strided slices of one axis that a window's taps read."""
    return [slice(i * d, i * d + s * (out - 1) + 1, s) for i in range(k)]


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
    """Max pooling over k_h×k_w windows. x [N, C, H, W] → [N, C, H_out, W_out].

    Padding cells hold −∞ (they never win). ``stride`` defaults to ``kernel_size``.
    Output size per axis: floor((H + P_t + P_b − d·(k−1) − 1)/s) + 1 (``ceil_mode``: ceil,
    dropping a window that would start in the right/bottom padding).

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
    x = as_float(x, "max_pool2d input")
    k, s, d, pads, out_hw = pool_geometry("max_pool2d", x, kernel_size, stride, padding, dilation, ceil_mode)
    if k[0] * k[1] > 255:
        raise ValueError(f"max_pool2d: windows of more than 255 cells are not supported, got {k}")
    _, extra = padded_extent(x.shape[2:], k, s, d, pads, out_hw)
    xp = pad2d(x, pads, -np.inf, extra)
    row_taps = _axis_taps(k[0], s[0], d[0], out_hw[0])
    col_taps = _axis_taps(k[1], s[1], d[1], out_hw[1])
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
    """Route each output gradient to the cell that held its window's (first) maximum.

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


max_pool2d = Op(max_pool2d_forward, max_pool2d_backward)


def _avg_divisor(n: int, k: int, s: int, pad: tuple[int, int], out: int, include_pad: bool) -> np.ndarray:
    """Per-output-position window length along one axis (PyTorch's rule).

    With ``count_include_pad`` a window counts the padding cells it covers but not
    the part of a ceil-mode window that hangs past the padding.
    """
    start = np.arange(out) * s - pad[0]
    end = np.minimum(start + k, n + pad[1])
    if include_pad:
        return (end - start).astype(np.float64)
    return (np.minimum(end, n) - np.maximum(start, 0)).astype(np.float64)


def avg_pool2d_forward(
    x: Any,
    kernel_size: Any,
    stride: Any = None,
    padding: Any = 0,
    ceil_mode: bool = False,
    count_include_pad: bool = True,
    divisor_override: int | None = None,
) -> tuple[np.ndarray, Context]:
    """Average pooling. x [N, C, H, W] → [N, C, H_out, W_out].

    Each output is the window sum divided by the window size: with
    ``count_include_pad=True`` (the default) zero-padding cells count, otherwise only
    real cells do; partial ceil-mode windows never count cells past the padding.
    """
    x = as_float(x, "avg_pool2d input")
    k, s, d, pads, out_hw = pool_geometry("avg_pool2d", x, kernel_size, stride, padding, 1, ceil_mode)
    _, extra = padded_extent(x.shape[2:], k, s, d, pads, out_hw)
    xp = pad2d(x, pads, 0.0, extra)
    acc = None
    for _, (rows, cols) in taps(k, s, d, out_hw):
        v = xp[:, :, rows, cols]
        if acc is None:
            acc = v.copy()
        else:
            acc += v
    if divisor_override is not None:
        if not isinstance(divisor_override, int) or divisor_override < 1:
            raise ValueError(f"avg_pool2d: divisor_override must be a positive int, got {divisor_override!r}")
        div = np.full(out_hw, float(divisor_override))
    else:
        h, w = x.shape[2:]
        dh = _avg_divisor(h, k[0], s[0], pads[0], out_hw[0], count_include_pad)
        dw = _avg_divisor(w, k[1], s[1], pads[1], out_hw[1], count_include_pad)
        div = np.outer(dh, dw)
    inv = (1.0 / div).astype(x.dtype)
    if np.all(div == div.flat[0]):
        acc /= x.dtype.type(div.flat[0])
    else:
        acc /= div.astype(x.dtype)
    ctx = Context(x_shape=x.shape, inv=inv, k=k, s=s, d=d, pads=pads, out_hw=out_hw, padded=xp.shape[2:], dtype=x.dtype)
    return acc, ctx


def avg_pool2d_backward(grad: np.ndarray, ctx: Context) -> tuple[np.ndarray]:
    """Spread each output gradient evenly (÷ its divisor) over its window's cells."""
    n, c, h, w = ctx.x_shape
    g = np.asarray(grad, dtype=ctx.dtype) * ctx.inv
    dxp = np.zeros((n, c, *ctx.padded), dtype=ctx.dtype)
    for _, (rows, cols) in taps(ctx.k, ctx.s, ctx.d, ctx.out_hw):
        dxp[:, :, rows, cols] += g
    return (np.ascontiguousarray(unpad2d(dxp, ctx.pads, (h, w))),)


avg_pool2d = Op(avg_pool2d_forward, avg_pool2d_backward)


def _adaptive_matrix(n: int, out: int, dtype: np.dtype) -> np.ndarray:
    """[out, n] averaging matrix: row i averages cells floor(i·n/out) … ceil((i+1)·n/out)−1."""
    mat = np.zeros((out, n), dtype=np.float64)
    for i in range(out):
        lo = (i * n) // out
        hi = math.ceil((i + 1) * n / out)
        mat[i, lo:hi] = 1.0 / (hi - lo)
    return mat.astype(dtype)


def adaptive_avg_pool2d_forward(x: Any, output_size: Any) -> tuple[np.ndarray, Context]:
    """Average-pool to a fixed output size. x [N, C, H, W] → [N, C, H_out, W_out].

    Output cell i along an axis of length n averages input cells
    ``floor(i·n/out) … ceil((i+1)·n/out) − 1`` (PyTorch's windows, which may overlap).
    ``output_size`` is an int, a pair, or a pair with None for "keep this axis".
    """
    x = as_float(x, "adaptive_avg_pool2d input")
    check_4d(x, "adaptive_avg_pool2d")
    h, w = x.shape[2:]
    if isinstance(output_size, tuple | list) and len(output_size) == 2:
        oh = h if output_size[0] is None else output_size[0]
        ow = w if output_size[1] is None else output_size[1]
    else:
        oh = ow = output_size
    oh, ow = pair((oh, ow), "output_size")
    ph = _adaptive_matrix(h, oh, x.dtype)
    pw = _adaptive_matrix(w, ow, x.dtype)
    if (oh, ow) == (h, w):
        out = x.copy()
    elif (oh, ow) == (1, 1):
        out = x.mean(axis=(2, 3), keepdims=True)
    else:
        out = np.matmul(ph, np.matmul(x, pw.T))
    return out, Context(ph=ph, pw=pw, dtype=x.dtype)


def adaptive_avg_pool2d_backward(grad: np.ndarray, ctx: Context) -> tuple[np.ndarray]:
    """dx = Phᵀ · dOut · Pw (the transposes of the two averaging matrices)."""
    g = np.asarray(grad, dtype=ctx.dtype)
    return (np.matmul(ctx.ph.T, np.matmul(g, ctx.pw)),)


adaptive_avg_pool2d = Op(adaptive_avg_pool2d_forward, adaptive_avg_pool2d_backward)


def global_avg_pool2d_forward(x: Any) -> tuple[np.ndarray, Context]:
    """Mean over each whole feature map. x [N, C, H, W] → [N, C, 1, 1]."""
    x = as_float(x, "global_avg_pool2d input")
    check_4d(x, "global_avg_pool2d")
    return x.mean(axis=(2, 3), keepdims=True), Context(x_shape=x.shape, dtype=x.dtype)


def global_avg_pool2d_backward(grad: np.ndarray, ctx: Context) -> tuple[np.ndarray]:
    """Every cell of a map receives 1/(H·W) of its output's gradient."""
    n, c, h, w = ctx.x_shape
    g = np.asarray(grad, dtype=ctx.dtype) / (h * w)
    return (np.broadcast_to(g, ctx.x_shape).copy(),)


global_avg_pool2d = Op(global_avg_pool2d_forward, global_avg_pool2d_backward)
