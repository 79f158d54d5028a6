"""NumPy's own OpenBLAS ``sgemm``, callable from inside a Numba kernel.

Why: glassnet hands parts of an op to its worker threads (:func:`glassnet.backend.parallel`).
A part that runs Python between its NumPy calls holds the GIL there, and two threads doing that
take turns instead of running at once: LeNet-5's layers (0.1-1 ms at batch 64) gained nothing
from a second thread. A part that is one Numba ``nogil`` call, matrix products included, holds
the GIL only to start. This module gives such kernels the matrix product: ``sgemm`` declared by
name (a :class:`numba.types.ExternalFunction`) from the OpenBLAS that NumPy's PyPI wheels ship
(``numpy.libs/libscipy_openblas64_*.so``, 64-bit integers, symbols prefixed ``scipy_``), loaded
into LLVM's symbol table first. Declared by name, not by address, so Numba's disk cache can keep
the kernels that call it.

It is the same library NumPy's ``matmul`` calls, held at one thread like it
(:func:`glassnet.backend.set_num_threads`). Importing this module raises ``ImportError`` where
that library is not there (NumPy built against another BLAS: a distribution's package, conda,
macOS's Accelerate); callers then keep their NumPy path.

Signature (CBLAS, row-major): ``sgemm(ROW_MAJOR, trans_a, trans_b, M, N, K, alpha, A, lda, B, ldb,
beta, C, ldc)``: C[M, N] = alpha·op(A)·op(B) + beta·C, pointers as ``array.ctypes``.
"""

from __future__ import annotations

import glob
import os

import llvmlite.binding as llvm
import numpy as np
from numba import types

ROW_MAJOR, NO_TRANS, TRANS = np.int32(101), np.int32(111), np.int32(112)
SYMBOL = "scipy_cblas_sgemm64_"


def _library() -> str:
    """Path of the OpenBLAS bundled in NumPy's wheel that exports :data:`SYMBOL`; ImportError if none."""
    import ctypes

    here = os.path.join(os.path.dirname(np.__file__), os.pardir, "numpy.libs")
    for path in sorted(glob.glob(os.path.join(here, "libscipy_openblas64_*.so"))):
        try:
            if hasattr(ctypes.CDLL(path), SYMBOL):
                return os.path.normpath(path)
        except OSError:
            continue
    raise ImportError(f"glassnet.fast._blas: no OpenBLAS exporting {SYMBOL} in {os.path.normpath(here)}")


LIBRARY = _library()
llvm.load_library_permanently(LIBRARY)

_i32, _i64, _f32, _ptr = types.int32, types.int64, types.float32, types.voidptr
#: C[M, N] = alpha·op(A)·op(B) + beta·C (float32, row-major); see the module docstring.
sgemm = types.ExternalFunction(
    SYMBOL, types.void(_i32, _i32, _i32, _i64, _i64, _i64, _f32, _ptr, _i64, _ptr, _i64, _f32, _ptr, _i64)
)
