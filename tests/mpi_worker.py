"""Runs under ``mpiexec`` for tests/test_distributed.py (and in-process for its one-process reference).

    mpiexec -n 2 python tests/mpi_worker.py OUT SCENARIO...

Scenarios run in order in one job (an ``abort`` ends it):

* ``train``: 2 epochs of LeNet-5 on 200 synthetic images, batch 16 per rank, checkpoints every 3 steps;
  after every optimiser step the ranks compare digests of their weights; every rank records the files it
  wrote (``os.replace``, the atomic writes) and whether it took the run directory's lock;
* ``kill``: the same run, rank 1 kills itself (SIGKILL) at step 11 (after the checkpoint of step 9);
* ``resume``: resumes the ``kill`` run to its end;
* ``fail``: rank 1's forward pass raises at its third call; ``nan``: rank 0's loss becomes NaN at step 2;
* ``abort``: rank 1 alone raises in a callback at the end of the first epoch (no other rank can know).

Each rank writes ``OUT/SCENARIO-RANK.json``; rank 0 writes the final weights to ``OUT/SCENARIO.npz``.
"""

from __future__ import annotations

import hashlib
import json
import os
import signal
import sys
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import numpy as np

from glassnet.data import DataLoader
from glassnet.models import lenet5
from glassnet.optim import SGD
from glassnet.train import TrainingError, fit

N_IMAGES, EPOCHS, CHECKPOINT_EVERY = 200, 2, 3


def data() -> tuple[SimpleNamespace, SimpleNamespace]:
    rng = np.random.default_rng(7)
    labels = rng.integers(0, 10, N_IMAGES + 64)
    images = rng.integers(0, 60, (N_IMAGES + 64, 1, 28, 28)).astype(np.uint8)
    for i, c in enumerate(labels):  # a learnable mark: a bright square whose place is the class
        images[i, 0, 2 * c : 2 * c + 6, 2 * c : 2 * c + 6] = 255
    train = SimpleNamespace(images=images[:N_IMAGES], labels=labels[:N_IMAGES])
    val = SimpleNamespace(images=images[N_IMAGES:], labels=labels[N_IMAGES:])
    return train, val


def run(run_dir: Path | None, batch_size: int, distributed: Any, resume: bool = False, **kw: Any) -> Any:
    """The run every scenario makes (``batch_size`` per rank); returns (model, history)."""
    train, val = data()
    model = kw.pop("model", None) or lenet5(rng=0)
    opt = SGD(model.parameters(), lr=0.05, momentum=0.9)
    kill_at = kw.pop("kill_at", None)
    if kw.pop("check_steps", False):
        original = opt.step

        def step() -> None:
            original()
            h = hashlib.sha256(b"".join(np.ascontiguousarray(p.data).tobytes() for p in model.parameters()))
            digests = distributed.comm.allgather(h.hexdigest())
            CHECKS.append(len(set(digests)) == 1)
            if kill_at and distributed.rank == 1 and len(CHECKS) == kill_at:
                os.kill(os.getpid(), signal.SIGKILL)

        opt.step = step
    loader = DataLoader(train, batch_size, shuffle=True, seed=3, normalize=(0.2, 0.3))
    val_loader = DataLoader(val, 50, normalize=(0.2, 0.3))
    hist = fit(model, loader, val_loader, epochs=EPOCHS, optimizer=opt, run_dir=run_dir, resume=resume,
               checkpoint_every=CHECKPOINT_EVERY, progress=False, distributed=distributed, **kw)  # fmt: skip
    return model, hist


CHECKS: list[bool] = []


class _FailingForward:
    """Wraps a model: rank ``rank``'s forward pass raises (or returns NaN) at call ``at``."""

    def __init__(self, model: Any, rank: int, me: int, at: int, nan: bool) -> None:
        self.model, self.rank, self.me, self.at, self.nan, self.calls = model, rank, me, at, nan, 0

    def __getattr__(self, name: str) -> Any:
        return getattr(self.model, name)

    def __call__(self, x: Any) -> Any:
        out = self.model(x)
        if self.model.training and self.me == self.rank:
            self.calls += 1
            if self.calls == self.at:
                if self.nan:
                    return out * float("nan")
                raise ValueError(f"forward failed on purpose (rank {self.me})")
        return out


def main(out: Path, scenarios: list[str]) -> None:
    from glassnet import distributed as dist
    from glassnet.train import rundir

    ctx = dist.init()
    writes: list[str] = []
    locks: list[str] = []
    real_replace, real_acquire = os.replace, rundir.RunLock.acquire

    def replace(src: Any, dst: Any, *a: Any, **k: Any) -> None:
        writes.append(Path(dst).name)
        real_replace(src, dst, *a, **k)

    def acquire(self: Any) -> None:
        locks.append(str(self.run_dir))
        real_acquire(self)

    os.replace = replace  # type: ignore[assignment]
    rundir.RunLock.acquire = acquire  # type: ignore[method-assign]

    def report(name: str, **fields: Any) -> None:
        (out / f"{name}-{ctx.rank}.json").write_text(json.dumps(fields))

    for name in scenarios:
        writes.clear()
        locks.clear()
        CHECKS.clear()
        if name in ("train", "kill", "resume"):
            run_dir = out / ("train" if name == "train" else "killed")
            model, hist = run(run_dir, 16, ctx, resume=name == "resume", check_steps=True,
                              **({"kill_at": 11} if name == "kill" else {}))  # fmt: skip
            if ctx.is_root:
                np.savez(out / f"{name}.npz", **model.state_dict())
            report(name, checks=CHECKS, writes=sorted(set(writes)), locks=locks, status=hist.status,
                   epochs=hist.epochs)  # fmt: skip
        elif name in ("fail", "nan"):
            model = _FailingForward(lenet5(rng=0), rank=1 if name == "fail" else 0, me=ctx.rank, at=3 if name ==
                                    "fail" else 2, nan=name == "nan")  # fmt: skip
            try:
                run(out / name if name == "nan" else None, 16, ctx, model=model)
                report(name, error=None)
            except TrainingError as e:
                report(name, error=str(e))
        elif name == "abort":

            class Boom:
                def on_epoch_end(self, history: Any, model: Any) -> bool:
                    if ctx.rank == 1:
                        raise RuntimeError("boom: a callback failed on rank 1 alone")
                    return False

            run(None, 16, ctx, callbacks=(Boom(),))
            report(name, error=None)
        else:
            raise SystemExit(f"unknown scenario {name}")


if __name__ == "__main__":
    main(Path(sys.argv[1]), sys.argv[2:])
