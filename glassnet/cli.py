"""The ``glassnet`` command line (click). ``glassnet COMMAND --help`` for each command.

User errors (a bad argument, a missing file, a corrupt checkpoint, a dataset that is
not there) print one line starting with ``error:`` and exit with status 2, without
a traceback; a failing system call (a full disk) prints one ``error:`` line and exits
with status 1. Heavy imports happen inside the commands so ``--help`` is instant.
"""

from __future__ import annotations

import json
import sys
import time
from pathlib import Path
from typing import Any

import click

from .cli_onnx import register_onnx_commands

EXIT_FAILURE = 1
EXIT_USER_ERROR = 2
EXIT_INTERRUPTED = 130
#: `glassnet kernel` filters images (and padded images) of at most this many pixels (Pillow's own limit).
KERNEL_MAX_PIXELS = 89_478_485


def _user_errors() -> tuple[type[BaseException], ...]:
    from .checkpoint import CheckpointError
    from .data import DatasetError
    from .train import TrainingError

    return (ValueError, KeyError, TypeError, FileNotFoundError, IsADirectoryError, PermissionError,
            CheckpointError, DatasetError, TrainingError)  # fmt: skip


class UserError(click.ClickException):
    """A user error: printed as one ``error: ...`` line, exit status 2."""

    exit_code = EXIT_USER_ERROR

    def show(self, file: Any = None) -> None:
        click.echo(f"error: {self.format_message()}", err=True, file=file)


def _fail(message: str) -> None:
    raise UserError(message)


class _Group(click.Group):
    def invoke(self, ctx: click.Context) -> Any:
        try:
            return super().invoke(ctx)
        except click.UsageError as e:  # a bad option or argument of a command: one line, not the usage block
            hint = f" (see '{e.ctx.command_path} --help')" if e.ctx is not None else ""
            raise UserError(f"{e.format_message()}{hint}") from None
        except (click.ClickException, click.exceptions.Exit, click.exceptions.Abort):
            raise
        except Exception as e:
            if isinstance(e, _user_errors()):
                text = str(e.args[0]) if isinstance(e, KeyError) and e.args else str(e)  # KeyError quotes its str
                msg = text.strip().splitlines()
                first = msg[0] if msg else type(e).__name__
                rest = [f"  {line}" for line in msg[1:]]
                click.echo("\n".join([f"error: {first}", *rest]), err=True)
                ctx.exit(EXIT_USER_ERROR)
            if isinstance(e, OSError):  # e.g. no space left on device: the system's words, one line
                click.echo(f"error: {e}", err=True)
                ctx.exit(EXIT_FAILURE)
            raise


@click.group(cls=_Group, context_settings={"help_option_names": ["-h", "--help"]})
@click.version_option(package_name="glassnet")
def cli() -> None:
    """glassnet: a convolutional neural network library you can see through."""


def _parse_shape(text: str | None) -> tuple[int, ...] | None:
    if text is None:
        return None
    try:
        shape = tuple(int(v) for v in text.replace("x", ",").split(","))
    except ValueError:
        raise click.BadParameter(f"expected C,H,W such as 3,32,32, got {text!r}") from None
    if len(shape) != 3 or min(shape) < 1:
        raise click.BadParameter(f"expected three positive sizes C,H,W, got {text!r}")
    return shape


# --------------------------------------------------------------------------- train
def _distributed(command: Any) -> Any:
    """[distributed] ``--workers N`` launches mpiexec; under MPI every rank runs the command
    (:func:`glassnet.distributed.cli_command`, imported when the command runs: ``--help`` stays fast)."""
    import functools

    @functools.wraps(command)
    def wrapper(*args: Any, **kwargs: Any) -> Any:
        from .distributed import cli_command

        return cli_command(command)(*args, **kwargs)

    return wrapper


