"""Residual networks (He et al., 2015): ResNet-18/34 (ImageNet layout) and ResNet-20 (CIFAR).

A :class:`BasicBlock` computes ``relu(bn2(conv2(relu(bn1(conv1(x))))) + shortcut(x))``:
two 3×3 convolutions learn a *residual* that is added to the input. The shortcut is
the identity when the shape is kept, otherwise ``downsample`` maps x to the new shape
(option B: a strided 1×1 conv + BN; option A: subsample and pad with zero channels).
The gradient reaches x along both paths and the two are added.

ImageNet layout (``resnet18``, ``resnet34``), input 3×224×224, module and state-dict
names exactly torchvision's (``conv1.weight``, ``bn1.running_mean``,
``layer2.0.downsample.0.weight``, ``fc.bias``, …):

=========  =====================================  ==========  ===========  ===========
layer      configuration                          output      resnet18     resnet34
=========  =====================================  ==========  ===========  ===========
conv1      64 × 7×7, stride 2, padding 3, no bias  64×112×112  9,408        9,408
bn1, relu  batch norm (64) + ReLU                 64×112×112  128          128
maxpool    max 3×3, stride 2, padding 1           64×56×56    0            0
layer1     BasicBlock(64) × 2 / × 3               64×56×56    147,968      221,952
layer2     BasicBlock(128, stride 2) × 2 / × 4    128×28×28   525,568      1,116,416
layer3     BasicBlock(256, stride 2) × 2 / × 6    256×14×14   2,099,712    6,822,400
layer4     BasicBlock(512, stride 2) × 2 / × 3    512×7×7     8,393,728    13,114,368
avgpool    adaptive average pool to 1×1           512×1×1     0            0
fc         512 → num_classes                      1000        513,000      513,000
=========  =====================================  ==========  ===========  ===========

Totals (1000 classes): resnet18 11,689,512, resnet34 21,797,672 parameters. The
adaptive pool makes any input of at least 32×32 work (7×7 at 224, 2×2 at 64).

CIFAR layout (``resnet20``), input 3×32×32, n = 3 blocks per stage:

=========  ===============================  ========  ==================
layer      configuration                    output    parameters
=========  ===============================  ========  ==================
conv1      16 × 3×3, padding 1, no bias     16×32×32  432
bn1, relu  batch norm (16) + ReLU           16×32×32  32
layer1     BasicBlock(16) × 3               16×32×32  14,016
layer2     BasicBlock(32, stride 2) × 3     32×16×16  51,648 (B) / 51,072 (A)
layer3     BasicBlock(64, stride 2) × 3     64×8×8    205,696 (B) / 203,520 (A)
avgpool    global average pool              64×1×1    0
fc         64 → num_classes                 10        650
=========  ===============================  ========  ==================

Total for 10 classes: 269,722 with option A (the paper's "0.27 M"), 272,474 with
option B (projection shortcuts, the default here).
"""

from __future__ import annotations

from collections import OrderedDict
from typing import Any

import numpy as np

from .. import functional as F
from ..autograd.function import get_backend
from ..autograd.ops import cat
from ..nn import AdaptiveAvgPool2d, BatchNorm2d, Conv2d, Flatten, Linear, MaxPool2d, Module, ReLU, Sequential
from ..nn.init import make_rng


def conv3x3(in_planes: int, out_planes: int, stride: int = 1, rng: Any = None) -> Conv2d:
    """3×3 convolution with padding 1 and no bias (a batch norm follows)."""
    return Conv2d(in_planes, out_planes, 3, stride=stride, padding=1, bias=False, init="he", rng=rng)


def conv1x1(in_planes: int, out_planes: int, stride: int = 1, rng: Any = None) -> Conv2d:
    """1×1 convolution without bias (the projection shortcut)."""
    return Conv2d(in_planes, out_planes, 1, stride=stride, bias=False, init="he", rng=rng)


class ZeroPadShortcut(Module):
    """Option-A shortcut (He et al., CIFAR): keep every ``stride``-th pixel and pad the
    channels with zeros, ``in_planes`` → ``out_planes``. No parameters.

    The extra channels are split evenly before and after the input's channels.
    Backward: the gradient of the kept channels goes back to the kept pixels.
    """

    def __init__(self, in_planes: int, out_planes: int, stride: int = 2) -> None:
        super().__init__()
        if out_planes < in_planes:
            raise ValueError(f"ZeroPadShortcut: out_planes {out_planes} < in_planes {in_planes}")
        self.in_planes, self.out_planes, self.stride = in_planes, out_planes, stride
        self.pad_before = (out_planes - in_planes) // 2

    def forward(self, x: Any) -> Any:
        s = self.stride
        sub = x[:, :, ::s, ::s]
        n, _, h, w = sub.shape
        before = np.zeros((n, self.pad_before, h, w), dtype=sub.dtype)
        after = np.zeros((n, self.out_planes - self.in_planes - self.pad_before, h, w), dtype=sub.dtype)
        return cat([before, sub, after], axis=1)

    def extra_repr(self) -> str:
        return f"{self.in_planes}, {self.out_planes}, stride={self.stride}"


