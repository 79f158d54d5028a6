"""The graph is something you can look at: trace a model without data, print a recorded
pass, step through backpropagation.

* :func:`trace` (``glassnet.trace(model, (1, 28, 28))``) runs the model on a *shape-only*
  input: every op records a node and computes nothing (each op's ``meta`` rule gives its
  output shape, multiply-accumulates and window). The :class:`Graph` it returns lists the
  nodes in the order they ran, with their module, input and output shapes, the parameters
  that feed them, MACs and receptive fields. :func:`glassnet.summary` is a view of it.
* :meth:`Graph.from_tensor` (or :func:`show`) takes the graph a *real* forward pass
  recorded, from the loss back to the leaves: for each node the op, what its forward
  saved for backward, and the backward function that will run (and where to read it).
* :class:`BackwardStepper` runs ``loss.backward()`` one node at a time, so a learner can
  watch the gradient flow: each step shows the incoming gradient and the gradients the
  op's backward computed for its inputs.

Receptive fields, per spatial axis (h, w), of every unit of a tensor on the input image:
unit (y, x) sees input rows ``start_h + y·jump_h … start_h + y·jump_h + size_h − 1``
(``start`` < 0 reaches into the padding). Walking the nodes: a sliding window of kernel
k, stride s, dilation d and padding p does ``size += d·(k−1)·jump``, ``start −= p·jump``,
``jump *= s``; an op whose outputs see everything (dense, flatten, global pooling) makes
the field the whole input; element-wise ops keep it; where paths join (a residual add, a
concatenation) the field is the union of the inputs' fields.
"""

from __future__ import annotations

import inspect as _inspect
import os
import textwrap
import threading
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from .function import MetaArray
from .tensor import BackwardStep, Node, Tensor, backward_steps, topological_order

# ----------------------------------------------------------------------------------- receptive fields


@dataclass(frozen=True)
class ReceptiveField:
    """What one unit of a tensor sees of the input image, per axis (h, w).

    ``size``: input pixels across (the extent, holes included, of a dilated field);
    ``jump``: input pixels between neighbouring units (the cumulative stride);
    ``start``: where unit (0, 0)'s field begins (negative: it reaches into the padding);
    ``whole``: every unit sees the whole input (after a dense layer, flatten, global pooling).
    """

    size: tuple[int, int] = (1, 1)
    jump: tuple[int, int] = (1, 1)
    start: tuple[int, int] = (0, 0)
    whole: bool = False

    def through(self, window: Any, input_hw: tuple[int, int]) -> ReceptiveField:
        """The field after an op with ``window``: ``(kernel, stride, dilation[, pads])``, "whole" or None."""
        if window is None or self.whole:
            return self
        if window == "whole":
            return ReceptiveField(input_hw, self.jump, (0, 0), True)
        k, s, d = window[:3]
        pads = window[3] if len(window) > 3 else ((0, 0), (0, 0))
        return ReceptiveField(
            (self.size[0] + d[0] * (k[0] - 1) * self.jump[0], self.size[1] + d[1] * (k[1] - 1) * self.jump[1]),
            (self.jump[0] * s[0], self.jump[1] * s[1]),
            (self.start[0] - pads[0][0] * self.jump[0], self.start[1] - pads[1][0] * self.jump[1]),
        )

    @staticmethod
    def union(fields: list[ReceptiveField], input_hw: tuple[int, int]) -> ReceptiveField:
        """Where paths join: the smallest box holding every input's field (the jump of the widest)."""
        if len(fields) == 1:
            return fields[0]
        widest = max(fields, key=lambda f: f.size[0] * f.size[1])
        if any(f.whole for f in fields):
            return ReceptiveField(input_hw, widest.jump, (0, 0), True)
        start = tuple(min(f.start[a] for f in fields) for a in (0, 1))
        end = tuple(max(f.start[a] + f.size[a] for f in fields) for a in (0, 1))
        return ReceptiveField((end[0] - start[0], end[1] - start[1]), widest.jump, start)  # type: ignore[arg-type]


