"""Datasets: the :class:`Dataset` container, the registry and :func:`load_dataset`.

Built-in datasets: ``shapes`` and ``shapes-rgb`` (generated in memory), ``mnist``,
``fashion-mnist``, ``cifar10`` and ``cifar100`` (files on disk or downloaded).

Where the files of a dataset are looked for, in order (first hit wins, per file):

1. the explicit ``root`` argument: ``root/<folder>/`` and ``root/`` itself;
2. ``$GLASSNET_DATA`` (one or more directories separated by ``os.pathsep``):
   ``<dir>/<folder>/``;
3. the user cache, ``$XDG_CACHE_HOME/glassnet/<folder>/`` or
   ``~/.cache/glassnet/<folder>/``;
4. system locations: ``/usr/share/datasets/<folder>/`` (the Debian package
   ``dataset-fashion-mnist`` installs ``/usr/share/datasets/fashion-mnist/``);
5. a download into the user cache from the dataset's canonical URLs, or from
   ``mirrors=[...]`` (base URLs of the files) or ``$GLASSNET_MIRROR`` (a URL laid
   out like the cache, ``<mirror>/<folder>/<file>``, e.g. a cache directory
   served by ``python -m http.server``), each file checked against its published
   SHA-256 before it is placed (atomically) in the cache.

``<folder>`` is ``mnist``, ``fashion-mnist``, ``cifar10`` or ``cifar100``. IDX files
may be gzip-compressed (``.gz``, as published) or plain (the same name without
``.gz``); CIFAR may be the binary tarball or its extracted folder.

Files found on disk are not hashed (a system copy may be recompressed, as the
Debian one is); they are validated structurally by the strict readers instead.
"""

from __future__ import annotations

import contextlib
import os
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from .cifar import load_cifar10, load_cifar100
from .download import download_file
from .errors import DatasetError, DatasetNotFoundError, DownloadError
from .idx import read_idx
from .shapes import SHAPES_CLASSES, shapes_split

__all__ = [
    "DATASETS",
    "FASHION_MNIST_CLASSES",
    "MNIST_CLASSES",
    "SYSTEM_DATA_DIRS",
    "Dataset",
    "DatasetSpec",
    "DatasetStatus",
    "RemoteFile",
    "available_datasets",
    "cache_dir",
    "dataset_status",
    "format_status",
    "load_dataset",
    "locate_files",
    "search_dirs",
    "train_val_split",
]

SPLITS = ("train", "test")

MNIST_CLASSES: list[str] = [str(d) for d in range(10)]
FASHION_MNIST_CLASSES: list[str] = [
    "T-shirt/top",
    "Trouser",
    "Pullover",
    "Dress",
    "Coat",
    "Sandal",
    "Shirt",
    "Sneaker",
    "Bag",
    "Ankle boot",
]

#: System-wide data directories searched after the user cache.
SYSTEM_DATA_DIRS: tuple[Path, ...] = (Path("/usr/share/datasets"),)


# --------------------------------------------------------------------------- container


