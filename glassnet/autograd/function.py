"""``Op``: a forward function and its backward, paired, and the dispatcher that runs them.

Every op in :mod:`glassnet.functional` is two plain functions written next to each other:

* ``name_forward(*inputs, **options) -> (output, ctx)`` computes the output and keeps in
  ``ctx`` exactly what backward needs;
* ``name_backward(grad_output, ctx) -> tuple`` returns one gradient per array input of
  forward, in order (``None`` for inputs that have no gradient, such as integer labels).
  ``ctx.needs_input_grad`` (set by autograd) says which of them anybody will use.

``name = Op(name_forward, name_backward)`` gives the front door ``name(*inputs, **options)``:

* on plain arrays it returns the output array and records nothing;
* on :class:`~glassnet.Tensor` inputs it returns a Tensor and, when any input requires
  gradients, records a :class:`~glassnet.autograd.tensor.Node` so that
  ``loss.backward()`` will call ``name_backward`` with this very ``ctx``;
* on shape-only tensors (:func:`glassnet.trace`) it computes nothing: ``meta`` gives the
  output shape, the multiply-accumulates and the window (for receptive fields).

A new op is added the same way: write the two functions, wrap them in ``Op`` and check
them with :func:`glassnet.gradcheck` (the analogue of ``torch.autograd.Function``).

Dispatch. The pair above is the *reference*: the definition, readable on one screen.
An op may also have a *fast* pair registered by :mod:`glassnet.fast` (same arguments,
same results to rounding, tested equal to the reference). Which one runs is chosen per
call by :func:`use_backend`: ``"fast"`` (default) takes the fast pair where one is
registered and supports the inputs, ``"reference"`` always runs the reference.
"""

from __future__ import annotations

import contextlib
import functools
import inspect
import threading
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from typing import Any

import numpy as np

from .. import backend as _backend_module
from .tensor import Node, Produced, Tensor, is_grad_enabled, make_output

BACKENDS = ("fast", "reference")
_backend_state = threading.local()
_global_backend = "fast"


def get_backend() -> str:
    """The backend ops dispatch to now: ``"fast"`` or ``"reference"``."""
    return getattr(_backend_state, "name", None) or _global_backend


class use_backend(contextlib.ContextDecorator):  # noqa: N801 - used like a function
    """Choose which implementation every op runs: ``"reference"`` or ``"fast"``.

    As a call it sets the backend for the whole program (``use_backend("reference")``);
    as a context manager it sets it inside the block and restores it afterwards::

        with glassnet.use_backend("reference"):
            loss = F.cross_entropy(model(x), y)   # every op runs its readable definition
            loss.backward()                       # ... and so does every backward
    """

    def __init__(self, name: str) -> None:
        global _global_backend
        if name not in BACKENDS:
            raise ValueError(f"use_backend: expected one of {BACKENDS}, got {name!r}")
        self.name = name
        self._prev: list[str | None] = []
        self._was_global: str | None = _global_backend
        _global_backend = name

    def _not_global(self) -> None:
        """Undo the global switch of ``__init__`` (once): this use is a block or a decorator."""
        global _global_backend
        if self._was_global is not None:
            _global_backend, self._was_global = self._was_global, None

    def __call__(self, func: Any) -> Any:
        self._not_global()  # decorating: the backend changes during each call, not from now on
        return super().__call__(func)

    def _recreate_cm(self) -> use_backend:
        # each call of a decorated function gets its own instance (and its own stack: thread-safe)
        fresh = object.__new__(use_backend)
        fresh.name, fresh._prev, fresh._was_global = self.name, [], None
        return fresh

    def __enter__(self) -> use_backend:
        self._not_global()  # inside a block only the block changes
        self._prev.append(getattr(_backend_state, "name", None))
        _backend_state.name = self.name
        return self

    def __exit__(self, *exc: Any) -> None:
        _backend_state.name = self._prev.pop()


class Context(dict):
    """What a forward pass saved for its backward pass (a dict with attribute access)."""

    def __getattr__(self, key: str) -> Any:
        try:
            return self[key]
        except KeyError:
            raise AttributeError(key) from None

    def __setattr__(self, key: str, value: Any) -> None:
        self[key] = value


@dataclass
class Meta:
    """What a shape-only trace learns about one op application.

    ``shape``/``dtype`` of the output; ``macs``: multiply-accumulates; ``window``:
    ``(kernel, stride, dilation)`` pairs for sliding-window ops (receptive fields grow by
    it), ``"whole"`` when every output sees the whole input (dense, flatten, global
    pooling), None for element-wise ops.
    """

    shape: tuple[int, ...]
    dtype: Any = None
    macs: int = 0
    window: Any = None