def _slicing(index: Any, shape: tuple[int, ...]) -> Any:
    """``x[..., a::s, b::t]`` on a 4-D tensor as a window: kernel 1, stride (s, t), starting at (a, b)."""
    if not isinstance(index, tuple) or len(shape) != 4 or len(index) > 4:
        return None
    if any(e is Ellipsis or e is None for e in index):
        return None
    spatial = (list(index) + [slice(None)] * 4)[2:4]
    if not all(isinstance(e, slice) for e in spatial):
        return None
    (a, _, s), (b, _, t) = (e.indices(n) for e, n in zip(spatial, shape[2:], strict=True))
    if s < 1 or t < 1:
        return None
    return ((1, 1), (s, t), (1, 1), ((-a, 0), (-b, 0)))


# --------------------------------------------------------------------------------------------- graph


@dataclass
class Edge:
    """One tensor input of a node: the op's argument name, where the tensor came from and its shape.

    ``source`` is ``"input"`` (the traced input), ``"#3"`` (node 3's output), a parameter's
    dotted name (``"features.0.weight"``) or ``"leaf"`` (any other tensor).
    """

    arg: str
    source: str
    shape: tuple[int, ...]
    node: int | None = None
    parameter: bool = False


@dataclass
class GraphNode:
    """One op application.

    ``module``: dotted name of the innermost module that ran it ("" for the model itself,
    its type in ``kind``); ``inputs``: its tensor inputs (see :class:`Edge`); ``macs``:
    multiply-accumulates; ``rf``: the receptive field of its output. ``node`` is the
    autograd :class:`~glassnet.autograd.tensor.Node` (op, saved context, backward).
    """

    index: int
    op: str
    module: str
    kind: str
    inputs: list[Edge]
    output_shape: tuple[int, ...]
    node: Node
    macs: int | None = None
    rf: ReceptiveField | None = None

    @property
    def input_shapes(self) -> list[tuple[int, ...]]:
        return [e.shape for e in self.inputs]

    @property
    def params(self) -> list[str]:
        """Dotted names of the parameters this op reads."""
        return [e.source for e in self.inputs if e.parameter]

    @property
    def options(self) -> dict[str, Any]:
        """The op's non-tensor arguments (stride, padding, ...) as traced."""
        ctx = self.node.ctx or {}
        return {k: v for k, v in ctx.get("options", {}).items() if v is not None and not _is_arraylike(v)}

    @property
    def backward_fn(self) -> Callable[..., Any]:
        return self.node.backward_fn

    def where(self) -> str:
        """ "conv2d in features.0 (Conv2d)"."""
        at = f"{self.module} ({self.kind})" if self.module else self.kind
        return f"{self.op} in {at}" if at else self.op


@dataclass
class ModuleCall:
    """One call of a module during a trace.

    ``nodes``: the ops it applied itself (not through child modules); ``end``: how many
    nodes had run when it returned; ``rf``: the receptive field of its output; ``leaf``:
    the module has no children.
    """

    name: str
    kind: str
    module: Any
    nodes: list[int]
    end: int
    output_shape: tuple[int, ...]
    rf: ReceptiveField
    leaf: bool


