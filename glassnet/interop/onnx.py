"""ONNX export and import (the optional extra ``glassnet[onnx]``: ``onnx`` and ``onnxruntime``).

:func:`export_onnx` writes any glassnet model as an ONNX graph built with ``onnx.helper``
(no torch). The graph is read off a shape-only trace: the model runs once on a
:class:`~glassnet.autograd.MetaArray` input, every op it applies records a node with its
options, and each node becomes one or a few ONNX operators:

==========================  ===============================================================
glassnet op                 ONNX
==========================  ===============================================================
conv2d                      Conv (pads ``[top, left, bottom, right]``; ``flip=True``
                            exports the kernel rotated by 180°)
max_pool2d, avg_pool2d      MaxPool / AveragePool; ``ceil_mode`` follows PyTorch (below)
adaptive_avg_pool2d         GlobalAveragePool, AveragePool when the sizes divide, else two
                            MatMuls with glassnet's averaging matrices (the same sums)
global_avg_pool2d           GlobalAveragePool
relu, relu6, leaky_relu     Relu, Clip(0, 6), LeakyRelu
sigmoid, tanh               Sigmoid, Tanh
softmax, log_softmax        Softmax, LogSoftmax
linear                      Gemm(transB=1) (MatMul + Add for inputs of more than 2 axes)
flatten                     Flatten (Reshape for start_dim ≠ 1)
batch_norm (inference)      BatchNormalization
batch_norm_relu (inference) BatchNormalization, Add (a residual), Relu
conv2d_bn_relu              Conv, BatchNormalization, Add (a residual), Relu
local_response_norm         LRN (odd sizes: ONNX centres even windows differently)
dropout                     Identity
add sub mul div neg pow     Add Sub Mul Div Neg Pow
abs matmul cast             Abs MatMul Cast
getitem (basic slicing)     Slice (+ Squeeze for integer indices, Unsqueeze for None)
reshape, permute            Reshape, Transpose
concatenate, stack          Concat (stack: Unsqueeze each input first)
sum, mean, max              ReduceSum, ReduceMean, ReduceMax
==========================  ===============================================================

Parameters, buffers and constant arrays become initializers (parameters and buffers
under their state-dict names). Pooling in ceil mode: PyTorch (and glassnet) drop a last
window that would start in the right/bottom padding, the ONNX specification's output
size does not; where the two differ the pool is exported in floor mode with the extra
right/bottom padding that gives PyTorch's windows (for average pooling that counts the
padding, an explicit Pad first, so the extra cells are never counted).

:func:`import_onnx` turns an ONNX graph into an :class:`OnnxModule`, a forward-only glassnet
module that runs the graph with glassnet ops, so autograd, forward hooks, the explorer
and :func:`glassnet.summary` work on it. Convolutions, dense layers, batch norms,
poolings and activations become the glassnet layers themselves (``Conv2d``, ``Linear``,
``BatchNorm2d``, ``MaxPool2d``, ``ReLU``, ...); other operators become :class:`OnnxOp`
children. It reads what PyTorch's two exporters write for CNNs: the TorchScript one
(batch norm folded into Conv, GlobalAveragePool / Flatten / Gemm, Identity aliases of
shared initializers) and the dynamo one (ReduceMean / Reshape, Constant nodes, weights in
an external ``.onnx.data`` file).
"""

from __future__ import annotations

import contextlib
import json
import os
import re
import threading
from collections import OrderedDict
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import numpy as np

from .. import functional as F
from ..autograd import ops as A
from ..autograd.function import Meta, MetaArray
from ..autograd.tensor import Node, Tensor
from ..functional._args import pair, window_out
from ..functional.conv import conv2d_geometry
from ..functional.pool import _adaptive_matrix, pool_geometry
from ..nn import (
    AdaptiveAvgPool2d,
    AvgPool2d,
    BatchNorm1d,
    BatchNorm2d,
    Conv2d,
    Dropout,
    Flatten,
    LeakyReLU,
    Linear,
    LocalResponseNorm,
    LogSoftmax,
    MaxPool2d,
    Module,
    Parameter,
    ReLU,
    ReLU6,
    Sigmoid,
    Softmax,
    Tanh,
)

__all__ = [
    "DEFAULT_OPSET",
    "OnnxError",
    "OnnxModule",
    "OnnxOp",
    "export_onnx",
    "import_onnx",
    "onnx_available",
]

DEFAULT_OPSET = 17
MIN_OPSET, MAX_OPSET = 13, 21
INT64_MAX = 2**63 - 1
CONSTANTS_KEY = "glassnet.constants"  # model metadata: the initializers that are constants, not parameters
INSTALL_HINT = "ONNX support needs the optional extra: pip install 'glassnet[onnx]' (onnx and onnxruntime)"


class OnnxError(ValueError):
    """A model that cannot be exported, or an ONNX file that cannot be imported (the message says why)."""


def onnx_available() -> bool:
    """Whether the ``onnx`` package is installed."""
    try:
        import onnx  # noqa: F401
    except ImportError:
        return False
    return True


def _onnx() -> Any:
    try:
        import onnx
    except ImportError:
        raise ImportError(INSTALL_HINT) from None
    return onnx


# ============================================================================ shapes for the trace
# The trace computes output shapes with each op's ``meta``. Ops that have none yet would
# report their input's shape, so while exporting, shape functions are lent to those ops
# (and only to those: an op that has its own meta keeps it).


def _conv2d_meta(x: Any, weight: Any, bias: Any = None, stride: Any = 1, padding: Any = 0, dilation: Any = 1,
                 groups: int = 1, flip: bool = False, algorithm: Any = None) -> Meta:  # fmt: skip
    *_, (ho, wo) = conv2d_geometry(tuple(x.shape), tuple(weight.shape), stride, padding, dilation)
    return Meta((x.shape[0], weight.shape[0], ho, wo))


def _max_pool2d_meta(x: Any, kernel_size: Any, stride: Any = None, padding: Any = 0, dilation: Any = 1,
                     ceil_mode: bool = False) -> Meta:  # fmt: skip
    *_, out = pool_geometry("max_pool2d", tuple(x.shape), kernel_size, stride, padding, dilation, ceil_mode)
    return Meta((*x.shape[:2], *out))


def _avg_pool2d_meta(x: Any, kernel_size: Any, stride: Any = None, padding: Any = 0, ceil_mode: bool = False,
                     count_include_pad: bool = True, divisor_override: Any = None) -> Meta:  # fmt: skip
    *_, out = pool_geometry("avg_pool2d", tuple(x.shape), kernel_size, stride, padding, 1, ceil_mode)
    return Meta((*x.shape[:2], *out))


def _adaptive_size(shape: tuple[int, ...], output_size: Any) -> tuple[int, int]:
    h, w = shape[2:]
    if isinstance(output_size, tuple | list) and len(output_size) == 2:
        return (
            h if output_size[0] is None else int(output_size[0]),
            w if output_size[1] is None else int(output_size[1]),
        )
    return pair(output_size, "output_size")


def _linear_meta(x: Any, weight: Any, bias: Any = None) -> Meta:
    return Meta((*x.shape[:-1], weight.shape[0]))


def _flatten_meta(x: Any, start_dim: int = 1) -> Meta:
    return Meta((*x.shape[:start_dim], int(np.prod(x.shape[start_dim:], dtype=np.int64))))


_LENT_METAS: dict[Any, Callable[..., Meta]] = {
    F.conv2d: _conv2d_meta,
    F.max_pool2d: _max_pool2d_meta,
    F.avg_pool2d: _avg_pool2d_meta,
    F.adaptive_avg_pool2d: lambda x, output_size: Meta((*x.shape[:2], *_adaptive_size(tuple(x.shape), output_size))),
    F.global_avg_pool2d: lambda x: Meta((*x.shape[:2], 1, 1)),
    F.linear: _linear_meta,
    F.flatten: _flatten_meta,
}
_lend_lock = threading.Lock()


@contextlib.contextmanager
def _shape_rules() -> Iterator[None]:
    """Lend shape functions to the ops that have no ``meta`` of their own, for one trace."""
    with _lend_lock:
        lent = [op for op in _LENT_METAS if op.meta is None]
        for op in lent:
            op.meta = _LENT_METAS[op]
        try:
            yield
        finally:
            for op in lent:
                op.meta = None


# ============================================================================ export


class _Unsupported(Exception):
    """One node that has no ONNX form (collected, then reported together)."""


def _np_float(dtype: Any) -> bool:
    return np.dtype(dtype).kind == "f"


