"""The explorer's "What a channel sees" API: feature visualisations computed in the background and
cached on disk, and the test images that excite a channel most."""

from __future__ import annotations

import json
import time
import warnings
from pathlib import Path

import numpy as np
import pytest

pytest.importorskip("fastapi", reason="the explorer needs the 'explorer' extra (fastapi, uvicorn)")

import glassnet
from glassnet.checkpoint import load_checkpoint
from glassnet.data import load_dataset
from glassnet.explorer import create_app
from glassnet.explorer._models import rf_box
from glassnet.visualize import feature_visualization
from glassnet.visualize._common import LayerProbe

with warnings.catch_warnings():
    warnings.simplefilter("ignore")
    from fastapi.testclient import TestClient

CKPT = "lenet5-shapes/best.safetensors"


@pytest.fixture(scope="module")
def cache(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return tmp_path_factory.mktemp("cache")


@pytest.fixture(scope="module")
def client(runs_dir: Path, cache: Path) -> TestClient:
    return TestClient(create_app(runs_dir, cache_dir=cache))


def wait(client: TestClient, job_id: str, timeout: float = 120.0) -> dict:
    end = time.monotonic() + timeout
    while time.monotonic() < end:
        j = client.get(f"/api/jobs/{job_id}").json()
        if j["status"] != "running":
            return j
        time.sleep(0.05)
    raise AssertionError(f"job {job_id} still running after {timeout} s")


def test_layers(client: TestClient) -> None:
    d = client.get("/api/channels/layers", params={"checkpoint": CKPT}).json()
    assert d["default"] == "0" and d["size"] == 28 and d["source"]["has_test_set"]
    layers = {L["name"]: L for L in d["layers"]}
    assert layers["3"]["channels"] == 16 and layers["3"]["spatial"] and not layers["11"]["spatial"]


def test_feature_visualisations_are_computed_then_cached(client: TestClient, runs_dir: Path, cache: Path) -> None:
    body = {"checkpoint": CKPT, "layer": "0", "channels": [0, 1, 2], "steps": 16}
    d = client.post("/api/channels", json=body).json()
    assert d["cached"] == 0 and d["job"]["kind"] == "features" and d["settings"]["size"] == 28
    j = wait(client, d["job"]["id"])
    assert j["status"] == "done" and j["done"] == 3
    items = j["result"]["items"]
    assert set(items) == {"0", "1", "2"}
    # the numbers are glassnet.visualize's, with the checkpoint's normalisation and the channel's seed
    ckpt = load_checkpoint(runs_dir / CKPT)
    norm = ckpt.meta.normalization
    fv = feature_visualization(ckpt.build_model().eval(), "0", 1, steps=16, size=28,
                               normalize=(norm["mean"], norm["std"]), rng=1)  # fmt: skip
    assert items["1"]["start"] == pytest.approx(float(fv.activations[0]), rel=1e-5)
    assert items["1"]["end"] == pytest.approx(float(fv.activations[-1]), rel=1e-5)
    assert len(items["1"]["history"]) == 16 and items["1"]["png"].startswith("data:image/png;base64,")
    # asked again: every channel comes from the cache, at once
    again = client.post("/api/channels", json=body).json()
    assert again["cached"] == 3 and again["job"] is None
    assert again["items"]["1"]["png"] == items["1"]["png"] and again["items"]["1"]["cached"] is True
    files = sorted(p.name for p in cache.rglob("*") if p.is_file())
    assert files == ["c0.json", "c0.png", "c1.json", "c1.png", "c2.json", "c2.png"]  # no temporary files left
    assert all(p.is_relative_to(cache / "features") for p in cache.rglob("*.png"))
    # a damaged cache entry is computed again; the others are still read
    damaged = next(cache.rglob("c2.json"))
    damaged.write_text("{not json")
    d = client.post("/api/channels", json=body).json()
    assert d["cached"] == 2 and d["job"]["total"] == 1
    j = wait(client, d["job"]["id"])
    assert set(j["result"]["items"]) == {"2"} and json.loads(damaged.read_text())["channel"] == 2


def test_a_dense_layer_uses_the_input_size(client: TestClient) -> None:
    d = client.post("/api/channels", json={"checkpoint": CKPT, "layer": "11", "channels": [3], "steps": 8, "size": 40})
    assert d.status_code == 200 and d.json()["settings"]["size"] == 28
    j = wait(client, d.json()["job"]["id"])
    assert j["result"]["items"]["3"]["end"] > j["result"]["items"]["3"]["start"]  # the logit of 'cross' went up


def test_one_feature_job_at_a_time(client: TestClient, helpers) -> None:
    long = client.post("/api/channels", json={"checkpoint": CKPT, "layer": "3", "steps": 512}).json()
    assert long["job"]["total"] == 16
    same = client.post("/api/channels", json={"checkpoint": CKPT, "layer": "3", "steps": 512}).json()
    assert same["job"]["id"] == long["job"]["id"]  # the same request joins the running job
    other = client.post("/api/channels", json={"checkpoint": CKPT, "layer": "0", "steps": 64})
    assert "busy" in helpers.error_of(other, 409) and other.json()["job"]["id"] == long["job"]["id"]
    stopped = client.delete(f"/api/jobs/{long['job']['id']}").json()
    assert stopped["status"] == "cancelled" and stopped["done"] < 16


@pytest.mark.parametrize(
    ("body", "status", "fragment"),
    [
        ({"layer": "nope"}, 400, "valid layers: 0, 1, 2, 3"),
        ({"channels": [16]}, 400, "channel 16 is out of range: layer '0' has 6 channels"),
        ({"steps": 513}, 422, "steps"),
        ({"size": 7}, 422, "size"),
        ({"param": "wavelet"}, 422, "param"),
        ({"channels": []}, 422, "channels"),
        ({"model": "lenet5"}, 400, "exactly one"),
        ({"checkpoint": "/etc/passwd"}, 403, "outside the runs directory"),
    ],
)
def test_errors(client: TestClient, helpers, body: dict, status: int, fragment: str) -> None:
    req = {"checkpoint": CKPT, "layer": "0", **body}
    assert fragment in helpers.error_of(client.post("/api/channels", json=req), status)


def test_the_test_images_that_excite_a_channel(client: TestClient, runs_dir: Path, helpers) -> None:
    top = client.get("/api/channels/top", params={"checkpoint": CKPT, "layer": "11", "channel": 3, "k": 6}).json()
    assert top["sample"] == 1000 and top["dataset"] == "shapes" and len(top["items"]) == 6
    assert all(it["class"] == "cross" for it in top["items"])  # the logit of 'cross'
    means = [it["mean"] for it in top["items"]]
    assert means == sorted(means, reverse=True) and means[0] == pytest.approx(top["stats"]["max"])
    # a map layer: the values and the strongest unit agree with a forward pass
    top = client.get("/api/channels/top", params={"checkpoint": CKPT, "layer": "3", "channel": 5}).json()
    ckpt = load_checkpoint(runs_dir / CKPT)
    model = ckpt.build_model().eval()
    norm = ckpt.meta.normalization
    test = load_dataset("shapes", "test")
    idx = [it["index"] for it in top["items"]]
    x = ((test.images[idx].astype(np.float64) / 255 - norm["mean"][0]) / norm["std"][0]).astype(np.float32)
    with LayerProbe(model, "3", stop=True) as probe:
        probe.run(lambda: model(x))
        a = probe.output.numpy()[:, 5]
    rf = next(c.rf for c in glassnet.trace(model, (1, 28, 28)).calls if c.name == "3")
    for it, m in zip(top["items"], a, strict=True):
        assert it["mean"] == pytest.approx(float(m.mean()), rel=1e-5)
        y, xx = it["unit"]
        assert it["peak"] == pytest.approx(float(m.max()), rel=1e-5) and m[y, xx] == pytest.approx(m.max())
        assert it["box"] == rf_box(rf, y, xx, (28, 28)) and it["box"]["bottom"] - it["box"]["top"] <= 14
    e = helpers.error_of
    assert "zoo models have none" in e(
        client.get("/api/channels/top", params={"model": "lenet5", "layer": "3", "channel": 0}), 404
    )
    assert "out of range" in e(
        client.get("/api/channels/top", params={"checkpoint": CKPT, "layer": "3", "channel": 16}), 400
    )
    assert "valid layers" in e(
        client.get("/api/channels/top", params={"checkpoint": CKPT, "layer": "x", "channel": 0}), 400
    )
    e(client.get("/api/channels/top", params={"checkpoint": CKPT, "layer": "3", "channel": 0, "k": 33}), 422)
    e(client.get("/api/channels/top", params={"checkpoint": CKPT, "layer": "3", "channel": 0, "sample": 5001}), 422)


def test_pretrained_efficientnet_channels(client: TestClient) -> None:
    d = client.get("/api/channels/layers", params={"model": "efficientnet_lite0", "pretrained": True}).json()
    assert d["default"] == "_conv_stem" and d["size"] == 96 and not d["source"]["has_test_set"]
    r = client.post(
        "/api/channels",
        json={"model": "efficientnet_lite0", "pretrained": True, "layer": "_blocks.5", "channels": [3], "steps": 8},
    )
    assert r.status_code == 200, r.text
    j = wait(client, r.json()["job"]["id"])
    assert j["status"] == "done" and j["result"]["items"]["3"]["size"] == 96


def test_feature_jobs_stop_at_their_time_limit(client: TestClient, monkeypatch: pytest.MonkeyPatch) -> None:
    from glassnet.explorer import _channels

    monkeypatch.setattr(_channels, "FEATURE_SECONDS", 0.0)
    d = client.post("/api/channels", json={"checkpoint": CKPT, "layer": "3", "channels": [7], "steps": 64}).json()
    j = wait(client, d["job"]["id"])
    assert j["status"] == "timeout" and "time limit" in j["message"] and j["done"] == 0
