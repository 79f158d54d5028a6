"""``fit``: the training loop of the lectures, made dependable.

For each epoch, for each mini-batch: forward pass, loss, backward pass, parameter
update (inside the batch loop, CONCEPTS J7). Around that loop:

* progress bar (tqdm: loss, accuracy, images/s, ETA; silent when not a terminal);
* validation after every epoch, best-model tracking, early stopping, gradient-norm
  clipping, learning-rate schedules per epoch or per step;
* a run directory: ``history.json`` (rewritten atomically during training, so the
  explorer can follow it live), ``history.csv``, ``curves.png``, ``last.safetensors``
  and ``best.safetensors`` checkpoints, ``metrics.json`` for the final test;
* nothing lost: the run directory is locked (one trainer at a time) and a new run never
  writes into a directory holding an earlier one (:mod:`.rundir`); checkpoints are atomic
  and never hold non-finite weights; Ctrl-C, SIGTERM and SIGHUP finish the current step,
  save a checkpoint and return (status "interrupted"); a non-finite loss or weights, or a
  diverged validation, stop with a message naming the epoch and step; any failure marks
  ``history.json`` "failed" with its message, and every message says which checkpoints
  are on disk;
* exact resume: weights, optimiser and scheduler state, epoch, step, the data
  loader's position and every random state are in the checkpoint, so an interrupted
  and resumed run ends with the same weights as an uninterrupted one;
* data parallelism on MPI (``distributed=True``): the few places marked ``[distributed]``
  call into :mod:`glassnet.distributed`, which says what each rank does.
"""

from __future__ import annotations

import functools
import signal
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from .. import functional as F
from .._jupyter import show_progress
from ..autograd import no_grad
from ..checkpoint import CheckpointError, load_checkpoint, non_finite_tensors, restore_optimizer, save_checkpoint
from ..nn.module import Module
from .history import History, warm_up_plotting
from .metrics import Metrics, confusion_matrix, roc_auc, topk_correct
from .rundir import RunLock, describe_checkpoints, prepare_run_dir


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
    dataset: str | None = None
    task: str = "multiclass"  # or "binary": one logit, P(classes[1]) = σ(z)
    preprocessing: Any = None  # the ImagePreprocessing of image files (training on a folder)
    data_folder: str | None = None


#: fit's losses and the task each trains: softmax cross-entropy over classes, or one logit per image.
LOSSES = {"cross_entropy": "multiclass", "binary_cross_entropy": "binary"}
# At the end of an epoch, curves.png is redrawn only if this many seconds passed since it last was.
PLOT_EVERY_S = 30.0
# The progress bar's loss, accuracy and images/s are recomputed at most this often (tqdm redraws the
# bar every 0.1 s anyway): formatting them each step took 28 µs, 0.4 % of a 2-thread LeNet-5 epoch.
POSTFIX_EVERY_S = 0.1


def _show_progress(bar: Any, acc_state: dict[str, Any], images_per_s: float) -> None:
    """The progress bar's running loss, accuracy and speed (shown at its next redraw)."""
    bar.set_postfix(loss=f"{acc_state['loss_sum'] / acc_state['seen']:.4f}",
                    acc=f"{acc_state['correct'] / acc_state['seen']:.2%}",
                    img_s=f"{images_per_s:.0f}", refresh=False)  # fmt: skip


def _loss_fn(name: str, label_smoothing: float) -> Any:
    if name not in LOSSES:
        raise ValueError(f"fit: loss must be one of {', '.join(LOSSES)}, got {name!r}")

    def loss_fn(logits: Any, y: np.ndarray) -> Any:
        return F.cross_entropy(logits, y, label_smoothing=label_smoothing)

    def bce_fn(logits: Any, y: np.ndarray) -> Any:
        if logits.ndim != 2 or logits.shape[1] != 1:
            raise ValueError(f"fit: binary cross-entropy needs one logit per image, [N, 1]; got {list(logits.shape)}")
        target = y.astype(np.float64)[:, None] * (1 - label_smoothing) + label_smoothing / 2
        return F.binary_cross_entropy_with_logits(logits, target)

    return loss_fn if name == "cross_entropy" else bce_fn


