"""A run on a folder of one's own images (``glassnet train --data PATH``): datasets, loaders,
model and what its checkpoints record.

``PATH`` holds class sub-folders (``cat/``, ``dog/``, …), split into training and
validation by ``val_split``, or ``train/`` with ``test/`` and/or ``val/`` sub-folders, each
of class sub-folders (see :func:`glassnet.data.folder_layout`). Images of any size and
format Pillow reads are resized and centre-cropped to ``image_size`` (default: the
model's own input side) in ``grayscale`` or RGB (default: grayscale when every sampled
file is); a pretrained model takes RGB at its crop size, resized and normalised as it was
trained (:func:`glassnet.models.pretrained.preprocessing`). The preprocessing is one
:class:`~glassnet.data.ImagePreprocessing`, recorded in every checkpoint, so ``predict``
and ``evaluate`` read new images exactly as training did.

Two classes (or ``task="binary"``) train one logit with binary cross-entropy.
"""

from __future__ import annotations

import inspect
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from ..data import DataLoader, Dataset, ImageFolder, ImagePreprocessing, train_val_split
from ..data.folder import detect_mode, folder_layout, image_files
from ..nn.module import Module
from .trainer import RunInfo

#: The config keys of a folder run (all optional; ``build_run`` merges them into its defaults).
FOLDER_DEFAULTS: dict[str, Any] = {
    "image_size": None,
    "grayscale": None,
    "task": "auto",
    "pretrained": False,
    "freeze": None,
    "unreadable": "skip",
    "cache": True,
}
TASK_CHOICES = ("auto", "multiclass", "binary")


def is_folder_source(data: Any) -> bool:
    """True when ``data`` names a folder rather than a built-in dataset.

    A built-in name (``shapes``, ``fashion-mnist``, …) without a path separator is the
    built-in dataset; write ``./shapes`` for a folder of that name.
    """
    from ..data.datasets import _ALIASES, DATASETS

    if not isinstance(data, str):
        return False
    key = data.strip().lower().replace("_", "-")
    builtin = key in DATASETS or key in _ALIASES
    return not (builtin and "/" not in data and "\\" not in data)


@dataclass
class FolderParts:
    """What :func:`folder_parts` builds."""

    model: Module
    train: DataLoader
    val: DataLoader | None
    test: DataLoader
    info: RunInfo
    test_name: str = "test"
    notes: list[str] = field(default_factory=list)


def resolve_task(task: str, n_classes: int) -> str:
    """``auto`` → binary for two classes, multiclass otherwise; ``binary`` needs two classes."""
    if task not in TASK_CHOICES:
        raise ValueError(f"unknown task {task!r}; choose one of {', '.join(TASK_CHOICES)}")
    if n_classes < 2:
        raise ValueError(f"a classifier needs at least two classes, the folder has {n_classes}")
    if task == "binary" and n_classes != 2:
        raise ValueError(f"--task binary needs exactly two classes, the folder has {n_classes}")
    if task == "auto":
        return "binary" if n_classes == 2 else "multiclass"
    return task


def _preprocessing(cfg: dict[str, Any], model_key: str, train_dir: Path) -> ImagePreprocessing:
    from ..models import default_input_shape

    size = cfg["image_size"]
    if size is not None and (not isinstance(size, int) or not 1 <= size <= 4096):
        raise ValueError(f"image_size must be a side of 1..4096 pixels, got {size!r}")
    if cfg["pretrained"]:
        from ..models.pretrained import SOURCES

        if model_key not in SOURCES:
            raise ValueError(f"no pretrained weights for {model_key!r}; available for: {', '.join(sorted(SOURCES))}")
        if cfg["grayscale"]:
            raise ValueError(f"pretrained {model_key} takes RGB images; leave out --grayscale")
        return ImagePreprocessing.for_pretrained(model_key, size)
    if cfg["grayscale"] is None:
        mode = detect_mode(image_files(train_dir))
    else:
        mode = "L" if cfg["grayscale"] else "RGB"
    side = size or default_input_shape(model_key)[1]
    return ImagePreprocessing((side, side), mode)


def _build_model(cfg: dict[str, Any], key: str, outputs: int, prep: ImagePreprocessing, seed: int) -> Any:
    from ..models import MODELS, freeze_features, get_model, replace_head

    c, h, w = prep.input_shape
    if cfg["freeze"] not in (None, "features"):
        raise ValueError(f"freeze must be 'features' (everything but the classifier) or None, got {cfg['freeze']!r}")
    if cfg["pretrained"]:
        model = replace_head(get_model(key, pretrained=True), outputs, rng=seed)
        if cfg["freeze"] == "features":
            freeze_features(model)
        kwargs: dict[str, Any] = {"num_classes": outputs}
    else:
        if cfg["freeze"]:
            raise ValueError("--freeze features needs --pretrained (random features are not worth keeping)")
        kwargs = {"num_classes": outputs, "in_channels": c, **cfg["model_kwargs"]}
        if "input_size" in inspect.signature(MODELS[key]).parameters and "input_size" not in kwargs:
            kwargs["input_size"] = h
        model = get_model(key, rng=seed, **kwargs)
    try:
        model.output_shape((1, c, h, w))
    except (ValueError, TypeError, IndexError) as e:
        raise ValueError(
            f"{key} cannot take {c}×{h}×{w} images ({str(e).splitlines()[0]}); give --image-size its input side "
            "or choose a model with global pooling (resnet20, efficientnet_lite0, …)"
        ) from None
    return model, kwargs