@cli.command()
@_distributed
@click.option(
    "--model", "model_name", default="lenet5", show_default=True, help="Zoo model (see `glassnet summary --list`)."
)
@click.option(
    "--data",
    default="shapes",
    show_default=True,
    help="shapes, shapes-rgb, mnist, fashion-mnist, cifar10, cifar100, or a FOLDER of class sub-folders of images "
    "(or with train/ and test/ or val/ sub-folders of them).",
)
@click.option(
    "--data-root", type=click.Path(file_okay=False), default=None, help="Directory searched first for data files."
)
@click.option(
    "--image-size",
    type=click.IntRange(1, 4096),
    default=None,
    help="Folder images: resized and centre-cropped to this side [the model's input side].",
)
@click.option(
    "--grayscale/--rgb",
    "grayscale",
    default=None,
    help="Folder images: read as grayscale or RGB [grayscale when every sampled image is].",
)
@click.option(
    "--task",
    type=click.Choice(["auto", "multiclass", "binary"]),
    default="auto",
    show_default=True,
    help="Folder data: binary trains one logit (sigmoid, binary cross-entropy); auto: binary for two classes.",
)
@click.option(
    "--pretrained",
    is_flag=True,
    help="Folder data: start from the model's ImageNet weights (efficientnet_lite0/1/2) with a new classifier.",
)
@click.option(
    "--freeze",
    type=click.Choice(["features"]),
    default=None,
    help="With --pretrained: train only the new classifier (transfer learning).",
)
@click.option(
    "--unreadable",
    type=click.Choice(["skip", "error"]),
    default="skip",
    show_default=True,
    help="Folder images Pillow cannot read: leave them out (each named) or stop with an error naming them.",
)
@click.option(
    "--cache/--no-cache",
    "cache",
    default=True,
    show_default=True,
    help="Keep decoded folder images in the user cache, so the next run starts fast.",
)
@click.option("--epochs", type=click.IntRange(1), default=6, show_default=True)
@click.option("--batch-size", type=click.IntRange(1), default=64, show_default=True)
@click.option("--optimizer", type=click.Choice(["sgd", "adam", "adamw", "rmsprop"]), default="adam", show_default=True)
@click.option(
    "--lr",
    type=click.FloatRange(min=0, min_open=True),
    default=None,
    help="Learning rate (default: 2e-3 for Adam/AdamW, 0.02 for SGD, 1e-3 for RMSprop).",
)
@click.option("--momentum", type=click.FloatRange(0, 1), default=0.9, show_default=True)
@click.option("--weight-decay", type=click.FloatRange(0), default=0.0, show_default=True)
@click.option(
    "--schedule", type=click.Choice(["none", "step", "cosine", "onecycle"]), default="cosine", show_default=True
)
@click.option(
    "--warmup", type=click.IntRange(0), default=0, show_default=True, help="Epochs of linear warm-up (cosine)."
)
@click.option(
    "--augment", type=click.Choice(["none", "crop", "standard", "flip", "strong"]), default="none", show_default=True
)
@click.option(
    "--val-split", type=click.FloatRange(0, 0.9), default=0.1, show_default=True, help="Fraction of train held out."
)
@click.option("--label-smoothing", type=click.FloatRange(0, 1), default=0.0, show_default=True)
@click.option("--clip", type=click.FloatRange(min=0, min_open=True), default=None, help="Clip the gradient norm.")
@click.option("--early-stopping", type=click.IntRange(1), default=None, help="Patience in epochs.")
@click.option("--limit", type=click.IntRange(1), default=None, help="Use only the first N training images.")
@click.option(
    "--out",
    "out_dir",
    type=click.Path(file_okay=False),
    default=None,
    help="Run directory (default runs/MODEL-DATA-TIME).",
)
@click.option(
    "--resume",
    "resume_dir",
    type=click.Path(exists=True, file_okay=False),
    default=None,
    help="Continue a run exactly where it stopped, with its own settings; with --epochs N (more than "
    "planned) extend it, the schedule recomputed for N epochs.",
)
@click.option("--seed", type=int, default=0, show_default=True)
@click.option(
    "--checkpoint-every",
    type=click.IntRange(0),
    default=100,
    show_default=True,
    help="Also write last.safetensors every N steps (0: only at the end of each epoch).",
)
@click.option(
    "--threads",
    type=click.IntRange(1),
    default=None,
    help="glassnet's worker threads (BLAS runs single-threaded); stored in the run and applied again by --resume.",
)
@click.option(
    "--workers",
    type=click.IntRange(1),
    default=None,
    help="Train on N processes (data parallel, MPI): runs and prints `mpiexec -n N` with the other options; "
    "--batch-size is per process. On a cluster: mpiexec/srun glassnet train (README).",
)
@click.option("--download", is_flag=True, help="Download missing dataset files (otherwise: an error saying where).")
@click.option("--quiet", is_flag=True, help="No progress bar.")
def train(model_name: str, data: str, data_root: str | None, epochs: int, batch_size: int, optimizer: str,
          lr: float | None, momentum: float, weight_decay: float, schedule: str, warmup: int, augment: str,
          val_split: float, label_smoothing: float, clip: float | None, early_stopping: int | None, limit: int | None,
          out_dir: str | None, resume_dir: str | None, seed: int, checkpoint_every: int, threads: int | None,
          download: bool, quiet: bool, image_size: int | None = None, grayscale: bool | None = None,
          task: str = "auto", pretrained: bool = False, freeze: str | None = None, unreadable: str = "skip",
          cache: bool = True) -> None:  # fmt: skip
    """Train a model; by default LeNet-5 on the built-in `shapes` data (about a minute).

    \b
    Your own images: glassnet train --data FOLDER   (FOLDER/cat/*.jpg, FOLDER/dog/*.jpg, …)
    Transfer learning: glassnet train --data FOLDER --model efficientnet_lite0 --pretrained --freeze features
    """
    import warnings

    from .backend import get_num_threads, set_num_threads
    from .checkpoint import atomic_write_text, read_checkpoint_meta
    from .distributed import context, is_root, owning_run_dir, world_size
    from .train import History, evaluate, fit
    from .train.folder_run import is_folder_source
    from .train.recipe import build_run, fast_forward_schedule

    # NumPy's overflow warnings say less than the trainer does when values stop being finite
    warnings.filterwarnings("ignore", message="(overflow|invalid value|divide by zero)", category=RuntimeWarning)
    ctx = click.get_current_context()
    if resume_dir:
        run_path = Path(resume_dir)
        config, extended_from = _resume_config(ctx, run_path, History.load(run_path))
        if threads or config.get("threads"):  # results do not depend on it: --threads may change it
            set_num_threads(int(threads or config["threads"]))
        more = f", extended from {extended_from} to {config['epochs']} epochs" if extended_from else ""
        click.echo(f"resuming {run_path} ({config['model']} on {config['data']}{more})")
    else:
        config = {
            "model": model_name, "data": data, "data_root": data_root, "epochs": epochs, "batch_size": batch_size,
            "optimizer": optimizer, "lr": lr, "momentum": momentum, "weight_decay": weight_decay,
            "schedule": schedule, "warmup": warmup, "augment": augment, "seed": seed, "val_split": val_split,
            "label_smoothing": label_smoothing, "clip": clip, "early_stopping": early_stopping, "limit": limit,
            "checkpoint_every": checkpoint_every, "threads": threads or get_num_threads(),
        }  # fmt: skip
        data_label = data
        if is_folder_source(data) and Path(data).expanduser().is_dir():  # its absolute path: --resume from anywhere
            config["data"] = str(Path(data).expanduser().resolve())
            data_label = Path(config["data"]).name or "folder"
        config.update(image_size=image_size, grayscale=grayscale, task=task, pretrained=pretrained, freeze=freeze,
                      unreadable=unreadable, cache=cache)  # fmt: skip
        run_path = Path(out_dir or f"runs/{model_name}-{data_label}-{time.strftime('%Y%m%d-%H%M%S')}")
    t0 = time.perf_counter()
    with owning_run_dir(run_path, resume=bool(resume_dir)):  # before any data is loaded: refuse early [distributed]
        run = build_run(config, download=download, progress=not quiet and None, world_size=world_size())
        for note in run.notes:
            if is_root():
                click.echo(f"note: {note}", err=True)
        restore_scheduler = True
        if resume_dir:
            meta = read_checkpoint_meta(run_path / "last.safetensors")
            if meta.extra.get("epochs", config["epochs"]) != config["epochs"]:  # planned for fewer epochs
                fast_forward_schedule(run, meta.epoch, meta.step)
                restore_scheduler = False
        config = run.config
        n_train = len(run.train.labels)
        trainable = run.model.num_parameters(trainable_only=True)
        params = f"{run.model.num_parameters():,} parameters" + (
            f" ({trainable:,} trainable)" if trainable != run.model.num_parameters() else "")  # fmt: skip
        what = f"{len(run.info.classes)} classes" + (", binary: one logit" if run.info.task == "binary" else "")
        click.echo(f"{config['model']} on {config['data']} ({what}): {n_train} training images, "
                   f"{params}, {config['epochs']} epochs -> {run_path}")  # fmt: skip
        try:
            history = fit(
                run.model, run.train, run.val, distributed=context(),  # [distributed] under MPI
                epochs=config["epochs"], optimizer=run.optimizer,
                label_smoothing=config["label_smoothing"], scheduler=run.scheduler,
                scheduler_interval=run.scheduler_interval, clip_grad_norm=config["clip"],
                early_stopping=config["early_stopping"], run_dir=run_path, resume=bool(resume_dir), info=run.info,
                config=config, checkpoint_every=config["checkpoint_every"], progress=not quiet and None,
                restore_scheduler=restore_scheduler,
            )  # fmt: skip
        except KeyboardInterrupt:
            try:
                said = History.load(run_path).message
            except ValueError:
                said = None
            click.echo(f"error: {said or 'stopped at once by a second interrupt'}", err=True)
            sys.exit(EXIT_INTERRUPTED)
        if history.status == "interrupted":
            click.echo(f"{history.message.split(';')[0]}: checkpoint saved; continue with: "
                       f"glassnet train --resume {run_path}", err=True)  # fmt: skip
            sys.exit(EXIT_INTERRUPTED)
        if not is_root():  # [distributed] rank 0 alone evaluates on the test set and reports
            return
        metrics = evaluate(run.model, run.test, run.info.classes, task=run.info.task)
        history.test = metrics.to_dict()
        history.save(run_path, csv_and_plot=True)
        atomic_write_text(run_path / "metrics.json", json.dumps(metrics.to_dict(), indent=1))
    for e in history.epochs:
        val = "" if e["val_acc"] is None else f"  val acc {e['val_acc']:.2%}"
        click.echo(f"epoch {e['epoch']:>3}  train loss {e['train_loss']:.4f}  train acc {e['train_acc']:.2%}{val}")
    if history.message:
        click.echo(history.message)
    which = "test" if run.test_name == "test" else f"{run.test_name} (test)"
    if metrics.task == "binary":
        auc = "n/a" if metrics.roc_auc is None else f"{metrics.roc_auc:.4f}"
        detail = f"at threshold 0.5   ROC-AUC: {auc}"
    else:
        detail = f"top-5: {metrics.top5:.2%}"
    click.echo(f"{which} accuracy: {metrics.accuracy:.2%} ({len(run.test.labels)} images)   "
               f"{detail}   time: {time.perf_counter() - t0:.1f} s")  # fmt: skip
    click.echo(f"run directory: {run_path} (last.safetensors, best.safetensors, history.json/csv, curves.png)")