def _n_correct(logits: np.ndarray, y: np.ndarray, task: str) -> int:
    """Right answers in a batch: the arg-max, or for one logit σ(z) ≥ 0.5 (z ≥ 0) meaning class 1."""
    pred = (logits[:, 0] >= 0).astype(np.int64) if task == "binary" else np.argmax(logits, axis=1)
    return int(np.sum(pred == y))


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


def evaluate(
    model: Module,
    loader: Any,
    classes: list[str] | None = None,
    num_classes: int | None = None,
    *,
    task: str = "multiclass",
    threshold: float = 0.5,
) -> Metrics:
    """Loss, accuracy, top-5, confusion matrix (and precision/recall) of ``model`` on ``loader``.

    ``task="binary"``: the model gives one logit per image and P(class 1) = σ(z); the loss is
    the binary cross-entropy, accuracy and the 2×2 confusion matrix count σ(z) ≥ ``threshold``
    as class 1, and ROC-AUC is added (no top-5).
    """
    if task == "binary":
        return _evaluate_binary(model, loader, classes, threshold)
    if task != "multiclass":
        raise ValueError(f"evaluate: task must be 'multiclass' or 'binary', got {task!r}")
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


def _sigmoid(z: np.ndarray) -> np.ndarray:
    e = np.exp(-np.abs(z))
    return np.where(z >= 0, 1 / (1 + e), e / (1 + e))


def _evaluate_binary(model: Module, loader: Any, classes: list[str] | None, threshold: float) -> Metrics:
    if not 0 <= threshold <= 1:
        raise ValueError(f"evaluate: threshold must be a probability in [0, 1], got {threshold}")
    was_training = model.training
    model.eval()
    total_loss, probs, labels = 0.0, [], []
    try:
        with no_grad():
            for x, y in loader:
                z = model(x).numpy()
                if z.ndim != 2 or z.shape[1] != 1:
                    raise ValueError(f"evaluate: a binary model gives one logit per image, [N, 1]; got {list(z.shape)}")
                loss = F.binary_cross_entropy_with_logits(z, y.astype(z.dtype)[:, None], reduction="sum")
                total_loss += float(loss)
                probs.append(_sigmoid(z[:, 0].astype(np.float64)))
                labels.append(np.asarray(y, dtype=np.int64))
    finally:
        model.train(was_training)
    if not labels:
        raise ValueError("evaluate: the loader yielded no samples")
    p, y = np.concatenate(probs), np.concatenate(labels)
    pred = (p >= threshold).astype(np.int64)
    return Metrics(total_loss / len(y), float(np.mean(pred == y)), None, confusion_matrix(pred, y, 2),
                   list(classes or []), task="binary", threshold=threshold, roc_auc=roc_auc(p, y))  # fmt: skip


class _Joined:
    """On leaving the block, wait for ``thread`` (the plotting warm-up): fit never returns, or
    raises, while it is still inside matplotlib."""

    def __init__(self, thread: threading.Thread | None) -> None:
        self.thread = thread

    def __enter__(self) -> None:
        return None

    def __exit__(self, *exc: Any) -> None:
        if self.thread is not None:
            self.thread.join()


class _Interrupt:
    """Turns the first SIGINT (Ctrl-C), SIGTERM or SIGHUP into a flag checked between steps;
    a second one aborts at once (KeyboardInterrupt). A signal the process ignores (``nohup``
    ignores SIGHUP) stays ignored. ``deferred`` (distributed training): a signal sets ``pending``,
    and ``requested`` is set when the ranks agree to stop, at the same step on every rank."""

    SIGNALS = tuple(getattr(signal, n) for n in ("SIGINT", "SIGTERM", "SIGHUP") if hasattr(signal, n))

    def __init__(self, enabled: bool, deferred: bool = False) -> None:
        self.requested = False
        self.pending = False
        self.deferred = deferred
        self.signal_name = ""
        self.enabled = enabled and threading.current_thread() is threading.main_thread()
        self._old: dict[int, Any] = {}

    def _handler(self, signum: int, frame: Any) -> None:
        if self.requested or self.pending:
            raise KeyboardInterrupt
        if self.deferred:
            self.pending = True
        else:
            self.requested = True
        self.signal_name = signal.Signals(signum).name

    def __enter__(self) -> _Interrupt:
        if self.enabled:
            for sig in self.SIGNALS:
                old = signal.getsignal(sig)
                if old is not signal.SIG_IGN:
                    self._old[sig] = signal.signal(sig, self._handler)
        return self

    def __exit__(self, *exc: Any) -> None:
        for sig, old in self._old.items():
            signal.signal(sig, old)
        self._old = {}