@dataclass
class Graph:
    """Op nodes and, for a trace, the module calls (each in the order it finished).

    ``nodes`` are in execution order for a trace; for :meth:`from_tensor`, in the order
    backward visits them (the loss first). Printing a trace gives its table; printing a
    recorded graph gives :func:`describe`'s listing.
    """

    nodes: list[GraphNode]
    input_shape: tuple[int, ...] = ()
    output_shape: tuple[int, ...] = ()
    calls: list[ModuleCall] = field(default_factory=list)
    output_rf: ReceptiveField | None = None
    parameters: dict[str, Any] = field(default_factory=dict)
    recorded: bool = False

    def __len__(self) -> int:
        return len(self.nodes)

    def __iter__(self) -> Iterator[GraphNode]:
        return iter(self.nodes)

    def __getitem__(self, i: int) -> GraphNode:
        return self.nodes[i]

    @property
    def total_macs(self) -> int:
        return sum(n.macs or 0 for n in self.nodes)

    @classmethod
    def from_tensor(cls, t: Tensor, model: Any = None) -> Graph:
        """The graph a real forward pass recorded behind ``t``, from ``t`` back to the leaves.

        Give ``model`` to name modules and parameters by their dotted names.
        """
        names, params = _names(model)
        order = topological_order(t.grad_fn) if t.grad_fn is not None else []
        index = {id(n): i for i, n in enumerate(order)}
        nodes = []
        for i, node in enumerate(order):
            edges = []
            for arg, inp in zip(_arg_names(node), node.inputs, strict=False):
                if inp is None:
                    continue
                if inp.grad_fn is not None:
                    edges.append(Edge(arg, f"#{index[id(inp.grad_fn)]}", inp.shape, index[id(inp.grad_fn)]))
                else:
                    name = params.get(id(inp))
                    edges.append(Edge(arg, name or inp.name or "leaf", inp.shape, None, name is not None))
            module, kind = _module_name(node.module, names)
            nodes.append(GraphNode(i, node.name, module, kind, edges, tuple(node.out_shape), node))
        return cls(nodes, output_shape=tuple(t.shape), recorded=True)

    def table(self) -> list[list[str]]:
        """Header and one row of cells per node (a trace's columns)."""
        out = [["#", "op", "module", "inputs", "output", "parameters", "MACs", "RF", "jump"]]
        for n in self.nodes:
            acts = [e.source for e in n.inputs if not e.parameter]
            rf = n.rf
            out.append(
                [
                    str(n.index),
                    n.op,
                    f"{n.module} ({n.kind})" if n.module else n.kind,
                    ", ".join(acts),
                    _shape(n.output_shape),
                    ", ".join(n.params),
                    "" if n.macs is None else f"{n.macs:,}",
                    "" if rf is None else ("all" if rf.whole else f"{rf.size[0]}×{rf.size[1]}"),
                    "" if rf is None else _pair(rf.jump),
                ]
            )
        return out

    def __str__(self) -> str:
        if self.recorded:
            return describe(self)
        cells = self.table()
        widths = [max(len(r[i]) for r in cells) for i in range(len(cells[0]))]

        def line(row: list[str]) -> str:
            return "  ".join(
                c.rjust(w) if i in (0, 6) else c.ljust(w) for i, (c, w) in enumerate(zip(row, widths, strict=True))
            )

        rule = "-" * (sum(widths) + 2 * (len(widths) - 1))
        head = f"trace: input {_shape(self.input_shape)} → output {_shape(self.output_shape)}, {len(self.nodes)} ops"
        body = [line(r).rstrip() for r in cells]
        return "\n".join([head, rule, body[0], rule, *body[1:], rule, f"multiply-accumulates: {self.total_macs:,}"])

    __repr__ = __str__


# ------------------------------------------------------------------------------------------- tracing


def trace(model: Any, input_shape: Any, *, batched: bool | None = None, dtype: Any = None) -> Graph:
    """Run ``model`` on a shape-only input and return the :class:`Graph` of the ops it applied.

    ``input_shape``: one example's shape, (C, H, W) for images (a batch of 1 is put in
    front), or a full [N, C, H, W] shape; ``batched=True`` says ``input_shape`` includes
    the batch axis whatever its length, ``batched=False`` that it does not. No data is
    computed: parameters are only read for their shapes, and the model is left as it was
    (no BatchNorm statistics or counters move, no dropout randomness is drawn). Hooks
    are attached to the modules while the trace runs, to see where each call ends.

    A shape that does not fit raises the op's or the layer's error, prefixed with the
    layer it happened in: ``layer '7' (Linear): Linear(400→120) expected input [N, 400], ...``.
    """
    shape = tuple(int(d) for d in input_shape)
    if batched is None:
        batched = len(shape) == 4
    if not batched:
        shape = (1, *shape)
    if dtype is None:
        first = next(iter(model.parameters()), None) if hasattr(model, "parameters") else None
        dtype = first.dtype if first is not None else np.dtype(np.float32)
    x = Tensor(MetaArray(shape, dtype))
    rec = _Recorder(model, x)
    try:
        out = rec.run()
    except (ValueError, TypeError) as e:
        where = rec.failing_layer(e.__traceback__)
        if where is None:
            raise
        try:
            error = type(e)(f"{where}: {e}")
        except Exception:  # an exception type that wants other arguments
            raise e from None
        raise error from e
    return rec.graph(out)


