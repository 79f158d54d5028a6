"""``shapes``: a built-in synthetic dataset of ten glyph classes, generated in memory.

Each image shows one glyph (circle, square, triangle, cross, ring, star, diamond,
arrow, bars or X) at a random position, size (40-80 % of the image side) and
rotation (±15° by default, small enough that a cross never looks like an X nor a
square like a diamond), with Gaussian pixel noise. The grayscale variant is
28×28 bright-on-dark (like MNIST); the RGB variant is 32×32 with random
foreground and background colours of opposite brightness (like CIFAR's size).

Rasterisation is vectorised: every glyph is a signed-distance function of the
glyph-local coordinates of a whole chunk of images at once, and the pixel
coverage is ``clip(0.5 - distance_in_pixels, 0, 1)``, which anti-aliases the
edges. The same seed always gives the same bytes.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence

import numpy as np

from .errors import DatasetError

__all__ = ["SHAPES_CLASSES", "make_shapes", "shapes_split"]

#: Class names of the ``shapes`` dataset, in label order.
SHAPES_CLASSES: list[str] = [
    "circle",
    "square",
    "triangle",
    "cross",
    "ring",
    "star",
    "diamond",
    "arrow",
    "bars",
    "x",
]

#: Default number of images per split.
SHAPES_SPLIT_SIZES: dict[str, int] = {"train": 12_000, "test": 2_000}

_CHUNK = 2048
_SQRT3 = np.float32(np.sqrt(3.0))
_INV_SQRT2 = np.float32(1.0 / np.sqrt(2.0))

Array = np.ndarray


def _box(u: Array, v: Array, hx: float, hy: float) -> Array:
    """Exact signed distance to an axis-aligned box of half sizes (hx, hy)."""
    qx = np.abs(u) - np.float32(hx)
    qy = np.abs(v) - np.float32(hy)
    outside = np.hypot(np.maximum(qx, 0), np.maximum(qy, 0))
    return outside + np.minimum(np.maximum(qx, qy), 0)


def _circle(u: Array, v: Array) -> Array:
    return np.hypot(u, v) - np.float32(0.85)


def _square(u: Array, v: Array) -> Array:
    return _box(u, v, 0.66, 0.66)


def _triangle(u: Array, v: Array) -> Array:
    # Equilateral triangle pointing up (image y grows downwards, so flip v),
    # circumradius 0.92; exact SDF after I. Quilez.
    r = np.float32(0.92 * np.sqrt(3.0) / 2.0)
    px = np.abs(u) - r
    py = -v + r / _SQRT3
    fold = px + _SQRT3 * py > 0
    px, py = (
        np.where(fold, (px - _SQRT3 * py) / 2, px),
        np.where(fold, (-_SQRT3 * px - py) / 2, py),
    )
    px = px - np.clip(px, -2 * r, 0)
    return -np.hypot(px, py) * np.sign(py)


def _cross(u: Array, v: Array) -> Array:
    return np.minimum(_box(u, v, 0.85, 0.22), _box(u, v, 0.22, 0.85))


def _ring(u: Array, v: Array) -> Array:
    return np.abs(np.hypot(u, v) - np.float32(0.66)) - np.float32(0.2)


def _star(u: Array, v: Array) -> Array:
    # Five-pointed star, one tip up; outer radius 0.95, inner 0.42. Fold the plane
    # into one half-sector, then the distance to the edge tip -> inner vertex.
    outer, inner = 0.95, 0.42
    seg = np.float32(2 * np.pi / 5)
    rho = np.hypot(u, v)
    phi = np.arctan2(u, -v)
    a = np.abs(np.mod(phi + seg / 2, seg) - seg / 2)
    qx, qy = rho * np.cos(a), rho * np.sin(a)
    half = np.pi / 5
    nx, ny = inner * np.sin(half), outer - inner * np.cos(half)
    norm = np.hypot(nx, ny)
    return ((qx - outer) * np.float32(nx / norm) + qy * np.float32(ny / norm)).astype(np.float32)


def _diamond(u: Array, v: Array) -> Array:
    # A tall rhombus (half width 0.5, half height 0.92): never a rotated square.
    a, b = 0.5, 0.92
    return (np.abs(u) / np.float32(a) + np.abs(v) / np.float32(b) - 1) * np.float32(a * b / np.hypot(a, b))


def _arrow(u: Array, v: Array) -> Array:
    # Pointing right: a shaft from u=-0.85 to 0.25 and a head from u=0.1 to the tip 0.92.
    shaft = _box(u + np.float32(0.3), v, 0.55, 0.15)
    tip, base, half_h = 0.92, 0.1, 0.55
    ex, ey = half_h, tip - base
    norm = np.hypot(ex, ey)
    edge = ((u - np.float32(tip)) * np.float32(ex / norm)) + np.abs(v) * np.float32(ey / norm)
    head = np.maximum(np.float32(base) - u, edge)
    return np.minimum(shaft, head)


def _bars(u: Array, v: Array) -> Array:
    gap = np.float32(0.55)
    d = _box(u, v, 0.8, 0.13)
    d = np.minimum(d, _box(u, v - gap, 0.8, 0.13))
    return np.minimum(d, _box(u, v + gap, 0.8, 0.13))


def _x(u: Array, v: Array) -> Array:
    a = (u + v) * _INV_SQRT2
    b = (v - u) * _INV_SQRT2
    return np.minimum(_box(a, b, 0.92, 0.18), _box(a, b, 0.18, 0.92))


_GLYPHS: list[Callable[[Array, Array], Array]] = [
    _circle,
    _square,
    _triangle,
    _cross,
    _ring,
    _star,
    _diamond,
    _arrow,
    _bars,
    _x,
]


def make_shapes(
    n: int,
    *,
    seed: int | Sequence[int] = 0,
    size: int | None = None,
    rgb: bool = False,
    noise: float = 0.08,
    scale: tuple[float, float] = (0.4, 0.8),
    max_rotation: float = 15.0,
) -> tuple[np.ndarray, np.ndarray]:
    """Generate ``n`` glyph images with balanced labels.

    Args:
        n: number of images (labels are balanced: each class gets n//10 or n//10+1).
        seed: seed (or seed sequence) of the NumPy generator; the output is a pure
            function of all the arguments.
        size: image side in pixels; 28 for grayscale, 32 for RGB by default.
        rgb: random foreground/background colours, 3 channels.
        noise: standard deviation of the Gaussian pixel noise, in [0, 1] units.
        scale: range of the glyph's diameter as a fraction of the image side.
        max_rotation: rotations are uniform in [-max_rotation, max_rotation] degrees.

    Returns:
        ``images`` uint8 (n, C, size, size) with C = 1 (or 3 when ``rgb``) and
        ``labels`` int64 (n,) in 0..9 (indices into :data:`SHAPES_CLASSES`).
    """
    if n < 0:
        raise DatasetError(f"shapes: expected n >= 0, got {n}")
    size = (32 if rgb else 28) if size is None else int(size)
    if size < 8:
        raise DatasetError(f"shapes: expected size >= 8 pixels, got {size}")
    lo, hi = scale
    if not 0 < lo <= hi <= 1:
        raise DatasetError(f"shapes: expected 0 < scale[0] <= scale[1] <= 1, got {scale}")
    rng = np.random.default_rng(seed)
    k = len(SHAPES_CLASSES)
    labels = rng.permutation(np.arange(n, dtype=np.int64) % k)
    radius = (rng.uniform(lo, hi, n) * size / 2).astype(np.float32)
    cx = radius + rng.random(n, dtype=np.float32) * (size - 2 * radius)
    cy = radius + rng.random(n, dtype=np.float32) * (size - 2 * radius)
    theta = np.deg2rad(rng.uniform(-max_rotation, max_rotation, n)).astype(np.float32)
    channels = 3 if rgb else 1
    if rgb:
        dark = rng.uniform(0.0, 0.35, (n, 3))
        light = rng.uniform(0.65, 1.0, (n, 3))
        light_on_dark = rng.random(n) < 0.5
        bg = np.where(light_on_dark[:, None], dark, light)
        fg = np.where(light_on_dark[:, None], light, dark)
    else:
        bg = rng.uniform(0.0, 0.25, (n, 1))
        fg = rng.uniform(0.7, 1.0, (n, 1))
    bg, fg = bg.astype(np.float32), fg.astype(np.float32)

    images = np.empty((n, channels, size, size), dtype=np.uint8)
    grid = np.arange(size, dtype=np.float32) + np.float32(0.5)
    for start in range(0, n, _CHUNK):
        sl = slice(start, min(start + _CHUNK, n))
        r = radius[sl, None, None]
        dx = grid[None, None, :] - cx[sl, None, None]
        dy = grid[None, :, None] - cy[sl, None, None]
        cos, sin = np.cos(theta[sl])[:, None, None], np.sin(theta[sl])[:, None, None]
        u = (cos * dx + sin * dy) / r
        v = (cos * dy - sin * dx) / r
        dist = np.empty_like(u)
        lab = labels[sl]
        for c, glyph in enumerate(_GLYPHS):
            idx = np.flatnonzero(lab == c)
            if idx.size:
                dist[idx] = glyph(u[idx], v[idx])
        coverage = np.clip(np.float32(0.5) - dist * r, 0, 1)[:, None]
        img = bg[sl, :, None, None] + (fg - bg)[sl, :, None, None] * coverage
        img += rng.normal(0.0, noise, img.shape).astype(np.float32)
        images[sl] = np.rint(np.clip(img, 0, 1) * 255).astype(np.uint8)
    return images, labels


def shapes_split(
    split: str = "train",
    *,
    n: int | None = None,
    seed: int = 0,
    rgb: bool = False,
    size: int | None = None,
) -> tuple[np.ndarray, np.ndarray]:
    """Generate the ``train`` (12,000 images) or ``test`` (2,000) split of ``shapes``.

    The two splits come from independent streams of the same seed
    (``[seed, 0]`` and ``[seed, 1]``), so they never share an image.

    Returns:
        images uint8 (n, C, H, W) and labels int64 (n,), as :func:`make_shapes`.
    """
    if split not in SHAPES_SPLIT_SIZES:
        raise DatasetError(f"shapes: unknown split {split!r}; expected 'train' or 'test'")
    count = SHAPES_SPLIT_SIZES[split] if n is None else n
    stream = [seed, 0 if split == "train" else 1, 1 if rgb else 0]
    return make_shapes(count, seed=stream, rgb=rgb, size=size)
