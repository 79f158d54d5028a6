"""Classification metrics: accuracy, top-k, confusion matrix, per-class precision/recall, ROC-AUC."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import numpy as np


def accuracy(logits: np.ndarray, labels: np.ndarray) -> float:
    """Fraction of rows whose arg-max equals the label."""
    return float(np.mean(np.argmax(logits, axis=1) == labels)) if len(labels) else 0.0


def topk_correct(logits: np.ndarray, labels: np.ndarray, k: int = 5) -> int:
    """How many labels are among their row's k largest logits."""
    k = min(k, logits.shape[1])
    top = np.argpartition(-logits, k - 1, axis=1)[:, :k]
    return int(np.sum(np.any(top == labels[:, None], axis=1)))


def confusion_matrix(pred: np.ndarray, labels: np.ndarray, num_classes: int) -> np.ndarray:
    """[num_classes, num_classes] counts: row = true class, column = predicted class."""
    return np.bincount(labels * num_classes + pred, minlength=num_classes * num_classes).reshape(
        num_classes, num_classes
    )


def roc_auc(scores: np.ndarray, labels: np.ndarray) -> float | None:
    """Area under the ROC curve of ``scores`` (higher: more likely class 1) against 0/1 ``labels``.

    The probability that a random positive scores above a random negative, ties counting
    one half (the Mann-Whitney statistic, from average ranks). None when one class is absent.
    """
    scores = np.asarray(scores, dtype=np.float64).ravel()
    labels = np.asarray(labels).ravel()
    pos, neg = int(np.sum(labels == 1)), int(np.sum(labels == 0))
    if pos == 0 or neg == 0:
        return None
    order = np.argsort(scores, kind="mergesort")
    sorted_scores = scores[order]
    ranks = np.empty(len(scores), dtype=np.float64)
    # average rank (1-based) of every run of equal scores
    starts = np.flatnonzero(np.r_[True, sorted_scores[1:] != sorted_scores[:-1]])
    ends = np.r_[starts[1:], len(scores)]
    avg = (starts + 1 + ends) / 2.0
    ranks[order] = np.repeat(avg, ends - starts)
    return float((ranks[labels == 1].sum() - pos * (pos + 1) / 2) / (pos * neg))


def _html_table(header: list[str], rows: list[list[str]], caption: str = "") -> str:
    from html import escape

    head = "".join(f"<th>{escape(h)}</th>" for h in header)
    body = "".join("<tr>" + "".join(f"<td>{escape(c)}</td>" for c in r) + "</tr>" for r in rows)
    cap = f"<caption style='text-align:left'>{escape(caption)}</caption>" if caption else ""
    return f"<table>{cap}<thead><tr>{head}</tr></thead><tbody>{body}</tbody></table>"


@dataclass
class Metrics:
    """Evaluation results of one pass over a dataset.

    ``task`` is ``"multiclass"`` or ``"binary"``; a binary evaluation has no top-5 (None), and
    records the ``threshold`` its accuracy and confusion matrix used and the ``roc_auc``
    (None when the data holds one class only).
    """

    loss: float
    accuracy: float
    top5: float | None
    confusion: np.ndarray
    classes: list[str] = field(default_factory=list)
    task: str = "multiclass"
    threshold: float | None = None
    roc_auc: float | None = None

    @property
    def precision(self) -> np.ndarray:
        """Per class: correct predictions of the class / all predictions of it (0 when never predicted)."""
        col = self.confusion.sum(axis=0)
        return np.divide(np.diag(self.confusion), col, out=np.zeros(len(col)), where=col > 0)

    @property
    def recall(self) -> np.ndarray:
        """Per class: correctly found / all true members of the class."""
        row = self.confusion.sum(axis=1)
        return np.divide(np.diag(self.confusion), row, out=np.zeros(len(row)), where=row > 0)

    def to_dict(self) -> dict[str, Any]:
        d = {
            "loss": self.loss,
            "accuracy": self.accuracy,
            "top5": self.top5,
            "classes": self.classes,
            "confusion": self.confusion.tolist(),
            "precision": self.precision.tolist(),
            "recall": self.recall.tolist(),
        }
        if self.task != "multiclass":
            d.update(task=self.task, threshold=self.threshold, roc_auc=self.roc_auc)
        return d

    def headline(self) -> str:
        """One line: loss, accuracy, and top-5 or (binary) the threshold and ROC-AUC."""
        if self.task == "binary":
            auc = "n/a (one class only)" if self.roc_auc is None else f"{self.roc_auc:.4f}"
            return (
                f"loss {self.loss:.4f}   accuracy {self.accuracy:.2%} at threshold {self.threshold:.2f}   ROC-AUC {auc}"
            )
        return f"loss {self.loss:.4f}   accuracy {self.accuracy:.2%}   top-5 {self.top5:.2%}"

    def _names(self) -> list[str]:
        return self.classes or [str(i) for i in range(len(self.confusion))]

    def _repr_html_(self) -> str:
        """Jupyter: the headline, then per-class precision/recall and the confusion matrix as tables."""
        from html import escape

        names = self._names()
        per_class = _html_table(
            ["class", "precision", "recall"],
            [[n, f"{p:.2%}", f"{r:.2%}"] for n, p, r in zip(names, self.precision, self.recall, strict=True)],
        )
        conf = _html_table(
            ["true \\ predicted", *names],
            [[n, *(str(int(v)) for v in row)] for n, row in zip(names, self.confusion, strict=True)],
            "confusion matrix (rows: true class, columns: predicted)",
        )
        return f"<div><p><b>{escape(self.headline())}</b></p>{per_class}<br>{conf}</div>"

    def report(self) -> str:
        """A text report: totals, then per class precision/recall and the confusion matrix."""
        names = self._names()
        width = max(8, *(len(n) for n in names))
        lines = [
            self.headline(),
            "",
            f"{'class':<{width}}  precision  recall",
        ]
        for n, p, r in zip(names, self.precision, self.recall, strict=True):
            lines.append(f"{n:<{width}}  {p:9.2%}  {r:6.2%}")
        lines += ["", "confusion matrix (rows: true class, columns: predicted)"]
        cw = max(5, len(str(int(self.confusion.max(initial=0)))) + 1)
        lines.append(" " * width + "".join(f"{i:>{cw}}" for i in range(len(names))))
        for i, n in enumerate(names):
            lines.append(f"{n:<{width}}" + "".join(f"{v:>{cw}}" for v in self.confusion[i]))
        return "\n".join(lines)
