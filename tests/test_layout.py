"""HWC ↔ CHW and NHWC ↔ NCHW conversions, and the channels-last error a model raises."""

from __future__ import annotations

import numpy as np
import pytest
from hypothesis import given
from hypothesis import strategies as st
from hypothesis.extra.numpy import arrays

from glassnet.data.layout import (
    LayoutError,
    check_chw,
    chw_to_hwc,
    hwc_to_chw,
    looks_channels_last,
    nchw_to_nhwc,
    nhwc_to_nchw,
    to_channels_first,
    to_channels_last,
)


def test_hwc_to_chw_moves_each_pixel() -> None:
    """A pixel's channel values at (y, x) in HWC are at [:, y, x] in CHW."""
    hwc = np.arange(2 * 3 * 4, dtype=np.uint8).reshape(2, 3, 4)  # H=2, W=3, C=4
    chw = hwc_to_chw(hwc)
    assert chw.shape == (4, 2, 3) and chw.dtype == np.uint8 and chw.flags.c_contiguous
    for y in range(2):
        for x in range(3):
            np.testing.assert_array_equal(chw[:, y, x], hwc[y, x, :])
    np.testing.assert_array_equal(chw_to_hwc(chw), hwc)


def test_batched_versions() -> None:
    nhwc = np.random.default_rng(0).standard_normal((5, 7, 6, 3)).astype(np.float32)
    nchw = nhwc_to_nchw(nhwc)
    assert nchw.shape == (5, 3, 7, 6) and nchw.flags.c_contiguous
    np.testing.assert_array_equal(nchw[2, 1], nhwc[2, :, :, 1])
    np.testing.assert_array_equal(nchw_to_nhwc(nchw), nhwc)
    np.testing.assert_array_equal(to_channels_first(nhwc), nchw)
    np.testing.assert_array_equal(to_channels_last(nchw), nhwc)
    np.testing.assert_array_equal(to_channels_first(nhwc[0]), nchw[0])
    np.testing.assert_array_equal(to_channels_last(nchw[0]), nhwc[0])


def test_results_never_alias_the_input() -> None:
    """Even where the transpose is a contiguous view (one channel), the result is a copy."""
    hwc = np.zeros((4, 5, 1), np.float32)
    chw = hwc_to_chw(hwc)
    chw[0, 0, 0] = 1.0
    assert hwc[0, 0, 0] == 0.0
    assert not np.shares_memory(nhwc_to_nchw(np.zeros((2, 4, 5, 1))), np.zeros(1))


@given(arrays(np.float64, st.tuples(*[st.integers(1, 5)] * 4), elements=st.floats(-10, 10)))
def test_round_trips(x: np.ndarray) -> None:
    np.testing.assert_array_equal(nchw_to_nhwc(nhwc_to_nchw(x)), x)
    np.testing.assert_array_equal(chw_to_hwc(hwc_to_chw(x[0])), x[0])
    np.testing.assert_array_equal(nhwc_to_nchw(x), np.transpose(x, (0, 3, 1, 2)))


@pytest.mark.parametrize(
    ("func", "shape", "message"),
    [
        (hwc_to_chw, (4, 4), r"hwc_to_chw: expected one image \[H, W, C\], got an array of shape \(4, 4\)"),
        (chw_to_hwc, (1, 3, 4, 4), r"chw_to_hwc: expected one image \[C, H, W\]"),
        (nhwc_to_nchw, (4, 4, 3), r"nhwc_to_nchw: expected a batch \[N, H, W, C\]"),
        (nchw_to_nhwc, (3, 4, 4), r"nchw_to_nhwc: expected a batch \[N, C, H, W\]"),
        (to_channels_first, (4, 4), r"to_channels_first: expected \[H, W, C\] or \[N, H, W, C\]"),
        (to_channels_last, (1, 1, 3, 4, 4), r"to_channels_last"),
    ],
)
def test_wrong_rank(func: object, shape: tuple[int, ...], message: str) -> None:
    with pytest.raises(LayoutError, match=message):
        func(np.zeros(shape))  # type: ignore[operator]


def test_check_chw_accepts_channels_first() -> None:
    x = np.zeros((2, 3, 32, 32), np.float32)
    assert check_chw(x, 3) is x
    one = x[0]
    assert check_chw(one, 3) is one
    assert check_chw(np.zeros((3, 3, 3)), 3).shape == (3, 3, 3)  # ambiguous: taken as channels first


def test_check_chw_channels_last_batch_says_how_to_convert() -> None:
    """The lecture's Keras-style batch [N, 32, 32, 3] fed to a CHW model."""
    with pytest.raises(LayoutError) as e:
        check_chw(np.zeros((8, 32, 32, 3)), 3, name="tf_cnn")
    msg = str(e.value)
    assert "tf_cnn expects channels-first input [N, 3, H, W] but got [8, 32, 32, 3]" in msg
    assert "channels-last" in msg and "input_shape=(H, W, 3)" in msg
    assert "glassnet.data.layout.nhwc_to_nchw(x)" in msg and "x.transpose(0, 3, 1, 2)" in msg
    # following the advice works
    fixed = nhwc_to_nchw(np.zeros((8, 32, 32, 3)))
    assert check_chw(fixed, 3) is fixed


def test_check_chw_channels_last_image() -> None:
    with pytest.raises(
        LayoutError, match=r"\[3, H, W\] but got \[224, 224, 3\].*hwc_to_chw\(x\).*transpose\(2, 0, 1\)"
    ):
        check_chw(np.zeros((224, 224, 3), np.uint8), 3)
    with pytest.raises(LayoutError, match=r"\[1, H, W\] but got \[28, 28, 1\]"):
        check_chw(np.zeros((28, 28, 1)), 1)


@pytest.mark.parametrize("shape", [(2, 5, 32, 32), (32, 32), (1, 2, 3, 4, 5), (4, 32, 32)])
def test_check_chw_other_mismatches(shape: tuple[int, ...]) -> None:
    with pytest.raises(LayoutError, match=r"model expects \[N, 3, H, W\] \(or one image \[3, H, W\]\), got shape"):
        check_chw(np.zeros(shape), 3)


def test_looks_channels_last() -> None:
    assert looks_channels_last((8, 32, 32, 3), 3)
    assert looks_channels_last((32, 32, 3), 3)
    assert not looks_channels_last((8, 3, 32, 32), 3)
    assert not looks_channels_last((3, 32, 3), 3)  # channels on both ends: channels first wins
    assert not looks_channels_last((32, 3), 3)


def test_a_model_fed_channels_last_says_how_to_convert() -> None:
    import glassnet
    from glassnet.data.layout import nhwc_to_nchw
    from glassnet.models import tf_cnn

    model = tf_cnn(rng=0)
    x = np.random.default_rng(0).random((2, 32, 32, 3)).astype(np.float32)
    with pytest.raises(ValueError, match=r"looks channels-last \[N, H, W, C\]: convert with glassnet.data.layout"):
        model(x)
    with glassnet.no_grad():
        assert model(nhwc_to_nchw(x)).shape == (2, 10)
