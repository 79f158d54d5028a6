"""Argument normalisation, done once per call (the Equinox habit).

An int, a pair, per-side pairs, ``'same'`` and ``'valid'`` all become explicit
per-side paddings ``((top, bottom), (left, right))``; errors echo the value received.
"""

from __future__ import annotations

import math
from typing import Any

import numpy as np

Pair = tuple[int, int]
Pads = tuple[Pair, Pair]


def is_int(v: Any) -> bool:
    """A Python or NumPy integer, not a bool."""
    return isinstance(v, int | np.integer) and not isinstance(v, bool)


def shape_of(a: Any) -> tuple[int, ...]:
    """The shape of an array of any namespace (or of a shape-only stand-in); ``np.shape`` for sequences."""
    return tuple(a.shape) if hasattr(a, "shape") else tuple(np.shape(a))


def check_grad_shape(op: str, grad: Any, shape: tuple[int, ...]) -> None:
    """Raise ``ValueError`` unless the upstream gradient has the output's shape."""
    if tuple(grad.shape) != tuple(shape):
        raise ValueError(f"{op} backward: expected grad of shape {tuple(shape)}, got {tuple(grad.shape)}")


def pair(value: Any, name: str, minimum: int = 1) -> Pair:
    """Normalise an int or a pair of ints to ``(h, w)``, each ``>= minimum``."""
    if is_int(value):
        out = (int(value), int(value))
    elif isinstance(value, tuple | list) and len(value) == 2 and all(is_int(v) for v in value):
        out = (int(value[0]), int(value[1]))
    else:
        raise TypeError(f"{name} must be an int or a pair of ints, got {value!r}")
    if out[0] < minimum or out[1] < minimum:
        raise ValueError(f"{name} must be >= {minimum}, got {value!r}")
    return out


def conv_padding(padding: Any, kernel: Pair, stride: Pair, dilation: Pair, size: Pair) -> Pads:
    """Normalise a conv ``padding`` argument to ``((top, bottom), (left, right))``.

    * ``int p`` or ``'valid'`` (p = 0): p on every side;
    * ``(ph, pw)``: ph above and below, pw left and right;
    * ``((top, bottom), (left, right))``: explicit, possibly asymmetric;
    * ``'same'``: the output keeps ``ceil(n / stride)`` positions. For stride 1 this
      pads ``d·(k−1)`` in total, half before and the rest after (PyTorch's rule: for an
      even kernel the extra row/column goes to the bottom/right). For stride > 1 it
      follows TensorFlow's 'SAME' (total = max((out−1)·s + d·(k−1) + 1 − n, 0)).
    """
    if isinstance(padding, str):
        if padding == "valid":
            return ((0, 0), (0, 0))
        if padding == "same":
            sides = []
            for n, k, s, d in zip(size, kernel, stride, dilation, strict=True):
                out = -(-n // s)
                total = max((out - 1) * s + d * (k - 1) + 1 - n, 0)
                sides.append((total // 2, total - total // 2))
            return (sides[0], sides[1])
        raise ValueError(f"padding must be an int, a pair, per-side pairs, 'same' or 'valid', got {padding!r}")
    if is_int(padding):
        p = int(padding)
        if p < 0:
            raise ValueError(f"padding must be >= 0, got {padding!r}")
        return ((p, p), (p, p))
    if isinstance(padding, tuple | list) and len(padding) == 2:
        if all(is_int(v) for v in padding):
            ph, pw = int(padding[0]), int(padding[1])
            if ph < 0 or pw < 0:
                raise ValueError(f"padding must be >= 0, got {padding!r}")
            return ((ph, ph), (pw, pw))
        if all(isinstance(v, tuple | list) and len(v) == 2 and all(is_int(u) for u in v) for v in padding):
            (t, b), (left, r) = padding
            if min(t, b, left, r) < 0:
                raise ValueError(f"padding must be >= 0, got {padding!r}")
            return ((int(t), int(b)), (int(left), int(r)))
    raise ValueError(
        f"padding must be an int, a pair, per-side pairs ((top, bottom), (left, right)), "
        f"'same' or 'valid', got {padding!r}"
    )


def window_out(n: int, k: int, s: int, pad_lo: int, pad_hi: int, d: int = 1, ceil_mode: bool = False) -> int:
    """Number of window positions along one axis.

    ``floor((n + pad_lo + pad_hi − d·(k−1) − 1) / s) + 1``, the lectures'
    ``(W − F + 2P)/S + 1`` generalised to dilation and asymmetric padding. With
    ``ceil_mode`` the division rounds up, but (as in PyTorch) a last window that would
    start inside the right padding is dropped. Returns 0 or less when no window fits.
    """
    span = d * (k - 1) + 1
    room = n + pad_lo + pad_hi - span
    if room < 0:
        return 0
    out = (math.ceil(room / s) if ceil_mode else room // s) + 1
    if ceil_mode and (out - 1) * s >= n + pad_lo:
        out -= 1
    return out
