"""The explorer's HTTP API through FastAPI's test client."""

from __future__ import annotations

import base64
import io
import json
import os
import shutil
import warnings
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

pytest.importorskip("fastapi", reason="the explorer needs the 'explorer' extra (fastapi, uvicorn)")

from glassnet.explorer import create_app
from glassnet.explorer.app import SAMPLES_DIR
from glassnet.kernels import apply_kernel, get_kernel

with warnings.catch_warnings():
    warnings.simplefilter("ignore")
    from fastapi.testclient import TestClient


def png(arr: np.ndarray) -> bytes:
    buf = io.BytesIO()
    Image.fromarray(np.asarray(arr, dtype=np.uint8)).save(buf, format="PNG")
    return buf.getvalue()


def no_traceback(r) -> None:
    assert "Traceback" not in r.text and 'File "' not in r.text, r.text


def error_of(r, status: int) -> str:
    assert r.status_code == status, (r.status_code, r.text)
    no_traceback(r)
    doc = r.json()
    assert isinstance(doc.get("error"), str) and doc["error"], doc
    return doc["error"]


@pytest.fixture(scope="module")
def client(runs_dir: Path) -> TestClient:
    return TestClient(create_app(runs_dir))


@pytest.fixture(scope="module")
def sample_grey() -> np.ndarray:
    return np.asarray(Image.open(SAMPLES_DIR / "astronaut.png").convert("L"), dtype=np.uint8)


CKPT = "lenet5-shapes/best.safetensors"


# ----------------------------------------------------------------------------- page, samples


def test_index_and_static(client: TestClient) -> None:
    r = client.get("/")
    assert r.status_code == 200 and "glassnet explorer" in r.text
    assert "http://" not in r.text.replace("http://www.w3.org", "")  # self-contained: no CDN
    for path in ("/static/app.js", "/static/style.css"):
        assert client.get(path).status_code == 200
    assert client.get("/static/../app.py").status_code == 404
    info = client.get("/api/info").json()
    assert info["limits"]["max_upload_bytes"] > 0


def test_samples_have_licences(client: TestClient) -> None:
    samples = client.get("/api/samples").json()
    assert {s["name"] for s in samples} >= {"astronaut", "coffee", "chelsea"}
    licences = (SAMPLES_DIR / "LICENSES.md").read_text()
    for s in samples:
        assert s["licence"] and s["source"] and s["author"]
        assert ("CC0" in s["licence"]) or ("public domain" in s["licence"].lower())
        f = SAMPLES_DIR / Path(s["url"]).name
        assert f.is_file() and f.name in licences
        with Image.open(f) as im:
            assert max(im.size) <= 256
        assert client.get(s["url"]).status_code == 200


# ----------------------------------------------------------------------------- kernels


def test_kernel_catalogue(client: TestClient) -> None:
    ks = {k["name"]: k for k in client.get("/api/kernels").json()}
    assert ks["sharpen"]["matrix"] == get_kernel("sharpen").tolist()
    assert "laplacian" in ks["edge_detection_2"]["aliases"]


def test_apply_named_kernel_matches_engine(client: TestClient, sample_grey: np.ndarray) -> None:
    r = client.post(
        "/api/kernel", json={"image": {"sample": "astronaut"}, "kernel": "top_sobel", "stride": 2, "padding": 1}
    )
    assert r.status_code == 200, r.text
    d = r.json()
    expected = apply_kernel(sample_grey.astype(float), "top_sobel", stride=2, padding=1)
    assert (d["output"]["height"], d["output"]["width"]) == expected.shape == (128, 128)
    assert d["output"]["min"] == pytest.approx(expected.min()) and d["output"]["max"] == pytest.approx(expected.max())
    w = d["arithmetic"]["width"]
    assert w["text"] == "(W − F + 2P)/S + 1 = (256 − 3 + 2·1)/2 + 1 = ⌊255/2⌋ + 1 = 127 + 1 = 128"
    assert not w["exact"] and "dropped" in w["note"]
    assert d["input"]["png"].startswith("data:image/png;base64,")
    # the pixel under the pointer: window ⊙ kernel summed = the engine's output
    p = client.get(f"/api/kernel/{d['token']}/pixel", params={"y": 40, "x": 70}).json()
    assert p["origin"] == [40 * 2 - 1, 70 * 2 - 1]
    window = np.array(p["channels"][0]["window"])
    assert np.array_equal(window, sample_grey[79:82, 139:142])
    k = np.array(p["kernel"])
    assert p["channels"][0]["sum"] == pytest.approx(float((window * k).sum()))
    assert p["channels"][0]["output"] == pytest.approx(expected[40, 70])
    assert p["channels"][0]["expression"].endswith(f"= {int(expected[40, 70])}")


