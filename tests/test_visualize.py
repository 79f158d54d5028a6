"""glassnet.visualize and ``glassnet visualize``: attribution against PyTorch twins (float64),
occlusion against a brute-force loop, feature visualisation (the objective rises; a first-layer
channel's image correlates with its filter), Grad-CAM of the pretrained EfficientNet-Lite0 on
the bundled photos, the models left as they were, and the command line.

The torch twins have the same weights; guided backpropagation in torch is the usual custom
``autograd.Function`` whose backward is ``g.clamp(min=0) * (x > 0)``.
"""

from __future__ import annotations

import threading
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from click.testing import CliRunner
from PIL import Image
from test_models import copy_to_torch, torch_zoo

import glassnet
import glassnet.functional as F
from glassnet import nn
from glassnet.checkpoint import save_checkpoint
from glassnet.cli import EXIT_USER_ERROR, cli
from glassnet.gradcheck import gradcheck
from glassnet.models import MODELS, default_input_shape, resnet20
from glassnet.visualize import (
    feature_visualization,
    grad_cam,
    guided_backprop,
    guided_relu,
    irfft2,
    layer_names,
    occlusion,
    predicted,
    resample,
    saliency,
    smoothgrad,
    upsample,
)
from glassnet.visualize.features import random_transform

SAMPLES = Path(glassnet.__file__).resolve().parent / "explorer" / "static" / "samples"
PARITY = 1e-5  # the bound (float64); the measured errors are printed with -s

measured: dict[str, float] = {}


def close(name: str, got: np.ndarray, want: np.ndarray, tol: float = PARITY) -> None:
    """max |got − want| relative to max |want|, recorded in ``measured`` and checked against ``tol``."""
    assert got.shape == want.shape, (name, got.shape, want.shape)
    err = float(np.max(np.abs(got - want)) / max(float(np.max(np.abs(want))), 1e-300))
    measured[name] = err
    print(f"parity {name}: max relative error {err:.1e}")
    assert err < tol, (name, err)


# ------------------------------------------------------------------------------ models and twins
def small_cnn(seed: int = 0) -> nn.Sequential:
    """conv(3→4, 3×3) relu pool conv(4→6) relu pool flatten linear(96→5) on 3×16×16, float64."""
    return nn.Sequential(
        nn.Conv2d(3, 4, 3, padding=1, rng=seed), nn.ReLU(), nn.MaxPool2d(2),
        nn.Conv2d(4, 6, 3, padding=1, rng=seed + 1), nn.ReLU(), nn.MaxPool2d(2),
        nn.Flatten(), nn.Linear(96, 5, rng=seed + 2),
    ).to(np.float64)  # fmt: skip


def small_twin(torch: Any, model: nn.Module) -> Any:
    t = torch.nn
    twin = t.Sequential(t.Conv2d(3, 4, 3, padding=1), t.ReLU(), t.MaxPool2d(2), t.Conv2d(4, 6, 3, padding=1),
                        t.ReLU(), t.MaxPool2d(2), t.Flatten(), t.Linear(96, 5)).double()  # fmt: skip
    copy_to_torch(torch, model, twin)
    return twin.eval()


def resnet_pair(torch: Any) -> tuple[nn.Module, Any]:
    model = resnet20(10, rng=0).to(np.float64)
    rng = np.random.default_rng(5)
    for m in model.modules():  # non-trivial running statistics: eval mode is what is compared
        if isinstance(m, nn.BatchNorm2d):
            m.running_mean[...] = rng.standard_normal(m.num_features) * 0.1
            m.running_var[...] = rng.uniform(0.5, 1.5, m.num_features)
    twin = torch_zoo(torch).ResNet([3, 3, 3], 10, cifar=True).double()
    copy_to_torch(torch, model, twin)
    return model, twin.eval()


def guided_twin(torch: Any, twin: Any) -> Any:
    """The twin with every ReLU module backpropagating by guided backprop's rule."""

    class GuidedReLUFn(torch.autograd.Function):
        @staticmethod
        def forward(ctx: Any, x: Any) -> Any:
            ctx.save_for_backward(x)
            return x.clamp(min=0)

        @staticmethod
        def backward(ctx: Any, g: Any) -> Any:
            (x,) = ctx.saved_tensors
            return g.clamp(min=0) * (x > 0)

    class GuidedReLU(torch.nn.Module):
        def forward(self, x: Any) -> Any:
            return GuidedReLUFn.apply(x)

    for module in list(twin.modules()):
        for name, child in list(module.named_children()):
            if isinstance(child, torch.nn.ReLU):
                setattr(module, name, GuidedReLU())
    return twin


