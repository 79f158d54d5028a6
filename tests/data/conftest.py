"""Fixtures for the glassnet.data tests: an isolated data environment and a local HTTP server."""

from __future__ import annotations

import functools
import hashlib
import http.server
import threading
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pytest

import glassnet.data.datasets as datasets_mod
from glassnet.data.idx import write_idx


@dataclass
class DataEnv:
    """Paths of an isolated data environment."""

    tmp: Path
    cache: Path  # the glassnet cache dir ($XDG_CACHE_HOME/glassnet)
    system: Path  # the only system data dir


@pytest.fixture
def data_env(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> DataEnv:
    """No $GLASSNET_DATA / $GLASSNET_MIRROR, a temporary cache and system dir."""
    monkeypatch.delenv("GLASSNET_DATA", raising=False)
    monkeypatch.delenv("GLASSNET_MIRROR", raising=False)
    xdg = tmp_path / "xdg-cache"
    monkeypatch.setenv("XDG_CACHE_HOME", str(xdg))
    system = tmp_path / "system"
    monkeypatch.setattr(datasets_mod, "SYSTEM_DATA_DIRS", (system,))
    return DataEnv(tmp_path, xdg / "glassnet", system)


def write_mnist_like(folder: Path, n_train: int, n_test: int = 3, gz: bool = True) -> dict[str, str]:
    """Write the four IDX files of a tiny MNIST-like dataset; return {name: sha256}.

    Every image's pixels equal its index modulo 256, so tests can tell copies apart
    by their sizes and contents.
    """
    folder.mkdir(parents=True, exist_ok=True)
    sums: dict[str, str] = {}
    for prefix, n in (("train", n_train), ("t10k", n_test)):
        images = np.arange(n, dtype=np.uint8)[:, None, None] * np.ones((1, 28, 28), np.uint8)
        labels = (np.arange(n) % 10).astype(np.uint8)
        for kind, arr, nd in (("images", images, 3), ("labels", labels, 1)):
            name = f"{prefix}-{kind}-idx{nd}-ubyte" + (".gz" if gz else "")
            write_idx(folder / name, arr)
            sums[name if gz else name + ".gz"] = hashlib.sha256((folder / name).read_bytes()).hexdigest()
    return sums


class _QuietHandler(http.server.SimpleHTTPRequestHandler):
    def log_message(self, format: str, *args: object) -> None:  # noqa: A002
        pass


@pytest.fixture
def http_root(tmp_path: Path) -> Iterator[tuple[Path, str]]:
    """A folder served over HTTP on 127.0.0.1 (ephemeral port): yields (folder, base URL)."""
    root = tmp_path / "www"
    root.mkdir()
    handler = functools.partial(_QuietHandler, directory=str(root))
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), handler)
    thread = threading.Thread(target=server.serve_forever, args=(0.05,), daemon=True)
    thread.start()
    try:
        yield root, f"http://127.0.0.1:{server.server_address[1]}/"
    finally:
        server.shutdown()
        server.server_close()
        thread.join(timeout=5)


@pytest.fixture
def make_mnist_files():
    """The :func:`write_mnist_like` helper, as a fixture."""
    return write_mnist_like
