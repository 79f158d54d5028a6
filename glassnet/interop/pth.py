"""Read PyTorch ``.pth`` files without torch and without running anything from the file.

``torch.save`` writes a pickle, and a pickle can name any Python function for the
loader to call (``os.system`` included). This reader resolves only an allow-list of
globals, each to glassnet's own function, never to the one the file names:

=====================================  ==============================================
global in the file                     resolved to
=====================================  ==============================================
``collections.OrderedDict``            ``collections.OrderedDict``
``torch._utils._rebuild_tensor_v2``    a tensor built from a storage, offset, size and
``torch._utils._rebuild_tensor``       stride (checked against the storage's length)
``torch._utils._rebuild_parameter``    the parameter's data tensor
``torch.FloatStorage``, … (below)      a dtype marker for the storage records
=====================================  ==============================================

Any other global (``os.system``, ``builtins.eval``, ``subprocess.Popen``, a
``torch.nn`` module class, …) raises :class:`PthError` naming it.

Two file formats are read:

* **legacy** (``_use_new_zipfile_serialization=False``, the default before torch 1.6):
  five pickles one after another — the magic number ``0x1950a86a20f9469cfc6c``, the
  protocol version 1001, ``sys_info`` (byte order, type sizes), the object itself
  (storages replaced by persistent ids ``('storage', type, key, location, numel,
  view)``), then the sorted list of storage keys; after them, for each key in that
  order, an int64 little-endian element count and the storage's raw little-endian bytes;
* **zip** (torch ≥ 1.6): ``<name>/data.pkl`` holds the object (persistent ids
  ``('storage', type, key, location, numel)``), ``<name>/data/<key>`` each storage's raw
  bytes in the byte order written in ``<name>/byteorder`` (little when absent).

A tensor is ``storage[offset + Σ index_i · stride_i]`` for every index; strides count
elements. The result is a copy as a C-contiguous NumPy array of the storage's dtype
(bfloat16 is widened to float32, which NumPy lacks).
"""

from __future__ import annotations

import collections
import hashlib
import io
import math
import os
import pickle
import zipfile
from collections import OrderedDict
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

LEGACY_MAGIC = 0x1950A86A20F9469CFC6C
LEGACY_PROTOCOL = 1001
MAX_EXPANDED = 2**26  # elements a tensor may have beyond its storage's (stride-0 "expanded" tensors)


class PthError(ValueError):
    """A ``.pth`` file that is refused (forbidden global) or malformed."""


@dataclass(frozen=True)
class StorageType:
    """What ``torch.FloatStorage`` and friends resolve to: the element type of a storage."""

    name: str
    dtype: np.dtype
    bfloat16: bool = False

    def __setstate__(self, state: Any) -> None:
        raise pickle.UnpicklingError(f"refusing to set state on {self.name}")

    def __reduce__(self) -> Any:
        raise TypeError("StorageType is not picklable")


def _storage_types() -> dict[str, StorageType]:
    table = {
        "DoubleStorage": "<f8",
        "FloatStorage": "<f4",
        "HalfStorage": "<f2",
        "LongStorage": "<i8",
        "IntStorage": "<i4",
        "ShortStorage": "<i2",
        "CharStorage": "i1",
        "ByteStorage": "u1",
        "BoolStorage": "?",
        "ComplexFloatStorage": "<c8",
        "ComplexDoubleStorage": "<c16",
    }
    out = {name: StorageType(name, np.dtype(code)) for name, code in table.items()}
    out["BFloat16Storage"] = StorageType("BFloat16Storage", np.dtype("<u2"), bfloat16=True)
    return out


STORAGE_TYPES = _storage_types()
"""Storage class name (``torch.<name>``) → element type."""


class _Storage:
    """One storage record: its element type, declared length and (once read) its bytes."""

    __slots__ = ("data", "key", "numel", "stype")

    def __init__(self, stype: StorageType, key: str, numel: int) -> None:
        self.stype, self.key, self.numel = stype, key, numel
        self.data: np.ndarray | None = None  # 1-D, stype.dtype (or a view of another storage)

    def __setstate__(self, state: Any) -> None:
        raise pickle.UnpicklingError("refusing to set state on a storage")


