"""Tests for ``glassnet.kernels``: the named-kernel catalogue (CONCEPTS section F) and
``apply_kernel``. Seed files: 000 = 000_9e3113838fd4bfa5.txt, 001 = 001_a40faeabb4185747.txt,
003 = 003_1ad254f6b269b9b0.txt, 004 = 004_f8ae84c783f63e2b.txt."""

from __future__ import annotations

import re

import numpy as np
import pytest

from glassnet import kernels as K
from glassnet.kernels import KERNELS, apply_kernel, get_kernel, list_kernels, to_uint8

# name -> (exact matrix, CONCEPTS id / seed citation)
EXPECTED: dict[str, tuple[list[list[float]] | np.ndarray, str]] = {
    "identity": ([[0, 0, 0], [0, 1, 0], [0, 0, 0]], "F1 000 L264"),
    "edge_detection_1": ([[1, 0, -1], [0, 0, 0], [-1, 0, 1]], "F2 000 L265"),
    "edge_detection_2": ([[0, 1, 0], [1, -4, 1], [0, 1, 0]], "F3 000 L266"),
    "edge_detection_3": ([[-1, -1, -1], [-1, 8, -1], [-1, -1, -1]], "F4 000 L267"),
    "sharpen": ([[0, -1, 0], [-1, 5, -1], [0, -1, 0]], "F5 000 L268"),
    "box_blur": (np.full((3, 3), 1 / 9), "F6 000 L269"),
    "gaussian_blur": (np.array([[1, 2, 1], [2, 4, 2], [1, 2, 1]]) / 16, "F7 000 L270"),
    "emboss": ([[-2, -1, 0], [-1, 1, 1], [0, 1, 2]], "F8 001 L42"),
    "top_sobel": ([[1, 2, 1], [0, 0, 0], [-1, -2, -1]], "F9 001 L50"),
    "bottom_sobel": ([[-1, -2, -1], [0, 0, 0], [1, 2, 1]], "rot180(F9)"),
    "left_sobel": ([[1, 0, -1], [2, 0, -2], [1, 0, -1]], "F10 001 L56, 003 L122"),
    "right_sobel": ([[-1, 0, 1], [-2, 0, 2], [-1, 0, 1]], "F17 = rot180(F10)"),
    "vertical_edge": ([[1, 0, -1], [1, 0, -1], [1, 0, -1]], "F11 004 L119-121"),
    "horizontal_edge": ([[1, 1, 1], [0, 0, 0], [-1, -1, -1]], "F11 transposed"),
    "vertical_edge_negative": ([[-1, 0, 1], [-1, 0, 1], [-1, 0, 1]], "F12 004 L509-511"),
    "negative_laplacian": ([[0, -1, 0], [-1, 4, -1], [0, -1, 0]], "F13 004 L482-484"),
    "x_pattern": ([[1, 0, 1], [0, 1, 0], [1, 0, 1]], "F14 000 L185-187, 004 L101-103"),
    "feature_detector": ([[0, 0, 1], [1, 0, 0], [0, 1, 1]], "F14 002 L105-107"),
    "subscript_kernel": ([[0, 1, 2], [2, 2, 0], [0, 1, 2]], "F14 003 L48-50"),
    "example_2x2": ([[-1, 1], [0, 1]], "F14 001 L25"),
}

ALIASES = {
    "laplacian": "edge_detection_2",
    "outline": "edge_detection_3",
    "box_average": "box_blur",
    "horizontal_sobel": "left_sobel",
    "vertical_sobel": "right_sobel",
    "vertical_edge_detector": "vertical_edge",
    "horizontal_edge_detector": "horizontal_edge",
}

SUM_ZERO = [
    "edge_detection_1",
    "edge_detection_2",
    "edge_detection_3",
    "top_sobel",
    "bottom_sobel",
    "left_sobel",
    "right_sobel",
    "vertical_edge",
    "horizontal_edge",
    "vertical_edge_negative",
    "negative_laplacian",
]
SUM_ONE = ["identity", "sharpen", "box_blur", "gaussian_blur", "emboss"]
SYMMETRIC_180 = [
    "identity",
    "edge_detection_1",
    "edge_detection_2",
    "edge_detection_3",
    "sharpen",
    "box_blur",
    "gaussian_blur",
    "negative_laplacian",
    "x_pattern",
]
ANTISYMMETRIC_180 = [
    "top_sobel",
    "bottom_sobel",
    "left_sobel",
    "right_sobel",
    "vertical_edge",
    "horizontal_edge",
    "vertical_edge_negative",
]

RNG = np.random.default_rng(0)
IMG = RNG.integers(0, 256, size=(7, 9)).astype(np.float64)


def rot180(a: np.ndarray) -> np.ndarray:
    return np.asarray(a)[::-1, ::-1]


