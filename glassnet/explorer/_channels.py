"""The **What a channel sees** view: feature visualisations of a layer's channels, and the test
images that excite a channel most.

* ``GET  /api/channels/layers``  the layers that can be asked about (maps [C, h, w] and vectors [C]) and the default
* ``POST /api/channels``         one image per channel by gradient ascent on the input
  (:func:`glassnet.visualize.feature_visualization`). Channels already in the cache come back at
  once; the others are computed by a background job (``GET /api/jobs/{id}`` for progress, one
  feature job at a time, time-limited and cancellable with ``DELETE``).
* ``GET  /api/channels/top``     the top-k test images of a checkpoint for one channel: the
  channel's mean activation on a sample of the test set, and where its strongest unit is (the
  receptive field of that unit on the image).

The cache lives under the explorer's cache directory: ``features/<weights>/<layer>/<settings>/``
holds ``c<channel>.png`` (the image) and ``c<channel>.json`` (its numbers), written atomically;
``<weights>`` names the model by its checkpoint's SHA-256 (or the zoo model and its weights), so
a retrained checkpoint never reads another's pictures. Every path is built here from hashes and
integers; nothing a request sends becomes part of a path.
"""

from __future__ import annotations

import hashlib
import json
import re
import time
from pathlib import Path
from typing import Any

import numpy as np
from fastapi import FastAPI, Query
from pydantic import Field

from .. import visualize as V
from ..autograd import Tensor, no_grad
from ..checkpoint import atomic_write_bytes, atomic_write_text
from ..visualize._common import LayerProbe, inspection_mode
from . import _images as img
from . import _models as mdl
from . import _sources as src
from ._jobs import Job
from .app import _LRU, ApiError, Explorer, _bad

MAX_CHANNELS = 64
MAX_STEPS = 512
MAX_SIZE = 160
FEATURE_SECONDS = 600.0
#: Test images whose activations are measured for the top-k, at most.
MAX_SAMPLE = 5000
TOP_SECONDS = 90.0


#: Activations of test-image samples, per model and layer: the last few (a layer of 1,280 channels on
#: 5,000 images is 75 MB).
SAMPLES = _LRU(3)


class ChannelsRequest(src.SourceFields):
    layer: str | None = Field(None, min_length=1, max_length=200)
    channels: list[int] | None = Field(None, min_length=1, max_length=MAX_CHANNELS)
    steps: int = Field(128, ge=1, le=MAX_STEPS)
    size: int | None = Field(None, ge=8, le=MAX_SIZE)
    param: str = Field("fourier", pattern="^(fourier|pixel)$")
    lr: float = Field(0.05, gt=0, le=1.0)
    seed: int = Field(0, ge=0, le=2**31 - 1)


def default_layer(layers: list[dict[str, Any]], subject: src.Subject) -> str | None:
    """The first convolution (its images can be compared with its filters), else the first map layer."""
    for L in layers:
        if L["kind"] == "Conv2d":
            return L["name"]
    return next((L["name"] for L in layers if L["spatial"]), layers[0]["name"] if layers else None)


def default_size(subject: src.Subject) -> int:
    h = subject.input_shape[1]
    return int(min(max(h, 8), 96 if h > 96 else MAX_SIZE))


def _safe(name: str) -> str:
    """A directory name for a layer: its readable part and a hash (so different names never meet)."""
    readable = re.sub(r"[^A-Za-z0-9_-]", "_", name)[:40] or "layer"
    return f"{readable}-{hashlib.sha256(name.encode()).hexdigest()[:10]}"