#: Options --resume may be given with; every other one is the run's own (stored in its config).
_RESUME_OPTIONS = {"resume_dir", "quiet", "data_root", "download", "epochs", "threads", "out_dir", "workers"}


def _resume_config(ctx: click.Context, run_path: Path, hist: Any) -> tuple[dict[str, Any], int | None]:
    """The config to resume ``run_path`` with, and the epochs it is extended from (None: not extended).

    Options given on the command line must agree with the run: ``--epochs`` may only raise
    the planned epochs (extending the run), ``--out`` the run directory; ``--threads`` (results
    are the same on any count), ``--data-root`` (where the files are), ``--download`` and
    ``--quiet`` are free.
    """
    from click.core import ParameterSource

    if not (run_path / "last.safetensors").is_file():
        _fail(f"{run_path} is not a run directory to resume (it has history.json but no last.safetensors)")
    config = dict(hist.config)
    if not config.get("model") or not config.get("data") or not isinstance(config.get("epochs"), int):
        _fail(f"{run_path}/history.json has no config to resume from")
    given = [p for p in ctx.command.params if ctx.get_parameter_source(p.name) is ParameterSource.COMMANDLINE]
    conflicts, extended_from = [], None
    for p in given:
        value, flag = ctx.params[p.name], p.opts[0]
        if p.name == "epochs":
            if value < config["epochs"]:
                planned = config["epochs"]
                conflicts.append(f"--epochs {value} (the run is planned for {planned}; it cannot be shortened)")
            elif value > config["epochs"]:
                extended_from = config["epochs"]
        elif p.name == "out_dir":
            if Path(value).resolve() != run_path.resolve():
                conflicts.append(f"--out {value} (a resumed run stays in {run_path})")
        elif p.name not in _RESUME_OPTIONS:
            key = "model" if p.name == "model_name" else p.name
            if value != config.get(key):
                conflicts.append(f"{flag} {value} (the run has {config.get(key)!r})")
    if conflicts:
        _fail(
            f"--resume continues {run_path} with its own settings; these options conflict with it: "
            + "; ".join(conflicts)
            + ". With --resume only --epochs N (more epochs: extend the run), --threads, "
            "--data-root, --download and --quiet may be given"
        )
    if ctx.get_parameter_source("data_root") is ParameterSource.COMMANDLINE:
        config["data_root"] = ctx.params["data_root"]
    if extended_from is not None:
        config["epochs"] = ctx.params["epochs"]
        config["extended"] = [*config.get("extended", []), extended_from]
    elif hist.status == "finished":
        _fail(
            f"{run_path} is finished ({len(hist.epochs)} of {config['epochs']} epochs); to train it longer "
            f"pass --epochs N with N > {config['epochs']} (the schedule is recomputed for N epochs)"
        )
    return config, extended_from