class _StorageView:
    """A legacy view: elements ``offset .. offset+numel−1`` of another storage."""

    __slots__ = ("base", "numel", "offset")

    def __init__(self, base: _Storage, offset: int, numel: int) -> None:
        self.base, self.offset, self.numel = base, offset, numel

    def __setstate__(self, state: Any) -> None:
        raise pickle.UnpicklingError("refusing to set state on a storage")


class _LazyTensor:
    """A tensor whose storage bytes may not have been read yet (legacy files store them last)."""

    __slots__ = ("offset", "size", "storage", "stride")

    def __init__(self, storage: Any, offset: Any, size: Any, stride: Any) -> None:
        if not isinstance(storage, _Storage | _StorageView):
            raise pickle.UnpicklingError(f"tensor rebuild: expected a storage, got {type(storage).__name__}")
        self.storage = storage
        self.offset = _nonneg_int(offset, "storage offset")
        self.size = _int_tuple(size, "size")
        self.stride = _int_tuple(stride, "stride")
        if len(self.size) != len(self.stride):
            raise pickle.UnpicklingError(f"tensor rebuild: size {self.size} and stride {self.stride} differ in length")

    def __setstate__(self, state: Any) -> None:
        raise pickle.UnpicklingError("refusing to set state on a tensor")

    def materialize(self) -> np.ndarray:
        """The tensor as a new C-contiguous array (bounds checked against the storage)."""
        st = self.storage
        base, start = (st.base, st.offset) if isinstance(st, _StorageView) else (st, 0)
        length = st.numel
        if base.data is None:
            raise PthError(f"storage {base.key!r} has no data in the file")
        if any(s == 0 for s in self.size):
            return np.zeros(self.size, dtype=_out_dtype(base.stype))
        count = math.prod(self.size)
        if count > max(length, MAX_EXPANDED):
            raise PthError(
                f"tensor of size {self.size} has {count} elements, more than its storage's {length}: "
                f"refusing to expand beyond {MAX_EXPANDED}"
            )
        last = self.offset + sum((n - 1) * s for n, s in zip(self.size, self.stride, strict=True))
        if last >= length:
            raise PthError(
                f"tensor of size {self.size}, stride {self.stride}, offset {self.offset} reads element {last} "
                f"of a storage of {length} elements"
            )
        flat = base.data[start + self.offset : start + length]
        item = flat.dtype.itemsize
        view = np.lib.stride_tricks.as_strided(
            flat, shape=self.size, strides=tuple(s * item for s in self.stride), writeable=False
        )
        out = np.array(view, order="C", copy=True)  # (ascontiguousarray would make a 0-d tensor 1-d)
        if base.stype.bfloat16:
            out = (out.astype(np.uint32) << 16).view(np.float32)
        return out.astype(out.dtype.newbyteorder("="), copy=False)


def _out_dtype(stype: StorageType) -> np.dtype:
    return np.dtype(np.float32) if stype.bfloat16 else stype.dtype.newbyteorder("=")


def _nonneg_int(v: Any, what: str) -> int:
    if not isinstance(v, int) or isinstance(v, bool) or v < 0:
        raise pickle.UnpicklingError(f"tensor rebuild: {what} must be a non-negative int, got {v!r}")
    return v


def _int_tuple(v: Any, what: str) -> tuple[int, ...]:
    if not isinstance(v, tuple | list):
        raise pickle.UnpicklingError(f"tensor rebuild: {what} must be a tuple of ints, got {v!r}")
    return tuple(_nonneg_int(x, what) for x in v)


# --- the allow-list: glassnet's own functions for the globals torch's pickles name ---------


def _rebuild_tensor(storage: Any, storage_offset: Any, size: Any, stride: Any) -> _LazyTensor:
    return _LazyTensor(storage, storage_offset, size, stride)


def _rebuild_tensor_v2(
    storage: Any, storage_offset: Any, size: Any, stride: Any, requires_grad: Any = False, *rest: Any
) -> _LazyTensor:
    # rest: backward_hooks (an OrderedDict, ignored) and, in newer files, metadata
    return _LazyTensor(storage, storage_offset, size, stride)


def _rebuild_parameter(data: Any, requires_grad: Any = True, backward_hooks: Any = None) -> _LazyTensor:
    if not isinstance(data, _LazyTensor):
        raise pickle.UnpicklingError(f"parameter rebuild: expected a tensor, got {type(data).__name__}")
    return data


