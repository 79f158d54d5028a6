"""The polling loop of :mod:`._handoff`, compiled by Numba (``nogil``, cached on disk).

A module of its own, imported only when worker threads are first made: it imports Numba at
the top, so that the loop and the ``sched_yield`` it calls are module globals, which Numba's
disk cache can key (defined inside a function, each process would compile it anew, 1.5 s).
"""

from __future__ import annotations

from typing import Any

import numba
from llvmlite import ir
from numba.core import cgutils, types
from numba.extending import intrinsic


@intrinsic
def _sched_yield(typingctx: Any) -> Any:
    """``sched_yield()`` from the C library: give the CPU to another runnable thread, if any."""

    def codegen(context: Any, builder: Any, signature: Any, args: Any) -> Any:
        fn = cgutils.get_or_insert_function(builder.module, ir.FunctionType(ir.IntType(32), []), "sched_yield")
        return builder.call(fn, [])

    return types.int32(), codegen


def _wait(flags, row, col, target, looks, mark, value):  # noqa: ANN001, ANN202
    """True once flags[row, col] ≥ target, False after ``looks`` looks; first sets
    flags[row, mark] = value if ``mark`` ≥ 0 (a worker's "done", written after the GIL is let go,
    so that the caller can take the GIL at once)."""
    if mark >= 0:
        flags[row, mark] = value
    for _ in range(looks):
        if flags[row, col] >= target:
            return True
        _sched_yield()  # opaque to LLVM, so the flag is loaded again on every look
    return flags[row, col] >= target


try:
    wait = numba.njit(nogil=True, cache=True)(_wait)
except RuntimeError:  # no writable cache location
    wait = numba.njit(nogil=True, cache=False)(_wait)