class BasicBlock(Module):
    """The two-conv residual block of ResNet-18/34/20 (torchvision's attribute names).

    ==========  ====================================  ===================
    child       configuration                         output
    ==========  ====================================  ===================
    conv1       planes × 3×3, stride s, padding 1     planes × H/s × W/s
    bn1, relu   batch norm + ReLU                     planes × H/s × W/s
    conv2       planes × 3×3, padding 1               planes × H/s × W/s
    bn2         batch norm                            planes × H/s × W/s
    downsample  shortcut when the shape changes       planes × H/s × W/s
    (add)       bn2 output + shortcut(x)              planes × H/s × W/s
    (relu)      ReLU of the sum                       planes × H/s × W/s
    ==========  ====================================  ===================

    Parameters: 9·inplanes·planes + 9·planes² + 4·planes (+ inplanes·planes + 2·planes
    for a projection shortcut). ``relu`` is used after bn1; the ReLU after the addition
    is applied functionally, so the children are exactly torchvision's.
    """

    expansion = 1

    def __init__(
        self, inplanes: int, planes: int, stride: int = 1, downsample: Module | None = None, rng: Any = None
    ) -> None:
        super().__init__()
        gen = make_rng(rng)
        self.inplanes, self.planes, self.stride = inplanes, planes, stride
        self.conv1 = conv3x3(inplanes, planes, stride, rng=gen)
        self.bn1 = BatchNorm2d(planes)
        self.relu = ReLU()
        self.conv2 = conv3x3(planes, planes, rng=gen)
        self.bn2 = BatchNorm2d(planes)
        if downsample is not None:
            self.downsample = downsample
        elif stride != 1 or inplanes != planes:
            raise ValueError(
                f"BasicBlock({inplanes}→{planes}, stride {stride}) changes the shape: give a downsample "
                "shortcut (e.g. Sequential(Conv2d(inplanes, planes, 1, stride, bias=False), BatchNorm2d(planes)))"
            )

    @property
    def has_downsample(self) -> bool:
        return "downsample" in self._modules

    def forward(self, x: Any) -> Any:
        fused = self.fuses(x)
        if fused and not (self.bn1.uses_batch_statistics or self.bn2.uses_batch_statistics):
            # fixed statistics (inference, a frozen batch norm): each conv folds its batch norm in
            identity = self.downsample(x) if self.has_downsample else x
            out = self.bn1.forward_conv_relu(self.conv1, x)
            return self.bn2.forward_conv_relu(self.conv2, out, residual=identity)
        out = self.conv1(x)
        out = self.bn1.forward_relu(out) if fused else self.relu(self.bn1(out))
        out = self.conv2(out)
        if not fused:
            out = self.bn2(out)
        identity = self.downsample(x) if self.has_downsample else x
        if tuple(out.shape) != tuple(identity.shape):
            raise ValueError(f"BasicBlock: residual {tuple(out.shape)} and shortcut {tuple(identity.shape)} differ")
        return self.bn2.forward_relu(out, residual=identity) if fused else F.relu(out + identity)

    def fuses(self, x: Any) -> bool:
        """Whether this forward runs bn1 + ReLU and bn2 + shortcut + ReLU as one op each
        (:func:`F.batch_norm_relu <glassnet.functional.batch_norm_relu>`; with fixed batch-norm
        statistics, as in inference, each with its convolution: :func:`F.conv2d_bn_relu
        <glassnet.functional.conv2d_bn_relu>`): under the fast backend, on NumPy data, when no
        hook watches conv1, bn1, relu, conv2 or bn2.

        batch_norm_relu's output is the same bit for bit and its gradients to rounding, and it
        reads and writes the activations once where the three steps do it five times;
        conv2d_bn_relu folds the batch norm into the convolution (equal to rounding) and, for a
        Winograd layer, adds the shortcut and applies ReLU as the convolution writes. Under
        ``use_backend("reference")``, in a shape-only trace and whenever a hook would miss an
        output, the block runs the textbook steps one by one.
        """
        children = (self.conv1, self.bn1, self.relu, self.conv2, self.bn2)
        watched = any(m._forward_hooks or m._forward_pre_hooks for m in children)
        return get_backend() == "fast" and isinstance(getattr(x, "data", None), np.ndarray) and not watched

    def extra_repr(self) -> str:
        return f"{self.inplanes}, {self.planes}" + (f", stride={self.stride}" if self.stride != 1 else "")