def test_pixel_in_the_padding(client: TestClient) -> None:
    d = client.post("/api/kernel", json={"image": {"sample": "camera"}, "kernel": "box_blur", "padding": 1}).json()
    p = client.get(f"/api/kernel/{d['token']}/pixel", params={"y": 0, "x": 0}).json()
    assert p["origin"] == [-1, -1]
    assert p["inside"][0] == [False, False, False] and p["inside"][1] == [False, True, True]
    assert p["channels"][0]["window"][0] == [0, 0, 0]
    assert p["channels"][0]["sum"] == pytest.approx(p["channels"][0]["output"])
    error_of(client.get(f"/api/kernel/{d['token']}/pixel", params={"y": 999, "x": 0}), 400)
    error_of(client.get("/api/kernel/nope/pixel", params={"y": 0, "x": 0}), 404)


def test_custom_matrix_flip_and_rgb(client: TestClient) -> None:
    m = [[0, 0, 0], [0, 0, 1], [0, 0, 0]]
    d = client.post(
        "/api/kernel",
        json={"image": {"sample": "chelsea"}, "matrix": m, "flip": True, "color": "rgb", "display": "clip"},
    ).json()
    assert d["kernel"]["name"] == "custom" and d["kernel"]["applied"] == [[0, 0, 0], [1, 0, 0], [0, 0, 0]]
    assert d["input"]["channels"] == 3 and d["output"]["width"] == d["input"]["width"] - 2
    p = client.get(f"/api/kernel/{d['token']}/pixel", params={"y": 5, "x": 5}).json()
    assert p["names"] == ["R", "G", "B"] and len(p["channels"]) == 3
    for c in p["channels"]:  # flipped shift kernel: output(y, x) = input(y + 1, x)
        assert c["output"] == c["window"][1][0] == pytest.approx(c["sum"])
    five = client.post("/api/kernel", json={"image": {"sample": "coffee"}, "matrix": np.ones((5, 5)).tolist()})
    assert five.status_code == 200 and five.json()["arithmetic"]["height"]["F"] == 5


@pytest.mark.parametrize(
    ("body", "status", "fragment"),
    [
        ({"matrix": [[1, 2], [3, 4]]}, 400, "3×3 or 5×5"),
        ({"matrix": [[1, 2, 3], [4, 5, 6]]}, 400, "3×3 or 5×5"),
        ({"matrix": [[1, 2, 3], [4, "x", 6], [7, 8, 9]]}, 422, "matrix"),
        ({"matrix": [[1e9, 0, 0], [0, 0, 0], [0, 0, 0]]}, 400, "magnitude"),
        ({"kernel": "no_such_kernel"}, 400, "unknown kernel"),
        ({"kernel": "sharpen", "matrix": [[0, 0, 0], [0, 1, 0], [0, 0, 0]]}, 400, "not both"),
        ({}, 400, "give a kernel"),
        ({"kernel": "sharpen", "stride": 0}, 422, "stride"),
        ({"kernel": "sharpen", "padding": -1}, 422, "padding"),
        ({"kernel": "sharpen", "color": "purple"}, 422, "color"),
        ({"kernel": "sharpen", "bogus": 1}, 422, "bogus"),
    ],
)
def test_kernel_errors_are_clear(client: TestClient, body: dict, status: int, fragment: str) -> None:
    msg = error_of(client.post("/api/kernel", json={"image": {"sample": "camera"}, **body}), status)
    assert fragment in msg


