"""glassnet.optim against PyTorch: golden fixtures always, live torch when installed.

The configurations, data and runners live in ``tests/fixtures/make_optim_golden.py``
(which also writes the golden file); the same runners drive ``glassnet.optim`` and
``torch.optim`` through a small backend adapter.
"""

from __future__ import annotations

import importlib.util
import json
import math
import sys
import zlib
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from safetensors import safe_open
from safetensors.numpy import load_file, save_file

from glassnet.nn import Parameter
from glassnet.optim import (
    SGD,
    Adam,
    AdamW,
    CosineAnnealingLR,
    LinearLR,
    LinearWarmup,
    NonFiniteGradientError,
    OneCycleLR,
    RMSprop,
    SequentialLR,
    StepLR,
    clip_grad_norm_,
    clip_grad_value_,
    flatten_state,
    unflatten_state,
)

_MK_PATH = Path(__file__).parent / "fixtures" / "make_optim_golden.py"
_spec = importlib.util.spec_from_file_location("make_optim_golden", _MK_PATH)
assert _spec is not None and _spec.loader is not None
mk = importlib.util.module_from_spec(_spec)
sys.modules["make_optim_golden"] = mk
_spec.loader.exec_module(mk)

GOLDEN = load_file(str(mk.GOLDEN))
with safe_open(str(mk.GOLDEN), "np") as _f:
    GOLDEN_META: dict[str, str] = _f.metadata()
GOLDEN_OPT: dict[str, Any] = json.loads(GOLDEN_META["opt_configs"])
GOLDEN_SCHED: dict[str, Any] = json.loads(GOLDEN_META["sched_configs"])

RTOL64, ATOL64 = 1e-12, 1e-13  # float64 optimiser trajectories vs torch (observed: <= 2e-14 relative)
REGEN = "regenerate it: .venv/bin/python tests/fixtures/make_optim_golden.py"

GN = mk.glassnet_backend()


def _golden_data() -> tuple[list[np.ndarray], list[np.ndarray]]:
    n = len(mk.SHAPES)
    return [GOLDEN[f"params.{i}"] for i in range(n)], [GOLDEN[f"grads.{i}"] for i in range(n)]


# -- golden file ------------------------------------------------------------------------------
def test_golden_file_is_current() -> None:
    assert GOLDEN_OPT == json.loads(json.dumps(mk.OPT_CONFIGS)), f"optimizer configs changed; {REGEN}"
    assert GOLDEN_SCHED == json.loads(json.dumps(mk.SCHED_CONFIGS)), f"scheduler configs changed; {REGEN}"
    assert int(GOLDEN_META["n_steps"]) == mk.N_STEPS and int(GOLDEN_META["sched_steps"]) == mk.SCHED_STEPS
    assert sorted(map(tuple, json.loads(GOLDEN_META["no_grad"]))) == sorted(mk.NO_GRAD)
    params0, grads = mk.make_data()
    for i in range(len(mk.SHAPES)):
        np.testing.assert_array_equal(GOLDEN[f"params.{i}"], params0[i], err_msg=REGEN)
        np.testing.assert_array_equal(GOLDEN[f"grads.{i}"], grads[i], err_msg=REGEN)
    assert mk.GOLDEN.stat().st_size < 200 * 1024


@pytest.mark.parametrize("name", sorted(GOLDEN_OPT))
def test_optimizer_matches_golden(name: str) -> None:
    params0, grads = _golden_data()
    traj, lrs = mk.run_optimizer(GN, GOLDEN_OPT[name], params0, grads)
    for i, tr in enumerate(traj):
        np.testing.assert_allclose(tr, GOLDEN[f"opt.{name}.{i}"], rtol=RTOL64, atol=ATOL64, err_msg=f"param {i}")
    if f"opt.{name}.lr" in GOLDEN:
        np.testing.assert_allclose(lrs, GOLDEN[f"opt.{name}.lr"], rtol=1e-13, atol=0)


@pytest.mark.parametrize("name", sorted(GOLDEN_SCHED))
def test_scheduler_matches_golden(name: str) -> None:
    lrs, moms = mk.run_scheduler(GN, GOLDEN_SCHED[name])
    np.testing.assert_allclose(lrs, GOLDEN[f"sched.{name}.lr"], rtol=1e-13, atol=0)
    if f"sched.{name}.momentum" in GOLDEN:
        np.testing.assert_allclose(moms, GOLDEN[f"sched.{name}.momentum"], rtol=1e-13, atol=0)