def naive_xcorr(x: np.ndarray, k: np.ndarray, pad: int = 0, stride: int = 1) -> np.ndarray:
    """Loop reference: out[i, j] = sum(k * xpad[i*s : i*s+kh, j*s : j*s+kw])."""
    xp = np.pad(np.asarray(x, dtype=np.float64), pad)
    kh, kw = k.shape
    ho = (xp.shape[0] - kh) // stride + 1
    wo = (xp.shape[1] - kw) // stride + 1
    out = np.zeros((ho, wo))
    for i in range(ho):
        for j in range(wo):
            out[i, j] = np.sum(k * xp[i * stride : i * stride + kh, j * stride : j * stride + kw])
    return out


# --------------------------------------------------------------------- catalogue


def test_catalogue_has_exactly_the_expected_names() -> None:
    assert list_kernels() == sorted(EXPECTED)
    assert set(list_kernels(include_aliases=True)) == set(EXPECTED) | set(ALIASES)


@pytest.mark.parametrize("name", sorted(EXPECTED))
def test_kernel_exact_element_by_element(name: str) -> None:
    expected, cite = EXPECTED[name]
    got = get_kernel(name)
    assert got.dtype == np.float64, cite
    np.testing.assert_array_equal(got, np.asarray(expected, dtype=np.float64), err_msg=cite)
    np.testing.assert_array_equal(KERNELS[name], got)


def test_fractional_kernels_stored_as_exact_quotients() -> None:
    """F6 / F7: 1/9 and k/16 entries, as float division gives them."""
    assert np.all(get_kernel("box_blur") == 1.0 / 9.0)
    np.testing.assert_array_equal(get_kernel("gaussian_blur") * 16, [[1, 2, 1], [2, 4, 2], [1, 2, 1]])


@pytest.mark.parametrize(("alias", "canonical"), sorted(ALIASES.items()))
def test_aliases_resolve(alias: str, canonical: str) -> None:
    np.testing.assert_array_equal(get_kernel(alias), get_kernel(canonical))
    assert K.canonical_name(alias) == canonical


def test_name_matching_ignores_case_spaces_hyphens() -> None:
    np.testing.assert_array_equal(get_kernel("Top Sobel"), get_kernel("top_sobel"))
    np.testing.assert_array_equal(get_kernel("box-blur"), get_kernel("box_blur"))
    np.testing.assert_array_equal(get_kernel("OUTLINE"), get_kernel("edge_detection_3"))


@pytest.mark.parametrize("name", SUM_ZERO)
def test_edge_detectors_sum_to_zero(name: str) -> None:
    assert get_kernel(name).sum() == 0


@pytest.mark.parametrize("name", SUM_ONE)
def test_smoothing_and_sharpening_sum_to_one(name: str) -> None:
    assert get_kernel(name).sum() == pytest.approx(1.0, abs=1e-15)


@pytest.mark.parametrize("name", SYMMETRIC_180)
def test_180_symmetric(name: str) -> None:
    k = get_kernel(name)
    np.testing.assert_array_equal(rot180(k), k)


@pytest.mark.parametrize("name", ANTISYMMETRIC_180)
def test_180_antisymmetric(name: str) -> None:
    k = get_kernel(name)
    np.testing.assert_array_equal(rot180(k), -k)


def test_emboss_not_180_symmetric_but_mirror_symmetric_about_diagonal() -> None:
    e = get_kernel("emboss")
    assert not np.array_equal(rot180(e), e)
    assert not np.array_equal(rot180(e), -e)
    np.testing.assert_array_equal(e.T, e)


def test_documented_equalities() -> None:
    g = get_kernel
    np.testing.assert_array_equal(g("vertical_edge_negative"), -g("vertical_edge"))  # F12 = -F11
    np.testing.assert_array_equal(g("negative_laplacian"), -g("laplacian"))  # F13 = -F3
    np.testing.assert_array_equal(g("right_sobel"), -g("left_sobel"))  # F17 = -F10
    np.testing.assert_array_equal(g("outline"), g("edge_detection_3"))  # F4
    np.testing.assert_array_equal(g("bottom_sobel"), rot180(g("top_sobel")))
    np.testing.assert_array_equal(g("right_sobel"), rot180(g("left_sobel")))
    np.testing.assert_array_equal(g("horizontal_edge"), g("vertical_edge").T)
    np.testing.assert_array_equal(g("top_sobel"), g("left_sobel").T)


def test_kernels_mapping_is_read_only() -> None:
    with pytest.raises(TypeError):
        KERNELS["identity"] = np.eye(3)  # type: ignore[index]
    with pytest.raises(ValueError):
        KERNELS["identity"][0, 0] = 5.0
    k = get_kernel("identity")
    k[0, 0] = 5.0  # a copy: writable, and the catalogue is untouched
    assert KERNELS["identity"][0, 0] == 0.0


def test_unknown_name_keyerror_lists_valid_names() -> None:
    with pytest.raises(KeyError) as info:
        get_kernel("no_such_kernel")
    msg = str(info.value)
    assert "no_such_kernel" in msg
    for name in [*EXPECTED, *ALIASES]:
        assert name in msg


