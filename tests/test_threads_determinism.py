"""Results do not depend on the thread count: the same seed trains to bit-identical weights.

Each run is a fresh process (``set_num_threads`` at 1 and at 2 workers) that trains a model
for a few SGD steps, batch sizes odd and even (a 7-image last batch once gave weight
gradients 2.1e-9 apart), and prints the SHA-256 of its state dict. glassnet keeps NumPy's
BLAS single-threaded, cuts every kernel's work into pieces fixed by the problem and adds
partial sums in a fixed order (:func:`glassnet.backend.parallel`); a multi-threaded BLAS
would split products by its thread count and round differently.
"""

from __future__ import annotations

import contextlib
import os
import subprocess
import sys

import numpy as np
import pytest

import glassnet
import glassnet.functional as F
from glassnet import backend

SCRIPT = r"""
import hashlib, sys
import numpy as np
import glassnet, glassnet.functional as F
from glassnet.backend import set_num_threads
from glassnet.models import lenet5, resnet_cifar
from glassnet.optim import SGD
set_num_threads(int(sys.argv[2]))
glassnet.manual_seed(0)
model = lenet5() if sys.argv[1] == "lenet5" else resnet_cifar(8, shortcut="B")
shape = (1, 28, 28) if sys.argv[1] == "lenet5" else (3, 32, 32)
opt = SGD(model.parameters(), lr=0.05, momentum=0.9)
rng = np.random.default_rng(1)
for n in (64, 7, 128, 7):
    x = rng.standard_normal((n, *shape)).astype(np.float32)
    y = rng.integers(0, 10, n)
    loss = F.cross_entropy(model(x), y)
    opt.zero_grad()
    loss.backward()
    opt.step()
h = hashlib.sha256()
for k, v in sorted(model.state_dict().items()):
    h.update(k.encode() + np.ascontiguousarray(v).tobytes())
print(h.hexdigest())
"""


def _train(model: str, threads: int) -> str:
    env = {**os.environ, "OPENBLAS_NUM_THREADS": "2", "OMP_NUM_THREADS": "2"}  # BLAS could use two
    done = subprocess.run(
        [sys.executable, "-c", SCRIPT, model, str(threads)], env=env, capture_output=True, text=True, timeout=600
    )
    assert done.returncode == 0, done.stderr
    return done.stdout.strip()


@pytest.mark.parametrize("model", ["lenet5", "resnet8"])
def test_training_gives_bit_identical_weights_on_1_and_2_threads(model: str) -> None:
    one, two = _train(model, 1), _train(model, 2)
    assert len(one) == 64
    assert one == two, f"{model}: weights differ between 1 and 2 threads"


@pytest.mark.parametrize(
    ("op", "args", "kwargs"),
    [
        ("conv2d", [(7, 6, 14, 14), (16, 6, 5, 5), (16,)], {}),  # 'hwn', small: one part
        ("conv2d", [(64, 16, 32, 32), (16, 16, 3, 3), None], {"padding": 1, "algorithm": "shift"}),  # in blocks
        ("conv2d", [(64, 64, 8, 8), (64, 64, 3, 3), None], {"padding": 1, "algorithm": "hwn"}),  # in chunks
        ("conv2d", [(64, 16, 32, 32), (16, 16, 3, 3), (16,)], {"padding": 1}),  # 'winograd', 22 image blocks
        ("conv2d", [(61, 64, 8, 8), (64, 64, 3, 3), None], {"padding": 1}),  # 'winograd', 6 blocks, one short
        ("conv2d", [(64, 16, 32, 32), (32, 16, 3, 3), None], {"padding": 1, "stride": 2}),  # 'gather'
        ("conv2d", [(64, 1, 28, 28), (6, 1, 5, 5), (6,)], {"padding": 2}),  # LeNet-5's first: 'gather', 8 pieces
        ("conv2d", [(61, 6, 14, 14), (16, 6, 5, 5), (16,)], {}),  # its second: 'gather', the last piece short
        ("linear", [(64, 400), (120, 400), (120,)], {}),
        ("batch_norm", [(64, 16, 32, 32), (16,), (16,), (16,), (16,)], {}),
        ("batch_norm_relu", [(64, 16, 32, 32), (16,), (16,), (16,), (16,)], {}),
        ("batch_norm_relu", [(64, 16, 32, 32), (16,), (16,), (16,), (16,), True, 0.1, 1e-5, (64, 16, 32, 32)], {}),
        ("conv2d_bn_relu", [(64, 16, 32, 32), (16, 16, 3, 3), None, (16,), (16,), (16,), (16,)], {"padding": 1}),
    ],
)
def test_each_kernel_is_bit_identical_on_1_2_and_3_workers(
    monkeypatch: pytest.MonkeyPatch, op: str, args: list, kwargs: dict
) -> None:
    """In one process: the same op, forward and backward, with 1, 2 and 3 workers."""
    rng = np.random.default_rng(0)
    arrays = [a if not isinstance(a, tuple) else rng.standard_normal(a).astype(np.float32) for a in args]
    if op.startswith("batch_norm"):
        arrays[2] = np.abs(arrays[2]) + 0.5  # a variance
    if op == "conv2d_bn_relu":
        arrays[4] = np.abs(arrays[4]) + 0.5
    results = []
    monkeypatch.setattr(backend, "_workers", backend.num_workers())  # restored afterwards
    for workers in (1, 2, 3):
        backend.set_num_threads(workers)
        fn = getattr(F, op)
        copies = [a.copy() if isinstance(a, np.ndarray) else a for a in arrays]  # batch norm updates running stats
        # conv2d_bn_relu under no_grad: the folded Winograd path (its backward recomputes the two ops)
        with glassnet.no_grad() if op == "conv2d_bn_relu" else contextlib.nullcontext():
            out, ctx = fn.forward(*copies, **kwargs)
        assert ctx.backend == "fast" or op == "linear"
        assert ctx.get("folded", op == "conv2d_bn_relu") == (op == "conv2d_bn_relu")
        if op == "conv2d":
            assert ctx.path == kwargs.get("algorithm", ctx.path)
        ctx["needs_input_grad"] = (True,) * len(arrays)
        grads = fn.backward(np.random.default_rng(1).standard_normal(out.shape).astype(np.float32), ctx)
        results.append([out, *(g for g in grads if g is not None), *(c for c in copies if isinstance(c, np.ndarray))])
    for other in results[1:]:
        for a, b in zip(results[0], other, strict=True):
            assert a.tobytes() == b.tobytes(), op
