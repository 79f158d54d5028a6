"""Make ``tests/explorer/data/lenet5_shapes.safetensors``: LeNet-5 trained on ``shapes``.

The explorer tests need a checkpoint whose predictions mean something. This trains one
with plain momentum SGD written out here (no trainer needed): 5 epochs of the 12,000
generated training images, batch 32, seed 0; about 5 minutes on one CPU core.

    .venv/bin/python tests/explorer/make_fixture.py
"""

from __future__ import annotations

import time
from pathlib import Path

import numpy as np

import glassnet.functional as F
from glassnet.checkpoint import save_checkpoint
from glassnet.data import SHAPES_CLASSES, load_dataset
from glassnet.models import lenet5

OUT = Path(__file__).parent / "data" / "lenet5_shapes.safetensors"


def main() -> None:
    train, test = load_dataset("shapes", "train"), load_dataset("shapes", "test")
    x = train.images.astype(np.float32) / 255
    mean, std = float(x.mean()), float(x.std())
    x = (x - mean) / std
    xt = (test.images.astype(np.float32) / 255 - mean) / std
    model = lenet5(rng=0)
    rng = np.random.default_rng(0)
    velocity = [np.zeros_like(p.data) for p in model.parameters()]
    start = time.time()
    acc = 0.0
    for epoch, lr in enumerate([0.02, 0.02, 0.01, 0.005, 0.002]):
        order = rng.permutation(len(x))
        for i in range(0, len(x), 32):
            batch = order[i : i + 32]
            model.zero_grad()
            loss = F.cross_entropy(model(x[batch]), train.labels[batch])
            loss.backward()
            for v, p in zip(velocity, model.parameters(), strict=True):
                v *= 0.9
                v += p.grad
                p.data -= lr * v
        model.eval()
        acc = float((model(xt).argmax(1) == test.labels).mean())
        model.train()
        print(f"epoch {epoch + 1}: loss {float(loss):.4f}, test accuracy {acc:.3f}, {time.time() - start:.0f} s")
    model.eval()
    save_checkpoint(
        OUT,
        model,
        architecture="lenet5",
        arch_kwargs={"num_classes": 10, "in_channels": 1},
        classes=list(SHAPES_CLASSES),
        normalization={"mean": [mean], "std": [std]},
        input_shape=(1, 28, 28),
        epoch=5,
        dataset="shapes",
        extra={"test_acc": acc},
    )
    print(f"wrote {OUT}")


if __name__ == "__main__":
    main()
