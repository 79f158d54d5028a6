"""Reverse-mode automatic differentiation over glassnet's paired ops.

* :mod:`.tensor`: :class:`Tensor`, the graph :class:`Node`, ``backward``, ``no_grad``;
* :mod:`.function`: :class:`Op` (a forward and its backward), the backend dispatcher
  (:func:`use_backend`) and shape-only tracing support;
* :mod:`.ops`: the Tensor's own operators (``+ − * / @ **``, indexing, reshape, ...);
* :mod:`.graph`: printing and stepping through a recorded graph.
"""

from . import ops
from .function import Context, Meta, MetaArray, Op, get_backend, use_backend
from .ops import cat, stack_
from .tensor import Node, Tensor, enable_grad, is_grad_enabled, no_grad

stack = stack_

__all__ = [
    "Context",
    "Meta",
    "MetaArray",
    "Node",
    "Op",
    "Tensor",
    "cat",
    "enable_grad",
    "get_backend",
    "is_grad_enabled",
    "no_grad",
    "ops",
    "stack",
    "use_backend",
]