@dataclass(eq=False, repr=False)
class Dataset:
    """An in-memory image classification dataset.

    Attributes:
        images: uint8 array (N, C, H, W), as stored (0-255).
        labels: int64 array (N,), each in ``0..len(classes)-1``.
        classes: class names, indexed by label.
        name: dataset name (e.g. ``"mnist"``).
        split: ``"train"``, ``"test"``, ``"val"``, ...
        source: where the data came from (a path, or ``"generated"``).
        train_split: for a non-training split, a callable returning the matching
            training split; ``DataLoader(normalize="auto")`` takes its
            mean/std from there.
    """

    images: np.ndarray
    labels: np.ndarray
    classes: list[str]
    name: str = "dataset"
    split: str = "train"
    source: str = ""
    train_split: Callable[[], Dataset] | None = field(default=None, compare=False)
    _stats: tuple[np.ndarray, np.ndarray] | None = field(default=None, init=False)
    _train_stats: tuple[np.ndarray, np.ndarray] | None = field(default=None, init=False)

    def __post_init__(self) -> None:
        images = np.asarray(self.images)
        labels = np.asarray(self.labels)
        if images.ndim != 4:
            raise DatasetError(f"{self.name}: expected images of shape (N, C, H, W), got shape {images.shape}")
        if images.dtype != np.uint8:
            raise DatasetError(f"{self.name}: expected uint8 images, got {images.dtype}")
        if labels.ndim != 1 or labels.shape[0] != images.shape[0]:
            raise DatasetError(f"{self.name}: expected labels of shape ({images.shape[0]},), got {labels.shape}")
        if not np.issubdtype(labels.dtype, np.integer):
            raise DatasetError(f"{self.name}: expected integer labels, got {labels.dtype}")
        labels = labels.astype(np.int64, copy=False)
        if labels.size and (labels.min() < 0 or labels.max() >= len(self.classes)):
            raise DatasetError(
                f"{self.name}: labels must be in 0..{len(self.classes) - 1} "
                f"({len(self.classes)} classes), got {labels.min()}..{labels.max()}"
            )
        self.images, self.labels, self.classes = images, labels, list(self.classes)

    def __len__(self) -> int:
        return int(self.images.shape[0])

    def __getitem__(self, index: int) -> tuple[np.ndarray, int]:
        """Return (image uint8 (C, H, W), label)."""
        return self.images[index], int(self.labels[index])

    def __repr__(self) -> str:
        return (
            f"Dataset(name={self.name!r}, split={self.split!r}, n={len(self)}, "
            f"image_shape={self.image_shape}, classes={len(self.classes)})"
        )

    @property
    def num_classes(self) -> int:
        """Number of classes."""
        return len(self.classes)

    @property
    def image_shape(self) -> tuple[int, int, int]:
        """(C, H, W) of one image."""
        c, h, w = self.images.shape[1:]
        return int(c), int(h), int(w)

    def class_counts(self) -> np.ndarray:
        """Images per class, int64 (num_classes,)."""
        return np.bincount(self.labels, minlength=self.num_classes)

    def mean_std(self) -> tuple[np.ndarray, np.ndarray]:
        """Per-channel mean and std of these images in [0, 1] units, float32 (C,) each."""
        if self._stats is None:
            from .loader import compute_mean_std

            self._stats = compute_mean_std(self.images)
        return self._stats

    def training_mean_std(self) -> tuple[np.ndarray, np.ndarray]:
        """Per-channel mean and std, float32 (C,), of the training split of this data.

        A ``"train"`` split uses its own images; another split uses
        ``train_split()`` (loaded once, only its statistics are kept).

        Raises:
            DatasetError: a non-training split with no link to its training split.
        """
        if self.split == "train":
            return self.mean_std()
        if self.train_split is None:
            raise DatasetError(
                f"{self.name} split {self.split!r}: normalization statistics must come from "
                "the training split, and this dataset has no link to one (train_split=None); "
                "pass normalize=(mean, std), e.g. compute_mean_std(train.images)"
            )
        if self._train_stats is None:
            self._train_stats = self.train_split().mean_std()
        return self._train_stats

    def subset(self, indices: Sequence[int] | np.ndarray, split: str | None = None) -> Dataset:
        """A new Dataset holding ``images[indices]`` (a copy) and the same classes."""
        idx = np.asarray(indices)
        return Dataset(
            self.images[idx],
            self.labels[idx],
            self.classes,
            name=self.name,
            split=self.split if split is None else split,
            source=self.source,
            train_split=self.train_split,
        )