def test_cosine_recursive_close_to_closed_form() -> None:
    lrs, _ = mk.run_scheduler(GN, mk.SCHED_CONFIGS["cosine"])
    t = np.arange(mk.SCHED_STEPS + 1)[:, None]
    base = np.array([0.3, 0.02])
    closed = 1e-3 + (base - 1e-3) * (1 + np.cos(np.pi * t / 30)) / 2
    np.testing.assert_allclose(lrs, closed, rtol=1e-12)


# -- live torch ---------------------------------------------------------------------------------
def _random_data(seed: int) -> tuple[list[np.ndarray], list[np.ndarray]]:
    rng = np.random.default_rng(seed)
    params = [rng.standard_normal(s) * 2 for s in mk.SHAPES]
    grads = [rng.standard_normal((mk.N_STEPS, *s)) * rng.uniform(0.01, 10) for s in mk.SHAPES]
    return params, grads


@pytest.mark.torch
@pytest.mark.parametrize("name", sorted(mk.OPT_CONFIGS))
def test_optimizer_matches_live_torch_float64(torch: Any, name: str) -> None:
    params0, grads = _random_data(zlib.crc32(name.encode()))
    spec = mk.OPT_CONFIGS[name]
    ours, our_lrs = mk.run_optimizer(GN, spec, params0, grads)
    ref, ref_lrs = mk.run_optimizer(mk.torch_backend(), spec, params0, grads)
    for i, (a, b) in enumerate(zip(ours, ref, strict=True)):
        np.testing.assert_allclose(a, b, rtol=RTOL64, atol=ATOL64, err_msg=f"param {i}")
    np.testing.assert_array_equal(our_lrs, ref_lrs)


@pytest.mark.torch
@pytest.mark.parametrize("name", sorted(mk.OPT_CONFIGS))
def test_optimizer_matches_live_torch_float32(torch: Any, name: str) -> None:
    params0, grads = _random_data(7)
    spec = mk.OPT_CONFIGS[name]
    ours, _ = mk.run_optimizer(mk.glassnet_backend(np.float32), spec, params0, grads)
    ref, _ = mk.run_optimizer(mk.torch_backend(np.float32), spec, params0, grads)
    for i, (a, b) in enumerate(zip(ours, ref, strict=True)):
        assert a.dtype == np.float32
        np.testing.assert_allclose(a, b, rtol=2e-5, atol=2e-6, err_msg=f"param {i}")


@pytest.mark.torch
@pytest.mark.parametrize("name", sorted(mk.SCHED_CONFIGS))
def test_scheduler_matches_live_torch(torch: Any, name: str) -> None:
    spec = mk.SCHED_CONFIGS[name]
    lrs, moms = mk.run_scheduler(GN, spec)
    ref_lrs, ref_moms = mk.run_scheduler(mk.torch_backend(), spec)
    np.testing.assert_array_equal(lrs, ref_lrs)
    np.testing.assert_array_equal(moms, ref_moms)


@pytest.mark.torch
@pytest.mark.parametrize("norm_type", [2.0, 1.0, 3.0, math.inf])
@pytest.mark.parametrize("max_norm", [0.5, 1e3])
def test_clip_grad_norm_matches_live_torch(torch: Any, norm_type: float, max_norm: float) -> None:
    params0, grads = _random_data(3)
    ours = [Parameter(p.copy()) for p in params0]
    ref = [torch.nn.Parameter(torch.from_numpy(p.copy())) for p in params0]
    for i in range(len(ours)):
        ours[i].grad = grads[i][0].copy()
        ref[i].grad = torch.from_numpy(grads[i][0].copy())
    total = clip_grad_norm_(ours, max_norm, norm_type=norm_type)
    ref_total = torch.nn.utils.clip_grad_norm_(ref, max_norm, norm_type=norm_type)
    assert total == pytest.approx(float(ref_total), rel=1e-13)
    for p, q in zip(ours, ref, strict=True):
        np.testing.assert_allclose(p.grad, q.grad.numpy(), rtol=1e-13, atol=1e-15)


# -- state dict round trips -------------------------------------------------------------------------
def _set_grads(params: list[Parameter], grads: list[np.ndarray], t: int) -> None:
    for i, p in enumerate(params):
        p.grad = None if (t, i) in mk.NO_GRAD else grads[i][t].copy()


