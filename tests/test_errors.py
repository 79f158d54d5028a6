"""Bad input gets a clear error that names the value received and what was expected."""

from __future__ import annotations

import re
from collections import OrderedDict

import numpy as np
import pytest

import glassnet
from glassnet import functional as F
from glassnet import nn
from glassnet.models import lenet5


def _x(*shape: int) -> np.ndarray:
    return np.random.default_rng(0).standard_normal(shape)


def esc(text: str) -> str:
    """A literal message fragment as a regular expression."""
    return re.escape(text)


# ------------------------------------------------------------------------------------------- input rank

NOT_4D = [(3, 5, 5), (5, 5), (1, 1, 1, 5, 5)]


@pytest.mark.parametrize("shape", NOT_4D)
@pytest.mark.parametrize(
    "name, call",
    [
        ("conv2d", lambda x: F.conv2d(x, np.ones((1, 1, 3, 3)))),
        ("max_pool2d", lambda x: F.max_pool2d(x, 2)),
        ("avg_pool2d", lambda x: F.avg_pool2d(x, 2)),
        ("adaptive_avg_pool2d", lambda x: F.adaptive_avg_pool2d(x, 2)),
        ("global_avg_pool2d", lambda x: F.global_avg_pool2d(x)),
        ("max_pool2d", lambda x: nn.MaxPool2d(2)(x)),
        ("avg_pool2d", lambda x: nn.AvgPool2d(2)(x)),
    ],
)
def test_functional_ops_need_4d_input(name: str, call: object, shape: tuple[int, ...]) -> None:
    with pytest.raises(ValueError, match=esc(f"{name} expected a 4-D input [N, C, H, W], got shape {shape}")):
        call(np.zeros(shape))  # type: ignore[operator]


@pytest.mark.parametrize("shape", NOT_4D)
def test_conv2d_module_needs_4d_input(shape: tuple[int, ...]) -> None:
    conv = nn.Conv2d(3, 16, 3)
    with pytest.raises(ValueError, match=esc(f"Conv2d(3→16) expected a 4-D input [N, C, H, W], got shape {shape}")):
        conv(np.zeros(shape))


def test_conv2d_weight_must_be_4d() -> None:
    with pytest.raises(ValueError, match=esc("expected a 4-D weight [C_out, C_in/groups, kH, kW], got shape (3, 3)")):
        F.conv2d(_x(1, 1, 5, 5), np.ones((3, 3)))


# ---------------------------------------------------------------------------------------------- channels


def test_conv2d_module_channel_mismatch() -> None:
    with pytest.raises(ValueError, match=esc("Conv2d(3→16) expected 3 input channels, got 1")):
        nn.Conv2d(3, 16, 3)(_x(2, 1, 8, 8))


def test_conv2d_module_channel_mismatch_in_output_shape() -> None:
    with pytest.raises(ValueError, match=esc("Conv2d(3→16) expected 3 input channels, got 1")):
        nn.Conv2d(3, 16, 3).output_shape((1, 1, 8, 8))


def test_conv2d_op_channel_mismatch() -> None:
    with pytest.raises(
        ValueError, match=esc("weight [4, 3, 3, 3] expects 3 input channels (C_in/groups = 3, groups = 1), got 1")
    ):
        F.conv2d(_x(1, 1, 5, 5), np.ones((4, 3, 3, 3)))


def test_conv2d_op_grouped_channel_mismatch() -> None:
    with pytest.raises(ValueError, match=esc("expects 4 input channels (C_in/groups = 2, groups = 2), got 6")):
        F.conv2d(_x(1, 6, 5, 5), np.ones((4, 2, 3, 3)), groups=2)


def test_groups_must_divide_input_channels() -> None:
    with pytest.raises(ValueError, match=esc("groups=2 does not divide the 3 input channels")):
        F.conv2d(_x(1, 3, 5, 5), np.ones((4, 1, 3, 3)), groups=2)


def test_groups_must_divide_output_channels() -> None:
    with pytest.raises(ValueError, match=esc("groups=2 does not divide the 3 output channels")):
        F.conv2d(_x(1, 4, 5, 5), np.ones((3, 2, 3, 3)), groups=2)


@pytest.mark.parametrize("cin, cout", [(3, 4), (4, 3)])
def test_conv2d_module_groups_must_divide_channels(cin: int, cout: int) -> None:
    with pytest.raises(ValueError, match=esc(f"groups=2 must divide in_channels={cin} and out_channels={cout}")):
        nn.Conv2d(cin, cout, 3, groups=2)


