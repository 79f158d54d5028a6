"""The reference ops on another Array-API library: array-api-strict, on both of its devices.

array-api-strict implements the standard and nothing more. Its arrays refuse NumPy-only
methods, refuse to mix with arrays of another device, and on its second device
(``Device("device1")``) refuse to be converted to NumPy at all: an op that quietly falls
back to NumPy (``np.asarray``, ``sliding_window_view``, a NumPy mask) raises there. Each
test runs an op forward and backward on strict arrays and checks that

* the output and every gradient are strict arrays on the input's device (so is every
  array the op saved for backward);
* their values equal the same op's results on NumPy (float64 to 1e-12).

The GPU path (CuPy, ``glassnet[gpu]``) goes through the very same code; it is exercised
here through array-api-strict, not on a GPU.
"""

from __future__ import annotations

import copy
from collections.abc import Callable
from typing import Any

import numpy as np
import pytest

import glassnet.functional as F
from glassnet.autograd import Op, Tensor, ops, use_backend
from glassnet.backend import array_namespace, as_float, device_of, result_dtype, to_numpy

xps = pytest.importorskip("array_api_strict")

DEVICES = [xps.Device("CPU_DEVICE"), xps.Device("device1")]
StrictArray = type(xps.asarray(0.0))


@pytest.fixture(params=DEVICES, ids=["CPU_DEVICE", "device1"])
def device(request: pytest.FixtureRequest) -> Any:
    return request.param


def to_strict(a: Any, device: Any) -> Any:
    return xps.asarray(a, device=device) if isinstance(a, np.ndarray) else a


def assert_on(a: Any, device: Any, what: str) -> None:
    assert isinstance(a, StrictArray), f"{what}: a {type(a).__name__}, not an array_api_strict array"
    assert a.device == device, f"{what}: on {a.device}, expected {device}"


def compare(
    op: Op, inputs: tuple[Any, ...], opts: dict[str, Any], device: Any, grad_seed: int = 1, tol: float = 1e-12
) -> None:
    """``op`` forward and backward on strict arrays equals ``op`` on NumPy (reference backend)."""
    with use_backend("reference"):
        want_out, want_ctx = op.forward(*inputs, **copy.deepcopy(opts))  # a copy: dropout's rng is used twice
        g = np.random.default_rng(grad_seed).standard_normal(np.shape(want_out)).astype(np.asarray(want_out).dtype)
        want_grads = op.backward(g, want_ctx)
    strict_inputs = tuple(to_strict(a, device) for a in inputs)
    out, ctx = op.forward(*strict_inputs, **copy.deepcopy(opts))  # strict arrays always run the reference
    assert ctx.backend == "reference"
    assert_on(out, device, f"{op.__name__} output")
    for key, value in ctx.items():
        if hasattr(value, "shape") and hasattr(value, "dtype"):
            assert_on(value, device, f"{op.__name__} ctx[{key!r}]")
    grads = op.backward(xps.asarray(g, device=device), ctx)
    np.testing.assert_allclose(to_numpy(out), want_out, rtol=tol, atol=tol, err_msg=f"{op.__name__} output")
    assert len(grads) == len(want_grads)
    for i, (got, want) in enumerate(zip(grads, want_grads, strict=True)):
        assert (got is None) == (want is None), f"{op.__name__} gradient {i}"
        if want is not None:
            assert_on(got, device, f"{op.__name__} gradient {i}")
            np.testing.assert_allclose(to_numpy(got), want, rtol=tol, atol=tol, err_msg=f"{op.__name__} grad {i}")


def _rng(seed: int = 0) -> np.random.Generator:
    return np.random.default_rng(seed)


# ------------------------------------------------------------------------------------- the functional ops

