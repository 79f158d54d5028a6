"""The Tensor's own differentiable operators, each a forward/backward pair like every op.

Arithmetic broadcasts as NumPy does; its backward sums the gradient back over the axes
that broadcasting stretched (:func:`unbroadcast`). Written against the Array API
(``xp`` is the inputs' namespace), so they run on NumPy, CuPy and array-api-strict.
"""

from __future__ import annotations

import math
from typing import Any

import numpy as np

from ..backend import array_namespace, dtype_name, namespace_dtype
from .function import Context, Meta, MetaArray, Op
from .tensor import Tensor


def unbroadcast(g: Any, shape: tuple[int, ...]) -> Any:
    """Sum ``g`` down to ``shape``: the adjoint of broadcasting ``shape`` up to ``g.shape``."""
    xp = array_namespace(g)
    if tuple(g.shape) == tuple(shape):
        return g
    lead = g.ndim - len(shape)
    axes = tuple(range(lead)) + tuple(lead + i for i, n in enumerate(shape) if n == 1 and g.shape[lead + i] != 1)
    if axes:
        g = xp.sum(g, axis=axes, keepdims=True)
    return xp.reshape(g, shape)


def _arr(x: Any, like: Any) -> Any:
    """A Python number or array as an array in ``like``'s namespace and dtype."""
    if _is_arrayish(x):
        return x
    xp = array_namespace(like)
    return xp.asarray(x, dtype=like.dtype, device=_device(like))


def _is_arrayish(x: Any) -> bool:
    return hasattr(x, "shape") and hasattr(x, "dtype") and not isinstance(x, np.generic)


def _device(a: Any) -> Any:
    from ..backend import device_of

    return device_of(a)


def _broadcast_meta(a: Any, b: Any) -> Meta:
    sa = a.shape if isinstance(a, MetaArray) else np.shape(a)
    sb = b.shape if isinstance(b, MetaArray) else np.shape(b)
    return Meta(tuple(np.broadcast_shapes(sa, sb)))


# -- arithmetic -------------------------------------------------------------------------------
def add_forward(a: Any, b: Any) -> tuple[Any, Context]:
    """a + b (broadcasting)."""
    b = _arr(b, a) if _is_arrayish(a) else b
    a = _arr(a, b)
    return a + b, Context(a_shape=tuple(a.shape), b_shape=tuple(b.shape))


def add_backward(g: Any, ctx: Context) -> tuple[Any, Any]:
    """∂(a+b)/∂a = ∂(a+b)/∂b = 1."""
    return unbroadcast(g, ctx.a_shape), unbroadcast(g, ctx.b_shape)


add = Op(add_forward, add_backward, meta=_broadcast_meta)


def sub_forward(a: Any, b: Any) -> tuple[Any, Context]:
    """a − b (broadcasting)."""
    b = _arr(b, a) if _is_arrayish(a) else b
    a = _arr(a, b)
    return a - b, Context(a_shape=tuple(a.shape), b_shape=tuple(b.shape))


def sub_backward(g: Any, ctx: Context) -> tuple[Any, Any]:
    """∂(a−b)/∂a = 1, ∂(a−b)/∂b = −1."""
    return unbroadcast(g, ctx.a_shape), unbroadcast(-g, ctx.b_shape)


sub = Op(sub_forward, sub_backward, meta=_broadcast_meta)


def mul_forward(a: Any, b: Any) -> tuple[Any, Context]:
    """a · b element-wise (broadcasting)."""
    b = _arr(b, a) if _is_arrayish(a) else b
    a = _arr(a, b)
    return a * b, Context(a=a, b=b)


def mul_backward(g: Any, ctx: Context) -> tuple[Any, Any]:
    """∂(ab)/∂a = b, ∂(ab)/∂b = a."""
    need = ctx.get("needs_input_grad", (True, True))
    da = unbroadcast(g * ctx.b, tuple(ctx.a.shape)) if need[0] else None
    db = unbroadcast(g * ctx.a, tuple(ctx.b.shape)) if len(need) > 1 and need[1] else None
    return da, db


mul = Op(mul_forward, mul_backward, meta=_broadcast_meta)


