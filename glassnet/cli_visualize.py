"""``glassnet visualize``: feature visualisations and attribution maps as PNG files.

    glassnet visualize features  CKPT_OR_MODEL [--layer NAME] [--channel K ...] -o grid.png
    glassnet visualize saliency  CKPT_OR_MODEL [IMAGE] [--target CLASS] [--method gradient|smoothgrad|guided]
    glassnet visualize gradcam   CKPT_OR_MODEL [IMAGE] [--layer NAME] [--target CLASS]
    glassnet visualize occlusion CKPT_OR_MODEL [IMAGE] [--window 32] [--stride 16] [--target CLASS]

CKPT_OR_MODEL is a glassnet checkpoint (``.safetensors``) or a zoo model name (random
weights, or ImageNet weights with ``--pretrained``). IMAGE defaults to the bundled photo
``chelsea.png``. The computations are :mod:`glassnet.visualize`; this module loads the model
and the image, and draws. Registered on the ``glassnet`` group by :mod:`glassnet.cli`.
"""

from __future__ import annotations

import io
import sys
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import click

from .cli import _fail, _Group

SAMPLE_IMAGE = Path(__file__).resolve().parent / "explorer" / "static" / "samples" / "chelsea.png"


@dataclass
class Loaded:
    """A model ready to look at, and what is known about its input."""

    model: Any
    name: str
    input_shape: tuple[int, int, int]
    classes: list[str] = field(default_factory=list)
    normalization: dict[str, Any] | None = None
    preprocessing: Any = None  # the ImagePreprocessing of image files (a pretrained model's, a folder run's)

    def class_name(self, i: int) -> str:
        return self.classes[i] if 0 <= i < len(self.classes) else f"class {i}"


def load_model(source: str, pretrained: bool, seed: int) -> Loaded:
    """A checkpoint file, or a zoo model by name (random weights from ``seed``, or ``pretrained``)."""
    from .models import default_input_shape, get_model

    if source.endswith(".safetensors") or Path(source).is_file():
        from .checkpoint import load_checkpoint

        if pretrained:
            _fail("--pretrained applies to zoo model names, not to a checkpoint (its weights are the checkpoint's)")
        ckpt = load_checkpoint(source)
        model = ckpt.build_model()
        shape = ckpt.meta.input_shape
        if not shape and ckpt.architecture:
            shape = default_input_shape(ckpt.architecture)
        if not shape:
            _fail(f"{source}: the checkpoint records no input shape")
        return Loaded(model, Path(source).name, tuple(shape), ckpt.classes, ckpt.meta.normalization,
                      ckpt.meta.image_preprocessing())  # fmt: skip
    if pretrained:
        from .models.pretrained import PretrainedError, checkpoint_metadata

        try:
            model = get_model(source, pretrained=True)
        except PretrainedError as e:
            _fail(str(e))
        from .data import ImagePreprocessing

        key = source.lower().replace("-", "_")
        meta = checkpoint_metadata(key)
        return Loaded(model, source, tuple(meta["input_shape"]), meta["classes"], meta["normalization"],
                      ImagePreprocessing.for_pretrained(key))  # fmt: skip
    model = get_model(source, rng=seed)
    return Loaded(model, source, default_input_shape(source))


def load_input(loaded: Loaded, image: str | None, size: int | None) -> tuple[Any, Any]:
    """``(x, pixels)``: the model input [C, H, W] and the same image in [0, 1] before normalisation."""
    import numpy as np

    from .data import load_image

    path = image or str(SAMPLE_IMAGE)
    c, h, w = loaded.input_shape
    if size is not None:
        h = w = size
    try:
        prep = loaded.preprocessing
        if prep is not None and size is None:  # the model's own resize and crop (pretrained, folder runs)
            pixels = prep.load(path).astype(np.float32)
        else:
            pixels = load_image(path, (h, w), "L" if c == 1 else "RGB").astype(np.float32)
    except (OSError, ValueError) as e:
        _fail(f"cannot read image {path}: {e}")
    pixels = pixels / 255.0
    x = pixels
    norm = loaded.normalization
    if norm:
        mean = np.asarray(norm["mean"], np.float32).reshape(-1, 1, 1)
        std = np.asarray(norm["std"], np.float32).reshape(-1, 1, 1)
        x = (pixels - mean) / std
    return np.ascontiguousarray(x, dtype=np.float32), pixels