@pytest.mark.parametrize("groups", [0, -1, 1.5, True])
def test_conv2d_groups_must_be_a_positive_int(groups: object) -> None:
    with pytest.raises(ValueError, match=esc(f"groups must be a positive int, got {groups!r}")):
        F.conv2d(_x(1, 2, 5, 5), np.ones((2, 2, 3, 3)), groups=groups)


@pytest.mark.parametrize("name, kwargs", [("in_channels", {"in_channels": 0}), ("out_channels", {"out_channels": -2})])
def test_conv2d_module_channel_counts_must_be_positive(name: str, kwargs: dict[str, int]) -> None:
    args = {"in_channels": 3, "out_channels": 4, "kernel_size": 3, **kwargs}
    with pytest.raises(ValueError, match=esc(f"Conv2d: {name} must be a positive int, got {kwargs[name]!r}")):
        nn.Conv2d(**args)


# ------------------------------------------------------------------------------------ window does not fit


def test_conv_kernel_larger_than_input() -> None:
    with pytest.raises(
        ValueError,
        match=esc("conv2d: kernel 5×5 is larger than the padded input 4×4 (input 4×4, padding ((0, 0), (0, 0)))"),
    ):
        F.conv2d(_x(1, 1, 4, 4), np.ones((1, 1, 5, 5)))


def test_conv_kernel_larger_than_padded_input_with_asymmetric_padding() -> None:
    with pytest.raises(ValueError, match=esc("kernel 3×6 is larger than the padded input 5×5 (input 4×4")):
        F.conv2d(_x(1, 1, 4, 4), np.ones((1, 1, 3, 6)), padding=((1, 0), (0, 1)))


def test_conv_dilated_kernel_larger_than_input() -> None:
    with pytest.raises(
        ValueError, match=esc("kernel 3×3 (dilation 2×2, spans 5×5) is larger than the padded input 4×4")
    ):
        F.conv2d(_x(1, 1, 4, 4), np.ones((1, 1, 3, 3)), dilation=2)


def test_conv_dilated_kernel_fits_once_padded() -> None:
    assert F.conv2d(_x(1, 1, 4, 4), np.ones((1, 1, 3, 3)), dilation=2, padding=1).shape == (1, 1, 2, 2)


def test_conv2d_module_kernel_larger_than_input() -> None:
    with pytest.raises(ValueError, match=esc("kernel 3×3 is larger than the padded input 2×2 (input 2×2")):
        nn.Conv2d(1, 1, 3)(_x(1, 1, 2, 2))


@pytest.mark.parametrize("op, name", [(F.max_pool2d, "max_pool2d"), (F.avg_pool2d, "avg_pool2d")])
def test_pool_window_larger_than_input(op: object, name: str) -> None:
    with pytest.raises(
        ValueError, match=esc(f"{name}: window 5×5 is larger than the padded input 4×4 (input 4×4, padding 0)")
    ):
        op(_x(1, 1, 4, 4), 5)  # type: ignore[operator]


def test_pool_window_larger_than_padded_input() -> None:
    with pytest.raises(ValueError, match=esc("window 3×5 is larger than the padded input 5×4 (input 3×2, padding 1)")):
        F.avg_pool2d(_x(1, 1, 3, 2), (3, 5), padding=1)


def test_max_pool_dilated_window_larger_than_input() -> None:
    with pytest.raises(
        ValueError, match=esc("max_pool2d: window 2×2 (dilation 3×3, spans 4×4) is larger than the padded input 3×3")
    ):
        F.max_pool2d(_x(1, 1, 3, 3), 2, dilation=3)


def test_pool_module_output_shape_window_larger_than_input() -> None:
    """output_shape is a shape-only trace: the op's error, prefixed with the layer it happened in."""
    with pytest.raises(ValueError, match=esc("MaxPool2d: max_pool2d: window 3×3 is larger than the padded input 2×2")):
        nn.MaxPool2d(3).output_shape((1, 1, 2, 2))
    chain = nn.Sequential(nn.Conv2d(1, 1, 3), nn.MaxPool2d(3))
    with pytest.raises(ValueError, match=esc("layer '1' (MaxPool2d): max_pool2d: window 3×3 is larger")):
        chain.output_shape((1, 1, 4, 4))


