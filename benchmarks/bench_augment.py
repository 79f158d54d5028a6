"""Time a typical augmentation pipeline on one MNIST-sized batch.

Pipeline: RandomHorizontalFlip + RandomCrop(28, padding=2) + RandomRotation(10°)
on a float32 batch of 64×1×28×28. Prints the median ms/batch over many runs
(target: well under 10 ms, i.e. < 20 % of a ~60-70 ms LeNet-5 training step).

Run: ``uv run --inexact python benchmarks/bench_augment.py [--batch 64] [--repeats 200]``
"""

from __future__ import annotations

import argparse
import statistics
import time

import numpy as np

from glassnet.data import transforms as T


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--batch", type=int, default=64)
    parser.add_argument("--size", type=int, default=28)
    parser.add_argument("--channels", type=int, default=1)
    parser.add_argument("--repeats", type=int, default=200)
    args = parser.parse_args()

    rng = np.random.default_rng(0)
    shape = (args.batch, args.channels, args.size, args.size)
    x = rng.random(shape, dtype=np.float32)
    pipeline = T.Compose([T.RandomHorizontalFlip(0.5), T.RandomCrop(args.size, padding=2), T.RandomRotation(10)])
    parts = {
        "flip": T.RandomHorizontalFlip(0.5),
        "crop(pad 2)": T.RandomCrop(args.size, padding=2),
        "rotation 10°": T.RandomRotation(10),
        "compose": pipeline,
    }
    print(f"batch {'×'.join(map(str, shape))} float32, median of {args.repeats} runs")
    for name, t in parts.items():
        for _ in range(10):  # warm-up
            t(x, rng)
        times = []
        for _ in range(args.repeats):
            start = time.perf_counter()
            t(x, rng)
            times.append(time.perf_counter() - start)
        print(f"  {name:<14} {statistics.median(times) * 1e3:7.3f} ms/batch")


if __name__ == "__main__":
    main()
