"""Data-parallel training on MPI (:mod:`glassnet.distributed`): two ranks under ``mpiexec`` against
one process, what rank 0 alone writes, failures that stop every rank, resume after a rank is killed,
and ``glassnet train --workers``. Skipped, saying why, where MPI cannot start two processes."""

from __future__ import annotations

import importlib.util
import json
import os
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from glassnet.checkpoint import CheckpointError, read_checkpoint_meta
from glassnet.data import DataLoader
from glassnet.distributed import ShardedLoader

REPO = Path(__file__).resolve().parents[1]
WORKER = REPO / "tests" / "mpi_worker.py"
TIMEOUT_S = 240


def _worker() -> Any:
    spec = importlib.util.spec_from_file_location("mpi_worker", WORKER)
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


@pytest.fixture(scope="module")
def mpi() -> dict[str, Any]:
    """How to start two ranks here (mpiexec and its environment), or a skip saying why not."""
    try:
        import mpi4py  # noqa: F401
    except ImportError:
        pytest.skip("mpi4py is not installed (the distributed extra: uv sync --extra distributed)")
    from glassnet.distributed import DistributedError, mpiexec_command

    try:
        start = mpiexec_command(2, [])
    except DistributedError as e:
        pytest.skip(str(e))
    env = {**os.environ, "OMPI_ALLOW_RUN_AS_ROOT": "1", "OMPI_ALLOW_RUN_AS_ROOT_CONFIRM": "1",
           "OPENBLAS_NUM_THREADS": "1", "OMP_NUM_THREADS": "1"}  # fmt: skip
    probe = [*start, sys.executable, "-c", "from mpi4py import MPI; assert MPI.COMM_WORLD.Get_size() == 2"]
    try:
        done = subprocess.run(probe, env=env, capture_output=True, text=True, timeout=120)
    except (OSError, subprocess.TimeoutExpired) as e:
        pytest.skip(f"MPI cannot start two processes here: {e}")
    if done.returncode != 0:
        pytest.skip(f"MPI cannot start two processes here: {(done.stderr or done.stdout).strip()[-500:]}")
    return {"start": start, "env": env}


def _launch(mpi: dict[str, Any], *args: Any) -> subprocess.CompletedProcess[str]:
    return subprocess.run([*mpi["start"], *map(str, args)], env=mpi["env"], capture_output=True, text=True,
                          timeout=TIMEOUT_S)  # fmt: skip


@pytest.fixture(scope="module")
def two_ranks(mpi: dict[str, Any], tmp_path_factory: pytest.TempPathFactory) -> dict[str, Any]:
    """One job of two ranks: a training run, a failing forward pass, a NaN loss, then a failure on one rank alone."""
    out = tmp_path_factory.mktemp("mpi")
    t0 = time.monotonic()
    done = _launch(mpi, sys.executable, WORKER, out, "train", "fail", "nan", "abort")
    return {"out": out, "done": done, "seconds": time.monotonic() - t0}


def _report(out: Path, name: str, rank: int) -> dict[str, Any]:
    return json.loads((out / f"{name}-{rank}.json").read_text())


