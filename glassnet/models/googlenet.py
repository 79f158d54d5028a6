"""GoogLeNet / Inception v1 (Szegedy et al., 2014) in torchvision's layout.

Module and state-dict names are torchvision's (``conv1.conv.weight``, ``conv1.bn.running_mean``,
``inception4c.branch2.1.conv.weight``, ``fc.bias``, …), so a torchvision state dict
loads unchanged. Every convolution is a :class:`BasicConv2d`: conv (no bias) → batch
norm (eps 0.001) → ReLU.

An :class:`Inception` module runs four branches on the same input and concatenates
their outputs along the channels (input C×H×W, output (a + c + e + f)×H×W):

=========  ===============================================  ===========
branch     layers                                           channels
=========  ===============================================  ===========
branch1    1×1 conv                                         a (ch1x1)
branch2    1×1 conv (ch3x3red) → 3×3 conv, padding 1        c (ch3x3)
branch3    1×1 conv (ch5x5red) → 3×3 conv, padding 1        e (ch5x5)
branch4    3×3 max pool, stride 1, padding 1 → 1×1 conv     f (pool_proj)
=========  ===============================================  ===========

branch3 has a 3×3 kernel where the paper has 5×5: torchvision keeps this known slip
for its pretrained weights, and so do we (it is what makes the keys' shapes match).

At 3×224×224:

===========  ==================================================  ===========  ==========
layer        configuration                                       output       parameters
===========  ==================================================  ===========  ==========
conv1        64 × 7×7, stride 2, padding 3                       64×112×112   9,536
maxpool1     max 3×3, stride 2, ceil mode                        64×56×56     0
conv2        64 × 1×1                                            64×56×56     4,224
conv3        192 × 3×3, padding 1                                192×56×56    110,976
maxpool2     max 3×3, stride 2, ceil mode                        192×28×28    0
inception3a  64, 96→128, 16→32, pool→32                          256×28×28    155,872
inception3b  128, 128→192, 32→96, pool→64                        480×28×28    340,224
maxpool3     max 3×3, stride 2, ceil mode                        480×14×14    0
inception4a  192, 96→208, 16→48, pool→64                         512×14×14    364,512
inception4b  160, 112→224, 24→64, pool→64                        512×14×14    425,232
inception4c  128, 128→256, 24→64, pool→64                        512×14×14    486,192
inception4d  112, 144→288, 32→64, pool→64                        528×14×14    573,312
inception4e  256, 160→320, 32→128, pool→128                      832×14×14    803,840
maxpool4     max 2×2, stride 2, ceil mode                        832×7×7      0
inception5a  256, 160→320, 32→128, pool→128                      832×7×7      978,944
inception5b  384, 192→384, 48→128, pool→128                      1024×7×7     1,347,040
avgpool      adaptive average pool to 1×1, flatten, dropout 0.2  1024         0
fc           1024 → num_classes                                  1000         1,025,000
===========  ==================================================  ===========  ==========

Total 6,624,904 parameters for 1000 classes with the auxiliary heads off (the default);
``aux_logits=True`` adds ``aux1`` (after inception4a) and ``aux2`` (after inception4d),
each adaptive average pool 4×4 → 128 × 1×1 conv → fc 2048→1024 → ReLU → dropout 0.7 →
fc 1024→num_classes, 3,188,968 parameters each (13,004,888 in all). As in torchvision,
the model then returns ``(logits, aux2, aux1)`` in training mode and the logits in eval mode.
"""

from __future__ import annotations

from typing import Any

import numpy as np

from ..autograd.ops import cat
from ..nn import (
    AdaptiveAvgPool2d,
    BatchNorm2d,
    Concat,
    Conv2d,
    Dropout,
    Flatten,
    Linear,
    MaxPool2d,
    Module,
    ReLU,
    Sequential,
)
from ..nn.init import make_rng


