"""The explorer's playground API: shapes, parameters and MACs of a CNN built from a spec, impossible
layers explained, and training in a background job."""

from __future__ import annotations

import contextlib
import io
import json
import time
import warnings
from pathlib import Path

import numpy as np
import pytest

pytest.importorskip("fastapi", reason="the explorer needs the 'explorer' extra (fastapi, uvicorn)")

import glassnet
from glassnet.explorer import create_app

with warnings.catch_warnings():
    warnings.simplefilter("ignore")
    from fastapi.testclient import TestClient

SPEC = {
    "layers": [
        {"type": "conv", "channels": 8, "kernel": 3, "padding": 1},
        {"type": "pool"},
        {"type": "conv", "channels": 16, "kernel": 3, "padding": 1},
        {"type": "pool", "pool": "avg"},
        {"type": "dropout", "p": 0.25},
        {"type": "dense", "units": 32},
    ]
}


@pytest.fixture(scope="module")
def client(runs_dir: Path, tmp_path_factory: pytest.TempPathFactory) -> TestClient:
    return TestClient(create_app(runs_dir, cache_dir=tmp_path_factory.mktemp("cache")))


def wait(client: TestClient, job_id: str, timeout: float = 60.0) -> dict:
    end = time.monotonic() + timeout
    while time.monotonic() < end:
        j = client.get(f"/api/jobs/{job_id}").json()
        if j["status"] != "running":
            return j
        time.sleep(0.05)
    raise AssertionError(f"job {job_id} still running after {timeout} s")


def test_shapes_parameters_and_macs(client: TestClient) -> None:
    r = client.post("/api/playground/summary", json=SPEC)
    assert r.status_code == 200, r.text
    d = r.json()
    rows = d["layers"]
    assert [r["type"] for r in rows] == ["conv", "pool", "conv", "pool", "dropout", "flatten", "dense", "output"]
    assert [r["spec"] for r in rows] == [0, 1, 2, 3, 4, None, 5, None] and rows[5]["auto"] and rows[7]["auto"]
    assert [r["output_shape"] for r in rows] == [[8, 28, 28], [8, 14, 14], [16, 14, 14], [16, 7, 7], [16, 7, 7],
                                                  [784], [32], [10]]  # fmt: skip
    # by hand: C_out·(C_in·k·k + 1) parameters, C_out·H·W·C_in·k·k MACs
    assert [r["params"] for r in rows] == [80, 0, 1168, 0, 0, 0, 784 * 32 + 32, 330]
    assert rows[0]["macs"] == 8 * 28 * 28 * 9 and rows[2]["macs"] == 16 * 14 * 14 * 72 and rows[6]["macs"] == 784 * 32
    assert d["total_params"] == 80 + 1168 + 25120 + 330 and d["total_macs"] == sum(r["macs"] for r in rows)
    assert rows[0]["kinds"] == ["Conv2d", "ReLU"] and rows[1]["rf"] == [4, 4] and rows[3]["kinds"] == ["AvgPool2d"]
    assert d["input_shape"] == [1, 28, 28] and d["output_shape"] == [10] and d["trainable"]
    # the code builds the same model
    scope: dict = {}
    with contextlib.redirect_stdout(io.StringIO()) as out:
        exec(d["code"], scope)  # noqa: S102 - the code the page shows
    assert f"total parameters:     {d['total_params']:,}" in out.getvalue()
    s = glassnet.summary(scope["model"], (1, 28, 28))
    assert s.total_params == d["total_params"] and s.total_macs == d["total_macs"]
    rgb = client.post("/api/playground/summary", json={**SPEC, "data": "shapes-rgb"}).json()
    assert rgb["input_shape"] == [3, 28, 28] and rgb["layers"][0]["params"] == 8 * 28
    empty = client.post("/api/playground/summary", json={"layers": []}).json()
    assert [r["type"] for r in empty["layers"]] == ["flatten", "output"] and empty["total_params"] == 7850