# ------------------------------------------------------------------------ evaluate
@cli.command()
@click.argument("checkpoint", type=click.Path(exists=True, dir_okay=False))
@click.option(
    "--data",
    default=None,
    help="Dataset or FOLDER of class sub-folders of images (default: what the checkpoint was trained on).",
)
@click.option(
    "--split",
    type=click.Choice(["train", "test"]),
    default="test",
    show_default=True,
    help="A folder with train/ and test/ (or val/): which part to read.",
)
@click.option("--data-root", type=click.Path(file_okay=False), default=None)
@click.option(
    "--allow-class-mismatch",
    is_flag=True,
    help="Evaluate on data whose class names differ from the checkpoint's (same number of classes).",
)
@click.option("--download", is_flag=True, help="Download missing dataset files (otherwise: an error saying where).")
@click.option("--json", "as_json", is_flag=True, help="Print the metrics as JSON.")
@click.option(
    "--threshold",
    type=click.FloatRange(0, 1),
    default=None,
    help="Binary models: P(class) at or above this counts as the class [0.5].",
)
def evaluate(checkpoint: str, data: str | None, split: str, data_root: str | None, allow_class_mismatch: bool,
             download: bool, as_json: bool, threshold: float | None) -> None:  # fmt: skip
    """Accuracy, top-5, per-class precision/recall and the confusion matrix of a checkpoint.

    Binary checkpoints: accuracy at --threshold, ROC-AUC and the 2×2 confusion matrix.
    """
    from .checkpoint import load_checkpoint
    from .data import DataLoader, load_dataset
    from .train import evaluate as run_evaluate

    ckpt = load_checkpoint(checkpoint)
    meta = ckpt.meta
    if threshold is not None and meta.task != "binary":
        _fail("--threshold applies to binary checkpoints (one output); this one is multiclass")
    folder = data if data is not None else meta.data_folder
    if folder is not None and _is_folder(folder):
        _evaluate_folder(ckpt, folder, split, as_json, 0.5 if threshold is None else threshold)
        return
    name = data or meta.dataset or _config_data(checkpoint)
    if not name:
        _fail("the checkpoint does not say which dataset it was trained on; pass --data")
    ds = load_dataset(name, split, root=data_root, download=download)
    if meta.input_shape and list(ds.image_shape) != list(meta.input_shape):
        _fail(f"{name} images are {list(ds.image_shape)}, the model expects {list(meta.input_shape)}")
    if meta.classes and list(ds.classes) != meta.classes:
        if len(ds.classes) != len(meta.classes):
            _fail(f"{name} has {len(ds.classes)} classes, the model {len(meta.classes)} ({_names(meta.classes)})")
        if not allow_class_mismatch:
            _fail(
                f"{name} has the classes {_names(ds.classes)}, the model was trained on {_names(meta.classes)}; "
                "pass --allow-class-mismatch to evaluate it anyway (label i of the data counted as output i)"
            )
    model = ckpt.build_model()
    norm = meta.normalization
    loader = DataLoader(ds, 256, normalize=(norm["mean"], norm["std"]) if norm else None)
    m = run_evaluate(model, loader, ckpt.classes)
    click.echo(json.dumps(m.to_dict(), indent=1) if as_json else f"{name} ({split}, {len(ds)} images)\n{m.report()}")


