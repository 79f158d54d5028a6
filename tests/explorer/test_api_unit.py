"""Lecture E2, how one unit was computed: GET /api/activations/{token}/unit?explain=true breaks a
convolution's unit into every input channel's window and kernel slice, their sums, the bias, the
total (the value the forward pass recorded) and the ReLU after it."""

from __future__ import annotations

import shutil
import warnings
from pathlib import Path

import numpy as np
import pytest

pytest.importorskip("fastapi", reason="the explorer needs the 'explorer' extra (fastapi, uvicorn)")

from glassnet.checkpoint import load_checkpoint, save_checkpoint
from glassnet.explorer import _models as mdl
from glassnet.explorer import create_app
from glassnet.models.sequential import sequential
from glassnet.nn import Conv2d, ReLU, Sequential

with warnings.catch_warnings():
    warnings.simplefilter("ignore")
    from fastapi.testclient import TestClient

WIDE = "Conv2d(1, 80, 3, stride=1, padding=1); ReLU; Conv2d(80, 4, 3, stride=2, padding=0); Flatten; Linear(676, 10)"


@pytest.fixture(scope="module")
def client(tmp_path_factory: pytest.TempPathFactory, trained_checkpoint: Path) -> TestClient:
    runs = tmp_path_factory.mktemp("unit") / "runs"
    (runs / "lenet").mkdir(parents=True)
    shutil.copy(trained_checkpoint, runs / "lenet" / "best.safetensors")
    (runs / "wide").mkdir()
    save_checkpoint(runs / "wide" / "last.safetensors", sequential(WIDE, rng=0), architecture="sequential",
                    arch_kwargs={"layers": WIDE, "num_classes": 10, "in_channels": 1}, input_shape=(1, 28, 28),
                    classes=[f"c{i}" for i in range(10)], dataset="shapes",
                    normalization={"mean": [0.2], "std": [0.25]})  # fmt: skip
    return TestClient(create_app(runs, cache_dir=tmp_path_factory.mktemp("cache")))


def activations(client: TestClient, checkpoint: str, test: int = 3) -> dict:
    r = client.post("/api/activations", json={"checkpoint": checkpoint, "image": {"test": test}})
    assert r.status_code == 200, r.text
    return r.json()


def unit(client: TestClient, token: str, layer: int, c: int, y: int, x: int) -> dict:
    r = client.get(f"/api/activations/{token}/unit", params={"layer": layer, "c": c, "y": y, "x": x, "explain": "true"})
    assert r.status_code == 200, r.text
    return r.json()


@pytest.mark.parametrize(("layer", "c", "y", "x"), [(0, 0, 0, 0), (0, 5, 14, 13), (0, 2, 27, 27), (3, 7, 4, 6),
                                                    (3, 15, 9, 0)])  # fmt: skip
def test_every_channel_window_kernel_and_sum_add_up_to_the_recorded_unit(
    client: TestClient, trained_checkpoint: Path, layer: int, c: int, y: int, x: int
) -> None:
    doc = activations(client, "lenet/best.safetensors")
    comp = unit(client, doc["token"], layer, c, y, x)["computation"]
    assert comp["layer"] == layer and comp["unit"] == [c, y, x]
    assert comp["total"] == pytest.approx(comp["recorded"], abs=1e-5)  # Σ channels + bias is the forward's value
    assert comp["total"] == pytest.approx(comp["channel_sum"] + comp["bias"], abs=1e-12)
    assert len(comp["channels"]) == comp["in_channels"] == (1 if layer == 0 else 6) and comp["note"] is None
    conv = load_checkpoint(trained_checkpoint).build_model()[layer]
    assert comp["bias"] == pytest.approx(float(conv.bias.data[c]))
    for ch in comp["channels"]:
        w, k = np.array(ch["window"]), np.array(ch["kernel"])
        assert np.allclose(k, conv.weight.data[c, ch["channel"]]) and ch["sum"] == pytest.approx(float((w * k).sum()))
    # the ReLU after the convolution, as recorded
    relu = comp["relu"]
    assert relu["name"] == str(layer + 1) and relu["value"] == pytest.approx(max(comp["total"], 0.0), abs=1e-12)
    assert relu["value"] == pytest.approx(relu["recorded"], abs=1e-5)
    # the ReLU's unit is explained by the same convolution
    same = unit(client, doc["token"], layer + 1, c, y, x)["computation"]
    assert same["layer"] == layer and same["total"] == comp["total"]


