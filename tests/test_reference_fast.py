"""Every fast kernel (glassnet.fast) against the readable reference (glassnet.functional).

Each case runs one op forward and backward twice, inside ``use_backend("fast")`` and
``use_backend("reference")``, on the same inputs and upstream gradient, and compares the
output and every input gradient: float64 to 1e-10, float32 to rounding (1e-5 relative).
Each run asserts which implementation actually ran (``ctx.backend``), so a fast path that
silently declined its inputs cannot pass by comparing the reference with itself.

The matrix: hypothesis-drawn shapes and options (stride, dilation, the five padding forms,
groups and depthwise, flip, bias, ceil mode), each of the fast conv's im2col algorithms,
forced worker-thread splits and cache blocks, and max-pooling inputs full of ties, NaN and
−∞ windows (where the winner rules are PyTorch's).
"""

from __future__ import annotations

import contextlib
import itertools
from typing import Any

import numpy as np
import pytest
from hypothesis import assume, given, settings
from hypothesis import strategies as st

import glassnet
import glassnet.functional as F
from glassnet import backend as glassnet_backend
from glassnet.autograd import Op, use_backend
from glassnet.fast import activation as fast_activation
from glassnet.fast import conv as fast_conv
from glassnet.fast import gather as fast_gather
from glassnet.fast import norm as fast_norm
from glassnet.fast import pool as fast_pool
from glassnet.fast import winograd as fast_winograd
from glassnet.functional.conv import conv2d_geometry

TOL = {np.dtype(np.float64): (1e-10, 1e-10), np.dtype(np.float32): (1e-5, 1e-5)}
DTYPES = st.sampled_from([np.float64, np.float64, np.float32])


def run(op: Op, backend: str, inputs: tuple[Any, ...], opts: dict[str, Any], grad: Any) -> list[Any]:
    """[out, grad of each input] from ``backend``; asserts that backend really ran."""
    with use_backend(backend):
        out, ctx = op.forward(*inputs, **opts)
        assert ctx.backend == backend, f"{op.__name__} {opts}: asked for {backend}, {ctx.backend} ran"
        g = grad(out.shape) if callable(grad) else grad
        ctx["needs_input_grad"] = (True,) * len(inputs)
        grads = op.backward(g, ctx)
    return [out, *grads[: len(inputs)]]


def assert_same(op: Op, inputs: tuple[Any, ...], opts: dict[str, Any], grad: Any, exact: bool = False) -> None:
    """The fast pair and the reference agree on the output and on every gradient."""
    fast = run(op, "fast", inputs, opts, grad)
    ref = run(op, "reference", inputs, opts, grad)
    for what, got, want in zip(["out", *(f"grad {i}" for i in range(len(inputs)))], fast, ref, strict=True):
        if want is None:
            assert got is None, f"{op.__name__} {what}: the reference gives None"
            continue
        got, want = np.asarray(got), np.asarray(want)
        assert got.shape == want.shape and got.dtype == want.dtype, (what, got.shape, want.shape, got.dtype)
        if exact:
            np.testing.assert_array_equal(got, want, err_msg=f"{op.__name__} {opts} {what}")
        else:
            rtol, atol = TOL[want.dtype]
            atol *= max(1.0, float(np.nanmax(np.abs(want), initial=0.0)))
            np.testing.assert_allclose(got, want, rtol=rtol, atol=atol, err_msg=f"{op.__name__} {opts} {what}")


def normal_grad(seed: int, dtype: Any) -> Any:
    return lambda shape: np.random.default_rng(seed).standard_normal(shape).astype(dtype)


def int_grad(seed: int, dtype: Any) -> Any:
    """Integer upstream gradients: any order of adding them up is exact."""
    return lambda shape: np.random.default_rng(seed).integers(-3, 4, shape).astype(dtype)


def matrix(strategy: st.SearchStrategy, check: Any, factor: int = 1) -> None:
    settings(max_examples=factor * settings.default.max_examples, deadline=None)(given(strategy)(check))()


def test_every_fast_kernel_is_in_this_matrix() -> None:
    """A new fast kernel needs a matrix here: the ops with a fast pair are exactly these."""
    fast_ops = {name for name in F.__all__ if isinstance(getattr(F, name), Op) and getattr(F, name).fast_forward}
    assert fast_ops == {"batch_norm", "batch_norm_relu", "conv2d", "conv2d_bn_relu", "max_pool2d", "relu", "relu6"}


# ------------------------------------------------------------------------------------------------ conv2d


@st.composite
def conv_cases(draw: Any) -> tuple[dict[str, np.ndarray], dict[str, Any], int]:
    dtype = draw(DTYPES)
    groups = draw(st.sampled_from([1, 1, 2, 3]))
    cg = 1 if groups > 1 and draw(st.booleans()) else draw(st.integers(1, 3))  # depthwise or not
    fg = draw(st.integers(1, 3))
    kh, kw = draw(st.integers(1, 4)), draw(st.integers(1, 4))
    dilation = draw(st.sampled_from([1, 1, 2, (1, 2), (2, 1)]))
    stride = 1 if draw(st.booleans()) else draw(st.sampled_from([2, 3, (1, 2), (2, 1), (3, 2)]))
    kind = draw(st.sampled_from(["int", "pair", "sides", "same", "valid"]))
    if kind == "int":
        padding: Any = draw(st.integers(0, 2))
        totals = (2 * padding, 2 * padding)
    elif kind == "pair":
        padding = (draw(st.integers(0, 2)), draw(st.integers(0, 3)))
        totals = (2 * padding[0], 2 * padding[1])
    elif kind == "sides":
        padding = tuple((draw(st.integers(0, 3)), draw(st.integers(0, 3))) for _ in range(2))
        totals = (sum(padding[0]), sum(padding[1]))
    else:
        padding = kind
        totals = (10**6, 10**6) if kind == "same" else (0, 0)
    dh, dw = (dilation, dilation) if isinstance(dilation, int) else dilation
    h_min, w_min = max(1, dh * (kh - 1) + 1 - totals[0]), max(1, dw * (kw - 1) + 1 - totals[1])
    h, w = draw(st.integers(h_min, h_min + 7)), draw(st.integers(w_min, w_min + 7))
    seed = draw(st.integers(0, 2**32 - 1))
    rng = np.random.default_rng(seed)
    inputs = {
        "x": rng.standard_normal((draw(st.integers(1, 3)), cg * groups, h, w)).astype(dtype),
        "weight": rng.standard_normal((fg * groups, cg, kh, kw)).astype(dtype),
        "bias": rng.standard_normal(fg * groups).astype(dtype) if draw(st.booleans()) else None,
    }
    opts = {"stride": stride, "padding": padding, "dilation": dilation, "groups": groups, "flip": draw(st.booleans())}
    return inputs, opts, seed


def _winograd_applies(inputs: dict[str, np.ndarray], opts: dict[str, Any]) -> bool:
    w = inputs["weight"]
    geometry = conv2d_geometry(inputs["x"].shape, w.shape, opts["stride"], opts["padding"], opts["dilation"])
    return fast_winograd.applies(w.shape[2:], geometry[0], geometry[1], opts["groups"], geometry[2])


def _algorithms(inputs: dict[str, np.ndarray], opts: dict[str, Any]) -> list[str | None]:
    names: list[str | None] = [None, "gather", "hwn"]
    if opts["stride"] in (1, (1, 1)):
        names.append("shift")
    return names + ["winograd", "winograd4"] if _winograd_applies(inputs, opts) else names