@pytest.mark.parametrize(
    ("layers", "bad", "fragments"),
    [
        (
            [{"type": "conv", "kernel": 5}, {"type": "pool"}, {"type": "conv", "kernel": 13}],
            2,
            ["kernel 13×13 is larger than the padded input 12×12", "(H − F + 2P)/S + 1 = (12 − 13 + 2·0)/1 + 1"],
        ),
        ([{"type": "pool", "kernel": 30}], 0, ["window 30×30 is larger", "no window fits"]),
        ([{"type": "dense", "units": 10}, {"type": "conv"}], 1, ["a vector of 10 values", "4-D input"]),
        ([{"type": "dense"}, {"type": "pool"}], 1, ["a vector of 64 values"]),
    ],
)
def test_an_impossible_layer_is_explained(client: TestClient, helpers, layers: list, bad: int, fragments: list) -> None:
    r = client.post("/api/playground/summary", json={"layers": layers})
    msg = helpers.error_of(r, 422)
    d = r.json()
    assert d["layer"] == bad and msg.startswith(f"layer {bad + 1} (")
    text = msg + " " + d["explanation"] + " " + d["trace_error"]
    for f in fragments:
        assert f in text, (f, text)
    assert d["trace_error"].startswith("layer '")  # glassnet.trace names the module
    assert len([r for r in d["layers"] if not r["auto"]]) == bad  # the layers before it, with their shapes


@pytest.mark.parametrize(
    ("spec", "status", "fragment"),
    [
        ({"layers": [{"type": "conv", "units": 3}]}, 400, "'units' does not apply to a convolution"),
        ({"layers": [{"type": "pool", "p": 0.5}]}, 400, "'p' does not apply to a pooling"),
        ({"layers": [{"type": "lstm"}]}, 422, "type"),
        ({"layers": [{"type": "conv", "channels": 0}]}, 422, "channels"),
        ({"layers": [{"type": "conv", "kernel": 99}]}, 422, "kernel"),
        ({"layers": [{"type": "dropout", "p": 1.0}]}, 422, "p"),
        ({"layers": [{"type": "pool"}] * 17}, 422, "layers"),
        ({"data": "imagenet"}, 422, "data"),
        ({"layers": [], "extra": 1}, 422, "extra"),
    ],
)
def test_bad_specs(client: TestClient, helpers, spec: dict, status: int, fragment: str) -> None:
    assert fragment in helpers.error_of(client.post("/api/playground/summary", json=spec), status)


def test_training_in_the_background(client: TestClient, helpers) -> None:
    r = client.post("/api/playground/train", json={"spec": SPEC, "steps": 60, "batch_size": 16, "seed": 1})
    assert r.status_code == 200, r.text
    job = r.json()
    assert job["kind"] == "train" and job["total"] == 60 and job["status"] == "running"
    busy = client.post("/api/playground/train", json={"spec": SPEC, "steps": 10})
    assert "busy" in helpers.error_of(busy, 409) and busy.json()["job"]["id"] == job["id"]
    j = wait(client, job["id"])
    assert j["status"] == "done" and j["done"] == 60, j["message"]
    res = j["result"]
    assert [c["step"] for c in res["curve"]] == list(range(1, 61))
    assert [e["step"] for e in res["evals"]] == [0, 25, 50, 60]
    assert all(0 <= e["test_acc"] <= 1 for e in res["evals"])
    assert res["curve"][-1]["loss"] < res["curve"][0]["loss"]
    # the first layer's filters changed
    assert res["filters_start"]["step"] == 0 and res["filters"]["step"] == 60
    assert res["filters"]["shape"] == [8, 1, 3, 3] and res["filters"]["png"] != res["filters_start"]["png"]
    unchanged = client.get(f"/api/jobs/{job['id']}", params={"since": j["version"]}).json()
    assert unchanged["unchanged"] is True


def test_training_stops_when_asked(client: TestClient, helpers) -> None:
    job = client.post("/api/playground/train", json={"spec": SPEC, "steps": 1000}).json()
    stopped = client.delete(f"/api/jobs/{job['id']}").json()
    assert stopped["status"] == "cancelled" and stopped["done"] < 1000
    helpers.error_of(client.get("/api/jobs/nope"), 404)
    helpers.error_of(client.delete("/api/jobs/nope"), 404)


