"""Gradient clipping: ``clip_grad_norm_`` and ``clip_grad_value_`` (PyTorch semantics)."""

from __future__ import annotations

import math
from collections.abc import Iterable
from typing import Any

import numpy as np

from ..nn.module import Parameter

__all__ = ["NonFiniteGradientError", "clip_grad_norm_", "clip_grad_value_"]


class NonFiniteGradientError(FloatingPointError, RuntimeError):
    """The total gradient norm is NaN or infinite (a ``RuntimeError``, as in PyTorch)."""


def _grads(parameters: Parameter | Iterable[Any]) -> list[tuple[int, np.ndarray]]:
    if isinstance(parameters, Parameter):
        parameters = [parameters]
    out = []
    for i, p in enumerate(parameters):
        if isinstance(p, tuple) and len(p) == 2:  # (name, Parameter) pairs
            p = p[1]
        if not isinstance(p, Parameter):
            raise TypeError(f"expected Parameters, but item {i} is {type(p).__name__}")
        if p.requires_grad and p.grad is not None:
            out.append((i, p.grad))
    return out


def _norm(x: np.ndarray, norm_type: float) -> float:
    flat = np.asarray(x, dtype=np.float64).reshape(-1)
    if flat.size == 0:
        return 0.0
    if norm_type == math.inf:
        return float(np.max(np.abs(flat)))
    if norm_type == -math.inf:
        return float(np.min(np.abs(flat)))
    if norm_type == 2.0:
        return float(np.sqrt(np.dot(flat, flat)))
    if norm_type == 1.0:
        return float(np.sum(np.abs(flat)))
    if norm_type == 0.0:
        return float(np.count_nonzero(flat))
    return float(np.sum(np.abs(flat) ** norm_type) ** (1.0 / norm_type))


def clip_grad_norm_(
    parameters: Parameter | Iterable[Any],
    max_norm: float,
    norm_type: float = 2.0,
    error_if_nonfinite: bool = False,
) -> float:
    """Scale the gradients in place so that their total norm is at most ``max_norm``.

    The total norm is the ``norm_type``-norm of the vector of per-gradient norms (the
    norm of all gradients concatenated), over the parameters that have
    ``requires_grad`` and a gradient. Every gradient is multiplied by
    ``min(1, max_norm / (total_norm + 1e-6))``, as ``torch.nn.utils.clip_grad_norm_``.

    Returns:
        the total norm *before* clipping, as a float (``0.0`` when no parameter has a
        gradient).

    Raises:
        NonFiniteGradientError: (a ``RuntimeError`` and ``FloatingPointError``) when
            ``error_if_nonfinite`` and the total norm is NaN or infinite; the message
            names the parameters whose gradients are not finite.
    """
    max_norm = float(max_norm)
    norm_type = float(norm_type)
    grads = _grads(parameters)
    if not grads:
        return 0.0
    norms = np.array([_norm(g, norm_type) for _, g in grads], dtype=np.float64)
    total = _norm(norms, norm_type)
    if error_if_nonfinite and not math.isfinite(total):
        bad = [f"{i} (shape {g.shape})" for i, g in grads if not np.all(np.isfinite(g))]
        raise NonFiniteGradientError(
            f"the total norm of order {norm_type} of the gradients is {total}; non-finite gradients in "
            f"parameter(s) {', '.join(bad) or '(none: the norm overflowed)'}. Set error_if_nonfinite=False "
            "to clip anyway"
        )
    coef = min(max_norm / (total + 1e-6), 1.0)
    for _, g in grads:
        g *= np.asarray(coef, dtype=g.dtype)
    return total


def clip_grad_value_(parameters: Parameter | Iterable[Any], clip_value: float) -> None:
    """Clip every gradient in place to ``[-clip_value, clip_value]`` (``torch.nn.utils.clip_grad_value_``)."""
    clip_value = float(clip_value)
    for _, g in _grads(parameters):
        np.clip(g, -clip_value, clip_value, out=g)
