"""Array namespace and dtype policy.

Every op asks this module for its array namespace (``xp``) instead of importing
NumPy directly where it allocates, so a CuPy backend can slot in later without
touching the ops. Floating-point policy:

* float32 is the default dtype: integer and boolean inputs (the lectures' 0/1
  images) are converted to it, which is exact for integers below 2**24;
* float64 is supported everywhere and used by the gradient checks;
* float16 and other dtypes are rejected with a clear error.
"""

from __future__ import annotations

import contextlib
import functools
import os
import threading
import warnings
from collections.abc import Callable
from typing import Any, TypeVar

import numpy as np

T = TypeVar("T")

_SUPPORTED = (np.dtype(np.float32), np.dtype(np.float64))
_default_dtype: np.dtype = np.dtype(np.float32)


def get_default_dtype() -> np.dtype:
    """The dtype integer inputs and new parameters get (float32 unless changed)."""
    return _default_dtype


def set_default_dtype(dtype: Any) -> None:
    """Set the default floating dtype: ``np.float32`` or ``np.float64``."""
    global _default_dtype
    d = np.dtype(dtype)
    if d not in _SUPPORTED:
        raise ValueError(f"default dtype must be float32 or float64, got {d}")
    _default_dtype = d


def array_namespace(*arrays: Any) -> Any:
    """The Array-API namespace of the given arrays (NumPy, CuPy, array-api-strict, ...).

    Plain NumPy arrays get ``array_api_compat.numpy`` (NumPy with the standard's names:
    ``permute_dims``, ``concat``, ...); every op written against it runs unchanged on CuPy
    and on ``array_api_strict``. Python numbers and None are ignored.
    """
    if all(isinstance(a, np.ndarray | np.generic) or not hasattr(a, "shape") for a in arrays):
        return _np_namespace()  # the common case, checked first: ops call this on every call
    import array_api_compat

    return array_api_compat.array_namespace(
        *(a for a in arrays if hasattr(a, "shape") and not isinstance(a, np.generic))
    )


@functools.cache
def _np_namespace() -> Any:
    import array_api_compat.numpy

    return array_api_compat.numpy


def device_of(x: Any) -> Any:
    """The device an array lives on ("cpu" for NumPy)."""
    if isinstance(x, np.ndarray):
        return "cpu"
    import array_api_compat

    return array_api_compat.device(x)


def to_numpy(x: Any) -> np.ndarray:
    """A NumPy copy (or view) of any array: CuPy is copied to the host, array-api-strict unwrapped."""
    if isinstance(x, np.ndarray):
        return x
    mod = type(x).__module__
    if mod.startswith("cupy"):
        return x.get()
    if hasattr(x, "__dlpack__") and not isinstance(x, np.generic):
        try:
            return np.from_dlpack(x)
        except (TypeError, RuntimeError, BufferError):
            pass
    if mod.startswith("array_api_strict"):
        return np.asarray(x._array)
    return np.asarray(x)


def move(x: Any, device: Any) -> Any:
    """``x`` on ``device``: "cpu" (NumPy) or "cuda" (CuPy, from the optional ``glassnet[gpu]`` extra)."""
    if device in (None, "cpu"):
        return to_numpy(x)
    if device == "cuda":
        try:
            import cupy  # type: ignore[import-not-found]
        except ImportError as e:
            raise RuntimeError(f"device 'cuda' needs CuPy: {install_hint('gpu', 'cupy-cuda12x')}") from e
        return cupy.asarray(to_numpy(x))
    raise ValueError(f"device must be 'cpu' or 'cuda', got {device!r}")


def is_numpy(x: Any) -> bool:
    """Whether ``x`` is a NumPy array (the fast kernels' only input)."""
    return isinstance(x, np.ndarray)


_DTYPE_NAMES: dict[tuple[type, Any], str] = {}


def dtype_name(dtype: Any) -> str:
    """'float32', 'int64', ... for a NumPy, CuPy or array-api-strict dtype (or a NumPy scalar type)."""
    if isinstance(dtype, str):
        return dtype
    key = (type(dtype), dtype)  # the type first: dtypes of different libraries are never compared
    try:
        return _DTYPE_NAMES[key]
    except (KeyError, TypeError):
        pass
    if isinstance(dtype, type):
        name = np.dtype(dtype).name
    else:
        name = getattr(dtype, "name", None)
        name = name if isinstance(name, str) else str(dtype).rsplit(".", 1)[-1]
    with contextlib.suppress(TypeError):  # unhashable: not cached
        _DTYPE_NAMES[key] = name
    return name