def _is_arraylike(v: Any) -> bool:
    return hasattr(v, "shape") and hasattr(v, "dtype")


def _names(model: Any) -> tuple[dict[int, str], dict[int, str]]:
    """id → dotted name of every module and every parameter of ``model`` (the first name of a shared one)."""
    modules: dict[int, str] = {}
    params: dict[int, str] = {}
    if model is not None and hasattr(model, "named_modules"):
        for name, m in model.named_modules():
            modules.setdefault(id(m), name)
        for name, p in model.named_parameters():
            params.setdefault(id(p), name)
    return modules, params


def _module_name(module: Any, names: dict[int, str]) -> tuple[str, str]:
    if module is None:
        return "", ""
    return names.get(id(module), ""), type(module).__name__


def _arg_names(node: Node) -> list[str]:
    op = node.op
    if getattr(op, "varargs", False):
        return [f"{op.params[0]}[{i}]" for i in range(len(node.inputs))]
    params = list(getattr(op, "params", []))
    return params + [f"arg{i}" for i in range(len(params), len(node.inputs))]


def _tensors(out: Any) -> list[Tensor]:
    if isinstance(out, Tensor):
        return [out]
    if isinstance(out, tuple | list):
        return [t for o in out for t in _tensors(o)]
    if isinstance(out, dict):
        return [t for o in out.values() for t in _tensors(o)]
    return []


class _Recorder:
    """Runs the traced forward with a hook on every module; each hook numbers the new nodes
    behind the module's output (inputs first, left to right), which is the order they ran in."""

    def __init__(self, model: Any, x: Tensor) -> None:
        self.model, self.x = model, x
        self.module_names, self.param_names = _names(model)
        self.params = dict(model.named_parameters()) if hasattr(model, "named_parameters") else {}
        self.order: list[Node] = []
        self.index: dict[int, int] = {}
        self.calls: list[tuple[Any, list[int], int, Any]] = []
        self.hooked: set[int] = set()
        self.thread = threading.get_ident()

    def run(self) -> Any:
        handles = []
        if hasattr(self.model, "named_modules"):
            for _, m in self.model.named_modules():
                if id(m) not in self.hooked:
                    self.hooked.add(id(m))
                    handles.append(m.register_forward_hook(self.finished))
        try:
            out = self.model(self.x)
        finally:
            for h in handles:
                h.remove()
        self.number(out)
        return out

    def finished(self, module: Any, args: Any, out: Any) -> None:
        if threading.get_ident() != self.thread:
            return  # the model also running elsewhere meanwhile: not the traced call
        new = self.number(out)
        self.calls.append((module, new, len(self.order), out))

    def number(self, out: Any) -> list[int]:
        """Give every node behind ``out`` that has no number yet the next one, inputs before their users."""
        new: list[int] = []
        for t in _tensors(out):
            if t.grad_fn is None or id(t.grad_fn) in self.index:
                continue
            stack: list[tuple[Node, bool]] = [(t.grad_fn, False)]
            opened: set[int] = set()
            while stack:
                node, ready = stack.pop()
                if ready:
                    self.index[id(node)] = len(self.order)
                    new.append(len(self.order))
                    self.order.append(node)
                    continue
                if id(node) in opened or id(node) in self.index:
                    continue
                opened.add(id(node))
                stack.append((node, True))
                for inp in reversed(node.inputs):
                    if inp is not None and inp.grad_fn is not None and id(inp.grad_fn) not in self.index:
                        stack.append((inp.grad_fn, False))
        return new

    def failing_layer(self, tb: Any) -> str | None:
        """'layer 'features.3' (MaxPool2d)' for the innermost module whose call the traceback passes through."""
        from ..nn.module import Module

        module = None
        while tb is not None:
            frame = tb.tb_frame
            if frame.f_code is Module.__call__.__code__:
                module = frame.f_locals.get("self")
            tb = tb.tb_next
        if module is None:
            return None
        name = self.module_names.get(id(module), "")
        return f"layer '{name}' ({type(module).__name__})" if name else type(module).__name__

    def graph(self, out: Any) -> Graph:
        in_shape = self.x.shape
        hw = (in_shape[2], in_shape[3]) if len(in_shape) == 4 else (1, 1)
        fields: list[ReceptiveField] = []
        nodes: list[GraphNode] = []
        start = ReceptiveField()
        for i, node in enumerate(self.order):
            edges, incoming = [], []
            for arg, inp in zip(_arg_names(node), node.inputs, strict=False):
                if inp is None:
                    continue
                if inp is self.x:
                    edges.append(Edge(arg, "input", inp.shape))
                    incoming.append(start)
                elif inp.grad_fn is not None:
                    j = self.index[id(inp.grad_fn)]
                    edges.append(Edge(arg, f"#{j}", inp.shape, j))
                    incoming.append(fields[j])
                else:
                    name = self.param_names.get(id(inp))
                    edges.append(Edge(arg, name or "leaf", inp.shape, None, name is not None))
            meta = node.ctx["meta"]
            window = meta.window
            if node.name == "getitem" and window is None and edges:
                window = _slicing(node.ctx["options"].get("index"), edges[0].shape)
            rf = ReceptiveField.union(incoming, hw) if incoming else start
            rf = rf.through(window, hw)
            if len(in_shape) == 4 and len(meta.shape) != 4:
                rf = rf.through("whole", hw)  # no spatial axes left: each unit stands for the whole image
            fields.append(rf)
            module, kind = _module_name(node.module, self.module_names)
            nodes.append(GraphNode(i, node.name, module, kind, edges, tuple(meta.shape), node, int(meta.macs), rf))

        def field_of(t: Any) -> ReceptiveField:
            if isinstance(t, Tensor) and t.grad_fn is not None and id(t.grad_fn) in self.index:
                return fields[self.index[id(t.grad_fn)]]
            return start

        calls = []
        for module, new, end, result in self.calls:
            first = next(iter(_tensors(result)), None)
            leaf = not getattr(module, "_modules", None)
            # a leaf also owns the ops of modules it runs that are not registered (so have no hook)
            own = [
                i
                for i in new
                if self.order[i].module is module or (leaf and id(self.order[i].module) not in self.hooked)
            ]
            name, kind = _module_name(module, self.module_names)
            shape = tuple(first.shape) if first is not None else ()
            calls.append(ModuleCall(name, kind, module, own, end, shape, field_of(first), leaf))
        first = next(iter(_tensors(out)), None)
        return Graph(
            nodes,
            in_shape,
            tuple(first.shape) if first is not None else (),
            calls,
            field_of(first),
            self.params,
        )