class MetaArray:
    """A stand-in for an array that has a shape and a dtype but no data (for tracing)."""

    __slots__ = ("shape", "dtype")

    def __init__(self, shape: tuple[int, ...], dtype: Any = np.float32) -> None:
        self.shape = tuple(int(s) for s in shape)
        self.dtype = np.dtype(dtype)

    @property
    def ndim(self) -> int:
        return len(self.shape)

    @property
    def size(self) -> int:
        return int(np.prod(self.shape, dtype=np.int64))

    def __repr__(self) -> str:
        return f"MetaArray({self.shape}, {self.dtype})"


_module_stack = threading.local()
_backward_overrides = threading.local()  # .table: {op: [backward, ...]}, see Op.override_backward


def current_module() -> Any:
    """The innermost :class:`~glassnet.nn.Module` whose forward is running (or None)."""
    stack = getattr(_module_stack, "stack", None)
    return stack[-1] if stack else None


@contextlib.contextmanager
def inside_module(module: Any) -> Iterator[None]:
    stack = getattr(_module_stack, "stack", None)
    if stack is None:
        stack = _module_stack.stack = []
    stack.append(module)
    try:
        yield
    finally:
        stack.pop()


def _is_array(v: Any) -> bool:
    return hasattr(v, "shape") and hasattr(v, "dtype") and not isinstance(v, np.generic | type)


