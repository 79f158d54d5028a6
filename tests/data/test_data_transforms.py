"""Batch augmentation: determinism, correctness of each op, the grid renderer."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from PIL import Image

from glassnet.data import transforms as T


def _batch(n: int = 6, c: int = 1, h: int = 12, w: int = 12, seed: int = 0) -> np.ndarray:
    return np.random.default_rng(seed).random((n, c, h, w), dtype=np.float32)


ALL = [
    T.RandomHorizontalFlip(0.5),
    T.RandomCrop(10, padding=2),
    T.RandomRotation(15),
    T.RandomScale((0.8, 1.2)),
    T.RandomTranslate(3),
    T.RandomAffine(degrees=10, scale=(0.9, 1.1), translate=(1, 2), interpolation="nearest"),
    T.ColorJitter(0.3, 0.3),
    T.Cutout(4, p=0.7),
    T.Compose([T.RandomHorizontalFlip(), T.RandomCrop(12, padding=2), T.RandomRotation(10)]),
]


@pytest.mark.parametrize("t", ALL, ids=lambda t: type(t).__name__)
def test_deterministic_per_seed_and_input_untouched(t: T.Transform) -> None:
    x = _batch(16)
    before = x.copy()
    a = t(x, np.random.default_rng(1))
    b = t(x, np.random.default_rng(1))
    c = t(x, np.random.default_rng(2))
    np.testing.assert_array_equal(a, b)
    assert not np.array_equal(a, c)
    np.testing.assert_array_equal(x, before)
    assert a.dtype == np.float32 and a.shape[:2] == x.shape[:2]


@settings(max_examples=25, deadline=None)
@given(
    n=st.integers(1, 5),
    c=st.sampled_from([1, 3]),
    h=st.integers(4, 20),
    w=st.integers(4, 20),
    seed=st.integers(0, 2**32 - 1),
)
def test_shapes_preserved(n: int, c: int, h: int, w: int, seed: int) -> None:
    x = _batch(n, c, h, w)
    rng = np.random.default_rng(seed)
    for t in ALL[:-1]:
        if isinstance(t, T.RandomCrop):
            t = T.RandomCrop((h, w), padding=2)
        out = t(x, rng)
        assert out.shape == x.shape and out.dtype == np.float32
    assert T.RandomCrop((h // 2, w - 1))(x, rng).shape == (n, c, h // 2, w - 1)


def test_flip() -> None:
    x = _batch(5, 3)
    np.testing.assert_array_equal(T.RandomHorizontalFlip(1.0)(x, np.random.default_rng(0)), x[..., ::-1])
    np.testing.assert_array_equal(T.RandomHorizontalFlip(0.0)(x, np.random.default_rng(0)), x)
    out = T.RandomHorizontalFlip(0.5)(_batch(200), np.random.default_rng(0))
    flipped = [np.array_equal(o, xi[..., ::-1]) for o, xi in zip(out, _batch(200), strict=True)]
    assert 60 < sum(flipped) < 140


def test_crop_is_a_window_of_the_padded_image() -> None:
    x = _batch(8, 2, 10, 10)
    out = T.RandomCrop((6, 7), padding=3, fill=-1.0)(x, np.random.default_rng(0))
    assert out.shape == (8, 2, 6, 7)
    padded = np.pad(x, ((0, 0), (0, 0), (3, 3), (3, 3)), constant_values=-1.0)
    for i in range(8):
        hits = [
            (oy, ox)
            for oy in range(16 - 6 + 1)
            for ox in range(16 - 7 + 1)
            if np.array_equal(padded[i, :, oy : oy + 6, ox : ox + 7], out[i])
        ]
        assert hits
    np.testing.assert_array_equal(T.RandomCrop(10)(x, np.random.default_rng(0)), x)
    with pytest.raises(ValueError, match=r"crop 17×17 is larger than the padded image 16×16"):
        T.RandomCrop(17, padding=3)(x, np.random.default_rng(0))


@pytest.mark.parametrize("interpolation", ["bilinear", "nearest"])
def test_rotation_by_zero_is_identity(interpolation: str) -> None:
    x = _batch(4, 3, 9, 14)
    out = T.RandomRotation(0, interpolation=interpolation)(x, np.random.default_rng(0))
    np.testing.assert_array_equal(out, x)
    np.testing.assert_array_equal(T.RandomScale((1, 1))(x, np.random.default_rng(0)), x)
    np.testing.assert_array_equal(T.RandomTranslate(0)(x, np.random.default_rng(0)), x)


@pytest.mark.parametrize("size", [7, 8])
def test_rotation_by_90_degrees(size: int) -> None:
    x = _batch(3, 2, size, size)
    out = T.RandomRotation((90, 90))(x, np.random.default_rng(0))
    # +90° turns the content counter-clockwise on screen: np.rot90's direction
    np.testing.assert_allclose(out, np.rot90(x, k=1, axes=(2, 3)), atol=1e-5)


def test_integer_translation_shifts_and_fills() -> None:
    x = _batch(2, 1, 6, 6) + 1.0  # no zeros inside the image
    n = x.shape[0]
    out = T.warp_affine(x, np.zeros(n), np.ones(n), np.full(n, 1.0), np.full(n, -2.0), fill=0.0)
    np.testing.assert_array_equal(out[:, :, 1:, :4], x[:, :, :5, 2:])  # down 1, left 2
    assert np.all(out[:, :, 0, :] == 0) and np.all(out[:, :, :, 4:] == 0)


def test_scale_zooms_about_the_centre() -> None:
    x = np.zeros((1, 1, 9, 9), np.float32)
    x[0, 0, 3:6, 3:6] = 1.0  # a 3×3 square in the middle
    out = T.warp_affine(x, np.zeros(1), np.full(1, 3.0), np.zeros(1), np.zeros(1), "nearest")
    np.testing.assert_array_equal(out[0, 0], np.ones((9, 9)))  # zoomed ×3 it fills the image
    small = T.warp_affine(x, np.zeros(1), np.full(1, 1 / 3), np.zeros(1), np.zeros(1), "nearest")
    assert small[0, 0, 4, 4] == 1 and small.sum() == 1


def test_cutout_zeroes_a_square() -> None:
    x = np.ones((50, 2, 16, 16), np.float32)
    out = T.Cutout(4, p=1.0)(x, np.random.default_rng(0))
    for img in out:
        assert np.array_equal(img[0], img[1])  # same square on every channel
        ys, xs = np.nonzero(img[0] == 0)
        assert ys.size > 0
        hgt, wid = ys.max() - ys.min() + 1, xs.max() - xs.min() + 1
        assert hgt <= 4 and wid <= 4 and ys.size == hgt * wid  # a (clipped) square
        if 2 <= ys.min() and ys.max() <= 13 and 2 <= xs.min() and xs.max() <= 13:
            assert ys.size == 16
    assert np.all(T.Cutout(4, p=0.0)(x, np.random.default_rng(0)) == 1)


def test_normalize_math() -> None:
    x = _batch(3, 3)
    mean, std = [0.1, 0.5, 0.9], [0.2, 0.3, 0.4]
    out = T.Normalize(mean, std)(x, np.random.default_rng(0))
    expected = (x - np.array(mean)[:, None, None]) / np.array(std)[:, None, None]
    np.testing.assert_allclose(out, expected, rtol=1e-5)
    with pytest.raises(ValueError, match="std must be > 0"):
        T.Normalize(0.5, 0.0)


def test_color_jitter() -> None:
    x = _batch(10, 3)
    np.testing.assert_allclose(T.ColorJitter(0, 0)(x, np.random.default_rng(0)), x)
    out = T.ColorJitter(0.5, 0.5)(x, np.random.default_rng(0))
    assert out.min() >= 0 and out.max() <= 1
    bright = T.ColorJitter(0.5, 0)(np.full((100, 1, 2, 2), 0.5, np.float32), np.random.default_rng(0))
    factors = bright[:, 0, 0, 0] / 0.5
    assert factors.min() >= 0.5 - 1e-6 and factors.max() <= 1.5 + 1e-6 and factors.std() > 0.1


def test_compose_applies_in_order() -> None:
    x = _batch(2)
    t = T.Compose([T.RandomHorizontalFlip(1.0), T.Normalize(0.5, 0.5)])
    np.testing.assert_allclose(t(x, np.random.default_rng(0)), (x[..., ::-1] - 0.5) / 0.5)
    assert "RandomHorizontalFlip" in repr(t)


def test_save_augmentation_grid(tmp_path: Path) -> None:
    images = (np.random.default_rng(0).random((10, 1, 28, 28)) * 255).astype(np.uint8)
    aug = T.Compose([T.RandomCrop(28, padding=2), T.RandomRotation(10)])
    path = T.save_augmentation_grid(images, aug, tmp_path / "sub" / "grid.png", np.random.default_rng(0), n=4)
    with Image.open(path) as img:
        assert img.format == "PNG" and img.mode == "L"
        zoom = round(96 / 28)
        assert img.size == ((5 * 30 + 2) * zoom, (4 * 30 + 2) * zoom)
    rgb = np.random.default_rng(0).random((3, 3, 8, 8)).astype(np.float32)
    path = T.save_augmentation_grid(rgb, T.Normalize(0.5, 0.1), tmp_path / "rgb.png", np.random.default_rng(0), n=2)
    with Image.open(path) as img:
        assert img.mode == "RGB"
