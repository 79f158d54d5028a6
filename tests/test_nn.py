"""The Module API (parameters, state dicts, modes, freezing, initialisation, dtypes, repr,
no_grad, Sequential) and the structural properties of convolution and pooling
(CONCEPTS A3 translation equivariance, H9 max-pool invariance, D3 strided = subsampled)."""

from __future__ import annotations

import math
from collections import OrderedDict
from typing import Any

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

import glassnet
from glassnet import functional as F
from glassnet import nn
from glassnet.models import alexnet, lenet5


def _rng(seed: int = 0) -> np.random.Generator:
    return np.random.default_rng(seed)


def _net() -> nn.Sequential:
    """A small named network: features (conv, relu, conv without bias, batch norm), flatten, classifier."""
    return nn.Sequential(
        OrderedDict(
            features=nn.Sequential(
                nn.Conv2d(1, 2, 3, rng=0),
                nn.ReLU(),
                nn.Conv2d(2, 3, 3, bias=False, rng=1),
                nn.BatchNorm2d(3),
            ),
            flatten=nn.Flatten(),
            classifier=nn.Linear(3 * 2 * 2, 4, rng=2),
        )
    )


# --------------------------------------------------------------------------------------- names and order

PARAM_NAMES = [
    "features.0.weight",
    "features.0.bias",
    "features.2.weight",
    "features.3.weight",
    "features.3.bias",
    "classifier.weight",
    "classifier.bias",
]


def test_named_parameters_order_and_dotted_names() -> None:
    model = _net()
    named = list(model.named_parameters())
    assert [n for n, _ in named] == PARAM_NAMES
    assert named[0][1] is model.features[0].weight
    assert named[-1][1] is model.classifier.bias
    assert [id(p) for p in model.parameters()] == [id(p) for _, p in named]


def test_parameter_shapes_and_count() -> None:
    model = _net()
    shapes = {n: p.shape for n, p in model.named_parameters()}
    assert shapes == {
        "features.0.weight": (2, 1, 3, 3),
        "features.0.bias": (2,),
        "features.2.weight": (3, 2, 3, 3),
        "features.3.weight": (3,),
        "features.3.bias": (3,),
        "classifier.weight": (4, 12),
        "classifier.bias": (4,),
    }
    assert model.num_parameters() == 18 + 2 + 54 + 3 + 3 + 48 + 4


def test_sequential_children_are_named_by_position() -> None:
    model = nn.Sequential(nn.Conv2d(1, 2, 3, rng=0), nn.ReLU(), nn.Linear(2, 2, rng=0))
    assert [n for n, _ in model.named_parameters()] == ["0.weight", "0.bias", "2.weight", "2.bias"]
    assert [n for n, _ in model.named_modules()] == ["", "0", "1", "2"]


def test_container_parameter_names() -> None:
    res = nn.Residual(nn.Sequential(nn.Conv2d(2, 2, 3, padding=1, rng=0)), shortcut=nn.Conv2d(2, 2, 1, rng=1))
    assert [n for n, _ in res.named_parameters()] == [
        "body.0.weight",
        "body.0.bias",
        "shortcut.weight",
        "shortcut.bias",
    ]
    cat = nn.Concat(nn.Conv2d(2, 1, 1, rng=0), nn.Sequential(nn.ReLU(), nn.Conv2d(2, 3, 1, bias=False, rng=1)))
    assert [n for n, _ in cat.named_parameters()] == ["0.weight", "0.bias", "1.1.weight"]


def test_absent_bias_is_not_a_parameter() -> None:
    conv = nn.Conv2d(1, 2, 3, bias=False, rng=0)
    assert conv.bias is None
    assert [n for n, _ in conv.named_parameters()] == ["weight"]
    assert list(conv.state_dict()) == ["weight"]


# ------------------------------------------------------------------------------------------ state dicts


def test_state_dict_keys_include_batchnorm_buffers() -> None:
    sd = _net().state_dict()
    assert list(sd) == [
        "features.0.weight",
        "features.0.bias",
        "features.2.weight",
        "features.3.weight",
        "features.3.bias",
        "features.3.running_mean",
        "features.3.running_var",
        "features.3.num_batches_tracked",
        "classifier.weight",
        "classifier.bias",
    ]
    np.testing.assert_array_equal(sd["features.3.running_mean"], np.zeros(3))
    np.testing.assert_array_equal(sd["features.3.running_var"], np.ones(3))
    assert sd["features.3.num_batches_tracked"] == 0
    assert sd["features.3.num_batches_tracked"].dtype == np.int64


def test_state_dict_is_a_copy() -> None:
    model = _net()
    sd = model.state_dict()
    for name, p in model.named_parameters():
        assert not np.shares_memory(sd[name], p.data)
    sd["features.0.weight"][...] = 123.0
    sd["features.3.running_mean"][...] = 5.0
    assert not np.any(model.features[0].weight.data == 123.0)
    np.testing.assert_array_equal(model.features[3].running_mean, np.zeros(3))


