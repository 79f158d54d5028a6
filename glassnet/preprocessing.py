"""How an image file becomes a model input: :class:`ImagePreprocessing`, one record shared by
training on a folder, ``glassnet predict``, ``glassnet evaluate --data FOLDER`` and checkpoints.

A module of its own, light to import (Pillow is imported when an image is read), since every
checkpoint reader needs the record.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from typing import Any

import numpy as np

__all__ = ["INTERPOLATIONS", "ImagePreprocessing"]


def _error(message: str) -> Exception:
    from .data.errors import DatasetError

    return DatasetError(message)


#: Resampling filters by name (what a checkpoint records): Pillow's ``Image.Resampling`` members.
INTERPOLATIONS: dict[str, str] = {"bilinear": "BILINEAR", "bicubic": "BICUBIC"}


@dataclass(frozen=True)
class ImagePreprocessing:
    """How an image file becomes a uint8 array (C, H, W): decode, EXIF-rotate, convert to
    ``mode``, resize, centre-crop ``size``.

    Training on a folder, ``glassnet predict`` and ``glassnet evaluate --data FOLDER`` all read
    images with the one :meth:`load` of the record a checkpoint stores, so a new image is
    prepared exactly as the training images were.

    Attributes:
        size: output (H, W).
        mode: ``"RGB"`` (3 channels) or ``"L"`` (grayscale, 1 channel).
        resize_shorter: resize the shorter side to this many pixels before cropping (the
            pretrained models' 256 → 224); None: the smallest resize that covers ``size``.
        interpolation: ``"bilinear"`` (Pillow's, with ``reducing_gap=3``) or ``"bicubic"``
            (plain, as :func:`glassnet.models.pretrained.preprocess`).
    """

    size: tuple[int, int]
    mode: str = "RGB"
    resize_shorter: int | None = None
    interpolation: str = "bilinear"

    def __post_init__(self) -> None:
        size = self.size
        if (
            not isinstance(size, tuple | list)
            or len(size) != 2
            or not all(isinstance(d, int) and not isinstance(d, bool) and 1 <= d <= 4096 for d in size)
        ):
            raise _error(f"image preprocessing: size must be (H, W) with sides in 1..4096, got {size!r}")
        object.__setattr__(self, "size", (int(size[0]), int(size[1])))
        if self.mode not in ("RGB", "L"):
            raise _error(f"image preprocessing: mode must be 'RGB' or 'L', got {self.mode!r}")
        r = self.resize_shorter
        if r is not None and (not isinstance(r, int) or isinstance(r, bool) or not min(self.size) <= r <= 8192):
            raise _error(
                f"image preprocessing: resize_shorter must be None or a side of {min(self.size)}..8192, got {r!r}"
            )
        if self.interpolation not in INTERPOLATIONS:
            raise _error(
                f"image preprocessing: interpolation must be one of {', '.join(INTERPOLATIONS)}, "
                f"got {self.interpolation!r}"
            )

    @property
    def channels(self) -> int:
        """1 for ``"L"``, 3 for ``"RGB"``."""
        return 1 if self.mode == "L" else 3

    @property
    def input_shape(self) -> tuple[int, int, int]:
        """(C, H, W) of the arrays :meth:`load` returns."""
        return (self.channels, *self.size)

    def to_dict(self) -> dict[str, Any]:
        """The JSON form a checkpoint stores."""
        return {
            "size": list(self.size),
            "mode": self.mode,
            "resize_shorter": self.resize_shorter,
            "interpolation": self.interpolation,
        }

    @classmethod
    def from_dict(cls, d: Any) -> ImagePreprocessing:
        """The record from :meth:`to_dict`'s form; :class:`DatasetError` for anything else."""
        keys = {"size", "mode", "resize_shorter", "interpolation"}
        if not isinstance(d, dict) or not set(d) <= keys or "size" not in d:
            raise _error(f"image preprocessing: expected an object with the keys {sorted(keys)}, got {d!r}")
        size = d["size"]
        if not isinstance(size, list | tuple):
            raise _error(f"image preprocessing: size must be [H, W], got {size!r}")
        return cls(tuple(size), d.get("mode", "RGB"), d.get("resize_shorter"), d.get("interpolation", "bilinear"))  # type: ignore[arg-type]

    @classmethod
    def for_pretrained(cls, name: str, size: int | None = None) -> ImagePreprocessing:
        """The preprocessing pretrained model ``name`` was trained with (resize the shorter side
        to crop + 32, bicubic, centre-crop); ``size`` scales both to another crop side."""
        from .models.pretrained import preprocessing

        p = preprocessing(name)
        crop = size or p["crop"]
        shorter = p["resize_shorter"] if size is None else round(size * p["resize_shorter"] / p["crop"])
        return cls((crop, crop), "RGB", shorter, p["interpolation"])

    def load(self, path: str | os.PathLike[str]) -> np.ndarray:
        """Read one image file: uint8 (C, H, W).

        Raises:
            OSError, ValueError, SyntaxError, Image.DecompressionBombError: from Pillow, for an
                unreadable or oversized file.
        """
        from PIL import Image, ImageOps

        h, w = self.size
        with Image.open(path) as img:
            img.load()
            img = ImageOps.exif_transpose(img).convert(self.mode)
        if self.resize_shorter is None:
            scale = max(h / img.height, w / img.width)
        else:
            scale = self.resize_shorter / min(img.width, img.height)
        new_w = max(w, round(img.width * scale))
        new_h = max(h, round(img.height * scale))
        if (new_w, new_h) != img.size:
            if self.interpolation == "bilinear":
                img = img.resize((new_w, new_h), Image.Resampling.BILINEAR, reducing_gap=3.0)
            else:
                img = img.resize((new_w, new_h), Image.Resampling[INTERPOLATIONS[self.interpolation]])
        left, top = (new_w - w) // 2, (new_h - h) // 2
        img = img.crop((left, top, left + w, top + h))
        arr = np.asarray(img, dtype=np.uint8)
        return arr[None] if arr.ndim == 2 else arr.transpose(2, 0, 1)
