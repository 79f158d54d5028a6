"""``ImageFolder``: a dataset from a folder of class sub-folders of images.

Layout::

    root/
      cat/ 001.jpg 002.png ...
      dog/ 001.jpg ...

Classes are the sub-folder names, sorted; label ``i`` is ``classes[i]``. Files
with an image extension (see :data:`IMAGE_EXTENSIONS`, case-insensitive) are
read with Pillow, EXIF-rotated, converted to the mode, resized so that the
shorter side matches the target and centre-cropped. Other files (and hidden
files) are not images and are ignored. Pillow's ``Image.MAX_IMAGE_PIXELS``
decompression-bomb guard stays on.

A file that cannot be read is never dropped silently: by default every bad file
is collected and one :class:`DatasetError` lists them all; with
``on_error="skip"`` each skipped file is named in a warning.
"""

from __future__ import annotations

import os
import warnings
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
from PIL import Image

from ..preprocessing import ImagePreprocessing
from .datasets import Dataset
from .errors import DatasetError

__all__ = [
    "IMAGE_EXTENSIONS",
    "FolderLayout",
    "ImageFolder",
    "ImagePreprocessing",
    "detect_mode",
    "folder_layout",
    "image_files",
    "load_image",
    "model_inputs",
    "read_images",
]

IMAGE_EXTENSIONS: tuple[str, ...] = (
    ".jpg",
    ".jpeg",
    ".png",
    ".bmp",
    ".gif",
    ".webp",
    ".tif",
    ".tiff",
)


def _size(size: int | tuple[int, int]) -> tuple[int, int]:
    h, w = (size, size) if isinstance(size, int) else size
    if h < 1 or w < 1:
        raise DatasetError(f"ImageFolder: expected a positive size (H, W), got {size}")
    return int(h), int(w)


def load_image(path: str | os.PathLike[str], size: int | tuple[int, int], mode: str = "RGB") -> np.ndarray:
    """Read one image, resize its shorter side and centre-crop it (see :class:`ImagePreprocessing`).

    Args:
        path: an image file Pillow can read.
        size: target (H, W), or one int for a square.
        mode: ``"RGB"`` (3 channels) or ``"L"`` (grayscale, 1 channel).

    Returns:
        uint8 array (C, H, W).

    Raises:
        OSError, ValueError, Image.DecompressionBombError: from Pillow, for an
            unreadable or oversized file.
    """
    return ImagePreprocessing(_size(size), mode).load(path)


def model_inputs(
    paths: list[str | os.PathLike[str]] | list[Path],
    prep: ImagePreprocessing,
    normalization: dict[str, Any] | tuple[Any, Any] | None = None,
    *,
    invert: bool = False,
) -> np.ndarray:
    """Image files as a model's input batch, float32 (N, C, H, W): read with ``prep`` and turned
    into floats by a :class:`~glassnet.data.DataLoader` (÷255, then ``(x − mean)/std`` per
    channel), the very code that made the training batches, so the numbers are identical.

    ``normalization``: ``{"mean": [...], "std": [...]}`` (what checkpoints record) or
    ``(mean, std)``; ``invert``: 255 − pixel first (dark strokes on white → MNIST style).
    Unreadable files raise Pillow's error.
    """
    from .loader import DataLoader

    images = np.stack([prep.load(p) for p in paths]) if len(paths) else np.zeros((0, *prep.input_shape), np.uint8)
    if invert:
        images = 255 - images
    norm = (normalization["mean"], normalization["std"]) if isinstance(normalization, dict) else normalization
    data = Dataset(images, np.zeros(len(images), np.int64), ["?"], name="images", split="test")
    loader = DataLoader(data, max(len(images), 1), normalize=norm, prefetch=False)
    return next(iter(loader))[0] if len(images) else np.zeros((0, *prep.input_shape), np.float32)


#: What Pillow raises for a file it cannot read.
READ_ERRORS = (OSError, ValueError, SyntaxError, Image.DecompressionBombError)

GRAY_MODES = ("1", "L", "LA", "I", "I;16", "I;16B", "I;16L", "F")


def image_files(root: str | os.PathLike[str], extensions: tuple[str, ...] = IMAGE_EXTENSIONS) -> list[Path]:
    """The image files under ``root`` (recursively; hidden files left out), sorted."""
    exts = tuple(e.lower() for e in extensions)
    return sorted(
        p
        for p in Path(root).rglob("*")
        if p.is_file() and not p.name.startswith(".") and p.suffix.lower() in exts
        and not any(part.startswith(".") for part in p.relative_to(root).parts)
    )  # fmt: skip


