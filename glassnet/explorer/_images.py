"""Image helpers of the explorer: safe decoding of untrusted bytes, PNG data URLs,
colour maps and feature-map grids."""

from __future__ import annotations

import base64
import io
import warnings
from dataclasses import dataclass
from typing import Any

import numpy as np
from PIL import Image, ImageOps

#: Formats accepted from uploads and drawings.
ALLOWED_FORMATS = frozenset({"PNG", "JPEG", "GIF", "BMP", "WEBP", "TIFF", "PPM"})


class ImageInputError(ValueError):
    """An upload that cannot be used; ``status`` is the HTTP status to answer with."""

    def __init__(self, message: str, status: int = 400) -> None:
        super().__init__(message)
        self.status = status


@dataclass
class StoredImage:
    """A decoded image kept in memory: uint8 (H, W) greyscale or (H, W, 3) RGB."""

    pixels: np.ndarray
    name: str

    @property
    def width(self) -> int:
        return int(self.pixels.shape[1])

    @property
    def height(self) -> int:
        return int(self.pixels.shape[0])

    @property
    def channels(self) -> int:
        return 1 if self.pixels.ndim == 2 else int(self.pixels.shape[2])


def decode_image(data: bytes, *, max_bytes: int, max_pixels: int, keep_side: int = 512) -> np.ndarray:
    """Decode untrusted image bytes to uint8 (H, W) or (H, W, 3), at most ``keep_side`` px a side.

    Refuses (``ImageInputError``) empty input, more than ``max_bytes`` bytes, more than
    ``max_pixels`` pixels (checked from the header, before any pixel is decoded), anything
    Pillow's decompression-bomb guard flags, unknown formats and corrupt files.
    """
    if not data:
        raise ImageInputError("the upload is empty (0 bytes)")
    if len(data) > max_bytes:
        raise ImageInputError(f"the upload has {len(data):,} bytes; the limit is {max_bytes:,} bytes", 413)
    with warnings.catch_warnings():
        # Pillow's guard: a warning above MAX_IMAGE_PIXELS, an error above twice that; both refuse here.
        warnings.simplefilter("error", Image.DecompressionBombWarning)
        try:
            im = Image.open(io.BytesIO(data))
            if im.format not in ALLOWED_FORMATS:
                raise ImageInputError(
                    f"unsupported image format {im.format!r}; use one of {', '.join(sorted(ALLOWED_FORMATS))}", 415
                )
            w, h = im.size
            if w < 1 or h < 1:
                raise ImageInputError(f"the image has no pixels ({w}×{h})")
            if w * h > max_pixels:
                raise ImageInputError(
                    f"the image is {w}×{h} = {w * h:,} pixels; the limit is {max_pixels:,} pixels", 413
                )
            im.load()
            im = ImageOps.exif_transpose(im)
            im = _to_l_or_rgb(im)
        except ImageInputError:
            raise
        except (Image.DecompressionBombError, Image.DecompressionBombWarning) as e:
            raise ImageInputError(f"refused by Pillow's decompression-bomb guard: {e}", 413) from None
        except Image.UnidentifiedImageError:
            raise ImageInputError("not a readable image: the file is not in an image format Pillow knows") from None
        except Exception as e:  # OSError (truncated, corrupt), SyntaxError, ValueError, ...
            raise ImageInputError(f"not a readable image: {type(e).__name__}: {e}") from None
    if max(im.size) > keep_side:
        im.thumbnail((keep_side, keep_side), Image.Resampling.LANCZOS)
    return np.asarray(im, dtype=np.uint8).copy()


def _to_l_or_rgb(im: Image.Image) -> Image.Image:
    if im.mode in ("L", "1", "I", "I;16", "I;16B", "I;16L", "F"):
        if im.mode in ("I", "I;16", "I;16B", "I;16L", "F"):
            a = np.asarray(im, dtype=np.float64)
            lo, hi = float(a.min()), float(a.max())
            a = (a - lo) / (hi - lo) * 255 if hi > lo else np.zeros_like(a)
            return Image.fromarray(np.rint(a).astype(np.uint8), "L")
        return im.convert("L")
    if im.mode in ("LA", "RGBA", "PA") or (im.mode == "P" and "transparency" in im.info):
        rgba = im.convert("RGBA")
        background = Image.new("RGBA", rgba.size, (255, 255, 255, 255))
        return Image.alpha_composite(background, rgba).convert("RGB")
    return im.convert("RGB")