class _Rebuild:
    """An allow-listed function as the unpickler hands it out: callable, but a pickle's BUILD
    cannot set attributes on it (a plain function would let a file change its ``__defaults__``)."""

    __slots__ = ("_fn",)

    def __init__(self, fn: Any) -> None:
        object.__setattr__(self, "_fn", fn)

    def __call__(self, *args: Any) -> Any:
        return self._fn(*args)

    def __setattr__(self, name: str, value: Any) -> None:
        raise AttributeError("read-only")

    def __setstate__(self, state: Any) -> None:
        raise pickle.UnpicklingError(f"refusing to set state on {self._fn.__name__}")

    def __repr__(self) -> str:
        return f"<glassnet {self._fn.__name__}>"


ALLOWED_GLOBALS: dict[tuple[str, str], Any] = {
    ("collections", "OrderedDict"): collections.OrderedDict,
    ("torch._utils", "_rebuild_tensor"): _Rebuild(_rebuild_tensor),
    ("torch._utils", "_rebuild_tensor_v2"): _Rebuild(_rebuild_tensor_v2),
    ("torch._utils", "_rebuild_parameter"): _Rebuild(_rebuild_parameter),
    **{("torch", name): stype for name, stype in STORAGE_TYPES.items()},
}
"""(module, name) → the object it resolves to. Everything else is refused."""


def _text(v: Any) -> Any:
    return v.decode("ascii") if isinstance(v, bytes) else v


class _RestrictedUnpickler(pickle.Unpickler):
    """An unpickler that resolves only :data:`ALLOWED_GLOBALS` and storage persistent ids."""

    def __init__(self, file: Any, storages: dict[str, _Storage], views: dict[str, _StorageView], legacy: bool) -> None:
        super().__init__(file, encoding="utf-8")
        self.storages, self.views, self.legacy = storages, views, legacy

    def find_class(self, module: str, name: str) -> Any:
        try:
            return ALLOWED_GLOBALS[(module, name)]
        except KeyError:
            raise PthError(
                f"refusing to load global {module}.{name}: only tensors, storages and OrderedDict are allowed "
                "(a .pth file can name any Python function; this reader runs none of them)"
            ) from None

    def persistent_load(self, pid: Any) -> Any:
        if not isinstance(pid, tuple) or not pid or _text(pid[0]) != "storage":
            kind = _text(pid[0]) if isinstance(pid, tuple) and pid else type(pid).__name__
            raise PthError(f"refusing persistent id of kind {kind!r}: only storages are allowed")
        fields = pid[1:]
        if self.legacy and len(fields) == 5:
            stype, key, _location, numel, view = fields
        elif not self.legacy and len(fields) == 4:
            (stype, key, _location, numel), view = fields, None
        else:
            raise PthError(f"malformed storage record {pid!r}")
        key = _text(key)
        if not isinstance(stype, StorageType):
            raise PthError(f"storage {key!r}: type {stype!r} is not a torch storage class")
        if not isinstance(key, str) or not isinstance(numel, int) or numel < 0:
            raise PthError(f"malformed storage record {pid!r}")
        st = self.storages.get(key)
        if st is None:
            st = self.storages[key] = _Storage(stype, key, numel)
        elif st.stype != stype or st.numel != numel:
            raise PthError(f"storage {key!r} is declared twice with different types or sizes")
        if view is None:
            return st
        if not (isinstance(view, tuple) and len(view) == 3):
            raise PthError(f"malformed storage view {view!r}")
        view_key, offset, view_numel = _text(view[0]), view[1], view[2]
        if not all(isinstance(v, int) and v >= 0 for v in (offset, view_numel)) or offset + view_numel > numel:
            raise PthError(f"storage view {view!r} lies outside storage {key!r} of {numel} elements")
        if view_key not in self.views:
            self.views[view_key] = _StorageView(st, offset, view_numel)
        return self.views[view_key]


