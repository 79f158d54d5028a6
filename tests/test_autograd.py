"""Autograd (issue 8, sections 1 and 2): Tensors and forward-only modules against PyTorch.

Every check is written the way micrograd's tests are: the same computation, line by line,
once with glassnet and once with torch, then the outputs and every gradient compared in
float64 (1e-10 for Tensor expressions, 1e-8 for whole models). The expressions are also
differentiated by central finite differences (:func:`glassnet.gradcheck`), so a result is
right twice over, not merely equal to torch.

* Tensor expressions: the cases of ``fixtures/make_autograd_golden.py`` (torch's results
  stored in ``fixtures/autograd_golden.safetensors``, so they run without torch), and
  hypothesis matrices for broadcasting, matmul, reductions, indexing, shapes and joining;
* the Tensor API: attributes, accumulation, ``zero_grad``, ``no_grad``/``enable_grad``,
  ``retain_graph``, hooks, ``retain_grad``, ``Parameter``;
* forward-only custom models against torch twins with the same weights: shared modules,
  branches, residual adds, channel concatenation, slicing, arithmetic between activations,
  batch norm, dropout; a ReLU instance applied twice (the issue's regression);
* a custom op (``glassnet.Op(forward, backward)``) inside a module;
* graph hygiene: contexts freed after backward, no reference cycles, flat memory in training;
* ``load_state_dict`` and ``Module.to`` against torch's rules.

The zoo models are compared in ``test_models_grad.py``.
"""

from __future__ import annotations

import functools
import gc
import importlib.util
import json
import os
import sys
import threading
import tracemalloc
import warnings
import weakref
from collections import OrderedDict
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from hypothesis.extra import numpy as hnp

import glassnet
import glassnet.functional as F
from glassnet import Tensor, nn
from glassnet.autograd.ops import unbroadcast
from glassnet.autograd.tensor import Node, topological_order
from glassnet.functional import Context

HERE = Path(__file__).resolve().parent
GOLDEN = HERE / "fixtures" / "autograd_golden.safetensors"
GOLDEN_MAKER = HERE / "fixtures" / "make_autograd_golden.py"


def _load_maker() -> Any:
    spec = importlib.util.spec_from_file_location("make_autograd_golden", GOLDEN_MAKER)
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module  # dataclasses look their module up there
    spec.loader.exec_module(module)
    return module


MAKER = _load_maker()
CASES = {c.id: c for c in MAKER.CASES}
G, T = MAKER.GlassnetLib, MAKER.TorchLib


def assert_close(actual: Any, expected: Any, what: str = "", rtol: float = 1e-10) -> None:
    """Same shape and dtype, and |actual − expected| ≤ rtol·max(1, max|expected|) elementwise."""
    actual = np.asarray(actual.data if isinstance(actual, Tensor) else actual)
    expected = np.asarray(expected.detach().numpy() if hasattr(expected, "detach") else expected)
    assert actual.shape == expected.shape, f"{what}: shape {actual.shape} != torch's {expected.shape}"
    assert actual.dtype == expected.dtype, f"{what}: dtype {actual.dtype} != torch's {expected.dtype}"
    scale = max(1.0, float(np.abs(expected).max(initial=0.0)))
    np.testing.assert_allclose(actual, expected, rtol=0, atol=rtol * scale, err_msg=what)


def assert_results(got: dict[str, Any], ref: dict[str, Any], what: str, rtol: float = 1e-10) -> None:
    assert set(got) == set(ref), f"{what}: glassnet gives {sorted(got)}, torch {sorted(ref)}"
    for key in sorted(ref):
        assert_close(got[key], ref[key], f"{what} {key}", rtol)


def fd_check(fn: Any, *arrays: Any, tol: float = 1e-7) -> None:
    """:func:`glassnet.gradcheck` of ``fn`` with respect to every array, each of which must be
    checked: gradcheck passes 0-d arrays through as options, so those go in as shape (1,) and
    are reshaped back inside."""
    shapes = [np.shape(a) for a in arrays]

    def flat_fn(*xs: Any) -> Any:
        return fn(*(x.reshape(s) for x, s in zip(xs, shapes, strict=True)))

    report = glassnet.gradcheck(flat_fn, *(np.reshape(a, (-1,)) for a in arrays), tol=tol)
    assert set(report.errors) == {f"input {i}" for i in range(len(arrays))}, report
    report.assert_ok()


def gradcheck_case(case: Any, arrays: dict[str, np.ndarray]) -> None:
    """Finite differences of ``case`` with respect to its gradient inputs (constants held fixed)."""
    names = list(case.grad)
    consts = {k: v for k, v in arrays.items() if k not in case.grad}
    fd_check(lambda *xs: case.expr(G, **dict(zip(names, xs, strict=True)), **consts), *(arrays[k] for k in names))


# =============================================================================================
# 1. Tensor expressions: golden cases (no torch needed) and hypothesis matrices (live torch)
# =============================================================================================


@functools.cache
def load_golden() -> tuple[list[str], dict[str, np.ndarray]]:
    from safetensors import safe_open

    with safe_open(str(GOLDEN), "np") as f:
        return json.loads(f.metadata()["golden"])["cases"], {k: f.get_tensor(k) for k in f.keys()}


def golden(case_id: str) -> tuple[dict[str, np.ndarray], dict[str, np.ndarray]]:
    """(inputs, torch's results) of one stored case."""
    _, tensors = load_golden()
    prefix = f"{case_id}/"
    inputs = {k[len(prefix) + 3 :]: v for k, v in tensors.items() if k.startswith(prefix + "in.")}
    ref = {k[len(prefix) :]: v for k, v in tensors.items() if k.startswith(prefix) and "/in." not in k}
    return inputs, ref


@pytest.mark.parametrize("case_id", list(CASES))
def test_expression_matches_stored_torch_results(case_id: str) -> None:
    """Output and every input gradient equal torch's (stored), to 1e-10 in float64."""
    assert GOLDEN.exists(), f"{GOLDEN} is missing: run `.venv/bin/python {GOLDEN_MAKER.relative_to(HERE.parent)}`"
    case = CASES[case_id]
    inputs, ref = golden(case_id)
    got = MAKER.run(G, case, inputs, ref["grad_out"])
    assert_results(got, ref, case_id)


@pytest.mark.parametrize("case_id", [c.id for c in MAKER.CASES if c.smooth])
def test_expression_matches_finite_differences(case_id: str) -> None:
    case = CASES[case_id]
    gradcheck_case(case, case.arrays)


def test_golden_fixture_is_current(torch: Any) -> None:
    """The stored cases are the maker's, with the maker's inputs, and torch still gives the stored results."""
    ids, _ = load_golden()
    assert ids == list(CASES)
    assert GOLDEN.stat().st_size < 200_000
    for case in MAKER.CASES:
        inputs, ref = golden(case.id)
        assert set(inputs) == set(case.arrays)
        for name, arr in case.arrays.items():
            np.testing.assert_array_equal(inputs[name], arr)
        assert_results(MAKER.run(T, case, inputs, ref["grad_out"]), ref, f"{case.id} (torch now)", rtol=1e-14)


def test_golden_cases_cover_the_tensor_api() -> None:
    ids = set(CASES)
    for needed in ("add_row", "add_column", "add_leading_dims", "radd_scalar", "rsub_ndarray", "rmatmul_ndarray"):
        assert needed in ids
    for prefix in ("div", "pow", "matmul", "getitem", "sum", "mean", "max", "cat", "stack", "flatten", "permute"):
        assert any(i.startswith(prefix) for i in ids), prefix


# -- hypothesis: shapes and broadcasting ------------------------------------------------------

SEEDS = st.integers(0, 2**32 - 1)


def both(arr: np.ndarray, torch: Any) -> tuple[Tensor, Any]:
    return Tensor(np.array(arr), requires_grad=True), torch.tensor(np.array(arr), requires_grad=True)


def backward_both(torch: Any, out: Tensor, t_out: Any, seed: int) -> np.ndarray:
    g = np.random.default_rng(seed).standard_normal(out.shape)
    out.backward(g)
    (t_out * torch.from_numpy(g)).sum().backward()
    return g


OPS = {
    "+": lambda a, b: a + b,
    "-": lambda a, b: a - b,
    "*": lambda a, b: a * b,
    "/": lambda a, b: a / b,
}


