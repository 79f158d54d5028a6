"""Strict reader and writer for the IDX format used by MNIST and Fashion-MNIST.

An IDX file is a 4-byte magic number, ``ndim`` big-endian uint32 dimensions and
the data, big-endian, in C order::

    byte 0-1   0x00 0x00
    byte 2     type code: 0x08 uint8, 0x09 int8, 0x0B int16, 0x0C int32,
               0x0D float32, 0x0E float64
    byte 3     ndim (number of dimensions, >= 1)
    then       ndim x uint32 (big-endian) sizes, then prod(sizes) items

The reader checks every part of this and the exact length (a truncated file and
a file with trailing bytes are both errors). Gzip-compressed files are detected
by their own magic bytes (``1f 8b``) and decompressed transparently, whatever
their name, as a stream bounded by the size the header declares: a file that
inflates beyond it is refused after one byte too many, never inflated whole.
"""

from __future__ import annotations

import gzip
import io
import math
import os
import struct
import zlib
from pathlib import Path

import numpy as np

from .errors import DatasetError

__all__ = ["IDX_TYPES", "idx_magic", "read_idx", "write_idx"]

#: IDX type code -> big-endian NumPy dtype.
IDX_TYPES: dict[int, np.dtype] = {
    0x08: np.dtype(">u1"),
    0x09: np.dtype(">i1"),
    0x0B: np.dtype(">i2"),
    0x0C: np.dtype(">i4"),
    0x0D: np.dtype(">f4"),
    0x0E: np.dtype(">f8"),
}
_CODE_FOR_KIND: dict[tuple[str, int], int] = {(dt.kind, dt.itemsize): code for code, dt in IDX_TYPES.items()}
_GZIP_MAGIC = b"\x1f\x8b"


def idx_magic(type_code: int, ndim: int) -> int:
    """Return the 32-bit magic number of an IDX file (e.g. 2051 for uint8, 3-D)."""
    return (type_code << 8) | ndim


#: Deflate cannot expand data by more than about 1032:1; a header declaring more than this many
#: bytes per compressed byte describes a file that is certainly truncated.
_MAX_DEFLATE_RATIO = 1100


def _read_bytes(path: Path) -> bytes:
    try:
        raw = path.read_bytes()
    except OSError as exc:
        raise DatasetError(f"{path}: cannot read file: {exc}") from exc
    if raw[:2] == _GZIP_MAGIC:
        return _inflate_bounded(path, raw)
    return raw


def _inflate_bounded(path: Path, raw: bytes) -> bytes:
    """Decompress gzip data, reading the IDX header first and then at most the data it declares
    (plus one byte, to tell trailing data); the full checks are :func:`read_idx`'s."""
    try:
        with gzip.GzipFile(fileobj=io.BytesIO(raw)) as f:
            head = f.read(4)
            if len(head) < 4 or head[:2] != b"\0\0" or head[2] not in IDX_TYPES or head[3] == 0:
                return head + f.read(64)  # not a valid IDX header: read_idx reports what is wrong
            dims_raw = f.read(4 * head[3])
            if len(dims_raw) < 4 * head[3]:
                return head + dims_raw
            dims = struct.unpack(f">{head[3]}I", dims_raw)
            declared = math.prod(dims) * IDX_TYPES[head[2]].itemsize
            if declared > _MAX_DEFLATE_RATIO * len(raw) + 4096:
                shape = "×".join(str(d) for d in dims)
                raise DatasetError(
                    f"{path.name}: header says {shape} = {declared} bytes of data, more than {len(raw)} compressed "
                    "bytes can hold: truncated or corrupt"
                )
            chunks, got = [], 0
            while got <= declared:  # at most declared + 1 bytes, in pieces: memory follows the real data
                piece = f.read(min(1 << 24, declared + 1 - got))
                if not piece:
                    break
                chunks.append(piece)
                got += len(piece)
            return head + dims_raw + b"".join(chunks)
    except (OSError, EOFError, zlib.error) as exc:
        raise DatasetError(f"{path}: corrupt or truncated gzip data: {exc}") from exc


