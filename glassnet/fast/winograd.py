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

Work is cut into blocks of whole images, fixed by the problem, not by the thread count. A
block's images are written by that block alone, and the weight gradient adds one partial
per block in block order, so results are bit-identical on any number of threads.
"""

from __future__ import annotations

import functools
import importlib.util
from types import SimpleNamespace
from typing import Any

import numpy as np

from ..backend import parallel

#: Whether this algorithm can run here. Numba is a dependency, imported at the first Winograd
#: convolution (not with glassnet: it takes 0.3 s); without it (a Python it has no wheel for)
#: the im2col algorithms run instead.
AVAILABLE = importlib.util.find_spec("numba") is not None
#: A block of images is sized so that its transformed tiles take about this many bytes.
BLOCK_BYTES = 2**20

G = np.array([[1.0, 0.0, 0.0], [0.5, 0.5, 0.5], [0.5, -0.5, 0.5], [0.0, 0.0, 1.0]])


@functools.cache
def _kernels() -> SimpleNamespace:
    """The three kernels compiled by Numba (``nogil``, cached on disk): the first call compiles
    them (about 2.7 s for float32 here), later processes load them (about 0.2 s)."""
    import numba

    jit = numba.njit(nogil=True, cache=True, boundscheck=False)
    return SimpleNamespace(input_tiles=jit(_input_tiles), output_tiles=jit(_output_tiles), grad_tiles=jit(_grad_tiles))


# The kernels index every array directly, the innermost axis by the loop variable itself, and
# each loop writes one or two arrays: that is what lets LLVM vectorise them. Taking row views
# (``a[i]``) inside the loops instead costs two atomic reference counts each and made these
# kernels 8× slower; an offset innermost index, or many output streams in one loop, leave
# them scalar. An index that may be negative (``q + pl``) makes Numba test it for wrapping
# around, which also stops vectorisation: such indices are cast to unsigned (4× faster copy).


def _input_tiles(x, n0, n1, pt, pl, v, pad, ue, uo):  # noqa: ANN001, ANN202
    """v[e, c, (n−n0)·th + i, j] = (Bᵀ d B)[e] for the 4×4 patch d at rows 2i−pt.., cols 2j−pl..

    ``pad``: a zeroed [2th+2, 2tw+2] scratch whose border stays zero; ``ue``/``uo``: [4, tw+1].
    """
    _, c_count, h, w = x.shape
    hp, wp = pad.shape
    th, tw = (hp - 2) // 2, (wp - 2) // 2
    for n in range(n0, n1):
        for c in range(c_count):
            for r in range(h):
                for q in range(w):
                    pad[r + pt, np.uint64(q + pl)] = x[n, c, r, q]
            for i in range(th):
                # Bᵀ down the 4 rows 2i .. 2i+3, split into even and odd columns
                r = 2 * i
                for j in range(tw + 1):
                    ue[0, j] = pad[r, 2 * j] - pad[r + 2, 2 * j]
                    uo[0, j] = pad[r, 2 * j + 1] - pad[r + 2, 2 * j + 1]
                for j in range(tw + 1):
                    ue[1, j] = pad[r + 1, 2 * j] + pad[r + 2, 2 * j]
                    uo[1, j] = pad[r + 1, 2 * j + 1] + pad[r + 2, 2 * j + 1]
                for j in range(tw + 1):
                    ue[2, j] = pad[r + 2, 2 * j] - pad[r + 1, 2 * j]
                    uo[2, j] = pad[r + 2, 2 * j + 1] - pad[r + 1, 2 * j + 1]
                for j in range(tw + 1):
                    ue[3, j] = pad[r + 1, 2 * j] - pad[r + 3, 2 * j]
                    uo[3, j] = pad[r + 1, 2 * j + 1] - pad[r + 3, 2 * j + 1]
                # B across: columns 2j, 2j+1, 2j+2, 2j+3 are ue[j], uo[j], ue[j+1], uo[j+1]
                row = (n - n0) * th + i
                for a in range(4):
                    for j in range(tw):
                        v[4 * a, c, row, j] = ue[a, j] - ue[a, j + 1]
                    for j in range(tw):
                        v[4 * a + 1, c, row, j] = uo[a, j] + ue[a, j + 1]
                    for j in range(tw):
                        v[4 * a + 2, c, row, j] = ue[a, j + 1] - uo[a, j]
                    for j in range(tw):
                        v[4 * a + 3, c, row, j] = uo[a, j] - uo[a, j + 1]


def _output_tiles(m, n0, n1, out, bias, s, y):  # noqa: ANN001, ANN202
    """out[n, k, 2i+a, 2j+b] = (Aᵀ m A)[a, b] + bias[k] for the tiles m[:, k, (n−n0)·th + i, j].

    ``s``: scratch [8, tw]; ``y``: scratch [2, 2tw].
    """
    _, k_count, ho, wo = out.shape
    tw = m.shape[3]
    th = (ho + 1) // 2
    for n in range(n0, n1):
        for k in range(k_count):
            bk = bias[k]
            for i in range(th):
                row = (n - n0) * th + i
                # Aᵀ down the 4 rows of each tile column b: s[b] (output row 0), s[4 + b] (row 1)
                for b in range(4):
                    for j in range(tw):
                        s[b, j] = m[b, k, row, j] + m[4 + b, k, row, j] + m[8 + b, k, row, j]
                    for j in range(tw):
                        s[4 + b, j] = m[4 + b, k, row, j] - m[8 + b, k, row, j] - m[12 + b, k, row, j]
                # A across, into the two output rows, columns interleaved
                for a in range(2):
                    for j in range(tw):
                        y[a, 2 * j] = s[4 * a, j] + s[4 * a + 1, j] + s[4 * a + 2, j] + bk
                        y[a, 2 * j + 1] = s[4 * a + 1, j] - s[4 * a + 2, j] - s[4 * a + 3, j] + bk
                for a in range(min(2, ho - 2 * i)):
                    for q in range(wo):
                        out[n, k, 2 * i + a, q] = y[a, q]


def _grad_tiles(g, n0, n1, dm, pad, we, wo_):  # noqa: ANN001, ANN202
    """dm[e, k, (n−n0)·th + i, j] = (A dY Aᵀ)[e] for the 2×2 tile of g at rows 2i.., cols 2j...

    ``pad``: a zeroed [2th, 2tw] scratch (an odd last row or column stays zero);
    ``we``/``wo_``: [4, tw].
    """
    _, k_count, ho, wo = g.shape
    hp, wp = pad.shape
    th, tw = hp // 2, wp // 2
    for n in range(n0, n1):
        for k in range(k_count):
            for r in range(ho):
                for q in range(wo):
                    pad[r, q] = g[n, k, r, q]
            for i in range(th):
                # A down the 2 rows: g0, g0 + g1, g0 − g1, −g1, split into even and odd columns
                r = 2 * i
                for j in range(tw):
                    we[0, j] = pad[r, 2 * j]
                    wo_[0, j] = pad[r, 2 * j + 1]
                for j in range(tw):
                    we[1, j] = pad[r, 2 * j] + pad[r + 1, 2 * j]
                    wo_[1, j] = pad[r, 2 * j + 1] + pad[r + 1, 2 * j + 1]
                for j in range(tw):
                    we[2, j] = pad[r, 2 * j] - pad[r + 1, 2 * j]
                    wo_[2, j] = pad[r, 2 * j + 1] - pad[r + 1, 2 * j + 1]
                for j in range(tw):
                    we[3, j] = -pad[r + 1, 2 * j]
                    wo_[3, j] = -pad[r + 1, 2 * j + 1]
                # A across: e, e + o, e − o, −o
                row = (n - n0) * th + i
                for a in range(4):
                    for j in range(tw):
                        dm[4 * a, k, row, j] = we[a, j]
                    for j in range(tw):
                        dm[4 * a + 1, k, row, j] = we[a, j] + wo_[a, j]
                    for j in range(tw):
                        dm[4 * a + 2, k, row, j] = we[a, j] - wo_[a, j]
                    for j in range(tw):
                        dm[4 * a + 3, k, row, j] = -wo_[a, j]


def applies(kernel: Any, stride: Any, dilation: Any, groups: int, pads: Any) -> bool:
    """Whether the arguments are ones this algorithm computes: 3×3, stride 1, no dilation,
    one group, each padding 0..2 (dx runs as a forward with padding 2 − P)."""
    return (
        AVAILABLE
        and tuple(kernel) == (3, 3)
        and tuple(stride) == (1, 1)
        and tuple(dilation) == (1, 1)
        and groups == 1
        and all(0 <= p <= 2 for side in pads for p in side)
    )


def kernel_transform(weight: np.ndarray) -> np.ndarray:
    """U[e = 4a + b, k, c] = (G g Gᵀ)[a, b] of each 3×3 kernel g = weight[k, c]: [16, K, C]."""
    g = G.astype(weight.dtype)
    k, c = weight.shape[:2]
    gw = g @ weight.reshape(k * c, 3, 3)  # [KC, 4, 3]: G g
    u = gw @ g.T  # [KC, 4, 4]: G g Gᵀ
    return np.ascontiguousarray(u.reshape(k, c, 16).transpose(2, 0, 1))


def _image_blocks(n: int, channels: int, tiles: int, itemsize: int) -> list[tuple[int, int]]:
    """Image ranges [n0, n1), each with about BLOCK_BYTES of transformed tiles (fixed by the problem)."""
    per_image = 16 * channels * tiles * itemsize
    step = max(1, min(n, BLOCK_BYTES // per_image))
    return [(a, min(n, a + step)) for a in range(0, n, step)]


def _tile_buffer(channels: int, images: int, th: int, tw: int, dtype: Any) -> np.ndarray:
    # One spare tile row keeps the 16 planes and the channel rows from lying a power of two
    # apart (which made them evict each other from cache: 1.6× slower products).
    return np.empty((16, channels, images * th + 1, tw), dtype=dtype)


def conv3x3(x: np.ndarray, weight: np.ndarray, bias: np.ndarray | None, pads: Any, parts: int) -> np.ndarray:
    """Cross-correlation of x [N, C, H, W] with weight [K, C, 3, 3], stride 1: [N, K, H_out, W_out].

    H_out = H + P_top + P_bottom − 2 (and W_out alike); ``pads`` = ((P_t, P_b), (P_l, P_r)).
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
    blocks = _image_blocks(n, max(c, k), th * tw, dtype.itemsize)
    kernels = _kernels()

    def work(part: int, count: int) -> None:
        mine = blocks[part::count]
        if not mine:
            return
        most = max(b1 - b0 for b0, b1 in mine)
        v4, m4 = _tile_buffer(c, most, th, tw, dtype), _tile_buffer(k, most, th, tw, dtype)
        v, m = v4.reshape(16, c, -1), m4.reshape(16, k, -1)
        pad = np.zeros((2 * th + 2, 2 * tw + 2), dtype)
        ue, uo = np.empty((4, tw + 1), dtype), np.empty((4, tw + 1), dtype)
        s, y = np.empty((8, tw), dtype), np.empty((2, 2 * tw), dtype)
        for n0, n1 in mine:
            t = (n1 - n0) * th * tw
            kernels.input_tiles(x, n0, n1, pt, pl, v4, pad, ue, uo)
            np.matmul(u, v[:, :, :t], out=m[:, :, :t])
            kernels.output_tiles(m4, n0, n1, out, b, s, y)

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
    blocks = _image_blocks(n, max(c, k), th * tw, dtype.itemsize)
    partial = np.empty((len(blocks), 16, k, c), dtype=dtype)
    kernels = _kernels()

    def work(part: int, count: int) -> None:
        mine = range(part, len(blocks), count)
        if not mine:
            return
        most = max(blocks[i][1] - blocks[i][0] for i in mine)
        v4, d4 = _tile_buffer(c, most, th, tw, dtype), _tile_buffer(k, most, th, tw, dtype)
        v, d = v4.reshape(16, c, -1), d4.reshape(16, k, -1)
        pad = np.zeros((2 * th + 2, 2 * tw + 2), dtype)
        gpad = np.zeros((2 * th, 2 * tw), dtype)
        ue, uo = np.empty((4, tw + 1), dtype), np.empty((4, tw + 1), dtype)
        we, wo_ = np.empty((4, tw), dtype), np.empty((4, tw), dtype)
        for i in mine:
            n0, n1 = blocks[i]
            t = (n1 - n0) * th * tw
            kernels.input_tiles(x, n0, n1, pt, pl, v4, pad, ue, uo)
            kernels.grad_tiles(grad, n0, n1, d4, gpad, we, wo_)
            np.matmul(d[:, :, :t], v[:, :, :t].transpose(0, 2, 1), out=partial[i])

    parallel(work, min(parts, len(blocks)))
    du = partial[0]
    for more in partial[1:]:
        du += more
    g = G.astype(dtype)
    du = np.ascontiguousarray(du.reshape(16, k * c).T).reshape(k * c, 4, 4)
    return (g.T @ du @ g).reshape(k, c, 3, 3)  # Gᵀ dU G