class _Exporter:
    def __init__(self, model: Module, opset: int, dynamic_batch: bool, batch: int) -> None:
        self.onnx = _onnx()
        self.helper = self.onnx.helper
        self.opset, self.dynamic_batch, self.batch = opset, dynamic_batch, batch
        self.dtype = np.dtype(np.float32)
        self.nodes: list[Any] = []
        self.initializers: OrderedDict[str, Any] = OrderedDict()
        self.values: dict[int, str] = {}  # id(Tensor) → ONNX value name
        self.param_names = {id(p): n for n, p in model.named_parameters()}
        self.buffer_names = {id(b): n for n, b in model.named_buffers()}
        self.module_names = {id(m): n for n, m in model.named_modules()}
        self.used_names: set[str] = set()
        self.const_ids: dict[int, str] = {}
        self.nbytes = 0
        self.constants: list[str] = []  # initializers that are not parameters (buffers, constant arrays)
        self.keep: list[Any] = []  # arrays whose id() is a key above stay alive until the export ends
        self.node_name = ""

    # -- names and constants ----------------------------------------------------------------
    def unique(self, base: str) -> str:
        name, k = base, 1
        while name in self.used_names:
            k += 1
            name = f"{base}_{k}"
        self.used_names.add(name)
        return name

    def const(self, value: Any, hint: str, as_float: bool | None = None) -> str:
        """An initializer holding ``value`` (floats in the export dtype, integers as int64)."""
        arr = np.asarray(value.data if isinstance(value, Tensor) else value)
        key = id(value)
        if key in self.const_ids:
            return self.const_ids[key]
        is_float = _np_float(arr.dtype) if as_float is None else as_float
        arr = arr.astype(self.dtype if is_float else np.int64)
        name = self.unique(hint)
        self.initializers[name] = self.onnx.numpy_helper.from_array(np.ascontiguousarray(arr), name)
        self.nbytes += arr.nbytes
        if not isinstance(value, Parameter):
            self.constants.append(name)
        if not isinstance(value, int | float | list | tuple):
            self.const_ids[key] = name
            self.keep.append(value)
        return name

    def ints(self, values: Any, hint: str = "ints") -> str:
        return self.const(np.asarray(values, dtype=np.int64), f"{self.node_name}/{hint}", as_float=False)

    def scalar(self, v: float, hint: str) -> str:
        return self.const(np.asarray(v, dtype=self.dtype), f"{self.node_name}/{hint}", as_float=True)

    def tensor_name(self, t: Tensor) -> str:
        if id(t) in self.values:
            return self.values[id(t)]
        if t.grad_fn is None and not isinstance(t.data, MetaArray):  # a parameter or a constant tensor
            hint = self.param_names.get(id(t)) or f"{self.node_name}/constant"
            name = self.const(t, hint)
            self.values[id(t)] = name
            return name
        raise _Unsupported("reads a shape-only tensor that is not the model's input")

    def arg(self, node: Node, name: str, hint: str | None = None) -> str | None:
        """The ONNX name of argument ``name`` of ``node`` (a tensor, a constant array or number), or None."""
        op = node.op
        idx = op.params.index(name)
        t = node.inputs[idx] if idx < len(node.inputs) else None
        if isinstance(t, Tensor):
            return self.tensor_name(t)
        v = node.ctx["options"].get(name)
        if v is None:
            return None
        if isinstance(v, bool | str) or (not hasattr(v, "shape") and not isinstance(v, int | float | np.generic)):
            raise _Unsupported(f"argument {name}={v!r} is not an array")
        buf = self.buffer_names.get(id(v))
        return self.const(v, buf or f"{self.node_name}/{hint or name}", as_float=True)

    def shape(self, node: Node, name: str) -> tuple[int, ...]:
        idx = node.op.params.index(name)
        t = node.inputs[idx] if idx < len(node.inputs) else None
        if isinstance(t, Tensor):
            return tuple(t.shape)
        return tuple(np.shape(node.ctx["options"].get(name)))

    def opt(self, node: Node, name: str, default: Any = None) -> Any:
        return node.ctx["options"].get(name, default)

    def emit(self, op_type: str, inputs: list[str | None], outputs: list[str] | None = None, **attrs: Any) -> str:
        """Append one ONNX node; returns its (first) output name."""
        if outputs is None:
            outputs = [self.unique(f"{self.node_name}/{op_type}_out")]
        while inputs and inputs[-1] is None:
            inputs = inputs[:-1]
        name = self.unique(f"{self.node_name}/{op_type}")
        attrs = {k: v for k, v in attrs.items() if v is not None}
        self.nodes.append(self.helper.make_node(op_type, [i or "" for i in inputs], outputs, name=name, **attrs))
        return outputs[0]

    # -- the graph ----------------------------------------------------------------------------
    def run(self, nodes: list[Node], x: Tensor, outputs: list[Tensor]) -> Any:
        self.values[id(x)] = "input"
        self.used_names.add("input")
        out_names = ["output"] if len(outputs) == 1 else [f"output_{i}" for i in range(len(outputs))]
        self.used_names.update(out_names)
        final = {id(o.grad_fn): n for o, n in zip(outputs, out_names, strict=True) if o.grad_fn is not None}
        problems: dict[tuple[str, str], list[str]] = {}
        for node in nodes:
            where = self.module_names.get(id(node.module), "") if node.module is not None else ""
            self.node_name = f"{where}/{node.name}" if where else node.name
            handler = _EXPORTERS.get(node.name)
            out = final.get(id(node)) or self.unique(f"{self.node_name}_out")
            try:
                if handler is None:
                    raise _Unsupported("has no ONNX form in glassnet's exporter")
                got = handler(self, node, out)
                if got != out:  # a handler that produced its result under another name
                    self.emit("Identity", [got], [out])
            except _Unsupported as e:
                problems.setdefault((node.name, str(e)), []).append(where)
                out = "(unexportable)"  # what reads it is not reported again
            t = node.out()
            if t is not None:
                self.values[id(t)] = out
        if problems:
            lines = []
            for (op, reason), wheres in problems.items():
                places = [w for w in dict.fromkeys(wheres) if w]
                count = f" ×{len(wheres)}" if len(wheres) > 1 else ""
                inside = f" (in {', '.join(places)})" if places else ""
                lines.append(f"{op}{count}{inside}: {reason}")
            raise OnnxError("cannot export to ONNX; unsupported ops:\n  " + "\n  ".join(lines))
        for o, n in zip(outputs, out_names, strict=True):
            if o.grad_fn is None:  # the model returned its input (or a constant) unchanged
                self.emit("Identity", [self.tensor_name(o)], [n])
        return out_names


def _pads_attr(pads: tuple[tuple[int, int], tuple[int, int]]) -> list[int]:
    (t, b), (left, r) = pads
    return [t, left, b, r]


def _ex_conv2d(ex: _Exporter, node: Node, out: str | None) -> str:
    x = ex.arg(node, "x")
    xs, ws = ex.shape(node, "x"), ex.shape(node, "weight")
    if len(xs) != 4 or len(ws) != 4:
        raise _Unsupported(f"conv2d of shapes {xs} and {ws} (4-D expected)")
    stride, dilation, pads, _ = conv2d_geometry(
        xs, ws, ex.opt(node, "stride", 1), ex.opt(node, "padding", 0), ex.opt(node, "dilation", 1)
    )
    w_t = node.inputs[1] if len(node.inputs) > 1 else None
    if ex.opt(node, "flip", False):
        if isinstance(w_t, Tensor) and w_t.grad_fn is None and not isinstance(w_t.data, MetaArray):
            base = ex.param_names.get(id(w_t)) or f"{ex.node_name}/weight"
            w = ex.const(np.ascontiguousarray(np.asarray(w_t.data)[:, :, ::-1, ::-1]), f"{base}.flipped")
        else:
            w_in = ex.arg(node, "weight")
            w = ex.emit(
                "Slice",
                [w_in, ex.ints([-1, -1]), ex.ints([-INT64_MAX, -INT64_MAX]), ex.ints([2, 3]), ex.ints([-1, -1])],
            )
    else:
        w = ex.arg(node, "weight")
    b = ex.arg(node, "bias")
    groups = int(ex.opt(node, "groups", 1) or 1)
    return ex.emit("Conv", [x, w, b], None if out is None else [out], kernel_shape=list(ws[2:]),
                   strides=list(stride), dilations=list(dilation), pads=_pads_attr(pads), group=groups)  # fmt: skip


def _counts(n: int, k: int, s: int, d: int, lo: int, hi: int, ceil_mode: bool) -> tuple[int, int, int]:
    """(PyTorch's window count, ONNX floor-mode count, ONNX-specification ceil-mode count) of one axis.

    PyTorch drops a last ceil-mode window that would start in the right padding; the
    specification's ceil mode never drops one.
    """
    span = d * (k - 1) + 1
    room = n + lo + hi - span
    return window_out(n, k, s, lo, hi, d, ceil_mode), room // s + 1, -(-room // s) + 1


def _ex_pool(ex: _Exporter, node: Node, out: str, kind: str) -> str:
    x = ex.arg(node, "x")
    xs = ex.shape(node, "x")
    dil = ex.opt(node, "dilation", 1) if kind == "max" else 1
    ceil_mode = bool(ex.opt(node, "ceil_mode", False))
    k, s, d, pads, _ = pool_geometry(
        f"{kind}_pool2d", xs, ex.opt(node, "kernel_size"), ex.opt(node, "stride"), ex.opt(node, "padding", 0), dil,
        ceil_mode,
    )  # fmt: skip
    (t, b), (left, r) = pads
    axes = [(xs[2], k[0], s[0], d[0], t, b), (xs[3], k[1], s[1], d[1], left, r)]
    counts = [_counts(*a, ceil_mode) for a in axes]
    onnx_ceil = not all(want == floor for want, floor, _ in counts) and all(want == c for want, _, c in counts)
    eh, ew = (0, 0) if onnx_ceil else (_extra_for_floor(*a, ceil_mode) for a in axes)
    common = dict(kernel_shape=list(k), strides=list(s), ceil_mode=int(onnx_ceil))
    if kind == "max":
        all_pads = [t, left, b + eh, r + ew]
        if max(all_pads[0], all_pads[2]) >= k[0] or max(all_pads[1], all_pads[3]) >= k[1]:
            # onnxruntime wants each padding smaller than the kernel: pad with −∞ explicitly
            x = ex.emit("Pad", [x, ex.ints([0, 0, t, left, 0, 0, b + eh, r + ew]), ex.scalar(-np.inf, "neg_inf")])
            all_pads = [0, 0, 0, 0]
        return ex.emit("MaxPool", [x], [out], pads=all_pads, dilations=list(d), **common)
    if ex.opt(node, "divisor_override") is not None:
        raise _Unsupported("avg_pool2d with divisor_override")
    include = bool(ex.opt(node, "count_include_pad", True))
    if include and (eh or ew) and (t or b or left or r):
        # PyTorch counts the real padding but not the extra cells: make the padding real
        x = ex.emit("Pad", [x, ex.ints([0, 0, t, left, 0, 0, b, r]), ex.scalar(0.0, "zero")])
        return ex.emit("AveragePool", [x], [out], pads=[0, 0, eh, ew], count_include_pad=0, **common)
    if eh or ew:
        include = False  # no real padding: only the extra cells, which PyTorch never counts
    return ex.emit("AveragePool", [x], [out], pads=[t, left, b + eh, r + ew], count_include_pad=int(include), **common)


