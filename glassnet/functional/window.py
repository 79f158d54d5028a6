"""The one sliding-window primitive shared by convolution and every pooling.

A k_h×k_w window sliding with stride s and dilation d over a padded input visits, for
each kernel tap (i, j), the strided sub-grid

    x_padded[..., i·d_h : i·d_h + s_h·(H_out−1) + 1 : s_h,  j·d_w : j·d_w + s_w·(W_out−1) + 1 : s_w]

of shape (..., H_out, W_out). Max pooling is the element-wise maximum over the taps,
average pooling their mean, convolution their weighted sum over channels (an
im2col built from the taps, multiplied by the weight matrix). Backward passes add
the output gradient back into the same tap sub-grids. Working tap by tap keeps every
copy a plain strided slice (no Python loop over output positions) and lets backward
pay only for k_h·k_w passes over the output.
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import numpy as np

from ._args import Pads, Pair


def taps(kernel: Pair, stride: Pair, dilation: Pair, out_hw: Pair) -> Iterator[tuple[int, tuple[slice, slice]]]:
    """Yield ``(t, (rows, cols))`` for every kernel tap in row-major order.

    ``t = i·k_w + j`` is the tap's flat index; ``x[..., rows, cols]`` is the
    (H_out, W_out) grid of input cells that tap (i, j) sees at every output position.
    """
    (kh, kw), (sh, sw), (dh, dw), (ho, wo) = kernel, stride, dilation, out_hw
    for i in range(kh):
        rows = slice(i * dh, i * dh + sh * (ho - 1) + 1, sh)
        for j in range(kw):
            cols = slice(j * dw, j * dw + sw * (wo - 1) + 1, sw)
            yield i * kw + j, (rows, cols)


def padded_extent(
    size: Pair, kernel: Pair, stride: Pair, dilation: Pair, pads: Pads, out_hw: Pair
) -> tuple[Pair, Pair]:
    """Padded height/width and the extra bottom/right cells ceil-mode windows need.

    Returns ``((H_p, W_p), (extra_h, extra_w))`` where ``H_p`` includes the extra rows
    that a partial last window (``ceil_mode=True``) reads past the padding.
    """
    out = []
    extra = []
    for n, k, s, d, (lo, hi), o in zip(size, kernel, stride, dilation, pads, out_hw, strict=True):
        need = (o - 1) * s + d * (k - 1) + 1
        have = n + lo + hi
        e = max(need - have, 0)
        extra.append(e)
        out.append(have + e)
    return (out[0], out[1]), (extra[0], extra[1])


def pad2d(x: np.ndarray, pads: Pads, value: float = 0.0, extra: Pair = (0, 0)) -> np.ndarray:
    """Pad the last two axes: ``((top, bottom + extra_h), (left, right + extra_w))``.

    Returns ``x`` itself (no copy) when there is nothing to pad.
    """
    (t, b), (left, r) = pads
    b += extra[0]
    r += extra[1]
    if t == b == left == r == 0:
        return x
    h, w = x.shape[-2:]
    out = np.full((*x.shape[:-2], h + t + b, w + left + r), value, dtype=x.dtype)
    out[..., t : t + h, left : left + w] = x
    return out


def unpad2d(x: np.ndarray, pads: Pads, size: Pair) -> np.ndarray:
    """The inverse view of :func:`pad2d`: the (H, W) interior of a padded array."""
    (t, _), (left, _) = pads
    return x[..., t : t + size[0], left : left + size[1]]


def describe_window(kernel: Pair, dilation: Pair) -> str:
    """'5×5' or '3×3 (dilation 2, spans 5×5)' for error messages."""
    kh, kw = kernel
    dh, dw = dilation
    if (dh, dw) == (1, 1):
        return f"{kh}×{kw}"
    return f"{kh}×{kw} (dilation {dh}×{dw}, spans {dh * (kh - 1) + 1}×{dw * (kw - 1) + 1})"


def check_4d(x: Any, op: str) -> None:
    """Raise ``ValueError`` unless ``x`` is a 4-D [N, C, H, W] array."""
    if getattr(x, "ndim", None) != 4:
        raise ValueError(f"{op} expected a 4-D input [N, C, H, W], got shape {tuple(np.shape(x))}")