@st.composite
def arithmetic_cases(draw: Any) -> tuple[str, tuple[int, ...], tuple[int, ...], str, str, int]:
    shapes = draw(hnp.mutually_broadcastable_shapes(num_shapes=2, min_dims=0, max_dims=4, max_side=3))
    kinds = draw(
        st.sampled_from([("T", "T"), ("T", "T"), ("T", "array"), ("array", "T"), ("T", "scalar"), ("scalar", "T")])
    )
    return draw(st.sampled_from(list(OPS))), *shapes.input_shapes, *kinds, draw(SEEDS)


def test_arithmetic_broadcasting_matches_torch(torch: Any) -> None:
    """``+ − * /`` over every broadcast pattern (scalar, rows, columns, leading dims, size-1 axes),
    with Tensors on either side, NumPy arrays and Python floats on the other (reflected forms)."""

    def check(case: Any) -> None:
        op, sa, sb, ka, kb, seed = case
        rng = np.random.default_rng(seed)
        a = rng.standard_normal(sa)
        b = rng.uniform(0.5, 2.0, sb) * rng.choice([-1.0, 1.0], sb)  # denominators away from 0
        if ka == "scalar":
            a = float(rng.standard_normal())
        if kb == "scalar":
            b = float(rng.uniform(0.5, 2.0))
        ga = both(a, torch) if ka == "T" else (a, torch.tensor(a) if ka == "array" else a)
        gb = both(b, torch) if kb == "T" else (b, torch.tensor(b) if kb == "array" else b)
        out, t_out = OPS[op](ga[0], gb[0]), OPS[op](ga[1], gb[1])
        assert isinstance(out, Tensor) and out.requires_grad
        assert_close(out, t_out, f"{case} out")
        backward_both(torch, out, t_out, seed + 1)
        tensors = [(n, g, t) for n, (g, t), k in (("a", ga, ka), ("b", gb, kb)) if k == "T"]
        for name, g, t in tensors:
            assert_close(g.grad, t.grad, f"{case} grad.{name}")
        # and finite differences, holding the constant operand fixed
        fixed = {"a": a, "b": b}
        names = [n for n, _, _ in tensors]

        def fn(*xs: Any) -> Any:
            env = {**fixed, **dict(zip(names, xs, strict=True))}
            return OPS[op](env["a"], env["b"])

        fd_check(fn, *(fixed[n] for n in names))

    settings(max_examples=4 * settings.default.max_examples)(given(arithmetic_cases())(check))()


@st.composite
def matmul_cases(draw: Any) -> tuple[tuple[int, ...], tuple[int, ...], int]:
    m, k, n = draw(st.integers(1, 3)), draw(st.integers(1, 3)), draw(st.integers(1, 3))
    batch = draw(hnp.mutually_broadcastable_shapes(num_shapes=2, min_dims=0, max_dims=2, max_side=3))
    ba, bb = batch.input_shapes
    a = (k,) if draw(st.integers(0, 4)) == 0 else (*ba, m, k)
    b = (k,) if draw(st.integers(0, 4)) == 0 else (*bb, k, n)
    return a, b, draw(SEEDS)


def test_matmul_matches_torch(torch: Any) -> None:
    """``@`` for matrices, batches with broadcast batch dims, and vectors on either side (or both)."""

    def check(case: Any) -> None:
        sa, sb, seed = case
        rng = np.random.default_rng(seed)
        (a, ta), (b, tb) = both(rng.standard_normal(sa), torch), both(rng.standard_normal(sb), torch)
        out, t_out = a @ b, ta @ tb
        assert_close(out, t_out, f"{case} out")
        backward_both(torch, out, t_out, seed + 1)
        assert_close(a.grad, ta.grad, f"{case} grad.a")
        assert_close(b.grad, tb.grad, f"{case} grad.b")
        fd_check(lambda x, y: x @ y, a.data, b.data)

    settings(max_examples=2 * settings.default.max_examples)(given(matmul_cases())(check))()


@st.composite
def reduction_cases(draw: Any) -> tuple[str, tuple[int, ...], Any, bool, bool, int]:
    shape = draw(hnp.array_shapes(min_dims=1, max_dims=4, max_side=3))
    nd = len(shape)
    kind = draw(st.sampled_from(["none", "int", "tuple"]))
    if kind == "none":
        axis: Any = None
    elif kind == "int":
        axis = draw(st.integers(-nd, nd - 1))
    else:
        picked = draw(st.lists(st.integers(0, nd - 1), min_size=1, max_size=nd, unique=True))
        axis = tuple(a - nd if draw(st.booleans()) else a for a in picked)
    op = draw(st.sampled_from(["sum", "mean", "max"]))
    return op, shape, axis, draw(st.booleans()), op == "max" and draw(st.booleans()), draw(SEEDS)


def test_reductions_match_torch(torch: Any) -> None:
    """sum / mean / max over None, one axis or several (negative too), with and without keepdims;
    max on tie-heavy data splits the gradient evenly among the maxima, as ``torch.amax``."""

    def check(case: Any) -> None:
        op, shape, axis, keepdims, tied, seed = case
        rng = np.random.default_rng(seed)
        data = rng.integers(-1, 2, shape).astype(np.float64) if tied else rng.standard_normal(shape)
        a, ta = both(data, torch)
        fn = {"sum": (G.sum, T.sum), "mean": (G.mean, T.mean), "max": (G.amax, T.amax)}[op]
        out, t_out = fn[0](a, axis, keepdims), fn[1](ta, axis, keepdims)
        assert_close(out, t_out, f"{case} out")
        backward_both(torch, out, t_out, seed + 1)
        assert_close(a.grad, ta.grad, f"{case} grad")
        if not tied:
            fd_check(lambda x: fn[0](x, axis, keepdims), data)

    settings(max_examples=3 * settings.default.max_examples)(given(reduction_cases())(check))()


@st.composite
def index_cases(draw: Any) -> tuple[tuple[int, ...], Any, int]:
    shape = draw(hnp.array_shapes(min_dims=1, max_dims=3, min_side=1, max_side=5))
    if draw(st.booleans()):  # an integer array, with repeats, along one axis
        axis = draw(st.integers(0, len(shape) - 1))
        idx = draw(st.lists(st.integers(-shape[axis], shape[axis] - 1), min_size=1, max_size=6))
        return shape, ("take", axis, idx), draw(SEEDS)
    slices = []
    for n in shape:  # basic slices, any start/stop, steps of either sign
        start = draw(st.one_of(st.none(), st.integers(-n - 1, n)))
        stop = draw(st.one_of(st.none(), st.integers(-n - 1, n)))
        step = draw(st.sampled_from([None, 1, 2, 3, -1, -2]))
        slices.append(slice(start, stop, step))
    return shape, ("slices", tuple(slices)), draw(SEEDS)


def test_indexing_matches_torch(torch: Any) -> None:
    """Basic slicing (negative steps included; torch has none, so its side gathers the same
    positions) and integer arrays with repeats, whose gradients accumulate."""

    def check(case: Any) -> None:
        shape, index, seed = case
        rng = np.random.default_rng(seed)
        a, ta = both(rng.standard_normal(shape), torch)
        if index[0] == "take":
            _, axis, idx = index
            key: Any = (slice(None),) * axis + (np.array(idx),)
            out, t_out = a[key], ta.index_select(axis, torch.tensor([i % shape[axis] for i in idx]))
        else:
            key = index[1]
            out, t_out = a[key], T.slices(ta, key)
        assert_close(out, t_out, f"{case} out")
        if out.size == 0:
            return
        backward_both(torch, out, t_out, seed + 1)
        assert_close(a.grad, ta.grad, f"{case} grad")
        fd_check(lambda x: x[key] * x[key], a.data)

    settings(max_examples=3 * settings.default.max_examples)(given(index_cases())(check))()


