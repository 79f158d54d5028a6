"""The decoded-image cache: a folder of images read once, not on every run.

Reading a folder of photos (decode, rotate, resize, crop) costs far more than training
needs to wait for. :func:`glassnet.data.read_images` with ``cache=True`` keeps what it
decoded in one file per (folder, preprocessing) under the user cache
(``$XDG_CACHE_HOME/glassnet/images/`` or ``~/.cache/glassnet/images/``):

* a safetensors file (no pickle anywhere): tensor ``images`` uint8 (N, C, H, W) and, in
  its metadata, a JSON index: the preprocessing record and, for each row, the file's
  absolute path, size in bytes and modification time (ns);
* a file's row is used only when its path, size and modification time are the ones
  recorded and the preprocessing (image size, mode, resize, interpolation) is the same:
  a changed, replaced or touched file is decoded again;
* the file is rewritten (atomically: a temporary file, fsync, rename) only when something
  was decoded; a cache file that cannot be read is ignored and replaced.
"""

from __future__ import annotations

import hashlib
import json
import os
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

if TYPE_CHECKING:
    from .folder import ImagePreprocessing

__all__ = ["ImageCache", "image_cache_dir"]

VERSION = 1
META_KEY = "glassnet_image_cache"

FileKey = tuple[str, int, int]


def image_cache_dir() -> Path:
    """Where the decoded-image caches live: ``<user cache>/glassnet/images``."""
    from .datasets import cache_dir

    return cache_dir() / "images"


def _key(path: Path) -> FileKey | None:
    try:
        st = path.stat()
    except OSError:
        return None
    return (str(path.resolve()), int(st.st_size), int(st.st_mtime_ns))


class ImageCache:
    """One cache file: decoded rows of one folder under one preprocessing."""

    def __init__(self, path: Path, prep: ImagePreprocessing) -> None:
        self.path = path
        self.prep = prep
        self.rows: dict[FileKey, int] = {}
        self.images: np.ndarray | None = None
        self._keys: list[FileKey | None] = []
        self._read()

    @classmethod
    def open(cls, where: bool | str | os.PathLike[str], prep: ImagePreprocessing, root: Any = None) -> ImageCache:
        """The cache for ``prep`` (and ``root``, a label in the file's name) in ``where`` (True:
        :func:`image_cache_dir`)."""
        base = image_cache_dir() if where is True else Path(where)  # type: ignore[arg-type]
        ident = json.dumps({"prep": prep.to_dict(), "root": str(root)}, sort_keys=True)
        return cls(base / f"{hashlib.sha256(ident.encode()).hexdigest()[:32]}.safetensors", prep)

    def _read(self) -> None:
        from safetensors.numpy import load_file

        if not self.path.is_file():
            return
        try:
            with open(self.path, "rb") as f:
                n = int.from_bytes(f.read(8), "little")
                header = json.loads(f.read(n)) if n < 100_000_000 else {}
            index = json.loads((header.get("__metadata__") or {}).get(META_KEY, "null"))
            if not isinstance(index, dict) or (index.get("version"), index.get("prep")) != (
                VERSION,
                self.prep.to_dict(),
            ):
                return
            images = load_file(str(self.path))["images"]
            files = index["files"]
            if images.shape[1:] != self.prep.input_shape or len(files) != len(images) or images.dtype != np.uint8:
                return
            self.rows = {(str(p), int(s), int(m)): i for i, (p, s, m) in enumerate(files)}
            self.images = images
        except (OSError, ValueError, KeyError, TypeError):  # unreadable or foreign: decode again, then replace it
            self.rows, self.images = {}, None

    def fill(self, paths: list[Path], out: np.ndarray) -> list[int]:
        """Copy the cached rows of ``paths`` into ``out``; the indices still to decode."""
        self._keys = [_key(p) for p in paths]
        todo = []
        for i, key in enumerate(self._keys):
            row = self.rows.get(key) if key is not None else None
            if row is None or self.images is None:
                todo.append(i)
            else:
                out[i] = self.images[row]
        return todo

    def update(self, paths: list[Path], images: np.ndarray, decoded: list[int]) -> None:
        """Store every row of ``images`` that is cached or was decoded (``decoded``), when there is
        anything new. A write that fails (a read-only or full disk) leaves the cache as it was."""
        from safetensors.numpy import save

        from ..checkpoint import atomic_write_bytes

        if not decoded:
            return
        fresh = set(decoded)
        keep = [
            i
            for i, key in enumerate(self._keys)
            if key is not None and (i in fresh or (self.images is not None and key in self.rows))
        ]
        files = [list(self._keys[i]) for i in keep]  # type: ignore[arg-type]
        index = {"version": VERSION, "prep": self.prep.to_dict(), "files": files}
        data = save({"images": np.ascontiguousarray(images[keep])}, metadata={META_KEY: json.dumps(index)})
        try:
            atomic_write_bytes(self.path, data)
        except OSError:
            return