def test_the_window_is_the_convolutions_input_with_padding_as_zeros(client: TestClient) -> None:
    doc = activations(client, "lenet/best.safetensors", test=7)
    comp = unit(client, doc["token"], 0, 1, 0, 1)["computation"]
    assert comp["padding"] == [[2, 2], [2, 2]] and comp["origin"] == [-2, -1] and comp["kernel_size"] == [5, 5]
    inside = np.array(comp["inside"])
    assert not inside[:2].any() and not inside[:, 0].any() and inside[2:, 1:].all()
    window = np.array(comp["channels"][0]["window"])
    assert np.all(window[~inside] == 0)
    # inside: the normalised input the model was fed (test image 7 of shapes)
    from glassnet.data import load_dataset

    meta = load_checkpoint(client.app.state.explorer.roots.runs_dir / "lenet" / "best.safetensors").meta
    norm = meta.normalization
    x = (load_dataset("shapes", "test").images[7, 0].astype(np.float64) / 255 - norm["mean"][0]) / norm["std"][0]
    assert np.allclose(window[2:, 1:], x[0:3, 0:4], atol=1e-6)


def test_a_wide_layer_lists_the_first_64_channels_and_says_so(client: TestClient) -> None:
    doc = activations(client, "wide/last.safetensors")
    comp = unit(client, doc["token"], 2, 3, 5, 7)["computation"]
    assert comp["in_channels"] == 80 and comp["shown"] == len(comp["channels"]) == 64
    assert "the first 64 of 80 input channels are listed" in comp["note"]
    assert comp["total"] == pytest.approx(comp["recorded"], abs=1e-5)
    assert comp["channel_sum"] == pytest.approx(sum(ch["sum"] for ch in comp["channels"]) + comp["rest_sum"])
    assert comp["stride"] == [2, 2] and comp["origin"] == [10, 14] and comp["relu"] is None  # Flatten comes next


def test_other_layers_and_bad_units_are_refused(client: TestClient, helpers) -> None:
    token = activations(client, "lenet/best.safetensors")["token"]
    q = {"layer": 2, "c": 0, "y": 0, "x": 0, "explain": "true"}
    msg = helpers.error_of(client.get(f"/api/activations/{token}/unit", params=q), 400)
    assert msg.startswith("layer 2 (2) is a MaxPool2d: only the units of a convolution")
    q = {"layer": 0, "c": 6, "y": 0, "x": 0, "explain": "true"}
    assert "unit (6, 0, 0) is outside the 6×28×28 output" in helpers.error_of(
        client.get(f"/api/activations/{token}/unit", params=q), 400
    )
    plain = client.get(f"/api/activations/{token}/unit", params={"layer": 2, "c": 0, "y": 0, "x": 0}).json()
    assert "computation" not in plain and plain["kind"] == "MaxPool2d"  # without explain: value and field only


def test_strides_dilation_groups_flip_and_uneven_padding() -> None:
    rng = np.random.default_rng(0)
    conv = Conv2d(4, 6, 3, stride=2, padding=((1, 0), (2, 1)), dilation=2, groups=2, flip=True, rng=1)
    model = Sequential(conv, ReLU())
    x = rng.standard_normal((1, 4, 13, 11)).astype(np.float32)
    _, records = mdl.trace(model, x)
    assert records[0].input is not None and records[1].input is None  # only a convolution keeps its input
    out = records[0].output[0]
    for c, y, xx in [(0, 0, 0), (4, 2, 3), (5, out.shape[1] - 1, out.shape[2] - 1)]:
        comp = mdl.conv_unit(records, 0, c, y, xx)
        assert comp["total"] == pytest.approx(float(out[c, y, xx]), abs=1e-5)
        assert comp["input_channels"] == ([0, 2] if c < 3 else [2, 4]) and comp["dilation"] == [2, 2]
        assert comp["relu"]["recorded"] == pytest.approx(max(comp["total"], 0), abs=1e-5)