def parse_target(loaded: Loaded, target: str | None) -> int | None:
    """A class index from ``--target``: a number, or a class name (case ignored)."""
    if target is None:
        return None
    text = target.strip()
    if text.lstrip("-").isdigit():
        return int(text)
    lowered = [c.lower() for c in loaded.classes]
    if text.lower() in lowered:
        return lowered.index(text.lower())
    hint = "" if loaded.classes else " (this model has no class names: give a number)"
    _fail(f"unknown target {target!r}: expected a class index or one of the model's class names{hint}")
    return None


def progress_bar(total: int, desc: str, quiet: bool) -> tuple[Any, Callable[[int, int], None]]:
    """A tqdm bar on stderr and the ``progress(done, total)`` callback that moves it."""
    from tqdm import tqdm

    bar = tqdm(total=total, desc=desc, disable=quiet, file=sys.stderr, leave=False)

    def update(done: int, _total: int) -> None:
        bar.update(done - bar.n)

    return bar, update


def write_figure(fig: Any, output: str) -> None:
    from .checkpoint import atomic_write_bytes

    buf = io.BytesIO()
    fig.savefig(buf, format="png", dpi=100)
    atomic_write_bytes(output, buf.getvalue())


def to_hwc(pixels: Any) -> Any:
    """[C, H, W] in [0, 1] → [H, W] or [H, W, 3] for imshow."""
    import numpy as np

    img = np.clip(np.asarray(pixels, dtype=np.float64), 0, 1)
    return img[0] if img.shape[0] == 1 else img[:3].transpose(1, 2, 0)


def attribution_figure(pixels: Any, amap: Any, title: str, what: str, signed: bool = False, rgb: Any = None) -> Any:
    """Three panels: the input, the map, and the map over the input."""
    import numpy as np
    from matplotlib.figure import Figure

    fig = Figure(figsize=(12, 4.4))
    axes = fig.subplots(1, 3)
    img = to_hwc(pixels)
    grey = img if img.ndim == 2 else img.mean(axis=2)
    cmap, vmin = ("RdBu_r", None) if signed else ("jet", 0.0)
    vmax = float(np.percentile(np.abs(amap), 99.5)) or 1.0
    vmin = -vmax if signed else vmin
    axes[0].imshow(img, cmap="gray" if img.ndim == 2 else None, vmin=0, vmax=1)
    axes[0].set_title("input")
    if rgb is not None:
        axes[1].imshow(rgb)
    else:
        im = axes[1].imshow(amap, cmap=cmap, vmin=vmin, vmax=vmax)
        fig.colorbar(im, ax=axes[1], fraction=0.046, pad=0.04)
    axes[1].set_title(what)
    axes[2].imshow(grey, cmap="gray", vmin=0, vmax=1)
    axes[2].imshow(amap, cmap=cmap, vmin=vmin, vmax=vmax, alpha=0.5)
    axes[2].set_title("overlay")
    for ax in axes:
        ax.set_axis_off()
    fig.suptitle(title)
    fig.tight_layout()
    return fig


# ---------------------------------------------------------------------------------------- commands
@click.group(cls=_Group)
def visualize() -> None:
    """See what a network learned: feature visualisations and attribution maps, written as PNGs."""


def _common(fn: Callable[..., Any]) -> Callable[..., Any]:
    fn = click.option("--quiet", is_flag=True, help="No progress bar.")(fn)
    fn = click.option("--seed", type=int, default=0, show_default=True, help="Random weights and noise.")(fn)
    fn = click.option(
        "--size", type=click.IntRange(8), default=None, help="Input side in pixels (default: the model's input)."
    )(fn)
    fn = click.option("-o", "--output", type=click.Path(dir_okay=False), default=None, help="Output PNG.")(fn)
    fn = click.option("--pretrained", is_flag=True, help="ImageNet weights (EfficientNet-Lite0/1/2).")(fn)
    return click.argument("source", metavar="CKPT_OR_MODEL")(fn)


