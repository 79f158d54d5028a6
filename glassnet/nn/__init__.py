"""Modules (layers, containers) built on :mod:`glassnet.functional`, named as in ``torch.nn``."""

from . import init
from .containers import Concat, Residual, Sequential
from .init import manual_seed
from .layers import (
    AdaptiveAvgPool2d,
    AvgPool2d,
    BatchNorm1d,
    BatchNorm2d,
    Conv2d,
    Dense,
    Dropout,
    Flatten,
    Identity,
    LeakyReLU,
    Linear,
    LocalResponseNorm,
    LogSoftmax,
    MaxPool2d,
    ReLU,
    ReLU6,
    Sigmoid,
    Softmax,
    Tanh,
    no_grad,
)
from .module import Module, Parameter, RemovableHandle

__all__ = [
    "AdaptiveAvgPool2d",
    "AvgPool2d",
    "BatchNorm1d",
    "BatchNorm2d",
    "Concat",
    "Conv2d",
    "Dense",
    "Dropout",
    "Flatten",
    "Identity",
    "LeakyReLU",
    "Linear",
    "LocalResponseNorm",
    "LogSoftmax",
    "MaxPool2d",
    "Module",
    "Parameter",
    "ReLU",
    "ReLU6",
    "RemovableHandle",
    "Residual",
    "Sequential",
    "Sigmoid",
    "Softmax",
    "Tanh",
    "init",
    "manual_seed",
    "no_grad",
]