@st.composite
def shape_cases(draw: Any) -> tuple[tuple[int, ...], str, Any, int]:
    shape = draw(hnp.array_shapes(min_dims=1, max_dims=4, max_side=4))
    nd = len(shape)
    kind = draw(st.sampled_from(["reshape", "view", "transpose", "permute", "T", "flatten"]))
    if kind in ("reshape", "view"):
        size = int(np.prod(shape))
        first = draw(st.sampled_from([d for d in range(1, size + 1) if size % d == 0]))
        arg: Any = (first, -1) if draw(st.booleans()) else (-1, first)
    elif kind == "transpose":
        arg = (draw(st.integers(-nd, nd - 1)), draw(st.integers(-nd, nd - 1)))
    elif kind == "permute":
        arg = tuple(draw(st.permutations(range(nd))))
    elif kind == "T":
        shape, arg = shape[:2] if nd >= 2 else (*shape, 2), None  # torch's .T is for 2-D tensors
    else:
        start = draw(st.integers(-nd, nd - 1))
        arg = (start, draw(st.integers(start % nd, nd - 1)))
    return shape, kind, arg, draw(SEEDS)


def test_shape_ops_match_torch(torch: Any) -> None:
    """reshape / view (with −1), transpose (torch's two-axis swap), permute, .T and flatten(start, end)."""

    def apply(x: Any, kind: str, arg: Any) -> Any:
        if kind == "T":
            return x.T
        return getattr(x, kind)(*arg)

    def check(case: Any) -> None:
        shape, kind, arg, seed = case
        a, ta = both(np.random.default_rng(seed).standard_normal(shape), torch)
        out, t_out = apply(a, kind, arg), apply(ta, kind, arg)
        assert_close(out, t_out, f"{case} out")
        backward_both(torch, out * out, t_out * t_out, seed + 1)
        assert_close(a.grad, ta.grad, f"{case} grad")
        fd_check(lambda x: apply(x, kind, arg) ** 2, a.data)

    settings(max_examples=2 * settings.default.max_examples)(given(shape_cases())(check))()


@st.composite
def join_cases(draw: Any) -> tuple[str, list[tuple[int, ...]], int, int]:
    base = list(draw(hnp.array_shapes(min_dims=1, max_dims=3, max_side=3)))
    nd, k = len(base), draw(st.integers(1, 3))
    if draw(st.booleans()):
        axis = draw(st.integers(-nd, nd - 1))
        shapes = [tuple(draw(st.integers(1, 3)) if i == axis % nd else n for i, n in enumerate(base)) for _ in range(k)]
        return "cat", shapes, axis, draw(SEEDS)
    return "stack", [tuple(base)] * k, draw(st.integers(-nd - 1, nd)), draw(SEEDS)


def test_cat_and_stack_match_torch(torch: Any) -> None:
    """``glassnet.cat`` / ``glassnet.stack`` against ``torch.cat`` / ``torch.stack`` on every axis;
    the same tensor joined twice gets both gradients."""

    def check(case: Any) -> None:
        kind, shapes, axis, seed = case
        rng = np.random.default_rng(seed)
        pairs = [both(rng.standard_normal(s), torch) for s in shapes]
        gs, ts = [p[0] for p in pairs], [p[1] for p in pairs]
        if kind == "cat" or shapes[0] == shapes[-1]:
            gs, ts = [*gs, gs[0]], [*ts, ts[0]]  # one input used twice
        lib_g, lib_t = getattr(G, kind), getattr(T, kind)
        out, t_out = lib_g(gs, axis), lib_t(ts, axis)
        assert_close(out, t_out, f"{case} out")
        backward_both(torch, out, t_out, seed + 1)
        for i, (g, t) in enumerate(pairs):
            assert_close(g.grad, t.grad, f"{case} grad {i}")
        arrays = [g.data for g, _ in pairs]
        fd_check(lambda *xs: lib_g([*xs, xs[0]], axis), *arrays)

    run = settings(max_examples=2 * settings.default.max_examples)(given(join_cases())(check))
    run()


def test_flatten_of_a_0d_tensor(torch: Any) -> None:
    a, ta = both(np.array(3.0), torch)
    out, t_out = a.flatten(), ta.flatten()
    assert_close(out, t_out, "0-d flatten")
    backward_both(torch, out, t_out, 0)
    assert_close(a.grad, ta.grad, "0-d flatten grad")


# -- Array-API arrays (array_api_strict, both of its devices) ---------------------------------

# array_api_strict refuses what these cases do: a strict array on the left of an operator
# with a Tensor raises TypeError (instead of deferring to Tensor's reflected operator), and
# integer-array indexing needs an index for every axis.
NOT_ON_STRICT = {"rsub_ndarray", "rmul_ndarray", "rdiv_ndarray", "rmatmul_ndarray", "getitem_int_repeats"}
NOT_ON_STRICT |= {"getitem_int_repeats_axis1"}


@pytest.mark.parametrize("device", ["CPU_DEVICE", "device1"])
def test_expressions_on_array_api_strict(device: str) -> None:
    """The stored cases on array_api_strict arrays: torch's results again, and every gradient
    on the input's device (its second device refuses silent conversions to NumPy)."""
    xps = pytest.importorskip("array_api_strict")
    from glassnet.backend import to_numpy

    dev = xps.Device(device)

    class StrictLib(G):
        @staticmethod
        def tensor(a: np.ndarray) -> Any:
            return Tensor(xps.asarray(np.array(a), device=dev), requires_grad=True)

        @staticmethod
        def const(a: np.ndarray) -> Any:
            return xps.asarray(np.array(a), device=dev)

    def host(x: Any) -> np.ndarray:
        return to_numpy(xps.asarray(x, device=xps.Device("CPU_DEVICE")))

    checked = 0
    for case in MAKER.CASES:
        if case.id in NOT_ON_STRICT:
            continue
        inputs, ref = golden(case.id)
        xs = {k: (StrictLib.tensor(v) if k in case.grad else v) for k, v in inputs.items()}
        out = case.expr(StrictLib, **xs)
        out.backward(xps.asarray(ref["grad_out"], device=dev))
        assert out.device == dev
        assert_close(host(out.data), ref["out"], f"{case.id} out")
        for k in case.grad:
            assert xs[k].grad.device == dev, f"{case.id}: grad.{k} on {xs[k].grad.device}"
            assert_close(host(xs[k].grad), ref[f"grad.{k}"], f"{case.id} grad.{k}")
        checked += 1
    assert checked == len(MAKER.CASES) - len(NOT_ON_STRICT)


def test_to_device_keeps_the_graph(torch: Any) -> None:
    """``.to("cpu")`` (and ``.to(dtype)``) of a tensor already there is the tensor itself, as in
    torch; moving between devices is differentiable (the gradient goes back to the input's device)."""
    a, ta = both(np.array([1.0, -2.0, 3.0]), torch)
    assert a.to("cpu") is a and ta.to("cpu") is ta
    assert a.to(np.float64) is a and ta.to(torch.float64) is ta
    h, th = (a * a).to("cpu"), (ta * ta).to("cpu")
    assert h.grad_fn is not None and th.grad_fn is not None
    (h * 3.0).sum().backward()
    (th * 3.0).sum().backward()
    assert_close(a.grad, ta.grad, "through .to('cpu')")
    xps = pytest.importorskip("array_api_strict")
    s = Tensor(xps.asarray([1.0, -2.0], device=xps.Device("device1")), requires_grad=True)
    moved = s.to("cpu")
    assert isinstance(moved.data, np.ndarray) and moved.grad_fn is not None
    (moved * moved).sum().backward()
    assert s.grad.device == xps.Device("device1")
    np.testing.assert_array_equal(xps.asarray(s.grad, device=xps.Device("CPU_DEVICE")), [2.0, -4.0])


# -- the Tensor API -------------------------------------------------------------------------


