"""The explorer's "Backprop, step by step" API: gradients at every layer, against PyTorch, and the check badges."""

from __future__ import annotations

import warnings
from pathlib import Path

import numpy as np
import pytest

pytest.importorskip("fastapi", reason="the explorer needs the 'explorer' extra (fastapi, uvicorn)")

import glassnet.functional as F
from glassnet.checkpoint import load_checkpoint
from glassnet.data import load_dataset
from glassnet.explorer import create_app

with warnings.catch_warnings():
    warnings.simplefilter("ignore")
    from fastapi.testclient import TestClient

NOISY = "lenet5-lr0.01/last.safetensors"


@pytest.fixture(scope="module")
def client(runs_dir: Path, tmp_path_factory: pytest.TempPathFactory) -> TestClient:
    return TestClient(create_app(runs_dir, cache_dir=tmp_path_factory.mktemp("cache")))


def first_wrong(runs_dir: Path) -> tuple[int, np.ndarray, int]:
    """A test image the noisy checkpoint gets wrong (its loss is not ~0), as a float64 input."""
    ckpt = load_checkpoint(runs_dir / NOISY)
    model = ckpt.build_model().eval()
    test = load_dataset("shapes", "test")
    norm = ckpt.meta.normalization
    x = (test.images[:200].astype(np.float64) / 255 - norm["mean"][0]) / norm["std"][0]
    pred = np.argmax(model(x.astype(np.float32)).numpy(), axis=1)
    i = int(np.flatnonzero(pred != test.labels[:200])[0])
    # the explorer prepares inputs in float32 (as for the float32 model), then computes in float64
    return i, x[i : i + 1].astype(np.float32).astype(np.float64), int(test.labels[i])


def test_every_layer_against_torch(client: TestClient, runs_dir: Path, torch) -> None:
    i, x, label = first_wrong(runs_dir)
    r = client.post("/api/backprop", json={"checkpoint": NOISY, "image": {"test": i}})
    assert r.status_code == 200, r.text
    d = r.json()
    assert d["target"]["index"] == label and d["predicted"]["index"] != label  # the loss uses the true label
    assert [L["name"] for L in d["layers"]] == [str(k) for k in range(11, -1, -1)]  # as backward reaches them
    assert d["steps"] == 13 and [o["op"] for o in d["loss_ops"]] == ["cross_entropy"]
    assert d["layers"][0]["ops"][0]["backward"].startswith("glassnet.functional.linear.linear_backward")
    # the same network in PyTorch, float64, same weights: ∂L/∂A at every layer, ∂L/∂W, ∂L/∂x
    nn = torch.nn
    net = nn.Sequential(
        nn.Conv2d(1, 6, 5, padding=2), nn.ReLU(), nn.MaxPool2d(2), nn.Conv2d(6, 16, 5), nn.ReLU(), nn.MaxPool2d(2),
        nn.Flatten(), nn.Linear(400, 120), nn.ReLU(), nn.Linear(120, 84), nn.ReLU(), nn.Linear(84, 10),
    ).double()  # fmt: skip
    state = load_checkpoint(runs_dir / NOISY).build_model().state_dict()
    net.load_state_dict({k: torch.tensor(np.asarray(v, dtype=np.float64)) for k, v in state.items()})
    xt = torch.tensor(x, requires_grad=True)
    outs, h = [], xt
    for layer in net:
        h = layer(h)
        h.retain_grad()
        outs.append(h)
    loss = torch.nn.functional.cross_entropy(h, torch.tensor([label]))
    loss.backward()
    assert d["loss"] == pytest.approx(loss.item(), rel=1e-9)
    by_name = {L["name"]: L for L in d["layers"]}
    for k, out in enumerate(outs):
        g = out.grad.numpy()[0]
        s = by_name[str(k)]["grad"]["stats"]
        assert s["l2"] == pytest.approx(float(np.linalg.norm(g)), rel=1e-5), k
        assert s["max"] == pytest.approx(float(g.max()), rel=1e-5, abs=1e-12), k
        assert s["zero_fraction"] == pytest.approx(float(np.mean(g == 0)), abs=1e-4), k
    for name, p in net.named_parameters():
        layer = by_name[name.split(".")[0]]
        row = next(q for q in layer["params"] if q["name"] == name)
        assert row["grad_norm"] == pytest.approx(float(p.grad.norm()), rel=1e-5), name
        assert row["weight_norm"] == pytest.approx(float(p.detach().norm()), rel=1e-5), name
    assert d["input_grad"]["stats"]["l2"] == pytest.approx(float(xt.grad.norm()), rel=1e-5)
    # ∂L/∂z = softmax − one-hot
    p = torch.softmax(h, 1).detach().numpy()[0]
    for row in d["logits_grad"]:
        assert row["grad"] == pytest.approx(p[row["index"]] - (row["index"] == label), rel=1e-5, abs=1e-12)
    # the per-layer gradient check: every layer passes, and so does the whole network's ∂L/∂x
    assert d["check"]["fail"] == 0 and d["check"]["pass"] >= 10
    assert all(L["check"]["status"] in ("pass", "noise") for L in d["layers"])
    assert d["input_grad"]["check"]["status"] == "pass"
    conv = by_name["0"]["check"]["coords"]
    assert [c["tensor"] for c in conv] == ["input"] * 3 + ["weight"] * 3 + ["bias"] * 3
    pic = by_name["3"]["grad"]["picture"]
    assert pic["layout"]["shown"] == 16 and pic["signed"] and pic["png"].startswith("data:image/png")
    hist = by_name["3"]["grad"]["histogram"]
    assert sum(hist["counts"]) == 16 * 10 * 10 and hist["lo"] == -hist["hi"]


