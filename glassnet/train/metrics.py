"""Classification metrics: accuracy, top-k, confusion matrix, per-class precision/recall."""

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


@dataclass
class Metrics:
    """Evaluation results of one pass over a dataset."""

    loss: float
    accuracy: float
    top5: float
    confusion: np.ndarray
    classes: list[str] = field(default_factory=list)

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
        return {
            "loss": self.loss,
            "accuracy": self.accuracy,
            "top5": self.top5,
            "classes": self.classes,
            "confusion": self.confusion.tolist(),
            "precision": self.precision.tolist(),
            "recall": self.recall.tolist(),
        }

    def report(self) -> str:
        """A text report: totals, then per class precision/recall and the confusion matrix."""
        names = self.classes or [str(i) for i in range(len(self.confusion))]
        width = max(8, *(len(n) for n in names))
        lines = [
            f"loss {self.loss:.4f}   accuracy {self.accuracy:.2%}   top-5 {self.top5:.2%}",
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
