"""AlexNet as tabled in the lectures (single-GPU equivalent, 227×227×3 input).

=========  ==========================  ============  ==============
layer      configuration               output        parameters
=========  ==========================  ============  ==============
conv1      96 × 11×11, stride 4        96×55×55      34,944
pool1      max 3×3, stride 2 → LRN     96×27×27      0
conv2      256 × 5×5, padding 2        256×27×27     614,656
pool2      max 3×3, stride 2 → LRN     256×13×13     0
conv3      384 × 3×3, padding 1        384×13×13     885,120
conv4      384 × 3×3, padding 1        384×13×13     1,327,488
conv5      256 × 3×3, padding 1        256×13×13     884,992
pool5      max 3×3, stride 2           256×6×6       0
fc6        dropout 0.5, 9216 → 4096    4096          37,752,832
fc7        dropout 0.5, 4096 → 4096    4096          16,781,312
fc8        4096 → 1000 (logits)        1000          4,097,000
=========  ==========================  ============  ==============

Total 62,378,344 parameters with every bias. The lecture's total, 62,369,152, counts
the conv biases but leaves out the 9,192 biases of the three dense layers (its FC rows
are 37,748,736, 16,777,216 and 4,096,000 = in·out). The lecture labels the last row
"FC8 + ReLU"; the output layer has no ReLU: it gives logits for softmax.

Module names follow torchvision's layout (``features``, ``avgpool``, ``classifier``)
with the LRN layers in ``features``; the adaptive average pool is 6×6 → 6×6 (the
identity) at 227×227 and lets other input sizes work.
"""

from __future__ import annotations

from collections import OrderedDict
from typing import Any

from ..nn import (
    AdaptiveAvgPool2d,
    Conv2d,
    Dropout,
    Flatten,
    Linear,
    LocalResponseNorm,
    MaxPool2d,
    ReLU,
    Sequential,
)
from ..nn.init import make_rng


def alexnet(
    num_classes: int = 1000,
    in_channels: int = 3,
    dropout: float = 0.5,
    lrn: bool = True,
    variant: str = "lecture",
    rng: Any = None,
) -> Sequential:
    """AlexNet. Input [N, in_channels, 227, 227] (224 for torchvision's) → logits [N, num_classes].

    ``variant="lecture"``: the lectures' table (96-256-384-384-256 filters, LRN);
    ``variant="torchvision"``: torchvision's ``alexnet`` (64-192-384-256-256 filters, padding 2
    on conv1, no LRN; 61,100,840 parameters), whose state dicts load as they are.
    """
    if variant not in ("lecture", "torchvision"):
        raise ValueError(f"alexnet: variant must be 'lecture' or 'torchvision', got {variant!r}")
    gen = make_rng(rng)

    def norm() -> list:
        return [LocalResponseNorm(5, alpha=1e-4, beta=0.75, k=2.0)] if lrn and variant == "lecture" else []

    # (filters, kernel, padding) of conv1..conv5; the two variants differ only in these and in LRN
    if variant == "lecture":
        convs = [(96, 11, 0), (256, 5, 2), (384, 3, 1), (384, 3, 1), (256, 3, 1)]
    else:
        convs = [(64, 11, 2), (192, 5, 2), (384, 3, 1), (256, 3, 1), (256, 3, 1)]
    layers: list = []
    c = in_channels
    for i, (f, k, p) in enumerate(convs):
        layers += [Conv2d(c, f, k, stride=4 if i == 0 else 1, padding=p, rng=gen), ReLU()]
        if i in (0, 1, 4):
            layers += [MaxPool2d(3, 2), *(norm() if i < 2 else [])]
        c = f
    classifier = Sequential(
        Dropout(dropout, rng=gen),
        Linear(256 * 6 * 6, 4096, rng=gen),
        ReLU(),
        Dropout(dropout, rng=gen),
        Linear(4096, 4096, rng=gen),
        ReLU(),
        Linear(4096, num_classes, rng=gen),
    )
    model = Sequential(
        OrderedDict(
            features=Sequential(*layers), avgpool=AdaptiveAvgPool2d(6), flatten=Flatten(), classifier=classifier
        )
    )
    model.name = "AlexNet" if variant == "lecture" else "AlexNet (torchvision)"
    return model
