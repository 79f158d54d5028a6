"""The model zoo: shapes, parameter totals, torchvision state-dict layout, BasicBlock
gradients, ResNet-20 against a PyTorch re-implementation, transfer-learning helpers.

torchvision is not installed here: its ResNet and VGG are re-written below with plain
``torch.nn`` (the same module names and order as torchvision's source) and built on
the ``meta`` device to list keys and shapes without allocating. The ResNet-18 keys are
also hard-coded, so the layout is pinned even without PyTorch.
"""

from __future__ import annotations

from types import SimpleNamespace
from typing import Any

import numpy as np
import pytest

import glassnet
from glassnet import nn
from glassnet.models import (
    MODELS,
    BasicBlock,
    ZeroPadShortcut,
    alexnet,
    default_input_shape,
    find_head,
    freeze_features,
    get_model,
    lenet5,
    replace_head,
    resnet18,
    resnet20,
    resnet34,
    tf_cnn,
    tinyvgg,
    vgg11,
    vgg16,
)

# ----------------------------------------------------------------- torchvision mirror


def torch_zoo(torch: Any) -> SimpleNamespace:
    """torchvision's BasicBlock / ResNet / VGG, re-typed with plain torch.nn (and the CIFAR ResNet)."""
    tnn = torch.nn

    class TBasicBlock(tnn.Module):
        def __init__(self, inplanes: int, planes: int, stride: int = 1, downsample: Any = None) -> None:
            super().__init__()
            self.conv1 = tnn.Conv2d(inplanes, planes, 3, stride, 1, bias=False)
            self.bn1 = tnn.BatchNorm2d(planes)
            self.relu = tnn.ReLU()
            self.conv2 = tnn.Conv2d(planes, planes, 3, 1, 1, bias=False)
            self.bn2 = tnn.BatchNorm2d(planes)
            self.downsample = downsample

        def forward(self, x: Any) -> Any:
            out = self.relu(self.bn1(self.conv1(x)))
            out = self.bn2(self.conv2(out))
            identity = x if self.downsample is None else self.downsample(x)
            return self.relu(out + identity)

    class TResNet(tnn.Module):
        def __init__(self, blocks: list[int], num_classes: int = 1000, in_channels: int = 3, cifar: bool = False):
            super().__init__()
            widths = (16, 32, 64) if cifar else (64, 128, 256, 512)
            self.inplanes = widths[0]
            if cifar:
                self.conv1 = tnn.Conv2d(in_channels, 16, 3, 1, 1, bias=False)
            else:
                self.conv1 = tnn.Conv2d(in_channels, 64, 7, 2, 3, bias=False)
            self.bn1 = tnn.BatchNorm2d(widths[0])
            self.relu = tnn.ReLU()
            self.maxpool = tnn.Identity() if cifar else tnn.MaxPool2d(3, 2, 1)
            for i, (w, n) in enumerate(zip(widths, blocks, strict=True)):
                setattr(self, f"layer{i + 1}", self._make_layer(w, n, 1 if i == 0 else 2))
            self.n_layers = len(widths)
            self.avgpool = tnn.AdaptiveAvgPool2d((1, 1))
            self.fc = tnn.Linear(widths[-1], num_classes)

        def _make_layer(self, planes: int, blocks: int, stride: int) -> Any:
            downsample = None
            if stride != 1 or self.inplanes != planes:
                downsample = tnn.Sequential(
                    tnn.Conv2d(self.inplanes, planes, 1, stride, bias=False), tnn.BatchNorm2d(planes)
                )
            layers = [TBasicBlock(self.inplanes, planes, stride, downsample)]
            self.inplanes = planes
            layers += [TBasicBlock(planes, planes) for _ in range(1, blocks)]
            return tnn.Sequential(*layers)

        def forward(self, x: Any) -> Any:
            x = self.maxpool(self.relu(self.bn1(self.conv1(x))))
            for i in range(self.n_layers):
                x = getattr(self, f"layer{i + 1}")(x)
            return self.fc(torch.flatten(self.avgpool(x), 1))

    cfgs = {
        "A": [64, "M", 128, "M", 256, 256, "M", 512, 512, "M", 512, 512, "M"],
        "D": [64, 64, "M", 128, 128, "M", 256, 256, 256, "M", 512, 512, 512, "M", 512, 512, 512, "M"],
    }

    class TVGG(tnn.Module):
        def __init__(self, cfg: str, num_classes: int = 1000, batch_norm: bool = False, small: bool = False):
            super().__init__()
            layers: list[Any] = []
            c = 3
            for v in cfgs[cfg]:
                if v == "M":
                    layers.append(tnn.MaxPool2d(2, 2, ceil_mode=small))
                else:
                    layers.append(tnn.Conv2d(c, v, 3, padding=1))
                    layers += [tnn.BatchNorm2d(v), tnn.ReLU()] if batch_norm else [tnn.ReLU()]
                    c = v
            self.features = tnn.Sequential(*layers)
            p, w = (1, 512) if small else (7, 4096)
            self.avgpool = tnn.AdaptiveAvgPool2d((p, p))
            self.classifier = tnn.Sequential(
                tnn.Linear(512 * p * p, w),
                tnn.ReLU(),
                tnn.Dropout(),
                tnn.Linear(w, w),
                tnn.ReLU(),
                tnn.Dropout(),
                tnn.Linear(w, num_classes),
            )

        def forward(self, x: Any) -> Any:
            return self.classifier(torch.flatten(self.avgpool(self.features(x)), 1))

    return SimpleNamespace(BasicBlock=TBasicBlock, ResNet=TResNet, VGG=TVGG)


