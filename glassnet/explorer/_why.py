"""The **Why this prediction** view: attribution maps with the numbers behind them.

Routes:

* ``POST /api/why``                  saliency, SmoothGrad, guided backprop, Grad-CAM and occlusion of one
                                     image for the predicted or a chosen class (:mod:`glassnet.visualize`)
* ``GET  /api/why/layers``           the layers Grad-CAM can use, and its default (the last spatial map)
* ``GET  /api/runs/{name}/metrics``  a run's ``metrics.json`` (confusion matrix, per-class numbers)
* ``POST /api/why/confusion``        the test images of one confusion-matrix cell of a checkpoint, each with
                                     its Grad-CAM for the true and for the predicted class

Every map comes as an overlay on the model's input and as the map alone (PNG data URLs),
beside the numbers it is made of: Grad-CAM's weights α_c and its grid, the occlusion drops,
the largest gradients and where they are.
"""

from __future__ import annotations

import json
import time
from typing import Any, Literal

import numpy as np
from fastapi import FastAPI, Query
from pydantic import Field

from .. import visualize as V
from ..autograd import Tensor, no_grad
from ..visualize._common import LayerProbe, inspection_mode
from . import _images as img
from . import _sources as src
from ._runs import AccessError
from .app import _LRU, ApiError, Explorer, ImageRef, _bad

METHODS = ("saliency", "smoothgrad", "guided", "gradcam", "occlusion")
#: Occlusion evaluates at most this many windows per request.
MAX_WINDOWS = 400
#: Time limits (seconds) of the slow computations.
ATTRIBUTION_SECONDS = 90.0
EVALUATION_SECONDS = 120.0
#: A test set is evaluated for the confusion view only up to this size.
MAX_EVALUATED = 20_000


#: Test-set predictions of the last few checkpoints looked at (the confusion view).
EVALUATIONS = _LRU(4)


class WhyRequest(src.SourceFields):
    image: ImageRef
    invert: bool = False
    fit: Literal["auto", "crop", "digit"] = "auto"
    target: int | None = Field(None, ge=0, description="class index; default the predicted class")
    methods: list[Literal["saliency", "smoothgrad", "guided", "gradcam", "occlusion"]] = Field(
        default_factory=lambda: list(METHODS), min_length=1, max_length=5
    )
    layer: str | None = Field(None, min_length=1, max_length=200, description="Grad-CAM's layer")
    smoothgrad_n: int = Field(16, ge=1, le=50)
    smoothgrad_sigma: float | None = Field(None, ge=0, le=100)
    occlusion_window: int | None = Field(None, ge=1, le=1024)
    occlusion_stride: int | None = Field(None, ge=1, le=1024)
    seed: int = Field(0, ge=0, le=2**31 - 1)


class ConfusionRequest(src.SourceFields):
    true_class: int = Field(..., ge=0)
    predicted_class: int = Field(..., ge=0)
    offset: int = Field(0, ge=0)
    limit: int = Field(8, ge=1, le=16)
    layer: str | None = Field(None, min_length=1, max_length=200)


def _r(v: float, digits: int = 6) -> float:
    """A float rounded to ``digits`` significant digits (JSON stays short)."""
    v = float(v)
    if v == 0 or not np.isfinite(v):
        return v if np.isfinite(v) else 0.0
    return float(f"{v:.{digits}g}")


def _grid(a: np.ndarray, digits: int = 4) -> list[list[float]]:
    return [[_r(v, digits) for v in row] for row in np.asarray(a, dtype=np.float64)]


def _robust_scale(amap: np.ndarray) -> float:
    """The 99.5th percentile of a non-negative map (its largest values saturate), else its max."""
    s = float(np.percentile(amap, 99.5)) if amap.size else 0.0
    return s if s > 0 else float(amap.max(initial=0.0)) or 1.0


def _top_pixels(amap: np.ndarray, k: int = 5) -> list[dict[str, Any]]:
    flat = np.argsort(-amap, axis=None, kind="stable")[:k]
    ys, xs = np.unravel_index(flat, amap.shape)
    return [{"y": int(y), "x": int(x), "value": _r(amap[y, x])} for y, x in zip(ys, xs, strict=True)]


