"""Background jobs of the explorer: long computations (feature visualisations, playground
training) run in a thread of their own while the page polls their progress.

Bounded: at most one job of each kind runs at a time (a second request is answered 409,
busy, naming the running job), every job has a time limit, and every job can be
cancelled. A job's function receives the :class:`Job` and calls :meth:`Job.tick` often:
that is where a cancel request or the time limit stops it (:class:`Stopped`).
"""

from __future__ import annotations

import logging
import secrets
import threading
import time
from collections import OrderedDict
from collections.abc import Callable
from typing import Any

log = logging.getLogger("glassnet.explorer")


class Stopped(Exception):  # noqa: N818 - control flow
    """Raised inside a job's thread by :meth:`Job.tick` once the job is cancelled or out of time."""


class Busy(Exception):  # noqa: N818 - answered 409
    """Another job of the same kind is running."""

    def __init__(self, job: Job) -> None:
        super().__init__(
            f"busy: {job.kind} job {job.id} ({job.title}) is running, {job.done}/{job.total} done; "
            "wait for it or cancel it (DELETE /api/jobs/" + job.id + ")"
        )
        self.job = job


class Job:
    """One background computation: status, progress, partial results, cancel flag, deadline."""

    def __init__(self, kind: str, title: str, total: int, time_limit: float, key: Any = None) -> None:
        self.id = secrets.token_urlsafe(9)
        self.kind, self.title, self.key = kind, title, key
        self.total, self.done = int(total), 0
        self.status = "running"  # running | done | cancelled | timeout | failed
        self.message: str | None = None
        self.detail: dict[str, Any] = {}
        self.result: dict[str, Any] = {}
        self.started = time.time()
        self.finished: float | None = None
        self.time_limit = float(time_limit)
        self._deadline = time.monotonic() + self.time_limit
        self._cancel = threading.Event()
        self._lock = threading.Lock()
        self.version = 0

    # -- inside the job's thread --------------------------------------------------------
    def tick(self, **detail: Any) -> None:
        """Record progress details; stop here (:class:`Stopped`) when cancelled or out of time."""
        if detail:
            with self._lock:
                self.detail.update(detail)
                self.version += 1
        if self._cancel.is_set():
            raise Stopped("cancelled")
        if time.monotonic() > self._deadline:
            raise Stopped("timeout")

    def advance(self, done: int, **result: Any) -> None:
        """``done`` units finished; merge ``result`` into the partial results."""
        with self._lock:
            self.done = int(done)
            self.result.update(result)
            self.version += 1
        self.tick()

    def update(self, fn: Callable[[dict[str, Any]], None]) -> None:
        """Change the partial results under the job's lock (``fn(result)``)."""
        with self._lock:
            fn(self.result)
            self.version += 1

    # -- from request threads -----------------------------------------------------------
    def cancel(self) -> None:
        self._cancel.set()

    @property
    def running(self) -> bool:
        return self.status == "running"

    def snapshot(self, with_result: bool = True) -> dict[str, Any]:
        with self._lock:
            doc = {
                "id": self.id,
                "kind": self.kind,
                "title": self.title,
                "status": self.status,
                "message": self.message,
                "done": self.done,
                "total": self.total,
                "detail": dict(self.detail),
                "elapsed": round((self.finished or time.time()) - self.started, 3),
                "time_limit": self.time_limit,
                "version": self.version,
            }
            if with_result:
                doc["result"] = _copy(self.result)
        return doc


def _copy(v: Any) -> Any:
    if isinstance(v, dict):
        return {k: _copy(x) for k, x in v.items()}
    if isinstance(v, list):
        return [_copy(x) for x in v]
    return v


class Jobs:
    """The explorer's jobs: start (one running per kind), look up, cancel; the last few are kept."""

    def __init__(self, keep: int = 16) -> None:
        self.keep = keep
        self.items: OrderedDict[str, Job] = OrderedDict()
        self.lock = threading.Lock()

    def running(self, kind: str) -> Job | None:
        with self.lock:
            return next((j for j in self.items.values() if j.kind == kind and j.running), None)

    def start(
        self,
        kind: str,
        title: str,
        total: int,
        fn: Callable[[Job], None],
        time_limit: float,
        key: Any = None,
    ) -> Job:
        """Run ``fn(job)`` in a new thread; raises :class:`Busy` when a job of ``kind`` runs
        (unless it has the same ``key``: then that job is returned)."""
        with self.lock:
            current = next((j for j in self.items.values() if j.kind == kind and j.running), None)
            if current is not None:
                if key is not None and current.key == key:
                    return current
                raise Busy(current)
            job = Job(kind, title, total, time_limit, key)
            self.items[job.id] = job
            while len(self.items) > self.keep:
                old = next((k for k, j in self.items.items() if not j.running), None)
                if old is None:
                    break
                del self.items[old]
        thread = threading.Thread(target=self._run, args=(job, fn), name=f"glassnet-{kind}-{job.id}", daemon=True)
        thread.start()
        return job

    @staticmethod
    def _run(job: Job, fn: Callable[[Job], None]) -> None:
        try:
            fn(job)
            status, message = "done", job.message
        except Stopped as e:
            if str(e) == "timeout":
                status, message = "timeout", f"stopped at the time limit of {job.time_limit:g} s"
            else:
                status, message = "cancelled", "cancelled"
        except Exception as e:  # reported to the page; the explorer goes on
            log.exception("explorer: %s job %s failed", job.kind, job.id)
            status, message = "failed", f"{type(e).__name__}: {e}"
        with job._lock:
            job.status, job.message, job.finished = status, message, time.time()
            job.version += 1

    def get(self, job_id: str) -> Job | None:
        with self.lock:
            return self.items.get(job_id)

    def wait(self, job_id: str, timeout: float = 30.0) -> Job | None:
        """Block until the job has finished (tests and scripts)."""
        end = time.monotonic() + timeout
        job = self.get(job_id)
        while job is not None and job.running and time.monotonic() < end:
            time.sleep(0.02)
        return job