def test_state_dict_round_trip() -> None:
    src, dst = _net(), _net()
    dst.reset_parameters(rng=99)
    x = _rng(1).standard_normal((2, 1, 6, 6)).astype(np.float32)
    bn = src.features[3]
    bn.running_mean[...] = [0.1, -0.2, 0.3]  # as a training step would
    bn.running_var[...] = [1.5, 0.5, 2.0]
    bn.num_batches_tracked[...] = 3
    src.eval()
    dst.load_state_dict(src.state_dict())
    dst.eval()
    for (n1, a), (n2, b) in zip(src.state_dict().items(), dst.state_dict().items(), strict=True):
        assert n1 == n2
        np.testing.assert_array_equal(a, b)
    np.testing.assert_array_equal(dst(x), src(x))


def test_load_state_dict_copies() -> None:
    model = _net()
    sd = _net().state_dict()
    sd["classifier.bias"][...] = 1.0
    model.load_state_dict(sd)
    sd["classifier.bias"][...] = 2.0
    sd["features.3.running_var"][...] = 7.0
    np.testing.assert_array_equal(model.classifier.bias.data, np.ones(4))
    np.testing.assert_array_equal(model.features[3].running_var, np.ones(3))


def test_num_batches_tracked_stays_a_buffer_after_training_steps() -> None:
    bn = nn.BatchNorm2d(2)
    x = _rng(2).standard_normal((3, 2, 2, 2))
    bn(x)
    bn(x)
    assert bn.state_dict()["num_batches_tracked"] == 2


def test_state_dict_round_trip_after_training() -> None:
    src, dst = _net(), _net()
    src(_rng(1).standard_normal((2, 1, 6, 6)))
    dst.load_state_dict(src.state_dict())


def test_num_batches_tracked_counts_training_forwards_only() -> None:
    bn = nn.BatchNorm2d(2)
    x = _rng(2).standard_normal((3, 2, 2, 2))
    bn(x)
    bn(x)
    bn.eval()
    bn(x)
    assert int(bn.num_batches_tracked) == 2


# ---------------------------------------------------------------------------------------------- gradients


def _forward_backward(model: nn.Module, x: np.ndarray, grad: np.ndarray) -> np.ndarray:
    """Forward, then backward from ``grad`` at the output; returns the input gradient."""
    xt = glassnet.Tensor(x, requires_grad=True)
    model(xt).backward(grad)
    return xt.grad


def test_zero_grad() -> None:
    model = _net()
    _forward_backward(model, _rng(3).standard_normal((2, 1, 6, 6)), np.ones((2, 4)))
    assert all(p.grad is not None for p in model.parameters())
    model.zero_grad()
    assert all(p.grad is None for p in model.parameters())


def test_gradients_accumulate_over_backward_calls() -> None:
    model = nn.Sequential(nn.Conv2d(1, 2, 3, rng=0), nn.Tanh(), nn.Flatten(), nn.Linear(8, 3, rng=1)).to(np.float64)
    rng = _rng(4)
    x1, x2 = rng.standard_normal((2, 1, 4, 4)), rng.standard_normal((2, 1, 4, 4))
    g1, g2 = rng.standard_normal((2, 3)), rng.standard_normal((2, 3))
    single = {}
    for x, g in ((x1, g1), (x2, g2)):
        model.zero_grad()
        _forward_backward(model, x, g)
        single[id(x)] = {n: p.grad.copy() for n, p in model.named_parameters()}
    model.zero_grad()
    _forward_backward(model, x1, g1)
    _forward_backward(model, x2, g2)
    for n, p in model.named_parameters():
        np.testing.assert_allclose(p.grad, single[id(x1)][n] + single[id(x2)][n], rtol=1e-12)
    # the same batch twice: exactly twice the gradient
    model.zero_grad()
    _forward_backward(model, x1, g1)
    _forward_backward(model, x1, g1)
    for n, p in model.named_parameters():
        np.testing.assert_allclose(p.grad, 2 * single[id(x1)][n], rtol=1e-12)


def test_backward_returns_input_gradient_of_input_shape() -> None:
    model = _net()
    dx = _forward_backward(model, _rng(5).standard_normal((2, 1, 6, 6)), np.ones((2, 4)))
    assert dx.shape == (2, 1, 6, 6)


# --------------------------------------------------------------------------------------- train and eval


def test_train_and_eval_propagate_to_every_module() -> None:
    model = nn.Sequential(_net(), nn.Dropout(0.5, rng=0), nn.Residual(nn.Sequential(nn.Dropout(0.1, rng=1))))
    assert all(m.training for m in model.modules())
    assert model.eval() is model
    assert not any(m.training for m in model.modules())
    model.train()
    assert all(m.training for m in model.modules())
    model.train(False)
    assert not any(m.training for m in model.modules())


