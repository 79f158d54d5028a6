"""Fast NumPy batch normalisation for [N, C, H, W]: fewer passes, no temporaries, split over threads.

The definition is :func:`glassnet.functional.norm.batch_norm_forward` and its backward.
Same arguments, same checks (:func:`~glassnet.functional.norm.batch_norm_arguments`) and
the same results to rounding. What changes is how many times the activations are read:

* per-channel sums (Σx, Σ(x−μ)², Σg, Σg·x̂) are ``einsum`` contractions over the
  [N, C, H·W] view, rows then float64 over N: one read, no temporary (NumPy's ``mean`` over axes (0, 2, 3) of an
  NCHW array runs 3.5× slower, and ``mean(g * x̂)`` first writes the product out);
* x̂ is made in place in the centred copy, and the output is x̂·γ + β in place;
* the input gradient is folded into per-channel coefficients,
  dx = g·a + x̂·b + c with a = γ/σ, b = −a·mean(g·x̂), c = −a·mean(g),
  two passes instead of the reference's five, and Σg·x̂ is computed once (the reference
  computes it for dγ and again for its mean);
* in inference, y = x·a + b with per-channel a and b: two passes, nothing new kept.

Large batches are cut into parts along N, one per worker thread. Every element and
every row sum is computed by one thread the same way whatever the split, and the row sums
are added up in one fixed order: results are bit-identical on any number of threads.
"""

from __future__ import annotations

import math
from typing import Any

import numpy as np

from ..backend import num_workers, parallel
from ..functional._op import Context
from ..functional.norm import batch_norm_arguments

# Inputs with at least this many elements are split over the worker threads.
PARALLEL_MIN = 2**20


def _split(n: int, size: int) -> int:
    return min(n, num_workers()) if size >= PARALLEL_MIN else 1


def _channel_sums(a: np.ndarray, b: np.ndarray | None, parts: int) -> np.ndarray:
    """Σ over N and L of a (or of a·b) per channel, for [N, C, L] arrays, in float64.

    Each row of L is summed in the array's dtype (rows are split among the workers, but
    each row is summed whole by one of them), then all N rows in float64 (PyTorch
    accumulates batch statistics in double on the CPU) in one fixed order: the result
    does not depend on the number of threads, bit for bit.
    """
    n = a.shape[0]
    rows = np.empty(a.shape[:2], dtype=a.dtype)

    def work(k: int, p: int) -> None:
        lo, hi = n * k // p, n * (k + 1) // p
        if b is None:
            np.einsum("ncl->nc", a[lo:hi], out=rows[lo:hi])
        else:
            np.einsum("ncl,ncl->nc", a[lo:hi], b[lo:hi], out=rows[lo:hi])

    parallel(work, parts)
    return rows.sum(axis=0, dtype=np.float64)


def batch_norm_forward(
    x: Any,
    running_mean: Any,
    running_var: Any,
    weight: Any = None,
    bias: Any = None,
    training: bool = True,
    momentum: float = 0.1,
    eps: float = 1e-5,
) -> tuple[np.ndarray, Context]:
    """As :func:`glassnet.functional.norm.batch_norm_forward`, for 4-D C-contiguous input."""
    x, axes, shape = batch_norm_arguments(x, running_mean, running_var, weight, bias, training, momentum, eps)
    n, c = x.shape[:2]
    x3 = x.reshape(n, c, -1)
    count = n * x3.shape[2]
    parts = _split(n, x.size)
    dtype = x.dtype
    if not training:
        return _inference(x, running_mean, running_var, weight, bias, eps, parts, axes, shape)
    mean = (_channel_sums(x3, None, parts) / count).astype(dtype)
    xhat = np.empty_like(x)
    h3 = xhat.reshape(n, c, -1)
    m3 = mean.reshape(1, c, 1)

    def centre(k: int, p: int) -> None:
        lo, hi = n * k // p, n * (k + 1) // p
        np.subtract(x3[lo:hi], m3, out=h3[lo:hi])

    parallel(centre, parts)
    sum_sq = _channel_sums(h3, h3, parts)
    var = (sum_sq / count).astype(dtype)
    if running_mean is not None:
        running_mean *= 1 - momentum
        running_mean += momentum * mean
    if running_var is not None:  # unbiased, blended in float64 and rounded once, as PyTorch does
        running_var[...] = momentum * (sum_sq / (count - 1)) + (1 - momentum) * running_var.astype(np.float64)
    inv_std = 1.0 / np.sqrt(var + eps)
    w3 = None if weight is None else np.asarray(weight, dtype=dtype).reshape(1, c, 1)
    b3 = None if bias is None else np.asarray(bias, dtype=dtype).reshape(1, c, 1)
    out = np.empty_like(x) if (w3 is not None or b3 is not None) else None
    o3 = None if out is None else out.reshape(n, c, -1)
    s3 = inv_std.reshape(1, c, 1)

    def scale(k: int, p: int) -> None:
        lo, hi = n * k // p, n * (k + 1) // p
        h = h3[lo:hi]
        np.multiply(h, s3, out=h)
        if o3 is None:
            return
        o = o3[lo:hi]
        if w3 is not None:
            np.multiply(h, w3, out=o)
            if b3 is not None:
                o += b3
        else:
            np.add(h, b3, out=o)

    parallel(scale, parts)
    ctx = Context(xhat=xhat, inv_std=inv_std, weight=weight, has_bias=bias is not None, training=training)
    ctx.update(axes=axes, shape=shape)
    return (xhat if out is None else out), ctx