def _extra_for_floor(n: int, k: int, s: int, d: int, lo: int, hi: int, ceil_mode: bool) -> int:
    """Extra padding after the input so that floor mode gives PyTorch's count."""
    want = window_out(n, k, s, lo, hi, d, ceil_mode)
    span = d * (k - 1) + 1
    return max((want - 1) * s + span - (n + lo + hi), 0)


def _ex_adaptive(ex: _Exporter, node: Node, out: str) -> str:
    x = ex.arg(node, "x")
    xs = ex.shape(node, "x")
    h, w = xs[2:]
    oh, ow = _adaptive_size(xs, ex.opt(node, "output_size"))
    if (oh, ow) == (1, 1):
        return ex.emit("GlobalAveragePool", [x], [out])
    if (oh, ow) == (h, w):
        return ex.emit("Identity", [x], [out])
    if h % oh == 0 and w % ow == 0:
        kh, kw = h // oh, w // ow
        return ex.emit("AveragePool", [x], [out], kernel_shape=[kh, kw], strides=[kh, kw], pads=[0, 0, 0, 0])
    # overlapping windows: out = Ph · x · Pwᵀ, glassnet's own averaging matrices
    pw_t = ex.const(np.asarray(_adaptive_matrix(w, ow), dtype=np.float64).T.copy(), f"{ex.node_name}/avg_w")
    ph = ex.const(np.asarray(_adaptive_matrix(h, oh), dtype=np.float64), f"{ex.node_name}/avg_h")
    y = ex.emit("MatMul", [x, pw_t])
    return ex.emit("MatMul", [ph, y], [out])


def _ex_simple(op_type: str, **attrs_from: str) -> Callable[[_Exporter, Node, str], str]:
    """An op with one input and attributes read from its options (attr name → option name)."""

    def handler(ex: _Exporter, node: Node, out: str) -> str:
        attrs = {a: ex.opt(node, o) for a, o in attrs_from.items()}
        return ex.emit(op_type, [ex.arg(node, node.op.params[0])], [out], **attrs)

    return handler


def _ex_softmax(op_type: str) -> Callable[[_Exporter, Node, str], str]:
    def handler(ex: _Exporter, node: Node, out: str) -> str:
        return ex.emit(op_type, [ex.arg(node, "x")], [out], axis=int(ex.opt(node, "axis", -1)))

    return handler


def _ex_relu6(ex: _Exporter, node: Node, out: str) -> str:
    return ex.emit("Clip", [ex.arg(node, "x"), ex.scalar(0.0, "zero"), ex.scalar(6.0, "six")], [out])


def _ex_leaky(ex: _Exporter, node: Node, out: str) -> str:
    return ex.emit("LeakyRelu", [ex.arg(node, "x")], [out], alpha=float(ex.opt(node, "negative_slope", 0.01)))


def _ex_linear(ex: _Exporter, node: Node, out: str) -> str:
    x, xs = ex.arg(node, "x"), ex.shape(node, "x")
    b = ex.arg(node, "bias")
    if len(xs) == 2:
        return ex.emit("Gemm", [x, ex.arg(node, "weight"), b], [out], transB=1)
    w_t = node.inputs[1]
    if isinstance(w_t, Tensor) and w_t.grad_fn is None and not isinstance(w_t.data, MetaArray):
        base = ex.param_names.get(id(w_t)) or f"{ex.node_name}/weight"
        wt = ex.const(np.ascontiguousarray(np.asarray(w_t.data).T), f"{base}.T")
    else:
        wt = ex.emit("Transpose", [ex.arg(node, "weight")], perm=[1, 0])
    if b is None:
        return ex.emit("MatMul", [x, wt], [out])
    return ex.emit("Add", [ex.emit("MatMul", [x, wt]), b], [out])


def _ex_flatten(ex: _Exporter, node: Node, out: str) -> str:
    start = int(ex.opt(node, "start_dim", 1))
    x = ex.arg(node, "x")
    if start == 1:
        return ex.emit("Flatten", [x], [out], axis=1)
    return ex.emit("Reshape", [x, ex.ints([0] * start + [-1], "shape")], [out])


def _ex_identity(ex: _Exporter, node: Node, out: str) -> str:
    return ex.emit("Identity", [ex.arg(node, node.op.params[0])], [out])


def _bn_node(ex: _Exporter, node: Node, x: str, c: int, out: str | None, prefix: str = "") -> str:
    """BatchNormalization of ``x`` (C = c) with the node's statistics and its ``prefix``weight/bias."""
    scale = ex.arg(node, f"{prefix}weight") or ex.const(np.ones(c, ex.dtype), f"{ex.node_name}/scale")
    bias = ex.arg(node, f"{prefix}bias") or ex.const(np.zeros(c, ex.dtype), f"{ex.node_name}/B")
    mean, var = ex.arg(node, "running_mean"), ex.arg(node, "running_var")
    eps = float(ex.opt(node, "eps", 1e-5))
    return ex.emit("BatchNormalization", [x, scale, bias, mean, var], None if out is None else [out], epsilon=eps)


def _ex_batch_norm(ex: _Exporter, node: Node, out: str | None) -> str:
    if ex.opt(node, "training", True):
        raise _Unsupported("batch norm with batch statistics (training mode, or track_running_stats=False)")
    return _bn_node(ex, node, ex.arg(node, "x"), ex.shape(node, "x")[1], out)


def _residual_relu(ex: _Exporter, node: Node, y: str, out: str) -> str:
    """Relu(y + residual), or Relu(y) without one."""
    residual = ex.arg(node, "residual")
    return ex.emit("Relu", [y if residual is None else ex.emit("Add", [y, residual])], [out])


def _ex_batch_norm_relu(ex: _Exporter, node: Node, out: str) -> str:
    return _residual_relu(ex, node, _ex_batch_norm(ex, node, None), out)


def _ex_conv2d_bn_relu(ex: _Exporter, node: Node, out: str) -> str:
    y = _ex_conv2d(ex, node, None)
    return _residual_relu(ex, node, _bn_node(ex, node, y, ex.shape(node, "weight")[0], None, prefix="bn_"), out)


def _ex_lrn(ex: _Exporter, node: Node, out: str) -> str:
    size = int(ex.opt(node, "size"))
    if size % 2 == 0:
        raise _Unsupported(f"local_response_norm of even size {size} (ONNX's LRN centres even windows differently)")
    return ex.emit("LRN", [ex.arg(node, "x")], [out], size=size, alpha=float(ex.opt(node, "alpha", 1e-4)),
                   beta=float(ex.opt(node, "beta", 0.75)), bias=float(ex.opt(node, "k", 1.0)))  # fmt: skip


def _ex_binary(op_type: str) -> Callable[[_Exporter, Node, str], str]:
    def handler(ex: _Exporter, node: Node, out: str) -> str:
        return ex.emit(op_type, [ex.arg(node, "a"), ex.arg(node, "b")], [out])

    return handler


def _ex_pow(ex: _Exporter, node: Node, out: str) -> str:
    p = ex.opt(node, "exponent")
    if not isinstance(p, int | float | np.number):
        raise _Unsupported("pow with a non-constant exponent")
    return ex.emit("Pow", [ex.arg(node, "a"), ex.scalar(float(p), "exponent")], [out])


def _ex_matmul(ex: _Exporter, node: Node, out: str) -> str:
    return ex.emit("MatMul", [ex.arg(node, "a"), ex.arg(node, "b")], [out])


def _ex_cast(ex: _Exporter, node: Node, out: str) -> str:
    to = ex.helper.np_dtype_to_tensor_dtype(np.dtype(ex.opt(node, "dtype")))
    return ex.emit("Cast", [ex.arg(node, "a")], [out], to=int(to))


def _batch_axis(ex: _Exporter, node: Node, shape: tuple[int, ...]) -> bool:
    """Whether axis 0 of the node's first input is the (dynamic) batch."""
    t = node.inputs[0] if node.inputs else None
    return ex.dynamic_batch and isinstance(t, Tensor) and isinstance(t.data, MetaArray) and shape[:1] == (ex.batch,)


def _ex_reshape(ex: _Exporter, node: Node, out: str) -> str:
    target = [int(v) for v in ex.opt(node, "shape")]
    xs = ex.shape(node, "a")
    if target and _batch_axis(ex, node, xs) and target[0] == ex.batch:
        target[0] = 0  # copy the batch size from the input
    return ex.emit("Reshape", [ex.arg(node, "a"), ex.ints(target, "shape")], [out])


def _ex_permute(ex: _Exporter, node: Node, out: str) -> str:
    nd = len(ex.shape(node, "a"))
    axes = ex.opt(node, "axes")
    perm = list(range(nd))[::-1] if axes is None else [int(a) % nd for a in axes]
    return ex.emit("Transpose", [ex.arg(node, "a")], [out], perm=perm)