def torch_input_grad(torch: Any, twin: Any, x: np.ndarray, target: np.ndarray) -> np.ndarray:
    tx = torch.from_numpy(x.copy()).requires_grad_(True)
    out = twin(tx)
    out[torch.arange(len(target)), torch.from_numpy(target)].sum().backward()
    return tx.grad.numpy()


def torch_grad_cam(torch: Any, twin: Any, module: Any, x: np.ndarray, target: np.ndarray) -> np.ndarray:
    seen: dict[str, Any] = {}

    def hook(mod: Any, inp: Any, out: Any) -> None:
        out.retain_grad()
        seen["a"] = out

    handle = module.register_forward_hook(hook)
    try:
        out = twin(torch.from_numpy(x))
        out[torch.arange(len(target)), torch.from_numpy(target)].sum().backward()
    finally:
        handle.remove()
    a = seen["a"]
    alpha = a.grad.mean(dim=(2, 3))
    return torch.relu(torch.einsum("nc,nchw->nhw", alpha, a)).detach().numpy()


# ------------------------------------------------------------------------------ Op.override_backward
def test_override_backward_swaps_one_rule_for_the_block() -> None:
    x = glassnet.Tensor(np.array([-1.0, 2.0, 3.0]), requires_grad=True)
    g = np.array([5.0, -4.0, 6.0])
    y = F.relu(x)
    own = F.relu.fast_backward  # the backward of the forward that ran (fast by default)
    assert y.grad_fn.backward_fn is own
    with guided_relu():
        assert y.grad_fn.backward_fn.__name__ == "guided_relu_backward"  # a learner can see the rule change
        y.backward(g, retain_graph=True)
    np.testing.assert_array_equal(x.grad, [0.0, 0.0, 6.0])  # only where x > 0 *and* g > 0
    assert y.grad_fn.backward_fn is own  # restored on exit
    x.grad = None
    y.backward(g)
    np.testing.assert_array_equal(x.grad, [0.0, -4.0, 6.0])


def test_override_backward_nests_restores_after_errors_and_stays_in_its_thread() -> None:
    def double(g: Any, ctx: Any) -> tuple[Any]:
        return (2 * g,)

    def triple(g: Any, ctx: Any) -> tuple[Any]:
        return (3 * g,)

    with F.relu.override_backward(double):
        assert F.relu.backward_for("reference") is double
        with F.relu.override_backward(triple):
            assert F.relu.backward_for("reference") is triple
            other: list[Any] = []
            t = threading.Thread(target=lambda: other.append(F.relu.backward_for("reference")))
            t.start()
            t.join()
            assert other == [F.relu.reference_backward]  # another thread keeps the op's own rule
        assert F.relu.backward_for("reference") is double
    with pytest.raises(KeyError), F.relu.override_backward(double):
        raise KeyError("inside")
    assert F.relu.backward_for("reference") is F.relu.reference_backward


# ------------------------------------------------------------------------------ parity with torch
@pytest.mark.torch
def test_small_cnn_saliency_guided_and_grad_cam_match_torch(torch: Any) -> None:
    model = small_cnn()
    twin = small_twin(torch, model)
    x = np.random.default_rng(1).standard_normal((3, 3, 16, 16))
    target = np.array([0, 3, 4])
    close("small saliency", saliency(model, x, target), torch_input_grad(torch, twin, x, target))
    # one int for every sample, and one image without a batch axis
    want = torch_input_grad(torch, twin, x, np.array([2, 2, 2]))
    close("small saliency (int target)", saliency(model, x, 2), want)
    close("small saliency (one image)", saliency(model, x[1], 2), want[1])
    for layer, index in (("4", 4), ("3", 3)):  # after the ReLU, and the raw convolution
        close(f"small grad_cam {layer}", grad_cam(model, x, target, layer),
              torch_grad_cam(torch, twin, twin[index], x, target))  # fmt: skip
    guided = guided_twin(torch, small_twin(torch, model))
    got = guided_backprop(model, x, target)
    close("small guided backprop", got, torch_input_grad(torch, guided, x, target))
    assert not np.allclose(got, saliency(model, x, target))  # the rule did change something