def div_forward(a: Any, b: Any) -> tuple[Any, Context]:
    """a / b element-wise (broadcasting)."""
    b = _arr(b, a) if _is_arrayish(a) else b
    a = _arr(a, b)
    return a / b, Context(a=a, b=b)


def div_backward(g: Any, ctx: Context) -> tuple[Any, Any]:
    """∂(a/b)/∂a = 1/b, ∂(a/b)/∂b = −a/b²."""
    a, b = ctx.a, ctx.b
    return unbroadcast(g / b, tuple(a.shape)), unbroadcast(-g * a / (b * b), tuple(b.shape))


div = Op(div_forward, div_backward, meta=_broadcast_meta)


def pow_forward(a: Any, exponent: Any) -> tuple[Any, Context]:
    """a ** p for a constant exponent p (a number)."""
    if _is_arrayish(exponent):
        raise TypeError("Tensor ** Tensor is not supported: the exponent must be a number")
    out = a**exponent
    return out, Context(a=a, p=exponent)


def pow_backward(g: Any, ctx: Context) -> tuple[Any]:
    """∂(aᵖ)/∂a = p·aᵖ⁻¹; for p = 0 the gradient is 0 everywhere, a = 0 included (as in PyTorch)."""
    if ctx.p == 0:
        return (array_namespace(g).zeros_like(g),)  # p·aᵖ⁻¹ would be 0·∞ = NaN at a = 0
    return (g * ctx.p * ctx.a ** (ctx.p - 1),)


pow_ = Op(pow_forward, pow_backward, name="pow")


def neg_forward(a: Any) -> tuple[Any, Context]:
    """−a."""
    return -a, Context()


def neg_backward(g: Any, ctx: Context) -> tuple[Any]:
    return (-g,)


neg = Op(neg_forward, neg_backward)


def abs_forward(a: Any) -> tuple[Any, Context]:
    """|a| element-wise."""
    xp = array_namespace(a)
    return xp.abs(a), Context(a=a)


def abs_backward(g: Any, ctx: Context) -> tuple[Any]:
    """∂|a|/∂a = sign(a) (0 at a = 0, as in PyTorch)."""
    return (g * array_namespace(g).sign(ctx.a),)


abs_ = Op(abs_forward, abs_backward, name="abs")


def matmul_forward(a: Any, b: Any) -> tuple[Any, Context]:
    """a @ b: [..., m, k] @ [..., k, n] → [..., m, n] (1-D operands as vectors, as in NumPy)."""
    xp = array_namespace(a, b)
    return xp.matmul(a, b), Context(a=a, b=b)


def matmul_backward(g: Any, ctx: Context) -> tuple[Any, Any]:
    """∂/∂a = g·bᵀ, ∂/∂b = aᵀ·g (vectors promoted to matrices and back)."""
    xp = array_namespace(g)
    a, b = ctx.a, ctx.b
    a2 = xp.reshape(a, (1, -1)) if a.ndim == 1 else a
    b2 = xp.reshape(b, (-1, 1)) if b.ndim == 1 else b
    g2 = g
    if b.ndim == 1:  # first: for vector @ vector, g is 0-d and has no axis -2 yet
        g2 = xp.expand_dims(g2, axis=-1)
    if a.ndim == 1:
        g2 = xp.expand_dims(g2, axis=-2)
    da = xp.matmul(g2, xp.matrix_transpose(b2))
    db = xp.matmul(xp.matrix_transpose(a2), g2)
    da = xp.reshape(unbroadcast(da, a2.shape if a.ndim > 1 else (1, a.shape[0])), a.shape)
    db = xp.reshape(unbroadcast(db, b2.shape if b.ndim > 1 else (b.shape[0], 1)), b.shape)
    return da, db


def _matmul_meta(a: Any, b: Any) -> Meta:
    sa, sb = tuple(a.shape), tuple(b.shape)
    sa2 = (1, *sa) if len(sa) == 1 else sa
    sb2 = (*sb, 1) if len(sb) == 1 else sb
    batch = np.broadcast_shapes(sa2[:-2], sb2[:-2])
    out = (*batch, sa2[-2], sb2[-1])
    if len(sa) == 1:
        out = out[:-2] + out[-1:]
    if len(sb) == 1:
        out = out[:-1]
    macs = int(np.prod(batch, dtype=np.int64)) * sa2[-2] * sa2[-1] * sb2[-1]
    return Meta(tuple(out), macs=macs, window="whole")


