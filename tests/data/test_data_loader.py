"""DataLoader: batches, shuffling, resumable state, prefetch thread, normalisation."""

from __future__ import annotations

import gc
import threading
import time

import numpy as np
import pytest

from glassnet.data import DataLoader, Dataset, DatasetError, compute_mean_std, load_dataset
from glassnet.data import transforms as T

THREAD = "glassnet-dataloader-prefetch"


def _toy(n: int = 10, c: int = 1) -> Dataset:
    images = np.arange(n, dtype=np.uint8)[:, None, None, None] * np.ones((1, c, 4, 4), np.uint8)
    return Dataset(images, np.arange(n) % 3, ["a", "b", "c"], name="toy")


def _ids(batches: list[tuple[np.ndarray, np.ndarray]]) -> list[int]:
    """Sample indices of _toy batches (pixel value = index / 255)."""
    return [int(round(v * 255)) for x, _ in batches for v in x[:, 0, 0, 0]]


def _prefetch_threads() -> list[threading.Thread]:
    return [t for t in threading.enumerate() if t.name == THREAD and t.is_alive()]


def _wait_no_threads() -> None:
    deadline = time.monotonic() + 5
    while _prefetch_threads() and time.monotonic() < deadline:
        gc.collect()
        time.sleep(0.01)
    assert not _prefetch_threads()


@pytest.mark.parametrize("prefetch", [True, False])
def test_batch_shapes_dtypes_and_len(prefetch: bool) -> None:
    loader = DataLoader(_toy(10, c=3), batch_size=4, prefetch=prefetch)
    batches = list(loader)
    assert len(loader) == 3 and len(batches) == 3
    assert [b[0].shape for b in batches] == [(4, 3, 4, 4), (4, 3, 4, 4), (2, 3, 4, 4)]
    for x, y in batches:
        assert x.dtype == np.float32 and y.dtype == np.int64 and x.flags.c_contiguous
    assert _ids(batches) == list(range(10))  # no shuffle: dataset order
    np.testing.assert_allclose(batches[0][0][1], 1 / 255)  # scaled to [0, 1]
    dropped = DataLoader(_toy(10), batch_size=4, drop_last=True, prefetch=prefetch)
    assert len(dropped) == 2 and [len(y) for _, y in dropped] == [4, 4]


def test_shuffle_reproducible_per_seed_and_epoch() -> None:
    a = DataLoader(_toy(20), batch_size=6, shuffle=True, seed=3)
    b = DataLoader(_toy(20), batch_size=6, shuffle=True, seed=3)
    a0, a1 = _ids(list(a)), _ids(list(a))
    assert sorted(a0) == list(range(20))  # each sample exactly once
    assert a0 != a1  # a new order each epoch
    assert _ids(list(b)) == a0 and _ids(list(b)) == a1  # same seed, same epochs
    c = DataLoader(_toy(20), batch_size=6, shuffle=True, seed=4)
    assert _ids(list(c)) != a0
    c.set_epoch(1)
    assert _ids(list(c)) != a1
    assert a.epoch == 2 and a.position == 0


@pytest.mark.parametrize("prefetch", [True, False])
def test_state_dict_resume_reproduces_next_batches(prefetch: bool) -> None:
    aug = T.Compose([T.RandomHorizontalFlip(), T.RandomCrop(4, padding=1), T.Cutout(2)])
    ds = _toy(30)

    def make() -> DataLoader:
        return DataLoader(ds, batch_size=4, shuffle=True, seed=11, transform=aug, prefetch=prefetch)

    reference = make()
    list(reference)  # epoch 0
    it = iter(reference)
    for _ in range(3):
        next(it)
    state = reference.state_dict()
    assert state == {"seed": 11, "epoch": 1, "position": 3}
    rest = list(it)

    resumed = make()
    resumed.load_state_dict(state)
    again = list(resumed)
    assert len(again) == len(rest) == len(reference) - 3
    for (x1, y1), (x2, y2) in zip(rest, again, strict=True):
        np.testing.assert_array_equal(x1, x2)
        np.testing.assert_array_equal(y1, y2)
    assert resumed.state_dict() == {"seed": 11, "epoch": 2, "position": 0}


def test_prefetch_and_plain_agree() -> None:
    aug = T.RandomRotation(20)
    kw = dict(batch_size=7, shuffle=True, seed=5, transform=aug)
    with_thread = list(DataLoader(_toy(25), prefetch=True, **kw))
    without = list(DataLoader(_toy(25), prefetch=False, **kw))
    for (x1, y1), (x2, y2) in zip(with_thread, without, strict=True):
        np.testing.assert_array_equal(x1, x2)
        np.testing.assert_array_equal(y1, y2)


