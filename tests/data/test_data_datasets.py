"""load_dataset: search order, downloads from a local server, errors, status."""

from __future__ import annotations

import hashlib
import re
import socket
from pathlib import Path

import numpy as np
import pytest

import glassnet.data.datasets as datasets_mod
from glassnet.data import (
    DATASETS,
    FASHION_MNIST_CLASSES,
    ChecksumError,
    Dataset,
    DatasetError,
    DatasetNotFoundError,
    dataset_status,
    download_file,
    format_status,
    load_dataset,
    search_dirs,
    train_val_split,
)

FASHION = Path("/usr/share/datasets/fashion-mnist")
MNIST_FILES = [
    "train-images-idx3-ubyte.gz",
    "train-labels-idx1-ubyte.gz",
    "t10k-images-idx3-ubyte.gz",
    "t10k-labels-idx1-ubyte.gz",
]


def _closed_port_url() -> str:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    return f"http://127.0.0.1:{port}/"


def _leftovers(folder: Path) -> list[str]:
    return sorted(p.name for p in folder.rglob("*")) if folder.exists() else []


# ----------------------------------------------------------------- Dataset container


def test_dataset_validation() -> None:
    images = np.zeros((3, 1, 4, 4), np.uint8)
    ds = Dataset(images, np.array([0, 1, 1], np.int32), ["a", "b"], name="toy")
    assert ds.labels.dtype == np.int64 and len(ds) == 3 and ds.image_shape == (1, 4, 4)
    assert ds.class_counts().tolist() == [1, 2]
    image, label = ds[2]
    assert image.shape == (1, 4, 4) and label == 1
    assert "n=3" in repr(ds)
    with pytest.raises(DatasetError, match=r"toy: labels must be in 0..1 \(2 classes\), got 0..2"):
        Dataset(images, np.array([0, 1, 2]), ["a", "b"], name="toy")
    with pytest.raises(DatasetError, match="expected uint8 images, got float32"):
        Dataset(images.astype(np.float32), np.zeros(3, int), ["a"])
    with pytest.raises(DatasetError, match=r"expected images of shape \(N, C, H, W\), got shape \(3, 4, 4\)"):
        Dataset(images[:, 0], np.zeros(3, int), ["a"])
    with pytest.raises(DatasetError, match=r"expected labels of shape \(3,\), got \(2,\)"):
        Dataset(images, np.zeros(2, int), ["a"])


def test_train_val_split_is_stratified_and_linked() -> None:
    ds = load_dataset("shapes", "train", n=1000)
    train, val = train_val_split(ds, 0.2, seed=1)
    assert len(train) == 800 and len(val) == 200
    assert val.class_counts().tolist() == [20] * 10 and val.split == "val"
    np.testing.assert_allclose(val.training_mean_std()[0], train.mean_std()[0])


def test_unknown_names() -> None:
    with pytest.raises(DatasetError, match="unknown dataset 'imagenet'; expected one of shapes, shapes-rgb, mnist"):
        load_dataset("imagenet")
    with pytest.raises(DatasetError, match="unknown split 'validation'"):
        load_dataset("shapes", "validation")


def test_registry_has_real_checksums() -> None:
    for spec in DATASETS.values():
        for f in spec.files:
            assert re.fullmatch(r"[0-9a-f]{64}", f.sha256), (spec.name, f.name)
            assert f.size and f.size > 0
        if not spec.builtin:
            assert spec.urls and all(u.endswith("/") for u in spec.urls)


# ----------------------------------------------------------------- search order


def test_source_order_root_env_cache_system(data_env, make_mnist_files, monkeypatch, tmp_path) -> None:
    root, env = tmp_path / "root", tmp_path / "env"
    make_mnist_files(data_env.system / "mnist", n_train=4)
    make_mnist_files(data_env.cache / "mnist", n_train=3)
    make_mnist_files(env / "mnist", n_train=2)
    make_mnist_files(root / "mnist", n_train=1)
    monkeypatch.setenv("GLASSNET_DATA", str(env))

    def n_loaded(**kw) -> int:
        return len(load_dataset("mnist", "train", download=False, **kw))

    assert n_loaded(root=root) == 1  # root beats env
    assert n_loaded() == 2  # env beats cache
    monkeypatch.delenv("GLASSNET_DATA")
    assert n_loaded() == 3  # cache beats system
    for f in (data_env.cache / "mnist").iterdir():
        f.unlink()
    assert n_loaded() == 4  # system
    labels = [label for label, _ in search_dirs(root)]
    assert labels == ["root", "cache", "system"]