matmul = Op(matmul_forward, matmul_backward, meta=_matmul_meta)


def cast_forward(a: Any, dtype: Any = None) -> tuple[Any, Context]:
    """a converted to ``dtype`` (a NumPy dtype or a name: the array's namespace's dtype of that name)."""
    xp = array_namespace(a)
    target = namespace_dtype(xp, dtype)
    return (a if dtype_name(a.dtype) == dtype_name(target) else xp.astype(a, target)), Context(dtype=a.dtype)


def cast_backward(g: Any, ctx: Context) -> tuple[Any]:
    return (array_namespace(g).astype(g, ctx.dtype),)


cast = Op(cast_forward, cast_backward, meta=lambda a, dtype=None: Meta(tuple(a.shape), np.dtype(dtype)))


def to_device_forward(a: Any, device: Any = None) -> tuple[Any, Context]:
    """a moved to ``device`` ("cpu": NumPy, "cuda": CuPy)."""
    from ..backend import device_of, move

    ctx = Context(numpy=isinstance(a, np.ndarray), xp=array_namespace(a), device=device_of(a))
    return move(a, device), ctx


def to_device_backward(g: Any, ctx: Context) -> tuple[Any]:
    """The gradient moves back to where the input lives."""
    from ..backend import to_numpy

    g = to_numpy(g)
    return (g if ctx.numpy else ctx.xp.asarray(g, device=ctx.device),)


to_device = Op(to_device_forward, to_device_backward, meta=lambda a, device=None: Meta(tuple(a.shape), a.dtype))


# -- shapes ----------------------------------------------------------------------------------
def _standard_index(a: Any, index: Any) -> Any:
    """NumPy's index as the Array API spells it: a tuple, ending in ``...`` (the standard
    does not fill in trailing axes the way NumPy does). NumPy arrays keep their index."""
    if isinstance(a, np.ndarray):
        return index
    index = index if isinstance(index, tuple) else (index,)
    return index if any(i is Ellipsis for i in index) else (*index, ...)


def _is_int_array(i: Any) -> bool:
    return _is_arrayish(i) and dtype_name(i.dtype).startswith(("int", "uint"))


def getitem_forward(a: Any, index: Any = None) -> tuple[Any, Context]:
    """a[index]: basic slicing, boolean masks and integer-array indexing."""
    index = _standard_index(a, index)
    if _rows_of(index):  # a[rows]: the standard's spelling is take (it mixes no arrays with slices)
        xp = array_namespace(a)
        return xp.take(a, index[0] % a.shape[0], axis=0), Context(shape=tuple(a.shape), dtype=a.dtype, index=index)
    return a[index], Context(shape=tuple(a.shape), dtype=a.dtype, index=index)


def _rows_of(index: Any) -> bool:
    """Whether a standard index (see :func:`_standard_index`) is ``(1-D int array, ...)``."""
    return (
        isinstance(index, tuple)
        and len(index) == 2
        and _is_int_array(index[0])
        and index[0].ndim == 1
        and index[1] is Ellipsis
        and not isinstance(index[0], np.ndarray)
    )


def getitem_backward(g: Any, ctx: Context) -> tuple[Any]:
    """The gradient goes back to the cells that were read (added up where read twice)."""
    xp = array_namespace(g)
    out = xp.zeros(ctx.shape, dtype=g.dtype, device=_device(g))
    index = ctx.index
    if isinstance(out, np.ndarray):
        np.add.at(out, index, g)
    elif type(out).__module__.startswith("cupy"):
        import cupyx  # type: ignore[import-not-found]  # only for CuPy arrays, which need CuPy anyway

        cupyx.scatter_add(out, index, g)
    elif not any(_is_int_array(i) for i in index):
        out[index] += g  # slices, integers and masks read each cell at most once
    elif _rows_of(index):
        # a[rows]: cell r of axis 0 gets Σ of the gradient rows that read it, onehotᵀ @ g (repeats add up)
        rows = index[0] % ctx.shape[0]
        onehot = xp.astype(xp.reshape(rows, (-1, 1)) == xp.arange(ctx.shape[0], device=_device(g)), g.dtype)
        out = xp.reshape(xp.matmul(xp.matrix_transpose(onehot), xp.reshape(g, (rows.shape[0], -1))), ctx.shape)
    else:
        raise NotImplementedError(
            f"backward of integer-array indexing {index!r} on {xp.__name__} arrays: only a[int_array] is supported"
        )
    return (out,)


