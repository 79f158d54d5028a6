"""glassnet.fast._handoff: the polling worker threads behind glassnet.backend.parallel."""

from __future__ import annotations

import multiprocessing
import threading
import time

import pytest

from glassnet import backend
from glassnet.fast import _handoff
from glassnet.fast._jit import AVAILABLE

pytestmark = pytest.mark.skipif(not AVAILABLE, reason="the polling workers need Numba")


@pytest.fixture
def pool() -> object:
    p = _handoff.SpinPool(2, backend._in_worker)
    yield p
    p.close()


def _names(k: int, parts: int) -> tuple[int, str]:
    return k, threading.current_thread().name


def test_parts_in_order_on_three_threads(pool: _handoff.SpinPool) -> None:
    out = pool.run(_names, 7)
    assert [k for k, _ in out] == list(range(7))
    names = [name for _, name in out]
    me = threading.current_thread().name
    assert names[0::3] == [me] * 3  # the caller: k ≡ 0 (mod 3)
    assert set(names[1::3]) == {"glassnet-1"} and set(names[2::3]) == {"glassnet-2"}
    assert pool.run(_names, 2) == [(0, me), (1, "glassnet-1")]  # fewer parts than threads


def test_workers_that_went_to_sleep_are_woken(pool: _handoff.SpinPool, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(_handoff, "SPIN_YIELDS", 1)  # stop polling at once: sleep on the condition
    for _ in range(3):
        pool.run(_names, 3)
        time.sleep(0.02)
        assert all(pool._asleep)
        assert [k for k, _ in pool.run(_names, 3)] == [0, 1, 2]


def test_the_caller_naps_for_a_long_part(pool: _handoff.SpinPool, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(_handoff, "JOIN_YIELDS", 1)  # stop polling at once: wait by naps

    def slow(k: int, parts: int) -> int:
        if k:
            time.sleep(0.03)
        return k * 10

    assert pool.run(slow, 3) == [0, 10, 20]


def test_an_error_is_raised_after_every_part_ended(pool: _handoff.SpinPool) -> None:
    ended: list[int] = []

    def work(k: int, parts: int) -> None:
        if k == 0:
            raise KeyError("part 0")
        time.sleep(0.02)
        ended.append(k)
        if k == 2:
            raise ValueError("part 2 failed")

    with pytest.raises(KeyError, match="part 0"):  # the caller's own error comes first
        pool.run(work, 3)
    assert sorted(ended) == [1, 2]  # the workers' parts had ended (they use the op's buffers)
    ended.clear()
    with pytest.raises(ValueError, match="part 2 failed"):
        pool.run(lambda k, p: work(k + 1, p) if k else None, 3)
    assert pool.run(_names, 3)[2] == (2, "glassnet-2")  # still usable


def test_a_second_caller_runs_its_parts_itself(pool: _handoff.SpinPool) -> None:
    inside = threading.Event()
    release = threading.Event()
    seen: dict[str, list] = {}

    def blocking(k: int, parts: int) -> int:
        if k == 1:
            inside.set()
            release.wait(5)
        return k

    def other() -> None:
        inside.wait(5)
        seen["other"] = pool.run(_names, 3)
        release.set()

    t = threading.Thread(target=other, name="other-caller")
    t.start()
    assert pool.run(blocking, 3) == [0, 1, 2]
    t.join(5)
    assert seen["other"] == [(k, "other-caller") for k in range(3)]


def test_close_ends_the_threads() -> None:
    p = _handoff.SpinPool(2, backend._in_worker)
    p.run(_names, 3)
    p.close()
    for t in p.threads:
        t.join(5)
    assert not any(t.is_alive() for t in p.threads)
    me = threading.current_thread().name  # a caller still holding the closed pool runs its parts itself
    assert p.run(_names, 3) == [(0, me), (1, me), (2, me)]


def test_backend_grows_the_pool_and_closes_the_old_one(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(backend, "_pool", None)
    monkeypatch.setattr(backend, "_pool_size", 0)
    monkeypatch.setattr(backend, "_workers", 2)
    assert backend.parallel(lambda k, p: k) == [0, 1]
    first = backend._pool
    assert isinstance(first, _handoff.SpinPool) and first.size == 1
    monkeypatch.setattr(backend, "_workers", 3)
    assert backend.parallel(lambda k, p: k) == [0, 1, 2]
    assert backend._pool is not first and backend._pool.size == 2
    monkeypatch.setattr(backend, "SPIN_HANDOFF", False)  # the plain pool, on request
    assert backend.parallel(lambda k, p: k) == [0, 1, 2]
    assert not isinstance(backend._pool, _handoff.SpinPool)
    backend._pool.shutdown()


def test_without_polling_workers_the_backend_falls_back_with_a_warning(monkeypatch: pytest.MonkeyPatch) -> None:
    """Where the polling loop cannot be compiled (a C library without sched_yield), parts still run."""

    def broken() -> None:
        raise RuntimeError("Symbol sched_yield not found")

    monkeypatch.setattr(_handoff, "wait_kernel", broken)
    monkeypatch.setattr(backend, "_pool", None)
    monkeypatch.setattr(backend, "_pool_size", 0)
    monkeypatch.setattr(backend, "_spin_unavailable", None)
    monkeypatch.setattr(backend, "_workers", 2)
    with pytest.warns(RuntimeWarning, match="polling worker threads cannot be made here .*sched_yield"):
        assert backend.parallel(_names, 2)[1][1].startswith("glassnet")
    assert not isinstance(backend._pool, _handoff.SpinPool)
    assert backend.parallel(lambda k, p: k, 2) == [0, 1]  # no second attempt, no second warning
    backend._pool.shutdown()


def test_the_polling_loop_is_loaded_from_the_disk_cache_by_a_second_process() -> None:
    """Compiled once per machine, not once per process (defined inside a function it was compiled
    anew by every process, 1.5 s, and its cache grew by a file each time)."""
    import subprocess
    import sys

    code = (
        "import numpy as np\n"
        "from glassnet.fast import _handoff\n"
        "wait = _handoff.wait_kernel()\n"
        "assert wait(np.zeros((1, 8), np.int64), 0, 0, 0, 1, -1, 0)\n"
        "print(sum(wait.stats.cache_hits.values()))\n"
    )
    runs = [subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=300) for _ in range(2)]
    assert all(r.returncode == 0 for r in runs), runs[-1].stderr
    assert runs[1].stdout.split() == ["1"], runs[1].stdout + runs[1].stderr


def _child(conn: object) -> None:
    backend.set_num_threads(2)
    conn.send(backend.parallel(_names, 2))  # type: ignore[attr-defined]


def test_a_forked_child_makes_its_own_workers(monkeypatch: pytest.MonkeyPatch) -> None:
    """The parent's pool has threads the child lacks: the child must not hand parts to them."""
    monkeypatch.setattr(backend, "_workers", 2)
    backend.parallel(_names, 2)  # the parent's pool exists
    ctx = multiprocessing.get_context("fork")
    parent, child = ctx.Pipe()
    proc = ctx.Process(target=_child, args=(child,))
    proc.start()
    assert parent.poll(30), "the forked child did not answer"
    out = parent.recv()
    proc.join(10)
    assert proc.exitcode == 0
    assert [k for k, _ in out] == [0, 1] and out[1][1].startswith("glassnet")
