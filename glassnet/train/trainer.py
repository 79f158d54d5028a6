"""``fit``: the training loop of the lectures, made dependable.

For each epoch, for each mini-batch: forward pass, loss, backward pass, parameter
update (inside the batch loop, CONCEPTS J7). Around that loop:

* progress bar (tqdm: loss, accuracy, images/s, ETA; silent when not a terminal);
* validation after every epoch, best-model tracking, early stopping, gradient-norm
  clipping, learning-rate schedules per epoch or per step;
* a run directory: ``history.json`` (rewritten atomically during training, so the
  explorer can follow it live), ``history.csv``, ``curves.png``, ``last.safetensors``
  and ``best.safetensors`` checkpoints, ``metrics.json`` for the final test;
* nothing lost: checkpoints are atomic; Ctrl-C finishes the current step, saves a
  checkpoint and returns (status "interrupted"); a non-finite loss stops with a
  message naming the epoch and step and leaves the last good checkpoint in place;
* exact resume: weights, optimiser and scheduler state, epoch, step, the data
  loader's position and every random state are in the checkpoint, so an interrupted
  and resumed run ends with the same weights as an uninterrupted one.
"""

from __future__ import annotations

import signal
import sys
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from .. import functional as F
from ..autograd import no_grad
from ..checkpoint import load_checkpoint, restore_optimizer, save_checkpoint
from ..nn.module import Module
from .history import History
from .metrics import Metrics, confusion_matrix, topk_correct


class TrainingError(RuntimeError):
    """Training cannot go on (e.g. a non-finite loss); the message says where and why."""


@dataclass
class RunInfo:
    """What a checkpoint needs to rebuild and use the model later."""

    architecture: str | None = None
    arch_kwargs: dict[str, Any] = field(default_factory=dict)
    classes: list[str] = field(default_factory=list)
    normalization: dict[str, Any] | None = None
    input_shape: tuple[int, ...] | None = None


def _loss_fn(name: str, label_smoothing: float) -> Any:
    if name != "cross_entropy":
        raise ValueError(f"fit: loss must be 'cross_entropy' for classification, got {name!r}")

    def loss_fn(logits: Any, y: np.ndarray) -> Any:
        return F.cross_entropy(logits, y, label_smoothing=label_smoothing)

    return loss_fn


def _module_rngs(model: Module) -> dict[str, Any]:
    return {
        name: m.rng.bit_generator.state
        for name, m in model.named_modules()
        if isinstance(getattr(m, "rng", None), np.random.Generator)
    }


def _restore_module_rngs(model: Module, states: dict[str, Any]) -> None:
    for name, m in model.named_modules():
        if name in states and isinstance(getattr(m, "rng", None), np.random.Generator):
            m.rng.bit_generator.state = states[name]


def evaluate(model: Module, loader: Any, classes: list[str] | None = None, num_classes: int | None = None) -> Metrics:
    """Loss, accuracy, top-5, confusion matrix (and precision/recall) of ``model`` on ``loader``."""
    was_training = model.training
    model.eval()
    total_loss, correct, top5, seen = 0.0, 0, 0, 0
    conf = None
    try:
        with no_grad():
            for x, y in loader:
                logits = model(x).numpy()
                k = num_classes or logits.shape[1]
                if conf is None:
                    conf = np.zeros((k, k), dtype=np.int64)
                loss = F.cross_entropy(logits, y, reduction="sum")
                total_loss += float(loss)
                pred = np.argmax(logits, axis=1)
                correct += int(np.sum(pred == y))
                top5 += topk_correct(logits, y, 5)
                seen += len(y)
                conf += confusion_matrix(pred, y, k)
    finally:
        model.train(was_training)
    if seen == 0:
        raise ValueError("evaluate: the loader yielded no samples")
    return Metrics(total_loss / seen, correct / seen, top5 / seen, conf, list(classes or []))


class _Interrupt:
    """Turns the first Ctrl-C into a flag checked between steps; a second one aborts at once."""

    def __init__(self, enabled: bool) -> None:
        self.requested = False
        self.enabled = enabled and threading.current_thread() is threading.main_thread()
        self._old: Any = None

    def _handler(self, signum: int, frame: Any) -> None:
        if self.requested:
            raise KeyboardInterrupt
        self.requested = True

    def __enter__(self) -> _Interrupt:
        if self.enabled:
            self._old = signal.signal(signal.SIGINT, self._handler)
        return self

    def __exit__(self, *exc: Any) -> None:
        if self.enabled:
            signal.signal(signal.SIGINT, self._old)


