"""The fast conv's ``'gather'`` algorithm: im2col image by image, straight from NCHW, in Numba.

The definition is :mod:`glassnet.functional.conv` (im2col by taps, one matrix product,
col2im by taps); :mod:`.conv` chooses this algorithm for strided and dilated layers and
for whatever else the shift, Winograd and batch-innermost layouts do not suit.

Each image's im2col ``cols[n]`` is [C·k_h·k_w, H_out·W_out], row ``c·k_h·k_w + i·k_w + j``
holding tap (i, j) of channel c: ``x[n, c, oy·s_h + i·d_h − P_t, ox·s_w + j·d_w − P_l]``, 0 in
the padding. A Numba kernel writes it from x directly: no padded copy, no transposes. Then

* forward: ``out[n] = W @ cols[n]`` per image (one batched product): [F, H_out·W_out] is
  already image n of the NCHW output;
* dW = Σ_n dOut[n] @ cols[n]ᵀ, one product per image, added in image order;
* dx: ``dcols[n] = Wᵀ @ dOut[n]``, whose rows a second kernel adds back tap by tap (col2im).

Images are split among the worker threads in ranges fixed by the batch size alone, and the
per-image weight gradients are added in image order: bit-identical on any thread count.
Groups: image n's product is done per group (broadcast over the batch).

In float32, where NumPy's wheel ships its OpenBLAS (:mod:`._blas`), each worker's share is one
Numba call (:func:`_forward_part`, :func:`_backward_part`) that calls OpenBLAS's ``sgemm`` itself:
the same products NumPy's ``matmul`` makes here, without going back to Python (and the GIL)
between them, so two threads run at once even on LeNet-5's 0.5 ms layers. Otherwise (float64,
other NumPy builds) the parts are NumPy products around the same im2col and col2im kernels.
"""

from __future__ import annotations

import functools
from types import SimpleNamespace
from typing import Any

import numpy as np

from ..backend import parallel
from ._jit import AVAILABLE as AVAILABLE
from ._jit import compile_kernels

# Images a worker handles at a time (fixed: results never depend on the thread count).
IMAGES_PER_PIECE = 8
# AVAILABLE: Numba is a dependency; without it (a Python it has no wheel for) 'hwn' runs instead.


def _im2col(x, n0, n1, kh, kw, sh, sw, dh, dw, pt, pl, ho, wo, cols, cuts):  # noqa: ANN001, ANN202
    """cols[n − n0, c·kh·kw + i·kw + j, oy·wo + ox] = x[n, c, oy·sh + i·dh − pt, ox·sw + j·dw − pl] (0 outside).

    ``cuts[j]`` = (lo, hi): the output columns ox whose input column is inside x (:func:`_cuts`).
    """
    _, c_count, h, w = x.shape
    for n in range(n0, n1):
        for c in range(c_count):
            for i in range(kh):
                for j in range(kw):
                    row = (c * kh + i) * kw + j
                    off = j * dw - pl  # input column = ox·sw + off
                    lo, hi = cuts[j, 0], cuts[j, 1]
                    for oy in range(ho):
                        r = oy * sh + i * dh - pt
                        base = oy * wo
                        if r < 0 or r >= h:
                            for ox in range(wo):
                                cols[n - n0, row, np.uint64(base + ox)] = 0.0
                            continue
                        for ox in range(lo):
                            cols[n - n0, row, np.uint64(base + ox)] = 0.0
                        for ox in range(lo, hi):
                            cols[n - n0, row, np.uint64(base + ox)] = x[n, c, r, np.uint64(ox * sw + off)]
                        for ox in range(hi, wo):
                            cols[n - n0, row, np.uint64(base + ox)] = 0.0