def train_val_split(dataset: Dataset, val_fraction: float = 0.1, seed: int = 0) -> tuple[Dataset, Dataset]:
    """Split a dataset into (train, val), stratified by class and seeded.

    The validation part's ``train_split`` points at the training part, so
    ``normalize="auto"`` uses training statistics for both.
    """
    if not 0 < val_fraction < 1:
        raise DatasetError(f"train_val_split: expected 0 < val_fraction < 1, got {val_fraction}")
    rng = np.random.default_rng(seed)
    val_idx = []
    for c in range(dataset.num_classes):
        members = rng.permutation(np.flatnonzero(dataset.labels == c))
        val_idx.append(members[: int(round(len(members) * val_fraction))])
    val_mask = np.zeros(len(dataset), dtype=bool)
    val_mask[np.concatenate(val_idx)] = True
    train = dataset.subset(np.flatnonzero(~val_mask), split=dataset.split)
    val = dataset.subset(np.flatnonzero(val_mask), split="val")
    val.train_split = lambda: train
    return train, val


# --------------------------------------------------------------------------- registry


@dataclass(frozen=True)
class RemoteFile:
    """One published file of a dataset.

    Attributes:
        name: file name as published (and as stored in the cache).
        sha256: its published SHA-256 (hex).
        size: its size in bytes.
        alternatives: other names accepted on disk instead (the uncompressed
            name, or the folder a tarball extracts to).
    """

    name: str
    sha256: str
    size: int | None = None
    alternatives: tuple[str, ...] = ()


#: A dataset reader: (paths by published name, split, options) -> (images, labels, classes).
Loader = Callable[[Mapping[str, Path], str, Mapping[str, Any]], tuple[np.ndarray, np.ndarray, list[str]]]


@dataclass(frozen=True)
class DatasetSpec:
    """How to find, fetch and read one dataset."""

    name: str
    description: str
    folder: str
    files: tuple[RemoteFile, ...] = ()
    splits: Mapping[str, tuple[str, ...]] = field(default_factory=dict)
    urls: tuple[str, ...] = ()
    loader: Loader | None = None

    @property
    def builtin(self) -> bool:
        """True for generated datasets (no files)."""
        return not self.files

    def file(self, name: str) -> RemoteFile:
        """The RemoteFile called ``name``."""
        return next(f for f in self.files if f.name == name)


def _idx_files(sha: Sequence[str], sizes: Sequence[int]) -> tuple[RemoteFile, ...]:
    names = [
        "train-images-idx3-ubyte.gz",
        "train-labels-idx1-ubyte.gz",
        "t10k-images-idx3-ubyte.gz",
        "t10k-labels-idx1-ubyte.gz",
    ]
    return tuple(
        RemoteFile(n, s, z, alternatives=(n.removesuffix(".gz"),)) for n, s, z in zip(names, sha, sizes, strict=True)
    )


_IDX_SPLITS = {
    "train": ("train-images-idx3-ubyte.gz", "train-labels-idx1-ubyte.gz"),
    "test": ("t10k-images-idx3-ubyte.gz", "t10k-labels-idx1-ubyte.gz"),
}


def _load_idx(paths: Mapping[str, Path], split: str, classes: list[str]) -> tuple[np.ndarray, np.ndarray, list[str]]:
    img_name, lab_name = _IDX_SPLITS[split]
    images = read_idx(paths[img_name], type_code=0x08, ndim=3)
    labels = read_idx(paths[lab_name], type_code=0x08, ndim=1)
    if images.shape[0] != labels.shape[0]:
        raise DatasetError(
            f"{paths[img_name].name} has {images.shape[0]} images but {paths[lab_name].name} "
            f"has {labels.shape[0]} labels; expected the same number"
        )
    if labels.size and labels.max() >= len(classes):
        raise DatasetError(f"{paths[lab_name].name}: label {labels.max()} out of range; expected 0..{len(classes) - 1}")
    return images[:, None], labels.astype(np.int64), list(classes)


def _mnist_loader(classes: list[str]) -> Loader:
    return lambda paths, split, options: _load_idx(paths, split, classes)


def _cifar10_loader(
    paths: Mapping[str, Path], split: str, options: Mapping[str, Any]
) -> tuple[np.ndarray, np.ndarray, list[str]]:
    return load_cifar10(paths["cifar-10-binary.tar.gz"], split)


