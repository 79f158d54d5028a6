"""The kernel view: filter an image with :func:`glassnet.kernels.apply_kernel` and explain
any output pixel as the sum of products of its input window and the kernel."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np

from ..inspect import output_size
from ..kernels import apply_kernel, canonical_name, get_kernel, list_kernels, to_uint8

#: Typed kernels must be one of these sizes (the issue: 3×3 or 5×5).
CUSTOM_SIZES = (3, 5)
MAX_STRIDE = 8
MAX_ABS_WEIGHT = 1e6


@dataclass
class KernelResult:
    """What one kernel application keeps in memory for the pointer: input, kernel, output."""

    image: np.ndarray  # float64 (C, H, W), the input as filtered (0-255 values)
    kernel: np.ndarray  # float64 (F, F) as applied (rotated when flip)
    stride: int
    padding: int
    output: np.ndarray  # float64 (C, H_out, W_out), from the engine


def kernel_catalogue() -> list[dict[str, Any]]:
    from ..kernels import ALIASES

    by_canonical: dict[str, list[str]] = {}
    for alias, target in ALIASES.items():
        by_canonical.setdefault(target, []).append(alias)
    return [
        {"name": n, "matrix": get_kernel(n).tolist(), "aliases": sorted(by_canonical.get(n, []))}
        for n in list_kernels()
    ]


def resolve_kernel(name: str | None, matrix: Any) -> tuple[str, np.ndarray]:
    """(label, matrix) from a catalogue name or a typed 3×3 / 5×5 matrix (ValueError otherwise)."""
    if name is not None and matrix is not None:
        raise ValueError("give either a kernel name or a matrix, not both")
    if name is not None:
        try:
            canon = canonical_name(name)
        except KeyError as e:
            raise ValueError(e.args[0]) from None
        return canon, get_kernel(canon)
    if matrix is None:
        raise ValueError("give a kernel: a name (see /api/kernels) or a 3×3 or 5×5 matrix")
    try:
        k = np.asarray(matrix, dtype=np.float64)
    except (TypeError, ValueError):
        raise ValueError("the kernel matrix must be a list of rows of numbers") from None
    if k.ndim != 2 or k.shape[0] != k.shape[1] or k.shape[0] not in CUSTOM_SIZES:
        raise ValueError(f"a typed kernel must be 3×3 or 5×5, got shape {'×'.join(map(str, k.shape)) or 'scalar'}")
    if not np.all(np.isfinite(k)):
        raise ValueError("the kernel matrix must hold finite numbers")
    if np.abs(k).max() > MAX_ABS_WEIGHT:
        raise ValueError(f"kernel weights must be at most {MAX_ABS_WEIGHT:g} in magnitude")
    return "custom", k


def arithmetic(n: int, f: int, p: int, s: int, axis: str) -> dict[str, Any]:
    """The lectures' (W − F + 2P)/S + 1 with the numbers filled in, for one axis."""
    sym = "W" if axis == "width" else "H"
    out = output_size(n, f, s, p)
    num = n - f + 2 * p
    exact = num % s == 0
    text = f"({sym} − F + 2P)/S + 1 = ({n} − {f} + 2·{p})/{s} + 1 = "
    text += f"{num}/{s} + 1 = {num // s + 1}" if exact else f"⌊{num}/{s}⌋ + 1 = {num // s} + 1 = {out}"
    return {
        "axis": axis,
        "n": n,
        "F": f,
        "P": p,
        "S": s,
        "numerator": num,
        "exact": exact,
        "out": out,
        "text": text,
        "note": None if exact else f"{num} is not a multiple of {s}: the incomplete last window is dropped",
    }


def display_pixels(out: np.ndarray, mode: str, kernel: np.ndarray) -> tuple[np.ndarray, str]:
    """uint8 (H, W[, 3]) picture of the raw output (C, H, W) and the mode used."""
    if mode == "auto":
        mode = "clip" if abs(float(kernel.sum()) - 1.0) < 1e-9 else "abs"
    if mode == "clip":
        pic = to_uint8(out)
    elif mode == "abs":
        pic = to_uint8(np.abs(out))
    elif mode == "normalize":
        lo, hi = float(out.min()), float(out.max())
        pic = to_uint8((out - lo) / (hi - lo) * 255.0) if hi > lo else np.zeros(out.shape, np.uint8)
    else:
        raise ValueError(f"display must be 'auto', 'clip', 'abs' or 'normalize', got {mode!r}")
    pic = pic[0] if pic.shape[0] == 1 else np.transpose(pic, (1, 2, 0))
    return pic, mode


