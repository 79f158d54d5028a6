"""Transfer learning end to end, on the built-in ``shapes`` data (no download).

Task A: shapes classes 0-4 (circle, square, triangle, cross, ring), plenty of labelled images.
Task B: shapes classes 5-9 (star, diamond, arrow, bars, x), only a few labelled images per class.

1. Pretrain LeNet-5 on task A.
2. ``replace_head(model, 5)``: a fresh 84 → 5 output layer; ``freeze_features(model)``: every
   other weight is frozen, so only the head's 425 parameters learn.
3. Fine-tune on task B's few images.
4. Compare with the same LeNet-5 trained from scratch (all weights) on the same few images,
   with the same optimiser, learning rate, batch size and number of epochs.

Both are measured on task B's test images (1,000 of them)::

    python examples/transfer_learning.py               # about a minute on one core
    python examples/transfer_learning.py --shots 5     # even fewer labels
"""

from __future__ import annotations

import argparse
import time
from dataclasses import dataclass

import numpy as np

from glassnet.data import DataLoader, Dataset, load_dataset
from glassnet.models import find_head, freeze_features, lenet5, replace_head
from glassnet.nn import Module
from glassnet.optim import Adam
from glassnet.train import evaluate, fit

TASK_A = [0, 1, 2, 3, 4]
TASK_B = [5, 6, 7, 8, 9]


def task(ds: Dataset, classes: list[int], per_class: int | None = None, seed: int = 0) -> Dataset:
    """The images of ``classes`` (relabelled 0..k-1); ``per_class`` draws that many of each at random."""
    rng = np.random.default_rng(seed)
    picks = []
    for c in classes:
        where = np.flatnonzero(ds.labels == c)
        picks.append(where if per_class is None else rng.choice(where, per_class, replace=False))
    idx = np.sort(np.concatenate(picks))
    relabel = np.full(len(ds.classes), -1)
    relabel[classes] = np.arange(len(classes))
    return Dataset(ds.images[idx], relabel[ds.labels[idx]], [ds.classes[c] for c in classes],
                   name=f"{ds.name}[{','.join(map(str, classes))}]", split=ds.split)  # fmt: skip


def train(model: Module, data: Dataset, norm: tuple, epochs: int, lr: float, batch_size: int, seed: int) -> Module:
    """Adam on the trainable parameters only (frozen ones are not even given to the optimiser)."""
    loader = DataLoader(data, batch_size, shuffle=True, seed=seed, normalize=norm)
    opt = Adam(model.parameters(trainable_only=True), lr=lr)
    fit(model, loader, epochs=epochs, optimizer=opt, progress=False)
    return model


def accuracy(model: Module, data: Dataset, norm: tuple) -> float:
    return evaluate(model, DataLoader(data, 250, normalize=norm)).accuracy


@dataclass
class Result:
    pretrain_acc: float  # task A test accuracy of the pretrained model
    transfer_acc: list[float]  # task B test accuracy after fine-tuning the head, one per draw
    scratch_acc: list[float]  # task B test accuracy of LeNet-5 trained from scratch, one per draw
    frozen_unchanged: bool  # every frozen weight bit-identical after fine-tuning
    trainable: int  # parameters fine-tuned
    total: int  # parameters in all


def experiment(pretrain_images: int = 6000, pretrain_epochs: int = 3, shots: int = 10, epochs: int = 40,
               lr: float = 3e-3, draws: int = 3, seed: int = 0, log: bool = True) -> Result:  # fmt: skip
    say = print if log else (lambda *a, **k: None)
    t0 = time.perf_counter()
    train_all = load_dataset("shapes", "train", n=max(2 * pretrain_images, 2000) + 500)
    test_all = load_dataset("shapes", "test", n=2000)
    a_train = task(train_all, TASK_A)
    a_train = a_train.subset(range(min(pretrain_images, len(a_train))))
    a_test, b_test = task(test_all, TASK_A), task(test_all, TASK_B)
    norm = a_train.mean_std()  # the pretrained features expect task A's normalisation; used for both

    pretrained = train(lenet5(num_classes=len(TASK_A), rng=seed), a_train, norm, pretrain_epochs, 2e-3, 32, seed)
    pretrain_acc = accuracy(pretrained, a_test, norm)
    say(f"pretrained LeNet-5 on task A ({len(a_train)} images, {pretrain_epochs} epochs): "
        f"test accuracy {pretrain_acc:.1%}  [{time.perf_counter() - t0:.0f} s]")  # fmt: skip
    weights = pretrained.state_dict()

    transfer_acc, scratch_acc, frozen_unchanged = [], [], True
    for draw in range(draws):
        few = task(train_all, TASK_B, per_class=shots, seed=seed + 100 + draw)
        # transfer: pretrained features, fresh head, only the head learns
        model = lenet5(num_classes=len(TASK_A), rng=seed)
        model.load_state_dict(weights)
        replace_head(model, len(TASK_B), rng=seed + draw)
        freeze_features(model)
        head_name, _ = find_head(model)
        frozen = {k: v.copy() for k, v in model.state_dict().items() if not k.startswith(f"{head_name}.")}
        train(model, few, norm, epochs, lr, 10, seed + draw)
        after = model.state_dict()
        frozen_unchanged &= all(np.array_equal(after[k], v) for k, v in frozen.items())
        transfer_acc.append(accuracy(model, b_test, norm))
        # scratch: the same network and budget, every weight learns from the few images alone
        scratch = train(lenet5(num_classes=len(TASK_B), rng=seed + draw), few, norm, epochs, lr, 10, seed + draw)
        scratch_acc.append(accuracy(scratch, b_test, norm))
        say(f"draw {draw + 1}: {shots} labelled images per class ({len(few)} in all), {epochs} epochs: "
            f"transfer {transfer_acc[-1]:.1%}   from scratch {scratch_acc[-1]:.1%}")  # fmt: skip
    return Result(pretrain_acc, transfer_acc, scratch_acc, frozen_unchanged,
                  model.num_parameters(trainable_only=True), model.num_parameters())  # fmt: skip


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--pretrain-images", type=int, default=6000, help="task A training images")
    p.add_argument("--pretrain-epochs", type=int, default=3)
    p.add_argument("--shots", type=int, default=10, help="labelled task B images per class")
    p.add_argument("--epochs", type=int, default=40, help="fine-tuning epochs (the same for scratch)")
    p.add_argument("--lr", type=float, default=3e-3, help="Adam learning rate (the same for scratch)")
    p.add_argument("--draws", type=int, default=3, help="random draws of the few labelled images")
    p.add_argument("--seed", type=int, default=0)
    args = p.parse_args()
    t0 = time.perf_counter()
    r = experiment(args.pretrain_images, args.pretrain_epochs, args.shots, args.epochs, args.lr, args.draws, args.seed)
    print()
    print(f"task B test accuracy (1,000 images, mean of {args.draws} draws of {args.shots} labels per class):")
    print(f"  transfer (pretrained features, fine-tuned head): {np.mean(r.transfer_acc):.1%}")
    print(f"  from scratch (same model, images and budget):    {np.mean(r.scratch_acc):.1%}")
    print(f"fine-tuned {r.trainable:,} of {r.total:,} parameters; frozen weights unchanged: {r.frozen_unchanged}")
    print(f"total time {time.perf_counter() - t0:.0f} s")


if __name__ == "__main__":
    main()