@pytest.fixture
def split_and_blocked(monkeypatch: pytest.MonkeyPatch) -> None:
    """Force the fast conv's worker-thread split (3 workers) and tiny ragged cache blocks."""
    monkeypatch.setattr(glassnet_backend, "_workers", 3)
    monkeypatch.setattr(fast_conv, "PARALLEL_MIN", 0)
    monkeypatch.setattr(fast_conv, "GATHER_PARALLEL_MIN", 0)
    monkeypatch.setattr(fast_conv, "SHIFT_BLOCK_BYTES", 1)
    monkeypatch.setattr(fast_conv, "SHIFT_MIN_BLOCK", 7)
    monkeypatch.setattr(fast_conv, "WINOGRAD_MIN", 0)
    monkeypatch.setattr(fast_conv, "WINOGRAD_MIN_POSITIONS", 0)
    monkeypatch.setattr(fast_conv, "WINOGRAD_MIN_USEFUL", 0)
    monkeypatch.setattr(fast_winograd, "BLOCK_BYTES", 1)
    monkeypatch.setattr(fast_winograd, "TILE_CHUNK", 1)
    monkeypatch.setattr(fast_pool, "POOL_PARALLEL_MIN", 0)
    monkeypatch.setattr(fast_activation, "PARALLEL_MIN", 0)
    monkeypatch.setattr(fast_norm, "PARALLEL_MIN", 0)


def _check_conv(case: Any) -> None:
    inputs, opts, seed = case
    args = (inputs["x"], inputs["weight"], inputs["bias"])
    for algorithm in _algorithms(inputs, opts):
        assert_same(F.conv2d, args, {**opts, "algorithm": algorithm}, normal_grad(seed + 1, inputs["x"].dtype))


def test_conv2d_fast_equals_reference() -> None:
    matrix(conv_cases(), _check_conv, factor=4)


def test_conv2d_fast_equals_reference_split_over_threads_in_small_blocks(split_and_blocked: None) -> None:
    matrix(conv_cases(), _check_conv, factor=2)


@st.composite
def winograd_cases(draw: Any) -> tuple[dict[str, np.ndarray], dict[str, Any], int]:
    """3×3 stride-1 convolutions, the ones Winograd computes: any padding 0..2 per side, sizes
    that leave a last 2×2 or 4×4 tile partly outside the output, one channel up to several."""
    dtype = draw(DTYPES)
    pads = tuple((draw(st.integers(0, 2)), draw(st.integers(0, 2))) for _ in range(2))
    h = draw(st.integers(max(1, 3 - sum(pads[0])), 13))
    w = draw(st.integers(max(1, 3 - sum(pads[1])), 13))
    seed = draw(st.integers(0, 2**32 - 1))
    rng = np.random.default_rng(seed)
    c, f = draw(st.integers(1, 5)), draw(st.integers(1, 5))
    inputs = {
        "x": rng.standard_normal((draw(st.integers(1, 4)), c, h, w)).astype(dtype),
        "weight": rng.standard_normal((f, c, 3, 3)).astype(dtype),
        "bias": rng.standard_normal(f).astype(dtype) if draw(st.booleans()) else None,
    }
    opts = {"stride": 1, "padding": pads, "dilation": 1, "groups": 1, "flip": draw(st.booleans())}
    return inputs, opts, seed


def _check_winograd(case: Any) -> None:
    inputs, opts, seed = case
    args = (inputs["x"], inputs["weight"], inputs["bias"])
    for algorithm in ("winograd", "winograd4"):  # F(2×2, 3×3) and F(4×4, 3×3)
        assert_same(F.conv2d, args, {**opts, "algorithm": algorithm}, normal_grad(seed + 1, inputs["x"].dtype))


@settings(max_examples=30, deadline=None)
@given(st.integers(1, 70), st.integers(1, 300), st.sampled_from([np.float32, np.float64]), st.integers(0, 2**32 - 1))
def test_gather_adds_the_per_image_weight_gradients_in_image_order(n: int, m: int, dtype: Any, seed: int) -> None:
    """The gathered conv's dW = Σ_n dW_n is added image after image, bit for bit a loop of NumPy ``+=``."""
    parts = (np.random.default_rng(seed).standard_normal((n, m)) * 1e3).astype(dtype)
    expected = parts[0].copy()
    for more in parts[1:]:
        expected += more
    got = np.empty(m, dtype)
    fast_gather._kernels().add_rows(parts, got)
    np.testing.assert_array_equal(got, expected)


def test_gather_one_call_parts_where_numpys_openblas_is_there() -> None:
    """float32 'gather' runs its parts as one Numba call each (OpenBLAS's sgemm inside): NumPy's
    PyPI wheel ships that OpenBLAS (this project's lock installs one). The conv matrices above
    check that path against the reference in their float32 cases."""
    assert fast_gather.one_call_parts(np.dtype(np.float32)), "NumPy's bundled OpenBLAS could not be called from Numba"
    assert not fast_gather.one_call_parts(np.dtype(np.float64))


def test_gather_without_one_call_parts_equals_reference(
    split_and_blocked: None, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Where NumPy's OpenBLAS cannot be called from Numba (another NumPy build), float32 'gather'
    runs NumPy products in its parts: checked against the reference the same way."""
    monkeypatch.setattr(fast_gather, "one_call_parts", lambda dtype: False)

    def check(case: Any) -> None:
        inputs, opts, seed = case
        as32 = {k: None if v is None else v.astype(np.float32) for k, v in inputs.items()}
        args = (as32["x"], as32["weight"], as32["bias"])
        assert_same(F.conv2d, args, {**opts, "algorithm": "gather"}, normal_grad(seed + 1, np.float32))

    matrix(conv_cases(), check, factor=2)


def test_lenet5_layers_take_gather_split_over_the_workers(monkeypatch: pytest.MonkeyPatch) -> None:
    """LeNet-5's two convolutions at batch 64 (float32): 'gather', handed out in parts (one an
    8-image piece per worker, whatever the worker count); in float64 the second keeps 'hwn'."""
    monkeypatch.setattr(glassnet_backend, "_workers", 2)
    for x_shape, w_shape, padding in (((64, 1, 28, 28), (6, 1, 5, 5), 2), ((64, 6, 14, 14), (16, 6, 5, 5), 0)):
        _, ctx = F.conv2d.forward(np.ones(x_shape, np.float32), np.ones(w_shape, np.float32), padding=padding)
        assert (ctx.path, ctx.parts) == ("gather", 2)
    _, ctx = F.conv2d.forward(np.ones((64, 6, 14, 14)), np.ones((16, 6, 5, 5)))
    assert ctx.path == "hwn"


def test_conv2d_winograd_equals_reference() -> None:
    matrix(winograd_cases(), _check_winograd, factor=2)


def test_conv2d_winograd_equals_reference_split_over_threads_one_image_a_block(split_and_blocked: None) -> None:
    matrix(winograd_cases(), _check_winograd)


def test_conv2d_winograd_is_the_automatic_choice_for_large_3x3_stride_1_layers() -> None:
    rng = np.random.default_rng(3)
    x = rng.standard_normal((8, 16, 16, 16)).astype(np.float32)
    w = rng.standard_normal((16, 16, 3, 3)).astype(np.float32)
    winograds = ("winograd", "winograd4")
    _, ctx = F.conv2d.forward(x, w, padding=1)
    assert ctx.path == "winograd4"  # F(4×4, 3×3): all of its tiles' outputs kept at 16²
    _, ctx = F.conv2d.forward(np.concatenate([x] * 4)[:, :, :8, :8], w, padding=1)
    assert ctx.path == "winograd4"  # 8²: all of its tiles' outputs kept
    _, ctx = F.conv2d.forward(np.concatenate([x] * 2)[:, :, :14, :14], w, padding=1)
    assert ctx.path == "winograd"  # 14²: 77 % of F(4×4)'s, 88 % of F(2×2)'s
    wide_x, wide_w = np.concatenate([x] * 9, axis=1), np.concatenate([w] * 9, axis=1)
    _, ctx = F.conv2d.forward(wide_x, wide_w, padding=1)
    assert ctx.path == "winograd"  # 144 input channels: F(4×4)'s float32 rounding grows with C
    _, ctx = F.conv2d.forward(x, w, padding=1, stride=2)
    assert ctx.path not in winograds
    _, ctx = F.conv2d.forward(x[:1, :, :8, :8], w, padding=1)  # too small to pay
    assert ctx.path not in winograds
    _, ctx = F.conv2d.forward(x[:, :1], w[:, :1], padding=1)  # one input channel: a product without BLAS
    assert ctx.path not in winograds
    _, ctx = F.conv2d.forward(np.concatenate([x] * 8)[:, :, :7, :7], w, padding=1)  # 7×7: 61 % / 77 % kept
    assert ctx.path not in winograds


@pytest.mark.parametrize(
    ("opts", "got"),
    [
        ({"padding": 1, "stride": 2}, "stride (2, 2)"),
        ({"padding": 3}, "padding ((3, 3), (3, 3))"),
        ({"padding": 2, "dilation": 2}, "dilation (2, 2)"),
        ({"padding": 1, "groups": 2}, "groups 2"),
    ],
)
def test_conv2d_winograd_names_what_it_cannot_compute(opts: dict[str, Any], got: str) -> None:
    x = np.zeros((1, 2, 8, 8))
    w = np.zeros((2, 2 // opts.get("groups", 1), 3, 3))
    for backend, algorithm in itertools.product(("fast", "reference"), ("winograd", "winograd4")):
        with use_backend(backend), pytest.raises(ValueError, match=f"algorithm='{algorithm}' needs") as err:
            F.conv2d.forward(x, w, algorithm=algorithm, **opts)
        assert got in str(err.value)
    with pytest.raises(ValueError, match="got kernel 5×5"):
        F.conv2d.forward(x, np.zeros((2, 2, 5, 5)), padding=2, algorithm="winograd")


@pytest.mark.parametrize("algorithm", [None, "shift", "gather", "hwn", "winograd"])
def test_conv2d_without_input_gradient(algorithm: str | None) -> None:
    """A first layer's backward (needs_input_grad False) skips dx on both paths; dW and db agree."""
    rng = np.random.default_rng(7)
    kw = 3 if algorithm == "winograd" else 2
    x, w, b = rng.standard_normal((2, 3, 6, 7)), rng.standard_normal((4, 3, 3, kw)), rng.standard_normal(4)
    g = rng.standard_normal((2, 4, 6, 7))
    grads = {}
    for backend in ("fast", "reference"):
        with use_backend(backend):
            _, ctx = F.conv2d.forward(x, w, b, padding="same", algorithm=algorithm)
            ctx["needs_input_grad"] = (False, True, True)
            grads[backend] = F.conv2d.backward(g, ctx)
    for got, want in zip(grads["fast"], grads["reference"], strict=True):
        assert (got is None) == (want is None)
        if want is not None:
            np.testing.assert_allclose(got, want, rtol=1e-10, atol=1e-10)
    assert grads["fast"][0] is None


