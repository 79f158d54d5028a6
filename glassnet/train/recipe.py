"""From a plain config (what ``glassnet train`` was asked) to the objects of a run.

A run's config is stored in its ``history.json``; ``--resume`` rebuilds exactly the
same model, data, optimiser and schedule from it. Two keys are not about what is built:
``threads`` (the thread count the run computes with, applied again on resume unless
``--threads`` says otherwise: results are the same on any count) and ``extended`` (the epoch counts
a run had before ``--resume --epochs N`` extended it, see :func:`fast_forward_schedule`).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from ..data import DataLoader, Dataset, load_dataset, train_val_split
from ..data import transforms as T
from ..nn.module import Module
from .folder_run import FOLDER_DEFAULTS, folder_parts, is_folder_source
from .trainer import RunInfo

DEFAULTS: dict[str, Any] = {
    "model": "lenet5",
    "model_kwargs": {},
    "data": "shapes",
    "data_root": None,
    "epochs": 6,
    "batch_size": 64,
    "optimizer": "adam",
    "lr": None,
    "momentum": 0.9,
    "weight_decay": 0.0,
    "schedule": "cosine",
    "warmup": 0,
    "augment": "none",
    "seed": 0,
    "val_split": 0.1,
    "label_smoothing": 0.0,
    "clip": None,
    "early_stopping": None,
    "limit": None,
    "checkpoint_every": 100,
    "threads": None,
    "extended": [],
    **FOLDER_DEFAULTS,  # --data PATH: a folder of one's own images (see folder_run.py)
}
OPTIMIZERS = ("sgd", "adam", "adamw", "rmsprop")
SCHEDULES = ("none", "step", "cosine", "onecycle")
AUGMENTS = ("none", "crop", "standard", "flip", "strong")
DEFAULT_LR = {"sgd": 0.02, "adam": 2e-3, "adamw": 2e-3, "rmsprop": 1e-3}


def augmentation(name: str, size: int) -> Any:
    """A named augmentation preset (None for 'none')."""
    presets = {
        "none": None,
        "crop": [T.RandomCrop(size, padding=2)],
        "standard": [T.RandomCrop(size, padding=2), T.RandomRotation(10)],
        "flip": [T.RandomHorizontalFlip(), T.RandomCrop(size, padding=4)],
        "strong": [T.RandomHorizontalFlip(), T.RandomCrop(size, padding=4), T.RandomRotation(10),
                   T.ColorJitter(0.2, 0.2), T.Cutout(size // 4, p=0.5)],
    }  # fmt: skip
    if name not in presets:
        raise ValueError(f"unknown augmentation {name!r}; choose one of {', '.join(AUGMENTS)}")
    return None if presets[name] is None else T.Compose(presets[name])


@dataclass
class Run:
    """Everything ``fit`` needs, built from a config."""

    config: dict[str, Any]
    model: Module
    train: DataLoader
    val: DataLoader | None
    test: DataLoader
    optimizer: Any
    scheduler: Any
    scheduler_interval: str
    info: RunInfo
    test_name: str = "test"  # what `test` is: "test", or for a folder without test/ "val" / "held-out"
    notes: list[str] = field(default_factory=list)  # said once before training (skipped files, …)


def _limit(ds: Dataset, n: int | None) -> Dataset:
    if n is None or n >= len(ds):
        return ds
    return ds.subset(list(range(n)), split=ds.split)


def build_run(config: dict[str, Any], download: bool = False, progress: bool | None = None, world_size: int = 1) -> Run:
    """Datasets, loaders, model, optimiser and schedule for ``config`` (unknown keys are errors).

    ``world_size``: processes training together (:mod:`glassnet.distributed`); the loader's batch
    size is per process, and the schedule counts global batches of ``world_size * batch_size``.

    Missing dataset files are an error saying where to put them (``download=True`` fetches
    them instead); so is an empty training or validation split. ``config["data"]`` may be a
    folder of images (see :mod:`.folder_run`); ``progress`` shows reading it.
    """
    from ..models import get_model

    unknown = set(config) - set(DEFAULTS)
    if unknown:
        raise ValueError(f"unknown config keys: {sorted(unknown)}")
    cfg = {**DEFAULTS, **config}
    if cfg["optimizer"] not in OPTIMIZERS:
        raise ValueError(f"unknown optimizer {cfg['optimizer']!r}; choose one of {', '.join(OPTIMIZERS)}")
    if cfg["schedule"] not in SCHEDULES:
        raise ValueError(f"unknown schedule {cfg['schedule']!r}; choose one of {', '.join(SCHEDULES)}")
    if cfg["lr"] is None:
        cfg["lr"] = DEFAULT_LR[cfg["optimizer"]]
    seed = int(cfg["seed"])
    if cfg["pretrained"] and not is_folder_source(cfg["data"]):
        raise ValueError("--pretrained models train on a folder of images (--data PATH), not on built-in datasets")
    if is_folder_source(cfg["data"]):
        parts = folder_parts(cfg, seed, progress)
        opt, sched, interval = _optimizer_and_schedule(cfg, parts.model, -(-len(parts.train) // world_size))
        return Run(cfg, parts.model, parts.train, parts.val, parts.test, opt, sched, interval, parts.info,
                   parts.test_name, parts.notes)  # fmt: skip
    if cfg["task"] not in ("auto", "multiclass"):
        raise ValueError(f"--task {cfg['task']} applies to folders of images (--data PATH) with two classes")
    full_train = load_dataset(cfg["data"], "train", root=cfg["data_root"], download=download)
    test_ds = load_dataset(cfg["data"], "test", root=cfg["data_root"], download=download)
    full_train = _limit(full_train, cfg["limit"])
    if cfg["val_split"]:
        train_ds, val_ds = train_val_split(full_train, cfg["val_split"], seed=seed)
    else:
        train_ds, val_ds = full_train, None
    if len(train_ds) == 0 or (val_ds is not None and len(val_ds) == 0):
        empty = "training" if len(train_ds) == 0 else "validation"
        raise ValueError(
            f"the {empty} split is empty: {len(full_train)} image(s) (limit {cfg['limit']}) with val_split "
            f"{cfg['val_split']} leave {len(train_ds)} for training and {0 if val_ds is None else len(val_ds)} for "
            "validation; use more images (--limit) or another --val-split (0: no validation)"
        )
    if len(test_ds) == 0:
        raise ValueError(f"the test split of {cfg['data']} is empty")
    c, h, w = full_train.image_shape
    mean, std = full_train.mean_std()
    norm = (mean, std)
    train = DataLoader(train_ds, cfg["batch_size"], shuffle=True, seed=seed, normalize=norm,
                       transform=augmentation(cfg["augment"], h))  # fmt: skip
    val = DataLoader(val_ds, 256, normalize=norm) if val_ds is not None else None
    test = DataLoader(test_ds, 256, normalize=norm)
    kwargs = {"num_classes": full_train.num_classes, "in_channels": c, **cfg["model_kwargs"]}
    model = get_model(cfg["model"], rng=seed, **kwargs)
    opt, sched, interval = _optimizer_and_schedule(cfg, model, -(-len(train) // world_size))  # [distributed]
    info = RunInfo(
        architecture=cfg["model"], arch_kwargs=kwargs, classes=list(full_train.classes),
        normalization={"mean": [float(v) for v in mean], "std": [float(v) for v in std]},
        input_shape=(c, h, w), dataset=full_train.name,
    )  # fmt: skip
    return Run(cfg, model, train, val, test, opt, sched, interval, info)


def _optimizer_and_schedule(cfg: dict[str, Any], model: Module, steps_per_epoch: int) -> tuple[Any, Any, str]:
    """The optimiser over the model's trainable parameters, and the schedule with its interval."""
    from .. import optim

    params = model.parameters(trainable_only=True)
    lr = cfg["lr"]
    if cfg["optimizer"] == "sgd":
        opt = optim.SGD(params, lr=lr, momentum=cfg["momentum"], weight_decay=cfg["weight_decay"],
                        nesterov=cfg["momentum"] > 0)  # fmt: skip
    elif cfg["optimizer"] == "adam":
        opt = optim.Adam(params, lr=lr, weight_decay=cfg["weight_decay"])
    elif cfg["optimizer"] == "adamw":
        opt = optim.AdamW(params, lr=lr, weight_decay=cfg["weight_decay"] or 1e-2)
    else:
        opt = optim.RMSprop(params, lr=lr, weight_decay=cfg["weight_decay"], momentum=cfg["momentum"])
    interval = "epoch"
    sched: Any = None
    if cfg["schedule"] == "step":
        sched = optim.StepLR(opt, step_size=max(cfg["epochs"] // 3, 1), gamma=0.1)
    elif cfg["schedule"] == "cosine":
        interval = "step"
        total = cfg["epochs"] * steps_per_epoch
        warm = int(cfg["warmup"]) * steps_per_epoch
        cosine = optim.CosineAnnealingLR(opt, T_max=max(total - warm, 1))
        if warm:
            sched = optim.SequentialLR(opt, [optim.LinearLR(opt, start_factor=0.01, total_iters=warm), cosine],
                                       milestones=[warm])  # fmt: skip
        else:
            sched = cosine
    elif cfg["schedule"] == "onecycle":
        interval = "step"
        sched = optim.OneCycleLR(opt, max_lr=lr, total_steps=cfg["epochs"] * steps_per_epoch)
    return opt, sched, interval


def fast_forward_schedule(run: Run, epoch: int, step: int) -> None:
    """Advance ``run``'s fresh scheduler to where a run planned for ``run.config['epochs']``
    epochs would be after ``epoch`` epochs and ``step`` steps.

    This is what extending a run means (``glassnet train --resume DIR --epochs N``): the
    schedule is recomputed as if N epochs had been planned from the start and continues
    from the current step. With ``cosine`` the learning rate goes up from where the shorter
    schedule had brought it to the longer curve's value at this step, then decays to its end
    at epoch N; ``onecycle`` likewise follows the longer cycle; ``step`` uses the longer run's
    step size; ``none`` is unchanged.
    """
    if run.scheduler is None:
        return
    for _ in range(step if run.scheduler_interval == "step" else epoch):
        run.scheduler.step()
