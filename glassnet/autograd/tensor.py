"""``Tensor``: an array that remembers how it was made, and reverse-mode autodiff over it.

A Tensor wraps an array (``.data``: NumPy, CuPy or any Array-API array). When it is the
output of an op applied to tensors that require gradients, it also holds ``grad_fn``: a
:class:`Node` that knows the op, the op's saved context and the op's inputs. Calling
``loss.backward()`` walks those nodes from the loss back to the leaves in reverse
topological order; at each node it calls the op's own backward (the function written
next to its forward in :mod:`glassnet.functional`) and adds the results into the
inputs' gradients (the chain rule, summed over every path). Leaves that require
gradients (parameters, inputs created with ``requires_grad=True``) receive ``.grad``;
gradients accumulate across calls, as in PyTorch, until ``zero_grad``.

Nothing here knows any op's math: every derivative lives next to its forward.
"""

from __future__ import annotations

import contextlib
import threading
import weakref
from collections.abc import Callable, Iterator
from typing import Any, NamedTuple

import numpy as np

from ..backend import get_default_dtype

_state = threading.local()


def is_grad_enabled() -> bool:
    """Whether ops applied now record a graph (False inside :func:`no_grad`)."""
    return getattr(_state, "grad", True)


class _GradMode(contextlib.ContextDecorator):
    def __init__(self, enabled: bool) -> None:
        self.enabled = enabled
        self._prev: list[bool] = []

    def _recreate_cm(self) -> _GradMode:
        # As a decorator, each call gets its own instance: one shared ``_prev`` stack would
        # mix up the saved modes of threads running the decorated function at the same time.
        return _GradMode(self.enabled)

    def __enter__(self) -> None:
        self._prev.append(is_grad_enabled())
        _state.grad = self.enabled

    def __exit__(self, *exc: Any) -> None:
        _state.grad = self._prev.pop()


def no_grad(func: Callable[..., Any] | None = None) -> Any:
    """Context manager (and decorator, with or without parentheses, as in torch): ops record
    no graph, so nothing is kept for backward.

    Use it for inference and evaluation: it saves the memory of every saved context.
    """
    return _GradMode(False) if func is None else _GradMode(False)(func)


def enable_grad(func: Callable[..., Any] | None = None) -> Any:
    """Context manager (and decorator): record graphs again, even inside :func:`no_grad`."""
    return _GradMode(True) if func is None else _GradMode(True)(func)


class Produced:
    """An input that an op produced, as the node that consumes it keeps it: the node that made
    it, its shape and name, not its data.

    Backward needs only those (the gradient goes to ``grad_fn``); keeping the tensor itself
    would keep every intermediate activation alive for the whole step, whether or not a
    backward needs it (a ReLU's backward needs its mask, not its input). A tensor's hooks
    are kept by its node too (:attr:`Node.hooks`), so they run even if the tensor is dropped;
    ``retain_grad`` fills ``.grad`` of a tensor that is still alive.
    """

    __slots__ = ("grad_fn", "shape", "dtype", "name")
    requires_grad = True

    def __init__(self, t: Tensor) -> None:
        self.grad_fn, self.shape, self.dtype, self.name = t.grad_fn, t.shape, t.dtype, t.name

    def __repr__(self) -> str:
        return f"<output of {self.grad_fn!r}>"