def torch_layout(module: Any) -> list[tuple[str, tuple[int, ...]]]:
    return [(k, tuple(v.shape)) for k, v in module.state_dict().items()]


def layout(model: nn.Module) -> list[tuple[str, tuple[int, ...]]]:
    """state_dict() keys and shapes, in its order, without copying the arrays."""
    out = []
    for mod_name, m in model.named_modules():
        for name, v in [*m._parameters.items(), *m._buffers.items()]:
            if v is not None:
                out.append((f"{mod_name}.{name}" if mod_name else name, tuple(v.shape)))
    return out


def copy_to_torch(torch: Any, model: nn.Module, tmodel: Any) -> None:
    tmodel.load_state_dict({k: torch.from_numpy(np.array(v)) for k, v in model.state_dict().items()})


# torchvision.models.resnet18().state_dict(): every key and shape, in order.
_BN = ("weight", "bias", "running_mean", "running_var", "num_batches_tracked")


def _resnet18_expected() -> list[tuple[str, tuple[int, ...]]]:
    def bn(prefix: str, c: int) -> list[tuple[str, tuple[int, ...]]]:
        return [(f"{prefix}.{n}", () if n == "num_batches_tracked" else (c,)) for n in _BN]

    keys = [("conv1.weight", (64, 3, 7, 7)), *bn("bn1", 64)]
    c_in = 64
    for stage, c in enumerate((64, 128, 256, 512), start=1):
        for block in (0, 1):
            p = f"layer{stage}.{block}"
            first_in = c_in if block == 0 else c
            keys += [(f"{p}.conv1.weight", (c, first_in, 3, 3)), *bn(f"{p}.bn1", c)]
            keys += [(f"{p}.conv2.weight", (c, c, 3, 3)), *bn(f"{p}.bn2", c)]
            if block == 0 and stage > 1:
                keys += [(f"{p}.downsample.0.weight", (c, c_in, 1, 1)), *bn(f"{p}.downsample.1", c)]
        c_in = c
    return [*keys, ("fc.weight", (1000, 512)), ("fc.bias", (1000,))]


RESNET18_KEYS_HEAD = """conv1.weight bn1.weight bn1.bias bn1.running_mean bn1.running_var bn1.num_batches_tracked
layer1.0.conv1.weight layer1.0.bn1.weight layer1.0.bn1.bias layer1.0.bn1.running_mean layer1.0.bn1.running_var
layer1.0.bn1.num_batches_tracked layer1.0.conv2.weight layer1.0.bn2.weight layer1.0.bn2.bias
layer1.0.bn2.running_mean layer1.0.bn2.running_var layer1.0.bn2.num_batches_tracked""".split()
RESNET18_KEYS_DOWNSAMPLE = [
    "layer2.0.downsample.0.weight",
    "layer2.0.downsample.1.weight",
    "layer2.0.downsample.1.bias",
    "layer2.0.downsample.1.running_mean",
    "layer2.0.downsample.1.running_var",
    "layer2.0.downsample.1.num_batches_tracked",
]


# ----------------------------------------------------------------- shapes and totals


def _forward(model: nn.Module, shape: tuple[int, ...], seed: int = 0) -> np.ndarray:
    x = np.random.default_rng(seed).standard_normal((2, *shape)).astype(np.float32)
    model.eval()
    with nn.no_grad():
        return model(x)


