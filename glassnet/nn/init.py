"""Weight initialisation schemes, kept separate from construction.

Every layer with weights has ``reset_parameters(scheme=None, rng=None)``; the
schemes are:

* ``'default'``: PyTorch's default for Conv2d/Linear: weight and bias
  ~ U(−1/√fan_in, 1/√fan_in) (kaiming_uniform with a = √5);
* ``'he'`` (Kaiming normal, for ReLU nets): weight ~ N(0, 2/fan_in), bias 0;
* ``'he_uniform'``: U(−√(6/fan_in), √(6/fan_in)), bias 0;
* ``'glorot'`` (Xavier uniform, for tanh/sigmoid nets): U(±√(6/(fan_in+fan_out))), bias 0;
* ``'glorot_normal'``: N(0, 2/(fan_in+fan_out)), bias 0.

Randomness is explicit: ``rng`` is an int seed or a ``numpy.random.Generator``;
without one the module-wide generator (:func:`manual_seed`) is used, so a
program that seeds once is reproducible.

Construction without initialisation: inside ``with skip_init():`` the layers built
(or re-initialised) draw nothing; their weights and biases are zeros, which costs no
time even for VGG-16's 138 M parameters (the pages are only touched when written).
That is enough to look at a model (:func:`glassnet.summary`, :func:`glassnet.trace`,
the explorer's architecture view) or to load a state dict into it; call
``model.reset_parameters()`` afterwards to initialise it for training. (PyTorch's
``torch.nn.utils.skip_init`` and meta device serve the same purpose.)
"""

from __future__ import annotations

import contextlib
import math
import threading
from collections.abc import Iterator
from typing import Any

import numpy as np

SCHEMES = ("default", "he", "he_uniform", "glorot", "glorot_normal")
_global_rng = np.random.default_rng(0)


def manual_seed(seed: int) -> None:
    """Seed the generator used when no ``rng`` is given (initialisation, dropout)."""
    global _global_rng
    _global_rng = np.random.default_rng(seed)


def make_rng(rng: Any = None) -> np.random.Generator:
    """An int seed or a Generator → Generator; None → a child of the global generator."""
    if rng is None:
        return np.random.default_rng(_global_rng.integers(2**63))
    if isinstance(rng, np.random.Generator):
        return rng
    if isinstance(rng, int | np.integer):
        return np.random.default_rng(int(rng))
    raise TypeError(f"rng must be None, an int seed or a numpy.random.Generator, got {rng!r}")


_skipping = threading.local()


@contextlib.contextmanager
def skip_init() -> Iterator[None]:
    """Inside the block (in this thread), :func:`init_weight` and :func:`init_bias` return zeros
    and draw no random numbers, so models are built without paying for initialisation::

        with glassnet.nn.init.skip_init():
            model = vgg16()                     # shapes only: weights are zeros
        print(glassnet.summary(model, (3, 224, 224)))
    """
    previous = init_skipped()
    _skipping.on = True
    try:
        yield
    finally:
        _skipping.on = previous


def init_skipped() -> bool:
    """Whether this thread is inside :func:`skip_init`."""
    return getattr(_skipping, "on", False)


def fans(shape: tuple[int, ...]) -> tuple[int, int]:
    """(fan_in, fan_out) of a weight: [out, in] or [C_out, C_in/groups, kH, kW]."""
    receptive = int(np.prod(shape[2:])) if len(shape) > 2 else 1
    return shape[1] * receptive, shape[0] * receptive


def init_weight(shape: tuple[int, ...], scheme: str, rng: np.random.Generator, dtype: Any) -> np.ndarray:
    """A new weight array of ``shape`` drawn by ``scheme`` (zeros inside :func:`skip_init`)."""
    if scheme not in SCHEMES:
        raise ValueError(f"unknown initialisation scheme {scheme!r}; expected one of {SCHEMES}")
    if init_skipped():
        return np.zeros(shape, dtype=dtype)
    fan_in, fan_out = fans(shape)
    if scheme == "default":
        bound = 1.0 / math.sqrt(fan_in)
        w = rng.uniform(-bound, bound, shape)
    elif scheme == "he":
        w = rng.normal(0.0, math.sqrt(2.0 / fan_in), shape)
    elif scheme == "he_uniform":
        bound = math.sqrt(6.0 / fan_in)
        w = rng.uniform(-bound, bound, shape)
    elif scheme == "glorot":
        bound = math.sqrt(6.0 / (fan_in + fan_out))
        w = rng.uniform(-bound, bound, shape)
    else:  # 'glorot_normal'
        w = rng.normal(0.0, math.sqrt(2.0 / (fan_in + fan_out)), shape)
    return w.astype(dtype)


def init_bias(n: int, fan_in: int, scheme: str, rng: np.random.Generator, dtype: Any) -> np.ndarray:
    """A new bias: U(±1/√fan_in) for 'default', zeros for the other schemes (and inside :func:`skip_init`)."""
    if init_skipped():
        return np.zeros(n, dtype=dtype)
    if scheme == "default":
        bound = 1.0 / math.sqrt(fan_in)
        return rng.uniform(-bound, bound, n).astype(dtype)
    return np.zeros(n, dtype=dtype)