def test_dropout_is_the_identity_in_eval() -> None:
    drop = nn.Dropout(0.5, rng=0)
    x = _rng(6).standard_normal((4, 50))
    out_train = drop(x)
    assert np.any(out_train == 0)
    drop.eval()
    out = drop(x)
    np.testing.assert_array_equal(out, x)
    xt = glassnet.Tensor(x, requires_grad=True)
    drop(xt).backward(np.ones_like(x))
    np.testing.assert_array_equal(xt.grad, np.ones_like(x))


def test_dropout_in_training_keeps_the_expected_value() -> None:
    drop = nn.Dropout(0.3, rng=1)
    x = glassnet.Tensor(np.ones((200, 200)), requires_grad=True)
    out = drop(x).numpy()
    kept = out != 0
    np.testing.assert_allclose(out[kept], 1 / 0.7)
    assert abs(kept.mean() - 0.7) < 0.01
    assert abs(out.mean() - 1.0) < 0.02
    drop.rng = np.random.default_rng(1)
    drop(x).backward(np.ones((200, 200)))
    np.testing.assert_array_equal(x.grad != 0, kept)


def test_batchnorm_updates_running_stats_in_training() -> None:
    bn = nn.BatchNorm2d(2, momentum=0.1, dtype=np.float64)
    x = _rng(7).standard_normal((4, 2, 3, 3)) * np.array([1.0, 3.0]).reshape(1, 2, 1, 1) + 2.0
    out = bn(x)
    mean = x.mean(axis=(0, 2, 3))
    var_biased = x.var(axis=(0, 2, 3))
    var_unbiased = x.var(axis=(0, 2, 3), ddof=1)
    np.testing.assert_allclose(bn.running_mean, 0.1 * mean)
    np.testing.assert_allclose(bn.running_var, 0.9 + 0.1 * var_unbiased)
    expected = (x - mean.reshape(1, 2, 1, 1)) / np.sqrt(var_biased.reshape(1, 2, 1, 1) + 1e-5)
    np.testing.assert_allclose(out, expected, rtol=1e-10, atol=1e-12)


def test_batchnorm_uses_running_stats_in_eval() -> None:
    bn = nn.BatchNorm2d(2, dtype=np.float64)
    rm, rv = np.array([0.5, -1.0]), np.array([2.0, 0.25])
    w, b = np.array([1.5, -2.0]), np.array([0.1, 0.2])
    bn.running_mean[...] = rm
    bn.running_var[...] = rv
    bn.weight.data[...] = w
    bn.bias.data[...] = b
    bn.eval()
    x = _rng(8).standard_normal((3, 2, 2, 2))
    out = bn(x)
    c = (1, 2, 1, 1)
    expected = (x - rm.reshape(c)) / np.sqrt(rv.reshape(c) + 1e-5) * w.reshape(c) + b.reshape(c)
    np.testing.assert_allclose(out, expected, rtol=1e-12)
    np.testing.assert_array_equal(bn.running_mean, rm)  # eval does not update the statistics
    # one sample is fine in eval mode (no batch statistics needed)
    assert bn(x[:1, :, :1, :1]).shape == (1, 2, 1, 1)


# ------------------------------------------------------------------------------------ freeze / unfreeze


def test_freeze_gives_no_gradients() -> None:
    model = _net().eval()  # a frozen batch norm normalises with running statistics, as in eval
    x, g = _rng(9).standard_normal((2, 1, 6, 6)), np.ones((2, 4))
    dx_before = _forward_backward(model, x, g)
    assert model.freeze() is model
    assert all(p.grad is None for p in model.parameters()), "freeze() forgets accumulated gradients"
    assert model.num_parameters(trainable_only=True) == 0
    assert model.parameters(trainable_only=True) == []
    dx = _forward_backward(model, x, g)
    assert all(p.grad is None for p in model.parameters())
    np.testing.assert_allclose(dx, dx_before, rtol=1e-6)  # the input gradient still flows
    model.unfreeze()
    _forward_backward(model, x, g)
    assert all(p.grad is not None for p in model.parameters())
    assert model.num_parameters(trainable_only=True) == model.num_parameters()


def test_freeze_part_of_a_model() -> None:
    model = _net()
    model.features.freeze()
    _forward_backward(model, _rng(10).standard_normal((2, 1, 6, 6)), np.ones((2, 4)))
    for name, p in model.named_parameters():
        assert (p.grad is not None) == name.startswith("classifier."), name
    assert [n for n, p in model.named_parameters() if p.requires_grad] == ["classifier.weight", "classifier.bias"]


# ---------------------------------------------------------------------------------------- initialisation


