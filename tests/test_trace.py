"""``glassnet.trace``: the shape-only graph of a model's own forward.

Checked against real forward passes (every zoo model and branchy custom models: the
same module calls with the same output shapes, the same ops), against an independent
count of parameters and multiply-accumulates, and against brute-force receptive fields
(including where unit (0, 0)'s field starts, through padding, residual joins,
concatenation and strided slicing). Tracing must leave the model exactly as it was and
must not compute anything.
"""

from __future__ import annotations

import threading
import time
from collections import Counter
from typing import Any

import numpy as np
import pytest

import glassnet
import glassnet.functional as F
from glassnet import nn
from glassnet.autograd.graph import Graph, ReceptiveField
from glassnet.models import MODELS, default_input_shape, get_model, lenet5, resnet20, vgg16
from glassnet.nn.init import skip_init


def _esc(s: str) -> str:
    import re

    return re.escape(s)


def _real_calls(model: nn.Module, x: np.ndarray) -> tuple[list[tuple[str, tuple[int, ...]]], Graph, Any]:
    """Module calls (name, output shape) of a real forward pass, and the graph it recorded."""
    names: dict[int, str] = {}
    for name, m in model.named_modules():
        names.setdefault(id(m), name)
    calls: list[tuple[str, tuple[int, ...]]] = []
    handles = [
        m.register_forward_hook(lambda mod, a, out: calls.append((names[id(mod)], tuple(out.shape))))
        for m in {id(m): m for _, m in model.named_modules()}.values()
    ]
    try:
        xt = glassnet.Tensor(x, requires_grad=True)
        out = model(xt)
    finally:
        for h in handles:
            h.remove()
    return calls, Graph.from_tensor(out, model), out


def _macs_of_real_pass(model: nn.Module, x: np.ndarray) -> int:
    """Multiply-accumulates counted from a real forward's layer outputs: conv out·(C_in/g·kh·kw), dense out·in."""
    total = 0

    def hook(m: nn.Module, args: Any, out: Any) -> None:
        nonlocal total
        if isinstance(m, nn.Conv2d):
            total += out.size * int(np.prod(m.weight.shape[1:]))
        elif isinstance(m, nn.Linear):
            total += out.size * m.in_features

    handles = [m.register_forward_hook(hook) for m in model.modules() if isinstance(m, nn.Conv2d | nn.Linear)]
    try:
        with glassnet.no_grad():
            model(x)
    finally:
        for h in handles:
            h.remove()
    return total


def _same_as_real_forward(model: nn.Module, shape: tuple[int, ...]) -> Graph:
    """Trace at ``shape`` (with batch) and compare with a real forward pass at the same shape."""
    graph = glassnet.trace(model, shape, batched=True)
    x = np.random.default_rng(0).standard_normal(shape).astype(np.float32)
    calls, recorded, out = _real_calls(model, x)
    assert [(c.name, c.output_shape) for c in graph.calls] == calls
    assert graph.output_shape == out.shape
    assert graph.input_shape == shape
    traced_ops = Counter((n.op, n.module, n.output_shape) for n in graph.nodes)
    real_ops = Counter((n.op, n.module, n.output_shape) for n in recorded.nodes)
    assert traced_ops == real_ops
    assert graph.total_macs == _macs_of_real_pass(model, x)
    return graph


# ------------------------------------------------------------------------------------ the zoo


REAL_SHAPES = {"alexnet": (3, 99, 131), "vgg11": (3, 32, 32), "vgg11_bn": (3, 32, 32), "vgg16": (3, 32, 32),
               "vgg16_bn": (3, 32, 32), "resnet18": (3, 32, 32), "resnet34": (3, 32, 32)}  # fmt: skip


@pytest.mark.parametrize("name", sorted(MODELS))
def test_zoo_trace_equals_a_real_forward(name: str) -> None:
    """Every zoo model: traced calls, ops, shapes and MACs equal a real forward's (at a size a CPU runs quickly)."""
    with skip_init():
        model = get_model(name, rng=0).eval()
    shape = REAL_SHAPES.get(name, default_input_shape(name))
    _same_as_real_forward(model, (2, *shape))


@pytest.mark.parametrize("name", sorted(MODELS))
def test_zoo_trace_at_the_designed_input(name: str) -> None:
    with skip_init():
        model = get_model(name, rng=0)
    graph = glassnet.trace(model, default_input_shape(name))
    assert graph.input_shape == (1, *default_input_shape(name))
    assert graph.output_shape == (
        1,
        1000 if name.startswith(("alexnet", "vgg", "resnet18", "resnet34", "googlenet", "efficientnet")) else 10,
    )
    used = {p for n in graph.nodes for p in n.params}
    assert used == {k for k, _ in model.named_parameters()}  # every parameter feeds some op
    assert glassnet.summary(model, default_input_shape(name)).total_params == model.num_parameters()
    assert graph.output_rf is not None and graph.output_rf.whole