def _cifar100_loader(
    paths: Mapping[str, Path], split: str, options: Mapping[str, Any]
) -> tuple[np.ndarray, np.ndarray, list[str]]:
    return load_cifar100(paths["cifar-100-binary.tar.gz"], split, options.get("label_mode", "fine"))


# Checksums: SHA-256 and sizes of the published files, as recorded in TensorFlow
# Datasets' url_checksums (mnist.txt, fashion_mnist.txt, cifar10.txt, cifar100.txt).
# The MNIST files on the ossci-datasets and cvdf-datasets mirrors are byte copies of
# the original LeCun files (same sizes; torchvision checks the same files by MD5).
DATASETS: dict[str, DatasetSpec] = {
    spec.name: spec
    for spec in [
        DatasetSpec("shapes", "synthetic glyphs, 10 classes, 1×28×28 (generated)", "shapes"),
        DatasetSpec("shapes-rgb", "synthetic glyphs, 10 classes, 3×32×32 (generated)", "shapes"),
        DatasetSpec(
            "mnist",
            "handwritten digits, 10 classes, 1×28×28, 60000 train / 10000 test",
            "mnist",
            files=_idx_files(
                [
                    "440fcabf73cc546fa21475e81ea370265605f56be210a4024d2ca8f203523609",
                    "3552534a0a558bbed6aed32b30c495cca23d567ec52cac8be1a0730e8010255c",
                    "8d422c7b0a1c1c79245a5bcf07fe86e33eeafee792b84584aec276f5a2dbc4e6",
                    "f7ae60f92e00ec6debd23a6088c31dbd2371eca3ffa0defaefb259924204aec6",
                ],
                [9912422, 28881, 1648877, 4542],
            ),
            splits=_IDX_SPLITS,
            urls=(
                "https://ossci-datasets.s3.amazonaws.com/mnist/",
                "https://storage.googleapis.com/cvdf-datasets/mnist/",
            ),
            loader=_mnist_loader(MNIST_CLASSES),
        ),
        DatasetSpec(
            "fashion-mnist",
            "Zalando article images, 10 classes, 1×28×28, 60000 train / 10000 test",
            "fashion-mnist",
            files=_idx_files(
                [
                    "3aede38d61863908ad78613f6a32ed271626dd12800ba2636569512369268a84",
                    "a04f17134ac03560a47e3764e11b92fc97de4d1bfaf8ba1a3aa29af54cc90845",
                    "346e55b948d973a97e58d2351dde16a484bd415d4595297633bb08f03db6a073",
                    "67da17c76eaffca5446c3361aaab5c3cd6d1c2608764d35dfb1850b086bf8dd5",
                ],
                [26421880, 29515, 4422102, 5148],
            ),
            splits=_IDX_SPLITS,
            urls=("http://fashion-mnist.s3-website.eu-central-1.amazonaws.com/",),
            loader=_mnist_loader(FASHION_MNIST_CLASSES),
        ),
        DatasetSpec(
            "cifar10",
            "tiny colour photos, 10 classes, 3×32×32, 50000 train / 10000 test",
            "cifar10",
            files=(
                RemoteFile(
                    "cifar-10-binary.tar.gz",
                    "c4a38c50a1bc5f3a1c5537f2155ab9d68f9f25eb1ed8d9ddda3db29a59bca1dd",
                    170052171,
                    alternatives=("cifar-10-batches-bin",),
                ),
            ),
            splits={"train": ("cifar-10-binary.tar.gz",), "test": ("cifar-10-binary.tar.gz",)},
            urls=("https://www.cs.toronto.edu/~kriz/",),
            loader=_cifar10_loader,
        ),
        DatasetSpec(
            "cifar100",
            "tiny colour photos, 100 classes (20 coarse), 3×32×32, 50000 train / 10000 test",
            "cifar100",
            files=(
                RemoteFile(
                    "cifar-100-binary.tar.gz",
                    "58a81ae192c23a4be8b1804d68e518ed807d710a4eb253b1f2a199162a40d8ec",
                    168513733,
                    alternatives=("cifar-100-binary",),
                ),
            ),
            splits={"train": ("cifar-100-binary.tar.gz",), "test": ("cifar-100-binary.tar.gz",)},
            urls=("https://www.cs.toronto.edu/~kriz/",),
            loader=_cifar100_loader,
        ),
    ]
}

