"""Models for the explorer: the zoo, checkpoints, summaries and recorded forward passes.

:func:`trace` runs one forward pass and records the output of every layer, in the
order the layers run, whatever the wiring (chains, residual blocks), with forward
hooks. Each output's receptive field on the input (top-left corner of unit (0, 0),
size, jump) comes from the model's shape-only trace (:func:`glassnet.trace`), so that a
unit at (y, x) sees input rows ``start_h + y·jump_h`` … ``+ size_h − 1`` (clipped to the image).
"""

from __future__ import annotations

import threading
from collections import OrderedDict
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from .. import models as zoo
from ..autograd import Tensor, no_grad
from ..autograd.graph import ReceptiveField
from ..autograd.graph import trace as glassnet_trace
from ..checkpoint import Checkpoint, CheckpointError, CheckpointMeta, load_checkpoint
from ..inspect import summary
from ..nn import Module, Sequential
from ..nn.init import skip_init

#: Layers whose output is shown under each heading.
STAGES = {
    "Conv2d": "after convolution",
    "ReLU": "after ReLU",
    "LeakyReLU": "after activation",
    "Tanh": "after activation",
    "Sigmoid": "after activation",
    "MaxPool2d": "after pooling",
    "AvgPool2d": "after pooling",
    "AdaptiveAvgPool2d": "after pooling",
    "BatchNorm2d": "after batch norm",
    "BatchNorm1d": "after batch norm",
    "LocalResponseNorm": "after normalisation",
    "Linear": "after dense layer",
    "Flatten": "flattened",
    "Dropout": "after dropout (identity at inference)",
}


def zoo_models() -> list[str]:
    return sorted(zoo.MODELS)


def default_input_shape(name: str) -> tuple[int, int, int]:
    return tuple(int(d) for d in zoo.default_input_shape(name))  # type: ignore[return-value]


def build_zoo_model(name: str, shape_only: bool = False, **kwargs: Any) -> Module:
    """Build a zoo model; ``shape_only`` skips the random initialisation (weights stay zero,
    :func:`glassnet.nn.init.skip_init`), enough for a summary and much faster for the large
    models (VGG-16: 138 M parameters)."""
    if not shape_only:
        return zoo.get_model(name, **kwargs)
    with skip_init():
        return zoo.get_model(name, **kwargs)


# ----------------------------------------------------------------------------- summaries


def summary_dict(model: Module, input_shape: tuple[int, ...], title: str) -> dict[str, Any]:
    """The summary table as JSON: rows, totals, input and output shapes."""
    s = summary(model, input_shape)
    modules = dict(model.named_modules())

    def detail(name: str) -> str:
        m = modules.get(name)
        try:
            return m.extra_repr() if m is not None else ""
        except Exception:  # a module whose repr needs state it lacks
            return ""

    rows = [
        {
            "name": r.name,
            "kind": r.kind,
            "output_shape": [int(d) for d in r.output_shape[1:]],
            "params": int(r.params),
            "trainable": int(r.trainable),
            "macs": int(r.macs),
            "rf": [int(v) for v in r.rf],
            "jump": [int(v) for v in r.jump],
            "detail": detail(r.name),
        }
        for r in s.rows
    ]
    return {
        "title": title,
        "input_shape": [int(d) for d in s.input_shape[1:]],
        "output_shape": [int(d) for d in s.output_shape[1:]],
        "rows": rows,
        "total_params": int(s.total_params),
        "trainable_params": int(s.trainable_params),
        "total_macs": int(s.total_macs),
    }


# ----------------------------------------------------------------------------- checkpoints


@dataclass
class LoadedCheckpoint:
    path: Path
    checkpoint: Checkpoint
    model: Module
    input_shape: tuple[int, int, int]
    classes: list[str]
    mean: np.ndarray
    std: np.ndarray
    lock: threading.RLock = field(default_factory=threading.RLock)

    @property
    def meta(self) -> CheckpointMeta:
        return self.checkpoint.meta

    def describe(self) -> dict[str, Any]:
        m = self.meta
        return {
            "architecture": m.architecture,
            "arch_kwargs": m.arch_kwargs,
            "classes": self.classes,
            "input_shape": list(self.input_shape),
            "normalization": {"mean": self.mean.tolist(), "std": self.std.tolist()},
            "epoch": m.epoch,
            "step": m.step,
            "dataset": m.dataset,
            "extra": {k: v for k, v in m.extra.items() if isinstance(v, str | int | float | bool)},
        }