def test_a_wrong_backward_fails_its_badge(client: TestClient, runs_dir: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """ReLU's backward made 1 % too large: the ReLU layers fail their check, the others pass."""
    i, _, _ = first_wrong(runs_dir)
    ref, fast = F.relu.reference_backward, F.relu.fast_backward

    def wrong(grad, ctx):
        (g,) = (fast if ctx.get("backend") == "fast" else ref)(grad, ctx)
        return (g * 1.01,)

    monkeypatch.setattr(F.relu, "reference_backward", wrong)
    monkeypatch.setattr(F.relu, "fast_backward", wrong)
    d = client.post("/api/backprop", json={"checkpoint": NOISY, "image": {"test": i}}).json()
    status = {L["name"]: (L["kind"], L["check"]["status"]) for L in d["layers"]}
    assert {n for n, (kind, st) in status.items() if st == "fail"} == {"1", "4", "8", "10"}
    assert all(kind == "ReLU" for kind, st in status.values() if st == "fail")
    assert d["input_grad"]["check"]["status"] == "fail"


def test_a_chosen_label_and_no_check(client: TestClient) -> None:
    d = client.post(
        "/api/backprop", json={"checkpoint": NOISY, "image": {"sample": "camera"}, "target": 4, "check": False}
    ).json()
    assert d["target"]["index"] == 4 and d["check"]["enabled"] is False
    assert "check" not in d["layers"][0] and "check" not in d["input_grad"]
    assert d["loss"] == pytest.approx(-np.log(d["target"]["probability"]), rel=1e-9)


def test_pretrained_efficientnet(client: TestClient) -> None:
    body = {"model": "efficientnet_lite0", "pretrained": True, "image": {"sample": "chelsea"}, "coords": 1}
    r = client.post("/api/backprop", json=body)
    assert r.status_code == 200, r.text
    d = r.json()
    assert d["target"]["class"] == "Egyptian cat" and len(d["layers"]) == 151
    assert d["layers"][0]["name"] == "_fc" and d["layers"][-1]["name"] == "_conv_stem"
    assert d["check"]["fail"] == 0 and d["input_grad"]["check"]["status"] == "pass"
    blocks = [L for L in d["layers"] if L["kind"] == "MBConvBlock"]
    assert len(blocks) == 16 and all(L["composite"] and not L["params"] for L in blocks)


@pytest.mark.parametrize(
    ("body", "status", "fragment"),
    [
        ({"target": 10}, 400, "out of range: the model has 10 classes"),
        ({"coords": 11}, 422, "coords"),
        ({"max_channels": 0}, 422, "max_channels"),
        ({"image": {"test": 5000}}, 404, "does not exist"),
        ({"checkpoint": "../../etc/passwd"}, 403, "outside the runs directory"),
        ({"model": "lenet5"}, 400, "exactly one"),
        ({"oops": True}, 422, "oops"),
    ],
)
def test_errors_are_clear(client: TestClient, helpers, body: dict, status: int, fragment: str) -> None:
    req = {"checkpoint": NOISY, "image": {"test": 0}, **body}
    assert fragment in helpers.error_of(client.post("/api/backprop", json=req), status)


def test_zoo_models_take_photos(client: TestClient, helpers) -> None:
    msg = helpers.error_of(client.post("/api/backprop", json={"model": "lenet5", "image": {"test": 0}}), 400)
    assert "needs a checkpoint" in msg
    d = client.post("/api/backprop", json={"model": "resnet20", "image": {"sample": "coffee"}, "coords": 1}).json()
    assert d["check"]["fail"] == 0 and d["layers"][0]["name"] == "fc"


def test_large_models_are_refused(client: TestClient, helpers, monkeypatch: pytest.MonkeyPatch) -> None:
    from glassnet.explorer import _backprop

    monkeypatch.setattr(_backprop, "MAX_PARAMS", 50_000)
    msg = helpers.error_of(client.post("/api/backprop", json={"checkpoint": NOISY, "image": {"test": 0}}), 422)
    assert "61,706 parameters" in msg and "up to 50,000" in msg
