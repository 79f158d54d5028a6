"""Fast NumPy 2-D convolution: the reference's im2col, laid out and blocked for speed.

The definition is :mod:`glassnet.functional.conv` (im2col by taps, one matrix product,
col2im by taps). This module computes the same thing on NumPy arrays, registered as the
fast pair of :data:`glassnet.functional.conv2d`; the tests check the two agree (float64 to
1e-10, float32 to rounding) over a matrix of shapes and options.

Three ways to build the im2col matrix ``cols`` [C·k_h·k_w, positions] (``algorithm=``; the
automatic choice is by cost, the results agree to rounding and the tests run every one):

* ``'shift'`` (stride 1): the input is padded into a channel-major buffer [C, N·H_p·W_p].
  There, tap (i, j) of every output position is the element ``i·d_h·W_p + j·d_w``
  further on (:func:`~glassnet.functional.window.tap_offsets`), so each tap's row block
  is one contiguous slice copy. Outputs are computed at every padded column (the ones
  past the right edge are thrown away), which is cheaper than gathering as long as W_p is
  not much larger than W_out. The im2col is built in cache-sized blocks of positions,
  and the blocks are shared out among glassnet's worker threads
  (:func:`glassnet.backend.parallel`), each running its own single-threaded matrix products;
* ``'hwn'`` (small inputs, and every layer 'gather' would take where Numba is missing): the
  input is transposed to [C, H_p, W_p, N], batch innermost, so a tap is a slice whose
  contiguous runs are N long (W_out·N at stride 1) instead of W_out: LeNet-5's second
  convolution (10-wide rows) builds its im2col 3× faster this way;
* ``'gather'`` (:mod:`.gather`; strided and large layers, and first layers with up to
  GATHER_MAX_CHANNELS input channels, such as LeNet-5's): image by image, a Numba kernel
  gathers [C·k_h·k_w, H_out·W_out] straight from NCHW, and one batched product per piece
  of images writes NCHW output directly: no padded copy and no transposes.

3×3 stride-1 kernels (18 of ResNet-20's 21 convolutions) skip the im2col altogether:
``'winograd'`` (:mod:`.winograd`, F(2×2, 3×3)) computes them with 2.25× fewer multiplications
and ``'winograd4'`` (F(4×4, 3×3)) with 4× fewer; one of them is the automatic choice for layers
with WINOGRAD_MIN multiply-adds and WINOGRAD_MIN_POSITIONS outputs.

Backward reuses the same layout: ``dW = cols @ dOutᵀ`` and dx, the transposed
convolution of dOut, either as ``Wᵀ @ (im2col of dOut)`` (shift) or as ``dcols = Wᵀ @ dOut``
whose tap blocks are added back at the taps' offsets (col2im, gather); the 'hwn' path builds
the im2col of dOut along W only and adds back the k_h kernel rows.
"""

from __future__ import annotations

import math
from typing import Any

import numpy as np

from ..backend import num_workers, parallel
from ..functional._args import check_grad_shape
from ..functional._op import Context
from ..functional.conv import conv2d_arguments
from ..functional.window import axis_taps, tap_offsets, taps
from . import gather, winograd