_ALIASES = {
    "fashion": "fashion-mnist",
    "fashionmnist": "fashion-mnist",
    "fmnist": "fashion-mnist",
    "cifar-10": "cifar10",
    "cifar-100": "cifar100",
    "shapesrgb": "shapes-rgb",
}


def _spec(name: str) -> DatasetSpec:
    key = name.strip().lower().replace("_", "-")
    key = _ALIASES.get(key, key)
    if key not in DATASETS:
        raise DatasetError(f"unknown dataset {name!r}; expected one of {', '.join(DATASETS)}")
    return DATASETS[key]


def available_datasets() -> list[str]:
    """Names accepted by :func:`load_dataset`."""
    return list(DATASETS)


# --------------------------------------------------------------------------- locations


def cache_dir() -> Path:
    """The user cache: ``$XDG_CACHE_HOME/glassnet`` or ``~/.cache/glassnet``."""
    xdg = os.environ.get("XDG_CACHE_HOME")
    base = Path(xdg) if xdg else Path.home() / ".cache"
    return base / "glassnet"


def search_dirs(root: str | os.PathLike[str] | None = None) -> list[tuple[str, Path]]:
    """Base data directories in search order, each with its origin label.

    Returns:
        [(label, path), ...] with labels ``"root"``, ``"$GLASSNET_DATA"``,
        ``"cache"`` and ``"system"``.
    """
    dirs: list[tuple[str, Path]] = []
    if root is not None:
        dirs.append(("root", Path(root).expanduser()))
    env = os.environ.get("GLASSNET_DATA", "")
    dirs += [("$GLASSNET_DATA", Path(p).expanduser()) for p in env.split(os.pathsep) if p]
    dirs.append(("cache", cache_dir()))
    dirs += [("system", Path(p)) for p in SYSTEM_DATA_DIRS]
    return dirs


def _dataset_dirs(spec: DatasetSpec, root: str | os.PathLike[str] | None) -> list[tuple[str, Path]]:
    out: list[tuple[str, Path]] = []
    for label, base in search_dirs(root):
        out.append((label, base / spec.folder))
        if label == "root":
            out.append((label, base))
    return out


def _find(remote: RemoteFile, dirs: Sequence[tuple[str, Path]]) -> Path | None:
    for _, d in dirs:
        for candidate in (remote.name, *remote.alternatives):
            p = d / candidate
            if p.exists():
                return p
    return None


def _mirror_urls(spec: DatasetSpec, mirrors: Sequence[str] | str | None) -> list[str]:
    """Base URLs (ending in '/') under which the spec's files are fetched."""
    if isinstance(mirrors, str):
        mirrors = [mirrors]
    if mirrors:
        return [m.rstrip("/") + "/" for m in mirrors]
    env = os.environ.get("GLASSNET_MIRROR")
    if env:
        return [f"{env.rstrip('/')}/{spec.folder}/"]
    return list(spec.urls)


