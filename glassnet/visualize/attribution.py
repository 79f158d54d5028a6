"""Why this prediction: gradients of a class score with respect to the input or a layer.

Notation: x is the input [N, C, H, W], z = model(x) the logits [N, K], t the target class
of each sample, A = the output of layer ``layer`` [N, C', h, w].

===================  ===========================================================  =============
function             what it computes                                             shape
===================  ===========================================================  =============
``saliency``         ∂z_t / ∂x (Simonyan et al., 2014)                            like x
``smoothgrad``       (1/n) Σ_k ∂z_t/∂x at x + ε_k, ε_k ~ N(0, σ²) (Smilkov, 2017)  like x
``guided_backprop``  ∂z_t / ∂x with ReLU's backward rule changed (Springenberg)    like x
``grad_cam``         ReLU(Σ_c α_c A_c), α_c = mean_ij ∂z_t/∂A_cij (Selvaraju)      [N, h, w]
``upsample``         a map resized bilinearly to the input's size                 [N, H, W]
``occlusion``        p_t(x) − p_t(x with one window set to the baseline)          [N, n_h, n_w]
===================  ===========================================================  =============

Every function takes NumPy arrays (an image [C, H, W] or a batch [N, C, H, W]) and returns
NumPy arrays (without the batch axis when given one image). ``target`` is a class index, one
index per sample, or None for the predicted class. The model runs in eval mode with its
parameters frozen for the duration of the call; its modes, ``requires_grad`` flags and
``.grad`` are as before afterwards, and no hook is left behind. Computation is in the
model's dtype (convert the model with ``model.to(np.float64)`` for float64 results).
"""

from __future__ import annotations

import contextlib
from collections.abc import Callable, Iterator
from typing import Any

import numpy as np

from .. import functional as F
from ..autograd.tensor import Tensor, no_grad
from ..functional._op import Context
from ..nn.module import Module
from ._common import LayerProbe, as_batch, check_logits, check_progress, inspection_mode, model_dtype, targets


def _input_gradient(model: Module, x: Any, target: Any, who: str) -> np.ndarray:
    """∂ Σ_n z[n, t_n] / ∂x for a batch (samples are independent in eval mode, so row n is ∂z[n, t_n]/∂x_n)."""
    xb, single = as_batch(x, model_dtype(model), who)
    with inspection_mode(model):
        xt = Tensor(xb, requires_grad=True)
        logits = check_logits(model(xt), who)
        t = targets(target, logits.numpy(), who)
        logits[np.arange(len(t)), t].sum().backward()
        grad = np.zeros_like(xb) if xt.grad is None else np.asarray(xt.grad)
    return grad[0] if single else grad


def saliency(model: Module, x: Any, target: Any = None) -> np.ndarray:
    """The gradient of the target logit with respect to the input: ∂z_t / ∂x, shape of ``x``.

    ``target``: an int, one int per sample, or None (the predicted class). The saliency map
    of Simonyan et al. is ``np.abs(s).max(axis=channel)`` of this raw gradient.
    """
    return _input_gradient(model, x, target, "saliency")


def predicted(model: Module, x: Any) -> np.ndarray:
    """The predicted class of each sample (argmax of the logits, eval mode): [N], or an int for one image."""
    xb, single = as_batch(x, model_dtype(model), "predicted")
    with inspection_mode(model), no_grad():
        logits = check_logits(model(Tensor(xb)), "predicted").numpy()
    t = np.argmax(logits, axis=1)
    return int(t[0]) if single else t


def smoothgrad(
    model: Module,
    x: Any,
    target: Any = None,
    n: int = 25,
    sigma: float | None = None,
    rng: Any = None,
    progress: Callable[[int, int], None] | None = None,
) -> np.ndarray:
    """SmoothGrad: the saliency averaged over ``n`` noisy copies of the input, shape of ``x``.

    ``(1/n) Σ_{k<n} ∂z_t/∂x (x + ε_k)`` with ``ε = sigma · rng.standard_normal((n, *x.shape))``
    drawn once (``ε_k = ε[k]``), in float64, then added in the model's dtype. ``rng``: a seed or
    a ``numpy.random.Generator``. ``sigma``: the noise's standard deviation in the input's
    units; None gives the paper's 15 % of each sample's range, 0.15·(max x_n − min x_n).
    The target defaults to the class predicted for the clean input. ``progress(done, n)``
    is called after each copy.
    """
    if isinstance(n, bool) or not isinstance(n, int | np.integer) or n < 1:
        raise ValueError(f"smoothgrad: n must be a positive int, got {n!r}")
    progress = check_progress(progress)
    xb, single = as_batch(x, model_dtype(model), "smoothgrad")
    if target is None:
        target = predicted(model, xb)
    if sigma is None:
        span = xb.reshape(len(xb), -1).max(axis=1) - xb.reshape(len(xb), -1).min(axis=1)
        scale: Any = (0.15 * span.astype(np.float64)).reshape(-1, 1, 1, 1)
    else:
        if not np.isfinite(sigma) or sigma < 0:
            raise ValueError(f"smoothgrad: sigma must be a non-negative number, got {sigma!r}")
        scale = float(sigma)
    gen = rng if isinstance(rng, np.random.Generator) else np.random.default_rng(rng)
    noise = scale * gen.standard_normal((n, *xb.shape))
    total = np.zeros(xb.shape, dtype=np.float64)
    for k in range(n):
        total += _input_gradient(model, (xb + noise[k]).astype(xb.dtype), target, "smoothgrad")
        if progress is not None:
            progress(k + 1, n)
    out = (total / n).astype(xb.dtype)
    return out[0] if single else out