def folder_parts(cfg: dict[str, Any], seed: int, progress: bool | None = None) -> FolderParts:
    """Datasets, loaders, model and run info for ``cfg["data"]``, a folder of images."""
    from ..models.registry import _check
    from .recipe import _limit, augmentation

    layout = folder_layout(cfg["data"])
    key = _check(cfg["model"])
    if cfg["unreadable"] not in ("skip", "error"):
        raise ValueError(f"unreadable must be 'skip' or 'error', got {cfg['unreadable']!r}")
    prep = _preprocessing(cfg, key, layout.train)
    notes: list[str] = []

    def read(path: Path, split: str, classes: list[str] | None = None) -> ImageFolder:
        on_error = "skip" if cfg["unreadable"] == "skip" else "raise"
        ds = ImageFolder(path, preprocessing=prep, classes=classes, split=split, progress=progress,
                         cache=bool(cfg["cache"]), on_error=on_error)  # fmt: skip
        for entry in ds.skipped:
            notes.append(f"skipped unreadable file {entry}")
        return ds

    import warnings

    with warnings.catch_warnings():  # skipped files are reported as notes, once
        warnings.filterwarnings("ignore", message="ImageFolder: skipped unreadable file")
        full_train = read(layout.train, "train")
        classes = list(full_train.classes)
        task = resolve_task(cfg["task"], len(classes))
        full_train = _limit(full_train, cfg["limit"])
        val_ds: Dataset | None = read(layout.val, "val", classes) if layout.val is not None else None
        test_ds: Dataset | None = read(layout.test, "test", classes) if layout.test is not None else None
    train_ds: Dataset = full_train
    test_name = "test"
    if val_ds is None and cfg["val_split"]:
        train_ds, val_ds = train_val_split(full_train, cfg["val_split"], seed=seed)
    if test_ds is None:
        if val_ds is None:
            raise ValueError(
                f"{layout.root} has no test/ or val/ folder, so part of it must be held out to measure the model: "
                "give --val-split (e.g. 0.2), or split it into train/ and test/ sub-folders"
            )
        test_ds = val_ds
        test_name = "val" if layout.val is not None else "held-out"
        if layout.val is None:
            notes.append(f"no test/ folder: the {cfg['val_split']:.0%} held out (--val-split) is the test set too")
    if len(train_ds) == 0 or (val_ds is not None and len(val_ds) == 0):
        empty = "training" if len(train_ds) == 0 else "validation"
        raise ValueError(
            f"the {empty} split of {layout.root} is empty ({len(full_train)} readable training image(s), "
            f"val_split {cfg['val_split']}); add images or change --val-split"
        )
    if cfg["pretrained"]:
        from ..models.pretrained import checkpoint_metadata

        normalization = checkpoint_metadata(key)["normalization"]
        norm = (normalization["mean"], normalization["std"])
    else:
        mean, std = full_train.mean_std()
        norm = (mean, std)
        normalization = {"mean": [float(v) for v in mean], "std": [float(v) for v in std]}
    c, h, w = prep.input_shape
    outputs = 1 if task == "binary" else len(classes)
    model, kwargs = _build_model(cfg, key, outputs, prep, seed)
    eval_batch = 256 if h * w <= 64 * 64 else 32
    train = DataLoader(train_ds, cfg["batch_size"], shuffle=True, seed=seed, normalize=norm,
                       transform=augmentation(cfg["augment"], h))  # fmt: skip
    val = DataLoader(val_ds, eval_batch, normalize=norm) if val_ds is not None else None
    test = DataLoader(test_ds, eval_batch, normalize=norm)
    info = RunInfo(
        architecture=key, arch_kwargs=kwargs, classes=classes, normalization=normalization, input_shape=(c, h, w),
        dataset=layout.root.name[:64] or "folder", task=task, preprocessing=prep,
        data_folder=str(layout.root.resolve()),
    )  # fmt: skip
    return FolderParts(model, train, val, test, info, test_name, notes)


def folder_dataset(
    path: str | Path,
    prep: ImagePreprocessing,
    classes: list[str],
    split: str = "test",
    progress: bool | None = None,
    cache: bool = True,
) -> tuple[Dataset, str]:
    """The images of a folder to evaluate a checkpoint on, read with its preprocessing, labelled
    by its ``classes``: (dataset, which part was read).

    A split folder gives its ``split`` sub-folder (``test/``, else ``val/``; or ``train/``); a
    folder of class sub-folders is read whole. Its class folders must be among ``classes``.
    Unreadable files are left out and listed in the dataset's ``skipped``.
    """
    layout = folder_layout(path)
    if layout.is_split:
        if split == "train":
            where, part = layout.train, "train/"
        else:
            where = layout.test or layout.val
            part = "test/" if layout.test is not None else "val/"
    else:
        where, part = layout.root, "the whole folder: the images trained on included"
    import warnings

    with warnings.catch_warnings():  # skipped files: in ds.skipped, for the caller to name
        warnings.filterwarnings("ignore", message="ImageFolder: skipped unreadable file")
        ds = ImageFolder(where, preprocessing=prep, classes=classes, split=split, progress=progress, cache=cache,
                         on_error="skip")  # fmt: skip
    return ds, part