class _Outcome:
    """Around the training loop: any way it ends early is recorded in ``history.json`` with
    what is on disk. A :class:`TrainingError` is raised again with that added; a second signal
    (KeyboardInterrupt) marks the run "interrupted"; anything else marks it "failed"."""

    def __init__(self, history: History, run_path: Path | None, write: Any, where: Any) -> None:
        self.history, self.run_path, self.write, self.where = history, run_path, write, where

    def __enter__(self) -> _Outcome:
        return self

    def __exit__(self, kind: Any, exc: BaseException | None, tb: Any) -> bool:
        if exc is None:
            return False
        disk = describe_checkpoints(self.run_path) if self.run_path is not None else "no run directory"
        if isinstance(exc, TrainingError):
            self.history.status = "failed"
            self.history.message = f"{exc}; {disk}"
        elif isinstance(exc, KeyboardInterrupt):
            self.history.status = "interrupted"
            self.history.message = f"stopped at once at {self.where()} (a second interrupt); {disk}"
        else:
            self.history.status = "failed"
            self.history.message = f"{type(exc).__name__}: {exc} (at {self.where()}); {disk}"
        try:
            self.write(force=True, full=False)
        except Exception:  # e.g. the disk is full: the original error says what happened
            pass
        if isinstance(exc, TrainingError):
            raise TrainingError(self.history.message) from None
        return False


def _owning_run_dir(fit_fn: Any) -> Any:
    """``fit`` holds its run directory's lock throughout; a new run needs a directory with
    nothing of an earlier run in it (see :mod:`.rundir`), and stale temporary files go."""

    @functools.wraps(fit_fn)
    def wrapper(model: Module, train: Any, val: Any = None, **kwargs: Any) -> History:
        if kwargs.get("distributed"):  # [distributed] rank 0 alone owns the run directory
            from ..distributed import run_fit

            return run_fit(fit_fn, model, train, val, **kwargs)
        run_dir = kwargs.get("run_dir")
        if run_dir is None:
            return fit_fn(model, train, val, **kwargs)
        if len(train) == 0:
            raise ValueError("fit: the training loader yields no batches (an empty training set?)")
        with RunLock(run_dir):
            prepare_run_dir(run_dir, bool(kwargs.get("resume")))
            return fit_fn(model, train, val, **kwargs)

    return wrapper