class CheckpointCache:
    """Loaded checkpoints by (path, modification time, size); a few at a time."""

    def __init__(self, size: int = 4) -> None:
        self._items: OrderedDict[tuple[str, int, int], LoadedCheckpoint] = OrderedDict()
        self._size = size
        self._lock = threading.Lock()

    def get(self, path: Path) -> LoadedCheckpoint:
        st = path.stat()
        key = (str(path), st.st_mtime_ns, st.st_size)
        with self._lock:
            if key in self._items:
                self._items.move_to_end(key)
                return self._items[key]
        loaded = load(path)
        with self._lock:
            self._items[key] = loaded
            while len(self._items) > self._size:
                self._items.popitem(last=False)
        return loaded


def load(path: Path) -> LoadedCheckpoint:
    """Load a checkpoint and rebuild its model (raises ``CheckpointError`` with the reason)."""
    ckpt = load_checkpoint(path)
    try:
        model = ckpt.build_model()
    except CheckpointError:
        raise
    except (ValueError, TypeError, KeyError) as e:
        raise CheckpointError(f"{path.name}: cannot rebuild the model ({e})") from None
    model.eval()
    meta = ckpt.meta
    shape = meta.input_shape
    if not shape:
        shape = default_input_shape(str(meta.architecture))
    shape = tuple(int(d) for d in shape)
    if len(shape) != 3:
        raise CheckpointError(f"{path.name}: input_shape must be [C, H, W], got {list(shape)}")
    c = shape[0]
    norm = meta.normalization or {}
    mean = np.asarray(norm.get("mean", [0.0] * c), dtype=np.float64).reshape(-1)
    std = np.asarray(norm.get("std", [1.0] * c), dtype=np.float64).reshape(-1)
    if mean.size == 1:
        mean = np.repeat(mean, c)
    if std.size == 1:
        std = np.repeat(std, c)
    if mean.size != c or std.size != c or np.any(std <= 0):
        raise CheckpointError(f"{path.name}: normalization does not fit {c} channels: mean {mean}, std {std}")
    classes = [str(x) for x in ckpt.classes]
    return LoadedCheckpoint(path, ckpt, model, shape, classes, mean, std)  # type: ignore[arg-type]


# ----------------------------------------------------------------------------- tracing


def rf_json(rf: ReceptiveField) -> dict[str, Any]:
    return {"start": list(rf.start), "size": list(rf.size), "jump": list(rf.jump), "whole": rf.whole}


@dataclass
class Record:
    """One layer's call in a recorded forward pass. ``input`` is kept for convolutions only (the
    array of the layer before it, not a copy, in a chain), with the ``module``, to explain a unit."""

    name: str
    kind: str
    output: np.ndarray
    rf: ReceptiveField
    composite: bool
    input: np.ndarray | None = None
    module: Module | None = field(default=None, repr=False)


def _shown(name: str, m: Module) -> bool:
    """Every module's output is recorded except the model's own and plain chains' (their last child's)."""
    return bool(name) and not isinstance(m, Sequential)