def _getitem_meta(a: Any, index: Any = None) -> Meta:
    probe = np.broadcast_to(np.zeros((), dtype=np.int8), a.shape)[index]  # zero-strided: no data
    return Meta(tuple(probe.shape), a.dtype)


getitem = Op(getitem_forward, getitem_backward, meta=_getitem_meta)


def reshape_forward(a: Any, shape: Any = None) -> tuple[Any, Context]:
    """a with a new shape (same elements, row-major order)."""
    xp = array_namespace(a)
    return xp.reshape(a, tuple(shape)), Context(shape=tuple(a.shape))


def reshape_backward(g: Any, ctx: Context) -> tuple[Any]:
    return (array_namespace(g).reshape(g, ctx.shape),)


def _reshape_meta(a: Any, shape: Any = None) -> Meta:
    return Meta(tuple(np.broadcast_to(np.zeros((), dtype=np.int8), a.shape).reshape(tuple(shape)).shape), a.dtype)


reshape = Op(reshape_forward, reshape_backward, meta=_reshape_meta)


def permute_forward(a: Any, axes: Any = None) -> tuple[Any, Context]:
    """a with its axes reordered (``transpose``): output axis i is input axis axes[i]."""
    xp = array_namespace(a)
    axes = tuple(range(a.ndim))[::-1] if axes is None else tuple(int(x) % a.ndim for x in axes)
    return xp.permute_dims(a, axes), Context(axes=axes)


def permute_backward(g: Any, ctx: Context) -> tuple[Any]:
    """The inverse permutation."""
    inverse = tuple(int(i) for i in np.argsort(ctx.axes))
    return (array_namespace(g).permute_dims(g, inverse),)


def _permute_meta(a: Any, axes: Any = None) -> Meta:
    axes = tuple(range(a.ndim))[::-1] if axes is None else tuple(int(x) % a.ndim for x in axes)
    return Meta(tuple(a.shape[i] for i in axes), a.dtype)


permute = Op(permute_forward, permute_backward, meta=_permute_meta)


def _axes(axis: Any, ndim: int) -> tuple[int, ...]:
    if axis is None:
        return tuple(range(ndim))
    return tuple(int(x) % ndim for x in (axis if isinstance(axis, tuple | list) else (axis,)))


def _reduce_meta(a: Any, axis: Any = None, keepdims: bool = False) -> Meta:
    axes = _axes(axis, a.ndim)
    shape = tuple(1 if i in axes else n for i, n in enumerate(a.shape) if keepdims or i not in axes)
    return Meta(shape, a.dtype, window="whole" if set(axes) & {a.ndim - 1, a.ndim - 2} else None)


def _expand_back(g: Any, shape: tuple[int, ...], axes: tuple[int, ...], keepdims: bool) -> Any:
    """Reinsert the reduced axes of ``g`` (size 1) so it broadcasts against ``shape``."""
    if keepdims:
        return g
    xp = array_namespace(g)
    return xp.reshape(g, tuple(1 if i in axes else n for i, n in enumerate(shape)))


def sum_forward(a: Any, axis: Any = None, keepdims: bool = False) -> tuple[Any, Context]:
    """Σ over ``axis`` (all axes by default)."""
    xp = array_namespace(a)
    axes = _axes(axis, a.ndim)
    return xp.sum(a, axis=axes, keepdims=keepdims), Context(shape=tuple(a.shape), axes=axes, keepdims=keepdims)


def sum_backward(g: Any, ctx: Context) -> tuple[Any]:
    """Every summed element receives the gradient of its sum."""
    xp = array_namespace(g)
    return (xp.broadcast_to(_expand_back(g, ctx.shape, ctx.axes, ctx.keepdims), ctx.shape) * 1,)


sum_ = Op(sum_forward, sum_backward, name="sum", meta=_reduce_meta)