def _image_arg(fn: Callable[..., Any]) -> Callable[..., Any]:
    fn = click.option("--target", default=None, help="Class index or name (default: the predicted class).")(fn)
    return click.argument("image", required=False, type=click.Path(exists=True, dir_okay=False))(fn)


def _prepare(
    source: str, image: str | None, pretrained: bool, seed: int, size: int | None, target: str | None
) -> tuple[Loaded, Any, Any, int | None, Any]:
    import numpy as np

    from .autograd import no_grad
    from .functional import softmax
    from .visualize import inspection_mode

    loaded = load_model(source, pretrained, seed)
    x, pixels = load_input(loaded, image, size)
    t = parse_target(loaded, target)
    with inspection_mode(loaded.model), no_grad():
        out = loaded.model(x[None])
    probs = softmax(out.data, axis=1)[0] if getattr(out, "ndim", 0) == 2 else None
    if probs is not None and t is not None and not 0 <= t < len(probs):
        _fail(f"target {t} is out of range: the model has {len(probs)} classes (0..{len(probs) - 1})")
    if probs is not None and t is None:
        t = int(np.argmax(probs))
    return loaded, x, pixels, t, probs


def _title(what: str, loaded: Loaded, t: int | None, probs: Any) -> str:
    p = "" if probs is None or t is None else f", p = {float(probs[t]):.3f}"
    return f"{what} · {loaded.name} · target {t} ({loaded.class_name(t or 0)}{p})"


def _default_output(kind: str, source: str, image: str | None) -> str:
    stem = Path(image).stem if image else Path(source).stem
    return f"{stem}-{kind}.png"


@visualize.command("saliency")
@_common
@_image_arg
@click.option("--method", type=click.Choice(["gradient", "smoothgrad", "guided"]), default="gradient",
              show_default=True, help="Plain gradient, SmoothGrad, or guided backpropagation.")  # fmt: skip
@click.option("--samples", type=click.IntRange(1), default=25, show_default=True, help="SmoothGrad's noisy copies.")
@click.option("--sigma", type=click.FloatRange(0), default=None, help="SmoothGrad's noise (default 15% of the range).")
def saliency_cmd(source: str, image: str | None, target: str | None, pretrained: bool, output: str | None,
                 size: int | None, seed: int, quiet: bool, method: str, samples: int,
                 sigma: float | None) -> None:  # fmt: skip
    """Gradient of the target class score with respect to the input pixels."""
    import numpy as np

    from . import visualize as V

    loaded, x, pixels, t, probs = _prepare(source, image, pretrained, seed, size, target)
    if method == "smoothgrad":
        bar, update = progress_bar(samples, "smoothgrad", quiet)
        with bar:
            grad = V.smoothgrad(loaded.model, x, t, n=samples, sigma=sigma, rng=seed, progress=update)
    elif method == "guided":
        grad = V.guided_backprop(loaded.model, x, t)
    else:
        grad = V.saliency(loaded.model, x, t)
    amap = np.abs(grad).max(axis=0)
    rgb = None
    if method == "guided" and grad.shape[0] == 3:  # guided backprop is shown as an image, as in the paper
        rgb = np.clip(0.5 + 0.5 * grad.transpose(1, 2, 0) / (np.abs(grad).max() or 1.0), 0, 1)
    dest = output or _default_output(f"saliency-{method}", source, image)
    what = "max |∂z/∂x| over channels" if rgb is None else "guided gradient"
    write_figure(
        attribution_figure(pixels, amap, _title(f"saliency ({method})", loaded, t, probs), what, rgb=rgb), dest
    )
    click.echo(f"wrote {dest}")


