"""Fast batch normalisation for [N, C, H, W]: each pass one fused Numba loop, split over threads.

The definitions are :func:`glassnet.functional.norm.batch_norm_forward` and
:func:`~glassnet.functional.norm.batch_norm_relu_forward` (batch norm, + residual, ReLU) and
their backwards. Same arguments, same checks (:func:`~glassnet.functional.norm.batch_norm_arguments`)
and the same results to rounding; the fused op's output is bit for bit what batch_norm, the
addition and relu give on this backend (its gradients to rounding). What changes is how many
times the activations are read and written (in units of one activation-sized array):

* training forward, three passes over x: row sums Σx (float64); Σ(x − μ)² (float64),
  nothing written; y = ((x − μ)·(1/σ))·γ + β written, and with the fused op ``+ residual``
  and ``max(·, 0)`` in the same loop. Batch norm alone: 4 units (the reference: 6), batch
  norm + add + ReLU: 5 (as three ops: 11). x̂ is not kept: the backward recomputes it from
  x, μ and 1/σ with the same two roundings, so it is the reference's x̂ to the bit;
* the input gradient is folded into per-channel coefficients,
  dx = x̂·b + c + g·a with a = γ/σ, b = −a·mean(g·x̂), c = −a·mean(g): one pass sums Σg·x̂
  and Σg (float64) together, one writes dx (the reference takes five); the fused op's
  passes also apply ReLU's mask (out > 0, read from the kept output), and with a residual the
  first one writes the masked gradient, which is the residual's gradient;
* in inference, y = x·a + b with per-channel a and b (then ``+ residual``, ``max(·, 0)``):
  one pass, nothing new kept.

Each row of L = H·W values is summed by one thread in float64 (PyTorch also accumulates
batch statistics in double on the CPU), as a vector reduction (:func:`._jit.reduction`: LLVM
keeps several partial sums, 6× faster than one running sum), then the N rows of a channel in
float64 in one fixed order. Rows are shared out among the worker threads in whole images, so
results are bit-identical on any number of threads. The loops are Numba kernels (``nogil``,
compiled at the first batch norm and cached on disk); without Numba the fast pairs decline and
the reference runs.
"""

from __future__ import annotations

import functools
import math
from types import SimpleNamespace
from typing import Any

import numpy as np

from ..backend import num_workers, parallel
from ..functional._op import Context
from ..functional.activation import relu
from ..functional.norm import batch_norm_arguments, residual_argument
from ._jit import AVAILABLE as AVAILABLE
from ._jit import compile_kernels, reduction

# Inputs with at least this many elements are split over the worker threads.
PARALLEL_MIN = 2**20
# Smaller inputs are left to the reference: a process's first Numba kernel costs about 1.5 s
# (importing Numba, loading the cached code), which a single-image prediction should not pay.
MIN_SIZE = 2**16


def _split(n: int, size: int) -> int:
    return min(n, num_workers()) if size >= PARALLEL_MIN else 1


@reduction
def _row_sums(a, lo, hi, out):  # noqa: ANN001, ANN202
    """out[n, c] = Σ_l a[n, c, l] in float64, for rows lo ≤ n < hi."""
    _, cc, length = a.shape
    for n in range(lo, hi):
        for c in range(cc):
            s = 0.0
            for i in range(length):
                s += np.float64(a[n, c, i])
            out[n, c] = s


@reduction
def _sq_sums(x, mean, lo, hi, out):  # noqa: ANN001, ANN202
    """out[n, c] = Σ_l (x − mean[c])² in float64, the difference rounded to x's type first (as x̂'s is)."""
    _, cc, length = x.shape
    for n in range(lo, hi):
        for c in range(cc):
            m = mean[c]
            s = 0.0
            for i in range(length):
                v = np.float64(x[n, c, i] - m)
                s += v * v
            out[n, c] = s


def _normalise(x, mean, s, w, b, lo, hi, out):  # noqa: ANN001, ANN202
    """out = x̂·w[c] + b[c], x̂ = (x − mean[c])·s[c]."""
    _, cc, length = x.shape
    for n in range(lo, hi):
        for c in range(cc):
            m, sc, wc, bc = mean[c], s[c], w[c], b[c]
            for i in range(length):
                out[n, c, i] = ((x[n, c, i] - m) * sc) * wc + bc


