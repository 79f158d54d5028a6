"""``Parameter`` and ``Module``: the base of every layer, block and model.

A module's ``forward(x)`` computes its output and remembers what its backward pass
needs; ``backward(grad_output)`` returns the gradient with respect to the input and
*accumulates* the parameter gradients into ``Parameter.grad`` (call
``zero_grad()`` between steps). There is no tape: each module knows its own
backward, and containers call their children's in reverse order. A module instance
remembers only its latest forward, so use one instance per place in a network.

To write a new layer, subclass ``Module`` and give it ``forward`` and ``backward``
(and, for the summary table, ``output_shape``); check it with
:func:`glassnet.gradcheck`.
"""

from __future__ import annotations

from collections import OrderedDict
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

import numpy as np

from ..backend import get_default_dtype

Shape = tuple[int, ...]


class Parameter:
    """A trainable array: ``data``, its accumulated ``grad`` (or None) and ``requires_grad``.

    Frozen parameters (``requires_grad=False``) get no gradient and optimisers leave
    them untouched.
    """

    __slots__ = ("data", "grad", "requires_grad")

    def __init__(self, data: Any, requires_grad: bool = True) -> None:
        arr = np.asarray(data)
        if arr.dtype.kind != "f":
            arr = arr.astype(get_default_dtype())
        self.data: np.ndarray = arr
        self.grad: np.ndarray | None = None
        self.requires_grad = requires_grad

    @property
    def shape(self) -> Shape:
        return self.data.shape

    @property
    def dtype(self) -> np.dtype:
        return self.data.dtype

    @property
    def size(self) -> int:
        return self.data.size

    def accumulate(self, grad: np.ndarray | None) -> None:
        """Add ``grad`` to ``self.grad`` (no-op for frozen parameters or None)."""
        if grad is None or not self.requires_grad:
            return
        if grad.shape != self.data.shape:
            raise ValueError(f"gradient shape {grad.shape} does not match parameter shape {self.data.shape}")
        if self.grad is None:
            self.grad = np.array(grad, dtype=self.data.dtype, copy=True)
        else:
            self.grad += grad

    def __repr__(self) -> str:
        frozen = "" if self.requires_grad else ", frozen"
        return f"Parameter(shape={self.data.shape}, dtype={self.data.dtype}{frozen})"


@dataclass
class RFState:
    """Receptive-field bookkeeping along the layer stack, per axis (h, w).

    ``size``: how many input pixels one unit sees; ``jump``: the input distance
    between neighbouring units (cumulative stride). A k×k layer with stride s and
    dilation d does size += (d·(k−1))·jump, then jump *= s.
    """

    size: tuple[int, int] = (1, 1)
    jump: tuple[int, int] = (1, 1)
    input_hw: tuple[int, int] = (1, 1)

    def through(self, kernel: tuple[int, int], stride: tuple[int, int], dilation: tuple[int, int] = (1, 1)) -> RFState:
        size = tuple(r + d * (k - 1) * j for r, k, d, j in zip(self.size, kernel, dilation, self.jump, strict=True))
        jump = tuple(j * s for j, s in zip(self.jump, stride, strict=True))
        return RFState(size, jump, self.input_hw)  # type: ignore[arg-type]

    def whole(self) -> RFState:
        """Every unit sees the whole input (after flatten / dense / global pooling)."""
        return RFState(self.input_hw, self.jump, self.input_hw)


@dataclass
class SummaryRow:
    """One row of :func:`glassnet.summary`."""

    name: str
    kind: str
    output_shape: Shape
    params: int
    trainable: int
    macs: int
    rf: tuple[int, int]
    jump: tuple[int, int]