def fit(
    model: Module,
    train: Any,
    val: Any = None,
    *,
    epochs: int,
    optimizer: Any,
    loss: str = "cross_entropy",
    label_smoothing: float = 0.0,
    scheduler: Any = None,
    scheduler_interval: str = "epoch",
    clip_grad_norm: float | None = None,
    early_stopping: int | None = None,
    run_dir: str | Path | None = None,
    resume: bool = False,
    info: RunInfo | None = None,
    config: dict[str, Any] | None = None,
    checkpoint_every: int | None = None,
    log_every: int = 10,
    progress: bool | None = None,
    callbacks: tuple[Any, ...] = (),
    handle_sigint: bool = True,
) -> History:
    """Train ``model`` on ``train`` (a :class:`glassnet.data.DataLoader`) for ``epochs`` epochs.

    Args:
        val: loader evaluated after every epoch (accuracy drives best-model tracking
            and early stopping).
        scheduler / scheduler_interval: a learning-rate schedule stepped after every
            ``'epoch'`` or every optimiser ``'step'``.
        clip_grad_norm: clip the global gradient norm to this value before each step.
        early_stopping: stop after this many epochs without a better validation accuracy.
        run_dir: where history, curves and checkpoints go (nothing is written if None).
        resume: continue from ``run_dir/last.safetensors`` exactly where it stopped.
        info: architecture, classes and normalisation stored in the checkpoints.
        checkpoint_every: also write ``last.safetensors`` every this many steps.
        log_every: record a step in the history every this many steps.
        progress: show a progress bar (default: when stderr is a terminal).
        callbacks: objects with an optional ``on_epoch_end(history, model) -> bool``
            (return True to stop).

    Returns the :class:`History`; ``history.status`` is "finished" or "interrupted".
    Raises :class:`TrainingError` on a non-finite loss.
    """
    from ..optim import clip_grad_norm_

    if scheduler_interval not in ("epoch", "step"):
        raise ValueError(f"fit: scheduler_interval must be 'epoch' or 'step', got {scheduler_interval!r}")
    if not isinstance(epochs, int) or epochs < 1:
        raise ValueError(f"fit: epochs must be a positive int, got {epochs!r}")
    info = info or RunInfo()
    loss_forward = _loss_fn(loss, label_smoothing)
    run_path = Path(run_dir) if run_dir is not None else None
    if progress is None:
        progress = sys.stderr.isatty()
    from tqdm.auto import tqdm

    history = History(config=dict(config or {}))
    epoch, step = 0, 0
    acc_state = {"loss_sum": 0.0, "correct": 0, "seen": 0, "seconds": 0.0}
    best_acc, bad_epochs = -1.0, 0
    if resume:
        if run_path is None:
            raise ValueError("fit: resume=True needs a run_dir")
        ckpt = load_checkpoint(run_path / "last.safetensors")
        ckpt.load_into(model)
        restore_optimizer(ckpt, optimizer)
        if scheduler is not None and ckpt.meta.get("scheduler"):
            scheduler.load_state_dict(ckpt.meta["scheduler"]["state"])
        _restore_module_rngs(model, ckpt.meta.get("rng", {}).get("modules", {}))
        train.load_state_dict(ckpt.meta["loader"])
        epoch, step = int(ckpt.meta["epoch"]), int(ckpt.meta["step"])
        extra = ckpt.meta.get("extra", {})
        acc_state.update(extra.get("epoch_accumulators", {}))
        best_acc, bad_epochs = extra.get("best_acc", -1.0), extra.get("bad_epochs", 0)
        if (run_path / "history.json").exists():
            old = History.load(run_path)
            history.epochs = [e for e in old.epochs if e["epoch"] <= epoch]
            history.steps = [s for s in old.steps if s["step"] <= step]
            history.best = old.best
            history.config = old.config or history.config
        history.status, history.message = "running", None

    def save(path: Path) -> None:
        save_checkpoint(
            path, model, architecture=info.architecture, arch_kwargs=info.arch_kwargs, classes=info.classes,
            normalization=info.normalization, input_shape=info.input_shape, optimizer=optimizer,
            scheduler=scheduler, epoch=epoch, step=step, rng={"modules": _module_rngs(model)},
            loader=train.state_dict(),
            extra={"epoch_accumulators": dict(acc_state), "best_acc": best_acc, "bad_epochs": bad_epochs},
        )  # fmt: skip

    last_history_write = 0.0

    def write_history(force: bool = False, full: bool = False) -> None:
        nonlocal last_history_write
        if run_path is None:
            return
        now = time.monotonic()
        if force or now - last_history_write > 2.0:
            history.save(run_path, csv_and_plot=full)
            last_history_write = now

    if run_path is not None:
        run_path.mkdir(parents=True, exist_ok=True)
        write_history(force=True)

    model.train()
    with _Interrupt(handle_sigint) as interrupt:
        while epoch < epochs:
            t_epoch = time.perf_counter()
            bar = tqdm(total=len(train), initial=train.state_dict().get("position", 0),
                       desc=f"epoch {epoch + 1}/{epochs}", disable=not progress, leave=True,
                       unit="batch", dynamic_ncols=True)  # fmt: skip
            t_last, n_last = time.perf_counter(), 0
            for x, y in train:
                try:
                    logits = model(x)
                    loss_value = loss_forward(logits, y)
                except F.NonFiniteLossError as e:
                    bar.close()
                    history.status = "failed"
                    history.message = f"non-finite loss at epoch {epoch + 1}, step {step + 1}: {e}"
                    write_history(force=True, full=True)
                    raise TrainingError(
                        history.message + " (the last good checkpoint is kept; lower the learning rate?)"
                    ) from None
                model.zero_grad()
                loss_value.backward()
                if clip_grad_norm is not None:
                    clip_grad_norm_(model.parameters(trainable_only=True), clip_grad_norm)
                optimizer.step()
                if scheduler is not None and scheduler_interval == "step":
                    scheduler.step()
                step += 1
                batch_correct = int(np.sum(np.argmax(logits.data, axis=1) == y))
                acc_state["loss_sum"] += float(loss_value) * len(y)
                acc_state["correct"] += batch_correct
                acc_state["seen"] += len(y)
                n_last += len(y)
                if step % log_every == 0:
                    history.steps.append({
                        "step": step, "epoch": round(epoch + train.state_dict()["position"] / len(train), 4),
                        "loss": float(loss_value), "acc": batch_correct / len(y),
                        "lr": float(optimizer.param_groups[0]["lr"]),
                    })  # fmt: skip
                    write_history()
                bar.update(1)
                if progress:
                    now = time.perf_counter()
                    bar.set_postfix(loss=f"{acc_state['loss_sum'] / acc_state['seen']:.4f}",
                                    acc=f"{acc_state['correct'] / acc_state['seen']:.2%}",
                                    img_s=f"{n_last / max(now - t_last, 1e-9):.0f}", refresh=False)  # fmt: skip
                    if now - t_last > 2:
                        t_last, n_last = now, 0
                # At the epoch's last batch the loader has moved on to the next epoch, so a
                # checkpoint (or a stop) there would skip the epoch's end on resume: the end of
                # the epoch below saves and stops instead.
                mid_epoch = train.state_dict()["position"] != 0
                if run_path is not None and checkpoint_every and step % checkpoint_every == 0 and mid_epoch:
                    save(run_path / "last.safetensors")
                if interrupt.requested and mid_epoch:
                    break
            else:
                mid_epoch = False
            bar.close()
            acc_state["seconds"] += time.perf_counter() - t_epoch
            if interrupt.requested and mid_epoch:
                history.status = "interrupted"
                history.message = f"interrupted at epoch {epoch + 1}, step {step}; resume with resume=True"
                if run_path is not None:
                    save(run_path / "last.safetensors")
                write_history(force=True, full=True)
                return history
            record: dict[str, Any] = {
                "epoch": epoch + 1,
                "train_loss": acc_state["loss_sum"] / max(acc_state["seen"], 1),
                "train_acc": acc_state["correct"] / max(acc_state["seen"], 1),
                "val_loss": None, "val_acc": None,
                "lr": float(optimizer.param_groups[0]["lr"]),
                "seconds": round(acc_state["seconds"], 3),
            }  # fmt: skip
            improved = False
            if val is not None:
                m = evaluate(model, val, info.classes)
                record["val_loss"], record["val_acc"] = m.loss, m.accuracy
                improved = m.accuracy > best_acc
                if improved:
                    best_acc, bad_epochs = m.accuracy, 0
                    history.best = {"epoch": epoch + 1, "val_acc": m.accuracy}
                else:
                    bad_epochs += 1
            history.epochs.append(record)
            if scheduler is not None and scheduler_interval == "epoch":
                scheduler.step()
            epoch += 1
            acc_state = {"loss_sum": 0.0, "correct": 0, "seen": 0, "seconds": 0.0}
            if run_path is not None:
                save(run_path / "last.safetensors")
                if improved or val is None:
                    save(run_path / "best.safetensors")
            stop = early_stopping is not None and bad_epochs >= early_stopping
            for cb in callbacks:
                hook = getattr(cb, "on_epoch_end", None)
                if hook is not None and hook(history, model):
                    stop = True
            if progress:
                val_txt = (
                    ""
                    if record["val_acc"] is None
                    else f"  val loss {record['val_loss']:.4f}  val acc {record['val_acc']:.2%}"
                )
                tqdm.write(
                    f"epoch {epoch}: train loss {record['train_loss']:.4f}  acc {record['train_acc']:.2%}{val_txt}"
                )
            write_history(force=True, full=True)
            if interrupt.requested and not stop and epoch < epochs:
                history.status = "interrupted"
                history.message = f"interrupted after epoch {epoch}, step {step}; resume with resume=True"
                write_history(force=True, full=True)
                return history
            if stop:
                history.message = (
                    f"early stopping after epoch {epoch}: no better validation accuracy for {bad_epochs} epochs"
                )
                break
    history.status = "finished"
    write_history(force=True, full=True)
    return history