CONV_CASES = [
    ((2, 2, 6, 7), (3, 2, 3, 3), True, {}),
    ((1, 4, 7, 6), (6, 2, 3, 2), True, {"groups": 2, "padding": ((1, 0), (2, 1)), "stride": (2, 1)}),
    ((2, 3, 7, 7), (3, 1, 3, 3), False, {"groups": 3, "dilation": 2, "padding": "same", "flip": True}),
    ((1, 2, 8, 9), (4, 2, 4, 3), True, {"stride": 3, "padding": (1, 2), "dilation": (1, 2)}),
    ((1, 1, 5, 5), (2, 1, 2, 2), True, {"padding": "valid", "algorithm": "gather"}),
]


@pytest.mark.parametrize("case", range(len(CONV_CASES)))
def test_conv2d(case: int, device: Any) -> None:
    x_shape, w_shape, bias, opts = CONV_CASES[case]
    rng = _rng(case)
    b = rng.standard_normal(w_shape[0]) if bias else None
    compare(F.conv2d, (rng.standard_normal(x_shape), rng.standard_normal(w_shape), b), opts, device)


@pytest.mark.parametrize(
    "opts",
    [
        {"kernel_size": 2},
        {"kernel_size": 3, "stride": 2, "padding": 1, "ceil_mode": True},
        {"kernel_size": (2, 3), "stride": (1, 2), "dilation": (2, 1), "padding": (1, 1)},
        {"kernel_size": 16, "stride": 4},  # more than 255 cells
    ],
    ids=["2x2", "3x3_s2_p1_ceil", "dilated", "16x16"],
)
def test_max_pool2d(opts: dict[str, Any], device: Any) -> None:
    rng = _rng(2)
    x = rng.integers(-2, 3, (2, 3, 20, 18)).astype(np.float64)  # ties
    x[0, 0, 1, 1] = x[0, 0, 2, 2] = np.nan  # NaN windows
    x[1, 2, :6, :6] = -np.inf  # all −∞ windows next to the padding
    compare(F.max_pool2d, (x,), opts, device)


@pytest.mark.parametrize(
    "opts",
    [
        {"kernel_size": 2},
        {"kernel_size": 3, "stride": 2, "padding": 1, "ceil_mode": True, "count_include_pad": False},
        {"kernel_size": (2, 3), "stride": (1, 2), "padding": (1, 1), "ceil_mode": True},
        {"kernel_size": 2, "divisor_override": 3},
    ],
)
def test_avg_pool2d(opts: dict[str, Any], device: Any) -> None:
    compare(F.avg_pool2d, (_rng(3).standard_normal((2, 2, 7, 6)),), opts, device)


@pytest.mark.parametrize("output_size", [(3, 2), 1, (7, 6), (None, 4), (9, 8)])
def test_adaptive_avg_pool2d(output_size: Any, device: Any) -> None:
    compare(F.adaptive_avg_pool2d, (_rng(4).standard_normal((2, 2, 7, 6)),), {"output_size": output_size}, device)


def test_global_avg_pool2d(device: Any) -> None:
    compare(F.global_avg_pool2d, (_rng(5).standard_normal((2, 3, 4, 5)),), {}, device)


@pytest.mark.parametrize(
    "op, opts",
    [
        (F.relu, {}),
        (F.leaky_relu, {"negative_slope": 0.2}),
        (F.sigmoid, {}),
        (F.tanh, {}),
        (F.softmax, {"axis": 1}),
        (F.log_softmax, {}),
        (F.flatten, {"start_dim": 1}),
        (F.dropout, {"p": 0.5, "training": False}),
        (F.local_response_norm, {"size": 3, "alpha": 0.5, "beta": 0.75, "k": 1.5}),
    ],
    ids=lambda v: v.__name__ if isinstance(v, Op) else None,
)
def test_elementwise_and_shape_ops(op: Op, opts: dict[str, Any], device: Any) -> None:
    compare(op, (3 * _rng(6).standard_normal((2, 5, 3, 4)),), opts, device)