class Module:
    """Base class of layers and models (``torch.nn.Module``-like)."""

    def __init__(self) -> None:
        object.__setattr__(self, "_parameters", OrderedDict())
        object.__setattr__(self, "_buffers", OrderedDict())
        object.__setattr__(self, "_modules", OrderedDict())
        object.__setattr__(self, "training", True)
        object.__setattr__(self, "_ctx", None)

    # -- attribute registry -------------------------------------------------------
    def __setattr__(self, name: str, value: Any) -> None:
        if "_parameters" not in self.__dict__:
            raise AttributeError(f"{type(self).__name__}.__init__ must call super().__init__() first")
        params, buffers, modules = self._parameters, self._buffers, self._modules
        if isinstance(value, Parameter) or (value is None and name in params):
            target = params
        elif isinstance(value, Module):
            target = modules
        elif name in buffers and (value is None or isinstance(value, np.ndarray)):
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
    def forward(self, x: np.ndarray) -> np.ndarray:
        raise NotImplementedError(f"{type(self).__name__} must implement forward(x)")

    def backward(self, grad_output: np.ndarray) -> np.ndarray:
        raise NotImplementedError(f"{type(self).__name__} must implement backward(grad_output)")

    def __call__(self, x: Any) -> np.ndarray:
        return self.forward(x)

    def _saved(self) -> Any:
        """The context of the latest forward, or a clear error if there was none."""
        if self._ctx is None:
            raise RuntimeError(f"{type(self).__name__}.backward called before forward")
        return self._ctx

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
    def zero_grad(self) -> None:
        """Forget accumulated gradients (``grad = None``)."""
        for p in self.parameters():
            p.grad = None

    def train(self, mode: bool = True) -> Module:
        for m in self.modules():
            object.__setattr__(m, "training", mode)
        return self

    def eval(self) -> Module:
        return self.train(False)

    def freeze(self) -> Module:
        """Mark every parameter as not trainable (transfer learning: keep the features)."""
        for p in self.parameters():
            p.requires_grad = False
            p.grad = None
        return self

    def unfreeze(self) -> Module:
        for p in self.parameters():
            p.requires_grad = True
        return self

    def to(self, dtype: Any) -> Module:
        """Convert every parameter and floating buffer to ``dtype`` (float32/float64)."""
        dt = np.dtype(dtype)
        if dt not in (np.dtype(np.float32), np.dtype(np.float64)):
            raise ValueError(f"to(): expected float32 or float64, got {dt}")
        for m in self.modules():
            for p in m._parameters.values():
                if p is not None:
                    p.data = p.data.astype(dt)
                    p.grad = None if p.grad is None else p.grad.astype(dt)
            for name, b in list(m._buffers.items()):
                if b is not None and b.dtype.kind == "f":
                    m._buffers[name] = b.astype(dt)
        return self

    def state_dict(self) -> OrderedDict[str, np.ndarray]:
        """Parameters and buffers by dotted name (``features.0.weight``), as copies."""
        out: OrderedDict[str, np.ndarray] = OrderedDict()
        for mod_name, m in self.named_modules():
            for name, p in m._parameters.items():
                if p is not None:
                    out[f"{mod_name}.{name}" if mod_name else name] = p.data.copy()
            for name, b in m._buffers.items():
                if b is not None:
                    out[f"{mod_name}.{name}" if mod_name else name] = np.array(b, copy=True)
        return out

    def load_state_dict(self, state: dict[str, Any], strict: bool = True) -> Module:
        """Load arrays by name, checking names, shapes and dtypes.

        With ``strict`` every key must match (missing and unexpected keys are listed);
        shapes must always agree. Floating arrays are converted to the module's dtype
        only when ``strict=False``; otherwise a dtype difference is an error.
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
            new = np.asarray(state[key])
            cur = getattr(m, kind)[name]
            cur_arr = cur.data if isinstance(cur, Parameter) else cur
            if new.shape != cur_arr.shape:
                problems.append(f"{key}: shape {new.shape} in the state dict, {cur_arr.shape} in the model")
            elif new.dtype != cur_arr.dtype:
                if strict or new.dtype.kind != cur_arr.dtype.kind:
                    problems.append(f"{key}: dtype {new.dtype} in the state dict, {cur_arr.dtype} in the model")
                else:
                    updates.append((m, kind, name, new.astype(cur_arr.dtype)))
            else:
                updates.append((m, kind, name, np.array(new, copy=True)))
        if problems:
            raise ValueError("load_state_dict: the state dict does not match the model:\n  " + "\n  ".join(problems))
        for m, kind, name, arr in updates:
            if kind == "_parameters":
                m._parameters[name].data = arr
            else:
                m._buffers[name] = arr
        return self

    def reset_parameters(self, scheme: str | None = None, rng: Any = None) -> Module:
        """Re-initialise every layer with weights (recursively); see :mod:`glassnet.nn.init`."""
        from .init import make_rng

        gen = make_rng(rng)
        for m in self.modules():
            if m is not self and type(m).reset_parameters is not Module.reset_parameters:
                m.reset_parameters(scheme, gen)
        return self

    # -- shapes and summary ---------------------------------------------------------
    def output_shape(self, input_shape: Shape) -> Shape:
        """The output shape for an input of ``input_shape`` (with batch), computed without data.

        The default suits element-wise layers (shape unchanged) and models whose
        forward chains their children in registration order; override otherwise.
        """
        for m in self._modules.values():
            input_shape = m.output_shape(input_shape)
        return tuple(input_shape)

    def receptive(self, rf: RFState, input_shape: Shape) -> RFState:
        """How this layer changes the receptive field (the children's chain by default)."""
        for m in self._modules.values():
            rf = m.receptive(rf, input_shape)
            input_shape = m.output_shape(input_shape)
        return rf

    def macs(self, input_shape: Shape) -> int:
        """Multiply-accumulates of one forward pass on ``input_shape``."""
        return 0

    def summarize(self, input_shape: Shape, rf: RFState, prefix: str, rows: list[SummaryRow]) -> tuple[Shape, RFState]:
        """Append this module's rows to ``rows``; containers recurse into their children.

        A module with children is summarised as the chain of its children (override
        for other wiring); a leaf gives one row.
        """
        if self._modules:
            for name, m in self._modules.items():
                input_shape, rf = m.summarize(input_shape, rf, f"{prefix}.{name}" if prefix else name, rows)
            return tuple(input_shape), rf
        out = self.output_shape(input_shape)
        rf = self.receptive(rf, input_shape)
        own = [p for p in self._parameters.values() if p is not None]
        rows.append(
            SummaryRow(
                prefix or type(self).__name__,
                type(self).__name__,
                out,
                sum(p.size for p in own),
                sum(p.size for p in own if p.requires_grad),
                self.macs(input_shape),
                rf.size,
                rf.jump,
            )
        )
        return out, rf

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
