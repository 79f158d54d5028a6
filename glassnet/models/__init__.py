"""The model zoo."""

from .alexnet import alexnet
from .lenet import lenet5

__all__ = ["alexnet", "lenet5"]
