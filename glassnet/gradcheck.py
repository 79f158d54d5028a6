"""Check a backward pass against central finite differences in float64.

``gradcheck(target, *inputs, **options)`` works on

* a :class:`glassnet.nn.Module`: checks the gradient with respect to the input and
  to every trainable parameter (the module is converted to float64 for the check and
  restored afterwards);
* an :class:`glassnet.functional.Op` (``glassnet.functional.conv2d``, …) or any object
  with ``forward(*inputs, **options) -> (out, ctx)`` and ``backward(grad, ctx)``:
  checks every float array input whose backward returns a gradient.

The scalar being differentiated is L = Σ out ⊙ R for a fixed random R, so every
output element matters. For each input the worst relative error is
max|analytic − numeric| / max(max|numeric|, max|analytic|, 0.01), i.e. the largest
difference measured against the size of that gradient (robust where single entries
are near zero; a gradient smaller than 0.01 overall, such as the exactly-zero gradient
of a conv bias followed by batch normalisation, is judged by its absolute error, since
the finite differences themselves carry noise of about 1e-9).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import numpy as np

from .nn.module import Module


@dataclass
class GradcheckReport:
    """Worst relative error per input/parameter; ``ok`` when all are within ``tol``."""

    errors: dict[str, float] = field(default_factory=dict)
    tol: float = 1e-6

    @property
    def ok(self) -> bool:
        return all(e <= self.tol for e in self.errors.values())

    @property
    def worst(self) -> float:
        return max(self.errors.values(), default=0.0)

    def __str__(self) -> str:
        lines = [f"gradcheck {'passed' if self.ok else 'FAILED'} (tolerance {self.tol:g})"]
        for name, e in self.errors.items():
            lines.append(f"  {name:<24} worst relative error {e:.2e}{'' if e <= self.tol else '  <-- too large'}")
        return "\n".join(lines)

    def assert_ok(self) -> None:
        if not self.ok:
            raise AssertionError(str(self))


def _rel_error(analytic: np.ndarray, numeric: np.ndarray) -> float:
    scale = max(float(np.abs(numeric).max(initial=0.0)), float(np.abs(analytic).max(initial=0.0)), 0.01)
    return float(np.abs(analytic - numeric).max(initial=0.0)) / scale


def _numeric(f: Any, arr: np.ndarray, eps: float) -> np.ndarray:
    """Central differences of the scalar f() with respect to arr (perturbed in place)."""
    grad = np.zeros_like(arr)
    flat, gflat = arr.reshape(-1), grad.reshape(-1)
    for i in range(flat.size):
        old = flat[i]
        flat[i] = old + eps
        plus = f()
        flat[i] = old - eps
        minus = f()
        flat[i] = old
        gflat[i] = (plus - minus) / (2 * eps)
    return grad


def gradcheck(
    target: Any, *inputs: Any, eps: float = 1e-6, tol: float = 1e-6, seed: int = 0, **options: Any
) -> GradcheckReport:
    """Compare ``target``'s backward with finite differences; returns a :class:`GradcheckReport`.

    ``inputs`` are converted to float64 copies (integer arrays, e.g. class labels,
    are passed through unchanged and not differentiated). ``options`` go to forward.
    """
    rng = np.random.default_rng(seed)
    args = [np.array(a, dtype=np.float64) if np.asarray(a).dtype.kind == "f" else a for a in inputs]
    report = GradcheckReport(tol=tol)
    if isinstance(target, Module):
        saved = {name: (p.data, p.grad) for name, p in target.named_parameters()}
        buffers = target.state_dict()
        original_buffers = [(m, dict(m._buffers)) for m in target.modules()]
        rngs = [
            (m, m.rng.bit_generator.state)
            for m in target.modules()
            if isinstance(getattr(m, "rng", None), np.random.Generator)
        ]

        def restore() -> None:
            for m, state in rngs:
                m.rng.bit_generator.state = state
            target.load_state_dict({k: v for k, v in buffers.items() if k not in saved}, strict=False)

        try:
            target.to(np.float64)
            x = args[0]
            restore()
            out = target.forward(x)
            weights = rng.standard_normal(np.shape(out))
            target.zero_grad()
            dx = target.backward(weights.copy())
            params = [(n, p) for n, p in target.named_parameters() if p.requires_grad]
            analytic = {n: (p.grad if p.grad is not None else np.zeros_like(p.data)) for n, p in params}

            def f() -> float:
                restore()
                return float(np.sum(target.forward(x) * weights))

            report.errors["input"] = _rel_error(dx, _numeric(f, x, eps))
            for n, p in params:
                report.errors[n] = _rel_error(analytic[n], _numeric(f, p.data, eps))
        finally:
            for name, p in target.named_parameters():
                p.data, p.grad = saved[name]
            restore()
            for m, bufs in original_buffers:
                m._buffers.update(bufs)
        return report

    if not (hasattr(target, "forward") and hasattr(target, "backward")):
        raise TypeError(f"gradcheck: expected a Module or an op with forward/backward, got {target!r}")
    out, ctx = target.forward(*args, **options)
    weights = rng.standard_normal(np.shape(out))
    grads = target.backward(weights.copy() if np.ndim(out) else np.float64(weights), ctx)

    def g() -> float:
        return float(np.sum(target.forward(*args, **options)[0] * weights))

    names = getattr(target, "input_names", None)
    for i, (a, ga) in enumerate(zip(args, grads, strict=False)):
        if ga is None or not isinstance(a, np.ndarray) or a.dtype != np.float64:
            continue
        name = names[i] if names and i < len(names) else f"input {i}"
        report.errors[name] = _rel_error(np.asarray(ga), _numeric(g, a, eps))
    return report
