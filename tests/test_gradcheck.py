"""Finite-difference gradient checks (float64) of every functional op and every module.

``glassnet.gradcheck`` compares a backward pass with central differences of
L = Σ out ⊙ R; its per-input error is max|analytic − numeric| / max|gradient|, and
every check here uses tolerance 1e-6. Tensors are kept tiny (a few hundred elements)
because each element costs two forward passes.

Max pooling is not differentiable where a window's maximum is tied, so its finite
difference checks use inputs of distinct values (a random permutation); tie-heavy
inputs are checked separately against a slow reference loop implementing the rule
"the gradient goes to the first maximum in row-major order".
"""

from __future__ import annotations

from collections import OrderedDict
from collections.abc import Callable
from typing import Any

import numpy as np
import pytest
from hypothesis import assume, given, settings
from hypothesis import strategies as st

import glassnet
from glassnet import functional as F
from glassnet import nn
from glassnet.fast import winograd as fast_winograd
from glassnet.functional.conv import conv2d_geometry
from glassnet.models import lenet5

# Every test here runs on both backends: the fast kernels and the readable reference.
pytestmark = pytest.mark.usefixtures("backend")

TOL = 1e-6


def _rng(seed: int = 0) -> np.random.Generator:
    return np.random.default_rng(seed)


def check_op(op: Any, *inputs: Any, expect: int, **options: Any) -> glassnet.GradcheckReport:
    """Gradcheck an op and insist that exactly ``expect`` inputs were differentiated.

    (An op whose backward wrongly returned None for an input would otherwise be skipped.)
    """
    report = glassnet.gradcheck(op, *inputs, tol=TOL, **options)
    assert len(report.errors) == expect, f"checked {list(report.errors)}, expected {expect} inputs"
    report.assert_ok()
    return report


def check_module(module: nn.Module, x: np.ndarray) -> glassnet.GradcheckReport:
    """Gradcheck a module; the report must name the input and every trainable parameter."""
    report = glassnet.gradcheck(module, x, tol=TOL)
    expected = ["input"] + [n for n, p in module.named_parameters() if p.requires_grad]
    assert list(report.errors) == expected
    report.assert_ok()
    return report


def away_from_zero(x: np.ndarray, margin: float = 0.05) -> np.ndarray:
    """Push values at least ``margin`` away from 0 (the kink of ReLU-like functions)."""
    return np.where(x >= 0, x + margin, x - margin)


def distinct(shape: tuple[int, ...], rng: np.random.Generator, spacing: float = 0.1) -> np.ndarray:
    """Distinct values (a shuffled arithmetic sequence): no ties, spacing ≫ the finite-difference step."""
    return (rng.permutation(int(np.prod(shape))) * spacing - 1.0).reshape(shape)


# ------------------------------------------------------------------------------------------------ conv2d

CONV_CASES = {
    # name: (x shape, weight shape, options)
    "plain": ((2, 2, 5, 5), (3, 2, 3, 3), {}),
    "no_bias": ((1, 2, 5, 4), (3, 2, 3, 3), {"bias": False}),
    "stride_greater_than_kernel": ((1, 2, 8, 7), (3, 2, 2, 2), {"stride": 3}),
    "stride_pair": ((1, 1, 7, 8), (2, 1, 3, 3), {"stride": (2, 3), "padding": 1}),
    "dilation": ((1, 2, 7, 7), (2, 2, 3, 3), {"dilation": 2}),
    "dilation_pair_padded": ((1, 2, 6, 7), (2, 2, 3, 2), {"dilation": (2, 3), "padding": (1, 2)}),
    "groups": ((1, 4, 5, 5), (6, 2, 3, 3), {"groups": 2, "padding": 1}),
    "depthwise": ((2, 3, 5, 5), (3, 1, 3, 3), {"groups": 3}),
    "depthwise_multiplier": ((1, 3, 4, 5), (6, 1, 2, 2), {"groups": 3, "stride": 2}),
    "asymmetric_padding": ((1, 2, 4, 5), (2, 2, 3, 3), {"padding": ((1, 0), (2, 1))}),
    "asymmetric_padding_strided": ((1, 1, 5, 5), (2, 1, 2, 3), {"padding": ((0, 2), (1, 0)), "stride": 2}),
    "same_even_kernel": ((1, 2, 5, 6), (2, 2, 2, 4), {"padding": "same"}),
    "same_even_kernel_dilated": ((1, 1, 5, 5), (2, 1, 4, 2), {"padding": "same", "dilation": 2}),
    "same_strided": ((1, 2, 7, 6), (2, 2, 4, 3), {"padding": "same", "stride": 2}),
    "valid": ((1, 2, 5, 5), (2, 2, 3, 3), {"padding": "valid"}),
    "flip": ((1, 2, 5, 5), (3, 2, 3, 2), {"flip": True, "padding": 1}),
    "flip_strided_dilated": ((1, 2, 7, 7), (2, 2, 2, 3), {"flip": True, "stride": 2, "dilation": 2}),
    "non_square_1x3": ((1, 2, 4, 6), (2, 2, 1, 3), {}),
    "non_square_3x1_strided": ((1, 2, 6, 4), (2, 2, 3, 1), {"stride": (2, 1)}),
    "kernel_1x1": ((2, 3, 3, 3), (2, 3, 1, 1), {}),
    # stride 1 with much waste: the automatic choice gathers (both algorithms are checked anyway)
    "stride1_gather_path": ((1, 1, 9, 9), (2, 1, 6, 6), {}),
    "kernel_covers_input": ((2, 2, 3, 3), (2, 2, 3, 3), {}),
}


