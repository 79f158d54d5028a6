"""A measurement for the next step of LeNet-5 on two threads: parts of an op that never touch the GIL.

Not library code: a prototype, kept so that its figures can be reproduced. glassnet splits an op
into parts run by worker threads (``glassnet.backend.parallel``), but each part runs Python
between its NumPy and Numba calls, and two threads doing that queue for the GIL. LeNet-5's ops
(0.1-3 ms at batch 64) gain nothing from a second thread that way.

Here the first layer of LeNet-5 (N64 C1 28² → F6, 5×5, padding 2) is computed as the 'gather'
algorithm does it (im2col per image, then one matrix product per image; dW = Σ_n dOut_n·cols_nᵀ
in image order), but each 8-image piece is one Numba call: the im2col kernel of
``glassnet/fast/gather.py`` and OpenBLAS's ``cblas_sgemm`` (NumPy's bundled copy, called through
ctypes), handed out by Numba's ``parallel=True`` loop over its OpenMP threads. The pieces are
the same as glassnet's, so the results are checked to be bit for bit glassnet's.

Prints best (median) ms at 1 and 2 threads for glassnet's 'gather' path, the prototype and
PyTorch, and prototype / PyTorch. Needs NumPy's bundled OpenBLAS (a PyPI wheel) and Numba's
OpenMP layer (libgomp). Run: ``NUMBA_THREADING_LAYER=omp .venv/bin/python benchmarks/bench_gil_free_parts.py``.
"""

from __future__ import annotations

import ctypes
import glob
import os
import statistics
import sys
import time
from typing import Any

import numba
import numpy as np
from numba import njit, prange

from glassnet.backend import set_num_threads
from glassnet.fast import conv as fast_conv
from glassnet.fast import gather

try:
    import torch
except ImportError:
    sys.exit("bench_gil_free_parts.py compares against PyTorch: install it (./scripts/test.sh installs the CPU wheel)")

_libs = glob.glob(os.path.join(os.path.dirname(np.__file__), os.pardir, "numpy.libs", "libscipy_openblas64_*.so"))
if not _libs:
    sys.exit("needs the OpenBLAS bundled in NumPy's PyPI wheel (numpy.libs/libscipy_openblas64_*.so): not found")
_sgemm = ctypes.CDLL(_libs[0]).scipy_cblas_sgemm64_
_sgemm.restype = None
_sgemm.argtypes = (
    [ctypes.c_int] * 3
    + [ctypes.c_int64] * 3
    + [ctypes.c_float, ctypes.c_void_p, ctypes.c_int64]
    + [
        ctypes.c_void_p,
        ctypes.c_int64,
        ctypes.c_float,
        ctypes.c_void_p,
        ctypes.c_int64,
    ]
)
ROW_MAJOR, NO_TRANS, TRANS = 101, 111, 112
_im2col = njit(nogil=True)(gather._im2col)


@njit(parallel=True)
def forward(x, w, cols, out, pieces, kh, kw, pt, pl, ho, wo, cuts):  # noqa: ANN001, ANN201
    """out[n] = w @ cols[n], cols[n] = im2col(x[n]); one piece of images per loop turn."""
    f, ckk = w.shape
    p = ho * wo
    for i in prange(pieces.shape[0]):
        n0, n1 = pieces[i, 0], pieces[i, 1]
        _im2col(x, n0, n1, kh, kw, 1, 1, 1, 1, pt, pl, ho, wo, cols[n0:n1], cuts)
        for n in range(n0, n1):
            _sgemm(ROW_MAJOR, NO_TRANS, NO_TRANS, f, p, ckk, np.float32(1.0), w.ctypes, ckk, cols[n].ctypes, p,
                   np.float32(0.0), out[n].ctypes, p)  # fmt: skip