def _ex_getitem(ex: _Exporter, node: Node, out: str) -> str:
    index = ex.opt(node, "index")
    xs = ex.shape(node, "a")
    items = list(index) if isinstance(index, tuple) else [index]
    if any(not (isinstance(i, slice | int | np.integer) or i is None or i is Ellipsis) or isinstance(i, bool)
           for i in items):  # fmt: skip
        raise _Unsupported(f"indexing with {index!r} (only basic slicing, integers, None and ... export)")
    if items.count(Ellipsis) > 1:
        raise _Unsupported(f"indexing with {index!r}")
    if Ellipsis in items:
        at = items.index(Ellipsis)
        fill = len(xs) - (len(items) - 1 - items.count(None))
        items = items[:at] + [slice(None)] * fill + items[at + 1 :]
    # Python's slice values go to ONNX as they are (both count negative indices from the end and
    # clamp), None as ±INT64_MAX, so the slices stay right for any batch size.
    starts, ends, axes, steps, squeeze, unsqueeze = [], [], [], [], [], []
    axis, out_axis = 0, 0
    for it in items:
        if it is None:
            unsqueeze.append(out_axis)
            out_axis += 1
            continue
        if isinstance(it, slice):
            if it != slice(None):
                step = 1 if it.step is None else int(it.step)
                if step == 0:
                    raise _Unsupported(f"indexing with {index!r}: slice step 0")
                start = (0 if step > 0 else INT64_MAX) if it.start is None else int(it.start)
                stop = (INT64_MAX if step > 0 else -INT64_MAX - 1) if it.stop is None else int(it.stop)
                starts.append(start), ends.append(stop), axes.append(axis), steps.append(step)
            out_axis += 1
        else:
            i = int(it)
            starts.append(i), ends.append(INT64_MAX if i == -1 else i + 1), axes.append(axis), steps.append(1)
            squeeze.append(axis)
        axis += 1
    x = ex.arg(node, "a")
    if starts:
        x = ex.emit("Slice", [x, ex.ints(starts, "starts"), ex.ints(ends, "ends"), ex.ints(axes, "axes"),
                              ex.ints(steps, "steps")])  # fmt: skip
    if squeeze:
        x = ex.emit("Squeeze", [x, ex.ints(squeeze, "axes")])
    if unsqueeze:
        x = ex.emit("Unsqueeze", [x, ex.ints(unsqueeze, "axes")])
    return x


def _varargs_inputs(ex: _Exporter, node: Node) -> list[str]:
    names = []
    for i, t in enumerate(node.inputs):
        if isinstance(t, Tensor):
            names.append(ex.tensor_name(t))
        elif i == 0 and node.ctx["options"].get(node.op.params[0]) is not None:
            names.append(ex.const(node.ctx["options"][node.op.params[0]], f"{ex.node_name}/constant", as_float=True))
        else:
            raise _Unsupported("a constant array among the joined arrays (only tensors after the first)")
    return names


def _ex_concatenate(ex: _Exporter, node: Node, out: str) -> str:
    names = _varargs_inputs(ex, node)
    return ex.emit("Concat", names, [out], axis=int(ex.opt(node, "axis", 0)) % max(len(node.out_shape), 1))


def _ex_stack(ex: _Exporter, node: Node, out: str) -> str:
    names = _varargs_inputs(ex, node)
    nd = len(node.inputs[0].shape) + 1
    axis = int(ex.opt(node, "axis", 0)) % nd
    parts = [ex.emit("Unsqueeze", [n, ex.ints([axis], "axes")]) for n in names]
    return ex.emit("Concat", parts, [out], axis=axis)


def _ex_reduce(op_type: str, axes_input_from: int) -> Callable[[_Exporter, Node, str], str]:
    def handler(ex: _Exporter, node: Node, out: str) -> str:
        nd = len(ex.shape(node, "a"))
        axis = ex.opt(node, "axis")
        axes = (
            list(range(nd))
            if axis is None
            else [int(a) % nd for a in (axis if isinstance(axis, tuple | list) else [axis])]
        )
        keep = int(bool(ex.opt(node, "keepdims", False)))
        if ex.opset >= axes_input_from:
            return ex.emit(op_type, [ex.arg(node, "a"), ex.ints(axes, "axes")], [out], keepdims=keep)
        return ex.emit(op_type, [ex.arg(node, "a")], [out], axes=axes, keepdims=keep)

    return handler


_EXPORTERS: dict[str, Callable[[_Exporter, Node, str], str]] = {
    "conv2d": _ex_conv2d,
    "max_pool2d": lambda ex, node, out: _ex_pool(ex, node, out, "max"),
    "avg_pool2d": lambda ex, node, out: _ex_pool(ex, node, out, "avg"),
    "adaptive_avg_pool2d": _ex_adaptive,
    "global_avg_pool2d": _ex_simple("GlobalAveragePool"),
    "relu": _ex_simple("Relu"),
    "relu6": _ex_relu6,
    "leaky_relu": _ex_leaky,
    "sigmoid": _ex_simple("Sigmoid"),
    "tanh": _ex_simple("Tanh"),
    "softmax": _ex_softmax("Softmax"),
    "log_softmax": _ex_softmax("LogSoftmax"),
    "linear": _ex_linear,
    "flatten": _ex_flatten,
    "dropout": _ex_identity,
    "batch_norm": _ex_batch_norm,
    "batch_norm_relu": _ex_batch_norm_relu,
    "conv2d_bn_relu": _ex_conv2d_bn_relu,
    "local_response_norm": _ex_lrn,
    "add": _ex_binary("Add"),
    "sub": _ex_binary("Sub"),
    "mul": _ex_binary("Mul"),
    "div": _ex_binary("Div"),
    "neg": _ex_simple("Neg"),
    "abs": _ex_simple("Abs"),
    "pow": _ex_pow,
    "matmul": _ex_matmul,
    "getitem": _ex_getitem,
    "reshape": _ex_reshape,
    "permute": _ex_permute,
    "concatenate": _ex_concatenate,
    "stack": _ex_stack,
    "sum": _ex_reduce("ReduceSum", 13),
    "mean": _ex_reduce("ReduceMean", 18),
    "max": _ex_reduce("ReduceMax", 18),
    "cast": _ex_cast,
}
"""glassnet op name → its ONNX translation."""


def _ir_version(opset: int) -> int:
    """The IR version that goes with ``opset`` (onnx's newest default IR is refused by onnxruntime)."""
    helper = _onnx().helper
    return int(helper.find_min_ir_version_for([helper.make_opsetid("", opset)]))


def _walk(outputs: list[Tensor]) -> list[Node]:
    """The recorded nodes in forward order: each after every node whose output it reads."""
    order: list[Node] = []
    seen: set[int] = set()
    stack: list[tuple[Node, bool]] = [(o.grad_fn, False) for o in reversed(outputs) if o.grad_fn is not None]
    while stack:
        node, expanded = stack.pop()
        if expanded:
            order.append(node)
            continue
        if id(node) in seen:
            continue
        seen.add(id(node))
        stack.append((node, True))
        for t in reversed(node.inputs):
            if t is not None and t.grad_fn is not None and id(t.grad_fn) not in seen:
                stack.append((t.grad_fn, False))
    return order


def export_onnx(
    model: Module,
    input_shape: Any,
    path: str | os.PathLike[str] | None,
    opset: int = DEFAULT_OPSET,
    dynamic_batch: bool = True,
) -> Any:
    """Write ``model`` as an ONNX file (inference: batch norm with running statistics, dropout off).

    Args:
        model: any glassnet module built from glassnet ops (the whole zoo).
        input_shape: (C, H, W) or (N, C, H, W) of one input.
        path: where to write the ``.onnx`` file (None: only return the model).
        opset: ONNX opset, 13 … 21 (default 17); the IR version is set to match it.
        dynamic_batch: the batch axis is named ``N`` (any batch size), else fixed.

    Returns the ``onnx.ModelProto`` (checked with ``onnx.checker``). Its input is called
    ``input`` and its output ``output`` (``output_0``, … for several). Ops that have no
    ONNX form raise :class:`OnnxError` listing every one of them.
    """
    onnx = _onnx()
    if not isinstance(opset, int) or not MIN_OPSET <= opset <= MAX_OPSET:
        raise OnnxError(f"opset must be an int from {MIN_OPSET} to {MAX_OPSET}, got {opset!r}")
    shape = tuple(int(d) for d in input_shape)
    if len(shape) == 3:
        shape = (1, *shape)
    if len(shape) < 2 or min(shape) < 1:
        raise OnnxError(f"input_shape must be (C, H, W) or (N, C, H, W) of positive sizes, got {tuple(input_shape)}")
    modes = [(m, m.training) for m in model.modules()]
    model.eval()
    try:
        x = Tensor(MetaArray(shape, np.float32))
        with _shape_rules():
            out = model(x)
    finally:
        for m, mode in modes:
            object.__setattr__(m, "training", mode)
    outputs = list(out) if isinstance(out, tuple | list) else [out]
    if not all(isinstance(o, Tensor) for o in outputs):
        raise OnnxError(f"the model must return a Tensor (or a tuple of them), got {type(out).__name__}")
    ex = _Exporter(model, opset, dynamic_batch, shape[0])
    out_names = ex.run(_walk(outputs), x, outputs)
    helper, tp = onnx.helper, onnx.TensorProto

    def dims(s: tuple[int, ...], name: str = "input") -> list[Any]:
        if not dynamic_batch or not s:
            return list(s)
        return ["N" if s[0] == shape[0] else f"{name}_dim0", *s[1:]]  # slicing the batch: its own size

    graph = helper.make_graph(
        ex.nodes,
        getattr(model, "name", None) or type(model).__name__,
        [helper.make_tensor_value_info("input", tp.FLOAT, dims(shape))],
        [
            helper.make_tensor_value_info(n, tp.FLOAT, dims(tuple(o.shape), n))
            for n, o in zip(out_names, outputs, strict=True)
        ],
        initializer=list(ex.initializers.values()),
    )
    proto = helper.make_model(graph, opset_imports=[helper.make_opsetid("", opset)], producer_name="glassnet")
    if ex.constants:  # so that import_onnx keeps them constants rather than making them parameters
        helper.set_model_props(proto, {CONSTANTS_KEY: json.dumps(ex.constants)})
    proto.ir_version = _ir_version(opset)
    from .. import __version__

    proto.producer_version = str(__version__)
    large = ex.nbytes > 1_800_000_000  # protobuf's 2 GB limit: the weights go to an external data file
    if not large:
        onnx.checker.check_model(proto, full_check=True)
    if path is not None:
        if large:
            onnx.save(proto, os.fspath(path), save_as_external_data=True, location=Path(path).name + ".data")
        else:
            onnx.save(proto, os.fspath(path))
    return proto


