"""See what a network learned: attribution (why this prediction) and feature visualisation
(what a channel responds to), on any glassnet model, with NumPy arrays in and out.

==============================  =====================================================  ============
function                        computes                                               returns
==============================  =====================================================  ============
``saliency(model, x, target)``  ∂z_t/∂x                                                like x
``smoothgrad(..., n, sigma)``   saliency averaged over noisy copies x + N(0, σ²)        like x
``guided_backprop(...)``        saliency with ReLU's backward rule changed              like x
``guided_relu()``               the context manager that changes that one rule          —
``grad_cam(..., layer)``        ReLU(Σ_c α_c A_c), α_c = mean ∂z_t/∂A_c at ``layer``     [N, h, w]
``upsample(cam, size)``         a map resized bilinearly to the input                   [N, H, W]
``occlusion(..., window)``      drop of p_t when each window is set to the baseline     [N, nh, nw]
``feature_visualization(...)``  gradient ascent on a (Fourier) image for a channel      image, acts
==============================  =====================================================  ============

``layer`` is a dotted name of ``model.named_modules()`` (``"layer2.1"``, ``"_blocks.15"``);
:func:`layer_names` lists them. See :mod:`.attribution` and :mod:`.features`.
"""

from ._common import get_layer, inspection_mode, layer_names
from .attribution import (
    grad_cam,
    guided_backprop,
    guided_relu,
    guided_relu_backward,
    occlusion,
    predicted,
    saliency,
    smoothgrad,
    upsample,
)
from .features import FeatureVisualization, feature_visualization, irfft2, resample

__all__ = [
    "FeatureVisualization",
    "feature_visualization",
    "get_layer",
    "grad_cam",
    "guided_backprop",
    "guided_relu",
    "guided_relu_backward",
    "inspection_mode",
    "irfft2",
    "layer_names",
    "occlusion",
    "predicted",
    "resample",
    "saliency",
    "smoothgrad",
    "upsample",
]