def test_reset_parameters_is_reproducible_for_a_seed() -> None:
    a, b = _net(), _net()
    a.reset_parameters("he", rng=123)
    b.reset_parameters("he", rng=123)
    for (n, pa), (_, pb) in zip(a.named_parameters(), b.named_parameters(), strict=True):
        np.testing.assert_array_equal(pa.data, pb.data, err_msg=n)
    b.reset_parameters("he", rng=124)
    assert not np.array_equal(a.features[0].weight.data, b.features[0].weight.data)
    gen1, gen2 = np.random.default_rng(5), np.random.default_rng(5)
    np.testing.assert_array_equal(nn.Linear(4, 3, rng=gen1).weight.data, nn.Linear(4, 3, rng=gen2).weight.data)


def test_construction_is_reproducible_for_a_seed() -> None:
    m1, m2 = lenet5(rng=7), lenet5(rng=7)
    for (_, a), (_, b) in zip(m1.state_dict().items(), m2.state_dict().items(), strict=True):
        np.testing.assert_array_equal(a, b)


def test_skip_init_builds_without_drawing() -> None:
    """Inside skip_init weights and biases are zeros, no random numbers are drawn, and it ends with the block
    (also when the block raises); reset_parameters afterwards initialises as usual."""
    gen = np.random.default_rng(3)
    state = gen.bit_generator.state
    with nn.init.skip_init():
        assert nn.init.init_skipped()
        model = lenet5(rng=gen)
        with pytest.raises(ValueError, match="unknown initialisation scheme"):
            nn.Linear(2, 2, init="nope")
    assert not nn.init.init_skipped()
    assert gen.bit_generator.state == state
    assert all(not p.data.any() for p in model.parameters())
    assert glassnet.summary(model, (1, 28, 28)).total_params == 61_706
    model.reset_parameters(rng=7)  # initialisation apart from construction: the same draws in the same order
    for (n, a), (_, b) in zip(model.state_dict().items(), lenet5(rng=7).state_dict().items(), strict=True):
        np.testing.assert_array_equal(a, b, err_msg=n)
    with pytest.raises(RuntimeError), nn.init.skip_init():
        raise RuntimeError
    assert not nn.init.init_skipped()


def test_reset_parameters_resets_batchnorm() -> None:
    model = _net()
    model(_rng(11).standard_normal((3, 1, 6, 6)))
    model.features[3].weight.data[...] = 5.0
    model.reset_parameters(rng=0)
    bn = model.features[3]
    np.testing.assert_array_equal(bn.weight.data, np.ones(3))
    np.testing.assert_array_equal(bn.running_mean, np.zeros(3))
    np.testing.assert_array_equal(bn.running_var, np.ones(3))


CONV_FAN_IN, CONV_FAN_OUT = 64 * 3 * 3, 128 * 3 * 3


@pytest.mark.parametrize(
    "scheme, std, bound, bias_bound",
    [
        ("default", 1 / math.sqrt(3 * CONV_FAN_IN), 1 / math.sqrt(CONV_FAN_IN), 1 / math.sqrt(CONV_FAN_IN)),
        ("he", math.sqrt(2 / CONV_FAN_IN), None, 0.0),
        ("he_uniform", math.sqrt(2 / CONV_FAN_IN), math.sqrt(6 / CONV_FAN_IN), 0.0),
        ("glorot", math.sqrt(2 / (CONV_FAN_IN + CONV_FAN_OUT)), math.sqrt(6 / (CONV_FAN_IN + CONV_FAN_OUT)), 0.0),
        ("glorot_normal", math.sqrt(2 / (CONV_FAN_IN + CONV_FAN_OUT)), None, 0.0),
    ],
)
def test_init_scheme_statistics_conv(scheme: str, std: float, bound: float | None, bias_bound: float) -> None:
    conv = nn.Conv2d(64, 128, 3, rng=0)
    conv.reset_parameters(scheme, rng=1)
    w, b = conv.weight.data.astype(np.float64), conv.bias.data
    assert abs(w.mean()) < 0.02 * std
    assert w.std() == pytest.approx(std, rel=0.02)
    if bound is not None:  # uniform: within the bound, and reaching close to it
        assert np.abs(w).max() <= bound
        assert np.abs(w).max() > 0.99 * bound
    else:  # normal: some values beyond 3 standard deviations, none absurd
        assert 3 * std < np.abs(w).max() < 6 * std
    if bias_bound == 0.0:
        np.testing.assert_array_equal(b, 0.0)
    else:
        assert np.abs(b).max() <= bias_bound and np.abs(b).max() > 0.8 * bias_bound


