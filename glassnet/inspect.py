"""Looking at a network without running it: output sizes, the summary table,
receptive fields.

:func:`summary` and :func:`receptive_field` are views of :func:`glassnet.trace`, the
shape-only run of the model's own ``forward``: nothing here knows how any layer or
block is wired."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from .autograd.graph import Graph, trace
from .functional._args import window_out

Shape = tuple[int, ...]


def output_size(
    n: int,
    kernel: int,
    stride: int = 1,
    padding: int = 0,
    dilation: int = 1,
    ceil_mode: bool = False,
) -> int:
    """Positions a window takes along one axis: the lectures' (W − F + 2P)/S + 1.

    Precisely ``floor((n + 2P − d·(F−1) − 1) / S) + 1`` (the incomplete last window is
    dropped, the frameworks' convention); with ``ceil_mode`` a partial last window is
    kept unless it would start inside the padding. Examples: 7, 3 → 5; 7, 3, S=2 → 3;
    7, 3, P=1 → 7; 227, 11, S=4 → 55.

    Raises ``ValueError`` naming the values when the window does not fit.
    """
    for name, v, lo in (
        ("n", n, 1),
        ("kernel", kernel, 1),
        ("stride", stride, 1),
        ("padding", padding, 0),
        ("dilation", dilation, 1),
    ):
        if not isinstance(v, int) or isinstance(v, bool) or v < lo:
            raise ValueError(f"output_size: {name} must be an int >= {lo}, got {v!r}")
    out = window_out(n, kernel, stride, padding, padding, dilation, ceil_mode)
    if out < 1:
        span = dilation * (kernel - 1) + 1
        raise ValueError(
            f"output_size: a window of {span} (kernel {kernel}, dilation {dilation}) does not fit in "
            f"{n} + 2·{padding} = {n + 2 * padding} (input {n}, padding {padding})"
        )
    return out


@dataclass
class SummaryRow:
    """One row of :func:`summary`: a layer call, or an op a composite module applies itself
    (``"layer1.0 (add)"``). ``rf``/``jump``: receptive field size and jump of its output, per axis."""

    name: str
    kind: str
    output_shape: Shape
    params: int
    trainable: int
    macs: int
    rf: tuple[int, int]
    jump: tuple[int, int]


def _fmt_int(v: int) -> str:
    return f"{v:,}"


@dataclass
class Summary:
    """The summary table of a model for one input shape. Printing it shows the table."""

    model_name: str
    input_shape: Shape
    rows: list[SummaryRow] = field(default_factory=list)
    output_shape: Shape = ()

    @property
    def total_params(self) -> int:
        return sum(r.params for r in self.rows)

    @property
    def trainable_params(self) -> int:
        return sum(r.trainable for r in self.rows)

    @property
    def total_macs(self) -> int:
        return sum(r.macs for r in self.rows)

    def table(self) -> list[list[str]]:
        """Header plus one list of cells per row."""
        out = [["layer", "type", "output shape", "params", "MACs", "RF", "jump"]]
        for r in self.rows:
            rf = f"{r.rf[0]}×{r.rf[1]}"
            jump = f"{r.jump[0]}" if r.jump[0] == r.jump[1] else f"{r.jump[0]}×{r.jump[1]}"
            out.append(
                [
                    r.name,
                    r.kind,
                    "×".join(str(d) for d in r.output_shape[1:]),
                    _fmt_int(r.params),
                    _fmt_int(r.macs),
                    rf,
                    jump,
                ]
            )
        return out

    def __str__(self) -> str:
        cells = self.table()
        widths = [max(len(row[i]) for row in cells) for i in range(len(cells[0]))]
        right = {3, 4}

        def line(row: list[str]) -> str:
            cells = zip(row, widths, strict=True)
            return "  ".join(c.rjust(w) if i in right else c.ljust(w) for i, (c, w) in enumerate(cells)).rstrip()

        rule = "-" * (sum(widths) + 2 * (len(widths) - 1))
        parts = [
            f"{self.model_name}  input {'×'.join(str(d) for d in self.input_shape[1:])}",
            rule,
            line(cells[0]),
            rule,
        ]
        parts += [line(r) for r in cells[1:]]
        frozen = self.total_params - self.trainable_params
        parts += [
            rule,
            f"total parameters:     {_fmt_int(self.total_params)}",
            f"trainable parameters: {_fmt_int(self.trainable_params)}"
            + (f"  (frozen: {_fmt_int(frozen)})" if frozen else ""),
            f"multiply-accumulates: {_fmt_int(self.total_macs)} per image",
        ]
        return "\n".join(parts)

    __repr__ = __str__

    def _repr_html_(self) -> str:
        """Jupyter: the layer table as an HTML table, with the totals below it."""
        from html import escape

        cells = self.table()
        right = {3, 4}

        def row(r: list[str], tag: str) -> str:
            return "<tr>" + "".join(
                f"<{tag} style='text-align:{'right' if i in right else 'left'}'>{escape(c)}</{tag}>"
                for i, c in enumerate(r)
            ) + "</tr>"  # fmt: skip

        frozen = self.total_params - self.trainable_params
        totals = (
            f"total parameters: {_fmt_int(self.total_params)} · trainable: {_fmt_int(self.trainable_params)}"
            + (f" (frozen: {_fmt_int(frozen)})" if frozen else "")
            + f" · multiply-accumulates: {_fmt_int(self.total_macs)} per image"
        )
        title = f"{self.model_name}  input {'×'.join(str(d) for d in self.input_shape[1:])}"
        return (
            f"<div><p><b>{escape(title)}</b></p><table><thead>{row(cells[0], 'th')}</thead><tbody>"
            + "".join(row(r, "td") for r in cells[1:])
            + f"</tbody></table><p>{escape(totals)}</p></div>"
        )


_LABELS = {"concatenate": ("concat", "Concat"), "getitem": ("slice", "Slice"), "relu": ("relu", "ReLU")}


def _label(op: str) -> tuple[str, str]:
    """(row label, kind) of an op applied directly in a composite module: add → ("add", "Add")."""
    return _LABELS.get(op, (op, "".join(part.capitalize() for part in op.split("_"))))


def rows_of(graph: Graph) -> list[SummaryRow]:
    """The summary rows of a trace, in execution order: one per call of a leaf module (its
    own parameters counted at its first call), one per op a composite module applies itself."""
    counted: set[int] = set()
    rows: list[SummaryRow] = []

    def count(params: list[Any]) -> tuple[int, int]:
        new = [p for p in params if id(p) not in counted]
        counted.update(id(p) for p in new)
        return sum(p.size for p in new), sum(p.size for p in new if p.requires_grad)

    owned = {i for c in graph.calls if c.leaf for i in c.nodes}
    loose = [n for n in graph.nodes if n.index not in owned]  # ops that composite modules apply themselves
    k = 0
    for call in graph.calls:
        while k < len(loose) and loose[k].index < call.end:
            rows.append(_op_row(loose[k], count([graph.parameters[p] for p in loose[k].params])))
            k += 1
        if call.leaf:
            params, trainable = count([p for p in call.module._parameters.values() if p is not None])
            macs = sum(graph.nodes[i].macs or 0 for i in call.nodes)
            name = call.name or call.kind
            rows.append(
                SummaryRow(name, call.kind, call.output_shape, params, trainable, macs, call.rf.size, call.rf.jump)
            )
    for n in loose[k:]:
        rows.append(_op_row(n, count([graph.parameters[p] for p in n.params])))
    return rows


def _op_row(n: Any, params: tuple[int, int]) -> SummaryRow:
    label, kind = _label(n.op)
    name = f"{n.module} ({label})" if n.module else f"({label})"
    return SummaryRow(name, kind, n.output_shape, params[0], params[1], n.macs or 0, n.rf.size, n.rf.jump)


def summary(model: Any, input_shape: Any) -> Summary:
    """The layer table of ``model`` for inputs of ``input_shape``, computed without data.

    ``input_shape`` is [C, H, W] or [N, C, H, W] (N is taken as 1 for the MAC
    counts, which are per image). Each row: layer name (``features.0``), type, output
    shape, parameters, multiply-accumulates, receptive field size (input pixels one
    unit sees) and jump (input pixels between neighbouring units). Ops that a composite
    module applies itself get rows named after it: ``layer1.0 (add)``. The returned
    object exposes ``rows``, ``total_params``, ``trainable_params``, ``total_macs``.
    """
    shape = tuple(int(d) for d in input_shape)
    if len(shape) == 3:
        shape = (1, *shape)
    if len(shape) not in (2, 4):
        raise ValueError(f"summary: input_shape must be [C, H, W] or [N, C, H, W], got {tuple(input_shape)}")
    shape = (1, *shape[1:])
    graph = trace(model, shape, batched=True)
    rows = rows_of(graph)
    return Summary(getattr(model, "name", None) or type(model).__name__, shape, rows, graph.output_shape)


def receptive_field(model: Any, input_shape: Any) -> tuple[tuple[int, int], tuple[int, int]]:
    """((size_h, size_w), (jump_h, jump_w)) of the model's output units.

    r ← r + d·(k−1)·jump and jump ← jump·s, layer by layer (e.g. 3×3/s2 then 3×3/s1
    sees 7×7 input pixels; two 3×3/s1 see 5×5).
    """
    s = summary(model, input_shape)
    last = s.rows[-1]
    return last.rf, last.jump
