"""Fast batch normalisation for [N, C, H, W]: each pass one fused Numba loop, split over threads.

The definition is :func:`glassnet.functional.norm.batch_norm_forward` and its backward.
Same arguments, same checks (:func:`~glassnet.functional.norm.batch_norm_arguments`) and
the same results to rounding. What changes is how many times the activations are read:

* training forward, three passes: row sums Σx (float64); x̂ = x − μ written while Σx̂²
  (float64) is summed; x̂ scaled in place by 1/σ while y = x̂·γ + β is written;
* the input gradient is folded into per-channel coefficients,
  dx = x̂·b + c + g·a with a = γ/σ, b = −a·mean(g·x̂), c = −a·mean(g): one pass sums Σg·x̂
  and Σg (float64) together, one writes dx (the reference takes five);
* in inference, y = x·a + b with per-channel a and b: one pass, nothing new kept.

Each row of L = H·W values is summed by one thread with eight float64 accumulators
(in NumPy order, which LLVM vectorises; PyTorch also accumulates batch statistics in
double on the CPU), then the N rows of a channel in float64 in one fixed order. Rows are
shared out among the worker threads in whole images, so results are bit-identical on any
number of threads. The loops are Numba kernels (``nogil``, compiled at the first batch
norm and cached on disk); without Numba the fast pair declines and the reference runs.
"""

from __future__ import annotations

import functools
import math
from types import SimpleNamespace
from typing import Any

import numpy as np

from ..backend import num_workers, parallel
from ..functional._op import Context
from ..functional.norm import batch_norm_arguments
from ._jit import AVAILABLE as AVAILABLE
from ._jit import compile_kernels

# Inputs with at least this many elements are split over the worker threads.
PARALLEL_MIN = 2**20
# Smaller inputs are left to the reference: a process's first Numba kernel costs about 1.5 s
# (importing Numba, loading the cached code), which a single-image prediction should not pay.
MIN_SIZE = 2**16


def _split(n: int, size: int) -> int:
    return min(n, num_workers()) if size >= PARALLEL_MIN else 1


def _row_sums(a, lo, hi, out):  # noqa: ANN001, ANN202
    """out[n, c] = Σ_l a[n, c, l] in float64, for rows lo ≤ n < hi."""
    _, cc, length = a.shape
    body = length - length % 8
    for n in range(lo, hi):
        for c in range(cc):
            s0 = s1 = s2 = s3 = s4 = s5 = s6 = s7 = 0.0
            for i in range(0, body, 8):
                s0 += a[n, c, i]
                s1 += a[n, c, i + 1]
                s2 += a[n, c, i + 2]
                s3 += a[n, c, i + 3]
                s4 += a[n, c, i + 4]
                s5 += a[n, c, i + 5]
                s6 += a[n, c, i + 6]
                s7 += a[n, c, i + 7]
            for i in range(body, length):
                s0 += a[n, c, i]
            out[n, c] = ((s0 + s1) + (s2 + s3)) + ((s4 + s5) + (s6 + s7))


def _centre(x, mean, lo, hi, h, out):  # noqa: ANN001, ANN202
    """h = x − mean[c]; out[n, c] = Σ_l h² in float64."""
    _, cc, length = x.shape
    body = length - length % 8
    for n in range(lo, hi):
        for c in range(cc):
            m = mean[c]
            for i in range(length):
                h[n, c, i] = x[n, c, i] - m
            s0 = s1 = s2 = s3 = s4 = s5 = s6 = s7 = 0.0
            for i in range(0, body, 8):
                v0, v1 = np.float64(h[n, c, i]), np.float64(h[n, c, i + 1])
                v2, v3 = np.float64(h[n, c, i + 2]), np.float64(h[n, c, i + 3])
                v4, v5 = np.float64(h[n, c, i + 4]), np.float64(h[n, c, i + 5])
                v6, v7 = np.float64(h[n, c, i + 6]), np.float64(h[n, c, i + 7])
                s0 += v0 * v0
                s1 += v1 * v1
                s2 += v2 * v2
                s3 += v3 * v3
                s4 += v4 * v4
                s5 += v5 * v5
                s6 += v6 * v6
                s7 += v7 * v7
            for i in range(body, length):
                v = np.float64(h[n, c, i])
                s0 += v * v
            out[n, c] = ((s0 + s1) + (s2 + s3)) + ((s4 + s5) + (s6 + s7))


