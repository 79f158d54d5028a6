"""Data-parallel training on MPI (glassnet.distributed): throughput, allreduce cost, and the scaling they imply.

Three measurements, and a calculation from them:

* ``throughput``: LeNet-5 on Fashion-MNIST, training throughput (images/s of the epoch's training
  loop, the second of two epochs) of ``fit`` in five set-ups, each a fresh process (or job), each
  repeated ``--repeat`` times: one process with 1 and with 2 BLAS threads (batch 64); ``mpiexec -n 1``
  (batch 64: the cost of the distributed code path alone); ``mpiexec -n 2``, one thread per rank, batch
  32 per rank (global 64: the same training as one process with batch 64) and batch 64 per rank
  (global 128, the Horovod way: the batch per process stays);
* ``allreduce`` (run under ``mpiexec -n 2``): the time of one in-place ``MPI_Allreduce`` (sum) of a
  float32 buffer, for buffers of 0.25 to 64 MB: the seconds per megabyte on this machine;
* ``step``: the compute time of one training step (forward, backward, SGD) on one BLAS thread:
  ResNet-20 (CIFAR, 3×32×32, batch 128) and ResNet-18 (ImageNet, 3×224×224, batch 32);
* ``project``: from those, the expected scaling of ResNet-20 and ResNet-18 at 8 and 64 ranks on an
  assumed cluster network (ring allreduce; see ``NETWORKS``).

``all`` runs the four and writes ``benchmarks/results/distributed.json`` and ``distributed.md``::

    python benchmarks/bench_distributed.py all            # about 10 minutes on 2 cores

The machine is shared: the load average before and after every measurement is recorded with it.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import statistics
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import numpy as np

HERE = Path(__file__).resolve().parent
RESULTS = HERE / "results"
SCRIPT = Path(__file__).resolve()

#: Assumed cluster networks for the projection: (name, bandwidth in GB/s per link, latency in s per message).
NETWORKS = [
    ("10 GbE", 1.1e9, 30e-6),
    ("100 Gb/s InfiniBand", 11.0e9, 2e-6),
]
RANKS = (8, 64)
STEP_MODELS = {  # name -> (builder, input shape, batch per rank, classes)
    "ResNet-20": ("resnet20", (3, 32, 32), 128, 10),
    "ResNet-18": ("resnet18", (3, 224, 224), 32, 1000),
}


def _load() -> str:
    return " / ".join(f"{v:.2f}" for v in os.getloadavg())


def _env(threads: int) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.endswith("_NUM_THREADS")}
    return {**env, "OPENBLAS_NUM_THREADS": str(threads), "OMP_NUM_THREADS": str(threads),
            "OMPI_ALLOW_RUN_AS_ROOT": "1", "OMPI_ALLOW_RUN_AS_ROOT_CONFIRM": "1"}  # fmt: skip


# ---------------------------------------------------------------------------------------- throughput


def worker(images: int, batch_size: int, threads: int, distributed: bool) -> None:
    """One training run (2 epochs on ``images`` Fashion-MNIST images); rank 0 prints one JSON line."""
    from glassnet.backend import keep_freed_memory, set_num_threads
    from glassnet.data import DataLoader, load_dataset
    from glassnet.models import lenet5
    from glassnet.optim import SGD
    from glassnet.train import fit

    keep_freed_memory()
    set_num_threads(threads)
    ds = load_dataset("fashion-mnist", "train")
    train = DataLoader(ds.subset(range(images)), batch_size, shuffle=True, seed=0, normalize=ds.mean_std())
    model = lenet5(rng=0)
    opt = SGD(model.parameters(), lr=0.05, momentum=0.9, nesterov=True)
    hist = fit(model, train, None, epochs=2, optimizer=opt, progress=False, distributed=distributed)
    from glassnet.distributed import is_root

    if is_root():
        seconds = hist.epochs[-1]["seconds"]
        print(json.dumps({"seconds": seconds, "images_per_s": images / seconds,
                          "train_acc": hist.epochs[-1]["train_acc"]}))  # fmt: skip


SETUPS = [  # name, processes (0: no mpiexec), BLAS threads per process, batch per process
    ("1 process, 1 thread", 0, 1, 64),
    ("1 process, 2 threads", 0, 2, 64),
    ("mpiexec -n 1, 1 thread", 1, 1, 64),
    ("mpiexec -n 2, 1 thread each, batch 32 each (global 64)", 2, 1, 32),
    ("mpiexec -n 2, 1 thread each, batch 64 each (global 128)", 2, 1, 64),
]


def throughput(images: int, repeat: int) -> list[dict[str, Any]]:
    from glassnet.distributed import mpiexec_command

    rows = []
    for name, procs, threads, batch in SETUPS:
        runs = []
        for _ in range(repeat):
            cmd = [sys.executable, str(SCRIPT), "worker", "--images", str(images), "--batch-size", str(batch),
                   "--threads", str(threads)]  # fmt: skip
            if procs:
                cmd = mpiexec_command(procs, [*cmd, "--distributed"])
            before = _load()
            done = subprocess.run(cmd, env=_env(threads), capture_output=True, text=True, timeout=1800)
            if done.returncode != 0:
                raise SystemExit(f"{name}: failed\n{done.stdout}\n{done.stderr}")
            result = json.loads(done.stdout.strip().splitlines()[-1])
            runs.append({**result, "load_before": before, "load_after": _load()})
            print(f"{name}: {result['images_per_s']:.0f} images/s (load {before} -> {_load()})", flush=True)
        speeds = [r["images_per_s"] for r in runs]
        rows.append({"setup": name, "processes": max(procs, 1), "threads": threads, "batch": batch,
                     "median": statistics.median(speeds), "best": max(speeds), "runs": runs})  # fmt: skip
    return rows


# ---------------------------------------------------------------------------------------- allreduce


def allreduce_worker(sizes_mb: list[float]) -> None:
    """Under mpiexec: the median time of an in-place float32 Allreduce per buffer size; rank 0 prints JSON."""
    from mpi4py import MPI

    comm = MPI.COMM_WORLD
    out = []
    for mb in sizes_mb:
        buf = np.ones(int(mb * 2**20 / 4), dtype=np.float32)
        repeat = 50 if mb <= 4 else 20
        times = []
        for i in range(repeat + 3):
            comm.Barrier()
            t = time.perf_counter()
            comm.Allreduce(MPI.IN_PLACE, buf, op=MPI.SUM)
            dt = comm.allreduce(time.perf_counter() - t, op=MPI.MAX)
            if i >= 3:
                times.append(dt)
        out.append({"mb": mb, "median_s": statistics.median(times), "best_s": min(times)})
    if comm.rank == 0:
        print(json.dumps({"ranks": comm.size, "sizes": out}))


def allreduce(ranks: int = 2) -> dict[str, Any]:
    from glassnet.distributed import mpiexec_command

    sizes = [0.25, 1.09, 4, 16, 46.76, 64]  # 1.09 MB: ResNet-20's gradients, 46.76 MB: ResNet-18's
    before = _load()
    cmd = mpiexec_command(ranks, [sys.executable, str(SCRIPT), "allreduce-worker", *map(str, sizes)])
    done = subprocess.run(cmd, env=_env(1), capture_output=True, text=True, timeout=1800)
    if done.returncode != 0:
        raise SystemExit(f"allreduce: failed\n{done.stdout}\n{done.stderr}")
    result = json.loads(done.stdout.strip().splitlines()[-1])
    big = [s for s in result["sizes"] if s["mb"] >= 16]
    result["s_per_mb"] = statistics.median(s["median_s"] / s["mb"] for s in big)
    result["load_before"], result["load_after"] = before, _load()
    for s in result["sizes"]:
        print(f"allreduce {s['mb']:>6} MB: {s['median_s'] * 1e3:8.3f} ms median", flush=True)
    return result


# ---------------------------------------------------------------------------------------- step


def step_times(repeat: int = 3) -> dict[str, Any]:
    import glassnet.functional as F
    from glassnet.backend import keep_freed_memory, set_num_threads
    from glassnet.models import get_model
    from glassnet.optim import SGD

    keep_freed_memory()
    set_num_threads(1)
    out = {}
    for name, (builder, shape, batch, classes) in STEP_MODELS.items():
        before = _load()
        model = get_model(builder, rng=0, num_classes=classes)
        opt = SGD(model.parameters(), lr=0.01, momentum=0.9)
        x = np.random.default_rng(0).standard_normal((batch, *shape)).astype(np.float32)
        y = np.arange(batch) % classes
        times = []
        for _ in range(repeat + 1):
            t = time.perf_counter()
            model.zero_grad()
            F.cross_entropy(model(x), y).backward()
            opt.step()
            times.append(time.perf_counter() - t)
        params = model.num_parameters()
        out[name] = {"batch": batch, "input": list(shape), "parameters": params, "gradient_mb": params * 4 / 1e6,
                     "step_s": min(times[1:]), "median_s": statistics.median(times[1:]),
                     "load_before": before, "load_after": _load()}  # fmt: skip
        print(f"{name}: {min(times[1:]):.2f} s per step, batch {batch}, {params:,} parameters", flush=True)
    return out


# ---------------------------------------------------------------------------------------- projection


def ring_allreduce_s(nbytes: float, ranks: int, bandwidth: float, latency: float) -> float:
    """A ring allreduce: 2(p-1) messages, each rank sending and receiving 2(p-1)/p of the buffer."""
    return 2 * (ranks - 1) * latency + 2 * (ranks - 1) / ranks * nbytes / bandwidth


def project(steps: dict[str, Any], measured: dict[str, Any]) -> list[dict[str, Any]]:
    """Per step, compute then the gradients' allreduce (glassnet does not overlap them): efficiency
    E = compute / (compute + allreduce), speed-up p·E (the batch per rank fixed)."""
    rows = []
    for name, s in steps.items():
        nbytes = s["parameters"] * 4
        # this machine: the measured 2-rank time at the nearest buffer size, per MB; 2 ranks move the buffer
        # once in a ring (2(p-1)/p = 1), so the bandwidth it implies is MB / time (latency in the time)
        near = min(measured["sizes"], key=lambda m: abs(m["mb"] - nbytes / 2**20))
        here_bw = near["mb"] * 2**20 / near["median_s"]
        networks = [*NETWORKS, ("this machine's shared memory, as measured", here_bw, 0.0)]
        for net, bw, lat in networks:
            for p in RANKS:
                comm = ring_allreduce_s(nbytes, p, bw, lat)
                eff = s["step_s"] / (s["step_s"] + comm)
                # the compute per step at which the same allreduce would leave 90 % efficiency
                rows.append({"model": name, "network": net, "ranks": p, "allreduce_s": comm, "step_s": s["step_s"],
                             "efficiency": eff, "speedup": p * eff, "compute_for_90pct_s": 9 * comm})  # fmt: skip
    return rows


# ---------------------------------------------------------------------------------------- report


def report(res: dict[str, Any]) -> str:
    lines = ["# Distributed training (glassnet.distributed): measured and projected", ""]
    lines += [f"Machine: {res['machine']}. Command: `python benchmarks/bench_distributed.py all`.", ""]
    base = res["throughput"][0]["median"]
    lines += ["## Throughput: LeNet-5 on Fashion-MNIST, training loop of `fit`", "",
              f"{res['images']:,} training images per epoch, the second of two epochs, median (best) of "
              f"{res['repeat']} runs, each a fresh process or job.", "",
              "| set-up | images/s median | best | vs 1 process, 1 thread | load average before → after |",
              "|---|---:|---:|---:|---|"]  # fmt: skip
    for r in res["throughput"]:
        loads = ", ".join(f"{x['load_before'].split(' / ')[0]}→{x['load_after'].split(' / ')[0]}" for x in r["runs"])
        lines.append(f"| {r['setup']} | {r['median']:.0f} | {r['best']:.0f} | {r['median'] / base:.2f}× | {loads} |")
    a = res["allreduce"]
    lines += ["", f"## Allreduce, {a['ranks']} ranks on this machine (Open MPI, shared memory), float32, in place", "",
              "| buffer MB | median ms | best ms | ms per MB |", "|---:|---:|---:|---:|"]  # fmt: skip
    for s in a["sizes"]:
        lines.append(f"| {s['mb']} | {s['median_s'] * 1e3:.3f} | {s['best_s'] * 1e3:.3f} | "
                     f"{s['median_s'] * 1e3 / s['mb']:.3f} |")  # fmt: skip
    lines += ["", f"Seconds per MB (median over buffers ≥ 16 MB): **{a['s_per_mb'] * 1e3:.3f} ms/MB** "
              f"(load {a['load_before']} → {a['load_after']}).", ""]  # fmt: skip
    lines += ["## Compute per step, one BLAS thread", "",
              "| model | parameters | gradient MB | batch | input | s/step |",
              "|---|---:|---:|---:|---|---:|"]  # fmt: skip
    for name, s in res["steps"].items():
        lines.append(f"| {name} | {s['parameters']:,} | {s['gradient_mb']:.2f} | {s['batch']} | "
                     f"{'×'.join(map(str, s['input']))} | {s['step_s']:.2f} |")  # fmt: skip
    lines += ["", "## Projected scaling (ring allreduce, no overlap with the backward pass)", "",
              "| model | network | ranks | allreduce ms | compute s | efficiency | speed-up | compute for 90 % |",
              "|---|---|---:|---:|---:|---:|---:|---:|"]  # fmt: skip
    for r in res["projection"]:
        lines.append(f"| {r['model']} | {r['network']} | {r['ranks']} | {r['allreduce_s'] * 1e3:.2f} | "
                     f"{r['step_s']:.2f} | {r['efficiency']:.2%} | {r['speedup']:.1f}× | "
                     f"{r['compute_for_90pct_s'] * 1e3:.0f} ms |")  # fmt: skip
    return "\n".join(lines) + "\n"


def main(argv: list[str] | None = None) -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    sub = ap.add_subparsers(dest="what", required=True)
    w = sub.add_parser("worker")
    w.add_argument("--images", type=int, required=True)
    w.add_argument("--batch-size", type=int, required=True)
    w.add_argument("--threads", type=int, required=True)
    w.add_argument("--distributed", action="store_true")
    aw = sub.add_parser("allreduce-worker")
    aw.add_argument("sizes", type=float, nargs="+")
    for name in ("throughput", "allreduce", "step", "all"):
        p = sub.add_parser(name)
        p.add_argument("--images", type=int, default=12_800)
        p.add_argument("--repeat", type=int, default=3)
    args = ap.parse_args(argv)
    if args.what == "worker":
        return worker(args.images, args.batch_size, args.threads, args.distributed)
    if args.what == "allreduce-worker":
        return allreduce_worker(args.sizes)
    if args.what == "throughput":
        print(json.dumps(throughput(args.images, args.repeat), indent=1))
    elif args.what == "allreduce":
        print(json.dumps(allreduce(), indent=1))
    elif args.what == "step":
        print(json.dumps(step_times(), indent=1))
    else:
        import numpy

        res: dict[str, Any] = {"images": args.images, "repeat": args.repeat,
                               "machine": f"{os.cpu_count()} CPUs, {platform.processor() or platform.machine()}, "
                                          f"Python {platform.python_version()}, NumPy {numpy.__version__}"}  # fmt: skip
        res["allreduce"] = allreduce()
        res["steps"] = step_times()
        res["throughput"] = throughput(args.images, args.repeat)
        res["projection"] = project(res["steps"], res["allreduce"])
        RESULTS.mkdir(exist_ok=True)
        (RESULTS / "distributed.json").write_text(json.dumps(res, indent=1))
        (RESULTS / "distributed.md").write_text(report(res))
        print(report(res))


if __name__ == "__main__":
    main()
