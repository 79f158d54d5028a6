"""Fixtures of the explorer tests: a runs directory with finished and running runs, checkpoints."""

from __future__ import annotations

import json
import math
import shutil
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import numpy as np
import pytest

DATA = Path(__file__).parent / "data"
#: LeNet-5 trained for 5 epochs on the built-in ``shapes`` data (all 2,000 test images right);
#: made by ``tests/explorer/make_fixture.py``.
TRAINED = DATA / "lenet5_shapes.safetensors"


def make_history(
    status: str,
    epochs: int,
    *,
    planned: int = 10,
    steps_per_epoch: int = 40,
    speed: float = 1.0,
    model: str = "lenet5",
    dataset: str = "shapes",
    seed: int = 0,
    message: str | None = None,
) -> dict[str, Any]:
    """A history.json document as ``glassnet train`` writes it, with plausible curves."""
    rng = np.random.default_rng(seed)
    ep_rows, step_rows = [], []
    step = 0
    for e in range(1, epochs + 1):
        losses, accs = [], []
        for i in range(steps_per_epoch):
            t = (e - 1) + (i + 1) / steps_per_epoch
            loss = 2.3 * math.exp(-1.3 * speed * t) + 0.04 + abs(rng.normal(0, 0.06 * math.exp(-0.5 * t)))
            acc = min(1.0, max(0.0, 1.0 - 0.9 * math.exp(-1.6 * speed * t) + rng.normal(0, 0.025)))
            step += 1
            losses.append(loss)
            accs.append(acc)
            step_rows.append({"step": step, "epoch": round(t, 4), "loss": loss, "acc": acc, "lr": 0.05})
        val_loss = 2.3 * math.exp(-1.25 * speed * e) + 0.07 + 0.01 * e / planned
        ep_rows.append(
            {
                "epoch": e,
                "train_loss": float(np.mean(losses)),
                "train_acc": float(np.mean(accs)),
                "val_loss": val_loss,
                "val_acc": 1.0 - 0.9 * math.exp(-1.5 * speed * e) - 0.01,
                "lr": 0.05 * 0.5 ** (e // 4),
                "seconds": 11.5 + rng.normal(0, 0.4),
            }
        )
    best = max(ep_rows, key=lambda r: r["val_acc"]) if ep_rows else None
    return {
        "status": status,
        "message": message,
        "config": {"model": model, "data": dataset, "epochs": planned, "batch_size": 64, "lr": 0.05},
        "epochs": ep_rows,
        "steps": step_rows,
        "best": {"epoch": best["epoch"], "val_acc": best["val_acc"]} if best else None,
    }


def write_history(run: Path, doc: dict[str, Any]) -> None:
    """Write RUN/history.json atomically, as the trainer does."""
    from glassnet.checkpoint import atomic_write_text

    run.mkdir(parents=True, exist_ok=True)
    atomic_write_text(run / "history.json", json.dumps(doc))


def untrained_checkpoint(path: Path, rgb: bool = False) -> Path:
    from glassnet.checkpoint import save_checkpoint
    from glassnet.data import SHAPES_CLASSES
    from glassnet.models import lenet5

    model = lenet5(num_classes=10, in_channels=3 if rgb else 1, rng=1)
    c = 3 if rgb else 1
    return save_checkpoint(
        path,
        model,
        architecture="lenet5",
        arch_kwargs={"num_classes": 10, "in_channels": c},
        classes=list(SHAPES_CLASSES),
        normalization={"mean": [0.2] * c, "std": [0.25] * c},
        input_shape=(c, 28, 28),
    )


def noisy_checkpoint(source: Path, path: Path, sigma: float = 0.5, seed: int = 0) -> dict[str, Any]:
    """Copy ``source`` with Gaussian noise (σ · each weight's std) on every weight, so that it makes
    mistakes (the trained LeNet-5 at σ = 0.5: 91 % on ``shapes``), and write the run's
    ``metrics.json`` as ``glassnet train`` does (the final test of that checkpoint). Returns the metrics."""
    from glassnet.checkpoint import atomic_write_text, load_checkpoint, save_checkpoint
    from glassnet.data import load_dataset
    from glassnet.train import evaluate

    ckpt = load_checkpoint(source)
    model = ckpt.build_model()
    rng = np.random.default_rng(seed)
    for name, p in model.named_parameters():
        if name.endswith("weight"):
            p.data += (sigma * p.data.std() * rng.standard_normal(p.data.shape)).astype(p.data.dtype)
    model.eval()
    meta = ckpt.meta
    save_checkpoint(
        path,
        model,
        architecture=meta.architecture,
        arch_kwargs=meta.arch_kwargs,
        classes=list(ckpt.classes),
        normalization=meta.normalization,
        input_shape=meta.input_shape,
        epoch=1,
        dataset=meta.dataset,
    )
    test = load_dataset("shapes", "test")
    norm = meta.normalization or {"mean": [0.0], "std": [1.0]}
    x = (test.images.astype(np.float32) / 255 - norm["mean"][0]) / norm["std"][0]
    batches = [(x[i : i + 500], test.labels[i : i + 500]) for i in range(0, len(x), 500)]
    metrics = evaluate(model, batches, list(ckpt.classes)).to_dict()
    atomic_write_text(path.parent / "metrics.json", json.dumps(metrics, indent=1))
    return metrics


@pytest.fixture(scope="session")
def helpers() -> SimpleNamespace:
    """The helpers above, for test modules (conftest modules are not imported by name)."""
    return SimpleNamespace(
        make_history=make_history,
        write_history=write_history,
        untrained_checkpoint=untrained_checkpoint,
        noisy_checkpoint=noisy_checkpoint,
        error_of=error_of,
    )


def error_of(r: Any, status: int) -> str:
    """The message of a JSON error answer with ``status`` (and no traceback in it)."""
    assert r.status_code == status, (r.status_code, r.text)
    assert "Traceback" not in r.text and 'File "' not in r.text, r.text
    doc = r.json()
    assert isinstance(doc.get("error"), str) and doc["error"], doc
    return doc["error"]


@pytest.fixture(scope="session")
def trained_checkpoint() -> Path:
    if not TRAINED.is_file():
        pytest.skip(f"fixture checkpoint {TRAINED} is missing (run tests/explorer/make_fixture.py)")
    return TRAINED


@pytest.fixture(scope="session")
def runs_dir(tmp_path_factory: pytest.TempPathFactory, trained_checkpoint: Path) -> Path:
    """runs/: two finished runs and one running run, with checkpoints; lenet5-lr0.01 has a
    metrics.json and a checkpoint that makes mistakes."""
    root = tmp_path_factory.mktemp("explorer") / "runs"
    a = root / "lenet5-shapes"
    write_history(a, make_history("finished", 10, planned=10, speed=0.9, seed=1))
    shutil.copy(trained_checkpoint, a / "best.safetensors")
    shutil.copy(trained_checkpoint, a / "last.safetensors")
    b = root / "lenet5-lr0.01"
    write_history(b, make_history("finished", 10, planned=10, speed=0.45, seed=2))
    noisy_checkpoint(trained_checkpoint, b / "last.safetensors")  # 91 % right: a confusion matrix with errors
    c = root / "tinyvgg-live"
    write_history(c, make_history("running", 3, planned=10, speed=0.7, seed=3, model="tinyvgg"))
    return root