def test_worker_exception_reaches_consumer_and_thread_ends() -> None:
    def boom(x: np.ndarray, rng: np.random.Generator) -> np.ndarray:
        if x[0, 0, 0, 0] * 255 > 3.5:  # fails on the second batch
            raise RuntimeError("augmentation failed")
        return x

    loader = DataLoader(_toy(12), batch_size=4, transform=boom)
    it = iter(loader)
    next(it)
    with pytest.raises(RuntimeError, match="augmentation failed"):
        next(it)
    _wait_no_threads()
    assert loader.position == 1


def test_abandoned_iterator_shuts_down_thread() -> None:
    loader = DataLoader(_toy(200), batch_size=2, prefetch=True, prefetch_depth=1)
    for _ in loader:
        break
    _wait_no_threads()
    it = iter(loader)
    next(it)
    assert _prefetch_threads()
    it.close()
    assert not _prefetch_threads()
    assert loader.position == 2  # two batches handed out in all; the next loop goes on from there


def test_normalize_tuple_math() -> None:
    loader = DataLoader(_toy(3, c=2), batch_size=3, normalize=([0.1, 0.2], [0.5, 0.25]))
    x, _ = next(iter(loader))
    raw = np.arange(3, dtype=np.float32) / 255
    np.testing.assert_allclose(x[:, 0, 0, 0], (raw - 0.1) / 0.5, rtol=1e-6)
    np.testing.assert_allclose(x[:, 1, 0, 0], (raw - 0.2) / 0.25, rtol=1e-6)
    with pytest.raises(DatasetError, match="std must be > 0"):
        DataLoader(_toy(3), normalize=(0.0, 0.0))
    with pytest.raises(DatasetError, match="expected normalize None, 'auto' or"):
        DataLoader(_toy(3), normalize="imagenet")


def test_normalize_auto_uses_training_split() -> None:
    train = load_dataset("shapes", "train", n=500)
    loader = DataLoader(train, batch_size=500, normalize="auto")
    x, _ = next(iter(loader))
    assert abs(float(x.mean())) < 1e-4 and abs(float(x.std()) - 1) < 1e-4
    test = load_dataset("shapes", "test", n=100)
    test_loader = DataLoader(test, batch_size=100, normalize="auto")
    full_train_mean, full_train_std = load_dataset("shapes", "train").mean_std()
    np.testing.assert_allclose(test_loader.mean, full_train_mean)
    np.testing.assert_allclose(test_loader.std, full_train_std)
    orphan = Dataset(test.images, test.labels, test.classes, split="test")
    with pytest.raises(DatasetError, match="must come from the training split"):
        DataLoader(orphan, normalize="auto")


def test_compute_mean_std_exact() -> None:
    rng = np.random.default_rng(0)
    images = rng.integers(0, 256, (50, 3, 8, 8), dtype=np.uint8)
    mean, std = compute_mean_std(images)
    ref = images.astype(np.float64) / 255
    np.testing.assert_allclose(mean, ref.mean(axis=(0, 2, 3)), rtol=1e-6)
    np.testing.assert_allclose(std, ref.std(axis=(0, 2, 3)), rtol=1e-6)
    assert mean.dtype == std.dtype == np.float32 and mean.shape == (3,)
    fmean, fstd = compute_mean_std(ref)
    np.testing.assert_allclose(fmean, mean, rtol=1e-6)
    np.testing.assert_allclose(fstd, std, rtol=1e-6)


def test_accepts_any_object_with_images_and_labels() -> None:
    class Pair:
        images = np.random.default_rng(0).random((5, 1, 2, 2)).astype(np.float32)
        labels = np.arange(5)

    x, y = next(iter(DataLoader(Pair(), batch_size=5)))
    np.testing.assert_array_equal(x, Pair.images)  # floats are taken as they are
    assert y.dtype == np.int64
    with pytest.raises(DatasetError, match="expected batch_size >= 1, got 0"):
        DataLoader(Pair(), batch_size=0)


def test_prefetch_by_default_only_with_a_transform() -> None:
    """A plain batch is a gather and a normalisation: it is prepared inline unless asked otherwise;
    a transform (augmentation) gets the background thread."""
    assert DataLoader(_toy(10)).prefetch is False
    assert DataLoader(_toy(10), transform=lambda x, rng: x).prefetch is True
    assert DataLoader(_toy(10), prefetch=True).prefetch is True
    assert DataLoader(_toy(10), transform=lambda x, rng: x, prefetch=False).prefetch is False
    it = iter(DataLoader(_toy(10), batch_size=2))
    next(it)
    assert not _prefetch_threads()
    it.close()