def test_tensor_attributes_match_torch(torch: Any) -> None:
    data = np.arange(6.0).reshape(2, 3)
    a, ta = Tensor(data, requires_grad=True), torch.tensor(data, requires_grad=True)
    assert a.shape == tuple(ta.shape) == (2, 3)
    assert a.dtype == np.float64 and ta.dtype == torch.float64
    assert a.device == "cpu" and ta.device.type == "cpu"
    assert a.requires_grad and ta.requires_grad
    assert a.is_leaf and ta.is_leaf
    assert a.grad is None and ta.grad is None
    assert a.grad_fn is None and ta.grad_fn is None
    b, tb = a * 2, ta * 2
    assert not b.is_leaf and not tb.is_leaf
    assert b.grad_fn is not None and tb.grad_fn is not None
    assert b.requires_grad and tb.requires_grad
    assert b.grad_fn.name == "mul" and type(tb.grad_fn).__name__ == "MulBackward0"
    s, ts = b.sum(), tb.sum()
    assert s.item() == ts.item() == 30.0 and isinstance(s.item(), float)
    np.testing.assert_array_equal(a.numpy(), ta.detach().numpy())
    np.testing.assert_array_equal(a.data, data)
    # detach: the same memory, cut off from the graph
    d, td = b.detach(), tb.detach()
    assert not d.requires_grad and not td.requires_grad and d.is_leaf and td.is_leaf and d.grad_fn is None
    d.data[0, 0] = 7.0
    td[0, 0] = 7.0
    assert b.data[0, 0] == 7.0 and tb[0, 0].item() == 7.0
    # requires_grad_ and the rule that only floating tensors may require gradients
    c, tc = Tensor(data.copy()), torch.tensor(data.copy())
    assert c.requires_grad_() is c and tc.requires_grad_() is tc
    assert c.requires_grad and tc.requires_grad
    with pytest.raises(TypeError, match="floating"):
        Tensor(np.arange(3), requires_grad=True)
    with pytest.raises(RuntimeError, match="floating"):
        torch.tensor(np.arange(3), requires_grad=True)
    # outputs of ops on tensors that need no gradient record nothing
    e, te = Tensor(data) + 1.0, torch.tensor(data) + 1.0
    assert not e.requires_grad and not te.requires_grad and e.grad_fn is None and te.grad_fn is None


def test_parameter_is_a_tensor(torch: Any) -> None:
    p, tp = nn.Parameter(np.ones((2, 2))), torch.nn.Parameter(torch.ones(2, 2, dtype=torch.float64))
    assert isinstance(p, Tensor) and isinstance(tp, torch.Tensor)
    assert p.requires_grad and tp.requires_grad and p.is_leaf and tp.is_leaf
    x = np.array([[1.0, 2.0], [3.0, 4.0]])
    loss, t_loss = ((x @ p) ** 2).sum(), ((torch.from_numpy(x) @ tp) ** 2).sum()
    loss.backward()
    t_loss.backward()
    assert_close(p.grad, tp.grad, "Parameter grad")
    frozen = nn.Parameter(np.ones(2), requires_grad=False)
    assert not frozen.requires_grad and not (frozen * 2).requires_grad


def test_gradients_accumulate_across_backward_calls(torch: Any) -> None:
    rng = np.random.default_rng(0)
    a, ta = both(rng.standard_normal((3, 4)), torch)
    w = rng.standard_normal((4, 2))
    for step in range(3):  # a new graph each time, the same leaf
        (((a @ w) ** 2).sum() * (step + 1)).backward()
        (((ta @ torch.from_numpy(w)) ** 2).sum() * (step + 1)).backward()
        assert_close(a.grad, ta.grad, f"after backward {step + 1}")


def test_zero_grad_set_to_none_or_zeros(torch: Any) -> None:
    model = nn.Sequential(nn.Linear(3, 2, rng=0, dtype=np.float64), nn.Linear(2, 1, rng=1, dtype=np.float64))
    t_model = torch.nn.Sequential(torch.nn.Linear(3, 2), torch.nn.Linear(2, 1)).double()
    x = np.random.default_rng(0).standard_normal((4, 3))
    for set_to_none in (False, True):
        model(x).sum().backward()
        t_model(torch.from_numpy(x)).sum().backward()
        model.zero_grad(set_to_none=set_to_none)
        t_model.zero_grad(set_to_none=set_to_none)
        for p, tp in zip(model.parameters(), t_model.parameters(), strict=True):
            if set_to_none:
                assert p.grad is None and tp.grad is None
            else:
                assert_close(p.grad, tp.grad, "zeroed")
                assert not p.grad.any()
    # Tensor.zero_grad: the same two ways on one tensor
    a = Tensor(np.ones(3), requires_grad=True)
    (a * 2).sum().backward()
    held = a.grad
    a.zero_grad(set_to_none=False)
    assert a.grad is held and not held.any()  # zeroed in place, as torch's grad.zero_()
    a.zero_grad()
    assert a.grad is None


def test_no_grad_and_enable_grad(torch: Any) -> None:
    a, ta = both(np.ones(3), torch)
    with glassnet.no_grad(), torch.no_grad():
        b, tb = a * 2, ta * 2
        assert not glassnet.is_grad_enabled() and not torch.is_grad_enabled()
        with glassnet.enable_grad(), torch.enable_grad():
            c, tc = a * 2, ta * 2
            assert glassnet.is_grad_enabled() and torch.is_grad_enabled()
        assert not glassnet.is_grad_enabled()
    assert glassnet.is_grad_enabled() and torch.is_grad_enabled()
    assert not b.requires_grad and not tb.requires_grad and b.grad_fn is None and tb.grad_fn is None
    assert c.requires_grad and tc.requires_grad and c.grad_fn is not None

    # decorators, with and without parentheses (torch accepts both)
    @glassnet.no_grad()
    def g1(x: Any) -> Any:
        return x * 2

    @glassnet.no_grad
    def g2(x: Any) -> Any:
        return x * 2

    @torch.no_grad
    def t2(x: Any) -> Any:
        return x * 2

    @glassnet.enable_grad
    def g3(x: Any) -> Any:
        return x * 2

    assert not g1(a).requires_grad and not g2(a).requires_grad and not t2(ta).requires_grad
    with glassnet.no_grad():
        assert g3(a).requires_grad
    assert glassnet.is_grad_enabled()
    with pytest.raises(ZeroDivisionError), glassnet.no_grad():  # restored on errors too
        _ = 1 / 0
    assert glassnet.is_grad_enabled()


def test_grad_mode_is_thread_local() -> None:
    """Each thread has its own mode (a new thread records, as in torch), and a decorated function
    run by two threads at once restores each thread's own mode (one shared stack did not)."""
    seen: dict[str, bool] = {}
    with glassnet.no_grad():
        t = threading.Thread(target=lambda: seen.setdefault("other thread", glassnet.is_grad_enabled()))
        t.start()
        t.join()
        seen["this thread"] = glassnet.is_grad_enabled()
    assert seen == {"other thread": True, "this thread": False}

    a_in, b_in, a_out = threading.Event(), threading.Event(), threading.Event()
    inside: dict[str, bool] = {}

    @glassnet.no_grad()
    def step(name: str, mine: threading.Event, wait_for: threading.Event | None) -> None:
        inside[name] = glassnet.is_grad_enabled()
        mine.set()
        if wait_for is not None:
            assert wait_for.wait(10)

    def thread_a() -> None:  # grad on; enters first, leaves while B is still inside
        step("A", a_in, b_in)
        seen["A after"] = glassnet.is_grad_enabled()
        a_out.set()

    def thread_b() -> None:  # grad off around the call; enters second, leaves last
        assert a_in.wait(10)
        with glassnet.no_grad():
            step("B", b_in, a_out)
            seen["B after"] = glassnet.is_grad_enabled()
        seen["B outside"] = glassnet.is_grad_enabled()

    threads = [threading.Thread(target=thread_a), threading.Thread(target=thread_b)]
    for th in threads:
        th.start()
    for th in threads:
        th.join(20)
    assert inside == {"A": False, "B": False}
    assert seen["A after"] is True and seen["B after"] is False and seen["B outside"] is True


def test_use_backend_decorator_switches_only_during_calls() -> None:
    """``use_backend(name)`` as a call switches the program; as a block or a decorator only the
    block or the calls. Decorating switched the whole program until the first call, and each
    call then restored the backend of decoration time."""
    assert glassnet.get_backend() == "fast"

    @glassnet.use_backend("reference")
    def inside() -> str:
        return glassnet.get_backend()

    assert glassnet.get_backend() == "fast"
    assert inside() == "reference" and glassnet.get_backend() == "fast"
    try:
        glassnet.use_backend("reference")  # a global switch ...
        assert inside() == "reference" and glassnet.get_backend() == "reference"  # ... survives a call
    finally:
        glassnet.use_backend("fast")
    with glassnet.use_backend("reference"):
        assert glassnet.get_backend() == "reference"
    assert glassnet.get_backend() == "fast"