def is_floating(dtype: Any) -> bool:
    """Whether ``dtype`` (of any namespace) is a real floating dtype."""
    return dtype_name(dtype).startswith("float")


def namespace_dtype(xp: Any, dtype: Any) -> Any:
    """``dtype`` (a NumPy dtype or a name) as namespace ``xp``'s dtype object."""
    return getattr(xp, dtype_name(dtype))


def as_grad(grad: Any, dtype: Any) -> Any:
    """An upstream gradient as an array of ``dtype`` (an op's dtype, of any namespace).

    Arrays keep their namespace and device (no copy when the dtype already matches);
    Python and NumPy numbers become NumPy arrays.
    """
    if isinstance(grad, np.ndarray) and grad.dtype == dtype:
        return grad
    if isinstance(grad, np.ndarray | np.generic) or not hasattr(grad, "__array_namespace__"):
        return np.asarray(grad, dtype=dtype_name(dtype))
    xp = array_namespace(grad)
    return xp.astype(grad, namespace_dtype(xp, dtype), copy=False)


def as_float(x: Any, name: str = "input", dtype: Any = None) -> Any:
    """Return ``x`` as a float32/float64 array (in its own namespace, on its own device).

    Float32 and float64 arrays pass through untouched (no copy); integers, booleans
    and Python sequences are converted to ``dtype`` (default: the default dtype).
    Other float widths (float16) raise ``TypeError``. NumPy arrays and Python sequences
    give NumPy arrays; CuPy and array-api-strict arrays stay what they are.
    """
    if hasattr(x, "data") and type(x).__name__ in ("Tensor", "Parameter"):
        x = x.data
    if isinstance(x, np.ndarray) and x.dtype in _SUPPORTED and dtype is None:
        return x
    if not isinstance(x, np.ndarray) and hasattr(x, "__array_namespace__"):
        kind = dtype_name(x.dtype)
        if kind in ("float32", "float64") and dtype is None:
            return x
        if dtype is None and kind.startswith("float"):
            raise TypeError(f"{name}: dtype {kind} is not supported; use float32 or float64")
        if not (kind.startswith(("int", "uint", "float")) or kind == "bool"):
            raise TypeError(f"{name}: expected a numeric array, got dtype {kind}")
        xp = array_namespace(x)
        return xp.astype(x, namespace_dtype(xp, dtype if dtype is not None else _default_dtype))
    arr = np.asarray(x)
    if arr.dtype in _SUPPORTED and dtype is None:
        return arr
    if arr.dtype.kind == "f" and dtype is None:
        raise TypeError(f"{name}: dtype {arr.dtype} is not supported; use float32 or float64")
    if arr.dtype.kind not in "biuf":
        raise TypeError(f"{name}: expected a numeric array, got dtype {arr.dtype}")
    return arr.astype(np.dtype(dtype) if dtype is not None else _default_dtype)


def asarray_like(a: Any, like: Any, dtype: Any = None) -> Any:
    """``a`` (an array, a sequence or a number) as an array in ``like``'s namespace and on its device.

    ``dtype`` defaults to ``like``'s dtype. NumPy arrays of the right dtype pass through
    without a copy; host data (a NumPy array, a list) is copied to ``like``'s device.
    """
    dtype = like.dtype if dtype is None else dtype
    if isinstance(like, np.ndarray):
        return np.asarray(a, dtype=dtype)
    xp = array_namespace(like)
    if hasattr(a, "__array_namespace__") and not isinstance(a, np.ndarray):
        return xp.astype(a, dtype, copy=False)
    return xp.asarray(a, dtype=dtype, device=device_of(like))


def result_dtype(*arrays: Any) -> Any:
    """The float dtype an op computes in: float64 if any input is float64, else float32.

    A NumPy dtype for NumPy inputs (and Python numbers); for other namespaces, that
    namespace's dtype object (``array_api_strict.float64``, ...), ready for ``xp.astype``.
    """
    foreign = [a for a in arrays if hasattr(a, "__array_namespace__") and not isinstance(a, np.ndarray | np.generic)]
    if not foreign:  # NumPy (the common case, kept cheap: ops call this once per call)
        wide = any(a is not None and getattr(a, "dtype", None) == np.float64 for a in arrays)
        return _SUPPORTED[1] if wide else _SUPPORTED[0]
    xp = array_namespace(*foreign)
    wide = any(dtype_name(a.dtype) == "float64" for a in arrays if hasattr(a, "dtype"))
    return xp.float64 if wide else xp.float32


_workers: int | None = None  # glassnet's own worker threads (None: as many as BLAS had)
_pool: Any = None
_pool_size = 0
_pool_lock = threading.Lock()
_local = threading.local()