def mean_forward(a: Any, axis: Any = None, keepdims: bool = False) -> tuple[Any, Context]:
    """Mean over ``axis`` (all axes by default)."""
    xp = array_namespace(a)
    axes = _axes(axis, a.ndim)
    count = math.prod(a.shape[i] for i in axes)
    ctx = Context(shape=tuple(a.shape), axes=axes, keepdims=keepdims, count=count)
    return xp.mean(a, axis=axes, keepdims=keepdims), ctx


def mean_backward(g: Any, ctx: Context) -> tuple[Any]:
    """Every averaged element receives 1/count of the gradient of its mean."""
    xp = array_namespace(g)
    return (xp.broadcast_to(_expand_back(g, ctx.shape, ctx.axes, ctx.keepdims) / ctx.count, ctx.shape) * 1,)


mean = Op(mean_forward, mean_backward, meta=_reduce_meta)


def max_forward(a: Any, axis: Any = None, keepdims: bool = False) -> tuple[Any, Context]:
    """Maximum over ``axis``; ties share the gradient equally (as PyTorch's ``amax``)."""
    xp = array_namespace(a)
    axes = _axes(axis, a.ndim)
    out = xp.max(a, axis=axes, keepdims=keepdims)
    return out, Context(a=a, out=out, axes=axes, keepdims=keepdims)


def max_backward(g: Any, ctx: Context) -> tuple[Any]:
    """The gradient goes to the maxima, split evenly among ties."""
    xp = array_namespace(g)
    a = ctx.a
    hit = xp.astype(a == _expand_back(ctx.out, tuple(a.shape), ctx.axes, ctx.keepdims), a.dtype)
    share = hit / xp.sum(hit, axis=ctx.axes, keepdims=True)
    return (share * _expand_back(g, tuple(a.shape), ctx.axes, ctx.keepdims),)


max_ = Op(max_forward, max_backward, name="max", meta=_reduce_meta)


def concatenate_forward(*arrays: Any, axis: int = 0) -> tuple[Any, Context]:
    """Join arrays along an existing ``axis``."""
    xp = array_namespace(*arrays)
    sizes = [a.shape[axis] for a in arrays]
    return xp.concat(list(arrays), axis=axis), Context(sizes=sizes, axis=axis)


def concatenate_backward(g: Any, ctx: Context) -> tuple[Any, ...]:
    """Each input gets its own slice of the gradient."""
    out, start = [], 0
    for n in ctx.sizes:
        index = [slice(None)] * g.ndim
        index[ctx.axis] = slice(start, start + n)
        out.append(g[tuple(index)])
        start += n
    return tuple(out)


def _concat_meta(*arrays: Any, axis: int = 0) -> Meta:
    first = list(arrays[0].shape)
    ax = axis % len(first)
    for a in arrays[1:]:
        same_rank = len(a.shape) == len(first)
        if not same_rank or any(x != y for i, (x, y) in enumerate(zip(a.shape, first, strict=True)) if i != ax):
            raise ValueError(f"concatenate: shapes {[tuple(a.shape) for a in arrays]} differ outside axis {axis}")
    first[ax] = sum(a.shape[ax] for a in arrays)
    return Meta(tuple(first))


concatenate = Op(concatenate_forward, concatenate_backward, meta=_concat_meta)


def stack_forward(*arrays: Any, axis: int = 0) -> tuple[Any, Context]:
    """Join same-shaped arrays along a new ``axis``."""
    xp = array_namespace(*arrays)
    return xp.stack(list(arrays), axis=axis), Context(axis=axis, count=len(arrays))


def stack_backward(g: Any, ctx: Context) -> tuple[Any, ...]:
    """Each input gets its own slice of the gradient along the new axis."""
    out = []
    for i in range(ctx.count):
        index = [slice(None)] * g.ndim
        index[ctx.axis] = i
        out.append(g[tuple(index)])
    return tuple(out)


def _stack_meta(*arrays: Any, axis: int = 0) -> Meta:
    shape = list(arrays[0].shape)
    shape.insert(axis % (len(shape) + 1), len(arrays))
    return Meta(tuple(shape))


stack = Op(stack_forward, stack_backward, meta=_stack_meta)


# -- wiring the operators onto Tensor -----------------------------------------------------------------
def _rev(op: Op) -> Any:
    return lambda self, other: op(other, self)