def _col2im(dcols, n0, n1, kh, kw, sh, sw, dh, dw, pt, pl, ho, wo, dx, cuts):  # noqa: ANN001, ANN202
    """dx[n, c] = Σ over taps (in order) of dcols[n − n0, c·kh·kw + i·kw + j] added back at the tap's positions."""
    _, c_count, h, w = dx.shape
    for n in range(n0, n1):
        for c in range(c_count):
            for r in range(h):
                for q in range(w):
                    dx[n, c, r, q] = 0.0
            for i in range(kh):
                for j in range(kw):
                    row = (c * kh + i) * kw + j
                    off = j * dw - pl
                    lo, hi = cuts[j, 0], cuts[j, 1]
                    for oy in range(ho):
                        r = oy * sh + i * dh - pt
                        if r < 0 or r >= h:
                            continue
                        base = oy * wo
                        for ox in range(lo, hi):
                            q = np.uint64(ox * sw + off)
                            dx[n, c, r, q] = dx[n, c, r, q] + dcols[n - n0, row, np.uint64(base + ox)]


def _add_rows(parts, out):  # noqa: ANN001, ANN202
    """out = parts[0] + parts[1] + … in that order ([P, M] → [M]), as a loop of NumPy ``+=`` would."""
    p, m = parts.shape
    for i in range(m):
        out[i] = parts[0, i]
    for k in range(1, p):
        for i in range(m):
            out[i] = out[i] + parts[k, i]


@functools.cache
def _kernels() -> SimpleNamespace:
    """The kernels compiled by Numba (``nogil``, cached on disk) at the first gathered convolution."""
    return compile_kernels(im2col=_im2col, col2im=_col2im, add_rows=_add_rows)


# -- a part as one Numba call: float32, OpenBLAS's sgemm called inside (glassnet.fast._blas) ---------------
# The part kernels call these; _part_kernels() binds them (compiled) before compiling the part kernels.
_im2col_nb = _col2im_nb = _sgemm = None
ROW_MAJOR, NO_TRANS, TRANS = np.int32(101), np.int32(111), np.int32(112)  # CBLAS's enums (as in ._blas)


def _forward_part(x, w_mat, bias, cols, out, pieces, k, p, kh, kw, sh, sw, dh, dw, pt, pl, ho, wo, cuts):  # noqa: ANN001, ANN202
    """Pieces k, k+p, k+2p, … of :func:`forward`: the piece's im2col, then per image and group
    out[n, g·F/G:] = w_mat[g] @ cols[n, g·C/G·k_h·k_w:] (one sgemm), + bias (where it has F entries).

    x [N, C, H, W]; w_mat [G, F/G, C/G·k_h·k_w]; cols [N, C·k_h·k_w, H_out·W_out]; out [N, F, H_out·W_out];
    pieces [P, 2]: image ranges.
    """
    groups, fg, ckk = w_mat.shape
    npos = ho * wo
    one, zero = np.float32(1.0), np.float32(0.0)
    for i in range(k, pieces.shape[0], p):
        n0, n1 = pieces[i, 0], pieces[i, 1]
        _im2col_nb(x, n0, n1, kh, kw, sh, sw, dh, dw, pt, pl, ho, wo, cols[n0:n1], cuts)
        for n in range(n0, n1):
            for g in range(groups):
                a, b, c = w_mat[g], cols[n, g * ckk :], out[n, g * fg :]
                _sgemm(ROW_MAJOR, NO_TRANS, NO_TRANS, fg, npos, ckk, one, a.ctypes, ckk, b.ctypes, npos,
                       zero, c.ctypes, npos)  # fmt: skip
            for f in range(bias.shape[0]):
                for q in range(npos):
                    out[n, f, q] = out[n, f, q] + bias[f]


