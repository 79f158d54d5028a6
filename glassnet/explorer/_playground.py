"""The **Playground**: build a small CNN in the page, see its shapes, parameters and
multiply-accumulates as you edit, read the glassnet code that builds it, and train it a few
hundred steps on the server.

* ``POST /api/playground/summary``  the model a spec describes: a row per layer (output shape,
  parameters, MACs, receptive field) from :func:`glassnet.trace`, the totals and the Python
  code. A layer that cannot work is answered 422 naming it, with the trace's own message
  and the size arithmetic of that layer (kernel larger than its input, a convolution after
  a dense layer, ...), plus the rows before it.
* ``GET  /api/playground/data``     the data choices: ``shapes``, ``shapes-rgb``, ``fashion-mnist``
  and ``folder:NAME`` for each folder the explorer was started with (``--folder``), with their
  input shapes and classes; ``GET /api/playground/testimages?data=`` their test images.
* ``POST /api/playground/train``    train it (one training at a time, 409 when busy) for
  ``steps`` or ``epochs``: a background job whose progress (loss and accuracy per step, test
  accuracy, the first layer's filters, the ``watch``-ed test image's first feature maps)
  comes from ``GET /api/jobs/{id}``; ``DELETE /api/jobs/{id}`` stops it.
* ``POST /api/playground/resume``   train the model of a stopped or finished job further: the
  same weights, optimiser state, position in the epoch and step count (a new job).
* ``POST /api/playground/save``     write that model as a new run under the runs directory
  (``NAME/last.safetensors`` by :func:`glassnet.checkpoint.save_checkpoint`, architecture
  ``sequential`` with its layer description, and ``NAME/history.json``); never overwrites.

A spec is a list of layers: ``conv`` (channels, kernel, stride, padding, ReLU or not),
``pool`` (max or average, kernel, stride), ``dropout`` (p) and ``dense`` (units, ReLU or not).
A flatten goes in before the first dense layer, and the output layer, a dense layer with one
unit per class of the data, comes last: both are shown, neither is edited.
"""

from __future__ import annotations

import re
import secrets
import threading
import time
from dataclasses import dataclass
from typing import Any, Literal

import numpy as np
from fastapi import FastAPI, Query
from pydantic import BaseModel, ConfigDict, Field

from ..autograd.graph import trace
from ..nn import AvgPool2d, Conv2d, Dropout, Flatten, Linear, MaxPool2d, Module, ReLU, Sequential
from ..nn.init import skip_init
from . import _images as img
from . import _kernels as kern
from . import _models as mdl
from ._folders import FolderError, FolderInfo, folder_info, load_folder
from ._jobs import Busy, Job
from .app import _LRU, ApiError, Explorer

#: A data choice's input shape (C, H, W) and number of classes.
Shape = tuple[tuple[int, int, int], int]
#: The built-in data choices; ``folder:NAME`` names a folder the explorer was started with.
DATA: dict[str, Shape] = {
    "shapes": ((1, 28, 28), 10),
    "shapes-rgb": ((3, 28, 28), 10),
    "fashion-mnist": ((1, 28, 28), 10),
}
DATA_TITLES = {
    "shapes": "shapes (1×28×28, 10 classes, generated)",
    "shapes-rgb": "shapes-rgb (3×28×28, 10 classes, generated)",
    "fashion-mnist": "Fashion-MNIST (1×28×28, 10 classes)",
}
MAX_LAYERS = 16
#: Training bounds: one run at a time, at most this many steps (or epochs, and steps in those
#: epochs) a job, steps a model (with its resumes), parameters, MACs and seconds.
MAX_STEPS = 1000
MAX_EPOCHS = 10
MAX_EPOCH_STEPS = 10_000
MAX_MODEL_STEPS = 20_000
MAX_TRAIN_PARAMS = 2_000_000
MAX_TRAIN_MACS = 60_000_000
TRAIN_SECONDS = 300.0
#: Test images the accuracy is measured on while training, and how often (and at every epoch's end).
EVAL_IMAGES = 500
EVAL_EVERY = 25
#: Feature-map snapshots of the watched image kept, one per epoch (the last ones).
MAX_WATCH_EPOCHS = 12


class PlayLayer(BaseModel):
    """One layer of the playground (only the fields of its type)."""

    model_config = ConfigDict(extra="forbid")
    type: Literal["conv", "pool", "dropout", "dense"]
    channels: int | None = Field(None, ge=1, le=256)
    kernel: int | None = Field(None, ge=1, le=31)
    stride: int | None = Field(None, ge=1, le=16)
    padding: int | None = Field(None, ge=0, le=15)
    pool: Literal["max", "avg"] | None = None
    p: float | None = Field(None, ge=0.0, lt=1.0)
    units: int | None = Field(None, ge=1, le=4096)
    relu: bool | None = None


FIELDS = {
    "conv": {"channels", "kernel", "stride", "padding", "relu"},
    "pool": {"pool", "kernel", "stride"},
    "dropout": {"p"},
    "dense": {"units", "relu"},
}
NAMES = {"conv": "convolution", "pool": "pooling", "dropout": "dropout", "dense": "dense layer"}