# ------------------------------------------------------------------------------------------------ padding

BAD_PADDING = [
    ("full", "got 'full'"),
    (-1, "padding must be >= 0, got -1"),
    ((1, -2), "padding must be >= 0, got (1, -2)"),
    (((1, 2), (0, -1)), "padding must be >= 0, got ((1, 2), (0, -1))"),
    (((1, 2), 3), "got ((1, 2), 3)"),
    ((1, 2, 3), "got (1, 2, 3)"),
    (((1, 2, 3), (1, 1)), "got ((1, 2, 3), (1, 1))"),
    (1.5, "got 1.5"),
    ("SAME", "got 'SAME'"),
]


@pytest.mark.parametrize("padding, message", BAD_PADDING)
def test_conv2d_bad_padding(padding: object, message: str) -> None:
    with pytest.raises(ValueError, match=esc(message)):
        F.conv2d(_x(1, 1, 5, 5), np.ones((1, 1, 3, 3)), padding=padding)


@pytest.mark.parametrize("padding, message", BAD_PADDING)
def test_conv2d_module_rejects_bad_padding_at_construction(padding: object, message: str) -> None:
    with pytest.raises(ValueError, match=esc(message)):
        nn.Conv2d(1, 1, 3, padding=padding)


def test_bad_padding_message_lists_the_accepted_forms() -> None:
    with pytest.raises(ValueError, match=r"int, a pair, per-side pairs.*'same' or 'valid', got 'full'"):
        F.conv2d(_x(1, 1, 5, 5), np.ones((1, 1, 3, 3)), padding="full")


@pytest.mark.parametrize("op, name", [(F.max_pool2d, "max_pool2d"), (F.avg_pool2d, "avg_pool2d")])
@pytest.mark.parametrize("padding", ["same", "valid"])
def test_pools_reject_string_padding(op: object, name: str, padding: str) -> None:
    with pytest.raises(ValueError, match=esc(f"{name}: padding must be an int or a pair, got {padding!r}")):
        op(_x(1, 1, 4, 4), 2, padding=padding)  # type: ignore[operator]


@pytest.mark.parametrize(
    "kernel, padding, dilation, message",
    [
        (2, 2, 1, "padding 2 must be at most half the window (2×2): got 2 > 1 on axis 0"),
        (3, (1, 2), 1, "padding (1, 2) must be at most half the window (3×3): got 2 > 1 on axis 1"),
        (2, 3, 3, "padding 3 must be at most half the window (2×2 (dilation 3×3, spans 4×4)): got 3 > 2 on axis 0"),
    ],
)
def test_pool_padding_at_most_half_the_window(kernel: int, padding: object, dilation: int, message: str) -> None:
    with pytest.raises(ValueError, match=esc(f"max_pool2d: {message}")):
        F.max_pool2d(_x(1, 1, 8, 8), kernel, padding=padding, dilation=dilation)


def test_avg_pool_padding_at_most_half_the_window() -> None:
    with pytest.raises(ValueError, match=esc("avg_pool2d: padding 2 must be at most half the window (3×3)")):
        F.avg_pool2d(_x(1, 1, 8, 8), 3, padding=2)


def test_pool_padding_negative() -> None:
    with pytest.raises(ValueError, match=esc("padding must be >= 0, got -1")):
        F.avg_pool2d(_x(1, 1, 4, 4), 2, padding=-1)


# ------------------------------------------------------------------------ stride, kernel size, dilation


@pytest.mark.parametrize("stride", [0, (1, 0), -2])
def test_stride_zero_or_negative(stride: object) -> None:
    message = esc(f"stride must be >= 1, got {stride!r}")
    with pytest.raises(ValueError, match=message):
        F.conv2d(_x(1, 1, 5, 5), np.ones((1, 1, 3, 3)), stride=stride)
    with pytest.raises(ValueError, match=message):
        nn.Conv2d(1, 1, 3, stride=stride)
    with pytest.raises(ValueError, match=message):
        F.max_pool2d(_x(1, 1, 5, 5), 2, stride=stride)
    with pytest.raises(ValueError, match=message):
        nn.AvgPool2d(2, stride=stride)(_x(1, 1, 5, 5))


def test_dilation_zero() -> None:
    with pytest.raises(ValueError, match=esc("dilation must be >= 1, got 0")):
        F.conv2d(_x(1, 1, 5, 5), np.ones((1, 1, 3, 3)), dilation=0)