def _is_folder(data: str) -> bool:
    from .train.folder_run import is_folder_source

    return is_folder_source(data)


def _evaluate_folder(ckpt: Any, folder: str, split: str, as_json: bool, threshold: float) -> None:
    """``evaluate`` on a folder of images, read with the checkpoint's own preprocessing."""
    from .data import DataLoader
    from .train import evaluate as run_evaluate
    from .train.folder_run import folder_dataset

    meta = ckpt.meta
    if not meta.classes:
        _fail("the checkpoint records no class names to match the folder's class sub-folders against")
    prep = _checkpoint_preprocessing(meta)
    ds, part = folder_dataset(folder, prep, list(meta.classes), split, progress=None)
    for entry in ds.skipped:
        click.echo(f"note: skipped unreadable file {entry}", err=True)
    model = ckpt.build_model()
    norm = meta.normalization
    loader = DataLoader(ds, 64, normalize=(norm["mean"], norm["std"]) if norm else None)
    m = run_evaluate(model, loader, ckpt.classes, task=meta.task, threshold=threshold)
    click.echo(json.dumps(m.to_dict(), indent=1) if as_json else f"{folder} ({part}, {len(ds)} images)\n{m.report()}")


def _checkpoint_preprocessing(meta: Any) -> Any:
    """How the checkpoint's model reads image files (see ``CheckpointMeta.image_preprocessing``)."""
    prep = meta.image_preprocessing()
    if prep is None:
        _fail("the checkpoint does not record its input shape")
    return prep


def _names(classes: list[str]) -> str:
    return ", ".join(classes[:4]) + (f", … ({len(classes)})" if len(classes) > 4 else "")


def _config_data(checkpoint: str) -> str | None:
    from .train import History

    if (Path(checkpoint).parent / "history.json").exists():
        data = History.load(Path(checkpoint).parent).config.get("data")
        return data if isinstance(data, str) else None
    return None


# ------------------------------------------------------------------------- predict
@cli.command()
@click.argument("paths", nargs=-1, required=True)
@click.option("--model", "model_name", default=None, help="A zoo model instead of a checkpoint (all PATHS are images).")
@click.option("--pretrained", is_flag=True, help="With --model: its shipped ImageNet weights (EfficientNet-Lite0/1/2).")
@click.option("--top-k", type=click.IntRange(1), default=None, help="Classes to show [3; 5 with --pretrained].")
@click.option("--invert", is_flag=True, help="Invert grayscale images (dark strokes on white → MNIST style).")
@click.option(
    "--threshold",
    type=click.FloatRange(0, 1),
    default=0.5,
    show_default=True,
    help="Binary checkpoints: P(class) at or above this decides for the class.",
)
def predict(paths: tuple[str, ...], model_name: str | None, pretrained: bool, top_k: int | None, invert: bool,
            threshold: float) -> None:  # fmt: skip
    """Top-k classes with probabilities for image files (a folder stands for the images in it).

    \b
    glassnet predict CHECKPOINT IMAGE...            (read exactly as in training: its recorded preprocessing)
    glassnet predict --model efficientnet_lite0 --pretrained PHOTO...   (ImageNet classes)

    A binary checkpoint prints P(class) and P(other) = 1 − P(class).
    """
    import numpy as np

    from .autograd import no_grad
    from .functional import sigmoid, softmax

    if pretrained and not model_name:
        _fail("--pretrained needs --model NAME (e.g. --model efficientnet_lite0)")
    if model_name and not pretrained:
        _fail(f"--model {model_name} without --pretrained has random weights: give --pretrained or a checkpoint")
    task = "multiclass"
    if model_name:
        from .models.pretrained import SOURCES, imagenet_classes, preprocess

        if model_name not in SOURCES:
            _fail(f"no pretrained weights for {model_name!r}; available for: {', '.join(sorted(SOURCES))}")
        model = _pretrained_model(model_name)
        classes = list(imagenet_classes())
        images = _expand_images(paths)

        def load(path: str) -> np.ndarray:
            return preprocess(path, model_name)

        top_k = top_k or 5
    else:
        model, classes, load, task = _checkpoint_predictor(paths[0], invert)
        images = _expand_images(paths[1:])
        if not images:
            _fail("give at least one image after the checkpoint")
        top_k = top_k or 3
    for path in images:
        try:
            x = load(path)
        except Exception as e:
            _fail(f"cannot read image {path}: {e}")
        click.echo(path)
        with no_grad():
            z = model(x[None])
            if task == "binary":
                p = float(sigmoid(z).numpy()[0, 0])
                neg, pos = (classes + ["class 0", "class 1"][len(classes) :])[:2]
                width = max(len(pos), len(neg)) + 3
                click.echo(f"  {'P(' + pos + ')':<{width}} {p:7.2%}  {'█' * int(round(p * 30))}")
                click.echo(f"  {'P(' + neg + ')':<{width}} {1 - p:7.2%}  {'█' * int(round((1 - p) * 30))}  (1 − P)")
                click.echo(f"  → {pos if p >= threshold else neg} (threshold {threshold:g})")
                continue
            probs = softmax(z, axis=1).numpy()[0]
        order = np.argsort(-probs)[:top_k]
        for i in order:
            name = classes[i] if i < len(classes) else str(i)
            click.echo(f"  {name:<24} {probs[i]:7.2%}  {'█' * int(round(probs[i] * 30))}")