class PlaySpec(BaseModel):
    model_config = ConfigDict(extra="forbid")
    data: str = Field("shapes", min_length=1, max_length=300, description="a built-in name or folder:NAME")
    layers: list[PlayLayer] = Field(default_factory=list, max_length=MAX_LAYERS)


class TrainRequest(BaseModel):
    """Train a new model: ``steps``, or ``epochs`` (both: whichever bound comes first)."""

    model_config = ConfigDict(extra="forbid")
    spec: PlaySpec
    steps: int = Field(200, ge=1, le=MAX_STEPS)
    epochs: int | None = Field(None, ge=1, le=MAX_EPOCHS)
    batch_size: int = Field(32, ge=1, le=256)
    lr: float = Field(0.003, gt=0, le=2.0)
    optimizer: Literal["sgd", "adam"] = "adam"
    seed: int = Field(0, ge=0, le=2**31 - 1)
    watch: int = Field(0, ge=0, description="the test image whose first feature maps are published")


class ResumeRequest(BaseModel):
    """Go on training the model of a stopped or finished job, from the same weights and optimiser state."""

    model_config = ConfigDict(extra="forbid")
    job: str = Field(..., min_length=1, max_length=64)
    steps: int = Field(200, ge=1, le=MAX_STEPS)
    epochs: int | None = Field(None, ge=1, le=MAX_EPOCHS)
    watch: int | None = Field(None, ge=0)


class SaveRequest(BaseModel):
    """Write the model of a job as a run: RUNS/NAME/last.safetensors and history.json."""

    model_config = ConfigDict(extra="forbid")
    job: str = Field(..., min_length=1, max_length=64)
    name: str | None = Field(None, min_length=1, max_length=100)


def _filled(i: int, L: PlayLayer) -> dict[str, Any]:
    """The layer's settings with defaults; fields of another layer type are refused."""
    given = {k for k, v in L.model_dump().items() if v is not None and k != "type"}
    stray = sorted(given - FIELDS[L.type])
    if stray:
        raise ApiError(
            f"layer {i + 1} ({NAMES[L.type]}): {', '.join(map(repr, stray))} {'does' if len(stray) == 1 else 'do'} "
            f"not apply to a {NAMES[L.type]} "
            f"(it takes {', '.join(sorted(FIELDS[L.type]))})",
            400,
            {"layer": i},
        )
    if L.type == "conv":
        pad = 0 if L.padding is None else L.padding
        relu = True if L.relu is None else L.relu
        return {"type": "conv", "channels": L.channels or 8, "kernel": L.kernel or 3, "stride": L.stride or 1,
                "padding": pad, "relu": relu}  # fmt: skip
    if L.type == "pool":
        k = L.kernel or 2
        return {"type": "pool", "pool": L.pool or "max", "kernel": k, "stride": L.stride or k}
    if L.type == "dropout":
        return {"type": "dropout", "p": 0.5 if L.p is None else L.p}
    return {"type": "dense", "units": L.units or 64, "relu": True if L.relu is None else L.relu}


def _describe(s: dict[str, Any]) -> str:
    if s["type"] == "conv":
        return f"conv {s['channels']}@{s['kernel']}×{s['kernel']}, stride {s['stride']}, padding {s['padding']}" + (
            " + ReLU" if s["relu"] else ""
        )
    if s["type"] == "pool":
        return f"{s['pool']} pool {s['kernel']}×{s['kernel']}, stride {s['stride']}"
    if s["type"] == "dropout":
        return f"dropout p = {s['p']:g}"
    if s["type"] == "dense":
        return f"dense {s['units']}" + (" + ReLU" if s["relu"] else "")
    if s["type"] == "flatten":
        return "flatten"
    return f"output: dense {s['units']} (one per class)"


class Built:
    """A spec made into a model: its modules, which spec layer each module comes from, and the settings."""

    def __init__(self, model: Sequential, origin: list[int], settings: list[dict[str, Any]], shape: tuple) -> None:
        self.model, self.origin, self.settings, self.input_shape = model, origin, settings, shape


class LayerError(Exception):
    """A layer that cannot work: which spec layer (index into ``settings``), and why."""

    def __init__(self, index: int, message: str, explanation: str, built: list[dict[str, Any]]) -> None:
        super().__init__(message)
        self.index, self.message, self.explanation, self.settings = index, message, explanation, built


def _make(s: dict[str, Any], shape: tuple[int, ...], rng: Any) -> list[Module]:
    if s["type"] == "conv":
        mods: list[Module] = [Conv2d(shape[0], s["channels"], s["kernel"], stride=s["stride"], padding=s["padding"],
                                     rng=rng)]  # fmt: skip
        return mods + ([ReLU()] if s["relu"] else [])
    if s["type"] == "pool":
        return [(MaxPool2d if s["pool"] == "max" else AvgPool2d)(s["kernel"], stride=s["stride"])]
    if s["type"] == "dropout":
        return [Dropout(s["p"])]
    if s["type"] == "flatten":
        return [Flatten()]
    mods = [Linear(int(np.prod(shape)), s["units"], rng=rng)]
    return mods + ([ReLU()] if s.get("relu") else [])