def test_dropout_mask_comes_from_the_host_rng(device: Any) -> None:
    """The same seed drops the same units on NumPy and on the device: the mask is drawn on the host."""
    x = _rng(7).standard_normal((4, 30))
    want, _ = F.dropout.forward(x, 0.4, True, np.random.default_rng(11))
    got, ctx = F.dropout.forward(xps.asarray(x, device=device), 0.4, True, np.random.default_rng(11))
    assert_on(got, device, "dropout output")
    assert_on(ctx.mask, device, "dropout mask")
    np.testing.assert_array_equal(to_numpy(got), want)
    compare(F.dropout, (x,), {"p": 0.4, "training": True, "rng": np.random.default_rng(11)}, device)


@pytest.mark.parametrize("x_shape, bias", [((3, 4), True), ((2, 3, 4), False), ((4,), True)])
def test_linear(x_shape: tuple[int, ...], bias: bool, device: Any) -> None:
    rng = _rng(8)
    b = rng.standard_normal(5) if bias else None
    compare(F.linear, (rng.standard_normal(x_shape), rng.standard_normal((5, 4)), b), {}, device)


@pytest.mark.parametrize("shape", [(3, 2, 2, 3), (5, 3)])
@pytest.mark.parametrize("training", [True, False])
def test_batch_norm(shape: tuple[int, ...], training: bool, device: Any) -> None:
    rng = _rng(9)
    c = shape[1]
    x, weight, bias = rng.standard_normal(shape), rng.standard_normal(c), rng.standard_normal(c)
    stats = {}
    for where in ("numpy", "strict"):  # running statistics are updated in place, on their own device
        mean, var = rng.standard_normal(c) * 0 + 0.5, np.full(c, 2.0)
        if where == "strict":
            mean, var = xps.asarray(mean, device=device), xps.asarray(var, device=device)
            out, _ = F.batch_norm.forward(xps.asarray(x, device=device), mean, var, weight, bias, training=training)
            assert_on(out, device, "batch_norm output")
        else:
            F.batch_norm.forward(x, mean, var, weight, bias, training=training)
        stats[where] = (to_numpy(mean), to_numpy(var))
    np.testing.assert_allclose(stats["strict"], stats["numpy"], rtol=1e-12)
    compare(F.batch_norm, (x, np.zeros(c), np.ones(c), weight, bias), {"training": training}, device)


@pytest.mark.parametrize("residual", [True, False])
def test_conv2d_bn_relu(residual: bool, device: Any) -> None:
    rng = _rng(14)
    x, w, b = rng.standard_normal((2, 3, 5, 5)), rng.standard_normal((4, 3, 3, 3)), rng.standard_normal(4)
    stats = (rng.standard_normal(4) * 0.1, rng.uniform(0.5, 2, 4), rng.standard_normal(4), rng.standard_normal(4))
    r = rng.standard_normal((2, 4, 5, 5)) if residual else None
    compare(F.conv2d_bn_relu, (x, w, b, *stats, 1e-5, r, 1, 1), {}, device)


@pytest.mark.parametrize("residual", [True, False])
@pytest.mark.parametrize("training", [True, False])
def test_batch_norm_relu(residual: bool, training: bool, device: Any) -> None:
    rng = _rng(13)
    x, weight, bias = rng.standard_normal((3, 2, 2, 3)), rng.standard_normal(2), rng.standard_normal(2)
    r = rng.standard_normal(x.shape) if residual else None
    compare(F.batch_norm_relu, (x, np.zeros(2), np.ones(2), weight, bias, training, 0.1, 1e-5, r), {}, device)


@pytest.mark.parametrize("reduction", ["mean", "sum", "none"])
@pytest.mark.parametrize("label_smoothing", [0.0, 0.1])
def test_cross_entropy(reduction: str, label_smoothing: float, device: Any) -> None:
    logits, labels = 2 * _rng(10).standard_normal((4, 5)), np.array([0, 4, 2, 2])
    compare(F.cross_entropy, (logits, labels), {"label_smoothing": label_smoothing, "reduction": reduction}, device)


@pytest.mark.parametrize("reduction", ["mean", "sum", "none"])
def test_binary_cross_entropy_with_logits_and_mse(reduction: str, device: Any) -> None:
    rng = _rng(11)
    z, y = 3 * rng.standard_normal((3, 4)), rng.uniform(0, 1, (3, 4))
    compare(F.binary_cross_entropy_with_logits, (z, y), {"reduction": reduction}, device)
    compare(F.mse_loss, (z, y), {"reduction": reduction}, device)