@pytest.mark.parametrize("kernel", [0, (2, 0)])
def test_kernel_size_zero(kernel: object) -> None:
    with pytest.raises(ValueError, match=esc(f"kernel_size must be >= 1, got {kernel!r}")):
        nn.MaxPool2d(kernel)
    with pytest.raises(ValueError, match=esc(f"kernel_size must be >= 1, got {kernel!r}")):
        nn.Conv2d(1, 1, kernel)


@pytest.mark.parametrize("value", [2.0, "3", (1, 2, 3), None])
def test_kernel_size_wrong_type(value: object) -> None:
    with pytest.raises(TypeError, match=esc(f"kernel_size must be an int or a pair of ints, got {value!r}")):
        nn.Conv2d(1, 1, value)


# ----------------------------------------------------------------------------------------- bias, linear


def test_conv2d_wrong_bias_shape() -> None:
    with pytest.raises(ValueError, match=esc("conv2d: bias must have shape (4,), got (3,)")):
        F.conv2d(_x(1, 2, 5, 5), np.ones((4, 2, 3, 3)), np.zeros(3))
    with pytest.raises(ValueError, match=esc("conv2d: bias must have shape (4,), got (4, 1)")):
        F.conv2d(_x(1, 2, 5, 5), np.ones((4, 2, 3, 3)), np.zeros((4, 1)))


def test_linear_wrong_bias_shape() -> None:
    with pytest.raises(ValueError, match=esc("linear: bias must have shape (5,), got (4,)")):
        F.linear(_x(2, 3), np.ones((5, 3)), np.zeros(4))


def test_linear_module_feature_mismatch() -> None:
    with pytest.raises(ValueError, match=esc("Linear(10→5) expected input [N, 10], got shape (2, 8)")):
        nn.Linear(10, 5)(_x(2, 8))
    with pytest.raises(ValueError, match=esc("Linear(10→5) expected input [N, 10], got shape (10,)")):
        nn.Linear(10, 5).output_shape((10,))


def test_linear_op_feature_mismatch() -> None:
    with pytest.raises(
        ValueError, match=esc("linear: weight [5, 10] expects 10 input features, got input of shape (2, 8)")
    ):
        F.linear(_x(2, 8), np.ones((5, 10)))


def test_linear_weight_must_be_2d() -> None:
    with pytest.raises(ValueError, match=esc("linear expected a 2-D weight [out, in], got shape (5,)")):
        F.linear(_x(2, 5), np.ones(5))


@pytest.mark.parametrize("features", [0, -3, 2.5])
def test_linear_module_features_must_be_positive_ints(features: object) -> None:
    with pytest.raises(ValueError, match=esc(f"Linear: in_features must be a positive int, got {features!r}")):
        nn.Linear(features, 3)


# ---------------------------------------------------------------------------------------------- losses


def test_cross_entropy_wrong_label_shape() -> None:
    with pytest.raises(ValueError, match=esc("expected 4 integer labels (shape (4,)), got shape (4, 1)")):
        F.cross_entropy(_x(4, 3), np.zeros((4, 1), dtype=int))
    with pytest.raises(ValueError, match=esc("expected 4 integer labels (shape (4,)), got shape (3,)")):
        F.cross_entropy(_x(4, 3), np.zeros(3, dtype=int))


def test_cross_entropy_one_hot_labels_are_refused() -> None:
    with pytest.raises(ValueError, match=esc("expected 2 integer labels (shape (2,)), got shape (2, 3)")):
        F.cross_entropy(_x(2, 3), np.eye(3, dtype=int)[[0, 2]])


def test_cross_entropy_float_labels() -> None:
    with pytest.raises(TypeError, match=esc("cross_entropy expected integer class labels, got dtype float64")):
        F.cross_entropy(_x(3, 4), np.array([0.0, 1.0, 3.0]))


@pytest.mark.parametrize(
    "labels, message", [([0, 5, 1], "got values in [0, 5]"), ([-1, 2, 0], "got values in [-1, 2]")]
)
def test_cross_entropy_labels_out_of_range(labels: list[int], message: str) -> None:
    with pytest.raises(ValueError, match=esc(f"cross_entropy: labels must be in [0, 4], {message}")):
        F.cross_entropy(_x(3, 5), np.array(labels))