def test_unknown_name_in_apply_kernel_raises_keyerror() -> None:
    with pytest.raises(KeyError, match="valid names"):
        apply_kernel(IMG, "sobel_diagonal")


# --------------------------------------------------------------------- apply_kernel


def test_identity_with_padding_1_returns_image_unchanged() -> None:
    """F1: xcorr with the identity kernel and padding=1 is the identity (000 L264)."""
    out = apply_kernel(IMG, "identity", padding=1)
    assert out.dtype == np.float64
    np.testing.assert_array_equal(out, IMG)
    np.testing.assert_array_equal(apply_kernel(IMG, "identity"), IMG)  # 'same' default


def test_integer_image_accepted_and_float64_returned() -> None:
    img = IMG.astype(np.uint8)
    out = apply_kernel(img, "identity", padding=1)
    assert out.dtype == np.float64
    np.testing.assert_array_equal(out, IMG)


@pytest.mark.parametrize("name", ["sharpen", "emboss", "top_sobel", "left_sobel", "box_blur"])
def test_matches_naive_cross_correlation(name: str) -> None:
    k = get_kernel(name)
    np.testing.assert_allclose(apply_kernel(IMG, name, padding=1), naive_xcorr(IMG, k, pad=1))
    np.testing.assert_allclose(apply_kernel(IMG, name, padding="valid"), naive_xcorr(IMG, k))
    np.testing.assert_allclose(apply_kernel(IMG, name, stride=2, padding=1), naive_xcorr(IMG, k, pad=1, stride=2))


@pytest.mark.parametrize("name", ["emboss", "top_sobel", "left_sobel", "example_2x2"])
def test_flip_equals_kernel_rotated_180(name: str) -> None:
    k = get_kernel(name)
    np.testing.assert_allclose(
        apply_kernel(IMG, name, padding="valid", flip=True),
        apply_kernel(IMG, rot180(k), padding="valid"),
    )


def test_flip_negates_antisymmetric_and_keeps_symmetric() -> None:
    np.testing.assert_array_equal(apply_kernel(IMG, "left_sobel", flip=True), -apply_kernel(IMG, "left_sobel"))
    np.testing.assert_array_equal(apply_kernel(IMG, "sharpen", flip=True), apply_kernel(IMG, "sharpen"))


def test_array_like_non_square_kernel() -> None:
    """F15: 2x1 (vertical) and 1x2 (horizontal) kernels (values lost in 000 L221-254)."""
    vert = [[1], [-1]]
    horiz = [[1, -1]]
    out_v = apply_kernel(IMG, vert, padding="valid")
    out_h = apply_kernel(IMG, horiz, padding="valid")
    np.testing.assert_array_equal(out_v, IMG[:-1] - IMG[1:])
    np.testing.assert_array_equal(out_h, IMG[:, :-1] - IMG[:, 1:])
    assert apply_kernel(IMG, np.ones((2, 5)), padding="same").shape == IMG.shape


@pytest.mark.parametrize("channels", [3, 4, 1])
def test_rgb_per_channel_equals_each_channel_separately(channels: int) -> None:
    rgb = RNG.integers(0, 256, size=(6, 8, channels)).astype(np.uint8)
    for name in ["emboss", "sharpen", "gaussian_blur"]:
        out = apply_kernel(rgb, name)
        assert out.shape == rgb.shape
        assert out.dtype == np.float64
        for c in range(channels):
            np.testing.assert_allclose(out[..., c], apply_kernel(rgb[..., c], name))


def test_rgb_stride_keeps_channels_last() -> None:
    rgb = RNG.random((9, 7, 3))
    assert apply_kernel(rgb, "box_blur", stride=2, padding="valid").shape == (4, 3, 3)


@pytest.mark.parametrize("shape", [(5,), (2, 5, 5, 3), (5, 5, 2), (5, 5, 5), (3, 5, 5, 1)], ids=str)
def test_bad_image_shape_raises_valueerror_naming_shape(shape: tuple[int, ...]) -> None:
    with pytest.raises(ValueError, match=re.escape(str(shape))):
        apply_kernel(np.zeros(shape), "identity")


@pytest.mark.parametrize("kernel", [np.ones(3), np.ones((1, 3, 3)), np.ones((0, 3))])
def test_bad_kernel_shape_raises_valueerror(kernel: np.ndarray) -> None:
    with pytest.raises(ValueError, match="kernel"):
        apply_kernel(IMG, kernel)


def test_no_clipping_and_to_uint8() -> None:
    img = np.array([[0, 0, 0], [0, 255, 0], [0, 0, 0]], dtype=np.uint8)
    out = apply_kernel(img, "sharpen")
    assert out[1, 1] == 5 * 255  # not clipped
    assert out[0, 1] == -255
    u = to_uint8(out)
    assert u.dtype == np.uint8
    assert u[1, 1] == 255 and u[0, 1] == 0
    np.testing.assert_array_equal(to_uint8([[-3.0, 12.4, 12.6, 300.0]]), [[0, 12, 13, 255]])