def test_known_totals() -> None:
    """VGG-16's 15.47 GMACs, AlexNet's 1.14 G and ResNet-20's 40.8 M, per 224²/227²/32² image."""
    with skip_init():
        assert glassnet.trace(vgg16(), (3, 224, 224)).total_macs == 15_470_264_320
    assert glassnet.trace(resnet20(rng=0), (3, 32, 32)).total_macs == 40_813_184


def test_trace_is_fast_on_big_models() -> None:
    with skip_init():
        model = vgg16()
    start = time.perf_counter()
    graph = glassnet.trace(model, (3, 224, 224))
    assert time.perf_counter() - start < 2.0  # shapes only: no 15 GMAC forward (measured ≈ 0.015 s)
    assert len(graph) == 40 and graph.nodes[0].rf == ReceptiveField((3, 3), (1, 1), (-1, -1))


# --------------------------------------------------------------------------- branchy custom models


class Branchy(nn.Module):
    """A shared conv used twice, a residual add, channel concatenation, slicing, arithmetic
    between activations, a Tensor reduction and reshape, then a dense head."""

    def __init__(self) -> None:
        super().__init__()
        self.stem = nn.Conv2d(2, 4, 3, padding=1, rng=0)
        self.shared = nn.Conv2d(4, 4, 3, padding=1, rng=1)
        self.act = nn.ReLU()
        self.side = nn.Conv2d(4, 2, 1, rng=2)
        self.head = nn.Linear(6 * 4 * 4, 5, rng=3)

    def forward(self, x: Any) -> Any:
        h = self.act(self.stem(x))
        a = self.act(self.shared(h))
        b = self.shared(a) + h  # the same conv again, and a residual add
        gate = b * F.sigmoid(b.mean(axis=(2, 3), keepdims=True))
        y = glassnet.cat([gate, self.side(gate)], axis=1)[:, :, ::2, ::2]
        return self.head(y.reshape(y.shape[0], -1))


def test_branchy_trace_equals_a_real_forward() -> None:
    model = Branchy()
    graph = _same_as_real_forward(model, (3, 2, 8, 8))
    assert [c.name for c in graph.calls].count("shared") == 2
    shared = [n for n in graph.nodes if n.module == "shared"]
    assert len(shared) == 2 and all(n.params == ["shared.weight", "shared.bias"] for n in shared)
    ops = [n.op for n in graph.nodes if n.module == ""]
    assert ops == ["add", "mean", "sigmoid", "mul", "concatenate", "getitem", "reshape"]
    s = glassnet.summary(model, (2, 8, 8))
    assert s.total_params == model.num_parameters()  # the shared conv's parameters are counted once
    names = [r.name for r in s.rows]
    assert names.count("shared") == 2 and "(add)" in names and "(concat)" in names and "(mul)" in names
    assert {r.kind for r in s.rows if r.name.startswith("(")} >= {"Add", "Concat", "Mul", "Mean", "Slice"}