def set_num_threads(n: int) -> None:
    """Use ``n`` threads in glassnet's fast kernels (its own worker threads).

    NumPy's BLAS is kept at one thread (see :func:`num_workers`): glassnet splits its work
    into parts fixed by the problem, runs them on ``n`` workers and adds partial results in
    a fixed order, so a model trains to bit-identical weights on any number of threads
    (a multi-threaded BLAS splits products by its thread count and rounds differently).
    Works at any time, unlike ``OPENBLAS_NUM_THREADS``, which only counts before NumPy loads.
    """
    global _workers
    if not isinstance(n, int) or isinstance(n, bool) or n < 1:
        raise ValueError(f"set_num_threads: expected a positive int, got {n!r}")
    _single_threaded_blas()
    _workers = n


def get_num_threads() -> int:
    """How many threads glassnet's fast kernels use (:func:`set_num_threads`)."""
    return num_workers()


@functools.cache
def _blas() -> Any:
    """threadpoolctl's controller of NumPy's BLAS (None if there is none to control)."""
    try:
        from threadpoolctl import ThreadpoolController

        libs = ThreadpoolController().select(user_api="blas").lib_controllers
    except Exception:  # pragma: no cover - threadpoolctl cannot inspect this process
        return None
    return libs[0] if libs else None


def blas_info() -> dict[str, Any]:
    """NumPy's BLAS library as loaded: name, version, kernel architecture and threads.

    OpenBLAS picks its kernels for the CPU when NumPy loads, unless ``OPENBLAS_CORETYPE``
    names them; on an AVX-512 CPU, ``"Haswell"`` kernels use half the vector width
    (some machines pin them for old OpenBLAS builds). Benchmarks print this.
    """
    import os

    blas = _blas()
    info = dict(blas.info()) if blas is not None else {}
    return {
        "library": info.get("internal_api"),
        "version": info.get("version"),
        "architecture": info.get("architecture"),
        "threads": info.get("num_threads"),
        "OPENBLAS_CORETYPE": os.environ.get("OPENBLAS_CORETYPE"),
    }


def _single_threaded_blas() -> int:
    """Hold NumPy's BLAS at one thread; the thread count it had before (1 if none can be told)."""
    blas = _blas()
    if blas is None:
        return 1
    before = max(1, int(blas.num_threads))
    if before != 1:
        blas.set_num_threads(1)
    return before


def num_workers() -> int:
    """How many threads :func:`parallel` splits work over (1 inside a worker).

    Until :func:`set_num_threads` is called, as many as NumPy's BLAS had threads when glassnet
    first asked (``OPENBLAS_NUM_THREADS``, else the cores), and from then on BLAS runs
    single-threaded in this process: glassnet does its own splitting (see :func:`parallel`).
    """
    global _workers
    if getattr(_local, "inside", False):
        return 1
    if _workers is None:
        _workers = _single_threaded_blas()
    return _workers


def parallel(fn: Callable[[int, int], T], parts: int | None = None) -> list[T]:
    """Run ``fn(k, parts)`` for k = 0 .. parts−1 on glassnet's worker threads; their results.

    NumPy releases the GIL inside copies, ufuncs and matrix products, so an op that splits
    its work into independent parts (blocks of im2col columns, slices of a batch) runs the
    parts on separate cores, each with a single-threaded BLAS. With one worker
    (``set_num_threads(1)``) everything runs in the calling thread. ``parts`` defaults to
    :func:`num_workers`. Which part does what is fixed, so results do not depend on timing;
    kernels whose results must not depend on the worker count either (all of glassnet's)
    cut the work into pieces fixed by the problem and hand those out, ``pieces[k::parts]``.
    """
    workers = num_workers()
    parts = workers if parts is None else parts
    if workers == 1 or parts == 1:
        if not getattr(_local, "inside", False):
            _single_threaded_blas()  # in case something raised it since
        return [fn(k, parts) for k in range(parts)]
    _single_threaded_blas()  # in case something raised it since
    pool = _worker_pool(workers - 1)
    if hasattr(pool, "run"):  # fast/_handoff.SpinPool
        return pool.run(fn, parts)
    futures = [pool.submit(_in_worker, fn, k, parts) for k in range(1, parts)]
    first = _in_worker(fn, 0, parts)
    return [first] + [f.result() for f in futures]