def _load_pickle(data: bytes | io.BytesIO, storages: dict[str, _Storage], legacy: bool) -> tuple[Any, int]:
    f = data if isinstance(data, io.BytesIO) else io.BytesIO(data)
    try:
        obj = _RestrictedUnpickler(f, storages, {}, legacy).load()
    except PthError:
        raise
    except Exception as e:  # a truncated or malformed pickle
        raise PthError(f"malformed pickle ({type(e).__name__}: {e})") from None
    return obj, f.tell()


def _plain_pickle(f: io.BytesIO, what: str) -> Any:
    """One of the legacy header pickles (numbers, a dict, a list), through the same allow-list."""
    try:
        return _RestrictedUnpickler(f, {}, {}, legacy=True).load()
    except PthError as e:
        raise PthError(f"legacy header ({what}): {e}") from None
    except Exception as e:
        raise PthError(f"not a PyTorch file: cannot read the {what} ({type(e).__name__}: {e})") from None


def _read_legacy(raw: bytes) -> Any:
    f = io.BytesIO(raw)
    magic = _plain_pickle(f, "magic number")
    if magic != LEGACY_MAGIC:
        raise PthError(f"not a PyTorch legacy file: magic number {magic!r}, expected {LEGACY_MAGIC:#x}")
    protocol = _plain_pickle(f, "protocol version")
    if protocol != LEGACY_PROTOCOL:
        raise PthError(f"unsupported legacy protocol version {protocol!r} (this reader knows {LEGACY_PROTOCOL})")
    sys_info = _plain_pickle(f, "sys_info")
    if not isinstance(sys_info, dict) or sys_info.get("little_endian") is not True:
        # torch writes storages little-endian whatever the machine, but a big-endian header is unknown ground
        raise PthError(f"unsupported legacy sys_info {sys_info!r} (expected little_endian=True)")
    storages: dict[str, _Storage] = {}
    obj, _ = _load_pickle(f, storages, legacy=True)
    keys = _plain_pickle(f, "storage keys")
    if not isinstance(keys, list) or not all(isinstance(_text(k), str) for k in keys):
        raise PthError(f"malformed storage key list {keys!r}")
    pos = f.tell()
    for k in map(_text, keys):
        st = storages.get(k)
        if st is None:
            raise PthError(f"storage key {k!r} is listed but no tensor uses it")
        if pos + 8 > len(raw):
            raise PthError(f"file truncated before storage {k!r}")
        numel = int.from_bytes(raw[pos : pos + 8], "little", signed=True)
        if numel != st.numel:
            raise PthError(f"storage {k!r}: {numel} elements in the data section, {st.numel} in the pickle")
        nbytes = numel * st.stype.dtype.itemsize
        pos += 8
        if pos + nbytes > len(raw):
            raise PthError(f"file truncated inside storage {k!r} ({nbytes} bytes expected)")
        st.data = np.frombuffer(raw, dtype=st.stype.dtype, count=numel, offset=pos)
        pos += nbytes
    return obj


def _read_zip(raw: bytes) -> Any:
    try:
        zf = zipfile.ZipFile(io.BytesIO(raw))
    except zipfile.BadZipFile as e:
        raise PthError(f"corrupt zip archive ({e})") from None
    with zf:
        names = zf.namelist()
        pkl = [n for n in names if n.endswith("/data.pkl") and n.count("/") == 1]
        if len(pkl) != 1:
            raise PthError(f"not a torch zip checkpoint: expected one '<name>/data.pkl', found {pkl or 'none'}")
        prefix = pkl[0][: -len("data.pkl")]
        order = "little"
        if f"{prefix}byteorder" in names:
            order = zf.read(f"{prefix}byteorder").decode("ascii").strip()
            if order not in ("little", "big"):
                raise PthError(f"unknown byteorder record {order!r}")
        storages: dict[str, _Storage] = {}
        obj, _ = _load_pickle(zf.read(pkl[0]), storages, legacy=False)
        for k, st in storages.items():
            member = f"{prefix}data/{k}"
            if member not in names:
                raise PthError(f"storage {k!r} is missing from the archive ({member})")
            info = zf.getinfo(member)
            dt = st.stype.dtype.newbyteorder("<" if order == "little" else ">")
            nbytes = st.numel * dt.itemsize
            if info.file_size != nbytes:
                raise PthError(f"storage {k!r}: {info.file_size} bytes in the archive, {nbytes} needed")
            st.data = np.frombuffer(zf.read(member), dtype=dt, count=st.numel)
    return obj