@pytest.mark.torch
def test_smoothgrad_matches_torch_with_the_same_noise(torch: Any) -> None:
    model = small_cnn()
    twin = small_twin(torch, model)
    x = np.random.default_rng(2).standard_normal((2, 3, 16, 16))
    target = np.array([1, 4])
    n, sigma, seed = 6, 0.3, 7
    noise = sigma * np.random.default_rng(seed).standard_normal((n, *x.shape))  # the documented recipe
    want = np.mean([torch_input_grad(torch, twin, x + e, target) for e in noise], axis=0)
    calls: list[tuple[int, int]] = []
    got = smoothgrad(model, x, target, n=n, sigma=sigma, rng=seed, progress=lambda d, t: calls.append((d, t)))
    close("small smoothgrad", got, want)
    assert calls == [(k, n) for k in range(1, n + 1)]
    # sigma=None: 15 % of each sample's range; the target defaults to the clean prediction
    span = x.reshape(2, -1).max(1) - x.reshape(2, -1).min(1)
    noise = (0.15 * span).reshape(-1, 1, 1, 1) * np.random.default_rng(3).standard_normal((4, *x.shape))
    pred = predicted(model, x)
    want = np.mean([torch_input_grad(torch, twin, x + e, pred) for e in noise], axis=0)
    close("small smoothgrad (default sigma)", smoothgrad(model, x, None, n=4, rng=3), want)


@pytest.mark.torch
def test_resnet20_grad_cam_on_blocks_saliency_and_guided_match_torch(torch: Any) -> None:
    model, twin = resnet_pair(torch)
    x = np.random.default_rng(4).standard_normal((2, 3, 32, 32))
    target = np.array([3, 8])
    for layer, module in (("layer2.1", twin.layer2[1]), ("layer3.0", twin.layer3[0]), ("layer3", twin.layer3)):
        close(f"resnet20 grad_cam {layer}", grad_cam(model, x, target, layer),
              torch_grad_cam(torch, twin, module, x, target))  # fmt: skip
    assert grad_cam(model, x, target, "layer2.1").shape == (2, 16, 16)
    close("resnet20 saliency", saliency(model, x, target), torch_input_grad(torch, twin, x, target))
    guided = guided_twin(torch, resnet_pair(torch)[1])
    close("resnet20 guided backprop", guided_backprop(model, x, target), torch_input_grad(torch, guided, x, target))


@pytest.mark.torch
def test_upsample_is_torch_bilinear_without_aligned_corners(torch: Any) -> None:
    cam = np.random.default_rng(0).random((2, 7, 5))
    for size in ((32, 20), (7, 5), (3, 11), 16):
        hw = (size, size) if isinstance(size, int) else size
        want = torch.nn.functional.interpolate(torch.from_numpy(cam)[:, None], size=hw, mode="bilinear",
                                               align_corners=False)[:, 0].numpy()  # fmt: skip
        np.testing.assert_allclose(upsample(cam, size), want, rtol=1e-12, atol=1e-12)
    assert upsample(cam[0], 14).shape == (14, 14)


# ------------------------------------------------------------------------------ occlusion
def brute_force_occlusion(model: nn.Module, x: np.ndarray, t: int, k: tuple[int, int], s: tuple[int, int],
                          baseline: Any) -> np.ndarray:  # fmt: skip
    def prob(img: np.ndarray) -> float:
        with glassnet.no_grad():
            z = model(img[None]).numpy()[0]
        e = np.exp(z - z.max())
        return float(e[t] / e.sum())

    c, h, w = x.shape
    base = np.broadcast_to(baseline, x.shape)
    p0 = prob(x)
    rows = []
    for r in range(0, h - k[0] + 1, s[0]):
        row = []
        for q in range(0, w - k[1] + 1, s[1]):
            y = x.copy()
            y[:, r : r + k[0], q : q + k[1]] = base[:, r : r + k[0], q : q + k[1]]
            row.append(p0 - prob(y))
        rows.append(row)
    return np.array(rows)