# ----------------------------------------------------------------------------- a recorded pass, printed


def _shape(shape: tuple[int, ...]) -> str:
    return "×".join(str(d) for d in shape) if shape else "scalar"


def _pair(p: tuple[int, int]) -> str:
    return str(p[0]) if p[0] == p[1] else f"{p[0]}×{p[1]}"


def _value(v: Any) -> str:
    if _is_arraylike(v) and not isinstance(v, MetaArray):
        return f"[{', '.join(str(d) for d in v.shape)}] {v.dtype}"
    if isinstance(v, MetaArray):
        return f"shape {list(v.shape)}"
    if isinstance(v, np.dtype):
        return str(v)
    if isinstance(v, list | tuple) and len(v) > 4:
        return f"{type(v).__name__} of {len(v)}"
    text = repr(v)
    return text if len(text) <= 40 else text[:37] + "..."


def function_location(fn: Callable[..., Any]) -> str:
    """``glassnet.functional.conv.conv2d_backward (glassnet/functional/conv.py:279)``: what to open to read ``fn``."""
    name = f"{getattr(fn, '__module__', '?')}.{getattr(fn, '__qualname__', repr(fn))}"
    try:
        path = _inspect.getsourcefile(fn) or ""
        line = _inspect.getsourcelines(fn)[1]
    except (TypeError, OSError):
        return name
    root = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
    rel = os.path.relpath(path, root)
    return f"{name} ({path if rel.startswith('..') else rel}:{line})"


def _saved(ctx: dict[str, Any], prefix: str = "") -> Iterator[tuple[str, Any]]:
    """(name, value) of what a context saved; a fused op's contexts of its steps as ``step.name``."""
    for k, v in ctx.items():
        if k in ("backend", "needs_input_grad", "options", "meta"):
            continue
        if isinstance(v, dict):
            yield from _saved(v, f"{prefix}{k}.")
        else:
            yield f"{prefix}{k}", v