def test_trace_records_execution_order() -> None:
    """The shortcut runs before the body here: the nodes are numbered in the order they ran."""

    class ShortcutFirst(nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.body = nn.Conv2d(1, 1, 3, padding=1)
            self.short = nn.Conv2d(1, 1, 1)

        def forward(self, x: Any) -> Any:
            s = self.short(x)
            b = self.body(x)
            return b + s

    graph = glassnet.trace(ShortcutFirst(), (1, 5, 5))
    assert [(n.op, n.module) for n in graph.nodes] == [("conv2d", "short"), ("conv2d", "body"), ("add", "")]
    assert [n.index for n in graph.nodes] == [0, 1, 2]
    assert [e.source for e in graph.nodes[2].inputs] == ["#1", "#0"]


def test_trace_of_a_function_and_of_batches() -> None:
    def mlp(x: Any) -> Any:
        return F.relu(x) * 2

    assert glassnet.trace(mlp, (7,)).output_shape == (1, 7)
    model = lenet5(rng=0)
    assert glassnet.trace(model, (1, 28, 28)).input_shape == (1, 1, 28, 28)
    assert glassnet.trace(model, (8, 1, 28, 28)).output_shape == (8, 10)
    assert glassnet.trace(nn.Linear(5, 3), (2, 4, 5), batched=True).output_shape == (2, 4, 3)
    assert glassnet.trace(nn.Linear(5, 3), (4, 5), batched=False).output_shape == (1, 4, 3)
    assert model.output_shape((8, 1, 28, 28)) == (8, 10)


def test_trace_of_a_loss() -> None:
    """Loss ops trace too (their meta gives a scalar); the loss sees the whole input."""

    class WithLoss(nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.net = lenet5(rng=0)

        def forward(self, x: Any) -> Any:
            return F.cross_entropy(self.net(x), np.zeros(x.shape[0], dtype=np.int64))

    graph = glassnet.trace(WithLoss(), (4, 1, 28, 28))
    assert graph.output_shape == () and graph.nodes[-1].op == "cross_entropy" and graph.output_rf.whole


# ---------------------------------------------------------------------------------- receptive fields


def _positive(model: nn.Module) -> nn.Module:
    model.to(np.float64)
    rng = np.random.default_rng(0)
    for name, p in model.named_parameters():
        p.data = rng.uniform(0.5, 1.0, p.shape) if name.endswith("weight") else np.zeros(p.shape)
    return model


def _box(model: nn.Module, hw: tuple[int, int], channel: int, unit: tuple[int, int]) -> tuple[int, int, int, int, int]:
    """Brute force: (top, left, bottom, right, count) of the input pixels whose change moves the unit."""
    h, w = hw
    base = np.random.default_rng(1).uniform(0.5, 1.0, (1, 1, h, w))
    batch = np.repeat(base, h * w + 1, axis=0)
    idx = np.arange(h * w)
    batch[idx + 1, 0, idx // w, idx % w] += 1e6
    with glassnet.no_grad():
        out = model(batch).numpy()[:, channel, unit[0], unit[1]]
    changed = (np.abs(out[1:] - out[0]) > 1e-6 * (1 + abs(out[0]))).reshape(h, w)
    rows, cols = np.nonzero(changed)
    return int(rows.min()), int(cols.min()), int(rows.max()) + 1, int(cols.max()) + 1, int(changed.sum())


def test_receptive_field_through_padding_residual_and_concat() -> None:
    """conv 3 p1 → residual (conv 3 s2 p1, conv 3 p1 | conv 1 s2) → concat (conv 1 | conv 3 p1):
    unit (y, x) of the 3×3 branch sees rows −6 + 2y … −6 + 2y + 12 (13 = the union of the residual's
    paths, 9, grown by the last 3×3 at jump 2)."""
    model = _positive(
        nn.Sequential(
            nn.Conv2d(1, 2, 3, padding=1),
            nn.Residual(
                nn.Sequential(nn.Conv2d(2, 2, 3, stride=2, padding=1), nn.ReLU(), nn.Conv2d(2, 2, 3, padding=1)),
                shortcut=nn.Conv2d(2, 2, 1, stride=2),
            ),
            nn.Concat(nn.Conv2d(2, 1, 1), nn.Conv2d(2, 1, 3, padding=1)),
        )
    )
    graph = glassnet.trace(model, (1, 24, 24))
    rf = graph.output_rf
    assert rf == ReceptiveField((13, 13), (2, 2), (-6, -6))
    add = next(n for n in graph.nodes if n.op == "add")
    assert add.rf == ReceptiveField((9, 9), (2, 2), (-4, -4))
    for y, x in ((4, 4), (5, 7)):
        top, left = rf.start[0] + y * rf.jump[0], rf.start[1] + x * rf.jump[1]
        assert _box(model, (24, 24), 1, (y, x)) == (top, left, top + 13, left + 13, 13 * 13)
    assert glassnet.receptive_field(model, (1, 24, 24)) == ((13, 13), (2, 2))


def test_receptive_field_of_strided_slicing() -> None:
    """x[:, :, 1::2, 1::3] after a 3×3 conv: kernel 1, stride (2, 3), starting one unit in."""

    class Sliced(nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.conv = nn.Conv2d(1, 1, 3)
            self.after = nn.Conv2d(1, 1, 2)

        def forward(self, x: Any) -> Any:
            return self.after(self.conv(x)[:, :, 1::2, 1::3])

    model = _positive(Sliced())
    rf = glassnet.trace(model, (1, 20, 20)).output_rf
    assert rf == ReceptiveField((5, 6), (2, 3), (1, 1))
    top, left = 1 + 2 * 2, 1 + 3 * 1
    assert _box(model, (20, 20), 0, (2, 1)) == (top, left, top + 5, left + 6, 5 * 6)


# ------------------------------------------------------------------------------- the model untouched


def test_trace_leaves_the_model_untouched() -> None:
    model = nn.Sequential(
        nn.Conv2d(1, 3, 3, rng=0), nn.BatchNorm2d(3), nn.ReLU(), nn.Flatten(), nn.Dropout(0.5, rng=1), nn.Linear(75, 2)
    )
    seen: list[Any] = []
    model[0].register_forward_hook(lambda m, a, out: seen.append(out.shape))
    before = {k: v.copy() for k, v in model.state_dict().items()}
    rng_state = model[4].rng.bit_generator.state
    weights = [id(p.data) for p in model.parameters()]
    hooks = [(len(m._forward_hooks), len(m._forward_pre_hooks)) for m in model.modules()]
    graph = glassnet.trace(model, (1, 7, 7))
    assert graph.output_shape == (1, 2)
    assert all(np.array_equal(before[k], v) for k, v in model.state_dict().items())
    assert int(model[1].num_batches_tracked) == 0
    assert model[4].rng.bit_generator.state == rng_state
    assert [id(p.data) for p in model.parameters()] == weights and all(p.grad is None for p in model.parameters())
    assert [(len(m._forward_hooks), len(m._forward_pre_hooks)) for m in model.modules()] == hooks
    assert all(m.training for m in model.modules())
    assert seen == [(1, 3, 5, 5)]  # the user's own hook ran on the traced call


def test_trace_ignores_the_model_running_in_another_thread() -> None:
    """The trace's hooks only see calls from the tracing thread (the explorer may run a model meanwhile)."""

    class Busy(nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.conv = nn.Conv2d(1, 2, 3)

        def forward(self, x: Any) -> Any:
            other = threading.Thread(target=lambda: self.conv(np.zeros((1, 1, 5, 5), dtype=np.float32)))
            other.start()
            other.join()
            return self.conv(x)

    graph = glassnet.trace(Busy(), (1, 7, 7))
    assert [(c.name, c.output_shape) for c in graph.calls] == [("conv", (1, 2, 5, 5)), ("", (1, 2, 5, 5))]
    assert len(graph) == 1


def test_trace_computes_nothing() -> None:
    """Every traced tensor holds a MetaArray: a shape and a dtype, no data."""
    graph = glassnet.trace(lenet5(rng=0), (1, 28, 28))
    for n in graph.nodes:
        assert type(n.node.out().data).__name__ == "MetaArray" if n.node.out() is not None else True
        assert set(n.node.ctx) == {"options", "meta"}
    assert glassnet.trace(lenet5(rng=0).to(np.float64), (1, 28, 28)).nodes[0].node.ctx["meta"].dtype == np.float64


# ------------------------------------------------------------------------------------------ errors


@pytest.mark.parametrize(
    "builder, shape, message",
    [
        (lenet5, (3, 28, 28), "layer '0' (Conv2d): Conv2d(1→6) expected 1 input channels, got 3"),
        (lenet5, (1, 8, 8), "layer '3' (Conv2d): conv2d: kernel 5×5 is larger than the padded input 4×4"),
        (lenet5, (1, 32, 32), "layer '7' (Linear): Linear(400→120) expected input [N, 400], got shape (1, 576)"),
        (vgg16, (3, 16, 16), "layer 'features.30' (MaxPool2d): max_pool2d: window 2×2 is larger than the padded"),
        (resnet20, (3, 32), "layer 'conv1' (Conv2d): Conv2d(3→16) expected a 4-D input"),
    ],
)
def test_errors_name_the_layer(builder: Any, shape: tuple[int, ...], message: str) -> None:
    with skip_init():
        model = builder()
    with pytest.raises(ValueError, match=_esc(message)):
        glassnet.trace(model, shape)


def test_residual_mismatch_is_named() -> None:
    model = nn.Sequential(nn.Residual(nn.Conv2d(2, 4, 3, padding=1)))
    with pytest.raises(ValueError, match=_esc("layer '0' (Residual): Residual: body output (1, 4, 5, 5)")):
        glassnet.trace(model, (2, 5, 5))


# ------------------------------------------------------------------------------------------ printing


def test_printed_trace() -> None:
    text = str(glassnet.trace(lenet5(rng=0), (1, 28, 28)))
    lines = text.splitlines()
    assert lines[0] == "trace: input 1×1×28×28 → output 1×10, 12 ops"
    conv = next(line for line in lines if line.lstrip().startswith("0 "))
    for cell in ("conv2d", "0 (Conv2d)", "input", "1×6×28×28", "0.weight, 0.bias", "117,600", "5×5"):
        assert cell in conv
    assert lines[-1] == "multiply-accumulates: 416,520"
    assert "all" in next(line for line in lines if "flatten" in line)