def test_cross_entropy_logits_must_be_2d() -> None:
    with pytest.raises(ValueError, match=esc("cross_entropy expected logits [N, K], got shape (2, 3, 4)")):
        F.cross_entropy(_x(2, 3, 4), np.array([0, 1]))


def test_cross_entropy_label_smoothing_range() -> None:
    with pytest.raises(ValueError, match=esc("label_smoothing must be in [0, 1], got 1.5")):
        F.cross_entropy(_x(2, 3), np.array([0, 1]), label_smoothing=1.5)


def test_unknown_reduction() -> None:
    with pytest.raises(ValueError, match=esc("reduction must be one of ('mean', 'sum', 'none'), got 'avg'")):
        F.mse_loss(_x(3), _x(3), reduction="avg")


@pytest.mark.parametrize(
    "op, name",
    [(F.binary_cross_entropy_with_logits, "binary_cross_entropy_with_logits"), (F.mse_loss, "mse_loss")],
)
def test_loss_target_shape_mismatch(op: object, name: str) -> None:
    with pytest.raises(ValueError, match=esc(f"{name}: target shape (3,) != ")):
        op(_x(3, 1), _x(3))  # type: ignore[operator]


@pytest.mark.filterwarnings("ignore::RuntimeWarning")
def test_non_finite_loss_from_nan_logits() -> None:
    logits = _x(4, 3)
    logits[1, 2] = np.nan
    logits[3, 0] = np.nan
    with pytest.raises(
        F.NonFiniteLossError,
        match=esc("cross_entropy: the loss is nan (expected a finite number): logits contain 2 NaN and 0 infinite"),
    ):
        F.cross_entropy(logits, np.array([0, 1, 2, 0]))


@pytest.mark.filterwarnings("ignore::RuntimeWarning")
def test_non_finite_loss_from_infinite_logits() -> None:
    logits = _x(3, 3)
    logits[0, 0] = np.inf
    with pytest.raises(F.NonFiniteLossError, match=r"the loss is nan .*logits contain 0 NaN and 1 infinite values"):
        F.cross_entropy(logits, np.array([0, 1, 2]))


@pytest.mark.filterwarnings("ignore::RuntimeWarning")
def test_non_finite_loss_per_sample_reduction() -> None:
    logits = _x(3, 3)
    logits[2, 1] = -np.inf
    with pytest.raises(F.NonFiniteLossError, match=r"the loss is inf .*logits contain 0 NaN and 1 infinite values"):
        F.cross_entropy(logits, np.array([0, 1, 1]), reduction="none")


@pytest.mark.filterwarnings("ignore::RuntimeWarning")
def test_non_finite_loss_from_overflow_with_finite_inputs() -> None:
    with pytest.raises(
        F.NonFiniteLossError, match=esc("mse_loss: the loss is inf (expected a finite number): the inputs are finite")
    ):
        F.mse_loss(np.array([1e200, 0.0]), np.zeros(2))


@pytest.mark.filterwarnings("ignore::RuntimeWarning")
def test_non_finite_loss_names_the_targets() -> None:
    targets = np.array([[0.0, np.nan]])
    with pytest.raises(F.NonFiniteLossError, match="targets contain 1 NaN and 0 infinite values"):
        F.binary_cross_entropy_with_logits(np.zeros((1, 2)), targets)


def test_non_finite_loss_error_is_a_floating_point_error() -> None:
    assert issubclass(F.NonFiniteLossError, FloatingPointError)


# ------------------------------------------------------------------------------------------------- dtypes


@pytest.mark.parametrize(
    "name, call",
    [
        ("conv2d input", lambda x: F.conv2d(x, np.ones((1, 1, 3, 3)))),
        ("max_pool2d input", lambda x: F.max_pool2d(x, 2)),
        ("relu input", lambda x: F.relu(x)),
        ("Conv2d input", lambda x: nn.Conv2d(1, 1, 3)(x)),
        ("Linear input", lambda x: nn.Linear(4, 2)(x.reshape(4, 4))),
        ("BatchNorm2d input", lambda x: nn.BatchNorm2d(1)(x)),
    ],
)
def test_float16_input_rejected(name: str, call: object) -> None:
    x = np.ones((1, 1, 4, 4), dtype=np.float16)
    with pytest.raises(TypeError, match=esc(f"{name}: dtype float16 is not supported; use float32 or float64")):
        call(x)  # type: ignore[operator]