def _checkpoint(opt: Any, tmp_path: Path) -> dict[str, Any]:
    """Through flatten_state, a safetensors file and JSON, as the checkpoint code will."""
    arrays, meta = flatten_state(opt.state_dict())
    path = tmp_path / "optim.safetensors"
    save_file(arrays, str(path), metadata={"optim": json.dumps(meta)})
    with safe_open(str(path), "np") as f:
        meta2 = json.loads(f.metadata()["optim"])
    return unflatten_state(load_file(str(path)), meta2)


@pytest.mark.parametrize("name", sorted(mk.OPT_CONFIGS))
def test_state_dict_round_trip_is_bit_identical(name: str, tmp_path: Path) -> None:
    spec = mk.OPT_CONFIGS[name]
    params0, grads = _golden_data()
    full, full_lrs = mk.run_optimizer(GN, spec, params0, grads)

    params = [Parameter(p.copy()) for p in params0]
    opt = mk.build_optimizer(GN, params, spec)
    sched = mk.build_scheduler(GN, opt, spec.get("sched"))
    for t in range(5):
        _set_grads(params, grads, t)
        opt.step()
        if sched is not None:
            sched.step()
    opt_state = _checkpoint(opt, tmp_path)
    sched_state = json.loads(json.dumps(sched.state_dict())) if sched is not None else None
    saved = [p.data.copy() for p in params]

    params2 = [Parameter(p) for p in saved]
    opt2 = mk.build_optimizer(GN, params2, spec)
    sched2 = mk.build_scheduler(GN, opt2, spec.get("sched"))  # scheduler first, as in torch
    opt2.load_state_dict(opt_state)
    if sched2 is not None:
        sched2.load_state_dict(sched_state)
    for t in range(5, mk.N_STEPS):
        _set_grads(params2, grads, t)
        assert [g["lr"] for g in opt2.param_groups] == list(full_lrs[t])
        opt2.step()
        if sched2 is not None:
            sched2.step()
    for i, p in enumerate(params2):
        np.testing.assert_array_equal(p.data, full[i][-1], err_msg=f"param {i}")


@pytest.mark.parametrize("name", sorted(mk.SCHED_CONFIGS))
def test_scheduler_state_dict_round_trip(name: str) -> None:
    spec = mk.SCHED_CONFIGS[name]
    lrs, moms = mk.run_scheduler(GN, spec)

    opt = mk.build_optimizer(GN, [Parameter(np.zeros(s)) for s in mk.SHAPES], spec)
    sched = mk.build_scheduler(GN, opt, spec["sched"])
    for _ in range(12):
        sched.step()
    opt_state = json.loads(json.dumps(flatten_state(opt.state_dict())[1]))
    sched_state = json.loads(json.dumps(sched.state_dict()))

    opt2 = mk.build_optimizer(GN, [Parameter(np.zeros(s)) for s in mk.SHAPES], spec)
    sched2 = mk.build_scheduler(GN, opt2, spec["sched"])
    opt2.load_state_dict(unflatten_state({}, opt_state))
    sched2.load_state_dict(sched_state)
    assert sched2.last_epoch == sched.last_epoch
    assert sched2.get_last_lr() == list(lrs[12])
    for t in range(13, mk.SCHED_STEPS + 1):
        sched2.step()
        assert sched2.get_last_lr() == list(lrs[t])
        assert [mk.momentum_of(g) for g in opt2.param_groups] == list(moms[t])


def test_state_dict_layout_and_copies() -> None:
    p, q = Parameter(np.ones((2, 3))), Parameter(np.ones(4))
    opt = Adam([{"params": [p]}, {"params": [q], "lr": 0.1}], lr=0.01)
    p.grad = np.full((2, 3), 0.5)
    opt.step()
    sd = opt.state_dict()
    assert [g["params"] for g in sd["param_groups"]] == [[0], [1]]
    assert sd["param_groups"][1]["lr"] == 0.1 and sd["param_groups"][0]["betas"] == (0.9, 0.999)
    assert list(sd["state"]) == [0]  # q had no gradient: no state
    assert sd["state"][0]["step"] == 1 and isinstance(sd["state"][0]["step"], int)
    before = sd["state"][0]["exp_avg"].copy()
    opt.step()
    np.testing.assert_array_equal(sd["state"][0]["exp_avg"], before)  # a copy, not a view
    arrays, meta = flatten_state(sd)
    assert sorted(arrays) == ["state.0.exp_avg", "state.0.exp_avg_sq"]
    assert meta["state"] == {"0": {"step": 1}}
    back = unflatten_state(arrays, json.loads(json.dumps(meta)))
    assert back["param_groups"][0]["betas"] == (0.9, 0.999)
    assert set(back["state"]) == {0}


