"""Vectorised batch augmentation.

Every transform is called as ``t(x, rng) -> x`` with ``x`` a float32 batch
(N, C, H, W), normally in [0, 1] units (the :class:`~glassnet.data.DataLoader`
applies transforms before normalising), and ``rng`` a ``numpy.random.Generator``.
Per-sample parameters are drawn with one call per parameter for the whole batch,
so a seeded generator gives the same output every time. Inputs are never
modified in place.

Geometric transforms (:class:`RandomAffine` and its special cases
:class:`RandomRotation`, :class:`RandomScale`, :class:`RandomTranslate`) are one
inverse-mapped affine warp: the source coordinates of every output pixel of the
whole batch are computed at once and sampled with a single vectorised gather
(bilinear or nearest), pixels from outside the image taking the ``fill`` value.
"""

from __future__ import annotations

import os
from collections.abc import Sequence
from pathlib import Path

import numpy as np
from numpy.lib.stride_tricks import sliding_window_view
from PIL import Image

__all__ = [
    "ColorJitter",
    "Compose",
    "Cutout",
    "Normalize",
    "RandomAffine",
    "RandomCrop",
    "RandomHorizontalFlip",
    "RandomRotation",
    "RandomScale",
    "RandomTranslate",
    "Transform",
    "save_augmentation_grid",
    "warp_affine",
]


def _check_batch(x: np.ndarray, who: str) -> np.ndarray:
    x = np.asarray(x)
    if x.ndim != 4:
        raise ValueError(f"{who}: expected a batch (N, C, H, W), got shape {x.shape}")
    return x


def _pair(value: int | float | Sequence[float], who: str) -> tuple[float, float]:
    if isinstance(value, int | float):
        return float(value), float(value)
    if len(value) != 2:
        raise ValueError(f"{who}: expected a number or a pair, got {value!r}")
    return float(value[0]), float(value[1])


class Transform:
    """Base class: ``t(x, rng)`` maps a float32 batch (N, C, H, W) to another."""

    def __call__(self, x: np.ndarray, rng: np.random.Generator) -> np.ndarray:
        raise NotImplementedError

    def __repr__(self) -> str:
        args = ", ".join(f"{k}={v!r}" for k, v in vars(self).items() if not k.startswith("_"))
        return f"{type(self).__name__}({args})"


class Compose(Transform):
    """Apply transforms in order, all drawing from the same generator."""

    def __init__(self, transforms: Sequence[Transform]) -> None:
        self.transforms = list(transforms)

    def __call__(self, x: np.ndarray, rng: np.random.Generator) -> np.ndarray:
        for t in self.transforms:
            x = t(x, rng)
        return x


class RandomHorizontalFlip(Transform):
    """Mirror each image left-right with probability ``p``."""

    def __init__(self, p: float = 0.5) -> None:
        if not 0 <= p <= 1:
            raise ValueError(f"RandomHorizontalFlip: expected 0 <= p <= 1, got {p}")
        self.p = p

    def __call__(self, x: np.ndarray, rng: np.random.Generator) -> np.ndarray:
        x = _check_batch(x, "RandomHorizontalFlip")
        flip = rng.random(x.shape[0]) < self.p
        out = x.copy()
        out[flip] = x[flip, :, :, ::-1]
        return out


class RandomCrop(Transform):
    """Pad by ``padding`` pixels (constant ``fill``), then crop a random ``size`` window.

    Args:
        size: output (h, w), or one int.
        padding: pixels added on every side first.
        fill: value of the padding.
    """

    def __init__(self, size: int | tuple[int, int], padding: int = 0, fill: float = 0.0) -> None:
        h, w = (size, size) if isinstance(size, int) else size
        if h < 1 or w < 1 or padding < 0:
            raise ValueError(f"RandomCrop: expected size >= 1 and padding >= 0, got {size}, {padding}")
        self.size = (int(h), int(w))
        self.padding = int(padding)
        self.fill = float(fill)

    def __call__(self, x: np.ndarray, rng: np.random.Generator) -> np.ndarray:
        x = _check_batch(x, "RandomCrop")
        n, _, height, width = x.shape
        p = self.padding
        h, w = self.size
        if h > height + 2 * p or w > width + 2 * p:
            raise ValueError(
                f"RandomCrop: crop {h}×{w} is larger than the padded image {height + 2 * p}×{width + 2 * p}"
            )
        if p:
            x = np.pad(x, ((0, 0), (0, 0), (p, p), (p, p)), constant_values=self.fill)
        oy = rng.integers(0, x.shape[2] - h + 1, n)
        ox = rng.integers(0, x.shape[3] - w + 1, n)
        windows = sliding_window_view(x, (h, w), axis=(2, 3))  # (N, C, H', W', h, w), a view
        return np.ascontiguousarray(windows[np.arange(n), :, oy, ox])


