"""Image folders the explorer was started with (``glassnet explore --folder PATH``): what the
playground trains on when it is given ``folder:NAME``, and the test images of a checkpoint
trained on one.

A folder holds class sub-folders of images, or ``train/`` with ``test/`` (or ``val/``) of them
(:func:`glassnet.data.folder_layout`). The playground reads it small: square images of the
side of the smallest sampled image, between :data:`MIN_SIDE` and :data:`MAX_SIDE`, grey when
every sampled file is grey; a folder without its own test split has :data:`HELD_OUT` of it
held out (seeded) to measure the model.
"""

from __future__ import annotations

import threading
import warnings
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from ..data import Dataset, ImageFolder, ImagePreprocessing, train_val_split
from ..data.folder import READ_ERRORS, FolderLayout, detect_mode, folder_layout, image_files

MIN_SIDE = 8
MAX_SIDE = 32
#: At most this many images are read from a folder (its training part).
MAX_IMAGES = 20_000
HELD_OUT = 0.2


class FolderError(ValueError):
    """A folder that cannot be trained on; the message says why."""


@dataclass(frozen=True)
class FolderInfo:
    """What the playground needs to know of a folder before reading it."""

    name: str
    path: Path
    layout: FolderLayout
    classes: list[str]
    mode: str
    side: int
    count: int

    @property
    def input_shape(self) -> tuple[int, int, int]:
        return (1 if self.mode == "L" else 3, self.side, self.side)

    @property
    def preprocessing(self) -> ImagePreprocessing:
        return ImagePreprocessing((self.side, self.side), self.mode)

    def describe(self) -> dict[str, Any]:
        return {
            "name": self.name,
            "folder": self.path.name,
            "input_shape": list(self.input_shape),
            "classes": self.classes,
            "images": self.count,
            "test": "test/" if self.layout.test else "val/" if self.layout.val else f"{HELD_OUT:.0%} held out",
        }


_info_cache: dict[tuple[str, int], FolderInfo] = {}
_info_lock = threading.Lock()


def folder_info(name: str, path: Path) -> FolderInfo:
    """Classes, mode, side and image count of ``path`` (only file headers are read; cached per
    modification time). :class:`FolderError` when it has fewer than two classes, no images, or
    more than :data:`MAX_IMAGES`."""
    try:
        layout = folder_layout(path)
        stamp = layout.train.stat().st_mtime_ns
    except (OSError, ValueError) as e:
        raise FolderError(f"{name}: {e}") from None
    key = (str(path), stamp)
    with _info_lock:
        hit = _info_cache.get(key)
    if hit is not None:
        return hit
    classes = sorted(d.name for d in layout.train.iterdir() if d.is_dir() and not d.name.startswith("."))
    if len(classes) < 2:
        raise FolderError(
            f"{name}: a classifier needs at least two class sub-folders, {layout.train} has {len(classes)}"
        )
    files = image_files(layout.train)
    if not files:
        raise FolderError(f"{name}: no image files under {layout.train}")
    if len(files) > MAX_IMAGES:
        raise FolderError(
            f"{name}: {len(files):,} images, more than the playground reads ({MAX_IMAGES:,}); "
            "train on it with `glassnet train --data` instead"
        )
    from PIL import Image

    sides = []
    step = max(1, len(files) // 64)
    for p in files[::step][:64]:
        try:
            with Image.open(p) as im:
                sides.append(min(im.size))
        except READ_ERRORS:
            continue
    side = max(MIN_SIDE, min(MAX_SIDE, min(sides) if sides else MAX_SIDE))
    info = FolderInfo(name, path, layout, classes, detect_mode(files), int(side), len(files))
    with _info_lock:
        _info_cache[key] = info
    return info


def load_folder(info: FolderInfo) -> tuple[Dataset, Dataset]:
    """(train, test) of a folder, read with its preprocessing (unreadable files left out)."""
    prep = info.preprocessing

    def read(path: Path, split: str) -> Dataset:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            return ImageFolder(path, preprocessing=prep, classes=info.classes, split=split, on_error="skip")

    try:
        train = read(info.layout.train, "train")
        held = info.layout.test or info.layout.val
        if held is not None:
            test = read(held, "test")
        else:
            train, test = train_val_split(train, HELD_OUT, seed=0)
    except (OSError, ValueError) as e:
        raise FolderError(f"{info.name}: {e}") from None
    if len(train) == 0 or len(test) == 0:
        raise FolderError(f"{info.name}: too few readable images to split into training and test images")
    train.name = test.name = info.name
    return train, test