def explain(s: dict[str, Any], shape: tuple[int, ...], message: str) -> str:
    """Why layer ``s`` cannot take an input of ``shape`` (C, H, W) or (F,), with the size arithmetic."""
    if s["type"] in ("conv", "pool") and len(shape) != 3:
        return (
            f"a {NAMES[s['type']]} slides a window over a feature map [C, H, W], but its input is a vector of "
            f"{shape[0]} values (after a dense layer or flatten, there is no image left): "
            "put it before the dense layers"
        )
    if s["type"] in ("conv", "pool"):
        k, st, p = s["kernel"], s["stride"], s.get("padding", 0)
        lines = []
        for n, axis in ((shape[1], "height"), (shape[2], "width")):
            sym = "H" if axis == "height" else "W"
            if n - k + 2 * p < 0:
                lines.append(
                    f"{axis}: ({sym} − F + 2P)/S + 1 = ({n} − {k} + 2·{p})/{st} + 1, but {n} − {k} + 2·{p} = "
                    f"{n - k + 2 * p} < 0: no window fits"
                )
            else:
                lines.append(f"{axis}: {kern.arithmetic(n, k, p, st, axis)['text']}")
        if k > shape[1] + 2 * p or k > shape[2] + 2 * p:
            why = (
                f"the {k}×{k} window is larger than its {shape[1]}×{shape[2]} input"
                + (f" with padding {p} ({shape[1] + 2 * p}×{shape[2] + 2 * p})" if p else "")
                + ": make the kernel smaller, add padding, or downsample less before it"
            )
        else:
            why = "the output would have no pixels"
        return f"{why}. Output size: " + "; ".join(lines)
    return message


def build(spec: PlaySpec, data: Shape | None = None, shape_only: bool = True, rng: Any = 0) -> Built:
    """The model of ``spec`` for ``data`` ((C, H, W), classes; default: the built-in data of that
    name), weights zero when ``shape_only``; :class:`LayerError` for a layer that cannot work.

    Every shape comes from :func:`glassnet.trace` of the model built so far: a layer is added,
    the trace runs, and its error (which names the module) is mapped back to the spec's layer."""
    in_shape, classes = data if data is not None else DATA[spec.data]
    settings = [_filled(i, L) for i, L in enumerate(spec.layers)]
    plan: list[dict[str, Any]] = []
    flattened = False
    for s in settings:
        if s["type"] == "dense" and not flattened:
            plan.append({"type": "flatten", "auto": True})
            flattened = True
        plan.append(s)
    if not flattened:
        plan.append({"type": "flatten", "auto": True})
    plan.append({"type": "output", "units": classes, "relu": False})
    modules: list[Module] = []
    origin: list[int] = []
    shape: tuple[int, ...] = in_shape
    gen = np.random.default_rng(rng)
    ctx = skip_init() if shape_only else _nothing()
    with ctx:
        for j, s in enumerate(plan):
            start = len(modules)
            try:
                new = _make(s, shape, gen)
            except (ValueError, TypeError) as e:
                raise LayerError(j, str(e), explain(s, shape, str(e)), plan) from None
            modules += new
            origin += [j] * len(new)
            try:
                graph = trace(Sequential(*modules), in_shape)
            except (ValueError, TypeError) as e:
                msg = str(e)
                bad = _failing_module(msg, start)
                raise LayerError(origin[bad] if bad < len(origin) else j, msg, explain(s, shape, msg), plan) from None
            out = tuple(int(d) for d in graph.output_shape[1:])
            if any(d < 1 for d in out):
                msg = f"layer {j + 1} ({_describe(s)}): the output would be {'×'.join(map(str, out))}"
                raise LayerError(j, msg, explain(s, shape, msg), plan)
            shape = out
    return Built(Sequential(*modules), origin, plan, in_shape)


class _nothing:
    def __enter__(self) -> None:
        return None

    def __exit__(self, *exc: Any) -> None:
        return None


def _failing_module(message: str, default: int) -> int:
    """The module index in "layer '3' (Conv2d): ..." (the trace's prefix), else ``default``."""
    import re

    m = re.match(r"layer '(\d+)'", message)
    return int(m.group(1)) if m else default


def code(built: Built) -> str:
    """The glassnet Python that builds the same model (and prints its summary)."""
    lines = ["import glassnet", "from glassnet import nn", "", "model = nn.Sequential("]
    for m in built.model:
        name = type(m).__name__
        if isinstance(m, Conv2d):
            args = f"{m.in_channels}, {m.out_channels}, {m.kernel_size[0]}"
            if m.stride != (1, 1):
                args += f", stride={m.stride[0]}"
            if m.padding:
                args += f", padding={m.padding}"
        elif isinstance(m, MaxPool2d | AvgPool2d):
            k, s = m.kernel_size, m.stride
            args = f"{k}" + (f", stride={s}" if s != k else "")
        elif isinstance(m, Dropout):
            args = f"{m.p:g}"
        elif isinstance(m, Linear):
            args = f"{m.in_features}, {m.out_features}"
        else:
            args = ""
        lines.append(f"    nn.{name}({args}),")
    c, h, w = built.input_shape
    lines += [")", f"print(glassnet.summary(model, ({c}, {h}, {w})))", ""]
    return "\n".join(lines)