def _expand_images(paths: tuple[str, ...]) -> list[str]:
    """Image files: each path as given, a folder replaced by the image files under it (sorted)."""
    from .data import image_files

    out: list[str] = []
    for path in paths:
        if Path(path).is_dir():
            found = image_files(path)
            if not found:
                _fail(f"no image files under {path}")
            out += [str(p) for p in found]
        elif not Path(path).is_file():
            _fail(f"no such image file: {path}")
        else:
            out.append(path)
    return out


def _pretrained_model(name: str) -> Any:
    from .models import get_model
    from .models.pretrained import PretrainedError

    try:
        return get_model(name, pretrained=True)
    except PretrainedError as e:
        _fail(str(e))


def _checkpoint_predictor(checkpoint: str, invert: bool) -> tuple[Any, list[str], Any, str]:
    """(model, class names, image loader, task) for a checkpoint: the preprocessing it records,
    through the same code as its training batches (:func:`glassnet.data.model_inputs`)."""
    import numpy as np

    from .checkpoint import load_checkpoint
    from .data import model_inputs

    if not Path(checkpoint).is_file():
        _fail(f"no such checkpoint file: {checkpoint}")
    ckpt = load_checkpoint(checkpoint)
    model = ckpt.build_model().eval()
    prep = _checkpoint_preprocessing(ckpt.meta)
    norm = ckpt.meta.normalization

    def load(path: str) -> np.ndarray:
        return model_inputs([path], prep, norm, invert=invert)[0]

    return model, ckpt.classes, load, ckpt.meta.task


# ------------------------------------------------------------------------- convert
@cli.command()
@click.argument("source", type=click.Path(dir_okay=False))
@click.argument("out", type=click.Path(dir_okay=False))
@click.option("--check-model", default=None, help="Also load the weights into this zoo model (torchvision layout).")
def convert(source: str, out: str, check_model: str | None) -> None:
    """Convert PyTorch weights (.pth/.pt) to safetensors, never executing the file.

    With torch installed it reads with torch.load(weights_only=True); without it, with
    glassnet's allow-list reader. The output records the source's SHA-256.
    """
    from .interop import PthError, TorchStateError, load_torch_state, read_state, sha256_file

    try:
        state = read_state(source)
    except (FileNotFoundError, PthError, TorchStateError) as e:
        _fail(str(e))
    except Exception as e:  # torch.load's own refusals (weights_only) and malformed files
        _fail(f"cannot read {source}: {e}")
    if check_model:
        try:
            load_torch_state(check_model, state)
        except (TorchStateError, ValueError) as e:
            _fail(str(e))
    import numpy as np
    from safetensors.numpy import save

    from .checkpoint import atomic_write_bytes

    arrays = {k: np.ascontiguousarray(v) for k, v in state.items()}
    meta = {"source_sha256": sha256_file(source), "source_name": Path(source).name, "written_by": "glassnet convert"}
    atomic_write_bytes(Path(out), save(arrays, metadata=meta))
    total = sum(int(v.size) for v in arrays.values())
    click.echo(f"wrote {out}: {len(arrays)} tensors, {total:,} values (source SHA-256 {meta['source_sha256'][:16]}…)")


# ------------------------------------------------------------------------- summary
@cli.command()
@click.argument("model_or_checkpoint", required=False)
@click.option("--input-shape", default=None, help="C,H,W (default: the model's usual input).")
@click.option("--num-classes", type=click.IntRange(1), default=None)
@click.option("--list", "list_models", is_flag=True, help="List the zoo models.")
def summary(
    model_or_checkpoint: str | None, input_shape: str | None, num_classes: int | None, list_models: bool
) -> None:
    """The layer table (output shapes, parameters, MACs, receptive field) of a zoo model or checkpoint."""
    from .inspect import summary as make_summary
    from .models import MODELS, default_input_shape, get_model
    from .nn.init import skip_init

    if list_models or not model_or_checkpoint:
        for name in MODELS:
            click.echo(f"{name:<12} input {'×'.join(map(str, default_input_shape(name)))}")
        return
    shape = _parse_shape(input_shape)
    if model_or_checkpoint.endswith(".safetensors") or Path(model_or_checkpoint).is_file():
        from .checkpoint import load_checkpoint

        ckpt = load_checkpoint(model_or_checkpoint)
        model = ckpt.build_model()
        shape = shape or tuple(ckpt.meta.input_shape or ())
    else:
        kwargs: dict[str, Any] = {}
        if num_classes:
            kwargs["num_classes"] = num_classes
        default = default_input_shape(model_or_checkpoint)
        shape = shape or default
        if shape[0] != default[0]:
            kwargs["in_channels"] = shape[0]
        with skip_init():  # a summary needs shapes, not random weights (VGG-16: 138 M of them)
            model = get_model(model_or_checkpoint, **kwargs)
    click.echo(str(make_summary(model, shape)))


