"""The **Backprop, step by step** view: one image, its cross-entropy loss, and the gradient as
it flows back through every layer.

``POST /api/backprop`` runs the model in float64 (a private copy of the weights) with a
forward hook on every layer that keeps the layer's input and calls ``output.retain_grad()``,
then runs the backward pass with :class:`glassnet.autograd.graph.BackwardStepper`, one op at
a time. For every layer, in the order the gradient reaches it, it answers:

* ∂L/∂A, the gradient at the layer's output, as a picture (one tile per channel), with its
  numbers (min, max, mean |g|, ‖g‖₂, the fraction that is exactly zero) and a histogram;
* the ops whose backward ran for the layer, and where to read that backward function;
* each of the layer's parameters: ‖∂L/∂W‖, ‖W‖ and their ratio, and a histogram;
* a badge from a numerical gradient check of that layer alone. With g = ∂L/∂A fixed, the
  scalar s(a, W) = Σ g ⊙ layer(a; W) has gradient ∂s/∂a = the layer's backward applied to g
  (and ∂s/∂W = its parameter gradients). A few random coordinates of a and of each W are
  moved by ±ε and (s₊ − s₋)/2ε is compared with the backward's value: the chain-rule step
  of that layer, checked on its own. Coordinates are drawn among non-zero entries (where
  ReLU and max pooling have no kink); the whole-network ∂L/∂x is checked the same way on
  full forward passes.
"""

from __future__ import annotations

import threading
import time
from typing import Any, Literal

import numpy as np
from fastapi import FastAPI
from pydantic import Field

from .. import functional as F
from ..autograd import Tensor, no_grad
from ..autograd.graph import BackwardStepper, function_location
from ..nn import Module, Sequential
from . import _images as img
from . import _models as mdl
from . import _sources as src
from .app import _LRU, ApiError, Explorer, ImageRef, _bad

#: Finite-difference step and the largest relative error a passing check may have (float64: the
#: differences' rounding stays far below it; a wrong backward rule is off by far more, e.g. 1e-2 for 1 %).
EPS = 1e-6
TOLERANCE = 1e-4
#: The numerical checks of one request stop after this many seconds (remaining layers: "skipped").
CHECK_SECONDS = 30.0
#: The view copies the model into float64 and keeps every layer's input and gradient: at most this many parameters.
MAX_PARAMS = 30_000_000
#: Pixels of gradient pictures for the whole answer, and at most per layer.
PICTURE_BUDGET = 1_500_000
LAYER_BUDGET = 60_000


class BackpropRequest(src.SourceFields):
    image: ImageRef
    invert: bool = False
    fit: Literal["auto", "crop", "digit"] = "auto"
    target: int | None = Field(
        None, ge=0, description="the label in the loss; default: the test label or the prediction"
    )
    check: bool = True
    coords: int = Field(3, ge=1, le=10, description="random coordinates checked per tensor")
    seed: int = Field(0, ge=0, le=2**31 - 1)
    max_channels: int = Field(16, ge=1, le=64)


def _r(v: float, digits: int = 6) -> float:
    v = float(v)
    if not np.isfinite(v):
        return 0.0
    return float(f"{v:.{digits}g}") if v else 0.0


def _stats(g: np.ndarray) -> dict[str, float]:
    g = np.asarray(g, dtype=np.float64)
    return {
        "min": _r(g.min()),
        "max": _r(g.max()),
        "mean_abs": _r(np.abs(g).mean()),
        "l2": _r(np.sqrt(np.sum(g * g))),
        "zero_fraction": _r(float(np.mean(g == 0)), 4),
    }


class _Record:
    """One call of a layer in the forward pass: its input, its output (with ``retain_grad``)."""

    def __init__(self, name: str, module: Module, inp: Any, out: Tensor) -> None:
        self.name, self.module, self.input, self.output = name, module, inp, out


def _shown(name: str, m: Module) -> bool:
    return bool(name) and not isinstance(m, Sequential)