def _scale(h, s, w, b, lo, hi, out):  # noqa: ANN001, ANN202
    """h *= s[c] in place; out = h·w[c] + b[c] (``out`` None-free: w = 1, b = 0 give x̂ itself)."""
    _, cc, length = h.shape
    for n in range(lo, hi):
        for c in range(cc):
            sc, wc, bc = s[c], w[c], b[c]
            for i in range(length):
                v = h[n, c, i] * sc
                h[n, c, i] = v
                out[n, c, i] = v * wc + bc


def _scale_only(h, s, lo, hi):  # noqa: ANN001, ANN202
    """h *= s[c] in place (no γ and no β: the output is x̂)."""
    _, cc, length = h.shape
    for n in range(lo, hi):
        for c in range(cc):
            sc = s[c]
            for i in range(length):
                h[n, c, i] = h[n, c, i] * sc


def _affine(x, a, b, lo, hi, out):  # noqa: ANN001, ANN202
    """out = x·a[c] + b[c] (inference)."""
    _, cc, length = x.shape
    for n in range(lo, hi):
        for c in range(cc):
            ac, bc = a[c], b[c]
            for i in range(length):
                out[n, c, i] = x[n, c, i] * ac + bc


def _grad_sums(g, h, lo, hi, out_gh, out_g):  # noqa: ANN001, ANN202
    """out_gh[n, c] = Σ_l g·h and out_g[n, c] = Σ_l g, both in float64, in one pass."""
    _, cc, length = g.shape
    body = length - length % 8
    for n in range(lo, hi):
        for c in range(cc):
            s0 = s1 = s2 = s3 = s4 = s5 = s6 = s7 = 0.0
            t0 = t1 = t2 = t3 = t4 = t5 = t6 = t7 = 0.0
            for i in range(0, body, 8):
                g0, g1 = np.float64(g[n, c, i]), np.float64(g[n, c, i + 1])
                g2, g3 = np.float64(g[n, c, i + 2]), np.float64(g[n, c, i + 3])
                g4, g5 = np.float64(g[n, c, i + 4]), np.float64(g[n, c, i + 5])
                g6, g7 = np.float64(g[n, c, i + 6]), np.float64(g[n, c, i + 7])
                s0 += g0 * h[n, c, i]
                s1 += g1 * h[n, c, i + 1]
                s2 += g2 * h[n, c, i + 2]
                s3 += g3 * h[n, c, i + 3]
                s4 += g4 * h[n, c, i + 4]
                s5 += g5 * h[n, c, i + 5]
                s6 += g6 * h[n, c, i + 6]
                s7 += g7 * h[n, c, i + 7]
                t0 += g0
                t1 += g1
                t2 += g2
                t3 += g3
                t4 += g4
                t5 += g5
                t6 += g6
                t7 += g7
            for i in range(body, length):
                g0 = np.float64(g[n, c, i])
                s0 += g0 * h[n, c, i]
                t0 += g0
            out_gh[n, c] = ((s0 + s1) + (s2 + s3)) + ((s4 + s5) + (s6 + s7))
            out_g[n, c] = ((t0 + t1) + (t2 + t3)) + ((t4 + t5) + (t6 + t7))


def _grad_input(g, h, a, b, k, lo, hi, dx):  # noqa: ANN001, ANN202
    """dx = h·b[c] + k[c] + g·a[c] (training backward)."""
    _, cc, length = g.shape
    for n in range(lo, hi):
        for c in range(cc):
            ac, bc, kc = a[c], b[c], k[c]
            for i in range(length):
                dx[n, c, i] = (h[n, c, i] * bc + kc) + g[n, c, i] * ac


def _scaled(g, a, lo, hi, dx):  # noqa: ANN001, ANN202
    """dx = g·a[c] (inference backward)."""
    _, cc, length = g.shape
    for n in range(lo, hi):
        for c in range(cc):
            ac = a[c]
            for i in range(length):
                dx[n, c, i] = g[n, c, i] * ac


@functools.cache
def _kernels() -> SimpleNamespace:
    """The loops above compiled by Numba (``nogil``, cached on disk), at the first batch norm."""
    names = ["row_sums", "centre", "scale", "scale_only", "affine", "grad_sums", "grad_input", "scaled"]
    return compile_kernels(**{name: globals()["_" + name] for name in names})


