"""Whole models against PyTorch: LeNet-5 and ResNet-20, training steps, inference, memory, an epoch.

    .venv/bin/python benchmarks/bench_models.py [--threads 1,2] [--repeat N] [--only TEXT]
        [--quick] [--no-memory] [--no-epoch] [--epoch-rounds N] [--out FILE.md]

**Time.** Four cases, each at every thread count of ``--threads``:

* LeNet-5 training step, batch 64 (forward, cross-entropy, backward, SGD with momentum 0.9);
* LeNet-5 inference, batch 1000 (eval mode, no gradients kept);
* ResNet-20 (CIFAR layout, projection shortcuts: ``resnet_cifar(20, shortcut="B")``)
  training step, batch 128;
* ResNet-20 inference, batch 256.

Both libraries run in this one process with the same thread count (OpenBLAS and glassnet's
workers through ``glassnet.backend.set_num_threads``, PyTorch through ``torch.set_num_threads``)
and the freed memory kept for reuse for both (``keep_freed_memory``). They alternate in blocks
of repetitions, each block starting with an untimed warm-up call, so a change in the machine's
load hits both alike. Reported: the fastest repetition and the median, in ms; the ratio is
glassnet / PyTorch (below 1.0 glassnet is faster). The PyTorch twins get glassnet's weights
(state dicts copied) and, before any timing, the script asserts that the two agree: the logits
of one batch, and every parameter after one SGD step. The ResNet twin is written as
torchvision writes its BasicBlock (in-place ReLU).

**Peak memory of a training step** (``--no-memory`` skips it). Each library and model runs
in a fresh subprocess with the same thread count (glassnet's and PyTorch's side by side: resident
memory is per process, so they may overlap in time): it builds the model, optimiser and batch,
reads its resident memory (VmRSS in /proc/self/status), resets the high-water mark (writing
5 to /proc/self/clear_refs), runs three training steps and reads the high-water mark
(VmHWM). Reported: VmHWM − VmRSS before the steps, in MiB: the memory the steps add at
their peak (activations, gradients, optimiser state, temporaries), and the ratio.

**One LeNet-5 epoch on Fashion-MNIST** (all 60,000 training images, batch 64, SGD momentum
0.9; ``--no-epoch`` skips it, and it is skipped when the IDX files are absent):

* glassnet's ``fit``, as the ``glassnet train`` recipe runs it: its ``DataLoader`` (shuffled,
  normalised, prefetching), its progress bar (forced on, written to stderr), its run
  directory with history and checkpoints (every 100 steps and at the end; a temporary one);
  no validation set;
* the same steps in a plain loop over the same images already normalised and shuffled in
  memory, in glassnet and in PyTorch (``x[i:i + 64]``, forward, loss, backward, step).

Each runs ``--epoch-rounds`` times (default 1) at each thread count; the fastest is kept.
The share of the fit epoch spent outside forward/backward/update (loader, progress bar,
checkpoints, bookkeeping) is measured directly: the time from each step's forward call to
the end of its ``optimizer.step()`` is summed, and the share is 1 − that sum / the epoch;
the part of it spent waiting for the loader's next batch is timed too. As a cross-check,
1 − plain glassnet loop / fit epoch: it also counts what the loader's prefetch thread takes
from the training thread's cores, but compares two separate epochs. The issue wants it under 5 %.

The same script measures glassnet before and after the engine's rewrite to autograd: the
API adapter (``train_step``, ``no_grad``) is the one place that knows the difference.
"""

from __future__ import annotations

import argparse
import contextlib
import gc
import json
import os
import platform
import shlex
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any