@pytest.mark.parametrize("scheme", ["default", "he", "glorot"])
def test_init_scheme_statistics_linear(scheme: str) -> None:
    fan_in, fan_out = 300, 200
    lin = nn.Linear(fan_in, fan_out, init=scheme, rng=3)
    w = lin.weight.data.astype(np.float64)
    if scheme == "default":
        bound = 1 / math.sqrt(fan_in)
        assert bound * 0.99 < np.abs(w).max() <= bound
        assert np.abs(lin.bias.data).max() <= bound
    elif scheme == "he":
        assert w.std() == pytest.approx(math.sqrt(2 / fan_in), rel=0.02)
    else:
        bound = math.sqrt(6 / (fan_in + fan_out))
        assert bound * 0.99 < np.abs(w).max() <= bound
        assert w.std() == pytest.approx(bound / math.sqrt(3), rel=0.02)


def test_grouped_conv_fan_in_uses_channels_per_group() -> None:
    conv = nn.Conv2d(64, 64, 3, groups=64, init="he", rng=0)  # depthwise: fan_in = 1·3·3
    assert conv.weight.shape == (64, 1, 3, 3)
    assert conv.weight.data.std() == pytest.approx(math.sqrt(2 / 9), rel=0.06)


# ------------------------------------------------------------------------------------------------ dtypes


def test_to_float64_and_back() -> None:
    model = _net()
    assert model.features[0].weight.dtype == np.float32
    assert model.to(np.float64) is model
    assert all(p.dtype == np.float64 for p in model.parameters())
    bn = model.features[3]
    assert bn.running_mean.dtype == np.float64 and bn.running_var.dtype == np.float64
    assert bn.num_batches_tracked.dtype == np.int64  # integer buffers are left alone
    x = _rng(12).standard_normal((2, 1, 6, 6))
    out = model(x)
    assert out.dtype == np.float64
    out.backward(np.ones(out.shape))
    assert all(p.grad.dtype == np.float64 for p in model.parameters())
    model.to(np.float32)
    assert all(p.dtype == np.float32 and p.grad.dtype == np.float32 for p in model.parameters())
    assert model(x.astype(np.float32)).dtype == np.float32


def test_float32_model_keeps_float32_for_integer_input() -> None:
    model = nn.Sequential(nn.Conv2d(1, 2, 3, rng=0), nn.ReLU())
    assert model(np.ones((1, 1, 4, 4), dtype=np.int64)).dtype == np.float32


# -------------------------------------------------------------------------------------------------- repr


@pytest.mark.parametrize(
    "module, text",
    [
        (nn.Conv2d(3, 16, 3, padding=1, rng=0), "Conv2d(3, 16, kernel_size=(3, 3), padding=1)"),
        (nn.Conv2d(3, 16, 3, rng=0), "Conv2d(3, 16, kernel_size=(3, 3))"),
        (nn.Conv2d(3, 96, 11, stride=4, rng=0), "Conv2d(3, 96, kernel_size=(11, 11), stride=(4, 4))"),
        (
            nn.Conv2d(4, 8, (1, 3), stride=2, dilation=(2, 1), groups=2, bias=False, flip=True, rng=0),
            "Conv2d(4, 8, kernel_size=(1, 3), stride=(2, 2), dilation=(2, 1), groups=2, bias=False, flip=True)",
        ),
        (nn.Conv2d(1, 1, 2, padding="same", rng=0), "Conv2d(1, 1, kernel_size=(2, 2), padding='same')"),
        (nn.MaxPool2d(2), "MaxPool2d(kernel_size=2)"),
        (nn.MaxPool2d(3, 2), "MaxPool2d(kernel_size=3, stride=2)"),
        (
            nn.MaxPool2d(3, 2, padding=1, ceil_mode=True),
            "MaxPool2d(kernel_size=3, stride=2, padding=1, ceil_mode=True)",
        ),
        (nn.AvgPool2d(2, count_include_pad=False), "AvgPool2d(kernel_size=2, count_include_pad=False)"),
        (nn.Linear(4, 2, rng=0), "Linear(in_features=4, out_features=2)"),
        (nn.Linear(4, 2, bias=False, rng=0), "Linear(in_features=4, out_features=2, bias=False)"),
        (nn.BatchNorm2d(8), "BatchNorm2d(8)"),
        (nn.BatchNorm1d(8, momentum=0.01, affine=False), "BatchNorm1d(8, momentum=0.01, affine=False)"),
        (nn.LeakyReLU(), "LeakyReLU()"),
        (nn.LeakyReLU(0.2), "LeakyReLU(negative_slope=0.2)"),
        (nn.ReLU(), "ReLU()"),
        (nn.Flatten(), "Flatten()"),
        (nn.LocalResponseNorm(5, k=2.0), "LocalResponseNorm(5, k=2.0)"),
    ],
)
def test_repr_shows_non_default_arguments_only(module: nn.Module, text: str) -> None:
    assert repr(module) == text


def test_repr_of_containers() -> None:
    model = nn.Sequential(
        OrderedDict(features=nn.Sequential(nn.Conv2d(1, 2, 3, rng=0), nn.ReLU()), head=nn.Linear(2, 1, rng=0))
    )
    assert repr(model) == (
        "Sequential(\n"
        "  (features): Sequential(\n"
        "    (0): Conv2d(1, 2, kernel_size=(3, 3))\n"
        "    (1): ReLU()\n"
        "  )\n"
        "  (head): Linear(in_features=2, out_features=1)\n"
        ")"
    )