def test_float16_weight_rejected() -> None:
    with pytest.raises(TypeError, match=esc("conv2d weight: dtype float16 is not supported")):
        F.conv2d(np.ones((1, 1, 4, 4), dtype=np.float32), np.ones((1, 1, 3, 3), dtype=np.float16))


def test_non_numeric_input_rejected() -> None:
    with pytest.raises(TypeError, match=esc("relu input: expected a numeric array, got dtype <U1")):
        F.relu(np.array(["a", "b"]))


def test_set_default_dtype_float16_rejected() -> None:
    with pytest.raises(ValueError, match=esc("default dtype must be float32 or float64, got float16")):
        glassnet.set_default_dtype(np.float16)


def test_module_to_integer_dtype_rejected() -> None:
    with pytest.raises(
        ValueError, match=esc("to(): expected float32 or float64 (or a device, 'cpu' or 'cuda'), got int32")
    ):
        nn.Linear(2, 2).to(np.int32)


def test_module_to_float16_rejected() -> None:
    with pytest.raises(ValueError, match="float16"):
        nn.Conv2d(1, 1, 3).to(np.float16)


# --------------------------------------------------------------------------------------- load_state_dict


def _model() -> nn.Module:
    return nn.Sequential(nn.Conv2d(3, 2, 3, rng=0), nn.BatchNorm2d(2), nn.Flatten(), nn.Linear(8, 4, rng=1))


def test_load_state_dict_lists_every_problem() -> None:
    model = _model()
    state = model.state_dict()
    del state["3.bias"], state["1.running_var"]
    state["extra.weight"] = np.zeros(3)
    state["head"] = np.zeros(1)
    state["0.weight"] = np.zeros((2, 3, 5, 5), dtype=np.float32)
    state["3.weight"] = np.zeros((8, 4), dtype=np.float32)
    before = model.state_dict()
    with pytest.raises(ValueError) as info:
        model.load_state_dict(state)
    message = str(info.value)
    assert "missing keys: ['1.running_var', '3.bias']" in message
    assert "unexpected keys: ['extra.weight', 'head']" in message
    assert "0.weight: shape (2, 3, 5, 5) in the state dict, (2, 3, 3, 3) in the model" in message
    assert "3.weight: shape (8, 4) in the state dict, (4, 8) in the model" in message
    # nothing was loaded
    for key, value in model.state_dict().items():
        np.testing.assert_array_equal(value, before[key])


def test_load_state_dict_wrong_shape_even_when_not_strict() -> None:
    model = _model()
    with pytest.raises(ValueError, match=esc("1.weight: shape (3,) in the state dict, (2,) in the model")):
        model.load_state_dict({"1.weight": np.ones(3, dtype=np.float32)}, strict=False)


def test_load_state_dict_casts_floats_and_refuses_float_for_int() -> None:
    """torch's rule: ``strict`` concerns keys; floating arrays are cast to the model's dtype."""
    model = nn.Linear(2, 2)
    state = {k: v.astype(np.float64) for k, v in model.state_dict().items()}
    model.load_state_dict(state)
    assert model.weight.dtype == np.float32
    np.testing.assert_array_equal(model.weight.data, state["weight"].astype(np.float32))
    bn = nn.BatchNorm2d(2)
    bad = dict(bn.state_dict(), num_batches_tracked=np.zeros((), dtype=np.float32))
    with pytest.raises(
        ValueError, match=esc("num_batches_tracked: dtype float32 in the state dict, int64 in the model")
    ):
        bn.load_state_dict(bad)


def test_load_state_dict_not_strict_tolerates_missing_and_unexpected() -> None:
    model = _model()
    model.load_state_dict({"3.bias": np.full(4, 7.0, dtype=np.float32), "other": np.zeros(2)}, strict=False)
    np.testing.assert_array_equal(model[3].bias.data, np.full(4, 7.0))


# ---------------------------------------------------------------------------------------- output_size


@pytest.mark.parametrize(
    "args, message",
    [
        ((3, 5), "a window of 5 (kernel 5, dilation 1) does not fit in 3 + 2·0 = 3 (input 3, padding 0)"),
        ((5, 3, 1, 0, 3), "a window of 7 (kernel 3, dilation 3) does not fit in 5 + 2·0 = 5"),
        ((2, 7, 1, 2), "a window of 7 (kernel 7, dilation 1) does not fit in 2 + 2·2 = 6 (input 2, padding 2)"),
    ],
)
def test_output_size_window_does_not_fit(args: tuple[int, ...], message: str) -> None:
    with pytest.raises(ValueError, match=esc(f"output_size: {message}")):
        glassnet.output_size(*args)


