"""Verified, atomic downloads.

:func:`download_file` streams a URL into a temporary file next to the
destination, hashes it on the way (SHA-256), ``fsync``\\ s it, and only then
moves it into place with :func:`os.replace`, so the destination either does not
exist or holds the complete, verified file. A file whose size or checksum is
wrong is deleted and rejected.
"""

from __future__ import annotations

import contextlib
import hashlib
import http.client
import os
import tempfile
import urllib.error
import urllib.request
from pathlib import Path

from tqdm import tqdm

from .errors import ChecksumError, DownloadError

__all__ = ["download_file", "sha256_file"]

_CHUNK = 1 << 20
_USER_AGENT = "glassnet-data/0.1 (+numpy)"


def sha256_file(path: str | os.PathLike[str]) -> str:
    """Return the hex SHA-256 of a file, read in 1 MiB chunks."""
    h = hashlib.sha256()
    with open(path, "rb") as fh:
        for block in iter(lambda: fh.read(_CHUNK), b""):
            h.update(block)
    return h.hexdigest()


def _fsync_dir(path: Path) -> None:
    # Make the rename durable too; not possible on every platform (e.g. Windows).
    with contextlib.suppress(OSError):
        fd = os.open(path, os.O_RDONLY)
        try:
            os.fsync(fd)
        finally:
            os.close(fd)


def download_file(
    url: str,
    dest: str | os.PathLike[str],
    *,
    sha256: str,
    size: int | None = None,
    progress: bool = True,
    timeout: float = 30.0,
) -> Path:
    """Download ``url`` to ``dest`` and verify it.

    Args:
        url: the file's URL (http, https or file).
        dest: final path; its folder is created if needed.
        sha256: expected hex SHA-256 of the file (required: nothing is kept unverified).
        size: expected size in bytes, checked first when known.
        progress: show a tqdm progress bar on stderr.
        timeout: socket timeout in seconds.

    Returns:
        ``dest`` as a Path.

    Raises:
        DownloadError: the connection failed, the server answered an error, or
            the size is wrong (nothing is left on disk).
        ChecksumError: the SHA-256 differs (the file is deleted, never placed).
    """
    dest = Path(dest)
    try:
        dest.parent.mkdir(parents=True, exist_ok=True)
        fd, tmp_name = tempfile.mkstemp(dir=dest.parent, prefix=f".{dest.name}.", suffix=".part")
    except OSError as exc:
        raise DownloadError(f"{url}: cannot write into {dest.parent}: {exc}") from exc
    tmp = Path(tmp_name)
    placed = False
    try:
        digest = hashlib.sha256()
        written = 0
        with os.fdopen(fd, "wb") as out:
            try:
                request = urllib.request.Request(url, headers={"User-Agent": _USER_AGENT})
                with urllib.request.urlopen(request, timeout=timeout) as response:
                    length = response.headers.get("Content-Length")
                    total = int(length) if length and length.isdigit() else size
                    with tqdm(
                        total=total,
                        unit="B",
                        unit_scale=True,
                        unit_divisor=1024,
                        desc=dest.name,
                        disable=not progress,
                        leave=False,
                    ) as bar:
                        while block := response.read(_CHUNK):
                            out.write(block)
                            digest.update(block)
                            written += len(block)
                            bar.update(len(block))
            except (urllib.error.URLError, http.client.HTTPException, OSError) as exc:
                raise DownloadError(f"{url}: download failed: {exc}") from exc
            out.flush()
            os.fsync(out.fileno())
        if size is not None and written != size:
            raise DownloadError(f"{url}: expected {size} bytes, received {written}; the file was discarded")
        got = digest.hexdigest()
        if got != sha256.lower():
            raise ChecksumError(
                f"{dest.name}: SHA-256 mismatch for {url}: expected {sha256.lower()}, got {got}; "
                "the file was deleted and not placed in the cache"
            )
        os.replace(tmp, dest)
        placed = True
        _fsync_dir(dest.parent)
        return dest
    finally:
        if not placed:
            with contextlib.suppress(FileNotFoundError):
                tmp.unlink()
