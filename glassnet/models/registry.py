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
from .efficientnet import (
    efficientnet_lite0,
    efficientnet_lite1,
    efficientnet_lite2,
    efficientnet_lite3,
    efficientnet_lite4,
)
from .googlenet import googlenet
from .lenet import lenet5
from .resnet import resnet18, resnet20, resnet34
from .sequential import sequential
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
    "googlenet": googlenet,
    "efficientnet_lite0": efficientnet_lite0,
    "efficientnet_lite1": efficientnet_lite1,
    "efficientnet_lite2": efficientnet_lite2,
    "efficientnet_lite3": efficientnet_lite3,
    "efficientnet_lite4": efficientnet_lite4,
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
    "googlenet": (3, 224, 224),
    "efficientnet_lite0": (3, 224, 224),
    "efficientnet_lite1": (3, 240, 240),
    "efficientnet_lite2": (3, 260, 260),
    "efficientnet_lite3": (3, 280, 280),
    "efficientnet_lite4": (3, 300, 300),
}


#: Builders of models their arguments describe completely (no zoo architecture, no default input shape):
#: :func:`get_model` knows them, :data:`MODELS` does not list them.
DESCRIBED: dict[str, Callable[..., Module]] = {"sequential": sequential}


def _squash(name: str) -> str:
    return name.lower().replace("-", "").replace("_", "")


def _check(name: str) -> str:
    """The registry key for ``name`` (case, '-' and '_' ignored: 'ResNet-20' → 'resnet20')."""
    keys = {_squash(k): k for k in MODELS}
    key = keys.get(_squash(name)) if isinstance(name, str) else None
    if key is None:
        raise ValueError(f"unknown model {name!r}; available: {', '.join(sorted(MODELS))}")
    return key


def get_model(name: str, pretrained: bool = False, **kwargs: Any) -> Module:
    """Build the model called ``name`` (see :data:`MODELS`) with the builder's keyword arguments.

    ``pretrained=True`` loads real ImageNet weights where a package ships them
    (EfficientNet-Lite0/1/2, the optional extra ``glassnet[pretrained]``); the model is then
    in eval mode and takes no other arguments. ``get_model("sequential", layers="Conv2d(1, 8, 3); ...")``
    builds a plain chain its description gives (:mod:`glassnet.models.sequential`).
    """
    if isinstance(name, str) and _squash(name) in DESCRIBED:
        if pretrained:
            raise ValueError(f"no pretrained weights for {name!r}: its arguments describe the whole model")
        return DESCRIBED[_squash(name)](**kwargs)
    key = _check(name)
    if pretrained:
        from .pretrained import SOURCES, get_pretrained

        if key not in SOURCES:
            raise ValueError(f"no pretrained weights for {name!r}; available for: {', '.join(sorted(SOURCES))}")
        if kwargs:
            raise ValueError(f"pretrained {key} takes no builder arguments, got {sorted(kwargs)}")
        return get_pretrained(key)
    return MODELS[key](**kwargs)


def default_input_shape(name: str, in_channels: int | None = None) -> tuple[int, int, int]:
    """The (C, H, W) input ``name`` is designed for (e.g. alexnet 3×227×227, resnet20 3×32×32);
    ``in_channels`` overrides C."""
    c, h, w = _INPUT_SHAPES[_check(name)]
    return (c if in_channels is None else in_channels, h, w)
