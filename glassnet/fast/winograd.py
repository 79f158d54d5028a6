"""Winograd convolution for 3×3, stride-1 layers, F(2×2, 3×3) and F(4×4, 3×3): the same sums
with fewer products.

The definition of a convolution stays :mod:`glassnet.functional.conv`; these are two more
ways for the fast conv (:mod:`glassnet.fast.conv`, ``algorithm='winograd'`` and
``'winograd4'``) to compute it, tested equal to the reference to rounding like the others.

The idea (Lavin & Gray, "Fast Algorithms for Convolutional Neural Networks", 2016): cut the
output into 2×2 tiles. Each tile needs a 4×4 patch ``d`` of the (padded) input, and

    Y = Aᵀ [ (G g Gᵀ) ⊙ (Bᵀ d B) ] A        (one channel pair; 16 products instead of 36)

    Bᵀ = [[1, 0, −1, 0],      G = [[1,   0,   0 ],      Aᵀ = [[1, 1,  1,  0],
          [0, 1,  1, 0],           [½,   ½,   ½ ],            [0, 1, −1, −1]]
          [0, −1, 1, 0],           [½,  −½,   ½ ],
          [0, 1,  0, −1]]          [0,   0,   1 ]]

Summed over input channels, the 16 elementwise products become 16 matrix products:
``M[e] = U[e] @ V[e]`` with ``U[e] = (G g Gᵀ)[e]`` as [K, C] and ``V[e] = (Bᵀ d B)[e]`` as
[C, tiles]. That is 16 products per tile and channel pair where im2col needs 36
(4 per output against 9): 2.25× fewer multiplications. The transforms are only additions.
They run as Numba kernels (``nogil``, compiled once and cached), one pass each over a block
of images that stays in cache. The products are NumPy's single-threaded BLAS.

Backward, for L(Y):

* dM = A dY Aᵀ per tile (the gradient transform), then dU[e] = dM[e] @ V[e]ᵀ and
  dW = Gᵀ dU G. V is recomputed from x, not kept: it is 4× the input;
* dx is itself a convolution of dY with the kernel rotated by 180° and channels swapped,
  with padding 2 − P on each side (so P ≤ 2): it runs through the forward above.

F(4×4, 3×3) (``tile=4``) is the same with 6×6 patches and 4×4 output tiles: 36 products per
tile and channel pair for 16 outputs, 2.25 an output against F(2×2)'s 4 (and the direct sum's
9), and 36 transformed values per 16 inputs where F(2×2) writes 64, so the products and the
transformed tiles both shrink by 44 %. Its matrices (Lavin & Gray, points 0, ±1, ±2, ∞) are
written out above :func:`_input_tiles4`, with its layout: unlike F(2×2)'s, it keeps no spare
tile a row.

Rounding differs from the direct sum (the tests hold it to the reference's tolerance: float64
to 1e-10, float32 to 1e-5 relative). F(2×2)'s float32 error is about the im2col product's;
F(4×4)'s transforms multiply by up to 8 and G holds 1/6 and 1/24, so its error is about 15×
larger. Measured against float64 on ResNet-20's layers (N128, random input, weights ~ N(0, 0.1)),
largest error over largest output: im2col 1e-7, F(2×2) 2.5–4.0e-7, F(4×4) 3.6–7.1e-6, growing
with C (16 → 64; 9.8e-6 at C256, so the automatic choice keeps F(4×4) to C ≤ 128:
:data:`glassnet.fast.conv.WINOGRAD4_MAX_CHANNELS`); in float64 it stays near 1e-14. ResNet-8
trained on Fashion-MNIST with it reaches the same accuracy (92.83 %; 92.67 % with F(2×2)). An input
holding ±∞ can give NaN where the direct sum gives ±∞: the transforms subtract inputs.

Work is cut into blocks of whole images, fixed by the problem, not by the thread count. A
block's images are written by that block alone, and the weight gradient adds one partial
per block in block order, so results are bit-identical on any number of threads.
"""

from __future__ import annotations

import functools
from types import SimpleNamespace
from typing import Any

import numpy as np

from ..backend import parallel
from ..functional.conv import winograd_fits
from ._jit import AVAILABLE as AVAILABLE
from ._jit import compile_kernels

# AVAILABLE: whether this algorithm can run here. Numba is a dependency, imported at the first
# Winograd convolution (not with glassnet: it takes ~0.9 s); without it (a Python it has no
# wheel for) the im2col algorithms run instead.
#: The fast conv's algorithm names for the two, and their output tile sizes.
TILES = {"winograd": 2, "winograd4": 4}
#: A block of images is sized so that its transformed tiles take about this many bytes.
BLOCK_BYTES = 2**20
#: F(4×4, 3×3) transforms a block's images this many tiles at a time (whole images, at least
#: one), so that their scratch stays in the first-level cache.
TILE_CHUNK = 128