def test_training_bounds(client: TestClient, helpers) -> None:
    big = {"layers": [{"type": "conv", "channels": 256, "kernel": 9, "padding": 4}] * 3}
    assert "too large to train" in helpers.error_of(
        client.post("/api/playground/train", json={"spec": big, "steps": 1}), 422
    )
    assert "steps" in helpers.error_of(client.post("/api/playground/train", json={"spec": SPEC, "steps": 1001}), 422)
    bad = {"layers": [{"type": "pool", "kernel": 30}]}
    assert "cannot work" in helpers.error_of(client.post("/api/playground/train", json={"spec": bad}), 422)


# ----------------------------------------------------------------------------- epochs, resume, save, watch, folders

PLAIN = {"layers": [{"type": "conv", "channels": 8, "kernel": 3, "padding": 1}, {"type": "pool"}]}  # no dropout


@pytest.fixture
def fresh(tmp_path: Path) -> TestClient:
    """A client of its own runs directory (the tests save runs into it)."""
    return TestClient(create_app(tmp_path / "runs", cache_dir=tmp_path / "cache"))


def test_train_one_epoch_watch_an_image_resume_and_save(fresh: TestClient, helpers, tmp_path: Path) -> None:
    from glassnet.checkpoint import load_checkpoint, restore_optimizer
    from glassnet.optim import Adam

    job = fresh.post("/api/playground/train", json={"spec": PLAIN, "epochs": 1, "batch_size": 256, "watch": 3}).json()
    assert job["total"] == 47 and "1 epoch(s), 47 steps" in job["title"]  # ⌈12,000 / 256⌉
    j = wait(fresh, job["id"])
    assert j["status"] == "done", j["message"]
    res = j["result"]
    assert res["steps_per_epoch"] == 47 and res["step"] == 47 and res["epoch"] == 1.0
    assert [e["step"] for e in res["evals"]] == [0, 25, 47] and res["evals"][-1]["epoch"] == 1.0
    assert [r["epoch"] for r in res["epochs"]] == [1] and res["epochs"][0]["val_acc"] == res["evals"][-1]["test_acc"]
    # the watched test image's first feature maps (conv + ReLU), before training and after the epoch
    w0, w = res["watch_start"], res["watch"]
    assert w0["index"] == w["index"] == 3 and w0["step"] == 0 and w["step"] == 47 and w["epoch_end"]
    assert w["shape"] == [8, 28, 28] and w["layer"] == "0+1 (conv + ReLU)" and w["png"] != w0["png"]
    assert w["label"] == res["watch_input"]["label"] and w["predicted"] in res["classes"]
    assert [s["step"] for s in res["watch_epochs"]] == [47] and res["watch_input"]["index"] == 3
    # resume: the same model and optimiser, the step count going on
    r = fresh.post("/api/playground/resume", json={"job": job["id"], "steps": 10})
    assert r.status_code == 200, r.text
    j2 = wait(fresh, r.json()["id"])
    res2 = j2["result"]
    assert j2["status"] == "done" and res2["start_step"] == 47 and res2["step"] == 57
    assert [c["step"] for c in res2["curve"]] == list(range(1, 58)) and res2["evals"][-1]["step"] == 57
    # resumed 47 + 10 steps = 57 steps at once: the same weights, bit for bit
    straight = wait(fresh, fresh.post("/api/playground/train", json={"spec": PLAIN, "steps": 57, "batch_size": 256,
                                                                     "watch": 3}).json()["id"])  # fmt: skip
    assert straight["status"] == "done"
    a = fresh.post("/api/playground/save", json={"job": r.json()["id"], "name": "pg-resumed"})
    b = fresh.post("/api/playground/save", json={"job": straight["id"], "name": "pg-straight"})
    assert a.status_code == 200 and b.status_code == 200, (a.text, b.text)
    assert a.json()["checkpoint"] == "pg-resumed/last.safetensors" and a.json()["step"] == 57
    runs = tmp_path / "runs"
    ca, cb = (
        load_checkpoint(runs / "pg-resumed" / "last.safetensors"),
        load_checkpoint(runs / "pg-straight" / "last.safetensors"),
    )
    for k, v in ca.model_state.items():
        assert np.array_equal(v, cb.model_state[k]), k
    for k, v in ca.optim_arrays.items():
        assert np.array_equal(v, cb.optim_arrays[k]), k
    # a proper run: checkpoint (model rebuilt from its description, optimiser state) and history
    m = ca.meta
    assert m.architecture == "sequential" and m.step == 57 and m.epoch == 1 and m.dataset == "shapes"
    assert m.arch_kwargs["layers"].startswith("Conv2d(1, 8, 3, stride=1, padding=1); ReLU; MaxPool2d(2, stride=2)")
    model = ca.build_model()
    restore_optimizer(ca, Adam(model.parameters(), lr=0.003))
    hist = json.loads((runs / "pg-resumed" / "history.json").read_text())
    assert hist["status"] == "finished" and len(hist["steps"]) == 57 and hist["config"]["data"] == "shapes"
    listed = {r["name"]: r for r in fresh.get("/api/runs").json()["runs"]}
    assert listed["pg-resumed"]["checkpoints"] == ["pg-resumed/last.safetensors"]
    assert listed["pg-resumed"]["architecture"] == "sequential" and listed["pg-resumed"]["epochs_done"] == 1
    # ... and the other views open it
    act = fresh.post("/api/activations", json={"checkpoint": "pg-resumed/last.safetensors", "image": {"test": 3}})
    assert act.status_code == 200 and [L["kind"] for L in act.json()["layers"]][:3] == ["Conv2d", "ReLU", "MaxPool2d"]
    why = fresh.post("/api/why", json={"checkpoint": "pg-resumed/last.safetensors", "image": {"test": 3},
                                       "methods": ["gradcam"]})  # fmt: skip
    assert why.status_code == 200, why.text
    # never overwritten; names checked; unknown jobs
    again = helpers.error_of(
        fresh.post("/api/playground/save", json={"job": r.json()["id"], "name": "pg-resumed"}), 409
    )
    assert "already exists" in again and "nothing was overwritten" in again
    assert "invalid run name '../x'" in helpers.error_of(
        fresh.post("/api/playground/save", json={"job": r.json()["id"], "name": "../x"}), 400
    )
    assert "unknown or expired playground training 'nope'" in helpers.error_of(
        fresh.post("/api/playground/resume", json={"job": "nope"}), 404
    )
    helpers.error_of(fresh.post("/api/playground/save", json={"job": "nope"}), 404)