def trace(model: Module, x: np.ndarray) -> tuple[np.ndarray, list[Record]]:
    """Run ``model`` on ``x`` (N, C, H, W) and record every layer's output with its receptive field.

    A forward hook on each module records its output as the call returns, so composite
    modules (residual blocks) come after their children; Sequential containers are not
    recorded (their output is their last child's). The receptive fields are those of the
    same calls in the model's shape-only trace.
    """
    graph = glassnet_trace(model, tuple(x.shape), batched=True)
    fields = [c.rf for c in graph.calls if _shown(c.name, c.module)]
    from ..nn import Conv2d

    outputs: list[tuple[str, Module, np.ndarray, np.ndarray | None]] = []
    thread = threading.get_ident()
    # id of a recorded output tensor → (the tensor, kept alive so that its id is not reused, its array):
    # a convolution's input is usually the output of the layer before, and then shares its array
    seen: dict[int, tuple[Tensor, np.ndarray]] = {}

    def record(name: str) -> Any:
        def hook(m: Module, args: Any, out: Any) -> None:
            if isinstance(out, Tensor) and threading.get_ident() == thread:
                inp = None
                if isinstance(m, Conv2d) and args and isinstance(args[0], Tensor):
                    hit = seen.get(id(args[0]))
                    inp = hit[1] if hit is not None and hit[0] is args[0] else np.asarray(args[0].numpy())
                a = np.asarray(out.numpy())
                seen[id(out)] = (out, a)
                outputs.append((name, m, a, inp))

        return hook

    handles = [m.register_forward_hook(record(name)) for name, m in model.named_modules() if _shown(name, m)]
    try:
        with no_grad():
            out = model(Tensor(x))
    finally:
        for h in handles:
            h.remove()
    if len(fields) != len(outputs):  # the forward depends on the data: fall back to the fields by name
        by_name = {c.name: c.rf for c in graph.calls}
        fields = [by_name.get(name, graph.output_rf or ReceptiveField()) for name, _, _, _ in outputs]
    pairs = zip(outputs, fields, strict=True)
    records = [
        Record(name, type(m).__name__, a, rf, bool(m._modules), inp, m if inp is not None else None)
        for (name, m, a, inp), rf in pairs
    ]
    return np.asarray(out.numpy()), records


def first_conv(model: Module) -> tuple[str, Any] | None:
    from ..nn import Conv2d

    for name, m in model.named_modules():
        if isinstance(m, Conv2d):
            return name, m
    return None


def softmax(z: np.ndarray) -> np.ndarray:
    z = np.asarray(z, dtype=np.float64)
    e = np.exp(z - z.max())
    return e / e.sum()


# ----------------------------------------------------------------------------- inputs and results


def prepare_input(
    pixels: np.ndarray,
    shape: tuple[int, int, int],
    mean: np.ndarray,
    std: np.ndarray,
    fit: str = "crop",
    invert: bool = False,
) -> tuple[np.ndarray, np.ndarray]:
    """Turn uint8 (H, W) / (H, W, 3) into the model's input (1, C, H, W) float32, normalised.

    ``fit='crop'``: centre-crop to the input's aspect ratio, then resize.
    ``fit='digit'``: MNIST-style: crop to the ink, scale it into a box of 20/28 of the
    side, centre it on its centre of mass (for drawings, bright strokes on dark).
    Returns the input and the uint8 picture it was made from (what the model sees).
    """
    from PIL import Image

    from ._images import to_grey

    c, h, w = shape
    if c == 1:
        px = to_grey(pixels)
    elif c == 3:
        px = pixels if pixels.ndim == 3 else np.repeat(pixels[:, :, None], 3, axis=2)
    else:
        raise ValueError(f"images can only be fed to models with 1 or 3 input channels, this one takes {c}")
    if invert:
        px = 255 - px
    if fit == "digit":
        px = _fit_digit(px, h, w)
    elif px.shape[:2] != (h, w):
        im = Image.fromarray(px)
        scale = max(h / im.height, w / im.width)
        nw, nh = max(w, round(im.width * scale)), max(h, round(im.height * scale))
        im = im.resize((nw, nh), Image.Resampling.BILINEAR, reducing_gap=3.0)
        left, top = (nw - w) // 2, (nh - h) // 2
        px = np.asarray(im.crop((left, top, left + w, top + h)), dtype=np.uint8)
    chw = px[None] if px.ndim == 2 else np.transpose(px, (2, 0, 1))
    x = (chw.astype(np.float64) / 255.0 - mean[:, None, None]) / std[:, None, None]
    return x[None].astype(np.float32), np.ascontiguousarray(px)