def _missing_error(
    spec: DatasetSpec,
    split: str,
    missing: Sequence[RemoteFile],
    dirs: Sequence[tuple[str, Path]],
    reason: str,
) -> DatasetNotFoundError:
    lines = [f"{spec.name} (split {split!r}): {len(missing)} file(s) missing:"]
    for f in missing:
        alt = f" (or {' / '.join(f.alternatives)})" if f.alternatives else ""
        lines.append(f"  {f.name}{alt}")
    lines.append("Searched, in order:")
    lines += [f"  {d}  [{label}]" for label, d in dirs]
    lines.append(reason)
    lines.append(
        f"To fix: put the file(s) in {cache_dir() / spec.folder}/ (or any directory above), "
        f"or set GLASSNET_DATA to a directory holding {spec.folder}/, or pass root= (--data-root); "
        f"or download them: `glassnet datasets fetch {spec.name}` (or --download on train and evaluate, "
        "download=True in Python; a mirror can be set with mirrors= or $GLASSNET_MIRROR)."
    )
    return DatasetNotFoundError("\n".join(lines))


def locate_files(
    name: str,
    split: str = "train",
    root: str | os.PathLike[str] | None = None,
    download: bool = True,
    *,
    mirrors: Sequence[str] | str | None = None,
    checksums: Mapping[str, str] | None = None,
    progress: bool = True,
) -> dict[str, Path]:
    """Find (or download) the files of one split; returns {published name: path}.

    See the module docstring for the search order. ``checksums`` maps file names
    to SHA-256 hex digests and overrides the registry (for private mirrors and
    tests); sizes are only checked for registry checksums.

    Raises:
        DatasetNotFoundError: a file is missing and could not be downloaded; the
            message lists the missing files, every directory searched, the
            download errors and where to put the files.
        ChecksumError: a downloaded file failed verification (it was deleted).
    """
    spec = _spec(name)
    if split not in spec.splits:
        raise DatasetError(f"{spec.name}: unknown split {split!r}; expected one of {SPLITS}")
    dirs = _dataset_dirs(spec, root)
    remotes = [spec.file(n) for n in spec.splits[split]]
    found: dict[str, Path] = {}
    missing: list[RemoteFile] = []
    for remote in remotes:
        path = _find(remote, dirs)
        if path is None:
            missing.append(remote)
        else:
            found[remote.name] = path
    if not missing:
        return found
    if not download:
        raise _missing_error(spec, split, missing, dirs, "Download disabled (download=False).")
    bases = _mirror_urls(spec, mirrors)
    folder = cache_dir() / spec.folder
    created = [d for d in (folder, folder.parent) if not d.exists()]
    errors: list[str] = []
    still: list[RemoteFile] = []
    for remote in missing:
        override = (checksums or {}).get(remote.name)
        sha = override or remote.sha256
        size = None if override else remote.size
        dest = cache_dir() / spec.folder / remote.name
        for base in bases:
            try:
                found[remote.name] = download_file(base + remote.name, dest, sha256=sha, size=size, progress=progress)
                break
            except DownloadError as exc:
                errors.append(f"  {exc}")
        else:
            still.append(remote)
    if still:
        for d in created:  # leave no empty cache folders behind
            with contextlib.suppress(OSError):
                d.rmdir()
        reason = "Download failed:\n" + "\n".join(errors)
        raise _missing_error(spec, split, still, dirs, reason)
    return found


# --------------------------------------------------------------------------- loading