def predictions(logits: np.ndarray, classes: list[str], k: int = 5) -> tuple[np.ndarray, list[dict[str, Any]]]:
    z = np.asarray(logits, dtype=np.float64).reshape(-1)
    p = np.exp(z - z.max())
    p /= p.sum()
    order = np.argsort(-p, kind="stable")[: min(k, p.size)]
    names = classes if len(classes) == p.size else [f"class {i}" for i in range(p.size)]
    top = [{"index": int(i), "class": names[int(i)], "probability": float(p[i]), "logit": float(z[i])} for i in order]
    return p, top


def _gradient_result(
    kind: str, grad: np.ndarray, view: np.ndarray, formula: str, extra: dict[str, Any] | None = None
) -> dict[str, Any]:
    """Saliency-type result: |∂z/∂x| (max over channels) over the image, and its numbers."""
    amap = np.abs(grad).max(axis=0)
    scale = _robust_scale(amap)
    c, y, x = np.unravel_index(int(np.argmax(np.abs(grad))), grad.shape)
    out = {
        "method": kind,
        "formula": formula,
        "overlay": img.png_data_url(img.overlay(view, amap, False, scale)),
        "map": img.png_data_url(img.heat(amap, False, scale)),
        "shape": [int(d) for d in grad.shape],
        "scale": _r(scale),
        "stats": {
            "max_abs": _r(np.abs(grad).max()),
            "at": {"channel": int(c), "y": int(y), "x": int(x)},
            "mean_abs": _r(np.abs(grad).mean()),
            "positive_fraction": _r(float(np.mean(grad > 0)), 4),
            "l2": _r(float(np.sqrt(np.sum(np.asarray(grad, dtype=np.float64) ** 2)))),
        },
        "top": _top_pixels(amap),
        "colour": f"|∂z/∂x|, max over channels: 0 … {_r(scale, 3)} (99.5th percentile; larger values saturate)",
    }
    if extra:
        out.update(extra)
    return out


def _cam_numbers(model: Any, x: np.ndarray, target: int, layer: str) -> dict[str, Any]:
    """Grad-CAM's ingredients at ``layer``: A, ∂z_t/∂A, α_c = mean ∂z_t/∂A_c and each channel's share."""
    with inspection_mode(model), LayerProbe(model, layer, leaf=True) as probe:
        logits = probe.run(lambda: model(Tensor(x)))
        a = probe.output
        assert a is not None
        logits[0, target].backward()
        grad = np.zeros_like(a.data) if a.grad is None else np.asarray(a.grad)
    acts = np.asarray(a.data, dtype=np.float64)[0]
    alpha = np.asarray(grad, dtype=np.float64)[0].mean(axis=(1, 2))
    raw = np.einsum("c,chw->hw", alpha, acts)
    share = alpha * acts.mean(axis=(1, 2))  # each channel's contribution to the mean of the raw map
    order = np.argsort(-np.abs(share), kind="stable")[:8]
    return {
        "raw": raw,
        "alpha_top": [
            {"channel": int(c), "alpha": _r(alpha[c]), "mean_activation": _r(acts[c].mean()), "share": _r(share[c])}
            for c in order
        ],
        "channels": int(acts.shape[0]),
        "alpha_positive": int(np.sum(alpha > 0)),
        "raw_mean": _r(raw.mean()),
    }