def test_retain_graph(torch: Any) -> None:
    a, ta = both(np.array([1.0, -2.0, 3.0]), torch)
    y, ty = (a * a * a).sum(), (ta * ta * ta).sum()
    y.backward(retain_graph=True)
    ty.backward(retain_graph=True)
    y.backward()  # through the same graph again: the gradients add up
    ty.backward()
    assert_close(a.grad, ta.grad, "after two backward passes")
    assert_close(a.grad, 2 * 3 * a.data**2, "2 × 3a²")
    with pytest.raises(RuntimeError, match="second time"):
        y.backward()
    with pytest.raises(RuntimeError, match="second time"):
        ty.backward()


def test_hooks_modify_gradients(torch: Any) -> None:
    """Hooks on an intermediate and on a leaf see the gradient and may replace it; an observing
    hook (returning None) changes nothing; ``handle.remove()`` unregisters."""
    rng = np.random.default_rng(0)
    a, ta = both(rng.standard_normal((2, 3)), torch)
    w = rng.standard_normal((3, 3))
    seen, t_seen = [], []
    h, th = a @ w, ta @ torch.from_numpy(w)
    h.register_hook(lambda g: g * 3)
    th.register_hook(lambda g: g * 3)
    h.register_hook(lambda g: seen.append(np.array(g)))
    th.register_hook(lambda g: t_seen.append(g.numpy().copy()))
    a.register_hook(lambda g: g + 1)
    ta.register_hook(lambda g: g + 1)
    removed, t_removed = h.register_hook(lambda g: g * 100), th.register_hook(lambda g: g * 100)
    removed.remove()
    t_removed.remove()
    (h * h).sum().backward()
    (th * th).sum().backward()
    assert_close(a.grad, ta.grad, "leaf grad through both hooks")
    assert_close(seen[0], t_seen[0], "what the observing hook saw")
    with pytest.raises(RuntimeError, match="does not require grad"):
        Tensor(np.ones(2)).register_hook(lambda g: g)


def test_retain_grad_on_intermediates(torch: Any) -> None:
    rng = np.random.default_rng(1)
    a, ta = both(rng.standard_normal((3, 2)), torch)
    h, th = a * a, ta * ta
    h.retain_grad()
    th.retain_grad()
    other, t_other = h + 1.0, th + 1.0
    loss, t_loss = (other * h).sum(), (t_other * th).sum()
    loss.retain_grad()
    t_loss.retain_grad()
    loss.backward()
    t_loss.backward()
    assert_close(h.grad, th.grad, "retained intermediate grad (two paths)")
    assert_close(loss.grad, t_loss.grad, "retained root grad")
    assert_close(a.grad, ta.grad, "leaf grad")
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", UserWarning)  # torch warns when a non-leaf .grad is read
        assert other.grad is None and t_other.grad is None


def test_backward_errors_as_torch(torch: Any) -> None:
    a, ta = both(np.ones((2, 2)), torch)
    with pytest.raises(RuntimeError, match="one-element"):
        (a * 2).backward()
    with pytest.raises(RuntimeError, match="scalar outputs"):
        (ta * 2).backward()
    with pytest.raises(RuntimeError, match="does not require grad"):
        Tensor(np.ones(2)).sum().backward()
    with pytest.raises(RuntimeError, match="does not require grad"):
        torch.ones(2).sum().backward()
    with pytest.raises(ValueError, match="shape"):
        (a * 2).backward(np.ones(3))


# =============================================================================================
# 2. Forward-only custom models against torch twins (float64, gradients to 1e-8)
# =============================================================================================

F64 = np.float64


class SharedTwice(nn.Module):
    """One conv and one ReLU instance, each applied twice in the same forward (the issue's bug)."""

    def __init__(self) -> None:
        super().__init__()
        self.conv = nn.Conv2d(3, 3, 3, padding=1, rng=0, dtype=F64)
        self.relu = nn.ReLU()
        self.fc = nn.Linear(3 * 5 * 5, 4, rng=1, dtype=F64)

    def forward(self, x: Any) -> Any:
        h = self.relu(self.conv(x))
        h = self.relu(self.conv(h))
        return self.fc(h.flatten(1))


class Branches(nn.Module):
    """Two branches joined by an add, then a residual add around a body."""

    def __init__(self) -> None:
        super().__init__()
        self.left = nn.Conv2d(3, 4, 3, padding=1, rng=2, dtype=F64)
        self.right = nn.Conv2d(3, 4, 1, rng=3, dtype=F64)
        self.body = nn.Sequential(nn.Conv2d(4, 4, 3, padding=1, rng=4, dtype=F64), nn.Tanh())
        self.fc = nn.Linear(4, 3, rng=5, dtype=F64)

    def forward(self, x: Any) -> Any:
        h = F.relu(self.left(x) + self.right(x))
        h = h + self.body(h)
        return self.fc(h.mean((2, 3)))


class InceptionLike(nn.Module):
    """Parallel branches concatenated along channels (glassnet.cat), one of them pooled."""

    def __init__(self) -> None:
        super().__init__()
        self.b1 = nn.Conv2d(3, 2, 1, rng=6, dtype=F64)
        self.b2 = nn.Sequential(
            nn.Conv2d(3, 2, 1, rng=7, dtype=F64), nn.ReLU(), nn.Conv2d(2, 3, 3, padding=1, rng=8, dtype=F64)
        )
        self.pool = nn.MaxPool2d(3, stride=1, padding=1)
        self.b3 = nn.Conv2d(3, 1, 1, rng=9, dtype=F64)
        self.head = nn.Sequential(nn.Flatten(), nn.Linear(6 * 5 * 5, 3, rng=10, dtype=F64))

    def forward(self, x: Any) -> Any:
        return self.head(glassnet.cat([self.b1(x), self.b2(x), self.b3(self.pool(x))], 1))


class SliceArithmetic(nn.Module):
    """Slices of activations, arithmetic between them (a*b, a/b, a−b), a module applied to a slice."""

    def __init__(self) -> None:
        super().__init__()
        self.conv = nn.Conv2d(3, 6, 3, padding=1, rng=11, dtype=F64)
        self.small = nn.Conv2d(2, 2, 2, rng=12, dtype=F64)
        self.fc = nn.Linear(2 * 3 * 4 + 2 * 5 * 5 + 3, 3, rng=13, dtype=F64)
        self.tail = nn.Linear(5, 3, rng=14, dtype=F64)

    def forward(self, x: Any) -> Any:
        h = self.conv(x)
        a, b, c = h[:, 0:2], F.sigmoid(h[:, 2:4]) + 0.5, h[:, 4:]
        mixed = a * b - a / b + (c - a) * 0.5
        patch = self.small(mixed[:, :, 1:, :])[:, :, :, ::-1]  # a module on a slice; a reversed slice
        flat = glassnet.cat([patch.flatten(1), mixed.flatten(1), h[:, 5, 2, 1:4]], 1)
        out = self.fc(flat)
        return out + self.tail(flat[:, -5:])


class NormDrop(nn.Module):
    """Batch norm (2-D and 1-D) and dropout p = 0 (identity in train and eval)."""

    def __init__(self) -> None:
        super().__init__()
        self.conv = nn.Conv2d(3, 4, 3, rng=15, dtype=F64)
        self.bn = nn.BatchNorm2d(4, dtype=F64)
        self.drop = nn.Dropout(0.0, rng=0)
        self.fc = nn.Linear(4 * 3 * 3, 5, rng=16, dtype=F64)
        self.bn1 = nn.BatchNorm1d(5, dtype=F64)
        self.out = nn.Linear(5, 2, rng=17, dtype=F64)

    def forward(self, x: Any) -> Any:
        h = F.relu(self.bn(self.conv(x)))
        h = self.drop(h.flatten(1))
        return self.out(F.relu(self.bn1(self.fc(h))))