def test_a_running_training_is_neither_resumed_nor_saved(fresh: TestClient, helpers) -> None:
    job = fresh.post("/api/playground/train", json={"spec": PLAIN, "steps": 1000}).json()
    try:
        assert "still running" in helpers.error_of(fresh.post("/api/playground/save", json={"job": job["id"]}), 409)
        assert "still running" in helpers.error_of(fresh.post("/api/playground/resume", json={"job": job["id"]}), 409)
    finally:
        stopped = fresh.delete(f"/api/jobs/{job['id']}").json()
    assert stopped["status"] == "cancelled"
    # a stopped training resumes where it stopped
    r = fresh.post("/api/playground/resume", json={"job": job["id"], "steps": 3})
    assert r.status_code == 200, r.text
    res = wait(fresh, r.json()["id"])["result"]
    assert res["step"] == res["start_step"] + 3 == res["curve"][-1]["step"]


@pytest.mark.parametrize(
    ("body", "status", "fragment"),
    [
        ({"epochs": 11}, 422, "epochs"),
        ({"epochs": 2, "batch_size": 1}, 422, "24,000 steps, more than the 10,000 a job may run"),
        ({"watch": 2000}, 400, "watch image 2000 does not exist: the test images of shapes are 0–1999"),
    ],
)
def test_epoch_and_watch_bounds(fresh: TestClient, helpers, body: dict, status: int, fragment: str) -> None:
    assert fragment in helpers.error_of(fresh.post("/api/playground/train", json={"spec": PLAIN, **body}), status)


