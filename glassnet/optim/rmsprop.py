"""RMSprop, optionally centred and with momentum."""

from __future__ import annotations

from typing import Any

import numpy as np

from .adam import lerp_
from .optimizer import Optimizer, check_bool, check_nonneg

__all__ = ["RMSprop"]


class RMSprop(Optimizer):
    r"""RMSprop (``torch.optim.RMSprop`` semantics).

    For each parameter :math:`\theta` with gradient :math:`g`::

        g ← −g                                   if maximize
        g ← g + λ·θ                              if weight_decay λ ≠ 0
        v ← α·v + (1 − α)·g²
        if centered:  ḡ ← ḡ + (1 − α)·(g − ḡ);   d ← √(v − ḡ²) + ε
        else:         d ← √v + ε
        if momentum μ > 0:  b ← μ·b + g/d;  θ ← θ − lr·b
        else:               θ ← θ − lr·g/d

    State per parameter: ``step`` (int), ``square_avg`` (v), ``momentum_buffer`` (b,
    when ``momentum > 0``) and ``grad_avg`` (ḡ, when ``centered``).
    """

    def __init__(
        self,
        params: Any,
        lr: float = 1e-2,
        alpha: float = 0.99,
        eps: float = 1e-8,
        weight_decay: float = 0.0,
        momentum: float = 0.0,
        centered: bool = False,
        *,
        maximize: bool = False,
    ) -> None:
        defaults = {
            "lr": lr,
            "alpha": alpha,
            "eps": eps,
            "weight_decay": weight_decay,
            "momentum": momentum,
            "centered": centered,
            "maximize": maximize,
        }
        super().__init__(params, defaults)

    def _validate_group(self, group: dict[str, Any]) -> None:
        check_nonneg("learning rate", group["lr"])
        check_nonneg("epsilon value", group["eps"])
        check_nonneg("momentum value", group["momentum"])
        check_nonneg("weight_decay value", group["weight_decay"])
        check_nonneg("alpha value", group["alpha"])
        if group["alpha"] > 1:
            raise ValueError(f"Invalid alpha value: {group['alpha']!r} (must be in [0, 1])")
        check_bool("centered", group["centered"])
        check_bool("maximize", group["maximize"])

    def _state_keys(self, group: dict[str, Any]) -> tuple[set[str], set[str]]:
        arrays = {"square_avg"}
        if group["momentum"] > 0:
            arrays.add("momentum_buffer")
        if group["centered"]:
            arrays.add("grad_avg")
        return arrays, {"step"}

    def _init_state(self, p: Any, group: dict[str, Any]) -> dict[str, Any]:
        state: dict[str, Any] = {"step": 0, "square_avg": np.zeros_like(p.data)}
        if group["momentum"] > 0:
            state["momentum_buffer"] = np.zeros_like(p.data)
        if group["centered"]:
            state["grad_avg"] = np.zeros_like(p.data)
        return state

    def _update(self, param: np.ndarray, grad: np.ndarray, state: dict[str, Any], group: dict[str, Any]) -> None:
        alpha = group["alpha"]
        weight_decay = group["weight_decay"]
        g = -grad if group["maximize"] else grad
        state["step"] += 1
        if weight_decay != 0:
            g = g + weight_decay * param
        square_avg = state["square_avg"]
        square_avg *= alpha
        square_avg += (1 - alpha) * g * g
        if group["centered"]:
            if "grad_avg" not in state:  # centered switched on after the first step
                state["grad_avg"] = np.zeros_like(param)
            grad_avg = state["grad_avg"]
            lerp_(grad_avg, g, 1 - alpha)
            avg = square_avg - grad_avg * grad_avg
            np.sqrt(avg, out=avg)
        else:
            avg = np.sqrt(square_avg)
        avg += group["eps"]
        if group["momentum"] > 0:
            if "momentum_buffer" not in state:  # momentum switched on after the first step
                state["momentum_buffer"] = np.zeros_like(param)
            buf = state["momentum_buffer"]
            buf *= group["momentum"]
            buf += g / avg
            param += -group["lr"] * buf
        else:
            update = -group["lr"] * g
            update /= avg
            param += update