@pytest.mark.parametrize(
    "kwargs, message",
    [
        ({"stride": 0}, "stride must be an int >= 1, got 0"),
        ({"kernel": 0}, "kernel must be an int >= 1, got 0"),
        ({"padding": -1}, "padding must be an int >= 0, got -1"),
        ({"dilation": 0}, "dilation must be an int >= 1, got 0"),
        ({"n": 0}, "n must be an int >= 1, got 0"),
        ({"n": 7.5}, "n must be an int >= 1, got 7.5"),
        ({"padding": True}, "padding must be an int >= 0, got True"),
    ],
)
def test_output_size_bad_arguments(kwargs: dict[str, object], message: str) -> None:
    args = {"n": 7, "kernel": 3, **kwargs}
    with pytest.raises(ValueError, match=esc(f"output_size: {message}")):
        glassnet.output_size(**args)  # type: ignore[arg-type]


# ------------------------------------------------------------------------------------------- autograd


def test_backward_twice_without_retain_graph() -> None:
    conv = nn.Conv2d(1, 2, 3, rng=0)
    loss = conv(_x(1, 1, 4, 4)).sum()
    loss.backward()
    with pytest.raises(RuntimeError, match="backward through sum a second time.*retain_graph=True"):
        loss.backward()


def test_backward_retain_graph_allows_a_second_pass() -> None:
    conv = nn.Conv2d(1, 2, 3, rng=0)
    loss = conv(_x(1, 1, 4, 4)).sum()
    loss.backward(retain_graph=True)
    first = conv.weight.grad.copy()
    loss.backward()
    np.testing.assert_allclose(conv.weight.grad, 2 * first, rtol=1e-6)


def test_backward_of_a_non_scalar_needs_a_gradient() -> None:
    out = nn.Linear(3, 2, rng=0)(_x(4, 3))
    with pytest.raises(RuntimeError, match=esc("grad can be implied only for a one-element output, got shape (4, 2)")):
        out.backward()
    with pytest.raises(ValueError, match=esc("backward: grad has shape (2, 2), the tensor (4, 2)")):
        out.backward(np.ones((2, 2)))


def test_backward_on_a_tensor_without_grad() -> None:
    with pytest.raises(RuntimeError, match="does not require grad"):
        glassnet.Tensor(np.ones(3)).sum().backward()


def test_integer_tensors_cannot_require_grad() -> None:
    with pytest.raises(TypeError, match="only floating-point tensors can require gradients, got dtype int64"):
        glassnet.Tensor(np.arange(3), requires_grad=True)


def test_module_without_forward() -> None:
    class Empty(nn.Module):
        pass

    with pytest.raises(NotImplementedError, match="Empty must implement forward"):
        Empty()(np.ones(3))


def test_conv2d_backward_wrong_gradient_shape() -> None:
    out, ctx = F.conv2d.forward(_x(1, 1, 4, 4), _x(2, 1, 3, 3))
    with pytest.raises(ValueError, match=esc("conv2d backward: expected grad of shape (1, 2, 2, 2), got (1, 2, 3, 3)")):
        F.conv2d.backward(np.ones((1, 2, 3, 3)), ctx)


# ---------------------------------------------------------------------------------------------- summary


@pytest.mark.parametrize(
    "shape, message",
    [
        ((3, 28, 28), "Conv2d(1→6) expected 1 input channels, got 3"),
        ((1, 8, 8), "conv2d: kernel 5×5 is larger than the padded input 4×4"),
        ((1, 32, 32), "Linear(400→120) expected input [N, 400], got shape (1, 576)"),
        ((28, 28), "Conv2d(1→6) expected a 4-D input [N, C, H, W], got shape (1, 28)"),
        ((1, 1, 1, 28, 28), "summary: input_shape must be [C, H, W] or [N, C, H, W], got (1, 1, 1, 28, 28)"),
    ],
)
def test_summary_wrong_input_shape(shape: tuple[int, ...], message: str) -> None:
    with pytest.raises(ValueError, match=esc(message)):
        glassnet.summary(lenet5(rng=0), shape)


# ----------------------------------------------------------------------------------- other module errors