@pytest.mark.parametrize("case", list(CONV_CASES))
def test_conv2d(case: str, backend: str) -> None:
    x_shape, w_shape, opts = CONV_CASES[case]
    opts = dict(opts)
    rng = _rng(1)
    x, w = rng.standard_normal(x_shape), rng.standard_normal(w_shape)
    bias = rng.standard_normal(w_shape[0]) if opts.pop("bias", True) else None
    stride1 = opts.get("stride", 1) in (1, (1, 1))
    algorithms = (("shift", "gather", "hwn") if stride1 else ("gather", "hwn")) if backend == "fast" else (None,)
    if backend == "fast" and _winograd_applies(x_shape, w_shape, opts):
        algorithms += ("winograd", "winograd4")
    for algorithm in algorithms:  # the fast kernel's algorithms; the reference has one
        check_op(F.conv2d, x, w, bias, expect=2 if bias is None else 3, algorithm=algorithm, **opts)


def _winograd_applies(x_shape: tuple[int, ...], w_shape: tuple[int, ...], opts: dict[str, Any]) -> bool:
    g = {k: opts.get(k, d) for k, d in (("stride", 1), ("padding", 0), ("dilation", 1))}
    stride, dilation, pads, _ = conv2d_geometry(x_shape, w_shape, g["stride"], g["padding"], g["dilation"])
    return fast_winograd.applies(w_shape[2:], stride, dilation, opts.get("groups", 1), pads)


@pytest.mark.fast_only
def test_conv2d_cases_cover_every_code_path() -> None:
    paths = set()
    for x_shape, w_shape, opts in CONV_CASES.values():
        opts = {k: v for k, v in opts.items() if k != "bias"}
        for algorithm in (None, "shift", "gather", "hwn", "winograd", "winograd4"):
            if algorithm == "shift" and opts.get("stride", 1) not in (1, (1, 1)):
                continue
            if algorithm in ("winograd", "winograd4") and not _winograd_applies(x_shape, w_shape, opts):
                continue
            _, ctx = F.conv2d.forward(np.zeros(x_shape), np.zeros(w_shape), None, algorithm=algorithm, **opts)
            paths.add(ctx.path)
    assert paths == {"shift", "gather", "hwn", "winograd", "winograd4"}


@pytest.mark.fast_only
@pytest.mark.parametrize("name", ["plain", "dilation_pair_padded", "groups", "asymmetric_padding", "flip"])
def test_conv2d_shift_path_in_many_small_blocks(name: str, monkeypatch: pytest.MonkeyPatch) -> None:
    """The shift path builds its im2col in blocks of positions; force ragged blocks of 7."""
    from glassnet.fast import conv

    monkeypatch.setattr(conv, "SHIFT_BLOCK_BYTES", 1)
    monkeypatch.setattr(conv, "SHIFT_MIN_BLOCK", 7)
    x_shape, w_shape, opts = CONV_CASES[name]
    opts = {k: v for k, v in opts.items() if k != "bias"}
    rng = _rng(5)
    x, w, b = rng.standard_normal(x_shape), rng.standard_normal(w_shape), rng.standard_normal(w_shape[0])
    check_op(F.conv2d, x, w, b, expect=3, algorithm="shift", **opts)
    monkeypatch.setattr(conv, "SHIFT_BLOCK_BYTES", None)
    one_block, _ = F.conv2d.forward(x, w, b, algorithm="shift", **opts)
    np.testing.assert_allclose(F.conv2d(x, w, b, algorithm="shift", **opts), one_block, rtol=1e-12)