G = np.array([[1.0, 0.0, 0.0], [0.5, 0.5, 0.5], [0.5, -0.5, 0.5], [0.0, 0.0, 1.0]])
# F(4×4, 3×3): the kernel transform at the points 0, ±1, ±2 and ∞ (Lavin & Gray's 6×3 G)
G4 = np.array([
    [1 / 4, 0.0, 0.0], [-1 / 6, -1 / 6, -1 / 6], [-1 / 6, 1 / 6, -1 / 6],
    [1 / 24, 1 / 12, 1 / 6], [1 / 24, -1 / 12, 1 / 6], [0.0, 0.0, 1.0],
])  # fmt: skip


@functools.cache
def _kernels() -> SimpleNamespace:
    """The three kernels compiled by Numba (:func:`~glassnet.fast._jit.compile_kernels`) at the first
    Winograd convolution: compiled the first time on a machine, loaded from the disk cache after."""
    return compile_kernels(
        input_tiles=_input_tiles, output_tiles=_output_tiles, grad_tiles=_grad_tiles,
        input_tiles4=_input_tiles4, output_tiles4=_output_tiles4, grad_tiles4=_grad_tiles4,
    )  # fmt: skip


# Layout: a plane's tiles are stored row after row, each tile row tw + 1 long: the last
# tile of a row is a spare, kept at zero. With that, tile p = i·(tw+1) + j starts at
# column 2p of the padded rows (which are 2(tw+1) wide), so every loop below runs over a
# whole plane with an affine index: long loops that LLVM vectorises. Per tile row they
# were 4..16 long and ran at a third of the speed on 8×8 planes. The spares cost
# 1/tw more columns in the matrix products (6% at 32×32, 25% at 8×8).
#
# The kernels index arrays directly, the innermost axis by the loop variable (a row view
# ``a[i]`` taken inside a loop costs two atomic reference counts: 8× slower), and one or
# two arrays are written per loop. An index that may be negative makes Numba test it for
# wrapping around, which stops vectorisation, so computed offsets are cast to unsigned.