def test_occlusion_equals_a_brute_force_loop() -> None:
    model = small_cnn().eval()
    x = np.random.default_rng(6).standard_normal((2, 3, 16, 16))
    got = occlusion(model, x, [1, 2], window=4, stride=3, batch_size=7)
    assert got.shape == (2, 5, 5)
    for i, t in enumerate((1, 2)):
        np.testing.assert_allclose(got[i], brute_force_occlusion(model, x[i], t, (4, 4), (3, 3), 0.0), atol=1e-14)
    mean = x[0].mean(axis=(1, 2), keepdims=True)  # a per-channel baseline, rectangular windows
    got = occlusion(model, x[0], 3, window=(5, 3), stride=(4, 2), baseline=mean)
    assert got.shape == (3, 7)
    np.testing.assert_allclose(got, brute_force_occlusion(model, x[0], 3, (5, 3), (4, 2), mean), atol=1e-14)
    with pytest.raises(ValueError, match="larger than the input"):
        occlusion(model, x, 0, window=17)
    with pytest.raises(ValueError, match="window"):
        occlusion(model, x, 0, window=0)


# ------------------------------------------------------------------------------ hygiene
def test_models_are_left_as_they_were() -> None:
    model = small_cnn()
    model.train()
    model[1].training = False  # a mixed state must come back exactly
    model[0].weight.requires_grad = False
    model[7].weight.grad = np.ones_like(model[7].weight.data)
    before = [(m.training, dict(m._forward_hooks)) for m in model.modules()]
    flags = [p.requires_grad for p in model.parameters()]
    x = np.random.default_rng(0).standard_normal((2, 3, 16, 16))

    def unchanged() -> None:
        assert [(m.training, dict(m._forward_hooks)) for m in model.modules()] == before
        assert [p.requires_grad for p in model.parameters()] == flags
        np.testing.assert_array_equal(model[7].weight.grad, 1.0)
        assert all(p.grad is None for n, p in model.named_parameters() if n != "7.weight")

    for run in (
        lambda: saliency(model, x, 1),
        lambda: smoothgrad(model, x, 1, n=2),
        lambda: guided_backprop(model, x, 1),
        lambda: grad_cam(model, x, 1, "4"),
        lambda: occlusion(model, x, 1, window=8),
        lambda: feature_visualization(model, "4", 2, steps=2, size=16),
    ):
        run()
        unchanged()
    for bad in (
        lambda: grad_cam(model, x, 99, "4"),  # fails after the hook is in place
        lambda: feature_visualization(model, "4", 77, steps=2, size=16),
    ):
        with pytest.raises(ValueError):
            bad()
        unchanged()
    assert F.relu.backward_for("reference") is F.relu.reference_backward


def test_errors_name_the_bad_value_and_the_valid_layers() -> None:
    model = small_cnn()
    x = np.zeros((1, 3, 16, 16))
    with pytest.raises(ValueError, match=r"unknown layer 'conv9'.*valid layers: 0, 1, 2, 3, 4, 5, 6, 7$") as e:
        grad_cam(model, x, 0, "conv9")
    assert "\n" not in str(e.value)
    with pytest.raises(ValueError, match=r"did you mean '4'"):
        feature_visualization(model, "4 ", 0, steps=1, size=16)
    with pytest.raises(ValueError, match=r"target 5 is out of range: the model has 5 classes \(0..4\)"):
        saliency(model, x, 5)
    with pytest.raises(ValueError, match=r"target -1 is out of range"):
        saliency(model, x, -1)
    with pytest.raises(ValueError, match="one int or 1 ints"):
        saliency(model, x, [0, 1])
    with pytest.raises(ValueError, match=r"channel 6 is out of range: layer '4' has 6 channels \(0..5\)"):
        feature_visualization(model, "4", [0, 6], steps=1, size=16)
    with pytest.raises(ValueError, match=r"outputs shape \(1, 96\); Grad-CAM needs a map"):
        grad_cam(model, x, 0, "6")
    with pytest.raises(ValueError, match="expected an image"):
        saliency(model, np.zeros((16, 16)), 0)
    assert layer_names(model) == [str(i) for i in range(8)]