def _gradcam(subject: src.Subject, x: np.ndarray, view: np.ndarray, target: int, layer: str) -> dict[str, Any]:
    model = subject.model
    cam = V.grad_cam(model, x, target, layer)[0]
    numbers = _cam_numbers(model, x, target, layer)
    h, w = x.shape[2:]
    up = V.upsample(cam, (h, w))
    scale = float(cam.max()) or 1.0
    cy, cx = np.unravel_index(int(np.argmax(cam)), cam.shape)
    return {
        "method": "gradcam",
        "formula": "ReLU(Σ_c α_c·A_c), α_c = mean over positions of ∂z_t/∂A_c; A = output of the layer",
        "layer": layer,
        "overlay": img.png_data_url(img.overlay(view, up, False, scale)),
        "map": img.png_data_url(img.heat(up, False, scale)),
        "cam_png": img.png_data_url(img.heat(cam, False, scale)),
        "shape": [int(cam.shape[0]), int(cam.shape[1])],
        "cam": _grid(cam) if cam.size <= 4096 else None,
        "scale": _r(scale),
        "max": {"value": _r(cam.max()), "y": int(cy), "x": int(cx)},
        "relu_zeroed": _r(float(np.mean(numbers["raw"] < 0)), 4),
        "alpha_top": numbers["alpha_top"],
        "channels": numbers["channels"],
        "alpha_positive": numbers["alpha_positive"],
        "colour": f"Grad-CAM: 0 … {_r(scale, 3)} (its maximum), at {cam.shape[0]}×{cam.shape[1]}, upsampled",
    }