def forward_recorded(model: Module, x: np.ndarray) -> tuple[Tensor, Tensor, list[_Record]]:
    """Run ``model`` on ``x`` (float64, requires grad) recording every layer call (hooks removed after)."""
    records: list[_Record] = []
    thread = threading.get_ident()

    def hook(name: str) -> Any:
        def run(m: Module, args: tuple[Any, ...], out: Any) -> None:
            if threading.get_ident() != thread or not isinstance(out, Tensor):
                return
            if out.requires_grad:
                out.retain_grad()
            inp = args[0] if len(args) == 1 and isinstance(args[0], Tensor) else None
            records.append(_Record(name, m, inp, out))

        return run

    handles = [m.register_forward_hook(hook(n)) for n, m in model.named_modules() if _shown(n, m)]
    xt = Tensor(x, requires_grad=True)
    try:
        logits = model(xt)
    finally:
        for h in handles:
            h.remove()
    return xt, logits, records


def _pick(
    values: np.ndarray, k: int, gen: np.random.Generator, grad: np.ndarray | None = None
) -> list[tuple[int, ...]]:
    """``k`` random coordinates of ``values``: among entries that are non-zero (away from the kinks of
    ReLU and max pooling) and, given ``grad``, have a non-zero gradient (something to compare), as far
    as there are enough of them."""
    flat = np.asarray(values).reshape(-1)
    tiers = [flat != 0]
    if grad is not None:
        tiers.insert(0, (flat != 0) & (np.asarray(grad).reshape(-1) != 0))
    pool = np.arange(flat.size)
    for mask in tiers:
        cand = np.flatnonzero(mask)
        if cand.size >= k:
            pool = cand
            break
    chosen = gen.choice(pool, size=min(k, pool.size), replace=False)
    return [tuple(int(i) for i in np.unravel_index(int(c), values.shape)) for c in sorted(chosen)]


#: Machine epsilon of float64: the noise of a finite difference is about this times the size of the sum.
_ULP = float(np.finfo(np.float64).eps)


def _judge(rows: list[dict[str, Any]], noise: float) -> dict[str, Any]:
    """Badge of a set of checked coordinates: a coordinate passes when |a − n| ≤ tol·max(|a|, |n|) + noise
    (the finite difference's own rounding noise); "noise" when every gradient checked is too small
    (under 100× the noise) for the comparison to mean anything."""
    worst, worst_all, meaningful, failed = 0.0, 0.0, False, False
    for row in rows:
        a, n = row["analytic"], row["numeric"]
        big = max(abs(a), abs(n))
        ok = abs(a - n) <= TOLERANCE * big + noise
        failed |= not ok
        row["above_noise"] = bool(big > 100 * noise)
        meaningful |= row["above_noise"]
        row["error"] = _r(abs(a - n) / max(big, noise, 1e-300), 3)
        row["ok"] = bool(ok)
        worst_all = max(worst_all, row["error"])
        if row["above_noise"] or not ok:
            worst = max(worst, row["error"])
        row["analytic"], row["numeric"] = _r(a, 8), _r(n, 8)
    status = "fail" if failed else ("pass" if meaningful else "noise")
    # the largest error among the coordinates whose gradients stand above the noise (all, if none does)
    return {
        "status": status,
        "max_error": _r(worst if meaningful or failed else worst_all, 3),
        "noise": _r(noise, 3),
        "coords": rows,
    }


