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
    n, c = x.shape[:2]
    groups, fg, ckk = w_mat.shape
    g = _geometry(geometry)
    ho, wo = g[-2:]
    cols = np.empty((n, groups * ckk, ho * wo), dtype=x.dtype)
    out = np.empty((n, groups * fg, ho, wo), dtype=x.dtype)
    out4 = out.reshape(n, groups, fg, ho * wo)
    cols4 = cols.reshape(n, groups, ckk, ho * wo)
    kernels = _kernels()
    pieces = _pieces(n)
    cuts = _cuts(g[1], g[3], g[5], g[7], wo, x.shape[3])

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
    w_t = np.ascontiguousarray(w_mat.transpose(0, 2, 1)) if need_dx else None
    kernels = _kernels()
    pieces = _pieces(n)
    cuts = _cuts(g[1], g[3], g[5], g[7], wo, x_shape[3])

    def work(k: int, p: int) -> None:
        dcols = np.empty((IMAGES_PER_PIECE, groups, ckk, ho * wo), dtype=grad.dtype) if need_dx else None
        for n0, n1 in pieces[k::p]:
            np.matmul(g4[n0:n1], cols4[n0:n1].transpose(0, 1, 3, 2), out=per_image[n0:n1])
            if need_dx:
                d = dcols[: n1 - n0]
                np.matmul(w_t, g4[n0:n1], out=d)
                kernels.col2im(d.reshape(n1 - n0, groups * ckk, ho * wo), n0, n1, *g, dx, cuts)

    parallel(work, min(parts, len(pieces)))
    dw = np.empty(per_image.shape[1:], dtype=grad.dtype)  # added in image order: one rounding on any thread count
    kernels.add_rows(per_image.reshape(n, -1), dw.reshape(-1))
    return dx, dw