class Op:
    """A differentiable function: ``op(*a, **k)`` runs forward (and records it for backward)."""

    def __init__(
        self,
        forward: Callable[..., tuple[Any, Context]],
        backward: Callable[..., tuple[Any, ...]],
        name: str | None = None,
        meta: Callable[..., Meta | tuple[int, ...]] | None = None,
        nondifferentiable: tuple[str, ...] = (),
    ) -> None:
        self.reference_forward = forward
        self.reference_backward = backward
        self.fast_forward: Callable[..., Any] | None = None
        self.fast_backward: Callable[..., Any] | None = None
        self.fast_supports: Callable[..., bool] | None = None
        self.meta = meta
        self.nondifferentiable = nondifferentiable
        sig = inspect.signature(forward).parameters
        self.params = list(sig)
        self.varargs = any(p.kind is inspect.Parameter.VAR_POSITIONAL for p in sig.values())
        self.__name__ = name or forward.__name__.removesuffix("_forward")
        self.__qualname__ = self.__name__
        self.__doc__ = forward.__doc__
        self.__module__ = forward.__module__
        functools.update_wrapper(self, forward, assigned=("__wrapped__",), updated=())
        self.__wrapped__ = forward

    # -- dispatch ------------------------------------------------------------------------
    def register_fast(
        self,
        forward: Callable[..., tuple[Any, Context]],
        backward: Callable[..., tuple[Any, ...]],
        supports: Callable[..., bool] | None = None,
    ) -> None:
        """Add a fast pair with the reference's signature; ``supports(*a, **k)`` says when it applies."""
        self.fast_forward, self.fast_backward, self.fast_supports = forward, backward, supports

    def choose(self, args: tuple[Any, ...], kwargs: dict[str, Any]) -> str:
        """``"fast"`` or ``"reference"``: what :meth:`forward` runs for these arguments now."""
        if self.fast_forward is None or get_backend() == "reference":
            return "reference"
        if not all(isinstance(a, np.ndarray) for a in (*args, *kwargs.values()) if _is_array(a)):
            return "reference"  # the fast kernels are NumPy kernels
        if self.fast_supports is not None and not self.fast_supports(*args, **kwargs):
            return "reference"
        return "fast"

    def forward_for(self, backend: str) -> Callable[..., Any]:
        return self.fast_forward if backend == "fast" else self.reference_forward  # type: ignore[return-value]

    def backward_for(self, backend: str) -> Callable[..., Any]:
        overrides = getattr(_backward_overrides, "table", None)
        if overrides and self in overrides:
            return overrides[self][-1]
        return self.fast_backward if backend == "fast" else self.reference_backward  # type: ignore[return-value]

    def overridden(self) -> bool:
        """Whether an :meth:`override_backward` block replaces this op's backward (in this thread) now."""
        overrides = getattr(_backward_overrides, "table", None)
        return bool(overrides) and self in overrides

    @contextlib.contextmanager
    def override_backward(self, backward: Callable[..., tuple[Any, ...]]) -> Iterator[Op]:
        """Inside the block, every backward through this op (in this thread) calls ``backward``.

        ``backward(grad, ctx)`` replaces the op's own rule for both backends and receives the
        ``ctx`` that the forward which ran saved. The forward is unchanged: this is "the same
        backward, one rule changed", e.g. guided backpropagation's ReLU
        (:func:`glassnet.visualize.guided_relu`)::

            with F.relu.override_backward(lambda g, ctx: (np.where(ctx.mask & (g > 0), g, 0),)):
                logit.backward()

        The override is per thread (a backward in another thread keeps the op's own rule) and
        blocks nest: the innermost wins, and leaving a block restores the rule before it.
        """
        table = getattr(_backward_overrides, "table", None)
        if table is None:
            table = _backward_overrides.table = {}
        table.setdefault(self, []).append(backward)
        try:
            yield self
        finally:
            stack = table[self]
            stack.pop()
            if not stack:
                del table[self]

    def forward(self, *args: Any, **kwargs: Any) -> tuple[Any, Context]:
        """Run the chosen forward on arrays; returns ``(out, ctx)`` with ``ctx.backend`` set."""
        if _backend_module._workers is None:
            _backend_module.num_workers()  # first op: hold BLAS at one thread (glassnet splits work itself)
        backend = self.choose(args, kwargs)
        out, ctx = self.forward_for(backend)(*args, **kwargs)
        ctx["backend"] = backend
        return out, ctx

    def backward(self, grad: Any, ctx: Context, **kwargs: Any) -> tuple[Any, ...]:
        """Run the backward that matches the forward that made ``ctx``."""
        return self.backward_for(ctx.get("backend", "reference"))(grad, ctx, **kwargs)

    def run_backward(self, grad: Any, ctx: Context, backend: str, needs: tuple[bool, ...]) -> tuple[Any, ...]:
        ctx["needs_input_grad"] = needs
        return self.backward_for(backend)(grad, ctx)

    # -- the front door --------------------------------------------------------------------
    def _bind(self, args: tuple[Any, ...], kwargs: dict[str, Any]) -> list[Any]:
        """Arguments in the order of forward's parameters (missing ones as None).

        For a forward with ``*arrays`` (concatenate, stack) the positional arguments are the inputs.
        """
        if self.varargs:
            return list(args)
        bound = list(args) + [None] * (len(self.params) - len(args))
        for k, v in kwargs.items():
            if k not in self.params:
                raise TypeError(f"{self.__name__}() got an unexpected keyword argument {k!r}")
            bound[self.params.index(k)] = v
        return bound

    def __call__(self, *args: Any, **kwargs: Any) -> Any:
        if not any(isinstance(a, Tensor) for a in args) and not any(isinstance(v, Tensor) for v in kwargs.values()):
            return self.forward(*args, **kwargs)[0]
        raw_args = tuple(a.data if isinstance(a, Tensor) else a for a in args)
        raw_kwargs = {k: (v.data if isinstance(v, Tensor) else v) for k, v in kwargs.items()}
        if any(isinstance(a, MetaArray) for a in (*raw_args, *raw_kwargs.values())):
            return self._trace(args, kwargs, raw_args, raw_kwargs)
        bound = self._bind(args, kwargs)
        names = [self.params[0]] * len(bound) if self.varargs else self.params
        tensors = tuple(
            a if isinstance(a, Tensor) and a.requires_grad and name not in self.nondifferentiable else None
            for a, name in zip(bound, names, strict=False)
        )
        record = is_grad_enabled() and any(t is not None for t in tensors)
        out, ctx = self.forward(*raw_args, **raw_kwargs)
        if not record:
            return make_output(out, None)
        while tensors and tensors[-1] is None:
            tensors = tensors[:-1]
        edges = tuple(t if t is None or t.grad_fn is None else Produced(t) for t in tensors)
        node = Node(self, ctx, edges, current_module(), ctx["backend"])
        return make_output(out, node)

    def _trace(
        self, args: tuple[Any, ...], kwargs: dict[str, Any], raw_args: tuple[Any, ...], raw_kwargs: dict[str, Any]
    ) -> Tensor:
        """Shape-only application: record a node, compute nothing."""
        as_meta = [MetaArray(a.shape, a.dtype) if _is_array(a) else a for a in raw_args]
        kw_meta = {k: (MetaArray(v.shape, v.dtype) if _is_array(v) else v) for k, v in raw_kwargs.items()}
        info = self.meta(*as_meta, **kw_meta) if self.meta is not None else None
        if info is None:
            first = next(a for a in as_meta if isinstance(a, MetaArray))
            info = Meta(first.shape, first.dtype)
        elif not isinstance(info, Meta):
            info = Meta(tuple(info))
        if info.dtype is None:
            dts = [a.dtype for a in as_meta if isinstance(a, MetaArray) and a.dtype.kind == "f"]
            info.dtype = np.result_type(*dts) if dts else np.dtype(np.float32)
        bound = self._bind(args, kwargs)
        tensors = tuple(a if isinstance(a, Tensor) else None for a in bound)
        options = {n: v for n, v in zip(self.params, bound, strict=False) if not isinstance(v, Tensor)}
        options.update({k: v for k, v in kwargs.items() if not isinstance(v, Tensor)})
        ctx = Context(options=options)
        ctx["meta"] = info
        node = Node(self, ctx, tensors, current_module(), "meta")
        return make_output(MetaArray(info.shape, info.dtype), node)

    def __repr__(self) -> str:
        return f"<glassnet op {self.__name__}>"