def test_parameter_repr() -> None:
    conv = nn.Conv2d(1, 2, 3, rng=0)
    assert repr(conv.weight) == "Parameter(shape=(2, 1, 3, 3), dtype=float32)"
    conv.freeze()
    assert repr(conv.weight) == "Parameter(shape=(2, 1, 3, 3), dtype=float32, frozen)"


# ---------------------------------------------------------------------------------------------- no_grad


def test_no_grad_records_no_graph() -> None:
    model = nn.Sequential(
        _net(),
        nn.Residual(nn.Sequential(nn.Linear(4, 4, rng=0), nn.ReLU()), activation=nn.Tanh()),
        nn.Concat(nn.Identity(), nn.Sigmoid()),
    )
    x = _rng(13).standard_normal((2, 1, 6, 6)).astype(np.float32)
    model.eval()  # batch norm in eval: no statistics change between the calls
    with glassnet.no_grad():
        out = model(x)
    assert out.grad_fn is None and not out.requires_grad
    with pytest.raises(RuntimeError, match="does not require grad"):
        out.sum().backward()
    with_grad = model(x)
    assert with_grad.grad_fn is not None
    np.testing.assert_array_equal(with_grad, out)
    assert nn.no_grad is glassnet.no_grad


def test_no_grad_restores_the_mode_after_an_exception() -> None:
    conv = nn.Conv2d(1, 1, 3, rng=0)
    with pytest.raises(ValueError), glassnet.no_grad():
        conv(np.zeros((1, 2, 4, 4)))
    assert glassnet.is_grad_enabled()
    assert conv(np.zeros((1, 1, 4, 4))).grad_fn is not None


def test_enable_grad_inside_no_grad_and_as_decorator() -> None:
    lin = nn.Linear(2, 2, rng=0)
    with glassnet.no_grad():
        with glassnet.enable_grad():
            assert lin(np.ones((1, 2))).requires_grad
        assert not lin(np.ones((1, 2))).requires_grad

    @glassnet.no_grad()
    def infer(x: np.ndarray) -> Any:
        return lin(x)

    assert not infer(np.ones((1, 2))).requires_grad
    assert glassnet.is_grad_enabled()


# ------------------------------------------------------------------------------------------- Sequential


def test_sequential_indexing_slicing_len_append() -> None:
    layers = [nn.Conv2d(1, 2, 3, rng=0), nn.ReLU(), nn.MaxPool2d(2), nn.Flatten()]
    seq = nn.Sequential(*layers)
    assert len(seq) == 4
    assert seq[0] is layers[0] and seq[-1] is layers[-1] and seq[2] is layers[2]
    assert seq["1"] is layers[1]
    assert list(seq) == layers
    head = seq[:2]
    assert isinstance(head, nn.Sequential) and len(head) == 2
    assert head[0] is layers[0] and head[1] is layers[1]
    assert list(seq[1::2]) == [layers[1], layers[3]]
    assert len(seq[10:]) == 0
    with pytest.raises(IndexError):
        seq[4]
    lin = nn.Linear(2, 3, rng=0)
    assert seq.append(lin) is seq
    assert len(seq) == 5 and seq[4] is lin and seq["4"] is lin
    assert [n for n, _ in seq.named_parameters()] == ["0.weight", "0.bias", "4.weight", "4.bias"]
    x = _rng(14).standard_normal((3, 1, 4, 4))
    np.testing.assert_allclose(seq(x), lin(layers[3](layers[2](layers[1](layers[0](x))))))


def test_sequential_setitem_replaces_in_place() -> None:
    seq = nn.Sequential(nn.ReLU(), nn.Tanh(), nn.Sigmoid())
    new = nn.LeakyReLU()
    seq[1] = new
    assert seq[1] is new and len(seq) == 3
    assert [n for n, _ in seq.named_modules()] == ["", "0", "1", "2"]


def test_sequential_slice_runs_like_the_chain() -> None:
    model = lenet5(rng=0)
    x = _rng(15).standard_normal((2, 1, 28, 28)).astype(np.float32)
    np.testing.assert_allclose(model[6:](model[:6](x)), model(x), rtol=1e-6)


def test_append_after_slicing_keeps_every_module() -> None:
    seq = nn.Sequential(nn.ReLU(), nn.Tanh(), nn.Sigmoid())[1:]
    seq.append(nn.Identity())
    assert len(seq) == 3


# ------------------------------------------------------------------------------------------ output shape

