"""The **Playground**: build a small CNN in the page, see its shapes, parameters and
multiply-accumulates as you edit, read the glassnet code that builds it, and train it a few
hundred steps on the server.

* ``POST /api/playground/summary``  the model a spec describes: a row per layer (output shape,
  parameters, MACs, receptive field) from :func:`glassnet.trace`, the totals and the Python
  code. A layer that cannot work is answered 422 naming it, with the trace's own message
  and the size arithmetic of that layer (kernel larger than its input, a convolution after
  a dense layer, ...), plus the rows before it.
* ``POST /api/playground/train``    train it (one training at a time, 409 when busy) on
  ``shapes`` (or ``shapes-rgb``, or Fashion-MNIST where its files are): a background job
  whose progress (loss and accuracy per step, test accuracy, the first layer's filters) comes
  from ``GET /api/jobs/{id}``; ``DELETE /api/jobs/{id}`` stops it.

A spec is a list of layers: ``conv`` (channels, kernel, stride, padding, ReLU or not),
``pool`` (max or average, kernel, stride), ``dropout`` (p) and ``dense`` (units, ReLU or not).
A flatten goes in before the first dense layer, and the output layer, a dense layer with one
unit per class of the data, comes last: both are shown, neither is edited.
"""

from __future__ import annotations

import threading
import time
from typing import Any, Literal

import numpy as np
from fastapi import FastAPI
from pydantic import BaseModel, ConfigDict, Field

from ..autograd.graph import trace
from ..nn import AvgPool2d, Conv2d, Dropout, Flatten, Linear, MaxPool2d, Module, ReLU, Sequential
from ..nn.init import skip_init
from . import _images as img
from . import _kernels as kern
from . import _models as mdl
from ._jobs import Job
from .app import _LRU, ApiError, Explorer

#: What the playground's data choices give: input shape and number of classes.
DATA = {"shapes": ((1, 28, 28), 10), "shapes-rgb": ((3, 28, 28), 10), "fashion-mnist": ((1, 28, 28), 10)}
MAX_LAYERS = 16
#: Training bounds: one run at a time, at most this many steps, parameters, MACs and seconds.
MAX_STEPS = 1000
MAX_TRAIN_PARAMS = 2_000_000
MAX_TRAIN_MACS = 60_000_000
TRAIN_SECONDS = 300.0
#: Test images the accuracy is measured on while training.
EVAL_IMAGES = 500


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
    data: Literal["shapes", "shapes-rgb", "fashion-mnist"] = "shapes"
    layers: list[PlayLayer] = Field(default_factory=list, max_length=MAX_LAYERS)


class TrainRequest(BaseModel):
    model_config = ConfigDict(extra="forbid")
    spec: PlaySpec
    steps: int = Field(200, ge=1, le=MAX_STEPS)
    batch_size: int = Field(32, ge=1, le=256)
    lr: float = Field(0.003, gt=0, le=2.0)
    optimizer: Literal["sgd", "adam"] = "adam"
    seed: int = Field(0, ge=0, le=2**31 - 1)


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


def build(spec: PlaySpec, shape_only: bool = True, rng: Any = 0) -> Built:
    """The model of ``spec`` (weights zero when ``shape_only``); :class:`LayerError` for a layer that cannot work.

    Every shape comes from :func:`glassnet.trace` of the model built so far: a layer is added,
    the trace runs, and its error (which names the module) is mapped back to the spec's layer."""
    in_shape, classes = DATA[spec.data]
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


def summarize(spec: PlaySpec) -> dict[str, Any]:
    """Rows per spec layer (and the automatic flatten and output layers), totals and code."""
    built = build(spec)
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


def layer_error(e: LayerError, spec: PlaySpec) -> ApiError:
    plan = e.settings
    user = _user_layers(plan)
    spec_index = user.index(e.index) if e.index in user else None
    s = plan[e.index]
    where = f"layer {spec_index + 1} ({_describe(s)})" if spec_index is not None else _describe(s)
    rows: list[dict[str, Any]] = []
    if spec_index:  # the rows that work: the model up to the layer before (without its output layer)
        try:
            rows = summarize(PlaySpec(data=spec.data, layers=spec.layers[:spec_index]))["layers"]
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


# ----------------------------------------------------------------------------- training