def _normalise_plain(x, mean, s, lo, hi, out):  # noqa: ANN001, ANN202
    """out = x̂ = (x − mean[c])·s[c] (no γ and no β)."""
    _, cc, length = x.shape
    for n in range(lo, hi):
        for c in range(cc):
            m, sc = mean[c], s[c]
            for i in range(length):
                out[n, c, i] = (x[n, c, i] - m) * sc


def _normalise_relu(x, mean, s, w, b, lo, hi, out, zero):  # noqa: ANN001, ANN202
    """out = max(x̂·w[c] + b[c], 0) (NaN stays NaN, as NumPy's maximum gives)."""
    _, cc, length = x.shape
    z = zero[0]  # +0.0 of the arrays' type (a literal 0.0 is a float64, which would widen the select)
    for n in range(lo, hi):
        for c in range(cc):
            m, sc, wc, bc = mean[c], s[c], w[c], b[c]
            for i in range(length):
                y = ((x[n, c, i] - m) * sc) * wc + bc
                out[n, c, i] = z if y <= 0.0 else y


def _normalise_add_relu(x, mean, s, w, b, r, lo, hi, out, zero):  # noqa: ANN001, ANN202
    """out = max(x̂·w[c] + b[c] + r, 0)."""
    _, cc, length = x.shape
    z = zero[0]  # +0.0 of the arrays' type (a literal 0.0 is a float64, which would widen the select)
    for n in range(lo, hi):
        for c in range(cc):
            m, sc, wc, bc = mean[c], s[c], w[c], b[c]
            for i in range(length):
                y = (((x[n, c, i] - m) * sc) * wc + bc) + r[n, c, i]
                out[n, c, i] = z if y <= 0.0 else y


def _affine(x, a, b, lo, hi, out):  # noqa: ANN001, ANN202
    """out = x·a[c] + b[c] (inference)."""
    _, cc, length = x.shape
    for n in range(lo, hi):
        for c in range(cc):
            ac, bc = a[c], b[c]
            for i in range(length):
                out[n, c, i] = x[n, c, i] * ac + bc


def _affine_relu(x, a, b, lo, hi, out, zero):  # noqa: ANN001, ANN202
    """out = max(x·a[c] + b[c], 0) (inference)."""
    _, cc, length = x.shape
    z = zero[0]  # +0.0 of the arrays' type (a literal 0.0 is a float64, which would widen the select)
    for n in range(lo, hi):
        for c in range(cc):
            ac, bc = a[c], b[c]
            for i in range(length):
                y = x[n, c, i] * ac + bc
                out[n, c, i] = z if y <= 0.0 else y


def _affine_add_relu(x, a, b, r, lo, hi, out, zero):  # noqa: ANN001, ANN202
    """out = max(x·a[c] + b[c] + r, 0) (inference)."""
    _, cc, length = x.shape
    z = zero[0]  # +0.0 of the arrays' type (a literal 0.0 is a float64, which would widen the select)
    for n in range(lo, hi):
        for c in range(cc):
            ac, bc = a[c], b[c]
            for i in range(length):
                y = (x[n, c, i] * ac + bc) + r[n, c, i]
                out[n, c, i] = z if y <= 0.0 else y