def test_kernel_image_errors(client: TestClient) -> None:
    assert "exactly one" in error_of(client.post("/api/kernel", json={"image": {}, "kernel": "sharpen"}), 400)
    two = {"sample": "camera", "upload": "x"}
    assert "exactly one" in error_of(client.post("/api/kernel", json={"image": two, "kernel": "sharpen"}), 400)
    assert "unknown sample" in error_of(
        client.post("/api/kernel", json={"image": {"sample": "../app"}, "kernel": "sharpen"}), 404
    )
    assert "expired" in error_of(client.post("/api/kernel", json={"image": {"upload": "nope"}, "kernel": "x"}), 404)
    up = client.post("/api/upload", content=png(np.zeros((3, 3))), headers={"content-type": "image/png"}).json()
    msg = error_of(
        client.post("/api/kernel", json={"image": {"upload": up["id"]}, "matrix": np.ones((5, 5)).tolist()}), 400
    )
    assert "does not fit" in msg
    assert "not valid JSON" in error_of(
        client.post("/api/kernel", content=b"{oops", headers={"content-type": "application/json"}), 422
    )


# ----------------------------------------------------------------------------- uploads


def test_upload_raw_and_multipart(client: TestClient) -> None:
    img = (np.arange(40 * 60 * 3) % 251).reshape(40, 60, 3)
    r = client.post("/api/upload", content=png(img), headers={"content-type": "image/png", "x-filename": "a.png"})
    assert r.status_code == 200, r.text
    d = r.json()
    assert (d["width"], d["height"], d["channels"], d["name"]) == (60, 40, 3, "a.png")
    r2 = client.post("/api/upload", files={"file": ("b.png", png(img[:, :, 0]), "image/png")})
    assert r2.status_code == 200 and r2.json()["channels"] == 1
    k = client.post("/api/kernel", json={"image": {"upload": d["id"]}, "kernel": "identity", "padding": 1}).json()
    assert (k["output"]["width"], k["output"]["height"]) == (60, 40)
    # big uploads are scaled down to 512 px a side when stored, 256 px in the kernel view
    big = client.post("/api/upload", content=png(np.zeros((300, 1200), np.uint8))).json()
    assert (big["width"], big["height"]) == (512, 128)