def _fit_digit(px: np.ndarray, h: int, w: int) -> np.ndarray:
    from PIL import Image

    grey = px if px.ndim == 2 else px.mean(axis=2)
    ink = grey > 0.2 * max(float(grey.max()), 1.0)
    if not ink.any():
        return np.asarray(Image.fromarray(px).resize((w, h), Image.Resampling.BILINEAR), dtype=np.uint8)
    ys, xs = np.nonzero(ink)
    crop = px[ys.min() : ys.max() + 1, xs.min() : xs.max() + 1]
    ch, cw = crop.shape[:2]
    box = max(1, round(min(h, w) * 20 / 28))
    scale = box / max(ch, cw)
    nh, nw = max(1, round(ch * scale)), max(1, round(cw * scale))
    small = np.asarray(Image.fromarray(crop).resize((nw, nh), Image.Resampling.LANCZOS), dtype=np.float64)
    g = small if small.ndim == 2 else small.mean(axis=2)
    total = g.sum()
    cy = (g.sum(axis=1) @ np.arange(nh)) / total if total > 0 else nh / 2
    cx = (g.sum(axis=0) @ np.arange(nw)) / total if total > 0 else nw / 2
    top = int(np.clip(round(h / 2 - cy - 0.5), 0, h - nh))
    left = int(np.clip(round(w / 2 - cx - 0.5), 0, w - nw))
    out = np.zeros((h, w, *px.shape[2:]), dtype=np.float64)
    out[top : top + nh, left : left + nw] = small
    return np.clip(np.rint(out), 0, 255).astype(np.uint8)


def _stats(a: np.ndarray) -> dict[str, float]:
    return {
        "min": float(a.min()),
        "max": float(a.max()),
        "mean": float(a.mean()),
        "zero_fraction": float(np.mean(a == 0)),
    }


