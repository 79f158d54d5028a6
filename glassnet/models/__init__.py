"""The model zoo: classic CNNs, each written as its forward (autograd gives backward, a trace the summary table).

================  ========================  =============================================
builder           default input (C, H, W)   parameters (default classes)
================  ========================  =============================================
``lenet5``        1×28×28                   61,706 (10)
``tf_cnn``        3×32×32 (or 1×28×28)      122,570 (10); convolutions 56,320
``tinyvgg``       3×64×64 (or 28, 32)       19,920 (10)
``alexnet``       3×227×227                 62,378,344 (1000)
``vgg11``         3×224×224                 132,863,336 (1000)
``vgg16``         3×224×224                 138,357,544 (1000)
``resnet18``      3×224×224                 11,689,512 (1000)
``resnet34``      3×224×224                 21,797,672 (1000)
``resnet20``      3×32×32                   272,474 (10; option A shortcuts: 269,722)
================  ========================  =============================================

Every builder takes ``num_classes``, ``in_channels`` and ``rng`` (seed or Generator).
The torchvision-style models (AlexNet, VGG, ResNet) use torchvision's module names,
so their state-dict keys and shapes are torchvision's. :func:`get_model` builds a
model by name; :func:`replace_head` and :func:`freeze_features` prepare transfer
learning.
"""

from .alexnet import alexnet
from .efficientnet import EfficientNetLite, MBConvBlock, efficientnet_lite0, efficientnet_lite1, efficientnet_lite2
from .googlenet import GoogLeNet, Inception, googlenet
from .lenet import lenet5
from .registry import MODELS, default_input_shape, get_model
from .resnet import BasicBlock, ResNet, ZeroPadShortcut, resnet18, resnet20, resnet34, resnet_cifar
from .small import tf_cnn, tinyvgg
from .transfer import find_head, freeze_features, replace_head
from .vgg import VGG, vgg, vgg11, vgg16

__all__ = [
    "EfficientNetLite",
    "GoogLeNet",
    "Inception",
    "MBConvBlock",
    "efficientnet_lite0",
    "efficientnet_lite1",
    "efficientnet_lite2",
    "googlenet",
    "MODELS",
    "VGG",
    "BasicBlock",
    "ResNet",
    "ZeroPadShortcut",
    "alexnet",
    "default_input_shape",
    "find_head",
    "freeze_features",
    "get_model",
    "lenet5",
    "replace_head",
    "resnet18",
    "resnet20",
    "resnet34",
    "resnet_cifar",
    "tf_cnn",
    "tinyvgg",
    "vgg",
    "vgg11",
    "vgg16",
]
