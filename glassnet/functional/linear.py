"""Dense (fully connected) layer, flatten and dropout, forward and backward."""

from __future__ import annotations

from typing import Any

import numpy as np

from ..backend import as_float, result_dtype
from ._op import Context, Op


def linear_forward(x: Any, weight: Any, bias: Any = None) -> tuple[np.ndarray, Context]:
    """y = x·Wᵀ + b. x [N, in] (or [..., in]), weight [out, in], bias [out] → [N, out].

    Parameters: in·out weights plus out biases, (n_in + 1)·n_out in all.
    """
    x = as_float(x, "linear input")
    weight = as_float(weight, "linear weight")
    if weight.ndim != 2:
        raise ValueError(f"linear expected a 2-D weight [out, in], got shape {weight.shape}")
    if x.ndim < 1 or x.shape[-1] != weight.shape[1]:
        raise ValueError(
            f"linear: weight {list(weight.shape)} expects {weight.shape[1]} input features, "
            f"got input of shape {x.shape}"
        )
    if bias is not None and np.shape(bias) != (weight.shape[0],):
        raise ValueError(f"linear: bias must have shape ({weight.shape[0]},), got {np.shape(bias)}")
    dtype = result_dtype(x, weight, bias)
    x = x.astype(dtype, copy=False)
    weight = weight.astype(dtype, copy=False)
    out = x @ weight.T
    if bias is not None:
        out += np.asarray(bias, dtype=dtype)
    return out, Context(x=x, weight=weight, has_bias=bias is not None)


def linear_backward(
    grad: np.ndarray, ctx: Context, need_dx: bool | None = None
) -> tuple[np.ndarray | None, np.ndarray, np.ndarray | None]:
    """dx = g·W, dW = gᵀ·x (summed over the batch), db = Σ g. ``need_dx=False``: dx is None."""
    if need_dx is None:
        need_dx = ctx.get("needs_input_grad", (True,))[0]
    g2 = grad.reshape(-1, grad.shape[-1])
    x2 = ctx.x.reshape(-1, ctx.x.shape[-1])
    dx = grad @ ctx.weight if need_dx else None
    dw = g2.T @ x2
    db = g2.sum(axis=0) if ctx.has_bias else None
    return dx, dw, db


linear = Op(linear_forward, linear_backward)


def flatten_forward(x: Any, start_dim: int = 1) -> tuple[np.ndarray, Context]:
    """Flatten row-major (C order): [N, C, H, W] → [N, C·H·W], channel by channel, row by row.

    [[1,1,0],[4,2,1],[0,2,1]] becomes [1,1,0,4,2,1,0,2,1], as the lectures flatten.
    """
    x = as_float(x, "flatten input")
    if not 0 <= start_dim < max(x.ndim, 1):
        raise ValueError(f"flatten: start_dim must be in [0, {x.ndim}), got {start_dim}")
    out = x.reshape(*x.shape[:start_dim], -1)
    return out, Context(shape=x.shape)


def flatten_backward(grad: np.ndarray, ctx: Context) -> tuple[np.ndarray]:
    """Reshape the gradient back to the input's shape."""
    return (grad.reshape(ctx.shape),)


flatten = Op(flatten_forward, flatten_backward)


def dropout_forward(
    x: Any, p: float = 0.5, training: bool = True, rng: np.random.Generator | int | None = None
) -> tuple[np.ndarray, Context]:
    """Inverted dropout: zero each unit with probability p, scale survivors by 1/(1−p).

    At inference (``training=False``) or p = 0 it is the identity, so the expected
    activation is the same in training and inference. ``rng`` is an explicit
    ``numpy.random.Generator`` (required when training with p > 0: dropout is
    random, and glassnet never hides a global random state).
    """
    x = as_float(x, "dropout input")
    if isinstance(p, bool) or not isinstance(p, int | float | np.number):
        raise TypeError(f"dropout: p must be a number in [0, 1), got {p!r} ({type(p).__name__})")
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
    keep = rng.random(x.shape, dtype=np.float32) >= p
    mask = keep * x.dtype.type(1.0 / (1.0 - p))
    return x * mask, Context(mask=mask)


def dropout_backward(grad: np.ndarray, ctx: Context) -> tuple[np.ndarray]:
    """The gradient flows through the kept units with the same 1/(1−p) scale."""
    return (grad if ctx.mask is None else grad * ctx.mask,)


dropout = Op(dropout_forward, dropout_backward)