def _images(n: int, parts: int, fn: Any) -> None:
    """fn(lo, hi) over images lo ≤ i < hi, the batch cut into ``parts`` pieces for the workers."""
    parallel(lambda k, p: fn(n * k // p, n * (k + 1) // p), parts)


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
    kernels = _kernels()
    if not training:
        return _inference(x, running_mean, running_var, weight, bias, eps, parts, axes, shape)
    rows = np.empty((n, c))  # float64 row sums
    _images(n, parts, lambda lo, hi: kernels.row_sums(x3, lo, hi, rows))
    mean = (rows.sum(axis=0) / count).astype(dtype)
    xhat = np.empty_like(x)
    h3 = xhat.reshape(n, c, -1)
    _images(n, parts, lambda lo, hi: kernels.centre(x3, mean, lo, hi, h3, rows))
    sum_sq = rows.sum(axis=0)
    var = (sum_sq / count).astype(dtype)
    if running_mean is not None:
        running_mean *= 1 - momentum
        running_mean += momentum * mean
    if running_var is not None:  # unbiased, blended in float64 and rounded once, as PyTorch does
        running_var[...] = momentum * (sum_sq / (count - 1)) + (1 - momentum) * running_var.astype(np.float64)
    inv_std = 1.0 / np.sqrt(var + eps)
    if weight is None and bias is None:
        _images(n, parts, lambda lo, hi: kernels.scale_only(h3, inv_std, lo, hi))
        out = xhat
    else:
        w = np.ones(c, dtype) if weight is None else np.ascontiguousarray(weight, dtype=dtype)
        b = np.zeros(c, dtype) if bias is None else np.ascontiguousarray(bias, dtype=dtype)
        out = np.empty_like(x)
        o3 = out.reshape(n, c, -1)
        _images(n, parts, lambda lo, hi: kernels.scale(h3, inv_std, w, b, lo, hi, o3))
    ctx = Context(xhat=xhat, inv_std=inv_std, weight=weight, has_bias=bias is not None, training=training)
    ctx.update(axes=axes, shape=shape)
    return out, ctx


def _inference(
    x: np.ndarray, running_mean: Any, running_var: Any, weight: Any, bias: Any, eps: float, parts: int, *where: Any
) -> tuple[np.ndarray, Context]:
    """Inference: the statistics are constants, so y = x·a + b with per-channel a = γ/√(σ²+ε) and
    b = β − μ·a (PyTorch's CPU kernel folds it the same way): one pass, and x̂ is not kept
    (the backward recomputes it when there is a γ)."""
    n, c = x.shape[:2]
    dtype = x.dtype
    mean = np.asarray(running_mean, dtype=dtype)
    inv_std = 1.0 / np.sqrt(np.asarray(running_var, dtype=dtype) + eps)
    a = inv_std if weight is None else inv_std * np.asarray(weight, dtype=dtype)
    b = -mean * a if bias is None else np.asarray(bias, dtype=dtype) - mean * a
    x3, out = x.reshape(n, c, -1), np.empty_like(x)
    o3 = out.reshape(n, c, -1)
    kernels = _kernels()
    _images(n, parts, lambda lo, hi: kernels.affine(x3, a, b, lo, hi, o3))
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
    dtype = xhat.dtype
    g3, h3 = grad.reshape(n, c, -1), xhat.reshape(n, c, -1)
    count = n * h3.shape[2]
    parts = _split(n, grad.size)
    kernels = _kernels()
    sum_gx = sum_g = None
    if ctx.weight is not None or ctx.has_bias or ctx.training:
        rows_gx, rows_g = np.empty((n, c)), np.empty((n, c))
        _images(n, parts, lambda lo, hi: kernels.grad_sums(g3, h3, lo, hi, rows_gx, rows_g))
        sum_gx, sum_g = rows_gx.sum(axis=0).astype(dtype), rows_g.sum(axis=0).astype(dtype)
    scale = ctx.inv_std if ctx.weight is None else ctx.inv_std * np.asarray(ctx.weight, dtype=dtype)
    a = np.ascontiguousarray(scale, dtype=dtype)
    dx = np.empty_like(grad)
    d3 = dx.reshape(n, c, -1)
    if ctx.training:
        b = -a * (sum_gx / count)
        k = -a * (sum_g / count)
        _images(n, parts, lambda lo, hi: kernels.grad_input(g3, h3, a, b, k, lo, hi, d3))
    else:
        _images(n, parts, lambda lo, hi: kernels.scaled(g3, a, lo, hi, d3))
    dweight = sum_gx if ctx.weight is not None else None
    dbias = sum_g if ctx.has_bias else None
    return dx, None, None, dweight, dbias


def supports(x: Any = None, *args: Any, **kwargs: Any) -> bool:
    """4-D C-contiguous float32/float64 NumPy input of MIN_SIZE elements or more, and Numba; the rest
    (and every error) is the reference's."""
    x = kwargs.get("x", x)
    return (
        AVAILABLE
        and isinstance(x, np.ndarray)
        and x.ndim == 4
        and x.dtype in (np.float32, np.float64)
        and x.flags.c_contiguous
        and math.prod(x.shape) >= max(1, MIN_SIZE)
    )