def _materialize(obj: Any) -> Any:
    if isinstance(obj, _LazyTensor):
        return obj.materialize()
    if isinstance(obj, OrderedDict):
        return OrderedDict((k, _materialize(v)) for k, v in obj.items())
    if isinstance(obj, dict):
        return {k: _materialize(v) for k, v in obj.items()}
    if isinstance(obj, list):
        return [_materialize(v) for v in obj]
    if isinstance(obj, tuple):
        return tuple(_materialize(v) for v in obj)
    return obj


def pth_format(raw: bytes) -> str:
    """``'zip'`` or ``'legacy'`` from the first bytes of a file; :class:`PthError` for anything else."""
    if raw[:4] == b"PK\x03\x04":
        return "zip"
    if raw[:2] == b"\x80\x02" and raw[2:3] == b"\x8a":  # PROTO 2, LONG1: the legacy magic number
        return "legacy"
    if len(raw) > 262 and raw[257:262] == b"ustar":
        raise PthError("the oldest (tar) torch format is not supported; re-save the file with a newer torch")
    raise PthError("not a PyTorch file (neither the zip format nor the legacy pickle format)")


def read_pth_object(path: str | os.PathLike[str]) -> Any:
    """The object a ``.pth`` file holds: dicts, lists, tuples and numbers as saved, tensors as NumPy arrays."""
    raw = Path(path).read_bytes()
    kind = pth_format(raw)
    try:
        obj = _read_zip(raw) if kind == "zip" else _read_legacy(raw)
        return _materialize(obj)
    except PthError as e:
        raise PthError(f"{path}: {e}") from None


def _flatten(obj: Mapping[Any, Any], prefix: str, out: OrderedDict[str, np.ndarray], bad: list[str]) -> None:
    for k, v in obj.items():
        name = f"{prefix}{k}"
        if isinstance(v, np.ndarray):
            out[name] = v
        elif isinstance(v, Mapping):
            _flatten(v, f"{name}.", out, bad)
        else:
            bad.append(f"{name} ({type(v).__name__})")


def load_pth(path: str | os.PathLike[str]) -> OrderedDict[str, np.ndarray]:
    """A state dict from a ``.pth`` file: name → NumPy array, in the file's order.

    Nested mappings are flattened with dots (``{"model": {"fc.weight": …}}`` gives
    ``model.fc.weight``). Entries that are not tensors (an epoch number, an optimiser's
    hyper-parameters) raise :class:`PthError` listing them; use :func:`read_pth_object`
    for such files.
    """
    obj = read_pth_object(path)
    if not isinstance(obj, Mapping):
        raise PthError(f"{path}: holds a {type(obj).__name__}, not a state dict (a mapping of names to tensors)")
    out: OrderedDict[str, np.ndarray] = OrderedDict()
    bad: list[str] = []
    _flatten(obj, "", out, bad)
    if bad:
        raise PthError(f"{path}: entries that are not tensors: {', '.join(bad[:10])}; use read_pth_object")
    return out


def sha256_file(path: str | os.PathLike[str]) -> str:
    """The SHA-256 of a file, as 64 hex digits."""
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            h.update(block)
    return h.hexdigest()


def convert_to_safetensors(
    src: str | os.PathLike[str], dst: str | os.PathLike[str], metadata: Mapping[str, str] | None = None
) -> Path:
    """Convert a ``.pth`` state dict to a safetensors file, written atomically.

    The metadata records ``source_sha256`` (of ``src``), ``source_name`` and
    ``source_format`` (``zip`` or ``legacy``), plus any ``metadata`` given (strings).
    Tensor names and shapes are the state dict's.
    """
    from safetensors.numpy import save

    from ..checkpoint import atomic_write_bytes

    src = Path(src)
    digest = sha256_file(src)
    with open(src, "rb") as f:
        kind = pth_format(f.read(512))
    state = load_pth(src)
    meta = {"source_sha256": digest, "source_name": src.name, "source_format": kind}
    meta.update({str(k): str(v) for k, v in (metadata or {}).items()})
    data = save({k: np.require(v, requirements="C") for k, v in state.items()}, metadata=meta)
    atomic_write_bytes(dst, data)
    return Path(dst)
