"""Owning a run directory: one trainer at a time, nothing from an earlier run overwritten.

* :class:`RunLock`: ``DIR/run.lock`` holds the trainer's PID and host. It is taken with
  ``flock`` (released by the kernel when the process dies, however it dies), so a second
  trainer on the same directory is refused at once with the holder's PID. A lock file left
  by a process that is gone (same host, PID not running) is stale and taken over; one from
  another host is respected (its PID cannot be checked from here) until it is deleted.
* :func:`prepare_run_dir`: under the lock, removes the temporary files a killed write left
  behind (``.NAME.*.tmp``) and, for a new run, refuses a directory holding anything else.
* :func:`describe_checkpoints`: what is on disk, in words, for the messages of a run
  that stops.
"""

from __future__ import annotations

import json
import os
import socket
import sys
import threading
import time
from pathlib import Path
from typing import Any

try:
    import fcntl
except ImportError:  # pragma: no cover - not POSIX
    fcntl = None  # type: ignore[assignment]

LOCK_NAME = "run.lock"


class RunDirError(ValueError):
    """A run directory that cannot be used: held by another trainer, or holding an earlier run."""


def _pid_alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:  # exists, owned by someone else
        return True
    except OSError:
        return False
    return True


def _describe_holder(info: dict[str, Any] | None) -> str:
    if not info:
        return "another process (its lock file names no PID)"
    since = f", since {info['started']}" if info.get("started") else ""
    return f"PID {info.get('pid')} on host {info.get('host')}{since}"


def _read_info(fd: int) -> dict[str, Any] | None:
    try:
        os.lseek(fd, 0, os.SEEK_SET)
        data = os.read(fd, 65536)
        info = json.loads(data) if data.strip() else None
    except (OSError, ValueError):
        return None
    return info if isinstance(info, dict) else None


_held: dict[str, list[Any]] = {}  # resolved run dir -> [fd, count], in this process
_held_lock = threading.Lock()


class RunLock:
    """Exclusive ownership of a run directory (re-entrant within one process).

    ``with RunLock(run_dir): ...``; raises :class:`RunDirError` naming the holder's PID
    and host when another trainer holds it. ``stale`` is set (to the old holder) when a
    lock left by a dead process was taken over.
    """

    def __init__(self, run_dir: str | os.PathLike[str]) -> None:
        self.run_dir = Path(run_dir)
        self.path = self.run_dir / LOCK_NAME
        self.stale: dict[str, Any] | None = None
        self._key: str | None = None
        self._created = False

    def __enter__(self) -> RunLock:
        self.acquire()
        return self

    def __exit__(self, *exc: Any) -> None:
        self.release()

    def acquire(self) -> None:
        self._created = not self.run_dir.exists()
        self.run_dir.mkdir(parents=True, exist_ok=True)
        key = str(self.run_dir.resolve())
        with _held_lock:
            if key in _held:
                _held[key][1] += 1
                self._key = key
                return
            fd = self._take()
            _held[key] = [fd, 1]
            self._key = key

    def release(self) -> None:
        if self._key is None:
            return
        with _held_lock:
            entry = _held.get(self._key)
            if entry is not None:
                entry[1] -= 1
                if entry[1] == 0:
                    del _held[self._key]
                    try:
                        os.unlink(self.path)  # still holding the flock: nobody can take the old file
                    except OSError:
                        pass
                    os.close(entry[0])
                    if self._created:  # a directory made for a run that wrote nothing is not left behind
                        try:
                            self.run_dir.rmdir()
                        except OSError:
                            pass
        self._key = None

    def _take(self) -> int:
        me = {"pid": os.getpid(), "host": socket.gethostname(), "started": time.strftime("%Y-%m-%dT%H:%M:%S"),
              "command": " ".join(sys.argv[:1] + sys.argv[1:8])}  # fmt: skip
        for _ in range(100):
            fd = os.open(self.path, os.O_RDWR | os.O_CREAT | getattr(os, "O_CLOEXEC", 0), 0o644)
            locked_by_kernel = False
            if fcntl is not None:
                try:
                    fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
                    locked_by_kernel = True
                except BlockingIOError:
                    info = _read_info(fd)
                    os.close(fd)
                    raise RunDirError(
                        f"{self.run_dir} is in use by another trainer: {_describe_holder(info)} "
                        f"(lock file {self.path}); wait for it to finish or stop it"
                    ) from None
                except OSError:  # a file system without flock: the PID check below decides
                    pass
            try:  # the file may have been removed (and re-created) by its last holder meanwhile
                same = os.path.samestat(os.fstat(fd), os.stat(self.path))
            except FileNotFoundError:
                same = False
            if not same:
                os.close(fd)
                continue
            info = _read_info(fd)
            if info and info.get("pid") != os.getpid():
                here = info.get("host") == me["host"]
                pid = info.get("pid")
                alive = here and isinstance(pid, int) and _pid_alive(pid)
                if not here or (alive and not locked_by_kernel):
                    os.close(fd)
                    where = "" if here else " (another machine: its PID cannot be checked from here)"
                    raise RunDirError(
                        f"{self.run_dir} is in use by another trainer: {_describe_holder(info)}{where}; "
                        f"if no trainer runs there any more, delete {self.path}"
                    )
                self.stale = info  # its process is gone (or no longer holds the file)
            os.ftruncate(fd, 0)
            os.lseek(fd, 0, os.SEEK_SET)
            os.write(fd, json.dumps(me).encode())
            os.fsync(fd)
            return fd
        raise RunDirError(f"cannot take the lock {self.path}: it keeps changing")  # pragma: no cover