# Use the shift path when computing at every padded position costs at most this many
# times the useful outputs. Measured single-threaded: LeNet-5's 28² p2 (waste 1.31) and
# 14² valid 5×5 (1.96) convs run faster gathering; 32² p1 3×3 (1.10) and 16² p1 3×3
# (1.20: 22.0 ms fwd+bwd at N128 C32, against 33.5 by 'hwn') faster shifting.
SHIFT_WASTE_LIMIT = 1.25
# The shift path builds its im2col in blocks of positions, each block about this many bytes,
# so the block is still in cache when the matrix product reads it (None: one block).
# Measured on (N128 C64 32² F64 k3 p1), 1 thread: fwd+bwd 602 ms unblocked, 456 ms with 2 MB
# blocks, 503 ms with 4 MB, 542 ms with 8 MB.
SHIFT_BLOCK_BYTES: int | None = 2 * 2**20
SHIFT_MIN_BLOCK = 512  # positions
# Below this many im2col elements a layer runs in one thread: handing parts to a worker costs
# more than it saves on LeNet-5's 1.25 M-element first layer (batch 64: 4.6 → 4.4 ms a step).
PARALLEL_MIN = 2**21
# The "hwn" im2col (batch innermost) needs the input transposed to [C, H, W, N], which
# NumPy does slowly for large arrays; above this many input elements "gather" is used.
# Measured single-threaded (SkylakeX kernels), fwd+bwd: N128 C32 16² → F64 stride 2
# (2^20 elements) 19.2 ms hwn, 13.1 gather; N128 C64 8² (2^19) 19.0 hwn, 24.1 gather.
HWN_MAX_INPUT = 2**19
# Winograd (F(2×2, 3×3) or F(4×4, 3×3)) is chosen (where it applies) from this many
# multiply-adds a forward and this many output positions N·H_out·W_out: its fixed costs (kernel
# transforms, one weight-gradient partial per image block) grow with C·K, its savings with
# C·K·positions. Measured
# single-threaded, forward + backward, with freed memory kept (as the CLI runs): N1 C16 32²
# 0.29 ms against 0.30 (shift), N8 C16 32² 1.05 against 1.53, N16 C3 32² 1.09 against 1.49;
# but N4 C64 8² (256 positions) 1.11 against 0.74 and N1 C32 16² 0.35 against 0.28. ResNet-20
# at batch 128, forward + backward per layer: C16 32² 11.7 ms against 23.6 (shift), C64 8² 11.4
# against 18.8 (hwn).
# Nor with one input or output channel (NumPy runs a product with an inner dimension of 1
# without BLAS, 12× slower: N128 C1→16 28² took 14.8 ms against 2.6 by shift), nor when
# under WINOGRAD_MIN_USEFUL of the computed 2×2 tiles' outputs are kept (odd sizes and the spare
# tile of each row: 7² keeps 61%, and C64 7² took 16.2 ms against 13.0 by 'hwn'; 8² keeps 80%).
WINOGRAD_MIN = 2**21
WINOGRAD_MIN_POSITIONS = 2048
WINOGRAD_MIN_USEFUL = 0.7
# Of the two, F(4×4, 3×3) ('winograd4': 2.25 products an output where F(2×2) has 4, and 2.25
# transformed values an input where F(2×2) has 4) is chosen unless under this share of its
# 4×4 tiles' outputs are kept (it has no spare tile): 8², 16², 28², 32² keep all (F(2×2): 80-94 %),
# 14² and 7² 77 % (F(2×2): 88 % and 61 %). ResNet-20 at batch 128, one thread, forward + weight
# gradient + input gradient per layer (F(2×2) → F(4×4) with a spare tile a row → without):
# C16 32² 35.7 → 30.3 → 32.9 ms, C32 16² 28.5 → 22.6 → 20.3, C64 8² 22.9 → 19.8 → 14.5.
WINOGRAD4_MIN_USEFUL = 0.8
# ... and only up to this many input channels: its float32 error grows with C (largest error over
# largest output, ReLU'd input, He-scaled weights: C16 3.6e-6, C64 6.4e-6, C128 7.1e-6, C256 9.8e-6,
# C512 9.3e-6; F(2×2): 2.5-5.7e-7), and past 128 it would sit at the 1e-5 that every fast path
# is held to against the reference.
WINOGRAD4_MAX_CHANNELS = 128
# 'gather' (Numba) is chosen from this many im2col elements; smaller layers take 'hwn'. Not for
# speed: a process's first Numba kernel costs about 1.5 s (importing Numba, loading the cached
# code), which a single-image prediction should not pay (ResNet-20's strided layers at batch 1
# have 37 K; at batch 128, 4.7 M).
GATHER_MIN = 2**18
# Layers with at most this many input channels (one group) take 'gather' whenever it is big
# enough, whatever the stride: one image's im2col is then a few rows, and its per-image products
# beat the shift path's skinny ones. Measured single-threaded, forward+backward: N128 C1→16 28²
# 3×3 0.70 ms against 2.27 (shift); N128 C3→16 32² 3×3 4.83 against 7.96 (Winograd) and 11.2
# (shift); N64 C1→6 28² 5×5 (LeNet-5's first layer) 0.44 against 1.07; N32 C3→64 64² 7×7 69.9
# against 185 (shift).
GATHER_MAX_CHANNELS = 3
# 'gather' is split over the workers from this many im2col elements: its parts are whole images,
# with the worker threads polling (glassnet.fast._handoff) a part's handoff costs 10-40 µs, and where
# a part is one Numba call (float32 with NumPy's bundled OpenBLAS: gather.one_call_parts) it holds
# the GIL only to start. There 'gather' also replaces 'hwn' for every layer big enough for it.
# Measured, forward + backward, ms, 1 thread → 2 threads: LeNet-5's first layer (N64 C1 28² → F6
# 5×5 p2, 1.25 M elements) 0.77 + 0.69 → 0.42 + 0.37 (NumPy products in the parts: 0.85 + 0.71 →
# 0.51 + 0.40); its second (N64 C6 14² → F16 5×5, 0.96 M) 0.97 + 1.54 → 0.52 + 0.80, where 'hwn'
# (under PARALLEL_MIN) takes 0.81 + 1.53 on either.
GATHER_PARALLEL_MIN = 2**18