# -- guided backpropagation: the same backward, one rule changed ------------------------------------
def guided_relu_backward(grad: np.ndarray, ctx: Context) -> tuple[np.ndarray]:
    """Guided backpropagation's ReLU rule: pass the gradient where the forward input was
    positive (ReLU's own rule) *and* the gradient itself is positive:
    ``dx = g · [x > 0] · [g > 0]`` (for ReLU6, ``[0 < x < 6]`` instead of ``[x > 0]``)."""
    if "mask" not in ctx:
        raise RuntimeError("guided_relu: this ReLU's forward saved no 'mask' (an unexpected implementation)")
    return (np.where(ctx.mask & (grad > 0), grad, grad.dtype.type(0)),)


@contextlib.contextmanager
def guided_relu() -> Iterator[None]:
    """Inside the block, ReLU and ReLU6 backpropagate with :func:`guided_relu_backward`.

    Nothing else changes: forward passes, every other op's backward and the graph are the
    usual ones, so ``with guided_relu(): logit.backward()`` *is* guided backpropagation
    (Springenberg et al., 2015). Built on :meth:`glassnet.autograd.Op.override_backward`:
    it applies to backward passes run in this thread, and the usual rule is back on exit.
    """
    with F.relu.override_backward(guided_relu_backward), F.relu6.override_backward(guided_relu_backward):
        yield


def guided_backprop(model: Module, x: Any, target: Any = None) -> np.ndarray:
    """Guided backpropagation: :func:`saliency` computed inside :func:`guided_relu`, shape of ``x``."""
    with guided_relu():
        return _input_gradient(model, x, target, "guided_backprop")


# -- Grad-CAM --------------------------------------------------------------------------------------
def grad_cam(model: Module, x: Any, target: Any, layer: str, relu: bool = True) -> np.ndarray:
    """Grad-CAM at layer ``layer`` (a dotted name of ``model.named_modules()``): [N, h, w].

    With A = the layer's output [N, C', h, w] and z_t the target logit::

        α_c = (1 / (h·w)) Σ_ij ∂z_t / ∂A_cij          (one weight per channel)
        map = ReLU(Σ_c α_c · A_c)                      (ReLU only when ``relu``)

    at the layer's own resolution; :func:`upsample` brings it to the input's size. The
    backward pass stops at the layer (its output is made a leaf), so nothing before it is
    differentiated. ``target``: an int, one per sample, or None (the predicted class).
    """
    xb, single = as_batch(x, model_dtype(model), "grad_cam")
    with inspection_mode(model), LayerProbe(model, layer, leaf=True) as probe:
        logits = check_logits(probe.run(lambda: model(Tensor(xb))), "grad_cam")
        a = probe.output
        assert a is not None
        if a.ndim != 4:
            raise ValueError(f"grad_cam: layer {layer!r} outputs shape {a.shape}; Grad-CAM needs a map [N, C, h, w]")
        t = targets(target, logits.numpy(), "grad_cam")
        logits[np.arange(len(t)), t].sum().backward()
        grad = np.zeros_like(a.data) if a.grad is None else np.asarray(a.grad)
        alpha = grad.mean(axis=(2, 3))
        cam = np.einsum("nc,nchw->nhw", alpha, np.asarray(a.data))
    if relu:
        cam = np.maximum(cam, 0)
    return cam[0] if single else cam


def _interp_matrix(n_in: int, n_out: int) -> np.ndarray:
    """[n_out, n_in] weights of linear interpolation with half-pixel centres (align_corners=False)."""
    src = np.maximum((np.arange(n_out) + 0.5) * (n_in / n_out) - 0.5, 0.0)
    i0 = np.minimum(np.floor(src).astype(np.intp), n_in - 1)
    i1 = np.minimum(i0 + 1, n_in - 1)
    lam = src - i0
    m = np.zeros((n_out, n_in))
    np.add.at(m, (np.arange(n_out), i0), 1 - lam)
    np.add.at(m, (np.arange(n_out), i1), lam)
    return m