def _last_map_layer(model: Any, x: Any) -> str:
    """The layer whose output is the last spatial map [N, C, h, w] (h·w > 1) to finish in a forward pass."""
    from .autograd import no_grad
    from .visualize import inspection_mode

    finished: list[str] = []
    handles = []
    for name, m in model.named_modules():
        if name:
            handles.append(m.register_forward_hook(
                lambda mod, inp, out, name=name: finished.append(name)
                if getattr(out, "ndim", 0) == 4 and out.shape[2] * out.shape[3] > 1 else None))  # fmt: skip
    try:
        with inspection_mode(model), no_grad():
            model(x[None])
    finally:
        for h in handles:
            h.remove()
    if not finished:
        _fail("the model has no layer with a spatial output [N, C, h, w]; nothing for Grad-CAM to show")
    return finished[-1]


@visualize.command("gradcam")
@_common
@_image_arg
@click.option("--layer", default=None, help="Dotted layer name (default: the last layer with a spatial map).")
def gradcam_cmd(source: str, image: str | None, target: str | None, pretrained: bool, output: str | None,
                size: int | None, seed: int, quiet: bool, layer: str | None) -> None:  # fmt: skip
    """Grad-CAM: where the target class's evidence is, at a layer's resolution, over the image."""
    from . import visualize as V

    loaded, x, pixels, t, probs = _prepare(source, image, pretrained, seed, size, target)
    layer = layer if layer is not None else _last_map_layer(loaded.model, x)
    cam = V.grad_cam(loaded.model, x, t, layer)
    up = V.upsample(cam, x.shape[1:])
    dest = output or _default_output("gradcam", source, image)
    what = f"Grad-CAM at {layer} ({cam.shape[0]}×{cam.shape[1]})"
    write_figure(attribution_figure(pixels, up, _title("Grad-CAM", loaded, t, probs), what), dest)
    click.echo(f"wrote {dest} (layer {layer})")