class Node:
    """One recorded op application: the op, what its forward saved, and where its inputs came from.

    ``inputs[i]`` stands for the op's i-th differentiable argument (None where that argument
    needs no gradient): the tensor itself for a leaf (a parameter, an input), a
    :class:`Produced` for one that another op made. ``backward`` is filled in at forward
    time, so a learner can see which function will run before it runs.
    """

    __slots__ = ("op", "ctx", "inputs", "out", "module", "backend", "out_shape", "hooks", "__weakref__")

    def __init__(
        self, op: Any, ctx: Any, inputs: tuple[Tensor | Produced | None, ...], module: str | None, backend: str
    ) -> None:
        self.op = op
        self.ctx = ctx
        self.inputs = inputs
        self.hooks: list[Callable[[Any], Any]] = []  # the output's hooks (the same list), kept here too
        self.out: Callable[[], Tensor | None] = lambda: None
        self.module = module
        self.backend = backend
        self.out_shape: tuple[int, ...] = ()

    @property
    def name(self) -> str:
        return self.op.__name__

    @property
    def backward_fn(self) -> Callable[..., Any]:
        """The function this node's backward pass will call: the op's backward for its backend."""
        return self.op.backward_for(self.backend)

    @property
    def next_nodes(self) -> list[Node | None]:
        """The nodes that produced this node's inputs (None for leaves and constants)."""
        return [None if t is None else t.grad_fn for t in self.inputs]

    def saved(self) -> dict[str, Any]:
        """What forward saved for backward (empty once backward has freed it)."""
        return dict(self.ctx) if self.ctx is not None else {}

    def __repr__(self) -> str:
        where = f" in {self.module}" if self.module else ""
        return f"<{self.name}Backward{where} → {self.out_shape}>"


class HookHandle:
    """What :meth:`Tensor.register_hook` returns: ``handle.remove()`` unregisters the hook.

    Calling the handle does the same (the earlier interface returned a function).
    """

    __slots__ = ("_hooks", "_hook")

    def __init__(self, hooks: list[Callable[[Any], Any]], hook: Callable[[Any], Any]) -> None:
        self._hooks, self._hook = hooks, hook

    def remove(self) -> None:
        for i, h in enumerate(self._hooks):
            if h is self._hook:
                del self._hooks[i]
                return

    __call__ = remove


_ARRAY_TYPES: tuple[type, ...] = (np.ndarray,)


def _is_floating(arr: Any) -> bool:
    """Whether ``arr`` has a real floating dtype (NumPy and CuPy dtypes, or any Array-API one)."""
    try:
        return np.dtype(str(arr.dtype)).kind == "f"
    except TypeError:  # e.g. array_api_strict.float64, which NumPy does not know by name
        from ..backend import array_namespace

        return bool(array_namespace(arr).isdtype(arr.dtype, "real floating"))


def _to_array(data: Any, dtype: Any) -> Any:
    if isinstance(data, Tensor):
        data = data.data
    if dtype is not None:
        mod = type(data).__module__
        if mod.startswith("numpy") or not hasattr(data, "shape"):
            return np.asarray(data, dtype=dtype)
        return data.astype(dtype) if data.dtype != dtype else data
    if hasattr(data, "shape") and hasattr(data, "dtype") and not isinstance(data, np.generic):
        return data
    arr = np.asarray(data)
    if arr.dtype == np.float64 and not isinstance(data, np.ndarray | np.generic):
        arr = arr.astype(get_default_dtype())  # Python floats follow the default dtype, as in torch
    return arr