def is_temp_file(name: str) -> bool:
    """A temporary file of an atomic write (``.NAME.XXXX.tmp``)."""
    return name.startswith(".") and name.endswith(".tmp")


def clean_stale_temp_files(run_dir: str | os.PathLike[str]) -> list[str]:
    """Remove what killed atomic writes left in ``run_dir``; call it holding the run's lock."""
    removed = []
    d = Path(run_dir)
    if not d.is_dir():
        return removed
    for p in d.iterdir():
        if is_temp_file(p.name) and p.is_file():
            try:
                p.unlink()
                removed.append(p.name)
            except OSError:
                pass
    return removed


def prepare_run_dir(run_dir: str | os.PathLike[str], resume: bool) -> None:
    """Clean stale temporary files; a new run (``resume=False``) needs a directory holding nothing else.

    Call it holding :class:`RunLock`. Raises :class:`RunDirError` naming the directory and
    what it holds: nothing of an earlier run is ever overwritten.
    """
    d = Path(run_dir)
    clean_stale_temp_files(d)
    if resume or not d.exists():
        return
    if not d.is_dir():
        raise RunDirError(f"{d} is not a directory")
    held = sorted(p.name for p in d.iterdir() if p.name != LOCK_NAME)
    if held:
        shown = ", ".join(held[:6]) + (f" and {len(held) - 6} more" if len(held) > 6 else "")
        run_files = {"history.json", "history.csv", "curves.png", "metrics.json"}
        what = "a run" if any(n in run_files or n.endswith(".safetensors") for n in held) else "files"
        raise RunDirError(
            f"{d} already holds {what} ({shown}); nothing was overwritten. To continue a run there use "
            f"`glassnet train --resume {d}` (fit(..., resume=True)); otherwise choose another directory"
        )


def describe_checkpoints(run_dir: str | os.PathLike[str]) -> str:
    """What the run directory's checkpoints hold, e.g. 'last.safetensors holds step 6 (1 epoch(s) completed)'."""
    from ..checkpoint import CheckpointError, read_checkpoint_meta

    d = Path(run_dir)
    parts = []
    for name in ("last.safetensors", "best.safetensors"):
        p = d / name
        if not p.exists():
            continue
        try:
            m = read_checkpoint_meta(p)
            parts.append(f"{name} holds step {m.step} ({m.epoch} epoch(s) completed)")
        except CheckpointError as e:
            parts.append(f"{name} cannot be read ({e})")
    if not parts:
        return f"no checkpoint was written in {d}"
    return "; ".join(parts) + f" (in {d})"