SHAPE_CASES = [
    (lambda: nn.Conv2d(2, 3, 3, rng=0), (2, 2, 7, 6)),
    (lambda: nn.Conv2d(2, 4, (2, 3), stride=(2, 1), padding=((1, 0), (2, 1)), dilation=(1, 2), rng=0), (1, 2, 7, 8)),
    (lambda: nn.Conv2d(2, 2, 4, stride=2, padding="same", groups=2, rng=0), (1, 2, 7, 9)),
    (lambda: nn.MaxPool2d(3, 2, padding=1, ceil_mode=True), (1, 2, 8, 7)),
    (lambda: nn.MaxPool2d(2, 1, dilation=2), (1, 1, 6, 5)),
    (lambda: nn.AvgPool2d(3, 2, ceil_mode=True), (2, 1, 6, 8)),
    (lambda: nn.AdaptiveAvgPool2d((3, None)), (1, 2, 7, 5)),
    (lambda: nn.Flatten(), (2, 3, 4, 5)),
    (lambda: nn.Linear(5, 3, rng=0), (2, 4, 5)),
    (
        lambda: nn.Residual(nn.Conv2d(2, 4, 3, stride=2, padding=1, rng=0), nn.Conv2d(2, 4, 1, stride=2, rng=1)),
        (1, 2, 7, 7),
    ),
    (lambda: nn.Concat(nn.Conv2d(2, 3, 1, rng=0), nn.MaxPool2d(3, 1, padding=1)), (1, 2, 5, 5)),
    (lambda: lenet5(rng=0), (3, 1, 28, 28)),
    (lambda: lenet5(variant="classic", num_classes=7, in_channels=3, rng=0), (2, 3, 28, 28)),
]


@pytest.mark.parametrize("factory, shape", SHAPE_CASES)
def test_output_shape_without_data_equals_forward(factory: Any, shape: tuple[int, ...]) -> None:
    model = factory()
    out = model(_rng(16).standard_normal(shape).astype(np.float32))
    assert model.output_shape(shape) == out.shape


@pytest.fixture(scope="module")
def alexnet_model() -> nn.Module:
    return alexnet(rng=0).eval()


@pytest.mark.parametrize("shape", [(1, 3, 227, 227), (1, 3, 99, 131)])
def test_alexnet_output_shape_equals_forward(alexnet_model: nn.Module, shape: tuple[int, ...]) -> None:
    x = _rng(17).standard_normal(shape).astype(np.float32)
    with nn.no_grad():
        out = alexnet_model(x)
    assert alexnet_model.output_shape(shape) == out.shape == (1, 1000)
    assert alexnet_model.features.output_shape(shape) == alexnet_model.features(x).shape


# --------------------------------------------------------------------------- A3: translation equivariance


@settings(max_examples=20, deadline=None)
@given(
    k=st.tuples(st.integers(1, 4), st.integers(1, 4)),
    shift=st.tuples(st.integers(-3, 3), st.integers(-3, 3)),
    padding=st.integers(0, 1),
    seed=st.integers(0, 2**16),
)
def test_conv_translation_equivariance(k: tuple[int, int], shift: tuple[int, int], padding: int, seed: int) -> None:
    """Shifting the input shifts the feature map by the same amount (the same kernel is applied everywhere)."""
    rng = _rng(seed)
    x = np.zeros((1, 2, 16, 16))
    x[:, :, 5:10, 6:10] = rng.standard_normal((1, 2, 5, 4))  # an object away from the borders
    w, b = rng.standard_normal((3, 2, *k)), rng.standard_normal(3)
    out = F.conv2d(x, w, b, padding=padding)
    out_shifted = F.conv2d(np.roll(x, shift, axis=(2, 3)), w, b, padding=padding)
    np.testing.assert_allclose(out_shifted, np.roll(out, shift, axis=(2, 3)), rtol=1e-12, atol=1e-12)


@settings(max_examples=10, deadline=None)
@given(shift=st.tuples(st.integers(-2, 2), st.integers(-2, 2)), seed=st.integers(0, 2**16))
def test_strided_conv_equivariant_to_shifts_by_the_stride(shift: tuple[int, int], seed: int) -> None:
    rng = _rng(seed)
    x = np.zeros((1, 1, 18, 18))
    x[:, :, 7:11, 7:11] = rng.standard_normal((1, 1, 4, 4))
    w = rng.standard_normal((2, 1, 3, 3))
    out = F.conv2d(x, w, stride=2)
    out_shifted = F.conv2d(np.roll(x, (2 * shift[0], 2 * shift[1]), axis=(2, 3)), w, stride=2)
    np.testing.assert_allclose(out_shifted, np.roll(out, shift, axis=(2, 3)), rtol=1e-12, atol=1e-12)