class Tensor:
    """An array with an optional gradient and the graph that produced it (``torch.Tensor``-like).

    ``Tensor(data, requires_grad=False, dtype=None)``. ``.data`` is the array itself,
    ``.grad`` the accumulated gradient (an array of the same shape, or None). Arithmetic
    (``+ − * / @ **``, unary ``−``) broadcasts like NumPy; indexing, ``reshape``,
    ``transpose``/``permute``, ``flatten``, ``sum``/``mean``/``max`` and
    :func:`glassnet.cat` / :func:`glassnet.stack` are differentiable, and so is every
    function of :mod:`glassnet.functional`.
    """

    __slots__ = ("data", "grad", "_requires_grad", "grad_fn", "_retain", "_hooks", "name", "__weakref__")
    __array_priority__ = 1000.0  # ndarray ∘ Tensor defers to Tensor's reflected operators

    def __init__(self, data: Any, requires_grad: bool = False, dtype: Any = None) -> None:
        self.data = _to_array(data, dtype)
        self.grad: Any = None
        self.grad_fn: Node | None = None
        self._retain = False
        self._hooks: list[Callable[[Any], Any]] = []
        self.name: str | None = None
        self._requires_grad = False
        self.requires_grad = requires_grad

    # -- autograd state ---------------------------------------------------------------
    @property
    def requires_grad(self) -> bool:
        return self._requires_grad

    @requires_grad.setter
    def requires_grad(self, value: bool) -> None:
        if value and self.grad_fn is None and getattr(self.data, "dtype", None) is not None:
            if not _is_floating(self.data):
                raise TypeError(f"only floating-point tensors can require gradients, got dtype {self.data.dtype}")
        if not value and self.grad_fn is not None:
            raise RuntimeError("requires_grad can only be turned off on leaf tensors; use .detach()")
        self._requires_grad = bool(value)

    def requires_grad_(self, requires_grad: bool = True) -> Tensor:
        self.requires_grad = requires_grad
        return self

    @property
    def is_leaf(self) -> bool:
        return self.grad_fn is None

    def detach(self) -> Tensor:
        """The same data, cut off from the graph (shares memory, as in PyTorch)."""
        return Tensor(self.data)

    def retain_grad(self) -> Tensor:
        """Keep ``.grad`` on this non-leaf tensor after backward (leaves always keep theirs)."""
        self._retain = True
        return self

    def register_hook(self, hook: Callable[[Any], Any]) -> HookHandle:
        """Call ``hook(grad)`` when this tensor's gradient is computed; a returned array replaces it.

        Returns a handle: ``handle.remove()`` removes the hook (as in torch).
        """
        if not self.requires_grad:
            raise RuntimeError("cannot register a hook on a tensor that does not require grad")
        self._hooks.append(hook)
        if self.grad_fn is not None:
            self.grad_fn.hooks = self._hooks  # they run even if the tensor itself is dropped (as in torch)
        return HookHandle(self._hooks, hook)

    def zero_grad(self, set_to_none: bool = True) -> None:
        if set_to_none or self.grad is None:
            self.grad = None
        else:
            self.grad[...] = 0

    def backward(self, grad: Any = None, retain_graph: bool = False) -> None:
        """Backpropagate from this tensor: every leaf it depends on gets ``.grad`` (accumulated).

        ``grad`` defaults to 1 for a one-element tensor (a loss). ``retain_graph=True``
        keeps the saved contexts so backward can run through the same graph again.
        """
        backward(self, grad, retain_graph)

    # -- array facts ------------------------------------------------------------------
    @property
    def shape(self) -> tuple[int, ...]:
        return tuple(self.data.shape)

    @property
    def dtype(self) -> Any:
        return self.data.dtype

    @property
    def ndim(self) -> int:
        return len(self.data.shape)

    @property
    def size(self) -> int:
        return int(np.prod(self.data.shape, dtype=np.int64))

    @property
    def device(self) -> Any:
        from ..backend import device_of

        return device_of(self.data)

    def __len__(self) -> int:
        return self.data.shape[0]

    def numpy(self) -> np.ndarray:
        """The data as a NumPy array (copied to the host for GPU tensors)."""
        from ..backend import to_numpy

        return to_numpy(self.data)

    def item(self) -> float | int:
        return self.numpy().item()

    def tolist(self) -> Any:
        return self.numpy().tolist()

    def __array__(self, dtype: Any = None, copy: Any = None) -> np.ndarray:
        arr = self.numpy()
        return arr if dtype is None else arr.astype(dtype)

    def __float__(self) -> float:
        return float(self.numpy())

    def __int__(self) -> int:
        return int(self.numpy())

    def __bool__(self) -> bool:
        return bool(self.numpy())

    def __iter__(self) -> Iterator[Tensor]:
        for i in range(len(self)):
            yield self[i]

    def astype(self, dtype: Any) -> Tensor:
        from . import ops

        return ops.cast(self, dtype=np.dtype(dtype))

    def to(self, target: Any) -> Tensor:
        """This tensor as ``dtype`` (float32/float64) or on a device ("cpu", "cuda"), as in torch:
        itself when nothing changes, otherwise a differentiable copy (gradients flow back)."""
        if isinstance(target, str) and target in ("cpu", "cuda") or target is None:
            if ((target or "cpu") == "cpu") == isinstance(self.data, np.ndarray):
                return self
            from . import ops

            return ops.to_device(self, device=target or "cpu")
        if np.dtype(target) == np.dtype(str(self.data.dtype)):
            return self
        return self.astype(target)

    def __repr__(self) -> str:
        body = np.array2string(self.numpy(), separator=", ", prefix="Tensor(", threshold=20)
        extra = ""
        if self.grad_fn is not None:
            extra = f", grad_fn=<{self.grad_fn.name}Backward>"
        elif self.requires_grad:
            extra = ", requires_grad=True"
        return f"Tensor({body}{extra})"

    # -- comparisons: element-wise, not differentiable (boolean tensors, as in PyTorch) -----
    __hash__ = object.__hash__

    def _compare(self, other: Any, fn: Callable[[Any, Any], Any]) -> Tensor:
        return Tensor(fn(self.data, other.data if isinstance(other, Tensor) else other))

    def __eq__(self, other: Any) -> Tensor:  # type: ignore[override]
        return self._compare(other, lambda a, b: a == b)

    def __ne__(self, other: Any) -> Tensor:  # type: ignore[override]
        return self._compare(other, lambda a, b: a != b)

    def __lt__(self, other: Any) -> Tensor:
        return self._compare(other, lambda a, b: a < b)

    def __le__(self, other: Any) -> Tensor:
        return self._compare(other, lambda a, b: a <= b)

    def __gt__(self, other: Any) -> Tensor:
        return self._compare(other, lambda a, b: a > b)

    def __ge__(self, other: Any) -> Tensor:
        return self._compare(other, lambda a, b: a >= b)

    def __invert__(self) -> Tensor:
        return Tensor(~self.data)

    def __and__(self, other: Any) -> Tensor:
        return self._compare(other, lambda a, b: a & b)

    def __or__(self, other: Any) -> Tensor:
        return self._compare(other, lambda a, b: a | b)

    def argmax(self, axis: int | None = None) -> np.ndarray:
        """Index of the maximum (not differentiable), as a NumPy array."""
        return np.argmax(self.numpy(), axis=axis)


