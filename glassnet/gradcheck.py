"""Check a backward pass against central finite differences in float64.

``gradcheck(target, *inputs, **options)`` works on

* a :class:`glassnet.nn.Module`: checks the gradient with respect to the input and
  to every trainable parameter (the module is converted to float64 for the check and
  restored afterwards);
* an :class:`glassnet.autograd.Op` (``glassnet.functional.conv2d``, a custom op, …)
  or any function of Tensors: checks every floating (or integer) array input, except
  an op's non-differentiable arguments such as class labels.

Integer inputs are converted to float64 (the lectures' 0/1 images), so a correct
backward passes whatever the input's dtype. The gradient checked is the one autograd
computes, i.e. the op's own backward (or the chain of them for a module).

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

from .autograd.tensor import Tensor, enable_grad, no_grad
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


def _scalar(out: Any, weights: np.ndarray) -> float:
    return float(np.sum(np.asarray(out.data if isinstance(out, Tensor) else out, dtype=np.float64) * weights))


def gradcheck(
    target: Any, *inputs: Any, eps: float = 1e-6, tol: float = 1e-6, seed: int = 0, **options: Any
) -> GradcheckReport:
    """Compare ``target``'s backward with finite differences; returns a :class:`GradcheckReport`.

    ``inputs`` are converted to float64 copies; integer arrays are converted too, except
    where the op declares the argument non-differentiable (class labels), and those are
    passed through unchanged. ``options`` go to the op or function.
    """
    rng = np.random.default_rng(seed)
    report = GradcheckReport(tol=tol)
    if isinstance(target, Module):
        return _check_module(target, inputs, rng, eps, report)
    if not callable(target):
        raise TypeError(f"gradcheck: expected a Module or an op with forward/backward, got {target!r}")
    skip = set(getattr(target, "nondifferentiable", ()))
    names = getattr(target, "params", None)
    tensors: list[Any] = []
    for i, a in enumerate(inputs):
        name = names[i] if names and i < len(names) and not getattr(target, "varargs", False) else None
        arr = np.asarray(a)
        if arr.dtype.kind in "biuf" and arr.ndim > 0 and name not in skip:
            tensors.append(Tensor(arr.astype(np.float64), requires_grad=True))
        else:
            tensors.append(a)
    with enable_grad():
        out = target(*tensors, **options)
    if not isinstance(out, Tensor) or not out.requires_grad:
        return report
    weights = rng.standard_normal(out.shape)
    (out * weights).sum().backward()

    def g() -> float:
        with no_grad():
            return _scalar(target(*tensors, **options), weights)

    labels = getattr(target, "input_names", None)
    for i, t in enumerate(tensors):
        if not isinstance(t, Tensor) or t.grad is None:
            continue
        name = labels[i] if labels and i < len(labels) else f"input {i}"
        report.errors[name] = _rel_error(np.asarray(t.grad), _numeric(g, t.data, eps))
    return report


def _check_module(
    target: Module, inputs: tuple[Any, ...], rng: np.random.Generator, eps: float, report: GradcheckReport
) -> GradcheckReport:
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
        x = Tensor(np.array(inputs[0], dtype=np.float64), requires_grad=True)
        restore()
        target.zero_grad()
        with enable_grad():
            out = target(x)
        weights = rng.standard_normal(out.shape)
        (out * weights).sum().backward()
        params = [(n, p) for n, p in target.named_parameters() if p.requires_grad]
        analytic = {n: (p.grad if p.grad is not None else np.zeros_like(p.data)) for n, p in params}
        dx = x.grad if x.grad is not None else np.zeros_like(x.data)

        def f() -> float:
            restore()
            with no_grad():
                return _scalar(target(x), weights)

        report.errors["input"] = _rel_error(dx, _numeric(f, x.data, eps))
        for n, p in params:
            report.errors[n] = _rel_error(analytic[n], _numeric(f, p.data, eps))
    finally:
        for name, p in target.named_parameters():
            p.data, p.grad = saved[name]
        restore()
        for m, bufs in original_buffers:
            m._buffers.update(bufs)
    return report