def test_epochs_and_steps_together_stop_at_the_first_bound(fresh: TestClient) -> None:
    job = fresh.post("/api/playground/train", json={"spec": PLAIN, "epochs": 1, "steps": 5}).json()
    assert job["total"] == 5
    wait(fresh, job["id"])


@pytest.fixture(scope="module")
def image_folder(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """blobs/: two classes (dark and light noise), 30 RGB images of 24×20 each."""
    from PIL import Image

    root = tmp_path_factory.mktemp("folders") / "blobs"
    rng = np.random.default_rng(0)
    for cls, base in (("dark", 40), ("light", 200)):
        (root / cls).mkdir(parents=True)
        for i in range(30):
            a = np.clip(base + rng.normal(0, 30, (20, 24, 3)), 0, 255).astype(np.uint8)
            Image.fromarray(a).save(root / cls / f"{i}.png")
    return root


def test_playground_trains_on_a_folder_it_was_started_with(image_folder: Path, tmp_path: Path, helpers) -> None:
    c = TestClient(create_app(tmp_path / "runs", cache_dir=tmp_path / "cache", folders=[image_folder]))
    choices = {d["name"]: d for d in c.get("/api/playground/data").json()}
    assert set(choices) == {"shapes", "shapes-rgb", "fashion-mnist", "folder:blobs"}
    blobs = choices["folder:blobs"]
    assert blobs["input_shape"] == [3, 20, 20] and blobs["classes"] == 2 and "20% held out" in blobs["title"]
    spec = {"data": "folder:blobs", **PLAIN}
    d = c.post("/api/playground/summary", json=spec).json()
    assert d["input_shape"] == [3, 20, 20] and d["output_shape"] == [2] and d["layers"][0]["params"] == 8 * 28
    assert "glassnet.summary(model, (3, 20, 20))" in d["code"]
    thumbs = c.get("/api/playground/testimages", params={"data": "folder:blobs"}).json()
    assert thumbs["count"] == 12 and {it["class"] for it in thumbs["items"]} == {"dark", "light"}
    job = c.post("/api/playground/train", json={"spec": spec, "epochs": 3, "batch_size": 8}).json()
    j = wait(c, job["id"])
    assert j["status"] == "done" and j["result"]["step"] == 18 and j["result"]["classes"] == ["dark", "light"]
    assert j["result"]["evals"][-1]["test_acc"] == 1.0  # dark against light
    saved = c.post("/api/playground/save", json={"job": job["id"], "name": "blobs-run"}).json()
    info = c.get("/api/checkpoint", params={"checkpoint": saved["checkpoint"]}).json()
    assert info["input_shape"] == [3, 20, 20] and info["classes"] == ["dark", "light"]
    assert info["test_images"]["available"] and info["test_images"]["count"] == 12  # the same held-out images
    # the folder's name in the error when it is not one the explorer was started with
    msg = helpers.error_of(c.post("/api/playground/summary", json={**spec, "data": "folder:cats"}), 404)
    assert "the data 'folder:cats' is not available" in msg and "it was started with folder:blobs" in msg


def test_folder_choices_without_folders(client: TestClient, helpers) -> None:
    msg = helpers.error_of(client.post("/api/playground/summary", json={"data": "folder:cats"}), 404)
    assert "'folder:cats' is not available" in msg and "glassnet explore --folder PATH" in msg
    msg = helpers.error_of(client.post("/api/playground/train", json={"spec": {"data": "imagenet"}}), 422)
    assert msg.startswith("unknown data 'imagenet': expected one of shapes, shapes-rgb, fashion-mnist")
    with pytest.raises(ValueError, match="is not a folder"):
        create_app("runs", folders=[__file__])
