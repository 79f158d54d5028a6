"""Readers for the CIFAR-10 and CIFAR-100 *binary* distributions.

Only the binary format is read (never the pickled "python version": unpickling
a downloaded file can run arbitrary code). Layout, per record:

* CIFAR-10: 1 label byte (0-9), then 3072 pixel bytes;
* CIFAR-100: 1 coarse label byte (0-19), 1 fine label byte (0-99), then 3072 bytes.

The 3072 pixel bytes are 1024 red, 1024 green, 1024 blue values, each a 32×32
plane in row-major order, i.e. one record is already a (3, 32, 32) CHW image.

The tarballs (``cifar-10-binary.tar.gz``, ``cifar-100-binary.tar.gz``) are read
member by member in one pass, without extracting anything to disk.
"""

from __future__ import annotations

import os
import tarfile
from collections.abc import Iterable, Mapping
from pathlib import Path

import numpy as np

from .errors import DatasetError

__all__ = [
    "CIFAR10_CLASSES",
    "CIFAR100_COARSE_CLASSES",
    "CIFAR100_FINE_CLASSES",
    "CIFAR_IMAGE_BYTES",
    "load_cifar10",
    "load_cifar100",
    "parse_cifar10",
    "parse_cifar100",
    "read_cifar10_batch",
    "read_cifar100_batch",
    "write_cifar10_batch",
    "write_cifar100_batch",
]

CIFAR_IMAGE_BYTES = 3 * 32 * 32  # 3072

#: CIFAR-10 class names, in label order (as in ``batches.meta.txt``).
CIFAR10_CLASSES: list[str] = [
    "airplane",
    "automobile",
    "bird",
    "cat",
    "deer",
    "dog",
    "frog",
    "horse",
    "ship",
    "truck",
]

#: CIFAR-100 fine class names in label order, used only when the archive's
#: ``fine_label_names.txt`` is absent (the official list is alphabetical).
CIFAR100_FINE_CLASSES: list[str] = (
    "apple aquarium_fish baby bear beaver bed bee beetle bicycle bottle bowl boy bridge bus "
    "butterfly camel can castle caterpillar cattle chair chimpanzee clock cloud cockroach "
    "couch crab crocodile cup dinosaur dolphin elephant flatfish forest fox girl hamster "
    "house kangaroo keyboard lamp lawn_mower leopard lion lizard lobster man maple_tree "
    "motorcycle mountain mouse mushroom oak_tree orange orchid otter palm_tree pear "
    "pickup_truck pine_tree plain plate poppy porcupine possum rabbit raccoon ray road "
    "rocket rose sea seal shark shrew skunk skyscraper snail snake spider squirrel "
    "streetcar sunflower sweet_pepper table tank telephone television tiger tractor train "
    "trout tulip turtle wardrobe whale willow_tree wolf woman worm"
).split()

#: CIFAR-100 coarse (superclass) names in label order; fallback for
#: ``coarse_label_names.txt``.
CIFAR100_COARSE_CLASSES: list[str] = (
    "aquatic_mammals fish flowers food_containers fruit_and_vegetables "
    "household_electrical_devices household_furniture insects large_carnivores "
    "large_man-made_outdoor_things large_natural_outdoor_scenes "
    "large_omnivores_and_herbivores medium_mammals non-insect_invertebrates people "
    "reptiles small_mammals trees vehicles_1 vehicles_2"
).split()

_C10_DIR = "cifar-10-batches-bin"
_C10_TRAIN = [f"data_batch_{i}.bin" for i in range(1, 6)]
_C10_TEST = ["test_batch.bin"]
_C10_META = "batches.meta.txt"
_C100_DIR = "cifar-100-binary"
_C100_META = {"fine": "fine_label_names.txt", "coarse": "coarse_label_names.txt"}


def _parse_records(data: bytes, source: str, n_labels: int) -> tuple[np.ndarray, np.ndarray]:
    """Split CIFAR records into (images (N,3,32,32) uint8, labels (N, n_labels) uint8)."""
    record = n_labels + CIFAR_IMAGE_BYTES
    if len(data) == 0 or len(data) % record != 0:
        n, rest = divmod(len(data), record)
        raise DatasetError(
            f"{source}: expected a whole number of {record}-byte records "
            f"({n_labels} label byte(s) + {CIFAR_IMAGE_BYTES} pixel bytes), got {len(data)} bytes "
            f"({n} records + {rest} bytes)"
        )
    rec = np.frombuffer(data, dtype=np.uint8).reshape(-1, record)
    images = rec[:, n_labels:].reshape(-1, 3, 32, 32).copy()
    labels = rec[:, :n_labels].copy()
    return images, labels