# ============================================================================ import


class _Spec:
    """One ONNX node as the importer sees it: type, attributes (as Python values) and opset."""

    __slots__ = ("op_type", "attrs", "opset", "name")

    def __init__(self, op_type: str, attrs: dict[str, Any], opset: int, name: str) -> None:
        self.op_type, self.attrs, self.opset, self.name = op_type, attrs, opset, name

    def get(self, key: str, default: Any = None) -> Any:
        return self.attrs.get(key, default)


def _is_tensor(v: Any) -> bool:
    return isinstance(v, Tensor)


def _ints(v: Any) -> list[int]:
    return [int(i) for i in np.asarray(v).reshape(-1)]


def _shape_of(v: Any) -> tuple[int, ...]:
    return tuple(int(d) for d in v.shape)


def _np_binary(fn: Callable[[Any, Any], Any], int_fn: Callable[[Any, Any], Any] | None = None) -> Callable[..., Any]:
    def run(spec: _Spec, a: Any, b: Any) -> Any:
        if not _is_tensor(a) and not _is_tensor(b):
            a, b = np.asarray(a), np.asarray(b)
            if int_fn is not None and a.dtype.kind in "iu" and b.dtype.kind in "iu":
                return int_fn(a, b)
            return np.asarray(fn(a, b)).astype(np.result_type(a, b), copy=False)
        return fn(a, b)

    return run


def _run_reshape(spec: _Spec, x: Any, shape: Any) -> Any:
    target = _ints(shape)
    dims = _shape_of(x)
    if not spec.get("allowzero", 0):
        target = [dims[i] if v == 0 else v for i, v in enumerate(target)]
    return A.reshape(x, tuple(target))


def _axes_arg(spec: _Spec, axes_input: Any, ndim: int, attr_until: int) -> list[int] | None:
    axes = spec.get("axes") if spec.opset < attr_until else (None if axes_input is None else _ints(axes_input))
    return None if axes is None else [int(a) % ndim for a in axes]


def _run_unsqueeze(spec: _Spec, x: Any, axes: Any = None) -> Any:
    dims = list(_shape_of(x))
    ax = _axes_arg(spec, axes, len(dims) + len(_ints(axes if axes is not None else spec.get("axes", []))), 13)
    for a in sorted(ax or []):
        dims.insert(a, 1)
    return A.reshape(x, tuple(dims))


def _run_squeeze(spec: _Spec, x: Any, axes: Any = None) -> Any:
    dims = _shape_of(x)
    ax = _axes_arg(spec, axes, len(dims), 13)
    if ax is None:
        ax = [i for i, d in enumerate(dims) if d == 1]
    return A.reshape(x, tuple(d for i, d in enumerate(dims) if i not in ax))


def _run_slice(spec: _Spec, x: Any, starts: Any = None, ends: Any = None, axes: Any = None, steps: Any = None) -> Any:
    dims = _shape_of(x)
    if spec.opset < 10:
        starts, ends, axes = spec.get("starts"), spec.get("ends"), spec.get("axes")
    st, en = _ints(starts), _ints(ends)
    ax = list(range(len(st))) if axes is None else [int(a) % len(dims) for a in _ints(axes)]
    sp = [1] * len(st) if steps is None else _ints(steps)
    index: list[Any] = [slice(None)] * len(dims)
    for a, s, e, step in zip(ax, st, en, sp, strict=True):
        n = dims[a]
        s = s + n if s < 0 else s
        e = e + n if e < 0 else e
        if step > 0:
            s, e = min(max(s, 0), n), min(max(e, 0), n)
            index[a] = slice(s, e, step)
        else:
            s, e = min(max(s, 0), n - 1), min(max(e, -1), n - 1)
            index[a] = slice(s, None if e < 0 else e, step)
    return A.getitem(x, tuple(index))


def _run_gather(spec: _Spec, x: Any, indices: Any) -> Any:
    if _is_tensor(indices):
        raise OnnxError(f"{spec.name}: Gather with computed indices")
    axis = int(spec.get("axis", 0)) % len(_shape_of(x))
    idx = np.asarray(indices).astype(np.int64)
    idx = np.where(idx < 0, idx + _shape_of(x)[axis], idx)
    index = (slice(None),) * axis + ((int(idx),) if idx.ndim == 0 else (idx,))
    return A.getitem(x, index)


def _run_concat(spec: _Spec, *xs: Any) -> Any:
    xs = tuple(v for v in xs if v is not None and 0 not in tuple(np.shape(v)))  # ONNX allows empty inputs
    if not any(_is_tensor(v) for v in xs):
        return np.concatenate([np.asarray(v) for v in xs], axis=int(spec.get("axis")))
    nd = len(next(v for v in xs if _is_tensor(v)).shape)
    return A.concatenate(*xs, axis=int(spec.get("axis")) % nd)


def _run_transpose(spec: _Spec, x: Any) -> Any:
    perm = spec.get("perm")
    return A.permute(x, None if perm is None else tuple(int(p) for p in perm))


def _run_reduce(op: Any, axes_input_from: int) -> Callable[..., Any]:
    def run(spec: _Spec, x: Any, axes: Any = None) -> Any:
        nd = len(_shape_of(x))
        ax = _axes_arg(spec, axes, nd, axes_input_from)
        if not ax:
            if spec.get("noop_with_empty_axes", 0):
                return x
            ax = list(range(nd))
        return op(x, axis=tuple(ax), keepdims=bool(spec.get("keepdims", 1)))

    return run


def _run_cast(spec: _Spec, x: Any) -> Any:
    from onnx import helper

    dtype = np.dtype(helper.tensor_dtype_to_np_dtype(int(spec.get("to"))))
    if not _is_tensor(x):
        return np.asarray(x).astype(dtype)
    return A.cast(x, dtype=dtype) if x.dtype != dtype else x


def _run_pow(spec: _Spec, x: Any, y: Any) -> Any:
    if _is_tensor(y) or np.size(y) != 1:
        if not _is_tensor(x) and not _is_tensor(y):
            return np.power(x, y)
        raise OnnxError(f"{spec.name}: Pow with a computed or non-scalar exponent")
    return A.pow_(x, float(np.asarray(y).reshape(())))


def _run_clip(spec: _Spec, x: Any, lo: Any = None, hi: Any = None) -> Any:
    if spec.opset < 11:
        lo, hi = spec.get("min"), spec.get("max")
    y = x
    if lo is not None:
        lo = float(np.asarray(lo).reshape(()))
        y = F.relu(y - lo) + lo
    if hi is not None:
        hi = float(np.asarray(hi).reshape(()))
        y = hi - F.relu(hi - y)
    return y


def _pad(x: Any, pads: list[tuple[int, int]], value: float) -> Any:
    """x padded with ``value`` by (before, after) cells per axis (negative: cropped), with glassnet ops."""
    for axis, (lo, hi) in enumerate(pads):
        if lo < 0 or hi < 0:
            n = _shape_of(x)[axis]
            x = A.getitem(x, (slice(None),) * axis + (slice(max(-lo, 0), n - max(-hi, 0)),))
            lo, hi = max(lo, 0), max(hi, 0)
        if not lo and not hi:
            continue
        dims = list(_shape_of(x))
        parts: list[Any] = []
        for count in (lo, None, hi):
            if count is None:
                parts.append(x)
            elif count:
                dims[axis] = count
                parts.append(np.full(dims, value, dtype=np.dtype(str(x.dtype))))
        x = A.concatenate(*parts, axis=axis)
    return x


def _run_pad(spec: _Spec, x: Any, pads: Any = None, value: Any = None, axes: Any = None) -> Any:
    mode = spec.get("mode", "constant")
    if mode != "constant":
        raise OnnxError(f"{spec.name}: Pad mode {mode!r} (only 'constant')")
    nd = len(_shape_of(x))
    if spec.opset < 11:
        pads, value = spec.get("pads"), spec.get("value", 0.0)
    p = _ints(pads)
    ax = list(range(nd)) if axes is None else [int(a) % nd for a in _ints(axes)]
    per = [(0, 0)] * nd
    for i, a in enumerate(ax):
        per[a] = (p[i], p[i + len(ax)])
    return _pad(x, per, 0.0 if value is None else float(np.asarray(value).reshape(())))


def _pool_params(spec: _Spec) -> tuple[list[int], list[int], list[int], list[int]]:
    k = [int(v) for v in spec.get("kernel_shape")]
    s = [int(v) for v in spec.get("strides", [1] * len(k))]
    d = [int(v) for v in spec.get("dilations", [1] * len(k))]
    p = [int(v) for v in spec.get("pads", [0] * (2 * len(k)))]
    return k, s, d, p


def _run_pool_padded(spec: _Spec, x: Any) -> Any:
    """Floor-mode pooling whose padding exceeds what glassnet's pools take: pad explicitly, then pool."""
    k, s, d, p = _pool_params(spec)
    per = [(0, 0), (0, 0), (p[0], p[2]), (p[1], p[3])]
    if spec.op_type == "MaxPool":
        return F.max_pool2d(_pad(x, per, -np.inf), tuple(k), tuple(s), 0, tuple(d))
    y = F.avg_pool2d(_pad(x, per, 0.0), tuple(k), tuple(s), 0)
    if spec.get("count_include_pad", 0):
        return y
    h, w = _shape_of(x)[2:]
    mask = _pad(np.ones((1, 1, h, w), dtype=np.dtype(str(x.dtype))), per, 0.0)
    return y / F.avg_pool2d(mask, tuple(k), tuple(s), 0)  # the window's mean over real cells only


