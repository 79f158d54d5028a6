"""Winograd F(2×2, 3×3) convolution for 3×3, stride-1 layers: the same sums with fewer products.

The definition of a convolution stays :mod:`glassnet.functional.conv`; this is one more way
for the fast conv (:mod:`glassnet.fast.conv`, ``algorithm='winograd'``) to compute it,
tested equal to the reference to rounding like the others.

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

Rounding differs from the direct sum (the tests hold it to the reference's tolerance: float64
to 1e-10, float32 to 1e-5 relative; its float32 error is about the im2col product's). An input
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
#: A block of images is sized so that its transformed tiles take about this many bytes.
BLOCK_BYTES = 2**20

G = np.array([[1.0, 0.0, 0.0], [0.5, 0.5, 0.5], [0.5, -0.5, 0.5], [0.0, 0.0, 1.0]])


@functools.cache
def _kernels() -> SimpleNamespace:
    """The three kernels compiled by Numba (:func:`~glassnet.fast._jit.compile_kernels`) at the first
    Winograd convolution: compiled the first time on a machine, loaded from the disk cache after."""
    return compile_kernels(input_tiles=_input_tiles, output_tiles=_output_tiles, grad_tiles=_grad_tiles)


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


def applies(kernel: Any, stride: Any, dilation: Any, groups: int, pads: Any) -> bool:
    """Whether this algorithm can run here on these arguments: Numba, and
    :func:`glassnet.functional.conv.winograd_fits` (3×3, stride 1, no dilation, one group, padding 0..2)."""
    return AVAILABLE and winograd_fits(kernel, stride, dilation, groups, pads)


def kernel_transform(weight: np.ndarray) -> np.ndarray:
    """U[e = 4a + b, k, c] = (G g Gᵀ)[a, b] of each 3×3 kernel g = weight[k, c]: [16, K, C].

    As two plain matrix products over all K·C kernels at once (a stack of K·C tiny products
    took 5× longer)."""
    g = G.astype(weight.dtype)
    k, c = weight.shape[:2]
    kc = k * c
    gt = (weight.reshape(kc * 3, 3) @ g.T).reshape(kc, 3, 4)  # g Gᵀ: [KC, i, b]
    u = g @ np.ascontiguousarray(gt.transpose(1, 0, 2)).reshape(3, kc * 4)  # G (g Gᵀ): [a, KC·b]
    return np.ascontiguousarray(u.reshape(4, kc, 4).transpose(0, 2, 1)).reshape(16, k, c)


def kernel_transform_adjoint(du: np.ndarray) -> np.ndarray:
    """dW [K, C, 3, 3] = Gᵀ dU G from dU [16, K, C] (the transpose of :func:`kernel_transform`)."""
    g = G.astype(du.dtype)
    k, c = du.shape[1:]
    kc = k * c
    t = np.ascontiguousarray(du.reshape(4, 4, kc).transpose(0, 2, 1)).reshape(4 * kc, 4) @ g  # [a, KC, j]
    dw = g.T @ t.reshape(4, kc * 3)  # Gᵀ: [i, KC·j]
    return np.ascontiguousarray(dw.reshape(3, kc, 3).transpose(1, 0, 2)).reshape(k, c, 3, 3)


def _image_blocks(n: int, channels: int, tiles: int, itemsize: int) -> list[tuple[int, int]]:
    """Image ranges [n0, n1), each with about BLOCK_BYTES of transformed tiles (fixed by the problem)."""
    per_image = 16 * channels * tiles * itemsize
    step = max(1, min(n, BLOCK_BYTES // per_image))
    return [(a, min(n, a + step)) for a in range(0, n, step)]


def _tile_buffer(channels: int, images: int, plane: int, dtype: Any) -> np.ndarray:
    """[16, channels, images + 1, plane]: one spare image keeps the 16 planes and the channel
    rows from lying a power of two apart (they evicted each other from cache: 1.6× slower
    products)."""
    return np.empty((16, channels, images + 1, plane), dtype=dtype)


def conv3x3(
    x: np.ndarray,
    weight: np.ndarray,
    bias: np.ndarray | None,
    pads: Any,
    parts: int,
    relu: bool = False,
    residual: np.ndarray | None = None,
) -> np.ndarray:
    """Cross-correlation of x [N, C, H, W] with weight [K, C, 3, 3], stride 1: [N, K, H_out, W_out].

    H_out = H + P_top + P_bottom − 2 (and W_out alike); ``pads`` = ((P_t, P_b), (P_l, P_r)).
    ``relu``: max(conv + residual, 0) instead, in the output transform (``residual`` [N, K, H_out,
    W_out] or None): no pass of its own over the output.
    """
    x = np.ascontiguousarray(x)
    n, c, h, w = x.shape
    k = weight.shape[0]
    (pt, pb), (pl, pr) = pads
    ho, wo = h + pt + pb - 2, w + pl + pr - 2
    th, tw = (ho + 1) // 2, (wo + 1) // 2
    dtype = x.dtype
    u = kernel_transform(weight.astype(dtype, copy=False))
    b = np.zeros(k, dtype) if bias is None else np.ascontiguousarray(bias, dtype=dtype)
    out = np.empty((n, k, ho, wo), dtype=dtype)
    r = np.empty((0, 0, 0, 0), dtype) if residual is None else np.ascontiguousarray(residual, dtype=dtype)
    zero = np.zeros(1, dtype)
    blocks = _image_blocks(n, max(c, k), th * (tw + 1), dtype.itemsize)
    kernels = _kernels()

    plane = th * (tw + 1)

    def work(part: int, count: int) -> None:
        mine = blocks[part::count]
        if not mine:
            return
        most = max(b1 - b0 for b0, b1 in mine)
        v4, m4 = _tile_buffer(c, most, plane, dtype), _tile_buffer(k, most, plane, dtype)
        v, m = v4.reshape(16, c, -1), m4.reshape(16, k, -1)
        ev, od = np.zeros((th + 2) * 2 * (tw + 1), dtype), np.zeros((th + 2) * 2 * (tw + 1), dtype)
        ue, uo = np.empty((4, plane + 1), dtype), np.empty((4, plane + 1), dtype)
        s, ye, yo = np.empty((8, plane), dtype), np.empty((2, plane), dtype), np.empty((2, plane), dtype)
        for n0, n1 in mine:
            t = (n1 - n0) * plane
            kernels.input_tiles(x, n0, n1, th, pt, pl, v4, ev, od, ue, uo)
            np.matmul(u, v[:, :, :t], out=m[:, :, :t])
            kernels.output_tiles(m4, n0, n1, th, out, b, s, ye, yo, r, relu, zero)

    parallel(work, min(parts, len(blocks)))
    return out


def conv3x3_input_grad(grad: np.ndarray, weight: np.ndarray, pads: Any, parts: int) -> np.ndarray:
    """dx of :func:`conv3x3`: dY [N, K, H_out, W_out] correlated with the kernel rotated by 180°
    and its channels swapped, padded by 2 − P on each side: [N, C, H, W]."""
    w_t = np.ascontiguousarray(weight[:, :, ::-1, ::-1].transpose(1, 0, 2, 3))
    (pt, pb), (pl, pr) = pads
    return conv3x3(grad, w_t, None, ((2 - pt, 2 - pb), (2 - pl, 2 - pr)), parts)


def conv3x3_weight_grad(x: np.ndarray, grad: np.ndarray, pads: Any, parts: int) -> np.ndarray:
    """dW [K, C, 3, 3] of :func:`conv3x3` = Gᵀ (Σ_tiles dM Vᵀ) G, one partial per image block
    added in block order."""
    x = np.ascontiguousarray(x)
    grad = np.ascontiguousarray(grad)
    n, c, h, w = x.shape
    _, k, ho, wo = grad.shape
    (pt, _), (pl, _) = pads
    th, tw = (ho + 1) // 2, (wo + 1) // 2
    dtype = x.dtype
    blocks = _image_blocks(n, max(c, k), th * (tw + 1), dtype.itemsize)
    partial = np.empty((len(blocks), 16, k, c), dtype=dtype)
    kernels = _kernels()

    plane = th * (tw + 1)

    def work(part: int, count: int) -> None:
        mine = range(part, len(blocks), count)
        if not mine:
            return
        most = max(blocks[i][1] - blocks[i][0] for i in mine)
        v4, d4 = _tile_buffer(c, most, plane, dtype), _tile_buffer(k, most, plane, dtype)
        v, d = v4.reshape(16, c, -1), d4.reshape(16, k, -1)
        ev, od = np.zeros((th + 2) * 2 * (tw + 1), dtype), np.zeros((th + 2) * 2 * (tw + 1), dtype)
        ue, uo = np.empty((4, plane + 1), dtype), np.empty((4, plane + 1), dtype)
        ge, go = np.zeros(th * 2 * (tw + 1), dtype), np.zeros(th * 2 * (tw + 1), dtype)
        we, wo_ = np.empty((4, plane), dtype), np.empty((4, plane), dtype)
        for i in mine:
            n0, n1 = blocks[i]
            t = (n1 - n0) * plane
            kernels.input_tiles(x, n0, n1, th, pt, pl, v4, ev, od, ue, uo)
            kernels.grad_tiles(grad, n0, n1, th, d4, ge, go, we, wo_)
            np.matmul(d[:, :, :t], v[:, :, :t].transpose(0, 2, 1), out=partial[i])

    parallel(work, min(parts, len(blocks)))
    du = partial[0]
    for more in partial[1:]:
        du += more
    return kernel_transform_adjoint(du)