def test_every_functional_op_is_covered() -> None:
    tested = {
        "conv2d", "max_pool2d", "avg_pool2d", "adaptive_avg_pool2d", "global_avg_pool2d", "relu", "relu6", "leaky_relu",
        "sigmoid", "tanh", "softmax", "log_softmax", "flatten", "dropout", "local_response_norm", "linear",
        "batch_norm", "batch_norm_relu", "conv2d_bn_relu", "cross_entropy", "binary_cross_entropy_with_logits",
        "mse_loss",
    }  # fmt: skip
    assert {name for name in F.__all__ if isinstance(getattr(F, name), Op)} == tested


def test_errors_and_checks_work_without_numpy(device: Any) -> None:
    """Validation reads shapes and a few numbers only: the same messages on the device."""
    x = xps.asarray(_rng(12).standard_normal((1, 2, 5, 5)), device=device)
    with pytest.raises(ValueError, match="groups=2 does not divide the 3 output channels"):
        F.conv2d(x, xps.ones((3, 1, 3, 3), dtype=xps.float64, device=device), groups=2)
    with pytest.raises(ValueError, match=r"labels must be in \[0, 2\], got values in \[0, 5\]"):
        F.cross_entropy(xps.ones((2, 3), dtype=xps.float64, device=device), xps.asarray([0, 5], device=device))
    with pytest.raises(F.NonFiniteLossError, match="logits contain 1 NaN and 0 infinite values"):
        logits = xps.asarray([[0.0, float("nan")], [1.0, 2.0]], device=device)
        F.cross_entropy(logits, xps.asarray([1, 0], device=device))
    with pytest.raises(TypeError, match="relu input: expected a numeric array, got dtype complex128"):
        F.relu(xps.ones((2,), dtype=xps.complex128, device=device))


def test_dtype_policy(device: Any) -> None:
    """as_float / result_dtype speak the array's own dtypes: integers become the default float."""
    ints = xps.asarray([1, 2, 3], device=device)
    f = as_float(ints)
    assert f.dtype == xps.float32 and f.device == device
    assert as_float(f) is f
    wide = xps.asarray([1.0], dtype=xps.float64, device=device)
    assert result_dtype(f, None) == xps.float32
    assert result_dtype(f, wide) == xps.float64
    assert array_namespace(f) is xps and device_of(f) == device
    assert result_dtype(np.ones(2, np.float32), None) == np.float32


# ------------------------------------------------------------------------------ the Tensor's own operators


def _pair_inputs(seed: int) -> tuple[np.ndarray, np.ndarray]:
    rng = _rng(seed)
    return rng.standard_normal((3, 4)), rng.uniform(0.5, 2.0, (1, 4))


TENSOR_OPS: list[tuple[Op, Callable[[], tuple[Any, ...]], dict[str, Any]]] = [
    (ops.add, lambda: _pair_inputs(0), {}),
    (ops.sub, lambda: _pair_inputs(1), {}),
    (ops.mul, lambda: _pair_inputs(2), {}),
    (ops.div, lambda: _pair_inputs(3), {}),
    (ops.pow_, lambda: (_rng(4).uniform(0.5, 2.0, (3, 4)),), {"exponent": 3}),
    (ops.neg, lambda: (_rng(5).standard_normal((3, 4)),), {}),
    (ops.matmul, lambda: (_rng(6).standard_normal((2, 3, 4)), _rng(7).standard_normal((4, 5))), {}),
    (ops.matmul, lambda: (_rng(6).standard_normal(4), _rng(7).standard_normal((4, 5))), {}),
    (ops.getitem, lambda: (_rng(8).standard_normal((4, 5)),), {"index": (slice(1, 3), slice(None, None, 2))}),
    (ops.getitem, lambda: (_rng(8).standard_normal((4, 5)),), {"index": np.array([2, 0, 2, 3])}),
    (ops.reshape, lambda: (_rng(9).standard_normal((2, 6)),), {"shape": (3, 4)}),
    (ops.permute, lambda: (_rng(10).standard_normal((2, 3, 4)),), {"axes": (2, 0, 1)}),
    (ops.sum_, lambda: (_rng(11).standard_normal((2, 3, 4)),), {"axis": (0, 2)}),
    (ops.mean, lambda: (_rng(12).standard_normal((2, 3, 4)),), {"axis": 1, "keepdims": True}),
    (ops.max_, lambda: (_rng(13).integers(0, 3, (2, 3, 4)).astype(np.float64),), {"axis": -1}),
    (ops.concatenate, lambda: (_rng(14).standard_normal((2, 3)), _rng(15).standard_normal((1, 3))), {"axis": 0}),
    (ops.stack, lambda: (_rng(16).standard_normal((2, 3)), _rng(17).standard_normal((2, 3))), {"axis": 1}),
    (ops.cast, lambda: (_rng(18).standard_normal((2, 3)),), {"dtype": np.dtype(np.float32)}),
]


