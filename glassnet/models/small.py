"""Small teaching CNNs: the lecture's Keras tutorial model (:func:`tf_cnn`) and CNN
Explainer's TinyVGG (:func:`tinyvgg`).

``tf_cnn`` (TensorFlow's CNN tutorial, written channels-first), at 3×32×32:

=====  =========================  ========  ==========
index  layer                      output    parameters
=====  =========================  ========  ==========
0, 1   conv 32 × 3×3 + ReLU       32×30×30  896
2      max pool 2×2               32×15×15  0
3, 4   conv 64 × 3×3 + ReLU       64×13×13  18,496
5      max pool 2×2               64×6×6    0
6, 7   conv 64 × 3×3 + ReLU       64×4×4    36,928
8      flatten                    1024      0
9, 10  dense 64 + ReLU            64        65,600
11     dense num_classes (logits)  10        650
=====  =========================  ========  ==========

Convolutions 56,320 parameters, 122,570 in all for 10 classes. On 1×28×28 (MNIST):
26 → 13 → 11 → 5 → 3, flatten 576, 93,322 parameters. Weights are initialised like
Keras' defaults (Glorot uniform, zero biases).

``tinyvgg`` (CNN Explainer, Wang et al. 2020), at 3×64×64 with 10 hidden units:

=============  ===========================  ========  ==========
module         layer                        output    parameters
=============  ===========================  ========  ==========
block1.0, .1   conv 10 × 3×3 + ReLU         10×62×62  280
block1.2, .3   conv 10 × 3×3 + ReLU         10×60×60  910
block1.4       max pool 2×2                 10×30×30  0
block2.0, .1   conv 10 × 3×3 + ReLU         10×28×28  910
block2.2, .3   conv 10 × 3×3 + ReLU         10×26×26  910
block2.4       max pool 2×2                 10×13×13  0
classifier.0   flatten                      1690      0
classifier.1   dense num_classes (logits)   10        16,910
=============  ===========================  ========  ==========

19,920 parameters in all. ``input_size`` 28 gives 4×4 maps (flatten 160), 32 gives
5×5 (flatten 250).
"""

from __future__ import annotations

from collections import OrderedDict
from typing import Any

from ..nn import Conv2d, Flatten, Linear, MaxPool2d, ReLU, Sequential
from ..nn.init import make_rng


def _flat_features(features: Sequential, in_channels: int, input_size: int) -> int:
    _, c, h, w = features.output_shape((1, in_channels, input_size, input_size))
    return c * h * w


def tf_cnn(num_classes: int = 10, in_channels: int = 3, input_size: int = 32, rng: Any = None) -> Sequential:
    """The lecture's TensorFlow/Keras tutorial CNN (see the module docstring).

    Input [N, in_channels, input_size, input_size] (32 for CIFAR, 28 for MNIST) → logits [N, num_classes].
    """
    gen = make_rng(rng)
    convs = Sequential(
        Conv2d(in_channels, 32, 3, init="glorot", rng=gen),
        ReLU(),
        MaxPool2d(2),
        Conv2d(32, 64, 3, init="glorot", rng=gen),
        ReLU(),
        MaxPool2d(2),
        Conv2d(64, 64, 3, init="glorot", rng=gen),
        ReLU(),
    )
    flat = _flat_features(convs, in_channels, input_size)
    model = Sequential(
        *convs,
        Flatten(),
        Linear(flat, 64, init="glorot", rng=gen),
        ReLU(),
        Linear(64, num_classes, init="glorot", rng=gen),
    )
    model.name = "TF tutorial CNN"
    return model


def tinyvgg(
    num_classes: int = 10, in_channels: int = 3, input_size: int = 64, hidden_units: int = 10, rng: Any = None
) -> Sequential:
    """CNN Explainer's TinyVGG: two blocks of [conv 3×3, ReLU, conv 3×3, ReLU, max pool 2], then
    flatten + linear. Input [N, in_channels, input_size, input_size] (64 default; 28 and 32 work)."""
    gen = make_rng(rng)
    h = hidden_units

    def block(c_in: int) -> Sequential:
        return Sequential(
            Conv2d(c_in, h, 3, rng=gen),
            ReLU(),
            Conv2d(h, h, 3, rng=gen),
            ReLU(),
            MaxPool2d(2),
        )

    block1, block2 = block(in_channels), block(h)
    flat = _flat_features(Sequential(block1, block2), in_channels, input_size)
    model = Sequential(
        OrderedDict(block1=block1, block2=block2, classifier=Sequential(Flatten(), Linear(flat, num_classes, rng=gen)))
    )
    model.name = "TinyVGG"
    return model