def summarize(spec: PlaySpec, data: Shape | None = None) -> dict[str, Any]:
    """Rows per spec layer (and the automatic flatten and output layers), totals and code."""
    built = build(spec, data)
    doc = mdl.summary_dict(built.model, built.input_shape, "playground")
    layers: list[dict[str, Any]] = []
    for j, s in enumerate(built.settings):
        rows = [r for r, o in zip(doc["rows"], built.origin, strict=True) if o == j]
        if not rows:
            continue
        last = rows[-1]
        layers.append(
            {
                "index": j,
                "spec": next((k for k, t in enumerate(_user_layers(built.settings)) if t == j), None),
                "type": s["type"],
                "auto": bool(s.get("auto")) or s["type"] == "output",
                "description": _describe(s),
                "modules": [r["name"] for r in rows],
                "kinds": [r["kind"] for r in rows],
                "output_shape": last["output_shape"],
                "params": sum(r["params"] for r in rows),
                "macs": sum(r["macs"] for r in rows),
                "rf": last["rf"],
                "jump": last["jump"],
            }
        )
    return {
        "data": spec.data,
        "input_shape": doc["input_shape"],
        "output_shape": doc["output_shape"],
        "layers": layers,
        "total_params": doc["total_params"],
        "total_macs": doc["total_macs"],
        "code": code(built),
        "trainable": doc["total_params"] <= MAX_TRAIN_PARAMS and doc["total_macs"] <= MAX_TRAIN_MACS,
        "limits": {"params": MAX_TRAIN_PARAMS, "macs": MAX_TRAIN_MACS, "steps": MAX_STEPS},
    }


def _user_layers(plan: list[dict[str, Any]]) -> list[int]:
    """Plan indices of the spec's own layers (the automatic flatten and output left out)."""
    return [j for j, s in enumerate(plan) if not s.get("auto") and s["type"] != "output"]


def layer_error(e: LayerError, spec: PlaySpec, data: Shape | None = None) -> ApiError:
    plan = e.settings
    user = _user_layers(plan)
    spec_index = user.index(e.index) if e.index in user else None
    s = plan[e.index]
    where = f"layer {spec_index + 1} ({_describe(s)})" if spec_index is not None else _describe(s)
    rows: list[dict[str, Any]] = []
    if spec_index:  # the rows that work: the model up to the layer before (without its output layer)
        try:
            rows = summarize(PlaySpec(data=spec.data, layers=spec.layers[:spec_index]), data)["layers"]
        except (ApiError, LayerError):
            rows = []
        rows = [r for r in rows if r["type"] != "output"]
        if rows and rows[-1]["type"] == "flatten" and not any(r["type"] == "dense" for r in rows):
            rows = rows[:-1]
    import re

    reason = re.sub(r"^layer '\d+' \([A-Za-z0-9_]+\): ", "", e.message)  # the trace names the module; we name the layer
    return ApiError(
        f"{where} cannot work: {reason}",
        422,
        {"layer": spec_index, "explanation": e.explanation, "layers": rows, "trace_error": e.message},
    )


# ----------------------------------------------------------------------------- data


@dataclass
class DataChoice:
    """A data choice resolved: its name, input shape, classes, and the folder behind it (if any)."""

    name: str
    input_shape: tuple[int, int, int]
    classes: int
    folder: FolderInfo | None = None

    @property
    def shape(self) -> Shape:
        return self.input_shape, self.classes


def data_choices(ex: Explorer) -> list[str]:
    return [*DATA, *ex.roots.folders]


def resolve_data(ex: Explorer, name: str) -> DataChoice:
    """The choice ``name`` names: a built-in one, or ``folder:NAME`` of a folder the explorer was
    started with. 422 for a name that is neither, 404 for a folder it was not started with."""
    if name in DATA:
        shape, classes = DATA[name]
        return DataChoice(name, shape, classes)
    folders = ex.roots.folders
    if name.startswith("folder:"):
        path = folders.get(name)
        if path is None:
            have = (
                f"it was started with {', '.join(folders)}"
                if folders
                else "it was started without an image folder (start it with `glassnet explore --folder PATH`)"
            )
            raise ApiError(f"the data {name!r} is not available: no folder of that name was given to the explorer; "
                           f"{have}", 404)  # fmt: skip
        try:
            info = folder_info(name, path)
        except FolderError as e:
            raise ApiError(f"the data {name!r} cannot be trained on: {e}", 422) from None
        return DataChoice(name, info.input_shape, len(info.classes), info)
    raise ApiError(
        f"unknown data {name!r}: expected one of {', '.join(data_choices(ex))}"
        + ("" if folders else " (or folder:NAME, for a folder given with `glassnet explore --folder`)"),
        422,
    )


