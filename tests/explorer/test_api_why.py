"""The explorer's "Why this prediction" API: attribution maps and the confusion-matrix cells."""

from __future__ import annotations

import json
import warnings
from pathlib import Path

import numpy as np
import pytest

pytest.importorskip("fastapi", reason="the explorer needs the 'explorer' extra (fastapi, uvicorn)")

from glassnet import visualize as V
from glassnet.checkpoint import load_checkpoint
from glassnet.data import load_dataset
from glassnet.explorer import create_app

with warnings.catch_warnings():
    warnings.simplefilter("ignore")
    from fastapi.testclient import TestClient

CKPT = "lenet5-shapes/best.safetensors"
NOISY = "lenet5-lr0.01/last.safetensors"


@pytest.fixture(scope="module")
def client(runs_dir: Path, tmp_path_factory: pytest.TempPathFactory) -> TestClient:
    return TestClient(create_app(runs_dir, cache_dir=tmp_path_factory.mktemp("cache")))


def model_input(runs_dir: Path, ckpt: str, index: int) -> tuple[object, np.ndarray, int]:
    c = load_checkpoint(runs_dir / ckpt)
    model = c.build_model().eval()
    test = load_dataset("shapes", "test")
    norm = c.meta.normalization
    x = ((test.images[index : index + 1].astype(np.float64) / 255 - norm["mean"][0]) / norm["std"][0]).astype(
        np.float32
    )
    return model, x, int(test.labels[index])


def test_every_method_for_the_predicted_class(client: TestClient, runs_dir: Path) -> None:
    r = client.post("/api/why", json={"checkpoint": CKPT, "image": {"test": 5}})
    assert r.status_code == 200, r.text
    d = r.json()
    model, x, label = model_input(runs_dir, CKPT, 5)
    assert d["target"]["index"] == d["predicted"] == label and d["target"]["is_predicted"]
    assert set(d["results"]) == {"saliency", "smoothgrad", "guided", "gradcam", "occlusion"}
    assert d["layer"] == "5" and [L["name"] for L in d["layers"]] == ["0", "1", "2", "3", "4", "5"]
    for res in d["results"].values():
        assert res["overlay"].startswith("data:image/png;base64,") and res["map"].startswith("data:image/png")
        assert res["seconds"] >= 0
    # the numbers are glassnet.visualize's, on the same input
    sal = V.saliency(model, x, label)[0]
    s = d["results"]["saliency"]["stats"]
    assert s["max_abs"] == pytest.approx(float(np.abs(sal).max()), rel=1e-5)
    assert s["mean_abs"] == pytest.approx(float(np.abs(sal).mean()), rel=1e-5)
    top = d["results"]["saliency"]["top"][0]
    assert (top["y"], top["x"]) == tuple(int(v) for v in np.unravel_index(np.argmax(np.abs(sal)[0]), (28, 28)))
    cam = V.grad_cam(model, x, label, "5")[0]
    g = d["results"]["gradcam"]
    assert g["shape"] == [5, 5] and np.allclose(g["cam"], cam, rtol=1e-3, atol=1e-6)
    assert g["max"]["value"] == pytest.approx(float(cam.max()), rel=1e-5)
    # the α_c shares add up to the mean of the map before its ReLU
    assert len(g["alpha_top"]) == 8 and g["channels"] == 16
    occ = d["results"]["occlusion"]
    assert (occ["window"], occ["stride"], occ["grid"]) == (4, 2, [13, 13])
    drop = V.occlusion(model, x, label, window=4, stride=2)[0]
    assert np.allclose(occ["drop"], drop, rtol=1e-3, atol=1e-6)
    assert occ["max_drop"]["value"] == pytest.approx(float(drop.max()), abs=1e-6)
    sg = d["results"]["smoothgrad"]
    assert sg["n"] == 16 and sg["sigma"] > 0 and "gradient_png" in d["results"]["guided"]


def test_a_chosen_class_and_a_chosen_layer(client: TestClient, runs_dir: Path) -> None:
    model, x, label = model_input(runs_dir, CKPT, 2)
    other = (label + 1) % 10
    body = {"checkpoint": CKPT, "image": {"test": 2}, "target": other, "methods": ["gradcam", "saliency"], "layer": "3"}
    d = client.post("/api/why", json=body).json()
    assert d["target"]["index"] == other and not d["target"]["is_predicted"]
    assert d["target"]["probability"] < 0.5 and set(d["results"]) == {"gradcam", "saliency"}
    cam = V.grad_cam(model, x, other, "3")[0]
    assert d["results"]["gradcam"]["shape"] == [10, 10]
    assert np.allclose(d["results"]["gradcam"]["cam"], cam, rtol=1e-3, atol=1e-6)
    sal = V.saliency(model, x, other)[0]
    assert d["results"]["saliency"]["stats"]["max_abs"] == pytest.approx(float(np.abs(sal).max()), rel=1e-5)