def _occlusion(
    subject: src.Subject, x: np.ndarray, view: np.ndarray, target: int, window: int | None, stride: int | None
) -> dict[str, Any]:
    h, w = x.shape[2:]
    k = window or max(2, min(h, w) // 7)
    s = stride or (max(1, k // 2) if h * w <= 64 * 64 else k)  # overlapping windows on small inputs only
    if k > min(h, w):
        raise ApiError(f"occlusion window {k} is larger than the input ({h}×{w})")
    rows, cols = (h - k) // s + 1, (w - k) // s + 1
    if rows * cols > MAX_WINDOWS:
        raise ApiError(
            f"occlusion window {k}, stride {s} on a {h}×{w} input means {rows * cols:,} windows; "
            f"the limit is {MAX_WINDOWS}: choose a larger stride or window"
        )
    deadline = src.Deadline(ATTRIBUTION_SECONDS, "occlusion", "choose a larger stride")
    drop = V.occlusion(subject.model, x, target, window=k, stride=s, baseline=0.0, progress=deadline)[0]
    total, count = np.zeros((h, w)), np.zeros((h, w))
    for i in range(rows):
        for j in range(cols):
            total[i * s : i * s + k, j * s : j * s + k] += drop[i, j]
            count[i * s : i * s + k, j * s : j * s + k] += 1
    amap = np.where(count > 0, total / np.maximum(count, 1), 0.0)
    scale = float(np.abs(drop).max()) or 1.0
    with inspection_mode(subject.model), no_grad():
        z = subject.model(Tensor(x)).numpy()[0].astype(np.float64)
    p = np.exp(z - z.max())
    p /= p.sum()
    i, j = np.unravel_index(int(np.argmax(drop)), drop.shape)
    a, b = np.unravel_index(int(np.argmin(drop)), drop.shape)
    return {
        "method": "occlusion",
        "formula": "p_t(x) − p_t(x with the window set to the baseline 0, i.e. the normalisation's mean)",
        "overlay": img.png_data_url(img.overlay(view, amap, True, scale)),
        "map": img.png_data_url(img.heat(amap, True, scale)),
        "window": k,
        "stride": s,
        "grid": [int(rows), int(cols)],
        "windows": int(rows * cols),
        "p_base": _r(p[target]),
        "drop": _grid(drop),
        "scale": _r(scale),
        "max_drop": {"value": _r(drop[i, j]), "row": int(i), "col": int(j), "box": [int(i * s), int(j * s), k, k]},
        "min_drop": {"value": _r(drop[a, b]), "row": int(a), "col": int(b), "box": [int(a * s), int(b * s), k, k]},
        "colour": f"drop of p_t: blue < 0 < red, ±{_r(scale, 3)}; a pixel shows the mean drop of the windows over it",
    }


def explain(ex: Explorer, subject: src.Subject, x: np.ndarray, view: np.ndarray, req: WhyRequest) -> dict[str, Any]:
    """Predictions and every requested map for input ``x`` (1, C, H, W) of ``subject``."""
    model = subject.model
    with inspection_mode(model), no_grad():
        logits = model(Tensor(x)).numpy()
    if logits.ndim != 2:
        raise ApiError(f"the model returns shape {list(logits.shape)}, not class scores [N, classes]", 422)
    p, top = predictions(logits[0], subject.classes)
    k = p.size
    predicted = int(np.argmax(p))
    t = predicted if req.target is None else int(req.target)
    if t >= k:
        raise ApiError(f"target {t} is out of range: the model has {k} classes (0..{k - 1})")
    layers = ex.layers_of(subject)
    spatial = [L for L in layers if L["spatial"]]
    layer = req.layer
    if "gradcam" in req.methods:
        if layer is None:
            layer = src.default_cam_layer(layers)
            if layer is None:
                raise ApiError("the model has no layer with a spatial output [N, C, h, w]: no Grad-CAM", 422)
        else:
            ex.check_layer(subject, layer, "Grad-CAM (a layer with a map output [C, h, w])", spatial=True)
    results: dict[str, Any] = {}
    for method in req.methods:
        t0 = time.perf_counter()
        if method in results:
            continue
        if method == "saliency":
            g = V.saliency(model, x, t)[0]
            res = _gradient_result("saliency", g, view, "∂z_t/∂x: how much each input value moves the class score")
        elif method == "smoothgrad":
            xs = x.reshape(-1)
            sigma = req.smoothgrad_sigma if req.smoothgrad_sigma is not None else 0.15 * float(xs.max() - xs.min())
            deadline = src.Deadline(ATTRIBUTION_SECONDS, "SmoothGrad", "choose fewer samples")
            g = V.smoothgrad(model, x, t, n=req.smoothgrad_n, sigma=sigma, rng=req.seed, progress=deadline)[0]
            res = _gradient_result(
                "smoothgrad",
                g,
                view,
                "(1/n) Σ_k ∂z_t/∂x at x + ε_k, ε_k ~ N(0, σ²): the saliency averaged over noisy copies",
                {"n": req.smoothgrad_n, "sigma": _r(sigma), "seed": req.seed},
            )
        elif method == "guided":
            g = V.guided_backprop(model, x, t)[0]
            res = _gradient_result(
                "guided",
                g,
                view,
                "∂z_t/∂x with ReLU's backward changed to pass only positive gradients where the input was positive",
                {"gradient_png": img.png_data_url(img.signed_image(g))},
            )
        elif method == "gradcam":
            assert layer is not None
            res = _gradcam(subject, x, view, t, layer)
        else:
            res = _occlusion(subject, x, view, t, req.occlusion_window, req.occlusion_stride)
        res["seconds"] = round(time.perf_counter() - t0, 3)
        results[method] = res
    names = subject.classes if len(subject.classes) == k else [f"class {i}" for i in range(k)]
    return {
        "source": subject.describe(),
        "predictions": top,
        "predicted": predicted,
        "target": {
            "index": t,
            "class": names[t],
            "probability": float(p[t]),
            "logit": float(logits[0, t]),
            "is_predicted": t == predicted,
        },
        "classes": names,
        "layers": [{k2: L[k2] for k2 in ("name", "kind", "shape")} for L in spatial],
        "layer": layer,
        "results": results,
    }


# ----------------------------------------------------------------------------- confusion matrix


def read_metrics(ex: Explorer, name: str) -> dict[str, Any]:
    """RUN/metrics.json, checked: classes, a square confusion matrix of counts (rows: true class)."""
    try:
        run = ex.roots.run_dir(name)
        path = ex.roots.inside(run / "metrics.json")
    except AccessError as e:
        raise ApiError(str(e), e.status) from None
    if not path.is_file():
        raise ApiError(f"run {name!r} has no metrics.json (glassnet train writes it after the final test)", 404)
    try:
        doc = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as e:
        raise ApiError(f"{name}/metrics.json cannot be read: {e}", 422) from None
    conf = doc.get("confusion") if isinstance(doc, dict) else None
    try:
        m = np.asarray(conf, dtype=np.float64)
    except (TypeError, ValueError):
        m = np.zeros((0,))
    if m.ndim != 2 or m.shape[0] != m.shape[1] or m.shape[0] == 0 or not np.all(np.isfinite(m)) or np.any(m < 0):
        raise ApiError(f"{name}/metrics.json has no square confusion matrix of counts", 422)
    k = m.shape[0]
    classes = doc.get("classes")
    if not (isinstance(classes, list) and len(classes) == k and all(isinstance(c, str) for c in classes)):
        classes = [str(i) for i in range(k)]

    def num(v: Any) -> float | None:
        return float(v) if isinstance(v, int | float) and not isinstance(v, bool) and np.isfinite(v) else None

    ckpts = []
    for p in sorted(run.glob("*.safetensors")):
        try:
            target = ex.roots.inside(p)
        except AccessError:
            continue
        if target.is_file():
            ckpts.append(ex.roots.checkpoint_id(target))
    return {
        "name": name,
        "classes": classes,
        "confusion": m.astype(np.int64).tolist(),
        "accuracy": num(doc.get("accuracy")),
        "loss": num(doc.get("loss")),
        "top5": num(doc.get("top5")),
        "total": int(m.sum()),
        "errors": int(m.sum() - np.trace(m)),
        "checkpoints": ckpts,
    }


def evaluate_test_set(ex: Explorer, subject: src.Subject) -> tuple[Any, np.ndarray, np.ndarray]:
    """(test set, predicted class per image, softmax probabilities) of a checkpoint, cached."""
    assert subject.loaded is not None
    ds = ex.test_set(subject.loaded)
    key = ("eval", subject.key, ds.name, len(ds), str(ex.roots.data_dir))
    hit = EVALUATIONS.peek(key)
    if hit is not None:
        return ds, hit[0], hit[1]
    n = len(ds)
    if tuple(ds.images.shape[1:]) != tuple(subject.input_shape):
        shape = "×".join(map(str, ds.images.shape[1:]))
        raise ApiError(f"the test images are {shape}; the model takes {'×'.join(map(str, subject.input_shape))}", 422)
    if n > MAX_EVALUATED:
        raise ApiError(f"the test set has {n:,} images; the explorer evaluates at most {MAX_EVALUATED:,}", 422)
    deadline = src.Deadline(EVALUATION_SECONDS, "evaluating the test set")
    probs = []
    mean, std = subject.mean[None, :, None, None], subject.std[None, :, None, None]
    with subject.lock, inspection_mode(subject.model), no_grad():
        for start in range(0, n, 250):
            xb = ((ds.images[start : start + 250].astype(np.float64) / 255.0 - mean) / std).astype(np.float32)
            z = subject.model(Tensor(xb)).numpy().astype(np.float64)
            z -= z.max(axis=1, keepdims=True)
            e = np.exp(z)
            probs.append((e / e.sum(axis=1, keepdims=True)).astype(np.float32))
            deadline()
    p = np.concatenate(probs)
    pred = np.argmax(p, axis=1)
    EVALUATIONS.put((pred, p), key)
    return ds, pred, p


def confusion_cell(ex: Explorer, subject: src.Subject, req: ConfusionRequest) -> dict[str, Any]:
    ds, pred, p = evaluate_test_set(ex, subject)
    k = p.shape[1]
    for name, v in (("true_class", req.true_class), ("predicted_class", req.predicted_class)):
        if v >= k:
            raise ApiError(f"{name} {v} is out of range: the model has {k} classes (0..{k - 1})")
    labels = np.asarray(ds.labels, dtype=np.int64)
    conf = np.bincount(labels * k + pred, minlength=k * k).reshape(k, k)
    idx = np.flatnonzero((labels == req.true_class) & (pred == req.predicted_class))
    page = idx[req.offset : req.offset + req.limit]
    layers = ex.layers_of(subject)
    layer = req.layer or src.default_cam_layer(layers)
    if req.layer is not None:
        ex.check_layer(subject, req.layer, "Grad-CAM (a layer with a map output [C, h, w])", spatial=True)
    names = subject.classes if len(subject.classes) == k else [str(i) for i in range(k)]
    items = []
    if len(page) and layer is not None:
        mean, std = subject.mean[None, :, None, None], subject.std[None, :, None, None]
        xb = ((ds.images[page].astype(np.float64) / 255.0 - mean) / std).astype(np.float32)
        with subject.lock:
            cam_true = V.grad_cam(subject.model, xb, np.full(len(page), req.true_class), layer)
            cam_pred = V.grad_cam(subject.model, xb, np.full(len(page), req.predicted_class), layer)
        h, w = xb.shape[2:]
        up_true, up_pred = V.upsample(cam_true, (h, w)), V.upsample(cam_pred, (h, w))
        for j, i in enumerate(page):
            chw = ds.images[int(i)]
            view = chw[0] if chw.shape[0] == 1 else np.transpose(chw, (1, 2, 0))
            entry: dict[str, Any] = {"index": int(i), "png": img.png_data_url(view)}
            for tag, cls, cam, up in (
                ("true", req.true_class, cam_true[j], up_true[j]),
                ("predicted", req.predicted_class, cam_pred[j], up_pred[j]),
            ):
                scale = float(cam.max()) or 1.0
                entry[tag] = {
                    "class": names[cls],
                    "index": int(cls),
                    "probability": float(p[int(i), cls]),
                    "overlay": img.png_data_url(img.overlay(view, up, False, scale)),
                    "cam_max": _r(cam.max()),
                    "cam_mean": _r(cam.mean()),
                }
            items.append(entry)
    return {
        "checkpoint": subject.name,
        "dataset": ds.name,
        "true": {"index": req.true_class, "class": names[req.true_class]},
        "predicted": {"index": req.predicted_class, "class": names[req.predicted_class]},
        "count": int(len(idx)),
        "indices": idx[:2000].astype(int).tolist(),
        "offset": req.offset,
        "items": items,
        "layer": layer,
        "confusion": conf.tolist(),
        "accuracy": float(np.trace(conf) / max(1, conf.sum())),
        "classes": names,
    }


# ----------------------------------------------------------------------------- routes


def install(app: FastAPI, ex: Explorer) -> None:
    @app.get("/api/why/layers")
    def why_layers(
        checkpoint: str | None = Query(None, min_length=1, max_length=4096),
        model: str | None = Query(None, min_length=1, max_length=64),
        pretrained: bool = False,
    ) -> dict[str, Any]:
        subject = ex.subject(src.SourceFields(checkpoint=checkpoint, model=model, pretrained=pretrained))
        layers = ex.layers_of(subject)
        return {
            "source": subject.describe(),
            "layers": [L for L in layers if L["spatial"]],
            "default": src.default_cam_layer(layers),
            "classes": subject.classes,
        }

    @app.post("/api/why")
    def why(req: WhyRequest) -> dict[str, Any]:
        subject = ex.subject(req)
        if req.image.which() == "test" and subject.loaded is None:
            raise ApiError("a test image needs a checkpoint (its test set); zoo models take a sample or an upload")
        pixels, label = ex.image_pixels(req.image, subject.loaded)
        fit = req.fit if req.fit != "auto" else ("digit" if req.image.drawing is not None else "crop")
        try:
            x, view = src.prepare(subject, pixels, fit, req.invert)
        except ValueError as e:
            raise _bad(e) from None
        with subject.lock:
            try:
                doc = explain(ex, subject, x, view, req)
            except (ValueError, TypeError) as e:
                raise _bad(e, 422) from None
        doc["label"] = label
        doc["input"] = {"png": img.png_data_url(view), "height": int(x.shape[2]), "width": int(x.shape[3])}
        return doc

    @app.get("/api/runs/{name}/metrics")
    def run_metrics(name: str) -> dict[str, Any]:
        return read_metrics(ex, name)

    @app.post("/api/why/confusion")
    def why_confusion(req: ConfusionRequest) -> dict[str, Any]:
        if req.checkpoint is None:
            raise ApiError("the confusion view needs a 'checkpoint' (its test set)")
        subject = ex.subject(req)
        try:
            return confusion_cell(ex, subject, req)
        except (ValueError, TypeError) as e:
            raise _bad(e, 422) from None
