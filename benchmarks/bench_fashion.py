"""Fashion-MNIST benchmark: LeNet-5 to >= 90.0% and a deeper zoo model to >= 92.5% test accuracy.

Trains on all 60,000 training images, reports the accuracy on all 10,000 test images after
every epoch (the number that counts is the *last* epoch's, not the best one: no selection on
the test set), the seconds per epoch, and writes ``benchmarks/results/fashion.json`` and
``benchmarks/results/fashion.md``. Each model's run directory (history, checkpoints) is
``runs/bench-fashion/MODEL``; an interrupted run continues with ``--resume``.

Models and recipes (``RECIPES``; all SGD with Nesterov momentum 0.9, weight decay 5e-4 and a
cosine learning-rate schedule stepped per batch):

* ``lenet5``: LeNet-5 (61,706 parameters), 10 epochs, batch 64, lr 0.05, no augmentation
  (at 10 epochs LeNet-5 underfits: flips cost 0.3 points, flips + crops 1.6; see fashion.md).
* ``resnet8``: the CIFAR ResNet of depth 8, ``resnet_cifar(8, in_channels=1)`` (conv + three
  stages of one BasicBlock each, 16/32/64 channels, BatchNorm, global average pool; 77,754
  parameters; about 22× the multiply-accumulates of LeNet-5), 10 epochs, batch 128, lr 0.1
  after one epoch of linear warm-up, horizontal flips.
* ``resnet20``: ResNet-20 (272,186 parameters, about 3× ResNet-8's cost), same recipe.

Usage::

    python benchmarks/bench_fashion.py lenet5                 # minutes
    python benchmarks/bench_fashion.py resnet8 --time-only    # seconds/epoch estimate on 2,560 images
    python benchmarks/bench_fashion.py resnet8 --resume       # continue an interrupted run

BLAS runs on one thread by default (``--threads``): with small matrices and a shared CPU,
more threads mostly wait for each other.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import sys
import time
from pathlib import Path
from typing import Any

import numpy as np

from glassnet.backend import keep_freed_memory, set_num_threads
from glassnet.checkpoint import atomic_write_text
from glassnet.data import DataLoader, load_dataset
from glassnet.data import transforms as T
from glassnet.models import get_model, resnet_cifar
from glassnet.optim import SGD, CosineAnnealingLR, LinearLR, SequentialLR
from glassnet.train import evaluate, fit

HERE = Path(__file__).resolve().parent
RESULTS = HERE / "results"

RECIPES: dict[str, dict[str, Any]] = {
    "lenet5": {
        "name": "LeNet-5",
        "build": lambda seed: get_model("lenet5", num_classes=10, in_channels=1, rng=seed),
        "epochs": 10, "batch_size": 64, "lr": 0.05, "weight_decay": 5e-4, "warmup_epochs": 0, "augment": "none",
        "target": 0.900,
    },
    "resnet8": {
        "name": "ResNet-8 (resnet_cifar depth 8)",
        "build": lambda seed: resnet_cifar(8, num_classes=10, in_channels=1, rng=seed),
        "epochs": 10, "batch_size": 128, "lr": 0.1, "weight_decay": 5e-4, "warmup_epochs": 1, "augment": "flip",
        "target": 0.925,
    },
    "resnet20": {
        "name": "ResNet-20",
        "build": lambda seed: get_model("resnet20", num_classes=10, in_channels=1, rng=seed),
        "epochs": 10, "batch_size": 128, "lr": 0.1, "weight_decay": 5e-4, "warmup_epochs": 1, "augment": "flip",
        "target": 0.925,
    },
}  # fmt: skip
AUGMENTS = {
    "none": "none",
    "flip": "horizontal flip",
    "flip+crop": "horizontal flip + RandomCrop(28, padding=2)",
}


def augmentation(name: str) -> T.Compose | None:
    parts = {"none": [], "flip": [T.RandomHorizontalFlip()],
             "flip+crop": [T.RandomHorizontalFlip(), T.RandomCrop(28, padding=2)]}[name]  # fmt: skip
    return T.Compose(parts) if parts else None


def build(recipe: dict[str, Any], steps_per_epoch: int, epochs: int, seed: int) -> tuple[Any, SGD, Any]:
    model = recipe["build"](seed)
    opt = SGD(model.parameters(), lr=recipe["lr"], momentum=0.9, nesterov=True, weight_decay=recipe["weight_decay"])
    total, warm = epochs * steps_per_epoch, min(recipe["warmup_epochs"], epochs - 1) * steps_per_epoch
    cosine = CosineAnnealingLR(opt, T_max=total - warm)
    if not warm:
        return model, opt, cosine
    warmup = LinearLR(opt, start_factor=0.1, total_iters=warm)
    return model, opt, SequentialLR(opt, [warmup, cosine], milestones=[warm])


def time_only(recipe: dict[str, Any], n: int, seed: int) -> None:
    """Seconds per training epoch (60,000 images) and per test pass, measured on ``n`` images."""
    train = load_dataset("fashion-mnist", "train").subset(range(n))
    norm = train.mean_std()
    loader = DataLoader(
        train, recipe["batch_size"], shuffle=True, seed=seed, normalize=norm, transform=augmentation(recipe["augment"])
    )
    model, opt, sched = build(recipe, len(loader), 1, seed)
    t = time.perf_counter()
    fit(model, loader, epochs=1, optimizer=opt, scheduler=sched, scheduler_interval="step", progress=False)
    train_s = (time.perf_counter() - t) / n * 60_000
    t = time.perf_counter()
    evaluate(model, DataLoader(train, 500, normalize=norm))
    test_s = (time.perf_counter() - t) / n * 10_000
    epoch_s = train_s + test_s
    print(f"{recipe['name']}: {model.num_parameters():,} parameters; about {train_s:.0f} s per training epoch "
          f"+ {test_s:.0f} s per test pass = {epoch_s:.0f} s/epoch; {recipe['epochs']} epochs ≈ "
          f"{recipe['epochs'] * epoch_s / 60:.0f} min (measured on {n:,} images)")  # fmt: skip


class EpochPrinter:
    """Prints every epoch as it ends and keeps the results file current (a long run shows progress)."""

    def __init__(self, key: str, entry: dict[str, Any], t0: float) -> None:
        self.key, self.entry, self.t0 = key, entry, t0

    def on_epoch_end(self, history: Any, model: Any) -> bool:
        e = history.epochs[-1]
        print(f"epoch {e['epoch']:>2}  train loss {e['train_loss']:.4f}  train acc {e['train_acc']:.2%}  "
              f"test acc {e['val_acc']:.2%}  lr {e['lr']:.4f}  {e['seconds']:.0f} s "
              f"(wall {time.perf_counter() - self.t0:.0f} s)", flush=True)  # fmt: skip
        self.entry["epochs"] = [
            {k: e2[k] for k in ("epoch", "train_loss", "train_acc", "val_acc", "seconds")} for e2 in history.epochs
        ]
        self.entry["status"] = "running"
        save_results(self.key, self.entry)
        return False


def load_results() -> dict[str, Any]:
    path = RESULTS / "fashion.json"
    return json.loads(path.read_text()) if path.exists() else {}


def save_results(key: str, entry: dict[str, Any]) -> None:
    results = load_results()
    results[key] = entry
    RESULTS.mkdir(parents=True, exist_ok=True)
    atomic_write_text(RESULTS / "fashion.json", json.dumps(results, indent=1))
    atomic_write_text(RESULTS / "fashion.md", markdown(results))


def markdown(results: dict[str, Any]) -> str:
    lines = [
        "# Fashion-MNIST benchmark",
        "",
        "Written by `benchmarks/bench_fashion.py`: 60,000 training images, test accuracy on all 10,000 test",
        "images after the last epoch (no selection on the test set). SGD with Nesterov momentum 0.9,",
        "cosine learning-rate schedule stepped per batch, weight decay.",
        "",
        "| model | parameters | epochs | batch | lr | weight decay | augmentation | test accuracy | target "
        "| s/epoch (train) | total | status |",
        "|---|---:|---:|---:|---:|---:|---|---:|---:|---:|---:|---|",
    ]
    for r in results.values():
        acc = f"**{r['test_acc']:.2%}**" if r.get("test_acc") is not None else "–"
        per = f"{np.mean([e['seconds'] for e in r['epochs']]):.0f}" if r.get("epochs") else "–"
        total = "–" if r.get("total_s") is None else f"{r['total_s'] / 60:.1f} min"
        lines.append(
            f"| {r['name']} | {r['parameters']:,} | {len(r.get('epochs', []))}/{r['epochs_planned']} | "
            f"{r['batch_size']} | {r['lr']} | {r['weight_decay']} | {r['augmentation']} | {acc} | "
            f"{r['target']:.1%} | {per} | {total} | {r['status']} |"
        )
    if any(k not in RECIPES for k in results):
        lines += ["", "Rows named `[MODEL-TAG]` are other settings tried (`--tag`); the plain rows are the recipes."]
    lines += ["", "Per epoch (test accuracy after each epoch):", ""]
    for r in results.values():
        accs = ", ".join(f"{e['val_acc']:.2%}" for e in r.get("epochs", []))
        lines.append(f"* {r['name']}: {accs or '–'}")
    machine = next(iter(results.values()), {}).get("machine", {})
    if machine:
        lines += ["", f"Machine: {machine.get('cpus')} CPUs (shared), {machine.get('threads')} BLAS thread(s), "
                      f"Python {machine.get('python')}, NumPy {machine.get('numpy')}."]  # fmt: skip
    return "\n".join(lines) + "\n"


def run(key: str, recipe: dict[str, Any], seed: int, resume: bool, threads: int) -> bool:
    epochs = recipe["epochs"]
    t0 = time.perf_counter()
    train = load_dataset("fashion-mnist", "train")
    test = load_dataset("fashion-mnist", "test")
    norm = train.mean_std()
    loader = DataLoader(
        train, recipe["batch_size"], shuffle=True, seed=seed, normalize=norm, transform=augmentation(recipe["augment"])
    )
    test_loader = DataLoader(test, 500, normalize=norm)
    model, opt, sched = build(recipe, len(loader), epochs, seed)
    run_dir = Path("runs") / "bench-fashion" / key
    if not resume and (run_dir / "last.safetensors").exists():
        sys.exit(f"error: {run_dir} already holds a run; pass --resume to continue it or delete it")
    entry = {
        "name": recipe["name"] + (f" [{key}]" if key not in RECIPES else ""), "model": key,
        "parameters": model.num_parameters(), "epochs_planned": epochs,
        "batch_size": recipe["batch_size"], "lr": recipe["lr"], "weight_decay": recipe["weight_decay"],
        "warmup_epochs": recipe["warmup_epochs"], "augmentation": AUGMENTS[recipe["augment"]], "seed": seed,
        "target": recipe["target"],
        "status": "running", "epochs": [], "test_acc": None, "total_s": None,
        "machine": {"cpus": os.cpu_count(), "threads": threads, "python": platform.python_version(),
                    "numpy": np.__version__, "processor": platform.processor() or platform.machine()},
        "started": time.strftime("%Y-%m-%d %H:%M:%S"),
    }  # fmt: skip
    print(f"{recipe['name']}: {entry['parameters']:,} parameters, {epochs} epochs of {len(train):,} images "
          f"(batch {recipe['batch_size']}, lr {recipe['lr']}), test on {len(test):,}; run directory {run_dir}",
          flush=True)  # fmt: skip
    hist = fit(model, loader, test_loader, epochs=epochs, optimizer=opt, scheduler=sched, scheduler_interval="step",
               run_dir=run_dir, resume=resume, config={"benchmark": key, "epochs": epochs, "seed": seed},
               callbacks=(EpochPrinter(key, entry, t0),), progress=False)  # fmt: skip
    if hist.status == "interrupted":
        entry["status"] = "interrupted"
        save_results(key, entry)
        print("interrupted; continue with the same command and --resume")
        sys.exit(130)
    acc = hist.epochs[-1]["val_acc"]
    entry.update(test_acc=acc, total_s=round(time.perf_counter() - t0, 1), status="passed" if acc >= recipe["target"]
                 else "below target", finished=time.strftime("%Y-%m-%d %H:%M:%S"))  # fmt: skip
    entry["epochs"] = [{k: e[k] for k in ("epoch", "train_loss", "train_acc", "val_acc", "seconds")}
                       for e in hist.epochs]  # fmt: skip
    save_results(key, entry)
    verdict = "PASS" if acc >= recipe["target"] else "BELOW TARGET"
    print(f"{recipe['name']}: test accuracy {acc:.2%} (target {recipe['target']:.1%}: {verdict}) "
          f"in {entry['total_s'] / 60:.1f} min; results in {RESULTS / 'fashion.md'}")  # fmt: skip
    return acc >= recipe["target"]


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("models", nargs="*", default=["lenet5", "resnet8"], choices=sorted(RECIPES))
    p.add_argument("--epochs", type=int, default=None, help="override the recipe's epochs")
    p.add_argument("--lr", type=float, default=None, help="override the recipe's learning rate")
    p.add_argument("--weight-decay", type=float, default=None, help="override the recipe's weight decay")
    p.add_argument("--batch-size", type=int, default=None, help="override the recipe's batch size")
    p.add_argument("--augment", choices=sorted(AUGMENTS), default=None, help="override the recipe's augmentation")
    p.add_argument("--tag", default="", help="store the results as MODEL-TAG (for trying other settings)")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--resume", action="store_true", help="continue the run in runs/bench-fashion/MODEL")
    p.add_argument("--time-only", action="store_true", help="only estimate the time per epoch, on --limit images")
    p.add_argument("--limit", type=int, default=2560, help="images for --time-only")
    p.add_argument("--threads", type=int, default=1, help="BLAS threads")
    args = p.parse_args()
    set_num_threads(args.threads)
    keep_freed_memory()
    ok = True
    given = {"epochs": args.epochs, "lr": args.lr, "weight_decay": args.weight_decay, "batch_size": args.batch_size,
             "augment": args.augment}  # fmt: skip
    overrides = {k: v for k, v in given.items() if v is not None}
    for model in args.models:
        recipe = {**RECIPES[model], **overrides}
        if args.time_only:
            time_only(recipe, args.limit, args.seed)
        else:
            ok &= run(f"{model}-{args.tag}" if args.tag else model, recipe, args.seed, args.resume, args.threads)
    sys.exit(0 if ok else 1)


if __name__ == "__main__":
    main()
