"""Time glassnet's convolution, max pooling and a LeNet-5 training step against PyTorch.

    .venv/bin/python benchmarks/bench_ops.py [--threads 2] [--repeat 7] [--markdown FILE]

Both libraries run in the same process with the same number of threads (PyTorch's
intra-op threads, OpenBLAS threads for NumPy), their repetitions run after a
warm-up, in alternating blocks. The table gives the fastest repetition and the median; the ratio is
glassnet / PyTorch (below 1.0 means glassnet is faster). On a small VM the medians
of small operations swing by milliseconds for both libraries (waking a second thread);
the best-of-N figure is the stable one. Without torch only glassnet's times print.
The two libraries alternate in blocks of repetitions (see ``compare``).
"""

from __future__ import annotations

import argparse
import os
import statistics
import sys
import time


def _parse() -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--threads", type=int, default=2)
    p.add_argument("--repeat", type=int, default=7)
    p.add_argument("--markdown", default=None, help="also write the table to this file")
    p.add_argument("--only", default=None, help="run only the cases whose label contains this text")
    return p.parse_args()


ARGS = _parse()
for var in ("OPENBLAS_NUM_THREADS", "OMP_NUM_THREADS", "MKL_NUM_THREADS"):
    os.environ[var] = str(ARGS.threads)

import numpy as np  # noqa: E402

import glassnet.functional as F  # noqa: E402
from glassnet.backend import keep_freed_memory  # noqa: E402

keep_freed_memory()  # as the glassnet command does; applies to PyTorch in this process too
from glassnet.models import lenet5  # noqa: E402
from glassnet.optim import SGD  # noqa: E402

try:
    import torch

    torch.set_num_threads(ARGS.threads)
except ImportError:
    torch = None


def _run(fn, n: int) -> list[float]:
    times = []
    for _ in range(n):
        t0 = time.perf_counter()
        fn()
        times.append(time.perf_counter() - t0)
    return times


