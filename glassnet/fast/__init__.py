"""Fast NumPy kernels, kept apart from the readable reference in :mod:`glassnet.functional`.

Each module here computes one op exactly as its reference does (same arguments, same
errors, same results to rounding: the tests compare them over a matrix of shapes and
options) but laid out for speed on NumPy: cache blocking, worker threads, narrow
indices. Importing this package registers every fast pair onto its op
(:meth:`glassnet.autograd.Op.register_fast`); ``glassnet`` imports it.

=============  ===================================================================
op             fast kernel
=============  ===================================================================
conv2d         :mod:`.conv`: im2col by shifted slices, batch-innermost or gathered
               taps (``algorithm=``), blocked and split over worker threads (gathered:
               a worker's share one Numba call, OpenBLAS's sgemm inside, :mod:`._blas`); 3×3
               stride-1 layers by Winograd F(4×4, 3×3) or F(2×2, 3×3)
               (:mod:`.winograd`: Numba transforms, 4× or 2.25× fewer
               multiplications)
max_pool2d     :mod:`.pool`: a Numba windowed maximum without data-dependent branches,
               int32 winners, split over worker threads by images (NumPy's separable
               two-pass maximum for tiny inputs and without Numba)
batch_norm     :mod:`.norm`: one fused Numba loop a pass (float64 row sums, x̂
               recomputed, dx folded into per-channel coefficients); split over worker threads
batch_norm_    :mod:`.norm`: the same loops with the residual's addition and ReLU inside
relu           them (one pass where three ops take five)
conv2d_bn_    :mod:`.fused`: in inference, batch norm folded into the convolution and, for
relu           Winograd layers, the residual and ReLU applied as it writes its output
relu, relu6    :mod:`.activation`: backward as a branch-free masked copy (bitwise AND),
               split over worker threads
=============  ===================================================================

The Numba kernels (Winograd, gather, max pooling, batch norm; compiled by :mod:`._jit`) are compiled at their
first use and cached on disk (``__pycache__`` beside the module, else Numba's user cache, else
not at all): about 6 s the first time on this machine, then about 1.5 s a process to import
Numba and load them (:func:`warm_up` does it ahead). Without Numba those pairs decline and the
im2col algorithms and the reference batch norm run.

Which pair runs is chosen per call (:func:`glassnet.autograd.use_backend`): the fast one
by default, for NumPy inputs it supports; the reference otherwise (and everywhere
inside ``use_backend("reference")``).
"""

import itertools
from typing import Any

import numpy as np

from ..functional import batch_norm, batch_norm_relu, conv2d, conv2d_bn_relu, max_pool2d, relu, relu6
from . import _handoff, activation, conv, fused, gather, norm, pool, winograd

conv2d.register_fast(conv.conv2d_forward, conv.conv2d_backward, supports=conv.supports)
max_pool2d.register_fast(pool.max_pool2d_forward, pool.max_pool2d_backward, supports=pool.supports)
relu.register_fast(activation.relu_forward, activation.relu_backward, supports=activation.supports)
relu6.register_fast(activation.relu6_forward, activation.relu6_backward, supports=activation.supports)
batch_norm.register_fast(norm.batch_norm_forward, norm.batch_norm_backward, supports=norm.supports)
batch_norm_relu.register_fast(norm.batch_norm_relu_forward, norm.batch_norm_relu_backward, supports=norm.supports_relu)
conv2d_bn_relu.register_fast(fused.conv2d_bn_relu_forward, fused.conv2d_bn_relu_backward, supports=fused.supports)


def warm_up(dtype: Any = np.float32) -> None:
    """Import Numba and load (or compile, the first time on a machine) every Numba kernel for
    ``dtype``, by running each fast pair that uses one on a tiny input.

    The first training step of a process pays this otherwise (about 1.5 s here; 6 s when
    nothing is cached yet); a server can call it at start. Does nothing without Numba.
    """
    if not (winograd.AVAILABLE and gather.AVAILABLE and norm.AVAILABLE and pool.AVAILABLE):
        return
    rng = np.random.default_rng(0)
    x = rng.standard_normal((2, 2, 8, 8)).astype(dtype)
    w = rng.standard_normal((2, 2, 3, 3)).astype(dtype)
    for algorithm, stride in (("winograd", 1), ("winograd4", 1), ("gather", 2)):
        out, ctx = conv.conv2d_forward(x, w, None, stride, 1, algorithm=algorithm)
        conv.conv2d_backward(np.ones_like(out), ctx, True)
    for residual, tile in itertools.product((None, x), (2, 4)):  # the output transform with ReLU (conv2d_bn_relu)
        winograd.conv3x3(x, w, None, ((1, 1), (1, 1)), 1, relu=True, residual=residual, tile=tile)
    big = rng.standard_normal((1, 2, 4, max(8, norm.MIN_SIZE // 8))).astype(dtype)
    ones, zeros = np.ones(2, dtype), np.zeros(2, dtype)
    for training, weight in ((True, ones), (False, ones), (True, None)):
        out, ctx = norm.batch_norm_forward(big, zeros.copy(), ones.copy(), weight, None, training)
        norm.batch_norm_backward(np.ones_like(out), ctx)
        for residual in (None, big):
            out, ctx = norm.batch_norm_relu_forward(
                big, zeros.copy(), ones.copy(), weight, None, training, residual=residual
            )
            norm.batch_norm_relu_backward(np.ones_like(out), ctx)
    pool.warm_up(dtype)
    _handoff.wait_kernel()  # the worker threads' polling loop (glassnet.backend.parallel)


__all__ = ["activation", "conv", "fused", "gather", "norm", "pool", "warm_up", "winograd"]