@pytest.mark.fast_only
@pytest.mark.parametrize(
    "x_shape, w_shape, opts",
    [
        ((3, 4, 6, 7), (2, 4, 3, 3), {"padding": 1}),  # F ≤ C: dx from an im2col of the gradient
        ((3, 2, 6, 5), (5, 2, 3, 2), {"padding": ((2, 0), (1, 1)), "dilation": (1, 2)}),  # F > C: col2im
        ((2, 4, 7, 7), (4, 2, 3, 3), {"padding": 1, "groups": 2}),
    ],
)
def test_conv2d_shift_path_split_over_worker_threads(
    x_shape: tuple, w_shape: tuple, opts: dict, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Three workers, ragged blocks (some workers get none): same results as one thread, exact gradients."""
    from glassnet import backend
    from glassnet.fast import conv

    rng = _rng(11)
    x, w, b = rng.standard_normal(x_shape), rng.standard_normal(w_shape), rng.standard_normal(w_shape[0])
    g = rng.standard_normal(F.conv2d(x, w, b, algorithm="shift", **opts).shape)
    out1, ctx1 = F.conv2d.forward(x, w, b, algorithm="shift", **opts)
    grads1 = F.conv2d.backward(g, ctx1)
    monkeypatch.setattr(backend, "_workers", 3)
    monkeypatch.setattr(conv, "PARALLEL_MIN", 0)
    for block, min_block in ((None, 1), (1, 5), (1, 40)):
        monkeypatch.setattr(conv, "SHIFT_BLOCK_BYTES", block)
        monkeypatch.setattr(conv, "SHIFT_MIN_BLOCK", min_block)
        out3, ctx3 = F.conv2d.forward(x, w, b, algorithm="shift", **opts)
        assert ctx3.parts == 3
        np.testing.assert_allclose(out3, out1, rtol=1e-12, atol=1e-12)
        for got, want in zip(F.conv2d.backward(g, ctx3), grads1, strict=True):
            np.testing.assert_allclose(got, want, rtol=1e-12, atol=1e-12)
        dx, dw, db = F.conv2d.backward(g, ctx3, need_dx=False)
        assert dx is None
        np.testing.assert_allclose(dw, grads1[1], rtol=1e-12, atol=1e-12)
        check_op(F.conv2d, x, w, b, expect=3, algorithm="shift", **opts)


@pytest.mark.fast_only
@pytest.mark.parametrize(
    "w_shape, opts",
    [
        ((3, 2, 3, 3), {"padding": 1}),
        ((3, 2, 3, 3), {"padding": ((0, 1), (2, 0))}),
        ((3, 2, 3, 3), {"padding": ((1, 1), (0, 2))}),
        ((3, 2, 2, 4), {"padding": ((1, 2), (3, 1)), "dilation": (2, 1)}),
        ((3, 2, 1, 1), {"padding": 1}),  # 1×1 kernel: both paddings must stay in the row
        ((3, 2, 3, 2), {"padding": ((2, 2), (3, 3)), "dilation": 2}),
    ],
)
def test_conv2d_shift_rows_share_padding_exactly(w_shape: tuple, opts: dict) -> None:
    """The shift path's rows hold one side's padding; outputs and gradients equal the gather path's."""
    rng = _rng(13)
    x = rng.standard_normal((2, 2, 5, 6))
    w = rng.standard_normal(w_shape)
    out_s, ctx_s = F.conv2d.forward(x, w, None, algorithm="shift", **opts)
    out_g, ctx_g = F.conv2d.forward(x, w, None, algorithm="gather", **opts)
    np.testing.assert_allclose(out_s, out_g, rtol=1e-12, atol=1e-12)
    g = rng.standard_normal(out_s.shape)
    for got, want in zip(F.conv2d.backward(g, ctx_s)[:2], F.conv2d.backward(g, ctx_g)[:2], strict=True):
        np.testing.assert_allclose(got, want, rtol=1e-12, atol=1e-12)


def test_conv2d_algorithm_argument_is_checked() -> None:
    x, w = np.zeros((1, 1, 5, 5)), np.zeros((1, 1, 3, 3))
    with pytest.raises(ValueError, match="algorithm='shift' needs stride 1"):
        F.conv2d(x, w, stride=2, algorithm="shift")
    names = "\\('shift', 'gather', 'hwn', 'winograd', 'winograd4'\\)"
    with pytest.raises(ValueError, match=f"algorithm must be None or one of {names}, got 'fft'"):
        F.conv2d(x, w, algorithm="fft")


@st.composite
def conv_configs(draw: Any) -> dict[str, Any]:
    groups = draw(st.sampled_from([1, 2]))
    cin, cout = groups * draw(st.integers(1, 2)), groups * draw(st.integers(1, 2))
    k = (draw(st.integers(1, 3)), draw(st.integers(1, 3)))
    s = (draw(st.integers(1, 3)), draw(st.integers(1, 3)))
    d = (draw(st.integers(1, 2)), draw(st.integers(1, 2)))
    pads = tuple((draw(st.integers(0, 2)), draw(st.integers(0, 2))) for _ in range(2))
    size = []
    for kk, dd, (lo, hi) in zip(k, d, pads, strict=True):
        smallest = max(1, dd * (kk - 1) + 1 - lo - hi)
        size.append(draw(st.integers(smallest, smallest + 4)))
    return {
        "x": (draw(st.integers(1, 2)), cin, *size),
        "w": (cout, cin // groups, *k),
        "bias": draw(st.booleans()),
        "stride": s,
        "padding": pads,
        "dilation": d,
        "groups": groups,
        "flip": draw(st.booleans()),
    }


@settings(max_examples=30, deadline=None)
@given(cfg=conv_configs(), seed=st.integers(0, 2**16))
def test_conv2d_random_configurations(cfg: dict[str, Any], seed: int) -> None:
    rng = _rng(seed)
    x, w = rng.standard_normal(cfg["x"]), rng.standard_normal(cfg["w"])
    b = rng.standard_normal(cfg["w"][0]) if cfg["bias"] else None
    opts = {k: cfg[k] for k in ("stride", "padding", "dilation", "groups", "flip")}
    check_op(F.conv2d, x, w, b, expect=3 if cfg["bias"] else 2, **opts)


# ------------------------------------------------------------------------------------------- max pooling

MAXPOOL_CASES = {
    # name: (x shape, options)
    "2x2_s2": ((2, 2, 4, 6), {"kernel_size": 2}),
    "odd_input_floor": ((1, 2, 5, 5), {"kernel_size": 2}),
    "ceil_mode": ((1, 2, 5, 5), {"kernel_size": 2, "ceil_mode": True}),
    "overlapping_3x3_s2": ((1, 2, 7, 7), {"kernel_size": 3, "stride": 2}),
    "overlapping_3x3_s2_ceil": ((1, 1, 6, 8), {"kernel_size": 3, "stride": 2, "ceil_mode": True}),
    "padding": ((1, 2, 5, 4), {"kernel_size": 3, "stride": 2, "padding": 1}),
    "padding_pair_ceil": ((1, 1, 6, 5), {"kernel_size": (3, 2), "stride": 2, "padding": (1, 1), "ceil_mode": True}),
    "dilation": ((1, 2, 7, 7), {"kernel_size": 2, "stride": 1, "dilation": 2}),
    "dilation_padding_ceil": ((1, 1, 7, 6), {"kernel_size": 3, "stride": 2, "dilation": 2, "padding": 2}),
    "stride_greater_than_kernel": ((1, 2, 7, 7), {"kernel_size": 2, "stride": 3}),
    "non_square": ((2, 1, 6, 6), {"kernel_size": (1, 3), "stride": (1, 2)}),
    "stride_1": ((1, 2, 4, 4), {"kernel_size": 2, "stride": 1}),
}


@pytest.mark.parametrize("case", list(MAXPOOL_CASES))
def test_max_pool2d_distinct_values(case: str) -> None:
    shape, opts = MAXPOOL_CASES[case]
    check_op(F.max_pool2d, distinct(shape, _rng(2)), expect=1, **opts)


def _pool_len(n: int, k: int, s: int, p: int, d: int, ceil_mode: bool) -> int:
    """Output length along one axis, written out independently of the engine (PyTorch's rule)."""
    span = d * (k - 1) + 1
    room = n + 2 * p - span
    out = (-(-room // s) if ceil_mode else room // s) + 1
    if ceil_mode and (out - 1) * s >= n + p:
        out -= 1
    return out


def reference_max_pool(
    x: np.ndarray, k: tuple[int, int], s: tuple[int, int], p: tuple[int, int], d: tuple[int, int], ceil_mode: bool
) -> tuple[np.ndarray, Callable[[np.ndarray], np.ndarray]]:
    """Slow loop: each window's maximum and where its FIRST maximum (row-major order) lies.

    Returns the output and a function mapping an output gradient to the input gradient
    (every output gradient is added to the cell of its window's first maximum).
    """
    n, c, h, w = x.shape
    ho, wo = _pool_len(h, k[0], s[0], p[0], d[0], ceil_mode), _pool_len(w, k[1], s[1], p[1], d[1], ceil_mode)
    out = np.full((n, c, ho, wo), -np.inf)
    winner: dict[tuple[int, int, int, int], tuple[int, int]] = {}
    for b in range(n):
        for ch in range(c):
            for oy in range(ho):
                for ox in range(wo):
                    for i in range(k[0]):  # taps in row-major order = input cells in row-major order
                        for j in range(k[1]):
                            r, q = oy * s[0] - p[0] + i * d[0], ox * s[1] - p[1] + j * d[1]
                            if 0 <= r < h and 0 <= q < w and x[b, ch, r, q] > out[b, ch, oy, ox]:
                                out[b, ch, oy, ox] = x[b, ch, r, q]
                                winner[b, ch, oy, ox] = (r, q)

    def backward(grad: np.ndarray) -> np.ndarray:
        dx = np.zeros_like(x)
        for (b, ch, oy, ox), (r, q) in winner.items():
            dx[b, ch, r, q] += grad[b, ch, oy, ox]
        return dx

    return out, backward


@st.composite
def pool_configs(draw: Any) -> dict[str, Any]:
    k = (draw(st.integers(1, 3)), draw(st.integers(1, 3)))
    s = (draw(st.integers(1, 3)), draw(st.integers(1, 3)))
    d = (draw(st.integers(1, 2)), draw(st.integers(1, 2)))
    spans = [dd * (kk - 1) + 1 for kk, dd in zip(k, d, strict=True)]
    p = tuple(draw(st.integers(0, span // 2)) for span in spans)
    size = []
    for span, pp in zip(spans, p, strict=True):
        smallest = max(1, span - 2 * pp)
        size.append(draw(st.integers(smallest, smallest + 5)))
    return {
        "shape": (draw(st.integers(1, 2)), draw(st.integers(1, 2)), *size),
        "kernel_size": k,
        "stride": s,
        "padding": p,
        "dilation": d,
        "ceil_mode": draw(st.booleans()),
    }


def _pool_opts(cfg: dict[str, Any]) -> dict[str, Any]:
    return {key: cfg[key] for key in ("kernel_size", "stride", "padding", "dilation", "ceil_mode")}


@settings(max_examples=30, deadline=None)
@given(cfg=pool_configs(), seed=st.integers(0, 2**16))
def test_max_pool2d_random_configurations(cfg: dict[str, Any], seed: int) -> None:
    x = distinct(cfg["shape"], _rng(seed))
    out = F.max_pool2d(x, **_pool_opts(cfg))
    assume(np.all(np.isfinite(out)))  # a dilated window may see only padding cells
    check_op(F.max_pool2d, x, expect=1, **_pool_opts(cfg))


def _tie_heavy(shape: tuple[int, ...], kind: str, rng: np.random.Generator) -> np.ndarray:
    if kind == "constant":
        return np.full(shape, 3.0)
    if kind == "small_integers":
        return rng.integers(0, 3, shape).astype(np.float64)
    if kind == "binary":
        return (rng.random(shape) < 0.5).astype(np.float64)
    # constant rectangular regions on a constant background
    x = np.zeros(shape)
    h, w = shape[2:]
    for _ in range(3):
        r0, c0 = rng.integers(0, h), rng.integers(0, w)
        x[..., r0 : r0 + rng.integers(1, h + 1), c0 : c0 + rng.integers(1, w + 1)] = rng.integers(1, 3)
    return x


@settings(max_examples=60, deadline=None)
@given(
    cfg=pool_configs(),
    kind=st.sampled_from(["constant", "small_integers", "binary", "regions"]),
    seed=st.integers(0, 2**16),
)
def test_max_pool2d_ties_go_to_first_maximum(cfg: dict[str, Any], kind: str, seed: int) -> None:
    rng = _rng(seed)
    x = _tie_heavy(cfg["shape"], kind, rng)
    ref_out, ref_backward = reference_max_pool(
        x, cfg["kernel_size"], cfg["stride"], cfg["padding"], cfg["dilation"], cfg["ceil_mode"]
    )
    out, ctx = F.max_pool2d.forward(x, **_pool_opts(cfg))
    np.testing.assert_array_equal(out, ref_out)
    grad = rng.standard_normal(out.shape)
    (dx,) = F.max_pool2d.backward(grad, ctx)
    np.testing.assert_allclose(dx, ref_backward(grad), rtol=1e-12, atol=1e-12)


def test_max_pool2d_tie_example_by_hand() -> None:
    """A 2×2 window of equal values sends its whole gradient to the top-left cell."""
    x = np.array([[[[5.0, 5.0, 1.0, 7.0], [5.0, 5.0, 7.0, 7.0]]]])
    out, ctx = F.max_pool2d.forward(x, 2)
    np.testing.assert_array_equal(out, [[[[5.0, 7.0]]]])
    (dx,) = F.max_pool2d.backward(np.array([[[[10.0, 20.0]]]]), ctx)
    np.testing.assert_array_equal(dx, [[[[10.0, 0.0, 0.0, 20.0], [0.0, 0.0, 0.0, 0.0]]]])


# ------------------------------------------------------------------------------------- average pooling


@pytest.mark.parametrize("padding", [0, 1])
@pytest.mark.parametrize("count_include_pad", [False, True])
@pytest.mark.parametrize("ceil_mode", [False, True])
def test_avg_pool2d_modes(ceil_mode: bool, count_include_pad: bool, padding: int) -> None:
    x = _rng(3).standard_normal((2, 2, 6, 7))
    check_op(
        F.avg_pool2d,
        x,
        expect=1,
        kernel_size=3,
        stride=2,
        padding=padding,
        ceil_mode=ceil_mode,
        count_include_pad=count_include_pad,
    )


@pytest.mark.parametrize(
    "opts",
    [
        {"kernel_size": 2},
        {"kernel_size": (2, 3), "stride": (1, 2), "padding": (1, 1), "ceil_mode": True, "count_include_pad": False},
        {"kernel_size": 2, "stride": 3},
        {"kernel_size": 3, "stride": 1, "padding": 1},
        {"kernel_size": 2, "divisor_override": 3},
    ],
)
def test_avg_pool2d_more(opts: dict[str, Any]) -> None:
    check_op(F.avg_pool2d, _rng(4).standard_normal((1, 2, 5, 7)), expect=1, **opts)


@settings(max_examples=25, deadline=None)
@given(cfg=pool_configs(), include=st.booleans(), seed=st.integers(0, 2**16))
def test_avg_pool2d_random_configurations(cfg: dict[str, Any], include: bool, seed: int) -> None:
    opts = _pool_opts(cfg)
    del opts["dilation"]  # average pooling has no dilation
    k, p = cfg["kernel_size"], cfg["padding"]
    assume(all(pp <= kk // 2 for pp, kk in zip(p, k, strict=True)))
    n, c, h, w = cfg["shape"]
    shape = (n, c, max(h, k[0] - 2 * p[0]), max(w, k[1] - 2 * p[1]))
    check_op(F.avg_pool2d, _rng(seed).standard_normal(shape), expect=1, count_include_pad=include, **opts)


@pytest.mark.parametrize(
    "shape, output_size",
    [
        ((1, 2, 7, 5), (3, 2)),  # overlapping windows
        ((2, 1, 5, 6), 2),
        ((1, 2, 4, 4), 1),
        ((1, 1, 3, 4), (3, 4)),  # same size (identity)
        ((1, 2, 5, 6), (None, 4)),
        ((1, 1, 3, 2), (5, 4)),  # larger than the input
    ],
)
def test_adaptive_avg_pool2d(shape: tuple[int, ...], output_size: Any) -> None:
    check_op(F.adaptive_avg_pool2d, _rng(5).standard_normal(shape), expect=1, output_size=output_size)


def test_global_avg_pool2d() -> None:
    check_op(F.global_avg_pool2d, _rng(6).standard_normal((2, 3, 4, 5)), expect=1)


# ---------------------------------------------------------------------------------------- activations


@pytest.mark.parametrize(
    "op, opts",
    [
        (F.relu, {}),
        (F.leaky_relu, {}),
        (F.leaky_relu, {"negative_slope": 0.2}),
        (F.sigmoid, {}),
        (F.tanh, {}),
    ],
    ids=["relu", "leaky_relu", "leaky_relu_0.2", "sigmoid", "tanh"],
)
def test_elementwise_activations(op: Any, opts: dict[str, Any]) -> None:
    x = away_from_zero(2 * _rng(7).standard_normal((2, 3, 4, 4)))
    check_op(op, x, expect=1, **opts)


@pytest.mark.parametrize("op", [F.softmax, F.log_softmax], ids=["softmax", "log_softmax"])
@pytest.mark.parametrize("axis", [0, 1, 2, -1])
def test_softmax_family(op: Any, axis: int) -> None:
    x = 3 * _rng(8).standard_normal((3, 4, 5))
    check_op(op, x, expect=1, axis=axis)


def test_softmax_family_large_logits() -> None:
    """The stable forms differentiate correctly where a naive exp would overflow."""
    x = _rng(9).standard_normal((2, 5)) + np.array([[1000.0], [-1000.0]])
    check_op(F.softmax, x, expect=1)
    check_op(F.log_softmax, x, expect=1)


# ------------------------------------------------------------------------------ linear, flatten, dropout


@pytest.mark.parametrize("x_shape", [(3, 4), (2, 3, 4), (4,)])
@pytest.mark.parametrize("bias", [True, False])
def test_linear(x_shape: tuple[int, ...], bias: bool) -> None:
    rng = _rng(10)
    x, w = rng.standard_normal(x_shape), rng.standard_normal((5, 4))
    b = rng.standard_normal(5) if bias else None
    check_op(F.linear, x, w, b, expect=3 if bias else 2)


@pytest.mark.parametrize("start_dim", [0, 1, 2])
def test_flatten(start_dim: int) -> None:
    check_op(F.flatten, _rng(11).standard_normal((2, 3, 2, 2)), expect=1, start_dim=start_dim)


def test_dropout_op_inference_is_identity() -> None:
    check_op(F.dropout, _rng(12).standard_normal((3, 4)), expect=1, p=0.5, training=False)


def test_dropout_module_in_training() -> None:
    drop = nn.Dropout(0.4, rng=0)
    x = away_from_zero(_rng(13).standard_normal((4, 30)))
    out = drop(x)
    dropped = out == 0
    assert 0 < dropped.sum() < x.size, "the mask should drop some units but not all"
    np.testing.assert_allclose(out[~dropped], x[~dropped] / 0.6)
    check_module(drop, x)


# --------------------------------------------------------------------------------------- normalisation


@pytest.mark.parametrize("shape", [(3, 2, 2, 3), (5, 3)])
@pytest.mark.parametrize("affine", [True, False])
def test_batch_norm_training(shape: tuple[int, ...], affine: bool) -> None:
    rng = _rng(14)
    c = shape[1]
    x = rng.standard_normal(shape) * 2 + 1
    weight, bias = (rng.standard_normal(c), rng.standard_normal(c)) if affine else (None, None)
    running_mean, running_var = np.zeros(c), np.ones(c)
    check_op(F.batch_norm, x, running_mean, running_var, weight, bias, expect=3 if affine else 1, training=True)


@pytest.mark.parametrize("shape", [(2, 3, 2, 2), (4, 3)])
def test_batch_norm_inference(shape: tuple[int, ...]) -> None:
    rng = _rng(15)
    x = rng.standard_normal(shape)
    running_mean, running_var = rng.standard_normal(3), rng.uniform(0.5, 2.0, 3)
    weight, bias = rng.standard_normal(3), rng.standard_normal(3)
    check_op(F.batch_norm, x, running_mean, running_var, weight, bias, expect=3, training=False)


@pytest.mark.parametrize("residual", [True, False])
def test_conv2d_bn_relu(residual: bool) -> None:
    """relu(batch_norm(conv2d(x)) + residual) with fixed statistics: x, the conv's weight and bias,
    γ, β and the residual (stride 2, padding 1)."""
    rng = _rng(17)
    x, w, b = rng.standard_normal((2, 3, 5, 5)), rng.standard_normal((4, 3, 3, 3)), rng.standard_normal(4)
    stats = (rng.standard_normal(4) * 0.1, rng.uniform(0.5, 2.0, 4))
    bn = (rng.uniform(0.5, 1.5, 4), rng.standard_normal(4))
    r = away_from_zero(rng.standard_normal((2, 4, 3, 3)), 0.3) if residual else None
    check_op(F.conv2d_bn_relu, x, w, b, *stats, *bn, 1e-5, r, 2, 1, expect=6 if residual else 5)


@pytest.mark.parametrize("residual", [True, False])
@pytest.mark.parametrize("training", [True, False])
def test_batch_norm_relu(residual: bool, training: bool) -> None:
    """relu(batch_norm(x) + residual): x, γ, β and the residual, in training and inference (inputs
    kept away from ReLU's kink)."""
    rng = _rng(16)
    x = rng.standard_normal((3, 2, 2, 3)) * 2 + 1
    weight, bias = rng.standard_normal(2), rng.standard_normal(2)
    r = away_from_zero(rng.standard_normal(x.shape), 0.3) if residual else None
    stats = (rng.standard_normal(2) * 0.1, rng.uniform(0.5, 2.0, 2))
    check_op(F.batch_norm_relu, x, *stats, weight, bias, training, 0.1, 1e-5, r, expect=4 if residual else 3)


@pytest.mark.parametrize(
    "size, alpha, beta, k",
    [(5, 1e-4, 0.75, 2.0), (3, 0.5, 0.75, 1.0), (2, 0.8, 0.5, 1.5), (1, 0.3, 1.0, 1.0), (7, 1.0, 0.75, 2.0)],
)
def test_local_response_norm(size: int, alpha: float, beta: float, k: float) -> None:
    x = 2 * _rng(16).standard_normal((2, 5, 2, 3))
    check_op(F.local_response_norm, x, expect=1, size=size, alpha=alpha, beta=beta, k=k)


# ---------------------------------------------------------------------------------------------- losses


@pytest.mark.parametrize("reduction", ["mean", "sum", "none"])
@pytest.mark.parametrize("label_smoothing", [0.0, 0.1, 1.0])
def test_cross_entropy(reduction: str, label_smoothing: float) -> None:
    rng = _rng(17)
    logits, labels = 2 * rng.standard_normal((4, 5)), np.array([0, 4, 2, 2])
    report = check_op(F.cross_entropy, logits, labels, expect=1, label_smoothing=label_smoothing, reduction=reduction)
    assert list(report.errors) == ["input 0"], "integer labels are not differentiated"


@pytest.mark.parametrize("reduction", ["mean", "sum", "none"])
def test_binary_cross_entropy_with_logits(reduction: str) -> None:
    rng = _rng(18)
    logits, targets = 3 * rng.standard_normal((3, 4)), rng.uniform(0, 1, (3, 4))
    check_op(F.binary_cross_entropy_with_logits, logits, targets, expect=2, reduction=reduction)


@pytest.mark.parametrize("reduction", ["mean", "sum", "none"])
def test_mse_loss(reduction: str) -> None:
    rng = _rng(19)
    check_op(F.mse_loss, rng.standard_normal((2, 3, 2)), rng.standard_normal((2, 3, 2)), expect=2, reduction=reduction)


# --------------------------------------------------------------------------------------------- modules


def _conv_block() -> nn.Module:
    return nn.Sequential(
        nn.Conv2d(2, 4, 3, padding=1, bias=False, rng=0),  # a bias before batch norm has zero gradient
        nn.BatchNorm2d(4, track_running_stats=False),
        nn.ReLU(),
        nn.MaxPool2d(2),
        nn.Conv2d(4, 3, (2, 3), stride=(1, 2), padding=((1, 0), (1, 1)), rng=1),
        nn.Tanh(),
        nn.AvgPool2d(2, ceil_mode=True),
        nn.Flatten(),
        nn.Dropout(0.3, rng=2),
        nn.Linear(6, 5, rng=3),
        nn.LeakyReLU(0.1),
        nn.Linear(5, 3, rng=4),
        nn.LogSoftmax(),
    )


MODULE_CASES: dict[str, tuple[Callable[[], nn.Module], tuple[int, ...]]] = {
    "Conv2d": (lambda: nn.Conv2d(2, 3, 3, rng=0), (2, 2, 5, 5)),
    "Conv2d_strided_dilated_asymmetric": (
        lambda: nn.Conv2d(2, 3, (2, 3), stride=(2, 1), padding=((1, 0), (0, 2)), dilation=(1, 2), rng=0),
        (1, 2, 6, 6),
    ),
    "Conv2d_groups_flip_same_no_bias": (
        lambda: nn.Conv2d(4, 6, 2, groups=2, padding="same", flip=True, bias=False, rng=0),
        (1, 4, 5, 5),
    ),
    "Conv2d_depthwise": (lambda: nn.Conv2d(3, 3, 3, groups=3, padding=1, rng=0), (2, 3, 4, 4)),
    "Conv2d_he_init": (lambda: nn.Conv2d(2, 2, 3, stride=3, init="he", rng=0), (1, 2, 7, 7)),
    "Linear": (lambda: nn.Linear(5, 4, rng=0), (3, 5)),
    "Linear_no_bias": (lambda: nn.Linear(5, 4, bias=False, rng=0), (3, 5)),
    "Dense_batched": (lambda: nn.Dense(3, 2, rng=0), (2, 2, 3)),
    "MaxPool2d": (lambda: nn.MaxPool2d(3, 2, padding=1, ceil_mode=True), (2, 2, 6, 7)),
    "AvgPool2d": (lambda: nn.AvgPool2d(3, 2, padding=1, ceil_mode=True, count_include_pad=False), (2, 2, 6, 7)),
    "AdaptiveAvgPool2d": (lambda: nn.AdaptiveAvgPool2d((2, 3)), (1, 2, 5, 7)),
    "ReLU": (lambda: nn.ReLU(), (2, 3, 3)),
    "LeakyReLU": (lambda: nn.LeakyReLU(0.2), (2, 3, 3)),
    "Sigmoid": (lambda: nn.Sigmoid(), (2, 3, 3)),
    "Tanh": (lambda: nn.Tanh(), (2, 3, 3)),
    "Softmax": (lambda: nn.Softmax(), (3, 4)),
    "LogSoftmax": (lambda: nn.LogSoftmax(axis=0), (3, 4)),
    "Flatten": (lambda: nn.Flatten(), (2, 2, 2, 3)),
    "Identity": (lambda: nn.Identity(), (2, 3)),
    "LocalResponseNorm": (lambda: nn.LocalResponseNorm(3, alpha=0.5, beta=0.75, k=1.5), (2, 5, 2, 3)),
    "BatchNorm2d_batch_stats": (lambda: nn.BatchNorm2d(3, track_running_stats=False), (3, 3, 2, 2)),
    "BatchNorm1d_batch_stats": (lambda: nn.BatchNorm1d(3, track_running_stats=False), (5, 3)),
    "BatchNorm2d_no_affine": (lambda: nn.BatchNorm2d(2, affine=False, track_running_stats=False), (3, 2, 2, 2)),
    "Sequential": (_conv_block, (2, 2, 6, 8)),
    "Residual_identity": (
        lambda: nn.Residual(
            nn.Sequential(
                nn.Conv2d(3, 3, 3, padding=1, bias=False, rng=0),
                nn.BatchNorm2d(3, track_running_stats=False),
                nn.ReLU(),
                nn.Conv2d(3, 3, 3, padding=1, rng=1),
            ),
            activation=nn.ReLU(),
        ),
        (2, 3, 4, 4),
    ),
    "Residual_projection": (
        lambda: nn.Residual(
            nn.Sequential(nn.Conv2d(2, 4, 3, stride=2, padding=1, rng=0), nn.ReLU(), nn.Conv2d(4, 4, 3, padding=1)),
            shortcut=nn.Conv2d(2, 4, 1, stride=2, rng=2),
            activation=nn.ReLU(),
        ),
        (2, 2, 5, 5),
    ),
    "Residual_no_activation": (lambda: nn.Residual(nn.Sequential(nn.Linear(4, 4, rng=0), nn.Tanh())), (3, 4)),
    "Concat": (
        lambda: nn.Concat(
            nn.Conv2d(3, 2, 1, rng=0),
            nn.Sequential(nn.Conv2d(3, 4, 1, rng=1), nn.ReLU(), nn.Conv2d(4, 3, 3, padding=1, rng=2)),
            nn.Sequential(nn.MaxPool2d(3, 1, padding=1), nn.Conv2d(3, 1, 1, rng=3)),
            nn.Identity(),
        ),
        (2, 3, 4, 4),
    ),
}


@pytest.mark.parametrize("case", list(MODULE_CASES))
def test_module(case: str) -> None:
    factory, shape = MODULE_CASES[case]
    x = away_from_zero(_rng(20).standard_normal(shape), 0.01)
    check_module(factory(), x)


@pytest.mark.parametrize("cls, shape", [(nn.BatchNorm2d, (2, 3, 2, 2)), (nn.BatchNorm1d, (4, 3))])
def test_batchnorm_module_eval(cls: type, shape: tuple[int, ...]) -> None:
    bn = cls(3, dtype=np.float64).eval()
    rng = _rng(21)
    bn.load_state_dict(
        {
            "weight": rng.standard_normal(3),
            "bias": rng.standard_normal(3),
            "running_mean": rng.standard_normal(3),
            "running_var": rng.uniform(0.5, 2.0, 3),
            "num_batches_tracked": np.array(7),
        }
    )
    check_module(bn, rng.standard_normal(shape))


def test_batchnorm_float32_module_eval() -> None:
    bn = nn.BatchNorm2d(3).eval()
    check_module(bn, _rng(22).standard_normal((2, 3, 2, 2)))


@pytest.mark.parametrize("cls, shape", [(nn.BatchNorm2d, (3, 3, 2, 2)), (nn.BatchNorm1d, (5, 3))])
def test_batchnorm_module_training_with_running_stats(cls: type, shape: tuple[int, ...]) -> None:
    check_module(cls(3, dtype=np.float64), _rng(23).standard_normal(shape))


def _directional_check(model: nn.Module, x: np.ndarray, names: list[str], seed: int = 0) -> None:
    """Directional derivative along a random direction V for each named parameter:
    (L(P + hV) − L(P − hV)) / 2h must equal Σ grad ⊙ V (cheap for large weight matrices)."""
    rng = _rng(seed)
    out = model(x)
    r = rng.standard_normal(out.shape)
    model.zero_grad()
    out.backward(r)
    params = dict(model.named_parameters())
    h = 1e-6
    for name in names:
        p = params[name]
        v = rng.standard_normal(p.shape)
        analytic = float(np.sum(p.grad * v))
        base = p.data.copy()
        p.data = base + h * v
        plus = float(np.sum(model.forward(x) * r))
        p.data = base - h * v
        minus = float(np.sum(model.forward(x) * r))
        p.data = base
        numeric = (plus - minus) / (2 * h)
        assert abs(analytic - numeric) <= 1e-6 * max(abs(numeric), 1.0), (name, analytic, numeric)


def test_lenet5_small_batch() -> None:
    """Every entry of the input and of the small parameters by finite differences; the three
    large weight matrices (≈ 60k entries, too slow element by element) by directional derivatives."""
    model = lenet5(rng=0).to(np.float64)
    x = _rng(24).standard_normal((2, 1, 28, 28))
    large = ["3.weight", "7.weight", "9.weight"]
    _directional_check(model, x, large)
    for name, p in model.named_parameters():
        p.requires_grad = name not in large
    report = check_module(model, x)
    assert set(report.errors) == {"input", "0.weight", "0.bias", "3.bias", "7.bias", "9.bias", "11.weight", "11.bias"}


def test_lenet5_classic_directional() -> None:
    model = lenet5(variant="classic", rng=1).to(np.float64)
    x = _rng(25).standard_normal((2, 1, 28, 28))
    _directional_check(model, x, [n for n, _ in model.named_parameters()], seed=1)


# -------------------------------------------------------------------------------- gradcheck checks itself


def _scale_op(wrong_input: bool = False, wrong_weight: bool = False) -> F.Op:
    """y = x ⊙ w (one weight per feature) as a custom op, with optionally broken backward passes."""

    def forward(x: np.ndarray, w: np.ndarray) -> tuple[np.ndarray, F.Context]:
        return x * w, F.Context(x=x, w=w)

    def backward(grad: np.ndarray, ctx: F.Context) -> tuple[np.ndarray, np.ndarray]:
        dw = (grad * ctx.x).sum(axis=0)
        dx = grad * ctx.w
        return (-dx if wrong_input else dx), (2 * dw if wrong_weight else dw)

    return F.Op(forward, backward, name="scale")


class _Scale(nn.Module):
    """A forward-only module whose math is the custom op above."""

    def __init__(self, n: int, wrong_input: bool = False, wrong_weight: bool = False) -> None:
        super().__init__()
        self.weight = nn.Parameter(np.linspace(0.5, 1.5, n))
        self.op = _scale_op(wrong_input, wrong_weight)

    def forward(self, x: Any) -> Any:
        return self.op(x, self.weight)


def test_gradcheck_passes_a_correct_module() -> None:
    report = glassnet.gradcheck(_Scale(4), _rng(26).standard_normal((3, 4)))
    assert report.ok and report.worst < 1e-8
    assert list(report.errors) == ["input", "weight"]


def test_gradcheck_catches_a_wrong_parameter_gradient() -> None:
    report = glassnet.gradcheck(_Scale(4, wrong_weight=True), _rng(26).standard_normal((3, 4)))
    assert report.ok is False
    assert report.errors["weight"] > 0.1
    assert report.errors["input"] <= TOL
    with pytest.raises(AssertionError, match=r"FAILED[\s\S]*weight .*too large"):
        report.assert_ok()


def test_gradcheck_catches_a_wrong_input_gradient() -> None:
    report = glassnet.gradcheck(_Scale(4, wrong_input=True), _rng(26).standard_normal((3, 4)))
    assert report.ok is False
    assert report.errors["input"] > 1.0
    assert report.errors["weight"] <= TOL


def test_gradcheck_catches_a_wrong_op_backward() -> None:
    bad_relu = F.Op(F.relu_forward, lambda grad, ctx: (grad,), name="bad_relu")  # forgets the mask
    x = away_from_zero(_rng(27).standard_normal((3, 4)))
    assert not glassnet.gradcheck(bad_relu, x).ok
    assert glassnet.gradcheck(F.relu, x).ok


def test_gradcheck_catches_a_small_error() -> None:
    """An error of 1e-4 relative (e.g. a slightly wrong constant) is above the 1e-6 tolerance."""
    nearly_sigmoid = F.Op(F.sigmoid_forward, lambda g, ctx: (g * ctx.out * (1 - ctx.out) * (1 + 1e-4),))
    report = glassnet.gradcheck(nearly_sigmoid, _rng(28).standard_normal((2, 3)))
    assert not report.ok and 1e-5 < report.worst < 1e-3


def test_gradcheck_report_names_every_parameter() -> None:
    model = nn.Sequential(
        OrderedDict(
            features=nn.Sequential(nn.Conv2d(1, 2, 3, rng=0), nn.ReLU(), nn.Conv2d(2, 2, 1, bias=False, rng=1)),
            flatten=nn.Flatten(),
            head=nn.Linear(8, 3, rng=2),
        )
    )
    x = _rng(29).standard_normal((2, 1, 4, 4))
    report = check_module(model, x)
    assert list(report.errors) == [
        "input",
        "features.0.weight",
        "features.0.bias",
        "features.2.weight",
        "head.weight",
        "head.bias",
    ]
    assert all(name in str(report) for name in report.errors)
    model.features.freeze()
    assert list(glassnet.gradcheck(model, x).errors) == ["input", "head.weight", "head.bias"]


def test_gradcheck_leaves_the_module_as_it_was() -> None:
    model = nn.Sequential(nn.Conv2d(1, 2, 3, rng=0), nn.ReLU(), nn.Flatten(), nn.Linear(8, 2, rng=1))
    before = model.state_dict()
    model(np.ones((1, 1, 4, 4), dtype=np.float32)).backward(np.ones((1, 2), dtype=np.float32))
    grads = {n: p.grad.copy() for n, p in model.named_parameters()}
    glassnet.gradcheck(model, _rng(30).standard_normal((2, 1, 4, 4))).assert_ok()
    for name, p in model.named_parameters():
        assert p.dtype == np.float32
        np.testing.assert_array_equal(p.data, before[name])
        np.testing.assert_array_equal(p.grad, grads[name])


def test_gradcheck_rejects_a_non_differentiable_target() -> None:
    with pytest.raises(TypeError, match="expected a Module or an op with forward/backward, got 42"):
        glassnet.gradcheck(42, np.ones(3))
