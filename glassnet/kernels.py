"""Named image kernels from the seed lectures, and a helper to apply them to images.

Every matrix below is copied exactly from the lectures (``shared/seeds/``, cited by
file and 1-based line) or derived from one of them by a stated rule. Matrices are
stored as float64 and are applied as **cross-correlation** (no kernel flip), the
convention every printed worked example in the lectures follows; pass ``flip=True``
to :func:`apply_kernel` for true convolution (the kernel rotated by 180°).

Catalogue (canonical name: matrix -- source; aliases)
-----------------------------------------------------

``identity``            [[0,0,0],[0,1,0],[0,0,0]]
                        -- 000 L264, also the filter on the backprop slide 000 L395-397.
``edge_detection_1``    [[1,0,-1],[0,0,0],[-1,0,1]]  -- 000 L265 ("Edge detection").
``edge_detection_2``    [[0,1,0],[1,-4,1],[0,1,0]]   -- 000 L266; alias ``laplacian``.
``edge_detection_3``    [[-1,-1,-1],[-1,8,-1],[-1,-1,-1]]
                        -- 000 L267 and 001 L38/L44 ("Outline"); alias ``outline``.
``sharpen``             [[0,-1,0],[-1,5,-1],[0,-1,0]]  -- 000 L268.
``box_blur``            (1/9)·ones(3,3) -- 000 L269 ("Box blur (normalized)"), 001 L28-30
                        ("box average"), 004 L534-536; alias ``box_average``.
``gaussian_blur``       (1/16)·[[1,2,1],[2,4,2],[1,2,1]] -- 000 L270 ("approximation").
``emboss``              [[-2,-1,0],[-1,1,1],[0,1,2]] -- 001 L34/L42; unnamed in 004
                        L488-490 and L519-521.
``top_sobel``           [[1,2,1],[0,0,0],[-1,-2,-1]] -- 001 L46-50.
``bottom_sobel``        rot180(top_sobel) = [[-1,-2,-1],[0,0,0],[1,2,1]] (derived).
``left_sobel``          [[1,0,-1],[2,0,-2],[1,0,-1]] -- 001 L52-56 ("Left Sobel"); 003
                        L118-124 ("Horizontal Sobel kernel", used as the "Vertical Edge
                        Detector"); alias ``horizontal_sobel``.
``right_sobel``         rot180(left_sobel) = −left_sobel = [[-1,0,1],[-2,0,2],[-1,0,1]]
                        (derived); it is V. Zhou's "vertical Sobel", the kernel behind
                        000 L282-290's "29" (CONCEPTS F17); alias ``vertical_sobel``.
``vertical_edge``       [[1,0,-1],[1,0,-1],[1,0,-1]] -- 004 L112-121 ("Vertical Edge
                        Detector", Prewitt-like); alias ``vertical_edge_detector``.
``horizontal_edge``     transpose(vertical_edge) = [[1,1,1],[0,0,0],[-1,-1,-1]]
                        (derived); alias ``horizontal_edge_detector``.
``vertical_edge_negative``  [[-1,0,1],[-1,0,1],[-1,0,1]] = −vertical_edge -- 004
                        L509-511 (multi-channel example, kernel 1; unnamed).
``negative_laplacian``  [[0,-1,0],[-1,4,-1],[0,-1,0]] = −edge_detection_2 -- 004 L482-484
                        (single-channel example, kernel 1; unnamed).
``x_pattern``           [[1,0,1],[0,1,0],[1,0,1]] -- 000 L185-187 (subscripts), 004
                        L101-103 (worked-example kernel).
``feature_detector``    [[0,0,1],[1,0,0],[0,1,1]] -- 002 L105-107 (worked-example kernel).
``subscript_kernel``    [[0,1,2],[2,2,0],[0,1,2]] -- 003 L48-50 (subscripts; the
                        conv_arithmetic example kernel).
``example_2x2``         [[-1,1],[0,1]] -- 001 L25 (the 4×4 * 2×2 example).

Seed files: 000 = ``000_9e3113838fd4bfa5.txt``, 001 = ``001_a40faeabb4185747.txt``,
002 = ``002_f8196a0eb32b5169.txt``, 003 = ``003_1ad254f6b269b9b0.txt``,
004 = ``004_f8ae84c783f63e2b.txt``.

Naming conflicts (CONCEPTS P21) -- never infer orientation from a name:

* [[1,0,-1],[2,0,-2],[1,0,-1]] is "Left Sobel" in 001, but "Horizontal Sobel kernel"
  *and* "Vertical Edge Detector" in 003; V. Zhou (the source of 000) calls its negation
  "vertical Sobel". Here it is ``left_sobel`` (001's name, which says where the positive
  weights are); ``horizontal_sobel`` is kept as an alias with 003's name, and
  ``vertical_sobel`` is an alias of the negation ``right_sobel``.
* "Vertical edge detector" is the Prewitt-like kernel of 004 (``vertical_edge``), not a
  Sobel kernel, although 003 uses the same words for ``left_sobel``.
* [[-1,-1,-1],[-1,8,-1],[-1,-1,-1]] is "Edge detection" (third row) in 000 and
  "Outline" in 001: one matrix, two names (``edge_detection_3`` / ``outline``).
* 004's [[0,-1,0],[-1,4,-1],[0,-1,0]] is the negation of 000's Laplacian
  (``negative_laplacian`` = −``laplacian``).
* The 2×1 and 1×2 "horizontal vs vertical" kernels of 000 L221-254 lost their values in
  extraction and are not in the catalogue (non-square kernels work in
  :func:`apply_kernel`).
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from types import MappingProxyType
from typing import Any

import numpy as np

__all__ = [
    "ALIASES",
    "KERNELS",
    "apply_kernel",
    "canonical_name",
    "get_kernel",
    "list_kernels",
    "to_uint8",
]


def _frozen(rows: Any, scale: float = 1.0) -> np.ndarray:
    a = np.asarray(rows, dtype=np.float64) * scale
    a.setflags(write=False)
    return a


_LEFT_SOBEL = np.array([[1, 0, -1], [2, 0, -2], [1, 0, -1]], dtype=np.float64)
_TOP_SOBEL = np.array([[1, 2, 1], [0, 0, 0], [-1, -2, -1]], dtype=np.float64)
_VERTICAL_EDGE = np.array([[1, 0, -1], [1, 0, -1], [1, 0, -1]], dtype=np.float64)

_CATALOGUE: dict[str, np.ndarray] = {
    "identity": _frozen([[0, 0, 0], [0, 1, 0], [0, 0, 0]]),
    "edge_detection_1": _frozen([[1, 0, -1], [0, 0, 0], [-1, 0, 1]]),
    "edge_detection_2": _frozen([[0, 1, 0], [1, -4, 1], [0, 1, 0]]),
    "edge_detection_3": _frozen([[-1, -1, -1], [-1, 8, -1], [-1, -1, -1]]),
    "sharpen": _frozen([[0, -1, 0], [-1, 5, -1], [0, -1, 0]]),
    "box_blur": _frozen(np.full((3, 3), 1.0 / 9.0)),
    "gaussian_blur": _frozen(np.array([[1, 2, 1], [2, 4, 2], [1, 2, 1]]) / 16.0),
    "emboss": _frozen([[-2, -1, 0], [-1, 1, 1], [0, 1, 2]]),
    "top_sobel": _frozen(_TOP_SOBEL),
    "bottom_sobel": _frozen(np.rot90(_TOP_SOBEL, 2)),
    "left_sobel": _frozen(_LEFT_SOBEL),
    "right_sobel": _frozen(np.rot90(_LEFT_SOBEL, 2)),
    "vertical_edge": _frozen(_VERTICAL_EDGE),
    "horizontal_edge": _frozen(_VERTICAL_EDGE.T),
    "vertical_edge_negative": _frozen([[-1, 0, 1], [-1, 0, 1], [-1, 0, 1]]),
    "negative_laplacian": _frozen([[0, -1, 0], [-1, 4, -1], [0, -1, 0]]),
    "x_pattern": _frozen([[1, 0, 1], [0, 1, 0], [1, 0, 1]]),
    "feature_detector": _frozen([[0, 0, 1], [1, 0, 0], [0, 1, 1]]),
    "subscript_kernel": _frozen([[0, 1, 2], [2, 2, 0], [0, 1, 2]]),
    "example_2x2": _frozen([[-1, 1], [0, 1]]),
}

#: Canonical name -> read-only float64 matrix (the arrays cannot be written to).
KERNELS: Mapping[str, np.ndarray] = MappingProxyType(_CATALOGUE)

#: Alternative name -> canonical name (seed names and common synonyms).
ALIASES: Mapping[str, str] = MappingProxyType(
    {
        "laplacian": "edge_detection_2",
        "outline": "edge_detection_3",
        "box_average": "box_blur",
        "horizontal_sobel": "left_sobel",
        "vertical_sobel": "right_sobel",
        "vertical_edge_detector": "vertical_edge",
        "horizontal_edge_detector": "horizontal_edge",
    }
)


def _normalise(name: str) -> str:
    return re.sub(r"[\s\-]+", "_", name.strip().lower())


def list_kernels(include_aliases: bool = False) -> list[str]:
    """Sorted canonical kernel names (plus the aliases when ``include_aliases``)."""
    names = set(_CATALOGUE)
    if include_aliases:
        names |= set(ALIASES)
    return sorted(names)


def canonical_name(name: str) -> str:
    """Resolve a kernel name or alias to its canonical name.

    Matching ignores case and treats spaces and hyphens as underscores
    (``"Top Sobel"`` -> ``"top_sobel"``). Raises ``KeyError`` listing every valid name.
    """
    if not isinstance(name, str):
        raise TypeError(f"kernel name must be a str, got {type(name).__name__}")
    key = _normalise(name)
    if key in _CATALOGUE:
        return key
    if key in ALIASES:
        return ALIASES[key]
    valid = ", ".join(list_kernels(include_aliases=True))
    raise KeyError(f"unknown kernel {name!r}; valid names: {valid}")


def get_kernel(name: str) -> np.ndarray:
    """Return a writable float64 copy of the named kernel, shape (kH, kW)."""
    return np.array(_CATALOGUE[canonical_name(name)], dtype=np.float64, copy=True)


def _as_kernel(kernel: str | Any) -> np.ndarray:
    if isinstance(kernel, str):
        return get_kernel(kernel)
    k = np.asarray(kernel)
    if k.dtype.kind not in "biuf":
        raise TypeError(f"kernel must be numeric, got dtype {k.dtype}")
    if k.ndim != 2 or k.shape[0] == 0 or k.shape[1] == 0:
        raise ValueError(f"kernel must be a non-empty 2-D array (kH, kW), got shape {k.shape}")
    return k.astype(np.float64)


def apply_kernel(
    image: Any,
    kernel: str | Any,
    stride: int | tuple[int, int] = 1,
    padding: Any = "same",
    flip: bool = False,
) -> np.ndarray:
    """Filter an image with one kernel (cross-correlation unless ``flip=True``).

    Args:
        image: (H, W) greyscale, or (H, W, C) channels-last with C in {1, 3, 4}
            (grey, RGB, RGBA). Any numeric dtype; computed in float64.
        kernel: a catalogue name/alias, or a 2-D array-like (kH, kW); any size,
            non-square allowed.
        stride: int or (sH, sW).
        padding: anything ``glassnet.functional.conv2d`` accepts: int, (pH, pW),
            ((top, bottom), (left, right)), ``'same'`` (default) or ``'valid'``.
            Zero padding.
        flip: ``True`` for true convolution (kernel rotated by 180°).

    Returns:
        float64 array in the input layout: (H_out, W_out) or (H_out, W_out, C). Each
        channel is filtered independently (depthwise, ``groups=C``); values are not
        clipped (see :func:`to_uint8`).
    """
    from glassnet.functional import conv2d

    img = np.asarray(image)
    if img.dtype.kind not in "biuf":
        raise TypeError(f"image must be numeric, got dtype {img.dtype}")
    if img.ndim == 2:
        channels_last = False
        x = img[None, None]
    elif img.ndim == 3 and img.shape[2] in (1, 3, 4):
        channels_last = True
        x = np.transpose(img, (2, 0, 1))[None]
    else:
        raise ValueError(
            f"image must be (H, W) or channels-last (H, W, C) with C in {{1, 3, 4}}, got shape {img.shape}"
        )
    if x.shape[2] == 0 or x.shape[3] == 0:
        raise ValueError(f"image must be non-empty, got shape {img.shape}")
    x = np.ascontiguousarray(x, dtype=np.float64)
    k = _as_kernel(kernel)
    c = x.shape[1]
    weight = np.ascontiguousarray(np.broadcast_to(k, (c, 1, *k.shape)))
    out = conv2d(x, weight, stride=stride, padding=padding, groups=c, flip=flip)
    out = np.asarray(out, dtype=np.float64)
    if channels_last:
        return np.ascontiguousarray(np.transpose(out[0], (1, 2, 0)))
    return out[0, 0]


def to_uint8(x: Any) -> np.ndarray:
    """Round to the nearest integer and clip to 0..255, returning uint8 (NaN -> 0)."""
    a = np.nan_to_num(np.asarray(x, dtype=np.float64), nan=0.0)
    return np.clip(np.rint(a), 0, 255).astype(np.uint8)
