"""VGG (Simonyan & Zisserman, 2014): stacks of 3×3 convolutions and 2×2 max pools.

torchvision layout and state-dict keys: ``features.N.weight`` (N the index in the
conv/ReLU/pool list, with BatchNorm2d after every conv when ``batch_norm=True``),
``avgpool`` = AdaptiveAvgPool2d(7), ``classifier.0/3/6`` the three Linear layers
(dropout at 2 and 5). A parameter-free ``flatten`` sits between avgpool and
classifier, so the state dict is torchvision's.

VGG-11 (configuration A) and VGG-16 (D) at 3×224×224:

==========  ====================================  ===========  ============  ============
stage       VGG-11 / VGG-16 convolutions (3×3)    output       VGG-11        VGG-16
==========  ====================================  ===========  ============  ============
block 1     64 / 64, 64, then max 2×2             64×112×112   1,792         38,720
block 2     128 / 128, 128, then max 2×2          128×56×56    73,856        221,440
block 3     256, 256 / 256 ×3, then max 2×2       256×28×28    885,248       1,475,328
block 4     512, 512 / 512 ×3, then max 2×2       512×14×14    3,539,968     5,899,776
block 5     512, 512 / 512 ×3, then max 2×2       512×7×7      4,719,616     7,079,424
avgpool     adaptive average pool to 7×7          512×7×7      0             0
classifier  25088 → 4096 → 4096 → num_classes     1000         123,642,856   123,642,856
==========  ====================================  ===========  ============  ============

Totals for 1000 classes: VGG-11 132,863,336, VGG-16 138,357,544 (``batch_norm`` adds
4 numbers per conv channel: 2 parameters and 2 running statistics).

Small images (``small_input=True``, for 28×28 or 32×32 data such as MNIST/CIFAR):
the five max pools use ``ceil_mode`` (28 → 14 → 7 → 4 → 2 → 1, 32 → … → 1, so no
feature map vanishes), the pool is global (AdaptiveAvgPool2d(1)) and the classifier
is 512 → ``head_width`` → ``head_width`` → num_classes with ``head_width`` = 512
by default: VGG-11 has 9,750,922 parameters for 10 classes instead of 128.8 M. The
module names and the features' keys stay torchvision's.
"""

from __future__ import annotations

from collections import OrderedDict
from typing import Any

from ..nn import AdaptiveAvgPool2d, BatchNorm2d, Conv2d, Dropout, Flatten, Linear, MaxPool2d, Module, ReLU, Sequential
from ..nn.init import make_rng

CFGS: dict[str, list[int | str]] = {
    "A": [64, "M", 128, "M", 256, 256, "M", 512, 512, "M", 512, 512, "M"],
    "B": [64, 64, "M", 128, 128, "M", 256, 256, "M", 512, 512, "M", 512, 512, "M"],
    "D": [64, 64, "M", 128, 128, "M", 256, 256, 256, "M", 512, 512, 512, "M", 512, 512, 512, "M"],
    "E": [64, 64, "M", 128, 128, "M", 256, 256, 256, 256, "M", 512, 512, 512, 512, "M", 512, 512, 512, 512, "M"],
}
"""torchvision's configurations: A = VGG-11, B = VGG-13, D = VGG-16, E = VGG-19 ("M": max pool)."""


class VGG(Sequential):
    """``features`` → ``avgpool`` → ``flatten`` → ``classifier`` (a named :class:`Sequential`)."""

    def __init__(self, features: Sequential, avgpool: Module, classifier: Sequential, name: str = "VGG") -> None:
        super().__init__(OrderedDict(features=features, avgpool=avgpool, flatten=Flatten(), classifier=classifier))
        self.name = name


def make_features(
    cfg: list[int | str], in_channels: int = 3, batch_norm: bool = False, ceil_mode: bool = False, rng: Any = None
) -> Sequential:
    """The conv/ReLU(/BN)/pool stack of a VGG configuration, indexed as torchvision's."""
    gen = make_rng(rng)
    layers: list[Module] = []
    c = in_channels
    for v in cfg:
        if v == "M":
            layers.append(MaxPool2d(2, stride=2, ceil_mode=ceil_mode))
            continue
        assert isinstance(v, int)
        layers.append(Conv2d(c, v, 3, padding=1, init="he", rng=gen))
        if batch_norm:
            layers.append(BatchNorm2d(v))
        layers.append(ReLU())
        c = v
    return Sequential(*layers)


def vgg(
    cfg: str,
    num_classes: int = 1000,
    in_channels: int = 3,
    batch_norm: bool = False,
    small_input: bool = False,
    head_width: int | None = None,
    dropout: float = 0.5,
    rng: Any = None,
    name: str | None = None,
) -> VGG:
    """A VGG of torchvision configuration ``cfg`` ('A', 'B', 'D', 'E'); see the module docstring."""
    if cfg not in CFGS:
        raise ValueError(f"vgg: unknown configuration {cfg!r}; expected one of {sorted(CFGS)}")
    gen = make_rng(rng)
    features = make_features(CFGS[cfg], in_channels, batch_norm, ceil_mode=small_input, rng=gen)
    pool_out = 1 if small_input else 7
    width = head_width if head_width is not None else (512 if small_input else 4096)
    classifier = Sequential(
        Linear(512 * pool_out * pool_out, width, rng=gen),
        ReLU(),
        Dropout(dropout, rng=gen),
        Linear(width, width, rng=gen),
        ReLU(),
        Dropout(dropout, rng=gen),
        Linear(width, num_classes, rng=gen),
    )
    depth = {"A": 11, "B": 13, "D": 16, "E": 19}[cfg]
    if name is None:
        name = f"VGG-{depth}" + ("-BN" if batch_norm else "") + (" (small input)" if small_input else "")
    return VGG(features, AdaptiveAvgPool2d(pool_out), classifier, name)


def vgg11(
    num_classes: int = 1000,
    in_channels: int = 3,
    batch_norm: bool = False,
    small_input: bool = False,
    head_width: int | None = None,
    dropout: float = 0.5,
    rng: Any = None,
) -> VGG:
    """VGG-11 (configuration A): 8 convs + 3 dense layers; 132,863,336 parameters for 1000 classes.

    Input [N, in_channels, 224, 224] (any size ≥ 32; ≥ 1 with ``small_input``) → [N, num_classes].
    """
    return vgg("A", num_classes, in_channels, batch_norm, small_input, head_width, dropout, rng)


def vgg16(
    num_classes: int = 1000,
    in_channels: int = 3,
    batch_norm: bool = False,
    small_input: bool = False,
    head_width: int | None = None,
    dropout: float = 0.5,
    rng: Any = None,
) -> VGG:
    """VGG-16 (configuration D): 13 convs + 3 dense layers; 138,357,544 parameters for 1000 classes."""
    return vgg("D", num_classes, in_channels, batch_norm, small_input, head_width, dropout, rng)
