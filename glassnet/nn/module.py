"""``Parameter`` and ``Module``: the base of every layer, block and model.

A module's ``forward(x)`` computes its output from its inputs and parameters with
differentiable operations (:mod:`glassnet.functional`, Tensor arithmetic). That is all a
module writes: calling ``loss.backward()`` on anything computed from its output fills
every parameter's ``.grad`` through the recorded graph (:mod:`glassnet.autograd`). A
module may be used any number of times in one forward pass; each use is its own node in
the graph, so the gradients add up correctly.

To add new *math*, write an op (a forward and its backward, :class:`glassnet.autograd.Op`)
and check it with :func:`glassnet.gradcheck`; to add a new *layer*, write a Module whose
forward calls ops.
"""

from __future__ import annotations

from collections import OrderedDict
from collections.abc import Callable, Iterator
from typing import Any, NamedTuple

import numpy as np

from ..autograd.function import inside_module
from ..autograd.tensor import Tensor
from ..backend import as_float, get_default_dtype, to_numpy

Shape = tuple[int, ...]


class Parameter(Tensor):
    """A trainable Tensor: ``data``, its accumulated ``grad`` (or None) and ``requires_grad``.

    Frozen parameters (``requires_grad=False``) get no gradient and optimisers leave
    them untouched. Integer data is converted to the default float dtype.
    """

    __slots__ = ()

    def __init__(self, data: Any, requires_grad: bool = True) -> None:
        arr = data.data if isinstance(data, Tensor) else data
        if not hasattr(arr, "dtype") or np.dtype(str(arr.dtype)).kind != "f":
            arr = np.asarray(arr).astype(get_default_dtype())
        super().__init__(arr, requires_grad=requires_grad)

    def __repr__(self) -> str:
        frozen = "" if self.requires_grad else ", frozen"
        return f"Parameter(shape={self.shape}, dtype={self.dtype}{frozen})"


class RemovableHandle:
    """Returned by ``register_*_hook``; ``handle.remove()`` unregisters the hook."""

    def __init__(self, hooks: dict[int, Any], key: int) -> None:
        self._hooks, self._key = hooks, key

    def remove(self) -> None:
        self._hooks.pop(self._key, None)


_hook_ids = iter(range(1, 2**62))


class IncompatibleKeys(NamedTuple):
    """What :meth:`Module.load_state_dict` returns (torch's ``_IncompatibleKeys``)."""

    missing_keys: list[str]
    unexpected_keys: list[str]


