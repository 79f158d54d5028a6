"""Adam and AdamW (decoupled weight decay)."""

from __future__ import annotations

from typing import Any

import numpy as np

from .optimizer import Optimizer, check_bool, check_nonneg, check_unit

__all__ = ["Adam", "AdamW"]


def lerp_(a: np.ndarray, b: np.ndarray, weight: float) -> None:
    """``a ← a + w·(b − a)`` in place, with PyTorch's rounding (``torch.lerp``)."""
    if abs(weight) < 0.5:
        a += weight * (b - a)
    else:
        np.subtract(b, (b - a) * (1 - weight), out=a)


class Adam(Optimizer):
    r"""Adam (``torch.optim.Adam`` semantics), optionally AMSGrad and decoupled weight decay.

    For each parameter :math:`\theta` with gradient :math:`g`, at its step :math:`t = 1, 2, …`::

        g ← −g                                   if maximize
        θ ← θ·(1 − lr·λ)                         if decoupled_weight_decay (AdamW)
        g ← g + λ·θ                              otherwise, if weight_decay λ ≠ 0
        m ← m + (1 − β₁)·(g − m)                 (= β₁·m + (1 − β₁)·g)
        v ← β₂·v + (1 − β₂)·g²
        v̂ ← max(v̂, v) if amsgrad                 (the denominator uses v̂ instead of v)
        θ ← θ − lr/(1 − β₁ᵗ) · m / (√v / √(1 − β₂ᵗ) + ε)

    State per parameter: ``step`` (int), ``exp_avg`` (m), ``exp_avg_sq`` (v) and, with
    ``amsgrad``, ``max_exp_avg_sq`` (v̂).
    """

    def __init__(
        self,
        params: Any,
        lr: float = 1e-3,
        betas: tuple[float, float] = (0.9, 0.999),
        eps: float = 1e-8,
        weight_decay: float = 0.0,
        amsgrad: bool = False,
        *,
        maximize: bool = False,
        decoupled_weight_decay: bool = False,
    ) -> None:
        defaults = {
            "lr": lr,
            "betas": tuple(betas),
            "eps": eps,
            "weight_decay": weight_decay,
            "amsgrad": amsgrad,
            "maximize": maximize,
            "decoupled_weight_decay": decoupled_weight_decay,
        }
        super().__init__(params, defaults)

    def _validate_group(self, group: dict[str, Any]) -> None:
        check_nonneg("learning rate", group["lr"])
        check_nonneg("epsilon value", group["eps"])
        betas = group["betas"]
        if not isinstance(betas, tuple | list) or len(betas) != 2:
            raise ValueError(f"Invalid betas: {betas!r} (must be a pair (beta1, beta2))")
        check_unit("beta parameter at index 0", betas[0])
        check_unit("beta parameter at index 1", betas[1])
        check_nonneg("weight_decay value", group["weight_decay"])
        check_bool("amsgrad", group["amsgrad"])
        check_bool("maximize", group["maximize"])
        check_bool("decoupled_weight_decay", group["decoupled_weight_decay"])

    def _state_keys(self, group: dict[str, Any]) -> tuple[set[str], set[str]]:
        arrays = {"exp_avg", "exp_avg_sq"}
        if group["amsgrad"]:
            arrays.add("max_exp_avg_sq")
        return arrays, {"step"}

    def _init_state(self, p: Any, group: dict[str, Any]) -> dict[str, Any]:
        state: dict[str, Any] = {
            "step": 0,
            "exp_avg": np.zeros_like(p.data),
            "exp_avg_sq": np.zeros_like(p.data),
        }
        if group["amsgrad"]:
            state["max_exp_avg_sq"] = np.zeros_like(p.data)
        return state

    def _update(self, param: np.ndarray, grad: np.ndarray, state: dict[str, Any], group: dict[str, Any]) -> None:
        lr = group["lr"]
        beta1, beta2 = group["betas"]
        weight_decay = group["weight_decay"]
        g = -grad if group["maximize"] else grad
        state["step"] += 1
        step = state["step"]
        if weight_decay != 0:
            if group["decoupled_weight_decay"]:
                param *= 1 - lr * weight_decay
            else:
                g = g + weight_decay * param
        exp_avg, exp_avg_sq = state["exp_avg"], state["exp_avg_sq"]
        lerp_(exp_avg, g, 1 - beta1)
        exp_avg_sq *= beta2
        exp_avg_sq += (1 - beta2) * g * g
        bias_correction1 = 1 - beta1**step
        bias_correction2 = 1 - beta2**step
        step_size = lr / bias_correction1
        bias_correction2_sqrt = bias_correction2**0.5
        if group["amsgrad"]:
            if "max_exp_avg_sq" not in state:  # amsgrad switched on after the first step
                state["max_exp_avg_sq"] = np.zeros_like(param)
            second = state["max_exp_avg_sq"]
            np.maximum(second, exp_avg_sq, out=second)
        else:
            second = exp_avg_sq
        denom = np.sqrt(second)
        denom /= bias_correction2_sqrt
        denom += group["eps"]
        update = -step_size * exp_avg
        update /= denom
        param += update


class AdamW(Adam):
    r"""Adam with decoupled weight decay (``torch.optim.AdamW`` semantics).

    Same update as :class:`Adam`, except that weight decay shrinks the parameter
    directly, ``θ ← θ·(1 − lr·λ)``, before the moment updates, instead of being added
    to the gradient. Default ``weight_decay`` is ``1e-2``.
    """

    def __init__(
        self,
        params: Any,
        lr: float = 1e-3,
        betas: tuple[float, float] = (0.9, 0.999),
        eps: float = 1e-8,
        weight_decay: float = 1e-2,
        amsgrad: bool = False,
        *,
        maximize: bool = False,
    ) -> None:
        super().__init__(
            params,
            lr=lr,
            betas=betas,
            eps=eps,
            weight_decay=weight_decay,
            amsgrad=amsgrad,
            maximize=maximize,
            decoupled_weight_decay=True,
        )
