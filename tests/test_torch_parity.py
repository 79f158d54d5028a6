"""Parity with PyTorch, the oracle: every op's output and every gradient (input, weight, bias).

Three layers of evidence:

* live, hypothesis-generated matrices of shapes and options compared with torch (float64 to
  ~1e-10, some float32 cases to ~1e-5; max pooling exactly, ties included);
* modules and whole LeNet-5 networks against the same torch modules with copied weights;
* golden cases (``fixtures/ops_golden.safetensors``, written by ``fixtures/make_ops_golden.py``)
  that hold torch's results, so parity is checked even where torch is not installed.

Every op is driven through one pair of runners, :func:`torch_reference` and
:func:`glassnet_run`, that take the same ``(op, inputs, opts, grad_out)`` and return the
same flat dict: ``out``, ``grad.<input>`` and ``state.<buffer>`` (batch-norm running stats).
``opts`` use glassnet's argument names; the torch runner translates.
"""

from __future__ import annotations

import contextlib
import functools
import importlib.util
import json
import math
import warnings
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from hypothesis import assume, given, settings
from hypothesis import strategies as st

import glassnet
import glassnet.functional as F
import glassnet.nn as gnn
from glassnet.models import lenet5

# Every test here runs on both backends: the fast kernels and the readable reference.
pytestmark = pytest.mark.usefixtures("backend")

HERE = Path(__file__).resolve().parent
GOLDEN = HERE / "fixtures" / "ops_golden.safetensors"
GOLDEN_MAKER = HERE / "fixtures" / "make_ops_golden.py"

# (rtol, atol); atol is scaled by max(1, max |expected|).
TOL = {np.dtype(np.float64): (1e-10, 1e-10), np.dtype(np.float32): (1e-5, 1e-5)}

# The array arguments of each op, in forward's order (backward returns one gradient per entry).
ARGS: dict[str, tuple[str, ...]] = {
    "conv2d": ("x", "weight", "bias"),
    "linear": ("x", "weight", "bias"),
    "batch_norm": ("x", "running_mean", "running_var", "weight", "bias"),
    "batch_norm_relu": ("x", "running_mean", "running_var", "weight", "bias", "residual"),
    "conv2d_bn_relu": ("x", "weight", "bias", "running_mean", "running_var", "bn_weight", "bn_bias", "residual"),
    "cross_entropy": ("logits", "target"),
    "binary_cross_entropy_with_logits": ("logits", "target"),
    "mse_loss": ("pred", "target"),
}
# Arguments without a gradient (labels, running statistics).
NO_GRAD = {
    "cross_entropy": {"target"},
    "batch_norm": {"running_mean", "running_var"},
    "batch_norm_relu": {"running_mean", "running_var"},
    "conv2d_bn_relu": {"running_mean", "running_var"},
}
STATE = {"batch_norm": ("running_mean", "running_var"), "batch_norm_relu": ("running_mean", "running_var")}
# Ops whose array arguments are passed by name, and where each one's gradient sits in backward's
# result (batch_norm_relu's residual comes after training, momentum and eps; conv2d_bn_relu's after eps).
BY_NAME = {"batch_norm_relu": (0, 1, 2, 3, 4, 8), "conv2d_bn_relu": (0, 1, 2, 3, 4, 5, 6, 8)}
EXACT_OPS = {"max_pool2d"}


def _args(op: str) -> tuple[str, ...]:
    return ARGS.get(op, ("x",))


def _pair(v: Any) -> tuple[int, int]:
    return (int(v), int(v)) if isinstance(v, int | np.integer) else (int(v[0]), int(v[1]))


def _is_sides(padding: Any) -> bool:
    return isinstance(padding, tuple | list) and len(padding) == 2 and all(isinstance(p, tuple | list) for p in padding)


