"""IDX reader/writer: round trips and every kind of corruption."""

from __future__ import annotations

import gzip
import struct
from pathlib import Path

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from glassnet.data import DatasetError, read_idx, write_idx

DTYPES = [np.uint8, np.int8, np.int16, np.int32, np.float32, np.float64]


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("name", ["data-idx", "data-idx.gz"])
def test_round_trip(tmp_path: Path, dtype: type, name: str) -> None:
    rng = np.random.default_rng(0)
    arr = (rng.normal(size=(5, 4, 3)) * 100).astype(dtype)
    write_idx(tmp_path / name, arr)
    back = read_idx(tmp_path / name)
    assert back.dtype == np.dtype(dtype)
    assert back.dtype.byteorder in ("=", "|")
    np.testing.assert_array_equal(back, arr)
    assert back.flags.writeable and back.flags.c_contiguous
    assert (tmp_path / name).read_bytes()[:2] == (b"\x1f\x8b" if name.endswith(".gz") else b"\0\0")


@settings(max_examples=30, deadline=None)
@given(shape=st.lists(st.integers(0, 5), min_size=1, max_size=4), gz=st.booleans())
def test_round_trip_any_shape(tmp_path_factory: pytest.TempPathFactory, shape: list[int], gz: bool) -> None:
    path = tmp_path_factory.mktemp("idx") / "x.idx"
    arr = np.arange(int(np.prod(shape)), dtype=np.uint8).reshape(shape)
    write_idx(path, arr, compress=gz)
    back = read_idx(path, type_code=0x08, ndim=len(shape))
    assert back.shape == tuple(shape)
    np.testing.assert_array_equal(back, arr)


def test_header_layout(tmp_path: Path) -> None:
    write_idx(tmp_path / "a", np.zeros((2, 3), np.int16))
    raw = (tmp_path / "a").read_bytes()
    assert raw[:4] == b"\x00\x00\x0b\x02"
    assert struct.unpack(">II", raw[4:12]) == (2, 3)
    assert len(raw) == 12 + 2 * 3 * 2


def _labels_file(path: Path, n: int = 7) -> Path:
    write_idx(path, np.arange(n, dtype=np.uint8))
    return path


def test_bad_magic_names_expected_and_got(tmp_path: Path) -> None:
    path = _labels_file(tmp_path / "train-images-idx3-ubyte")
    with pytest.raises(DatasetError) as info:
        read_idx(path, type_code=0x08, ndim=3)
    assert str(info.value) == ("train-images-idx3-ubyte: expected magic 2051 (0x00000803), got 2049 (0x00000801)")


def test_nonzero_leading_bytes(tmp_path: Path) -> None:
    path = tmp_path / "bad"
    path.write_bytes(b"\x12\x34\x08\x01" + struct.pack(">I", 1) + b"\x00")
    with pytest.raises(DatasetError, match="bad: not an IDX file: the first two bytes must be zero"):
        read_idx(path)


def test_unknown_type_code(tmp_path: Path) -> None:
    path = tmp_path / "weird"
    path.write_bytes(b"\x00\x00\x0a\x01" + struct.pack(">I", 1) + b"\x00")
    with pytest.raises(DatasetError, match=r"weird: unknown IDX type code 0x0a; expected one of"):
        read_idx(path)


def test_wrong_type_code(tmp_path: Path) -> None:
    path = tmp_path / "ints"
    write_idx(path, np.arange(3, dtype=np.int32))
    with pytest.raises(DatasetError, match=r"ints: expected IDX type code 0x08, got 0x0c"):
        read_idx(path, type_code=0x08)


def test_wrong_ndim(tmp_path: Path) -> None:
    path = _labels_file(tmp_path / "labels")
    with pytest.raises(DatasetError, match=r"labels: expected 3 dimension\(s\), header says 1"):
        read_idx(path, ndim=3)


def test_zero_dimensions(tmp_path: Path) -> None:
    path = tmp_path / "scalar"
    path.write_bytes(b"\x00\x00\x08\x00\x05")
    with pytest.raises(DatasetError, match="scalar: IDX header says 0 dimensions"):
        read_idx(path)


def test_too_short_for_magic(tmp_path: Path) -> None:
    path = tmp_path / "tiny"
    path.write_bytes(b"\x00\x00")
    with pytest.raises(DatasetError, match="tiny: file is 2 bytes, too short"):
        read_idx(path)


def test_truncated_header(tmp_path: Path) -> None:
    path = tmp_path / "hdr"
    path.write_bytes(b"\x00\x00\x08\x03" + struct.pack(">I", 60000))
    with pytest.raises(DatasetError, match=r"hdr: truncated header: 3 dimension\(s\) need 16 bytes, file has 8"):
        read_idx(path)


def test_truncated_data(tmp_path: Path) -> None:
    path = tmp_path / "train-images-idx3-ubyte"
    path.write_bytes(b"\x00\x00\x08\x03" + struct.pack(">III", 60000, 28, 28) + bytes(1000))
    with pytest.raises(DatasetError) as info:
        read_idx(path)
    assert str(info.value) == (
        "train-images-idx3-ubyte: truncated: header says 60000×28×28 = 47040000 bytes of data, file has 1000"
    )


def test_truncated_multibyte(tmp_path: Path) -> None:
    path = tmp_path / "f"
    path.write_bytes(b"\x00\x00\x0d\x01" + struct.pack(">I", 4) + bytes(15))
    with pytest.raises(DatasetError, match=r"f: truncated: header says 4 × 4 = 16 bytes of data, file has 15"):
        read_idx(path)


def test_trailing_bytes(tmp_path: Path) -> None:
    path = _labels_file(tmp_path / "labels", n=5)
    path.write_bytes(path.read_bytes() + b"\x00\x01")
    with pytest.raises(DatasetError, match=r"labels: trailing bytes: header says 5 = 5 bytes of data, file has 7"):
        read_idx(path)


def test_gzip_detected_by_content_not_name(tmp_path: Path) -> None:
    arr = np.arange(12, dtype=np.uint8).reshape(3, 4)
    write_idx(tmp_path / "no-suffix", arr, compress=True)
    np.testing.assert_array_equal(read_idx(tmp_path / "no-suffix"), arr)


def test_truncated_gzip(tmp_path: Path) -> None:
    write_idx(tmp_path / "x.gz", np.arange(1000, dtype=np.int32))
    raw = (tmp_path / "x.gz").read_bytes()
    (tmp_path / "cut.gz").write_bytes(raw[: len(raw) // 2])
    with pytest.raises(DatasetError, match="cut.gz: corrupt or truncated gzip data"):
        read_idx(tmp_path / "cut.gz")


def test_gzip_of_truncated_idx(tmp_path: Path) -> None:
    payload = b"\x00\x00\x08\x01" + struct.pack(">I", 10) + bytes(9)
    (tmp_path / "l.gz").write_bytes(gzip.compress(payload))
    with pytest.raises(DatasetError, match="l.gz: truncated: header says 10 = 10 bytes of data, file has 9"):
        read_idx(tmp_path / "l.gz")


def test_missing_file(tmp_path: Path) -> None:
    with pytest.raises(DatasetError, match="cannot read file"):
        read_idx(tmp_path / "nope")


def test_write_rejects_unsupported(tmp_path: Path) -> None:
    with pytest.raises(DatasetError, match="dtype uint16 has no IDX type code"):
        write_idx(tmp_path / "u16", np.zeros(3, np.uint16))
    with pytest.raises(DatasetError, match="expected an array with 1 to 255 dimensions, got 0"):
        write_idx(tmp_path / "s", np.array(3, np.uint8))
