"""Channels-first (CHW, NCHW: glassnet, PyTorch) and channels-last (HWC, NHWC: Keras's
``input_shape=(32, 32, 3)``, PIL, image files) conversions, and the check that a model
was given the layout it expects.

* ``hwc_to_chw``: [H, W, C] → [C, H, W], i.e. ``x.transpose(2, 0, 1)``;
* ``chw_to_hwc``: [C, H, W] → [H, W, C], i.e. ``x.transpose(1, 2, 0)``;
* ``nhwc_to_nchw``: [N, H, W, C] → [N, C, H, W], i.e. ``x.transpose(0, 3, 1, 2)``;
* ``nchw_to_nhwc``: [N, C, H, W] → [N, H, W, C], i.e. ``x.transpose(0, 2, 3, 1)``;
* ``to_channels_first`` / ``to_channels_last``: either of the above, chosen by rank (3 or 4).

Each returns a new C-contiguous array (the dtype is kept), so later in-place work on it
never writes through to the source. A grey image without a channel axis ([H, W]) is
not accepted: add the axis first (``x[None]`` for CHW, ``x[..., None]`` for HWC).
"""

from __future__ import annotations

from typing import Any

import numpy as np

__all__ = [
    "LayoutError",
    "check_chw",
    "chw_to_hwc",
    "hwc_to_chw",
    "looks_channels_last",
    "nchw_to_nhwc",
    "nhwc_to_nchw",
    "to_channels_first",
    "to_channels_last",
]


class LayoutError(ValueError):
    """An array in the wrong layout (channels last where channels first are expected, or the wrong rank)."""


def _need(x: Any, ndim: int | tuple[int, ...], name: str, want: str) -> np.ndarray:
    arr = np.asarray(x)
    dims = (ndim,) if isinstance(ndim, int) else ndim
    if arr.ndim not in dims:
        raise LayoutError(f"{name}: expected {want}, got an array of shape {tuple(arr.shape)}")
    return arr


def hwc_to_chw(x: Any) -> np.ndarray:
    """[H, W, C] → [C, H, W] (one image, channels last → channels first)."""
    return _need(x, 3, "hwc_to_chw", "one image [H, W, C]").transpose(2, 0, 1).copy(order="C")


def chw_to_hwc(x: Any) -> np.ndarray:
    """[C, H, W] → [H, W, C] (one image, channels first → channels last)."""
    return _need(x, 3, "chw_to_hwc", "one image [C, H, W]").transpose(1, 2, 0).copy(order="C")


def nhwc_to_nchw(x: Any) -> np.ndarray:
    """[N, H, W, C] → [N, C, H, W] (a batch, channels last → channels first)."""
    return _need(x, 4, "nhwc_to_nchw", "a batch [N, H, W, C]").transpose(0, 3, 1, 2).copy(order="C")


def nchw_to_nhwc(x: Any) -> np.ndarray:
    """[N, C, H, W] → [N, H, W, C] (a batch, channels first → channels last)."""
    return _need(x, 4, "nchw_to_nhwc", "a batch [N, C, H, W]").transpose(0, 2, 3, 1).copy(order="C")


def to_channels_first(x: Any) -> np.ndarray:
    """[H, W, C] → [C, H, W] or [N, H, W, C] → [N, C, H, W], by rank."""
    arr = _need(x, (3, 4), "to_channels_first", "[H, W, C] or [N, H, W, C]")
    return hwc_to_chw(arr) if arr.ndim == 3 else nhwc_to_nchw(arr)


def to_channels_last(x: Any) -> np.ndarray:
    """[C, H, W] → [H, W, C] or [N, C, H, W] → [N, H, W, C], by rank."""
    arr = _need(x, (3, 4), "to_channels_last", "[C, H, W] or [N, C, H, W]")
    return chw_to_hwc(arr) if arr.ndim == 3 else nchw_to_nhwc(arr)


def _shape(s: tuple[int, ...]) -> str:
    return "[" + ", ".join(map(str, s)) + "]"


def looks_channels_last(shape: tuple[int, ...], channels: int) -> bool:
    """Whether ``shape`` ([H, W, C] or [N, H, W, C]) has ``channels`` last but not first
    (the channel axis of CHW / NCHW). Equal sizes on both axes count as channels first."""
    if len(shape) not in (3, 4):
        return False
    first = shape[0] if len(shape) == 3 else shape[1]
    return shape[-1] == channels and first != channels


def check_chw(x: Any, expected_channels: int, name: str = "model") -> Any:
    """Check that ``x`` is [C, H, W] or [N, C, H, W] with C = ``expected_channels``; return ``x`` unchanged.

    Channels-last input ([H, W, C], [N, H, W, C]) raises :class:`LayoutError` whose
    message says how to convert it; other shapes raise one that shows the shape expected.
    Only the shape is read (``x`` may be any array-like with ``.shape``).
    """
    shape = tuple(int(d) for d in np.shape(x))
    c = expected_channels
    if len(shape) in (3, 4):
        axis = 0 if len(shape) == 3 else 1
        if shape[axis] == c:
            return x
        if looks_channels_last(shape, c):
            if len(shape) == 4:
                fix = "glassnet.data.layout.nhwc_to_nchw(x) (or x.transpose(0, 3, 1, 2))"
                want = f"[N, {c}, H, W]"
            else:
                fix = "glassnet.data.layout.hwc_to_chw(x) (or x.transpose(2, 0, 1))"
                want = f"[{c}, H, W]"
            raise LayoutError(
                f"{name} expects channels-first input {want} but got {_shape(shape)}, which looks channels-last "
                f"(HWC, as Keras's input_shape=(H, W, {c}) or an image file gives it): convert it with {fix}"
            )
    want = f"[N, {c}, H, W] (or one image [{c}, H, W])"
    raise LayoutError(f"{name} expects {want}, got shape {_shape(shape)}")
