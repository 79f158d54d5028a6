"""The explorer's playground API: shapes, parameters and MACs of a CNN built from a spec, impossible
layers explained, and training in a background job."""

from __future__ import annotations

import contextlib
import io
import time
import warnings
from pathlib import Path

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
