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

Every enumeration of taps in glassnet (the reference ops and the fast kernels of
:mod:`glassnet.fast`) comes from here: :func:`axis_taps` along one axis, :func:`taps`
over the window, :func:`tap_offsets` in a flattened row-major buffer.
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import numpy as np

from ..backend import array_namespace, device_of
from ._args import Pads, Pair


def axis_taps(k: int, s: int, d: int, out: int) -> list[slice]:
    """The k strided slices of one axis that a window's taps read: tap i is ``i·d : i·d + s·(out−1) + 1 : s``.

    Element o of tap i's slice is padded cell ``o·s + i·d``, the tap's cell in window o.
    """
    return [slice(i * d, i * d + s * (out - 1) + 1, s) for i in range(k)]


def taps(kernel: Pair, stride: Pair, dilation: Pair, out_hw: Pair) -> Iterator[tuple[int, tuple[slice, slice]]]:
    """Yield ``(t, (rows, cols))`` for every kernel tap in row-major order.

    ``t = i·k_w + j`` is the tap's flat index; ``x[..., rows, cols]`` is the
    (H_out, W_out) grid of input cells that tap (i, j) sees at every output position.
    """
    rows = axis_taps(kernel[0], stride[0], dilation[0], out_hw[0])
    cols = axis_taps(kernel[1], stride[1], dilation[1], out_hw[1])
    for i, r in enumerate(rows):
        for j, c in enumerate(cols):
            yield i * kernel[1] + j, (r, c)


def tap_offsets(kernel: Pair, dilation: Pair, row_len: int) -> list[int]:
    """Offsets of the taps (row-major) from a window's first cell in a row-major buffer ``row_len`` wide.

    Tap (i, j) lies ``i·d_h·row_len + j·d_w`` elements after tap (0, 0).
    """
    return [i * dilation[0] * row_len + j * dilation[1] for i in range(kernel[0]) for j in range(kernel[1])]


def axis_is_real(n: int, pad_lo: int, k: int, s: int, d: int, out: int) -> list[list[bool]]:
    """Per tap along one axis, per window: does the tap read a real cell (not padding)?

    Plain lists (geometry, not data): tap i of window o reads input cell ``o·s + i·d − pad_lo``.
    """
    return [[0 <= o * s + i * d - pad_lo < n for o in range(out)] for i in range(k)]


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


def pad2d(x: Any, pads: Pads, value: float = 0.0, extra: Pair = (0, 0)) -> Any:
    """Pad the last two axes: ``((top, bottom + extra_h), (left, right + extra_w))``, filled with ``value``.

    Returns ``x`` itself (no copy) when there is nothing to pad; otherwise a new array
    of ``x``'s namespace, dtype and device.
    """
    (t, b), (left, r) = pads
    b += extra[0]
    r += extra[1]
    if t == b == left == r == 0:
        return x
    xp = array_namespace(x)
    h, w = x.shape[-2:]
    out = xp.full((*x.shape[:-2], h + t + b, w + left + r), value, dtype=x.dtype, device=device_of(x))
    out[..., t : t + h, left : left + w] = x
    return out


def unpad2d(x: Any, pads: Pads, size: Pair) -> Any:
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
        shape = tuple(x.shape) if hasattr(x, "shape") else np.shape(x)
        raise ValueError(f"{op} expected a 4-D input [N, C, H, W], got shape {shape}")
