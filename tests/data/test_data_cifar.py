"""CIFAR-10/100 binary readers, on files the tests write."""

from __future__ import annotations

import io
import tarfile
from pathlib import Path

import numpy as np
import pytest

from glassnet.data import (
    CIFAR10_CLASSES,
    CIFAR100_FINE_CLASSES,
    DatasetError,
    load_cifar10,
    load_cifar100,
    load_dataset,
    read_cifar10_batch,
    read_cifar100_batch,
    write_cifar10_batch,
    write_cifar100_batch,
)


def _images(n: int, seed: int) -> np.ndarray:
    return np.random.default_rng(seed).integers(0, 256, (n, 3, 32, 32), dtype=np.uint8)


def test_cifar10_record_layout(tmp_path: Path) -> None:
    images, labels = _images(3, 0), np.array([0, 9, 4])
    write_cifar10_batch(tmp_path / "b.bin", images, labels)
    raw = (tmp_path / "b.bin").read_bytes()
    assert len(raw) == 3 * 3073
    assert raw[3073] == 9  # label byte of record 1
    # R plane then G then B, each row-major 32×32
    assert raw[1 : 1 + 1024] == images[0, 0].tobytes()
    assert raw[1 + 2048 : 3073] == images[0, 2].tobytes()
    got_images, got_labels = read_cifar10_batch(tmp_path / "b.bin")
    np.testing.assert_array_equal(got_images, images)
    assert got_labels.dtype == np.int64 and got_labels.tolist() == [0, 9, 4]


def test_cifar100_round_trip(tmp_path: Path) -> None:
    images = _images(4, 1)
    write_cifar100_batch(tmp_path / "t.bin", images, [0, 19, 5, 7], [0, 99, 50, 3])
    raw = (tmp_path / "t.bin").read_bytes()
    assert len(raw) == 4 * 3074 and raw[3074:3076] == bytes([19, 99])
    got, coarse, fine = read_cifar100_batch(tmp_path / "t.bin")
    np.testing.assert_array_equal(got, images)
    assert coarse.tolist() == [0, 19, 5, 7] and fine.tolist() == [0, 99, 50, 3]


def test_length_not_a_whole_number_of_records(tmp_path: Path) -> None:
    write_cifar10_batch(tmp_path / "b.bin", _images(2, 0), [1, 2])
    (tmp_path / "b.bin").write_bytes((tmp_path / "b.bin").read_bytes()[:-5])
    with pytest.raises(DatasetError) as info:
        read_cifar10_batch(tmp_path / "b.bin")
    assert str(info.value) == (
        "b.bin: expected a whole number of 3073-byte records (1 label byte(s) + 3072 pixel bytes), "
        "got 6141 bytes (1 records + 3068 bytes)"
    )


def test_empty_file_rejected(tmp_path: Path) -> None:
    (tmp_path / "e.bin").write_bytes(b"")
    with pytest.raises(DatasetError, match="e.bin: expected a whole number of 3074-byte records"):
        read_cifar100_batch(tmp_path / "e.bin")


def test_label_out_of_range(tmp_path: Path) -> None:
    write_cifar10_batch(tmp_path / "b.bin", _images(2, 0), [3, 12])
    with pytest.raises(DatasetError, match=r"b.bin: class label 12 at record 1 is out of range; expected 0..9"):
        read_cifar10_batch(tmp_path / "b.bin")
    write_cifar100_batch(tmp_path / "c.bin", _images(1, 0), [20], [1])
    with pytest.raises(DatasetError, match=r"coarse label 20 at record 0 is out of range; expected 0..19"):
        read_cifar100_batch(tmp_path / "c.bin")


def _add(tar: tarfile.TarFile, name: str, data: bytes) -> None:
    info = tarfile.TarInfo(name)
    info.size = len(data)
    tar.addfile(info, io.BytesIO(data))


def make_cifar10(folder: Path, per_batch: int = 2, meta: bool = True) -> tuple[Path, dict[str, np.ndarray]]:
    """Write a tiny cifar-10-binary.tar.gz; return it and the expected arrays per split."""
    folder.mkdir(parents=True, exist_ok=True)
    path = folder / "cifar-10-binary.tar.gz"
    expect: dict[str, list[np.ndarray]] = {"train": [], "test": [], "ltrain": [], "ltest": []}
    with tarfile.open(path, "w:gz") as tar:
        names = [f"data_batch_{i}.bin" for i in range(1, 6)] + ["test_batch.bin"]
        for i, name in enumerate(names):
            images, labels = _images(per_batch, i), (np.arange(per_batch) + i) % 10
            tmp = folder / name
            write_cifar10_batch(tmp, images, labels)
            _add(tar, f"cifar-10-batches-bin/{name}", tmp.read_bytes())
            tmp.unlink()
            split = "test" if name.startswith("test") else "train"
            expect[split].append(images)
            expect["l" + split].append(labels)
        if meta:
            _add(tar, "cifar-10-batches-bin/batches.meta.txt", ("\n".join(CIFAR10_CLASSES) + "\n\n").encode())
        _add(tar, "cifar-10-batches-bin/readme.html", b"<html></html>")
    return path, {k: np.concatenate(v) for k, v in expect.items()}