# -- frozen / missing gradients ----------------------------------------------------------------------
OPTIMIZERS = [
    lambda ps: SGD(ps, lr=0.1, momentum=0.9, weight_decay=0.1),
    lambda ps: Adam(ps, lr=0.1, weight_decay=0.1, amsgrad=True),
    lambda ps: AdamW(ps, lr=0.1, weight_decay=0.1),
    lambda ps: RMSprop(ps, lr=0.1, momentum=0.5, centered=True, weight_decay=0.1),
]


@pytest.mark.parametrize("make", OPTIMIZERS, ids=["sgd", "adam", "adamw", "rmsprop"])
def test_frozen_and_gradless_params_untouched(make: Any) -> None:
    rng = np.random.default_rng(0)
    frozen = Parameter(rng.standard_normal((3, 4)).astype(np.float32), requires_grad=False)
    gradless = Parameter(rng.standard_normal(5))
    live = Parameter(rng.standard_normal(5))
    frozen0, gradless0, live0 = frozen.data.copy(), gradless.data.copy(), live.data.copy()
    opt = make([frozen, gradless, live])
    for _ in range(5):
        frozen.grad = np.ones((3, 4), np.float32)  # even a stray gradient does not move it
        live.grad = rng.standard_normal(5)
        opt.step()
    assert frozen.data.tobytes() == frozen0.tobytes()
    assert gradless.data.tobytes() == gradless0.tobytes()
    assert not np.array_equal(live.data, live0)
    assert frozen not in opt.state and gradless not in opt.state
    assert list(opt.state_dict()["state"]) == [2]


@pytest.mark.parametrize("make", OPTIMIZERS, ids=["sgd", "adam", "adamw", "rmsprop"])
def test_step_is_in_place_and_keeps_dtype_and_grad(make: Any) -> None:
    p = Parameter(np.linspace(-1, 1, 12, dtype=np.float32).reshape(3, 4))
    buf = p.data
    g = np.linspace(1, 2, 12, dtype=np.float32).reshape(3, 4)
    p.grad = g.copy()
    opt = make([p])
    opt.step()
    opt.step()
    assert p.data is buf and p.data.dtype == np.float32
    np.testing.assert_array_equal(p.grad, g)  # gradients are read, never modified
    for v in opt.state[p].values():
        if isinstance(v, np.ndarray):
            assert v.dtype == np.float32 and v.shape == (3, 4)


def test_zero_grad_and_closure() -> None:
    p = Parameter(np.ones(3))
    opt = SGD([p], lr=0.5)
    p.grad = np.ones(3)
    opt.zero_grad(set_to_none=False)
    np.testing.assert_array_equal(p.grad, 0)
    opt.zero_grad()
    assert p.grad is None

    def closure() -> float:
        p.grad = np.full(3, 2.0)
        return 42.0

    assert opt.step(closure) == 42.0
    np.testing.assert_array_equal(p.data, 0.0)


def test_grad_shape_mismatch_names_parameter() -> None:
    p = Parameter(np.ones((2, 2)))
    opt = SGD([("layer.weight", p)], lr=0.1)
    p.grad = np.ones(3)
    with pytest.raises(ValueError, match=r"layer\.weight.*\(3,\)"):
        opt.step()


# -- clipping -------------------------------------------------------------------------------------------
def test_clip_grad_norm() -> None:
    a, b = Parameter(np.zeros(2)), Parameter(np.zeros(3))
    frozen = Parameter(np.zeros(2), requires_grad=False)
    a.grad, b.grad, frozen.grad = np.array([3.0, 0.0]), np.array([0.0, 4.0, 0.0]), np.array([100.0, 0])
    total = clip_grad_norm_([a, b, frozen, Parameter(np.zeros(1))], max_norm=1.0)
    assert total == 5.0
    coef = 1.0 / (5.0 + 1e-6)
    np.testing.assert_array_equal(a.grad, np.array([3.0, 0.0]) * coef)
    np.testing.assert_array_equal(frozen.grad, [100.0, 0])  # frozen parameters are left alone
    a.grad = np.array([0.3, 0.4])
    assert clip_grad_norm_(a, max_norm=1.0) == pytest.approx(0.5)
    np.testing.assert_array_equal(a.grad, [0.3, 0.4])  # below the limit: unchanged
    assert clip_grad_norm_([Parameter(np.zeros(2))], 1.0) == 0.0
    assert clip_grad_norm_([a, b], 1.0, norm_type=math.inf) == pytest.approx(max(0.4, 4 * coef))