def _run_gemm(spec: _Spec, a: Any, b: Any, c: Any = None) -> Any:
    if spec.get("transA", 0):
        a = A.permute(a, (1, 0))
    if spec.get("transB", 0):
        b = A.permute(b, (1, 0))
    y = A.matmul(a, b)
    alpha, beta = float(spec.get("alpha", 1.0)), float(spec.get("beta", 1.0))
    if alpha != 1.0:
        y = y * alpha
    if c is not None:
        y = y + (c * beta if beta != 1.0 else c)
    return y


def _run_conv(spec: _Spec, x: Any, w: Any, b: Any = None) -> Any:
    stride, dilation, pads, groups = _conv_params(spec, _shape_of(w))
    return F.conv2d(x, w, b, stride, pads, dilation, groups)


def _conv_params(spec: _Spec, w_shape: tuple[int, ...]) -> tuple[Any, Any, Any, int]:
    k = list(spec.get("kernel_shape", w_shape[2:]))
    s = tuple(int(v) for v in spec.get("strides", [1, 1]))
    d = tuple(int(v) for v in spec.get("dilations", [1, 1]))
    auto = spec.get("auto_pad", "NOTSET")
    if auto == "VALID":
        pads: Any = 0
    elif auto == "SAME_UPPER":
        pads = "same"
    else:
        p = [int(v) for v in spec.get("pads", [0] * (2 * len(k)))]
        pads = ((p[0], p[2]), (p[1], p[3]))
    return s, d, pads, int(spec.get("group", 1))


def _run_softmax(op: Any) -> Callable[..., Any]:
    def run(spec: _Spec, x: Any) -> Any:
        nd = len(_shape_of(x))
        axis = int(spec.get("axis", -1 if spec.opset >= 13 else 1)) % nd
        if spec.opset < 13 and axis != nd - 1:  # the old definition: softmax over all axes from `axis` on
            dims = _shape_of(x)
            flat = A.reshape(x, (*dims[:axis], -1))
            return A.reshape(op(flat, axis=-1), dims)
        return op(x, axis=axis)

    return run


def _run_flatten(spec: _Spec, x: Any) -> Any:
    dims = _shape_of(x)
    axis = int(spec.get("axis", 1)) % (len(dims) + 1)
    return A.reshape(x, (int(np.prod(dims[:axis], dtype=np.int64)), int(np.prod(dims[axis:], dtype=np.int64))))


def _numpy_only(fn: Callable[..., Any]) -> Callable[..., Any]:
    def run(spec: _Spec, *args: Any) -> Any:
        if any(_is_tensor(a) for a in args):
            raise OnnxError(f"{spec.name}: {spec.op_type} on a tensor that carries gradients")
        return fn(spec, *[None if a is None else np.asarray(a) for a in args])

    return run


def _np_constant_of_shape(spec: _Spec, shape: Any) -> np.ndarray:
    value = np.asarray(spec.attrs["value"]) if "value" in spec.attrs else np.zeros(1, np.float32)
    return np.full(_ints(shape), value.reshape(-1)[0], dtype=value.dtype)


def _np_shape(spec: _Spec, x: Any) -> np.ndarray:
    dims = np.asarray(x.shape, dtype=np.int64)
    return dims[spec.get("start", 0) : spec.get("end", None)]


_RUN: dict[str, Callable[..., Any]] = {
    "Add": _np_binary(lambda a, b: a + b),
    "Sub": _np_binary(lambda a, b: a - b),
    "Mul": _np_binary(lambda a, b: a * b),
    "Div": _np_binary(lambda a, b: a / b, lambda a, b: np.trunc(a / b).astype(np.result_type(a, b))),
    "Pow": _run_pow,
    "Neg": lambda spec, x: -x,
    "Abs": lambda spec, x: A.abs_(x) if _is_tensor(x) else np.abs(x),
    "Sqrt": lambda spec, x: A.pow_(x, 0.5) if _is_tensor(x) else np.sqrt(x),
    "Reciprocal": lambda spec, x: 1.0 / x,
    "MatMul": lambda spec, a, b: A.matmul(a, b),
    "Gemm": _run_gemm,
    "Conv": _run_conv,
    "Relu": lambda spec, x: F.relu(x),
    "Sigmoid": lambda spec, x: F.sigmoid(x),
    "Tanh": lambda spec, x: F.tanh(x),
    "LeakyRelu": lambda spec, x: F.leaky_relu(x, float(spec.get("alpha", 0.01))),
    "Softmax": _run_softmax(F.softmax),
    "LogSoftmax": _run_softmax(F.log_softmax),
    "Clip": _run_clip,
    "MaxPool": _run_pool_padded,
    "AveragePool": _run_pool_padded,
    "GlobalAveragePool": lambda spec, x: A.mean(x, axis=tuple(range(2, len(_shape_of(x)))), keepdims=True),
    "GlobalMaxPool": lambda spec, x: A.max_(x, axis=tuple(range(2, len(_shape_of(x)))), keepdims=True),
    "Flatten": _run_flatten,
    "Reshape": _run_reshape,
    "Transpose": _run_transpose,
    "Concat": _run_concat,
    "Slice": _run_slice,
    "Squeeze": _run_squeeze,
    "Unsqueeze": _run_unsqueeze,
    "Gather": _run_gather,
    "ReduceMean": _run_reduce(A.mean, 18),
    "ReduceSum": _run_reduce(A.sum_, 13),
    "ReduceMax": _run_reduce(A.max_, 18),
    "Cast": _run_cast,
    "Pad": _run_pad,
    "Identity": lambda spec, x: x,
    "Dropout": lambda spec, x, *rest: x,
    # shape arithmetic, on constants and shapes only
    "Shape": lambda spec, x: _np_shape(spec, x),
    "ConstantOfShape": _numpy_only(_np_constant_of_shape),
    "Range": _numpy_only(lambda spec, a, b, c: np.arange(a.reshape(()), b.reshape(()), c.reshape(())).astype(a.dtype)),
    "Equal": _numpy_only(lambda spec, a, b: np.equal(a, b)),
    "Where": _numpy_only(lambda spec, c, a, b: np.where(c, a, b)),
    "Expand": _numpy_only(lambda spec, x, shape: x * np.ones(_ints(shape), dtype=x.dtype)),
    "Floor": _numpy_only(lambda spec, x: np.floor(x)),
    "Ceil": _numpy_only(lambda spec, x: np.ceil(x)),
    "Min": _numpy_only(lambda spec, *xs: np.minimum.reduce(xs)),
    "Max": _numpy_only(lambda spec, *xs: np.maximum.reduce(xs)),
}
"""ONNX operator → how glassnet runs it (glassnet ops on tensors, NumPy on constants)."""


def _const_value(spec: _Spec) -> np.ndarray:
    """The value of a Constant node (or ConstantOfShape's ``value``)."""
    a = spec.attrs
    for key in ("value", "sparse_value"):
        if key in a:
            return np.asarray(a[key])
    if "value_float" in a:
        return np.asarray(a["value_float"], dtype=np.float32)
    if "value_floats" in a:
        return np.asarray(a["value_floats"], dtype=np.float32)
    if "value_int" in a:
        return np.asarray(a["value_int"], dtype=np.int64)
    if "value_ints" in a:
        return np.asarray(a["value_ints"], dtype=np.int64)
    raise OnnxError(f"{spec.name}: Constant with attributes {sorted(a)}")


def _sanitize(name: str, fallback: str) -> str:
    s = re.sub(r"\W+", "_", name).strip("_")
    if not s:
        s = fallback
    if s[0].isdigit():
        s = f"{fallback}_{s}"
    return s


class OnnxOp(Module):
    """One ONNX operator that is not a glassnet layer, run with glassnet ops (``Add``, ``Reshape``, ...).

    Its float initializers of more than one element are its own Parameters (named after
    them, sanitised); scalars, integers, Constant nodes and the initializers that
    glassnet's exporter marks as constants (model metadata ``glassnet.constants``) stay
    constant arrays. Called with the operator's tensor inputs, in order.
    """

    def __init__(self, spec: _Spec, slots: list[tuple[str, Any]]) -> None:
        super().__init__()
        self.spec, self.slots = spec, slots

    @property
    def op_type(self) -> str:
        return self.spec.op_type

    def forward(self, *tensors: Any, runtime: dict[int, Any] | None = None) -> Any:
        args: list[Any] = []
        it = iter(tensors)
        for i, (kind, v) in enumerate(self.slots):
            if kind == "tensor":
                args.append(next(it))
            elif kind == "runtime":
                args.append((runtime or {})[i])
            elif kind == "param":
                args.append(self._parameters[v])
            elif kind == "const":
                args.append(v)
            else:
                args.append(None)
        return _RUN[self.spec.op_type](self.spec, *args)

    def extra_repr(self) -> str:
        shown = {k: v for k, v in self.spec.attrs.items() if not isinstance(v, np.ndarray)}
        return self.spec.op_type + (f", {shown}" if shown else "")


class _Step:
    """One node of the graph in OnnxModule's forward: where its inputs come from and what runs it."""

    __slots__ = ("spec", "inputs", "outputs", "kind", "child", "tensor_slots", "runtime_slots")

    def __init__(self, spec: _Spec, inputs: list[str], outputs: list[str], kind: str, child: str | None) -> None:
        self.spec, self.inputs, self.outputs, self.kind, self.child = spec, inputs, outputs, kind, child
        self.tensor_slots: list[int] = []
        self.runtime_slots: list[int] = []


