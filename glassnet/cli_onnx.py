"""The ONNX commands of the ``glassnet`` command line: ``export`` and ``import-onnx``.

``glassnet export CKPT OUT.onnx`` (or ``glassnet export MODEL OUT.onnx``, or ``glassnet export
--model NAME [--pretrained] OUT.onnx``) writes a checkpoint or a zoo model as ONNX;
``glassnet import-onnx MODEL.onnx [OUT.safetensors]`` reads an ONNX file into glassnet and
prints its layer table (and saves its weights). Both need the optional extra
``glassnet[onnx]``. User errors raise exceptions that the command group prints as one
``error:`` line with exit status 2.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import click


def _parse_shape(text: str | None) -> tuple[int, int, int] | None:
    if text is None:
        return None
    try:
        shape = tuple(int(v) for v in text.replace("x", ",").split(","))
    except ValueError:
        raise click.BadParameter(f"expected C,H,W such as 3,32,32, got {text!r}") from None
    if len(shape) != 3 or min(shape) < 1:
        raise click.BadParameter(f"expected three positive sizes C,H,W, got {text!r}")
    return shape  # type: ignore[return-value]


def _need_onnx() -> None:
    from .cli import UserError
    from .interop.onnx import INSTALL_HINT, onnx_available

    if not onnx_available():
        raise UserError(INSTALL_HINT)


def _load_source(source: str | None, model_name: str | None, pretrained: bool) -> tuple[Any, tuple[int, ...] | None]:
    """(model, its recorded input shape or None) from a checkpoint path or a zoo model name."""
    from .models import default_input_shape, get_model

    if model_name is None and source is not None and Path(source).is_file():
        if pretrained:
            raise ValueError("--pretrained goes with a zoo model name (--model NAME), not with a checkpoint")
        from .checkpoint import load_checkpoint

        ckpt = load_checkpoint(source)
        shape = ckpt.meta.input_shape
        return ckpt.build_model(), tuple(int(d) for d in shape) if shape else None
    name = model_name or source
    if name is None:
        raise ValueError("give a checkpoint or a zoo model: glassnet export CKPT OUT.onnx, or --model NAME OUT.onnx")
    if name.endswith((".safetensors", ".ckpt")):
        raise FileNotFoundError(f"no checkpoint at {name}")
    model = get_model(name, pretrained=pretrained)
    return model, default_input_shape(name)


@click.command("export")
@click.argument("paths", nargs=-1, required=True, metavar="[CKPT_OR_MODEL] OUT.onnx")
@click.option("--model", "model_name", default=None, help="Zoo model to export instead of a checkpoint.")
@click.option("--pretrained", is_flag=True, help="With --model: load the shipped ImageNet weights.")
@click.option("--input-shape", default=None, help="C,H,W (default: the checkpoint's or the model's usual input).")
@click.option("--opset", type=click.IntRange(13, 21), default=17, show_default=True, help="ONNX opset.")
@click.option("--fixed-batch", is_flag=True, help="Batch size fixed at 1 (default: any batch size).")
def export_command(
    paths: tuple[str, ...], model_name: str | None, pretrained: bool, input_shape: str | None, opset: int,
    fixed_batch: bool,
) -> None:  # fmt: skip
    """Write a checkpoint or a zoo model as an ONNX file (checked with onnx.checker)."""
    if len(paths) != (1 if model_name else 2):
        raise click.UsageError(
            "expected CKPT_OR_MODEL OUT.onnx, or --model NAME OUT.onnx; got " + " ".join(paths)
            if paths
            else "missing OUT.onnx"
        )
    out = Path(paths[-1])
    if out.suffix != ".onnx":
        raise ValueError(f"the output file should end in .onnx, got {out}")
    _need_onnx()
    from .interop.onnx import export_onnx

    model, recorded = _load_source(None if model_name else paths[0], model_name, pretrained)
    shape = _parse_shape(input_shape) or recorded
    if not shape:
        raise ValueError("the checkpoint does not record its input shape: give --input-shape C,H,W")
    if not out.parent.is_dir():
        raise FileNotFoundError(f"no folder {out.parent} to write {out.name} into")
    proto = export_onnx(model, shape, out, opset=opset, dynamic_batch=not fixed_batch)
    params = sum(int(p.size) for p in model.parameters())
    batch = "1" if fixed_batch else "N"
    click.echo(f"wrote {out}: {len(proto.graph.node)} ONNX nodes, {params:,} parameters, opset {opset} "
               f"(IR {proto.ir_version}), input {batch}×{'×'.join(map(str, shape))}")  # fmt: skip


@click.command("import-onnx")
@click.argument("model_path", metavar="MODEL.onnx", type=click.Path(exists=True, dir_okay=False))
@click.argument("out", metavar="[OUT.safetensors]", required=False)
@click.option("--input-shape", default=None, help="C,H,W for the layer table (default: the graph's input).")
def import_command(model_path: str, out: str | None, input_shape: str | None) -> None:
    """Read an ONNX model into glassnet, print its layer table, optionally save its weights."""
    _need_onnx()
    from .inspect import summary
    from .interop.onnx import import_onnx

    model = import_onnx(model_path)
    shape = _parse_shape(input_shape) or _graph_input_shape(model_path)
    if shape is None:
        raise ValueError("the graph's input has no fixed C,H,W: give --input-shape C,H,W")
    click.echo(str(summary(model, shape)))
    if out is not None:
        import json

        from safetensors.numpy import save_file

        if not out.endswith(".safetensors"):
            raise ValueError(f"the weights file should end in .safetensors, got {out}")
        state = {k: v for k, v in model.state_dict().items()}
        save_file(state, out, metadata={"format": "glassnet-onnx-import", "onnx_names": json.dumps(model.onnx_names)})
        click.echo(f"wrote {out}: {len(state)} arrays (ONNX initializer names in the metadata)")


def _graph_input_shape(path: str) -> tuple[int, ...] | None:
    import onnx

    graph = onnx.load(path, load_external_data=False).graph
    inits = {t.name for t in graph.initializer}
    first = next(i for i in graph.input if i.name not in inits)
    dims = [d.dim_value if d.HasField("dim_value") else 0 for d in first.type.tensor_type.shape.dim]
    return tuple(dims[1:]) if len(dims) >= 2 and all(dims[1:]) else None


def register_onnx_commands(group: click.Group) -> None:
    """Add ``export`` and ``import-onnx`` to the ``glassnet`` command group."""
    group.add_command(export_command)
    group.add_command(import_command)
