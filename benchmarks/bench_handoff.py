"""How parts of an op reach glassnet's worker threads: polling workers against a ThreadPoolExecutor.

``glassnet.backend.parallel`` hands parts of an op to worker threads. By default they are
polling workers (``glassnet/fast/_handoff.py``); ``glassnet.backend.SPIN_HANDOFF = False``
gives the ``ThreadPoolExecutor`` used before. Neither changes what is computed, only when a
worker starts. This script times whole models (bench_models.py's cases and their PyTorch twins)
in one process, in alternating blocks, under five settings:

* glassnet on 2 threads with polling workers, and with the ThreadPoolExecutor;
* glassnet on 1 thread (no workers: the same for both);
* PyTorch on 2 threads and on 1.

It prints best and median milliseconds, glassnet / PyTorch on 2 threads, and the 1 → 2 thread
scaling of each. Run: ``.venv/bin/python benchmarks/bench_handoff.py [--rounds 8] [--reps 3]``.
"""

from __future__ import annotations

import argparse
import statistics
import sys
import time
from pathlib import Path
from typing import Any


def _parse() -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--rounds", type=int, default=8, help="blocks per setting (default 8)")
    p.add_argument("--reps", type=int, default=3, help="timed calls per block; LeNet-5 cases take 10× (default 3)")
    p.add_argument("--only", default=None, help="run only the cases whose label contains this text")
    args = p.parse_args()
    if args.rounds < 1 or args.reps < 1:
        p.error(f"--rounds and --reps must be at least 1, got {args.rounds} and {args.reps}")
    return args


ARGS = _parse()
sys.path.insert(0, str(Path(__file__).resolve().parent))
sys.argv = [sys.argv[0], "--threads", "1,2"]  # bench_models reads its options at import: both thread counts
import bench_models as bm  # noqa: E402

from glassnet import backend  # noqa: E402

SETTINGS = (  # name, library, threads, polling workers
    ("glassnet 2 thr, polling", "glassnet", 2, True),
    ("glassnet 2 thr, ThreadPoolExecutor", "glassnet", 2, False),
    ("glassnet 1 thr", "glassnet", 1, True),
    ("PyTorch 2 thr", "torch", 2, None),
    ("PyTorch 1 thr", "torch", 1, None),
)


def measure(case: Any) -> dict[str, list[float]]:
    runners = bm.make_runners(case)
    reps = ARGS.reps * (10 if case.model == "lenet" else 1)
    times: dict[str, list[float]] = {name: [] for name, *_ in SETTINGS}
    for r in range(ARGS.rounds):
        for name, lib, threads, spin in SETTINGS if r % 2 == 0 else SETTINGS[::-1]:
            bm.set_threads(threads)
            if spin is not None:
                backend.SPIN_HANDOFF = spin
            runners[lib]()  # untimed: the pool is made or swapped here
            for _ in range(reps):
                t0 = time.perf_counter()
                runners[lib]()
                times[name].append(time.perf_counter() - t0)
    backend.SPIN_HANDOFF = True
    return times


def main() -> None:
    print(f"glassnet git {bm._git_commit()}; {ARGS.rounds} blocks per setting, alternating; ms per call, best (median)")
    print()
    print("| case | setting | ms | vs PyTorch 2 thr | 1 → 2 thread scaling |")
    print("|---|---|---:|---:|---:|")
    for case in bm.CASES:
        if ARGS.only and ARGS.only.lower() not in case.label.lower():
            continue
        times = measure(case)
        best = {k: min(v) * 1e3 for k, v in times.items()}
        med = {k: statistics.median(v) * 1e3 for k, v in times.items()}
        for name, lib, threads, _ in SETTINGS:
            ratio = scaling = ""
            if lib == "glassnet" and threads == 2:
                t2 = "PyTorch 2 thr"
                ratio = f"{best[name] / best[t2]:.2f}× ({med[name] / med[t2]:.2f}×)"
                one = "glassnet 1 thr"
                scaling = f"{best[one] / best[name]:.2f}× ({med[one] / med[name]:.2f}×)"
            elif name == "PyTorch 2 thr":
                one = "PyTorch 1 thr"
                scaling = f"{best[one] / best[name]:.2f}× ({med[one] / med[name]:.2f}×)"
            print(f"| {case.label} | {name} | {best[name]:.2f} ({med[name]:.2f}) | {ratio} | {scaling} |", flush=True)


if __name__ == "__main__":
    main()