# -------------------------------------------------------------------------- kernel
@cli.command()
@click.argument("image", required=False, type=click.Path(exists=True, dir_okay=False))
@click.option("--name", "kernel_name", default=None, help="A named kernel (see --list).")
@click.option("--matrix", default=None, help="Rows separated by ';', values by ',' e.g. '0,-1,0;-1,5,-1;0,-1,0'.")
@click.option("--stride", type=click.IntRange(1), default=1, show_default=True)
@click.option("--padding", default="same", show_default=True, help="'same', 'valid' or a number of pixels.")
@click.option("--flip", is_flag=True, help="True convolution (rotate the kernel by 180°).")
@click.option("--gray", is_flag=True, help="Convert the image to grayscale first.")
@click.option("--abs", "absolute", is_flag=True, help="Show |output| (edge maps).")
@click.option(
    "-o", "--output", type=click.Path(dir_okay=False), default=None, help="Output PNG (default IMAGE-KERNEL.png)."
)
@click.option("--list", "list_kernels", is_flag=True, help="List the named kernels.")
def kernel(image: str | None, kernel_name: str | None, matrix: str | None, stride: int, padding: str, flip: bool,
           gray: bool, absolute: bool, output: str | None, list_kernels: bool) -> None:  # fmt: skip
    """Apply a named or custom kernel to an image and write the result, showing the output-size arithmetic."""
    import numpy as np
    from PIL import Image

    from . import kernels as K
    from .functional._args import conv_padding

    if list_kernels:
        for n in K.list_kernels():
            click.echo(f"{n:<20} {K.get_kernel(n).tolist()}")
        return
    if image is None:
        _fail("give an IMAGE to filter (or --list to list the named kernels)")
    if (kernel_name is None) == (matrix is None):
        _fail("give exactly one of --name or --matrix")
    if matrix is not None:
        if len({len(r.split(",")) for r in matrix.split(";")}) != 1:
            _fail(f"--matrix rows must all have the same length, got {matrix!r}")
        try:
            k = np.array([[float(v) for v in row.split(",")] for row in matrix.split(";")])
        except ValueError:
            _fail(f"--matrix must be numbers, rows separated by ';' and values by ',', got {matrix!r}")
        if not np.all(np.isfinite(k)):
            _fail(f"--matrix values must be finite numbers, got {matrix!r}")
    else:
        k = K.get_kernel(kernel_name)
    pad: Any = padding if padding in ("same", "valid") else None
    if pad is None:
        try:
            pad = int(padding)
        except ValueError:
            _fail(f"--padding must be 'same', 'valid' or a non-negative integer, got {padding!r}")
    if isinstance(pad, int) and pad < 0:
        _fail(f"--padding must be 'same', 'valid' or a non-negative integer, got {padding!r}")
    import warnings

    limit = KERNEL_MAX_PIXELS
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("error", Image.DecompressionBombWarning)
            with Image.open(image) as im:
                if im.width * im.height > limit:
                    _fail(f"image {image} is {im.width}×{im.height} = {im.width * im.height:,} pixels; "
                          f"at most {limit:,} are filtered")  # fmt: skip
                arr = np.asarray(im.convert("L" if gray else "RGB"), dtype=np.float64)
    except (OSError, ValueError, SyntaxError, Image.DecompressionBombError, Image.DecompressionBombWarning) as e:
        _fail(f"cannot read image {image}: {e}")
    h, w = arr.shape[:2]
    kh, kw = k.shape
    (top, bottom), (left, right) = conv_padding(pad, (kh, kw), (stride, stride), (1, 1), (h, w))
    if (h + top + bottom) * (w + left + right) > limit:
        _fail(f"--padding {padding} makes the padded image {w + left + right:,}×{h + top + bottom:,} pixels; "
              f"at most {limit:,} are filtered")  # fmt: skip
    if h + top + bottom < kh or w + left + right < kw:
        _fail(f"the {kw}×{kh} kernel is larger than the padded {w + left + right}×{h + top + bottom} image")
    out = K.apply_kernel(arr, k, stride=stride, padding=pad, flip=flip)
    oh, ow = out.shape[:2]
    for axis, n, f, lo, hi, o in (("width", w, kw, left, right, ow), ("height", h, kh, top, bottom, oh)):
        p_txt = f"2·{lo}" if lo == hi else f"{lo}+{hi}"
        note = "" if (n - f + lo + hi) % stride == 0 else ", rounded down"
        how = f"padding {pad!r}: {lo} before, {hi} after" if isinstance(pad, str) else f"padding {pad}"
        click.echo(f"output {axis}: (W − F + 2P)/S + 1 = ({n} − {f} + {p_txt})/{stride} + 1 = {o}   ({how}{note})")
    out = np.abs(out) if absolute else out
    result = K.to_uint8(out)
    dest = output or f"{Path(image).with_suffix('')}-{kernel_name or 'custom'}.png"
    Image.fromarray(result).save(dest)
    click.echo(f"wrote {dest} ({ow}×{oh})")


# ------------------------------------------------------------------------ datasets
@cli.group(cls=_Group, invoke_without_command=True)
@click.pass_context
def datasets(ctx: click.Context) -> None:
    """List the datasets and where each is found; `datasets fetch NAME` downloads one."""
    if ctx.invoked_subcommand is None:
        from .data import format_status

        click.echo(format_status())


@datasets.command("list")
@click.option("--root", type=click.Path(file_okay=False), default=None)
def datasets_list(root: str | None) -> None:
    """Each dataset and where its files are (or that they are missing)."""
    from .data import format_status

    click.echo(format_status(root))