def decode_data_url(url: str, *, max_bytes: int, max_pixels: int) -> np.ndarray:
    """Decode a ``data:image/...;base64,`` URL (the drawing canvas) with the upload limits."""
    if not isinstance(url, str) or not url.startswith("data:image/"):
        raise ImageInputError("a drawing must be a data URL starting with 'data:image/'")
    head, sep, payload = url.partition(",")
    if not sep or not head.endswith(";base64"):
        raise ImageInputError("a drawing must be a base64 data URL ('data:image/png;base64,...')")
    if len(payload) > max_bytes * 4 // 3 + 4:
        raise ImageInputError(f"the drawing is larger than the limit of {max_bytes:,} bytes", 413)
    try:
        data = base64.b64decode(payload, validate=True)
    except ValueError:
        raise ImageInputError("the drawing's data URL is not valid base64") from None
    return decode_image(data, max_bytes=max_bytes, max_pixels=max_pixels)


def png_bytes(pixels: np.ndarray) -> bytes:
    """PNG-encode uint8 (H, W), (H, W, 3) or (H, W, 4)."""
    a = np.ascontiguousarray(pixels, dtype=np.uint8)
    buf = io.BytesIO()
    Image.fromarray(a).save(buf, format="PNG", compress_level=6)
    return buf.getvalue()


def png_data_url(pixels: np.ndarray) -> str:
    """A ``data:image/png;base64,`` URL of uint8 pixels."""
    return "data:image/png;base64," + base64.b64encode(png_bytes(pixels)).decode("ascii")


def to_grey(pixels: np.ndarray) -> np.ndarray:
    """uint8 luminance (ITU-R 601-2, Pillow's 'L' conversion) of (H, W) or (H, W, 3)."""
    if pixels.ndim == 2:
        return pixels
    return np.asarray(Image.fromarray(pixels).convert("L"), dtype=np.uint8)


def fit_side(pixels: np.ndarray, side: int) -> np.ndarray:
    """Downscale (never upscale) so that the longer side is at most ``side``."""
    h, w = pixels.shape[:2]
    if max(h, w) <= side:
        return pixels
    im = Image.fromarray(pixels)
    im.thumbnail((side, side), Image.Resampling.LANCZOS)
    return np.asarray(im, dtype=np.uint8)


# ----------------------------------------------------------------------------- colour maps

_LUTS: dict[str, np.ndarray] = {}


def lut(name: str) -> np.ndarray:
    """A (256, 3) uint8 lookup table of a matplotlib colour map (cached)."""
    if name not in _LUTS:
        import matplotlib

        cmap = matplotlib.colormaps[name]
        _LUTS[name] = np.rint(cmap(np.linspace(0.0, 1.0, 256))[:, :3] * 255).astype(np.uint8)
    return _LUTS[name]


def colourise(values: np.ndarray, signed: bool, scale: float) -> np.ndarray:
    """Map floats to RGB: signed values on a diverging map centred on 0 (±scale),
    non-negative ones on a sequential map (0..scale)."""
    scale = float(scale) if scale > 0 and np.isfinite(scale) else 1.0
    v = np.nan_to_num(np.asarray(values, dtype=np.float64), nan=0.0, posinf=scale, neginf=-scale)
    if signed:
        idx = np.clip(np.rint((v / scale + 1.0) * 127.5), 0, 255).astype(np.intp)
        return lut("RdBu_r")[idx]
    idx = np.clip(np.rint(v / scale * 255.0), 0, 255).astype(np.intp)
    return lut("magma")[idx]