@pytest.mark.parametrize(
    ("builder", "kwargs", "shape", "params"),
    [
        (lenet5, {}, (1, 28, 28), 61_706),
        (lenet5, {"variant": "classic"}, (1, 28, 28), 61_706),
        (tf_cnn, {}, (3, 32, 32), 122_570),
        (tf_cnn, {"in_channels": 1, "input_size": 28}, (1, 28, 28), 93_322),
        (tinyvgg, {}, (3, 64, 64), 19_920),
        (tinyvgg, {"input_size": 28}, (3, 28, 28), 4_620),
        (tinyvgg, {"input_size": 32}, (3, 32, 32), 5_520),
        (resnet20, {}, (3, 32, 32), 272_474),
        (resnet20, {"shortcut": "A"}, (3, 32, 32), 269_722),
        (alexnet, {}, (3, 227, 227), 62_378_344),
        (resnet18, {}, (3, 64, 64), 11_689_512),
        (resnet34, {}, (3, 64, 64), 21_797_672),
    ],
)
def test_output_shape_and_parameter_total(builder: Any, kwargs: dict, shape: tuple, params: int) -> None:
    model = builder(rng=0, **kwargs)
    s = glassnet.summary(model, shape)
    n_out = 1000 if builder in (alexnet, resnet18, resnet34) else 10
    assert s.total_params == model.num_parameters() == params
    assert s.trainable_params == params
    assert s.output_shape == (1, n_out)
    assert _forward(model, shape).shape == (2, n_out)
    assert isinstance(model.name, str) and model.name


def test_tf_cnn_lecture_shapes() -> None:
    """K12: 30×30×32 → 15×15×32 → 13×13×64 → 6×6×64 → 4×4×64; conv params 896 / 18,496 / 36,928."""
    s = glassnet.summary(tf_cnn(rng=0), (3, 32, 32))
    rows = {r.name: r for r in s.rows}
    shapes = [rows[str(i)].output_shape[1:] for i in (0, 2, 3, 5, 6)]
    assert shapes == [(32, 30, 30), (32, 15, 15), (64, 13, 13), (64, 6, 6), (64, 4, 4)]
    conv = [r.params for r in s.rows if r.kind == "Conv2d"]
    assert conv == [896, 18_496, 36_928] and sum(conv) == 56_320


def test_tinyvgg_explainer_shapes() -> None:
    s = glassnet.summary(tinyvgg(rng=0), (3, 64, 64))
    got = [r.output_shape[1:] for r in s.rows if r.kind in ("Conv2d", "MaxPool2d")]
    assert got == [(10, 62, 62), (10, 60, 60), (10, 30, 30), (10, 28, 28), (10, 26, 26), (10, 13, 13)]


@pytest.mark.parametrize(
    ("builder", "total", "bn_total"), [(vgg11, 132_863_336, 132_868_840), (vgg16, 138_357_544, 138_365_992)]
)
def test_vgg_totals_layout_and_forward(builder: Any, total: int, bn_total: int) -> None:
    """The full-size model is built once (≈ 0.5 GB); the BN variant's features come from a small-input build."""
    model = builder(rng=0)
    s = glassnet.summary(model, (3, 224, 224))
    assert s.total_params == model.num_parameters() == total
    assert s.output_shape == (1, 1000)
    assert [r.output_shape[1:] for r in s.rows if r.name in ("features.0", "avgpool")] == [(64, 224, 224), (512, 7, 7)]
    keys = layout(model)
    assert [(k, sh) for k, sh in keys if k.startswith("classifier")] == [
        ("classifier.0.weight", (4096, 25088)),
        ("classifier.0.bias", (4096,)),
        ("classifier.3.weight", (4096, 4096)),
        ("classifier.3.bias", (4096,)),
        ("classifier.6.weight", (1000, 4096)),
        ("classifier.6.bias", (1000,)),
    ]
    bn_features = builder(batch_norm=True, small_input=True, rng=0).features
    assert bn_features.num_parameters() + model.classifier.num_parameters() == bn_total
    torch = _maybe_torch()
    if torch is not None:
        cfg = "A" if builder is vgg11 else "D"
        with torch.device("meta"):
            assert keys == torch_layout(torch_zoo(torch).VGG(cfg))
            t_bn = torch_zoo(torch).VGG(cfg, batch_norm=True)
        assert [(f"features.{k}", sh) for k, sh in layout(bn_features)] == torch_layout(t_bn)[:-6]
    # the adaptive pool lets a small input through (the features end at 1×1 for 32×32)
    assert _forward(model, (3, 32, 32)).shape == (2, 1000)


