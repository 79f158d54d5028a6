"""torchvision-layout state dicts: torch → glassnet (load_torch_state) and glassnet → torch (save_torch_state)."""

from __future__ import annotations

from typing import Any

import numpy as np
import pytest
from test_models import torch_zoo  # tests/ is on sys.path (rootdir conftest)

import glassnet
from glassnet.interop import TorchStateError, load_torch_state, read_state, save_torch_state
from glassnet.models import alexnet, resnet18


def _torch_alexnet(torch: Any, num_classes: int) -> Any:
    tnn = torch.nn
    features = tnn.Sequential(
        tnn.Conv2d(3, 64, 11, 4, 2), tnn.ReLU(), tnn.MaxPool2d(3, 2),
        tnn.Conv2d(64, 192, 5, padding=2), tnn.ReLU(), tnn.MaxPool2d(3, 2),
        tnn.Conv2d(192, 384, 3, padding=1), tnn.ReLU(), tnn.Conv2d(384, 256, 3, padding=1), tnn.ReLU(),
        tnn.Conv2d(256, 256, 3, padding=1), tnn.ReLU(), tnn.MaxPool2d(3, 2),
    )  # fmt: skip
    classifier = tnn.Sequential(
        tnn.Dropout(), tnn.Linear(9216, 4096), tnn.ReLU(), tnn.Dropout(), tnn.Linear(4096, 4096), tnn.ReLU(),
        tnn.Linear(4096, num_classes),
    )  # fmt: skip

    class TAlexNet(tnn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.features, self.avgpool, self.classifier = features, tnn.AdaptiveAvgPool2d(6), classifier

        def forward(self, x: Any) -> Any:
            return self.classifier(torch.flatten(self.avgpool(self.features(x)), 1))

    return TAlexNet()


def _save_torch(torch: Any, tmodel: Any, path: Any) -> None:
    from safetensors.numpy import save_file

    save_file({k: v.detach().numpy().copy() for k, v in tmodel.state_dict().items()}, str(path))


def _out(model: glassnet.nn.Module, x: np.ndarray) -> np.ndarray:
    with glassnet.no_grad():
        return model.eval()(x).numpy()


def test_resnet18_from_torch_safetensors_and_pth(torch: Any, tmp_path: Any) -> None:
    torch.manual_seed(0)
    tmodel = torch_zoo(torch).ResNet([2, 2, 2, 2], num_classes=7).eval()
    x = np.random.default_rng(0).standard_normal((2, 3, 64, 64)).astype(np.float32)
    want = tmodel(torch.from_numpy(x)).detach().numpy()
    _save_torch(torch, tmodel, tmp_path / "r18.safetensors")
    model = load_torch_state("resnet18", tmp_path / "r18.safetensors")
    assert model.fc.out_features == 7
    np.testing.assert_allclose(_out(model, x), want, rtol=1e-4, atol=1e-4)
    torch.save(tmodel.state_dict(), tmp_path / "r18.pth")
    np.testing.assert_allclose(_out(load_torch_state("resnet18", tmp_path / "r18.pth"), x), want, rtol=1e-4, atol=1e-4)


def test_pth_is_read_without_torch_too(torch: Any, tmp_path: Any, monkeypatch: pytest.MonkeyPatch) -> None:
    import sys

    tmodel = torch_zoo(torch).ResNet([2, 2, 2, 2], num_classes=3)
    torch.save(tmodel.state_dict(), tmp_path / "r18.pth")
    monkeypatch.setitem(sys.modules, "torch", None)  # import torch now fails: the allow-list reader is used
    state = read_state(tmp_path / "r18.pth")
    assert list(state) == list(tmodel.state_dict())
    assert load_torch_state("resnet18", state).fc.out_features == 3


def test_alexnet_torchvision_layout(torch: Any, tmp_path: Any) -> None:
    torch.manual_seed(1)
    tmodel = _torch_alexnet(torch, 10).eval()
    x = np.random.default_rng(1).standard_normal((1, 3, 224, 224)).astype(np.float32)
    _save_torch(torch, tmodel, tmp_path / "alexnet.safetensors")
    model = load_torch_state("alexnet", tmp_path / "alexnet.safetensors")
    assert model.num_parameters() == alexnet(num_classes=10, variant="torchvision").num_parameters()
    want = tmodel(torch.from_numpy(x)).detach().numpy()
    np.testing.assert_allclose(_out(model, x), want, rtol=1e-4, atol=1e-5)


def test_glassnet_to_torch(torch: Any, tmp_path: Any) -> None:
    from safetensors.torch import load_file

    model = resnet18(num_classes=5, rng=0)
    x = np.random.default_rng(2).standard_normal((2, 3, 48, 48)).astype(np.float32)
    model.train()
    model(x)  # non-trivial running statistics
    save_torch_state(model, tmp_path / "out.safetensors")
    tmodel = torch_zoo(torch).ResNet([2, 2, 2, 2], num_classes=5)
    tmodel.load_state_dict(load_file(str(tmp_path / "out.safetensors")))  # strict: every key, every shape
    tmodel.eval()
    np.testing.assert_allclose(_out(model, x), tmodel(torch.from_numpy(x)).detach().numpy(), rtol=1e-4, atol=1e-4)


def test_errors_name_the_problem(tmp_path: Any) -> None:
    with pytest.raises(TorchStateError, match="no torch layout for 'lenet5'"):
        load_torch_state("lenet5", {})
    with pytest.raises(TorchStateError, match="has no 'fc.weight'"):
        load_torch_state("resnet18", {"conv1.weight": np.zeros((64, 3, 7, 7), np.float32)})
    state = resnet18(num_classes=4, rng=0).state_dict()
    del state["layer1.0.conv1.weight"]
    state["extra.weight"] = np.zeros(1, np.float32)
    with pytest.raises(TorchStateError, match=r"missing keys \['layer1.0.conv1.weight'\].*unexpected keys \['extra"):
        load_torch_state("resnet18", state)
    with pytest.raises(FileNotFoundError, match="no such file"):
        read_state(tmp_path / "nope.pth")