@pytest.mark.parametrize("case", range(len(TENSOR_OPS)), ids=lambda i: f"{TENSOR_OPS[i][0].__name__}-{i}")
def test_tensor_operator(case: int, device: Any) -> None:
    op, make, opts = TENSOR_OPS[case]
    opts = dict(opts)
    if isinstance(opts.get("index"), np.ndarray):
        opts["index"] = xps.asarray(opts["index"], device=device)
        inputs = make()
        compare_index(op, inputs, opts, device)
        return
    compare(op, make(), opts, device, tol=1e-6 if op is ops.cast else 1e-12)


def compare_index(op: Op, inputs: tuple[Any, ...], opts: dict[str, Any], device: Any) -> None:
    """Integer-array indexing, repeated indices included: their gradients add up."""
    index = to_numpy(opts["index"])
    want_out, want_ctx = op.forward(*inputs, index=index)
    g = _rng(1).standard_normal(want_out.shape)
    (want,) = op.backward(g, want_ctx)
    out, ctx = op.forward(*(xps.asarray(a, device=device) for a in inputs), **opts)
    assert_on(out, device, "getitem output")
    (got,) = op.backward(xps.asarray(g, device=device), ctx)
    assert_on(got, device, "getitem gradient")
    np.testing.assert_allclose(to_numpy(out), want_out, rtol=1e-12)
    np.testing.assert_allclose(to_numpy(got), want, rtol=1e-12)


# ------------------------------------------------------------------------------------- a whole graph


def _small_net(t: Callable[[np.ndarray], Any], labels: Any) -> tuple[Any, list[Any]]:
    rng = _rng(20)
    x = t(rng.standard_normal((3, 2, 8, 8)))
    w1, b1 = t(rng.standard_normal((4, 2, 3, 3)) * 0.3), t(rng.standard_normal(4) * 0.1)
    w2, b2 = t(rng.standard_normal((5, 4 * 4 * 4)) * 0.3), t(rng.standard_normal(5) * 0.1)
    h = F.max_pool2d(F.relu(F.conv2d(x, w1, b1, padding=1)), 3, stride=2, padding=1, ceil_mode=False)
    h = F.dropout(h.reshape(3, -1), 0.3, True, np.random.default_rng(5))
    loss = F.cross_entropy(F.linear(h, w2, b2), labels, label_smoothing=0.1)
    return loss, [x, w1, b1, w2, b2]


def _graph_gradients_match(device: Any) -> None:
    def numpy_leaf(a: np.ndarray) -> Tensor:
        return Tensor(a, requires_grad=True)

    def strict_leaf(a: np.ndarray) -> Tensor:
        return Tensor(xps.asarray(a, device=device), requires_grad=True)

    want_loss, want_leaves = _small_net(numpy_leaf, np.array([0, 4, 2]))
    want_loss.backward()
    loss, leaves = _small_net(strict_leaf, xps.asarray([0, 4, 2], device=device))
    assert_on(loss.data, device, "loss")
    loss.backward()
    np.testing.assert_allclose(to_numpy(loss.data), want_loss.data, rtol=1e-12)
    for i, (got, want) in enumerate(zip(leaves, want_leaves, strict=True)):
        assert_on(got.grad, device, f"leaf {i} gradient")
        np.testing.assert_allclose(to_numpy(got.grad), want.grad, rtol=1e-10, atol=1e-12, err_msg=f"leaf {i}")