def _maybe_torch() -> Any:
    try:
        import torch
    except ImportError:
        return None
    return torch


def test_vgg11_small_input() -> None:
    model = vgg11(10, in_channels=1, small_input=True, rng=0)
    assert model.num_parameters() == 9_750_922 - 2 * 64 * 9
    for size in (28, 32):
        s = glassnet.summary(model, (1, size, size))
        assert s.output_shape == (1, 10)
        assert [r.output_shape[2] for r in s.rows if r.kind == "MaxPool2d"][-1] == 1
    assert _forward(model, (1, 28, 28)).shape == (2, 10)
    assert replace_head(model, 3).classifier[6].weight.shape == (3, 512)
    narrow = vgg11(10, small_input=True, head_width=128, batch_norm=True, rng=0)
    assert narrow.classifier[0].weight.shape == (128, 512)


@pytest.mark.torch
def test_vgg11_small_input_matches_torch(torch: Any) -> None:
    model = vgg11(10, small_input=True, batch_norm=True, rng=0)
    tmodel = torch_zoo(torch).VGG("A", 10, batch_norm=True, small=True)
    assert layout(model) == torch_layout(tmodel)
    for m in model.modules():
        if isinstance(m, nn.BatchNorm2d):
            m.running_mean[...] = np.random.default_rng(1).standard_normal(m.num_features) * 0.1
    copy_to_torch(torch, model, tmodel)
    x = np.random.default_rng(2).standard_normal((2, 3, 28, 28)).astype(np.float32)
    got = _forward(model, (3, 28, 28), seed=2)
    want = tmodel.eval()(torch.from_numpy(x)).detach().numpy()
    np.testing.assert_allclose(got, want, rtol=1e-4, atol=1e-5)


# ----------------------------------------------------------------- torchvision layout


def test_resnet18_state_dict_is_torchvision() -> None:
    model = resnet18(rng=0)
    keys = layout(model)
    assert keys == _resnet18_expected()
    assert len(keys) == 122
    names = [k for k, _ in keys]
    assert names[: len(RESNET18_KEYS_HEAD)] == RESNET18_KEYS_HEAD
    start = names.index(RESNET18_KEYS_DOWNSAMPLE[0])
    assert names[start : start + len(RESNET18_KEYS_DOWNSAMPLE)] == RESNET18_KEYS_DOWNSAMPLE
    assert names[-2:] == ["fc.weight", "fc.bias"]
    assert [n for n, _ in model.named_children()][:4] == ["conv1", "bn1", "relu", "maxpool"]


@pytest.mark.torch
def test_resnet_state_dicts_match_torch_mirror(torch: Any) -> None:
    zoo = torch_zoo(torch)
    assert torch_layout(zoo.ResNet([2, 2, 2, 2])) == _resnet18_expected()  # the mirror is torchvision's
    with torch.device("meta"):
        assert layout(resnet34(rng=0)) == torch_layout(zoo.ResNet([3, 4, 6, 3]))
        assert layout(resnet18(7, in_channels=1, rng=0)) == torch_layout(zoo.ResNet([2, 2, 2, 2], 7, 1))
        assert layout(resnet20(rng=0)) == torch_layout(zoo.ResNet([3, 3, 3], 10, cifar=True))


@pytest.mark.torch
def test_resnet18_forward_matches_torch(torch: Any) -> None:
    """Eval mode at 48×48: the 7×7/2 stem, the padded max pool and the projection shortcuts."""
    model = resnet18(10, rng=0)
    tmodel = torch_zoo(torch).ResNet([2, 2, 2, 2], 10)
    copy_to_torch(torch, model, tmodel)
    x = np.random.default_rng(3).standard_normal((2, 3, 48, 48)).astype(np.float32)
    got = _forward(model, (3, 48, 48), seed=3)
    want = tmodel.eval()(torch.from_numpy(x)).detach().numpy()
    np.testing.assert_allclose(got, want, rtol=1e-4, atol=1e-4)


@pytest.fixture(scope="module")
def alexnet_model() -> nn.Module:
    return alexnet(rng=0)