def compare(ours, theirs, repeat: int = ARGS.repeat, rounds: int = 3) -> tuple[list[float], list[float] | None]:
    """Times of ``ours`` and ``theirs`` (seconds, one per repetition).

    The two alternate in ``rounds`` blocks of repetitions, so that a change in machine
    load affects both alike, while each block runs one library alone: both thread pools
    spin for a while after a call, and alternating call by call would make each library
    run while the other's threads still hold the cores.
    """
    per = max(repeat // rounds, 1)
    a: list[float] = []
    b: list[float] = []
    for _ in range(rounds):
        ours()
        a += _run(ours, per)
        if theirs is not None:
            theirs()
            b += _run(theirs, per)
    return a, (b if theirs is not None else None)


def conv_cases():
    # (label, N, C, H, F, k, stride, padding)
    return [
        ("conv N64 C1 28² F6 k5 p2", 64, 1, 28, 6, 5, 1, 2),
        ("conv N64 C6 14² F16 k5", 64, 6, 14, 16, 5, 1, 0),
        ("conv N128 C64 32² F64 k3 p1", 128, 64, 32, 64, 3, 1, 1),
        ("conv N32 C3 227² F96 k11 s4", 32, 3, 227, 96, 11, 4, 0),
    ]


def bench_conv(label, n, c, h, f, k, s, p, rng):
    x = rng.standard_normal((n, c, h, h), dtype=np.float32)
    w = (rng.standard_normal((f, c, k, k), dtype=np.float32) * 0.1).astype(np.float32)
    b = np.zeros(f, np.float32)
    out, ctx = F.conv2d_forward(x, w, b, stride=s, padding=p)
    g = np.ones_like(out)

    def ours_fwd():
        F.conv2d_forward(x, w, b, stride=s, padding=p)

    def ours_fb():
        o, c_ = F.conv2d_forward(x, w, b, stride=s, padding=p)
        F.conv2d_backward(g, c_)

    t_fwd = t_fb = None
    if torch is not None:
        tx = torch.tensor(x, requires_grad=True)
        tw = torch.tensor(w, requires_grad=True)
        tb = torch.tensor(b, requires_grad=True)
        tg = torch.tensor(g)

        def t_fwd():
            with torch.no_grad():
                torch.nn.functional.conv2d(tx, tw, tb, stride=s, padding=p)

        def t_fb():
            o = torch.nn.functional.conv2d(tx, tw, tb, stride=s, padding=p)
            o.backward(tg)

    return [(f"{label} forward", *compare(ours_fwd, t_fwd)), (f"{label} fwd+bwd", *compare(ours_fb, t_fb))]


def bench_pool(rng):
    x = rng.standard_normal((128, 64, 32, 32), dtype=np.float32)
    out, _ = F.max_pool2d_forward(x, 2)
    g = np.ones_like(out)

    def ours_fwd():
        F.max_pool2d_forward(x, 2)

    def ours_fb():
        _, c_ = F.max_pool2d_forward(x, 2)
        F.max_pool2d_backward(g, c_)

    t_fwd = t_fb = None
    if torch is not None:
        tx = torch.tensor(x, requires_grad=True)
        tg = torch.tensor(g)

        def t_fwd():
            with torch.no_grad():
                torch.nn.functional.max_pool2d(tx, 2)

        def t_fb():
            torch.nn.functional.max_pool2d(tx, 2).backward(tg)

    return [("max-pool 2×2 (128,64,32,32) forward", *compare(ours_fwd, t_fwd)),
            ("max-pool 2×2 (128,64,32,32) fwd+bwd", *compare(ours_fb, t_fb))]  # fmt: skip


def bench_lenet(rng):
    x = rng.random((64, 1, 28, 28), dtype=np.float32)
    y = rng.integers(0, 10, 64)
    model = lenet5(rng=0)
    opt = SGD(model.parameters(), lr=0.01, momentum=0.9)

    def step():
        logits = model(x)
        _, ctx = F.cross_entropy_forward(logits, y)
        model.zero_grad()
        model.backward(F.cross_entropy_backward(np.float32(1.0), ctx)[0], input_grad=False)
        opt.step()

    tstep = None
    if torch is not None:
        tm = torch.nn.Sequential(
            torch.nn.Conv2d(1, 6, 5, padding=2), torch.nn.ReLU(), torch.nn.MaxPool2d(2),
            torch.nn.Conv2d(6, 16, 5), torch.nn.ReLU(), torch.nn.MaxPool2d(2), torch.nn.Flatten(),
            torch.nn.Linear(400, 120), torch.nn.ReLU(), torch.nn.Linear(120, 84), torch.nn.ReLU(),
            torch.nn.Linear(84, 10),
        )  # fmt: skip
        topt = torch.optim.SGD(tm.parameters(), lr=0.01, momentum=0.9)
        tx, ty = torch.tensor(x), torch.tensor(y)

        def tstep():
            topt.zero_grad()
            torch.nn.functional.cross_entropy(tm(tx), ty).backward()
            topt.step()

    return [("LeNet-5 training step, batch 64", *compare(step, tstep, max(ARGS.repeat, 15)))]


def main() -> None:
    rng = np.random.default_rng(0)
    rows = []

    def wanted(label: str) -> bool:
        return ARGS.only is None or ARGS.only in label

    for case in conv_cases():
        if wanted(case[0]):
            rows += bench_conv(*case, rng)
    if wanted("max-pool 2×2 (128,64,32,32)"):
        rows += bench_pool(rng)
    if wanted("LeNet-5 training step"):
        rows += bench_lenet(rng)
    version = torch.__version__ if torch else "(not installed)"
    head = (
        f"glassnet vs PyTorch {version}, {ARGS.threads} threads, {ARGS.repeat} repetitions in alternating blocks; "
        "best = fastest repetition, median in brackets; ratio = glassnet / PyTorch"
    )
    header = "| case | glassnet ms | PyTorch ms | ratio (best) | ratio (median) |"
    lines = [head, "", header, "|---|---:|---:|---:|---:|"]
    for name, ours, theirs in rows:
        o_best, o_med = min(ours) * 1e3, statistics.median(ours) * 1e3
        g = f"{o_best:.2f} ({o_med:.2f})"
        if theirs:
            t_best, t_med = min(theirs) * 1e3, statistics.median(theirs) * 1e3
            t, r1, r2 = f"{t_best:.2f} ({t_med:.2f})", f"{o_best / t_best:.2f}×", f"{o_med / t_med:.2f}×"
        else:
            t = r1 = r2 = "—"
        lines.append(f"| {name} | {g} | {t} | {r1} | {r2} |")
    text = "\n".join(lines)
    print(text)
    if ARGS.markdown:
        with open(ARGS.markdown, "w") as fh:
            fh.write(text + "\n")


if __name__ == "__main__":
    sys.exit(main())