class RandomAffine(Transform):
    """Random rotation, zoom and translation as one warp per batch.

    Args:
        degrees: rotation angle uniform in [-degrees, degrees] (or a (lo, hi) range).
        scale: zoom factor uniform in this range (> 1 enlarges the content).
        translate: shift uniform in [-t, t] pixels, per axis (a number or (ty, tx)).
        interpolation: ``"bilinear"`` or ``"nearest"``.
        fill: value of pixels that come from outside the image.

    Positive angles turn the content counter-clockwise on screen (as
    ``np.rot90``). The warp maps an output pixel ``p`` to the source point
    ``c + R(-angle) (p - c - t) / s`` (c = image centre) and samples it.
    """

    def __init__(
        self,
        degrees: float | tuple[float, float] = 0.0,
        scale: tuple[float, float] = (1.0, 1.0),
        translate: float | tuple[float, float] = 0.0,
        interpolation: str = "bilinear",
        fill: float = 0.0,
    ) -> None:
        lo, hi = (-abs(degrees), abs(degrees)) if isinstance(degrees, int | float) else degrees
        if lo > hi:
            raise ValueError(f"{type(self).__name__}: expected degrees lo <= hi, got {(lo, hi)}")
        s0, s1 = _pair(scale, type(self).__name__)
        if not 0 < s0 <= s1:
            raise ValueError(f"{type(self).__name__}: expected 0 < scale[0] <= scale[1], got {scale}")
        if interpolation not in ("bilinear", "nearest"):
            raise ValueError(
                f"{type(self).__name__}: expected interpolation 'bilinear' or 'nearest', got {interpolation!r}"
            )
        ty, tx = _pair(translate, type(self).__name__)
        self.degrees = (float(lo), float(hi))
        self.scale = (s0, s1)
        self.translate = (abs(ty), abs(tx))
        self.interpolation = interpolation
        self.fill = float(fill)

    def __call__(self, x: np.ndarray, rng: np.random.Generator) -> np.ndarray:
        x = _check_batch(x, type(self).__name__)
        n = x.shape[0]
        lo, hi = self.degrees
        angle = np.deg2rad(rng.uniform(lo, hi, n)) if hi > lo else np.full(n, np.deg2rad(lo))
        s0, s1 = self.scale
        zoom = rng.uniform(s0, s1, n) if s1 > s0 else np.full(n, s0)
        ty, tx = self.translate
        shift = rng.uniform(-1.0, 1.0, (2, n)) * np.array([[ty], [tx]]) if ty or tx else np.zeros((2, n))
        return warp_affine(x, angle, zoom, shift[0], shift[1], self.interpolation, self.fill)


class RandomRotation(RandomAffine):
    """Rotate each image by an angle uniform in [-degrees, degrees] (bilinear)."""

    def __init__(
        self,
        degrees: float | tuple[float, float],
        interpolation: str = "bilinear",
        fill: float = 0.0,
    ) -> None:
        super().__init__(degrees=degrees, interpolation=interpolation, fill=fill)


class RandomScale(RandomAffine):
    """Zoom each image about its centre by a factor uniform in ``scale``."""

    def __init__(
        self,
        scale: tuple[float, float] = (0.9, 1.1),
        interpolation: str = "bilinear",
        fill: float = 0.0,
    ) -> None:
        super().__init__(scale=scale, interpolation=interpolation, fill=fill)


class RandomTranslate(RandomAffine):
    """Shift each image by up to ``max_shift`` pixels in each direction (sub-pixel, bilinear)."""

    def __init__(
        self,
        max_shift: float | tuple[float, float],
        interpolation: str = "bilinear",
        fill: float = 0.0,
    ) -> None:
        super().__init__(translate=max_shift, interpolation=interpolation, fill=fill)