def test_samples_uploads_and_occlusion_settings(client: TestClient) -> None:
    d = client.post(
        "/api/why",
        json={
            "checkpoint": CKPT,
            "image": {"sample": "coffee"},
            "methods": ["occlusion"],
            "occlusion_window": 7,
            "occlusion_stride": 7,
        },
    ).json()
    assert d["results"]["occlusion"]["grid"] == [4, 4] and d["label"] == "sample coffee"
    assert d["input"]["width"] == 28


def test_pretrained_efficientnet_on_the_bundled_cat(client: TestClient) -> None:
    r = client.post(
        "/api/why",
        json={
            "model": "efficientnet_lite0",
            "pretrained": True,
            "image": {"sample": "chelsea"},
            "methods": ["gradcam"],
        },
    )
    assert r.status_code == 200, r.text
    d = r.json()
    assert d["source"]["kind"] == "pretrained" and d["input"]["width"] == 224
    assert "cat" in d["predictions"][0]["class"] or "tabby" in d["predictions"][0]["class"]
    assert len(d["classes"]) == 1000
    g = d["results"]["gradcam"]
    assert d["layer"] == "_head_act" and g["shape"] == [7, 7] and g["channels"] == 1280
    layers = client.get("/api/why/layers", params={"model": "efficientnet_lite0", "pretrained": True}).json()
    assert layers["default"] == "_head_act" and any(L["name"] == "_blocks.15" for L in layers["layers"])


@pytest.mark.parametrize(
    ("body", "status", "fragment"),
    [
        ({"target": 10}, 400, "out of range: the model has 10 classes"),
        ({"layer": "nope", "methods": ["gradcam"]}, 400, "valid layers: 0, 1, 2, 3, 4, 5"),
        ({"layer": "7", "methods": ["gradcam"]}, 400, "unknown layer '7'"),
        ({"methods": ["magic"]}, 422, "methods"),
        ({"methods": []}, 422, "methods"),
        ({"smoothgrad_n": 51}, 422, "smoothgrad_n"),
        ({"occlusion_window": 29, "methods": ["occlusion"]}, 400, "larger than the input"),
        ({"occlusion_window": 1, "occlusion_stride": 1, "methods": ["occlusion"]}, 400, "the limit is 400"),
        ({"model": "lenet5"}, 400, "exactly one"),
        ({"pretrained": True}, 400, "applies to zoo models"),
        ({"image": {"test": 99999}}, 404, "does not exist"),
        ({"bogus": 1}, 422, "bogus"),
    ],
)
def test_errors_are_clear(client: TestClient, helpers, body: dict, status: int, fragment: str) -> None:
    req = {"checkpoint": CKPT, "image": {"test": 0}, **body}
    assert fragment in helpers.error_of(client.post("/api/why", json=req), status)


def test_source_errors(client: TestClient, helpers) -> None:
    e = helpers.error_of
    no_ckpt = {"model": "lenet5", "image": {"test": 0}}
    assert "needs a checkpoint" in e(client.post("/api/why", json=no_ckpt), 400)
    assert "unknown model" in e(client.post("/api/why", json={"model": "gpt", "image": {"sample": "camera"}}), 404)
    bad = {"model": "lenet5", "pretrained": True, "image": {"sample": "camera"}}
    assert "no pretrained weights" in e(client.post("/api/why", json=bad), 400)
    outside = {"checkpoint": "../x.safetensors", "image": {"sample": "camera"}}
    assert "outside the runs directory" in e(client.post("/api/why", json=outside), 403)
    r = client.get("/api/why/layers", params={"checkpoint": CKPT, "model": "lenet5"})
    assert "exactly one" in e(r, 400)
    # a zoo model with random weights works on a sample (its classes are numbers)
    d = client.post("/api/why", json={"model": "lenet5", "image": {"sample": "camera"}, "methods": ["saliency"]})
    assert d.status_code == 200 and d.json()["source"]["kind"] == "zoo" and d.json()["classes"][0] == "class 0"


# ----------------------------------------------------------------------------- confusion matrix


