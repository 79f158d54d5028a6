"""Time a typical augmentation pipeline on one MNIST-sized batch.

Pipeline: RandomHorizontalFlip + RandomCrop(28, padding=2) + RandomRotation(10°)
on a float32 batch of 64×1×28×28. Prints the median ms/batch over many runs
and, in the same run, one LeNet-5 training step (forward, backward, SGD update) on a
batch of the same size, with the ratio: the target is augmentation < 20 % of a step.

Run: ``uv run --inexact python benchmarks/bench_augment.py [--batch 64] [--repeats 200]``
"""

from __future__ import annotations

import argparse
import statistics
import time

import numpy as np

from glassnet.backend import keep_freed_memory  # noqa: E402
from glassnet.data import transforms as T

keep_freed_memory()  # as the glassnet command does; applies to PyTorch in this process too


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
    results: dict[str, float] = {}
    for name, t in parts.items():
        for _ in range(10):  # warm-up
            t(x, rng)
        times = []
        for _ in range(args.repeats):
            start = time.perf_counter()
            t(x, rng)
            times.append(time.perf_counter() - start)
        print(f"  {name:<14} {statistics.median(times) * 1e3:7.3f} ms/batch")
        results[name] = statistics.median(times)
    step = _lenet_step_seconds(args.batch, args.repeats)
    print(f"  LeNet-5 step   {step * 1e3:7.3f} ms/batch (forward + backward + SGD, same batch size)")
    print(f"  augmentation / step = {results['compose'] / step:.1%} (target < 20%)")


def _lenet_step_seconds(batch: int, repeats: int) -> float:
    """Median time of one LeNet-5 training step on a random batch."""
    import glassnet.functional as F
    from glassnet.models import lenet5
    from glassnet.optim import SGD

    rng = np.random.default_rng(1)
    x = rng.random((batch, 1, 28, 28), dtype=np.float32)
    y = rng.integers(0, 10, batch)
    model = lenet5(rng=0)
    opt = SGD(model.parameters(), lr=0.01, momentum=0.9)
    times = []
    for i in range(repeats + 10):
        start = time.perf_counter()
        _, ctx = F.cross_entropy_forward(model(x), y)
        model.zero_grad()
        model.backward(F.cross_entropy_backward(np.float32(1.0), ctx)[0], input_grad=False)
        opt.step()
        if i >= 10:
            times.append(time.perf_counter() - start)
    return statistics.median(times)


if __name__ == "__main__":
    main()