def describe(graph: Graph) -> str:
    """A recorded graph, one block per node: op and module, the inputs that need a gradient
    (``#3``: node 3's output; a parameter's name; other arguments are left out), output
    shape, what forward saved for backward (arrays, then other values; freed once backward
    has run through the node), and the backward function that will run, with its file and line."""
    lines = [f"graph of {len(graph.nodes)} ops, from the output ({_shape(graph.output_shape)}) back to the leaves"]
    for n in graph.nodes:
        lines.append(f"#{n.index} {n.where()} → {_shape(n.output_shape)}")
        ins = ", ".join(f"{e.arg}={e.source} {_shape(e.shape)}" for e in n.inputs)
        lines.append(f"    inputs:   {ins or '(none that need a gradient)'}")
        ctx = n.node.ctx
        if ctx is None:
            lines.append("    saved:    (freed: backward has run through this node)")
        else:
            saved = list(_saved(ctx))
            tensors = [f"{k} {_value(v)}" for k, v in saved if _is_arraylike(v)]
            values = [f"{k}={_value(v)}" for k, v in saved if not _is_arraylike(v)]
            lines.append(f"    saved:    {', '.join(tensors) or '(no arrays)'}")
            if values:
                lines += textwrap.wrap(", ".join(values), 110, initial_indent=" " * 14, subsequent_indent=" " * 14)
        lines.append(f"    backward: {function_location(n.backward_fn)}  ({n.node.backend} backend)")
    return "\n".join(lines)


def show(t: Tensor, model: Any = None) -> Graph:
    """Print the graph a real forward pass recorded behind ``t`` (a loss) and return it.

    ``model`` names modules and parameters (``features.0.weight``); see :func:`describe`.
    """
    graph = Graph.from_tensor(t, model)
    print(describe(graph))
    return graph


# ------------------------------------------------------------------------------------ stepping backward


@dataclass
class Step:
    """What one step of backpropagation computed: the node, the gradient that reached its
    output, and the gradient its backward returned for each of its inputs (by argument name)."""

    node: GraphNode
    grad_output: Any
    grad_inputs: dict[str, Any]

    def __str__(self) -> str:
        got = ", ".join(f"{k} {_shape(tuple(g.shape))}" for k, g in self.grad_inputs.items()) or "nothing"
        return (
            f"#{self.node.index} {self.node.where()}: ∂L/∂out {_shape(tuple(self.grad_output.shape))} → {got}"
            f"  [{function_location(self.node.backward_fn)}]"
        )


class BackwardStepper:
    """``loss.backward()`` one node at a time (the same loop, paused after each node).

    ``step()`` runs the next node's backward and returns the :class:`Step` (None when
    done); ``run()`` runs the rest. The parameters' ``.grad`` end up exactly as
    ``loss.backward()`` leaves them. ``graph`` lists the nodes (in the order they will run).
    """

    def __init__(self, loss: Tensor, grad: Any = None, retain_graph: bool = False, model: Any = None) -> None:
        self.graph = Graph.from_tensor(loss, model)
        self._by_node = {id(n.node): n for n in self.graph.nodes}
        self._steps = backward_steps(loss, grad, retain_graph)
        self.history: list[Step] = []
        self.done = False

    def _wrap(self, s: BackwardStep) -> Step:
        gn = self._by_node[id(s.node)]
        names = _arg_names(s.node)
        grads = {
            names[i]: g
            for i, g in enumerate(s.grad_inputs)
            if g is not None and i < len(s.node.inputs) and s.node.inputs[i] is not None
        }
        return Step(gn, s.grad_output, grads)

    def step(self) -> Step | None:
        """Run one node's backward; None once every node has run."""
        if self.done:
            return None
        try:
            s = next(self._steps)
        except StopIteration:
            self.done = True
            return None
        step = self._wrap(s)
        self.history.append(step)
        return step

    def run(self) -> list[Step]:
        """Run every remaining step; returns them."""
        return list(self)

    def __iter__(self) -> Iterator[Step]:
        while (s := self.step()) is not None:
            yield s