class Module:
    """Base class of layers and models (``torch.nn.Module``-like): write ``__init__`` and ``forward``."""

    def __init__(self) -> None:
        object.__setattr__(self, "_parameters", OrderedDict())
        object.__setattr__(self, "_buffers", OrderedDict())
        object.__setattr__(self, "_modules", OrderedDict())
        object.__setattr__(self, "_forward_hooks", OrderedDict())
        object.__setattr__(self, "_forward_pre_hooks", OrderedDict())
        object.__setattr__(self, "training", True)

    # -- attribute registry -------------------------------------------------------
    def __setattr__(self, name: str, value: Any) -> None:
        if "_parameters" not in self.__dict__:
            raise AttributeError(f"{type(self).__name__}.__init__ must call super().__init__() first")
        params, buffers, modules = self._parameters, self._buffers, self._modules
        if isinstance(value, Parameter) or (value is None and name in params):
            target = params
        elif isinstance(value, Module):
            target = modules
        elif name in buffers and (value is None or hasattr(value, "shape")):
            target = buffers
        else:
            target = None
        for registry in (params, buffers, modules):
            if registry is not target:
                registry.pop(name, None)
        if target is None:
            object.__setattr__(self, name, value)
        else:
            self.__dict__.pop(name, None)
            target[name] = value  # replacing keeps the registration order

    def __getattr__(self, name: str) -> Any:
        d = self.__dict__
        for registry in ("_parameters", "_buffers", "_modules"):
            if registry in d and name in d[registry]:
                return d[registry][name]
        raise AttributeError(f"{type(self).__name__} has no attribute {name!r}")

    def __delattr__(self, name: str) -> None:
        for registry in (self._parameters, self._buffers, self._modules):
            if name in registry:
                del registry[name]
                return
        object.__delattr__(self, name)

    def register_buffer(self, name: str, value: np.ndarray | None) -> None:
        """A non-trainable array saved in the state dict (e.g. BatchNorm running stats)."""
        self.__dict__.pop(name, None)
        self._buffers[name] = value

    def register_parameter(self, name: str, value: Parameter | None) -> None:
        """Register ``value`` (or None for an absent parameter such as a disabled bias)."""
        self.__dict__.pop(name, None)
        self._parameters[name] = value

    # -- running ------------------------------------------------------------------
    def forward(self, *args: Any) -> Any:
        raise NotImplementedError(f"{type(self).__name__} must implement forward(x)")

    def __call__(self, *args: Any, **kwargs: Any) -> Any:
        """Run ``forward``: arrays become Tensors (integers converted to the default float dtype),
        and forward pre-hooks and hooks see the call."""
        args = tuple(a if isinstance(a, Tensor) or not hasattr(a, "shape") and not isinstance(a, list)
                     else Tensor(as_float(a, f"{type(self).__name__} input")) for a in args)  # fmt: skip
        for hook in list(self._forward_pre_hooks.values()):
            new = hook(self, args)
            if new is not None:
                args = new if isinstance(new, tuple) else (new,)
        with inside_module(self):
            out = self.forward(*args, **kwargs)
        for hook in list(self._forward_hooks.values()):
            new = hook(self, args, out)
            if new is not None:
                out = new
        return out

    def register_forward_hook(self, hook: Callable[[Module, tuple[Any, ...], Any], Any]) -> RemovableHandle:
        """Call ``hook(module, inputs, output)`` after every forward; a returned value replaces the output.

        How the explorer and :mod:`glassnet.visualize`-style tools read any layer's activations;
        call ``output.retain_grad()`` (or ``output.register_hook``) in it to read gradients too.
        """
        key = next(_hook_ids)
        self._forward_hooks[key] = hook
        return RemovableHandle(self._forward_hooks, key)

    def register_forward_pre_hook(self, hook: Callable[[Module, tuple[Any, ...]], Any]) -> RemovableHandle:
        """Call ``hook(module, inputs)`` before every forward; returned inputs replace them."""
        key = next(_hook_ids)
        self._forward_pre_hooks[key] = hook
        return RemovableHandle(self._forward_pre_hooks, key)

    # -- traversal ----------------------------------------------------------------
    def named_children(self) -> Iterator[tuple[str, Module]]:
        yield from self._modules.items()

    def children(self) -> Iterator[Module]:
        for _, m in self.named_children():
            yield m

    def named_modules(self, prefix: str = "") -> Iterator[tuple[str, Module]]:
        yield prefix, self
        for name, m in self._modules.items():
            yield from m.named_modules(f"{prefix}.{name}" if prefix else name)

    def modules(self) -> Iterator[Module]:
        for _, m in self.named_modules():
            yield m

    def named_parameters(self, prefix: str = "") -> Iterator[tuple[str, Parameter]]:
        for mod_name, m in self.named_modules(prefix):
            for name, p in m._parameters.items():
                if p is not None:
                    yield (f"{mod_name}.{name}" if mod_name else name), p

    def parameters(self, trainable_only: bool = False) -> list[Parameter]:
        """All parameters (or only those with ``requires_grad``), in registration order."""
        return [p for _, p in self.named_parameters() if p.requires_grad or not trainable_only]

    def named_buffers(self, prefix: str = "") -> Iterator[tuple[str, np.ndarray]]:
        for mod_name, m in self.named_modules(prefix):
            for name, b in m._buffers.items():
                if b is not None:
                    yield (f"{mod_name}.{name}" if mod_name else name), b

    def num_parameters(self, trainable_only: bool = False) -> int:
        return sum(p.size for p in self.parameters(trainable_only))

    # -- state ----------------------------------------------------------------------
    def zero_grad(self, set_to_none: bool = True) -> None:
        """Forget accumulated gradients: ``grad = None`` (or zeros with ``set_to_none=False``)."""
        for p in self.parameters():
            p.zero_grad(set_to_none)

    def train(self, mode: bool = True) -> Module:
        for m in self.modules():
            object.__setattr__(m, "training", mode)
        return self

    def eval(self) -> Module:
        return self.train(False)

    def freeze(self) -> Module:
        """Mark every parameter as not trainable (transfer learning: keep the features).

        Frozen batch norms also stop updating and using batch statistics: they normalise with
        their running statistics even in training mode (as Keras does for non-trainable layers).
        """
        for p in self.parameters():
            p.requires_grad = False
            p.grad = None
        return self

    def unfreeze(self) -> Module:
        for p in self.parameters():
            p.requires_grad = True
        return self

    def to(self, target: Any) -> Module:
        """Convert every parameter and floating buffer to a dtype (float32/float64) or move them
        to a device ("cpu", or "cuda" through CuPy: the optional ``glassnet[gpu]`` extra)."""
        from ..backend import move

        if isinstance(target, str) and target in ("cpu", "cuda"):
            convert: Callable[[Any], Any] = lambda a: move(a, target)  # noqa: E731
            floating_only = False
        else:
            dt = np.dtype(target)
            if dt not in (np.dtype(np.float32), np.dtype(np.float64)):
                raise ValueError(f"to(): expected float32 or float64 (or a device, 'cpu' or 'cuda'), got {dt}")
            convert = lambda a: a.astype(dt)  # noqa: E731
            floating_only = True
        for m in self.modules():
            for p in m._parameters.values():
                if p is not None:
                    p.data = convert(p.data)
                    p.grad = None if p.grad is None else convert(p.grad)
            for name, b in list(m._buffers.items()):
                if b is not None and (not floating_only or np.dtype(str(b.dtype)).kind == "f"):
                    m._buffers[name] = convert(b)
        return self

    def state_dict(self) -> OrderedDict[str, np.ndarray]:
        """Parameters and buffers by dotted name (``features.0.weight``), as copies."""
        out: OrderedDict[str, np.ndarray] = OrderedDict()
        for mod_name, m in self.named_modules():
            for name, p in m._parameters.items():
                if p is not None:
                    out[f"{mod_name}.{name}" if mod_name else name] = np.array(to_numpy(p.data), copy=True)
            for name, b in m._buffers.items():
                if b is not None:
                    out[f"{mod_name}.{name}" if mod_name else name] = np.array(to_numpy(b), copy=True)
        return out

    def load_state_dict(self, state: dict[str, Any], strict: bool = True) -> IncompatibleKeys:
        """Load arrays by name (PyTorch's rules).

        ``strict`` concerns keys: with it every key must match (missing and unexpected keys
        are listed). Shapes must always agree. Floating arrays are cast to the dtype the
        model has (a float64 state dict loads into a float32 model); a floating array for
        an integer buffer, or the reverse, is an error. Returns ``(missing_keys,
        unexpected_keys)`` as torch does (both empty when every key matched).
        """
        own: dict[str, tuple[Module, str, str]] = {}
        for mod_name, m in self.named_modules():
            for kind in ("_parameters", "_buffers"):
                for name, v in getattr(m, kind).items():
                    if v is not None:
                        own[f"{mod_name}.{name}" if mod_name else name] = (m, kind, name)
        problems = []
        missing = [k for k in own if k not in state]
        unexpected = [k for k in state if k not in own]
        if strict and missing:
            problems.append(f"missing keys: {missing}")
        if strict and unexpected:
            problems.append(f"unexpected keys: {unexpected}")
        updates = []
        for key, (m, kind, name) in own.items():
            if key not in state:
                continue
            new = to_numpy(state[key].data if isinstance(state[key], Tensor) else state[key])
            new = np.asarray(new)
            cur = getattr(m, kind)[name]
            cur_arr = cur.data if isinstance(cur, Tensor) else cur
            cur_dtype = np.dtype(str(cur_arr.dtype))
            if new.shape != tuple(cur_arr.shape):
                problems.append(f"{key}: shape {new.shape} in the state dict, {tuple(cur_arr.shape)} in the model")
            elif (new.dtype.kind == "f") != (cur_dtype.kind == "f"):
                problems.append(f"{key}: dtype {new.dtype} in the state dict, {cur_dtype} in the model")
            else:
                updates.append((m, kind, name, cur_arr, np.array(new, dtype=cur_dtype, copy=True)))
        if problems:
            raise ValueError("load_state_dict: the state dict does not match the model:\n  " + "\n  ".join(problems))
        from ..backend import device_of, move

        for m, kind, name, cur_arr, arr in updates:
            if device_of(cur_arr) != "cpu":
                arr = move(arr, "cuda")
            if kind == "_parameters":
                m._parameters[name].data = arr
            else:
                m._buffers[name] = arr
        return IncompatibleKeys(missing, unexpected)

    def reset_parameters(self, scheme: str | None = None, rng: Any = None) -> Module:
        """Re-initialise every layer with weights (recursively); see :mod:`glassnet.nn.init`."""
        from .init import make_rng

        gen = make_rng(rng)
        for m in self.modules():
            if m is not self and type(m).reset_parameters is not Module.reset_parameters:
                m.reset_parameters(scheme, gen)
        return self

    # -- shapes ---------------------------------------------------------------------
    def output_shape(self, input_shape: Shape) -> Shape:
        """The output shape for an input of ``input_shape`` (with batch), from a shape-only :func:`glassnet.trace`."""
        from ..autograd.graph import trace

        return trace(self, input_shape, batched=True).output_shape

    # -- repr ---------------------------------------------------------------------------
    def extra_repr(self) -> str:
        return ""

    def __repr__(self) -> str:
        head = f"{type(self).__name__}({self.extra_repr()}"
        if not self._modules:
            return head + ")"
        lines = [head]
        for name, m in self._modules.items():
            sub = repr(m).replace("\n", "\n  ")
            lines.append(f"  ({name}): {sub}")
        return "\n".join(lines) + "\n)"


def kwargs_repr(pairs: list[tuple[str, Any, Any]]) -> str:
    """'name=value' for each (name, value, default) whose value is not the default."""
    return ", ".join(f"{n}={v!r}" for n, v, d in pairs if v != d)