class FeatureCache:
    """Feature visualisations on disk, one PNG and one JSON per channel, written atomically."""

    def __init__(self, root: Path | None) -> None:
        self.root = root

    def folder(self, subject: src.Subject, layer: str, settings: dict[str, Any]) -> Path | None:
        if self.root is None:
            return None
        tag = "{param}-s{size}-n{steps}-lr{lr:g}-seed{seed}".format(**settings)
        return self.root / "features" / subject.key / _safe(layer) / tag

    def read(self, folder: Path | None, channel: int) -> dict[str, Any] | None:
        if folder is None:
            return None
        png, meta = folder / f"c{channel}.png", folder / f"c{channel}.json"
        try:
            data = png.read_bytes()
            doc = json.loads(meta.read_text(encoding="utf-8"))
        except (OSError, ValueError):
            return None
        if not isinstance(doc, dict) or doc.get("channel") != channel or not data.startswith(b"\x89PNG"):
            return None
        import base64

        doc["png"] = "data:image/png;base64," + base64.b64encode(data).decode("ascii")
        doc["cached"] = True
        return doc

    def write(self, folder: Path | None, channel: int, png: bytes, doc: dict[str, Any]) -> None:
        if folder is None:
            return
        try:
            folder.mkdir(parents=True, exist_ok=True)
            atomic_write_bytes(folder / f"c{channel}.png", png)  # the picture first: a JSON means both exist
            atomic_write_text(folder / f"c{channel}.json", json.dumps(doc))
        except OSError:
            pass  # a read-only or full cache: the result still goes to the page


def _thin(values: np.ndarray, n: int = 64) -> list[float]:
    v = np.asarray(values, dtype=np.float64)
    if v.size > n:
        v = v[np.round(np.linspace(0, v.size - 1, n)).astype(int)]
    return [float(f"{x:.5g}") for x in v]


def picture(image: np.ndarray) -> np.ndarray:
    """[C, H, W] in [0, 1] → uint8 (H, W) or (H, W, 3)."""
    a = np.clip(np.rint(np.asarray(image, dtype=np.float64) * 255), 0, 255).astype(np.uint8)
    return a[0] if a.shape[0] == 1 else np.transpose(a[:3], (1, 2, 0))


def visualize_channel(model: Any, subject: src.Subject, layer: str, channel: int, settings: dict[str, Any],
                      progress: Any) -> tuple[bytes, dict[str, Any]]:  # fmt: skip
    """One channel's feature visualisation: the PNG and its numbers."""
    t0 = time.perf_counter()
    fv = V.feature_visualization(
        model,
        layer,
        channel,
        steps=settings["steps"],
        size=settings["size"],
        lr=settings["lr"],
        param=settings["param"],
        normalize=(subject.mean, subject.std),
        in_channels=subject.input_shape[0],
        rng=settings["seed"] * 100_003 + channel,
        progress=progress,
    )
    acts = np.asarray(fv.activations, dtype=np.float64)
    doc = {
        "channel": channel,
        "layer": layer,
        "start": float(acts[0]),
        "end": float(acts[-1]),
        "best": float(acts.max()),
        "history": _thin(acts),
        "steps": int(acts.size),
        "size": settings["size"],
        "seconds": round(time.perf_counter() - t0, 3),
    }
    return img.png_bytes(picture(fv.image)), doc


def _run_features(job: Job, subject: src.Subject, layer: str, todo: list[int], settings: dict[str, Any],
                  cache: FeatureCache, folder: Path | None) -> None:  # fmt: skip
    job.update(lambda r: r.setdefault("items", {}))
    job.tick(phase="copying the model")
    model = subject.fresh_model()  # a private copy: the shared model stays free for the other views
    for done, channel in enumerate(todo):

        def progress(step: int, steps: int, channel: int = channel) -> None:
            job.tick(channel=channel, step=step, steps=steps)

        png, doc = visualize_channel(model, subject, layer, channel, settings, progress)
        cache.write(folder, channel, png, doc)
        import base64

        entry = dict(doc, png="data:image/png;base64," + base64.b64encode(png).decode("ascii"), cached=False)
        job.update(lambda r, channel=channel, entry=entry: r["items"].__setitem__(str(channel), entry))
        job.advance(done + 1)
    job.message = f"{len(todo)} channels computed"


def _layer_rf(ex: Explorer, subject: src.Subject, layer: str) -> Any:
    from ..autograd.graph import trace

    key = ("rf", subject.key, layer)
    hit = ex.layer_lists.peek(key)
    if hit is None:
        with subject.lock:
            graph = trace(subject.model, subject.input_shape)
        hit = next((c.rf for c in graph.calls if c.name == layer), None)
        ex.layer_lists.put(hit, key)
    return hit