def test_root_may_hold_files_directly_plain_idx(data_env, make_mnist_files, tmp_path) -> None:
    make_mnist_files(tmp_path / "flat", n_train=5, n_test=2, gz=False)  # plain names, no .gz
    ds = load_dataset("mnist", "test", root=tmp_path / "flat", download=False)
    assert ds.images.shape == (2, 1, 28, 28) and ds.labels.tolist() == [0, 1]
    assert ds.classes == [str(d) for d in range(10)]


def test_inconsistent_counts(data_env, make_mnist_files, tmp_path) -> None:
    make_mnist_files(tmp_path / "a", n_train=5)
    make_mnist_files(tmp_path / "b", n_train=6)
    (tmp_path / "b" / "train-labels-idx1-ubyte.gz").replace(tmp_path / "a" / "train-labels-idx1-ubyte.gz")
    with pytest.raises(DatasetError, match="has 5 images but train-labels-idx1-ubyte.gz has 6 labels"):
        load_dataset("mnist", root=tmp_path / "a", download=False)


def test_download_disabled_error_lists_files_and_dirs(data_env, tmp_path) -> None:
    with pytest.raises(DatasetNotFoundError) as info:
        load_dataset("mnist", "train", root=tmp_path / "r", download=False)
    msg = str(info.value)
    assert "mnist (split 'train'): 2 file(s) missing:" in msg
    assert "train-images-idx3-ubyte.gz (or train-images-idx3-ubyte)" in msg
    assert "train-labels-idx1-ubyte.gz" in msg and "t10k" not in msg
    for d in (tmp_path / "r" / "mnist", tmp_path / "r", data_env.cache / "mnist", data_env.system / "mnist"):
        assert f"  {d}  [" in msg
    assert "Download disabled (download=False)." in msg
    assert f"put the file(s) in {data_env.cache / 'mnist'}/" in msg


# ----------------------------------------------------------------- downloads


def test_download_success_atomic_into_cache(data_env, make_mnist_files, http_root) -> None:
    www, url = http_root
    sums = make_mnist_files(www / "mnist", n_train=6, n_test=2)
    ds = load_dataset("mnist", "train", mirrors=[url + "mnist/"], checksums=sums, progress=False)
    assert ds.images.shape == (6, 1, 28, 28)
    cached = data_env.cache / "mnist"
    assert _leftovers(cached) == ["train-images-idx3-ubyte.gz", "train-labels-idx1-ubyte.gz"]
    for name in _leftovers(cached):
        assert (cached / name).read_bytes() == (www / "mnist" / name).read_bytes()
    # now served from the cache, without the network
    assert len(load_dataset("mnist", "train", download=False)) == 6


def test_glassnet_mirror_env_and_fallback_to_next_mirror(data_env, make_mnist_files, http_root, monkeypatch) -> None:
    www, url = http_root
    sums = make_mnist_files(www / "mnist", n_train=2, n_test=3)
    monkeypatch.setenv("GLASSNET_MIRROR", url)  # laid out like the cache: <mirror>/mnist/<file>
    assert len(load_dataset("mnist", "test", checksums=sums, progress=False)) == 3
    # an explicit list: a 404 mirror and a dead one are skipped for the good one
    for f in (data_env.cache / "mnist").iterdir():
        f.unlink()
    mirrors = [url + "nothing-here/", _closed_port_url(), url + "mnist/"]
    assert len(load_dataset("mnist", "test", mirrors=mirrors, checksums=sums, progress=False)) == 3