def test_clip_grad_norm_nonfinite() -> None:
    a, b = Parameter(np.zeros(2)), Parameter(np.zeros((2, 3)))
    a.grad, b.grad = np.ones(2), np.full((2, 3), np.nan)
    with pytest.raises(NonFiniteGradientError, match=r"parameter\(s\) 1 \(shape \(2, 3\)\)"):
        clip_grad_norm_([a, b], 1.0, error_if_nonfinite=True)
    with pytest.raises(RuntimeError):  # torch users catch RuntimeError
        clip_grad_norm_([a, b], 1.0, error_if_nonfinite=True)
    assert math.isnan(clip_grad_norm_([a, b], 1.0))  # default: no check, as torch


def test_clip_grad_value() -> None:
    a = Parameter(np.zeros(4))
    a.grad = np.array([-3.0, -0.5, 0.5, 3.0])
    clip_grad_value_([a], 1.0)
    np.testing.assert_array_equal(a.grad, [-1.0, -0.5, 0.5, 1.0])


# -- errors -----------------------------------------------------------------------------------------------
def _p() -> list[Parameter]:
    return [Parameter(np.zeros(2))]


@pytest.mark.parametrize(
    ("make", "match"),
    [
        (lambda: SGD(_p(), lr=-0.1), r"learning rate: -0\.1"),
        (lambda: SGD(_p(), lr=0.1, momentum=-0.5), r"momentum value: -0\.5"),
        (lambda: SGD(_p(), lr=0.1, weight_decay=-1.0), r"weight_decay value: -1\.0"),
        (lambda: SGD(_p(), lr=0.1, nesterov=True), r"Nesterov.*momentum=0"),
        (lambda: SGD(_p(), lr=0.1, momentum=0.9, dampening=0.1, nesterov=True), r"dampening=0\.1"),
        (lambda: SGD(_p(), lr=float("nan")), r"learning rate: nan"),
        (lambda: SGD(_p(), lr="0.1"), r"learning rate: '0\.1'"),
        (lambda: Adam(_p(), lr=-1e-3), r"learning rate: -0\.001"),
        (lambda: Adam(_p(), betas=(1.0, 0.999)), r"beta parameter at index 0: 1\.0"),
        (lambda: Adam(_p(), betas=(0.9, -0.1)), r"beta parameter at index 1: -0\.1"),
        (lambda: Adam(_p(), betas=(0.9,)), r"betas: \(0\.9,\)"),
        (lambda: Adam(_p(), eps=-1e-8), r"epsilon value: -1e-08"),
        (lambda: AdamW(_p(), weight_decay=-0.01), r"weight_decay value: -0\.01"),
        (lambda: RMSprop(_p(), alpha=1.5), r"alpha value: 1\.5"),
        (lambda: RMSprop(_p(), momentum=-0.1), r"momentum value: -0\.1"),
        (lambda: SGD([{"params": _p(), "lr": -2.0}], lr=0.1), r"learning rate: -2\.0"),
        (lambda: SGD([], lr=0.1), r"empty parameter list"),
        (lambda: SGD([{"params": []}], lr=0.1), r"empty parameter list"),
    ],
)
def test_bad_hyperparameters(make: Any, match: str) -> None:
    with pytest.raises(ValueError, match=match):
        make()


def test_bad_params() -> None:
    with pytest.raises(TypeError, match="iterable"):
        SGD(Parameter(np.zeros(2)), lr=0.1)
    with pytest.raises(TypeError, match=r"params\[1\] is ndarray"):
        SGD([Parameter(np.zeros(2)), np.zeros(2)], lr=0.1)
    with pytest.raises(TypeError, match="set"):
        SGD({Parameter(np.zeros(2))}, lr=0.1)
    p = Parameter(np.zeros(2))
    with pytest.raises(ValueError, match="more than one parameter group"):
        SGD([{"params": [p]}, {"params": [p]}], lr=0.1)
    with pytest.raises(ValueError, match="twice"):
        SGD([p, p], lr=0.1)