def _parse(argv: list[str] | None = None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--threads", default="1,2", help="comma-separated thread counts (default 1,2)")
    p.add_argument("--repeat", type=int, default=None, help="timed repetitions per case and library (default per case)")
    p.add_argument("--only", default=None, help="run only the cases whose label contains this text (any case)")
    p.add_argument("--quick", action="store_true", help="few repetitions: a smoke run")
    p.add_argument("--no-memory", action="store_true", help="skip the peak-memory subprocesses")
    p.add_argument("--no-epoch", action="store_true", help="skip the Fashion-MNIST epoch")
    p.add_argument("--epoch-rounds", type=int, default=1, help="epochs per loop and thread count, best kept")
    p.add_argument("--out", default=None, help="also write the report (markdown) to this file")
    p.add_argument("--_memory", nargs=3, metavar=("CASE", "LIB", "THREADS"), help=argparse.SUPPRESS)
    args = p.parse_args(argv)
    args.thread_list = [int(t) for t in args.threads.split(",") if t.strip()]
    if not args.thread_list or min(args.thread_list) < 1:
        p.error(f"--threads: expected positive counts such as 1,2, got {args.threads!r}")
    return args


ARGS = _parse()
# OpenBLAS and OpenMP size their thread pools when loaded: allow the largest count asked for.
_MAX_THREADS = int(ARGS._memory[2]) if ARGS._memory else max(ARGS.thread_list)
for _var in ("OPENBLAS_NUM_THREADS", "OMP_NUM_THREADS", "MKL_NUM_THREADS"):
    os.environ[_var] = str(_MAX_THREADS)

import numpy as np  # noqa: E402

import glassnet  # noqa: E402
import glassnet.functional as F  # noqa: E402
from glassnet.backend import keep_freed_memory, set_num_threads  # noqa: E402
from glassnet.models import lenet5, resnet_cifar  # noqa: E402
from glassnet.optim import SGD  # noqa: E402

keep_freed_memory()  # as the glassnet command does; applies to PyTorch in this process too

LR, MOMENTUM = 0.01, 0.9

# ---------------------------------------------------------------------------------------------
# API adapter: the only code that knows which glassnet engine is installed.
# Before the rewrite, modules return NumPy arrays and backpropagation is explicit (the loss
# gradient is handed to model.backward). After it, glassnet is torch-like: glassnet.Tensor
# exists, F.cross_entropy returns a Tensor, loss.backward() fills the gradients, and
# inference runs under glassnet.no_grad().
AUTOGRAD = hasattr(glassnet, "Tensor")


def train_step(model: Any, opt: Any, x: Any, y: np.ndarray) -> None:
    """One glassnet training step: forward, cross-entropy, backward, SGD update."""
    if AUTOGRAD:
        loss = F.cross_entropy(model(x), y)
        opt.zero_grad()
        loss.backward()
    else:
        from glassnet.train.trainer import backward_loss  # skips the unused input gradient, as fit does

        _, ctx = F.cross_entropy_forward(model(x), y)
        model.zero_grad()
        backward_loss(model, F.cross_entropy_backward(np.float32(1.0), ctx)[0])
    opt.step()


def no_grad() -> Any:
    return glassnet.no_grad() if AUTOGRAD else glassnet.nn.no_grad()


def as_input(x: np.ndarray) -> Any:
    return glassnet.Tensor(x) if AUTOGRAD else x


def as_array(out: Any) -> np.ndarray:
    return np.asarray(out.numpy() if hasattr(out, "numpy") else out)


# ---------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class Case:
    key: str
    label: str
    model: str  # "lenet" or "resnet"
    batch: int
    train: bool
    repeat: int  # default timed repetitions per library
    quick: int


CASES = [
    Case("lenet-train", "LeNet-5 training step, batch 64 (SGD momentum)", "lenet", 64, True, 40, 8),
    Case("lenet-infer", "LeNet-5 inference, batch 1000", "lenet", 1000, False, 24, 4),
    Case("resnet-train", "ResNet-20 (CIFAR, projection shortcuts) training step, batch 128", "resnet", 128, True, 8, 2),
    Case("resnet-infer", "ResNet-20 inference, batch 256", "resnet", 256, False, 12, 2),
]
EPOCH_LABEL = "LeNet-5 epoch, Fashion-MNIST"


def _torch() -> Any:
    try:
        import torch
    except ImportError:
        sys.exit("bench_models.py compares against PyTorch: install it (./scripts/test.sh installs the CPU wheel)")
    return torch


def set_threads(n: int) -> None:
    set_num_threads(n)  # OpenBLAS (threadpoolctl) and glassnet's own workers
    if "torch" in sys.modules:
        sys.modules["torch"].set_num_threads(n)


def build_glassnet(model: str) -> Any:
    return lenet5(rng=0) if model == "lenet" else resnet_cifar(20, shortcut="B", rng=0)


def build_torch(model: str, weights: Any) -> Any:
    """The PyTorch twin of ``build_glassnet(model)`` (same module names), holding ``weights``."""
    torch = _torch()
    nn = torch.nn
    if model == "lenet":
        tm = nn.Sequential(
            nn.Conv2d(1, 6, 5, padding=2), nn.ReLU(), nn.MaxPool2d(2),
            nn.Conv2d(6, 16, 5), nn.ReLU(), nn.MaxPool2d(2), nn.Flatten(),
            nn.Linear(400, 120), nn.ReLU(), nn.Linear(120, 84), nn.ReLU(), nn.Linear(84, 10),
        )  # fmt: skip
    else:

        class BasicBlock(nn.Module):  # torchvision's, with projection shortcuts
            def __init__(self, inplanes: int, planes: int, stride: int) -> None:
                super().__init__()
                self.conv1 = nn.Conv2d(inplanes, planes, 3, stride, 1, bias=False)
                self.bn1 = nn.BatchNorm2d(planes)
                self.relu = nn.ReLU(inplace=True)
                self.conv2 = nn.Conv2d(planes, planes, 3, 1, 1, bias=False)
                self.bn2 = nn.BatchNorm2d(planes)
                self.downsample = None
                if stride != 1 or inplanes != planes:
                    self.downsample = nn.Sequential(nn.Conv2d(inplanes, planes, 1, stride, bias=False),
                                                    nn.BatchNorm2d(planes))  # fmt: skip

            def forward(self, x: Any) -> Any:
                out = self.bn2(self.conv2(self.relu(self.bn1(self.conv1(x)))))
                out += x if self.downsample is None else self.downsample(x)
                return self.relu(out)

        from collections import OrderedDict

        parts: OrderedDict[str, Any] = OrderedDict(
            conv1=nn.Conv2d(3, 16, 3, 1, 1, bias=False), bn1=nn.BatchNorm2d(16), relu=nn.ReLU(inplace=True)
        )
        inplanes = 16
        for i, planes in enumerate((16, 32, 64)):
            blocks = [BasicBlock(inplanes if b == 0 else planes, planes, 2 if i and b == 0 else 1) for b in range(3)]
            parts[f"layer{i + 1}"] = nn.Sequential(*blocks)
            inplanes = planes
        parts.update(avgpool=nn.AdaptiveAvgPool2d(1), flatten=nn.Flatten(), fc=nn.Linear(64, 10))
        tm = nn.Sequential(parts)
    state = {k: torch.from_numpy(np.array(as_array(v))) for k, v in weights.state_dict().items()}
    tm.load_state_dict(state, strict=True)
    return tm


def make_batch(case: Case) -> tuple[np.ndarray, np.ndarray]:
    rng = np.random.default_rng(1)
    shape = (case.batch, 1, 28, 28) if case.model == "lenet" else (case.batch, 3, 32, 32)
    return rng.standard_normal(shape, dtype=np.float32), rng.integers(0, 10, case.batch)


def make_runners(case: Case, libs: tuple[str, ...] = ("glassnet", "torch"), check: bool = True) -> dict[str, Any]:
    """Zero-argument callables running one repetition of ``case``, one per library in ``libs``.

    With ``check``, the two are first checked to agree (:func:`check_twins`; this runs one step of each).
    """
    x, y = make_batch(case)
    gm = build_glassnet(case.model)  # the torch twin copies its weights
    runners: dict[str, Any] = {}
    if "glassnet" in libs:
        gx = as_input(x)
        if case.train:
            gm.train()
            gopt = SGD(gm.parameters(), lr=LR, momentum=MOMENTUM)
            runners["glassnet"] = lambda: train_step(gm, gopt, gx, y)
        else:
            gm.eval()

            def ginfer() -> None:
                with no_grad():
                    gm(gx)

            runners["glassnet"] = ginfer
    if "torch" in libs:
        torch = _torch()
        tm = build_torch(case.model, gm)
        tx, ty = torch.from_numpy(x), torch.from_numpy(y)
        if case.train:
            tm.train()
            topt = torch.optim.SGD(tm.parameters(), lr=LR, momentum=MOMENTUM)

            def tstep() -> None:
                topt.zero_grad()
                torch.nn.functional.cross_entropy(tm(tx), ty).backward()
                topt.step()

            runners["torch"] = tstep
        else:
            tm.eval()

            def tinfer() -> None:
                with torch.no_grad():
                    tm(tx)

            runners["torch"] = tinfer
    if check:
        check_twins(case, gm, tm, gx, tx, runners)
    return runners


def _close(a: np.ndarray, b: np.ndarray, tol: float) -> float:
    """Largest difference relative to the larger of 1 and the reference's scale; fails above ``tol``."""
    err = float(np.max(np.abs(a - b))) / max(1.0, float(np.max(np.abs(b))))
    return err if err <= tol else float("inf")


def check_twins(case: Case, gm: Any, tm: Any, gx: Any, tx: Any, runners: dict[str, Any]) -> None:
    """Assert that glassnet and its PyTorch twin compute the same thing before timing them.

    The logits of the batch agree (train mode for training cases: batch statistics in the
    batch norms; this forward updates both models' running statistics alike), and for
    training cases every parameter agrees after one step of each library.
    """
    torch = _torch()
    ctx = contextlib.nullcontext() if case.train else no_grad()
    with ctx:
        g = as_array(gm(gx))
    with torch.set_grad_enabled(case.train):
        t = tm(tx).detach().numpy()
    err = _close(g, t, 1e-3)
    assert err < float("inf"), f"{case.label}: logits differ from PyTorch's: {np.max(np.abs(g - t)):.3g}"
    if case.train:
        runners["glassnet"]()
        runners["torch"]()
        tparams = dict(tm.named_parameters())
        for name, p in gm.named_parameters():
            a, b = as_array(getattr(p, "data", p)), tparams[name].detach().numpy()
            assert _close(a, b, 1e-4) < float("inf"), f"{case.label}: {name} after one step differs from PyTorch's"


def _run(fn: Any, n: int) -> list[float]:
    times = []
    for _ in range(n):
        t0 = time.perf_counter()
        fn()
        times.append(time.perf_counter() - t0)
    return times


def compare(runners: dict[str, Any], repeat: int, rounds: int = 4) -> dict[str, list[float]]:
    """Seconds per repetition for each library, in alternating blocks (see bench_ops.compare).

    ``rounds`` blocks per library, each an untimed warm-up call then ``repeat / rounds``
    timed ones; the library going first alternates from round to round.
    """
    rounds = max(1, min(rounds, repeat))
    per = -(-repeat // rounds)
    times: dict[str, list[float]] = {lib: [] for lib in runners}
    order = list(runners)
    for r in range(rounds):
        for lib in order if r % 2 == 0 else order[::-1]:
            runners[lib]()
            times[lib] += _run(runners[lib], per)
    return times


# ---------------------------------------------------------------------------------------------
# Peak memory: one fresh subprocess per (case, library, threads).

MEMORY_STEPS = 3


def _status_kib(field: str) -> int:
    with open("/proc/self/status") as fh:
        for line in fh:
            if line.startswith(field + ":"):
                return int(line.split()[1])
    raise KeyError(field)


def memory_child(case_key: str, lib: str, threads: int) -> None:
    """Runs in the subprocess: print the peak memory ``MEMORY_STEPS`` training steps add, as JSON."""
    case = next(c for c in CASES if c.key == case_key)
    if lib == "torch":
        _torch()  # the library loaded before the baseline, as is glassnet's Numba code below
    else:
        import glassnet.fast

        glassnet.fast.warm_up()  # imports Numba and loads its kernels (~110 MiB of LLVM and code)
    set_threads(threads)
    step = make_runners(case, libs=(lib,), check=False)[lib]  # no step may run before the baseline
    gc.collect()
    before = _status_kib("VmRSS")
    with open("/proc/self/clear_refs", "w") as fh:  # reset VmHWM to the current RSS
        fh.write("5")
    for _ in range(MEMORY_STEPS):
        step()
    peak = _status_kib("VmHWM")
    print(json.dumps({"before_kib": before, "peak_kib": peak, "growth_mib": (peak - before) / 1024}))


def measure_memory(case: Case, threads: int) -> dict[str, float | None]:
    """MiB a training step adds at its peak, per library, each from a fresh process (None where unreadable).

    The two processes run at the same time: resident memory is per process, and this halves the wait.
    """
    if not os.path.exists("/proc/self/clear_refs"):
        return {"glassnet": None, "torch": None}
    env = dict(os.environ, OPENBLAS_NUM_THREADS=str(threads), OMP_NUM_THREADS=str(threads))
    pipes = {"stdout": subprocess.PIPE, "stderr": subprocess.PIPE, "text": True, "env": env}
    script = os.path.abspath(__file__)
    procs = {
        lib: subprocess.Popen([sys.executable, script, "--_memory", case.key, lib, str(threads)], **pipes)
        for lib in ("glassnet", "torch")
    }
    growth: dict[str, float | None] = {}
    for lib, proc in procs.items():
        stdout, stderr = proc.communicate(timeout=600)
        if proc.returncode != 0:
            print(f"memory of {case.key}/{lib}/{threads} failed:\n{stderr[-2000:]}", file=sys.stderr)
            growth[lib] = None
        else:
            growth[lib] = float(json.loads(stdout.strip().splitlines()[-1])["growth_mib"])
    return growth


# ---------------------------------------------------------------------------------------------
# One LeNet-5 epoch on Fashion-MNIST.

EPOCH_BATCH = 64


class _TimedLoader:
    """Hands ``fit`` the batches of ``loader`` (everything else delegated), summing the time it waits for them."""

    def __init__(self, loader: Any) -> None:
        self.loader, self.wait = loader, 0.0

    def __len__(self) -> int:
        return len(self.loader)

    def __getattr__(self, name: str) -> Any:
        return getattr(self.loader, name)

    def __iter__(self) -> Any:
        it = iter(self.loader)
        try:
            while True:
                t0 = time.perf_counter()
                batch = next(it, None)
                self.wait += time.perf_counter() - t0
                if batch is None:
                    return
                yield batch
        finally:
            getattr(it, "close", lambda: None)()


def _timed_fit_epoch(ds: Any, mean: np.ndarray, std: np.ndarray) -> tuple[float, float, int, float, float]:
    """One epoch of ``fit``: (seconds, seconds inside forward→optimizer.step, steps, seconds waiting for
    batches, seconds drawing curves.png in the training thread)."""
    from glassnet.data import DataLoader
    from glassnet.train import fit

    model = build_glassnet("lenet")
    opt = SGD(model.parameters(), lr=LR, momentum=MOMENTUM)
    loader = _TimedLoader(DataLoader(ds, EPOCH_BATCH, shuffle=True, seed=0, normalize=(mean, std)))
    inside = {"t0": 0.0, "sum": 0.0, "steps": 0}
    forward, step = model.forward, opt.step

    def timed_forward(x: Any) -> Any:  # fit calls model(x), which calls this first
        inside["t0"] = time.perf_counter()
        return forward(x)

    def timed_step(*a: Any, **k: Any) -> Any:  # ... and ends the step with optimizer.step()
        out = step(*a, **k)
        inside["sum"] += time.perf_counter() - inside["t0"]
        inside["steps"] += 1
        return out

    model.forward, opt.step = timed_forward, timed_step
    import glassnet.train.history as history_module

    plot, plotting = getattr(history_module, "plot_curves", None), [0.0]

    def timed_plot(*a: Any, **k: Any) -> Any:  # drawing curves.png in the training thread
        t0 = time.perf_counter()
        try:
            return plot(*a, **k)
        finally:
            if threading.current_thread() is threading.main_thread():
                plotting[0] += time.perf_counter() - t0

    if plot is not None:
        history_module.plot_curves = timed_plot
    try:
        with tempfile.TemporaryDirectory(prefix="bench-models-") as run_dir:
            with contextlib.redirect_stdout(sys.stderr):  # fit's epoch summary line: keep stdout for the report
                t0 = time.perf_counter()
                fit(model, loader, epochs=1, optimizer=opt, run_dir=run_dir, checkpoint_every=100, progress=True,
                    handle_sigint=False)  # fmt: skip
                seconds = time.perf_counter() - t0
    finally:
        if plot is not None:
            history_module.plot_curves = plot
    return seconds, inside["sum"], inside["steps"], loader.wait, plotting[0]


def bench_epoch(threads: int, rounds: int, data: tuple[Any, ...]) -> dict[str, Any]:
    torch = _torch()
    ds, mean, std, xs, ys = data
    n = len(ys)
    fits: list[tuple[float, float, int, float, float]] = []
    plain: list[float] = []
    tplain: list[float] = []
    tx, ty = torch.from_numpy(xs), torch.from_numpy(ys)
    for _ in range(rounds):
        fits.append(_timed_fit_epoch(ds, mean, std))

        gm = build_glassnet("lenet")
        gopt = SGD(gm.parameters(), lr=LR, momentum=MOMENTUM)
        t0 = time.perf_counter()
        for i in range(0, n, EPOCH_BATCH):
            train_step(gm, gopt, as_input(xs[i : i + EPOCH_BATCH]), ys[i : i + EPOCH_BATCH])
        plain.append(time.perf_counter() - t0)

        tm = build_torch("lenet", build_glassnet("lenet"))
        topt = torch.optim.SGD(tm.parameters(), lr=LR, momentum=MOMENTUM)
        t0 = time.perf_counter()
        for i in range(0, n, EPOCH_BATCH):
            topt.zero_grad()
            torch.nn.functional.cross_entropy(tm(tx[i : i + EPOCH_BATCH]), ty[i : i + EPOCH_BATCH]).backward()
            topt.step()
        tplain.append(time.perf_counter() - t0)
    best_fit = min(fits)
    steps = -(-n // EPOCH_BATCH)
    return {
        "threads": threads,
        "fit": best_fit[0],
        "inside": best_fit[1],
        "direct_share": (1 - best_fit[1] / best_fit[0]) if best_fit[2] == steps else None,
        "loader_share": best_fit[3] / best_fit[0],
        "plot_share": best_fit[4] / best_fit[0],
        "plain": min(plain),
        "torch": min(tplain),
        "fits": [f[0] for f in fits],
    }


def load_epoch_data() -> tuple[Any, ...] | str:
    """Fashion-MNIST's training split for fit, and the same images normalised and shuffled (loader's
    epoch-0 order) as float32 in memory for the plain loops; a note saying why not when absent."""
    from glassnet.data import DataLoader, DatasetError, load_dataset

    try:
        ds = load_dataset("fashion-mnist", "train", download=False, progress=False)
    except (DatasetError, OSError) as e:
        return f"{EPOCH_LABEL}: skipped, the data is not here ({str(e).splitlines()[0].rstrip(':')})"
    mean, std = ds.mean_std()
    order = DataLoader(ds, EPOCH_BATCH, shuffle=True, seed=0).epoch_order(0)
    c = (1, -1, 1, 1)
    xs = (ds.images[order].astype(np.float32) / np.float32(255) - mean.reshape(c)) / std.reshape(c)
    return ds, mean, std, np.ascontiguousarray(xs, dtype=np.float32), ds.labels[order].astype(np.int64)


# ---------------------------------------------------------------------------------------------


def _ms(ts: list[float]) -> tuple[float, float]:
    return min(ts) * 1e3, statistics.median(ts) * 1e3


def _git_commit() -> str:
    try:
        out = subprocess.run(["git", "rev-parse", "--short", "HEAD"], capture_output=True, text=True, timeout=10,
                             cwd=Path(__file__).resolve().parent)  # fmt: skip
        return out.stdout.strip() or "?"
    except (OSError, subprocess.SubprocessError):
        return "?"


_T0 = time.perf_counter()


def _progress(msg: str) -> None:
    print(f"  [{time.perf_counter() - _T0:5.0f} s, load {_load()}] {msg}", file=sys.stderr, flush=True)


def _load() -> str:
    return ", ".join(f"{v:.2f}" for v in os.getloadavg())


def _blas_line() -> str:
    """Which OpenBLAS kernels NumPy runs, and whether the environment pinned them."""
    info = glassnet.backend.blas_info() if hasattr(glassnet.backend, "blas_info") else {}
    if not info:
        from threadpoolctl import threadpool_info

        blas = [i for i in threadpool_info() if i.get("user_api") == "blas"]
        info = (
            {
                "library": blas[0].get("internal_api"),
                "version": blas[0].get("version"),
                "architecture": blas[0].get("architecture"),
            }
            if blas
            else {}
        )
    pinned = os.environ.get("OPENBLAS_CORETYPE")
    how = f"pinned by OPENBLAS_CORETYPE={pinned}" if pinned else "chosen by OpenBLAS for this CPU"
    return f"{info.get('library')} {info.get('version')}, {info.get('architecture')} kernels ({how})"


def main() -> None:
    if ARGS._memory:
        memory_child(ARGS._memory[0], ARGS._memory[1], int(ARGS._memory[2]))
        return
    torch = _torch()
    only = ARGS.only.lower() if ARGS.only else None

    def wanted(label: str) -> bool:
        return only is None or only in label.lower()

    cases = [c for c in CASES if wanted(c.label)]
    load_start, t_start = _load(), time.perf_counter()
    cmd = " ".join(shlex.quote(a) for a in [os.path.relpath(sys.executable), *sys.argv])
    out: list[str] = []

    # Time.
    rows = []
    for case in cases:
        repeat = ARGS.repeat or (case.quick if ARGS.quick else case.repeat)
        for threads in ARGS.thread_list:
            set_threads(threads)
            runners = make_runners(case)
            times = compare(runners, repeat)
            rows.append((case, threads, times))
            g, t = _ms(times["glassnet"]), _ms(times["torch"])
            _progress(f"{case.label}, {threads} thr: glassnet {g[0]:.2f} ms, torch {t[0]:.2f} ms")
            del runners
            gc.collect()

    # Memory.
    mem = []
    if not ARGS.no_memory:
        for case in (c for c in cases if c.train):
            for threads in ARGS.thread_list:
                m = measure_memory(case, threads)
                mem.append((case, threads, m["glassnet"], m["torch"]))
                _progress(f"memory of {case.label}, {threads} thr: {m} MiB")

    # Epoch.
    epochs, epoch_note = [], None
    if not ARGS.no_epoch and wanted(EPOCH_LABEL):
        data = load_epoch_data()
        if isinstance(data, str):
            epoch_note = data
            print(data, file=sys.stderr)
        else:
            rounds = max(1, ARGS.epoch_rounds)
            for threads in ARGS.thread_list:
                set_threads(threads)
                epochs.append(bench_epoch(threads, rounds, data))
                e = epochs[-1]
                _progress(f"epoch, {threads} thr: fit {e['fit']:.2f} s, torch {e['torch']:.2f} s")
            del data
    load_end, wall = _load(), time.perf_counter() - t_start

    api = "autograd (glassnet.Tensor)" if AUTOGRAD else "explicit backward (model.backward)"
    out += [
        f"Command: `{cmd}`",
        "",
        f"glassnet {glassnet.__version__} (git {_git_commit()}, engine API: {api}), PyTorch {torch.__version__}, "
        f"NumPy {np.__version__}, Python {platform.python_version()}, {os.cpu_count()} CPUs. "
        f"Load average (1, 5, 15 min): {load_start} at the start, {load_end} at the end; {wall:.0f} s in all.",
        "",
        f"NumPy's BLAS: {_blas_line()}. PyTorch's convolutions: "
        f"{'oneDNN (mkldnn)' if torch.backends.mkldnn.is_available() else 'its own kernels'}.",
        "",
    ]
    if rows:
        out += [
            "Both libraries in one process, same thread count, alternating blocks; ms per call, best (median); "
            "ratio = glassnet / PyTorch.",
            "",
            "| case | threads | glassnet ms | PyTorch ms | ratio (best) | ratio (median) | reps |",
            "|---|---:|---:|---:|---:|---:|---:|",
        ]
        for case, threads, times in rows:
            g, t = _ms(times["glassnet"]), _ms(times["torch"])
            out.append(
                f"| {case.label} | {threads} | {g[0]:.2f} ({g[1]:.2f}) | {t[0]:.2f} ({t[1]:.2f}) "
                f"| {g[0] / t[0]:.2f}× | {g[1] / t[1]:.2f}× | {len(times['glassnet'])} |"
            )
        out.append("")
    if mem:
        out += [
            f"Peak memory a training step adds: fresh process per figure, VmHWM after {MEMORY_STEPS} steps "
            "− VmRSS before them (high-water mark reset via /proc/self/clear_refs), MiB. Each library is "
            "loaded before the baseline: PyTorch imported, glassnet's Numba imported and its kernels' "
            "code loaded (`glassnet.fast.warm_up()`, about 110 MiB once a process).",
            "",
            "| training step | threads | glassnet MiB | PyTorch MiB | ratio |",
            "|---|---:|---:|---:|---:|",
        ]
        for case, threads, g, t in mem:
            gs, ts = ("—" if v is None else f"{v:.0f}" for v in (g, t))
            ratio = f"{g / t:.2f}×" if g is not None and t else "—"
            out.append(f"| {case.label} | {threads} | {gs} | {ts} | {ratio} |")
        out.append("")
    if epochs:
        out += [
            f"{EPOCH_LABEL} (60,000 images, batch {EPOCH_BATCH}, SGD momentum): best of "
            f"{len(epochs[0]['fits'])} round(s), seconds. glassnet `fit` = its DataLoader, progress bar, history "
            "and checkpoints (every 100 steps and at the end), curves.png; plain loops = the same steps over the same "
            "images already normalised and shuffled in memory. Outside share = part of the fit epoch spent outside "
            "forward→optimizer.step (measured inside fit), of which waiting for the loader's next batch and drawing "
            "curves.png (the first drawing in a process includes importing matplotlib); cross-check = 1 − glassnet "
            "plain loop / fit (noisy: two separate epochs).",
            "",
            "| threads | glassnet fit s | glassnet plain loop s | PyTorch plain loop s | fit / PyTorch "
            "| outside share | loader wait | curves.png | cross-check |",
            "|---:|---:|---:|---:|---:|---:|---:|---:|---:|",
        ]
        for e in epochs:
            share = "—" if e["direct_share"] is None else f"{e['direct_share']:.1%}"
            cross = 1 - e["plain"] / e["fit"]
            out.append(
                f"| {e['threads']} | {e['fit']:.2f} | {e['plain']:.2f} | {e['torch']:.2f} "
                f"| {e['fit'] / e['torch']:.2f}× | {share} | {e['loader_share']:.1%} | {e['plot_share']:.1%} "
                f"| {cross:.1%} |"
            )
        out.append("")
    if epoch_note:
        out += [epoch_note, ""]
    text = "\n".join(out)
    print(text)
    if ARGS.out:
        Path(ARGS.out).write_text(text)


if __name__ == "__main__":
    main()
