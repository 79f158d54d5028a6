"""Run directories with real processes (issue 12): nothing of an earlier run is overwritten
(1), one trainer per directory (2), exact resume whatever the thread count (5), SIGTERM and
SIGHUP checkpoint and mark the run "interrupted" (12), a full disk is one error line, marks
the run "failed" and leaves no temporary file, and stale temporary files go on the next
start (13)."""

from __future__ import annotations

import json
import os
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest

from glassnet.checkpoint import load_checkpoint
from glassnet.train import History

REPO = Path(__file__).resolve().parents[1]
#: 540 training images (60 held out) in batches of 32: 17 steps an epoch, a checkpoint every 3.
ARGS = ["--limit", "600", "--epochs", "2", "--batch-size", "32", "--checkpoint-every", "3", "--seed", "5", "--quiet"]
STEPS_PER_EPOCH = 17


def _env(threads: int = 1) -> dict[str, str]:
    env = dict(os.environ, OPENBLAS_NUM_THREADS=str(threads), OMP_NUM_THREADS=str(threads), MKL_NUM_THREADS="1")
    env["PYTHONPATH"] = str(REPO) + os.pathsep + env.get("PYTHONPATH", "")
    return env


def _cmd(*args: str) -> list[str]:
    return [sys.executable, "-m", "glassnet", *map(str, args)]


def run_cli(*args: str, cwd: Path, threads: int = 1, timeout: float = 240) -> subprocess.CompletedProcess[str]:
    return subprocess.run(_cmd(*args), cwd=cwd, env=_env(threads), capture_output=True, text=True, timeout=timeout)


def start_cli(*args: str, cwd: Path, threads: int = 1) -> subprocess.Popen[str]:
    return subprocess.Popen(_cmd(*args), cwd=cwd, env=_env(threads), stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                            text=True)  # fmt: skip


def wait_for_step(proc: subprocess.Popen[str], ckpt: Path, min_step: int, timeout: float = 120) -> int:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            pytest.fail(f"training ended before step {min_step} (rc {proc.returncode}): {proc.communicate()}")
        if ckpt.exists():
            step = load_checkpoint(ckpt).meta.step
            if step >= min_step:
                return step
        time.sleep(0.02)
    proc.kill()
    pytest.fail(f"no checkpoint at step >= {min_step} within {timeout} s")


def tensors(path: Path) -> dict[str, np.ndarray]:
    ckpt = load_checkpoint(path)
    return {**{f"model/{k}": v for k, v in ckpt.model_state.items()},
            **{f"optim/{k}": v for k, v in ckpt.optim_arrays.items()}}  # fmt: skip


def assert_same_weights(run: Path, reference: Path) -> None:
    got, want = tensors(run / "last.safetensors"), tensors(reference / "last.safetensors")
    assert got.keys() == want.keys()
    for k in want:
        assert np.array_equal(got[k], want[k]), f"{k} differs from the uninterrupted run"
    assert json.loads((run / "metrics.json").read_text()) == json.loads((reference / "metrics.json").read_text())


def one_error_line(stderr: str) -> str:
    lines = [ln for ln in stderr.splitlines() if ln.strip()]
    assert len(lines) == 1 and lines[0].startswith("error: "), stderr
    assert "Traceback" not in stderr
    return lines[0]