# ------------------------------------------------------------------------------ feature visualisation
def test_the_ops_of_the_parametrisation_pass_gradcheck() -> None:
    rng = np.random.default_rng(0)
    for w in (8, 7):
        gradcheck(lambda s, w=w: irfft2(s, size=(6, w)), rng.standard_normal((2, 3, 2, 6, w // 2 + 1))).assert_ok()
    x = rng.standard_normal((2, 3, 7, 9))
    sy, sx = random_transform((7, 9), rng, 2, (0.9, 1.1), (-10, 10))
    gradcheck(lambda t: resample(t, sy, sx, fill=0.5), x).assert_ok()
    yy, xx = np.meshgrid(np.arange(7.0), np.arange(9.0), indexing="ij")
    np.testing.assert_array_equal(resample(x, yy, xx), x)  # the identity transform reads every pixel exactly
    spectrum = rng.standard_normal((3, 2, 6, 5))
    np.testing.assert_allclose(irfft2(spectrum), np.fft.irfft2(spectrum[:, 0] + 1j * spectrum[:, 1]))


def gabor(k: int, theta: float, freq: float, sigma: float) -> np.ndarray:
    """A zero-mean Gabor filter k×k: a cosine grating of ``freq`` cycles/pixel across ``theta``."""
    r = (k - 1) / 2
    y, x = np.mgrid[-r : r + 1, -r : r + 1]
    g = np.exp(-(x**2 + y**2) / (2 * sigma**2)) * np.cos(2 * np.pi * freq * (x * np.cos(theta) + y * np.sin(theta)))
    return g - g.mean()


def best_patch_correlation(image: np.ndarray, w: np.ndarray) -> float:
    """max over positions of the Pearson correlation between a k×k patch (all channels) and the filter w."""
    c, k = w.shape[0], w.shape[-1]
    patches = np.lib.stride_tricks.sliding_window_view(image, (k, k), axis=(1, 2))
    p = patches.transpose(1, 2, 0, 3, 4).reshape(-1, c * k * k)
    p = p - p.mean(axis=1, keepdims=True)
    v = (w - w.mean()).ravel()
    return float(np.max(p @ v / (np.linalg.norm(p, axis=1) * np.linalg.norm(v) + 1e-12)))


def gabor_layer() -> tuple[nn.Sequential, np.ndarray]:
    """A first layer of three 9×9 Gabor filters (grey vertical, red−green diagonal, yellow−blue horizontal)
    followed by a ReLU and layers the visualisation never reaches (a Linear for another input size)."""
    colours = [np.array([1.0, 1.0, 1.0]), np.array([1.0, -1.0, 0.0]), np.array([0.5, 0.5, -1.0])]
    w = np.stack(
        [
            c[:, None, None] * gabor(9, th, 0.125, 3.0)[None]
            for c, th in zip(colours, (0, np.pi / 4, np.pi / 2), strict=True)
        ]
    )
    model = nn.Sequential(nn.Conv2d(3, 3, 9, padding=4, rng=0), nn.ReLU(), nn.Flatten(), nn.Linear(5, 2, rng=0))
    model[0].weight.data[...] = w
    model[0].bias.data[...] = 0
    return model, w.astype(np.float32)


def test_feature_visualization_raises_the_activation_and_matches_first_layer_filters() -> None:
    model, w = gabor_layer()
    calls: list[int] = []
    result = feature_visualization(
        model, "1", [0, 1, 2], steps=256, size=32, rng=0, progress=lambda s, n: calls.append(s)
    )
    assert result.image.shape == (3, 3, 32, 32) and result.activations.shape == (256, 3)
    assert 0 <= result.image.min() and result.image.max() <= 1  # a sigmoid (saturating in float32)
    assert calls == list(range(1, 257))
    first, last = result.activations[:16].mean(axis=0), result.activations[-16:].mean(axis=0)
    print("feature vis mean activation, first 16 → last 16 steps:", np.round(first, 3), np.round(last, 3))
    assert np.all(last > 3 * first)
    with glassnet.no_grad():  # the untransformed result, too, beats the starting image
        a = model[1](model[0](result.image)).numpy().mean(axis=(2, 3))
    assert np.all(np.diag(a) > 3 * first)
    corr = [best_patch_correlation(result.image[i], w[i]) for i in range(3)]
    noise = np.random.default_rng(0).random((3, 32, 32))
    base = [best_patch_correlation(noise, w[i]) for i in range(3)]
    print("feature vis best-patch correlation with the filter:", np.round(corr, 2), "uniform noise:", np.round(base, 2))
    assert corr[0] > 0.75 and min(corr) > 0.5
    assert all(c > b + 0.25 for c, b in zip(corr, base, strict=True))
    # seeded: the same seed gives the same image; a single channel gives one image and one curve
    one = feature_visualization(model, "1", 0, steps=3, size=20, rng=4, param="pixel", decorrelate=False)
    again = feature_visualization(model, "1", 0, steps=3, size=20, rng=np.random.default_rng(4), param="pixel",
                                  decorrelate=False)  # fmt: skip
    assert one.image.shape == (3, 20, 20) and one.activations.shape == (3,)
    np.testing.assert_array_equal(one.image, again.image)


def test_feature_visualization_of_a_dense_unit_with_normalisation() -> None:
    model = small_cnn(3).to(np.float32)
    r = feature_visualization(model, "7", 2, steps=40, size=16, normalize=([0.5] * 3, [0.25] * 3), rng=1)
    assert r.image.shape == (3, 16, 16) and r.image.dtype == np.float32
    assert r.activations[-5:].mean() > r.activations[:5].mean() + 0.1
    with pytest.raises(ValueError, match="param must be"):
        feature_visualization(model, "7", 2, steps=1, size=16, param="wavelet")


# ------------------------------------------------------------------------------ the pretrained model
@pytest.fixture(scope="module")
def lite0() -> nn.Module:
    from glassnet.models.pretrained import PretrainedError

    try:
        return glassnet.models.get_model("efficientnet_lite0", pretrained=True)
    except PretrainedError as e:
        pytest.skip(str(e))


def side_by_side(names: tuple[str, str], width: int = 168, height: int = 224) -> np.ndarray:
    """Two photos, each resized to ``height`` and centre-cropped to ``width``, next to each other: [3, H, 2W],
    scaled as the Lite models expect ((x − 127)/128)."""
    halves = []
    for name in names:
        with Image.open(SAMPLES / name) as im:
            im = im.convert("RGB")
        im = im.resize((round(im.width * height / im.height), height), Image.Resampling.BICUBIC)
        left = (im.width - width) // 2
        halves.append(np.asarray(im.crop((left, 0, left + width, height)), dtype=np.float32))
    return ((np.concatenate(halves, axis=1) - 127) / 128).transpose(2, 0, 1)


def test_grad_cam_of_pretrained_lite0_is_on_the_cat(lite0: nn.Module) -> None:
    """chelsea.png (left, the box x < 168 of a 224×336 input) next to coffee.png (right): Grad-CAM at the
    last block (_blocks.15, 7×11) of each photo's class has most of its mass on that photo."""
    from glassnet.models.pretrained import imagenet_classes, preprocess

    x = preprocess(SAMPLES / "chelsea.png")
    cat = predicted(lite0, x)
    assert "cat" in imagenet_classes()[cat] or imagenet_classes()[cat] == "tabby"
    pair = side_by_side(("chelsea.png", "coffee.png"))
    for cls, inside in ((cat, slice(0, 168)), (imagenet_classes().index("espresso"), slice(168, 336))):
        cam = upsample(grad_cam(lite0, pair, cls, "_blocks.15"), pair.shape[1:])
        share = cam[:, inside].sum() / cam.sum()
        print(f"Grad-CAM of {imagenet_classes()[cls]!r}: {share:.1%} of the mass on its photo")
        assert share > 0.8


# ------------------------------------------------------------------------------ command line
def invoke(*args: Any) -> Any:
    return CliRunner().invoke(cli, [str(a) for a in args])


def png_size(path: Path) -> tuple[int, int]:
    with Image.open(path) as im:
        assert im.format == "PNG"
        return im.size


@pytest.fixture(scope="module")
def checkpoint(tmp_path_factory: pytest.TempPathFactory) -> Path:
    model = glassnet.models.lenet5(rng=0)
    path = tmp_path_factory.mktemp("vis") / "lenet.safetensors"
    classes = [f"digit {i}" for i in range(10)]
    save_checkpoint(path, model, architecture="lenet5", arch_kwargs={"num_classes": 10, "in_channels": 1},
                    classes=classes, normalization={"mean": [0.5], "std": [0.25]}, input_shape=(1, 28, 28))  # fmt: skip
    return path


def test_cli_writes_each_picture(tmp_path: Path, checkpoint: Path) -> None:
    runs = [
        ("gradcam", "resnet20", "--layer", "layer2.1"),
        ("saliency", checkpoint, "--target", "digit 3"),
        ("saliency", "resnet20", "--method", "smoothgrad", "--samples", "3"),
        ("saliency", "tf_cnn", "--method", "guided", "--target", "4"),
        ("occlusion", checkpoint, SAMPLES / "camera.png", "--window", "7", "--stride", "7"),
        ("features", checkpoint, "--steps", "3", "--channel", "1", "--channel", "4"),
        ("features", "resnet20", "--layer", "layer1.0", "--steps", "2", "--size", "24"),
    ]
    for i, run in enumerate(runs):
        out = tmp_path / f"{i}.png"
        r = invoke("visualize", *run, "-o", out, "--quiet")
        assert r.exit_code == 0, (run, r.output, r.exception)
        assert f"wrote {out}" in r.stdout
        w, h = png_size(out)
        assert 600 <= w <= 2000 and 300 <= h <= 1500, (run, w, h)
    r = invoke("visualize", "gradcam", "resnet20", "-o", tmp_path / "g.png", "--quiet")
    assert "(layer layer3)" in r.stdout  # the default: the last layer with a spatial map


@pytest.mark.parametrize("name", sorted(MODELS))
def test_cli_works_with_every_zoo_model(name: str, tmp_path: Path) -> None:
    side = default_input_shape(name)[1]  # the ImageNet models run at 64×64 (AlexNet's stem needs 96) for speed
    size = [] if side <= 64 else ["--size", "96" if name == "alexnet" else "64"]
    r = invoke("visualize", "gradcam", name, "-o", tmp_path / "g.png", "--quiet", *size)
    assert r.exit_code == 0, (r.output, r.exception)
    assert png_size(tmp_path / "g.png")[0] >= 600


def test_cli_with_pretrained_weights(tmp_path: Path, lite0: nn.Module) -> None:
    r = invoke("visualize", "gradcam", "efficientnet_lite0", "--pretrained", "--layer", "_blocks.15", "-o",
               tmp_path / "cam.png", "--quiet")  # fmt: skip
    assert r.exit_code == 0, (r.output, r.exception)
    assert png_size(tmp_path / "cam.png") == (1200, 440)


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (("gradcam", "resnet20", "--layer", "layer9"), "error: unknown layer 'layer9'"),
        (("gradcam", "resnet20", "--target", "10"), "error: target 10 is out of range: the model has 10 classes"),
        (("saliency", "resnet20", "--target", "-3"), "error: target -3 is out of range"),
        (("saliency", "resnet20", "--target", "zebra"), "error: unknown target 'zebra'"),
        (("features", "resnet20", "--layer", "layer1", "--channel", "16"), "error: channel 16 is out of range"),
        (("features", "resnet20", "--layer", "nope"), "error: unknown layer 'nope'"),
        (("occlusion", "lenet5", "--window", "40"), "error: --window 40 is larger than the input"),
        (("gradcam", "resnet20", "--pretrained"), "error: no pretrained weights for 'resnet20'"),
        (("gradcam", "no_such_net"), "error: unknown model 'no_such_net'"),
        (("saliency", "resnet20", "missing.png"), "error: Invalid value for '[IMAGE]'"),
    ],
)
def test_cli_user_errors_are_one_line(args: tuple[str, ...], message: str, tmp_path: Path) -> None:
    r = invoke("visualize", *args, "-o", tmp_path / "x.png", "--quiet")
    assert r.exit_code == EXIT_USER_ERROR, (r.output, r.exception)
    errors = [line for line in r.stderr.splitlines() if line.startswith("error:")]
    assert len(errors) == 1 and errors[0].startswith(message), r.stderr
    assert "Traceback" not in r.output and not (tmp_path / "x.png").exists()
