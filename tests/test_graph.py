"""A real forward pass's graph, printed and stepped backward node by node.

The stepper runs the very loop of ``loss.backward()`` (:func:`backward_steps`), so after
its last step every gradient equals ``loss.backward()``'s bit for bit; these tests check
that on a model with a shared module, a residual add and a concatenation, and check
what each step reports and what the printed graph shows.
"""

from __future__ import annotations

import os
from typing import Any

import numpy as np
import pytest

import glassnet
import glassnet.functional as F
from glassnet import nn
from glassnet.autograd.graph import BackwardStepper, Graph, function_location, show
from glassnet.autograd.tensor import backward_steps, topological_order


class Net(nn.Module):
    """conv → the same conv block twice with a residual add → concat with a side branch → dense."""

    def __init__(self) -> None:
        super().__init__()
        self.stem = nn.Conv2d(1, 3, 3, padding=1, rng=0)
        self.block = nn.Sequential(nn.Conv2d(3, 3, 3, padding=1, rng=1), nn.ReLU())
        self.side = nn.Conv2d(3, 2, 1, rng=2)
        self.pool = nn.MaxPool2d(2)
        self.head = nn.Linear(5 * 3 * 3, 4, rng=3)

    def forward(self, x: Any) -> Any:
        h = F.relu(self.stem(x))
        h = self.block(self.block(h)) + h
        y = self.pool(glassnet.cat([h, self.side(h)], axis=1))
        return self.head(y.flatten(1))


def _loss(model: nn.Module, x: Any) -> Any:
    return F.cross_entropy(model(x), np.array([0, 3, 1]))


def _pair() -> tuple[Net, Net, np.ndarray]:
    a, b = Net().to(np.float64), Net().to(np.float64)
    b.load_state_dict(a.state_dict())
    return a, b, np.random.default_rng(0).standard_normal((3, 1, 6, 6))


def test_stepper_gradients_equal_backward_exactly() -> None:
    a, b, x = _pair()
    xa, xb = glassnet.Tensor(x, requires_grad=True), glassnet.Tensor(x, requires_grad=True)
    _loss(a, xa).backward()
    stepper = BackwardStepper(_loss(b, xb), model=b)
    steps = 0
    while stepper.step() is not None:
        steps += 1
    assert stepper.done and stepper.step() is None
    assert steps == len(stepper.graph) == len(stepper.history)
    for (name, pa), (_, pb) in zip(a.named_parameters(), b.named_parameters(), strict=True):
        assert np.array_equal(pa.grad, pb.grad), name
    assert np.array_equal(xa.grad, xb.grad)


def test_stepper_runs_in_backward_order_and_reports_each_step() -> None:
    _, model, x = _pair()
    loss = _loss(model, x)
    order = topological_order(loss.grad_fn)
    stepper = BackwardStepper(loss, model=model)
    assert [n.node for n in stepper.graph.nodes] == order
    first = stepper.step()
    assert first.node.op == "cross_entropy" and first.node.index == 0
    assert first.grad_output.shape == () and float(first.grad_output) == 1.0
    assert list(first.grad_inputs) == ["logits"] and first.grad_inputs["logits"].shape == (3, 4)
    head = stepper.step()
    assert head.node.where() == "linear in head (Linear)"
    assert set(head.grad_inputs) == {"x", "weight", "bias"}
    assert np.array_equal(head.grad_output, first.grad_inputs["logits"])
    rest = stepper.run()
    assert rest[-1].node.op == "conv2d" and rest[-1].node.module == "stem"
    assert set(rest[-1].grad_inputs) == {"weight", "bias"}  # the input needs no gradient
    assert np.array_equal(head.grad_inputs["weight"], model.head.weight.grad)  # the head is used once
    shared = [s for s in stepper.history if s.node.module == "block.0"]
    assert len(shared) == 2  # one node per use of the shared conv; their weight gradients add up
    assert np.allclose(sum(s.grad_inputs["weight"] for s in shared), model.block[0].weight.grad, rtol=1e-12)
    text = str(head)
    assert text.startswith("#1 linear in head (Linear): ∂L/∂out 3×4 → x 3×45, weight 4×45, bias 4")
    assert "glassnet.functional.linear.linear_backward (glassnet/functional/linear.py:" in text