def _worker_pool(size: int) -> Any:
    """The worker threads of :func:`parallel`, at least ``size`` of them (made at first use).

    Polling workers (:mod:`glassnet.fast._handoff`, which compiles a small Numba loop) where
    Numba can be imported and :data:`SPIN_HANDOFF` is on, else a ``ThreadPoolExecutor``.
    """
    global _pool, _pool_size, _spin_unavailable
    if _pool is not None and _pool_size >= size and (hasattr(_pool, "run") == _spin_wanted()):
        return _pool
    with _pool_lock:
        if _pool is None or _pool_size < size or hasattr(_pool, "run") != _spin_wanted():
            old, new = _pool, None
            if _spin_wanted():
                try:
                    from .fast._handoff import SpinPool

                    new = SpinPool(size, _in_worker)
                except Exception as e:  # e.g. a platform whose C library has no sched_yield
                    _spin_unavailable = f"{type(e).__name__}: {e}"
                    warnings.warn(
                        f"glassnet: polling worker threads cannot be made here ({_spin_unavailable}); "
                        "parts of ops go to a ThreadPoolExecutor instead (same results, slower handoff)",
                        RuntimeWarning,
                        stacklevel=3,
                    )
            if new is None:
                from concurrent.futures import ThreadPoolExecutor

                new = ThreadPoolExecutor(max_workers=size, thread_name_prefix="glassnet")
            _pool, _pool_size = new, size
            if old is not None:
                (old.close if hasattr(old, "close") else old.shutdown)()
    return _pool


#: Hand parts to polling workers (see :mod:`glassnet.fast._handoff`); False: a ThreadPoolExecutor.
SPIN_HANDOFF = True


_spin_unavailable: str | None = None  # why polling workers could not be made, once they could not


def _spin_wanted() -> bool:
    from .fast._jit import AVAILABLE

    return SPIN_HANDOFF and AVAILABLE and _spin_unavailable is None


def _forget_pool_in_child() -> None:
    """After fork the child has none of the parent's worker threads: make new ones when needed."""
    global _pool, _pool_size, _pool_lock
    _pool, _pool_size, _pool_lock = None, 0, threading.Lock()


os.register_at_fork(after_in_child=_forget_pool_in_child)


def _in_worker(fn: Callable[[int, int], T], k: int, parts: int) -> T:
    _local.inside = True
    try:
        return fn(k, parts)
    finally:
        _local.inside = False


def keep_freed_memory() -> bool:
    """Ask glibc's allocator to keep freed memory for reuse instead of returning it to the OS.

    NumPy allocates large temporaries on every call. By default glibc trims its heap and
    unmaps large blocks when they are freed, so the next call page-faults the memory back
    in; on a 2-core VM that costs more than the arithmetic of small layers and of
    augmentation (rotating a 64×1×28×28 batch: 1.9 ms → 0.6 ms with this). The process
    keeps its peak memory instead. Process-wide (PyTorch in the same process benefits
    too); ``glassnet`` commands and the benchmarks call it. Returns False where the C
    library is not glibc (nothing changes there).
    """
    import ctypes
    import ctypes.util

    name = ctypes.util.find_library("c")
    try:
        libc = ctypes.CDLL(name or "libc.so.6")
        mallopt = libc.mallopt
    except (OSError, AttributeError):
        return False
    m_trim_threshold, m_mmap_threshold = -1, -3
    ok_trim = mallopt(m_trim_threshold, 2**31 - 1)
    ok_mmap = mallopt(m_mmap_threshold, 2**30)
    return bool(ok_trim and ok_mmap)


def install_hint(extra: str, packages: str = "") -> str:
    """The command that installs glassnet's optional ``extra`` in the environment this runs in.

    In a uv-managed checkout of glassnet (``uv run``, or a ``.venv`` made by uv next to
    glassnet's pyproject.toml) that is ``uv sync --extra EXTRA``; in another uv environment
    ``uv pip install 'glassnet[EXTRA]'``; otherwise ``pip install 'glassnet[EXTRA]'``.
    ``packages`` (e.g. "cupy-cuda12x") is mentioned as the direct alternative.
    """
    import os
    import sys
    from pathlib import Path

    prefix = Path(sys.prefix)
    cfg = prefix / "pyvenv.cfg"
    made_by_uv = bool(os.environ.get("UV")) or (cfg.is_file() and "uv =" in cfg.read_text(errors="replace"))
    project = prefix.parent / "pyproject.toml"
    in_checkout = project.is_file() and 'name = "glassnet"' in project.read_text(errors="replace")
    if made_by_uv and in_checkout:
        cmd = f"uv sync --extra {extra}"
    elif made_by_uv:
        cmd = f"uv pip install 'glassnet[{extra}]'"
    else:
        cmd = f"pip install 'glassnet[{extra}]'"
    return cmd + (f" (or install {packages} directly)" if packages else "")