def _inference(
    x: np.ndarray, running_mean: Any, running_var: Any, weight: Any, bias: Any, eps: float, parts: int, *where: Any
) -> tuple[np.ndarray, Context]:
    """Inference: the statistics are constants, so y = x·a + b with per-channel a = γ/√(σ²+ε) and
    b = β − μ·a (PyTorch's CPU kernel folds it the same way): two passes, and x̂ is not kept
    (the backward recomputes it when there is a γ)."""
    n, c = x.shape[:2]
    dtype = x.dtype
    mean = np.asarray(running_mean, dtype=dtype)
    inv_std = 1.0 / np.sqrt(np.asarray(running_var, dtype=dtype) + eps)
    a = inv_std if weight is None else inv_std * np.asarray(weight, dtype=dtype)
    b = -mean * a if bias is None else np.asarray(bias, dtype=dtype) - mean * a
    x3, out = x.reshape(n, c, -1), np.empty_like(x)
    o3, a3, b3 = out.reshape(n, c, -1), a.reshape(1, c, 1), b.reshape(1, c, 1)

    def work(k: int, p: int) -> None:
        lo, hi = n * k // p, n * (k + 1) // p
        np.multiply(x3[lo:hi], a3, out=o3[lo:hi])
        o3[lo:hi] += b3

    parallel(work, parts)
    ctx = Context(xhat=None, x=x, mean=mean, inv_std=inv_std, weight=weight, has_bias=bias is not None, training=False)
    ctx.update(axes=where[0], shape=where[1])
    return out, ctx


def batch_norm_backward(grad: Any, ctx: Context) -> tuple[Any, ...]:
    """As :func:`glassnet.functional.norm.batch_norm_backward`: ``(dx, None, None, dweight, dbias)``."""
    xhat = ctx.xhat
    if xhat is None:  # inference: x̂ = (x − μ)/σ again if there is a γ to differentiate
        x = ctx.x
        if ctx.weight is not None:
            xhat = (x - ctx.mean.reshape(ctx.shape)) * ctx.inv_std.reshape(ctx.shape)
        else:
            xhat = x  # only its shape and dtype are used below
    grad = np.asarray(grad, dtype=xhat.dtype)
    if grad.shape != xhat.shape or not grad.flags.c_contiguous or xhat.ndim != 4:
        from ..functional.norm import batch_norm_backward as reference

        if ctx.xhat is None:
            ctx = Context(ctx, xhat=(ctx.x - ctx.mean.reshape(ctx.shape)) * ctx.inv_std.reshape(ctx.shape))
        return reference(grad, ctx)
    n, c = xhat.shape[:2]
    g3, h3 = grad.reshape(n, c, -1), xhat.reshape(n, c, -1)
    count = n * h3.shape[2]
    parts = _split(n, grad.size)
    need_gx = ctx.weight is not None or ctx.training
    need_g = ctx.has_bias or ctx.training
    sum_gx = _channel_sums(g3, h3, parts).astype(xhat.dtype) if need_gx else None
    sum_g = _channel_sums(g3, None, parts).astype(xhat.dtype) if need_g else None
    scale = ctx.inv_std if ctx.weight is None else ctx.inv_std * np.asarray(ctx.weight, dtype=xhat.dtype)
    a = scale.reshape(1, c, 1)
    if ctx.training:
        b = (-scale * (sum_gx / count)).reshape(1, c, 1)
        cc = (-scale * (sum_g / count)).reshape(1, c, 1)
    dx = np.empty_like(grad)
    d3 = dx.reshape(n, c, -1)

    def work(k: int, p: int) -> None:
        lo, hi = n * k // p, n * (k + 1) // p
        d = d3[lo:hi]
        if not ctx.training:
            np.multiply(g3[lo:hi], a, out=d)
            return
        np.multiply(h3[lo:hi], b, out=d)
        d += cc
        d += g3[lo:hi] * a

    parallel(work, parts)
    dweight = sum_gx if ctx.weight is not None else None
    dbias = sum_g if ctx.has_bias else None
    return dx, None, None, dweight, dbias


def supports(x: Any = None, *args: Any, **kwargs: Any) -> bool:
    """4-D C-contiguous float32/float64 NumPy input; the rest (and every error) is the reference's."""
    x = kwargs.get("x", x)
    return (
        isinstance(x, np.ndarray)
        and x.ndim == 4
        and x.dtype in (np.float32, np.float64)
        and x.flags.c_contiguous
        and math.prod(x.shape) > 0
    )