def _input_tiles(x, n0, n1, th, pt, pl, v, ev, od, ue, uo):  # noqa: ANN001, ANN202
    """v[e, c, n − n0, i·(tw+1) + j] = (Bᵀ d B)[e] of the 4×4 patch d at rows 2i−pt.., cols 2j−pl..

    Scratch: ``ev``/``od`` [(th+2)·2(tw+1)], zeroed (their borders stay zero): the padded
    plane's even and odd rows; ``ue``/``uo`` [4, th·(tw+1) + 1].
    """
    _, c_count, h, w = x.shape
    tw1 = v.shape[3] // th
    wp, plane = 2 * tw1, th * tw1
    for n in range(n0, n1):
        for c in range(c_count):
            for r in range(h):
                base = ((r + pt) // 2) * wp + pl
                if (r + pt) % 2 == 0:
                    for q in range(w):
                        ev[np.uint64(base + q)] = x[n, c, r, q]
                else:
                    for q in range(w):
                        od[np.uint64(base + q)] = x[n, c, r, q]
            # Bᵀ down the rows 2i, 2i+1, 2i+2, 2i+3 (= ev[i], od[i], ev[i+1], od[i+1]), into the
            # even columns (ue) and the odd ones (uo): tile p's columns are ue[p], uo[p], ue[p+1], uo[p+1]
            for p in range(plane + 1):
                ue[0, p] = ev[2 * p] - ev[np.uint64(2 * p + wp)]
                uo[0, p] = ev[2 * p + 1] - ev[np.uint64(2 * p + 1 + wp)]
            for p in range(plane + 1):
                ue[1, p] = od[2 * p] + ev[np.uint64(2 * p + wp)]
                uo[1, p] = od[2 * p + 1] + ev[np.uint64(2 * p + 1 + wp)]
            for p in range(plane + 1):
                ue[2, p] = ev[np.uint64(2 * p + wp)] - od[2 * p]
                uo[2, p] = ev[np.uint64(2 * p + 1 + wp)] - od[2 * p + 1]
            for p in range(plane + 1):
                ue[3, p] = od[2 * p] - od[np.uint64(2 * p + wp)]
                uo[3, p] = od[2 * p + 1] - od[np.uint64(2 * p + 1 + wp)]
            # B across
            for a in range(4):
                for p in range(plane):
                    v[4 * a, c, n - n0, p] = ue[a, p] - ue[a, p + 1]
                for p in range(plane):
                    v[4 * a + 1, c, n - n0, p] = uo[a, p] + ue[a, p + 1]
                for p in range(plane):
                    v[4 * a + 2, c, n - n0, p] = ue[a, p + 1] - uo[a, p]
                for p in range(plane):
                    v[4 * a + 3, c, n - n0, p] = uo[a, p] - uo[a, p + 1]
            for e in range(16):
                for i in range(th):
                    v[e, c, n - n0, i * tw1 + tw1 - 1] = 0.0  # the spare tiles


def _output_tiles(m, n0, n1, th, out, bias, s, ye, yo, r, relu, zero):  # noqa: ANN001, ANN202
    """out[n, k, 2i+a, 2j+b] = (Aᵀ m A)[a, b] + bias[k] for the tiles m[:, k, n − n0, i·(tw+1) + j].

    With ``relu``: max(that + r[n, k, 2i+a, 2j+b], 0) instead (a residual ``r`` unless it is
    empty), NaN kept, +0.0 (``zero[0]``) for the rest. Scratch: ``s`` [8, th·(tw+1)];
    ``ye``/``yo`` [2, th·(tw+1)].
    """
    _, k_count, ho, wo = out.shape
    plane = s.shape[1]
    tw1 = plane // th
    add = r.shape[0] > 0
    z = zero[0]
    for n in range(n0, n1):
        for k in range(k_count):
            bk = bias[k]
            # Aᵀ down each tile column b: s[b] (output row 0) and s[4 + b] (output row 1)
            for b in range(4):
                for p in range(plane):
                    s[b, p] = m[b, k, n - n0, p] + m[4 + b, k, n - n0, p] + m[8 + b, k, n - n0, p]
                for p in range(plane):
                    s[4 + b, p] = m[4 + b, k, n - n0, p] - m[8 + b, k, n - n0, p] - m[12 + b, k, n - n0, p]
            # A across: output columns 2j (ye) and 2j+1 (yo)
            for a in range(2):
                for p in range(plane):
                    ye[a, p] = s[4 * a, p] + s[4 * a + 1, p] + s[4 * a + 2, p] + bk
                for p in range(plane):
                    yo[a, p] = s[4 * a + 1, p] - s[4 * a + 2, p] - s[4 * a + 3, p] + bk
            for i in range(th):
                src = i * tw1
                for a in range(min(2, ho - 2 * i)):
                    row = 2 * i + a
                    if not relu:
                        for j in range(wo // 2):
                            out[n, k, row, 2 * j] = ye[a, np.uint64(src + j)]
                            out[n, k, row, 2 * j + 1] = yo[a, np.uint64(src + j)]
                        if wo % 2:
                            out[n, k, row, wo - 1] = ye[a, np.uint64(src + wo // 2)]
                        continue
                    for j in range(wo // 2):
                        v0, v1 = ye[a, np.uint64(src + j)], yo[a, np.uint64(src + j)]
                        if add:
                            v0 += r[n, k, row, 2 * j]
                            v1 += r[n, k, row, 2 * j + 1]
                        out[n, k, row, 2 * j] = z if v0 <= 0.0 else v0
                        out[n, k, row, 2 * j + 1] = z if v1 <= 0.0 else v1
                    if wo % 2:
                        v0 = ye[a, np.uint64(src + wo // 2)]
                        if add:
                            v0 += r[n, k, row, wo - 1]
                        out[n, k, row, wo - 1] = z if v0 <= 0.0 else v0


def _grad_tiles(g, n0, n1, th, dm, ge, go, we, wo):  # noqa: ANN001, ANN202
    """dm[e, k, n − n0, i·(tw+1) + j] = (A dY Aᵀ)[e] of dY's 2×2 tile at rows 2i.., cols 2j..

    Scratch: ``ge``/``go`` [th·2(tw+1)], zeroed: dY's even and odd rows (an odd last row or
    column, and the spare tiles, stay zero); ``we``/``wo`` [4, th·(tw+1)].
    """
    _, k_count, ho, w_out = g.shape
    tw1 = dm.shape[3] // th
    wp, plane = 2 * tw1, th * tw1
    for n in range(n0, n1):
        for k in range(k_count):
            for r in range(ho):
                base = (r // 2) * wp
                if r % 2 == 0:
                    for q in range(w_out):
                        ge[np.uint64(base + q)] = g[n, k, r, q]
                else:
                    for q in range(w_out):
                        go[np.uint64(base + q)] = g[n, k, r, q]
            # A down the rows 2i, 2i+1 (g0, g0 + g1, g0 − g1, −g1), into even and odd columns
            for p in range(plane):
                we[0, p] = ge[2 * p]
                wo[0, p] = ge[2 * p + 1]
            for p in range(plane):
                we[1, p] = ge[2 * p] + go[2 * p]
                wo[1, p] = ge[2 * p + 1] + go[2 * p + 1]
            for p in range(plane):
                we[2, p] = ge[2 * p] - go[2 * p]
                wo[2, p] = ge[2 * p + 1] - go[2 * p + 1]
            for p in range(plane):
                we[3, p] = -go[2 * p]
                wo[3, p] = -go[2 * p + 1]
            # A across: e, e + o, e − o, −o
            for a in range(4):
                for p in range(plane):
                    dm[4 * a, k, n - n0, p] = we[a, p]
                for p in range(plane):
                    dm[4 * a + 1, k, n - n0, p] = we[a, p] + wo[a, p]
                for p in range(plane):
                    dm[4 * a + 2, k, n - n0, p] = we[a, p] - wo[a, p]
                for p in range(plane):
                    dm[4 * a + 3, k, n - n0, p] = -wo[a, p]


# F(4×4, 3×3): 6×6 input patches, 4×4 output tiles, 36 products per tile and channel pair
# for 16 outputs (F(2×2, 3×3): 16 for 4). Its matrices, applied along one axis of a tile:
#
#     Bᵀ = [[4,  0, −5,  0, 1, 0],     Aᵀ = [[1, 1,  1, 1,  1, 0],
#           [0, −4, −4,  1, 1, 0],           [0, 1, −1, 2, −2, 0],
#           [0,  4, −4, −1, 1, 0],           [0, 1,  1, 4,  4, 0],
#           [0, −2, −1,  2, 1, 0],           [0, 1, −1, 8, −8, 1]]
#           [0,  2, −1, −2, 1, 0],
#           [0,  4,  0, −5, 0, 1]]
#
# Layout: tile p = i·tw + j, row after row, with no spare tile (F(2×2)'s layout has one per
# row). The chunk's padded images are kept as rows: row 4i + a of tile row i (a < 4) at
# ``rows[a, 4·(n·plane + i·tw) + col]`` and the next tile row's first two rows again at
# ``rows[4 + a]``, so tile p's patch row a starts at ``rows[a, 4p]``: four columns there, and
# the last two (the next tile's first two, or past the row's 4·tw columns for a row's last
# tile) in ``ext[a, 0..1, p]``. Every loop runs over all the chunk's tiles with an affine index.
# The constants 2, 4, 5, 8 come in ``k`` in the arrays' type (a literal is a float64, which
# would widen the arithmetic).


def _input_tiles4(x, n0, n1, chunk, th, tw, pt, pl, v, rows, ext, t, k):  # noqa: ANN001, ANN202
    """v[e = 6a + b, c, (n − n0)·plane + i·tw + j] = (Bᵀ d B)[a, b] of the 6×6 patch d at rows
    4i−pt.., cols 4j−pl.. of image n (plane = th·tw), ``chunk`` images at a time.

    Scratch, zeroed (what is never written stays zero: the padding): ``rows`` [6, 4·chunk·plane
    + 8] and ``ext`` [6, 2, chunk·plane] (see the layout above); ``t`` [6, 6, chunk·plane];
    ``k`` = (2, 4, 5, 8). The chunk's scratch stays in cache.
    """
    _, c_count, h, w = x.shape
    plane = th * tw
    two, k4, k5 = k[0], k[1], k[2]
    main = min(w, 4 * tw - pl)  # columns q < main lie in the rows; the rest (at most 2) only in ext
    # ext's entry of column q: it is column e = (q + pl) % 4 < 2 of tile (q + pl) // 4 − 1's next
    # tile (or past the row's end), as an offset from the tile row's first tile; −1: none
    ext_at = np.empty(w, np.int64)
    for q in range(w):
        col = q + pl
        ext_at[q] = (col % 4) * chunk * plane + col // 4 - 1 if col % 4 < 2 and col >= 4 else -1
    ext1 = ext.reshape(ext.size)
    span = 2 * chunk * plane  # ext1's stride between patch rows a (ext is [6, 2, chunk·plane])
    for c in range(c_count):
        for s0 in range(n0, n1, chunk):
            s1 = min(n1, s0 + chunk)
            tiles, off = (s1 - s0) * plane, (s0 - n0) * plane
            for n in range(s0, s1):
                for r in range(h):
                    ri, ra = (r + pt) // 4, (r + pt) % 4
                    for part in range(2):  # the row as patch row ra of tile row ri, and as 4 + ra of ri − 1
                        if part == 0 and ri < th:
                            a, seg = ra, (n - s0) * plane + ri * tw
                        elif part == 1 and ra < 2 and 1 <= ri <= th:
                            a, seg = 4 + ra, (n - s0) * plane + (ri - 1) * tw
                        else:
                            continue
                        base = 4 * seg + pl
                        for q in range(main):
                            rows[a, np.uint64(base + q)] = x[n, c, r, q]
                        eb = a * span + seg
                        for q in range(w):
                            if ext_at[q] >= 0:
                                ext1[np.uint64(eb + ext_at[q])] = x[n, c, r, q]
            # B along each patch row a: t[a, b] from its columns d0..d5
            for a in range(6):
                for p in range(tiles):
                    d0, d1, d2, d3 = rows[a, 4 * p], rows[a, 4 * p + 1], rows[a, 4 * p + 2], rows[a, 4 * p + 3]
                    d4, d5 = ext[a, 0, p], ext[a, 1, p]
                    u1, w1 = d4 - k4 * d2, d3 - k4 * d1
                    u2, w2 = d4 - d2, two * (d3 - d1)
                    t[a, 0, p] = (k4 * d0 - k5 * d2) + d4
                    t[a, 1, p] = u1 + w1
                    t[a, 2, p] = u1 - w1
                    t[a, 3, p] = u2 + w2
                    t[a, 4, p] = u2 - w2
                    t[a, 5, p] = (k4 * d1 - k5 * d3) + d5
            # Bᵀ down each column b: v[6a' + b] from t[0..5, b]
            for b in range(6):
                for p in range(tiles):
                    e0, e1, e2, e3, e4, e5 = t[0, b, p], t[1, b, p], t[2, b, p], t[3, b, p], t[4, b, p], t[5, b, p]
                    u1, w1 = e4 - k4 * e2, e3 - k4 * e1
                    u2, w2 = e4 - e2, two * (e3 - e1)
                    q = np.uint64(off + p)
                    v[b, c, q] = (k4 * e0 - k5 * e2) + e4
                    v[6 + b, c, q] = u1 + w1
                    v[12 + b, c, q] = u1 - w1
                    v[18 + b, c, q] = u2 + w2
                    v[24 + b, c, q] = u2 - w2
                    v[30 + b, c, q] = (k4 * e1 - k5 * e3) + e5


def _output_tiles4(m, n0, n1, chunk, th, tw, out, bias, s, y, r, relu, zero, k):  # noqa: ANN001, ANN202
    """out[n, kk, 4i+a, 4j+b] = (Aᵀ M A)[a, b] + bias[kk] for the tiles M = m[:, kk, (n − n0)·plane
    + i·tw + j] (plane = th·tw), ``chunk`` images at a time.

    With ``relu``: max(that + r[n, kk, 4i+a, 4j+b], 0) instead (a residual ``r`` unless it is
    empty), NaN kept, +0.0 (``zero[0]``) for the rest. Scratch: ``s`` [4, 6, chunk·plane];
    ``y`` [4, 4, chunk·plane]; ``k`` = (2, 4, 5, 8).
    """
    _, k_count, ho, wo = out.shape
    plane = th * tw
    add = r.shape[0] > 0
    z = zero[0]
    two, k4, k8 = k[0], k[1], k[3]
    for kk in range(k_count):
        bk = bias[kk]
        for s0 in range(n0, n1, chunk):
            s1 = min(n1, s0 + chunk)
            tiles, off = (s1 - s0) * plane, (s0 - n0) * plane
            # Aᵀ down each tile column b: s[a, b] (output row a)
            for b in range(6):
                for p in range(tiles):
                    q = np.uint64(off + p)
                    m0, m1, m2 = m[b, kk, q], m[6 + b, kk, q], m[12 + b, kk, q]
                    m3, m4, m5 = m[18 + b, kk, q], m[24 + b, kk, q], m[30 + b, kk, q]
                    s[0, b, p] = (m0 + (m1 + m2)) + (m3 + m4)
                    s[1, b, p] = (m1 - m2) + two * (m3 - m4)
                    s[2, b, p] = (m1 + m2) + k4 * (m3 + m4)
                    s[3, b, p] = ((m1 - m2) + k8 * (m3 - m4)) + m5
            # A across: y[a, b'] from s[a, 0..5], + bias
            for a in range(4):
                for p in range(tiles):
                    e0, e1, e2, e3, e4, e5 = s[a, 0, p], s[a, 1, p], s[a, 2, p], s[a, 3, p], s[a, 4, p], s[a, 5, p]
                    y[a, 0, p] = ((e0 + (e1 + e2)) + (e3 + e4)) + bk
                    y[a, 1, p] = ((e1 - e2) + two * (e3 - e4)) + bk
                    y[a, 2, p] = ((e1 + e2) + k4 * (e3 + e4)) + bk
                    y[a, 3, p] = (((e1 - e2) + k8 * (e3 - e4)) + e5) + bk
            for n in range(s0, s1):
                for i in range(th):
                    src = (n - s0) * plane + i * tw
                    for a in range(min(4, ho - 4 * i)):
                        row = 4 * i + a
                        for q in range(wo):
                            v0 = y[a, q % 4, np.uint64(src + q // 4)]
                            if relu:
                                if add:
                                    v0 += r[n, kk, row, q]
                                out[n, kk, row, q] = z if v0 <= 0.0 else v0
                            else:
                                out[n, kk, row, q] = v0


def _grad_tiles4(g, n0, n1, chunk, th, tw, dm, buf, u, k):  # noqa: ANN001, ANN202
    """dm[e = 6a + b, kk, (n − n0)·plane + i·tw + j] = (A dY Aᵀ)[a, b] of dY's 4×4 tile at rows
    4i.., cols 4j.. of image n (plane = th·tw), ``chunk`` images at a time.

    Scratch: ``buf`` [4, 4, chunk·plane], zeroed: dY by phase (what lies past its last row or
    column stays zero); ``u`` [6, 4, chunk·plane]; ``k`` = (2, 4, 5, 8).
    """
    _, k_count, ho, w_out = g.shape
    plane = th * tw
    two, k4, k8 = k[0], k[1], k[3]
    width = buf.shape[2]
    buf1 = buf.reshape(buf.size)
    col = np.empty(w_out, np.int64)  # where column q goes in a row: phase plane q % 4, index q // 4
    for q in range(w_out):
        col[q] = (q % 4) * width + q // 4
    for kk in range(k_count):
        for s0 in range(n0, n1, chunk):
            s1 = min(n1, s0 + chunk)
            tiles, off = (s1 - s0) * plane, (s0 - n0) * plane
            for n in range(s0, s1):
                for r in range(ho):
                    base = (r % 4) * 4 * width + (n - s0) * plane + (r // 4) * tw
                    for q in range(w_out):
                        buf1[np.uint64(base + col[q])] = g[n, kk, r, q]
            # A down each tile column b (rows g0..g3): g0, (g0+g2) ± (g1+g3), (g0+4g2) ± (2g1+8g3), g3
            for b in range(4):
                for p in range(tiles):
                    g0, g1, g2, g3 = buf[0, b, p], buf[1, b, p], buf[2, b, p], buf[3, b, p]
                    u[0, b, p] = g0
                    u[1, b, p] = (g0 + g2) + (g1 + g3)
                    u[2, b, p] = (g0 + g2) - (g1 + g3)
                    u[3, b, p] = (g0 + k4 * g2) + (two * g1 + k8 * g3)
                    u[4, b, p] = (g0 + k4 * g2) - (two * g1 + k8 * g3)
                    u[5, b, p] = g3
            # A across
            for a in range(6):
                for p in range(tiles):
                    e0, e1, e2, e3 = u[a, 0, p], u[a, 1, p], u[a, 2, p], u[a, 3, p]
                    q = np.uint64(off + p)
                    dm[6 * a, kk, q] = e0
                    dm[6 * a + 1, kk, q] = (e0 + e2) + (e1 + e3)
                    dm[6 * a + 2, kk, q] = (e0 + e2) - (e1 + e3)
                    dm[6 * a + 3, kk, q] = (e0 + k4 * e2) + (two * e1 + k8 * e3)
                    dm[6 * a + 4, kk, q] = (e0 + k4 * e2) - (two * e1 + k8 * e3)
                    dm[6 * a + 5, kk, q] = e3


def applies(kernel: Any, stride: Any, dilation: Any, groups: int, pads: Any) -> bool:
    """Whether this algorithm can run here on these arguments: Numba, and
    :func:`glassnet.functional.conv.winograd_fits` (3×3, stride 1, no dilation, one group, padding 0..2)."""
    return AVAILABLE and winograd_fits(kernel, stride, dilation, groups, pads)


def kernel_transform(weight: np.ndarray, tile: int = 2) -> np.ndarray:
    """U[e = αa + b, k, c] = (G g Gᵀ)[a, b] of each 3×3 kernel g = weight[k, c]: [α², K, C],
    α = tile + 2 (G of F(2×2, 3×3) or of F(4×4, 3×3)).

    As two plain matrix products over all K·C kernels at once (a stack of K·C tiny products
    took 5× longer)."""
    g = (G if tile == 2 else G4).astype(weight.dtype)
    al = g.shape[0]
    k, c = weight.shape[:2]
    kc = k * c
    gt = (weight.reshape(kc * 3, 3) @ g.T).reshape(kc, 3, al)  # g Gᵀ: [KC, i, b]
    u = g @ np.ascontiguousarray(gt.transpose(1, 0, 2)).reshape(3, kc * al)  # G (g Gᵀ): [a, KC·b]
    return np.ascontiguousarray(u.reshape(al, kc, al).transpose(0, 2, 1)).reshape(al * al, k, c)


def kernel_transform_adjoint(du: np.ndarray, tile: int = 2) -> np.ndarray:
    """dW [K, C, 3, 3] = Gᵀ dU G from dU [α², K, C] (the transpose of :func:`kernel_transform`)."""
    g = (G if tile == 2 else G4).astype(du.dtype)
    al = g.shape[0]
    k, c = du.shape[1:]
    kc = k * c
    t = np.ascontiguousarray(du.reshape(al, al, kc).transpose(0, 2, 1)).reshape(al * kc, al) @ g  # [a, KC, j]
    dw = g.T @ t.reshape(al, kc * 3)  # Gᵀ: [i, KC·j]
    return np.ascontiguousarray(dw.reshape(3, kc, 3).transpose(1, 0, 2)).reshape(k, c, 3, 3)


def _image_blocks(n: int, channels: int, tiles: int, itemsize: int, tile: int = 2) -> list[tuple[int, int]]:
    """Image ranges [n0, n1), each with about BLOCK_BYTES of transformed tiles (fixed by the problem)."""
    per_image = (tile + 2) ** 2 * channels * tiles * itemsize
    step = max(1, min(n, BLOCK_BYTES // per_image))
    return [(a, min(n, a + step)) for a in range(0, n, step)]


def _tile_buffer(channels: int, images: int, plane: int, dtype: Any, tile: int = 2) -> np.ndarray:
    """[α², channels, images + 1, plane]: one spare image keeps the α² planes and the channel
    rows from lying a power of two apart (they evicted each other from cache: 1.6× slower
    products)."""
    return np.empty(((tile + 2) ** 2, channels, images + 1, plane), dtype=dtype)


def tiles(ho: int, wo: int, tile: int = 2) -> tuple[int, int]:
    """(tile rows, tiles per row) of an H_out × W_out output: ⌈H_out / m⌉ and ⌈W_out / m⌉, m = ``tile``."""
    return (ho + tile - 1) // tile, (wo + tile - 1) // tile


def plane_tiles(ho: int, wo: int, tile: int = 2) -> int:
    """Tiles computed per image and channel: th·(tw + 1) for F(2×2) (a spare tile a row), th·tw
    for F(4×4)."""
    th, tw = tiles(ho, wo, tile)
    return th * (tw + 1) if tile == 2 else th * tw


def useful(ho: int, wo: int, tile: int = 2) -> float:
    """The share of the computed tiles' outputs that are kept (the rest: past an edge that is not
    a multiple of the tile, and F(2×2)'s spare tile a row)."""
    return ho * wo / (tile * tile * plane_tiles(ho, wo, tile))


def conv3x3(
    x: np.ndarray,
    weight: np.ndarray,
    bias: np.ndarray | None,
    pads: Any,
    parts: int,
    relu: bool = False,
    residual: np.ndarray | None = None,
    tile: int = 2,
) -> np.ndarray:
    """Cross-correlation of x [N, C, H, W] with weight [K, C, 3, 3], stride 1: [N, K, H_out, W_out].

    H_out = H + P_top + P_bottom − 2 (and W_out alike); ``pads`` = ((P_t, P_b), (P_l, P_r)).
    ``relu``: max(conv + residual, 0) instead, in the output transform (``residual`` [N, K, H_out,
    W_out] or None): no pass of its own over the output. ``tile``: 2 for F(2×2, 3×3), 4 for
    F(4×4, 3×3).
    """
    x = np.ascontiguousarray(x)
    n, c, h, w = x.shape
    k = weight.shape[0]
    (pt, pb), (pl, pr) = pads
    ho, wo = h + pt + pb - 2, w + pl + pr - 2
    th, tw = tiles(ho, wo, tile)
    dtype = x.dtype
    u = kernel_transform(weight.astype(dtype, copy=False), tile)
    b = np.zeros(k, dtype) if bias is None else np.ascontiguousarray(bias, dtype=dtype)
    out = np.empty((n, k, ho, wo), dtype=dtype)
    r = np.empty((0, 0, 0, 0), dtype) if residual is None else np.ascontiguousarray(residual, dtype=dtype)
    zero = np.zeros(1, dtype)
    plane = plane_tiles(ho, wo, tile)
    blocks = _image_blocks(n, max(c, k), plane, dtype.itemsize, tile)
    kernels = _kernels()
    al2 = (tile + 2) ** 2
    consts = np.array([2, 4, 5, 8], dtype)
    chunk = max(1, TILE_CHUNK // plane)

    def work(part: int, count: int) -> None:
        mine = blocks[part::count]
        if not mine:
            return
        most = max(b1 - b0 for b0, b1 in mine)
        v4, m4 = _tile_buffer(c, most, plane, dtype, tile), _tile_buffer(k, most, plane, dtype, tile)
        v, m = v4.reshape(al2, c, -1), m4.reshape(al2, k, -1)
        if tile == 2:
            ev, od = np.zeros((th + 2) * 2 * (tw + 1), dtype), np.zeros((th + 2) * 2 * (tw + 1), dtype)
            ue, uo = np.empty((4, plane + 1), dtype), np.empty((4, plane + 1), dtype)
            s, ye, yo = np.empty((8, plane), dtype), np.empty((2, plane), dtype), np.empty((2, plane), dtype)
        else:
            cols = chunk * plane
            rows, ext = np.zeros((6, 4 * cols + 8), dtype), np.zeros((6, 2, cols), dtype)
            t, s, y = np.empty((6, 6, cols), dtype), np.empty((4, 6, cols), dtype), np.empty((4, 4, cols), dtype)
        for n0, n1 in mine:
            cols = (n1 - n0) * plane
            if tile == 2:
                kernels.input_tiles(x, n0, n1, th, pt, pl, v4, ev, od, ue, uo)
            else:
                kernels.input_tiles4(x, n0, n1, chunk, th, tw, pt, pl, v, rows, ext, t, consts)
            np.matmul(u, v[:, :, :cols], out=m[:, :, :cols])
            if tile == 2:
                kernels.output_tiles(m4, n0, n1, th, out, b, s, ye, yo, r, relu, zero)
            else:
                kernels.output_tiles4(m, n0, n1, chunk, th, tw, out, b, s, y, r, relu, zero, consts)

    parallel(work, min(parts, len(blocks)))
    return out


def conv3x3_input_grad(grad: np.ndarray, weight: np.ndarray, pads: Any, parts: int, tile: int = 2) -> np.ndarray:
    """dx of :func:`conv3x3`: dY [N, K, H_out, W_out] correlated with the kernel rotated by 180°
    and its channels swapped, padded by 2 − P on each side: [N, C, H, W]."""
    w_t = np.ascontiguousarray(weight[:, :, ::-1, ::-1].transpose(1, 0, 2, 3))
    (pt, pb), (pl, pr) = pads
    return conv3x3(grad, w_t, None, ((2 - pt, 2 - pb), (2 - pl, 2 - pr)), parts, tile=tile)


def conv3x3_weight_grad(x: np.ndarray, grad: np.ndarray, pads: Any, parts: int, tile: int = 2) -> np.ndarray:
    """dW [K, C, 3, 3] of :func:`conv3x3` = Gᵀ (Σ_tiles dM Vᵀ) G, one partial per image block
    added in block order."""
    x = np.ascontiguousarray(x)
    grad = np.ascontiguousarray(grad)
    n, c, h, w = x.shape
    _, k, ho, wo = grad.shape
    (pt, _), (pl, _) = pads
    th, tw = tiles(ho, wo, tile)
    dtype = x.dtype
    plane = plane_tiles(ho, wo, tile)
    blocks = _image_blocks(n, max(c, k), plane, dtype.itemsize, tile)
    al2 = (tile + 2) ** 2
    partial = np.empty((len(blocks), al2, k, c), dtype=dtype)
    kernels = _kernels()
    consts = np.array([2, 4, 5, 8], dtype)
    chunk = max(1, TILE_CHUNK // plane)

    def work(part: int, count: int) -> None:
        mine = range(part, len(blocks), count)
        if not mine:
            return
        most = max(blocks[i][1] - blocks[i][0] for i in mine)
        v4, d4 = _tile_buffer(c, most, plane, dtype, tile), _tile_buffer(k, most, plane, dtype, tile)
        v, d = v4.reshape(al2, c, -1), d4.reshape(al2, k, -1)
        if tile == 2:
            ev, od = np.zeros((th + 2) * 2 * (tw + 1), dtype), np.zeros((th + 2) * 2 * (tw + 1), dtype)
            ue, uo = np.empty((4, plane + 1), dtype), np.empty((4, plane + 1), dtype)
            ge, go = np.zeros(th * 2 * (tw + 1), dtype), np.zeros(th * 2 * (tw + 1), dtype)
            we, wo_ = np.empty((4, plane), dtype), np.empty((4, plane), dtype)
        else:
            cols = chunk * plane
            rows, ext, t = (
                np.zeros((6, 4 * cols + 8), dtype),
                np.zeros((6, 2, cols), dtype),
                np.empty((6, 6, cols), dtype),
            )
            gbuf, ug = np.zeros((4, 4, cols), dtype), np.empty((6, 4, cols), dtype)
        for i in mine:
            n0, n1 = blocks[i]
            cols = (n1 - n0) * plane
            if tile == 2:
                kernels.input_tiles(x, n0, n1, th, pt, pl, v4, ev, od, ue, uo)
                kernels.grad_tiles(grad, n0, n1, th, d4, ge, go, we, wo_)
            else:
                kernels.input_tiles4(x, n0, n1, chunk, th, tw, pt, pl, v, rows, ext, t, consts)
                kernels.grad_tiles4(grad, n0, n1, chunk, th, tw, d, gbuf, ug, consts)
            np.matmul(d[:, :, :cols], v[:, :, :cols].transpose(0, 2, 1), out=partial[i])

    parallel(work, min(parts, len(blocks)))
    du = partial[0]
    for more in partial[1:]:
        du += more
    return kernel_transform_adjoint(du, tile)
