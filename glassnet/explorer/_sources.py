"""What the new views look at: a model (a checkpoint, a pretrained zoo model or a zoo model
with random weights) with what is known about its input, and the image fed to it.

A request names its model with ``checkpoint`` (an id from ``/api/checkpoints``) or with
``model`` (a zoo name) and ``pretrained``. :func:`subject` turns that into a
:class:`Subject`: the model, its input shape, normalisation, class names, the lock that
serialises work on it, and a ``key`` that names its weights (a checkpoint's SHA-256) for
caches. Checkpoints stay confined to the runs directory (:class:`~._runs.Roots`).
"""

from __future__ import annotations

import hashlib
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
from pydantic import BaseModel, ConfigDict, Field

from ..nn import Module, Sequential
from . import _models as mdl

#: Zoo models built with random weights are kept at most this many at a time (VGG-16 is 550 MB).
ZOO_CACHE = 2


class SourceFields(BaseModel):
    """The model a request is about: ``checkpoint``, or ``model`` (+ ``pretrained``)."""

    model_config = ConfigDict(extra="forbid")
    checkpoint: str | None = Field(None, min_length=1, max_length=4096, description="a checkpoint id")
    model: str | None = Field(None, min_length=1, max_length=64, description="a zoo model name")
    pretrained: bool = Field(False, description="ImageNet weights (EfficientNet-Lite0/1/2)")


@dataclass
class Subject:
    """A model ready to look at, with its input conventions (duck-types ``LoadedCheckpoint`` where
    the explorer's image helpers need one)."""

    key: str
    title: str
    kind: str  # "checkpoint", "pretrained" or "zoo"
    model: Module
    input_shape: tuple[int, int, int]
    classes: list[str]
    mean: np.ndarray
    std: np.ndarray
    lock: threading.RLock
    loaded: mdl.LoadedCheckpoint | None = None
    resize_shorter: int | None = None
    rebuild: Callable[[], Module] | None = field(default=None, repr=False)
    #: the checkpoint id or zoo name, as the request gave it
    name: str = ""

    def class_name(self, i: int) -> str:
        return self.classes[i] if 0 <= i < len(self.classes) else f"class {i}"

    def describe(self) -> dict[str, Any]:
        return {
            "key": self.key,
            "title": self.title,
            "kind": self.kind,
            "name": self.name,
            "input_shape": list(self.input_shape),
            "classes": len(self.classes),
            "normalization": {"mean": self.mean.tolist(), "std": self.std.tolist()},
            "resize_shorter": self.resize_shorter,
            "has_test_set": self.loaded is not None,
        }

    def fresh_model(self, dtype: Any = np.float32) -> Module:
        """A private copy of the model (same weights) for work that runs long or changes dtype."""
        assert self.rebuild is not None
        model = self.rebuild()
        model.eval()
        if any(p.data.dtype != np.dtype(dtype) for p in model.parameters()):
            model.to(dtype)
        return model


class SourceError(ValueError):
    """A request that names no model, two, or one that cannot be had; ``status`` is the HTTP status."""

    def __init__(self, message: str, status: int = 400) -> None:
        super().__init__(message)
        self.status = status


_digests: dict[tuple[str, int, int], str] = {}
_digest_lock = threading.Lock()


def file_digest(path: Path) -> str:
    """SHA-256 of a file (hex), remembered by (path, modification time, size)."""
    st = path.stat()
    key = (str(path), st.st_mtime_ns, st.st_size)
    with _digest_lock:
        hit = _digests.get(key)
    if hit:
        return hit
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for chunk in iter(lambda: f.read(1 << 20), b""):
            h.update(chunk)
    digest = h.hexdigest()
    with _digest_lock:
        _digests[key] = digest
    return digest


def from_checkpoint(name: str, loaded: mdl.LoadedCheckpoint) -> Subject:
    return Subject(
        key="ckpt-" + file_digest(loaded.path)[:32],
        title=f"{loaded.meta.architecture} ({name})",
        kind="checkpoint",
        model=loaded.model,
        input_shape=loaded.input_shape,
        classes=list(loaded.classes),
        mean=loaded.mean,
        std=loaded.std,
        lock=loaded.lock,
        loaded=loaded,
        rebuild=loaded.checkpoint.build_model,
        name=name,
    )


class ZooCache:
    """Zoo models by (name, pretrained): built once, a few kept."""

    def __init__(self, size: int = ZOO_CACHE) -> None:
        self.size = size
        self.items: dict[tuple[str, bool], Subject] = {}
        self.order: list[tuple[str, bool]] = []
        self.lock = threading.Lock()

    def get(self, name: str, pretrained: bool) -> Subject:
        key_name = name.lower().replace("-", "_")
        if key_name not in mdl.zoo_models():
            raise SourceError(f"unknown model {name!r}; zoo models: {', '.join(mdl.zoo_models())}", 404)
        key = (key_name, bool(pretrained))
        with self.lock:  # one build at a time (a large zoo model takes seconds and memory)
            if key in self.items:
                self.order.remove(key)
                self.order.append(key)
                return self.items[key]
            subject = _build_zoo(key_name, pretrained)
            self.items[key] = subject
            self.order.append(key)
            while len(self.order) > self.size:
                self.items.pop(self.order.pop(0), None)
            return subject


