"""Stochastic gradient descent with optional momentum, Nesterov momentum and weight decay."""

from __future__ import annotations

from typing import Any

import numpy as np

from .optimizer import Optimizer, check_bool, check_nonneg

__all__ = ["SGD"]


class SGD(Optimizer):
    r"""Stochastic gradient descent (``torch.optim.SGD`` semantics).

    For each parameter :math:`\theta` with gradient :math:`g` at step :math:`t`::

        g ← −g                                   if maximize
        g ← g + λ·θ                              if weight_decay λ ≠ 0
        if momentum μ ≠ 0:
            b ← g                                at the parameter's first step
            b ← μ·b + (1 − τ)·g                  afterwards (τ = dampening)
            g ← g + μ·b   if nesterov   else   g ← b
        θ ← θ − lr·g

    State per parameter: ``momentum_buffer`` (only when ``momentum != 0``).
    ``nesterov`` needs ``momentum > 0`` and ``dampening == 0``.
    """

    def __init__(
        self,
        params: Any,
        lr: float,
        momentum: float = 0.0,
        dampening: float = 0.0,
        weight_decay: float = 0.0,
        nesterov: bool = False,
        maximize: bool = False,
    ) -> None:
        defaults = {
            "lr": lr,
            "momentum": momentum,
            "dampening": dampening,
            "weight_decay": weight_decay,
            "nesterov": nesterov,
            "maximize": maximize,
        }
        super().__init__(params, defaults)

    def _validate_group(self, group: dict[str, Any]) -> None:
        check_nonneg("learning rate", group["lr"])
        check_nonneg("momentum value", group["momentum"])
        check_nonneg("weight_decay value", group["weight_decay"])
        check_nonneg("dampening value", group["dampening"])
        check_bool("nesterov", group["nesterov"])
        check_bool("maximize", group["maximize"])
        if group["nesterov"] and (group["momentum"] <= 0 or group["dampening"] != 0):
            raise ValueError(
                "Nesterov momentum requires a momentum and zero dampening, "
                f"got momentum={group['momentum']!r}, dampening={group['dampening']!r}"
            )

    def _state_keys(self, group: dict[str, Any]) -> tuple[set[str], set[str]]:
        return ({"momentum_buffer"} if group["momentum"] != 0 else set()), set()

    def _update(self, param: np.ndarray, grad: np.ndarray, state: dict[str, Any], group: dict[str, Any]) -> None:
        momentum = group["momentum"]
        weight_decay = group["weight_decay"]
        g = -grad if group["maximize"] else grad
        if weight_decay != 0:
            g = g + weight_decay * param
        if momentum != 0:
            buf = state.get("momentum_buffer")
            if buf is None:
                buf = state["momentum_buffer"] = np.array(g, copy=True)
            else:
                buf *= momentum
                buf += (1 - group["dampening"]) * g
            g = g + momentum * buf if group["nesterov"] else buf
        param += -group["lr"] * g
