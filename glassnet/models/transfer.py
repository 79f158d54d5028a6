"""Transfer learning: swap a pretrained model's classifier head and freeze the rest.

The head is the *last* :class:`~glassnet.nn.Linear` in ``named_modules()`` order
(``fc`` of a ResNet, ``classifier.6`` of VGG/AlexNet, the final dense layer of the
small models). Typical use::

    model = resnet18(rng=0)
    model.load_state_dict(pretrained)          # ImageNet weights, 1000 classes
    replace_head(model, num_classes=10, rng=0)  # fresh 512 → 10 layer
    freeze_features(model)                      # only fc.weight / fc.bias train
    opt = SGD(model.parameters(trainable_only=True), lr=1e-2)

Frozen parameters get no gradient, but BatchNorm layers still update their running
statistics in training mode; call ``.eval()`` on the frozen part to keep them fixed.
"""

from __future__ import annotations

from typing import Any

from ..nn import Linear, Module


def find_head(model: Module) -> tuple[str, Linear]:
    """(dotted name, module) of the last Linear layer of ``model``; ``ValueError`` if there is none."""
    head: tuple[str, Linear] | None = None
    for name, m in model.named_modules():
        if isinstance(m, Linear):
            head = (name, m)
    if head is None:
        raise ValueError(f"{type(model).__name__} has no Linear layer to use as the head")
    return head


def _parent(model: Module, dotted: str) -> tuple[Module, str]:
    parent = model
    *path, last = dotted.split(".")
    for part in path:
        parent = parent._modules[part]
    return parent, last


def replace_head(model: Module, num_classes: int, rng: Any = None) -> Module:
    """Replace the last Linear layer with a fresh one of the same ``in_features`` and
    ``num_classes`` outputs (same bias setting, dtype and init scheme). Returns ``model``.

    The new layer takes the old one's place (same name, same position), so the
    forward, the summary and the state-dict keys are unchanged apart from its shape.
    """
    name, old = find_head(model)
    if not name:
        raise ValueError("replace_head: the model itself is a Linear layer; build a new Linear instead")
    new = Linear(
        old.in_features,
        num_classes,
        bias=old.bias is not None,
        init=old.init,
        rng=rng,
        dtype=old.weight.dtype,
    )
    new.train(old.training)
    parent, attr = _parent(model, name)
    parent._modules[attr] = new  # in place: keeps the child order
    return model


def freeze_features(model: Module) -> Module:
    """Freeze every parameter except those of the head (the last Linear). Returns ``model``.

    Afterwards ``model.parameters(trainable_only=True)`` is the head's weight and bias.
    """
    _, head = find_head(model)
    keep = {id(p) for p in head.parameters()}
    for p in model.parameters():
        if id(p) in keep:
            p.requires_grad = True
        else:
            p.requires_grad = False
            p.grad = None
    return model