def run_kernel(image: np.ndarray, kernel: np.ndarray, stride: int, padding: int, flip: bool) -> KernelResult:
    """Filter uint8 (H, W) or (H, W, 3) with the engine; ValueError when the window does not fit."""
    h, w = image.shape[:2]
    f = kernel.shape[0]
    if not 1 <= stride <= MAX_STRIDE:
        raise ValueError(f"stride must be between 1 and {MAX_STRIDE}, got {stride}")
    if not 0 <= padding <= f:
        raise ValueError(f"padding must be between 0 and the kernel size {f}, got {padding}")
    output_size(h, kernel.shape[0], stride, padding)  # raises a clear ValueError when it does not fit
    output_size(w, kernel.shape[1], stride, padding)
    out = apply_kernel(image.astype(np.float64), kernel, stride=stride, padding=padding, flip=flip)
    chw = out[None] if out.ndim == 2 else np.transpose(out, (2, 0, 1))
    img = image[None] if image.ndim == 2 else np.transpose(image, (2, 0, 1))
    applied = np.rot90(kernel, 2) if flip else kernel
    return KernelResult(img.astype(np.float64), np.ascontiguousarray(applied), stride, padding, chw)


def window_at(
    image: np.ndarray, y0: int, x0: int, size: tuple[int, int], dilation: tuple[int, int] = (1, 1)
) -> tuple[np.ndarray, np.ndarray]:
    """The (C, kh, kw) window of ``image`` (C, H, W) whose top-left tap is at (y0, x0), taps
    ``dilation`` apart, in float64, with zeros where it reaches into the padding; and the (kh, kw)
    mask of the taps that fall inside the image. The kernel view and the activations view's
    "how this unit was computed" both read their windows here."""
    c, h, w = image.shape
    kh, kw = size
    window = np.zeros((c, kh, kw))
    inside = np.zeros((kh, kw), dtype=bool)
    ys, xs = y0 + np.arange(kh) * dilation[0], x0 + np.arange(kw) * dilation[1]
    vy, vx = (ys >= 0) & (ys < h), (xs >= 0) & (xs < w)
    inside[np.ix_(vy, vx)] = True
    window[:, inside] = np.asarray(image, dtype=np.float64)[:, ys[vy]][:, :, xs[vx]].reshape(c, -1)
    return window, inside


def explain_pixel(res: KernelResult, y: int, x: int) -> dict[str, Any]:
    """The input window, the kernel, their products and the sum behind output pixel (y, x)."""
    c, ho, wo = res.output.shape
    if not (0 <= y < ho and 0 <= x < wo):
        raise ValueError(f"output pixel ({y}, {x}) is outside the {ho}×{wo} output")
    kh, kw = res.kernel.shape
    y0, x0 = y * res.stride - res.padding, x * res.stride - res.padding
    window, inside = window_at(res.image, y0, x0, (kh, kw))
    products = window * res.kernel
    sums = products.sum(axis=(1, 2))
    channels = []
    for ch in range(c):
        terms = [f"{_fmt(window[ch, i, j])}·{_fmt(res.kernel[i, j], paren=True)}" for i in range(kh) for j in range(kw)]
        channels.append(
            {
                "window": window[ch].tolist(),
                "products": np.round(products[ch], 6).tolist(),
                "sum": float(sums[ch]),
                "output": float(res.output[ch, y, x]),
                "expression": " + ".join(terms) + f" = {_fmt(float(sums[ch]))}",
            }
        )
    return {
        "y": y,
        "x": x,
        "origin": [int(y0), int(x0)],
        "size": [int(kh), int(kw)],
        "inside": inside.tolist(),
        "kernel": res.kernel.tolist(),
        "channels": channels,
        "names": ["grey"] if c == 1 else ["R", "G", "B"][:c],
    }


def _fmt(v: float, paren: bool = False) -> str:
    if float(v).is_integer():
        s = str(int(v))
    else:
        s = f"{v:.4f}".rstrip("0").rstrip(".")
    return f"({s})" if paren and s.startswith("-") else s
