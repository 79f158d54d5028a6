"""Training: the fit loop, evaluation, metrics and history."""

from .history import History, plot_curves
from .metrics import Metrics, accuracy, confusion_matrix, roc_auc, topk_correct
from .trainer import RunInfo, TrainingError, evaluate, fit

__all__ = [
    "History", "Metrics", "RunInfo", "TrainingError", "accuracy", "confusion_matrix", "evaluate", "fit",
    "plot_curves", "roc_auc", "topk_correct",
]  # fmt: skip