def _accumulate(t: Tensor, g: Any) -> None:
    """Add ``g`` into ``t.grad`` (a fresh array the first time: nobody else may hold it)."""
    if g.shape != t.data.shape:
        raise ValueError(f"gradient of shape {tuple(g.shape)} for a tensor of shape {t.shape}")
    if t.grad is None:
        from ..backend import array_namespace

        t.grad = array_namespace(g).astype(g, t.data.dtype, copy=True)  # the Array API's astype
    else:
        t.grad = t.grad + g


def _apply_hooks(t: Tensor | list[Callable[[Any], Any]], g: Any) -> Any:
    for hook in t if isinstance(t, list) else t._hooks:
        new = hook(g)
        if new is not None:
            g = new.data if isinstance(new, Tensor) else new
    return g


def topological_order(root: Node) -> list[Node]:
    """Nodes reachable from ``root``, each after every node that consumes its output."""
    order: list[Node] = []
    seen: set[int] = set()
    stack: list[tuple[Node, bool]] = [(root, False)]
    while stack:
        node, expanded = stack.pop()
        if expanded:
            order.append(node)
            continue
        if id(node) in seen:
            continue
        seen.add(id(node))
        stack.append((node, True))
        for t in node.inputs:
            if t is not None and t.grad_fn is not None and id(t.grad_fn) not in seen:
                stack.append((t.grad_fn, False))
    order.reverse()
    return order


class BackwardStep(NamedTuple):
    """One node's backward, as :func:`backward_steps` ran it.

    ``grad_output``: the gradient of the node's output (summed over every consumer);
    ``grad_inputs``: what the op's backward returned, one entry per differentiable input
    (None where no gradient was needed).
    """

    node: Node
    grad_output: Any
    grad_inputs: tuple[Any, ...]


