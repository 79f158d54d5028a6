"""Exceptions raised by :mod:`glassnet.data`.

Every message names the file (or dataset) involved, the value that was found and
what was expected, so that a user can act on it without reading the source.
"""

from __future__ import annotations

__all__ = ["ChecksumError", "DatasetError", "DatasetNotFoundError", "DownloadError"]


class DatasetError(ValueError):
    """A data file or folder is malformed, inconsistent or unusable."""


class DatasetNotFoundError(DatasetError):
    """The files of a dataset are not on disk and could not be downloaded.

    The message lists the missing files, every directory searched and where to
    put the files.
    """


class ChecksumError(DatasetError):
    """A downloaded file's checksum differs from the published one.

    The file is deleted before this is raised; it never reaches the cache.
    """


class DownloadError(DatasetError):
    """A file could not be fetched from a URL (connection, HTTP status, size)."""