def _check_range(labels: np.ndarray, limit: int, source: str, what: str) -> None:
    bad = np.flatnonzero(labels >= limit)
    if bad.size:
        i = int(bad[0])
        raise DatasetError(
            f"{source}: {what} label {int(labels[i])} at record {i} is out of range; "
            f"expected 0..{limit - 1} ({bad.size} bad record(s))"
        )


def parse_cifar10(data: bytes, source: str = "<bytes>") -> tuple[np.ndarray, np.ndarray]:
    """Parse CIFAR-10 binary records.

    Args:
        data: the content of a batch file, N × 3073 bytes.
        source: name used in error messages.

    Returns:
        ``images`` uint8 (N, 3, 32, 32) and ``labels`` int64 (N,) in 0..9.
    """
    images, labels = _parse_records(data, source, 1)
    _check_range(labels[:, 0], 10, source, "class")
    return images, labels[:, 0].astype(np.int64)


def parse_cifar100(data: bytes, source: str = "<bytes>") -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Parse CIFAR-100 binary records.

    Args:
        data: the content of ``train.bin`` or ``test.bin``, N × 3074 bytes.
        source: name used in error messages.

    Returns:
        ``images`` uint8 (N, 3, 32, 32), ``coarse`` int64 (N,) in 0..19 and
        ``fine`` int64 (N,) in 0..99.
    """
    images, labels = _parse_records(data, source, 2)
    _check_range(labels[:, 0], 20, source, "coarse")
    _check_range(labels[:, 1], 100, source, "fine")
    return images, labels[:, 0].astype(np.int64), labels[:, 1].astype(np.int64)


def _read_file(path: str | os.PathLike[str]) -> tuple[bytes, str]:
    p = Path(path)
    try:
        return p.read_bytes(), p.name
    except OSError as exc:
        raise DatasetError(f"{p}: cannot read file: {exc}") from exc


def read_cifar10_batch(path: str | os.PathLike[str]) -> tuple[np.ndarray, np.ndarray]:
    """Read one CIFAR-10 batch file: images uint8 (N,3,32,32), labels int64 (N,)."""
    return parse_cifar10(*_read_file(path))


def read_cifar100_batch(
    path: str | os.PathLike[str],
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Read a CIFAR-100 file: images uint8 (N,3,32,32), coarse (N,), fine (N,) int64."""
    return parse_cifar100(*_read_file(path))


def _records_bytes(images: np.ndarray, labels: list[np.ndarray]) -> bytes:
    images = np.asarray(images)
    if images.dtype != np.uint8 or images.ndim != 4 or images.shape[1:] != (3, 32, 32):
        raise DatasetError(f"expected uint8 images of shape (N, 3, 32, 32), got {images.dtype} {images.shape}")
    cols = [np.asarray(lab).astype(np.uint8).reshape(-1, 1) for lab in labels]
    for c in cols:
        if c.shape[0] != images.shape[0]:
            raise DatasetError(f"expected {images.shape[0]} labels, got {c.shape[0]}")
    return np.concatenate([*cols, images.reshape(images.shape[0], -1)], axis=1).tobytes()


def write_cifar10_batch(path: str | os.PathLike[str], images: np.ndarray, labels: np.ndarray) -> None:
    """Write images uint8 (N,3,32,32) and labels (N,) as a CIFAR-10 binary batch."""
    Path(path).write_bytes(_records_bytes(images, [labels]))


def write_cifar100_batch(
    path: str | os.PathLike[str], images: np.ndarray, coarse: np.ndarray, fine: np.ndarray
) -> None:
    """Write images uint8 (N,3,32,32) with coarse and fine labels as CIFAR-100 binary."""
    Path(path).write_bytes(_records_bytes(images, [coarse, fine]))