def _data(ex: Explorer, choice: DataChoice, datasets: _LRU) -> tuple[Any, Any, list[float], list[float]]:
    """Train and test splits of a choice (cached) and their per-channel mean and std (0–1 scale)."""
    from ..data import DatasetError, load_dataset

    key = (choice.name, choice.input_shape, str(ex.roots.data_dir))
    hit = datasets.peek(key)
    if hit is not None:
        return hit
    if choice.folder is not None:
        try:
            train, test = load_folder(choice.folder)
        except FolderError as e:
            raise ApiError(f"the data {choice.name!r} cannot be read: {e}", 422) from None
    else:
        try:
            train = load_dataset(choice.name, "train", root=ex.roots.data_dir, download=False, progress=False)
            test = load_dataset(choice.name, "test", root=ex.roots.data_dir, download=False, progress=False)
        except (DatasetError, ValueError, OSError) as e:
            raise ApiError(f"the data {choice.name!r} is not available: {e}", 404) from None
    sample = train.images[:2000].astype(np.float64) / 255.0
    mean = sample.mean(axis=(0, 2, 3)).tolist()
    std = np.maximum(sample.std(axis=(0, 2, 3)), 1e-3).tolist()
    doc = (train, test, mean, std)
    datasets.put(doc, key)
    return doc


def _thumb(images: np.ndarray, i: int) -> str:
    chw = images[i]
    return img.png_data_url(chw[0] if chw.shape[0] == 1 else np.transpose(chw, (1, 2, 0)))


# ----------------------------------------------------------------------------- training