def test_alexnet_layout(alexnet_model: nn.Module) -> None:
    """Lecture AlexNet in torchvision's layout: features / avgpool / classifier.1,4,6 (dropout at 0, 3)."""
    model = alexnet_model
    convs = [k for k, _ in layout(model) if k.startswith("features") and k.endswith("weight")]
    assert convs == [f"features.{i}.weight" for i in (0, 4, 8, 10, 12)]  # LRN at 3 and 7
    dense = [(k, sh) for k, sh in layout(model) if k.startswith("classifier") and k.endswith("weight")]
    assert dense == [
        ("classifier.1.weight", (4096, 9216)),
        ("classifier.4.weight", (4096, 4096)),
        ("classifier.6.weight", (1000, 4096)),
    ]
    plain = [k for k, _ in layout(alexnet(lrn=False, rng=0)) if k.startswith("features") and k.endswith("weight")]
    assert plain == [f"features.{i}.weight" for i in (0, 3, 6, 8, 10)]  # torchvision's indices


# ----------------------------------------------------------------- BasicBlock


def _block(inplanes: int, planes: int, stride: int, shortcut: str | None) -> BasicBlock:
    downsample: nn.Module | None = None
    if shortcut == "B":
        conv = nn.Conv2d(inplanes, planes, 1, stride=stride, bias=False, rng=1)
        downsample = nn.Sequential(conv, nn.BatchNorm2d(planes))
    elif shortcut == "A":
        downsample = ZeroPadShortcut(inplanes, planes, stride)
    return BasicBlock(inplanes, planes, stride, downsample, rng=0).to(np.float64)


BLOCK_CASES = [(3, 3, 1, None), (2, 3, 2, "B"), (2, 4, 2, "A"), (2, 3, 1, "B")]


@pytest.mark.parametrize(("inplanes", "planes", "stride", "shortcut"), BLOCK_CASES)
def test_basic_block_gradcheck_training(inplanes: int, planes: int, stride: int, shortcut: str | None) -> None:
    """Training mode: batch statistics. The BatchNorms are swapped for ones without running
    statistics (same gradient) because gradcheck cannot yet restore ``num_batches_tracked``
    (the engine bug pinned by tests/test_gradcheck.py)."""
    block = _block(inplanes, planes, stride, shortcut)
    for m in [block, *([block.downsample] if shortcut == "B" else [])]:
        for name, child in list(m.named_children()):
            if isinstance(child, nn.BatchNorm2d):
                m._modules[name] = nn.BatchNorm2d(child.num_features, track_running_stats=False, dtype=np.float64)
    x = np.random.default_rng(4).standard_normal((2, inplanes, 5, 5))
    report = glassnet.gradcheck(block.train(), x, tol=1e-5)
    report.assert_ok()
    n_weights = 6 if shortcut == "B" else 4  # conv1, bn1, conv2, bn2 (+ downsample conv and bn)
    assert len([k for k in report.errors if k.endswith("weight")]) == n_weights
    assert {"input", "conv1.weight", "bn1.weight", "conv2.weight", "bn2.bias"} <= set(report.errors)


@pytest.mark.parametrize(("inplanes", "planes", "stride", "shortcut"), BLOCK_CASES)
def test_basic_block_gradcheck_eval(inplanes: int, planes: int, stride: int, shortcut: str | None) -> None:
    """Eval mode: the running statistics (made non-trivial) normalise."""
    block = _block(inplanes, planes, stride, shortcut)
    rng = np.random.default_rng(7)
    for m in block.modules():
        if isinstance(m, nn.BatchNorm2d):
            m.running_mean[...] = rng.standard_normal(m.num_features) * 0.2
            m.running_var[...] = rng.uniform(0.5, 1.5, m.num_features)
            m.weight.data = rng.uniform(0.5, 1.5, m.num_features)
    x = np.random.default_rng(4).standard_normal((2, inplanes, 5, 5))
    report = glassnet.gradcheck(block.eval(), x, tol=1e-5)
    report.assert_ok()
    if shortcut == "B":
        assert {"downsample.0.weight", "downsample.1.weight"} <= set(report.errors)


def _op_names(out: Any) -> list[str]:
    """The ops of the graph behind ``out``, in recording order."""
    from glassnet.autograd.graph import topological_order

    return [node.name for node in reversed(list(topological_order(out.grad_fn)))]