def activations_on_sample(ex: Explorer, subject: src.Subject, layer: str, sample: int) -> dict[str, Any]:
    """Per test image of a sample: each channel's mean activation at ``layer``, and where each channel's
    strongest unit is (cached per model, layer and sample size)."""
    assert subject.loaded is not None
    ds = ex.test_set(subject.loaded)
    n = min(sample, len(ds))
    key = ("acts", subject.key, layer, n, ds.name, str(ex.roots.data_dir))
    hit = SAMPLES.peek(key)
    if hit is not None:
        return hit
    if tuple(ds.images.shape[1:]) != tuple(subject.input_shape):
        raise ApiError(f"the test images are {list(ds.images.shape[1:])}; the model takes {list(subject.input_shape)}")
    idx = np.arange(len(ds)) if n == len(ds) else np.sort(np.random.default_rng(0).choice(len(ds), n, replace=False))
    mean, std = subject.mean[None, :, None, None], subject.std[None, :, None, None]
    deadline = src.Deadline(TOP_SECONDS, "measuring the test images' activations", "choose a smaller sample")
    means, peaks, where = [], [], []
    with subject.lock, inspection_mode(subject.model), no_grad(), LayerProbe(subject.model, layer, stop=True) as probe:
        for start in range(0, n, 200):
            chunk = idx[start : start + 200]
            xb = ((ds.images[chunk].astype(np.float64) / 255.0 - mean) / std).astype(np.float32)
            probe.run(lambda xb=xb: subject.model(Tensor(xb)))
            a = np.asarray(probe.output.data, dtype=np.float64)  # type: ignore[union-attr]
            if a.ndim == 4:
                flat = a.reshape(a.shape[0], a.shape[1], -1)
                means.append(flat.mean(axis=2))
                peaks.append(flat.max(axis=2))
                where.append(np.argmax(flat, axis=2))
            else:
                means.append(a)
                peaks.append(a)
                where.append(np.zeros(a.shape, dtype=np.int64))
            deadline()
    out = {
        "indices": idx,
        "means": np.concatenate(means).astype(np.float32),
        "peaks": np.concatenate(peaks).astype(np.float32),
        "where": np.concatenate(where).astype(np.int32),
        "map": tuple(a.shape[2:]) if a.ndim == 4 else None,
        "dataset": ds,
    }
    SAMPLES.put(out, key)
    return out


# ----------------------------------------------------------------------------- routes


