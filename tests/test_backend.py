"""glassnet.backend: worker threads for ops that split their work (conv's im2col blocks)."""

from __future__ import annotations

import threading

import numpy as np
import pytest

from glassnet import backend


@pytest.fixture
def three_workers(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(backend, "_workers", 3)


def test_parallel_returns_results_in_part_order(three_workers: None) -> None:
    threads: dict[int, str] = {}

    def work(k: int, parts: int) -> tuple[int, int]:
        threads[k] = threading.current_thread().name
        return k, parts

    assert backend.parallel(work) == [(0, 3), (1, 3), (2, 3)]
    me = threading.current_thread().name
    assert threads[0] == me  # part 0 runs in the caller
    assert threads[1] != threads[2] and all(threads[k].startswith("glassnet") for k in (1, 2))
    threads.clear()
    assert backend.parallel(work, 5) == [(k, 5) for k in range(5)]
    if backend._spin_wanted():  # three threads at work: part k on thread k mod 3, the caller being thread 0
        assert threads[0] == threads[3] == me and threads[1] == threads[4] != threads[2]


def test_parallel_inside_a_worker_runs_inline(three_workers: None) -> None:
    def inner(k: int, parts: int) -> int:
        return backend.num_workers()

    def outer(k: int, parts: int) -> list[int]:
        return backend.parallel(inner)

    assert backend.parallel(outer) == [[1], [1], [1]]
    assert backend.num_workers() == 3


def test_parallel_holds_blas_at_one_thread(three_workers: None) -> None:
    """Workers run single-threaded BLAS, also when something raised BLAS's count in between."""
    blas = backend._blas()
    if blas is None:
        pytest.skip("no BLAS library that threadpoolctl can control")
    blas.set_num_threads(2)
    seen = backend.parallel(lambda k, p: blas.num_threads)
    assert seen == [1, 1, 1]
    assert blas.num_threads == 1


def test_parallel_propagates_errors() -> None:
    def work(k: int, parts: int) -> None:
        if k == 2:
            raise ValueError("part 2 failed")

    with pytest.raises(ValueError, match="part 2 failed"):
        backend.parallel(work, 3)


def test_one_worker_runs_everything_in_the_caller(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(backend, "_workers", 1)
    names = backend.parallel(lambda k, p: threading.current_thread().name, 2)
    assert names == [threading.current_thread().name] * 2


def test_set_num_threads_sets_workers(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(backend, "_workers", None)
    before = backend.get_num_threads()
    try:
        backend.set_num_threads(2)
        assert backend.num_workers() == backend.get_num_threads() == 2
        blas = backend._blas()
        assert blas is None or blas.num_threads == 1  # glassnet splits the work, not BLAS
    finally:
        backend.set_num_threads(before)
    with pytest.raises(ValueError, match="expected a positive int, got 0"):
        backend.set_num_threads(0)


def test_split_conv_is_deterministic(three_workers: None, monkeypatch: pytest.MonkeyPatch) -> None:
    """Same inputs, same worker count: bit-identical gradients (the parts' sums add in a fixed order)."""
    from glassnet import functional as F
    from glassnet.fast import conv

    monkeypatch.setattr(conv, "PARALLEL_MIN", 0)
    rng = np.random.default_rng(0)
    x = rng.standard_normal((4, 8, 12, 12)).astype(np.float32)
    w = rng.standard_normal((8, 8, 3, 3)).astype(np.float32)
    g = rng.standard_normal((4, 8, 12, 12)).astype(np.float32)
    runs = []
    for _ in range(3):
        _, ctx = F.conv2d.forward(x, w, None, padding=1, algorithm="shift")
        runs.append(F.conv2d.backward(g, ctx))
    for dx, dw, _ in runs[1:]:
        np.testing.assert_array_equal(dx, runs[0][0])
        np.testing.assert_array_equal(dw, runs[0][1])


@pytest.mark.parametrize("path", ["numba", "numpy"])
@pytest.mark.parametrize("ceil_mode", [False, True])
def test_split_max_pool_is_exact(
    three_workers: None, monkeypatch: pytest.MonkeyPatch, ceil_mode: bool, path: str
) -> None:
    """Pooling in parts (one per worker) gives the same output and gradient bit for bit, ties and NaN
    included, on both paths of the fast max pooling (its Numba kernels, its NumPy fallback)."""
    from glassnet import functional as F
    from glassnet.fast import pool

    if path == "numba" and not pool.AVAILABLE:
        pytest.skip("the Numba path needs Numba")
    monkeypatch.setattr(pool, "NUMBA_MIN", 0)  # this small input runs the kernels where Numba is
    monkeypatch.setattr(pool, "AVAILABLE", path == "numba")
    rng = np.random.default_rng(1)
    x = np.round(rng.standard_normal((7, 3, 9, 8)), 1)  # many ties
    x[2, 1, 3, 4] = np.nan
    x[5, 0, :3, :3] = -np.inf
    opts = {"kernel_size": 3, "stride": 2, "padding": 1, "ceil_mode": ceil_mode}
    out1, ctx1 = F.max_pool2d.forward(x, **opts)
    g = rng.standard_normal(out1.shape)
    (dx1,) = F.max_pool2d.backward(g, ctx1)
    monkeypatch.setattr(pool, "POOL_PARALLEL_MIN", 0)
    out3, ctx3 = F.max_pool2d.forward(x, **opts)
    assert len(ctx3.ranges if path == "numba" else ctx3.pieces) == 3
    assert ("winner" in ctx3) == ("winner" in ctx1) == (path == "numba")
    (dx3,) = F.max_pool2d.backward(g, ctx3)
    np.testing.assert_array_equal(out3, out1)
    np.testing.assert_array_equal(dx3, dx1)
    with pytest.raises(ValueError, match=r"\(7, 3, 9, 8\)|9"):
        F.max_pool2d(x, kernel_size=12)


def test_install_hint_follows_the_environment(monkeypatch: pytest.MonkeyPatch, tmp_path) -> None:
    import sys

    from glassnet.backend import install_hint

    venv = tmp_path / "proj" / ".venv"
    venv.mkdir(parents=True)
    monkeypatch.delenv("UV", raising=False)
    monkeypatch.setattr(sys, "prefix", str(venv))
    (venv / "pyvenv.cfg").write_text("home = /usr\n")
    assert install_hint("gpu") == "pip install 'glassnet[gpu]'"
    (venv / "pyvenv.cfg").write_text("home = /usr\nuv = 0.9.0\n")
    assert install_hint("gpu", "cupy-cuda12x") == "uv pip install 'glassnet[gpu]' (or install cupy-cuda12x directly)"
    (tmp_path / "proj" / "pyproject.toml").write_text('[project]\nname = "glassnet"\n')
    assert install_hint("pretrained") == "uv sync --extra pretrained"