def test_run_metrics(client: TestClient, runs_dir: Path, helpers) -> None:
    m = client.get("/api/runs/lenet5-lr0.01/metrics").json()
    on_disk = json.loads((runs_dir / "lenet5-lr0.01" / "metrics.json").read_text())
    assert m["confusion"] == on_disk["confusion"] and m["classes"][0] == "circle"
    assert m["total"] == 2000 and m["errors"] == 2000 - np.trace(np.array(on_disk["confusion"]))
    assert m["accuracy"] == pytest.approx(on_disk["accuracy"]) and m["checkpoints"] == [NOISY]
    assert "no metrics.json" in helpers.error_of(client.get("/api/runs/lenet5-shapes/metrics"), 404)
    helpers.error_of(client.get("/api/runs/nope/metrics"), 404)
    helpers.error_of(client.get("/api/runs/.hidden/metrics"), 400)


def test_malformed_metrics(tmp_path: Path, helpers) -> None:
    runs = tmp_path / "runs"
    helpers.write_history(runs / "a", helpers.make_history("finished", 1))
    c = TestClient(create_app(runs, cache_dir=tmp_path / "cache"))
    for text in ("{oops", "[]", '{"confusion": [[1, 2]]}', '{"confusion": [[1, -2], [0, 1]]}'):
        (runs / "a" / "metrics.json").write_text(text)
        helpers.error_of(c.get("/api/runs/a/metrics"), 422)
    (runs / "a" / "metrics.json").write_text('{"confusion": [[3, 1], [0, 2]], "classes": "no"}')
    assert c.get("/api/runs/a/metrics").json()["classes"] == ["0", "1"]


def test_a_confusion_cell_opens_its_images(client: TestClient, runs_dir: Path, helpers) -> None:
    metrics = client.get("/api/runs/lenet5-lr0.01/metrics").json()
    conf = np.array(metrics["confusion"])
    off = conf - np.diag(np.diag(conf))
    t, p = (int(v) for v in np.unravel_index(np.argmax(off), conf.shape))
    body = {"checkpoint": NOISY, "true_class": t, "predicted_class": p, "limit": 3}
    r = client.post("/api/why/confusion", json=body)
    assert r.status_code == 200, r.text
    d = r.json()
    # the checkpoint's predictions now agree with its run's metrics.json
    assert d["confusion"] == metrics["confusion"] and d["count"] == conf[t, p] == len(d["indices"])
    assert len(d["items"]) == 3 and d["layer"] == "5"
    model = load_checkpoint(runs_dir / NOISY).build_model().eval()
    test = load_dataset("shapes", "test")
    norm = load_checkpoint(runs_dir / NOISY).meta.normalization
    for item in d["items"]:
        i = item["index"]
        assert test.labels[i] == t
        x = ((test.images[i : i + 1].astype(np.float64) / 255 - norm["mean"][0]) / norm["std"][0]).astype(np.float32)
        assert int(V.predicted(model, x)[0]) == p
        assert item["true"]["class"] == metrics["classes"][t] and item["predicted"]["index"] == p
        assert item["predicted"]["probability"] > item["true"]["probability"]
        cam = V.grad_cam(model, x, p, "5")[0]
        assert item["predicted"]["cam_max"] == pytest.approx(float(cam.max()), rel=1e-4, abs=1e-6)
        assert item["true"]["overlay"].startswith("data:image/png")
    more = client.post("/api/why/confusion", json={**body, "offset": 3, "limit": 16}).json()
    assert [it["index"] for it in more["items"]] == d["indices"][3 : 3 + 16]
    e = helpers.error_of
    assert "out of range" in e(client.post("/api/why/confusion", json={**body, "true_class": 10}), 400)
    assert "needs a 'checkpoint'" in e(
        client.post("/api/why/confusion", json={"model": "lenet5", "true_class": 0, "predicted_class": 1}), 400
    )
    assert "limit" in e(client.post("/api/why/confusion", json={**body, "limit": 17}), 422)
    assert "valid layers" in e(client.post("/api/why/confusion", json={**body, "layer": "9"}), 400)


def test_slow_maps_stop_at_their_time_limit(client: TestClient, helpers, monkeypatch: pytest.MonkeyPatch) -> None:
    from glassnet.explorer import _why

    monkeypatch.setattr(_why, "ATTRIBUTION_SECONDS", 0.0)
    for method, hint in (("smoothgrad", "fewer samples"), ("occlusion", "larger stride")):
        body = {"checkpoint": CKPT, "image": {"test": 0}, "methods": [method]}
        msg = helpers.error_of(client.post("/api/why", json=body), 503)
        assert "took longer than the limit of 0 s" in msg and hint in msg
    ok = client.post("/api/why", json={"checkpoint": CKPT, "image": {"test": 0}, "methods": ["gradcam"]})
    assert ok.status_code == 200  # single passes have no limit to reach