def test_load_state_dict_errors() -> None:
    a, b = Parameter(np.zeros((2, 3))), Parameter(np.zeros(4))
    opt = Adam([a, b])
    a.grad, b.grad = np.ones((2, 3)), np.ones(4)
    opt.step()
    sd = opt.state_dict()

    with pytest.raises(ValueError, match=r"has 1 parameter group\(s\), but the optimizer has 2"):
        Adam([{"params": [Parameter(np.zeros((2, 3)))]}, {"params": [Parameter(np.zeros(4))]}]).load_state_dict(sd)
    with pytest.raises(ValueError, match="has 2 parameter.*has 1"):
        Adam([Parameter(np.zeros((2, 3)))]).load_state_dict(sd)
    with pytest.raises(ValueError, match=r"state\[1\]\['exp_avg'\] has shape \(4,\).*shape \(5,\)"):
        Adam([Parameter(np.zeros((2, 3))), Parameter(np.zeros(5))]).load_state_dict(sd)
    with pytest.raises(ValueError, match=r"missing \['max_exp_avg_sq'\]"):
        Adam([Parameter(np.zeros((2, 3))), Parameter(np.zeros(4))], amsgrad=True).load_state_dict(
            {**sd, "param_groups": [{**sd["param_groups"][0], "amsgrad": True}]}
        )
    sgd = SGD([Parameter(np.zeros((2, 3))), Parameter(np.zeros(4))], lr=0.1, momentum=0.9)
    with pytest.raises(
        ValueError, match=r"missing \['momentum_buffer'\], unexpected \['exp_avg', 'exp_avg_sq', 'step'\]"
    ):
        sgd.load_state_dict({**sd, "param_groups": [{"params": [0, 1], "lr": 0.1, "momentum": 0.9}]})
    with pytest.raises(ValueError, match="Invalid learning rate: -1"):
        opt.load_state_dict({**sd, "param_groups": [{**sd["param_groups"][0], "lr": -1}]})
    with pytest.raises(ValueError, match="not an optimizer state"):
        unflatten_state({}, {"param_groups": [], "state": {}})
    opt.load_state_dict(sd)  # the failed loads left it intact and loadable


# -- scheduler details ----------------------------------------------------------------------------------
def test_scheduler_errors_and_api() -> None:
    opt = SGD(_p(), lr=0.1, momentum=0.9)
    with pytest.raises(ValueError, match="step_size must be a positive integer, got 0"):
        StepLR(opt, 0)
    with pytest.raises(ValueError, match="T_max must be a positive integer"):
        CosineAnnealingLR(opt, T_max=0)
    with pytest.raises(ValueError, match=r"start_factor must be in \(0, 1\], got 0"):
        LinearLR(opt, start_factor=0)
    with pytest.raises(ValueError, match="pct_start"):
        OneCycleLR(opt, max_lr=1.0, total_steps=10, pct_start=1.5)
    with pytest.raises(ValueError, match="total_steps"):
        OneCycleLR(opt, max_lr=1.0)
    with pytest.raises(TypeError, match="not an Optimizer"):
        StepLR(object(), 3)  # type: ignore[arg-type]
    other = SGD(_p(), lr=0.1)
    with pytest.raises(ValueError, match="same optimizer"):
        SequentialLR(opt, [LinearWarmup(opt, 3), StepLR(other, 2)], milestones=[3])
    with pytest.raises(ValueError, match="one milestone fewer"):
        SequentialLR(opt, [LinearWarmup(opt, 3), StepLR(opt, 2)], milestones=[3, 5])

    opt = SGD(_p(), lr=0.1, momentum=0.9)
    sched = OneCycleLR(opt, max_lr=1.0, total_steps=4)
    assert sched.last_epoch == 0 and sched.get_last_lr() == [opt.param_groups[0]["lr"]]
    for _ in range(4):
        sched.step()
    with pytest.raises(ValueError, match="Tried to step 5 times"):
        sched.step()
    with pytest.raises(ValueError, match=r"missing keys \['_last_lr'\]"):
        sched.load_state_dict({k: v for k, v in sched.state_dict().items() if k != "_last_lr"})

    opt = SGD(_p(), lr=1.0)
    warm = LinearWarmup(opt, warmup_steps=4, start_factor=0.25)
    got = [warm.get_last_lr()[0]]
    for _ in range(5):
        warm.step()
        got.append(warm.get_last_lr()[0])
    np.testing.assert_allclose(got, [0.25, 0.4375, 0.625, 0.8125, 1.0, 1.0], rtol=1e-15)
