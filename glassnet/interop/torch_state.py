"""State dicts in PyTorch's (torchvision's) layout: load them into zoo models, and write them back.

glassnet's zoo models use torchvision's module names, so a torchvision state dict maps
onto them key for key:

==================  =============================================  ==========================
glassnet name       built as                                       torchvision counterpart
==================  =============================================  ==========================
``alexnet``         ``alexnet(variant="torchvision")``             ``torchvision.models.alexnet``
``vgg11``/``vgg16`` ``vgg11()``/``vgg16()`` (``_bn`` variants too)  ``vgg11``/``vgg16`` (``_bn``)
``resnet18/34``     ``resnet18()``/``resnet34()``                  ``resnet18``/``resnet34``
``googlenet``       ``googlenet()`` (aux heads off)                 ``googlenet`` (``aux_logits``
                                                                   keys are dropped)
``efficientnet_*``  ``efficientnet_lite0()`` …                       the ``efficientnet_lite_pytorch``
                                                                   package's layout
==================  =============================================  ==========================

:func:`load_torch_state` reads ``.safetensors`` or ``.pth`` files (the latter with torch's
``weights_only`` loader when torch is installed, otherwise with glassnet's allow-list
reader, :mod:`glassnet.interop.pth`; nothing from the file is ever executed), infers the
number of classes from the last layer, builds the model and loads the weights.
:func:`save_torch_state` writes a model's state dict as safetensors that
``model.load_state_dict(safetensors.torch.load_file(path))`` accepts in PyTorch.
"""

from __future__ import annotations

import os
from collections import OrderedDict
from pathlib import Path
from typing import Any

import numpy as np

from ..nn import Module

#: glassnet zoo name → (builder keyword arguments, key of the final layer's weight)
TORCH_LAYOUTS: dict[str, tuple[dict[str, Any], str]] = {
    "alexnet": ({"variant": "torchvision"}, "classifier.6.weight"),
    "vgg11": ({}, "classifier.6.weight"),
    "vgg11_bn": ({}, "classifier.6.weight"),
    "vgg16": ({}, "classifier.6.weight"),
    "vgg16_bn": ({}, "classifier.6.weight"),
    "resnet18": ({}, "fc.weight"),
    "resnet34": ({}, "fc.weight"),
    "googlenet": ({}, "fc.weight"),
    "efficientnet_lite0": ({}, "_fc.weight"),
    "efficientnet_lite1": ({}, "_fc.weight"),
    "efficientnet_lite2": ({}, "_fc.weight"),
}


class TorchStateError(ValueError):
    """A state dict that does not fit the model it is meant for (the message lists why)."""


def read_state(path: str | os.PathLike[str]) -> OrderedDict[str, np.ndarray]:
    """Arrays by name from a ``.safetensors`` or ``.pth``/``.pt`` file, never executing the file."""
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"no such file: {path}")
    if path.suffix == ".safetensors":
        from safetensors.numpy import load_file

        return OrderedDict(load_file(str(path)))
    try:
        import torch  # type: ignore[import-not-found]
    except ImportError:
        from .pth import load_pth

        return load_pth(path)
    state = torch.load(str(path), map_location="cpu", weights_only=True)
    if isinstance(state, dict) and "state_dict" in state and isinstance(state["state_dict"], dict):
        state = state["state_dict"]
    if not isinstance(state, dict):
        raise TorchStateError(f"{path}: expected a state dict (name → tensor), got {type(state).__name__}")
    return OrderedDict((k, v.detach().cpu().numpy()) for k, v in state.items() if hasattr(v, "detach"))


def load_torch_state(name: str, state: Any, num_classes: int | None = None) -> Module:
    """Build zoo model ``name`` and load a torchvision-layout state dict (a dict, or a file path) into it.

    ``num_classes`` defaults to the rows of the state's final layer. Keys torch has and
    glassnet does not need (GoogLeNet's auxiliary heads) are dropped; a missing
    ``num_batches_tracked`` (older torch) is left at its initial value. Anything else that
    does not match raises :class:`TorchStateError` listing the keys or shapes.
    """
    from ..models import get_model
    from ..models.registry import _check

    key = _check(name)
    if key not in TORCH_LAYOUTS:
        raise TorchStateError(f"no torch layout for {name!r}; available: {', '.join(sorted(TORCH_LAYOUTS))}")
    if not isinstance(state, dict):
        state = read_state(state)
    kwargs, head = TORCH_LAYOUTS[key]
    if head not in state:
        raise TorchStateError(f"{key}: the state dict has no {head!r} (is it a {key} state dict?)")
    classes = int(np.shape(state[head])[0]) if num_classes is None else num_classes
    model = get_model(key, num_classes=classes, **kwargs)
    own = model.state_dict()
    state = {k: np.asarray(v) for k, v in state.items() if not (key == "googlenet" and k.startswith("aux"))}
    missing = [k for k in own if k not in state and not k.endswith("num_batches_tracked")]
    unexpected = [k for k in state if k not in own]
    if missing or unexpected:
        raise TorchStateError(f"{key}: missing keys {missing}; unexpected keys {unexpected}")
    try:
        model.load_state_dict(state, strict=False)
    except ValueError as e:
        raise TorchStateError(f"{key}: {e}") from None
    return model


def save_torch_state(model: Module, path: str | os.PathLike[str]) -> Path:
    """Write ``model``'s state dict as safetensors (torch's key names and layouts), atomically.

    PyTorch side: ``tv_model.load_state_dict(safetensors.torch.load_file(path))``.
    """
    from safetensors.numpy import save

    from ..checkpoint import atomic_write_bytes

    path = Path(path)
    arrays = {k: np.ascontiguousarray(v) for k, v in model.state_dict().items()}
    atomic_write_bytes(path, save(arrays, metadata={"format": "pt", "written_by": "glassnet"}))
    return path