def upsample(cam: Any, size: int | tuple[int, int]) -> np.ndarray:
    """Resize maps [N, h, w] (or one [h, w]) to ``size`` = (H, W) or H (square), bilinearly.

    Pixel centres are aligned as in ``torch.nn.functional.interpolate(mode="bilinear",
    align_corners=False)``: output pixel i samples the input at (i + ½)·h/H − ½ (clamped
    at the border), so the map lies over the image as the layer's grid does.
    """
    arr = np.asarray(cam)
    if arr.ndim not in (2, 3):
        raise ValueError(f"upsample: expected maps [N, h, w] or [h, w], got shape {arr.shape}")
    hh, ww = (size, size) if isinstance(size, int | np.integer) else (int(size[0]), int(size[1]))
    if hh < 1 or ww < 1:
        raise ValueError(f"upsample: size must be positive, got {size!r}")
    dtype = arr.dtype if arr.dtype.kind == "f" else np.dtype(np.float64)
    mh, mw = _interp_matrix(arr.shape[-2], hh), _interp_matrix(arr.shape[-1], ww)
    return np.einsum("Hh,...hw,Ww->...HW", mh, arr.astype(np.float64), mw).astype(dtype)


# -- occlusion -------------------------------------------------------------------------------------
def _pair(v: Any, who: str) -> tuple[int, int]:
    vals = (v, v) if isinstance(v, int | np.integer) else tuple(v)
    if len(vals) != 2 or any(isinstance(a, bool) or not isinstance(a, int | np.integer) or a < 1 for a in vals):
        raise ValueError(f"occlusion: {who} must be a positive int or a pair of them, got {v!r}")
    return int(vals[0]), int(vals[1])


def occlusion(
    model: Module,
    x: Any,
    target: Any = None,
    window: int | tuple[int, int] = 8,
    stride: int | tuple[int, int] | None = None,
    baseline: Any = 0.0,
    batch_size: int = 32,
    progress: Callable[[int, int], None] | None = None,
) -> np.ndarray:
    """How much the target probability drops when a window of the input is replaced: [N, n_h, n_w].

    ``out[n, i, j] = p_t(x_n) − p_t(x_n with rows i·s_h … i·s_h + k_h − 1 and columns
    j·s_w … j·s_w + k_w − 1 set to the baseline)`` over all channels, p = softmax(z), for the
    windows that fit: n_h = ⌊(H − k_h)/s_h⌋ + 1 (a conv's "valid" arithmetic). ``window``
    (k) and ``stride`` (s, default k) are ints or (h, w) pairs; ``baseline`` is a number or an
    array that broadcasts to x (e.g. per-channel means [C, 1, 1]). Positive: the window
    helped the prediction. Occluded copies are evaluated ``batch_size`` at a time without a
    graph; ``progress(done, total)`` is called after each batch.
    """
    progress = check_progress(progress)
    xb, single = as_batch(x, model_dtype(model), "occlusion")
    n, c, h, w = xb.shape
    kh, kw = _pair(window, "window")
    sh, sw = _pair(window if stride is None else stride, "stride")
    if kh > h or kw > w:
        raise ValueError(f"occlusion: window {kh}×{kw} is larger than the input {h}×{w}")
    if isinstance(batch_size, bool) or not isinstance(batch_size, int | np.integer) or batch_size < 1:
        raise ValueError(f"occlusion: batch_size must be a positive int, got {batch_size!r}")
    try:
        base = np.broadcast_to(np.asarray(baseline, dtype=xb.dtype), xb.shape)
    except ValueError:
        raise ValueError(
            f"occlusion: baseline of shape {np.shape(baseline)} does not broadcast to {xb.shape}"
        ) from None
    rows, cols = range(0, h - kh + 1, sh), range(0, w - kw + 1, sw)
    places = [(r, q) for r in rows for q in cols]
    out = np.zeros((n, len(rows) * len(cols)), dtype=xb.dtype)
    done, total = 0, n * len(places)
    with inspection_mode(model), no_grad():
        logits = check_logits(model(Tensor(xb)), "occlusion")
        t = targets(target, logits.numpy(), "occlusion")
        p0 = F.softmax(logits.data, axis=1)[np.arange(n), t]
        for i in range(n):
            for start in range(0, len(places), batch_size):
                chunk = places[start : start + batch_size]
                batch = np.repeat(xb[i : i + 1], len(chunk), axis=0)
                for j, (r, q) in enumerate(chunk):
                    batch[j, :, r : r + kh, q : q + kw] = base[i, :, r : r + kh, q : q + kw]
                p = F.softmax(model(Tensor(batch)).data, axis=1)[:, t[i]]
                out[i, start : start + len(chunk)] = p0[i] - p
                done += len(chunk)
                if progress is not None:
                    progress(done, total)
    out = out.reshape(n, len(rows), len(cols))
    return out[0] if single else out