@pytest.fixture(scope="module")
def reference(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The run of ARGS, never interrupted (1 thread)."""
    out = tmp_path_factory.mktemp("reference") / "run"
    r = run_cli("train", *ARGS, "--out", out, cwd=out.parent)
    assert r.returncode == 0, r.stderr
    return out


# ------------------------------------------------------------------------- 1: no overwrite
def test_a_run_directory_with_anything_of_an_earlier_run_is_never_overwritten(reference: Path, tmp_path: Path) -> None:
    """The earlier guard only looked for last.safetensors: a run that kept only best.safetensors lost it."""
    kept = tmp_path / "kept"
    kept.mkdir()
    for name in ("best.safetensors", "history.json", "metrics.json"):
        (kept / name).write_bytes((reference / name).read_bytes())
    before = {p.name: p.read_bytes() for p in kept.iterdir()}
    r = run_cli("train", *ARGS, "--out", kept, cwd=tmp_path)
    assert r.returncode == 2
    line = one_error_line(r.stderr)
    assert str(kept) in line and "already holds a run" in line and "nothing was overwritten" in line
    assert f"--resume {kept}" in line
    assert {p.name: p.read_bytes() for p in kept.iterdir()} == before  # byte for byte, and nothing added

    notes = tmp_path / "notes"  # any file at all: the directory is not a new run's
    notes.mkdir()
    (notes / "todo.txt").write_text("keep me")
    r = run_cli("train", *ARGS, "--out", notes, cwd=tmp_path)
    assert r.returncode == 2 and "todo.txt" in one_error_line(r.stderr)
    assert sorted(p.name for p in notes.iterdir()) == ["todo.txt"]


# ---------------------------------------------------------------- 2 and 12: lock, SIGTERM
def test_a_second_trainer_is_refused_with_the_holders_pid_and_sigterm_checkpoints(
    reference: Path, tmp_path: Path
) -> None:
    out = tmp_path / "run"
    a = start_cli("train", *ARGS, "--out", out, cwd=tmp_path)
    wait_for_step(a, out / "last.safetensors", 3)
    lock = json.loads((out / "run.lock").read_text())
    assert lock["pid"] == a.pid and lock["host"] == socket.gethostname()
    a.send_signal(signal.SIGSTOP)  # A holds the lock, alive but paused: it cannot finish while B knocks
    try:
        for args in (["train", *ARGS, "--out", out], ["train", "--resume", out, "--quiet"]):
            b = run_cli(*args, cwd=tmp_path)
            assert b.returncode == 2, b.stderr
            line = one_error_line(b.stderr)
            assert f"in use by another trainer: PID {a.pid}" in line, line
    finally:
        a.send_signal(signal.SIGCONT)
    assert a.poll() is None  # the first one was not disturbed

    a.send_signal(signal.SIGTERM)
    stdout, stderr = a.communicate(timeout=120)
    assert a.returncode == 130, (stdout, stderr)
    assert "Traceback" not in stderr and f"--resume {out}" in stderr and "SIGTERM" in stderr
    hist = History.load(out)
    step = load_checkpoint(out / "last.safetensors").meta.step
    assert hist.status == "interrupted" and "SIGTERM" in hist.message and f"step {step}" in hist.message
    assert not (out / "run.lock").exists()  # released

    r = run_cli("train", "--resume", out, "--quiet", cwd=tmp_path)
    assert r.returncode == 0, r.stderr
    assert_same_weights(out, reference)
    assert History.load(out).status == "finished"


def test_sighup_checkpoints_and_marks_the_run_interrupted(reference: Path, tmp_path: Path) -> None:
    out = tmp_path / "run"
    a = start_cli("train", *ARGS, "--out", out, cwd=tmp_path)
    wait_for_step(a, out / "last.safetensors", STEPS_PER_EPOCH + 3)  # in epoch 2
    a.send_signal(signal.SIGHUP)
    stdout, stderr = a.communicate(timeout=120)
    assert a.returncode == 130, (stdout, stderr)
    hist = History.load(out)
    assert hist.status == "interrupted" and "SIGHUP" in hist.message
    r = run_cli("train", "--resume", out, "--quiet", cwd=tmp_path)
    assert r.returncode == 0, r.stderr
    assert_same_weights(out, reference)


def test_a_stale_lock_is_taken_over_and_a_foreign_one_is_respected(reference: Path, tmp_path: Path) -> None:
    out = tmp_path / "run"
    a = start_cli("train", *ARGS, "--out", out, cwd=tmp_path)
    wait_for_step(a, out / "last.safetensors", 3)
    a.kill()  # SIGKILL: no handler runs, the lock file stays
    a.communicate(timeout=30)
    left = json.loads((out / "run.lock").read_text())
    assert left["pid"] == a.pid  # a dead PID on this host: stale
    assert History.load(out).status == "running"  # nobody could say otherwise

    (out / "run.lock").write_text(json.dumps({"pid": 4242, "host": "elsewhere.example", "started": "then"}))
    r = run_cli("train", "--resume", out, "--quiet", cwd=tmp_path)
    assert r.returncode == 2
    line = one_error_line(r.stderr)
    assert "PID 4242 on host elsewhere.example" in line and "delete" in line and "run.lock" in line

    (out / "run.lock").write_text(json.dumps(left))
    r = run_cli("train", "--resume", out, "--quiet", cwd=tmp_path)
    assert r.returncode == 0, r.stderr
    assert_same_weights(out, reference)
    assert not (out / "run.lock").exists()


# ----------------------------------------------------------------------- 5: thread count
def test_resume_on_another_thread_count_ends_bit_identical(tmp_path: Path) -> None:
    """A run made with 2 threads, interrupted, and resumed with ``--threads 1`` ends exactly as the
    uninterrupted 2-thread run: results do not depend on the thread count. A resume that says
    nothing about threads applies the run's stored count."""
    ref = tmp_path / "ref"
    r = run_cli("train", *ARGS, "--threads", "2", "--out", ref, cwd=tmp_path, threads=2)
    assert r.returncode == 0, r.stderr
    assert History.load(ref).config["threads"] == 2

    out = tmp_path / "run"
    a = start_cli("train", *ARGS, "--threads", "2", "--out", out, cwd=tmp_path, threads=2)
    wait_for_step(a, out / "last.safetensors", STEPS_PER_EPOCH + 3)
    a.send_signal(signal.SIGINT)
    a.communicate(timeout=120)
    assert a.returncode == 130

    r = run_cli("train", "--resume", out, "--threads", "1", "--quiet", cwd=tmp_path, threads=2)
    assert r.returncode == 0, r.stderr
    assert_same_weights(out, ref)
    assert History.load(out).config["threads"] == 2  # the run's own setting is kept in its record


# ------------------------------------------------------------------ 13: disk full, stale tmp
@pytest.fixture
def small_disk(tmp_path: Path):
    """A 1 MiB tmpfs: a history and one checkpoint fit, a second checkpoint does not."""
    if os.geteuid() != 0:
        pytest.skip("mounting a small tmpfs needs root (the disk-full test runs as root in the test setup)")
    mnt = tmp_path / "small"
    mnt.mkdir()
    r = subprocess.run(["mount", "-t", "tmpfs", "-o", "size=1m", "tmpfs", str(mnt)], capture_output=True, text=True)
    if r.returncode != 0:
        pytest.skip(f"cannot mount a tmpfs here ({r.stderr.strip()})")
    try:
        yield mnt
    finally:
        subprocess.run(["umount", "-l", str(mnt)], check=False)


def test_disk_full_is_one_error_line_marks_the_run_failed_and_leaves_no_temp_file(
    small_disk: Path, tmp_path: Path
) -> None:
    out = small_disk / "run"
    r = run_cli("train", *ARGS, "--out", out, cwd=tmp_path)
    assert r.returncode == 1, (r.stdout, r.stderr)
    line = one_error_line(r.stderr)
    assert "No space left on device" in line and str(out) in line, line
    hist = History.load(out)
    assert hist.status == "failed" and "No space left on device" in hist.message
    assert "last.safetensors holds step" in hist.message  # and it says what is on disk
    assert not [p.name for p in out.iterdir() if p.name.endswith(".tmp")]
    load_checkpoint(out / "last.safetensors")  # what is there is whole


def test_stale_temp_files_of_a_killed_write_are_removed_on_the_next_start(reference: Path, tmp_path: Path) -> None:
    out = tmp_path / "run"
    a = start_cli("train", *ARGS, "--out", out, cwd=tmp_path)
    wait_for_step(a, out / "last.safetensors", 3)
    a.kill()
    a.communicate(timeout=30)
    torn = [out / ".last.safetensors.k1ll3d.tmp", out / ".history.json.abcd1234.tmp"]
    for p in torn:  # what a write killed between its temporary file and the rename leaves
        p.write_bytes(b"\0" * 1000)
    r = run_cli("train", "--resume", out, "--quiet", cwd=tmp_path)
    assert r.returncode == 0, r.stderr
    assert not any(p.exists() for p in torn)
    assert_same_weights(out, reference)

    fresh = tmp_path / "fresh"  # a directory holding only such leftovers is a new run's
    fresh.mkdir()
    (fresh / ".history.json.x.tmp").write_text("{")
    r = run_cli("train", "--limit", "100", "--epochs", "1", "--quiet", "--out", fresh, cwd=tmp_path)
    assert r.returncode == 0, r.stderr
    assert not (fresh / ".history.json.x.tmp").exists()