def _read_members(source: Path, folder: str, wanted: Iterable[str]) -> dict[str, bytes]:
    """Return {file name: bytes} for the wanted files of a CIFAR archive or folder.

    ``source`` is the tarball or the extracted folder (``folder`` itself or its
    parent). Missing files are simply absent from the result.
    """
    wanted = set(wanted)
    found: dict[str, bytes] = {}
    if source.is_dir():
        base = source / folder if (source / folder).is_dir() else source
        for name in wanted:
            f = base / name
            if f.is_file():
                found[name] = f.read_bytes()
        return found
    try:
        with tarfile.open(source, mode="r:*") as tar:
            for member in tar:
                parts = Path(member.name).parts
                if member.isfile() and len(parts) == 2 and parts[0] == folder and parts[1] in wanted:
                    fh = tar.extractfile(member)
                    assert fh is not None
                    found[parts[1]] = fh.read()
    except (tarfile.TarError, OSError, EOFError) as exc:
        raise DatasetError(f"{source}: cannot read CIFAR archive: {exc}") from exc
    return found


def _names(raw: bytes | None, fallback: list[str], source: str, expected: int) -> list[str]:
    if raw is None:
        return list(fallback)
    names = [line.strip() for line in raw.decode("utf-8").splitlines() if line.strip()]
    if len(names) != expected:
        raise DatasetError(f"{source}: expected {expected} class names, got {len(names)}")
    return names


def _missing(source: Path, folder: str, names: Iterable[str]) -> DatasetError:
    return DatasetError(
        f"{source}: missing {', '.join(sorted(names))} (expected under {folder}/ in the archive or folder)"
    )


def load_cifar10(source: str | os.PathLike[str], split: str = "train") -> tuple[np.ndarray, np.ndarray, list[str]]:
    """Load a CIFAR-10 split from the binary tarball or its extracted folder.

    Args:
        source: ``cifar-10-binary.tar.gz`` or the ``cifar-10-batches-bin`` folder
            (or the folder containing it).
        split: ``"train"`` (data_batch_1..5, 50,000 images) or ``"test"``
            (test_batch, 10,000 images).

    Returns:
        images uint8 (N, 3, 32, 32), labels int64 (N,), class names (10).
    """
    source = Path(source)
    files = {"train": _C10_TRAIN, "test": _C10_TEST}.get(split)
    if files is None:
        raise DatasetError(f"cifar10: unknown split {split!r}; expected 'train' or 'test'")
    members = _read_members(source, _C10_DIR, [*files, _C10_META])
    missing = [f for f in files if f not in members]
    if missing:
        raise _missing(source, _C10_DIR, missing)
    parts = [parse_cifar10(members[f], f"{source.name}:{f}") for f in files]
    images = np.concatenate([p[0] for p in parts])
    labels = np.concatenate([p[1] for p in parts])
    classes = _names(members.get(_C10_META), CIFAR10_CLASSES, f"{source.name}:{_C10_META}", 10)
    return images, labels, classes


def load_cifar100(
    source: str | os.PathLike[str], split: str = "train", label_mode: str = "fine"
) -> tuple[np.ndarray, np.ndarray, list[str]]:
    """Load a CIFAR-100 split from the binary tarball or its extracted folder.

    Args:
        source: ``cifar-100-binary.tar.gz`` or the ``cifar-100-binary`` folder.
        split: ``"train"`` (train.bin, 50,000 images) or ``"test"`` (test.bin, 10,000).
        label_mode: ``"fine"`` (100 classes) or ``"coarse"`` (20 superclasses).

    Returns:
        images uint8 (N, 3, 32, 32), labels int64 (N,), class names read from
        ``fine_label_names.txt`` / ``coarse_label_names.txt`` when present.
    """
    source = Path(source)
    if split not in ("train", "test"):
        raise DatasetError(f"cifar100: unknown split {split!r}; expected 'train' or 'test'")
    if label_mode not in _C100_META:
        raise DatasetError(f"cifar100: unknown label_mode {label_mode!r}; expected 'fine' or 'coarse'")
    data_name = f"{split}.bin"
    meta = _C100_META[label_mode]
    members = _read_members(source, _C100_DIR, [data_name, meta])
    if data_name not in members:
        raise _missing(source, _C100_DIR, [data_name])
    images, coarse, fine = parse_cifar100(members[data_name], f"{source.name}:{data_name}")
    fallback: Mapping[str, tuple[list[str], int]] = {
        "fine": (CIFAR100_FINE_CLASSES, 100),
        "coarse": (CIFAR100_COARSE_CLASSES, 20),
    }
    names, count = fallback[label_mode]
    classes = _names(members.get(meta), names, f"{source.name}:{meta}", count)
    return images, (fine if label_mode == "fine" else coarse), classes
