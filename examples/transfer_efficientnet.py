"""Transfer learning as the lectures teach it: an ImageNet network, frozen, with a new head.

Data: Fashion-MNIST (Debian's ``dataset-fashion-mnist``, or ``glassnet datasets fetch
fashion-mnist``), ``--shots`` labelled training images per class, drawn at random; the
test set is ``--test`` images drawn from the official test split. Images are upscaled to
``--size``² and repeated over three channels, then normalised as EfficientNet-Lite expects
((x·255 − 127)/128).

Two arms, the same images, the same optimiser (Adam), batch size (16) and epochs; the learning
rate is 1e-2 for the head alone and 1e-3 for the whole network:

* **pretrained + frozen**: EfficientNet-Lite0 with its ImageNet weights
  (``get_model("efficientnet_lite0", pretrained=True)``), ``replace_head(model, 10)``,
  ``freeze_features(model)``: only the new head's 12,810 parameters learn, the frozen batch
  norms keep their ImageNet statistics, and autograd records nothing below the head;
* **from scratch**: the same architecture, randomly initialised, every weight trained.

Each draw of the few labelled images is one run of both; the means over ``--draws`` are
printed at the end::

    python examples/transfer_efficientnet.py                       # 3 draws, 10 images per class
    python examples/transfer_efficientnet.py --draws 1 --epochs 2  # a quick look
"""

from __future__ import annotations

import argparse
import time

import numpy as np

import glassnet
from glassnet.data import DataLoader, Dataset, load_dataset
from glassnet.models import freeze_features, get_model, replace_head
from glassnet.nn import Module
from glassnet.optim import Adam
from glassnet.train import evaluate, fit


def few_shot(ds: Dataset, per_class: int, seed: int) -> Dataset:
    """``per_class`` random images of every class."""
    rng = np.random.default_rng(seed)
    idx = np.sort(np.concatenate([rng.choice(np.flatnonzero(ds.labels == c), per_class, replace=False)
                                  for c in range(len(ds.classes))]))  # fmt: skip
    return Dataset(ds.images[idx], ds.labels[idx], ds.classes, name=f"{ds.name}-{per_class}shot", split=ds.split)


def to_rgb(ds: Dataset, size: int) -> Dataset:
    """Grayscale 28×28 → RGB size×size (nearest-neighbour upscaling, exact integer factor or close)."""
    h = ds.images.shape[2]
    rows = (np.arange(size) * h) // size
    up = ds.images[:, :, rows][:, :, :, rows]
    return Dataset(np.repeat(up, 3, axis=1), ds.labels, ds.classes, name=ds.name, split=ds.split)


# EfficientNet-Lite's input scaling, (x·255 − 127)/128, as a DataLoader normalisation of x in [0, 1].
NORM = ((127 / 255,) * 3, (128 / 255,) * 3)


def run(model: Module, train: Dataset, test: Dataset, epochs: int, lr: float, seed: int) -> float:
    opt = Adam(model.parameters(trainable_only=True), lr=lr)
    fit(model, DataLoader(train, 16, shuffle=True, seed=seed, normalize=NORM), epochs=epochs, optimizer=opt,
        progress=False)  # fmt: skip
    return evaluate(model, DataLoader(test, 50, normalize=NORM)).accuracy


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--shots", type=int, default=10, help="labelled training images per class")
    ap.add_argument("--draws", type=int, default=3)
    ap.add_argument("--epochs", type=int, default=15)
    ap.add_argument("--size", type=int, default=96, help="input side after upscaling")
    ap.add_argument("--test", type=int, default=500, help="test images (drawn from the test split)")
    ap.add_argument("--threads", type=int, default=1)
    args = ap.parse_args()
    glassnet.backend.set_num_threads(args.threads)
    glassnet.backend.keep_freed_memory()

    train_all, test_all = load_dataset("fashion-mnist", "train"), load_dataset("fashion-mnist", "test")
    pick = np.random.default_rng(1234).choice(len(test_all), args.test, replace=False)
    test = to_rgb(Dataset(test_all.images[pick], test_all.labels[pick], test_all.classes, split="test"), args.size)
    results: dict[str, list[float]] = {"pretrained + frozen": [], "from scratch": []}
    for draw in range(args.draws):
        train = to_rgb(few_shot(train_all, args.shots, seed=draw), args.size)
        t = time.perf_counter()
        model = freeze_features(replace_head(get_model("efficientnet_lite0", pretrained=True), 10, rng=draw))
        acc_pre = run(model, train, test, args.epochs, 1e-2, seed=draw)
        t_pre = time.perf_counter() - t
        t = time.perf_counter()
        scratch = get_model("efficientnet_lite0", num_classes=10, rng=draw)
        acc_scratch = run(scratch, train, test, args.epochs, 1e-3, seed=draw)
        t_scratch = time.perf_counter() - t
        results["pretrained + frozen"].append(acc_pre)
        results["from scratch"].append(acc_scratch)
        print(f"draw {draw}: pretrained + frozen {acc_pre:.1%} ({t_pre:.0f} s), "
              f"from scratch {acc_scratch:.1%} ({t_scratch:.0f} s)", flush=True)  # fmt: skip
    print(f"\nFashion-MNIST, {args.shots} labelled images per class, {args.size}² input, {args.epochs} epochs, "
          f"{args.test} test images, mean of {args.draws} draws:")  # fmt: skip
    for name, accs in results.items():
        print(f"  {name:<20} {np.mean(accs):.1%}  (draws: {', '.join(f'{a:.1%}' for a in accs)})")


if __name__ == "__main__":
    main()
