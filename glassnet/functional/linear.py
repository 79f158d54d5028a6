"""Dense (fully connected) layer, flatten and dropout, forward and backward: the reference.

Written against the Array API; dropout's random mask is drawn on the host (NumPy's
``Generator``) and copied to the input's device, so a seed gives the same mask anywhere.
"""

from __future__ import annotations

import math
from typing import Any

import numpy as np

from ..backend import array_namespace, as_float, as_grad, asarray_like, result_dtype
from ._args import shape_of
from ._op import Context, Meta, Op


def _linear_check(x: Any, weight: Any, bias: Any) -> None:
    if weight.ndim != 2:
        raise ValueError(f"linear expected a 2-D weight [out, in], got shape {tuple(weight.shape)}")
    if x.ndim < 1 or x.shape[-1] != weight.shape[1]:
        raise ValueError(
            f"linear: weight {list(weight.shape)} expects {weight.shape[1]} input features, "
            f"got input of shape {tuple(x.shape)}"
        )
    if bias is not None and shape_of(bias) != (weight.shape[0],):
        raise ValueError(f"linear: bias must have shape ({weight.shape[0]},), got {shape_of(bias)}")


def linear_forward(x: Any, weight: Any, bias: Any = None) -> tuple[Any, Context]:
    """y = x·Wᵀ + b. x [N, in] (or [..., in]), weight [out, in], bias [out] → [N, out].

    Parameters: in·out weights plus out biases, (n_in + 1)·n_out in all.
    """
    x, weight = as_float(x, "linear input"), as_float(weight, "linear weight")
    _linear_check(x, weight, bias)
    xp, dtype = array_namespace(x, weight), result_dtype(x, weight, bias)
    x, weight = xp.astype(x, dtype, copy=False), xp.astype(weight, dtype, copy=False)
    out = x @ xp.matrix_transpose(weight)
    if bias is not None:
        out = out + asarray_like(bias, x)
    return out, Context(x=x, weight=weight, has_bias=bias is not None)


def linear_backward(grad: Any, ctx: Context, need_dx: bool | None = None) -> tuple[Any, Any, Any]:
    """dx = g·W, dW = gᵀ·x (summed over the batch), db = Σ g. ``need_dx=False``: dx is None."""
    need_dx = ctx.get("needs_input_grad", (True,))[0] if need_dx is None else need_dx
    grad = as_grad(grad, ctx.x.dtype)
    xp = array_namespace(grad)
    g2 = xp.reshape(grad, (-1, grad.shape[-1]))
    x2 = xp.reshape(ctx.x, (-1, ctx.x.shape[-1]))
    dx = grad @ ctx.weight if need_dx else None
    dw = xp.matrix_transpose(g2) @ x2
    db = xp.sum(g2, axis=0) if ctx.has_bias else None
    return dx, dw, db


def linear_meta(x: Any, weight: Any, bias: Any = None) -> Meta:
    """Shape-only linear: [..., out], prod(batch dims)·in·out MACs; every output sees the whole input."""
    _linear_check(x, weight, bias)
    macs = math.prod(x.shape[:-1]) * weight.shape[1] * weight.shape[0]
    return Meta((*x.shape[:-1], weight.shape[0]), macs=macs, window="whole")


linear = Op(linear_forward, linear_backward, meta=linear_meta)


def flatten_forward(x: Any, start_dim: int = 1) -> tuple[Any, Context]:
    """Flatten row-major (C order): [N, C, H, W] → [N, C·H·W], channel by channel, row by row.

    [[1,1,0],[4,2,1],[0,2,1]] becomes [1,1,0,4,2,1,0,2,1], as the lectures flatten.
    """
    x = as_float(x, "flatten input")
    if not 0 <= start_dim < max(x.ndim, 1):
        raise ValueError(f"flatten: start_dim must be in [0, {x.ndim}), got {start_dim}")
    out = array_namespace(x).reshape(x, (*x.shape[:start_dim], -1))
    return out, Context(shape=tuple(x.shape))


def flatten_backward(grad: Any, ctx: Context) -> tuple[Any]:
    """Reshape the gradient back to the input's shape."""
    return (array_namespace(grad).reshape(grad, ctx.shape),)


def _flatten_meta(x: Any, start_dim: int = 1) -> Meta:
    if not 0 <= start_dim < max(x.ndim, 1):
        raise ValueError(f"flatten: start_dim must be in [0, {x.ndim}), got {start_dim}")
    return Meta((*x.shape[:start_dim], math.prod(x.shape[start_dim:])), window="whole")


flatten = Op(flatten_forward, flatten_backward, meta=_flatten_meta)


def dropout_forward(
    x: Any, p: float = 0.5, training: bool = True, rng: np.random.Generator | int | None = None
) -> tuple[Any, Context]:
    """Inverted dropout: zero each unit with probability p, scale survivors by 1/(1−p).

    At inference (``training=False``) or p = 0 it is the identity, so the expected
    activation is the same in training and inference. ``rng`` is an explicit
    ``numpy.random.Generator`` (required when training with p > 0: dropout is
    random, and glassnet never hides a global random state). The mask is drawn on the
    host and copied to ``x``'s device.
    """
    if isinstance(p, bool) or not isinstance(p, int | float | np.number):
        raise TypeError(f"dropout: p must be a number in [0, 1), got {p!r} ({type(p).__name__})")
    x = as_float(x, "dropout input")
    if not 0.0 <= p < 1.0:
        raise ValueError(f"dropout: p must be in [0, 1), got {p!r}")
    if not training or p == 0.0:
        return x, Context(mask=None)
    if rng is None:
        raise ValueError("dropout: training with p > 0 needs an explicit rng (numpy.random.Generator or an int seed)")
    if isinstance(rng, int | np.integer) and not isinstance(rng, bool):
        rng = np.random.default_rng(int(rng))  # a seed, as the layers accept: the same seed, the same mask
    if not isinstance(rng, np.random.Generator):
        raise TypeError(f"dropout: rng must be a numpy.random.Generator or an int seed, got {type(rng).__name__}")
    keep = rng.random(tuple(x.shape), dtype=np.float32) >= p  # host randomness: the same on every device
    mask = asarray_like(keep, x) * (1.0 / (1.0 - p))
    return x * mask, Context(mask=mask)


def dropout_backward(grad: Any, ctx: Context) -> tuple[Any]:
    """The gradient flows through the kept units with the same 1/(1−p) scale."""
    return (grad if ctx.mask is None else grad * ctx.mask,)


dropout = Op(dropout_forward, dropout_backward)
