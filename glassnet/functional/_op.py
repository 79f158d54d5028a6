"""``Op``: a forward function and its backward, paired.

Every functional op is written as two plain functions that sit next to each other:

* ``name_forward(*inputs, **options) -> (output, ctx)`` computes the output and keeps
  in ``ctx`` exactly what backward needs;
* ``name_backward(grad_output, ctx) -> tuple`` returns one gradient per array input
  of forward, in order (``None`` for inputs that have no gradient, such as integer
  labels or an absent bias).

``name = Op(name_forward, name_backward)`` then gives the convenient front door
``name(*inputs, **options) -> output`` plus ``name.forward`` / ``name.backward``,
which is what modules and :func:`glassnet.gradcheck` use.
"""

from __future__ import annotations

import functools
from collections.abc import Callable
from typing import Any

import numpy as np


class Context(dict):
    """What a forward pass saved for its backward pass (a dict with attribute access)."""

    def __getattr__(self, key: str) -> Any:
        try:
            return self[key]
        except KeyError:
            raise AttributeError(key) from None

    def __setattr__(self, key: str, value: Any) -> None:
        self[key] = value


class Op:
    """A differentiable function: ``op(*a, **k)`` runs forward and returns its output."""

    def __init__(
        self,
        forward: Callable[..., tuple[Any, Context]],
        backward: Callable[[Any, Context], tuple[Any, ...]],
        name: str | None = None,
    ) -> None:
        self.forward = forward
        self.backward = backward
        self.__name__ = name or forward.__name__.removesuffix("_forward")
        self.__qualname__ = self.__name__
        self.__doc__ = forward.__doc__
        self.__module__ = forward.__module__
        functools.update_wrapper(self, forward, assigned=("__wrapped__",), updated=())
        self.__wrapped__ = forward

    def __call__(self, *args: Any, **kwargs: Any) -> np.ndarray:
        return self.forward(*args, **kwargs)[0]

    def __repr__(self) -> str:
        return f"<glassnet op {self.__name__}>"