def test_checksum_mismatch_rejected_and_deleted(data_env, make_mnist_files, http_root) -> None:
    www, url = http_root
    sums = make_mnist_files(www / "mnist", n_train=2)
    bad = dict(sums, **{"train-images-idx3-ubyte.gz": "0" * 64})
    with pytest.raises(ChecksumError) as info:
        load_dataset("mnist", "train", mirrors=[url + "mnist/"], checksums=bad, progress=False)
    msg = str(info.value)
    assert msg.startswith("train-images-idx3-ubyte.gz: SHA-256 mismatch for http://127.0.0.1:")
    assert f"expected {'0' * 64}, got {sums['train-images-idx3-ubyte.gz']}" in msg
    assert "train-images-idx3-ubyte.gz" not in _leftovers(data_env.cache)
    assert not [n for n in _leftovers(data_env.cache) if n.endswith(".part")]


def test_download_file_size_check(tmp_path, http_root) -> None:
    www, url = http_root
    (www / "f.bin").write_bytes(b"hello")
    sha = hashlib.sha256(b"hello").hexdigest()
    with pytest.raises(DatasetError, match="expected 6 bytes, received 5"):
        download_file(url + "f.bin", tmp_path / "dl" / "f.bin", sha256=sha, size=6, progress=False)
    assert _leftovers(tmp_path / "dl") == []
    out = download_file(url + "f.bin", tmp_path / "dl" / "f.bin", sha256=sha.upper(), size=5, progress=False)
    assert out.read_bytes() == b"hello" and _leftovers(tmp_path / "dl") == ["f.bin"]


def test_offline_error_lists_missing_files(data_env) -> None:
    dead = _closed_port_url()
    with pytest.raises(DatasetNotFoundError) as info:
        load_dataset("fashion-mnist", "test", mirrors=[dead], progress=False)
    msg = str(info.value)
    assert "fashion-mnist (split 'test'): 2 file(s) missing:" in msg
    assert "t10k-images-idx3-ubyte.gz" in msg and "t10k-labels-idx1-ubyte.gz" in msg
    assert "Download failed:" in msg and f"{dead}t10k-images-idx3-ubyte.gz: download failed" in msg
    assert str(data_env.system / "fashion-mnist") in msg
    assert _leftovers(data_env.cache / "fashion-mnist") == []


# ----------------------------------------------------------------- status


def test_dataset_status(data_env, make_mnist_files) -> None:
    make_mnist_files(data_env.cache / "mnist", n_train=1)
    (data_env.cache / "mnist" / "t10k-labels-idx1-ubyte.gz").unlink()
    status = {s.name: s for s in dataset_status()}
    assert status["shapes"].state == "built-in"
    assert status["mnist"].state == "partial"
    assert status["mnist"].missing == ("t10k-labels-idx1-ubyte.gz",)
    assert status["mnist"].location == str(data_env.cache / "mnist")
    assert status["cifar10"].state == "missing" and status["cifar10"].location == "missing"
    text = format_status()
    assert "mnist" in text and "partial" in text and "searched:" in text


# ----------------------------------------------------------------- real Fashion-MNIST


@pytest.mark.skipif(
    not (FASHION / "train-images-idx3-ubyte.gz").exists(),
    reason="Fashion-MNIST not installed at /usr/share/datasets/fashion-mnist (apt-get install dataset-fashion-mnist)",
)
def test_fashion_mnist_from_system(monkeypatch, tmp_path) -> None:
    monkeypatch.delenv("GLASSNET_DATA", raising=False)
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path))
    monkeypatch.setattr(datasets_mod, "SYSTEM_DATA_DIRS", (FASHION.parent,))
    train = load_dataset("fashion-mnist", "train", download=False)
    test = load_dataset("fashion_mnist", "test", download=False)
    assert train.images.shape == (60000, 1, 28, 28) and train.images.dtype == np.uint8
    assert test.images.shape == (10000, 1, 28, 28)
    assert train.labels.dtype == np.int64
    assert set(np.unique(train.labels)) == set(range(10)) == set(np.unique(test.labels))
    assert train.classes == FASHION_MNIST_CLASSES
    assert train.source == str(FASHION)
    mean, std = test.training_mean_std()  # from the training split
    np.testing.assert_allclose([mean[0], std[0]], [0.2860, 0.3530], atol=5e-4)