@njit(parallel=True)
def weight_grads(g, cols, per_image, pieces):  # noqa: ANN001, ANN201
    """per_image[n] = g[n] @ cols[n]ᵀ."""
    f, p = g.shape[1], g.shape[2]
    ckk = cols.shape[1]
    for i in prange(pieces.shape[0]):
        for n in range(pieces[i, 0], pieces[i, 1]):
            _sgemm(ROW_MAJOR, NO_TRANS, TRANS, f, ckk, p, np.float32(1.0), g[n].ctypes, p, cols[n].ctypes, p,
                   np.float32(0.0), per_image[n].ctypes, ckk)  # fmt: skip


def best_median(fn: Any, reps: int = 200) -> tuple[float, float]:
    for _ in range(10):
        fn()
    times = []
    for _ in range(reps):
        t0 = time.perf_counter()
        fn()
        times.append(time.perf_counter() - t0)
    return min(times) * 1e3, statistics.median(times) * 1e3


def main() -> None:
    rng = np.random.default_rng(0)
    n, f, k, pad, side = 64, 6, 5, 2, 28
    x = rng.standard_normal((n, 1, side, side), dtype=np.float32)
    w = rng.standard_normal((f, 1, k, k), dtype=np.float32)
    g = rng.standard_normal((n, f, side, side), dtype=np.float32)
    w_mat = np.ascontiguousarray(w.reshape(f, k * k))
    cols = np.empty((n, k * k, side * side), np.float32)
    out = np.empty((n, f, side * side), np.float32)
    per_image = np.empty((n, f, k * k), np.float32)
    pieces = np.array(gather._pieces(n), np.int64)
    cuts = gather._cuts(k, 1, 1, pad, side, side)
    add_rows = gather._kernels().add_rows

    def proto_forward() -> None:
        forward(x, w_mat, cols, out, pieces, k, k, pad, pad, side, side, cuts)

    def proto_dw() -> np.ndarray:
        weight_grads(g.reshape(n, f, -1), cols, per_image, pieces)
        dw = np.empty(f * k * k, np.float32)
        add_rows(per_image.reshape(n, -1), dw)
        return dw

    ours, ctx = fast_conv.conv2d_forward(x, w, None, 1, pad, algorithm="gather")
    ctx["needs_input_grad"] = (False, True, False)
    proto_forward()
    assert np.array_equal(out.reshape(ours.shape), ours), "the prototype's forward differs from glassnet's"
    assert np.array_equal(proto_dw(), fast_conv.conv2d_backward(g, ctx)[1].reshape(-1)), "dW differs"

    tx, tw, tg = torch.from_numpy(x), torch.from_numpy(w), torch.from_numpy(g)
    runs = {
        "forward": (
            lambda: fast_conv.conv2d_forward(x, w, None, 1, pad, algorithm="gather"),
            proto_forward,
            lambda: torch.nn.functional.conv2d(tx, tw, None, padding=pad),
        ),
        "weight gradient": (
            lambda: fast_conv.conv2d_backward(g, ctx),
            proto_dw,
            lambda: torch.nn.grad.conv2d_weight(tx, tw.shape, tg, padding=pad),
        ),
    }
    print(f"LeNet-5's first layer, N{n} C1 {side}² → F{f} {k}×{k} p{pad}; Numba threading layer: "
          f"{numba.config.THREADING_LAYER} (asked); outputs bit for bit glassnet's")  # fmt: skip
    print()
    print("| pass | threads | glassnet 'gather' ms | GIL-free parts ms | PyTorch ms | GIL-free / PyTorch |")
    print("|---|---:|---:|---:|---:|---:|")
    for threads in (1, 2):
        set_num_threads(threads)
        numba.set_num_threads(threads)
        torch.set_num_threads(threads)
        for name, (ours_fn, proto_fn, torch_fn) in runs.items():
            a, b, c = best_median(ours_fn), best_median(proto_fn), best_median(torch_fn)
            print(f"| {name} | {threads} | {a[0]:.3f} ({a[1]:.3f}) | {b[0]:.3f} ({b[1]:.3f}) | "
                  f"{c[0]:.3f} ({c[1]:.3f}) | {b[0] / c[0]:.2f}× |", flush=True)  # fmt: skip
    print()
    print(f"threading layer used: {numba.threading_layer()}")


if __name__ == "__main__":
    main()