def _backward_part(grad, cols, w_t, per_image, dx, pieces, k, p, kh, kw, sh, sw, dh, dw, pt, pl, ho, wo, cuts):  # noqa: ANN001, ANN202
    """Pieces k, k+p, … of :func:`backward`: per image and group, per_image[n, g] = dOut[n, g] @ cols[n, g]ᵀ
    (one sgemm); where dx has images, also dcols = w_t[g] @ dOut[n, g] (one sgemm), added back into dx (col2im).

    grad [N, F, H_out·W_out]; cols [N, C·k_h·k_w, H_out·W_out]; w_t [G, C/G·k_h·k_w, F/G];
    per_image [N, G, F/G, C/G·k_h·k_w]; dx [N, C, H, W], or with no images for no input gradient.
    """
    groups, ckk, fg = w_t.shape
    npos = ho * wo
    one, zero = np.float32(1.0), np.float32(0.0)
    need_dx = dx.shape[0] > 0
    dcols = np.empty((IMAGES_PER_PIECE if need_dx else 0, groups * ckk, npos), dtype=np.float32)
    for i in range(k, pieces.shape[0], p):
        n0, n1 = pieces[i, 0], pieces[i, 1]
        for n in range(n0, n1):
            for g in range(groups):
                a, b, c = grad[n, g * fg :], cols[n, g * ckk :], per_image[n, g]
                _sgemm(ROW_MAJOR, NO_TRANS, TRANS, fg, ckk, npos, one, a.ctypes, npos, b.ctypes, npos,
                       zero, c.ctypes, ckk)  # fmt: skip
                if need_dx:
                    d = dcols[n - n0, g * ckk :]
                    _sgemm(ROW_MAJOR, NO_TRANS, NO_TRANS, ckk, npos, fg, one, w_t[g].ctypes, fg, a.ctypes, npos,
                           zero, d.ctypes, npos)  # fmt: skip
        if need_dx:
            _col2im_nb(dcols[: n1 - n0], n0, n1, kh, kw, sh, sw, dh, dw, pt, pl, ho, wo, dx, cuts)


@functools.cache
def _part_kernels() -> SimpleNamespace | None:
    """The one-call part kernels, or None where NumPy's OpenBLAS cannot be called from Numba (:mod:`._blas`)."""
    global _im2col_nb, _col2im_nb, _sgemm
    try:
        from ._blas import sgemm
    except (ImportError, OSError):
        return None
    kernels = _kernels()
    _im2col_nb, _col2im_nb, _sgemm = kernels.im2col, kernels.col2im, sgemm
    return compile_kernels(forward_part=_forward_part, backward_part=_backward_part)


def one_call_parts(dtype: Any) -> bool:
    """Whether :func:`forward` and :func:`backward` run each part as one Numba call for ``dtype``:
    float32, where Numba and NumPy's bundled OpenBLAS are there (:mod:`._blas`). Such a part holds the
    GIL only to start, so two threads run two parts at once, and even LeNet-5's small layers gain."""
    return AVAILABLE and dtype == np.float32 and _part_kernels() is not None


