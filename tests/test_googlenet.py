"""GoogLeNet / Inception v1: torchvision's keys and parameter count, and the same outputs as
a torch build of torchvision's architecture (written out here with torch.nn, since
torchvision is not installed) with the same weights."""

from __future__ import annotations

from typing import Any

import numpy as np
import pytest

from glassnet.inspect import summary
from glassnet.models.googlenet import INCEPTIONS, GoogLeNet, Inception, googlenet
from glassnet.nn import no_grad


def torch_googlenet(torch: Any, aux_logits: bool = False, transform_input: bool = False) -> Any:
    """torchvision.models.GoogLeNet (torchvision/models/googlenet.py), rebuilt with torch.nn."""
    nn, F = torch.nn, torch.nn.functional

    class BasicConv2d(nn.Module):
        def __init__(self, cin: int, cout: int, **kw: Any) -> None:
            super().__init__()
            self.conv = nn.Conv2d(cin, cout, bias=False, **kw)
            self.bn = nn.BatchNorm2d(cout, eps=0.001)

        def forward(self, x: Any) -> Any:
            return F.relu(self.bn(self.conv(x)), inplace=True)

    class TInception(nn.Module):
        def __init__(self, cin: int, c1: int, c3r: int, c3: int, c5r: int, c5: int, pp: int) -> None:
            super().__init__()
            self.branch1 = BasicConv2d(cin, c1, kernel_size=1)
            self.branch2 = nn.Sequential(
                BasicConv2d(cin, c3r, kernel_size=1), BasicConv2d(c3r, c3, kernel_size=3, padding=1)
            )
            self.branch3 = nn.Sequential(
                BasicConv2d(cin, c5r, kernel_size=1), BasicConv2d(c5r, c5, kernel_size=3, padding=1)
            )
            self.branch4 = nn.Sequential(
                nn.MaxPool2d(kernel_size=3, stride=1, padding=1, ceil_mode=True), BasicConv2d(cin, pp, kernel_size=1)
            )

        def forward(self, x: Any) -> Any:
            return torch.cat([self.branch1(x), self.branch2(x), self.branch3(x), self.branch4(x)], 1)

    class InceptionAux(nn.Module):
        def __init__(self, cin: int, num_classes: int) -> None:
            super().__init__()
            self.conv = BasicConv2d(cin, 128, kernel_size=1)
            self.fc1 = nn.Linear(2048, 1024)
            self.fc2 = nn.Linear(1024, num_classes)
            self.dropout = nn.Dropout(p=0.7)

        def forward(self, x: Any) -> Any:
            x = torch.flatten(self.conv(F.adaptive_avg_pool2d(x, (4, 4))), 1)
            return self.fc2(self.dropout(F.relu(self.fc1(x), inplace=True)))

    class TGoogLeNet(nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.conv1 = BasicConv2d(3, 64, kernel_size=7, stride=2, padding=3)
            self.maxpool1 = nn.MaxPool2d(3, stride=2, ceil_mode=True)
            self.conv2 = BasicConv2d(64, 64, kernel_size=1)
            self.conv3 = BasicConv2d(64, 192, kernel_size=3, padding=1)
            self.maxpool2 = nn.MaxPool2d(3, stride=2, ceil_mode=True)
            self.inception3a = TInception(192, 64, 96, 128, 16, 32, 32)
            self.inception3b = TInception(256, 128, 128, 192, 32, 96, 64)
            self.maxpool3 = nn.MaxPool2d(3, stride=2, ceil_mode=True)
            self.inception4a = TInception(480, 192, 96, 208, 16, 48, 64)
            self.inception4b = TInception(512, 160, 112, 224, 24, 64, 64)
            self.inception4c = TInception(512, 128, 128, 256, 24, 64, 64)
            self.inception4d = TInception(512, 112, 144, 288, 32, 64, 64)
            self.inception4e = TInception(528, 256, 160, 320, 32, 128, 128)
            self.maxpool4 = nn.MaxPool2d(2, stride=2, ceil_mode=True)
            self.inception5a = TInception(832, 256, 160, 320, 32, 128, 128)
            self.inception5b = TInception(832, 384, 192, 384, 48, 128, 128)
            if aux_logits:
                self.aux1 = InceptionAux(512, 1000)
                self.aux2 = InceptionAux(528, 1000)
            self.avgpool = nn.AdaptiveAvgPool2d((1, 1))
            self.dropout = nn.Dropout(p=0.2)
            self.fc = nn.Linear(1024, 1000)

        def forward(self, x: Any) -> Any:
            if transform_input:
                x = torch.cat(
                    [
                        x[:, 0:1] * (0.229 / 0.5) + (0.485 - 0.5) / 0.5,
                        x[:, 1:2] * (0.224 / 0.5) + (0.456 - 0.5) / 0.5,
                        x[:, 2:3] * (0.225 / 0.5) + (0.406 - 0.5) / 0.5,
                    ],
                    1,
                )
            x = self.maxpool2(self.conv3(self.conv2(self.maxpool1(self.conv1(x)))))
            x = self.inception4a(self.maxpool3(self.inception3b(self.inception3a(x))))
            aux1 = self.aux1(x) if aux_logits and self.training else None
            x = self.inception4d(self.inception4c(self.inception4b(x)))
            aux2 = self.aux2(x) if aux_logits and self.training else None
            x = self.inception5b(self.inception5a(self.maxpool4(self.inception4e(x))))
            x = self.fc(self.dropout(torch.flatten(self.avgpool(x), 1)))
            return (x, aux2, aux1) if aux_logits and self.training else x

    return TGoogLeNet()


def random_state(model: Any, seed: int = 0) -> dict[str, np.ndarray]:
    """The model's weights with random BN statistics and affine terms (so batch norm is not the identity)."""
    rng = np.random.default_rng(seed)
    state = model.state_dict()
    for k, v in state.items():
        if k.endswith("running_var"):
            state[k] = rng.uniform(0.5, 2.0, v.shape).astype(v.dtype)
        elif k.endswith(("running_mean", "bn.bias")):
            state[k] = (0.1 * rng.standard_normal(v.shape)).astype(v.dtype)
        elif k.endswith("bn.weight"):
            state[k] = rng.uniform(0.5, 1.5, v.shape).astype(v.dtype)
    return state


def test_parameter_count() -> None:
    """6,624,904 with the aux heads off (torchvision's figure); 13,004,888 with them."""
    assert googlenet(rng=0).num_parameters() == 6_624_904
    assert googlenet(aux_logits=True, rng=0).num_parameters() == 13_004_888


def test_inception_module() -> None:
    """Four branches concatenated: output channels ch1x1 + ch3x3 + ch5x5 + pool_proj, size kept."""
    m = Inception(192, 64, 96, 128, 16, 32, 32, rng=0).eval()
    assert list(m._modules) == ["branch1", "branch2", "branch3", "branch4"]
    with no_grad():
        y = m(np.random.default_rng(0).standard_normal((2, 192, 9, 9)).astype(np.float32))
    assert y.shape == (2, 256, 9, 9)
    assert m.output_shape((2, 192, 9, 9)) == (2, 256, 9, 9)
    assert m.branch3[1].conv.kernel_size == (3, 3)  # torchvision's 3×3 in the "5×5" branch
    assert [type(b).__name__ for b in m.branch4] == ["MaxPool2d", "BasicConv2d"]
    assert [name for name, *_ in INCEPTIONS] == [
        f"inception{s}" for s in ("3a", "3b", "4a", "4b", "4c", "4d", "4e", "5a", "5b")
    ]


def test_summary_and_output_shape() -> None:
    m = googlenet(rng=0)
    s = summary(m, (1, 3, 224, 224))
    assert s.output_shape == (1, 1000) and s.total_params == 6_624_904
    shapes = {r.name: r.output_shape for r in s.rows}
    assert shapes["maxpool1"] == (1, 64, 56, 56) and shapes["inception3b (concat)"] == (1, 480, 28, 28)
    assert shapes["inception4e (concat)"] == (1, 832, 14, 14) and shapes["inception5b (concat)"] == (1, 1024, 7, 7)
    assert googlenet(aux_logits=True, rng=0).output_shape((1, 3, 224, 224)) == (1, 1000)
    assert m.output_shape((1, 3, 31, 31)) == (1, 1000)
    with pytest.raises(ValueError):
        m.output_shape((1, 3, 30, 30))


@pytest.mark.torch
@pytest.mark.parametrize("aux_logits", [False, True])
def test_state_dict_keys_are_torchvisions(torch: Any, aux_logits: bool) -> None:
    """Names, shapes and order of every parameter and buffer equal the torchvision layout's."""
    ours = googlenet(aux_logits=aux_logits, rng=0).state_dict()
    ref = torch_googlenet(torch, aux_logits).state_dict()
    assert list(ours) == list(ref)
    for k, v in ref.items():
        assert ours[k].shape == tuple(v.shape), k
    assert sum(v.numel() for k, v in ref.items() if "running" not in k and "num_batches" not in k) == (
        13_004_888 if aux_logits else 6_624_904
    )


@pytest.mark.torch
@pytest.mark.parametrize(("dtype", "tol"), [(np.float64, 1e-10), (np.float32, 1e-4)], ids=["float64", "float32"])
def test_forward_matches_torch(torch: Any, dtype: Any, tol: float) -> None:
    """Same weights (random BN statistics too) → same logits: float64 to 1e-10, float32 to 1e-4 (of the largest)."""
    model = googlenet(rng=0).eval()
    state = random_state(model)
    model.load_state_dict(state)
    model.to(dtype)
    twin = torch_googlenet(torch).eval()
    twin.load_state_dict({k: torch.from_numpy(np.array(v)) for k, v in state.items()})
    if dtype == np.float64:
        twin = twin.double()
    x = np.random.default_rng(1).standard_normal((2, 3, 224, 224)).astype(dtype)
    with no_grad():
        ours = model(x)
    with torch.no_grad():
        ref = twin(torch.from_numpy(x)).numpy()
    assert ours.dtype == dtype
    np.testing.assert_allclose(ours, ref, rtol=0, atol=tol * max(1.0, float(np.abs(ref).max())))


@pytest.mark.torch
def test_odd_size_and_transform_input_match_torch(torch: Any) -> None:
    """ceil-mode pools on an odd size (97×97) and torchvision's transform_input, float64."""
    model = googlenet(transform_input=True, rng=1).eval()
    state = random_state(model, seed=1)
    model.load_state_dict(state)
    model.to(np.float64)
    twin = torch_googlenet(torch, transform_input=True).double().eval()
    twin.load_state_dict({k: torch.from_numpy(np.array(v)) for k, v in state.items()})
    x = np.random.default_rng(2).standard_normal((1, 3, 97, 97))
    with no_grad():
        ours = model(x)
    with torch.no_grad():
        ref = twin(torch.from_numpy(x)).numpy()
    np.testing.assert_allclose(ours, ref, rtol=0, atol=1e-10 * max(1.0, float(np.abs(ref).max())))


@pytest.mark.torch
def test_aux_heads_in_training_match_torch(torch: Any) -> None:
    """With aux_logits, training mode returns (logits, aux2, aux1) as torchvision does; dropout off to compare."""
    model = googlenet(aux_logits=True, rng=0)
    state = random_state(model)
    model.load_state_dict(state)
    model.to(np.float64)
    twin = torch_googlenet(torch, aux_logits=True).double()
    twin.load_state_dict({k: torch.from_numpy(np.array(v)) for k, v in state.items()})
    # compare in training mode (batch statistics) with every dropout at p = 0
    for m in model.modules():
        if type(m).__name__ == "Dropout":
            m.p = 0.0
    for m in twin.modules():
        if isinstance(m, torch.nn.Dropout):
            m.p = 0.0
    model.train()
    twin.train()
    x = np.random.default_rng(3).standard_normal((2, 3, 64, 64))
    ours = model(x)
    ref = twin(torch.from_numpy(x))
    assert isinstance(ours, tuple) and len(ours) == 3
    for a, b in zip(ours, ref, strict=True):
        np.testing.assert_allclose(a, b.detach().numpy(), rtol=0, atol=1e-8)
    model.eval()
    with no_grad():
        assert model(x).shape == (2, 1000)
    assert isinstance(model, GoogLeNet)