class Session:
    """One playground model and everything that training it further, or saving it, needs: the
    model, its optimiser (with its state), the data, the position in the current epoch, the
    step count, the curves and the first snapshots. Only the explorer's jobs change it, one at
    a time (``lock``)."""

    def __init__(self, req: TrainRequest, choice: DataChoice, built: Built, data: tuple[Any, ...]) -> None:
        from ..optim import SGD, Adam

        self.id = secrets.token_urlsafe(6)
        self.req, self.choice, self.built = req, choice, built
        self.model = built.model
        params = self.model.parameters()
        self.opt = SGD(params, lr=req.lr, momentum=0.9) if req.optimizer == "sgd" else Adam(params, lr=req.lr)
        self.train, self.test, self.mean, self.std = data
        self.gen = np.random.default_rng(req.seed)
        self.step = 0
        self.epochs_done = 0
        self.perm: np.ndarray | None = None
        self.pos = 0
        self.curve: list[dict[str, Any]] = []
        self.evals: list[dict[str, Any]] = []
        self.epochs: list[dict[str, Any]] = []
        self.epoch_stats: list[tuple[float, float]] = []
        self.epoch_started = time.perf_counter()
        self.filters_start: dict[str, Any] | None = None
        self.watch_start: dict[str, Any] | None = None
        self.watch_epochs: list[dict[str, Any]] = []
        self.watch = req.watch
        self.job: Job | None = None
        self.lock = threading.Lock()
        pick = np.random.default_rng(1).choice(len(self.test), size=min(EVAL_IMAGES, len(self.test)), replace=False)
        self.xt, self.yt = self.prep(self.test.images[pick]), np.asarray(self.test.labels[pick])

    @property
    def steps_per_epoch(self) -> int:
        return -(-len(self.train) // self.req.batch_size)

    def prep(self, images: np.ndarray) -> np.ndarray:
        m = np.asarray(self.mean, np.float32).reshape(1, -1, 1, 1)
        sd = np.asarray(self.std, np.float32).reshape(1, -1, 1, 1)
        return ((images.astype(np.float32) / 255.0 - m) / sd).astype(np.float32)

    def plan(self, steps: int, epochs: int | None, fields: set[str]) -> int:
        """How many steps a job of ``steps`` and/or ``epochs`` runs (``epochs``: until that many more
        epochs have ended; with ``steps`` given too, whichever comes first)."""
        if epochs is None:
            n = steps
        else:
            spe = self.steps_per_epoch
            mid_epoch = self.perm is not None and self.pos < len(self.train)
            left = spe - self.pos // self.req.batch_size if mid_epoch else spe
            n = left + (epochs - 1) * spe
            if n > MAX_EPOCH_STEPS:
                raise ApiError(
                    f"{epochs} epoch(s) of {self.choice.name} ({len(self.train):,} training images) at batch size "
                    f"{self.req.batch_size} is {n:,} steps, more than the {MAX_EPOCH_STEPS:,} a job may run: "
                    "train fewer epochs or with a larger batch",
                    422,
                )
            if "steps" in fields:
                n = min(n, steps)
        if self.step + n > MAX_MODEL_STEPS:
            raise ApiError(
                f"this model has trained {self.step:,} steps; {n:,} more would pass the {MAX_MODEL_STEPS:,} steps "
                "a playground model may train",
                422,
            )
        return n

    def next_batch(self) -> tuple[np.ndarray, bool]:
        """The indices of the next batch, and whether it ends an epoch."""
        n, b = len(self.train), self.req.batch_size
        if self.perm is None or self.pos >= n:
            self.perm, self.pos = self.gen.permutation(n), 0
        idx = self.perm[self.pos : self.pos + b]
        self.pos += len(idx)
        return idx, self.pos >= n

    def check_watch(self, index: int) -> None:
        if index >= len(self.test):
            raise ApiError(
                f"watch image {index} does not exist: the test images of {self.choice.name} are 0–{len(self.test) - 1}",
                400,
            )


def _first_maps(model: Sequential, x: np.ndarray) -> tuple[str, np.ndarray] | None:
    """The output of the first convolution (after its ReLU, when one follows) for one image."""
    from ..autograd import Tensor, no_grad

    mods = list(model)
    first = next((i for i, m in enumerate(mods) if isinstance(m, Conv2d)), None)
    if first is None:
        return None
    end = first + 1 + (first + 1 < len(mods) and isinstance(mods[first + 1], ReLU))
    h: Any = Tensor(x)
    with no_grad():
        for m in mods[:end]:
            h = m(h)
    name = f"{first}" + (f"+{first + 1} (conv + ReLU)" if end == first + 2 else " (conv)")
    return name, np.asarray(h.numpy())[0]


def _evaluate(s: Session, epoch_end: bool) -> dict[str, Any]:
    """Test accuracy, the first filters and the watched image's feature maps, now."""
    from ..autograd import no_grad

    model = s.model
    model.eval()
    try:
        with no_grad():
            pred = np.argmax(model(s.xt).numpy(), axis=1)
        acc = float(np.mean(pred == s.yt))
        out: dict[str, Any] = {"acc": acc, "filters": None, "watch": None}
        epoch = round(s.step / s.steps_per_epoch, 3)
        first = mdl.first_conv(model)
        if first is not None:
            w = np.asarray(first[1].weight.data, dtype=np.float64)
            tiles = img.colourise(w[:, 0], True, float(np.abs(w[:, 0]).max()) or 1.0)
            grid, layout = img.tile_grid(tiles)
            out["filters"] = {"png": img.png_data_url(grid), "layout": layout, "shape": list(w.shape), "step": s.step}
        i = s.watch
        x = s.prep(s.test.images[i : i + 1])
        maps = _first_maps(model, x)
        with no_grad():
            p = mdl.softmax(model(x).numpy()[0])
        classes = list(s.test.classes)
        top = int(np.argmax(p))
        watch = {"index": i, "step": s.step, "epoch": epoch, "epoch_end": epoch_end,
                 "label": classes[int(s.test.labels[i])], "predicted": classes[top] if top < len(classes) else str(top),
                 "probability": float(p[top])}  # fmt: skip
        if maps is not None:
            grid = mdl.feature_grid(maps[1], 64, 60_000)
            watch.update(layer=maps[0], shape=list(maps[1].shape), png=grid["png"], layout=grid["layout"],
                         signed=grid["signed"], scale=grid["scale"])  # fmt: skip
        out["watch"] = watch
    finally:
        model.train()
    return out


def _run(job: Job, s: Session, steps: int) -> None:
    """Train ``s`` for ``steps`` more steps, publishing the curves and snapshots as it goes."""
    from .. import functional as F

    with s.lock:
        s.job = job
        start = s.step
        classes = list(s.test.classes)

        def init(r: dict[str, Any]) -> None:
            r.update(session=s.id, data=s.choice.name, classes=classes, steps_per_epoch=s.steps_per_epoch,
                     start_step=start, until_step=start + steps, step=start, epoch=round(start / s.steps_per_epoch, 3),
                     curve=list(s.curve), evals=list(s.evals), epochs=list(s.epochs), filters=None,
                     filters_start=s.filters_start, watch=None, watch_start=s.watch_start,
                     watch_epochs=list(s.watch_epochs),
                     watch_input={"index": s.watch, "png": _thumb(s.test.images, s.watch),
                                  "label": classes[int(s.test.labels[s.watch])]})  # fmt: skip

        job.update(init)

        def publish(epoch_end: bool) -> dict[str, Any]:
            ev = _evaluate(s, epoch_end)
            entry = {"step": s.step, "epoch": round(s.step / s.steps_per_epoch, 3), "test_acc": ev["acc"]}
            s.evals.append(entry)
            if s.filters_start is None:
                s.filters_start = ev["filters"]
            if s.watch_start is None or s.watch_start["index"] != s.watch:
                s.watch_start = ev["watch"]
            if epoch_end and ev["watch"] is not None:
                s.watch_epochs = [*s.watch_epochs, ev["watch"]][-MAX_WATCH_EPOCHS:]

            def put(r: dict[str, Any]) -> None:
                r["evals"].append(entry)
                r.update(filters=ev["filters"], filters_start=s.filters_start, watch=ev["watch"],
                         watch_start=s.watch_start, watch_epochs=list(s.watch_epochs))  # fmt: skip

            job.update(put)
            return ev

        if s.step == 0 or not s.evals or s.watch_start is None or s.watch_start["index"] != s.watch:
            publish(False)
        t0 = time.perf_counter()
        lr = float(s.opt.param_groups[0]["lr"]) if hasattr(s.opt, "param_groups") else s.req.lr
        for k in range(1, steps + 1):
            job.tick()
            idx, epoch_end = s.next_batch()
            xb, yb = s.prep(s.train.images[idx]), np.asarray(s.train.labels[idx])
            s.opt.zero_grad()
            logits = s.model(xb)
            loss = F.cross_entropy(logits, yb)
            value = float(loss.data)
            if not np.isfinite(value):
                raise ValueError(
                    f"the loss is {value} at step {s.step + 1}: the learning rate {s.req.lr:g} is too large"
                )
            loss.backward()
            s.opt.step()
            s.step += 1
            acc = float(np.mean(np.argmax(logits.numpy(), axis=1) == yb))
            point = {"step": s.step, "epoch": round(s.step / s.steps_per_epoch, 4), "loss": value, "acc": acc, "lr": lr}
            s.curve.append(point)
            s.epoch_stats.append((value, acc))
            if epoch_end or s.step % EVAL_EVERY == 0 or k == steps:
                ev = publish(epoch_end)
                if epoch_end:
                    s.epochs_done += 1
                    losses, accs = zip(*s.epoch_stats, strict=True)
                    row = {"epoch": s.epochs_done, "train_loss": float(np.mean(losses)),
                           "train_acc": float(np.mean(accs)), "val_loss": None, "val_acc": ev["acc"], "lr": lr,
                           "seconds": round(time.perf_counter() - s.epoch_started, 3)}  # fmt: skip
                    s.epochs.append(row)
                    s.epoch_stats, s.epoch_started = [], time.perf_counter()
                    job.update(lambda r, row=row: r["epochs"].append(row))

            def put(r: dict[str, Any], point: dict[str, Any] = point) -> None:
                r["curve"].append(point)
                r.update(step=s.step, epoch=point["epoch"])

            job.update(put)
            job.advance(k, seconds=round(time.perf_counter() - t0, 3))
        job.message = f"trained {steps} steps (step {s.step}, epoch {s.step / s.steps_per_epoch:.2f})"


# ----------------------------------------------------------------------------- saving


def _run_name(s: Session) -> str:
    data = re.sub(r"[^A-Za-z0-9._-]", "-", s.choice.name.replace("folder:", ""))
    return f"playground-{data}-{time.strftime('%Y%m%d-%H%M%S')}"


def save_run(ex: Explorer, s: Session, name: str | None) -> dict[str, Any]:
    """Write the session's model as a new run under the runs directory: ``NAME/last.safetensors``
    (:func:`glassnet.checkpoint.save_checkpoint`: the model as a ``sequential`` description, its
    optimiser state, step and epoch) and ``NAME/history.json``, atomically, holding the run's lock.
    An existing run is never overwritten (409)."""
    from ..checkpoint import CheckpointError, save_checkpoint
    from ..models.sequential import describe_sequential
    from ..train.history import History
    from ..train.rundir import RunDirError, RunLock, prepare_run_dir
    from ._runs import RUN_NAME

    name = name or _run_name(s)
    if not RUN_NAME.match(name) or name in (".", ".."):
        raise ApiError(
            f"invalid run name {name!r}: use letters, digits and . _ + = , @ - (not first), at most 200 characters",
            400,
        )
    target = ex.roots.runs_dir / name
    if target.exists() or target.is_symlink():
        raise ApiError(f"a run {name!r} already exists under the runs directory; nothing was overwritten: "
                       "choose another name", 409)  # fmt: skip
    c, h, w = s.choice.input_shape
    classes = list(s.test.classes)
    folder = s.choice.folder
    status = {"done": "finished", "cancelled": "interrupted", "timeout": "interrupted"}.get(
        s.job.status if s.job else "", "interrupted"
    )
    layers = describe_sequential(s.model)
    try:
        with RunLock(target):
            prepare_run_dir(target, resume=False)
            save_checkpoint(
                target / "last.safetensors",
                s.model,
                architecture="sequential",
                arch_kwargs={"layers": layers, "num_classes": len(classes), "in_channels": c},
                classes=classes,
                dataset=(folder.path.name if folder else s.choice.name)[:64],
                normalization={"mean": s.mean, "std": s.std},
                input_shape=(c, h, w),
                preprocessing=folder.preprocessing if folder else None,
                data_folder=str(folder.path) if folder else None,
                optimizer=s.opt,
                epoch=s.epochs_done,
                step=s.step,
                extra={"source": "glassnet explorer playground", "spec": s.req.spec.model_dump_json(exclude_none=True)},
            )
            best = max(s.epochs, key=lambda e: e["val_acc"]) if s.epochs else None
            hist = History(
                config={"model": "sequential", "data": s.choice.name, "layers": layers,
                        "epochs": max(s.epochs_done, 1 if s.step else 0), "steps": s.step,
                        "batch_size": s.req.batch_size, "lr": s.req.lr, "optimizer": s.req.optimizer,
                        "seed": s.req.seed,
                        "source": "explorer playground", "val_note": f"val_acc: accuracy on {len(s.yt)} test images"},
                epochs=list(s.epochs),
                steps=list(s.curve),
                status=status,
                message=f"trained in the explorer's playground: {s.step} steps "
                f"({s.step / s.steps_per_epoch:.2f} epochs)",
                best={"epoch": best["epoch"], "val_acc": best["val_acc"]} if best else None,
            )  # fmt: skip
            hist.save(target)
    except RunDirError as e:
        raise ApiError(str(e), 409) from None
    except CheckpointError as e:
        raise ApiError(f"the model cannot be saved: {e}", 422) from None
    ckpt = ex.roots.checkpoint_id(target / "last.safetensors")
    return {"run": name, "checkpoint": ckpt, "step": s.step, "epoch": s.epochs_done, "status": status,
            "files": sorted(p.name for p in target.iterdir())}  # fmt: skip


# ----------------------------------------------------------------------------- routes


def install(app: FastAPI, ex: Explorer) -> None:
    datasets = _LRU(2)
    sessions = _LRU(4)  # job id → Session (a resumed job maps to the session it continues)
    data_lock = threading.Lock()

    def summary_of(spec: PlaySpec) -> tuple[dict[str, Any], DataChoice]:
        choice = resolve_data(ex, spec.data)
        try:
            return summarize(spec, choice.shape), choice
        except LayerError as e:
            raise layer_error(e, spec, choice.shape) from None

    def session_of(job_id: str) -> Session:
        s = sessions.peek(job_id)
        if s is None:
            raise ApiError(f"unknown or expired playground training {job_id!r}: train the model again", 404)
        if s.job is not None and s.job.running:
            raise ApiError(
                f"the training job {s.job.id} is still running: stop it (DELETE /api/jobs/{s.job.id}) or let it finish",
                409,
            )
        if s.job is not None and s.job.status == "failed":
            raise ApiError(f"the training failed ({s.job.message}): train the model again", 409)
        return s

    def start(s: Session, steps: int, title: str) -> dict[str, Any]:
        job = ex.jobs.start("train", title, steps, lambda job: _run(job, s, steps), TRAIN_SECONDS)
        s.job = job
        sessions.put(s, job.id)
        return job.snapshot()

    @app.get("/api/playground/data")
    def playground_data() -> list[dict[str, Any]]:
        out = [{"name": n, "title": DATA_TITLES[n], "input_shape": list(sh), "classes": k, "available": True,
                "message": None} for n, (sh, k) in DATA.items()]  # fmt: skip
        for name, path in ex.roots.folders.items():
            try:
                d = folder_info(name, path).describe()
                out.append({"name": name, "title": f"{name} ({'×'.join(map(str, d['input_shape']))}, "
                            f"{len(d['classes'])} classes, {d['images']:,} images; test: {d['test']})",
                            "input_shape": d["input_shape"], "classes": len(d["classes"]), "available": True,
                            "message": None})  # fmt: skip
            except FolderError as e:
                out.append({"name": name, "title": f"{name} (cannot be used)", "input_shape": None, "classes": None,
                            "available": False, "message": str(e)})  # fmt: skip
        return out

    @app.post("/api/playground/summary")
    def playground_summary(spec: PlaySpec) -> dict[str, Any]:
        return summary_of(spec)[0]

    @app.get("/api/playground/testimages")
    def playground_test_images(
        data: str = Query("shapes", min_length=1, max_length=300),
        offset: int = Query(0, ge=0),
        limit: int = Query(12, ge=1, le=100),
    ) -> dict[str, Any]:
        choice = resolve_data(ex, data)
        with data_lock:
            _, test, _, _ = _data(ex, choice, datasets)
        items = [{"index": i, "class": test.classes[int(test.labels[i])], "png": _thumb(test.images, i)}
                 for i in range(offset, min(offset + limit, len(test)))]  # fmt: skip
        return {"data": choice.name, "count": len(test), "offset": offset, "items": items}

    @app.post("/api/playground/train")
    def playground_train(req: TrainRequest) -> dict[str, Any]:
        doc, choice = summary_of(req.spec)
        if not doc["trainable"]:
            raise ApiError(
                f"the model is too large to train here: {doc['total_params']:,} parameters and "
                f"{doc['total_macs']:,} multiply-accumulates per image (limits {MAX_TRAIN_PARAMS:,} and "
                f"{MAX_TRAIN_MACS:,})",
                422,
            )
        busy = ex.jobs.running("train")
        if busy is not None:
            raise Busy(busy)
        with data_lock:  # load (or fail) before the job starts, so that a missing dataset is a plain 404
            data = _data(ex, choice, datasets)
        s = Session(req, choice, build(req.spec, choice.shape, shape_only=False, rng=req.seed), data)
        s.check_watch(req.watch)
        steps = s.plan(req.steps, req.epochs, req.model_fields_set)
        bound = f"{req.epochs} epoch(s), {steps} steps" if req.epochs else f"{steps} steps"
        return start(s, steps, f"{len(req.spec.layers)} layers on {choice.name}, {bound}")

    @app.post("/api/playground/resume")
    def playground_resume(req: ResumeRequest) -> dict[str, Any]:
        s = session_of(req.job)
        if req.watch is not None:
            s.check_watch(req.watch)
        steps = s.plan(req.steps, req.epochs, req.model_fields_set)
        if req.watch is not None:
            s.watch = req.watch
        bound = f"{req.epochs} more epoch(s), {steps} steps" if req.epochs else f"{steps} more steps"
        return start(s, steps, f"resumed at step {s.step} on {s.choice.name}: {bound}")

    @app.post("/api/playground/save")
    def playground_save(req: SaveRequest) -> dict[str, Any]:
        s = session_of(req.job)
        if not s.lock.acquire(blocking=False):
            raise ApiError("the model is being trained: stop the training first", 409)
        try:
            return save_run(ex, s, req.name)
        finally:
            s.lock.release()