# -------------------------------------------------------------------------------------------- max pooling


def _windows_see_input(n: int, k: int, s: int, d: int, pad: int, ceil_mode: bool) -> bool:
    room = n + 2 * pad - d * (k - 1) - 1
    out = (-(-room // s) if ceil_mode else room // s) + 1
    if ceil_mode and (out - 1) * s >= n + pad:
        out -= 1
    return all(any(0 <= o * s - pad + i * d < n for i in range(k)) for o in range(out))


def _pool_input(rng: np.random.Generator, shape: tuple[int, ...], kind: str, dtype: Any) -> np.ndarray:
    if kind == "ints":  # ties everywhere
        x = rng.integers(-2, 3, shape).astype(dtype)
    elif kind == "equal":
        x = np.full(shape, rng.choice([-3.0, 0.0, 1.5]), dtype=dtype)
    else:
        x = rng.standard_normal(shape).astype(dtype)
    if kind in ("nan", "nan_and_ninf"):  # a few NaN, some windows with several
        x[rng.random(shape) < 0.15] = np.nan
    if kind in ("ninf", "nan_and_ninf"):  # −∞ cells and whole −∞ regions
        x[rng.random(shape) < 0.3] = -np.inf
        h, w = shape[2:]
        r, c = rng.integers(0, h), rng.integers(0, w)
        x[..., r : r + 3, c : c + 3] = -np.inf
    return x


@st.composite
def pool_cases(draw: Any, allow_wholly_padded: bool = False) -> tuple[np.ndarray, dict[str, Any], int]:
    dtype = draw(DTYPES)
    kh, kw = draw(st.integers(1, 4)), draw(st.integers(1, 4))
    stride = draw(st.sampled_from([None, 1, 2, 3, (1, 2), (2, 3)]))
    dilation = draw(st.sampled_from([1, 1, 2, (1, 2), (2, 1)]))
    dh, dw = (dilation, dilation) if isinstance(dilation, int) else dilation
    ph, pw = draw(st.integers(0, (dh * (kh - 1) + 1) // 2)), draw(st.integers(0, (dw * (kw - 1) + 1) // 2))
    h_min, w_min = max(1, dh * (kh - 1) + 1 - 2 * ph), max(1, dw * (kw - 1) + 1 - 2 * pw)
    shape = (draw(st.integers(1, 2)), draw(st.integers(1, 3)))
    shape += (draw(st.integers(h_min, h_min + 7)), draw(st.integers(w_min, w_min + 7)))
    ceil_mode = draw(st.booleans())
    sh, sw = (kh, kw) if stride is None else ((stride, stride) if isinstance(stride, int) else stride)
    if not allow_wholly_padded:
        assume(_windows_see_input(shape[2], kh, sh, dh, ph, ceil_mode))
        assume(_windows_see_input(shape[3], kw, sw, dw, pw, ceil_mode))
    kind = draw(st.sampled_from(["ints", "equal", "normal", "nan", "ninf", "nan_and_ninf"]))
    seed = draw(st.integers(0, 2**32 - 1))
    x = _pool_input(np.random.default_rng(seed), shape, kind, dtype)
    opts = {"kernel_size": (kh, kw), "stride": stride, "padding": (ph, pw), "dilation": dilation}
    return x, {**opts, "ceil_mode": ceil_mode}, seed


# The fast max pooling's two paths: its Numba kernels, and the NumPy code it falls back to.
POOL_PATHS = ["numba", "numpy"] if fast_pool.AVAILABLE else ["numpy"]


@contextlib.contextmanager
def pool_path(path: str) -> Any:
    """Fast max pooling on ``path``: 'numba' (the kernels, whatever the input size) or 'numpy'
    (the fallback where Numba cannot be imported)."""
    saved = fast_pool.AVAILABLE, fast_pool.NUMBA_MIN
    fast_pool.AVAILABLE = path == "numba" and saved[0]
    fast_pool.NUMBA_MIN = 0
    try:
        yield
    finally:
        fast_pool.AVAILABLE, fast_pool.NUMBA_MIN = saved


def _pooled_on(path: str, x: np.ndarray, opts: dict[str, Any]) -> bool:
    """Whether the fast max pooling of ``x`` runs ``path`` (the Numba path's context holds ``winner``)."""
    with use_backend("fast"):
        _, ctx = F.max_pool2d.forward(x, **opts)
    return ctx.backend == "fast" and ("winner" in ctx) == (path == "numba")


def _check_pool(case: Any) -> None:
    x, opts, seed = case
    for path in POOL_PATHS:
        with pool_path(path):
            assert _pooled_on(path, x, opts)
            assert_same(F.max_pool2d, (x,), opts, int_grad(seed + 1, x.dtype), exact=True)
    if fast_pool.AVAILABLE:  # the kernels add overlapping windows' gradients in the reference's order
        with pool_path("numba"):
            assert_same(F.max_pool2d, (x,), opts, normal_grad(seed + 1, x.dtype), exact=True)


def test_max_pool2d_fast_equals_reference_exactly() -> None:
    """Same maxima and the same winning cells (ties, NaN, −∞), so the gradients agree bit for bit:
    on both paths with integer gradients (any order of adding them is exact), on the Numba path
    with any gradient."""
    matrix(pool_cases(), _check_pool, factor=6)


def test_max_pool2d_fast_equals_reference_with_windows_wholly_in_padding() -> None:
    """Dilated windows that see only padding: output −∞ and no gradient, on both paths."""
    matrix(pool_cases(allow_wholly_padded=True), _check_pool, factor=2)


def test_max_pool2d_fast_equals_reference_split_over_threads(split_and_blocked: None) -> None:
    matrix(pool_cases(), _check_pool, factor=2)


@pytest.mark.parametrize("path", POOL_PATHS)
def test_max_pool2d_windows_over_255_cells(path: str) -> None:
    """The Numba kernels' int32 winners pool windows of any size; the NumPy path's uint8 winners
    cap its windows at 255 cells, larger ones going to the reference (no limit). Same rules."""
    rng = np.random.default_rng(3)
    x = rng.integers(-3, 4, (2, 2, 20, 19)).astype(np.float64)  # ties
    x[0, 0, 5, 5] = np.nan
    with pool_path(path):
        for kernel in [(16, 16), (17, 16), (20, 19)]:
            with use_backend("fast"):
                out, ctx = F.max_pool2d.forward(x, kernel, stride=(3, 2), ceil_mode=True)
            assert ctx.backend == ("fast" if path == "numba" else "reference")
            g = rng.integers(-3, 4, out.shape).astype(np.float64)
            (dx,) = F.max_pool2d.backward(g, ctx)
            want_out, want_dx = _brute_force_max_pool(x, kernel, (3, 2), g)
            np.testing.assert_array_equal(out, want_out)
            np.testing.assert_array_equal(dx, want_dx)
        small_kernel = (15, 17)  # 255 cells: fast on either path
        with use_backend("fast"):
            assert F.max_pool2d.forward(x, small_kernel)[1].backend == "fast"


def _brute_force_max_pool(x: np.ndarray, k: tuple[int, int], s: tuple[int, int], g: np.ndarray) -> Any:
    """PyTorch's scan, written out: a cell wins when greater than the running maximum, or NaN."""
    n, c, h, w = x.shape
    ho, wo = g.shape[2:]
    out = np.empty(g.shape)
    dx = np.zeros_like(x)
    for b in range(n):
        for ch in range(c):
            for oy in range(ho):
                for ox in range(wo):
                    best, at = -np.inf, None
                    for i in range(oy * s[0], min(oy * s[0] + k[0], h)):
                        for j in range(ox * s[1], min(ox * s[1] + k[1], w)):
                            v = x[b, ch, i, j]
                            if at is None or v > best or np.isnan(v):
                                best, at = v, (i, j)
                    out[b, ch, oy, ox] = best
                    dx[b, ch, at[0], at[1]] += g[b, ch, oy, ox]
    return out, dx


@pytest.mark.parametrize("path", POOL_PATHS)
def test_fast_max_pool_declines_what_it_cannot_pool(path: str) -> None:
    """``supports`` is asked before dispatch: bad arguments go to the reference, which raises;
    so do windows of more than 255 cells where only the NumPy path can run."""
    with pool_path(path):
        assert fast_pool.supports(np.zeros((1, 1, 4, 4)), 2)
        assert fast_pool.supports(np.zeros((1, 1, 40, 40)), 16) == (path == "numba")
        assert not fast_pool.supports(np.zeros((1, 1, 4, 4)), "two")


# ------------------------------------------------------------------------------------------ relu, relu6


@st.composite
def activation_cases(draw: Any) -> tuple[Any, np.ndarray, np.ndarray]:
    """Inputs on and around the kinks (0, 6) and upstream gradients with ±0, ±∞ and NaN."""
    op = draw(st.sampled_from([F.relu, F.relu6]))
    dtype = draw(DTYPES)
    shape = tuple(draw(st.lists(st.integers(1, 6), min_size=1, max_size=4)))
    rng = np.random.default_rng(draw(st.integers(0, 2**16)))
    specials = np.array([0.0, -0.0, 6.0, -1e-30, 1e-30, 5.999, np.inf, -np.inf], dtype=dtype)
    x = (rng.standard_normal(shape) * 4).astype(dtype)
    x.flat[rng.integers(0, x.size, x.size // 3 + 1)] = rng.choice(specials, x.size // 3 + 1)
    g = rng.standard_normal(shape).astype(dtype)
    g.flat[rng.integers(0, g.size, g.size // 3 + 1)] = rng.choice(
        np.array([0.0, -0.0, np.inf, -np.inf, np.nan, -5.0], dtype=dtype), g.size // 3 + 1
    )
    return op, x, g


def _check_activation(case: Any) -> None:
    op, x, g = case
    fast, ref = run(op, "fast", (x,), {}, g), run(op, "reference", (x,), {}, g)
    for got, want in zip(fast, ref, strict=True):
        assert got.dtype == want.dtype and got.shape == want.shape
        # bit for bit: NaN where the reference passes NaN on, +0.0 (not −0.0) where it masks
        assert got.tobytes() == want.tobytes(), (op.__name__, x, g, got, want)


def test_relu_fast_equals_reference_bit_for_bit() -> None:
    matrix(activation_cases(), _check_activation, factor=2)


def test_relu_fast_equals_reference_split_over_threads(split_and_blocked: None) -> None:
    matrix(activation_cases(), _check_activation)


def test_relu_fast_under_no_grad_keeps_no_mask_and_still_has_a_backward() -> None:
    """Inference skips the mask (only a backward reads it); a backward from that context makes it."""
    from glassnet import no_grad

    rng = np.random.default_rng(4)
    x = (rng.standard_normal((3, 4, 5)) * 4).astype(np.float32)
    g = rng.standard_normal(x.shape).astype(np.float32)
    op = F.relu
    with use_backend("fast"), no_grad():
        out, ctx = op.forward(x)
    assert ctx.backend == "fast" and ctx.mask is None
    ref_out = run(op, "reference", (x,), {}, g)
    assert out.tobytes() == ref_out[0].tobytes()
    assert op.backward(g, ctx)[0].tobytes() == ref_out[1].tobytes()


@pytest.mark.parametrize("grad_mode", [True, False])
def test_relu_fast_forward_of_non_contiguous_inputs(grad_mode: bool) -> None:
    """Transposed, strided and Fortran-ordered inputs give the reference's output and gradient."""
    from glassnet import enable_grad, no_grad

    rng = np.random.default_rng(5)
    base = rng.standard_normal((6, 8, 10)).astype(np.float32)
    for x in (base.transpose(2, 0, 1), base[:, ::2, 1::3], np.asfortranarray(base)):
        g = rng.standard_normal(x.shape).astype(np.float32)
        with use_backend("fast"), enable_grad() if grad_mode else no_grad():
            out, ctx = F.relu.forward(x)
        assert ctx.backend == "fast"
        np.testing.assert_array_equal(out, np.maximum(x, 0))
        np.testing.assert_array_equal(F.relu.backward(g, ctx)[0], np.where(x > 0, g, 0.0))


def test_relu_fast_backward_on_odd_layouts_and_dtypes() -> None:
    """A transposed (non-contiguous) gradient and a broadcast one take the reference's rule."""
    rng = np.random.default_rng(0)
    x = rng.standard_normal((4, 5)).astype(np.float32)
    for g in (rng.standard_normal((5, 4)).astype(np.float32).T, np.float32(2.0) * np.ones((1, 5), np.float32)):
        _, ctx = F.relu_forward(x)
        got = fast_activation.relu_backward(g, ctx)[0]
        np.testing.assert_array_equal(got, np.where(x > 0, g, 0.0))
    assert not fast_activation.supports(np.arange(4))  # integers: the reference converts them
    with use_backend("fast"):
        _, ctx = F.relu.forward(np.arange(-2, 3))
    assert ctx.backend == "reference"


# ------------------------------------------------------------------------------------------ batch_norm


@st.composite
def batch_norm_cases(draw: Any) -> tuple[dict[str, Any], dict[str, Any], Any]:
    dtype = draw(DTYPES)
    n, c, h, w = draw(st.integers(1, 5)), draw(st.integers(1, 4)), draw(st.integers(1, 5)), draw(st.integers(1, 5))
    training = draw(st.booleans())
    assume(not training or n * h * w > 1)
    rng = np.random.default_rng(draw(st.integers(0, 2**16)))
    arrays = {
        "x": (rng.standard_normal((n, c, h, w)) * 3 + draw(st.sampled_from([0.0, 5.0]))).astype(dtype),
        "running_mean": rng.standard_normal(c).astype(dtype),
        "running_var": rng.uniform(0.5, 2, c).astype(dtype),
        "weight": rng.standard_normal(c).astype(dtype) if draw(st.booleans()) else None,
        "bias": rng.standard_normal(c).astype(dtype) if draw(st.booleans()) else None,
    }
    opts = {"training": training, "momentum": draw(st.sampled_from([0.0, 0.1, 1.0])), "eps": 1e-5}
    return arrays, opts, normal_grad(draw(st.integers(0, 100)), dtype)


def _check_batch_norm(case: Any) -> None:
    """Output, the three gradients and the updated running statistics agree."""
    arrays, opts, grad = case
    results = {}
    for backend in ("fast", "reference"):
        a = {k: (None if v is None else v.copy()) for k, v in arrays.items()}
        with use_backend(backend):
            out, ctx = F.batch_norm.forward(**a, **opts)
            assert ctx.backend == backend
            dx, _, _, dw, db = F.batch_norm.backward(grad(out.shape), ctx)
        results[backend] = [out, dx, dw, db, a["running_mean"], a["running_var"]]
    rtol, atol = TOL[arrays["x"].dtype]
    names = ["out", "dx", "dweight", "dbias", "running_mean", "running_var"]
    for what, got, want in zip(names, results["fast"], results["reference"], strict=True):
        if want is None:
            assert got is None, what
            continue
        assert got.shape == want.shape and got.dtype == want.dtype, (what, got.dtype, want.dtype)
        scale = max(1.0, float(np.max(np.abs(want), initial=0.0)))
        np.testing.assert_allclose(got, want, rtol=rtol, atol=atol * scale, err_msg=f"batch_norm {opts} {what}")


@pytest.fixture(autouse=True)
def _small_batch_norms_run_fast(monkeypatch: pytest.MonkeyPatch) -> None:
    """The matrices' small inputs would be left to the reference (fast_norm.MIN_SIZE)."""
    monkeypatch.setattr(fast_norm, "MIN_SIZE", 0)


def test_batch_norm_fast_equals_reference() -> None:
    matrix(batch_norm_cases(), _check_batch_norm, factor=2)


def test_batch_norm_fast_equals_reference_split_over_threads(split_and_blocked: None) -> None:
    matrix(batch_norm_cases(), _check_batch_norm)


# ------------------------------------------------------------------------------------- batch_norm_relu


@st.composite
def batch_norm_relu_cases(draw: Any) -> tuple[dict[str, Any], dict[str, Any], Any]:
    arrays, opts, grad = draw(batch_norm_cases())
    if draw(st.booleans()):
        x = arrays["x"]
        arrays["residual"] = np.random.default_rng(draw(st.integers(0, 99))).standard_normal(x.shape).astype(x.dtype)
    return arrays, opts, grad


def _batch_norm_relu_results(arrays: dict[str, Any], opts: dict[str, Any], grad: Any, how: str) -> list[Any]:
    """[out, dx, dweight, dbias, dresidual, running_mean, running_var]: the fused op on ``how``'s
    backend ("fast", "reference"), or batch_norm, + and relu one by one on the fast one ("three ops")."""
    a = {k: (None if v is None else v.copy()) for k, v in arrays.items()}
    names = ("x", "weight", "bias", "residual")
    tensors = {k: glassnet.Tensor(v, requires_grad=True) for k, v in a.items() if k in names and v is not None}
    stats = (a["running_mean"], a["running_var"])
    bn_args = (tensors["x"], *stats, tensors.get("weight"), tensors.get("bias"))
    with use_backend("reference" if how == "reference" else "fast"):
        if how == "three ops":
            y = F.batch_norm(*bn_args, **opts)
            out = F.relu(y + tensors["residual"] if "residual" in tensors else y)
        else:
            out = F.batch_norm_relu(*bn_args, **opts, residual=tensors.get("residual"))
            assert out.grad_fn.backend == how
        out.backward(grad(out.shape))
    grads = [tensors[k].grad if k in tensors else None for k in ("x", "weight", "bias", "residual")]
    return [out.numpy(), *grads, *stats]


def _check_batch_norm_relu(case: Any) -> None:
    """The fast fused op agrees with the reference and with the three ops on the fast backend: the
    output and running statistics bit for bit, the gradients to rounding (their float64 sums are
    vector reductions, whose order is each loop's own)."""
    arrays, opts, grad = case
    fused = _batch_norm_relu_results(arrays, opts, grad, "fast")
    three = _batch_norm_relu_results(arrays, opts, grad, "three ops")
    ref = _batch_norm_relu_results(arrays, opts, grad, "reference")
    rtol, atol = TOL[arrays["x"].dtype]
    names = ["out", "dx", "dweight", "dbias", "dresidual", "running_mean", "running_var"]
    for what, got, same, want in zip(names, fused, three, ref, strict=True):
        if want is None:
            assert got is None and same is None, what
            continue
        if what in ("out", "running_mean", "running_var"):
            assert got.tobytes() == same.tobytes(), f"batch_norm_relu {opts} {what}: not the three ops' bits"
        scale = max(1.0, float(np.max(np.abs(want), initial=0.0)))
        for other in (same, want):
            np.testing.assert_allclose(
                got, other, rtol=rtol, atol=atol * scale, err_msg=f"batch_norm_relu {opts} {what}"
            )


def test_batch_norm_relu_fast_equals_reference_and_the_three_ops() -> None:
    matrix(batch_norm_relu_cases(), _check_batch_norm_relu, factor=2)


def test_batch_norm_relu_fast_split_over_threads(split_and_blocked: None) -> None:
    matrix(batch_norm_relu_cases(), _check_batch_norm_relu)


def test_batch_norm_relu_edge_values_are_the_three_ops_results() -> None:
    """Zeros of both signs, NaN and ±∞ in x, the residual and the gradient: ReLU's NaN passes
    through, its masked cells hold +0.0 (the output is the three ops' bit for bit), and the
    gradients are the three ops', NaN for NaN."""
    rng = np.random.default_rng(7)
    x = rng.standard_normal((3, 2, 4, 5)).astype(np.float32)
    x[0, 0, 0, :3] = [np.nan, -0.0, 0.0]
    x[1, 1, 1, 1] = np.inf
    residual = rng.standard_normal(x.shape).astype(np.float32)
    residual[2, :, 2, :2] = [-0.0, np.inf]
    g = rng.standard_normal(x.shape).astype(np.float32)
    g[:, :, 3, 0] = [[np.inf, -0.0], [np.nan, 1.0], [-np.inf, 0.0]]
    for training in (True, False):
        arrays = {"x": x, "running_mean": np.zeros(2, np.float32), "running_var": np.ones(2, np.float32)}
        arrays |= {"weight": np.array([2.0, -1.0], np.float32), "bias": np.array([0.0, 0.5], np.float32)}
        for res in (None, residual):
            case_arrays = arrays | ({"residual": res} if res is not None else {})
            fused = _batch_norm_relu_results(case_arrays, {"training": training}, lambda shape: g, "fast")
            three = _batch_norm_relu_results(case_arrays, {"training": training}, lambda shape: g, "three ops")
            assert fused[0].tobytes() == three[0].tobytes()
            for a, b in zip(fused, three, strict=True):
                assert (a is None and b is None) or np.allclose(a, b, rtol=1e-5, atol=1e-5, equal_nan=True)


def test_batch_norm_relu_honours_a_replaced_relu_rule() -> None:
    """Guided backpropagation replaces ReLU's backward (F.relu.override_backward): the fused op's ReLU
    follows it too, on both backends, as the three ops would."""
    from glassnet.visualize import guided_relu

    rng = np.random.default_rng(8)
    x, r = rng.standard_normal((2, 3, 4, 4)).astype(np.float32), rng.standard_normal((2, 3, 4, 4)).astype(np.float32)
    g = rng.standard_normal(x.shape).astype(np.float32)
    arrays = {"x": x, "running_mean": np.zeros(3, np.float32), "running_var": np.ones(3, np.float32), "residual": r}
    with guided_relu():
        want = _batch_norm_relu_results(arrays, {"training": True}, lambda shape: g, "three ops")
        for how in ("fast", "reference"):
            got = _batch_norm_relu_results(arrays, {"training": True}, lambda shape: g, how)
            for a, b in zip(got, want, strict=True):
                assert (a is None and b is None) or np.allclose(a, b, rtol=1e-5, atol=1e-6), how
    assert not np.allclose(want[1], _batch_norm_relu_results(arrays, {"training": True}, lambda s: g, "fast")[1])


def test_batch_norm_relu_checks_the_residual() -> None:
    x = np.ones((2, 3, 4, 4), np.float32)
    for backend in ("fast", "reference"):
        with (
            use_backend(backend),
            pytest.raises(ValueError, match=r"residual must have the input's shape \(2, 3, 4, 4\), got \(2, 3, 4\)"),
        ):
            F.batch_norm_relu(x, np.zeros(3), np.ones(3), residual=np.ones((2, 3, 4), np.float32))
    assert not fast_norm.supports_relu(x, residual=np.ones((2, 3, 4, 4)))  # float64 residual: the reference
    assert fast_norm.supports_relu(x, residual=np.ones((2, 3, 4, 4), np.float32))


# -------------------------------------------------------------------------------------- conv2d_bn_relu


@st.composite
def conv_bn_relu_cases(draw: Any) -> tuple[dict[str, Any], dict[str, Any], Any]:
    """3×3 stride-1 layers (Winograd's, so that inference folds them) and now and then a strided one."""
    dtype = draw(DTYPES)
    n, c, f = draw(st.integers(1, 3)), draw(st.integers(1, 5)), draw(st.integers(1, 5))
    h, w = draw(st.integers(3, 9)), draw(st.integers(3, 9))
    stride = draw(st.sampled_from([1, 1, 1, 2]))
    pads = ((draw(st.integers(0, 2)), draw(st.integers(0, 2))), (draw(st.integers(0, 2)), draw(st.integers(0, 2))))
    ho, wo = (h + sum(pads[0]) - 3) // stride + 1, (w + sum(pads[1]) - 3) // stride + 1
    assume(ho >= 1 and wo >= 1)
    rng = np.random.default_rng(draw(st.integers(0, 2**16)))

    def maybe(shape: tuple[int, ...], scale: float = 1.0) -> Any:
        return (rng.standard_normal(shape) * scale).astype(dtype) if draw(st.booleans()) else None

    arrays = {
        "x": rng.standard_normal((n, c, h, w)).astype(dtype),
        "weight": rng.standard_normal((f, c, 3, 3)).astype(dtype),
        "bias": maybe((f,)),
        "running_mean": (rng.standard_normal(f) * 0.5).astype(dtype),
        "running_var": rng.uniform(0.5, 2, f).astype(dtype),
        "bn_weight": maybe((f,)),
        "bn_bias": maybe((f,)),
        "residual": maybe((n, f, ho, wo)),
    }
    opts = {"stride": stride, "padding": pads, "flip": draw(st.booleans()), "eps": draw(st.sampled_from([1e-5, 0.1]))}
    return arrays, opts, normal_grad(draw(st.integers(0, 100)), dtype)


def _conv_bn_relu_results(arrays: dict[str, Any], opts: dict[str, Any], grad: Any, backend: str, record: bool) -> Any:
    """(results, ctx): [out, dx, dweight, dbias, dbn_weight, dbn_bias, dresidual] from ``backend``, the
    forward under no_grad unless ``record`` (the fast pair folds the batch norm only then)."""
    with use_backend(backend):
        with contextlib.nullcontext() if record else glassnet.no_grad():
            out, ctx = F.conv2d_bn_relu.forward(**arrays, **opts)
        assert ctx.backend == backend
        ctx["needs_input_grad"] = (True,) * 9
        grads = F.conv2d_bn_relu.backward(grad(out.shape), ctx)
    return [out, *(grads[i] for i in (0, 1, 2, 5, 6, 8))], ctx


def _check_conv_bn_relu(case: Any) -> None:
    """Folded (inference) and in two ops (recording), the fast pair equals the reference; a
    Winograd layer under no_grad really folds, and its backward (recomputed) is right too."""
    arrays, opts, grad = case
    want, _ = _conv_bn_relu_results(arrays, opts, grad, "reference", True)
    for record in (False, True):
        got, ctx = _conv_bn_relu_results(arrays, opts, grad, "fast", record)
        winograd = opts["stride"] == 1 and min(arrays["weight"].shape[:2]) >= 2  # Winograd wants 2+ channels
        assert ctx.folded == (not record and winograd), (record, opts)
        rtol, atol = TOL[arrays["x"].dtype]
        names = ["out", "dx", "dweight", "dbias", "dbn_weight", "dbn_bias", "dresidual"]
        for what, a, b in zip(names, got, want, strict=True):
            if b is None:
                assert a is None, what
                continue
            scale = max(1.0, float(np.max(np.abs(b), initial=0.0)))
            np.testing.assert_allclose(a, b, rtol=rtol, atol=atol * scale, err_msg=f"conv2d_bn_relu {opts} {what}")


def test_conv2d_bn_relu_fast_equals_reference(monkeypatch: pytest.MonkeyPatch) -> None:
    for name in ("WINOGRAD_MIN", "WINOGRAD_MIN_POSITIONS", "WINOGRAD_MIN_USEFUL", "GATHER_MIN"):
        monkeypatch.setattr(fast_conv, name, 0 if name != "GATHER_MIN" else 2**62)
    matrix(conv_bn_relu_cases(), _check_conv_bn_relu, factor=2)


def test_conv2d_bn_relu_declines_to_fold_what_winograd_does_not_take() -> None:
    """A small layer (below Winograd's thresholds) runs as the two ops even under no_grad; bad
    arguments raise the two ops' errors."""
    x, w = np.ones((1, 2, 4, 4), np.float32), np.ones((3, 2, 3, 3), np.float32)
    stats = (np.zeros(3, np.float32), np.ones(3, np.float32))
    with glassnet.no_grad():
        _, ctx = F.conv2d_bn_relu.forward(x, w, None, *stats, padding=1)
        assert ctx.backend == "fast" and not ctx.folded
        with pytest.raises(ValueError, match=r"running_mean must have shape \(3,\), got \(2,\)"):
            F.conv2d_bn_relu(x, w, None, np.zeros(2, np.float32), stats[1], padding=1)
        with pytest.raises(
            ValueError, match=r"residual must have the input's shape \(1, 3, 4, 4\), got \(1, 3, 2, 2\)"
        ):
            F.conv2d_bn_relu(x, w, None, *stats, residual=np.ones((1, 3, 2, 2), np.float32), padding=1)


def test_small_batch_norms_and_convolutions_need_no_numba(monkeypatch: pytest.MonkeyPatch) -> None:
    """Below MIN_SIZE batch norm runs the reference, and small strided layers 'hwn': no Numba kernel
    (1.5 s to load in a fresh process) for a single-image prediction."""
    monkeypatch.setattr(fast_norm, "MIN_SIZE", 2**16)
    x = np.ones((1, 16, 32, 32), np.float32)
    assert not fast_norm.supports(x)
    assert fast_norm.supports(np.ones((4, 16, 32, 32), np.float32))
    _, ctx = F.conv2d.forward(x, np.ones((32, 16, 3, 3), np.float32), padding=1, stride=2)
    assert ctx.path == "hwn"
    w = np.ones((32, 16, 3, 3), np.float32)
    _, ctx = F.conv2d.forward(np.ones((64, 16, 32, 32), np.float32), w, padding=1, stride=2)
    assert ctx.path == "gather"


def test_batch_norm_fast_declines_what_it_does_not_cover() -> None:
    """[N, C] input and non-contiguous views run the reference; bad arguments raise the reference's errors."""
    x2 = np.ones((4, 3), np.float32)
    assert not fast_norm.supports(x2)
    assert not fast_norm.supports(np.ones((2, 3, 4, 4), np.float32).transpose(0, 1, 3, 2)[:, :, ::2])
    assert fast_norm.supports(np.ones((2, 3, 4, 4), np.float32))
    with use_backend("fast"), pytest.raises(ValueError, match="eps must be a finite number > 0, got -1"):
        F.batch_norm.forward(np.ones((2, 3, 4, 4), np.float32), np.zeros(3), np.ones(3), eps=-1)
    with use_backend("fast"), pytest.raises(ValueError, match=r"weight must have shape \(3,\), got \(2,\)"):
        F.batch_norm.forward(np.ones((2, 3, 4, 4), np.float32), None, None, weight=np.ones(2))


@pytest.mark.parametrize("training", [True, False])
def test_batch_norm_fast_backward_of_a_non_contiguous_gradient(training: bool) -> None:
    """A gradient in another layout takes the reference's backward, from either kind of context."""
    rng = np.random.default_rng(3)
    x = rng.standard_normal((2, 3, 4, 5))
    stats = (rng.standard_normal(3), rng.uniform(0.5, 2, 3))
    g = rng.standard_normal((2, 3, 5, 4)).transpose(0, 1, 3, 2)  # [2, 3, 4, 5], not C-contiguous
    got, want = [], []
    for backend, into in (("fast", got), ("reference", want)):
        with use_backend(backend):
            _, ctx = F.batch_norm.forward(x, stats[0].copy(), stats[1].copy(), np.ones(3) * 2, np.ones(3), training)
            into.extend(v for v in F.batch_norm.backward(g, ctx) if v is not None)
    for a, b in zip(got, want, strict=True):
        np.testing.assert_allclose(a, b, rtol=1e-10, atol=1e-12)


def test_a_single_image_prediction_loads_no_numba() -> None:
    """ResNet-20 on one 32×32 image, in a fresh process: no kernel of the fast path needs Numba
    (importing it and loading its cached code takes about 1.5 s), while a training batch does."""
    import subprocess
    import sys

    code = (
        "import sys, numpy as np, glassnet\n"
        "from glassnet.models import resnet_cifar\n"
        "m = resnet_cifar(20, rng=0).eval()\n"
        "with glassnet.no_grad():\n"
        "    m(glassnet.Tensor(np.ones((1, 3, 32, 32), np.float32)))\n"
        "print('numba' in sys.modules)\n"
        "m.train()\n"
        "m(glassnet.Tensor(np.ones((16, 3, 32, 32), np.float32)))\n"
        "print('numba' in sys.modules)\n"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120, check=True)
    assert out.stdout.split() == ["False", "True"], out.stdout + out.stderr


def test_warm_up_loads_every_numba_kernel_that_training_then_uses() -> None:
    """In a fresh process, glassnet.fast.warm_up() leaves nothing for a training or inference step
    of ResNet-8 and LeNet-5 to compile or load: no kernel gains a signature afterwards. (In float32
    the gathered conv's im2col and col2im run inside its one-call part kernels, compiled with them.)"""
    import subprocess
    import sys

    code = (
        "import numpy as np, glassnet, glassnet.fast as fast, glassnet.functional as F\n"
        "from glassnet.models import resnet_cifar, lenet5\n"
        "fast.warm_up()\n"
        "def sigs():\n"
        "    found = {m.__name__ + k: v for m in (fast.winograd, fast.norm, fast.pool)\n"
        "             for k, v in vars(m._kernels()).items()}\n"
        "    found.update(vars(fast.gather._part_kernels()), add_rows=fast.gather._kernels().add_rows)\n"
        "    return {k: len(v.signatures) for k, v in found.items()}\n"
        "before = sigs()\n"
        "for m, shape in ((resnet_cifar(8, rng=0), (128, 3, 32, 32)), (lenet5(rng=0), (64, 1, 28, 28))):\n"
        "    x = glassnet.Tensor(np.random.default_rng(0).standard_normal(shape).astype(np.float32))\n"
        "    F.cross_entropy(m(x), np.zeros(shape[0], np.int64)).backward()\n"
        "    with glassnet.no_grad():\n"
        "        m.eval()(x)\n"
        "print(min(before.values()), before == sigs())\n"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=300, check=True)
    assert out.stdout.split() == ["1", "True"], out.stdout + out.stderr


def test_kernels_compile_without_a_writable_cache() -> None:
    """Where Numba finds no cache location (here: a function with no source file, as in a read-only
    install with no home directory) the kernels are compiled in memory instead of failing."""
    from glassnet.fast._jit import compile_kernels

    namespace: dict[str, Any] = {}
    exec("def add_one(a, out):\n    for i in range(a.shape[0]):\n        out[i] = a[i] + 1.0\n", namespace)
    kernels = compile_kernels(add_one=namespace["add_one"])
    out = np.empty(3)
    kernels.add_one(np.arange(3.0), out)
    np.testing.assert_array_equal(out, [1.0, 2.0, 3.0])
    assert type(kernels.add_one._cache).__name__ == "NullCache"  # compiled without a disk cache


# ------------------------------------------------------------------ max pooling: the two fast paths


def _pool_geometry(x: np.ndarray, opts: dict[str, Any]) -> Any:
    from glassnet.functional.pool import pool_geometry

    args = (opts.get("stride"), opts.get("padding", 0), opts.get("dilation", 1), opts.get("ceil_mode", False))
    return pool_geometry("max_pool2d", x, opts["kernel_size"], *args)


def _scan_max_pool(x: np.ndarray, g: np.ndarray, opts: dict[str, Any]) -> tuple[np.ndarray, np.ndarray]:
    """(out, dx) by PyTorch's scan written out, padding and dilation included: a window's real cells
    in row-major order, the first taken, a later one when greater or NaN; none: −∞, no gradient."""
    (kh, kw), (sh, sw), (dh, dw), ((pt, _), (pl, _)), (ho, wo) = _pool_geometry(x, opts)
    n, c, h, w = x.shape
    out = np.full((n, c, ho, wo), -np.inf, dtype=x.dtype)
    dx = np.zeros_like(x)
    for b, ch, oy, ox in itertools.product(range(n), range(c), range(ho), range(wo)):
        at = None
        for i, j in itertools.product(range(kh), range(kw)):
            r, q = oy * sh - pt + i * dh, ox * sw - pl + j * dw
            if not (0 <= r < h and 0 <= q < w):
                continue  # padding never wins
            v = x[b, ch, r, q]
            if at is None or v > out[b, ch, oy, ox] or np.isnan(v):
                out[b, ch, oy, ox], at = v, (r, q)
        if at is not None:
            dx[b, ch, at[0], at[1]] += g[b, ch, oy, ox]
    return out, dx


def _pool_edge_cases() -> list[tuple[str, np.ndarray, dict[str, Any]]]:
    """(name, x, max_pool2d options) whose winners follow each of the rules."""
    rng = np.random.default_rng(11)
    ties = np.full((2, 3, 7, 6), 1.5)  # every cell ties: each window's first real cell wins
    nan = rng.standard_normal((1, 2, 6, 6))
    nan[0, 0, 0, 1] = nan[0, 0, 1, 0] = np.nan  # two NaN in the first window: the later (row-major) wins
    nan[0, 1, 3, 3] = np.nan  # a NaN in several overlapping windows
    ninf = rng.standard_normal((2, 2, 5, 5))
    ninf[0, 0, :3, :3] = -np.inf  # all-−∞ windows, some reaching into the padding: their first real cell wins
    ninf[1] = -np.inf
    peaks = rng.standard_normal((1, 2, 9, 8))
    peaks[0, :, 4, 3] = 9.0  # one cell winning every window that holds it
    dilated = {"kernel_size": 2, "stride": 1, "dilation": 3, "padding": 2}  # window 1 sees only padding
    ceil = {"kernel_size": 3, "stride": 2, "dilation": 3, "padding": 3, "ceil_mode": True}  # ceil adds such a window
    return [
        ("ties, overlapping", ties, {"kernel_size": 3, "stride": 1}),
        ("ties, padded, dilated", ties, {"kernel_size": (2, 3), "stride": (1, 2), "padding": 1, "dilation": (2, 1)}),
        ("NaN", nan, {"kernel_size": 2, "stride": 1}),
        ("NaN, padded, ceil mode", nan, {"kernel_size": 3, "stride": 2, "padding": 1, "ceil_mode": True}),
        ("all -inf, padded", ninf, {"kernel_size": 3, "stride": 2, "padding": 1}),
        ("padding-only windows, dilated", rng.standard_normal((1, 2, 2, 2)), dilated),
        ("padding-only window from ceil mode", rng.standard_normal((1, 2, 2, 2)), ceil),
        ("overlapping, dilated, padded", peaks, {"kernel_size": 3, "stride": 1, "dilation": (1, 2), "padding": (1, 2)}),
        ("17x17 window", rng.integers(-2, 3, (1, 2, 24, 24)).astype(np.float64), {"kernel_size": 17, "stride": 3}),
    ]  # fmt: skip


def _fast_max_pool(path: str, x: np.ndarray, opts: dict[str, Any], *grads: np.ndarray) -> list[np.ndarray]:
    """[out, dx for each of ``grads``] from fast max pooling on ``path`` (asserted to run)."""
    with pool_path(path), use_backend("fast"):
        out, ctx = F.max_pool2d.forward(x, **opts)
        assert ctx.backend == "fast" and ("winner" in ctx) == (path == "numba")
        return [out, *(F.max_pool2d.backward(g, ctx)[0] for g in grads)]


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
@pytest.mark.parametrize("path", POOL_PATHS)
@pytest.mark.parametrize(("name", "x", "opts"), _pool_edge_cases(), ids=[c[0] for c in _pool_edge_cases()])
def test_max_pool2d_paths_follow_each_winner_rule(
    name: str, x: np.ndarray, opts: dict[str, Any], path: str, dtype: Any
) -> None:
    """Each path against the scan written out: ties to the first maximum, NaN windows to their last
    NaN, all-−∞ windows to their first real cell, windows wholly in the padding −∞ and no gradient."""
    x = x.astype(dtype)
    g = np.random.default_rng(5).integers(1, 4, (*x.shape[:2], *_pool_geometry(x, opts)[4])).astype(dtype)
    want_out, want_dx = _scan_max_pool(x, g, opts)
    if path == "numpy" and np.prod(np.broadcast_to(opts["kernel_size"], 2)) > 255:
        # the NumPy path's winners are uint8: it declines, and the reference runs (the same rules)
        with pool_path(path), use_backend("fast"):
            out, ctx = F.max_pool2d.forward(x, **opts)
            assert ctx.backend == "reference"
            dx = F.max_pool2d.backward(g, ctx)[0]
    else:
        out, dx = _fast_max_pool(path, x, opts, g)
    assert out.dtype == dx.dtype == dtype and dx.shape == x.shape
    np.testing.assert_array_equal(out, want_out)
    np.testing.assert_array_equal(dx, want_dx)
    # the case holds what it is named after; only windows wholly in the padding route no gradient
    assert np.isnan(want_out).any() == ("NaN" in name)
    assert np.isneginf(want_out).any() == ("-inf" in name or "padding-only" in name)
    assert (dx.sum() < g.sum()) == ("padding-only" in name)


@pytest.mark.skipif(not fast_pool.AVAILABLE, reason="the Numba path needs Numba")
@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_max_pool2d_numba_and_numpy_paths_agree(dtype: Any) -> None:
    """The kernels and the NumPy fallback: the same outputs, and the same dx bit for bit for integer
    gradients (any order of adding them is exact); for others the same to rounding (the NumPy path
    adds overlapping windows' gradients in another order)."""
    rng = np.random.default_rng(8)
    cases = [(x, opts) for _, x, opts in _pool_edge_cases() if np.prod(np.broadcast_to(opts["kernel_size"], 2)) <= 255]
    for kind in ("ints", "normal", "nan_and_ninf"):
        cases.append(
            (_pool_input(rng, (3, 4, 11, 13), kind, np.float64), {"kernel_size": 3, "stride": 1, "padding": 1})
        )
        cases.append((_pool_input(rng, (3, 4, 11, 13), kind, np.float64), {"kernel_size": 2, "ceil_mode": True}))
    for x, opts in cases:
        x = x.astype(dtype)
        shape = (*x.shape[:2], *_pool_geometry(x, opts)[4])
        g_int, g = rng.integers(-3, 4, shape).astype(dtype), rng.standard_normal(shape).astype(dtype)
        out, dx_int, dx = _fast_max_pool("numba", x, opts, g_int, g)
        want_out, want_dx_int, want_dx = _fast_max_pool("numpy", x, opts, g_int, g)
        np.testing.assert_array_equal(out, want_out)
        np.testing.assert_array_equal(dx_int, want_dx_int)
        np.testing.assert_allclose(dx, want_dx, rtol=TOL[np.dtype(dtype)][0], atol=TOL[np.dtype(dtype)][1])


@pytest.mark.skipif(not fast_pool.AVAILABLE, reason="the Numba path needs Numba")
def test_max_pool2d_kernel_adds_overlapping_windows_in_the_reference_order() -> None:
    """A cell that wins several overlapping windows gets their gradients added in the reference's
    order: its taps in row-major order, which reach it from the windows in reverse. The sum rounds
    the same: here 1 + 1e16 − 1e16 + 0 in the windows' order would give 0, the reference gives 1."""
    x = np.zeros((1, 1, 3, 3))
    x[0, 0, 1, 1] = 1.0  # in all four 2×2 windows, and their maximum
    g = np.array([[[[1.0, 1e16], [-1e16, 0.0]]]])
    (out, dx) = _fast_max_pool("numba", x, {"kernel_size": 2, "stride": 1}, g)
    with use_backend("reference"):
        want_out, ctx = F.max_pool2d.forward(x, 2, stride=1)
        (want_dx,) = F.max_pool2d.backward(g, ctx)
    np.testing.assert_array_equal(out, want_out)
    assert dx[0, 0, 1, 1] == want_dx[0, 0, 1, 1] == 1.0
    assert ((1.0 + 1e16) + -1e16) + 0.0 == 0.0  # the other order
    np.testing.assert_array_equal(dx, want_dx)


@pytest.mark.parametrize("path", POOL_PATHS)
def test_max_pool2d_fast_of_non_contiguous_inputs(path: str) -> None:
    """Transposed, strided, reversed and broadcast views pool as their contiguous copies do."""
    rng = np.random.default_rng(4)
    for dtype in (np.float32, np.float64):
        base = np.round(rng.standard_normal((3, 4, 12, 10)), 1).astype(dtype)  # ties
        base[1, 2, 3, 4] = np.nan
        views = [base.transpose(0, 1, 3, 2), base[:, ::2, 1::2, ::-1], np.broadcast_to(base[:1], base.shape)]
        for view in views:
            for opts in ({"kernel_size": 2}, {"kernel_size": 3, "stride": 2, "padding": 1, "ceil_mode": True}):
                g = rng.integers(-3, 4, (*view.shape[:2], *_pool_geometry(view, opts)[4])).astype(dtype)
                got = _fast_max_pool(path, view, opts, g)
                want = _fast_max_pool(path, np.ascontiguousarray(view), opts, g)
                for a, b in zip(got, want, strict=True):
                    np.testing.assert_array_equal(a, b)
                np.testing.assert_array_equal(got[1], _scan_max_pool(np.ascontiguousarray(view), g, opts)[1])


def test_max_pool2d_small_inputs_need_no_numba() -> None:
    """Below NUMBA_MIN elements (LeNet-5's pools on one image) the NumPy path runs, which needs no
    Numba; LeNet-5's pools on a batch of 64 run the kernels."""
    with use_backend("fast"):
        _, ctx = F.max_pool2d.forward(np.ones((1, 6, 28, 28), np.float32), 2)
        assert "winner" not in ctx
        _, ctx = F.max_pool2d.forward(np.ones((64, 16, 10, 10), np.float32), 2)
        assert ("winner" in ctx) == fast_pool.AVAILABLE