def test_cifar10_tarball(tmp_path: Path) -> None:
    path, expect = make_cifar10(tmp_path)
    images, labels, classes = load_cifar10(path, "train")
    assert images.shape == (10, 3, 32, 32) and images.dtype == np.uint8
    np.testing.assert_array_equal(images, expect["train"])  # batches 1..5, in order
    np.testing.assert_array_equal(labels, expect["ltrain"])
    assert classes == CIFAR10_CLASSES
    test_images, test_labels, _ = load_cifar10(path, "test")
    np.testing.assert_array_equal(test_images, expect["test"])
    np.testing.assert_array_equal(test_labels, expect["ltest"])


def test_cifar10_extracted_folder_and_no_meta(tmp_path: Path) -> None:
    path, expect = make_cifar10(tmp_path / "src", meta=False)
    with tarfile.open(path) as tar:
        tar.extractall(tmp_path / "out", filter="data")
    images, _, classes = load_cifar10(tmp_path / "out" / "cifar-10-batches-bin", "test")
    np.testing.assert_array_equal(images, expect["test"])
    assert classes == CIFAR10_CLASSES  # hard-coded fallback


def test_cifar10_missing_member(tmp_path: Path) -> None:
    path = tmp_path / "cifar-10-binary.tar.gz"
    with tarfile.open(path, "w:gz") as tar:
        _add(tar, "cifar-10-batches-bin/test_batch.bin", bytes(3073))
    with pytest.raises(DatasetError, match=r"missing data_batch_1.bin, data_batch_2.bin"):
        load_cifar10(path, "train")


def test_cifar10_corrupt_archive(tmp_path: Path) -> None:
    path = tmp_path / "cifar-10-binary.tar.gz"
    path.write_bytes(b"not a tarball at all")
    with pytest.raises(DatasetError, match="cannot read CIFAR archive"):
        load_cifar10(path, "test")


def test_cifar100_tarball_names_from_archive(tmp_path: Path) -> None:
    path = tmp_path / "cifar-100-binary.tar.gz"
    fine_names = [f"fine{i}" for i in range(100)]
    with tarfile.open(path, "w:gz") as tar:
        for split, n in (("train", 5), ("test", 2)):
            tmp = tmp_path / f"{split}.bin"
            write_cifar100_batch(tmp, _images(n, n), np.arange(n) % 20, np.arange(n) * 7 % 100)
            _add(tar, f"cifar-100-binary/{split}.bin", tmp.read_bytes())
        _add(tar, "cifar-100-binary/fine_label_names.txt", "\n".join(fine_names).encode())
    images, labels, classes = load_cifar100(path, "train")
    assert images.shape == (5, 3, 32, 32)
    assert labels.tolist() == [0, 7, 14, 21, 28] and classes == fine_names
    _, coarse, coarse_names = load_cifar100(path, "test", label_mode="coarse")
    assert coarse.tolist() == [0, 1] and len(coarse_names) == 20  # fallback list
    assert CIFAR100_FINE_CLASSES[:3] == ["apple", "aquarium_fish", "baby"]
    assert len(CIFAR100_FINE_CLASSES) == 100


def test_load_dataset_cifar10_from_root(tmp_path: Path, data_env) -> None:
    make_cifar10(tmp_path / "data" / "cifar10")
    ds = load_dataset("CIFAR-10", "test", root=tmp_path / "data", download=False)
    assert ds.name == "cifar10" and ds.split == "test"
    assert ds.images.shape == (2, 3, 32, 32) and ds.labels.dtype == np.int64
    assert ds.classes == CIFAR10_CLASSES


def test_load_dataset_cifar100_coarse(tmp_path: Path, data_env) -> None:
    folder = tmp_path / "cifar-100-binary"
    folder.mkdir()
    write_cifar100_batch(folder / "test.bin", _images(3, 0), [1, 2, 3], [4, 5, 6])
    ds = load_dataset("cifar100", "test", root=tmp_path, download=False, label_mode="coarse")
    assert ds.labels.tolist() == [1, 2, 3] and len(ds.classes) == 20