def check_layer(rec: _Record, k: int, gen: np.random.Generator) -> dict[str, Any]:
    """The numerical check of one layer's backward (see the module doc): coordinates of its input
    and of each of its own parameters (a block's children check theirs)."""
    m = rec.module
    g = None if rec.output.grad is None else np.asarray(rec.output.grad, dtype=np.float64)
    if rec.input is None:
        return {"status": "skipped", "message": "the layer takes more than one input"}
    if g is None:
        return {"status": "skipped", "message": "no gradient reached this layer's output"}
    a0 = np.array(rec.input.data, dtype=np.float64)
    params = [(n, p) for n, p in m._parameters.items() if p is not None and p.requires_grad]
    saved = [(p, p.grad) for _, p in params]

    def s(a: np.ndarray) -> float:
        with no_grad():
            return float(np.sum(g * np.asarray(m(Tensor(a)).data, dtype=np.float64)))

    try:
        for _, p in params:
            p.grad = None
        at = Tensor(a0.copy(), requires_grad=True)
        out = m(at)
        if tuple(out.shape) != g.shape:
            return {"status": "skipped", "message": "the layer's output shape differs on its own"}
        (out * Tensor(g)).sum().backward()
        da = np.zeros_like(a0) if at.grad is None else np.asarray(at.grad, dtype=np.float64)
        dps = {n: (np.zeros(p.shape) if p.grad is None else np.asarray(p.grad, dtype=np.float64)) for n, p in params}
    finally:
        for p, old in saved:
            p.grad = old
    # rounding noise of s = Σ g ⊙ out, as a finite difference sees it: each output carries about an ulp of
    # the sums it was made of (bounded here by the largest output), weighted by |g|
    o = np.abs(np.asarray(out.data, dtype=np.float64))
    noise = 8 * _ULP * float(np.sum(np.abs(g)) * o.max(initial=0.0) + np.sum(np.abs(g) * o)) / EPS

    def central(move: Any, eps: float) -> float:
        move(eps)
        plus = s(a0)
        move(-2 * eps)
        minus = s(a0)
        move(eps)
        return (plus - minus) / (2 * eps)

    def numeric(move: Any, analytic: float) -> tuple[float, str | None]:
        """Central difference; where it disagrees, once more with ε/100 (a kink within ±ε)."""
        num = central(move, EPS)
        if abs(analytic - num) <= TOLERANCE * max(abs(analytic), abs(num)) + noise:
            return num, None
        small = central(move, EPS / 100)
        if abs(analytic - small) <= TOLERANCE * max(abs(analytic), abs(small)) + 100 * noise:
            return small, f"a kink within ±{EPS:g}: checked with ε = {EPS / 100:g}"
        return num, None

    rows: list[dict[str, Any]] = []
    for idx in _pick(a0, k, gen, da):

        def move_input(d: float, idx: tuple[int, ...] = idx) -> None:
            a0[idx] += d

        num, note = numeric(move_input, float(da[idx]))
        rows.append({"tensor": "input", "index": list(idx), "analytic": float(da[idx]), "numeric": num, "note": note})
    for n, p in params:
        w = p.data
        for idx in _pick(np.asarray(dps[n]), k, gen):

            def move_weight(d: float, idx: tuple[int, ...] = idx, w: np.ndarray = w) -> None:
                w[idx] += d

            num, note = numeric(move_weight, float(dps[n][idx]))
            rows.append({"tensor": n, "index": list(idx), "analytic": float(dps[n][idx]), "numeric": num, "note": note})
    return _judge(rows, noise)


def check_input(model: Module, x: np.ndarray, target: int, dx: np.ndarray, k: int, gen: np.random.Generator) -> dict:
    """∂L/∂x of the whole network at ``k`` coordinates, by central differences of full forward passes."""

    def loss_at(xp: np.ndarray) -> float:
        with no_grad():
            return float(F.cross_entropy(model(Tensor(xp)), np.array([target])).data)

    base = loss_at(x)
    noise = 8 * _ULP * max(1.0, abs(base)) / EPS
    rows = []
    for idx in _pick(dx, k, gen):
        xp = x.copy()
        xp[idx] += EPS
        plus = loss_at(xp)
        xp[idx] -= 2 * EPS
        minus = loss_at(xp)
        rows.append(
            {"tensor": "x", "index": list(idx), "analytic": float(dx[idx]), "numeric": (plus - minus) / (2 * EPS)}
        )
    return _judge(rows, noise)