def load_dataset(
    name: str,
    split: str = "train",
    root: str | os.PathLike[str] | None = None,
    download: bool = True,
    *,
    mirrors: Sequence[str] | str | None = None,
    checksums: Mapping[str, str] | None = None,
    progress: bool = True,
    label_mode: str = "fine",
    seed: int = 0,
    n: int | None = None,
) -> Dataset:
    """Load a built-in dataset split into memory.

    Args:
        name: ``shapes``, ``shapes-rgb``, ``mnist``, ``fashion-mnist``,
            ``cifar10`` or ``cifar100`` (case and ``_``/``-`` insensitive).
        split: ``"train"`` or ``"test"``.
        root: a directory searched first (``root/<folder>/`` and ``root/``).
        download: fetch missing files into the user cache.
        mirrors: base URLs to download from instead of the canonical ones
            (file URL = base + file name); default ``$GLASSNET_MIRROR/<folder>/``
            when that variable is set.
        checksums: {file name: SHA-256} overriding the published checksums.
        progress: show download progress bars.
        label_mode: CIFAR-100 only: ``"fine"`` (100 classes) or ``"coarse"`` (20).
        seed: shapes only: generator seed.
        n: shapes only: number of images (default 12,000 train / 2,000 test).

    Returns:
        A :class:`Dataset`: images uint8 (N, C, H, W), labels int64 (N,).
        MNIST and Fashion-MNIST are (N, 1, 28, 28); CIFAR (N, 3, 32, 32);
        ``shapes`` (N, 1, 28, 28) and ``shapes-rgb`` (N, 3, 32, 32).
    """
    spec = _spec(name)
    if split not in SPLITS:
        raise DatasetError(f"{spec.name}: unknown split {split!r}; expected one of {SPLITS}")

    def train_split() -> Dataset:
        return load_dataset(
            spec.name,
            "train",
            root,
            download,
            mirrors=mirrors,
            checksums=checksums,
            progress=progress,
            label_mode=label_mode,
            seed=seed,
        )

    link = None if split == "train" else train_split
    if spec.builtin:
        images, labels = shapes_split(split, n=n, seed=seed, rgb=spec.name == "shapes-rgb")
        return Dataset(
            images,
            labels,
            SHAPES_CLASSES,
            name=spec.name,
            split=split,
            source=f"generated (seed={seed})",
            train_split=link,
        )
    paths = locate_files(
        spec.name,
        split,
        root,
        download,
        mirrors=mirrors,
        checksums=checksums,
        progress=progress,
    )
    assert spec.loader is not None
    images, labels, classes = spec.loader(paths, split, {"label_mode": label_mode})
    source = ", ".join(sorted({str(p.parent) for p in paths.values()}))
    return Dataset(images, labels, classes, name=spec.name, split=split, source=source, train_split=link)


# --------------------------------------------------------------------------- status


@dataclass(frozen=True)
class DatasetStatus:
    """Where one dataset's files are.

    Attributes:
        name: dataset name.
        description: one line about it.
        state: ``"built-in"``, ``"found"``, ``"partial"`` or ``"missing"``.
        found: {file name: path where it was found}.
        missing: names of the files not found anywhere.
    """

    name: str
    description: str
    state: str
    found: Mapping[str, Path]
    missing: tuple[str, ...]

    @property
    def location(self) -> str:
        """The folder(s) holding the files, or the state when there are none."""
        if self.state == "built-in":
            return "built-in (generated in memory)"
        if not self.found:
            return "missing"
        return ", ".join(sorted({str(p.parent) for p in self.found.values()}))

    def __str__(self) -> str:
        text = f"{self.name:<14} {self.state:<9} {self.location}"
        if self.missing and self.found:
            text += f" (missing: {', '.join(self.missing)})"
        return text


def dataset_status(root: str | os.PathLike[str] | None = None) -> list[DatasetStatus]:
    """For every registered dataset, where its files are found (nothing is downloaded)."""
    out: list[DatasetStatus] = []
    for spec in DATASETS.values():
        if spec.builtin:
            out.append(DatasetStatus(spec.name, spec.description, "built-in", {}, ()))
            continue
        dirs = _dataset_dirs(spec, root)
        found: dict[str, Path] = {}
        missing: list[str] = []
        for remote in spec.files:
            path = _find(remote, dirs)
            if path is None:
                missing.append(remote.name)
            else:
                found[remote.name] = path
        state = "missing" if not found else ("partial" if missing else "found")
        out.append(DatasetStatus(spec.name, spec.description, state, found, tuple(missing)))
    return out


def format_status(root: str | os.PathLike[str] | None = None) -> str:
    """A printable table of :func:`dataset_status` plus the directories searched."""
    lines = [str(s) for s in dataset_status(root)]
    lines.append("")
    lines.append("searched: " + ", ".join(f"{p} [{label}]" for label, p in search_dirs(root)))
    return "\n".join(lines)
