"""The built-in synthetic ``shapes`` dataset."""

from __future__ import annotations

import time

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from glassnet.data import SHAPES_CLASSES, DatasetError, load_dataset, make_shapes, shapes_split


def test_same_seed_same_bytes() -> None:
    a_img, a_lab = make_shapes(300, seed=7)
    b_img, b_lab = make_shapes(300, seed=7)
    assert a_img.tobytes() == b_img.tobytes()
    assert a_lab.tobytes() == b_lab.tobytes()


def test_different_seeds_differ() -> None:
    a, _ = make_shapes(50, seed=1)
    b, _ = make_shapes(50, seed=2)
    assert not np.array_equal(a, b)


def test_shape_dtype_and_range() -> None:
    images, labels = make_shapes(40, seed=0)
    assert images.shape == (40, 1, 28, 28) and images.dtype == np.uint8
    assert labels.shape == (40,) and labels.dtype == np.int64
    assert labels.min() >= 0 and labels.max() < 10
    rgb, _ = make_shapes(20, seed=0, rgb=True)
    assert rgb.shape == (20, 3, 32, 32) and rgb.dtype == np.uint8


@settings(max_examples=25, deadline=None)
@given(n=st.integers(0, 57), size=st.integers(8, 40), rgb=st.booleans())
def test_any_size_balanced(n: int, size: int, rgb: bool) -> None:
    images, labels = make_shapes(n, seed=3, size=size, rgb=rgb)
    assert images.shape == (n, 3 if rgb else 1, size, size)
    counts = np.bincount(labels, minlength=10)
    assert counts.max() - counts.min() <= 1  # exactly balanced up to the remainder


def test_splits_default_sizes_balance_and_speed() -> None:
    start = time.perf_counter()
    train = load_dataset("shapes", "train")
    test = load_dataset("shapes", "test")
    elapsed = time.perf_counter() - start
    assert train.images.shape == (12_000, 1, 28, 28) and len(test) == 2_000
    assert train.class_counts().tolist() == [1200] * 10
    assert test.class_counts().tolist() == [200] * 10
    assert train.classes == SHAPES_CLASSES and len(set(SHAPES_CLASSES)) == 10
    assert train.split == "train" and test.split == "test" and train.name == "shapes"
    assert elapsed < 10, f"generating 14,000 images took {elapsed:.1f} s"
    # train and test are different draws
    assert not np.array_equal(train.images[:2000], test.images)


def test_rgb_variant_has_colours() -> None:
    ds = load_dataset("shapes-rgb", "test", n=200)
    assert ds.images.shape == (200, 3, 32, 32)
    # foreground/background colours differ per channel: channels are not all equal
    assert np.mean(ds.images[:, 0] != ds.images[:, 1]) > 0.5


def test_glyph_is_visible() -> None:
    # the glyph (bright) covers a reasonable part of every image: 40-80 % size range
    images, _ = make_shapes(200, seed=5, noise=0.0)
    frac = (images[:, 0] > 127).mean(axis=(1, 2))
    assert frac.min() > 0.02 and frac.max() < 0.6


def test_class_means_are_distinct() -> None:
    # A weak sanity check of separability (the real check, a CNN at >= 98 %, is
    # too slow for a unit test): nearest class-mean of the 2-D FFT magnitude,
    # which ignores position, beats chance by far.
    train_x, train_y = shapes_split("train", n=2000)
    test_x, test_y = shapes_split("test", n=500)

    def feats(x: np.ndarray) -> np.ndarray:
        f = np.abs(np.fft.fft2(x[:, 0].astype(np.float32) / 255))
        return f.reshape(len(x), -1)

    ft, fs = feats(train_x), feats(test_x)
    means = np.stack([ft[train_y == c].mean(0) for c in range(10)])
    pred = np.argmin(((fs[:, None, :] - means[None]) ** 2).sum(-1), axis=1)
    assert (pred == test_y).mean() > 0.4  # chance: 0.1; measured 0.58


def test_bad_arguments() -> None:
    with pytest.raises(DatasetError, match="expected n >= 0, got -1"):
        make_shapes(-1)
    with pytest.raises(DatasetError, match="unknown split 'val'"):
        shapes_split("val")
    with pytest.raises(DatasetError, match=r"expected 0 < scale\[0\] <= scale\[1\] <= 1"):
        make_shapes(3, scale=(0.5, 1.5))