def warp_affine(
    x: np.ndarray,
    angle: np.ndarray,
    zoom: np.ndarray,
    ty: np.ndarray,
    tx: np.ndarray,
    interpolation: str = "bilinear",
    fill: float = 0.0,
) -> np.ndarray:
    """Rotate (radians, counter-clockwise), zoom and shift (pixels) each image about its centre.

    Args:
        x: float batch (N, C, H, W).
        angle, zoom, ty, tx: per-sample parameters, each (N,).
        interpolation: ``"bilinear"`` or ``"nearest"``.
        fill: value for pixels sampled from outside the image.

    Returns:
        float32 batch (N, C, H, W). Angle 0, zoom 1 and shift 0 give ``x`` exactly.
    """
    n, c, h, w = x.shape
    cos = (np.cos(angle) / zoom).astype(np.float32)[:, None, None]
    sin = (np.sin(angle) / zoom).astype(np.float32)[:, None, None]
    cy, cx = np.float32((h - 1) / 2), np.float32((w - 1) / 2)
    dx = np.arange(w, dtype=np.float32)[None, None, :] - cx - tx.astype(np.float32)[:, None, None]
    dy = np.arange(h, dtype=np.float32)[None, :, None] - cy - ty.astype(np.float32)[:, None, None]
    # Inverse map of a counter-clockwise (on screen, y down) rotation.
    src_x = (cos * dx - sin * dy + cx).ravel()  # (N*H*W,)
    src_y = (sin * dx + cos * dy + cy).ravel()
    # Gather from a channels-last copy with a two-pixel ``fill`` border. Clipping a
    # sample's top-left neighbour to [-2, size] keeps it and its +1 neighbours
    # inside the padded image, and any sample outside the image reads ``fill``.
    pad = 2
    padded = np.pad(
        np.asarray(x, dtype=np.float32).transpose(0, 2, 3, 1),
        ((0, 0), (pad, pad), (pad, pad), (0, 0)),
        constant_values=fill,
    )
    ph, pw = h + 2 * pad, w + 2 * pad
    flat = padded.reshape(n * ph * pw, c)
    base = np.repeat(np.arange(n, dtype=np.intp) * (ph * pw), h * w)
    if interpolation == "nearest":
        fx, fy = np.floor(src_x + 0.5), np.floor(src_y + 0.5)
    else:
        fx, fy = np.floor(src_x), np.floor(src_y)
    ix = np.clip(fx, -pad, w).astype(np.intp) + pad
    iy = np.clip(fy, -pad, h).astype(np.intp) + pad
    idx = base + iy * pw + ix
    if interpolation == "nearest":
        out = flat.take(idx, axis=0)
    else:
        wx = (src_x - fx)[:, None]
        wy = (src_y - fy)[:, None]
        top = flat.take(idx, axis=0)
        top += (flat.take(idx + 1, axis=0) - top) * wx
        bottom = flat.take(idx + pw, axis=0)
        bottom += (flat.take(idx + pw + 1, axis=0) - bottom) * wx
        out = top + (bottom - top) * wy
    return np.ascontiguousarray(out.reshape(n, h, w, c).transpose(0, 3, 1, 2), dtype=np.float32)


class ColorJitter(Transform):
    """Random brightness and contrast per image, then clip to [0, 1].

    Brightness multiplies by ``b`` uniform in [1 - brightness, 1 + brightness];
    contrast scales the deviation from the image mean by ``c`` uniform in
    [1 - contrast, 1 + contrast].
    """

    def __init__(self, brightness: float = 0.0, contrast: float = 0.0) -> None:
        if not (0 <= brightness <= 1 and 0 <= contrast <= 1):
            raise ValueError(f"ColorJitter: expected brightness and contrast in [0, 1], got {brightness}, {contrast}")
        self.brightness = float(brightness)
        self.contrast = float(contrast)

    def __call__(self, x: np.ndarray, rng: np.random.Generator) -> np.ndarray:
        x = _check_batch(x, "ColorJitter").astype(np.float32)
        n = x.shape[0]
        if self.brightness:
            b = rng.uniform(1 - self.brightness, 1 + self.brightness, n).astype(np.float32)
            x = x * b[:, None, None, None]
        if self.contrast:
            c = rng.uniform(1 - self.contrast, 1 + self.contrast, n).astype(np.float32)
            mean = x.mean(axis=(1, 2, 3), keepdims=True)
            x = (x - mean) * c[:, None, None, None] + mean
        return np.clip(x, 0.0, 1.0)