def _attrs(node: Any, onnx: Any) -> dict[str, Any]:
    out: dict[str, Any] = {}
    for a in node.attribute:
        v = onnx.helper.get_attribute_value(a)
        if isinstance(v, bytes):
            v = v.decode()
        elif isinstance(v, onnx.TensorProto):
            v = onnx.numpy_helper.to_array(v)
        elif isinstance(v, list) and v and isinstance(v[0], bytes):
            v = [s.decode() for s in v]
        out[a.name] = v
    return out


class OnnxModule(Module):
    """An ONNX graph as a glassnet module (forward only: backward comes from autograd).

    ``forward(*inputs)`` runs the ONNX nodes in order. Nodes that are glassnet layers
    (``Conv2d``, ``Linear``, ``BatchNorm2d``, pools, activations, ``Flatten``, ``Dropout``,
    ``LocalResponseNorm``) are children of those types, the others :class:`OnnxOp`
    children, each named after its node (sanitised). ``onnx_names`` maps every parameter
    and buffer (state-dict key) to the ONNX initializer it came from; an initializer that
    several layers read becomes one copy per layer (PyTorch's TorchScript exporter shares
    identical constants between layers). The module starts in eval mode, the mode ONNX
    graphs describe.
    """

    def __init__(self, proto: Any, name: str | None = None) -> None:
        super().__init__()
        onnx = _onnx()
        self.name = name or proto.graph.name or "ONNX model"
        self.opset = next((int(o.version) for o in proto.opset_import if o.domain in ("", "ai.onnx")), 0)
        if not self.opset:
            raise OnnxError("the model imports no default-domain (ai.onnx) opset")
        graph = proto.graph
        init = {t.name: onnx.numpy_helper.to_array(t) for t in graph.initializer}
        self.input_names = [i.name for i in graph.input if i.name not in init]
        self.output_names = [o.name for o in graph.output]
        self.onnx_names: dict[str, str] = {}
        self._ranks = _ranks(proto, onnx)
        self._static: dict[str, Any] = {}  # values known now (constants, folded shape arithmetic)
        self._steps: list[_Step] = []
        kinds: dict[str, str] = dict.fromkeys(self.input_names, "tensor")
        props = {p.key: p.value for p in proto.metadata_props}
        constants = set(json.loads(props.get(CONSTANTS_KEY, "[]")))
        for n, arr in init.items():
            big_float = arr.dtype.kind == "f" and arr.size > 1 and n not in constants
            kinds[n] = "param" if big_float else "static"
            if not big_float:
                self._static[n] = arr
        self._init = init
        alias: dict[str, str] = {}
        problems: dict[str, list[str]] = {}
        used_children: set[str] = set()
        consumers: dict[str, int] = {}
        for node in graph.node:
            for i in node.input:
                consumers[i] = consumers.get(i, 0) + 1
        for o in self.output_names:
            consumers[o] = consumers.get(o, 0) + 1
        for idx, node in enumerate(graph.node):
            spec = _Spec(node.op_type, _attrs(node, onnx), self.opset, node.name or f"{node.op_type}_{idx}")
            inputs = [alias.get(i, i) for i in node.input]
            outputs = list(node.output)
            if node.domain not in ("", "ai.onnx"):
                problems.setdefault(f"{node.domain}.{node.op_type}", []).append(spec.name)
                continue
            in_kinds = [kinds.get(i, "absent") if i else "absent" for i in inputs]
            if node.op_type == "Constant":
                try:
                    self._static[outputs[0]] = _const_value(spec)
                    kinds[outputs[0]] = "static"
                except OnnxError as e:
                    problems.setdefault("Constant", []).append(str(e))
                continue
            if node.op_type == "Identity" or (node.op_type == "Dropout" and in_kinds[0] != "tensor"):
                alias[outputs[0]] = inputs[0]
                kinds[outputs[0]] = in_kinds[0]
                continue
            if node.op_type not in _RUN and node.op_type not in _LAYERS:
                problems.setdefault(node.op_type, []).append(spec.name)
                continue
            extra_outputs = [o for o in outputs[1:] if o and consumers.get(o)]
            if extra_outputs:
                problems.setdefault(f"{node.op_type} (second output used)", []).append(spec.name)
                continue
            if all(k in ("static", "absent") for k in in_kinds):  # fold now
                try:
                    value = _RUN[node.op_type](spec, *[self._static.get(i) if i else None for i in inputs])
                except Exception as e:  # noqa: BLE001 - reported with the other problems
                    problems.setdefault(node.op_type, []).append(f"{spec.name} ({e})")
                    continue
                self._static[outputs[0]] = np.asarray(value)
                kinds[outputs[0]] = "static"
                continue
            if not any(k in ("tensor", "param") for k in in_kinds):  # shape arithmetic, at run time
                self._steps.append(_Step(spec, inputs, outputs[:1], "numpy", None))
                kinds[outputs[0]] = "meta"
                continue
            child_name = self._unique(_sanitize(spec.name, node.op_type.lower()), used_children)
            try:
                step = self._build(spec, inputs, in_kinds, outputs[:1], child_name)
            except _Unsupported as e:
                problems.setdefault(f"{node.op_type} ({e})", []).append(spec.name)
                continue
            self._steps.append(step)
            kinds[outputs[0]] = "tensor"
        self._alias = alias
        missing = [o for o in self.output_names if alias.get(o, o) not in kinds]
        if problems:
            lines = [f"{op}: {', '.join(names[:3])}{' …' if len(names) > 3 else ''}" for op, names in problems.items()]
            raise OnnxError("cannot import the ONNX model; unsupported ops:\n  " + "\n  ".join(lines))
        if missing:
            raise OnnxError(f"cannot import the ONNX model: outputs {missing} are never computed")
        del self._init
        self.eval()

    # -- building ------------------------------------------------------------------------------
    @staticmethod
    def _unique(base: str, used: set[str]) -> str:
        name, k = base, 1
        while name in used:
            k += 1
            name = f"{base}_{k}"
        used.add(name)
        return name

    def _array(self, name: str) -> np.ndarray | None:
        if name in self._static:
            return np.asarray(self._static[name])
        if name in self._init:
            return self._init[name]
        return None

    def _build(self, spec: _Spec, inputs: list[str], in_kinds: list[str], outputs: list[str], child: str) -> _Step:
        layer = _LAYERS.get(spec.op_type)
        if layer is not None and in_kinds[0] == "tensor":
            made = layer(self, spec, inputs, in_kinds)
            if made is not None:
                module, names = made
                setattr(self, child, module)
                for key, onnx_name in names.items():
                    self.onnx_names[f"{child}.{key}"] = onnx_name
                step = _Step(spec, inputs, outputs, "layer", child)
                step.tensor_slots = [0]
                return step
        if spec.op_type not in _RUN:
            raise _Unsupported("in this form")
        slots: list[tuple[str, Any]] = []
        op = OnnxOp(spec, slots)
        step = _Step(spec, inputs, outputs, "op", child)
        used: set[str] = set()
        for i, (name, kind) in enumerate(zip(inputs, in_kinds, strict=True)):
            if kind == "tensor":
                slots.append(("tensor", None))
                step.tensor_slots.append(i)
            elif kind == "meta":
                slots.append(("runtime", None))
                step.runtime_slots.append(i)
            elif kind == "param":
                attr = self._unique(_sanitize(name, "param"), used)
                op.register_parameter(attr, Parameter(self._init[name].copy()))
                self.onnx_names[f"{child}.{attr}"] = name
                slots.append(("param", attr))
            elif kind == "static":
                slots.append(("const", self._static[name]))
            else:
                slots.append(("absent", None))
        setattr(self, child, op)
        return step

    # -- running -------------------------------------------------------------------------------
    def _execute(self, inputs: tuple[Any, ...]) -> dict[str, Any]:
        if len(inputs) != len(self.input_names):
            raise ValueError(f"{self.name} takes {len(self.input_names)} input(s) ({', '.join(self.input_names)}), "
                             f"got {len(inputs)}")  # fmt: skip
        values: dict[str, Any] = dict(self._static)
        values.update(zip(self.input_names, inputs, strict=True))
        for step in self._steps:
            args = [values.get(i) if i else None for i in step.inputs]
            if step.kind == "numpy":
                out = _RUN[step.spec.op_type](step.spec, *args)
            else:
                child = self._modules[step.child]
                tensors = [args[i] for i in step.tensor_slots]
                if step.kind == "layer":
                    out = child(*tensors)
                else:
                    out = child(*tensors, runtime={i: args[i] for i in step.runtime_slots})
            values[step.outputs[0]] = out
        return values

    def forward(self, *inputs: Any) -> Any:
        """Run the graph: one Tensor per graph input → its output (a tuple for several)."""
        values = self._execute(inputs)
        outs = [values[self._alias.get(o, o)] for o in self.output_names]
        return outs[0] if len(outs) == 1 else tuple(outs)

    def extra_repr(self) -> str:
        return f"opset={self.opset}, inputs={self.input_names}, outputs={self.output_names}"


def _ranks(proto: Any, onnx: Any) -> dict[str, int]:
    """Rank of every value whose shape ONNX's shape inference knows."""
    try:
        inferred = onnx.shape_inference.infer_shapes(proto)
    except Exception:  # noqa: BLE001 - ranks are a convenience
        inferred = proto
    out: dict[str, int] = {}
    g = inferred.graph
    for v in (*g.input, *g.value_info, *g.output):
        t = v.type.tensor_type
        if t.HasField("shape"):
            out[v.name] = len(t.shape.dim)
    return out


# -- ONNX operators that become glassnet layers ---------------------------------------------------------
# Each returns (module, {parameter or buffer key: ONNX initializer}) or None (run it as an OnnxOp).