def test_basic_block_fuses_its_batch_norms_and_relus_only_where_nothing_can_tell() -> None:
    """Fast backend, NumPy data, no hooks: bn1 + ReLU and bn2 + shortcut + ReLU run as batch_norm_relu.
    Under the reference backend, with a hook on bn1, relu or bn2, and in a shape-only trace the
    block runs the textbook steps one by one."""
    from glassnet.models import resnet_cifar

    block = resnet_cifar(8, rng=0).layer2[0]  # a projection shortcut
    x = glassnet.Tensor(np.random.default_rng(0).standard_normal((2, 16, 8, 8)).astype(np.float32))
    fused = _op_names(block(x))
    assert fused.count("batch_norm_relu") == 2 and "relu" not in fused and "add" not in fused
    unfused = ["batch_norm", "relu", "batch_norm", "add", "relu"]
    with glassnet.use_backend("reference"):
        assert [n for n in _op_names(block(x)) if n in unfused] == ["batch_norm"] * 2 + unfused[1:2] + [
            "batch_norm"
        ] + unfused[3:]
    for child in (block.bn1, block.relu, block.bn2):
        seen: list[tuple[int, ...]] = []
        handle = child.register_forward_hook(lambda m, a, out, seen=seen: seen.append(out.shape))
        names = _op_names(block(x))
        handle.remove()
        assert "batch_norm_relu" not in names and seen == [(2, 32, 4, 4)]
    assert [c.name for c in glassnet.trace(block, (2, 16, 8, 8)).calls][:4] == ["conv1", "bn1", "relu", "conv2"]
    block.eval()
    assert [n for n in _op_names(block(x)) if n != "batch_norm"] == ["conv2d", "conv2d_bn_relu", "conv2d_bn_relu"]
    with glassnet.use_backend("reference"):
        assert "conv2d_bn_relu" not in _op_names(block(x))


@pytest.mark.parametrize("training", [True, False])
def test_resnet_with_fused_blocks_computes_what_the_textbook_steps_compute(
    training: bool, monkeypatch: pytest.MonkeyPatch
) -> None:
    """ResNet-8 forward and backward, fused (the fast kernel) against one step at a time: the logits
    and running statistics bit for bit, every gradient to float32 rounding."""
    from glassnet.fast import norm as fast_norm
    from glassnet.models import resnet_cifar

    monkeypatch.setattr(fast_norm, "MIN_SIZE", 0)  # the fast kernel, on a small batch
    x = np.random.default_rng(1).standard_normal((4, 3, 16, 16)).astype(np.float32)
    results = []
    for fuses in (True, False):
        model = resnet_cifar(8, rng=0).train(training)
        if not fuses:
            monkeypatch.setattr(BasicBlock, "fuses", lambda self, x: False)
        logits = model(glassnet.Tensor(x))
        fused_op = "batch_norm_relu" if training else "conv2d_bn_relu"  # fixed statistics: with the conv
        assert (fused_op in _op_names(logits)) == fuses
        glassnet.functional.cross_entropy(logits, np.arange(4) % 10).backward()
        grads = {n: p.grad for n, p in model.named_parameters()}
        results.append((logits.numpy(), dict(model.named_buffers()), grads))
    (l1, b1, g1), (l2, b2, g2) = results
    assert l1.tobytes() == l2.tobytes()
    assert all(b1[k].tobytes() == b2[k].tobytes() for k in b1)
    for name in g1:
        scale = max(1.0, float(np.abs(g2[name]).max()))
        np.testing.assert_allclose(g1[name], g2[name], rtol=1e-4, atol=1e-5 * scale, err_msg=name)


def test_resnet_inference_folds_batch_norm_into_the_convolutions(monkeypatch: pytest.MonkeyPatch) -> None:
    """In eval mode under no_grad each block is two conv2d_bn_relu ops (Winograd with the batch norm
    folded in, the shortcut and ReLU applied as it writes): the logits equal the step-by-step
    blocks' to float32 rounding, and a hook on a conv turns it off for that block."""
    from glassnet.models import resnet_cifar

    rng = np.random.default_rng(3)
    model = resnet_cifar(8, rng=0)
    for m in model.modules():  # statistics and affine parameters that matter
        if isinstance(m, nn.BatchNorm2d):
            m.running_mean[...] = rng.standard_normal(m.num_features) * 0.2
            m.running_var[...] = rng.uniform(0.5, 2.0, m.num_features)
            m.weight.data = rng.uniform(0.5, 1.5, m.num_features).astype(np.float32)
            m.bias.data = (rng.standard_normal(m.num_features) * 0.2).astype(np.float32)
    model.eval()
    x = glassnet.Tensor(rng.standard_normal((32, 3, 32, 32)).astype(np.float32))
    folded: list[bool] = []
    forward = glassnet.fast.fused.conv2d_bn_relu_forward

    def spy(*a: Any, **k: Any) -> Any:
        out, ctx = forward(*a, **k)
        folded.append(ctx.folded)
        return out, ctx

    monkeypatch.setattr(glassnet.functional.conv2d_bn_relu, "fast_forward", spy)
    with glassnet.no_grad():
        got = model(x).numpy()
    # 3 blocks × 2 convolutions; the stride-2 first ones of layer2 and layer3 (not Winograd's) run as two ops
    assert folded == [True, True, False, True, False, True]
    with glassnet.no_grad():
        handle = model.layer1[0].conv1.register_forward_hook(lambda m, a, out: None)
        model(x)
        handle.remove()
    assert len(folded) == 10  # the watched block ran step by step
    monkeypatch.setattr(BasicBlock, "fuses", lambda self, x: False)
    with glassnet.no_grad():
        want = model(x).numpy()
    np.testing.assert_allclose(got, want, rtol=1e-4, atol=1e-5 * float(np.abs(want).max()))