def test_shards_make_up_the_global_batch() -> None:
    """Rank r's part of every global batch; together the batches of one process with batch 2b or 3b."""
    data = type("D", (), {"images": np.zeros((203, 1, 2, 2), np.uint8), "labels": np.arange(203)})()
    for world in (2, 3):
        one = DataLoader(data, 8 * world, shuffle=True, seed=5)
        shards = [ShardedLoader(DataLoader(data, 8, shuffle=True, seed=5), r, world) for r in range(world)]
        assert all(len(s) == len(one) == -(-203 // (8 * world)) for s in shards)
        for _ in range(2):  # two epochs: a new order each
            for (_, y), *parts in zip(one, *shards, strict=True):
                assert np.array_equal(np.concatenate([p[1] for p in parts]), y)
                assert {len(p[1]) for p in parts[:-1]} <= {8, len(y) // world, len(y) // world + 1}
        assert shards[0].state_dict() == one.state_dict() == {"seed": 5, "epoch": 2, "position": 0}


def test_two_ranks_train_as_one_process_rank_0_writes_and_failures_stop_all(two_ranks: dict[str, Any]) -> None:
    out, done = two_ranks["out"], two_ranks["done"]
    logs = done.stdout + done.stderr
    # equivalence: 2 ranks with batch 16 each = one process with batch 32, same seed and options
    ranks = [_report(out, "train", r) for r in (0, 1)]
    assert all(r["status"] == "finished" for r in ranks)
    assert ranks[0]["checks"] == ranks[1]["checks"] == [True] * 14, "weights differed between ranks after a step"
    two = np.load(out / "train.npz")
    model, hist = _worker().run(None, 32, False)
    # equal to float32 rounding: each rank sums its half of the batch, then the halves are added,
    # an order of addition one process does not use; 14 momentum steps carry the last bits along
    for k, v in model.state_dict().items():
        np.testing.assert_allclose(two[k], v, rtol=1e-4, atol=1e-5, err_msg=k)
    for a, b, c in zip(ranks[0]["epochs"], ranks[1]["epochs"], hist.epochs, strict=True):
        assert a["train_acc"] == b["train_acc"] == c["train_acc"] and a["val_acc"] == b["val_acc"] == c["val_acc"]
        assert a["train_loss"] == b["train_loss"] == pytest.approx(c["train_loss"], rel=1e-5)
    # rank 0 alone holds the run directory's lock and writes there; the checkpoint says two processes
    assert ranks[1]["writes"] == [] and ranks[1]["locks"] == []
    assert {"last.safetensors", "best.safetensors", "history.json", "curves.png"} <= set(ranks[0]["writes"])
    assert ranks[0]["locks"] == [str(out / "train")]
    meta = read_checkpoint_meta(out / "train" / "last.safetensors")
    assert (meta.world_size, meta.epoch, meta.step) == (2, 2, 14)
    # an exception in one rank's forward pass, a NaN loss on one rank: every rank raises it, naming the rank
    for r in (0, 1):
        assert _report(out, "fail", r)["error"].startswith("rank 1: ValueError: forward failed on purpose (rank 1)")
        assert _report(out, "nan", r)["error"].startswith("non-finite loss at epoch 1, step 2: rank 0: cross_entropy")
    failed = json.loads((out / "nan" / "history.json").read_text())
    assert failed["status"] == "failed" and "rank 0" in failed["message"]
    # a failure on rank 1 alone, where no other rank can know: its message, and every rank stops (MPI_Abort)
    assert done.returncode != 0, logs[-2000:]
    assert "error: rank 1 of 2: RuntimeError: boom: a callback failed on rank 1 alone" in logs
    assert not list(out.glob("abort-*.json")), "a rank went on after another failed"
    assert two_ranks["seconds"] < TIMEOUT_S


def test_resume_after_a_rank_is_killed(mpi: dict[str, Any], two_ranks: dict[str, Any], tmp_path: Path) -> None:
    """Rank 1 is killed (SIGKILL) mid-epoch: the job stops; resumed on two ranks, the run ends with the
    weights of the uninterrupted run, bit for bit. Resuming with another number of processes is an error."""
    out = two_ranks["out"]
    killed = _launch(mpi, sys.executable, WORKER, out, "kill")
    assert killed.returncode != 0
    assert read_checkpoint_meta(out / "killed" / "last.safetensors").step == 9
    worker = _worker()
    with pytest.raises(CheckpointError, match="world size 2\\), this one has world size 1: resume it with 2"):
        worker.run(out / "killed", 16, False, resume=True)
    resumed = _launch(mpi, sys.executable, WORKER, out, "resume")
    assert resumed.returncode == 0, (resumed.stdout + resumed.stderr)[-2000:]
    assert _report(out, "resume", 0)["checks"] == [True] * 5  # steps 10..14
    a, b = np.load(out / "train.npz"), np.load(out / "resume.npz")
    assert all(np.array_equal(a[k], b[k]) for k in a)


def test_cli_workers_launches_mpiexec(mpi: dict[str, Any], tmp_path: Path) -> None:
    run = tmp_path / "run"
    cmd = [sys.executable, "-m", "glassnet", "train", "--workers", "2", "--data", "shapes", "--limit", "300",
           "--epochs", "1", "--batch-size", "16", "--out", run, "--quiet"]  # fmt: skip
    done = subprocess.run(list(map(str, cmd)), env=mpi["env"], capture_output=True, text=True, timeout=TIMEOUT_S)
    assert done.returncode == 0, (done.stdout + done.stderr)[-2000:]
    assert "running: " in done.stderr and " -n 2 " in done.stderr and "-m glassnet train --data shapes" in done.stderr
    assert "--workers" not in done.stderr.split("running: ")[1].splitlines()[0]
    assert done.stdout.count("test accuracy:") == 1  # rank 0 alone reports
    meta = read_checkpoint_meta(run / "last.safetensors")
    assert (meta.world_size, meta.step) == (2, -(-270 // 32))