def read_idx(
    path: str | os.PathLike[str],
    *,
    type_code: int | None = None,
    ndim: int | None = None,
) -> np.ndarray:
    """Read an IDX file (plain or gzip-compressed) into a native-endian array.

    Args:
        path: the file. Gzip data is recognised by content, not by name.
        type_code: if given, the IDX type code the file must have (0x08 = uint8).
        ndim: if given, the number of dimensions the file must have
            (3 for an ``images`` file of shape (N, rows, cols), 1 for labels (N,)).

    Returns:
        A writable, C-contiguous array whose shape is the header's dimensions and
        whose dtype is the native-endian form of the type code (uint8 for 0x08).

    Raises:
        DatasetError: naming the file, for a bad magic number, an unknown type
            code, a type code or ndim other than the expected one, a header
            shorter than its dimensions need, or data that is shorter or longer
            than the header says.
    """
    path = Path(path)
    raw = _read_bytes(path)
    name = path.name
    if len(raw) < 4:
        raise DatasetError(f"{name}: file is {len(raw)} bytes, too short for the 4-byte IDX magic")
    magic = struct.unpack(">I", raw[:4])[0]
    zero, code, nd = struct.unpack(">HBB", raw[:4])
    if type_code is not None and ndim is not None:
        want = idx_magic(type_code, ndim)
        if magic != want:
            raise DatasetError(f"{name}: expected magic {want} (0x{want:08x}), got {magic} (0x{magic:08x})")
    if zero != 0:
        raise DatasetError(
            f"{name}: not an IDX file: the first two bytes must be zero, got magic {magic} (0x{magic:08x})"
        )
    if code not in IDX_TYPES:
        known = ", ".join(f"0x{c:02x}" for c in IDX_TYPES)
        raise DatasetError(f"{name}: unknown IDX type code 0x{code:02x}; expected one of {known}")
    if type_code is not None and code != type_code:
        raise DatasetError(f"{name}: expected IDX type code 0x{type_code:02x}, got 0x{code:02x}")
    if nd == 0:
        raise DatasetError(f"{name}: IDX header says 0 dimensions; expected at least 1")
    if ndim is not None and nd != ndim:
        raise DatasetError(f"{name}: expected {ndim} dimension(s), header says {nd}")
    header_len = 4 + 4 * nd
    if len(raw) < header_len:
        raise DatasetError(f"{name}: truncated header: {nd} dimension(s) need {header_len} bytes, file has {len(raw)}")
    dims = struct.unpack(f">{nd}I", raw[4:header_len])
    dtype = IDX_TYPES[code]
    expected = math.prod(dims) * dtype.itemsize
    got = len(raw) - header_len
    if got != expected:
        shape = "×".join(str(d) for d in dims)
        kind = "truncated" if got < expected else "trailing bytes"
        item = "" if dtype.itemsize == 1 else f" × {dtype.itemsize}"
        raise DatasetError(f"{name}: {kind}: header says {shape}{item} = {expected} bytes of data, file has {got}")
    data = np.frombuffer(raw, dtype=dtype, offset=header_len, count=math.prod(dims))
    return data.reshape(dims).astype(dtype.newbyteorder("="), copy=True)


def write_idx(path: str | os.PathLike[str], array: np.ndarray, *, compress: bool | None = None) -> None:
    """Write ``array`` as an IDX file.

    Args:
        path: destination. Compressed with gzip when ``compress`` is True, or when
            it is None and the name ends in ``.gz``.
        array: any shape with at least one dimension (each < 2**32), dtype one of
            uint8, int8, int16, int32, float32, float64.

    Raises:
        DatasetError: for an unsupported dtype or a 0-d array.
    """
    arr = np.asarray(array)
    if arr.ndim == 0 or arr.ndim > 255:
        raise DatasetError(f"write_idx: expected an array with 1 to 255 dimensions, got {arr.ndim}")
    key = (arr.dtype.kind, arr.dtype.itemsize)
    if key not in _CODE_FOR_KIND:
        raise DatasetError(
            f"write_idx: dtype {arr.dtype} has no IDX type code; expected uint8, int8, int16, int32, float32 or float64"
        )
    code = _CODE_FOR_KIND[key]
    header = struct.pack(">HBB", 0, code, arr.ndim) + struct.pack(f">{arr.ndim}I", *arr.shape)
    payload = header + np.ascontiguousarray(arr, dtype=IDX_TYPES[code]).tobytes()
    path = Path(path)
    if compress is None:
        compress = path.name.endswith(".gz")
    if compress:
        payload = gzip.compress(payload, mtime=0)
    path.write_bytes(payload)
