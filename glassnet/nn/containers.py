"""Containers: a chain (``Sequential``), a residual block (``Residual``) and parallel
branches concatenated along channels (``Concat``). Each writes only its forward; where
paths join, autograd adds up the gradients."""

from __future__ import annotations

from collections import OrderedDict
from collections.abc import Iterator
from typing import Any

from ..autograd.ops import cat
from .module import Module


class Sequential(Module):
    """Modules applied one after another; children are named "0", "1", … (or as given)."""

    def __init__(self, *modules: Module | OrderedDict[str, Module]) -> None:
        super().__init__()
        if len(modules) == 1 and isinstance(modules[0], dict):
            for name, m in modules[0].items():
                self._add(str(name), m)
        else:
            for i, m in enumerate(modules):
                self._add(str(i), m)

    def _add(self, name: str, m: Any) -> None:
        if not isinstance(m, Module):
            raise TypeError(f"Sequential: element {name} must be a Module, got {type(m).__name__}")
        setattr(self, name, m)

    def append(self, module: Module) -> Sequential:
        """Add ``module`` at the end, named by the next free integer."""
        numbers = [int(k) for k in self._modules if k.isdigit()]
        self._add(str(max(numbers, default=-1) + 1), module)
        return self

    def __len__(self) -> int:
        return len(self._modules)

    def __iter__(self) -> Iterator[Module]:
        return iter(self._modules.values())

    def __getitem__(self, idx: int | slice | str) -> Any:
        if isinstance(idx, str):
            return self._modules[idx]
        items = list(self._modules.items())
        if isinstance(idx, slice):
            return Sequential(OrderedDict(items[idx]))
        return items[idx][1]

    def __setitem__(self, idx: int | str, module: Module) -> None:
        name = idx if isinstance(idx, str) else list(self._modules)[idx]
        self._add(name, module)

    def forward(self, x: Any) -> Any:
        for m in self._modules.values():
            x = m(x)
        return x


class Residual(Module):
    """y = activation(body(x) + shortcut(x)); the shortcut is the identity when None.

    The ResNet building block: the body learns a residual that is added to the input
    (or to a projection of it, e.g. a strided 1×1 conv, when the shapes change).
    The gradient reaches x along both paths, and autograd adds the two.
    """

    def __init__(self, body: Module, shortcut: Module | None = None, activation: Module | None = None) -> None:
        super().__init__()
        self.body = body
        if shortcut is not None:
            self.shortcut = shortcut
        if activation is not None:
            self.activation = activation
        self._has_shortcut = shortcut is not None
        self._has_activation = activation is not None

    def forward(self, x: Any) -> Any:
        b = self.body(x)
        s = self.shortcut(x) if self._has_shortcut else x
        if tuple(b.shape) != tuple(s.shape):
            raise ValueError(
                f"Residual: body output {tuple(b.shape)} and shortcut output {tuple(s.shape)} differ; "
                "give a projection shortcut (e.g. a 1×1 Conv2d with the body's stride)"
            )
        y = b + s
        return self.activation(y) if self._has_activation else y


class Concat(Module):
    """Parallel branches on the same input, outputs concatenated along channels (axis 1).

    GoogLeNet's Inception module is four such branches.
    """

    def __init__(self, *branches: Module) -> None:
        super().__init__()
        if not branches:
            raise ValueError("Concat needs at least one branch")
        for i, b in enumerate(branches):
            setattr(self, str(i), b)

    def forward(self, x: Any) -> Any:
        outs = [b(x) for b in self._modules.values()]
        spatial = {tuple(o.shape[:1]) + tuple(o.shape[2:]) for o in outs}
        if len(spatial) != 1:
            raise ValueError(f"Concat: branch outputs {[tuple(o.shape) for o in outs]} differ outside the channel axis")
        return cat(outs, axis=1)
