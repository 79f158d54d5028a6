"""Reverse-mode automatic differentiation over glassnet's paired ops.

* :mod:`.tensor`: :class:`Tensor`, the graph :class:`Node`, ``backward``, ``no_grad``;
* :mod:`.function`: :class:`Op` (a forward and its backward), the backend dispatcher
  (:func:`use_backend`) and shape-only tracing support;
* :mod:`.ops`: the Tensor's own operators (``+ − * / @ **``, indexing, reshape, ...);
* :mod:`.graph`: printing and stepping through a recorded graph.
"""

from . import graph, ops
from .function import Context, Meta, MetaArray, Op, get_backend, use_backend
from .graph import BackwardStepper, Graph, trace
from .ops import cat, stack_
from .tensor import Node, Tensor, enable_grad, is_grad_enabled, no_grad

stack = stack_

__all__ = [
    "BackwardStepper",
    "Context",
    "Graph",
    "Meta",
    "MetaArray",
    "Node",
    "Op",
    "Tensor",
    "cat",
    "enable_grad",
    "graph",
    "get_backend",
    "is_grad_enabled",
    "no_grad",
    "ops",
    "stack",
    "trace",
    "use_backend",
]