def test_stepper_keeps_retain_graph_and_hooks() -> None:
    _, model, x = _pair()
    seen: list[tuple[int, ...]] = []
    logits = model(x)
    logits.retain_grad()
    logits.register_hook(lambda g: seen.append(g.shape))
    loss = F.cross_entropy(logits, np.array([0, 3, 1]))
    BackwardStepper(loss, retain_graph=True).run()
    first = {n: p.grad.copy() for n, p in model.named_parameters()}
    assert seen == [(3, 4)] and logits.grad.shape == (3, 4)
    loss.backward()  # the contexts were kept: a second pass works and doubles the gradients
    for n, p in model.named_parameters():
        assert np.allclose(p.grad, 2 * first[n]), n


def test_stepper_errors() -> None:
    with pytest.raises(RuntimeError, match="does not require grad"):
        BackwardStepper(glassnet.Tensor(np.ones(3)).sum())
    with pytest.raises(RuntimeError, match="one-element output"):
        BackwardStepper(Net()(np.zeros((2, 1, 6, 6), dtype=np.float32)))
    _, model, x = _pair()
    loss = _loss(model, x)
    loss.backward()
    with pytest.raises(RuntimeError, match="a second time"):
        BackwardStepper(loss).run()


def test_backward_steps_is_what_backward_runs() -> None:
    a, b, x = _pair()
    _loss(a, x).backward()
    for step in backward_steps(_loss(b, x)):
        assert step.node.ctx is None  # freed as it ran
        assert len(step.grad_inputs) >= 1
    for pa, pb in zip(a.parameters(), b.parameters(), strict=True):
        assert np.array_equal(pa.grad, pb.grad)


def test_show_prints_ops_saved_tensors_and_backward(capsys: pytest.CaptureFixture[str]) -> None:
    _, model, x = _pair()
    loss = _loss(model, x)
    graph = show(loss, model)
    out = capsys.readouterr().out
    assert isinstance(graph, Graph) and out.strip() == str(graph)
    lines = out.splitlines()
    assert lines[0] == f"graph of {len(graph)} ops, from the output (scalar) back to the leaves"
    assert lines[1] == "#0 cross_entropy → scalar"
    assert "    inputs:   logits=#1 3×4" in lines
    assert any(line.startswith("    saved:    logp [3, 4] float64") for line in lines)
    assert any(line.startswith("#1 linear in head (Linear) → 3×4") for line in lines)
    assert "    inputs:   x=#2 3×45, weight=head.weight 4×45, bias=head.bias 4" in lines
    assert sum(line.startswith("#") and "conv2d in block.0 (Conv2d)" in line for line in lines) == 2
    assert "#4 concatenate in Net → 3×5×6×6" in lines  # an op the model applies itself
    ran = "fast.conv" if glassnet.get_backend() == "fast" else "functional.conv"  # the code that ran is shown
    assert any(line.startswith(f"    backward: glassnet.{ran}.conv2d_backward (glassnet/{ran.replace('.', '/')}.py:")
               for line in lines)  # fmt: skip
    loss.backward()
    assert "(freed: backward has run through this node)" in str(graph)
    assert "logp" not in str(graph)


def test_show_lists_what_each_step_of_a_fused_op_saved(capsys: pytest.CaptureFixture[str]) -> None:
    """batch_norm_relu's reference keeps batch norm's and ReLU's contexts: shown as bn.… and relu.…"""
    bn = nn.BatchNorm2d(3)
    x = glassnet.Tensor(np.random.default_rng(0).standard_normal((2, 3, 4, 4)), requires_grad=True)
    with glassnet.use_backend("reference"):
        show(bn.forward_relu(x, residual=x).sum(), bn)
    out = capsys.readouterr().out
    assert "batch_norm_relu" in out and "bn.xhat [2, 3, 4, 4] float64" in out and "relu.mask [2, 3, 4, 4] bool" in out
    assert "has_residual=True" in out and "{'" not in out


def test_graph_of_a_leaf_and_without_a_model() -> None:
    t = glassnet.Tensor(np.ones(2), requires_grad=True)
    assert len(Graph.from_tensor(t)) == 0
    y = (t * 3).sum()
    g = Graph.from_tensor(y)
    assert [n.op for n in g] == ["sum", "mul"]
    assert g[1].inputs[0].source == "leaf" and g[1].module == "" and g[1].where() == "mul"


def test_function_location_is_openable() -> None:
    text = function_location(F.conv2d.reference_backward)
    path, line = text.rsplit("(", 1)[1].rstrip(")").rsplit(":", 1)
    root = os.path.dirname(os.path.dirname(os.path.abspath(glassnet.__file__)))
    with open(os.path.join(root, path), encoding="utf-8") as f:
        source = f.read().splitlines()
    assert source[int(line) - 1].startswith("def conv2d_backward(")
