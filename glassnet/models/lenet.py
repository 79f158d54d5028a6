"""LeNet-5 (LeCun et al., 1998): 6 and 16 filters of 5×5, then 120-84-10.

Input [N, 1, 28, 28] (padding 2 on the first convolution gives LeNet's 32×32 view):

    conv 6@5×5 p2 → 6×28×28 → pool 2×2 → 6×14×14 → conv 16@5×5 → 16×10×10
    → pool 2×2 → 16×5×5 → flatten 400 → 120 → 84 → num_classes

``variant='modern'`` uses ReLU and max pooling, ``'classic'`` tanh and average pooling.
"""

from __future__ import annotations

from typing import Any

from ..nn import AvgPool2d, Conv2d, Flatten, Linear, MaxPool2d, ReLU, Sequential, Tanh
from ..nn.init import make_rng


def lenet5(num_classes: int = 10, in_channels: int = 1, variant: str = "modern", rng: Any = None) -> Sequential:
    """LeNet-5 for 28×28 inputs. Parameters: 61,706 for 10 classes."""
    if variant not in ("modern", "classic"):
        raise ValueError(f"lenet5: variant must be 'modern' or 'classic', got {variant!r}")
    gen = make_rng(rng)
    act = ReLU if variant == "modern" else Tanh
    pool = MaxPool2d if variant == "modern" else AvgPool2d
    model = Sequential(
        Conv2d(in_channels, 6, 5, padding=2, rng=gen),
        act(),
        pool(2),
        Conv2d(6, 16, 5, rng=gen),
        act(),
        pool(2),
        Flatten(),
        Linear(16 * 5 * 5, 120, rng=gen),
        act(),
        Linear(120, 84, rng=gen),
        act(),
        Linear(84, num_classes, rng=gen),
    )
    model.name = "LeNet-5" if variant == "modern" else "LeNet-5 (classic)"
    return model
