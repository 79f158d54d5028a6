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
from pathlib import Path

import numpy as np
from PIL import Image, ImageOps

from .datasets import Dataset
from .errors import DatasetError

__all__ = ["IMAGE_EXTENSIONS", "ImageFolder", "load_image"]

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
    """Read one image, resize its shorter side and centre-crop it.

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
    h, w = _size(size)
    with Image.open(path) as img:
        img.load()
        img = ImageOps.exif_transpose(img).convert(mode)
    scale = max(h / img.height, w / img.width)
    new_w = max(w, round(img.width * scale))
    new_h = max(h, round(img.height * scale))
    if (new_w, new_h) != img.size:
        img = img.resize((new_w, new_h), Image.Resampling.BILINEAR, reducing_gap=3.0)
    left, top = (new_w - w) // 2, (new_h - h) // 2
    img = img.crop((left, top, left + w, top + h))
    arr = np.asarray(img, dtype=np.uint8)
    return arr[None] if arr.ndim == 2 else arr.transpose(2, 0, 1)


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

    Attributes:
        paths: the file of each sample, in order (classes sorted, then files sorted).
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
    ) -> None:
        root = Path(root)
        if mode not in ("RGB", "L"):
            raise DatasetError(f"ImageFolder: expected mode 'RGB' or 'L', got {mode!r}")
        if on_error not in ("raise", "skip"):
            raise DatasetError(f"ImageFolder: expected on_error 'raise' or 'skip', got {on_error!r}")
        h, w = _size(size)
        if not root.is_dir():
            raise DatasetError(f"ImageFolder: {root} is not a directory")
        classes = sorted(d.name for d in root.iterdir() if d.is_dir() and not d.name.startswith("."))
        if not classes:
            raise DatasetError(f"ImageFolder: {root} has no class sub-folders; expected root/<class>/<image>")
        exts = tuple(e.lower() for e in extensions)
        files: list[tuple[Path, int]] = []
        for label, cls in enumerate(classes):
            found = sorted(
                p
                for p in (root / cls).rglob("*")
                if p.is_file() and not p.name.startswith(".") and p.suffix.lower() in exts
            )
            if not found:
                warnings.warn(f"ImageFolder: class folder {root / cls} has no images", stacklevel=2)
            files += [(p, label) for p in found]
        if not files:
            raise DatasetError(f"ImageFolder: no image files ({', '.join(exts)}) under {root}")

        channels = 3 if mode == "RGB" else 1
        images = np.empty((len(files), channels, h, w), dtype=np.uint8)
        keep: list[int] = []
        bad: list[str] = []
        for i, (path, _) in enumerate(files):
            try:
                images[i] = load_image(path, (h, w), mode)
                keep.append(i)
            except (OSError, ValueError, SyntaxError, Image.DecompressionBombError) as exc:
                bad.append(f"{path}: {type(exc).__name__}: {exc}")
        if bad and on_error == "raise":
            raise DatasetError(
                f"ImageFolder: {len(bad)} of {len(files)} file(s) under {root} could not be read "
                "(pass on_error='skip' to leave them out):\n  " + "\n  ".join(bad)
            )
        for entry in bad:
            warnings.warn(f"ImageFolder: skipped unreadable file {entry}", stacklevel=2)
        if not keep:
            raise DatasetError(f"ImageFolder: none of the {len(files)} image file(s) under {root} could be read")
        self.paths = [files[i][0] for i in keep]
        labels = np.array([files[i][1] for i in keep], dtype=np.int64)
        super().__init__(
            images[keep] if bad else images,
            labels,
            classes,
            name=root.name,
            split=split,
            source=str(root),
        )