class BasicConv2d(Module):
    """conv (no bias) → batch norm (eps 0.001) → ReLU: [N, C_in, H, W] → [N, C_out, H', W'].

    ``conv_kwargs`` go to :class:`~glassnet.nn.Conv2d` (``stride``, ``padding``, …).
    """

    def __init__(
        self, in_channels: int, out_channels: int, kernel_size: int, rng: Any = None, **conv_kwargs: Any
    ) -> None:
        super().__init__()
        self.conv = Conv2d(in_channels, out_channels, kernel_size, bias=False, init="he", rng=rng, **conv_kwargs)
        self.bn = BatchNorm2d(out_channels, eps=0.001)
        self.relu = ReLU()

    def forward(self, x: Any) -> np.ndarray:
        return self.relu(self.bn(self.conv(x)))


class Inception(Concat):
    """The four-branch Inception module (see the module docstring):
    [N, C, H, W] → [N, ch1x1 + ch3x3 + ch5x5 + pool_proj, H, W].

    A :class:`~glassnet.nn.Concat` whose branches carry torchvision's names.
    """

    def __init__(
        self,
        in_channels: int,
        ch1x1: int,
        ch3x3red: int,
        ch3x3: int,
        ch5x5red: int,
        ch5x5: int,
        pool_proj: int,
        rng: Any = None,
    ) -> None:
        Module.__init__(self)  # Concat's own __init__ would name the branches 0…3
        gen = make_rng(rng)
        self.branch1 = BasicConv2d(in_channels, ch1x1, 1, rng=gen)
        self.branch2 = Sequential(
            BasicConv2d(in_channels, ch3x3red, 1, rng=gen), BasicConv2d(ch3x3red, ch3x3, 3, rng=gen, padding=1)
        )
        self.branch3 = Sequential(  # 3×3, not the paper's 5×5: torchvision's layout (see the module docstring)
            BasicConv2d(in_channels, ch5x5red, 1, rng=gen), BasicConv2d(ch5x5red, ch5x5, 3, rng=gen, padding=1)
        )
        self.branch4 = Sequential(
            MaxPool2d(3, stride=1, padding=1, ceil_mode=True), BasicConv2d(in_channels, pool_proj, 1, rng=gen)
        )

    def forward(self, x: Any) -> np.ndarray:
        return cat([b(x) for b in self._modules.values()], axis=1)


class InceptionAux(Module):
    """Auxiliary classifier: [N, C, H, W] → adaptive average pool 4×4 → 1×1 conv 128 → flatten
    → fc 2048→1024 → ReLU → dropout → fc → [N, num_classes]."""

    def __init__(self, in_channels: int, num_classes: int, dropout: float = 0.7, rng: Any = None) -> None:
        super().__init__()
        gen = make_rng(rng)
        self.pool = AdaptiveAvgPool2d((4, 4))
        self.conv = BasicConv2d(in_channels, 128, 1, rng=gen)
        self.flatten = Flatten()
        self.fc1 = Linear(2048, 1024, rng=gen)
        self.relu = ReLU()
        self.dropout = Dropout(dropout, rng=gen)
        self.fc2 = Linear(1024, num_classes, rng=gen)

    def forward(self, x: Any) -> np.ndarray:
        x = self.flatten(self.conv(self.pool(x)))
        return self.fc2(self.dropout(self.relu(self.fc1(x))))


# (name, in, ch1x1, ch3x3red, ch3x3, ch5x5red, ch5x5, pool_proj): torchvision's GoogLeNet
INCEPTIONS: list[tuple[str, int, int, int, int, int, int, int]] = [
    ("inception3a", 192, 64, 96, 128, 16, 32, 32),
    ("inception3b", 256, 128, 128, 192, 32, 96, 64),
    ("inception4a", 480, 192, 96, 208, 16, 48, 64),
    ("inception4b", 512, 160, 112, 224, 24, 64, 64),
    ("inception4c", 512, 128, 128, 256, 24, 64, 64),
    ("inception4d", 512, 112, 144, 288, 32, 64, 64),
    ("inception4e", 528, 256, 160, 320, 32, 128, 128),
    ("inception5a", 832, 256, 160, 320, 32, 128, 128),
    ("inception5b", 832, 384, 192, 384, 48, 128, 128),
]