def test_conv_module_detects_a_pattern_wherever_it_is() -> None:
    """The response to a pattern peaks where the pattern is, wherever it is placed (CONCEPTS A3)."""
    pattern = np.array([[1.0, 0.0, 1.0], [0.0, 1.0, 0.0], [1.0, 0.0, 1.0]])
    conv = nn.Conv2d(1, 1, 3, bias=False, rng=0)
    conv.weight.data[...] = pattern - 0.5
    for top, left in [(0, 0), (4, 7), (9, 2)]:
        x = np.zeros((1, 1, 12, 12), dtype=np.float32)
        x[0, 0, top : top + 3, left : left + 3] = pattern
        out = conv(x)[0, 0]
        assert np.unravel_index(out.argmax(), out.shape) == (top, left)


# ------------------------------------------------------------------------------- H9: max-pool invariance


@settings(max_examples=25, deadline=None)
@given(k=st.integers(2, 3), seed=st.integers(0, 2**16))
def test_max_pool_invariant_to_the_max_moving_inside_its_window(k: int, seed: int) -> None:
    rng = _rng(seed)
    n_win = 3
    base = rng.uniform(0, 1, (1, 2, n_win * k, n_win * k))
    x1, x2 = base.copy(), base.copy()
    for c in range(2):
        for wy in range(n_win):
            for wx in range(n_win):
                peak = 2.0 + rng.random()
                p1, p2 = rng.integers(0, k * k, 2)
                x1[0, c, wy * k + p1 // k, wx * k + p1 % k] = peak
                x2[0, c, wy * k + p2 // k, wx * k + p2 % k] = peak
    out1, out2 = F.max_pool2d(x1, k), F.max_pool2d(x2, k)
    np.testing.assert_array_equal(out1, out2)
    assert np.all(out1 >= 2.0)


def test_max_pool_changes_when_the_max_leaves_its_window() -> None:
    x = np.zeros((1, 1, 4, 4))
    x[0, 0, 1, 1] = 9.0
    moved = np.roll(x, 1, axis=3)  # from the top-left window into the top-right one
    assert F.max_pool2d(x, 2)[0, 0, 0, 0] == 9.0
    assert F.max_pool2d(moved, 2)[0, 0, 0, 0] == 0.0 and F.max_pool2d(moved, 2)[0, 0, 0, 1] == 9.0


# ----------------------------------------------------------------------- D3: strided conv = subsampled


@settings(max_examples=30, deadline=None)
@given(
    k=st.tuples(st.integers(1, 4), st.integers(1, 4)),
    stride=st.tuples(st.integers(1, 4), st.integers(1, 4)),
    padding=st.tuples(st.tuples(st.integers(0, 2), st.integers(0, 2)), st.tuples(st.integers(0, 2), st.integers(0, 2))),
    dilation=st.tuples(st.integers(1, 2), st.integers(1, 2)),
    size=st.tuples(st.integers(7, 12), st.integers(7, 12)),
    seed=st.integers(0, 2**16),
)
def test_strided_conv_equals_stride_one_subsampled(
    k: tuple[int, int],
    stride: tuple[int, int],
    padding: Any,
    dilation: tuple[int, int],
    size: tuple[int, int],
    seed: int,
) -> None:
    rng = _rng(seed)
    x, w, b = rng.standard_normal((2, 2, *size)), rng.standard_normal((3, 2, *k)), rng.standard_normal(3)
    strided = F.conv2d(x, w, b, stride=stride, padding=padding, dilation=dilation)
    dense = F.conv2d(x, w, b, stride=1, padding=padding, dilation=dilation)
    np.testing.assert_allclose(strided, dense[:, :, :: stride[0], :: stride[1]], rtol=1e-12, atol=1e-12)


def test_strided_conv_module_equals_subsampled() -> None:
    conv_s2 = nn.Conv2d(1, 2, 3, stride=2, padding=1, rng=0)
    conv_s1 = nn.Conv2d(1, 2, 3, stride=1, padding=1, rng=0)
    x = _rng(18).standard_normal((1, 1, 9, 9)).astype(np.float32)
    np.testing.assert_allclose(conv_s2(x), conv_s1(x)[:, :, ::2, ::2], rtol=1e-5, atol=1e-6)


def test_frozen_batchnorm_uses_and_keeps_running_statistics() -> None:
    bn = nn.BatchNorm2d(2, dtype=np.float64)
    bn.running_mean[...] = [0.5, -1.0]
    bn.running_var[...] = [2.0, 0.25]
    x = _rng(40).standard_normal((4, 2, 3, 3))
    bn.freeze().train()
    out = bn(x)
    expected = (x - bn.running_mean.reshape(1, 2, 1, 1)) / np.sqrt(bn.running_var.reshape(1, 2, 1, 1) + 1e-5)
    np.testing.assert_allclose(out, expected, rtol=1e-12)
    np.testing.assert_array_equal(bn.running_mean, [0.5, -1.0])
    assert int(bn.num_batches_tracked) == 0
    bn.unfreeze()
    bn(x)
    assert int(bn.num_batches_tracked) == 1 and bn.running_mean[0] != 0.5