class Cutout(Transform):
    """Set a ``size``×``size`` square (clipped at the borders) to ``fill``, with probability ``p``.

    The square's centre is uniform over the image (DeVries & Taylor, 2017).
    """

    def __init__(self, size: int, p: float = 1.0, fill: float = 0.0) -> None:
        if size < 1 or not 0 <= p <= 1:
            raise ValueError(f"Cutout: expected size >= 1 and 0 <= p <= 1, got {size}, {p}")
        self.size = int(size)
        self.p = float(p)
        self.fill = float(fill)

    def __call__(self, x: np.ndarray, rng: np.random.Generator) -> np.ndarray:
        x = _check_batch(x, "Cutout")
        n, _, h, w = x.shape
        cy = rng.integers(0, h, n)
        cx = rng.integers(0, w, n)
        apply = rng.random(n) < self.p
        top, left = cy - self.size // 2, cx - self.size // 2
        rows = np.arange(h)[None, :]
        cols = np.arange(w)[None, :]
        rmask = (rows >= top[:, None]) & (rows < top[:, None] + self.size) & apply[:, None]
        cmask = (cols >= left[:, None]) & (cols < left[:, None] + self.size)
        mask = rmask[:, None, :, None] & cmask[:, None, None, :]  # (N, 1, H, W)
        return np.where(mask, np.float32(self.fill), x).astype(np.float32, copy=False)


class Normalize(Transform):
    """``(x - mean) / std`` per channel; ``mean`` and ``std`` are scalars or (C,)."""

    def __init__(self, mean: float | Sequence[float], std: float | Sequence[float]) -> None:
        self.mean = np.atleast_1d(np.asarray(mean, dtype=np.float32))
        self.std = np.atleast_1d(np.asarray(std, dtype=np.float32))
        if np.any(self.std <= 0):
            raise ValueError(f"Normalize: std must be > 0, got {self.std.tolist()}")

    def __call__(self, x: np.ndarray, rng: np.random.Generator | None = None) -> np.ndarray:
        x = _check_batch(x, "Normalize")
        return ((x - self.mean[:, None, None]) / self.std[:, None, None]).astype(np.float32)


def save_augmentation_grid(
    images: np.ndarray,
    transform: Transform,
    path: str | os.PathLike[str],
    rng: np.random.Generator,
    n: int = 8,
    zoom: int | None = None,
) -> Path:
    """Render ``n`` augmented versions of ``n`` images to a PNG grid.

    Row ``i`` shows image ``i`` (first column, unaugmented) and then ``n``
    augmented draws of it; all rows are augmented in one batched call.

    Args:
        images: (M, C, H, W) with C = 1 or 3, uint8 or float in [0, 1]; the first
            ``min(n, M)`` are used.
        transform: ``transform(x, rng)`` on float32 batches in [0, 1].
        path: output PNG (folders are created).
        rng: generator for the augmentation.
        n: grid size (rows and augmented columns).
        zoom: integer upscaling of every pixel (default: about 96 px per tile).

    Returns:
        The path written. Values outside [0, 1] (e.g. after Normalize) are
        rescaled to the grid's min..max.
    """
    images = _check_batch(images, "save_augmentation_grid")
    k = min(n, images.shape[0])
    if k == 0 or images.shape[1] not in (1, 3):
        raise ValueError(
            f"save_augmentation_grid: expected at least one image with 1 or 3 channels, got shape {images.shape}"
        )
    x = images[:k].astype(np.float32)
    if images.dtype == np.uint8:
        x /= 255.0
    aug = np.asarray(transform(np.repeat(x, n, axis=0), rng), dtype=np.float32)
    _, c, h, w = aug.shape
    tiles = np.concatenate([x[:, None], aug.reshape(k, n, c, h, w)], axis=1)  # (k, n+1, C, H, W)
    lo, hi = float(tiles.min()), float(tiles.max())
    if lo < 0 or hi > 1:
        tiles = (tiles - lo) / max(hi - lo, 1e-12)
    gap = 2
    grid = np.full((c, k * (h + gap) + gap, (n + 1) * (w + gap) + gap), 0.5, dtype=np.float32)
    for i in range(k):
        for j in range(n + 1):
            y0, x0 = gap + i * (h + gap), gap + j * (w + gap)
            grid[:, y0 : y0 + h, x0 : x0 + w] = tiles[i, j]
    zoom = zoom if zoom is not None else max(1, round(96 / max(h, w)))
    arr = np.rint(np.clip(grid, 0, 1) * 255).astype(np.uint8)
    arr = arr.repeat(zoom, axis=1).repeat(zoom, axis=2)
    img = Image.fromarray(arr[0]) if c == 1 else Image.fromarray(arr.transpose(1, 2, 0))
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    img.save(path, format="PNG")
    return path