def _available(self: OnnxModule, inputs: list[str], i: int) -> np.ndarray | None:
    if i >= len(inputs) or not inputs[i]:
        return None
    return self._array(inputs[i])


def _set(param: Parameter, value: np.ndarray) -> None:
    param.data = np.ascontiguousarray(value, dtype=param.dtype).reshape(param.shape)


def _layer_conv(self: OnnxModule, spec: _Spec, inputs: list[str], kinds: list[str]) -> Any:
    w = _available(self, inputs, 1)
    b = _available(self, inputs, 2)
    if w is None or w.ndim != 4 or (len(inputs) > 2 and inputs[2] and b is None):
        if w is not None and w.ndim != 4:
            raise _Unsupported(f"{w.ndim - 2}-D convolution")
        return None
    if spec.get("auto_pad", "NOTSET") not in ("NOTSET", "VALID", "SAME_UPPER"):
        raise _Unsupported(f"auto_pad={spec.get('auto_pad')}")
    stride, dilation, pads, groups = _conv_params(spec, w.shape)
    conv = Conv2d(w.shape[1] * groups, w.shape[0], tuple(w.shape[2:]), stride, pads, dilation, groups,
                  bias=b is not None, dtype=w.dtype if w.dtype.kind == "f" else np.float32)  # fmt: skip
    _set(conv.weight, w)
    names = {"weight": inputs[1]}
    if b is not None:
        _set(conv.bias, b)
        names["bias"] = inputs[2]
    return conv, names


def _layer_gemm(self: OnnxModule, spec: _Spec, inputs: list[str], kinds: list[str]) -> Any:
    b = _available(self, inputs, 1)
    c = _available(self, inputs, 2)
    if b is None or b.ndim != 2 or spec.get("transA", 0) or (len(inputs) > 2 and inputs[2] and c is None):
        return None
    weight = b if spec.get("transB", 0) else b.T
    weight = weight * float(spec.get("alpha", 1.0))
    out_f, in_f = weight.shape
    if c is not None and c.size not in (1, out_f) or (c is not None and c.ndim > 1 and c.shape[0] != 1):
        return None
    lin = Linear(in_f, out_f, bias=c is not None, dtype=b.dtype)
    _set(lin.weight, weight)
    names = {"weight": inputs[1]}
    if c is not None:
        _set(lin.bias, np.broadcast_to(c.reshape(-1) * float(spec.get("beta", 1.0)), (out_f,)))
        names["bias"] = inputs[2]
    return lin, names


def _layer_matmul(self: OnnxModule, spec: _Spec, inputs: list[str], kinds: list[str]) -> Any:
    b = _available(self, inputs, 1)
    if b is None or b.ndim != 2 or kinds[1] != "param":
        return None
    lin = Linear(b.shape[0], b.shape[1], bias=False, dtype=b.dtype)
    _set(lin.weight, b.T)
    return lin, {"weight": inputs[1]}


def _layer_batch_norm(self: OnnxModule, spec: _Spec, inputs: list[str], kinds: list[str]) -> Any:
    if spec.get("training_mode", 0):
        raise _Unsupported("training_mode=1")
    arrays = [_available(self, inputs, i) for i in range(1, 5)]
    if any(a is None for a in arrays):
        return None
    scale, bias, mean, var = arrays
    rank = self._ranks.get(inputs[0], 4)
    cls = BatchNorm1d if rank == 2 else BatchNorm2d
    if rank not in (2, 4):
        return None
    bn = cls(scale.shape[0], eps=float(spec.get("epsilon", 1e-5)), momentum=1.0 - float(spec.get("momentum", 0.9)),
             dtype=scale.dtype)  # fmt: skip
    _set(bn.weight, scale)
    _set(bn.bias, bias)
    bn.running_mean = np.array(mean, dtype=bn.running_mean.dtype)
    bn.running_var = np.array(var, dtype=bn.running_var.dtype)
    return bn, dict(zip(("weight", "bias", "running_mean", "running_var"), inputs[1:5], strict=True))


def _layer_pool(self: OnnxModule, spec: _Spec, inputs: list[str], kinds: list[str]) -> Any:
    if spec.get("auto_pad", "NOTSET") not in ("NOTSET", "VALID"):
        raise _Unsupported(f"auto_pad={spec.get('auto_pad')}")
    k, s, d, p = _pool_params(spec)
    if len(k) != 2:
        raise _Unsupported(f"{len(k)}-D pooling")
    span = [dd * (kk - 1) + 1 for kk, dd in zip(k, d, strict=True)]
    fits = max(p[0], p[2]) <= span[0] // 2 and max(p[1], p[3]) <= span[1] // 2
    ceil_mode = bool(spec.get("ceil_mode", 0))
    if not fits:
        if ceil_mode:
            raise _Unsupported("ceil_mode with padding larger than half the window")
        return None  # OnnxOp: explicit padding, then the pool
    pads = ((p[0], p[2]), (p[1], p[3]))
    if spec.op_type == "MaxPool":
        return MaxPool2d(tuple(k), tuple(s), pads, tuple(d), ceil_mode), {}
    if d != [1, 1]:
        raise _Unsupported("dilated average pooling")
    return AvgPool2d(tuple(k), tuple(s), pads, ceil_mode, bool(spec.get("count_include_pad", 0))), {}


def _layer_global_avg(self: OnnxModule, spec: _Spec, inputs: list[str], kinds: list[str]) -> Any:
    return (AdaptiveAvgPool2d(1), {}) if self._ranks.get(inputs[0], 4) == 4 else None


def _layer_clip(self: OnnxModule, spec: _Spec, inputs: list[str], kinds: list[str]) -> Any:
    if spec.opset < 11:
        lo, hi = spec.get("min"), spec.get("max")
    else:
        lo_a, hi_a = _available(self, inputs, 1), _available(self, inputs, 2)
        if (len(inputs) > 1 and inputs[1] and lo_a is None) or (len(inputs) > 2 and inputs[2] and hi_a is None):
            return None
        lo = None if lo_a is None else float(lo_a.reshape(-1)[0])
        hi = None if hi_a is None else float(hi_a.reshape(-1)[0])
    if lo == 0.0 and hi == 6.0:
        return ReLU6(), {}
    if lo == 0.0 and hi is None:
        return ReLU(), {}
    return None


def _layer_softmax(cls: type) -> Callable[..., Any]:
    def make(self: OnnxModule, spec: _Spec, inputs: list[str], kinds: list[str]) -> Any:
        rank = self._ranks.get(inputs[0])
        axis = int(spec.get("axis", -1 if spec.opset >= 13 else 1))
        if rank is None or (spec.opset < 13 and axis % rank != rank - 1):
            return None
        return cls(axis % rank), {}

    return make


def _layer_lrn(self: OnnxModule, spec: _Spec, inputs: list[str], kinds: list[str]) -> Any:
    size = int(spec.get("size"))
    if size % 2 == 0:
        raise _Unsupported("even size (ONNX centres even windows differently from glassnet)")
    return LocalResponseNorm(size, float(spec.get("alpha", 1e-4)), float(spec.get("beta", 0.75)),
                             float(spec.get("bias", 1.0))), {}  # fmt: skip


def _layer_dropout(self: OnnxModule, spec: _Spec, inputs: list[str], kinds: list[str]) -> Any:
    ratio = _available(self, inputs, 1)
    p = float(spec.get("ratio", 0.5)) if spec.opset < 12 else (0.5 if ratio is None else float(ratio.reshape(())))
    return Dropout(min(max(p, 0.0), 0.999)), {}


def _layer_flatten(self: OnnxModule, spec: _Spec, inputs: list[str], kinds: list[str]) -> Any:
    return (Flatten(1), {}) if int(spec.get("axis", 1)) == 1 else None


_LAYERS: dict[str, Callable[..., Any]] = {
    "Conv": _layer_conv,
    "Gemm": _layer_gemm,
    "MatMul": _layer_matmul,
    "BatchNormalization": _layer_batch_norm,
    "MaxPool": _layer_pool,
    "AveragePool": _layer_pool,
    "GlobalAveragePool": _layer_global_avg,
    "Relu": lambda self, spec, inputs, kinds: (ReLU(), {}),
    "Sigmoid": lambda self, spec, inputs, kinds: (Sigmoid(), {}),
    "Tanh": lambda self, spec, inputs, kinds: (Tanh(), {}),
    "LeakyRelu": lambda self, spec, inputs, kinds: (LeakyReLU(float(spec.get("alpha", 0.01))), {}),
    "Clip": _layer_clip,
    "Softmax": _layer_softmax(Softmax),
    "LogSoftmax": _layer_softmax(LogSoftmax),
    "LRN": _layer_lrn,
    "Dropout": _layer_dropout,
    "Flatten": _layer_flatten,
}
"""ONNX operators that become glassnet layers when their weights are initializers."""


def import_onnx(source: str | os.PathLike[str] | Any, name: str | None = None) -> OnnxModule:
    """Read an ONNX model (a path or an ``onnx.ModelProto``) into an :class:`OnnxModule`.

    Weights kept in an external data file (``MODEL.onnx.data``, as PyTorch's dynamo
    exporter writes them) are read from the model's folder. Unsupported operators raise
    :class:`OnnxError` listing all of them.
    """
    onnx = _onnx()
    if isinstance(source, str | os.PathLike):
        path = Path(source)
        if not path.is_file():
            raise FileNotFoundError(f"no ONNX file at {path}")
        try:
            proto = onnx.load(os.fspath(path), load_external_data=True)
        except Exception as e:  # a corrupt file or a missing external-data file
            raise OnnxError(f"cannot read {path}: {e}") from None
        name = name or path.stem
    else:
        proto = source
    return OnnxModule(proto, name)
