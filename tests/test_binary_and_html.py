"""Binary classification through ``fit``/``evaluate`` (the Python API), ROC-AUC, and the rich
(HTML) display of summaries and metrics in Jupyter."""

from __future__ import annotations

import numpy as np
import pytest

import glassnet
from glassnet import nn
from glassnet.data import DataLoader, load_dataset
from glassnet.models import lenet5
from glassnet.optim import Adam
from glassnet.train import Metrics, RunInfo, evaluate, fit, roc_auc


def brute_auc(scores, labels):
    pos, neg = scores[labels == 1], scores[labels == 0]
    return np.mean([(a > b) + 0.5 * (a == b) for a in pos for b in neg])


@pytest.mark.parametrize("seed", range(5))
def test_roc_auc_equals_the_pairwise_definition_with_ties(seed):
    rng = np.random.default_rng(seed)
    labels = rng.integers(0, 2, 60)
    scores = np.round(rng.random(60) + 0.3 * labels, 1)  # rounded: many ties
    assert roc_auc(scores, labels) == pytest.approx(brute_auc(scores, labels))
    assert roc_auc(scores, np.ones(60, int)) is None
    assert roc_auc(np.array([0.1, 0.9]), np.array([0, 1])) == 1.0


def circles_vs_squares(n):
    ds = load_dataset("shapes", "train", n=n)
    keep = np.flatnonzero(ds.labels < 2)
    return ds.subset(keep)


def small_model(outputs):
    return nn.Sequential(nn.Conv2d(1, 4, 5, rng=0), nn.ReLU(), nn.MaxPool2d(4), nn.Flatten(),
                         nn.Linear(4 * 6 * 6, outputs, rng=1))  # fmt: skip


def test_fit_and_evaluate_binary_one_logit():
    data = circles_vs_squares(3000)
    two = type(data)(data.images, data.labels, ["circle", "square"], split="train")
    loader = DataLoader(two, 32, shuffle=True, seed=0, normalize="auto")
    model = lenet5(num_classes=1, rng=0)
    history = fit(model, loader, loader, epochs=4, optimizer=Adam(model.parameters(), lr=3e-3),
                  info=RunInfo(task="binary", classes=two.classes), progress=False)  # fmt: skip
    assert history.epochs[-1]["val_acc"] > 0.9
    m = evaluate(model, DataLoader(two, 128, normalize="auto"), two.classes, task="binary", threshold=0.5)
    assert m.task == "binary" and m.top5 is None and m.confusion.shape == (2, 2) and m.roc_auc > 0.95
    assert m.accuracy == pytest.approx(np.trace(m.confusion) / len(two))
    strict = evaluate(model, DataLoader(two, 128, normalize="auto"), two.classes, task="binary", threshold=0.999)
    assert strict.confusion[:, 1].sum() <= m.confusion[:, 1].sum()  # a higher threshold predicts fewer squares
    assert "ROC-AUC" in m.report() and "threshold 0.50" in m.report()
    # loss= names it too; a loss that disagrees with the task is an error
    fit(model, loader, epochs=1, optimizer=Adam(model.parameters()), loss="binary_cross_entropy", progress=False)
    with pytest.raises(ValueError, match="does not train the run's task"):
        fit(model, loader, epochs=1, optimizer=Adam(model.parameters()), loss="cross_entropy",
            info=RunInfo(task="binary"), progress=False)  # fmt: skip
    with pytest.raises(ValueError, match=r"one logit per image, \[N, 1\]"):
        fit(small_model(2), loader, epochs=1, optimizer=Adam(model.parameters()), loss="binary_cross_entropy",
            progress=False)  # fmt: skip


def test_multiclass_evaluate_unchanged():
    ds = load_dataset("shapes", "test", n=200)
    model = small_model(10)
    m = evaluate(model, DataLoader(ds, 100, normalize="auto"), ds.classes)
    assert m.task == "multiclass" and m.top5 is not None and m.roc_auc is None
    assert set(m.to_dict()) == {"loss", "accuracy", "top5", "classes", "confusion", "precision", "recall"}


def test_html_reprs_for_jupyter():
    s = glassnet.summary(small_model(10), (1, 28, 28))
    html = s._repr_html_()
    assert html.count("<tr>") == len(s.rows) + 1 and "total parameters" in html and "<table>" in html
    m = Metrics(0.5, 0.75, 1.0, np.array([[3, 1], [0, 4]]), ["cat<", "dog"])
    html = m._repr_html_()
    assert "cat&lt;" in html and "confusion matrix" in html and html.count("<table>") == 2
    b = Metrics(0.5, 0.75, None, np.array([[3, 1], [0, 4]]), ["cat", "dog"], task="binary", threshold=0.3,
                roc_auc=0.9)  # fmt: skip
    assert "ROC-AUC 0.9000" in b._repr_html_() and "threshold 0.30" in b.report()