def grid_layout(n: int, tile_h: int, tile_w: int) -> tuple[int, int]:
    """(cols, rows) for ``n`` tiles: one row up to 8 tiles, else a grid about three times
    wider than tall (by tile count) with as few empty cells as possible."""
    if n <= 0:
        return 0, 0
    if n <= 8:
        return n, 1
    lo, hi = int(np.ceil(np.sqrt(2 * n))), int(np.ceil(np.sqrt(4 * n)))
    ideal = np.sqrt(3 * n)
    cols = min(range(lo, hi + 1), key=lambda c: (-(-n // c) * c - n, abs(c - ideal)))
    return cols, -(-n // cols)


def tile_grid(tiles: np.ndarray, gap: int = 1, background: Any = (255, 255, 255)) -> tuple[np.ndarray, dict[str, int]]:
    """Lay out (N, h, w, 3) uint8 tiles on a grid; returns the image and its layout."""
    n, h, w = tiles.shape[:3]
    cols, rows = grid_layout(n, h, w)
    height, width = rows * h + (rows - 1) * gap, cols * w + (cols - 1) * gap
    out = np.empty((height, width, 3), dtype=np.uint8)
    out[:] = np.asarray(background, dtype=np.uint8)
    for i in range(n):
        r, c = divmod(i, cols)
        y, x = r * (h + gap), c * (w + gap)
        out[y : y + h, x : x + w] = tiles[i]
    return out, {"cols": cols, "rows": rows, "tile_h": h, "tile_w": w, "gap": gap, "width": width, "height": height}


# ----------------------------------------------------------------------------- attribution pictures


def heat(values: np.ndarray, signed: bool, scale: float, cmap: str = "jet") -> np.ndarray:
    """A map as RGB: signed on the diverging map (±scale), non-negative on ``cmap`` (0..scale)."""
    if signed:
        return colourise(values, True, scale)
    scale = float(scale) if scale > 0 and np.isfinite(scale) else 1.0
    v = np.nan_to_num(np.asarray(values, dtype=np.float64), nan=0.0)
    idx = np.clip(np.rint(v / scale * 255.0), 0, 255).astype(np.intp)
    return lut(cmap)[idx]


def overlay(base: np.ndarray, values: np.ndarray, signed: bool, scale: float, cmap: str = "jet") -> np.ndarray:
    """``values`` (H, W) over the picture ``base`` (uint8 (H, W) or (H, W, 3), same size): the picture
    in grey, the map's colour on top, more opaque where the map is strong."""
    grey = to_grey(base).astype(np.float64) if base.ndim == 3 else base.astype(np.float64)
    colour = heat(values, signed, scale, cmap).astype(np.float64)
    scale = float(scale) if scale > 0 and np.isfinite(scale) else 1.0
    strength = np.clip(np.abs(np.nan_to_num(np.asarray(values, dtype=np.float64))) / scale, 0.0, 1.0)
    alpha = (0.2 + 0.6 * strength)[:, :, None]
    out = (1 - alpha) * (0.85 * grey[:, :, None]) + alpha * colour
    return np.clip(np.rint(out), 0, 255).astype(np.uint8)


def signed_image(grad: np.ndarray) -> np.ndarray:
    """A gradient [C, H, W] as a picture, 0.5 + 0.5·g/max|g| (grey for C = 1, RGB for C = 3),
    as guided backpropagation is shown in its paper."""
    g = np.asarray(grad, dtype=np.float64)
    m = float(np.abs(g).max()) or 1.0
    pic = np.clip(np.rint((0.5 + 0.5 * g / m) * 255), 0, 255).astype(np.uint8)
    return pic[0] if pic.shape[0] == 1 else np.transpose(pic[:3], (1, 2, 0))


def histogram(values: np.ndarray, bins: int = 31) -> dict[str, Any]:
    """Counts of ``values`` in ``bins`` equal bins over a range symmetric about 0 (±max|v|)."""
    v = np.asarray(values, dtype=np.float64).ravel()
    v = v[np.isfinite(v)]
    m = float(np.abs(v).max()) if v.size else 0.0
    m = m if m > 0 else 1.0
    counts, edges = np.histogram(v, bins=bins, range=(-m, m))
    return {"counts": counts.astype(int).tolist(), "lo": -m, "hi": m, "bins": bins, "zeros": int(np.sum(v == 0))}