def backprop(
    model: Module,
    x: np.ndarray,
    target: int,
    classes: list[str],
    *,
    check: bool = True,
    coords: int = 3,
    seed: int = 0,
    max_channels: int = 16,
    check_seconds: float = CHECK_SECONDS,
) -> dict[str, Any]:
    """Everything the view shows for float64 ``model`` (eval mode), input ``x`` (1, C, H, W) and label ``target``."""
    x = np.asarray(x, dtype=np.float64)
    names = {id(p): n for n, p in model.named_parameters()}
    model.zero_grad()
    xt, logits, records = forward_recorded(model, x)
    if logits.ndim != 2:
        raise ValueError(f"the model returns shape {list(logits.shape)}, not class scores [N, classes]")
    k = logits.shape[1]
    if target >= k:
        raise ValueError(f"target {target} is out of range: the model has {k} classes (0..{k - 1})")
    loss = F.cross_entropy(logits, np.array([target]))
    stepper = BackwardStepper(loss, model=model)
    steps: list[dict[str, Any]] = []
    for step in stepper:
        steps.append(
            {
                "step": len(steps),
                "op": step.node.op,
                "module": step.node.module,
                "backward": function_location(step.node.backward_fn),
                "grad_norm": _r(np.sqrt(np.sum(np.asarray(step.grad_output, dtype=np.float64) ** 2))),
            }
        )
    z = np.asarray(logits.data, dtype=np.float64)[0]
    p = np.exp(z - z.max())
    p /= p.sum()
    dz = p.copy()
    dz[target] -= 1.0
    label_names = classes if len(classes) == k else [f"class {i}" for i in range(k)]
    order = np.argsort(-np.abs(dz), kind="stable")[:10]
    logits_grad = [
        {"index": int(i), "class": label_names[int(i)], "p": _r(p[i]), "onehot": int(i == target), "grad": _r(dz[i])}
        for i in order
    ]
    gen = np.random.default_rng(seed)
    deadline = time.monotonic() + check_seconds
    budget = max(4_000, min(LAYER_BUDGET, PICTURE_BUDGET // max(1, len(records) + 1)))
    counts: dict[str, int] = {}
    for r in records:
        counts[r.name] = counts.get(r.name, 0) + 1
    layers = []
    t_check = 0.0
    summary = {"pass": 0, "fail": 0, "noise": 0, "skipped": 0}
    for i in range(len(records) - 1, -1, -1):  # the order the gradient reaches them
        r = records[i]
        a = np.asarray(r.output.data, dtype=np.float64)[0]
        g = None if r.output.grad is None else np.asarray(r.output.grad, dtype=np.float64)[0]
        entry: dict[str, Any] = {
            "index": i,
            "name": r.name,
            "kind": type(r.module).__name__,
            "composite": bool(r.module._modules),
            "calls": counts[r.name],
            "shape": [int(d) for d in a.shape],
            "activation": {"min": _r(a.min()), "max": _r(a.max()), "mean": _r(a.mean())},
            "ops": [s for s in steps if s["module"] == r.name],
        }
        if g is not None:
            entry["grad"] = {"stats": _stats(g), "histogram": img.histogram(g)}
            if g.ndim in (1, 3):
                entry["grad"]["picture"] = mdl.feature_grid(g, max_channels, budget)
        params = []
        for pname, prm in r.module._parameters.items():
            if prm is None:
                continue
            full = names.get(id(prm), pname)
            gr = None if prm.grad is None else np.asarray(prm.grad, dtype=np.float64)
            wn = float(np.sqrt(np.sum(np.asarray(prm.data, dtype=np.float64) ** 2)))
            gn = 0.0 if gr is None else float(np.sqrt(np.sum(gr * gr)))
            params.append(
                {
                    "name": full,
                    "shape": [int(d) for d in prm.shape],
                    "grad_norm": _r(gn),
                    "weight_norm": _r(wn),
                    "ratio": _r(gn / wn) if wn > 0 else None,
                    "histogram": img.histogram(gr) if gr is not None else None,
                }
            )
        entry["params"] = params
        if check:
            if time.monotonic() > deadline:
                entry["check"] = {"status": "skipped", "message": f"the checks' time limit ({check_seconds:g} s)"}
            else:
                t0 = time.perf_counter()
                entry["check"] = check_layer(r, coords, gen)
                t_check += time.perf_counter() - t0
            summary[entry["check"]["status"]] += 1
        layers.append(entry)
    dx = np.asarray(xt.grad, dtype=np.float64)
    input_grad: dict[str, Any] = {
        "shape": [int(d) for d in dx.shape[1:]],
        "stats": _stats(dx[0]),
        "histogram": img.histogram(dx[0]),
        "picture": mdl.feature_grid(dx[0], max_channels, max(budget, 60_000)),
    }
    if check:
        t0 = time.perf_counter()
        input_grad["check"] = check_input(model, x, target, dx, coords, gen)
        t_check += time.perf_counter() - t0
    param_norms = [
        {"name": n, "grad_norm": _r(0.0 if q.grad is None else np.sqrt(np.sum(np.asarray(q.grad, np.float64) ** 2)))}
        for n, q in model.named_parameters()
    ]
    model.zero_grad()
    return {
        "loss": float(loss.data),
        "target": {"index": int(target), "class": label_names[target], "probability": float(p[target])},
        "predicted": {
            "index": int(np.argmax(p)),
            "class": label_names[int(np.argmax(p))],
            "probability": float(p.max()),
        },
        "logits_grad": logits_grad,
        "layers": layers,
        "input_grad": input_grad,
        "steps": len(steps),
        "loss_ops": [s for s in steps if s["module"] == ""],
        "param_norms": param_norms,
        "check": {
            "enabled": check,
            "eps": EPS,
            "tolerance": TOLERANCE,
            "coords": coords,
            "seed": seed,
            "seconds": round(t_check, 3),
            **summary,
        },
    }


# ----------------------------------------------------------------------------- routes


def install(app: FastAPI, ex: Explorer) -> None:
    models64 = _LRU(2)
    build_lock = threading.Lock()

    def float64_copy(subject: src.Subject) -> tuple[Module, threading.RLock]:
        hit = models64.peek(subject.key)
        if hit is not None:
            return hit
        with build_lock:
            hit = models64.peek(subject.key)
            if hit is None:
                hit = (subject.fresh_model(np.float64), threading.RLock())
                models64.put(hit, subject.key)
        return hit

    @app.post("/api/backprop")
    def backprop_route(req: BackpropRequest) -> dict[str, Any]:
        subject = ex.subject(req)
        n = subject.model.num_parameters()
        if n > MAX_PARAMS:
            raise ApiError(
                f"{subject.title} has {n:,} parameters; the step-by-step view computes in float64 and keeps every "
                f"layer's gradient, up to {MAX_PARAMS:,} parameters: choose a smaller model",
                422,
            )
        if req.image.which() == "test" and subject.loaded is None:
            raise ApiError("a test image needs a checkpoint (its test set); zoo models take a sample or an upload")
        pixels, label = ex.image_pixels(req.image, subject.loaded)
        fit = req.fit if req.fit != "auto" else ("digit" if req.image.drawing is not None else "crop")
        try:
            x, view = src.prepare(subject, pixels, fit, req.invert)
        except ValueError as e:
            raise _bad(e) from None
        target = req.target
        if target is None and req.image.test is not None:
            target = int(ex.test_set(subject.loaded).labels[req.image.test])  # type: ignore[arg-type]
        model, lock = float64_copy(subject)
        with lock:
            if target is None:
                with no_grad():
                    target = int(np.argmax(model(Tensor(x.astype(np.float64))).data[0]))
            t0 = time.perf_counter()
            try:
                doc = backprop(
                    model,
                    x,
                    target,
                    subject.classes,
                    check=req.check,
                    coords=req.coords,
                    seed=req.seed,
                    max_channels=req.max_channels,
                )
            except (ValueError, TypeError) as e:
                raise _bad(e, 400 if "out of range" in str(e) else 422) from None
        doc["seconds"] = round(time.perf_counter() - t0, 3)
        doc["source"] = subject.describe()
        doc["label"] = label
        doc["input"] = {"png": img.png_data_url(view), "height": int(x.shape[2]), "width": int(x.shape[3])}
        return doc
