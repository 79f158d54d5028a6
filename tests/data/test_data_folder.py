"""ImageFolder on PNG/JPEG files the tests write."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from glassnet.data import DatasetError, ImageFolder, load_image


def _png(path: Path, arr: np.ndarray) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.fromarray(arr).save(path)


def _tree(root: Path) -> None:
    rng = np.random.default_rng(0)
    _png(root / "dog" / "b.png", rng.integers(0, 256, (40, 50, 3), dtype=np.uint8))
    _png(root / "dog" / "a.PNG", rng.integers(0, 256, (20, 20), dtype=np.uint8))  # grayscale
    (root / "cat").mkdir()
    jpeg = Image.fromarray(rng.integers(0, 256, (30, 60, 3), dtype=np.uint8))
    jpeg.save(root / "cat" / "x.jpg", quality=90)
    (root / "cat" / "notes.txt").write_text("not an image")
    (root / "cat" / ".hidden.png").write_bytes(b"junk")


def test_classes_sorted_shapes_and_labels(tmp_path: Path) -> None:
    _tree(tmp_path)
    ds = ImageFolder(tmp_path, size=16)
    assert ds.classes == ["cat", "dog"]
    assert ds.images.shape == (3, 3, 16, 16) and ds.images.dtype == np.uint8
    assert ds.labels.tolist() == [0, 1, 1]
    assert [p.name for p in ds.paths] == ["x.jpg", "a.PNG", "b.png"]
    assert ds.name == tmp_path.name and ds.split == "train"
    gray = ImageFolder(tmp_path, size=(8, 12), mode="L")
    assert gray.images.shape == (3, 1, 8, 12)


def test_resize_shorter_side_then_center_crop(tmp_path: Path) -> None:
    # 30 rows × 60 columns; every column has its own value. Shorter side 30 already
    # matches size 30, so no resize: the crop keeps the 30 middle columns.
    cols = np.arange(60, dtype=np.uint8) * 4
    _png(tmp_path / "a" / "img.png", np.tile(cols, (30, 1)))
    out = load_image(tmp_path / "a" / "img.png", 30, mode="L")
    assert out.shape == (1, 30, 30)
    np.testing.assert_array_equal(out[0, 0], cols[15:45])
    # downscale by 2 (shorter side 30 -> 15), then crop the middle 15 columns of 30
    small = load_image(tmp_path / "a" / "img.png", 15, mode="L")
    assert small.shape == (1, 15, 15)
    assert abs(int(small[0, 0, 7]) - int(cols[30])) <= 8  # centre column ~ original centre


def test_corrupt_file_reported_by_name(tmp_path: Path) -> None:
    _tree(tmp_path)
    (tmp_path / "dog" / "broken.jpg").write_bytes(b"\xff\xd8\xff\xe0 this is not a jpeg")
    (tmp_path / "cat" / "empty.png").write_bytes(b"")
    with pytest.raises(DatasetError) as info:
        ImageFolder(tmp_path, size=8)
    msg = str(info.value)
    assert "2 of 5 file(s)" in msg and "on_error='skip'" in msg
    assert str(tmp_path / "dog" / "broken.jpg") in msg and str(tmp_path / "cat" / "empty.png") in msg


def test_skip_warns_for_each_file(tmp_path: Path) -> None:
    _tree(tmp_path)
    (tmp_path / "dog" / "broken.png").write_bytes(b"\x89PNG\r\n\x1a\n garbage")
    with pytest.warns(UserWarning, match=r"skipped unreadable file .*broken\.png"):
        ds = ImageFolder(tmp_path, size=8, on_error="skip")
    assert len(ds) == 3 and all(p.name != "broken.png" for p in ds.paths)
    assert ds.labels.tolist() == [0, 1, 1]


def test_bad_roots(tmp_path: Path) -> None:
    with pytest.raises(DatasetError, match="is not a directory"):
        ImageFolder(tmp_path / "missing")
    with pytest.raises(DatasetError, match="has no class sub-folders"):
        ImageFolder(tmp_path)
    (tmp_path / "empty_class").mkdir()
    with pytest.warns(UserWarning, match="has no images"), pytest.raises(DatasetError, match="no image files"):
        ImageFolder(tmp_path)
    with pytest.raises(DatasetError, match="expected mode 'RGB' or 'L', got 'CMYK'"):
        ImageFolder(tmp_path, mode="CMYK")