def torch_twins(torch: Any) -> dict[str, Any]:
    """The same models in torch, with the same child names (so state dicts line up)."""
    tnn, tf = torch.nn, torch.nn.functional

    class TSharedTwice(tnn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.conv, self.relu, self.fc = tnn.Conv2d(3, 3, 3, padding=1), tnn.ReLU(), tnn.Linear(75, 4)

        def forward(self, x: Any) -> Any:
            h = self.relu(self.conv(x))
            h = self.relu(self.conv(h))
            return self.fc(h.flatten(1))

    class TBranches(tnn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.left, self.right = tnn.Conv2d(3, 4, 3, padding=1), tnn.Conv2d(3, 4, 1)
            self.body = tnn.Sequential(tnn.Conv2d(4, 4, 3, padding=1), tnn.Tanh())
            self.fc = tnn.Linear(4, 3)

        def forward(self, x: Any) -> Any:
            h = tf.relu(self.left(x) + self.right(x))
            h = h + self.body(h)
            return self.fc(h.mean((2, 3)))

    class TInceptionLike(tnn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.b1 = tnn.Conv2d(3, 2, 1)
            self.b2 = tnn.Sequential(tnn.Conv2d(3, 2, 1), tnn.ReLU(), tnn.Conv2d(2, 3, 3, padding=1))
            self.pool = tnn.MaxPool2d(3, stride=1, padding=1)
            self.b3 = tnn.Conv2d(3, 1, 1)
            self.head = tnn.Sequential(tnn.Flatten(), tnn.Linear(150, 3))

        def forward(self, x: Any) -> Any:
            return self.head(torch.cat([self.b1(x), self.b2(x), self.b3(self.pool(x))], 1))

    class TSliceArithmetic(tnn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.conv, self.small = tnn.Conv2d(3, 6, 3, padding=1), tnn.Conv2d(2, 2, 2)
            self.fc, self.tail = tnn.Linear(24 + 50 + 3, 3), tnn.Linear(5, 3)

        def forward(self, x: Any) -> Any:
            h = self.conv(x)
            a, b, c = h[:, 0:2], torch.sigmoid(h[:, 2:4]) + 0.5, h[:, 4:]
            mixed = a * b - a / b + (c - a) * 0.5
            patch = self.small(mixed[:, :, 1:, :]).flip(3)
            flat = torch.cat([patch.flatten(1), mixed.flatten(1), h[:, 5, 2, 1:4]], 1)
            out = self.fc(flat)
            return out + self.tail(flat[:, -5:])

    class TNormDrop(tnn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.conv, self.bn, self.drop = tnn.Conv2d(3, 4, 3), tnn.BatchNorm2d(4), tnn.Dropout(0.0)
            self.fc, self.bn1, self.out = tnn.Linear(36, 5), tnn.BatchNorm1d(5), tnn.Linear(5, 2)

        def forward(self, x: Any) -> Any:
            h = tf.relu(self.bn(self.conv(x)))
            h = self.drop(h.flatten(1))
            return self.out(tf.relu(self.bn1(self.fc(h))))

    return {
        "SharedTwice": TSharedTwice,
        "Branches": TBranches,
        "InceptionLike": TInceptionLike,
        "SliceArithmetic": TSliceArithmetic,
        "NormDrop": TNormDrop,
    }


CUSTOM = {
    "SharedTwice": SharedTwice,
    "Branches": Branches,
    "InceptionLike": InceptionLike,
    "SliceArithmetic": SliceArithmetic,
    "NormDrop": NormDrop,
}


def copy_weights(torch: Any, model: nn.Module, t_model: Any) -> None:
    sd = model.state_dict()
    assert list(sd) == list(t_model.state_dict()), "state dict keys differ"
    t_model.load_state_dict({k: torch.tensor(np.array(v)) for k, v in sd.items()})


def compare_with_twin(
    torch: Any, model: nn.Module, t_model: Any, x: np.ndarray, g: np.ndarray | None = None, rtol: float = 1e-8
) -> dict[str, float]:
    """Output, input gradient, every parameter gradient and every buffer after one
    forward/backward with the upstream gradient ``g`` (random when None); returns the
    worst relative error per quantity."""
    xs, txs = Tensor(x.copy(), requires_grad=True), torch.tensor(x.copy(), requires_grad=True)
    out, t_out = model(xs), t_model(txs)
    if g is None:
        g = np.random.default_rng(99).standard_normal(out.shape)
    out.backward(g)
    (t_out * torch.from_numpy(g)).sum().backward()
    errors = {"output": _rel(out.data, t_out), "input grad": _rel(xs.grad, txs.grad)}
    t_params = dict(t_model.named_parameters())
    assert [n for n, _ in model.named_parameters()] == list(t_params)
    for name, p in model.named_parameters():
        assert p.grad is not None, f"{name} got no gradient"
        errors[f"{name}.grad"] = _rel(p.grad, t_params[name].grad)
    t_state = t_model.state_dict()
    for name, v in model.state_dict().items():
        errors[f"state {name}"] = _rel(v, t_state[name])
    bad = {k: e for k, e in errors.items() if not e <= rtol}
    assert not bad, f"relative errors above {rtol:g}: {bad}"
    return errors


def _rel(actual: Any, expected: Any, floor: float = 1e-6) -> float:
    """max|actual − expected| / max(max|expected|, floor)  (inf on a shape or dtype mismatch).

    The floor matters only for gradients that are zero in exact arithmetic, such as the bias of
    a layer followed by batch norm in training: both sides then hold rounding noise (~1e-17).
    """
    actual = np.asarray(actual)
    expected = np.asarray(expected.detach().numpy() if hasattr(expected, "detach") else expected)
    if actual.shape != expected.shape or actual.dtype != expected.dtype:
        return float("inf")
    if actual.dtype.kind != "f":
        return 0.0 if np.array_equal(actual, expected) else float("inf")
    a, e = actual.reshape(-1), expected.reshape(-1)
    diff = scale = 0.0
    for i in range(0, a.size, 2**22):  # in chunks: no full-size temporaries for 10⁸-element gradients
        diff = max(diff, float(np.abs(a[i : i + 2**22] - e[i : i + 2**22]).max()))
        scale = max(scale, float(np.abs(e[i : i + 2**22]).max()))
    return diff / max(scale, floor) if diff else 0.0


def _randomise_norm_stats(model: nn.Module, seed: int) -> None:
    rng = np.random.default_rng(seed)
    for m in model.modules():
        if isinstance(m, nn.BatchNorm2d | nn.BatchNorm1d):
            m.running_mean[...] = rng.standard_normal(m.num_features) * 0.2
            m.running_var[...] = rng.uniform(0.5, 1.5, m.num_features)
            m.weight.data = rng.uniform(0.5, 1.5, m.num_features)
            m.bias.data = rng.standard_normal(m.num_features) * 0.1


@pytest.mark.parametrize("mode", ["train", "eval"])
@pytest.mark.parametrize("name", list(CUSTOM))
def test_custom_model_matches_torch_twin(torch: Any, name: str, mode: str) -> None:
    """Two steps, so running statistics and accumulated gradients are compared too."""
    model = CUSTOM[name]()
    _randomise_norm_stats(model, 3)
    t_model = torch_twins(torch)[name]().double()
    copy_weights(torch, model, t_model)
    model.train(mode == "train")
    t_model.train(mode == "train")
    rng = np.random.default_rng(4)
    for _ in range(2):
        compare_with_twin(torch, model, t_model, rng.standard_normal((3, 3, 5, 5)))


@pytest.mark.parametrize("name", list(CUSTOM))
def test_custom_model_matches_finite_differences(name: str) -> None:
    model = CUSTOM[name]().eval()
    _randomise_norm_stats(model, 5)
    x = np.random.default_rng(6).standard_normal((2, 3, 5, 5))
    report = glassnet.gradcheck(model, x, tol=1e-6)
    report.assert_ok()
    assert set(report.errors) == {"input", *(n for n, _ in model.named_parameters())}


def test_relu_instance_applied_twice_gets_correct_gradients(torch: Any) -> None:
    """The issue's regression: one ReLU applied twice in one forward. With one saved context per
    module the second application overwrote the first and gradients were off by up to 78%."""
    relu = nn.ReLU()
    t_relu = torch.nn.ReLU()
    rng = np.random.default_rng(7)
    x, w = rng.standard_normal((4, 5)), rng.standard_normal((5, 5))
    a, ta = both(x, torch)
    y = relu(relu(a) @ w - 0.3)
    ty = t_relu(t_relu(ta) @ torch.from_numpy(w) - 0.3)
    backward_both(torch, y, ty, 8)
    assert_close(y, ty, "output")
    assert_close(a.grad, ta.grad, "input grad")
    fd_check(lambda v: relu(relu(v) @ w - 0.3), x)
    # and inside a model: SharedTwice applies its ReLU (and its conv) twice
    model, t_model = SharedTwice(), torch_twins(torch)["SharedTwice"]().double()
    copy_weights(torch, model, t_model)
    compare_with_twin(torch, model, t_model, rng.standard_normal((2, 3, 5, 5)))


def test_dropout_p0_in_training_equals_eval(torch: Any) -> None:
    model = NormDrop()
    x = np.random.default_rng(8).standard_normal((3, 3, 5, 5))
    model.train()
    drop = model.drop
    h = Tensor(x, requires_grad=True)
    out = drop(h)
    out.backward(np.full(x.shape, 2.0))
    np.testing.assert_array_equal(out.data, x)
    np.testing.assert_array_equal(h.grad, np.full(x.shape, 2.0))
    drop.eval()
    np.testing.assert_array_equal(drop(Tensor(x)).data, x)
    t_drop = torch.nn.Dropout(0.0).train()
    np.testing.assert_array_equal(t_drop(torch.from_numpy(x)).numpy(), x)


# =============================================================================================
# 4. A custom op added as a pair, inside a module
# =============================================================================================


def scaled_tanh_forward(x: Any, scale: Any) -> tuple[Any, Context]:
    """y = tanh(s·x), ``scale`` s per channel ([C, 1, 1] against [N, C, H, W])."""
    y = np.tanh(scale * x)
    return y, Context(x=x, scale=scale, y=y)


def scaled_tanh_backward(g: Any, ctx: Context) -> tuple[Any, Any]:
    """∂y/∂x = s·(1 − y²), ∂y/∂s = x·(1 − y²) (summed over what s was broadcast over)."""
    d = g * (1 - ctx.y**2)
    return d * ctx.scale, unbroadcast(d * ctx.x, ctx.scale.shape)


def wrong_scale_backward(g: Any, ctx: Context) -> tuple[Any, Any]:
    """A plausible mistake: the parameter's gradient forgets the derivative of tanh."""
    d = g * (1 - ctx.y**2)
    return d * ctx.scale, unbroadcast(g * ctx.x, ctx.scale.shape)


scaled_tanh = glassnet.Op(scaled_tanh_forward, scaled_tanh_backward)


class ScaledTanh(nn.Module):
    def __init__(self, channels: int, op: Any = scaled_tanh) -> None:
        super().__init__()
        self.op = op
        self.scale = nn.Parameter(np.linspace(0.5, 1.5, channels).reshape(channels, 1, 1))

    def forward(self, x: Any) -> Any:
        return self.op(x, self.scale)


def custom_op_net(op: Any = scaled_tanh) -> nn.Module:
    return nn.Sequential(
        nn.Conv2d(2, 3, 3, rng=0, dtype=F64), ScaledTanh(3, op), nn.Flatten(), nn.Linear(12, 2, rng=1, dtype=F64)
    )


def test_custom_op_in_a_module_passes_gradcheck(torch: Any) -> None:
    x = np.random.default_rng(9).standard_normal((2, 2, 4, 4))
    assert scaled_tanh(x, np.ones((2, 1, 1))).shape == x.shape  # plain arrays in, a plain array out
    report = glassnet.gradcheck(scaled_tanh, x, np.linspace(0.5, 1.5, 2).reshape(2, 1, 1), tol=1e-7)
    report.assert_ok()
    model = custom_op_net()
    report = glassnet.gradcheck(model, x, tol=1e-7)
    report.assert_ok()
    assert set(report.errors) == {"input", "0.weight", "0.bias", "1.scale", "3.weight", "3.bias"}
    # and against torch, where autograd derives the same function's gradient
    tnn = torch.nn

    class TScaledTanh(tnn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.scale = tnn.Parameter(torch.ones(3, 1, 1, dtype=torch.float64))

        def forward(self, v: Any) -> Any:
            return torch.tanh(self.scale * v)

    t_model = tnn.Sequential(tnn.Conv2d(2, 3, 3), TScaledTanh(), tnn.Flatten(), tnn.Linear(12, 2)).double()
    copy_weights(torch, model, t_model)
    compare_with_twin(torch, model, t_model, x)


def test_custom_op_with_a_wrong_backward_is_caught() -> None:
    wrong = glassnet.Op(scaled_tanh_forward, wrong_scale_backward, name="scaled_tanh")
    model = custom_op_net(wrong)
    report = glassnet.gradcheck(model, np.random.default_rng(9).standard_normal((2, 2, 4, 4)))
    assert not report.ok
    assert {k for k, e in report.errors.items() if e > report.tol} == {"1.scale"}, report
    with pytest.raises(AssertionError, match=r"1\.scale .* <-- too large"):
        report.assert_ok()


def test_custom_op_backward_of_the_wrong_shape_or_count_is_named() -> None:
    """A backward that returns a gradient of the wrong shape, or too few gradients, fails at its
    own node, named (a wrong shape for a non-leaf input used to surface later, as a reshape
    error in whichever op received the gradient, or be broadcast silently)."""
    summed = glassnet.Op(scaled_tanh_forward, lambda g, ctx: (g.sum(), scaled_tanh_backward(g, ctx)[1]), name="summed")
    one_grad = glassnet.Op(scaled_tanh_forward, lambda g, ctx: (g * ctx.scale,), name="one_grad")
    x = np.random.default_rng(1).standard_normal((2, 2, 4, 4))
    for op, message in (
        (summed, r"backward of summed: gradient 0 has shape \(\), input \(2, 3, 2, 2\)"),
        (one_grad, r"backward of one_grad must return a tuple with one gradient per array input"),
    ):
        with pytest.raises(ValueError, match=message):
            custom_op_net(op)(x).sum().backward()


# =============================================================================================
# 5. Memory and graph hygiene
# =============================================================================================


def _lenet_loss(model: nn.Module, seed: int = 0, n: int = 4) -> Any:
    rng = np.random.default_rng(seed)
    x = rng.standard_normal((n, 1, 28, 28)).astype(np.float32)
    return F.cross_entropy(model(x), rng.integers(0, 10, n))


def test_backward_frees_every_saved_context() -> None:
    from glassnet.models import lenet5

    model = lenet5(rng=0)
    loss = _lenet_loss(model)
    nodes = topological_order(loss.grad_fn)
    assert len(nodes) >= 12 and all(n.ctx is not None for n in nodes)
    loss.backward(retain_graph=True)
    assert all(n.ctx is not None for n in nodes), "retain_graph=True keeps every context"
    loss.backward()
    assert [n for n in nodes if n.ctx is not None] == [], "retain_graph=False frees every context"
    assert all(n.saved() == {} for n in nodes)


def test_no_reference_cycle_keeps_activations_alive() -> None:
    """With the cycle collector off, dropping the loss (and the output) frees the graph and every
    activation at once: reference counting alone suffices, so nothing forms a cycle. Checked
    after a backward pass and without one."""
    from glassnet.models import lenet5

    model = lenet5(rng=0)
    refs: list[Any] = []

    def keep_weak(module: Any, inputs: Any, output: Any) -> None:
        refs.extend([weakref.ref(output), weakref.ref(output.data), weakref.ref(output.grad_fn)])

    for m in model:
        m.register_forward_hook(keep_weak)
    was_enabled = gc.isenabled()
    gc.collect()
    gc.disable()
    try:
        for do_backward in (True, False):
            refs.clear()
            loss = _lenet_loss(model)
            if do_backward:
                loss.backward()
            assert len(refs) == 3 * len(model) and all(r() is not None for r in refs[2::3])  # the graph
            del loss
            alive = [r() for r in refs if r() is not None]
            assert alive == [], f"{len(alive)} objects outlived the loss (backward={do_backward})"
    finally:
        if was_enabled:
            gc.enable()


def test_activations_that_no_backward_needs_are_freed_before_backward() -> None:
    """A node keeps where its inputs came from, not the inputs: an activation that no backward
    saved (a ReLU's input: its backward keeps only the mask) is freed as soon as the forward
    drops it, while the loss still holds the graph. Hooks on a dropped tensor still run (as in
    torch), and retain_grad fills the grad of one that is kept."""
    x = glassnet.Tensor(np.linspace(-1, 1, 12).reshape(3, 4), requires_grad=True)
    h = x * 3.0  # mul saves its other operand (3.0), not this product
    seen: list[Any] = []
    h.register_hook(lambda g: seen.append(np.array(g)))
    r = F.relu(h)
    kept = F.relu(r)
    kept.retain_grad()
    loss = (kept * 2.0).sum()
    gone = weakref.ref(h.data)
    del h, r
    gc.collect()
    assert gone() is None, "an activation outlived its last use in forward"
    loss.backward()
    np.testing.assert_array_equal(kept.grad, np.full((3, 4), 2.0))
    assert len(seen) == 1 and seen[0].shape == (3, 4)
    np.testing.assert_array_equal(x.grad, np.where(x.data > 0, 6.0, 0.0))


def _rss_bytes() -> int:
    with open("/proc/self/statm") as f:
        return int(f.read().split()[1]) * os.sysconf("SC_PAGE_SIZE")


@pytest.mark.skipif(not os.path.exists("/proc/self/statm"), reason="RSS is read from /proc (Linux)")
def test_training_loop_memory_stays_flat() -> None:
    """20 steps of LeNet-5 training: resident memory within ±10% after warm-up, and no graph
    node survives a step. In a process that holds torch the RSS is large enough to hide a small
    leak in 10%, so the memory NumPy and Python allocate (tracemalloc) is also held to 1 MiB of
    growth: one step's activations alone are more (the first convolution's output is 300 KiB)."""
    from glassnet.models import lenet5
    from glassnet.optim import SGD

    model = lenet5(rng=0)
    opt = SGD(model.parameters(), lr=0.01, momentum=0.9)
    rss, traced, nodes = [], [], []
    tracemalloc.start()
    try:
        for step in range(20):
            opt.zero_grad()
            loss = _lenet_loss(model, seed=step, n=16)
            loss.backward()
            opt.step()
            if step == 0:  # the count below does see a live graph
                assert sum(type(o) is Node for o in gc.get_objects()) >= 12
            del loss
            if step >= 4:
                rss.append(_rss_bytes())
                traced.append(tracemalloc.get_traced_memory()[0])
                nodes.append(sum(type(o) is Node for o in gc.get_objects()))
    finally:
        tracemalloc.stop()
    assert max(rss) <= 1.10 * rss[0] and min(rss) >= 0.90 * rss[0], [r // 2**20 for r in rss]
    assert max(traced) - traced[0] < 2**20, [t // 2**10 for t in traced]
    assert set(nodes) == {0}, nodes


# =============================================================================================
# load_state_dict and Module.to, against torch's rules
# =============================================================================================


def _small(dtype: Any = np.float32) -> nn.Module:
    return nn.Sequential(
        OrderedDict(
            conv=nn.Conv2d(1, 2, 3, rng=0, dtype=dtype),
            bn=nn.BatchNorm2d(2, dtype=dtype),
            relu=nn.ReLU(),
            flat=nn.Flatten(),
            fc=nn.Linear(8, 3, rng=1, dtype=dtype),
        )
    )


def _t_small(torch: Any) -> Any:
    tnn = torch.nn
    return tnn.Sequential(
        OrderedDict(
            conv=tnn.Conv2d(1, 2, 3), bn=tnn.BatchNorm2d(2), relu=tnn.ReLU(), flat=tnn.Flatten(), fc=tnn.Linear(8, 3)
        )
    )


def _state(seed: int, dtype: Any = np.float64) -> dict[str, np.ndarray]:
    sd = _small(np.float64).state_dict()
    rng = np.random.default_rng(seed)
    return {k: (rng.standard_normal(v.shape).astype(dtype) if v.dtype.kind == "f" else v) for k, v in sd.items()}


def _to_torch(torch: Any, sd: dict[str, np.ndarray]) -> dict[str, Any]:
    return {k: torch.from_numpy(np.array(v)) for k, v in sd.items()}


def _same_state(model: nn.Module, t_model: Any) -> None:
    t_sd = t_model.state_dict()
    for k, v in model.state_dict().items():
        assert_close(v, t_sd[k], k, rtol=0)


def test_load_state_dict_keys_follow_strict(torch: Any) -> None:
    model, t_model = _small(), _t_small(torch)
    assert list(model.state_dict()) == list(t_model.state_dict())
    full = _state(0, np.float32)
    assert tuple(model.load_state_dict(full)) == tuple(t_model.load_state_dict(_to_torch(torch, full))) == ([], [])
    _same_state(model, t_model)
    partial = {k: v for k, v in _state(1, np.float32).items() if not k.startswith("fc.")}
    partial["extra.weight"] = np.ones(2, dtype=np.float32)
    with pytest.raises(ValueError, match=r"missing keys: \['fc.weight', 'fc.bias'\]"):
        model.load_state_dict(partial)
    with pytest.raises(RuntimeError, match="Missing key"):
        t_model.load_state_dict(_to_torch(torch, partial))
    got = model.load_state_dict(partial, strict=False)
    want = t_model.load_state_dict(_to_torch(torch, partial), strict=False)
    assert got.missing_keys == want.missing_keys == ["fc.weight", "fc.bias"]
    assert got.unexpected_keys == want.unexpected_keys == ["extra.weight"]
    missing, unexpected = got  # torch's idiom unpacks it
    assert (missing, unexpected) == (["fc.weight", "fc.bias"], ["extra.weight"])
    _same_state(model, t_model)  # the keys present were loaded, fc kept its weights


def test_load_state_dict_casts_floating_dtypes(torch: Any) -> None:
    for model_dtype, t_dtype, sd_dtype in (
        (np.float32, torch.float32, np.float64),
        (np.float64, torch.float64, np.float32),
    ):
        model, t_model = _small(model_dtype), _t_small(torch).to(t_dtype)
        sd = _state(2, sd_dtype)
        model.load_state_dict(sd)
        t_model.load_state_dict(_to_torch(torch, sd))
        for k, v in model.state_dict().items():
            t_v = t_model.state_dict()[k]
            assert_close(v, t_v, k, rtol=0)
            if v.dtype.kind == "f":
                assert v.dtype == model_dtype
    assert model.bn.num_batches_tracked.dtype == np.int64


def test_load_state_dict_shapes_must_match_even_when_not_strict(torch: Any) -> None:
    model, t_model = _small(), _t_small(torch)
    before = model.state_dict()
    bad = {"fc.weight": np.ones((3, 9), dtype=np.float32)}
    for strict in (True, False):
        with pytest.raises(ValueError, match=r"fc.weight: shape \(3, 9\) in the state dict, \(3, 8\) in the model"):
            model.load_state_dict(bad, strict=strict)
        with pytest.raises(RuntimeError, match="size mismatch for fc.weight"):
            t_model.load_state_dict(_to_torch(torch, bad), strict=strict)
    for k, v in model.state_dict().items():  # a refused load changes nothing
        np.testing.assert_array_equal(v, before[k])


def test_to_float64_and_back(torch: Any) -> None:
    model, t_model = _small(), _t_small(torch)
    copy_weights(torch, model, t_model)
    params = model.parameters()
    x = np.random.default_rng(2).standard_normal((2, 1, 4, 4)).astype(np.float32)
    model(x).sum().backward()  # gradients and updated running statistics, on both
    t_model(torch.from_numpy(x)).sum().backward()
    assert model.to(np.float64) is model
    t_model.double()
    assert model.parameters() == params and all(p.dtype == np.float64 for p in params)
    assert all(p.grad.dtype == np.float64 for p in params)
    for k, v in model.state_dict().items():
        assert v.dtype == np.dtype(str(t_model.state_dict()[k].dtype).removeprefix("torch."))
    assert model.bn.num_batches_tracked.dtype == np.int64  # integer buffers stay integers
    # The float32 step's running statistics agree with PyTorch's to float32 rounding only (its
    # convolution sums in another order: equal on some CPUs, a last bit apart on others), so
    # PyTorch takes glassnet's before the float64 forward is compared at 1e-12.
    with torch.no_grad():
        for name in ("running_mean", "running_var"):
            getattr(t_model.bn, name).copy_(torch.from_numpy(np.asarray(getattr(model.bn, name))))
    x = np.random.default_rng(3).standard_normal((2, 1, 4, 4))
    model.eval()
    t_model.eval()
    assert_close(model(x), t_model(torch.from_numpy(x)), "float64 forward", rtol=1e-12)
    model.to(np.float32)
    t_model.float()
    _same_state(model, t_model)  # float32 → float64 → float32 is exact
    assert all(p.dtype == np.float32 for p in model.parameters())