@_owning_run_dir
def fit(
    model: Module,
    train: Any,
    val: Any = None,
    *,
    epochs: int,
    optimizer: Any,
    loss: str | None = None,
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
    restore_scheduler: bool = True,
    distributed: Any = False,
) -> History:
    """Train ``model`` on ``train`` (a :class:`glassnet.data.DataLoader`) for ``epochs`` epochs.

    Args:
        val: loader evaluated after every epoch (accuracy drives best-model tracking
            and early stopping).
        loss: ``"cross_entropy"`` (softmax over one output per class) or
            ``"binary_cross_entropy"`` (one logit per image, labels 0/1: two classes); default
            from ``info.task`` (``"binary"`` or ``"multiclass"``).
        scheduler / scheduler_interval: a learning-rate schedule stepped after every
            ``'epoch'`` or every optimiser ``'step'``.
        clip_grad_norm: clip the global gradient norm to this value before each step.
        early_stopping: stop after this many epochs without a better validation accuracy.
        run_dir: where history, curves and checkpoints go (nothing is written if None). It
            is locked while training; a new run refuses a directory that holds anything.
        resume: continue from ``run_dir/last.safetensors`` exactly where it stopped.
        info: architecture, classes and normalisation stored in the checkpoints.
        checkpoint_every: also write ``last.safetensors`` every this many steps.
        log_every: record a step in the history every this many steps.
        progress: show a progress bar (default: when stderr is a terminal, or in Jupyter).
        callbacks: objects with an optional ``on_epoch_end(history, model) -> bool``
            (return True to stop).
        handle_sigint: turn SIGINT, SIGTERM and SIGHUP into a checkpoint and a clean stop.
        restore_scheduler: on resume, load the scheduler's state from the checkpoint (True),
            or keep ``scheduler`` as given, already advanced to the current step (False: a
            run extended to more epochs, whose schedule was recomputed for the new length).
        distributed: data-parallel training on MPI, this process one of the ranks (``True``: all of
            ``MPI.COMM_WORLD``; or a :class:`glassnet.distributed.Context`, or an mpi4py communicator).
            ``train.batch_size`` is per rank; see :mod:`glassnet.distributed`. Every rank gets the same
            History; rank 0 alone writes the run directory.

    Returns the :class:`History`; ``history.status`` is "finished" or "interrupted".
    Raises :class:`TrainingError` on a non-finite loss or weights, or a diverged validation
    (``history.json`` says "failed", and the message says which checkpoints are on disk);
    :class:`~glassnet.train.rundir.RunDirError` for a run directory held by another trainer
    or holding an earlier run.
    """
    from ..optim import clip_grad_norm_

    if scheduler_interval not in ("epoch", "step"):
        raise ValueError(f"fit: scheduler_interval must be 'epoch' or 'step', got {scheduler_interval!r}")
    if not isinstance(epochs, int) or epochs < 1:
        raise ValueError(f"fit: epochs must be a positive int, got {epochs!r}")
    if len(train) == 0:
        raise ValueError("fit: the training loader yields no batches (an empty training set?)")
    info = info or RunInfo()
    task = info.task if loss is None else LOSSES.get(loss, "multiclass")
    if loss is not None and info.task != "multiclass" and task != info.task:
        raise ValueError(f"fit: loss {loss!r} does not train the run's task {info.task!r}")
    loss_forward = _loss_fn(loss or ("binary_cross_entropy" if task == "binary" else "cross_entropy"), label_smoothing)
    run_path = Path(run_dir) if run_dir is not None else None
    progress = show_progress(progress)
    ddp = distributed or None  # [distributed] this rank's glassnet.distributed.Context

    def count_correct(logits: Any, y: np.ndarray) -> int:
        return _n_correct(logits.data, y, task)

    if ddp is not None:
        train = ddp.shard(train)
        progress = progress and ddp.is_root
    from tqdm.auto import tqdm

    history = History(config=dict(config or {}))
    epoch, step = 0, 0
    acc_state = {"loss_sum": 0.0, "correct": 0, "seen": 0, "seconds": 0.0}
    best_acc, bad_epochs = -1.0, 0
    if resume:
        if run_path is None:
            raise ValueError("fit: resume=True needs a run_dir")
        ckpt = load_checkpoint(run_path / "last.safetensors")
        meta = ckpt.meta
        if meta.loader is None:
            raise CheckpointError(f"{ckpt.path}: holds no data-loader position: not a checkpoint of fit to resume")
        world = ddp.size if ddp is not None else 1  # [distributed] resume with as many processes
        if meta.world_size != world:
            raise CheckpointError(
                f"{ckpt.path} was written by a run of {meta.world_size} process(es) (world size {meta.world_size}), "
                f"this one has world size {world}: resume it with {meta.world_size} (mpiexec -n {meta.world_size} "
                f"or glassnet train --workers {meta.world_size}); each process's share of the data depends on it"
            )
        ckpt.load_into(model)
        restore_optimizer(ckpt, optimizer)
        if scheduler is not None and not restore_scheduler:
            for group, lr in zip(optimizer.param_groups, scheduler.get_last_lr(), strict=True):
                group["lr"] = lr
        elif scheduler is not None and meta.scheduler is not None:
            scheduler.load_state_dict(meta.scheduler["state"])
        _restore_module_rngs(model, meta.rng.get("modules", {}) if ddp is None else ddp.rank_rngs(meta.rng))
        train.load_state_dict(meta.loader)
        epoch, step = meta.epoch, meta.step
        acc_state.update(meta.extra.get("epoch_accumulators", {}))
        best_acc, bad_epochs = meta.extra.get("best_acc", -1.0), meta.extra.get("bad_epochs", 0)
        if (run_path / "history.json").exists():
            old = History.load(run_path)
            history.epochs = [e for e in old.epochs if e["epoch"] <= epoch]
            history.steps = [s for s in old.steps if s["step"] <= step]
            history.best = old.best
            history.config = dict(config) if config else old.config
        history.status, history.message = "running", None
    if ddp is not None:  # [distributed] rank 0's weights on every rank
        ddp.start(model, resumed=resume)

    def check_weights(when: str) -> None:
        bad = non_finite_tensors(model.state_dict())
        if bad:
            raise TrainingError(
                f"the weights became non-finite ({', '.join(bad[:3])}) {when} (epoch {epoch + 1}, step {step}); "
                "they were not saved; lower the learning rate?"
            )

    def save(path: Path) -> None:
        check_weights(f"before writing {path.name}")
        rng: dict[str, Any] | None = {"modules": _module_rngs(model)}
        if ddp is not None:  # [distributed] averaged batch-norm statistics, every rank's random streams; rank 0 writes
            ddp.sync_running_stats(model)
            rng = ddp.checkpoint_rngs(rng["modules"])
            if not ddp.is_root:
                return
        save_checkpoint(
            path, model, architecture=info.architecture, arch_kwargs=info.arch_kwargs, classes=info.classes,
            dataset=info.dataset, normalization=info.normalization, input_shape=info.input_shape, task=info.task,
            preprocessing=info.preprocessing, data_folder=info.data_folder, optimizer=optimizer,
            scheduler=scheduler, epoch=epoch, step=step, rng=rng,
            loader=train.state_dict(),
            extra={"epoch_accumulators": dict(acc_state), "best_acc": best_acc, "bad_epochs": bad_epochs,
                   "epochs": epochs},
            world_size=ddp.size if ddp is not None else 1,
        )  # fmt: skip

    last_history_write = 0.0
    last_plot: tuple[float, Any] = (-PLOT_EVERY_S, None)  # when curves.png was drawn, and from what

    def write_history(force: bool = False, full: bool = False, epoch_end: bool = False) -> None:
        """history.json every 2 s at most (or when forced); with ``full``, history.csv and curves.png.

        Drawing the curves takes 0.15 s (the first in a process more, matplotlib's import), so at
        the end of an epoch curves.png is redrawn only if PLOT_EVERY_S have passed since the last
        drawing; when training stops (finished, interrupted, stopped early, failed) it is drawn
        whenever its data changed.
        """
        nonlocal last_history_write, last_plot
        if run_path is None or (ddp is not None and not ddp.is_root):  # [distributed] rank 0 writes
            return
        now = time.monotonic()
        if force or now - last_history_write > 2.0:
            drawn_from = (len(history.epochs), len(history.steps))
            plot = full and drawn_from != last_plot[1] and (not epoch_end or now - last_plot[0] >= PLOT_EVERY_S)
            history.save(run_path, csv_and_plot=full, plot=plot)
            last_history_write = now
            if plot:
                last_plot = (now, drawn_from)

    warm_up = None
    if run_path is not None:
        run_path.mkdir(parents=True, exist_ok=True)
        if ddp is None or ddp.is_root:  # curves.png is drawn at the end of the epoch: import matplotlib meanwhile
            warm_up = threading.Thread(target=warm_up_plotting, name="glassnet-plot-warm-up", daemon=True)
            warm_up.start()
        write_history(force=True)

    def where() -> str:
        return f"epoch {epoch + 1}, step {step}"

    model.train()
    with (
        _Joined(warm_up),
        _Interrupt(handle_sigint, ddp is not None) as interrupt,
        _Outcome(history, run_path, write_history, where),
    ):
        while epoch < epochs:
            t_epoch = time.perf_counter()
            bar = tqdm(total=len(train), initial=train.state_dict().get("position", 0),
                       desc=f"epoch {epoch + 1}/{epochs}", disable=not progress, leave=True,
                       unit="batch", dynamic_ncols=True)  # fmt: skip
            t_last, n_last, t_shown = time.perf_counter(), 0, -POSTFIX_EVERY_S
            for x, y in train:
                try:
                    if ddp is not None:  # [distributed] this rank's part of the batch; gradients averaged over ranks
                        loss_value, batch_correct, batch_n = ddp.forward_backward(
                            model, loss_forward, count_correct, x, y, interrupt, f"epoch {epoch + 1}, step {step + 1}"
                        )
                    else:
                        logits = model(x)
                        loss_value = loss_forward(logits, y)
                except F.NonFiniteLossError as e:
                    bar.close()
                    history.status = "failed"
                    history.message = f"non-finite loss at epoch {epoch + 1}, step {step + 1}: {e}"
                    write_history(force=True, full=True)
                    raise TrainingError(
                        history.message
                        + " (the update of this step was not applied and not saved; lower the learning rate?)"
                    ) from None
                if ddp is None:
                    model.zero_grad()
                    loss_value.backward()
                    batch_correct, batch_n = count_correct(logits, y), len(y)
                if clip_grad_norm is not None:
                    clip_grad_norm_(model.parameters(trainable_only=True), clip_grad_norm)
                optimizer.step()
                if scheduler is not None and scheduler_interval == "step":
                    scheduler.step()
                step += 1
                acc_state["loss_sum"] += float(loss_value) * batch_n
                acc_state["correct"] += batch_correct
                acc_state["seen"] += batch_n
                n_last += batch_n
                if step % log_every == 0:
                    history.steps.append({
                        "step": step, "epoch": round(epoch + train.state_dict()["position"] / len(train), 4),
                        "loss": float(loss_value), "acc": batch_correct / batch_n,
                        "lr": float(optimizer.param_groups[0]["lr"]),
                    })  # fmt: skip
                    write_history()
                bar.update(1)
                if progress:
                    now = time.perf_counter()
                    if now - t_shown >= POSTFIX_EVERY_S:
                        _show_progress(bar, acc_state, n_last / max(now - t_last, 1e-9))
                        t_shown = now
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
            if progress and acc_state["seen"]:  # the figures the bar closes with are the epoch's last
                _show_progress(bar, acc_state, n_last / max(time.perf_counter() - t_last, 1e-9))
            bar.close()
            acc_state["seconds"] += time.perf_counter() - t_epoch
            if ddp is not None and not mid_epoch:  # [distributed] averaged batch-norm statistics, same weights
                ddp.sync_running_stats(model)
                ddp.check_identical(model, optimizer, f"after epoch {epoch + 1}")
            if interrupt.requested and mid_epoch:
                history.status = "interrupted"
                history.message = (
                    f"interrupted ({interrupt.signal_name}) at epoch {epoch + 1}, step {step}; resume with resume=True"
                )
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
                check_weights("after the epoch's last step")
                try:
                    if ddp is None:
                        m = evaluate(model, val, info.classes, task=task)
                    else:
                        m = ddp.evaluate(model, val, info.classes)
                except F.NonFiniteLossError as e:
                    raise TrainingError(
                        f"the validation loss after epoch {epoch + 1} (step {step}) is not finite, the model diverged "
                        f"({e}); lower the learning rate?"
                    ) from None
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
            if ddp is not None:  # [distributed] a stop asked on any rank (a callback, a signal) stops all
                stop, requested = ddp.any_of(stop, interrupt.pending or interrupt.requested)
                interrupt.requested = requested
            if progress:
                val_txt = (
                    ""
                    if record["val_acc"] is None
                    else f"  val loss {record['val_loss']:.4f}  val acc {record['val_acc']:.2%}"
                )
                tqdm.write(
                    f"epoch {epoch}: train loss {record['train_loss']:.4f}  acc {record['train_acc']:.2%}{val_txt}"
                )
            write_history(force=True, full=True, epoch_end=True)
            if interrupt.requested and not stop and epoch < epochs:
                history.status = "interrupted"
                history.message = (
                    f"interrupted ({interrupt.signal_name}) after epoch {epoch}, step {step}; resume with resume=True"
                )
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