def _build_zoo(name: str, pretrained: bool) -> Subject:
    from .. import models as zoo

    if pretrained:
        from ..models.pretrained import SOURCES, PretrainedError, checkpoint_metadata, get_pretrained

        if name not in SOURCES:
            raise SourceError(f"no pretrained weights for {name!r}; available for: {', '.join(sorted(SOURCES))}")
        try:
            model = get_pretrained(name)
        except PretrainedError as e:
            raise SourceError(str(e), 422) from None
        meta = checkpoint_metadata(name)
        norm = meta["normalization"]
        return Subject(
            key=f"pretrained-{name}-{SOURCES[name].sha256[:16]}",
            title=f"{name} (ImageNet weights)",
            kind="pretrained",
            model=model,
            input_shape=tuple(int(d) for d in meta["input_shape"]),  # type: ignore[arg-type]
            classes=list(meta["classes"]),
            mean=np.asarray(norm["mean"], dtype=np.float64),
            std=np.asarray(norm["std"], dtype=np.float64),
            lock=threading.RLock(),
            resize_shorter=int(meta["extra"]["preprocessing"]["resize_shorter"]),
            rebuild=lambda: get_pretrained(name),
            name=name,
        )
    shape = mdl.default_input_shape(name)

    def build() -> Module:
        return zoo.get_model(name, rng=0)

    model = build().eval()
    k = _num_classes(model, shape)
    c = shape[0]
    return Subject(
        key=f"zoo-{name}-seed0",
        title=f"{name} (random weights, seed 0)",
        kind="zoo",
        model=model,
        input_shape=shape,
        classes=[f"class {i}" for i in range(k)],
        mean=np.full(c, 0.5),
        std=np.full(c, 0.25),
        lock=threading.RLock(),
        rebuild=build,
        name=name,
    )


def _num_classes(model: Module, shape: tuple[int, int, int]) -> int:
    from ..autograd.graph import trace

    out = trace(model, shape).output_shape
    return int(out[-1]) if out else 1


def pretrained_models() -> list[str]:
    from ..models.pretrained import SOURCES

    return sorted(SOURCES)


# ----------------------------------------------------------------------------- layers


def map_layers(subject: Subject) -> list[dict[str, Any]]:
    """Every named module that runs once and outputs a map [N, C, h, w] or a vector [N, C],
    in the order the calls finish (from the model's shape-only trace): the layers a
    visualisation can be asked about."""
    from ..autograd.graph import trace

    with subject.lock:
        graph = trace(subject.model, subject.input_shape)
    counts: dict[str, int] = {}
    for c in graph.calls:
        counts[c.name] = counts.get(c.name, 0) + 1
    out = []
    for c in graph.calls:
        if not c.name or counts[c.name] != 1 or len(c.output_shape) not in (2, 4):
            continue
        if isinstance(c.module, Sequential):
            continue
        out.append(
            {
                "name": c.name,
                "kind": c.kind,
                "shape": [int(d) for d in c.output_shape[1:]],
                "channels": int(c.output_shape[1]),
                "spatial": len(c.output_shape) == 4,
            }
        )
    return out


def default_cam_layer(layers: list[dict[str, Any]]) -> str | None:
    """The last layer whose output is a map with more than one position (Grad-CAM's usual choice)."""
    best = None
    for L in layers:
        if L["spatial"] and L["shape"][1] * L["shape"][2] > 1:
            best = L["name"]
    return best


def layer_names_message(layers: list[dict[str, Any]], layer: str, what: str) -> str:
    import difflib

    names = [L["name"] for L in layers]
    close = difflib.get_close_matches(layer, names, n=3)
    hint = f" (did you mean {' or '.join(map(repr, close))}?)" if close else ""
    return f"unknown layer {layer!r} for {what}{hint}; valid layers: {', '.join(names)}"


# ----------------------------------------------------------------------------- inputs


def prepare(subject: Subject, pixels: np.ndarray, fit: str, invert: bool) -> tuple[np.ndarray, np.ndarray]:
    """The model input (1, C, H, W) float32 and the uint8 picture it was made from.

    A pretrained model gets its own preprocessing (shorter side resized to ``resize_shorter``,
    bicubic, then the centre crop); other models the explorer's centre crop and resize."""
    c, h, w = subject.input_shape
    if subject.resize_shorter and fit != "digit" and c == 3:
        from PIL import Image

        px = pixels if pixels.ndim == 3 else np.repeat(pixels[:, :, None], 3, axis=2)
        if invert:
            px = 255 - px
        im = Image.fromarray(px)
        scale = subject.resize_shorter / min(im.width, im.height)
        rw, rh = max(w, round(im.width * scale)), max(h, round(im.height * scale))
        im = im.resize((rw, rh), Image.Resampling.BICUBIC)
        left, top = (rw - w) // 2, (rh - h) // 2
        view = np.asarray(im.crop((left, top, left + w, top + h)), dtype=np.uint8)
        chw = np.transpose(view, (2, 0, 1)).astype(np.float64) / 255.0
        x = (chw - subject.mean[:, None, None]) / subject.std[:, None, None]
        return x[None].astype(np.float32), np.ascontiguousarray(view)
    return mdl.prepare_input(pixels, subject.input_shape, subject.mean, subject.std, fit, invert)


# ----------------------------------------------------------------------------- time limits


class TimeLimit(Exception):  # noqa: N818 - control flow, turned into a 503 answer
    """Raised by :class:`Deadline` when a computation runs past its time limit."""


class Deadline:
    """A ``progress(done, total)`` callback that stops a long computation at its time limit."""

    def __init__(self, seconds: float, what: str, hint: str = "") -> None:
        self.seconds, self.what, self.hint = seconds, what, hint
        self.end = time.monotonic() + seconds

    def __call__(self, done: int = 0, total: int = 0) -> None:
        if time.monotonic() > self.end:
            raise TimeLimit(
                f"{self.what} took longer than the limit of {self.seconds:g} s and was stopped"
                + (f"; {self.hint}" if self.hint else "")
            )