def _tf_same_pads(size: tuple[int, int], kernel: tuple[int, int], stride: Any, dilation: Any) -> list[list[int]]:
    """TensorFlow's 'SAME' padding, which glassnet documents for stride > 1: out = ceil(n / s)."""
    sides = []
    for n, k, s, d in zip(size, kernel, _pair(stride), _pair(dilation), strict=True):
        total = max((math.ceil(n / s) - 1) * s + d * (k - 1) + 1 - n, 0)
        sides.append([total // 2, total - total // 2])
    return sides


# ---------------------------------------------------------------------------------------------
# the two runners
# ---------------------------------------------------------------------------------------------


def _torch_conv2d(torch: Any, x: Any, w: Any, b: Any, opts: dict[str, Any]) -> Any:
    tf = torch.nn.functional
    stride, dilation = _pair(opts.get("stride", 1)), _pair(opts.get("dilation", 1))
    padding = opts.get("padding", 0)
    if opts.get("flip", False):
        w = w.flip((2, 3))  # true convolution = cross-correlation with the 180°-rotated kernel
    if padding == "same" and stride != (1, 1):
        padding = _tf_same_pads(tuple(x.shape[2:]), tuple(w.shape[2:]), stride, dilation)
    if _is_sides(padding):
        (top, bottom), (left, right) = padding
        x = tf.pad(x, (left, right, top, bottom))
        padding = 0
    elif isinstance(padding, list):
        padding = tuple(padding)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", UserWarning)  # 'same' with an even kernel copies the input
        return tf.conv2d(x, w, b, stride=stride, padding=padding, dilation=dilation, groups=opts.get("groups", 1))


def _tup(v: Any) -> Any:
    return tuple(v) if isinstance(v, list) else v


def backward(torch: Any, out: Any, g: np.ndarray) -> None:
    """``out.backward(g)``, written as the backward of the scalar Σ out·g (the same gradients:
    the product's backward multiplies g by exact ones). ``out.backward(g)`` itself imports
    sympy on first use, seconds of start-up that the scalar form avoids."""
    (out * torch.from_numpy(g)).sum().backward()


def torch_reference(
    op: str, inputs: dict[str, np.ndarray], opts: dict[str, Any], grad_out: np.ndarray | Callable[..., np.ndarray]
) -> dict[str, np.ndarray]:
    """torch's ``out``, ``grad.<input>`` and ``state.<buffer>`` for one op call.

    ``grad_out`` is the upstream gradient or a function of the output shape that makes it;
    the one used is returned as ``grad_out``.
    """
    import torch

    tf = torch.nn.functional
    no_grad = NO_GRAD.get(op, set())
    t = {}
    for name, a in inputs.items():
        t[name] = torch.tensor(np.array(a))
        if name not in no_grad and t[name].is_floating_point():
            t[name].requires_grad_(True)
    o = {k: v for k, v in opts.items() if k != "algorithm"}  # glassnet-only option
    x = t.get("x")
    if op == "conv2d":
        out = _torch_conv2d(torch, x, t["weight"], t.get("bias"), o)
    elif op == "max_pool2d":
        out = tf.max_pool2d(x, **{k: _tup(v) for k, v in o.items()})
    elif op == "avg_pool2d":
        out = tf.avg_pool2d(x, **{k: _tup(v) for k, v in o.items()})
    elif op == "adaptive_avg_pool2d":
        out = tf.adaptive_avg_pool2d(x, _tup(o["output_size"]))
    elif op == "global_avg_pool2d":
        out = x.mean((2, 3), keepdim=True)
    elif op == "relu":
        out = tf.relu(x)
    elif op == "relu6":
        out = tf.relu6(x)
    elif op == "leaky_relu":
        out = tf.leaky_relu(x, o.get("negative_slope", 0.01))
    elif op == "sigmoid":
        out = torch.sigmoid(x)
    elif op == "tanh":
        out = torch.tanh(x)
    elif op == "softmax":
        out = tf.softmax(x, dim=o.get("axis", -1))
    elif op == "log_softmax":
        out = tf.log_softmax(x, dim=o.get("axis", -1))
    elif op == "linear":
        out = tf.linear(x, t["weight"], t.get("bias"))
    elif op == "flatten":
        out = torch.flatten(x, o.get("start_dim", 1))
    elif op == "dropout":
        torch.manual_seed(o["seed"])
        out = tf.dropout(x, o.get("p", 0.5), o.get("training", True))
    elif op == "conv2d_bn_relu":
        y = _torch_conv2d(torch, x, t["weight"], t.get("bias"), o)
        y = tf.batch_norm(
            y, t["running_mean"], t["running_var"], t.get("bn_weight"), t.get("bn_bias"), False, eps=o.get("eps", 1e-5)
        )
        out = tf.relu(y + t["residual"] if "residual" in t else y)
    elif op in ("batch_norm", "batch_norm_relu"):
        out = tf.batch_norm(
            x,
            t.get("running_mean"),
            t.get("running_var"),
            t.get("weight"),
            t.get("bias"),
            training=o.get("training", True),
            momentum=o.get("momentum", 0.1),
            eps=o.get("eps", 1e-5),
        )
        if op == "batch_norm_relu":
            out = tf.relu(out + t["residual"] if "residual" in t else out)
    elif op == "local_response_norm":
        out = tf.local_response_norm(x, o["size"], o.get("alpha", 1e-4), o.get("beta", 0.75), o.get("k", 1.0))
    elif op == "cross_entropy":
        out = tf.cross_entropy(
            t["logits"],
            t["target"],
            label_smoothing=o.get("label_smoothing", 0.0),
            reduction=o.get("reduction", "mean"),
        )
    elif op == "binary_cross_entropy_with_logits":
        out = tf.binary_cross_entropy_with_logits(t["logits"], t["target"], reduction=o.get("reduction", "mean"))
    elif op == "mse_loss":
        out = tf.mse_loss(t["pred"], t["target"], reduction=o.get("reduction", "mean"))
    else:
        raise KeyError(op)
    g = grad_out(tuple(out.shape)) if callable(grad_out) else np.asarray(grad_out)
    g = np.array(g, dtype=out.detach().numpy().dtype)
    backward(torch, out, g)
    res = {"out": out.detach().numpy().copy(), "grad_out": g}
    for name in _args(op):
        if name in t and t[name].requires_grad:
            res[f"grad.{name}"] = t[name].grad.numpy().copy()
    for name in STATE.get(op, ()):
        if name in t:
            res[f"state.{name}"] = t[name].numpy().copy()
    return res


def glassnet_run(
    op: str, inputs: dict[str, np.ndarray], opts: dict[str, Any], grad_out: np.ndarray
) -> tuple[dict[str, np.ndarray], Any]:
    """glassnet's results in :func:`torch_reference`'s layout, and the forward context."""
    arrays = {k: np.array(v, copy=True) for k, v in inputs.items()}  # running stats are updated in place
    names = _args(op)
    o = dict(opts)
    if op == "dropout":
        o["rng"] = np.random.default_rng(o.pop("seed"))
    if op in BY_NAME:
        out, ctx = getattr(F, f"{op}_forward")(**{n: arrays.get(n) for n in names}, **o)
        grads = getattr(F, f"{op}_backward")(np.array(grad_out), ctx)
        grads = tuple(grads[i] for i in BY_NAME[op])
    else:
        out, ctx = getattr(F, f"{op}_forward")(*(arrays.get(n) for n in names), **o)
        grads = getattr(F, f"{op}_backward")(np.array(grad_out), ctx)
    assert len(grads) == len(names), f"{op} backward returned {len(grads)} gradients for inputs {names}"
    res = {"out": np.asarray(out)}
    for name, g in zip(names, grads, strict=True):
        if name in arrays and name not in NO_GRAD.get(op, set()):
            res[f"grad.{name}"] = g
        else:
            assert g is None, f"{op}: expected no gradient for {name}"
    for name in STATE.get(op, ()):
        if name in arrays:
            res[f"state.{name}"] = arrays[name]
    return res, ctx


def assert_close(actual: Any, expected: Any, what: str = "", exact: bool = False, tol: Any = None) -> None:
    actual, expected = np.asarray(actual), np.asarray(expected)
    assert actual.shape == expected.shape, f"{what}: shape {actual.shape} != torch's {expected.shape}"
    assert actual.dtype == expected.dtype, f"{what}: dtype {actual.dtype} != torch's {expected.dtype}"
    if exact:
        np.testing.assert_array_equal(actual, expected, err_msg=what)
        return
    rtol, atol = tol or TOL.get(expected.dtype, (0, 0))
    atol *= max(1.0, float(np.abs(expected).max(initial=0.0)))
    np.testing.assert_allclose(actual, expected, rtol=rtol, atol=atol, err_msg=what)


def compare(op: str, inputs: dict, opts: dict, grad_out: Any, exact: bool = False) -> tuple[dict, Any]:
    """Run both runners and compare every result; returns (torch's results, glassnet's ctx)."""
    ref = torch_reference(op, inputs, opts, grad_out)
    got, ctx = glassnet_run(op, inputs, opts, ref["grad_out"])
    check_results(op, got, ref, opts, exact)
    return ref, ctx


def check_results(op: str, got: dict, ref: dict, opts: dict, exact: bool = False) -> None:
    expected = set(ref) - {"grad_out"}
    assert set(got) == expected, f"{op}: glassnet gives {sorted(got)}, torch {sorted(expected)}"
    for key in sorted(expected):
        assert_close(got[key], ref[key], f"{op} {opts} {key}", exact=exact)


# ---------------------------------------------------------------------------------------------
# hypothesis plumbing
# ---------------------------------------------------------------------------------------------

DTYPES = st.sampled_from([np.float64, np.float64, np.float64, np.float32])
SEEDS = st.integers(0, 2**32 - 1)


def run_matrix(strategy: st.SearchStrategy, check: Callable[[Any], None], factor: int = 1) -> None:
    """Run ``check`` over ``strategy`` (factor × the profile's max_examples)."""
    settings(max_examples=factor * settings.default.max_examples)(given(strategy)(check))()


def normal_grad(seed: int, dtype: Any) -> Callable[[tuple[int, ...]], np.ndarray]:
    return lambda shape: np.random.default_rng(seed).standard_normal(shape).astype(dtype)


def int_grad(seed: int, dtype: Any) -> Callable[[tuple[int, ...]], np.ndarray]:
    """Integer-valued upstream gradients: sums of them are exact, so routed gradients compare exactly."""
    return lambda shape: np.random.default_rng(seed).integers(-3, 4, shape).astype(dtype)


def tie_heavy(rng: np.random.Generator, shape: tuple[int, ...], kind: str, dtype: Any) -> np.ndarray:
    if kind == "ints":
        return rng.integers(-2, 3, shape).astype(dtype)
    if kind == "blocks":  # constant 2×3 regions
        n, c, h, w = shape
        base = rng.integers(-1, 2, (n, c, -(-h // 2), -(-w // 3)))
        return np.repeat(np.repeat(base, 2, axis=2), 3, axis=3)[:, :, :h, :w].astype(dtype)
    if kind == "equal":
        return np.full(shape, rng.choice([-3.0, 0.0, 1.5]), dtype=dtype)
    return rng.standard_normal(shape).astype(dtype)


# ---------------------------------------------------------------------------------------------
# conv2d
# ---------------------------------------------------------------------------------------------


@st.composite
def conv_cases(draw: Any) -> tuple[dict, dict, int]:
    dtype = draw(DTYPES)
    groups = draw(st.sampled_from([1, 1, 2, 3]))
    depthwise = groups > 1 and draw(st.booleans())
    cg = 1 if depthwise else draw(st.integers(1, 3))
    fg = draw(st.integers(1, 3))
    kh, kw = draw(st.integers(1, 4)), draw(st.integers(1, 4))
    dilation = draw(st.sampled_from([1, 1, 2, (1, 2), (2, 1)]))
    stride = 1 if draw(st.booleans()) else draw(st.sampled_from([2, 3, 5, (1, 2), (2, 1), (3, 5)]))
    kind = draw(st.sampled_from(["int", "pair", "sides", "same", "valid"]))
    if kind == "int":
        p = draw(st.integers(0, 2))
        padding: Any = p
        totals = (2 * p, 2 * p)
    elif kind == "pair":
        padding = (draw(st.integers(0, 2)), draw(st.integers(0, 3)))
        totals = (2 * padding[0], 2 * padding[1])
    elif kind == "sides":
        padding = tuple((draw(st.integers(0, 3)), draw(st.integers(0, 3))) for _ in range(2))
        totals = (sum(padding[0]), sum(padding[1]))
    else:
        padding = kind
        totals = (10**6, 10**6) if kind == "same" else (0, 0)  # 'same' fits any size
    dh, dw = _pair(dilation)
    h_min = max(1, dh * (kh - 1) + 1 - totals[0])
    w_min = max(1, dw * (kw - 1) + 1 - totals[1])
    h, w = draw(st.integers(h_min, h_min + 7)), draw(st.integers(w_min, w_min + 7))
    n = draw(st.integers(1, 2))
    bias, flip = draw(st.booleans()), draw(st.booleans())
    seed = draw(SEEDS)
    rng = np.random.default_rng(seed)
    inputs = {
        "x": rng.standard_normal((n, cg * groups, h, w)).astype(dtype),
        "weight": rng.standard_normal((fg * groups, cg, kh, kw)).astype(dtype),
    }
    if bias:
        inputs["bias"] = rng.standard_normal(fg * groups).astype(dtype)
    opts = {"stride": stride, "padding": padding, "dilation": dilation, "groups": groups, "flip": flip}
    return inputs, opts, seed


def _algorithms(opts: dict, inputs: dict | None = None) -> list[str]:
    """Every fast algorithm that applies ('shift' needs stride 1; 'winograd' and 'winograd4' 3×3,
    stride 1, no dilation)."""
    stride = opts.get("stride", 1)
    names = ["shift", "gather", "hwn"] if stride in (1, (1, 1)) else ["gather", "hwn"]
    if inputs is not None:
        from glassnet.fast import winograd
        from glassnet.functional.conv import conv2d_geometry

        x, w = inputs["x"], inputs["weight"]
        geometry = conv2d_geometry(x.shape, w.shape, stride, opts.get("padding", 0), opts.get("dilation", 1))
        if winograd.applies(w.shape[2:], geometry[0], geometry[1], opts.get("groups", 1), geometry[2]):
            names += ["winograd", "winograd4"]
    return names


def test_conv2d_matches_torch(torch: Any, backend: str) -> None:
    paths: set[str] = set()

    def check(case: Any) -> None:
        inputs, opts, seed = case
        _, ctx = compare("conv2d", inputs, opts, normal_grad(seed + 1, inputs["x"].dtype))
        for algorithm in _algorithms(opts, inputs) if backend == "fast" else []:  # and each fast algorithm explicitly
            _, ctx = compare(
                "conv2d", inputs, {**opts, "algorithm": algorithm}, normal_grad(seed + 1, inputs["x"].dtype)
            )
            paths.add(ctx.path)

    run_matrix(conv_cases(), check, factor=3)
    if backend == "fast":
        assert paths >= {"shift", "gather", "hwn"}, f"the conv matrix only reached the {paths} path(s)"


@st.composite
def winograd_cases(draw: Any) -> tuple[dict, dict, int]:
    """3×3 stride-1 convolutions (Winograd's): padding 0..2 per side, sizes that leave partial
    2×2 and 4×4 tiles."""
    dtype = draw(DTYPES)
    pads = tuple((draw(st.integers(0, 2)), draw(st.integers(0, 2))) for _ in range(2))
    h = draw(st.integers(max(1, 3 - sum(pads[0])), 13))
    w = draw(st.integers(max(1, 3 - sum(pads[1])), 13))
    seed = draw(SEEDS)
    rng = np.random.default_rng(seed)
    c, f = draw(st.integers(1, 4)), draw(st.integers(1, 4))
    inputs = {
        "x": rng.standard_normal((draw(st.integers(1, 3)), c, h, w)).astype(dtype),
        "weight": rng.standard_normal((f, c, 3, 3)).astype(dtype),
    }
    if draw(st.booleans()):
        inputs["bias"] = rng.standard_normal(f).astype(dtype)
    algorithm = draw(st.sampled_from(["winograd", "winograd4"]))
    return inputs, {"padding": pads, "flip": draw(st.booleans()), "algorithm": algorithm}, seed


@pytest.mark.fast_only
def test_conv2d_winograd_matches_torch(torch: Any) -> None:
    def check(case: Any) -> None:
        inputs, opts, seed = case
        _, ctx = compare("conv2d", inputs, opts, normal_grad(seed + 1, inputs["x"].dtype))
        assert ctx.path == opts["algorithm"]

    run_matrix(winograd_cases(), check, factor=2)


@pytest.mark.fast_only
def test_conv2d_stride1_large_padding_takes_gather_path(torch: Any) -> None:
    """Stride 1 with padding that wastes most padded positions falls back to gathering taps:
    'hwn' when small (no Numba kernel to load), 'gather' from GATHER_MIN im2col elements."""
    rng = np.random.default_rng(3)
    inputs = {"x": rng.standard_normal((1, 2, 2, 3)), "weight": rng.standard_normal((3, 2, 4, 4))}
    _, ctx = compare("conv2d", inputs, {"padding": 2}, normal_grad(4, np.float64))
    assert ctx.path == "hwn"
    inputs = {"x": rng.standard_normal((1, 128, 2, 3)), "weight": rng.standard_normal((3, 128, 4, 4))}
    _, ctx = compare("conv2d", inputs, {"padding": 6}, normal_grad(4, np.float64))
    assert ctx.path == "gather"


# ---------------------------------------------------------------------------------------------
# pooling
# ---------------------------------------------------------------------------------------------


def _windows_see_input(n: int, k: int, s: int, d: int, pad: int, ceil_mode: bool) -> bool:
    """Whether every pooling window (torch's output-size rule) covers at least one input cell.

    With dilation a window can fall wholly in the padding; torch then routes its gradient
    to an index outside the plane (an out-of-bounds write that corrupts memory), so the
    matrix leaves such shapes out.
    """
    room = n + 2 * pad - d * (k - 1) - 1
    out = (-(-room // s) if ceil_mode else room // s) + 1
    if ceil_mode and (out - 1) * s >= n + pad:
        out -= 1
    return all(any(0 <= o * s - pad + i * d < n for i in range(k)) for o in range(out))


@st.composite
def window_cases(draw: Any, dilated: bool) -> tuple[np.ndarray, dict, int]:
    dtype = draw(DTYPES)
    kh, kw = draw(st.integers(1, 4)), draw(st.integers(1, 4))
    stride = draw(st.sampled_from([None, 1, 2, 3, 5, (1, 2), (2, 3)]))
    dilation = draw(st.sampled_from([1, 1, 2, (1, 2)])) if dilated else 1
    ph, pw = draw(st.integers(0, kh // 2)), draw(st.integers(0, kw // 2))  # torch: pad <= kernel / 2
    dh, dw = _pair(dilation)
    h_min = max(1, dh * (kh - 1) + 1 - 2 * ph)
    w_min = max(1, dw * (kw - 1) + 1 - 2 * pw)
    shape = (draw(st.integers(1, 2)), draw(st.integers(1, 3)))
    shape += (draw(st.integers(h_min, h_min + 7)), draw(st.integers(w_min, w_min + 7)))
    kind = draw(st.sampled_from(["ints", "blocks", "equal", "normal"]))
    seed = draw(SEEDS)
    x = tie_heavy(np.random.default_rng(seed), shape, kind, dtype)
    padding = ph if ph == pw and draw(st.booleans()) else (ph, pw)
    kernel = kh if kh == kw and draw(st.booleans()) else (kh, kw)
    ceil_mode = draw(st.booleans())
    s_h, s_w = _pair(kernel if stride is None else stride)
    assume(_windows_see_input(shape[2], kh, s_h, dh, ph, ceil_mode))
    assume(_windows_see_input(shape[3], kw, s_w, dw, pw, ceil_mode))
    opts = {"kernel_size": kernel, "stride": stride, "padding": padding, "ceil_mode": ceil_mode}
    if dilated:
        opts["dilation"] = dilation
    return x, opts, seed


def test_max_pool2d_matches_torch_exactly(torch: Any) -> None:
    """Ties (integers, constant regions, all-equal maps) go to the first maximum in row-major
    order, as in torch: outputs and gradients are compared bit for bit."""

    def check(case: Any) -> None:
        x, opts, seed = case
        compare("max_pool2d", {"x": x}, opts, int_grad(seed + 1, x.dtype), exact=True)

    run_matrix(window_cases(dilated=True), check, factor=3)


def test_max_pool2d_all_equal_overlapping_windows(torch: Any) -> None:
    x = np.zeros((1, 1, 5, 5))
    ref, _ = compare("max_pool2d", {"x": x}, {"kernel_size": 3, "stride": 1, "padding": 1}, np.ones((1, 1, 5, 5)), True)
    # torch sends every window's gradient to its first valid (top-left) cell
    assert ref["grad.x"].sum() == 25


@st.composite
def avg_cases(draw: Any) -> tuple[np.ndarray, dict, int]:
    x, opts, seed = draw(window_cases(dilated=False))
    opts["count_include_pad"] = draw(st.booleans())
    opts["divisor_override"] = draw(st.sampled_from([None, None, None, 3]))
    x = x + np.random.default_rng(seed).standard_normal(x.shape).astype(x.dtype)
    return x, opts, seed


def test_avg_pool2d_matches_torch(torch: Any) -> None:
    def check(case: Any) -> None:
        x, opts, seed = case
        compare("avg_pool2d", {"x": x}, opts, normal_grad(seed + 1, x.dtype))

    run_matrix(avg_cases(), check, factor=2)


@st.composite
def adaptive_cases(draw: Any) -> tuple[np.ndarray, dict, int]:
    dtype = draw(DTYPES)
    h, w = draw(st.integers(1, 9)), draw(st.integers(1, 9))
    kind = draw(st.sampled_from(["int", "pair", "none_h", "none_w", "one", "divides"]))
    if kind == "int":
        size: Any = draw(st.integers(1, 10))
    elif kind == "pair":
        size = (draw(st.integers(1, 10)), draw(st.integers(1, 10)))
    elif kind == "none_h":
        size = (None, draw(st.integers(1, 10)))
    elif kind == "none_w":
        size = (draw(st.integers(1, 10)), None)
    elif kind == "one":
        size = (1, 1)
    else:
        size = (draw(st.sampled_from([d for d in range(1, h + 1) if h % d == 0])), draw(st.integers(1, w)))
    seed = draw(SEEDS)
    x = np.random.default_rng(seed).standard_normal((draw(st.integers(1, 2)), draw(st.integers(1, 3)), h, w))
    return x.astype(dtype), {"output_size": size}, seed


def test_adaptive_avg_pool2d_matches_torch(torch: Any) -> None:
    def check(case: Any) -> None:
        x, opts, seed = case
        compare("adaptive_avg_pool2d", {"x": x}, opts, normal_grad(seed + 1, x.dtype))

    run_matrix(adaptive_cases(), check, factor=2)


@pytest.mark.parametrize("dtype", [np.float64, np.float32])
@pytest.mark.parametrize("shape", [(2, 3, 5, 7), (1, 1, 1, 1), (3, 2, 4, 1)])
def test_global_avg_pool2d_is_torch_mean(torch: Any, shape: tuple, dtype: Any) -> None:
    x = np.random.default_rng(0).standard_normal(shape).astype(dtype)
    compare("global_avg_pool2d", {"x": x}, {}, normal_grad(1, dtype))
    compare("adaptive_avg_pool2d", {"x": x}, {"output_size": 1}, normal_grad(1, dtype))


# ---------------------------------------------------------------------------------------------
# activations, linear, flatten
# ---------------------------------------------------------------------------------------------

SHAPES = st.sampled_from([(5,), (3, 4), (2, 3, 4), (2, 3, 2, 4), (1, 1)])


@st.composite
def elementwise_cases(draw: Any) -> tuple[np.ndarray, int]:
    dtype, shape, seed = draw(DTYPES), draw(SHAPES), draw(SEEDS)
    rng = np.random.default_rng(seed)
    scale = draw(st.sampled_from([1.0, 1.0, 20.0, 800.0]))  # large |x| for sigmoid / tanh saturation
    x = rng.standard_normal(shape) * scale
    x[rng.random(shape) < 0.3] = 0.0  # exact zeros: relu'(0) = 0 in torch
    return x.astype(dtype), seed


@pytest.mark.parametrize("op", ["relu", "relu6", "leaky_relu", "sigmoid", "tanh"])
def test_elementwise_activations_match_torch(torch: Any, op: str) -> None:
    def check(case: Any) -> None:
        x, seed = case
        opts = {"negative_slope": [0.01, 0.2, 1.5][seed % 3]} if op == "leaky_relu" else {}
        compare(op, {"x": x}, opts, normal_grad(seed + 1, x.dtype))

    run_matrix(elementwise_cases(), check)


@pytest.mark.parametrize("op", ["softmax", "log_softmax"])
def test_softmax_matches_torch_on_every_axis(torch: Any, op: str) -> None:
    def check(case: Any) -> None:
        (x, seed), axis_pick = case
        axis = axis_pick % (2 * x.ndim) - x.ndim  # every axis, negative and positive
        compare(op, {"x": x}, {"axis": axis}, normal_grad(seed + 1, x.dtype))

    run_matrix(st.tuples(elementwise_cases(), st.integers(0, 7)), check)


@st.composite
def linear_cases(draw: Any) -> tuple[dict, int]:
    dtype, seed = draw(DTYPES), draw(SEEDS)
    rng = np.random.default_rng(seed)
    lead = draw(st.sampled_from([(1,), (4,), (2, 3)]))
    n_in, n_out = draw(st.integers(1, 6)), draw(st.integers(1, 5))
    inputs = {"x": rng.standard_normal((*lead, n_in)), "weight": rng.standard_normal((n_out, n_in))}
    if draw(st.booleans()):
        inputs["bias"] = rng.standard_normal(n_out)
    return {k: v.astype(dtype) for k, v in inputs.items()}, seed


def test_linear_matches_torch(torch: Any) -> None:
    def check(case: Any) -> None:
        inputs, seed = case
        compare("linear", inputs, {}, normal_grad(seed + 1, inputs["x"].dtype))

    run_matrix(linear_cases(), check)


def test_flatten_matches_torch(torch: Any) -> None:
    def check(case: Any) -> None:
        (x, seed), pick = case
        compare("flatten", {"x": x}, {"start_dim": pick % x.ndim}, normal_grad(seed + 1, x.dtype), exact=True)

    run_matrix(st.tuples(elementwise_cases(), st.integers(0, 3)), check)


# ---------------------------------------------------------------------------------------------
# dropout
# ---------------------------------------------------------------------------------------------


def check_dropout_against_torch(x: np.ndarray, p: float, seed: int, g: np.ndarray, ref: dict) -> None:
    """glassnet's dropout (own mask) against torch's results (``ref``, torch's own mask).

    Where both kept a unit the values and gradients agree (same 1/(1−p) scale); a unit is
    zeroed in forward exactly where backward blocks its gradient (same mask both ways).
    """
    got, _ = glassnet_run("dropout", {"x": x}, {"p": p, "training": True, "seed": seed}, g)
    out, dx = got["out"], got["grad.x"]
    assert out.dtype == x.dtype and dx.dtype == x.dtype
    kept, t_kept = out != 0, ref["out"] != 0
    np.testing.assert_array_equal(dx != 0, kept, err_msg="backward does not use forward's mask")
    both = kept & t_kept
    tol = TOL[x.dtype]
    np.testing.assert_allclose(out[both], ref["out"][both], rtol=tol[0])
    np.testing.assert_allclose(dx[both], ref["grad.x"][both], rtol=tol[0])
    np.testing.assert_allclose(out[kept], x[kept] / (1 - p), rtol=tol[0])


def test_dropout_matches_torch_semantics(torch: Any) -> None:
    def check(case: Any) -> None:
        dtype, p, seed = case
        rng = np.random.default_rng(seed)
        shape = (40, 50)
        x = (rng.uniform(0.5, 1.5, shape) * rng.choice([-1, 1], shape)).astype(dtype)  # no zeros
        ref = torch_reference("dropout", {"x": x}, {"p": p, "training": True, "seed": seed}, normal_grad(seed, dtype))
        check_dropout_against_torch(x, p, seed, ref["grad_out"], ref)
        # torch's own semantics with glassnet's mask: out = x · keep / (1 − p), grad = g · keep / (1 − p)
        got, _ = glassnet_run("dropout", {"x": x}, {"p": p, "training": True, "seed": seed}, ref["grad_out"])
        keep = torch.from_numpy(got["out"] != 0)
        xt = torch.tensor(x, requires_grad=True)
        yt = xt * keep.to(xt.dtype).div_(1 - p)
        yt.backward(torch.from_numpy(ref["grad_out"]))
        assert_close(got["out"], yt.detach().numpy(), "dropout out (same mask)")
        assert_close(got["grad.x"], xt.grad.numpy(), "dropout grad (same mask)")
        # E[out] = x: the kept fraction and the mean of dropout(ones) are 1 − p and 1 (4 sigma)
        ones = np.ones((100, 100), dtype=dtype)
        o, _ = F.dropout_forward(ones, p, True, np.random.default_rng(seed))
        t_o = torch.nn.functional.dropout(torch.from_numpy(ones), p, True).numpy()
        sigma = math.sqrt(p * (1 - p) / ones.size)
        for arr in (o, t_o):
            assert abs((arr != 0).mean() - (1 - p)) < 4 * sigma
            assert abs(arr.mean() - 1) < 4 * sigma / (1 - p)

    run_matrix(st.tuples(DTYPES, st.sampled_from([0.1, 0.25, 0.5, 0.8]), SEEDS), check)


@pytest.mark.parametrize(("p", "training"), [(0.5, False), (0.0, True), (0.0, False)])
def test_dropout_identity_cases_match_torch(torch: Any, p: float, training: bool) -> None:
    x = np.random.default_rng(0).standard_normal((3, 4))
    compare("dropout", {"x": x}, {"p": p, "training": training, "seed": 0}, normal_grad(1, np.float64), exact=True)


# ---------------------------------------------------------------------------------------------
# normalisation
# ---------------------------------------------------------------------------------------------


@st.composite
def batch_norm_cases(draw: Any) -> tuple[dict, dict, int]:
    dtype, seed = draw(DTYPES), draw(SEEDS)
    rng = np.random.default_rng(seed)
    c = draw(st.integers(1, 4))
    shape = draw(st.sampled_from([(4, c), (2, c, 3, 2), (3, c, 1, 1), (1, c, 2, 3), (2, c)]))
    training = draw(st.booleans())
    track = not training or draw(st.booleans())  # inference needs running statistics
    inputs = {"x": rng.standard_normal(shape) * 2 + rng.standard_normal((1, c) + (1,) * (len(shape) - 2))}
    if track:
        inputs["running_mean"] = rng.standard_normal(c)
        inputs["running_var"] = rng.uniform(0.2, 3.0, c)
    if draw(st.booleans()):
        inputs["weight"] = rng.standard_normal(c)
        inputs["bias"] = rng.standard_normal(c)
    opts = {
        "training": training,
        "momentum": draw(st.sampled_from([0.1, 0.3, 1.0])),
        "eps": draw(st.sampled_from([1e-5, 1e-3])),
    }
    return {k: v.astype(dtype) for k, v in inputs.items()}, opts, seed


def test_conv2d_bn_relu_matches_torch(torch: Any) -> None:
    """relu(batch_norm(conv2d(x), running statistics) + residual) against torch's ops, on both the
    folded inference path (forward under no_grad) and the recorded one."""
    import glassnet

    def check(case: Any) -> None:
        inputs, opts, seed = case
        rng = np.random.default_rng(seed)
        x = inputs["x"]
        f, (n, c, h, w) = int(rng.integers(2, 5)), x.shape
        ho, wo = h - 2 + 2 * opts["padding"], w - 2 + 2 * opts["padding"]
        more = {
            "weight": rng.standard_normal((f, c, 3, 3)),
            "bias": rng.standard_normal(f),
            "running_mean": rng.standard_normal(f) * 0.3,
            "running_var": rng.uniform(0.3, 2.0, f),
            "bn_weight": rng.standard_normal(f),
            "bn_bias": rng.standard_normal(f),
            "residual": rng.standard_normal((n, f, ho, wo)),
        }
        always = ("weight", "running_mean", "running_var")
        kept = {k: v.astype(x.dtype) for k, v in more.items() if k in always or rng.random() < 0.7}
        inputs = {**inputs, **kept}
        with glassnet.no_grad() if opts.pop("no_grad") else contextlib.nullcontext():
            compare("conv2d_bn_relu", inputs, opts, normal_grad(seed + 1, x.dtype))

    @st.composite
    def cases(draw: Any) -> tuple[dict, dict, int]:
        dtype, seed = draw(DTYPES), draw(SEEDS)
        shape = (draw(st.integers(1, 3)), draw(st.integers(2, 4)), draw(st.integers(3, 7)), draw(st.integers(3, 7)))
        x = np.random.default_rng(seed).standard_normal(shape).astype(dtype)
        opts = {
            "padding": draw(st.integers(0, 1)),
            "eps": draw(st.sampled_from([1e-5, 1e-3])),
            "no_grad": draw(st.booleans()),
        }
        return {"x": x}, opts, seed

    run_matrix(cases(), check)


def test_batch_norm_relu_matches_torch(torch: Any) -> None:
    """relu(batch_norm(x) + residual) against torch's three ops, with and without the residual;
    the gradient of the residual is ReLU's masked gradient."""

    def check(case: Any) -> None:
        inputs, opts, seed = case
        rng = np.random.default_rng(seed)
        if inputs["x"].ndim == 4 and rng.random() < 0.7:
            inputs = {**inputs, "residual": rng.standard_normal(inputs["x"].shape).astype(inputs["x"].dtype)}
        compare("batch_norm_relu", inputs, opts, normal_grad(seed + 1, inputs["x"].dtype))

    run_matrix(batch_norm_cases(), check)


def test_batch_norm_matches_torch(torch: Any) -> None:
    """Training (batch statistics, running-stat update with momentum and the unbiased
    variance) and inference (running statistics), with and without the affine parameters."""

    def check(case: Any) -> None:
        inputs, opts, seed = case
        compare("batch_norm", inputs, opts, normal_grad(seed + 1, inputs["x"].dtype))

    run_matrix(batch_norm_cases(), check, factor=2)


@st.composite
def lrn_cases(draw: Any) -> tuple[np.ndarray, dict, int]:
    dtype, seed = draw(DTYPES), draw(SEEDS)
    c = draw(st.integers(1, 7))
    shape = draw(st.sampled_from([(2, c, 3, 2), (1, c, 4), (2, c, 1, 1)]))
    x = np.random.default_rng(seed).standard_normal(shape) * draw(st.sampled_from([1.0, 5.0]))
    opts = {
        "size": draw(st.integers(1, 6)),
        "alpha": draw(st.sampled_from([1e-4, 1e-2, 0.5])),
        "beta": draw(st.sampled_from([0.75, 0.5, 1.0, 2.0])),
        "k": draw(st.sampled_from([1.0, 2.0, 0.5])),
    }
    return x.astype(dtype), opts, seed


def test_local_response_norm_matches_torch(torch: Any) -> None:
    def check(case: Any) -> None:
        x, opts, seed = case
        compare("local_response_norm", {"x": x}, opts, normal_grad(seed + 1, x.dtype))

    run_matrix(lrn_cases(), check, factor=2)


# ---------------------------------------------------------------------------------------------
# losses
# ---------------------------------------------------------------------------------------------

REDUCTIONS = st.sampled_from(["mean", "sum", "none"])


@st.composite
def cross_entropy_cases(draw: Any) -> tuple[dict, dict, int]:
    dtype, seed = draw(DTYPES), draw(SEEDS)
    rng = np.random.default_rng(seed)
    n, k = draw(st.integers(1, 5)), draw(st.integers(2, 6))
    logits = rng.standard_normal((n, k)) * draw(st.sampled_from([1.0, 1.0, 30.0]))
    opts = {"label_smoothing": draw(st.sampled_from([0.0, 0.1, 0.5, 1.0])), "reduction": draw(REDUCTIONS)}
    return {"logits": logits.astype(dtype), "target": rng.integers(0, k, n)}, opts, seed


def test_cross_entropy_matches_torch(torch: Any) -> None:
    def check(case: Any) -> None:
        inputs, opts, seed = case
        compare("cross_entropy", inputs, opts, normal_grad(seed + 1, inputs["logits"].dtype))

    run_matrix(cross_entropy_cases(), check, factor=2)


@st.composite
def pairwise_loss_cases(draw: Any) -> tuple[dict, dict, int]:
    dtype, shape, seed = draw(DTYPES), draw(SHAPES), draw(SEEDS)
    rng = np.random.default_rng(seed)
    a = rng.standard_normal(shape) * draw(st.sampled_from([1.0, 40.0]))
    b = rng.uniform(0, 1, shape)
    b[rng.random(shape) < 0.3] = rng.integers(0, 2)  # hard 0/1 targets next to soft ones
    return {"a": a.astype(dtype), "b": b.astype(dtype)}, {"reduction": draw(REDUCTIONS)}, seed


@pytest.mark.parametrize(
    ("op", "names"), [("binary_cross_entropy_with_logits", ("logits", "target")), ("mse_loss", ("pred", "target"))]
)
def test_pairwise_losses_match_torch(torch: Any, op: str, names: tuple[str, str]) -> None:
    def check(case: Any) -> None:
        ab, opts, seed = case
        inputs = dict(zip(names, (ab["a"], ab["b"]), strict=True))
        compare(op, inputs, opts, normal_grad(seed + 1, ab["a"].dtype))

    run_matrix(pairwise_loss_cases(), check)


# ---------------------------------------------------------------------------------------------
# non-finite inputs: glassnet follows torch (relu(-inf) = 0; NaN and all -inf windows in max pooling)
# ---------------------------------------------------------------------------------------------


@pytest.mark.filterwarnings("ignore:invalid value encountered:RuntimeWarning")
def test_relu_of_minus_infinity_is_zero(torch: Any) -> None:
    compare("relu", {"x": np.array([-np.inf, -1.0, 0.0, 2.0, np.inf])}, {}, np.ones(5), exact=True)


def test_max_pool2d_minus_infinity_window_routes_to_a_real_cell(torch: Any) -> None:
    x = np.full((1, 1, 2, 2), -np.inf)
    compare("max_pool2d", {"x": x}, {"kernel_size": 2, "stride": 1, "padding": 1}, np.ones((1, 1, 3, 3)), exact=True)


def test_max_pool2d_nan_takes_the_gradient(torch: Any) -> None:
    x = np.array([[[[1.0, np.nan], [3.0, 2.0]]]])
    compare("max_pool2d", {"x": x}, {"kernel_size": 2}, np.ones((1, 1, 1, 1)), exact=True)


# ---------------------------------------------------------------------------------------------
# modules
# ---------------------------------------------------------------------------------------------

F64 = np.float64


def _modules() -> dict[str, tuple[Callable, Callable, tuple[int, ...], bool]]:
    """name -> (glassnet module, torch module (given torch), input shape, train)."""
    return {
        "Conv2d": (
            lambda: gnn.Conv2d(3, 4, 3, stride=2, padding=1, rng=0, dtype=F64),
            lambda t: t.nn.Conv2d(3, 4, 3, stride=2, padding=1),
            (2, 3, 7, 6),
            True,
        ),
        "Conv2d_same_even_grouped": (
            lambda: gnn.Conv2d(4, 6, (2, 3), padding="same", groups=2, bias=False, rng=1, dtype=F64),
            lambda t: t.nn.Conv2d(4, 6, (2, 3), padding="same", groups=2, bias=False),
            (2, 4, 5, 6),
            True,
        ),
        "Conv2d_depthwise_dilated": (
            lambda: gnn.Conv2d(3, 6, 3, padding=(2, 1), dilation=(2, 1), groups=3, rng=2, dtype=F64),
            lambda t: t.nn.Conv2d(3, 6, 3, padding=(2, 1), dilation=(2, 1), groups=3),
            (1, 3, 6, 5),
            True,
        ),
        "Linear": (lambda: gnn.Linear(5, 3, rng=3, dtype=F64), lambda t: t.nn.Linear(5, 3), (4, 5), True),
        "Linear_no_bias": (
            lambda: gnn.Linear(5, 3, bias=False, rng=4, dtype=F64),
            lambda t: t.nn.Linear(5, 3, bias=False),
            (2, 3, 5),
            True,
        ),
        "BatchNorm2d": (lambda: gnn.BatchNorm2d(3, dtype=F64), lambda t: t.nn.BatchNorm2d(3), (4, 3, 3, 2), True),
        "BatchNorm2d_options": (
            lambda: gnn.BatchNorm2d(3, eps=1e-3, momentum=0.3, affine=False, dtype=F64),
            lambda t: t.nn.BatchNorm2d(3, eps=1e-3, momentum=0.3, affine=False),
            (2, 3, 2, 2),
            True,
        ),
        "BatchNorm2d_untracked": (
            lambda: gnn.BatchNorm2d(2, track_running_stats=False, dtype=F64),
            lambda t: t.nn.BatchNorm2d(2, track_running_stats=False),
            (2, 2, 3, 3),
            True,
        ),
        "BatchNorm1d": (lambda: gnn.BatchNorm1d(4, dtype=F64), lambda t: t.nn.BatchNorm1d(4), (5, 4), True),
        "MaxPool2d": (
            lambda: gnn.MaxPool2d(3, 2, 1, ceil_mode=True),
            lambda t: t.nn.MaxPool2d(3, 2, 1, ceil_mode=True),
            (2, 2, 6, 7),
            True,
        ),
        "AvgPool2d": (
            lambda: gnn.AvgPool2d(3, 2, 1, ceil_mode=True, count_include_pad=False),
            lambda t: t.nn.AvgPool2d(3, 2, 1, ceil_mode=True, count_include_pad=False),
            (2, 2, 6, 7),
            True,
        ),
        "AdaptiveAvgPool2d": (
            lambda: gnn.AdaptiveAvgPool2d((3, None)),
            lambda t: t.nn.AdaptiveAvgPool2d((3, None)),
            (2, 2, 7, 5),
            True,
        ),
        "LocalResponseNorm": (
            lambda: gnn.LocalResponseNorm(5, alpha=1e-2, beta=0.75, k=2.0),
            lambda t: t.nn.LocalResponseNorm(5, alpha=1e-2, beta=0.75, k=2.0),
            (2, 7, 3, 3),
            True,
        ),
        "ReLU": (gnn.ReLU, lambda t: t.nn.ReLU(), (3, 4), True),
        "LeakyReLU": (lambda: gnn.LeakyReLU(0.2), lambda t: t.nn.LeakyReLU(0.2), (3, 4), True),
        "Sigmoid": (gnn.Sigmoid, lambda t: t.nn.Sigmoid(), (3, 4), True),
        "Tanh": (gnn.Tanh, lambda t: t.nn.Tanh(), (3, 4), True),
        "Softmax": (lambda: gnn.Softmax(axis=1), lambda t: t.nn.Softmax(dim=1), (3, 4, 2), True),
        "LogSoftmax": (lambda: gnn.LogSoftmax(axis=1), lambda t: t.nn.LogSoftmax(dim=1), (3, 4), True),
        "Flatten": (gnn.Flatten, lambda t: t.nn.Flatten(), (2, 3, 2, 2), True),
        "Dropout_eval": (lambda: gnn.Dropout(0.5, rng=0), lambda t: t.nn.Dropout(0.5), (3, 4), False),
        "Identity": (gnn.Identity, lambda t: t.nn.Identity(), (3, 4), True),
    }


def _load_into_torch(torch: Any, gm: Any, tm: Any) -> None:
    sd, tsd = gm.state_dict(), tm.state_dict()
    assert list(sd) == list(tsd), f"state_dict keys differ: {list(sd)} vs {list(tsd)}"
    tm.load_state_dict({k: torch.tensor(np.array(v)) for k, v in sd.items()})


def _check_module_state(gm: Any, tm: Any, what: str) -> None:
    tsd = tm.state_dict()
    for key, v in gm.state_dict().items():
        assert_close(v, tsd[key].numpy(), f"{what}: {key}", exact=v.dtype.kind != "f")
    for name, p in gm.named_parameters():
        tp = dict(tm.named_parameters())[name]
        if tp.grad is None:
            assert p.grad is None, f"{what}: {name}.grad"
        else:
            assert_close(p.grad, tp.grad.numpy(), f"{what}: {name}.grad")


@pytest.mark.parametrize("name", list(_modules()))
def test_module_matches_torch(torch: Any, name: str) -> None:
    """Output, input gradient, Parameter.grad (accumulated over two steps) and buffers."""
    make_g, make_t, shape, train = _modules()[name]
    gm, tm = make_g(), make_t(torch).double()
    _load_into_torch(torch, gm, tm)
    gm.train(train)
    tm.train(train)
    rng = np.random.default_rng(0)
    for step in range(2):
        x = rng.standard_normal(shape) + rng.standard_normal()
        xt = torch.tensor(x, requires_grad=True)
        gx = glassnet.Tensor(x, requires_grad=True)
        out, t_out = gm(gx), tm(xt)
        assert_close(out, t_out.detach().numpy(), f"{name} step {step}: output")
        g = rng.standard_normal(out.shape)
        out.backward(g)
        dx = gx.grad
        backward(torch, t_out, g)
        assert_close(dx, xt.grad.numpy(), f"{name} step {step}: input grad")
        _check_module_state(gm, tm, f"{name} step {step}")
    gm.eval()
    tm.eval()
    x = rng.standard_normal(shape)
    assert_close(gm(x), tm(torch.tensor(x)).detach().numpy(), f"{name} eval output")


# ---------------------------------------------------------------------------------------------
# a whole network
# ---------------------------------------------------------------------------------------------


def torch_lenet5(torch: Any, variant: str) -> Any:
    nn = torch.nn
    act = nn.ReLU if variant == "modern" else nn.Tanh
    pool = nn.MaxPool2d if variant == "modern" else nn.AvgPool2d
    return nn.Sequential(
        nn.Conv2d(1, 6, 5, padding=2),
        act(),
        pool(2),
        nn.Conv2d(6, 16, 5),
        act(),
        pool(2),
        nn.Flatten(),
        nn.Linear(16 * 5 * 5, 120),
        act(),
        nn.Linear(120, 84),
        act(),
        nn.Linear(84, 10),
    )


@pytest.mark.parametrize(("dtype", "tol"), [(np.float64, (1e-10, 1e-10)), (np.float32, (1e-4, 1e-5))])
@pytest.mark.parametrize("variant", ["modern", "classic"])
def test_lenet5_matches_torch(torch: Any, variant: str, dtype: Any, tol: tuple[float, float]) -> None:
    """Logits, loss and every parameter gradient after one forward/backward."""
    net = lenet5(variant=variant, rng=0).to(dtype)
    tnet = torch_lenet5(torch, variant).to(torch.float64 if dtype == np.float64 else torch.float32)
    _load_into_torch(torch, net, tnet)
    rng = np.random.default_rng(1)
    x = rng.standard_normal((3, 1, 28, 28)).astype(dtype)
    y = rng.integers(0, 10, 3)
    logits = net(x)
    loss = F.cross_entropy(logits, y)
    loss.backward()
    t_logits = tnet(torch.from_numpy(x))
    t_loss = torch.nn.functional.cross_entropy(t_logits, torch.from_numpy(y))
    t_loss.backward()
    assert_close(logits, t_logits.detach().numpy(), "logits", tol=tol)
    assert_close(loss, t_loss.detach().numpy(), "loss", tol=tol)
    t_params = dict(tnet.named_parameters())
    assert [n for n, _ in net.named_parameters()] == list(t_params)
    for name, p in net.named_parameters():
        assert_close(p.grad, t_params[name].grad.numpy(), f"{name}.grad", tol=tol)


# ---------------------------------------------------------------------------------------------
# golden cases: torch's results stored on disk, checked without torch
# ---------------------------------------------------------------------------------------------


def _golden_index(f: Any) -> dict[str, Any]:
    """The file's one metadata entry: ``{"format", "torch", "cases": {id: {op, opts, exact}}}`` (ids in order)."""
    index = json.loads(f.metadata()["golden"])
    index["cases"] = {c["id"]: {k: v for k, v in c.items() if k != "id"} for c in index["cases"]}
    return index


@functools.cache
def load_golden() -> tuple[dict[str, Any], dict[str, np.ndarray]]:
    """(index, tensors) of the golden file, read once."""
    from safetensors import safe_open

    with safe_open(str(GOLDEN), "np") as f:
        return _golden_index(f), {k: f.get_tensor(k) for k in f.keys()}


def golden_case_ids() -> list[str]:
    """The stored case ids, for parametrisation (one placeholder id when the file cannot be read,
    so that collection works, the generator can import this module, and the test reports why)."""
    from safetensors import safe_open

    try:
        with safe_open(str(GOLDEN), "np") as f:
            return list(_golden_index(f)["cases"])
    except Exception:  # reported by test_golden_case
        return ["<unreadable fixture>"]


def golden_case(case_id: str) -> tuple[dict, dict, dict]:
    """(spec {op, opts, exact}, inputs, torch's results) of one stored case."""
    index, tensors = load_golden()
    spec = index["cases"][case_id]
    prefix = f"{case_id}/"
    inputs, ref = {}, {}
    for key, arr in tensors.items():
        if key.startswith(prefix):
            sub = key[len(prefix) :]
            if sub.startswith("in."):
                inputs[sub[3:]] = arr
            else:
                ref[sub] = arr
    return spec, inputs, ref


@pytest.mark.parametrize("case_id", golden_case_ids())
def test_golden_case(case_id: str) -> None:
    """glassnet against torch's stored outputs and gradients (runs without torch)."""
    assert GOLDEN.exists(), f"{GOLDEN} is missing: run `.venv/bin/python {GOLDEN_MAKER.relative_to(HERE.parent)}`"
    spec, inputs, ref = golden_case(case_id)
    op, opts = spec["op"], spec["opts"]
    if op == "dropout" and opts.get("training", True) and opts.get("p", 0.5) > 0:
        check_dropout_against_torch(inputs["x"], opts["p"], opts["seed"], ref["grad_out"], ref)
        return
    got, _ = glassnet_run(op, inputs, opts, ref["grad_out"])
    check_results(op, got, ref, opts, exact=spec["exact"])


def _golden_maker() -> Any:
    spec = importlib.util.spec_from_file_location("make_ops_golden", GOLDEN_MAKER)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_golden_fixture_is_current(torch: Any) -> None:
    """The stored cases are the maker's cases, and torch (as installed) still gives the stored results."""
    index, _ = load_golden()
    cases = _golden_maker().build_cases()
    assert list(index["cases"]) == [c["id"] for c in cases]
    assert GOLDEN.stat().st_size < 1_500_000
    for case in cases:
        spec, inputs, ref = golden_case(case["id"])
        assert spec == {"op": case["op"], "opts": case["opts"], "exact": case["exact"]}
        assert set(inputs) == set(case["inputs"])
        for name, arr in case["inputs"].items():
            np.testing.assert_array_equal(inputs[name], arr)
            assert inputs[name].dtype == arr.dtype
        now = torch_reference(case["op"], inputs, case["opts"], ref["grad_out"])
        if case["op"] == "dropout":
            continue  # torch's random stream may change between versions
        assert set(now) == set(ref)
        for key in ref:
            assert_close(ref[key], now[key], f"{case['id']} {key}", exact=case["exact"])


@pytest.mark.fast_only  # the reference has one conv path, checked by test_golden_case
def test_golden_fixture_covers_every_op_and_every_conv_path() -> None:
    index, _ = load_golden()
    ids = list(index["cases"])
    ops = {spec["op"] for spec in index["cases"].values()}
    wanted = {name.removesuffix("_forward") for name in F.__all__ if name.endswith("_forward")}
    assert ops == wanted
    assert len(ids) >= 40
    paths = set()
    for cid in ids:
        spec, inputs, ref = golden_case(cid)
        if spec["op"] == "conv2d":
            for algorithm in _algorithms(spec["opts"], inputs):
                opts = {**spec["opts"], "algorithm": algorithm}
                got, ctx = glassnet_run("conv2d", inputs, opts, ref["grad_out"])
                check_results("conv2d", got, {k: v for k, v in ref.items()}, opts, exact=spec["exact"])
                paths.add(ctx.path)
    assert paths == {"shift", "gather", "hwn", "winograd", "winograd4"}


def test_max_pool2d_nan_window_with_several_nans_routes_to_the_last(torch: Any) -> None:
    x = np.array([[[[np.nan, 5.0, 1.0], [2.0, np.nan, 7.0], [1.0, 1.0, np.nan]]]])
    compare(
        "max_pool2d", {"x": x}, {"kernel_size": 2, "stride": 1}, np.arange(1.0, 5.0).reshape(1, 1, 2, 2), exact=True
    )
