"""Worker threads that pick up a part of an op within microseconds: they spin, then sleep.

:func:`glassnet.backend.parallel` hands parts of an op to worker threads. Handed over through
a queue and a condition variable (``ThreadPoolExecutor``), a part reached a sleeping worker
after 45–130 µs on the 2-core VMs this project is measured on: waking a thread costs the
kernel an interrupt to an idle virtual CPU. A ResNet-20 training step hands out 126 parts.

Here each worker, after a part, waits for the next by polling a flag without holding the GIL
(a Numba ``nogil`` loop that calls ``sched_yield`` between looks, so another runnable thread
on that core still gets it) for about :data:`SPIN_YIELDS` looks (about 1 ms), and only then
sleeps on a condition variable. The calling thread waits for the workers' parts the same
way. A part handed over while its worker polls starts in a few microseconds, then waits
for the GIL like any Python code: an empty part's round trip is 10–40 µs here.

What runs where is unchanged: part k of ``fn(k, parts)`` always runs as before, so results
do not depend on the handoff. Flags only grow (a sequence number per worker), and every
Python-level read and write of them happens under the GIL; only the polling loops read them
without it.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable
from typing import Any

import numpy as np

# Looks at the flag before a waiting thread goes to sleep; each look yields the CPU once
# (sched_yield: 0.6 µs here), so about 1 ms of polling after each part.
SPIN_YIELDS = 2000
# The caller waits for a worker's part polling for up to this many looks (about 50 ms: parts
# are rarely longer), then by naps of 1 ms.
JOIN_YIELDS = 80_000
_TASK, _DONE = 0, 1  # columns of the flag table (a row per worker, 64 bytes apart)


def wait_kernel() -> Callable[..., bool]:
    """``wait(flags, row, col, target, looks, mark, value)`` (:func:`._poll._wait`): True once
    flags[row, col] ≥ target, False after ``looks``; first sets flags[row, mark] = value if ``mark`` ≥ 0."""
    from . import _poll

    return _poll.wait


class SpinPool:
    """``size`` worker threads that :meth:`run` shares the parts of ``fn(k, parts)`` with."""

    def __init__(self, size: int, in_worker: Callable[[Callable[[int, int], Any], int, int], Any]) -> None:
        self.size = size
        self._in_worker = in_worker
        self._wait = wait_kernel()
        self._flags = np.zeros((size, 8), dtype=np.int64)  # [task seq, done seq, padding]
        self._tasks: list[Any] = [None] * size
        self._results: list[Any] = [None] * size
        self._seq = [0] * size
        self._asleep = [False] * size  # worker j sleeps on the condition
        self._cond = threading.Condition()
        self._closed = False
        self._busy = threading.Lock()  # one caller at a time; another runs its parts itself
        self._wait(self._flags, 0, _TASK, 0, 1, -1, 0)  # load the compiled loop now, not in a worker
        self.threads = [
            threading.Thread(target=self._loop, args=(j,), name=f"glassnet-{j + 1}", daemon=True) for j in range(size)
        ]
        for t in self.threads:
            t.start()

    def run(self, fn: Callable[[int, int], Any], parts: int) -> list[Any]:
        """``fn(k, parts)`` for every k, results in part order; with m = min(parts, size + 1) threads
        at work, the caller runs the parts k ≡ 0 (mod m) and worker j those k ≡ j + 1.

        A call from another thread while this pool is busy runs all its parts itself, in order.
        """
        if not self._busy.acquire(blocking=False):
            return [self._in_worker(fn, k, parts) for k in range(parts)]
        try:
            if self._closed:  # a caller that took this pool just before another thread replaced it
                return [self._in_worker(fn, k, parts) for k in range(parts)]
            m = min(parts, self.size + 1)
            for j in range(m - 1):
                self._tasks[j] = (fn, range(j + 1, parts, m), parts)
                self._seq[j] += 1
                self._flags[j, _TASK] = self._seq[j]
                if self._asleep[j]:
                    with self._cond:
                        self._cond.notify_all()
            out: list[Any] = [None] * parts
            error: BaseException | None = None
            try:
                for k in range(0, parts, m):
                    out[k] = self._in_worker(fn, k, parts)
            except BaseException as e:  # the workers' parts still use the op's buffers: wait for them
                error = e
            for j in range(m - 1):
                self._join(j)
                ok, value = self._results[j]
                self._results[j] = None
                if not ok:
                    error = value if error is None else error
                else:
                    out[j + 1 :: m] = value
            if error is not None:
                raise error
            return out
        finally:
            self._busy.release()

    def close(self) -> None:
        """Let the worker threads end (after a part they are running); the pool is not used again."""
        with self._busy:
            self._closed = True
            for j in range(self.size):
                self._tasks[j] = None
                self._seq[j] += 1
                self._flags[j, _TASK] = self._seq[j]
            with self._cond:
                self._cond.notify_all()

    def _join(self, j: int) -> None:
        """Wait for worker j's part: polling for up to :data:`JOIN_YIELDS` looks, then by naps of 1 ms."""
        seq = self._seq[j]
        if self._wait(self._flags, j, _DONE, seq, JOIN_YIELDS, -1, 0):
            return
        while not self._wait(self._flags, j, _DONE, seq, 0, -1, 0):
            time.sleep(0.001)

    def _loop(self, j: int) -> None:
        seq = 0
        done = -1  # no part finished yet: nothing to mark
        while True:
            seq += 1
            if not self._wait(self._flags, j, _TASK, seq, SPIN_YIELDS, done, seq - 1):
                with self._cond:
                    self._asleep[j] = True
                    while self._flags[j, _TASK] < seq:
                        self._cond.wait()
                    self._asleep[j] = False
            task, self._tasks[j] = self._tasks[j], None
            if task is None:  # close()
                return
            fn, mine, parts = task
            try:
                self._results[j] = (True, [self._in_worker(fn, k, parts) for k in mine])
            except BaseException as e:
                self._results[j] = (False, e)
            done = _DONE