def _blocks(images: int, stride: int, first: int, count: int, k: int, itemsize: int) -> list[tuple[int, int]]:
    """Position ranges [a, b) of the shift path, each block's im2col about SHIFT_BLOCK_BYTES.

    Only positions ``first .. first+count−1`` of each image (``stride`` positions apart)
    are needed: the rows of outputs (forward, dW) or of unpadded inputs (dx). When an
    image's rows fill a block, blocks stay inside images and skip the rest; smaller images
    share blocks (computing the rows between them too).
    """
    total = images * stride
    if SHIFT_BLOCK_BYTES is None:
        return [(0, total)]
    size = max(SHIFT_MIN_BLOCK, SHIFT_BLOCK_BYTES // (k * itemsize))
    if 2 * count < size:
        a0, b0 = first, (images - 1) * stride + first + count
        return [(a, min(a + size, b0)) for a in range(a0, b0, size)]
    pieces = -(-count // size)
    cuts = [first + (count * i) // pieces for i in range(pieces + 1)]
    return [(n * stride + cuts[i], n * stride + cuts[i + 1]) for n in range(images) for i in range(pieces)]


def _shift_cols(src: np.ndarray, offsets: list[int], a: int, b: int, out: np.ndarray, sign: int = 1) -> np.ndarray:
    """im2col block of the shift path: out[:, t, :] = src[:, a + sign·offset_t : b + sign·offset_t]."""
    cols = out[:, :, : b - a]
    for t, off in enumerate(offsets):
        cols[:, t] = src[:, a + sign * off : b + sign * off]
    return cols


def _copy(dst: np.ndarray, src: np.ndarray, parts: int, bias: np.ndarray | None = None, zero: Any = None) -> None:
    """dst[...] = src (+ bias over axis 1), split along axis 0 over ``parts`` workers.

    ``zero``: ``(grid, (r0, r1), (c0, c1), extra)``: ``dst`` is ``grid[:, :, r0:r1, c0:c1]`` of a
    [C, N, rows, cols] buffer whose other cells (the frame around ``dst``), and the 2-D ``extra``
    (a margin of the same buffer), are zeroed, slice by slice; ``dst`` itself is then written once.
    """

    def work(k: int, p: int) -> None:
        a, b = dst.shape[0] * k // p, dst.shape[0] * (k + 1) // p
        if zero is not None:
            grid, (r0, r1), (c0, c1), extra = zero
            g = grid[a:b]
            g[:, :, :r0] = 0
            g[:, :, r1:] = 0
            g[:, :, r0:r1, :c0] = 0
            g[:, :, r0:r1, c1:] = 0
            extra[a:b] = 0
        dst[a:b] = src[a:b]
        if bias is not None:
            dst[a:b] += bias.reshape(1, -1, *([1] * (dst.ndim - 2)))

    parallel(work, parts)


def _contiguous(a: np.ndarray, parts: int) -> np.ndarray:
    """A C-contiguous copy of the view ``a`` (a transpose), copied in slices over the workers."""
    out = np.empty(a.shape, dtype=a.dtype)
    _copy(out, a, min(parts, a.shape[0]))
    return out


def _chunks(rows: int, total: int, itemsize: int) -> list[tuple[int, int]]:
    """Column ranges [a, b) of a [rows, total] operand, each about SHIFT_BLOCK_BYTES (fixed by the problem)."""
    size = max(SHIFT_MIN_BLOCK, (SHIFT_BLOCK_BYTES or 2**62) // max(1, rows * itemsize))
    return [(a, min(a + size, total)) for a in range(0, total, size)]


def _matmul_columns(a: np.ndarray, b: np.ndarray, parts: int) -> np.ndarray:
    """``a @ b`` for [G, M, K] · [G, K, P], in fixed column chunks of b handed out to the workers.

    Each chunk is one single-threaded BLAS product, the same whatever the number of workers.
    """
    out = np.empty((*a.shape[:-1], b.shape[-1]), dtype=np.result_type(a, b))
    chunks = _chunks(b.shape[-2], b.shape[-1], out.itemsize)

    def work(k: int, p: int) -> None:
        for lo, hi in chunks[k::p]:
            np.matmul(a, b[..., lo:hi], out=out[..., lo:hi])

    parallel(work, min(parts, len(chunks)))
    return out


def _matmul_reduce(a: np.ndarray, bt: np.ndarray, parts: int) -> np.ndarray:
    """``a @ bt`` for [G, K, P] · [G, P, F] with P long (a weight gradient): one partial product per
    fixed chunk of P, on the workers, added up in chunk order (bit-identical on any thread count)."""
    chunks = _chunks(max(a.shape[-2], bt.shape[-1]), a.shape[-1], a.itemsize)
    partial = np.empty((len(chunks), *a.shape[:-1], bt.shape[-1]), dtype=np.result_type(a, bt))

    def work(k: int, p: int) -> None:
        for i in range(k, len(chunks), p):
            lo, hi = chunks[i]
            np.matmul(a[..., lo:hi], bt[..., lo:hi, :], out=partial[i])

    parallel(work, min(parts, len(chunks)))
    return _add_in_order(partial)


def _add_in_order(partial: np.ndarray) -> np.ndarray:
    """partial[0] + partial[1] + …, in that order (in place in partial[0]): one fixed rounding."""
    total = partial[0]
    for more in partial[1:]:
        total += more
    return total


def _by_channel(fn: Any, c: int, parts: int) -> None:
    """Run ``fn(c0, c1)`` over channel ranges split among the workers (copies: any split is exact)."""
    parallel(lambda k, p: fn(c * k // p, c * (k + 1) // p), min(parts, c))


def choose_algorithm(
    x_shape: tuple[int, ...],
    w_shape: tuple[int, ...],
    stride: tuple[int, int],
    dilation: tuple[int, int],
    pads: Any,
    groups: int,
    out_hw: tuple[int, int],
    dtype: Any = None,
) -> str:
    """The algorithm :func:`conv2d_forward` picks by itself for these (normalised) arguments
    (``dtype``: the input's; 'gather' takes over from 'hwn' where :func:`gather.one_call_parts`)."""
    n, c, h, w = x_shape
    f, _, kh, kw = w_shape
    (pt, pb), (pl, pr) = pads
    ho, wo = out_hw
    hp, wp = h + pt + pb, w + pl + pr
    t_count = kh * kw
    macs = c * t_count * f // groups * n * ho * wo
    if groups == 1 and c <= GATHER_MAX_CHANNELS and gather.AVAILABLE and c * t_count * n * ho * wo >= GATHER_MIN:
        return "gather"
    if (
        macs >= WINOGRAD_MIN
        and n * ho * wo >= WINOGRAD_MIN_POSITIONS
        and min(c, f) >= 2
        and winograd.applies((kh, kw), stride, dilation, groups, pads)
    ):
        if c <= WINOGRAD4_MAX_CHANNELS and winograd.useful(ho, wo, 4) >= WINOGRAD4_MIN_USEFUL:
            return "winograd4"
        if winograd.useful(ho, wo, 2) >= WINOGRAD_MIN_USEFUL:
            return "winograd"
    # the shift path's rows are W + max(P_l, P_r) wide when the narrower padding fits (below)
    row = w + max(pl, pr) if min(pl, pr) <= (kw - 1) * dilation[1] else wp
    if stride == (1, 1) and n * hp * row <= SHIFT_WASTE_LIMIT * n * ho * wo:
        return "shift"
    big = c * t_count * n * ho * wo >= GATHER_MIN
    if big and dtype is not None and gather.one_call_parts(np.dtype(dtype)):
        return "gather"
    small = wo * n >= 64 and math.prod(x_shape) <= HWN_MAX_INPUT
    return "gather" if big and not small and gather.AVAILABLE else "hwn"


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
) -> tuple[np.ndarray, Context]:
    """Fast NumPy conv2d: the same arguments and results (to rounding) as the reference
    :func:`glassnet.functional.conv.conv2d_forward`. ``algorithm`` picks how: an im2col layout
    (``'shift'``, stride 1 only; ``'hwn'``; ``'gather'``), ``'winograd'`` or ``'winograd4'``
    (F(2×2, 3×3) or F(4×4, 3×3): 3×3, stride 1, :mod:`.winograd`), or None: by cost, see the
    module docstring.
    """
    x, weight, bias, (stride, dilation, pads, (ho, wo)) = conv2d_arguments(
        x, weight, bias, stride, padding, dilation, groups, algorithm
    )
    dtype = x.dtype
    n, c, h, w = x.shape
    f, cg, kh, kw = weight.shape
    (pt, pb), (pl, pr) = pads
    wk = weight[:, :, ::-1, ::-1] if flip else weight
    hp, wp = h + pt + pb, w + pl + pr
    m = n * hp * wp
    t_count = kh * kw
    if algorithm is None:
        algorithm = choose_algorithm(x.shape, weight.shape, stride, dilation, pads, groups, (ho, wo), dtype)
    w_mat = wk.reshape(groups, f // groups, cg * t_count)
    split_from = GATHER_PARALLEL_MIN if algorithm == "gather" else PARALLEL_MIN
    parts = num_workers() if c * t_count * n * ho * wo >= split_from else 1

    if algorithm in winograd.TILES:
        if not winograd.AVAILABLE:
            raise RuntimeError(f"conv2d: algorithm={algorithm!r} needs Numba, which could not be imported here")
        x = np.ascontiguousarray(x)
        wk = np.ascontiguousarray(wk)
        tile = winograd.TILES[algorithm]
        out = winograd.conv3x3(x, wk, bias, pads, parts, tile=tile)
        ctx = Context(path=algorithm, x=x, wk=wk, parts=parts, tile=tile)
    elif algorithm == "shift":
        out = np.empty((n, f, ho, wo), dtype=dtype)
        # Rows of the buffer need not hold both side paddings: a tap that runs past the end of
        # a row continues into the next row's left padding, which is zero as well. So a row is
        # W + max(P_l, P_r) wide (less waste), as long as every output column still fits in it.
        if min(pl, pr) <= (kw - 1) * dilation[1]:
            wp = w + max(pl, pr)
            m = n * hp * wp
        offsets = tap_offsets((kh, kw), dilation, wp)
        buf = np.empty((c, m + offsets[-1]), dtype=dtype)
        grid = buf[:, :m].reshape(c, n, hp, wp)
        frame = (grid, (pt, pt + h), (pl, pl + w), buf[:, m:])
        _copy(grid[:, :, pt : pt + h, pl : pl + w], x.transpose(1, 0, 2, 3), parts, zero=frame)
        full = np.empty((groups, f // groups, m), dtype=dtype)
        blocks = _blocks(n, hp * wp, 0, ho * wp, c * t_count, dtype.itemsize)

        def work(k: int, p: int) -> None:
            mine = blocks[k::p]
            scratch = np.empty((c, t_count, max((b - a for a, b in mine), default=0)), dtype=dtype)
            for a, b in mine:
                cols = _shift_cols(buf, offsets, a, b, scratch)
                np.matmul(w_mat, cols.reshape(groups, cg * t_count, b - a), out=full[:, :, a:b])

        parallel(work, parts)
        _copy(out, full.reshape(f, n, hp, wp)[:, :, :ho, :wo].transpose(1, 0, 2, 3), parts, bias)
        ctx = Context(path="shift", buf=buf, offsets=offsets, parts=parts)
    elif algorithm == "gather":
        if not gather.AVAILABLE:
            raise RuntimeError("conv2d: algorithm='gather' needs Numba, which could not be imported here")
        geometry = ((kh, kw), stride, dilation, (pt, pl), (ho, wo))
        out, cols = gather.forward(x, np.ascontiguousarray(w_mat), bias, geometry, parts)
        ctx = Context(path="gather", cols=cols, geometry=geometry, parts=parts)
    else:
        # 'hwn': taps are gathered from a zero-padded copy stored batch innermost ([C, H_p, W_p, N]),
        # so a tap's copy runs in pieces N long (W_out·N at stride 1) instead of W_out.
        out = np.empty((n, f, ho, wo), dtype=dtype)
        xp4 = np.zeros((c, hp, wp, n), dtype=dtype)
        xv = xp4.transpose(0, 3, 1, 2)
        cols = np.empty((c, t_count, ho, wo, n), dtype=dtype)
        cv = cols.transpose(0, 1, 4, 2, 3)
        tap_list = list(taps((kh, kw), stride, dilation, (ho, wo)))

        def im2col(c0: int, c1: int) -> None:
            xv[c0:c1, :, pt : pt + h, pl : pl + w] = x[:, c0:c1].transpose(1, 0, 2, 3)
            for t, sl in tap_list:
                cv[c0:c1, t] = xv[c0:c1, :, sl[0], sl[1]]

        _by_channel(im2col, c, parts)
        full = _matmul_columns(w_mat, cols.reshape(groups, cg * t_count, n * ho * wo), parts)
        _copy(out, full.reshape(f, ho, wo, n).transpose(3, 0, 1, 2), parts)
        if bias is not None:
            out += bias.reshape(1, f, 1, 1)
        ctx = Context(path=algorithm, cols=cols, parts=parts)
    ctx.update(
        x_shape=x.shape,
        w_mat=w_mat,
        w_shape=weight.shape,
        pads=pads,
        stride=stride,
        dilation=dilation,
        groups=groups,
        flip=flip,
        out_hw=(ho, wo),
        padded=(hp, wp),
        has_bias=bias is not None,
        dtype=dtype,
    )
    return out, ctx


def conv2d_backward(
    grad: np.ndarray, ctx: Context, need_dx: bool | None = None
) -> tuple[np.ndarray | None, np.ndarray, np.ndarray | None]:
    """Gradients of the fast :func:`conv2d_forward`: ``(dx, dweight, dbias or None)``, as the reference's.

    ``need_dx=False`` (or ``ctx.needs_input_grad[0]`` False) skips the input gradient.
    """
    if need_dx is None:
        need_dx = ctx.get("needs_input_grad", (True,))[0]
    n, c, h, w = ctx.x_shape
    f, cg, kh, kw = ctx.w_shape
    groups, (ho, wo), (hp, wp) = ctx.groups, ctx.out_hw, ctx.padded
    (pt, _), (pl, _) = ctx.pads
    t_count = kh * kw
    fg = f // groups
    grad = np.asarray(grad, dtype=ctx.dtype)
    check_grad_shape("conv2d", grad, (n, f, ho, wo))
    w_mat = ctx.w_mat
    db = grad.sum(axis=(0, 2, 3)) if ctx.has_bias else None

    if ctx.path in winograd.TILES:
        grad = np.ascontiguousarray(grad)
        dw = winograd.conv3x3_weight_grad(ctx.x, grad, ctx.pads, ctx.parts, ctx.tile)
        dx = winograd.conv3x3_input_grad(grad, ctx.wk, ctx.pads, ctx.parts, ctx.tile) if need_dx else None
    elif ctx.path == "shift":
        # Gradient at every padded position (zero where no output was computed), placed
        # after a zero margin so that shifting it right by a tap's offset is a slice.
        m = n * hp * wp
        offsets, parts = ctx.offsets, ctx.parts
        margin = offsets[-1]
        gbuf = np.empty((f, margin + m), dtype=ctx.dtype)
        grid = gbuf[:, margin:].reshape(f, n, hp, wp)
        frame = (grid, (0, ho), (0, wo), gbuf[:, :margin])
        _copy(grid[:, :, :ho, :wo], grad.transpose(1, 0, 2, 3), parts, zero=frame)
        g2 = gbuf[:, margin:]
        # dx is itself a convolution: dx_pad[c, r] = Σ_{o,t} W[o, c, t] · dOut[o, r − offset_t],
        # so an im2col of the gradient (taps shifted the other way) times Wᵀ gives it, block by
        # block, each block's rows written once (no adding up across blocks or threads).
        if need_dx:
            w_t = w_mat.reshape(groups, fg, cg, t_count).transpose(0, 2, 1, 3).reshape(groups, cg, fg * t_count)
            dxp = np.empty((groups, cg, m), dtype=ctx.dtype)  # only the rows of blocks_x are read
        blocks_w = _blocks(n, hp * wp, 0, ho * wp, max(c, f) * t_count, ctx.dtype.itemsize)
        blocks_x = _blocks(n, hp * wp, pt * wp, h * wp, f * t_count, ctx.dtype.itemsize) if need_dx else []
        # dW: one partial product per block (the blocks are fixed by the problem, not by the
        # number of threads), added up in block order below: bit-identical on any thread count.
        dw_parts = np.empty((len(blocks_w), groups, cg * t_count, fg), dtype=ctx.dtype)

        def work(k: int, p: int) -> None:
            mine_w, mine_x = range(k, len(blocks_w), p), blocks_x[k::p]
            longest = max([blocks_w[i][1] - blocks_w[i][0] for i in mine_w] + [b - a for a, b in mine_x], default=0)
            scratch = np.empty((max(c, f), t_count, longest), dtype=ctx.dtype)
            for i in mine_w:
                a, b = blocks_w[i]
                cols = _shift_cols(ctx.buf, offsets, a, b, scratch[:c])
                # dW = cols · dOutᵀ (this orientation: OpenBLAS runs dOut · colsᵀ up to 100× slower)
                np.matmul(
                    cols.reshape(groups, cg * t_count, b - a),
                    g2[:, a:b].reshape(groups, fg, b - a).transpose(0, 2, 1),
                    out=dw_parts[i],
                )
            for a, b in mine_x:
                gcols = _shift_cols(gbuf, offsets, margin + a, margin + b, scratch[:f], sign=-1)
                np.matmul(w_t, gcols.reshape(groups, fg * t_count, b - a), out=dxp[:, :, a:b])

        parallel(work, parts)
        dw = _add_in_order(dw_parts).transpose(0, 2, 1)
        dx = None
        if need_dx:
            dxp = dxp.reshape(c, n, hp, wp)
            dx = np.empty((n, c, h, w), dtype=ctx.dtype)
            _copy(dx, dxp[:, :, pt : pt + h, pl : pl + w].transpose(1, 0, 2, 3), parts)
    elif ctx.path == "hwn":
        (sh, sw), (dh, dw_) = ctx.stride, ctx.dilation
        gh = _contiguous(grad.transpose(1, 2, 3, 0), ctx.parts)  # [F, H_out, W_out, N]
        g2 = gh.reshape(groups, fg, ho * wo * n)
        cols = ctx.cols.reshape(groups, cg * t_count, ho * wo * n)
        dw = _matmul_reduce(cols, g2.transpose(0, 2, 1), ctx.parts).transpose(0, 2, 1)  # see the shift path
        dx = None
        if need_dx:
            # dx row by row: gx[o, j, y, X, n] = dOut[o, y, x, n] at X = x·s + j·d (an im2col of
            # the gradient along W only), so one product Σ_{o,j} W[o, c, i, j]·gx[o, j, y, X, n]
            # leaves only the kernel rows i to add back: k_h adds instead of k_h·k_w.
            gx = np.zeros((f, kw, ho, wp, n), dtype=ctx.dtype)
            for j, cols_j in enumerate(axis_taps(kw, sw, dw_, wo)):
                gx[:, j, :, cols_j] = gh
            w_x = ctx.w_mat.reshape(groups, fg, cg, kh, kw).transpose(0, 2, 3, 1, 4).reshape(groups, cg * kh, fg * kw)
            r = _matmul_columns(w_x, gx.reshape(groups, fg * kw, ho * wp * n), ctx.parts).reshape(c, kh, ho, wp, n)
            dxh = np.zeros((c, hp, wp, n), dtype=ctx.dtype)
            for i, rows_i in enumerate(axis_taps(kh, sh, dh, ho)):
                dxh[:, rows_i] += r[:, i]
            dx = _contiguous(dxh[:, pt : pt + h, pl : pl + w, :].transpose(3, 0, 1, 2), ctx.parts)
    else:  # 'gather'
        dx, dw = gather.backward(grad, ctx.cols, w_mat, (n, c, h, w), ctx.geometry, ctx.parts, need_dx)
    dw = dw.reshape(f, cg, kh, kw)
    if ctx.flip:
        dw = dw[:, :, ::-1, ::-1]
    return dx, np.ascontiguousarray(dw), db


def supports(*args: Any, **kwargs: Any) -> bool:
    """NumPy inputs only, keyword arguments included (the dispatcher looks at positional ones)."""
    return all(isinstance(v, np.ndarray) for v in (*args, *kwargs.values()) if hasattr(v, "__array_namespace__"))