@datasets.command("fetch")
@click.argument("name")
@click.option("--root", type=click.Path(file_okay=False), default=None)
def datasets_fetch(name: str, root: str | None) -> None:
    """Download a dataset into the cache (checksums verified)."""
    from .data import load_dataset

    for split in ("train", "test"):
        ds = load_dataset(name, split, root=root, download=True, progress=True)
        click.echo(f"{name} {split}: {len(ds)} images {ds.image_shape} from {ds.source}")


# ---------------------------------------------------------------------------- plot
@cli.command()
@click.argument("runs", nargs=-1, required=True, type=click.Path(exists=True, file_okay=False))
@click.option("-o", "--output", type=click.Path(dir_okay=False), default="curves.png", show_default=True)
def plot(runs: tuple[str, ...], output: str) -> None:
    """Loss and accuracy curves of one or more run directories, side by side."""
    from .checkpoint import atomic_write_bytes
    from .train import History, plot_curves

    histories = []
    for r in runs:
        if not (Path(r) / "history.json").exists():
            _fail(f"{r} is not a run directory (no history.json)")
        histories.append((Path(r).name, History.load(r)))
    atomic_write_bytes(output, plot_curves(histories))
    click.echo(f"wrote {output}")


# ------------------------------------------------------------------------- explore
@cli.command()
@click.option("--host", default="127.0.0.1", show_default=True)
@click.option("--port", type=click.IntRange(1, 65535), default=8000, show_default=True)
@click.option("--runs", "runs_dir", type=click.Path(file_okay=False), default="runs", show_default=True)
@click.option("--data-dir", type=click.Path(file_okay=False), default=None)
@click.option("--checkpoint", "checkpoints", multiple=True, type=click.Path(exists=True, dir_okay=False))
@click.option(
    "--folder",
    "folders",
    multiple=True,
    type=click.Path(exists=True, file_okay=False),
    help="A folder of class sub-folders of images (or train/ and test/ of them) the playground can train on.",
)
def explore(
    host: str, port: int, runs_dir: str, data_dir: str | None, checkpoints: tuple[str, ...], folders: tuple[str, ...]
) -> None:
    """Start the browser explorer (kernels, architecture, activations, training curves, playground, ...)."""
    from .explorer import ExplorerStartError, serve

    try:
        serve(host=host, port=port, runs_dir=runs_dir, data_dir=data_dir, checkpoints=checkpoints, folders=folders)
    except ExplorerStartError as e:  # missing dependencies, port in use
        _fail(str(e))


# ---------------------------------------------------------------------------- demo
@cli.command()
def demo() -> None:
    """One forward/backward pass through LeNet-5, a finite-difference check of backward, and the AlexNet table."""
    import numpy as np

    from . import functional as F
    from .gradcheck import gradcheck
    from .inspect import summary as make_summary
    from .models import alexnet, lenet5

    rng = np.random.default_rng(0)
    model = lenet5(rng=0)
    x = rng.random((8, 1, 28, 28), dtype=np.float32)
    y = rng.integers(0, 10, 8)
    logits = model(x)
    loss = F.cross_entropy(logits, y)
    loss.backward()
    norms = {n: float(np.linalg.norm(p.grad)) for n, p in model.named_parameters()}
    click.echo(f"LeNet-5 forward: logits {logits.shape}, loss {float(loss):.4f}; backward gradient norms:")
    for n, v in norms.items():
        click.echo(f"  {n:<12} {v:.4f}")
    # Finite differences cost two forward passes per parameter (LeNet-5's 61,706 take a minute),
    # so the check runs on a small network of the same layer types.
    from .nn import Conv2d, Flatten, Linear, MaxPool2d, ReLU, Sequential

    small = Sequential(Conv2d(1, 3, 5, padding=2, rng=0), ReLU(), MaxPool2d(2), Conv2d(3, 4, 3, rng=1), ReLU(),
                       MaxPool2d(2), Flatten(), Linear(16, 5, rng=2))  # fmt: skip
    report = gradcheck(small, rng.random((2, 1, 12, 12)), eps=1e-6)
    click.echo(f"finite-difference check (float64) of conv-ReLU-pool-conv-ReLU-pool-linear on 1×12×12, "
               f"{small.num_parameters()} parameters: worst relative error {report.worst:.1e}")  # fmt: skip
    click.echo("")
    click.echo(str(make_summary(alexnet(), (3, 227, 227))))
    click.echo("(the lecture's 62,369,152 leaves out the 9,192 biases of the three dense layers)")


from .cli_visualize import visualize  # noqa: E402 - it builds on the group above

cli.add_command(visualize)
register_onnx_commands(cli)  # export, import-onnx


def main(argv: list[str] | None = None) -> None:
    """Entry point: keeps freed memory for reuse, applies --threads (glassnet's workers), runs the click group."""
    args = sys.argv[1:] if argv is None else argv
    from .backend import keep_freed_memory

    keep_freed_memory()
    for i, a in enumerate(args):
        value = args[i + 1] if a == "--threads" and i + 1 < len(args) else a.partition("=")[2]
        if (a == "--threads" or a.startswith("--threads=")) and value.isdigit() and int(value) > 0:
            from .backend import set_num_threads

            set_num_threads(int(value))
    cli.main(args=args, prog_name="glassnet")


if __name__ == "__main__":
    main()