def test_graph_conv_relu_pool_linear_cross_entropy(device: Any, tensor_py_array_api: None) -> None:
    """conv → relu → max-pool → reshape → dropout → linear → cross-entropy, backward through autograd:
    the gradients of every leaf on the device equal NumPy's (fast kernels on NumPy, the reference there)."""
    _graph_gradients_match(device)


def test_graph_without_the_tensor_py_patches(device: Any) -> None:
    """tensor.py speaks the Array API (requires_grad on strict dtypes, xp.astype for the first gradient)."""
    _graph_gradients_match(device)


@pytest.fixture
def tensor_py_array_api(monkeypatch: pytest.MonkeyPatch) -> None:
    """Two lines of glassnet/autograd/tensor.py that assume NumPy, replaced as proposed for it:

    * ``Tensor.requires_grad``'s setter reads the dtype kind with ``np.dtype(str(dtype))``,
      which fails for array-api-strict dtypes (use ``glassnet.backend.is_floating``);
    * ``_accumulate`` copies a leaf's first gradient with the method ``g.astype``, which the
      standard lacks (use ``xp.astype(g, dtype, copy=True)``).
    """
    from glassnet.autograd import tensor as tensor_py
    from glassnet.backend import is_floating

    original = tensor_py.Tensor.requires_grad

    def set_requires_grad(self: Tensor, value: bool) -> None:
        if value and self.grad_fn is None and not is_floating(self.data.dtype):
            raise TypeError(f"only floating-point tensors can require gradients, got dtype {self.data.dtype}")
        if not value and self.grad_fn is not None:
            raise RuntimeError("requires_grad can only be turned off on leaf tensors; use .detach()")
        self._requires_grad = bool(value)

    def accumulate(t: Tensor, g: Any) -> None:
        if tuple(g.shape) != t.shape:
            raise ValueError(f"gradient of shape {tuple(g.shape)} for a tensor of shape {t.shape}")
        xp = array_namespace(g)
        t.grad = xp.astype(g, t.data.dtype, copy=True) if t.grad is None else t.grad + g

    monkeypatch.setattr(tensor_py.Tensor, "requires_grad", property(original.fget, set_requires_grad))
    monkeypatch.setattr(tensor_py, "_accumulate", accumulate)


def test_nothing_imports_cupy_unless_asked() -> None:
    """CuPy is the optional ``gpu`` extra: importing glassnet and running its ops must not import it."""
    import subprocess
    import sys

    code = (
        "import sys, numpy as np, glassnet, glassnet.fast, glassnet.functional as F\n"
        "x = np.ones((1, 1, 4, 4))\n"
        "F.max_pool2d(F.relu(F.conv2d(x, np.ones((1, 1, 3, 3)), padding=1)), 2)\n"
        "print(sorted(m for m in sys.modules if m.split('.')[0] in ('cupy', 'cupyx')))\n"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout
    assert out.strip() == "[]"


def test_arrays_passed_by_keyword_run_the_reference(device: Any) -> None:
    """The fast NumPy kernels decline non-NumPy arrays however they are passed."""
    x = xps.asarray(_rng(13).standard_normal((1, 2, 6, 6)), device=device)
    w = xps.asarray(_rng(14).standard_normal((3, 2, 3, 3)), device=device)
    out, ctx = F.conv2d.forward(x=x, weight=w, padding=1)
    assert ctx.backend == "reference"
    assert_on(out, device, "conv2d output")
    out, ctx = F.max_pool2d.forward(x=x, kernel_size=2)
    assert ctx.backend == "reference"
    assert_on(out, device, "max_pool2d output")