class GoogLeNet(Module):
    """GoogLeNet (Inception v1), torchvision's layout: [N, 3, 224, 224] → [N, num_classes].

    Children in torchvision's order (``aux1``/``aux2`` only with ``aux_logits``); a
    parameter-free ``flatten`` sits between ``avgpool`` and ``dropout``. Any input of at
    least 31×31 works (the pools use ceil mode and the last pool is adaptive).
    ``transform_input``: map ImageNet-normalised input to the (x − 0.5)/0.5 scaling
    torchvision's pretrained GoogLeNet was trained on, as torchvision does.
    """

    MAIN = (
        "conv1",
        "maxpool1",
        "conv2",
        "conv3",
        "maxpool2",
        "inception3a",
        "inception3b",
        "maxpool3",
        "inception4a",
        "inception4b",
        "inception4c",
        "inception4d",
        "inception4e",
        "maxpool4",
        "inception5a",
        "inception5b",
        "avgpool",
        "flatten",
        "dropout",
        "fc",
    )
    """The main path, in forward order (the auxiliary heads branch off it)."""

    def __init__(
        self,
        num_classes: int = 1000,
        in_channels: int = 3,
        aux_logits: bool = False,
        transform_input: bool = False,
        dropout: float = 0.2,
        dropout_aux: float = 0.7,
        rng: Any = None,
    ) -> None:
        super().__init__()
        gen = make_rng(rng)
        self.aux_logits, self.transform_input, self.name = aux_logits, transform_input, "GoogLeNet"
        self.conv1 = BasicConv2d(in_channels, 64, 7, rng=gen, stride=2, padding=3)
        self.maxpool1 = MaxPool2d(3, stride=2, ceil_mode=True)
        self.conv2 = BasicConv2d(64, 64, 1, rng=gen)
        self.conv3 = BasicConv2d(64, 192, 3, rng=gen, padding=1)
        self.maxpool2 = MaxPool2d(3, stride=2, ceil_mode=True)
        for name, *channels in INCEPTIONS:
            setattr(self, name, Inception(*channels, rng=gen))
            if name == "inception3b":
                self.maxpool3 = MaxPool2d(3, stride=2, ceil_mode=True)
            elif name == "inception4e":
                self.maxpool4 = MaxPool2d(2, stride=2, ceil_mode=True)
        if aux_logits:
            self.aux1 = InceptionAux(512, num_classes, dropout_aux, rng=gen)
            self.aux2 = InceptionAux(528, num_classes, dropout_aux, rng=gen)
        self.avgpool = AdaptiveAvgPool2d(1)
        self.flatten = Flatten()
        self.dropout = Dropout(dropout, rng=gen)
        self.fc = Linear(1024, num_classes, rng=gen)

    def _transform(self, x: np.ndarray) -> np.ndarray:
        mean, std = np.array([0.485, 0.456, 0.406]), np.array([0.229, 0.224, 0.225])
        scale = (std / 0.5).astype(x.dtype)[:, None, None]
        shift = ((mean - 0.5) / 0.5).astype(x.dtype)[:, None, None]
        return x * scale + shift

    def forward(self, x: Any) -> Any:
        """Logits [N, num_classes]; ``(logits, aux2, aux1)`` in training mode with ``aux_logits``."""
        if self.transform_input:
            x = self._transform(x)
        aux: dict[str, np.ndarray] = {}
        for name in self.MAIN:
            x = self._modules[name](x)
            if self.aux_logits and self.training and name in ("inception4a", "inception4d"):
                aux[name] = self._modules["aux1" if name == "inception4a" else "aux2"](x)
        if self.aux_logits and self.training:
            return x, aux["inception4d"], aux["inception4a"]
        return x


def googlenet(
    num_classes: int = 1000,
    in_channels: int = 3,
    aux_logits: bool = False,
    transform_input: bool = False,
    rng: Any = None,
) -> GoogLeNet:
    """GoogLeNet / Inception v1 (torchvision layout and keys): 6,624,904 parameters for 1000 classes
    (aux heads off). Input [N, in_channels, 224, 224] → logits [N, num_classes]."""
    return GoogLeNet(num_classes, in_channels, aux_logits, transform_input, rng=rng)