def test_guided_backprop_through_fused_resnet_blocks(monkeypatch: pytest.MonkeyPatch) -> None:
    """Guided backpropagation replaces ReLU's rule; the fused blocks follow it (no silent plain ReLU)."""
    from glassnet.fast import norm as fast_norm
    from glassnet.models import resnet_cifar
    from glassnet.visualize import guided_backprop, saliency

    monkeypatch.setattr(fast_norm, "MIN_SIZE", 0)
    model = resnet_cifar(8, rng=0).eval()
    x = np.random.default_rng(2).standard_normal((1, 3, 16, 16)).astype(np.float32)
    fused = guided_backprop(model, x, 3)
    plain = saliency(model, x, 3)
    monkeypatch.setattr(BasicBlock, "fuses", lambda self, x: False)
    np.testing.assert_allclose(fused, guided_backprop(model, x, 3), rtol=1e-5, atol=1e-7)
    assert not np.allclose(fused, plain)


def test_basic_block_summary_and_errors() -> None:
    down = nn.Sequential(nn.Conv2d(8, 16, 1, stride=2, bias=False), nn.BatchNorm2d(16))
    block = BasicBlock(8, 16, 2, down, rng=0)
    s = glassnet.summary(block, (8, 10, 10))
    names = [r.name for r in s.rows]
    assert names[:5] == ["conv1", "bn1", "relu", "conv2", "bn2"]
    assert "downsample.0" in names and "downsample.1" in names
    assert s.rows[-2].kind == "Add" and s.rows[-1].kind == "ReLU"
    assert s.output_shape == (1, 16, 5, 5)
    assert s.total_params == block.num_parameters() == 9 * 8 * 16 + 9 * 16 * 16 + 4 * 16 + 8 * 16 + 2 * 16
    with pytest.raises(ValueError, match="downsample"):
        BasicBlock(8, 16, 2)
    # resnet summaries contain the add rows and end with fc
    rs = glassnet.summary(resnet20(rng=0), (3, 32, 32))
    assert sum(r.kind == "Add" for r in rs.rows) == 9
    assert rs.rows[-1].name == "fc" and rs.total_params == 272_474


@pytest.mark.torch
@pytest.mark.parametrize("mode", ["train", "eval"])
def test_resnet20_forward_backward_matches_torch(torch: Any, mode: str) -> None:
    model = resnet20(10, rng=0).to(np.float64)
    tmodel = torch_zoo(torch).ResNet([3, 3, 3], 10, cifar=True).double()
    rng = np.random.default_rng(5)
    if mode == "eval":  # non-trivial running statistics
        for m in model.modules():
            if isinstance(m, nn.BatchNorm2d):
                m.running_mean[...] = rng.standard_normal(m.num_features) * 0.1
                m.running_var[...] = rng.uniform(0.5, 1.5, m.num_features)
    copy_to_torch(torch, model, tmodel)
    model.train(mode == "train")
    tmodel.train(mode == "train")
    size = 32 if mode == "train" else 16  # the global pool takes any size
    x = rng.standard_normal((2, 3, size, size))
    g = rng.standard_normal((2, 10))

    xt = glassnet.Tensor(x, requires_grad=True)
    y = model(xt)
    y.backward(g)
    dx = xt.grad
    tx = torch.from_numpy(x).requires_grad_(True)
    ty = tmodel(tx)
    ty.backward(torch.from_numpy(g))
    np.testing.assert_allclose(y, ty.detach().numpy(), rtol=1e-9, atol=1e-10)
    np.testing.assert_allclose(dx, tx.grad.numpy(), rtol=1e-8, atol=1e-10)
    tparams = dict(tmodel.named_parameters())
    for name, p in model.named_parameters():
        np.testing.assert_allclose(p.grad, tparams[name].grad.numpy(), rtol=1e-7, atol=1e-9, err_msg=name)
    tstate = tmodel.state_dict()
    for name, v in model.state_dict().items():  # running statistics after the forward
        np.testing.assert_allclose(v, tstate[name].numpy(), rtol=1e-9, atol=1e-12, err_msg=name)