class ResNet(Sequential):
    """A ResNet: the stem, the stages ``layer1``…, ``avgpool``, ``flatten`` and ``fc``, in order.

    It is a :class:`Sequential` with named children, so its forward chains them (autograd
    and the summary follow that forward); ``flatten`` has no parameters, so the state dict is
    torchvision's. Build one with :func:`resnet18`, :func:`resnet34` or :func:`resnet20`.
    """

    def __init__(self, layers: OrderedDict[str, Module], name: str = "ResNet") -> None:
        super().__init__(layers)
        self.name = name


def _make_layer(
    inplanes: int, planes: int, blocks: int, stride: int, shortcut: str, gen: np.random.Generator
) -> Sequential:
    downsample: Module | None = None
    if stride != 1 or inplanes != planes:
        if shortcut == "B":
            downsample = Sequential(conv1x1(inplanes, planes, stride, rng=gen), BatchNorm2d(planes))
        else:
            downsample = ZeroPadShortcut(inplanes, planes, stride)
    layers: list[Module] = [BasicBlock(inplanes, planes, stride, downsample, rng=gen)]
    layers += [BasicBlock(planes, planes, rng=gen) for _ in range(1, blocks)]
    return Sequential(*layers)


def _imagenet_resnet(blocks: list[int], num_classes: int, in_channels: int, rng: Any, name: str) -> ResNet:
    gen = make_rng(rng)
    parts: OrderedDict[str, Module] = OrderedDict(
        conv1=Conv2d(in_channels, 64, 7, stride=2, padding=3, bias=False, init="he", rng=gen),
        bn1=BatchNorm2d(64),
        relu=ReLU(),
        maxpool=MaxPool2d(3, stride=2, padding=1),
    )
    inplanes = 64
    for i, (planes, n) in enumerate(zip((64, 128, 256, 512), blocks, strict=True)):
        parts[f"layer{i + 1}"] = _make_layer(inplanes, planes, n, 1 if i == 0 else 2, "B", gen)
        inplanes = planes
    parts["avgpool"] = AdaptiveAvgPool2d(1)
    parts["flatten"] = Flatten()
    parts["fc"] = Linear(512, num_classes, rng=gen)
    return ResNet(parts, name)


def resnet18(num_classes: int = 1000, in_channels: int = 3, rng: Any = None) -> ResNet:
    """ResNet-18 (torchvision layout, [2, 2, 2, 2] BasicBlocks): 11,689,512 parameters for 1000 classes.

    Input [N, in_channels, 224, 224] → logits [N, num_classes] (any size ≥ 32 works).
    """
    return _imagenet_resnet([2, 2, 2, 2], num_classes, in_channels, rng, "ResNet-18")


def resnet34(num_classes: int = 1000, in_channels: int = 3, rng: Any = None) -> ResNet:
    """ResNet-34 (torchvision layout, [3, 4, 6, 3] BasicBlocks): 21,797,672 parameters for 1000 classes."""
    return _imagenet_resnet([3, 4, 6, 3], num_classes, in_channels, rng, "ResNet-34")


def resnet_cifar(
    depth: int = 20, num_classes: int = 10, in_channels: int = 3, shortcut: str = "B", rng: Any = None
) -> ResNet:
    """CIFAR ResNet of ``depth`` = 6n + 2 layers: 3×3 conv 16, stages of n BasicBlocks with
    16/32/64 channels (strides 1/2/2), global average pool, fc.

    ``shortcut='B'``: 1×1 conv + BN projection where the shape changes; ``'A'``: zero
    padding (parameter-free, as in the paper's CIFAR experiments).
    """
    if (depth - 2) % 6 or depth < 8:
        raise ValueError(f"resnet_cifar: depth must be 6n + 2 (20, 32, 44, 56, 110), got {depth}")
    if shortcut not in ("A", "B"):
        raise ValueError(f"resnet_cifar: shortcut must be 'A' or 'B', got {shortcut!r}")
    n = (depth - 2) // 6
    gen = make_rng(rng)
    parts: OrderedDict[str, Module] = OrderedDict(
        conv1=conv3x3(in_channels, 16, rng=gen),
        bn1=BatchNorm2d(16),
        relu=ReLU(),
    )
    inplanes = 16
    for i, planes in enumerate((16, 32, 64)):
        parts[f"layer{i + 1}"] = _make_layer(inplanes, planes, n, 1 if i == 0 else 2, shortcut, gen)
        inplanes = planes
    parts["avgpool"] = AdaptiveAvgPool2d(1)
    parts["flatten"] = Flatten()
    parts["fc"] = Linear(64, num_classes, rng=gen)
    return ResNet(parts, f"ResNet-{depth}" + (" (option A)" if shortcut == "A" else ""))


def resnet20(num_classes: int = 10, in_channels: int = 3, shortcut: str = "B", rng: Any = None) -> ResNet:
    """ResNet-20 for 32×32 inputs (He et al. 2015, CIFAR-10): 272,474 parameters with
    projection shortcuts (option B, default), 269,722 with zero padding (option A)."""
    return resnet_cifar(20, num_classes, in_channels, shortcut, rng)