def test_upload_refusals(runs_dir: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    small = TestClient(create_app(runs_dir, max_upload_bytes=20_000, max_pixels=10_000))
    noise = np.random.default_rng(0).integers(0, 256, (120, 120, 3))
    assert "limit" in error_of(small.post("/api/upload", content=png(noise)), 413)  # bytes (Content-Length)

    def chunks(n: int):
        for _ in range(n):
            yield b"\0" * 1024

    # without Content-Length: refused while reading (the body limit), or once read (the upload limit)
    assert "too large" in error_of(small.post("/api/upload", content=chunks(200)), 413)
    assert "the limit is 20,000 bytes" in error_of(small.post("/api/upload", content=chunks(40)), 413)
    assert "pixels" in error_of(small.post("/api/upload", content=png(np.zeros((101, 100)))), 413)
    assert "empty" in error_of(small.post("/api/upload", content=b""), 400)
    assert "not a readable image" in error_of(small.post("/api/upload", content=b"GIF89a garbage" * 10), 400)
    assert "not a readable image" in error_of(small.post("/api/upload", content=b"hello world"), 400)
    truncated = png(np.zeros((50, 50)))[:60]
    assert "not a readable image" in error_of(small.post("/api/upload", content=truncated), 400)
    ico = io.BytesIO()
    Image.new("RGB", (16, 16)).save(ico, format="ICO")
    assert "unsupported image format" in error_of(small.post("/api/upload", content=ico.getvalue()), 415)
    assert "file field" in error_of(small.post("/api/upload", files={"other": ("x.png", b"x")}), 400)
    # Pillow's decompression-bomb guard stays on: its warning and its error both refuse
    roomy = TestClient(create_app(runs_dir, max_pixels=10**9))
    monkeypatch.setattr(Image, "MAX_IMAGE_PIXELS", 1000)
    assert "decompression-bomb" in error_of(roomy.post("/api/upload", content=png(np.zeros((40, 40)))), 413)
    assert "decompression-bomb" in error_of(roomy.post("/api/upload", content=png(np.zeros((30, 50)))), 413)


def test_oversized_json_body_is_refused(runs_dir: Path) -> None:
    small = TestClient(create_app(runs_dir, max_upload_bytes=1000))
    big = {"image": {"drawing": "data:image/png;base64," + "A" * 5000}, "kernel": "sharpen"}
    assert "larger than the limit of 1,000 bytes" in error_of(small.post("/api/kernel", json=big), 413)
    huge = {"image": {"drawing": "data:image/png;base64," + "A" * 100_000}, "kernel": "sharpen"}
    assert "request body too large" in error_of(small.post("/api/kernel", json=huge), 413)


# ----------------------------------------------------------------------------- paths


def test_only_files_under_the_runs_directory(tmp_path: Path, runs_dir: Path, helpers) -> None:
    outside = helpers.untrained_checkpoint(tmp_path / "outside.safetensors")
    runs = tmp_path / "runs"
    shutil.copytree(runs_dir, runs)
    (runs / "lenet5-shapes" / "notes.txt").write_text("hi")
    os.symlink(outside, runs / "lenet5-shapes" / "link.safetensors")
    os.symlink(tmp_path, runs / "escape")
    c = TestClient(create_app(runs))
    for name in (
        str(outside),
        "../outside.safetensors",
        "lenet5-shapes/../../outside.safetensors",
        "lenet5-shapes/link.safetensors",
        "escape/outside.safetensors",
        "/etc/passwd",
    ):
        msg = error_of(c.get("/api/checkpoint", params={"checkpoint": name}), 403)
        assert "outside the runs directory" in msg
        error_of(c.post("/api/activations", json={"checkpoint": name, "image": {"sample": "camera"}}), 403)
        error_of(c.get("/api/architecture", params={"checkpoint": name}), 403)
    assert "not a checkpoint" in error_of(
        c.get("/api/checkpoint", params={"checkpoint": "lenet5-shapes/notes.txt"}), 400
    )
    assert "not found" in error_of(c.get("/api/checkpoint", params={"checkpoint": "lenet5-shapes/x.safetensors"}), 404)
    error_of(c.get("/api/checkpoint", params={"checkpoint": "a\x00b"}), 400)
    ids = [x["id"] for x in c.get("/api/checkpoints").json()]
    assert "lenet5-shapes/best.safetensors" in ids and not any("link" in i or "outside" in i for i in ids)
    # an explicitly given checkpoint may lie anywhere
    c2 = TestClient(create_app(runs, checkpoints=[outside]))
    assert c2.get("/api/checkpoint", params={"checkpoint": str(outside)}).status_code == 200
    assert str(outside) in [x["id"] for x in c2.get("/api/checkpoints").json()]


def test_corrupt_checkpoint_is_a_clear_422(tmp_path: Path) -> None:
    runs = tmp_path / "runs"
    (runs / "r").mkdir(parents=True)
    (runs / "r" / "bad.safetensors").write_bytes(b"\x10\x00\x00\x00\x00\x00\x00\x00{not json")
    c = TestClient(create_app(runs))
    assert "cannot load checkpoint" in error_of(
        c.get("/api/checkpoint", params={"checkpoint": "r/bad.safetensors"}), 422
    )


# ----------------------------------------------------------------------------- runs


def test_runs_listing_and_history(client: TestClient) -> None:
    d = client.get("/api/runs").json()
    runs = {r["name"]: r for r in d["runs"]}
    assert set(runs) == {"lenet5-shapes", "lenet5-lr0.01", "tinyvgg-live"}
    assert runs["tinyvgg-live"]["status"] == "running" and runs["tinyvgg-live"]["epochs_done"] == 3
    assert runs["lenet5-shapes"]["checkpoints"] == ["lenet5-shapes/best.safetensors", "lenet5-shapes/last.safetensors"]
    h = client.get("/api/runs/lenet5-shapes").json()
    assert h["status"] == "finished" and len(h["epochs"]) == 10 and h["epochs"][0]["epoch"] == 1
    assert h["config"]["model"] == "lenet5" and h["best"]["epoch"] >= 1
    again = client.get("/api/runs/lenet5-shapes", params={"since": h["mtime_ns"]}).json()
    assert again["unchanged"] is True


def test_live_run_updates(tmp_path: Path, helpers) -> None:
    run = tmp_path / "runs" / "live"
    helpers.write_history(run, helpers.make_history("running", 1, planned=3))
    c = TestClient(create_app(tmp_path / "runs"))
    first = c.get("/api/runs/live").json()
    assert len(first["epochs"]) == 1
    helpers.write_history(run, helpers.make_history("running", 2, planned=3))
    os.utime(run / "history.json", ns=(first["mtime_ns"] + 10**9, first["mtime_ns"] + 10**9))
    second = c.get("/api/runs/live", params={"since": first["mtime_ns"]}).json()
    assert second["unchanged"] is False and len(second["epochs"]) == 2


def test_run_errors(tmp_path: Path, helpers) -> None:
    runs = tmp_path / "runs"
    (runs / "broken").mkdir(parents=True)
    (runs / "broken" / "history.json").write_text("{truncated")
    (runs / "list").mkdir()
    (runs / "list" / "history.json").write_text("[1, 2]")
    helpers.write_history(
        runs / "long", {"status": "running", "steps": [{"step": i, "loss": 1.0} for i in range(5000)]}
    )
    c = TestClient(create_app(runs))
    listing = {r["name"]: r for r in c.get("/api/runs").json()["runs"]}
    assert listing["broken"]["status"] == "unreadable" and "not valid JSON" in listing["broken"]["message"]
    assert "not valid JSON" in error_of(c.get("/api/runs/broken"), 422)
    assert "not a JSON object" in error_of(c.get("/api/runs/list"), 422)
    long = c.get("/api/runs/long").json()
    assert long["total_steps"] == 5000 and len(long["steps"]) == 2000 and long["steps"][-1]["step"] == 4999
    error_of(c.get("/api/runs/nope"), 404)
    error_of(c.get("/api/runs/..%2F..%2Fetc"), 404)
    error_of(c.get("/api/runs/.hidden"), 400)
    error_of(c.get("/api/runs/live", params={"since": "yesterday"}), 422)
    empty = TestClient(create_app(tmp_path / "does-not-exist"))
    assert empty.get("/api/runs").json()["runs"] == [] and empty.get("/api/checkpoints").json() == []


# ----------------------------------------------------------------------------- architecture


def test_architecture_of_zoo_models(client: TestClient) -> None:
    d = client.get("/api/architecture", params={"model": "lenet5"}).json()
    assert d["total_params"] == 61_706 and d["input_shape"] == [1, 28, 28] and d["output_shape"] == [10]
    rows = {r["name"]: r for r in d["rows"]}
    assert rows["0"]["kind"] == "Conv2d" and rows["0"]["output_shape"] == [6, 28, 28] and rows["0"]["params"] == 156
    assert rows["0"]["macs"] == 6 * 28 * 28 * 25 and rows["3"]["rf"] == [14, 14] and rows["5"]["jump"] == [4, 4]
    assert "kernel_size=(5, 5)" in rows["0"]["detail"]
    assert d["total_macs"] == sum(r["macs"] for r in d["rows"])
    alex = client.get("/api/architecture", params={"model": "alexnet"}).json()
    assert alex["total_params"] == 62_378_344 and alex["rows"][0]["output_shape"] == [96, 55, 55]
    other = client.get("/api/architecture", params={"model": "lenet5", "input_shape": "3,28,28", "num_classes": 4})
    assert other.json()["input_shape"] == [3, 28, 28] and other.json()["output_shape"] == [4]
    wrong = client.get("/api/architecture", params={"model": "lenet5", "input_shape": "1,32,32"})
    assert "expected input" in error_of(wrong, 400)


def test_architecture_errors(client: TestClient) -> None:
    assert "unknown model" in error_of(client.get("/api/architecture", params={"model": "gpt"}), 404)
    assert "exactly one" in error_of(client.get("/api/architecture"), 400)
    both = {"model": "lenet5", "checkpoint": CKPT}
    assert "exactly one" in error_of(client.get("/api/architecture", params=both), 400)
    for bad in ("1,2", "a,b,c", "0,28,28", "1,99999,2"):
        assert "input_shape" in error_of(
            client.get("/api/architecture", params={"model": "lenet5", "input_shape": bad}), 400
        )
    error_of(client.get("/api/architecture", params={"model": "lenet5", "input_shape": "1,4,4"}), 400)


def test_architecture_of_a_checkpoint(client: TestClient) -> None:
    d = client.get("/api/architecture", params={"checkpoint": CKPT}).json()
    assert d["total_params"] == 61_706 and "lenet5" in d["title"]


# ----------------------------------------------------------------------------- activations


def test_checkpoint_info_and_test_images(client: TestClient) -> None:
    info = client.get("/api/checkpoint", params={"checkpoint": CKPT}).json()
    assert info["architecture"] == "lenet5" and info["classes"][0] == "circle" and info["input_shape"] == [1, 28, 28]
    assert info["test_images"] == {"available": True, "dataset": "shapes", "count": 2000, "message": None}
    assert info["first_conv"] == "0"
    t = client.get("/api/testimages", params={"checkpoint": CKPT, "offset": 1990, "limit": 24}).json()
    assert len(t["items"]) == 10 and t["items"][0]["index"] == 1990 and t["items"][0]["png"].startswith("data:")
    error_of(client.get("/api/testimages", params={"checkpoint": CKPT, "limit": 0}), 422)


def test_activations_of_test_images(client: TestClient) -> None:
    from glassnet.data import load_dataset

    test = load_dataset("shapes", "test")
    for i in range(4):
        r = client.post("/api/activations", json={"checkpoint": CKPT, "image": {"test": i}, "top_k": 3})
        assert r.status_code == 200, r.text
        d = r.json()
        assert d["predictions"][0]["class"] == test.classes[int(test.labels[i])]
        assert len(d["predictions"]) == 3 and sum(d["probabilities"]) == pytest.approx(1.0)
    kinds = [(L["name"], L["kind"], L["stage"], L["shape"]) for L in d["layers"]]
    assert kinds[:3] == [
        ("0", "Conv2d", "after convolution", [6, 28, 28]),
        ("1", "ReLU", "after ReLU", [6, 28, 28]),
        ("2", "MaxPool2d", "after pooling", [6, 14, 14]),
    ]
    assert kinds[-1][3] == [10] and d["layers"][1]["stats"]["min"] == 0
    pic = d["layers"][0]["picture"]
    assert pic["layout"]["shown"] == 6 and pic["signed"] and pic["png"].startswith("data:image/png;base64,")
    f = d["filters"]
    assert f["shape"] == [6, 1, 5, 5] and np.array(f["weights"]).shape == (6, 1, 5, 5)
    assert d["input"]["width"] == 28 and "test image 3" in d["label"]
    error_of(client.post("/api/activations", json={"checkpoint": CKPT, "image": {"test": 5000}}), 404)


def test_unit_values_and_receptive_fields(client: TestClient, trained_checkpoint: Path) -> None:
    from glassnet.checkpoint import load_checkpoint
    from glassnet.data import load_dataset

    d = client.post("/api/activations", json={"checkpoint": CKPT, "image": {"test": 7}}).json()
    model = load_checkpoint(trained_checkpoint).build_model()
    model.eval()
    img = load_dataset("shapes", "test").images[7:8].astype(np.float32) / 255
    info = d["checkpoint"]["normalization"]
    x = (img - info["mean"][0]) / info["std"][0]
    outs = []
    for layer in model:  # LeNet-5 is a chain: run it layer by layer
        x = layer(x)
        outs.append(x)
    tok = d["token"]
    u = client.get(f"/api/activations/{tok}/unit", params={"layer": 3, "c": 5, "y": 4, "x": 6}).json()
    assert u["value"] == pytest.approx(float(outs[3][0, 5, 4, 6]), rel=1e-5, abs=1e-5)
    # conv 5×5 p2 → pool 2 → conv 5×5: unit (4, 6) sees rows 2·4 − 2 … + 13, columns 2·6 − 2 … + 13
    assert u["box"]["unclipped"] == [6, 10, 20, 24] and u["rf"]["size"] == [14, 14]
    corner = client.get(f"/api/activations/{tok}/unit", params={"layer": 0, "c": 0, "y": 0, "x": 0}).json()
    assert corner["box"]["unclipped"] == [-2, -2, 3, 3] and corner["box"]["top"] == 0 and corner["box"]["bottom"] == 3
    dense = client.get(f"/api/activations/{tok}/unit", params={"layer": 11, "c": 2}).json()
    assert dense["box"]["whole"] and dense["value"] == pytest.approx(float(outs[11][0, 2]), rel=1e-5, abs=1e-5)
    error_of(client.get(f"/api/activations/{tok}/unit", params={"layer": 99}), 400)
    error_of(client.get(f"/api/activations/{tok}/unit", params={"layer": 0, "c": 6}), 400)
    error_of(client.get("/api/activations/nope/unit", params={"layer": 0}), 404)


def test_receptive_field_boxes_hold_every_influence(client: TestClient, trained_checkpoint: Path) -> None:
    """Brute force: changing an input pixel outside a unit's box never changes the unit."""
    d = client.post("/api/activations", json={"checkpoint": CKPT, "image": {"test": 3}}).json()
    from glassnet.checkpoint import load_checkpoint
    from glassnet.data import load_dataset

    model = load_checkpoint(trained_checkpoint).build_model()
    model.eval()
    base = load_dataset("shapes", "test").images[3:4].astype(np.float64) / 255
    chain = list(model)
    layer, c, y, x = 3, 2, 1, 8
    box = client.get(f"/api/activations/{d['token']}/unit", params={"layer": layer, "c": c, "y": y, "x": x}).json()[
        "box"
    ]

    def unit(inp: np.ndarray) -> float:
        h = inp.astype(np.float32)
        for m in chain[: layer + 1]:
            h = m(h)
        return float(h[0, c, y, x])

    ref = unit(base)
    inside = np.zeros((28, 28), bool)
    inside[box["top"] : box["bottom"], box["left"] : box["right"]] = True
    for i in range(28):
        for j in range(28):
            if not inside[i, j]:
                probe = base.copy()
                probe[0, 0, i, j] += 5.0
                assert unit(probe) == pytest.approx(ref, abs=1e-6), (i, j)


def test_activations_from_uploads_drawings_and_samples(client: TestClient) -> None:
    canvas = Image.new("L", (200, 200), 0)
    from PIL import ImageDraw

    ImageDraw.Draw(canvas).ellipse((50, 40, 150, 140), outline=255, width=14)
    buf = io.BytesIO()
    canvas.save(buf, format="PNG")
    url = "data:image/png;base64," + base64.b64encode(buf.getvalue()).decode()
    d = client.post("/api/activations", json={"checkpoint": CKPT, "image": {"drawing": url}}).json()
    assert d["label"] == "drawing" and d["predictions"][0]["class"] in ("ring", "circle")
    up = client.post("/api/upload", content=buf.getvalue()).json()
    assert client.post("/api/activations", json={"checkpoint": CKPT, "image": {"upload": up["id"]}}).status_code == 200
    s = client.post("/api/activations", json={"checkpoint": CKPT, "image": {"sample": "coffee"}, "invert": True})
    assert s.status_code == 200 and s.json()["input"]["height"] == 28
    for bad in ("data:text/plain;base64,aGk=", "data:image/png;base64,!!!", "data:image/png,abc", "nonsense"):
        error_of(client.post("/api/activations", json={"checkpoint": CKPT, "image": {"drawing": bad}}), 400)
    error_of(client.post("/api/activations", json={"checkpoint": CKPT}), 422)
    error_of(client.post("/api/activations", json={"checkpoint": CKPT, "image": {"test": -1}}), 422)


def test_rgb_checkpoint(tmp_path: Path, helpers) -> None:
    runs = tmp_path / "runs"
    helpers.untrained_checkpoint(runs / "rgb" / "last.safetensors", rgb=True)
    c = TestClient(create_app(runs, data_dir=tmp_path / "no-data"))
    grey = c.post("/api/upload", content=png(np.full((20, 30), 128))).json()["id"]
    d = c.post("/api/activations", json={"checkpoint": "rgb/last.safetensors", "image": {"upload": grey}}).json()
    assert d["filters"]["coloured"] and d["input"]["width"] == 28
    info = c.get("/api/checkpoint", params={"checkpoint": "rgb/last.safetensors"}).json()
    assert info["test_images"]["available"] is True and info["test_images"]["dataset"] == "shapes-rgb"


def test_residual_network_traces() -> None:
    """ResNet-20 is not a chain: residual blocks are recorded after their layers, and the
    receptive fields agree with the summary table."""
    from glassnet import summary
    from glassnet.explorer import _models as mdl
    from glassnet.models import get_model

    model = get_model("resnet20", rng=0)
    model.eval()
    x = np.random.default_rng(0).standard_normal((1, 3, 32, 32)).astype(np.float32)
    expected = model(x)
    out, records = mdl.trace(model, x)
    assert np.allclose(out, expected)
    assert not any("forward" in m.__dict__ for _, m in model.named_modules())  # unwrapped again
    blocks = [r for r in records if r.composite]
    assert len(blocks) == 9 and blocks[0].name == "layer1.0"
    rows = {r.name: r for r in summary(model, (3, 32, 32)).rows}
    for r in records:
        if r.name in rows and not r.rf.whole:
            assert r.rf.size == rows[r.name].rf, r.name
    assert records[-1].rf.whole and records[-1].output.shape == (1, 10)


def test_models_are_built_and_recorded_without_patching() -> None:
    """Shape-only zoo models come from nn.init.skip_init (nothing patched, weights zero); activations are
    recorded with forward hooks, removed afterwards; receptive fields are the trace's, offsets included."""
    from glassnet.explorer import _models as mdl
    from glassnet.nn import init, layers

    model = mdl.build_zoo_model("resnet20", shape_only=True, shortcut="A")
    assert layers.init_weight is init.init_weight and layers.init_bias is init.init_bias
    assert not model.conv1.weight.data.any() and not init.init_skipped()
    x = np.random.default_rng(1).standard_normal((1, 3, 32, 32)).astype(np.float32)
    _, records = mdl.trace(model.eval(), x)
    assert all(not m._forward_hooks for m in model.modules())
    first = records[0]
    assert (first.name, first.rf.start, first.rf.size, first.rf.jump) == ("conv1", (-1, -1), (3, 3), (1, 1))
    shortcut = next(r for r in records if r.name == "layer2.0.downsample")
    assert shortcut.kind == "ZeroPadShortcut" and shortcut.rf.jump == (2, 2)
    assert shortcut.output.shape == (1, 32, 16, 16)


def test_unknown_routes_and_methods(client: TestClient) -> None:
    assert "no such page" in error_of(client.get("/api/nothing"), 404)
    error_of(client.get("/api/kernel"), 405)
    error_of(client.delete("/api/runs"), 405)
    r = client.get("/api/architecture", params={"model": "lenet5", "num_classes": "many"})
    assert "num_classes" in error_of(r, 422)
    assert json.loads(r.text)  # JSON, not HTML