def backward_steps(root: Tensor, grad: Any = None, retain_graph: bool = False) -> Iterator[BackwardStep]:
    """Reverse-mode differentiation from ``root``, one node at a time (see :meth:`Tensor.backward`).

    The arguments are checked now; each ``next()`` then runs one node's backward, adds
    its results into the inputs' gradients (``.grad`` of leaves, pending sums for inner
    nodes) and yields the :class:`BackwardStep`. Exhausting it is ``root.backward()``.
    """
    if not root.requires_grad:
        raise RuntimeError("backward: this tensor does not require grad (no parameter or input it depends on does)")
    if grad is None:
        if root.size != 1:
            raise RuntimeError(f"backward: grad can be implied only for a one-element output, got shape {root.shape}")
        from ..backend import array_namespace

        grad = array_namespace(root.data).ones_like(root.data)
    else:
        grad = grad.data if isinstance(grad, Tensor) else grad
        if tuple(grad.shape) != root.shape:
            raise ValueError(f"backward: grad has shape {tuple(grad.shape)}, the tensor {root.shape}")
    return _steps(root, grad, retain_graph)


def _steps(root: Tensor, grad: Any, retain_graph: bool) -> Iterator[BackwardStep]:
    if root.grad_fn is None:
        _accumulate(root, _apply_hooks(root, grad))
        return
    pending: dict[int, Any] = {id(root.grad_fn): grad}
    for node in topological_order(root.grad_fn):
        g = pending.pop(id(node), None)
        if g is None:
            continue
        out = node.out()
        g = _apply_hooks(out if out is not None else node.hooks, g)
        if out is not None and out._retain:
            _accumulate(out, g)
        if node.ctx is None:
            raise RuntimeError(
                f"backward through {node.name} a second time: its saved context was freed after the first "
                "backward; pass retain_graph=True the first time"
            )
        in_grads = node.op.run_backward(g, node.ctx, node.backend, tuple(t is not None for t in node.inputs))
        if not retain_graph:
            node.ctx = None
        if not isinstance(in_grads, tuple | list) or len(in_grads) < len(node.inputs):
            raise ValueError(
                f"backward of {node.name} must return a tuple with one gradient per array input "
                f"(at least {len(node.inputs)} here), got {in_grads!r:.80}"
            )
        for i, (t, ig) in enumerate(zip(node.inputs, in_grads, strict=False)):
            if t is None or ig is None:
                continue
            if tuple(ig.shape) != t.shape:  # caught here, where the faulty backward can be named
                raise ValueError(f"backward of {node.name}: gradient {i} has shape {tuple(ig.shape)}, input {t.shape}")
            if t.grad_fn is None:
                _accumulate(t, _apply_hooks(t, ig))
            else:
                key = id(t.grad_fn)
                pending[key] = ig if key not in pending else pending[key] + ig
        yield BackwardStep(node, g, tuple(in_grads))


def backward(root: Tensor, grad: Any = None, retain_graph: bool = False) -> None:
    """Reverse-mode differentiation from ``root`` (see :meth:`Tensor.backward`): every step at once."""
    for _ in backward_steps(root, grad, retain_graph):
        pass


def make_output(data: Any, node: Node | None) -> Tensor:
    """The Tensor an op returns; ``node`` is None when no graph is recorded."""
    if isinstance(data, np.generic):
        data = np.asarray(data)  # NumPy reductions return scalars; a Tensor always holds an array
    t = Tensor.__new__(Tensor)
    t.data, t.grad, t._retain, t._hooks, t.name = data, None, False, [], None
    t.grad_fn = node
    t._requires_grad = node is not None
    if node is not None:
        node.out = weakref.ref(t)
        node.out_shape = tuple(data.shape)
    return t


def _register_array_type(cls: type) -> None:
    global _ARRAY_TYPES
    _ARRAY_TYPES = (*_ARRAY_TYPES, cls)