Tensor.__add__ = lambda self, other: add(self, other)  # type: ignore[method-assign]
Tensor.__radd__ = _rev(add)  # type: ignore[attr-defined]
Tensor.__sub__ = lambda self, other: sub(self, other)  # type: ignore[attr-defined]
Tensor.__rsub__ = _rev(sub)  # type: ignore[attr-defined]
Tensor.__mul__ = lambda self, other: mul(self, other)  # type: ignore[attr-defined]
Tensor.__rmul__ = _rev(mul)  # type: ignore[attr-defined]
Tensor.__truediv__ = lambda self, other: div(self, other)  # type: ignore[attr-defined]
Tensor.__rtruediv__ = _rev(div)  # type: ignore[attr-defined]
Tensor.__matmul__ = lambda self, other: matmul(self, other)  # type: ignore[attr-defined]
Tensor.__rmatmul__ = _rev(matmul)  # type: ignore[attr-defined]
Tensor.__pow__ = lambda self, p: pow_(self, p)  # type: ignore[attr-defined]
Tensor.__neg__ = lambda self: neg(self)  # type: ignore[attr-defined]
Tensor.__abs__ = lambda self: abs_(self)  # type: ignore[attr-defined]
Tensor.__getitem__ = lambda self, index: getitem(self, index.data if isinstance(index, Tensor) else index)  # type: ignore[attr-defined]


def _reshape(self: Tensor, *shape: Any) -> Tensor:
    if len(shape) == 1 and isinstance(shape[0], tuple | list):
        shape = tuple(shape[0])
    return reshape(self, shape)


def _permute(self: Tensor, *axes: Any) -> Tensor:
    if len(axes) == 1 and isinstance(axes[0], tuple | list):
        axes = tuple(axes[0])
    return permute(self, axes or None)


def _transpose(self: Tensor, *axes: Any) -> Tensor:
    """``t.transpose()`` reverses the axes; ``t.transpose(i, j)`` swaps two (PyTorch's meaning)."""
    if len(axes) == 2 and all(isinstance(a, int) for a in axes):
        order = list(range(self.ndim))
        i, j = (a % self.ndim for a in axes)
        order[i], order[j] = order[j], order[i]
        return permute(self, tuple(order))
    return _permute(self, *axes)


def _flatten(self: Tensor, start_dim: int = 0, end_dim: int = -1) -> Tensor:
    nd = self.ndim
    if nd == 0:
        return reshape(self, (1,))  # a 0-d tensor flattens to one element, as in torch
    s, e = start_dim % nd, end_dim % nd
    shape = (*self.shape[:s], int(np.prod(self.shape[s : e + 1], dtype=np.int64)), *self.shape[e + 1 :])
    return reshape(self, shape)


Tensor.reshape = _reshape  # type: ignore[attr-defined]
Tensor.view = _reshape  # type: ignore[attr-defined]
Tensor.permute = _permute  # type: ignore[attr-defined]
Tensor.transpose = _transpose  # type: ignore[attr-defined]
Tensor.T = property(lambda self: permute(self, None))  # type: ignore[attr-defined]
Tensor.flatten = _flatten  # type: ignore[attr-defined]


def _reducer(op: Op) -> Any:
    def method(self: Tensor, axis: Any = None, dtype: Any = None, out: Any = None, keepdims: bool = False) -> Tensor:
        if out is not None:
            raise TypeError(f"Tensor.{op.__name__}: out= is not supported")
        result = op(self, axis=axis, keepdims=keepdims)
        return result if dtype is None else result.astype(dtype)

    method.__doc__ = f"Differentiable {op.__name__} over ``axis`` (NumPy's ``np.{op.__name__}(t)`` lands here too)."
    return method


Tensor.sum = _reducer(sum_)  # type: ignore[attr-defined]
Tensor.mean = _reducer(mean)  # type: ignore[attr-defined]
Tensor.max = _reducer(max_)  # type: ignore[attr-defined]


def cat(tensors: Any, axis: int = 0) -> Any:
    """Concatenate tensors (or arrays) along an existing axis (``torch.cat``)."""
    return concatenate(*tensors, axis=axis)


def stack_(tensors: Any, axis: int = 0) -> Any:
    """Stack same-shaped tensors along a new axis (``torch.stack``)."""
    return stack(*tensors, axis=axis)