def _cuts(kw: int, sw: int, dw: int, pl: int, wo: int, w: int) -> np.ndarray:
    """[k_w, 2]: for tap column j, the output columns lo ≤ ox < hi whose input column
    ox·s_w + j·d_w − P_l lies inside [0, W) (the others read padding)."""
    cuts = np.empty((kw, 2), dtype=np.int64)
    for j in range(kw):
        off = j * dw - pl
        lo = min(wo, max(0, -(off // sw)))  # first ox with ox·sw + off ≥ 0
        cuts[j] = lo, max(lo, min(wo, (w - 1 - off) // sw + 1))
    return cuts


def _pieces(n: int) -> list[tuple[int, int]]:
    return [(a, min(n, a + IMAGES_PER_PIECE)) for a in range(0, n, IMAGES_PER_PIECE)]


def _geometry(ctx_or_args: Any) -> tuple[int, ...]:
    (kh, kw), (sh, sw), (dh, dw), (pt, pl), (ho, wo) = ctx_or_args
    return kh, kw, sh, sw, dh, dw, pt, pl, ho, wo


def forward(
    x: np.ndarray, w_mat: np.ndarray, bias: np.ndarray | None, geometry: Any, parts: int
) -> tuple[np.ndarray, np.ndarray]:
    """(out [N, F, H_out, W_out], cols [N, C·k_h·k_w, H_out·W_out]) for ``w_mat`` [G, F/G, C/G·k_h·k_w].

    ``geometry`` = ((k_h, k_w), (s_h, s_w), (d_h, d_w), (P_t, P_l), (H_out, W_out)).
    """
    x = np.ascontiguousarray(x)
    n = x.shape[0]
    groups, fg, ckk = w_mat.shape
    g = _geometry(geometry)
    ho, wo = g[-2:]
    cols = np.empty((n, groups * ckk, ho * wo), dtype=x.dtype)
    out = np.empty((n, groups * fg, ho, wo), dtype=x.dtype)
    pieces = _pieces(n)
    cuts = _cuts(g[1], g[3], g[5], g[7], wo, x.shape[3])
    if one_call_parts(x.dtype) and w_mat.dtype == x.dtype and (bias is None or bias.dtype == x.dtype):
        part = _part_kernels().forward_part
        b = np.empty(0, x.dtype) if bias is None else np.ascontiguousarray(bias)
        table, out3 = np.array(pieces, dtype=np.int64), out.reshape(n, groups * fg, ho * wo)
        parallel(lambda k, p: part(x, w_mat, b, cols, out3, table, k, p, *g, cuts), min(parts, len(pieces)))
        return out, cols
    out4 = out.reshape(n, groups, fg, ho * wo)
    cols4 = cols.reshape(n, groups, ckk, ho * wo)
    kernels = _kernels()

    def work(k: int, p: int) -> None:
        for n0, n1 in pieces[k::p]:
            kernels.im2col(x, n0, n1, *g, cols[n0:n1], cuts)
            np.matmul(w_mat, cols4[n0:n1], out=out4[n0:n1])

    parallel(work, min(parts, len(pieces)))
    if bias is not None:
        out += bias.reshape(1, -1, 1, 1)
    return out, cols


def backward(
    grad: np.ndarray, cols: np.ndarray, w_mat: np.ndarray, x_shape: tuple[int, ...], geometry: Any, parts: int,
    need_dx: bool,
) -> tuple[np.ndarray | None, np.ndarray]:  # fmt: skip
    """(dx [N, C, H, W] or None, dW as [G, F/G, C/G·k_h·k_w]) of :func:`forward` for dOut = ``grad``."""
    grad = np.ascontiguousarray(grad)
    n = grad.shape[0]
    groups, fg, ckk = w_mat.shape
    g = _geometry(geometry)
    ho, wo = g[-2:]
    g4 = grad.reshape(n, groups, fg, ho * wo)
    cols4 = cols.reshape(n, groups, ckk, ho * wo)
    per_image = np.empty((n, groups, fg, ckk), dtype=grad.dtype)
    dx = np.empty(x_shape, dtype=grad.dtype) if need_dx else None
    w_t = np.ascontiguousarray(w_mat.transpose(0, 2, 1))
    kernels = _kernels()
    pieces = _pieces(n)
    cuts = _cuts(g[1], g[3], g[5], g[7], wo, x_shape[3])
    if one_call_parts(grad.dtype) and cols.dtype == w_mat.dtype == grad.dtype:
        part = _part_kernels().backward_part
        table, g3 = np.array(pieces, dtype=np.int64), grad.reshape(n, groups * fg, ho * wo)
        d = dx if dx is not None else np.empty((0, 0, 0, 0), grad.dtype)
        parallel(lambda k, p: part(g3, cols, w_t, per_image, d, table, k, p, *g, cuts), min(parts, len(pieces)))
        return dx, _in_image_order(per_image, kernels)

    def work(k: int, p: int) -> None:
        dcols = np.empty((IMAGES_PER_PIECE, groups, ckk, ho * wo), dtype=grad.dtype) if need_dx else None
        for n0, n1 in pieces[k::p]:
            np.matmul(g4[n0:n1], cols4[n0:n1].transpose(0, 1, 3, 2), out=per_image[n0:n1])
            if need_dx:
                d = dcols[: n1 - n0]
                np.matmul(w_t, g4[n0:n1], out=d)
                kernels.col2im(d.reshape(n1 - n0, groups * ckk, ho * wo), n0, n1, *g, dx, cuts)

    parallel(work, min(parts, len(pieces)))
    return dx, _in_image_order(per_image, kernels)


def _in_image_order(per_image: np.ndarray, kernels: SimpleNamespace) -> np.ndarray:
    """dW = per_image[0] + per_image[1] + …, in image order: one rounding on any thread count."""
    dw = np.empty(per_image.shape[1:], dtype=per_image.dtype)
    kernels.add_rows(per_image.reshape(per_image.shape[0], -1), dw.reshape(-1))
    return dw