def _train(job: Job, ex: Explorer, req: TrainRequest, datasets: _LRU) -> None:
    from .. import functional as F
    from ..autograd import no_grad
    from ..optim import SGD, Adam

    spec = req.spec
    job.tick(phase="loading data")
    train, test, mean, std = _data(ex, spec.data, datasets)
    built = build(spec, shape_only=False, rng=req.seed)
    model = built.model
    model.train()
    opt = (
        SGD(model.parameters(), lr=req.lr, momentum=0.9)
        if req.optimizer == "sgd"
        else Adam(model.parameters(), lr=req.lr)
    )
    gen = np.random.default_rng(req.seed)
    m = np.asarray(mean, np.float32).reshape(1, -1, 1, 1)
    sd = np.asarray(std, np.float32).reshape(1, -1, 1, 1)

    def prep(images: np.ndarray) -> np.ndarray:
        return ((images.astype(np.float32) / 255.0 - m) / sd).astype(np.float32)

    pick = np.random.default_rng(1).choice(len(test), size=min(EVAL_IMAGES, len(test)), replace=False)
    xt, yt = prep(test.images[pick]), np.asarray(test.labels[pick])
    first = mdl.first_conv(model)
    job.update(lambda r: r.update(curve=[], evals=[], filters=None, filters_start=None, classes=list(test.classes)))

    def evaluate(step: int) -> None:
        model.eval()
        with no_grad():
            pred = np.argmax(model(xt).numpy(), axis=1)
        model.train()
        acc = float(np.mean(pred == yt))
        pic = None
        if first is not None:
            w = np.asarray(first[1].weight.data, dtype=np.float64)
            tiles = img.colourise(w[:, 0], True, float(np.abs(w[:, 0]).max()) or 1.0)
            grid, layout = img.tile_grid(tiles)
            pic = {"png": img.png_data_url(grid), "layout": layout, "shape": list(w.shape), "step": step}

        def put(r: dict[str, Any]) -> None:
            r["evals"].append({"step": step, "test_acc": acc})
            if pic is not None:
                r["filters"] = pic
                if r.get("filters_start") is None:
                    r["filters_start"] = pic

        job.update(put)

    evaluate(0)
    t0 = time.perf_counter()
    n = len(train)
    for step in range(1, req.steps + 1):
        idx = gen.integers(0, n, size=req.batch_size)
        xb, yb = prep(train.images[idx]), np.asarray(train.labels[idx])
        opt.zero_grad()
        logits = model(xb)
        loss = F.cross_entropy(logits, yb)
        loss.backward()
        opt.step()
        value = float(loss.data)
        if not np.isfinite(value):
            raise ValueError(f"the loss is {value} at step {step}: the learning rate {req.lr:g} is too large")
        acc = float(np.mean(np.argmax(logits.numpy(), axis=1) == yb))

        def put(r: dict[str, Any], step: int = step, value: float = value, acc: float = acc) -> None:
            r["curve"].append({"step": step, "loss": value, "acc": acc})

        job.update(put)
        if step % 25 == 0 or step == req.steps:
            evaluate(step)
        job.advance(step, seconds=round(time.perf_counter() - t0, 3))
    job.message = f"trained {req.steps} steps"


def _data(ex: Explorer, name: str, datasets: _LRU) -> tuple[Any, Any, list[float], list[float]]:
    """Train and test splits of ``name`` (cached) and their per-channel mean and std (0–1 scale)."""
    from ..data import DatasetError, load_dataset

    hit = datasets.peek(name)
    if hit is not None:
        return hit
    try:
        train = load_dataset(name, "train", root=ex.roots.data_dir, download=False, progress=False)
        test = load_dataset(name, "test", root=ex.roots.data_dir, download=False, progress=False)
    except (DatasetError, ValueError, OSError) as e:
        raise ApiError(f"the data {name!r} is not available: {e}", 404) from None
    sample = train.images[:2000].astype(np.float64) / 255.0
    mean = sample.mean(axis=(0, 2, 3)).tolist()
    std = np.maximum(sample.std(axis=(0, 2, 3)), 1e-3).tolist()
    doc = (train, test, mean, std)
    datasets.put(doc, name)
    return doc


# ----------------------------------------------------------------------------- routes


def install(app: FastAPI, ex: Explorer) -> None:
    datasets = _LRU(2)
    data_lock = threading.Lock()

    @app.post("/api/playground/summary")
    def playground_summary(spec: PlaySpec) -> dict[str, Any]:
        try:
            return summarize(spec)
        except LayerError as e:
            raise layer_error(e, spec) from None

    @app.post("/api/playground/train")
    def playground_train(req: TrainRequest) -> dict[str, Any]:
        try:
            doc = summarize(req.spec)
        except LayerError as e:
            raise layer_error(e, req.spec) from None
        if not doc["trainable"]:
            raise ApiError(
                f"the model is too large to train here: {doc['total_params']:,} parameters and "
                f"{doc['total_macs']:,} multiply-accumulates per image (limits {MAX_TRAIN_PARAMS:,} and "
                f"{MAX_TRAIN_MACS:,})",
                422,
            )
        with data_lock:  # load (or fail) before the job starts, so that a missing dataset is a plain 404
            _data(ex, req.spec.data, datasets)
        title = f"{len(req.spec.layers)} layers on {req.spec.data}, {req.steps} steps"
        job = ex.jobs.start("train", title, req.steps, lambda job: _train(job, ex, req, datasets), TRAIN_SECONDS)
        return job.snapshot()