@visualize.command("occlusion")
@_common
@_image_arg
@click.option("--window", type=click.IntRange(1), default=None, help="Window side (default: input side / 7).")
@click.option("--stride", type=click.IntRange(1), default=None, help="Window step (default: window / 2).")
@click.option("--baseline", type=float, default=0.0, show_default=True, help="Value of the occluded pixels.")
@click.option("--batch-size", type=click.IntRange(1), default=32, show_default=True)
def occlusion_cmd(source: str, image: str | None, target: str | None, pretrained: bool, output: str | None,
                  size: int | None, seed: int, quiet: bool, window: int | None, stride: int | None, baseline: float,
                  batch_size: int) -> None:  # fmt: skip
    """Occlusion: the drop of the target probability when each window of the image is hidden."""
    import numpy as np

    from . import visualize as V

    loaded, x, pixels, t, probs = _prepare(source, image, pretrained, seed, size, target)
    h, w = x.shape[1:]
    k = window or max(1, min(h, w) // 7)
    s = stride or max(1, k // 2)
    if k > min(h, w):
        _fail(f"--window {k} is larger than the input ({h}×{w})")
    rows, cols = (h - k) // s + 1, (w - k) // s + 1
    bar, update = progress_bar(rows * cols, "occlusion", quiet)
    with bar:
        drop = V.occlusion(loaded.model, x, t, window=k, stride=s, baseline=baseline, batch_size=batch_size,
                           progress=update)  # fmt: skip
    total, count = np.zeros((h, w)), np.zeros((h, w))  # each pixel: the mean drop of the windows over it
    for i in range(rows):
        for j in range(cols):
            total[i * s : i * s + k, j * s : j * s + k] += drop[i, j]
            count[i * s : i * s + k, j * s : j * s + k] += 1
    amap = np.where(count > 0, total / np.maximum(count, 1), 0.0)
    dest = output or _default_output("occlusion", source, image)
    what = f"probability drop ({k}×{k} windows, stride {s})"
    write_figure(attribution_figure(pixels, amap, _title("occlusion", loaded, t, probs), what, signed=True), dest)
    click.echo(f"wrote {dest}")


def _first_conv(model: Any) -> str:
    from .nn import Conv2d

    for name, m in model.named_modules():
        if isinstance(m, Conv2d):
            return name
    _fail("the model has no Conv2d layer; give --layer")
    return ""


def _layer_width(model: Any, layer: str, shape: tuple[int, int, int]) -> int:
    """How many channels ``layer`` outputs, from one forward pass that stops at it."""
    import numpy as np

    from .autograd import no_grad
    from .visualize import inspection_mode
    from .visualize._common import LayerProbe

    with inspection_mode(model), no_grad(), LayerProbe(model, layer, stop=True) as probe:
        probe.run(lambda: model(np.full((1, *shape), 0.5, dtype=np.float32)))
        out = probe.output
    if out is None or out.ndim not in (2, 4):
        _fail(f"layer {layer!r} outputs shape {getattr(out, 'shape', None)}, not [N, C, h, w] or [N, C]")
    return int(out.shape[1])  # type: ignore[union-attr]


@visualize.command("features")
@_common
@click.option("--layer", default=None, help="Dotted layer name (default: the first convolution).")
@click.option("--channel", "channels", type=int, multiple=True, help="Channel(s) to show (default: the first 16).")
@click.option("--steps", type=click.IntRange(1), default=256, show_default=True, help="Gradient-ascent steps.")
@click.option("--param", type=click.Choice(["fourier", "pixel"]), default="fourier", show_default=True)
@click.option("--no-decorrelate", is_flag=True, help="Do not decorrelate colours.")
@click.option("--lr", type=click.FloatRange(min=0, min_open=True), default=0.05, show_default=True)
def features_cmd(source: str, pretrained: bool, output: str | None, size: int | None, seed: int, quiet: bool,
                 layer: str | None, channels: tuple[int, ...], steps: int, param: str, no_decorrelate: bool,
                 lr: float) -> None:  # fmt: skip
    """Feature visualisation: the image each channel of a layer responds to most (a grid)."""
    import numpy as np
    from matplotlib.figure import Figure

    from . import visualize as V
    from .visualize._common import check_channel

    loaded = load_model(source, pretrained, seed)
    c, h, _ = loaded.input_shape
    side = size or min(h, 128)
    layer = layer if layer is not None else _first_conv(loaded.model)
    V.get_layer(loaded.model, layer)  # a bad name: one error line before any work
    width = _layer_width(loaded.model, layer, (c, side, side))
    chosen = check_channel(list(channels), width, layer) if channels else list(range(min(16, width)))
    norm = loaded.normalization
    bar, update = progress_bar(steps, f"features {layer}", quiet)
    with bar:
        result = V.feature_visualization(
            loaded.model, layer, chosen, steps=steps, size=side, lr=lr, param=param, decorrelate=not no_decorrelate,
            normalize=(norm["mean"], norm["std"]) if norm else None, in_channels=c, rng=seed, progress=update,
        )  # fmt: skip
    cols = int(np.ceil(np.sqrt(len(chosen))))
    rows = int(np.ceil(len(chosen) / cols))
    fig = Figure(figsize=(max(6.0, 2.2 * cols), max(3.5, 2.4 * rows + 0.5)))
    axes = np.atleast_1d(fig.subplots(rows, cols)).ravel()
    for ax in axes:
        ax.set_axis_off()
    for i, ch in enumerate(chosen):
        img = to_hwc(result.image[i])
        axes[i].imshow(img, cmap="gray" if img.ndim == 2 else None, vmin=0, vmax=1)
        first, last = result.activations[0, i], result.activations[-1, i]
        axes[i].set_title(f"channel {ch}\n{first:.2g} → {last:.2g}", fontsize=8)
    fig.suptitle(f"{loaded.name} · {layer}\n{steps} steps ({param}); mean activation at the first → last step",
                 fontsize=10)  # fmt: skip
    fig.tight_layout()
    dest = output or _default_output(f"features-{layer}", source, None)
    write_figure(fig, dest)
    click.echo(f"wrote {dest} ({len(chosen)} channels of {layer}, {side}×{side})")