@reduction
def _grad_sums(g, y, x, mean, s, mask, lo, hi, out_gh, out_g, gm, zero):  # noqa: ANN001, ANN202
    """out_gh[n, c] = Σ_l g·x̂ and out_g[n, c] = Σ_l g, both in float64, in one pass (x̂ recomputed).

    After a ReLU, g is first masked by ReLU's rule, row by row: g where the ReLU's output ``y``
    is > 0, else +0.0; the sums are then the masked gradient's. ``mask`` 1 also writes the
    masked gradient into ``gm`` (it is a residual's gradient), ``mask`` 2 writes nothing;
    ``mask`` 0: no ReLU."""
    _, cc, length = x.shape
    z = zero[0]  # +0.0 of the arrays' type (a literal 0.0 is a float64, which would widen the select)
    for n in range(lo, hi):
        for c in range(cc):
            m, sc = mean[c], s[c]
            sgh = 0.0
            sg = 0.0
            if mask == 0:
                for i in range(length):
                    v = np.float64(g[n, c, i])
                    sgh += v * np.float64((x[n, c, i] - m) * sc)
                    sg += v
            elif mask == 1:
                for i in range(length):
                    gv = g[n, c, i] if y[n, c, i] > z else z
                    gm[n, c, i] = gv
                    v = np.float64(gv)
                    sgh += v * np.float64((x[n, c, i] - m) * sc)
                    sg += v
            else:
                for i in range(length):
                    v = np.float64(g[n, c, i] if y[n, c, i] > z else z)
                    sgh += v * np.float64((x[n, c, i] - m) * sc)
                    sg += v
            out_gh[n, c] = sgh
            out_g[n, c] = sg


def _grad_input(g, y, x, mean, s, mask, a, bb, k, lo, hi, dx, zero):  # noqa: ANN001, ANN202
    """dx = x̂·bb[c] + k[c] + g·a[c] (training backward, x̂ recomputed); with ``mask`` 2, g is
    first masked by ReLU's rule (g where its output ``y`` > 0, else +0.0)."""
    _, cc, length = g.shape
    z = zero[0]  # +0.0 of the arrays' type (a literal 0.0 is a float64, which would widen the select)
    for n in range(lo, hi):
        for c in range(cc):
            m, sc, ac, bbc, kc = mean[c], s[c], a[c], bb[c], k[c]
            if mask == 2:
                for i in range(length):
                    gv = g[n, c, i] if y[n, c, i] > z else z
                    dx[n, c, i] = (((x[n, c, i] - m) * sc) * bbc + kc) + gv * ac
            else:
                for i in range(length):
                    dx[n, c, i] = (((x[n, c, i] - m) * sc) * bbc + kc) + g[n, c, i] * ac


def _scaled(g, a, lo, hi, dx):  # noqa: ANN001, ANN202
    """dx = g·a[c] (inference backward)."""
    _, cc, length = g.shape
    for n in range(lo, hi):
        for c in range(cc):
            ac = a[c]
            for i in range(length):
                dx[n, c, i] = g[n, c, i] * ac


KERNELS = (
    "row_sums", "sq_sums", "normalise", "normalise_plain", "normalise_relu", "normalise_add_relu",
    "affine", "affine_relu", "affine_add_relu", "grad_sums", "grad_input", "scaled",
)  # fmt: skip


@functools.cache
def _kernels() -> SimpleNamespace:
    """The loops above compiled by Numba (``nogil``, cached on disk), at the first batch norm."""
    return compile_kernels(**{name: globals()["_" + name] for name in KERNELS})