# ----------------------------------------------------------------- options and registry


@pytest.mark.parametrize("name", sorted(MODELS))
def test_num_classes_and_in_channels_honoured(name: str) -> None:
    kwargs: dict[str, Any] = {"num_classes": 7, "in_channels": 1, "rng": 0}
    if name.startswith("vgg"):
        kwargs["small_input"] = True  # the full-size head is tested above
    model = get_model(name, **kwargs)
    shape = default_input_shape(name, in_channels=1)
    assert shape[0] == 1
    if name.startswith(("vgg", "resnet18", "resnet34")):
        shape = (1, 32, 32)
    assert glassnet.summary(model, shape).output_shape == (1, 7)
    first = next(m for m in model.modules() if isinstance(m, nn.Conv2d))
    assert first.in_channels == 1
    assert find_head(model)[1].out_features == 7


def test_registry() -> None:
    assert {"lenet5", "tf_cnn", "tinyvgg", "alexnet", "vgg11", "vgg16", "resnet18", "resnet34", "resnet20"} <= set(
        MODELS
    )
    assert default_input_shape("alexnet") == (3, 227, 227)
    assert default_input_shape("lenet5") == (1, 28, 28)
    assert default_input_shape("resnet18") == (3, 224, 224)
    assert default_input_shape("resnet20") == (3, 32, 32)
    assert default_input_shape("tinyvgg") == (3, 64, 64)
    assert all(len(default_input_shape(n)) == 3 for n in MODELS)
    assert get_model("ResNet-20", num_classes=5, rng=0).fc.out_features == 5
    with pytest.raises(ValueError, match="resnet18") as err:
        get_model("resnet50")
    assert "tinyvgg" in str(err.value)
    with pytest.raises(ValueError, match="available"):
        default_input_shape("nope")


def test_invalid_options() -> None:
    with pytest.raises(ValueError, match="variant"):
        lenet5(variant="fancy")
    with pytest.raises(ValueError, match="shortcut"):
        resnet20(shortcut="C")


# ----------------------------------------------------------------- transfer learning


def test_replace_head_and_freeze_features() -> None:
    model = resnet20(10, rng=0)
    keys_before = [k for k, _ in layout(model)]
    old_fc = model.fc
    assert replace_head(model, 4, rng=1) is model
    assert model.fc is not old_fc and model.fc.weight.shape == (4, 64) and model.fc.bias.shape == (4,)
    assert [k for k, _ in layout(model)] == keys_before  # same names, same order
    assert freeze_features(model) is model
    trainable = [n for n, p in model.named_parameters() if p.requires_grad]
    assert trainable == ["fc.weight", "fc.bias"]
    s = glassnet.summary(model, (3, 32, 32))
    assert s.trainable_params == 64 * 4 + 4
    assert s.total_params == 272_474 - 650 + 260
    model.zero_grad()
    y = model(np.random.default_rng(6).standard_normal((2, 3, 16, 16)).astype(np.float32))
    assert y.shape == (2, 4)
    y.backward(np.ones(y.shape, dtype=np.float32))
    assert {n for n, p in model.named_parameters() if p.grad is not None} == {"fc.weight", "fc.bias"}


def test_replace_head_keeps_order_and_dtype(alexnet_model: nn.Module) -> None:
    model = nn.Sequential(nn.Linear(6, 5), nn.ReLU(), nn.Linear(5, 3, bias=False), nn.LogSoftmax()).to(np.float64)
    replace_head(model, 2, rng=0)
    assert [type(m).__name__ for m in model] == ["Linear", "ReLU", "Linear", "LogSoftmax"]
    assert model[2].weight.shape == (2, 5) and model[2].bias is None and model[2].weight.dtype == np.float64
    freeze_features(model)
    assert [p.requires_grad for p in model.parameters()] == [False, False, True]
    for builder, head in ((tinyvgg, "classifier.1"), (tf_cnn, "11"), (lenet5, "11")):
        assert find_head(builder(rng=0))[0] == head
    assert find_head(alexnet_model)[0] == "classifier.6"
    with pytest.raises(ValueError, match="no Linear"):
        find_head(nn.Sequential(nn.ReLU()))
