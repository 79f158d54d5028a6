"""What a channel responds to: feature visualisation by gradient ascent on the input
(Olah, Mordvintsev & Schubert, "Feature Visualization", Distill 2017; Lucid's recipe).

The image is not optimised pixel by pixel directly. It is *parametrised*:

* ``param="fourier"`` (default): the image is the inverse real 2-D FFT of a learned
  spectrum whose frequency f is scaled by 1/max(f, 1/size) (Lucid's ``fft_image``), so
  every frequency learns at a similar rate and high-frequency noise does not dominate;
* ``param="pixel"``: the pixels themselves (Lucid's ``naive``);
* ``decorrelate=True`` (3 channels): the three values are mixed by the square root of
  ImageNet's colour covariance, so steps are taken in decorrelated colour space;
* a sigmoid maps everything into [0, 1], where the model's normalisation is applied.

Every step applies a random transform that the gradient flows through (jitter, scaling
and rotation, resampled bilinearly: :data:`resample`, an op with its backward beside it),
so that only features robust to small shifts and turns survive; the result is the
untransformed image. Adam ascends the channel's mean activation

    objective = mean_{ij} A[n, channel, i, j]     (A = output of ``layer``; A[n, channel]
                                                   for a dense layer, e.g. a class logit)
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence
from typing import Any, NamedTuple

import numpy as np

from .. import functional as F
from ..autograd.tensor import Tensor, no_grad
from ..functional._op import Context, Op
from ..nn.module import Module, Parameter
from ._common import LayerProbe, check_channel, check_progress, get_layer, inspection_mode, model_dtype


# -- the two ops the parametrisation and the transforms need --------------------------------------
def resample_forward(x: Any, src_y: Any, src_x: Any, fill: float = 0.0) -> tuple[np.ndarray, Context]:
    """Bilinear sampling: ``out[n, c, i, j] = x[n, c]`` read at the fractional pixel
    (src_y[i, j], src_x[i, j]); neighbours outside the image read ``fill``.

    x [N, C, H, W], src_y/src_x [H', W'] → out [N, C, H', W']. With y₀ = ⌊y⌋, u = y − y₀
    (and x₀, v alike): out = (1−u)(1−v)·x[y₀, x₀] + (1−u)v·x[y₀, x₀+1] + u(1−v)·x[y₀+1, x₀]
    + u·v·x[y₀+1, x₀+1].
    """
    x = np.asarray(x)
    n, c, h, w = x.shape
    sy, sx = np.asarray(src_y, dtype=np.float64), np.asarray(src_x, dtype=np.float64)
    y0, x0 = np.floor(sy).astype(np.intp), np.floor(sx).astype(np.intp)
    u, v = sy - y0, sx - x0
    flat = x.reshape(n * c, h * w)
    out = np.zeros((n * c, sy.size), dtype=np.float64)
    outside = np.zeros(sy.size)
    idx, wts, pos = [], [], []  # per tap: the input pixel read, its weight, the output position
    for dy in (0, 1):
        for dx in (0, 1):
            yy, xx = y0 + dy, x0 + dx
            inside = ((yy >= 0) & (yy < h) & (xx >= 0) & (xx < w)).ravel()
            wt = ((u if dy else 1 - u) * (v if dx else 1 - v)).ravel()
            ix = (np.clip(yy, 0, h - 1) * w + np.clip(xx, 0, w - 1)).ravel()
            out += flat[:, ix] * (wt * inside)
            outside += wt * ~inside
            idx.append(ix[inside])
            wts.append(wt[inside])
            pos.append(np.flatnonzero(inside))
    out += fill * outside
    ctx = Context(x_shape=(n, c, h, w), dtype=x.dtype)
    ctx.update(idx=np.concatenate(idx), wts=np.concatenate(wts), pos=np.concatenate(pos))
    return out.reshape(n, c, *sy.shape).astype(x.dtype), ctx


def resample_backward(grad: np.ndarray, ctx: Context) -> tuple[np.ndarray, None, None]:
    """Each input pixel receives the output gradients it was read into, times the weights it was read with:
    ``dx[y, x] = Σ_{(i,j) that read (y, x)} weight · g[i, j]`` (the transpose of the sampling)."""
    n, c, h, w = ctx.x_shape
    rows = n * c
    g = np.asarray(grad, dtype=np.float64).reshape(rows, -1)
    vals = (g[:, ctx.pos] * ctx.wts).ravel()
    where = (np.arange(rows)[:, None] * (h * w) + ctx.idx).ravel()
    dx = np.bincount(where, weights=vals, minlength=rows * h * w)
    return dx.reshape(n, c, h, w).astype(ctx.dtype), None, None


resample = Op(resample_forward, resample_backward, nondifferentiable=("src_y", "src_x"))


def irfft2_forward(spectrum: Any, size: tuple[int, int] | None = None) -> tuple[np.ndarray, Context]:
    """The real image [..., H, W] whose half spectrum is ``spectrum`` [..., 2, H, W//2+1]
    (real and imaginary parts stacked): ``numpy.fft.irfft2(re + i·im, s=(H, W))``.

    x[m, n] = (1/HW) Σ_{k,l} X[k, l]·e^{2πi(km/H + ln/W)} over the full, Hermitian-symmetric
    spectrum; ``size`` gives W (odd widths need it), default 2·(W//2+1 − 1).
    """
    s = np.asarray(spectrum)
    h, half = s.shape[-2], s.shape[-1]
    hh, ww = (h, 2 * (half - 1)) if size is None else (int(size[0]), int(size[1]))
    out = np.fft.irfft2(s[..., 0, :, :] + 1j * s[..., 1, :, :], s=(hh, ww))
    return out.astype(s.dtype), Context(size=(hh, ww), half=half, dtype=s.dtype)


def irfft2_backward(grad: np.ndarray, ctx: Context) -> tuple[np.ndarray]:
    """The adjoint of irfft2: ``rfft2(g)·c_l/(HW)`` with c_l = 2 for the columns whose conjugate
    twin is not stored (0 < l < W/2), else 1; real and imaginary parts stacked back."""
    hh, ww = ctx.size
    spec = np.fft.rfft2(np.asarray(grad, dtype=np.float64), s=(hh, ww))
    weight = np.full(ctx.half, 2.0)
    weight[0] = 1.0
    if ww % 2 == 0:
        weight[-1] = 1.0
    spec = spec * weight / (hh * ww)
    return (np.stack([spec.real, spec.imag], axis=-3).astype(ctx.dtype),)


irfft2 = Op(irfft2_forward, irfft2_backward)


# -- the image parametrisation -----------------------------------------------------------------------
COLOR_CORRELATION_SVD_SQRT = np.array([[0.26, 0.09, 0.02], [0.27, 0.00, -0.05], [0.27, -0.09, 0.03]])
"""Square root of ImageNet's RGB covariance (Lucid's ``color_correlation_svd_sqrt``)."""
COLOR_MIX = COLOR_CORRELATION_SVD_SQRT / np.max(np.linalg.norm(COLOR_CORRELATION_SVD_SQRT, axis=0))
LUCID_SCALES = tuple(1 + (i - 5) / 50 for i in range(11))
"""Lucid's ``random_scale`` choices: 0.9, 0.92, …, 1.1."""
LUCID_ANGLES = tuple(range(-10, 11)) + (0,) * 5
"""Lucid's ``random_rotate`` choices, degrees (0 more likely)."""


def rfft2_freqs(h: int, w: int) -> np.ndarray:
    """|f| of each entry of an [h, w//2+1] half spectrum, in cycles per pixel."""
    fy = np.fft.fftfreq(h)[:, None]
    fx = np.fft.rfftfreq(w)[None, :]
    return np.sqrt(fx * fx + fy * fy)


class ImageParam:
    """``k`` images [k, C, H, W] in (0, 1) made from one trainable :class:`Parameter` (see the module doc)."""

    def __init__(
        self, k: int, channels: int, size: tuple[int, int], param: str, decorrelate: bool, gen: np.random.Generator,
        dtype: Any,
    ) -> None:  # fmt: skip
        if param not in ("fourier", "pixel"):
            raise ValueError(f"feature_visualization: param must be 'fourier' or 'pixel', got {param!r}")
        h, w = size
        self.size, self.param, self.dtype = size, param, np.dtype(dtype)
        self.decorrelate = bool(decorrelate) and channels == 3
        if param == "fourier":
            freqs = rfft2_freqs(h, w)
            self.scale = ((1.0 / np.maximum(freqs, 1.0 / max(h, w))) * math.sqrt(h * w)).astype(self.dtype)
            init = 0.01 * gen.standard_normal((k, channels, 2, *freqs.shape))
        else:
            init = 0.01 * gen.standard_normal((k, channels, h, w))
        self.weight = Parameter(init.astype(self.dtype))

    def __call__(self) -> Tensor:
        t = irfft2(self.weight * self.scale, size=self.size) / 4.0 if self.param == "fourier" else self.weight
        if self.decorrelate:
            t = (t.permute(0, 2, 3, 1) @ COLOR_MIX.T.astype(self.dtype)).permute(0, 3, 1, 2)
        return F.sigmoid(t)


def random_transform(
    size: tuple[int, int], gen: np.random.Generator, jitter: int, scales: Sequence[float], angles: Sequence[float]
) -> tuple[np.ndarray, np.ndarray]:
    """Source coordinates (for :data:`resample`) of one random jitter + scale + rotation about the centre.

    Output pixel p reads the input at c + R(−θ)·(p − c)/s + δ, with the shift δ uniform in
    {−jitter, …, jitter}² pixels, s drawn from ``scales`` and θ (degrees) from ``angles``.
    """
    h, w = size
    dy, dx = gen.integers(-jitter, jitter + 1, size=2) if jitter > 0 else (0, 0)
    s = float(gen.choice(np.asarray(scales, dtype=np.float64))) if len(scales) else 1.0
    theta = math.radians(float(gen.choice(np.asarray(angles, dtype=np.float64)))) if len(angles) else 0.0
    cy, cx = (h - 1) / 2, (w - 1) / 2
    py, px = np.meshgrid(np.arange(h) - cy, np.arange(w) - cx, indexing="ij")
    cos, sin = math.cos(theta) / s, math.sin(theta) / s
    return cy + cos * py - sin * px + dy, cx + sin * py + cos * px + dx


class FeatureVisualization(NamedTuple):
    """What :func:`feature_visualization` returns."""

    image: np.ndarray
    """The optimised image(s) in [0, 1], before normalisation: [C, H, W], or [K, C, H, W] for K channels."""
    activations: np.ndarray
    """The objective at every step (before that step's update): [steps], or [steps, K]."""


def input_channels(model: Module) -> int:
    """The number of input channels: ``in_channels`` of the first module that has one."""
    for m in model.modules():
        c = getattr(m, "in_channels", None)
        if isinstance(c, int):
            return c
    raise ValueError("feature_visualization: cannot tell the model's input channels; pass in_channels")


def feature_visualization(
    model: Module,
    layer: str,
    channel: int | Sequence[int],
    steps: int = 256,
    size: int | tuple[int, int] = 128,
    *,
    lr: float = 0.05,
    param: str = "fourier",
    decorrelate: bool = True,
    jitter: int | None = None,
    scales: Sequence[float] = LUCID_SCALES,
    angles: Sequence[float] = LUCID_ANGLES,
    normalize: tuple[Any, Any] | None = None,
    in_channels: int | None = None,
    rng: Any = None,
    progress: Callable[[int, int], None] | None = None,
) -> FeatureVisualization:
    """Gradient ascent on the input to maximise the mean activation of ``channel`` at ``layer``.

    Args:
        model: any glassnet model; it runs in eval mode, parameters frozen, restored after.
        layer: a dotted name of ``model.named_modules()``; its output [N, C, h, w] or [N, C].
        channel: a channel index, or several (optimised together as one batch, one image each).
        steps: Adam steps (learning rate ``lr``, Lucid's 0.05).
        size: the image's (H, W), or one int for a square.
        param: ``"fourier"`` (decorrelated spectrum) or ``"pixel"``; ``decorrelate``: mix
            colours by ImageNet's colour covariance (3 channels only). See the module doc.
        jitter: the largest random shift in pixels (default size/16: 8 at 128, Lucid's).
        scales, angles: the random scalings and rotations (degrees) drawn at every step.
        normalize: (mean, std) per input channel, applied to the [0, 1] image before the model
            (e.g. a checkpoint's ``normalization``); None feeds the [0, 1] image.
        in_channels: the input's channels (default: the first layer's ``in_channels``).
        rng: a seed or ``numpy.random.Generator``: the initial image and every transform.
        progress: ``progress(step, steps)`` after each step.

    Returns:
        ``FeatureVisualization(image, activations)``: the image(s) in [0, 1] and the
        objective at every step. The forward pass stops at ``layer`` (nothing after it runs).
    """
    if isinstance(steps, bool) or not isinstance(steps, int | np.integer) or steps < 1:
        raise ValueError(f"feature_visualization: steps must be a positive int, got {steps!r}")
    hw = (size, size) if isinstance(size, int | np.integer) else tuple(size)
    if len(hw) != 2 or any(not isinstance(s, int | np.integer) or s < 2 for s in hw):
        raise ValueError(f"feature_visualization: size must be an int ≥ 2 or a pair (H, W), got {size!r}")
    hw = (int(hw[0]), int(hw[1]))
    progress = check_progress(progress)
    get_layer(model, layer)  # a bad name fails before any work
    single = not isinstance(channel, list | tuple | np.ndarray)
    k = 1 if single else len(channel)  # type: ignore[arg-type]
    if k < 1:
        raise ValueError("feature_visualization: give at least one channel")
    c_in = input_channels(model) if in_channels is None else int(in_channels)
    dtype = model_dtype(model)
    gen = rng if isinstance(rng, np.random.Generator) else np.random.default_rng(rng)
    shift = max(1, round(min(hw) / 16)) if jitter is None else int(jitter)
    image = ImageParam(k, c_in, hw, param, decorrelate, gen, dtype)
    mean = std = None
    if normalize is not None:
        mean = np.asarray(normalize[0], dtype=dtype).reshape(1, -1, 1, 1)
        std = np.asarray(normalize[1], dtype=dtype).reshape(1, -1, 1, 1)
    from ..optim import Adam

    opt = Adam([image.weight], lr=lr, maximize=True)
    history = np.zeros((steps, k), dtype=np.float64)
    channels: list[int] = []
    with inspection_mode(model), LayerProbe(model, layer, stop=True) as probe:
        for step in range(steps):
            src_y, src_x = random_transform(hw, gen, shift, scales, angles)
            x = resample(image(), src_y, src_x, fill=0.5)
            if mean is not None:
                x = (x - mean) / std
            probe.run(lambda x=x: model(x))
            a = probe.output
            assert a is not None
            if a.ndim not in (2, 4):
                raise ValueError(f"feature_visualization: layer {layer!r} outputs shape {a.shape}, not [N, C, h, w]")
            if step == 0:
                channels = check_channel(channel, a.shape[1], layer)
            picked = a[np.arange(k), channels]
            per = picked.mean(axis=(1, 2)) if a.ndim == 4 else picked
            history[step] = per.numpy()
            opt.zero_grad()
            per.sum().backward()
            opt.step()
            if progress is not None:
                progress(step + 1, steps)
        with no_grad():
            result = image().numpy()
    if single:
        return FeatureVisualization(result[0], history[:, 0])
    return FeatureVisualization(result, history)