def test_batchnorm_channel_mismatch() -> None:
    with pytest.raises(
        ValueError, match=esc("BatchNorm2d(3) expected [N, C, H, W] input with C = 3, got shape (2, 4, 3, 3)")
    ):
        nn.BatchNorm2d(3)(_x(2, 4, 3, 3))
    with pytest.raises(ValueError, match=esc("BatchNorm1d(3) expected [N, C] input with C = 3, got shape (2, 3, 1)")):
        nn.BatchNorm1d(3)(_x(2, 3, 1))


def test_batchnorm_training_needs_two_values_per_channel() -> None:
    with pytest.raises(ValueError, match=esc("training needs more than 1 value per channel, got input shape (1, 3)")):
        nn.BatchNorm1d(3)(_x(1, 3))


def test_batchnorm_op_inference_needs_running_stats() -> None:
    with pytest.raises(ValueError, match=esc("inference (training=False) needs running_mean and running_var")):
        F.batch_norm(_x(2, 3), None, None, training=False)


@pytest.mark.parametrize("p", [1.0, -0.1, 1.5])
def test_dropout_probability_range(p: float) -> None:
    with pytest.raises(ValueError, match=esc(f"Dropout: p must be in [0, 1), got {p!r}")):
        nn.Dropout(p)
    with pytest.raises(ValueError, match=esc(f"dropout: p must be in [0, 1), got {p!r}")):
        F.dropout(_x(3), p)


def test_dropout_op_needs_an_explicit_rng() -> None:
    with pytest.raises(ValueError, match=esc("dropout: training with p > 0 needs an explicit rng")):
        F.dropout(_x(3), 0.5)


def test_residual_shape_mismatch() -> None:
    block = nn.Residual(nn.Conv2d(2, 4, 3, padding=1))
    with pytest.raises(
        ValueError, match=esc("Residual: body output (1, 4, 5, 5) and shortcut output (1, 2, 5, 5) differ")
    ):
        block(_x(1, 2, 5, 5))
    with pytest.raises(ValueError, match=esc("body output (1, 4, 5, 5) and shortcut output (1, 2, 5, 5) differ")):
        block.output_shape((1, 2, 5, 5))


def test_concat_spatial_mismatch() -> None:
    block = nn.Concat(nn.Conv2d(1, 2, 3), nn.Identity())
    with pytest.raises(ValueError, match=esc("Concat: branch outputs [(1, 2, 3, 3), (1, 1, 5, 5)] differ outside")):
        block(_x(1, 1, 5, 5))


def test_concat_needs_a_branch() -> None:
    with pytest.raises(ValueError, match="Concat needs at least one branch"):
        nn.Concat()


def test_sequential_rejects_non_modules() -> None:
    with pytest.raises(TypeError, match=esc("Sequential: element 1 must be a Module, got function")):
        nn.Sequential(nn.ReLU(), F.relu_forward)
    with pytest.raises(TypeError, match=esc("Sequential: element head must be a Module, got int")):
        nn.Sequential(OrderedDict(head=3))


def test_unknown_init_scheme() -> None:
    with pytest.raises(ValueError, match=esc("unknown initialisation scheme 'xavier'; expected one of ('default',")):
        nn.Conv2d(1, 1, 3, init="xavier")
    with pytest.raises(ValueError, match=esc("unknown initialisation scheme 'kaiming'")):
        nn.Sequential(nn.Linear(2, 2)).reset_parameters("kaiming", rng=0)


def test_bad_rng() -> None:
    with pytest.raises(TypeError, match=esc("rng must be None, an int seed or a numpy.random.Generator, got 'seed'")):
        nn.Linear(2, 2, rng="seed")


def test_unknown_attribute() -> None:
    with pytest.raises(AttributeError, match=esc("Conv2d has no attribute 'weights'")):
        _ = nn.Conv2d(1, 1, 3).weights


def test_module_subclass_must_call_super_init() -> None:
    class Broken(nn.Module):
        def __init__(self) -> None:
            self.weight = nn.Parameter(np.ones(2))

    with pytest.raises(AttributeError, match=esc("Broken.__init__ must call super().__init__() first")):
        Broken()


def test_lenet_unknown_variant() -> None:
    with pytest.raises(ValueError, match=esc("lenet5: variant must be 'modern' or 'classic', got 'fancy'")):
        lenet5(variant="fancy")
