"""The model registry: build any zoo model by name.

``get_model("resnet20", num_classes=10, rng=0)``; ``default_input_shape("alexnet")``
gives the (C, H, W) each model is designed for.
"""

from __future__ import annotations

from collections.abc import Callable
from functools import partial
from typing import Any

from ..nn import Module
from .alexnet import alexnet
from .lenet import lenet5
from .resnet import resnet18, resnet20, resnet34
from .small import tf_cnn, tinyvgg
from .vgg import vgg11, vgg16

MODELS: dict[str, Callable[..., Module]] = {
    "lenet5": lenet5,
    "tf_cnn": tf_cnn,
    "tinyvgg": tinyvgg,
    "alexnet": alexnet,
    "vgg11": vgg11,
    "vgg11_bn": partial(vgg11, batch_norm=True),
    "vgg16": vgg16,
    "vgg16_bn": partial(vgg16, batch_norm=True),
    "resnet18": resnet18,
    "resnet34": resnet34,
    "resnet20": resnet20,
}
"""Name → builder; every builder takes ``num_classes``, ``in_channels`` and ``rng``."""

_INPUT_SHAPES: dict[str, tuple[int, int, int]] = {
    "lenet5": (1, 28, 28),
    "tf_cnn": (3, 32, 32),
    "tinyvgg": (3, 64, 64),
    "alexnet": (3, 227, 227),
    "vgg11": (3, 224, 224),
    "vgg11_bn": (3, 224, 224),
    "vgg16": (3, 224, 224),
    "vgg16_bn": (3, 224, 224),
    "resnet18": (3, 224, 224),
    "resnet34": (3, 224, 224),
    "resnet20": (3, 32, 32),
}


def _squash(name: str) -> str:
    return name.lower().replace("-", "").replace("_", "")


def _check(name: str) -> str:
    """The registry key for ``name`` (case, '-' and '_' ignored: 'ResNet-20' → 'resnet20')."""
    keys = {_squash(k): k for k in MODELS}
    key = keys.get(_squash(name)) if isinstance(name, str) else None
    if key is None:
        raise ValueError(f"unknown model {name!r}; available: {', '.join(sorted(MODELS))}")
    return key


def get_model(name: str, **kwargs: Any) -> Module:
    """Build the model called ``name`` (see :data:`MODELS`) with the builder's keyword arguments."""
    return MODELS[_check(name)](**kwargs)


def default_input_shape(name: str, in_channels: int | None = None) -> tuple[int, int, int]:
    """The (C, H, W) input ``name`` is designed for (e.g. alexnet 3×227×227, resnet20 3×32×32);
    ``in_channels`` overrides C."""
    c, h, w = _INPUT_SHAPES[_check(name)]
    return (c if in_channels is None else in_channels, h, w)
