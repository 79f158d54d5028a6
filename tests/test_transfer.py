"""Transfer learning, end to end (a reduced run of ``examples/transfer_learning.py``): pretrain on
shapes 0-4, replace the head, freeze the features, fine-tune on a few images of shapes 5-9, and beat
the same model trained from scratch on those images; frozen weights must not move by a bit."""

from __future__ import annotations

import importlib.util
import sys
from pathlib import Path

import numpy as np
import pytest

from glassnet.data import DataLoader, load_dataset
from glassnet.models import find_head, freeze_features, lenet5, replace_head
from glassnet.optim import SGD
from glassnet.train import fit

EXAMPLE = Path(__file__).resolve().parents[1] / "examples" / "transfer_learning.py"


@pytest.fixture(scope="module")
def example():
    spec = importlib.util.spec_from_file_location("transfer_learning_example", EXAMPLE)
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module  # dataclasses look their module up there
    try:
        spec.loader.exec_module(module)
        yield module
    finally:
        del sys.modules[spec.name]


def test_transfer_beats_training_from_scratch(example):
    r = example.experiment(pretrain_images=3000, pretrain_epochs=3, shots=10, epochs=30, draws=1, log=False)
    assert r.pretrain_acc > 0.9  # the features learnt on task A are good
    transfer, scratch = r.transfer_acc[0], r.scratch_acc[0]
    assert transfer >= scratch + 0.08, f"transfer {transfer:.1%} vs scratch {scratch:.1%}"
    assert transfer > 0.7  # chance is 0.2
    assert r.frozen_unchanged
    assert r.trainable == 84 * 5 + 5 and r.total == 61_706 - (84 * 10 + 10) + r.trainable


def test_task_split_relabels_and_draws_few(example):
    ds = load_dataset("shapes", "train", n=600)
    few = example.task(ds, example.TASK_B, per_class=3, seed=1)
    assert few.classes == ["star", "diamond", "arrow", "bars", "x"]
    assert np.array_equal(few.class_counts(), [3] * 5)
    again = example.task(ds, example.TASK_B, per_class=3, seed=1)
    assert np.array_equal(few.images, again.images)
    whole = example.task(ds, example.TASK_A)
    assert len(whole) == int(np.isin(ds.labels, example.TASK_A).sum()) and set(whole.labels) == {0, 1, 2, 3, 4}


def test_frozen_weights_are_bit_identical_after_fine_tuning(example):
    ds = load_dataset("shapes", "train", n=600)
    few = example.task(ds, example.TASK_B, per_class=6)
    model = lenet5(num_classes=5, rng=0)
    replace_head(model, 5, rng=1)
    freeze_features(model)
    head, _ = find_head(model)
    assert [n for n, p in model.named_parameters() if p.requires_grad] == [f"{head}.weight", f"{head}.bias"]
    before = {k: v.copy() for k, v in model.state_dict().items()}
    example.train(model, few, few.mean_std(), epochs=3, lr=1e-2, batch_size=10, seed=0)  # Adam, trainable only
    # even an optimiser given *every* parameter, with momentum and weight decay, leaves frozen ones alone
    fit(model, DataLoader(few, 10, shuffle=True, normalize="auto"), epochs=2,
        optimizer=SGD(model.parameters(), lr=0.1, momentum=0.9, weight_decay=0.1), progress=False)  # fmt: skip
    after = model.state_dict()
    for k, v in before.items():
        if k.startswith(f"{head}."):
            assert not np.array_equal(after[k], v), f"{k} did not learn"
        else:
            assert np.array_equal(after[k], v), f"frozen {k} changed"