def _images(n: int, parts: int, fn: Any) -> None:
    """fn(lo, hi) over images lo ≤ i < hi, the batch cut into ``parts`` pieces for the workers."""
    parallel(lambda k, p: fn(n * k // p, n * (k + 1) // p), parts)


def _per_channel(v: Any, c: int, fill: float, dtype: Any) -> np.ndarray:
    return np.full(c, fill, dtype) if v is None else np.ascontiguousarray(v, dtype=dtype)


def _forward(
    x: Any,
    running_mean: Any,
    running_var: Any,
    weight: Any,
    bias: Any,
    training: bool,
    momentum: float,
    eps: float,
    residual: Any,
    relu: bool,
) -> tuple[np.ndarray, Context]:
    """Batch norm, then (``relu``) + residual and ReLU: both fast forwards."""
    x, axes, shape = batch_norm_arguments(x, running_mean, running_var, weight, bias, training, momentum, eps)
    if relu:
        residual = residual_argument(x, residual)
    n, c = x.shape[:2]
    dtype = x.dtype
    x3 = x.reshape(n, c, -1)
    parts = _split(n, x.size)
    kernels = _kernels()
    if training:
        count = n * x3.shape[2]
        rows = np.empty((n, c))  # float64 row sums
        _images(n, parts, lambda lo, hi: kernels.row_sums(x3, lo, hi, rows))
        mean = (rows.sum(axis=0) / count).astype(dtype)
        _images(n, parts, lambda lo, hi: kernels.sq_sums(x3, mean, lo, hi, rows))
        sum_sq = rows.sum(axis=0)
        var = (sum_sq / count).astype(dtype)
        if running_mean is not None:
            running_mean *= 1 - momentum
            running_mean += momentum * mean
        if running_var is not None:  # unbiased, blended in float64 and rounded once, as PyTorch does
            running_var[...] = momentum * (sum_sq / (count - 1)) + (1 - momentum) * running_var.astype(np.float64)
        inv_std = 1.0 / np.sqrt(var + eps)
    else:  # the statistics are constants: y = x·a + b, a = γ/√(σ²+ε), b = β − μ·a (as PyTorch's CPU kernel)
        mean = np.asarray(running_mean, dtype=dtype)
        inv_std = 1.0 / np.sqrt(np.asarray(running_var, dtype=dtype) + eps)
        a = inv_std if weight is None else inv_std * np.asarray(weight, dtype=dtype)
        b = -mean * a if bias is None else np.asarray(bias, dtype=dtype) - mean * a
    w, bt = _per_channel(weight, c, 1.0, dtype), _per_channel(bias, c, 0.0, dtype)  # the training affine
    zero = np.zeros(1, dtype)
    out = np.empty_like(x)
    o3 = out.reshape(n, c, -1)
    if not training:
        if residual is not None:
            r3 = np.ascontiguousarray(residual, dtype=dtype).reshape(n, c, -1)
            _images(n, parts, lambda lo, hi: kernels.affine_add_relu(x3, a, b, r3, lo, hi, o3, zero))
        else:
            if relu:
                _images(n, parts, lambda lo, hi: kernels.affine_relu(x3, a, b, lo, hi, o3, zero))
            else:
                _images(n, parts, lambda lo, hi: kernels.affine(x3, a, b, lo, hi, o3))
    elif relu or weight is not None or bias is not None:
        if residual is not None:
            r3 = np.ascontiguousarray(residual, dtype=dtype).reshape(n, c, -1)
            _images(n, parts, lambda lo, hi: kernels.normalise_add_relu(x3, mean, inv_std, w, bt, r3, lo, hi, o3, zero))
        else:
            if relu:
                _images(n, parts, lambda lo, hi: kernels.normalise_relu(x3, mean, inv_std, w, bt, lo, hi, o3, zero))
            else:
                _images(n, parts, lambda lo, hi: kernels.normalise(x3, mean, inv_std, w, bt, lo, hi, o3))
    else:  # x̂ itself (γ·x̂ + β with γ = 1, β = 0 would turn a −0.0 into +0.0)
        _images(n, parts, lambda lo, hi: kernels.normalise_plain(x3, mean, inv_std, lo, hi, o3))
    ctx = Context(x=x, mean=mean, inv_std=inv_std, weight=weight, has_bias=bias is not None, training=training)
    ctx.update(axes=axes, shape=shape, out=out if relu else None, has_residual=residual is not None)
    return out, ctx


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
    return _forward(x, running_mean, running_var, weight, bias, training, momentum, eps, None, relu=False)


def batch_norm_relu_forward(
    x: Any,
    running_mean: Any,
    running_var: Any,
    weight: Any = None,
    bias: Any = None,
    training: bool = True,
    momentum: float = 0.1,
    eps: float = 1e-5,
    residual: Any = None,
) -> tuple[np.ndarray, Context]:
    """As :func:`glassnet.functional.norm.batch_norm_relu_forward`, for 4-D C-contiguous input."""
    return _forward(x, running_mean, running_var, weight, bias, training, momentum, eps, residual, relu=True)


def _xhat(ctx: Context) -> np.ndarray:
    return (ctx.x - ctx.mean.reshape(ctx.shape)) * ctx.inv_std.reshape(ctx.shape)


def _backward(grad: Any, ctx: Context) -> tuple[Any, ...]:
    """Both fast backwards: ``(dx, None, None, dweight, dbias, masked)``, ``masked`` the gradient
    after ReLU's rule (None without a ReLU)."""
    x, relu_out, masked = ctx.x, ctx.out, None
    dtype = x.dtype
    grad = np.asarray(grad, dtype=dtype)
    fits = grad.shape == x.shape and grad.flags.c_contiguous
    if relu_out is not None and (relu.overridden() or not fits):  # ReLU's rule on its own (maybe replaced)
        (masked,) = relu.backward_for("fast")(grad, Context(mask=relu_out > 0, x=None))
        grad = masked = np.ascontiguousarray(masked, dtype=dtype)
        relu_out = None
    if not fits:
        from ..functional.norm import batch_norm_backward as reference

        return (*reference(grad, Context(ctx, xhat=_xhat(ctx))), masked)
    n, c = x.shape[:2]
    g3, x3 = grad.reshape(n, c, -1), x.reshape(n, c, -1)
    count = n * x3.shape[2]
    parts = _split(n, grad.size)
    kernels = _kernels()
    mean, inv_std = ctx.mean, ctx.inv_std
    zero = np.zeros(1, dtype)
    # ReLU's mask, read from its output: none (0); the masked gradient written, for the residual or
    # for an inference backward (1); applied again in the second pass, nothing written (2)
    mask = 0 if relu_out is None else 2 if ctx.training and not ctx.has_residual else 1
    sum_gx = sum_g = None
    if mask or ctx.weight is not None or ctx.has_bias or ctx.training:
        y3 = m3 = np.empty((0, c, x3.shape[2]), dtype)
        if mask:
            y3 = relu_out.reshape(n, c, -1)
        if mask == 1:
            masked = np.empty_like(grad)
            m3 = masked.reshape(n, c, -1)
        rows_gx, rows_g = np.empty((n, c)), np.empty((n, c))
        _images(
            n,
            parts,
            lambda lo, hi: kernels.grad_sums(g3, y3, x3, mean, inv_std, mask, lo, hi, rows_gx, rows_g, m3, zero),
        )
        sum_gx, sum_g = rows_gx.sum(axis=0).astype(dtype), rows_g.sum(axis=0).astype(dtype)
        if mask == 1:
            g3, mask = m3, 0
    a = inv_std if ctx.weight is None else inv_std * np.asarray(ctx.weight, dtype=dtype)
    a = np.ascontiguousarray(a, dtype=dtype)
    dx = np.empty_like(grad)
    d3 = dx.reshape(n, c, -1)
    if ctx.training:
        bb = -a * (sum_gx / count)
        k = -a * (sum_g / count)
        _images(
            n, parts, lambda lo, hi: kernels.grad_input(g3, y3, x3, mean, inv_std, mask, a, bb, k, lo, hi, d3, zero)
        )
    else:
        _images(n, parts, lambda lo, hi: kernels.scaled(g3, a, lo, hi, d3))
    dweight = sum_gx if ctx.weight is not None else None
    dbias = sum_g if ctx.has_bias else None
    return dx, None, None, dweight, dbias, masked


def batch_norm_backward(grad: Any, ctx: Context) -> tuple[Any, ...]:
    """As :func:`glassnet.functional.norm.batch_norm_backward`: ``(dx, None, None, dweight, dbias)``."""
    return _backward(grad, ctx)[:5]


def batch_norm_relu_backward(grad: Any, ctx: Context) -> tuple[Any, ...]:
    """As :func:`glassnet.functional.norm.batch_norm_relu_backward`:
    ``(dx, None, None, dweight, dbias, None, None, None, dresidual)``."""
    dx, _, _, dweight, dbias, masked = _backward(grad, ctx)
    return dx, None, None, dweight, dbias, None, None, None, (masked if ctx.has_residual else None)


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


def supports_relu(x: Any = None, *args: Any, residual: Any = None, **kwargs: Any) -> bool:
    """As :func:`supports`, and a residual (if any) that is a NumPy array of x's dtype."""
    x = kwargs.get("x", x)
    if residual is None and len(args) == 8:
        residual = args[7]
    same = residual is None or (isinstance(residual, np.ndarray) and residual.dtype == getattr(x, "dtype", None))
    return same and supports(x)