def install(app: FastAPI, ex: Explorer) -> None:
    cache = FeatureCache(ex.cache_dir)

    @app.get("/api/channels/layers")
    def channel_layers(
        checkpoint: str | None = Query(None, min_length=1, max_length=4096),
        model: str | None = Query(None, min_length=1, max_length=64),
        pretrained: bool = False,
    ) -> dict[str, Any]:
        subject = ex.subject(src.SourceFields(checkpoint=checkpoint, model=model, pretrained=pretrained))
        layers = ex.layers_of(subject)
        return {
            "source": subject.describe(),
            "layers": layers,
            "default": default_layer(layers, subject),
            "size": default_size(subject),
            "limits": {"channels": MAX_CHANNELS, "steps": MAX_STEPS, "size": MAX_SIZE},
        }

    @app.post("/api/channels")
    def channels(req: ChannelsRequest) -> dict[str, Any]:
        subject = ex.subject(req)
        layers = ex.layers_of(subject)
        layer = req.layer or default_layer(layers, subject)
        if layer is None:
            raise ApiError("the model has no layer to visualise", 422)
        entry = ex.check_layer(subject, layer, "feature visualisation")
        n = entry["channels"]
        chans = req.channels if req.channels is not None else list(range(min(n, 16)))
        bad = [c for c in chans if not 0 <= c < n]
        if bad:
            raise ApiError(f"channel {bad[0]} is out of range: layer {layer!r} has {n} channels (0..{n - 1})")
        chans = list(dict.fromkeys(chans))
        size = req.size or default_size(subject)
        if not entry["spatial"] and size != subject.input_shape[1]:
            size = subject.input_shape[1]  # a dense layer needs the model's own input size
        settings = {"steps": req.steps, "size": size, "param": req.param, "lr": req.lr, "seed": req.seed}
        folder = cache.folder(subject, layer, settings)
        items: dict[str, Any] = {}
        todo = []
        for c in chans:
            hit = cache.read(folder, c)
            if hit is not None:
                items[str(c)] = hit
            else:
                todo.append(c)
        doc: dict[str, Any] = {
            "source": subject.describe(),
            "layer": layer,
            "kind": entry["kind"],
            "shape": entry["shape"],
            "channels": chans,
            "settings": settings,
            "cached": len(chans) - len(todo),
            "items": items,
            "job": None,
        }
        if todo:
            key = (subject.key, layer, tuple(todo), tuple(sorted(settings.items())))
            job = ex.jobs.start(
                "features",
                f"{layer}: {len(todo)} channels, {settings['steps']} steps at {size}×{size}",
                len(todo),
                lambda job: _run_features(job, subject, layer, todo, settings, cache, folder),
                FEATURE_SECONDS,
                key=key,
            )
            doc["job"] = job.snapshot(with_result=False)
        return doc

    @app.get("/api/channels/top")
    def channel_top(
        layer: str = Query(..., min_length=1, max_length=200),
        channel: int = Query(..., ge=0),
        checkpoint: str | None = Query(None, min_length=1, max_length=4096),
        model: str | None = Query(None, min_length=1, max_length=64),
        pretrained: bool = False,
        k: int = Query(9, ge=1, le=32),
        sample: int = Query(1000, ge=10, le=MAX_SAMPLE),
    ) -> dict[str, Any]:
        subject = ex.subject(src.SourceFields(checkpoint=checkpoint, model=model, pretrained=pretrained))
        if subject.loaded is None:
            raise ApiError(
                "the images that excite a channel come from a checkpoint's test set; zoo models have none", 404
            )
        entry = ex.check_layer(subject, layer, "the top images")
        if channel >= entry["channels"]:
            n = entry["channels"]
            raise ApiError(f"channel {channel} is out of range: layer {layer!r} has {n} channels (0..{n - 1})")
        try:
            acts = activations_on_sample(ex, subject, layer, sample)
        except (ValueError, TypeError) as e:
            raise _bad(e, 422) from None
        ds = acts["dataset"]
        means = acts["means"][:, channel]
        order = np.argsort(-means, kind="stable")[:k]
        rf = _layer_rf(ex, subject, layer) if acts["map"] is not None else None
        h, w = subject.input_shape[1:]
        items = []
        for j in order:
            i = int(acts["indices"][j])
            chw = ds.images[i]
            view = chw[0] if chw.shape[0] == 1 else np.transpose(chw, (1, 2, 0))
            item: dict[str, Any] = {
                "index": i,
                "label": int(ds.labels[i]),
                "class": ds.classes[int(ds.labels[i])],
                "mean": float(means[j]),
                "peak": float(acts["peaks"][j, channel]),
                "png": img.png_data_url(view),
            }
            if acts["map"] is not None and rf is not None:
                y, x = divmod(int(acts["where"][j, channel]), acts["map"][1])
                item["unit"] = [y, x]
                item["box"] = mdl.rf_box(rf, y, x, (h, w))
            items.append(item)
        col = acts["means"][:, channel]
        return {
            "layer": layer,
            "channel": channel,
            "dataset": ds.name,
            "sample": int(len(acts["indices"])),
            "objective": "mean activation of the channel over its map" if acts["map"] else "the unit's activation",
            "stats": {
                "mean": float(col.mean()),
                "min": float(col.min()),
                "max": float(col.max()),
                "std": float(col.std()),
            },
            "map": list(acts["map"]) if acts["map"] else None,
            "items": items,
        }