def feature_grid(a: np.ndarray, max_channels: int, budget: int) -> dict[str, Any]:
    """The picture of one layer's output for sample 0: (C, h, w) maps as a tile grid, (F,) as a strip."""
    from ._images import colourise, png_data_url, tile_grid

    signed = bool(a.min() < 0)
    scale = float(np.abs(a).max())
    if a.ndim == 3:
        c, h, w = a.shape
        n = int(min(c, max_channels, max(1, budget // max(h * w, 1))))
        tiles = colourise(a[:n], signed, scale)
        pic, layout = tile_grid(tiles)
        layout.update(kind="maps", shown=n, total=c)
    else:
        f = a.shape[0]
        cols = min(f, 32)
        rows = -(-f // cols)
        flat = np.zeros(rows * cols)
        flat[:f] = a
        rgb = colourise(flat.reshape(rows, cols), signed, scale)
        if rows * cols > f:
            rgb.reshape(-1, 3)[f:] = 255
        pic = rgb
        layout = {"kind": "vector", "cols": cols, "rows": rows, "shown": f, "total": f, "width": cols, "height": rows}
    return {"png": png_data_url(pic), "layout": layout, "signed": signed, "scale": scale}


def describe_activations(
    loaded: LoadedCheckpoint,
    logits: np.ndarray,
    records: list[Record],
    max_channels: int,
    top_k: int,
    budget: int,
) -> dict[str, Any]:
    """Predictions, first-layer filters and every recorded layer's picture and numbers."""
    from ._images import colourise, png_data_url, tile_grid

    z = np.asarray(logits, dtype=np.float64).reshape(logits.shape[0], -1)[0]
    if loaded.meta.task == "binary" and z.size == 1:  # one logit: P(classes[1]) = σ(z), P(classes[0]) = 1 − σ(z)
        z = np.array([-z[0], z[0]])  # shown as the logits of class 0 and class 1
        p = np.array([1 / (1 + np.exp(z[1])), 1 / (1 + np.exp(-z[1]))])
    else:
        p = softmax(z)
    order = np.argsort(-p, kind="stable")[: min(top_k, p.size)]
    names = loaded.classes if len(loaded.classes) == p.size else [str(i) for i in range(p.size)]
    predictions = [
        {"index": int(i), "class": names[int(i)], "probability": float(p[i]), "logit": float(z[i])} for i in order
    ]
    layers = []
    for i, r in enumerate(records):
        a = np.asarray(r.output)[0]
        entry = {
            "index": i,
            "name": r.name,
            "kind": r.kind,
            "stage": STAGES.get(r.kind, "after residual block" if r.composite else f"after {r.kind}"),
            "shape": [int(d) for d in a.shape],
            "composite": r.composite,
            "stats": _stats(a),
            "rf": rf_json(r.rf),
        }
        if a.ndim in (1, 3):
            entry["picture"] = feature_grid(a, max_channels, budget)
        layers.append(entry)
    filters = None
    first = first_conv(loaded.model)
    if first is not None:
        name, conv = first
        wgt = np.asarray(conv.weight.data, dtype=np.float64)
        n = min(wgt.shape[0], MAX_FILTERS)
        k = wgt[:n]
        if k.shape[1] == 3:
            m = np.abs(k).max(axis=(1, 2, 3), keepdims=True)
            m[m == 0] = 1
            tiles = np.clip(np.rint((k / m * 0.5 + 0.5) * 255), 0, 255).astype(np.uint8).transpose(0, 2, 3, 1)
        else:
            tiles = colourise(k[:, 0], True, float(np.abs(k[:, 0]).max()))
        pic, layout = tile_grid(tiles)
        layout.update(kind="filters", shown=n, total=int(wgt.shape[0]))
        filters = {
            "name": name,
            "shape": [int(d) for d in wgt.shape],
            "png": png_data_url(pic),
            "layout": layout,
            "weights": np.round(k, 4).tolist() if k.size <= 20_000 else None,
            "bias": np.round(conv.bias.data[:n], 4).tolist() if conv.bias is not None else None,
            "coloured": bool(k.shape[1] == 3),
        }
    return {
        "checkpoint": loaded.describe(),
        "predictions": predictions,
        "probabilities": [float(v) for v in p],
        "classes": names,
        "layers": layers,
        "filters": filters,
    }


#: At most this many first-layer filters are drawn.
MAX_FILTERS = 96


def unit_info(r: Record, layer: int, c: int, y: int, x: int, input_hw: tuple[int, int]) -> dict[str, Any]:
    """One unit of a recorded layer: its value and its receptive field on the input (clipped)."""
    a = np.asarray(r.output)[0]
    if a.ndim == 3:
        ch, hh, ww = a.shape
        if not (c < ch and y < hh and x < ww):
            raise ValueError(f"unit ({c}, {y}, {x}) is outside the {ch}×{hh}×{ww} output of {r.name}")
        value = float(a[c, y, x])
    elif a.ndim == 1:
        if c >= a.shape[0]:
            raise ValueError(f"unit {c} is outside the {a.shape[0]} outputs of {r.name}")
        value, y, x = float(a[c]), 0, 0
    else:
        raise ValueError(f"layer {r.name} has output shape {a.shape}: units cannot be picked")
    return {
        "layer": layer,
        "name": r.name,
        "kind": r.kind,
        "unit": [c, y, x] if a.ndim == 3 else [c],
        "value": value,
        "box": rf_box(r.rf, y, x, input_hw),
        "rf": rf_json(r.rf),
    }


#: A unit's computation shows at most this many input channels, and this many window numbers in all.
MAX_UNIT_CHANNELS = 64
MAX_UNIT_NUMBERS = 20_000


def conv_of(records: list[Record], layer: int) -> tuple[int, Record | None]:
    """The convolution a unit of ``records[layer]`` comes from: that layer, or for a ReLU right after
    a convolution (same shape) the convolution before it; and the ReLU record (or None)."""
    r = records[layer]
    if r.kind == "ReLU" and layer > 0 and records[layer - 1].module is not None:
        prev = records[layer - 1]
        if prev.output.shape == r.output.shape:
            return layer - 1, r
    if r.module is None:
        raise ValueError(
            f"layer {layer} ({r.name}) is a {r.kind}: only the units of a convolution (or of the ReLU right "
            "after one) can be broken down into windows and kernels"
        )
    nxt = records[layer + 1] if layer + 1 < len(records) else None
    relu = nxt if nxt is not None and nxt.kind == "ReLU" and nxt.output.shape == r.output.shape else None
    return layer, relu


def conv_unit(records: list[Record], layer: int, c: int, y: int, x: int) -> dict[str, Any]:
    """How unit (c, y, x) of a convolution was computed: for every input channel its window of the
    convolution's input (zeros in the padding), its kernel slice and their summed products; the
    bias; the total, Σ channels + bias, beside the value the forward pass recorded; and the ReLU
    of the total when a ReLU follows. At most :data:`MAX_UNIT_CHANNELS` channels (and
    :data:`MAX_UNIT_NUMBERS` window numbers) are listed; the others' sums are in the total."""
    from ..functional._args import conv_padding
    from ._kernels import window_at

    at, relu = conv_of(records, layer)
    r = records[at]
    conv, xin = r.module, r.input
    assert conv is not None and xin is not None
    out = np.asarray(r.output)[0]
    ch, hh, ww = out.shape
    if not (c < ch and y < hh and x < ww):
        raise ValueError(f"unit ({c}, {y}, {x}) is outside the {ch}×{hh}×{ww} output of {r.name}")
    image = np.asarray(xin)[0]
    kh, kw = conv.kernel_size
    (sh, sw), (dh, dw) = conv.stride, conv.dilation
    (pt, pb), (pl, pr) = conv_padding(conv.padding, (kh, kw), (sh, sw), (dh, dw), image.shape[1:])
    per_group = conv.in_channels // conv.groups
    first = (c // (conv.out_channels // conv.groups)) * per_group
    kernel = np.asarray(conv.weight.data[c], dtype=np.float64)
    if conv.flip:
        kernel = kernel[:, ::-1, ::-1]
    y0, x0 = y * sh - pt, x * sw - pl
    window, inside = window_at(image[first : first + per_group], y0, x0, (kh, kw), (dh, dw))
    sums = (window * kernel).sum(axis=(1, 2))
    bias = float(conv.bias.data[c]) if conv.bias is not None else 0.0
    total = float(sums.sum() + bias)
    recorded = float(out[c, y, x])
    shown = int(min(per_group, MAX_UNIT_CHANNELS, max(1, MAX_UNIT_NUMBERS // (kh * kw))))
    channels = [
        {"channel": first + i, "window": window[i].tolist(), "kernel": kernel[i].tolist(), "sum": float(sums[i])}
        for i in range(shown)
    ]
    doc: dict[str, Any] = {
        "layer": at,
        "name": r.name,
        "unit": [c, y, x],
        "kernel_size": [kh, kw],
        "stride": [sh, sw],
        "padding": [[pt, pb], [pl, pr]],
        "dilation": [dh, dw],
        "groups": conv.groups,
        "flip": bool(conv.flip),
        "origin": [int(y0), int(x0)],
        "inside": inside.tolist(),
        "in_channels": per_group,
        "input_channels": [first, first + per_group],
        "shown": shown,
        "channels": channels,
        "rest_sum": float(sums[shown:].sum()),
        "note": None
        if shown == per_group
        else f"the first {shown} of {per_group} input channels are listed; the other {per_group - shown} "
        f"channels' sums (together {float(sums[shown:].sum()):.6g}) are in the total",
        "channel_sum": float(sums.sum()),
        "bias": bias,
        "total": total,
        "recorded": recorded,
        "difference": abs(total - recorded),
        "relu": None,
    }
    if relu is not None:
        doc["relu"] = {
            "name": relu.name,
            "value": max(total, 0.0),
            "recorded": float(np.asarray(relu.output)[0, c, y, x]),
        }
    return doc


def rf_box(rf: ReceptiveField, y: int, x: int, input_hw: tuple[int, int]) -> dict[str, Any]:
    """Input rows [top, bottom) × columns [left, right) that unit (y, x) sees, clipped to the
    image (``unclipped`` keeps the window as it reaches into the padding)."""
    h, w = input_hw
    if rf.whole:
        return {"top": 0, "left": 0, "bottom": h, "right": w, "whole": True, "unclipped": [0, 0, h, w]}
    top = int(rf.start[0] + y * rf.jump[0])
    left = int(rf.start[1] + x * rf.jump[1])
    bottom, right = top + rf.size[0], left + rf.size[1]
    return {
        "top": max(top, 0),
        "left": max(left, 0),
        "bottom": min(bottom, h),
        "right": min(right, w),
        "whole": False,
        "unclipped": [top, left, int(bottom), int(right)],
    }
