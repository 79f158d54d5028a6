"""Compiling the fast kernels with Numba: one place for the options, the disk cache and its fallback.

The kernels are plain Python functions in their modules (readable, and runnable without Numba
for a test); each module compiles them at first use with :func:`compile_kernels`.
"""

from __future__ import annotations

import importlib.util
from types import SimpleNamespace
from typing import Any

#: Whether Numba can be imported here (checked without importing it: that takes ~0.9 s).
AVAILABLE = importlib.util.find_spec("numba") is not None


def reduction(fn: Any) -> Any:
    """Mark a kernel as a reduction that LLVM may reassociate (Numba's ``fastmath={"reassoc"}``).

    A running sum ``s += v`` is one chain of dependent additions, one per cycle at best; allowed
    to reassociate, LLVM keeps several vector registers of partial sums instead (about 6×
    faster for a float64 sum of float32 rows here). The order is then the compiled code's: fixed
    for a machine (every run and thread count gives the same bits), but a CPU with other vector
    widths may round differently. Only for loops whose other arithmetic has nothing to
    reassociate (a single subtraction or product before the sum); results that must match
    another kernel bit for bit are never computed in one.
    """
    fn.reassociate = True
    return fn


def compile_kernels(**functions: Any) -> SimpleNamespace:
    """The functions compiled by Numba (``nogil``: worker threads run them at once), as attributes.

    Compiled code is cached on disk (``__pycache__`` beside the module, else Numba's user cache
    directory), so later processes only load it. Where no cache location is writable (a read-only
    install with no home directory, say) they are compiled in memory, every process.
    """
    import numba

    def jit(fn: Any, cache: bool) -> Any:
        fastmath = {"reassoc"} if getattr(fn, "reassociate", False) else False
        return numba.njit(nogil=True, cache=cache, boundscheck=False, fastmath=fastmath)(fn)

    compiled = {}
    for name, fn in functions.items():
        try:
            compiled[name] = jit(fn, True)
        except RuntimeError:  # "cannot cache function ...: no locator available"
            compiled[name] = jit(fn, False)
    return SimpleNamespace(**compiled)