def detect_mode(paths: list[Path], sample: int = 64) -> str:
    """``"L"`` when every sampled file (``sample`` spread over the list) is grayscale, else ``"RGB"``.

    Only the headers are read; unreadable files are left to the real read to report.
    """
    if not paths:
        return "RGB"
    step = max(1, len(paths) // sample)
    for p in paths[::step][:sample]:
        try:
            with Image.open(p) as img:
                if img.mode not in GRAY_MODES:
                    return "RGB"
        except READ_ERRORS:
            continue
    return "L"


def read_images(
    paths: list[Path],
    prep: ImagePreprocessing,
    *,
    root: str | os.PathLike[str] | None = None,
    workers: int | None = None,
    progress: bool | None = False,
    cache: bool | str | os.PathLike[str] = False,
    desc: str = "reading images",
) -> tuple[np.ndarray, dict[int, str]]:
    """Read ``paths`` with ``prep``: (uint8 images (N, C, H, W), errors).

    ``errors`` maps the index of each unreadable file to ``"path: Type: message"``; its row of
    the images is zeros. Files are decoded on ``workers`` threads (default: the CPU count, at most
    8; Pillow releases the GIL while it decodes and resizes) with a progress bar
    (``progress``: True, False, or None for "when stderr is a terminal or in Jupyter").
    ``cache`` (True: the user cache, or a directory) keeps decoded images, keyed by file
    path, size and modification time plus the preprocessing, so a second read of the same
    folder decodes only new or changed files (see :mod:`glassnet.data.imagecache`); ``root``
    (the folder) names the cache file.
    """
    from concurrent.futures import ThreadPoolExecutor

    from .imagecache import ImageCache

    n = len(paths)
    images = np.zeros((n, *prep.input_shape), dtype=np.uint8)
    errors: list[str | None] = [None] * n
    store = ImageCache.open(cache, prep, Path(root).resolve() if root is not None else None) if cache else None
    todo = list(range(n)) if store is None else store.fill(paths, images)
    if todo:
        from tqdm.auto import tqdm

        from .._jupyter import show_progress

        bar = tqdm(total=len(todo), desc=desc, unit="img", disable=not show_progress(progress), leave=False)

        def one(i: int) -> None:
            try:
                images[i] = prep.load(paths[i])
            except READ_ERRORS as exc:
                errors[i] = f"{paths[i]}: {type(exc).__name__}: {exc}"

        n_workers = max(1, min(workers or min(os.cpu_count() or 1, 8), len(todo)))
        try:
            if n_workers == 1:
                for i in todo:
                    one(i)
                    bar.update(1)
            else:
                with ThreadPoolExecutor(n_workers, thread_name_prefix="glassnet-image-read") as pool:
                    for _ in pool.map(one, todo):
                        bar.update(1)
        finally:
            bar.close()
        if store is not None:
            store.update(paths, images, [i for i in todo if errors[i] is None])
    return images, {i: e for i, e in enumerate(errors) if e is not None}


@dataclass(frozen=True)
class FolderLayout:
    """Where the images of a folder of one's own are: ``train`` (class sub-folders), and
    ``val`` / ``test`` when the folder is split into ``train/`` and ``test/`` (or ``val/``)."""

    root: Path
    train: Path
    val: Path | None = None
    test: Path | None = None

    @property
    def is_split(self) -> bool:
        """True when the folder holds its own ``test/`` or ``val/`` split."""
        return self.val is not None or self.test is not None


def folder_layout(path: str | os.PathLike[str]) -> FolderLayout:
    """How ``path`` is laid out: ``train/`` with ``test/`` and/or ``val/`` sub-folders (each of class
    sub-folders), or class sub-folders directly (a lone ``train/`` is the same, one level down).

    Raises:
        DatasetError: ``path`` is not a folder.
    """
    from .datasets import DATASETS

    root = Path(path).expanduser()
    if not root.exists():
        raise DatasetError(
            f"unknown dataset {str(path)!r}; expected one of {', '.join(DATASETS)}, or a folder of class "
            f"sub-folders of images (there is no folder {root})"
        )
    if not root.is_dir():
        raise DatasetError(f"{path} is not a folder (expected a folder of class sub-folders of images)")
    subdirs = {d.name for d in root.iterdir() if d.is_dir()}
    if "train" in subdirs:
        val = root / "val" if "val" in subdirs else None
        test = root / "test" if "test" in subdirs else None
        if val is not None or test is not None or subdirs == {"train"}:
            return FolderLayout(root, root / "train", val, test)
    return FolderLayout(root, root)


class ImageFolder(Dataset):
    """A :class:`Dataset` read from ``root/<class>/<image>`` files.

    Args:
        root: folder whose sub-folders are the classes.
        size: output (H, W), or one int for square images.
        mode: ``"RGB"`` -> images (N, 3, H, W); ``"L"`` -> (N, 1, H, W).
        on_error: ``"raise"`` (default): one DatasetError listing every unreadable
            file; ``"skip"``: leave them out, with one warning naming each.
        split: split name recorded on the dataset.
        extensions: file extensions treated as images.
        preprocessing: an :class:`ImagePreprocessing` (then ``size`` and ``mode`` are ignored).
        classes: the class names and their order (label ``i`` is ``classes[i]``); the folder's
            sub-folders must be among them (a test folder may lack a class). Default: the
            sub-folders, sorted.
        workers, progress, cache: see :func:`read_images` (threads, a progress bar, the
            decoded-image cache).

    Attributes:
        paths: the file of each sample, in order (classes sorted, then files sorted).
        skipped: the ``"path: error"`` entries of the files left out (``on_error="skip"``).
        preprocessing: the :class:`ImagePreprocessing` the images were read with.
        (plus everything of :class:`Dataset`: images uint8 (N, C, H, W), labels int64 (N,).)
    """

    paths: list[Path]

    def __init__(
        self,
        root: str | os.PathLike[str],
        size: int | tuple[int, int] = 32,
        mode: str = "RGB",
        *,
        on_error: str = "raise",
        split: str = "train",
        extensions: tuple[str, ...] = IMAGE_EXTENSIONS,
        preprocessing: ImagePreprocessing | None = None,
        classes: list[str] | None = None,
        workers: int | None = None,
        progress: bool | None = False,
        cache: bool | str | os.PathLike[str] = False,
    ) -> None:
        root = Path(root)
        if mode not in ("RGB", "L"):
            raise DatasetError(f"ImageFolder: expected mode 'RGB' or 'L', got {mode!r}")
        if on_error not in ("raise", "skip"):
            raise DatasetError(f"ImageFolder: expected on_error 'raise' or 'skip', got {on_error!r}")
        prep = preprocessing or ImagePreprocessing(_size(size), mode)
        if not root.is_dir():
            raise DatasetError(f"ImageFolder: {root} is not a directory")
        found_classes = sorted(d.name for d in root.iterdir() if d.is_dir() and not d.name.startswith("."))
        if not found_classes:
            raise DatasetError(f"ImageFolder: {root} has no class sub-folders; expected root/<class>/<image>")
        if classes is None:
            classes = found_classes
        else:
            classes = list(classes)
            unknown = [c for c in found_classes if c not in classes]
            if unknown:
                raise DatasetError(
                    f"ImageFolder: {root} has class folder(s) {unknown} that are not among the classes {classes}"
                )
        files: list[tuple[Path, int]] = []
        for cls in found_classes:
            found = image_files(root / cls, extensions)
            if not found:
                warnings.warn(f"ImageFolder: class folder {root / cls} has no images", stacklevel=2)
            files += [(p, classes.index(cls)) for p in found]
        if not files:
            exts = ", ".join(e.lower() for e in extensions)
            raise DatasetError(f"ImageFolder: no image files ({exts}) under {root}")

        images, bad = read_images([f for f, _ in files], prep, root=root, workers=workers, progress=progress,
                                  cache=cache, desc=f"reading {root.name}")  # fmt: skip
        if bad and on_error == "raise":
            raise DatasetError(
                f"ImageFolder: {len(bad)} of {len(files)} file(s) under {root} could not be read "
                "(pass on_error='skip' to leave them out):\n  " + "\n  ".join(bad.values())
            )
        for entry in bad.values():
            warnings.warn(f"ImageFolder: skipped unreadable file {entry}", stacklevel=2)
        keep = [i for i in range(len(files)) if i not in bad]
        if not keep:
            raise DatasetError(f"ImageFolder: none of the {len(files)} image file(s) under {root} could be read")
        self.paths = [files[i][0] for i in keep]
        self.skipped = list(bad.values())
        self.preprocessing = prep
        labels = np.array([files[i][1] for i in keep], dtype=np.int64)
        super().__init__(
            images[keep] if bad else images,
            labels,
            classes,
            name=root.name,
            split=split,
            source=str(root),
        )
