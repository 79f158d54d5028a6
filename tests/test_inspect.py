"""``glassnet.output_size``, ``glassnet.summary`` and ``glassnet.receptive_field``.

AlexNet's table (CONCEPTS K, lecture values with every bias counted), the lectures'
output-size examples, and receptive fields: the analytic r ← r + d·(k−1)·jump,
jump ← jump·s (CONCEPTS L1, L3) compared with brute force, i.e. with the set of input
pixels whose perturbation changes one output unit.
"""

from __future__ import annotations

from typing import Any

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

import glassnet
from glassnet import nn
from glassnet.models import alexnet, lenet5

# ----------------------------------------------------------------------------------------- output_size


@pytest.mark.parametrize(
    "args, kwargs, expected",
    [
        ((7, 3), {}, 5),
        ((7, 3), {"stride": 2}, 3),
        ((7, 3), {"padding": 1}, 7),
        ((227, 11), {"stride": 4}, 55),
        ((55, 3), {"stride": 2}, 27),
        ((27, 5), {"padding": 2}, 27),
        ((27, 3), {"stride": 2}, 13),
        ((13, 3), {"stride": 2}, 6),
        ((32, 5), {}, 28),
        ((28, 2), {"stride": 2}, 14),
        ((5, 5), {}, 1),
        ((7, 3), {"dilation": 2}, 3),
        ((7, 3), {"dilation": 3}, 1),
        ((1, 1), {}, 1),
    ],
)
def test_output_size_examples(args: tuple[int, ...], kwargs: dict[str, int], expected: int) -> None:
    assert glassnet.output_size(*args, **kwargs) == expected


@pytest.mark.parametrize(
    "n, k, s, p, floor_out, ceil_out",
    [
        (5, 2, 2, 0, 2, 3),  # the partial last window is kept in ceil mode
        (6, 2, 2, 0, 3, 3),  # exact fit: no difference
        (6, 3, 2, 0, 2, 3),
        (7, 3, 2, 0, 3, 3),
        (6, 3, 2, 1, 3, 4),
        (5, 2, 2, 1, 3, 3),  # ceil would give 4, but that window would start in the right padding
        (4, 3, 3, 1, 2, 2),  # likewise (ceil 3, last start 6 >= 4 + 1)
        (112, 3, 2, 0, 55, 56),  # GoogLeNet-style pooling
    ],
)
def test_output_size_ceil_mode(n: int, k: int, s: int, p: int, floor_out: int, ceil_out: int) -> None:
    assert glassnet.output_size(n, k, s, p) == floor_out
    assert glassnet.output_size(n, k, s, p, ceil_mode=True) == ceil_out


def test_output_size_ceil_mode_matches_max_pool() -> None:
    x = np.zeros((1, 1, 5, 6))
    assert glassnet.nn.MaxPool2d(2, ceil_mode=True)(x).shape[2:] == (3, 3)
    assert glassnet.nn.MaxPool2d(2)(x).shape[2:] == (2, 3)


@pytest.mark.parametrize("args", [(2, 3), (3, 5), (5, 3, 1, 0, 3), (10, 20, 2, 4)])
def test_output_size_window_does_not_fit(args: tuple[int, ...]) -> None:
    with pytest.raises(ValueError, match="does not fit"):
        glassnet.output_size(*args)


@pytest.mark.parametrize("kwargs", [{"stride": 0}, {"kernel": 0}, {"padding": -1}, {"dilation": 0}, {"n": 2.0}])
def test_output_size_rejects_bad_arguments(kwargs: dict[str, Any]) -> None:
    with pytest.raises(ValueError, match="output_size: "):
        glassnet.output_size(**{"n": 7, "kernel": 3, **kwargs})


@settings(max_examples=200, deadline=None)
@given(
    n=st.integers(1, 30),
    k=st.integers(1, 6),
    s=st.integers(1, 5),
    p=st.integers(0, 4),
    d=st.integers(1, 3),
    ceil_mode=st.booleans(),
)
def test_output_size_equals_counting_window_positions(n: int, k: int, s: int, p: int, d: int, ceil_mode: bool) -> None:
    """Count the window starts one by one: floor mode keeps windows wholly inside the padded input;
    ceil mode also keeps one partial window at the end unless it would start inside the right padding."""
    span = d * (k - 1) + 1
    if ceil_mode and p > span // 2:
        p = span // 2  # pools only allow padding up to half the window
    padded = n + 2 * p
    if span > padded:
        with pytest.raises(ValueError):
            glassnet.output_size(n, k, s, p, d, ceil_mode)
        return
    starts = range(0, padded, s)
    if ceil_mode:
        count = sum(1 for st_ in starts if st_ < padded - span + s and st_ < n + p)
    else:
        count = sum(1 for st_ in starts if st_ + span <= padded)
    assert glassnet.output_size(n, k, s, p, d, ceil_mode) == count


# --------------------------------------------------------------------------------------- AlexNet summary

ALEXNET_CONV_PARAMS = [34_944, 614_656, 885_120, 1_327_488, 884_992]
ALEXNET_TOTAL = 62_378_344


@pytest.fixture(scope="module")
def alex() -> nn.Module:
    return alexnet(rng=0)


@pytest.fixture(scope="module")
def alex_summary(alex: nn.Module) -> glassnet.Summary:
    return glassnet.summary(alex, (3, 227, 227))


def test_alexnet_conv_parameters(alex_summary: glassnet.Summary) -> None:
    convs = [r for r in alex_summary.rows if r.kind == "Conv2d"]
    assert [r.params for r in convs] == ALEXNET_CONV_PARAMS
    assert [r.name for r in convs] == ["features.0", "features.4", "features.8", "features.10", "features.12"]


def test_alexnet_dense_parameters(alex_summary: glassnet.Summary) -> None:
    dense = [r.params for r in alex_summary.rows if r.kind == "Linear"]
    assert dense == [37_752_832, 16_781_312, 4_097_000]
    # the lecture's total leaves out the 4096 + 4096 + 1000 dense biases
    assert ALEXNET_TOTAL - (4096 + 4096 + 1000) == 62_369_152


def test_alexnet_totals(alex: nn.Module, alex_summary: glassnet.Summary) -> None:
    assert alex_summary.total_params == ALEXNET_TOTAL
    assert alex_summary.trainable_params == ALEXNET_TOTAL
    assert alex.num_parameters() == ALEXNET_TOTAL
    assert all(r.params == 0 for r in alex_summary.rows if r.kind not in ("Conv2d", "Linear"))


def test_alexnet_frozen_summary(alex: nn.Module) -> None:
    alex.freeze()
    try:
        frozen = glassnet.summary(alex, (3, 227, 227))
    finally:
        alex.unfreeze()
    assert frozen.total_params == ALEXNET_TOTAL
    assert frozen.trainable_params == 0
    assert "trainable parameters: 0  (frozen: 62,378,344)" in str(frozen)
    alex.features.freeze()
    try:
        partial = glassnet.summary(alex, (3, 227, 227))
    finally:
        alex.unfreeze()
    assert partial.trainable_params == 37_752_832 + 16_781_312 + 4_097_000


def test_alexnet_output_shapes(alex_summary: glassnet.Summary) -> None:
    shapes = {r.name: r.output_shape[1:] for r in alex_summary.rows}
    assert shapes["features.0"] == (96, 55, 55)
    assert shapes["features.2"] == (96, 27, 27)
    assert shapes["features.3"] == (96, 27, 27)  # LRN keeps the shape
    assert shapes["features.4"] == (256, 27, 27)
    assert shapes["features.6"] == (256, 13, 13)
    assert shapes["features.8"] == (384, 13, 13)
    assert shapes["features.10"] == (384, 13, 13)
    assert shapes["features.12"] == (256, 13, 13)
    assert shapes["features.14"] == (256, 6, 6)
    assert shapes["avgpool"] == (256, 6, 6)
    assert shapes["flatten"] == (9216,)
    assert shapes["classifier.1"] == (4096,)
    assert shapes["classifier.4"] == (4096,)
    assert shapes["classifier.6"] == (1000,)
    assert alex_summary.output_shape == (1, 1000)


def test_alexnet_macs(alex_summary: glassnet.Summary) -> None:
    rows = {r.name: r for r in alex_summary.rows}
    assert rows["features.0"].macs == 55 * 55 * 96 * (11 * 11 * 3) == 105_415_200
    assert rows["features.4"].macs == 27 * 27 * 256 * (5 * 5 * 96)
    assert rows["features.8"].macs == 13 * 13 * 384 * (3 * 3 * 256)
    assert rows["classifier.1"].macs == 9216 * 4096
    assert rows["classifier.6"].macs == 4096 * 1000
    assert alex_summary.total_macs == sum(r.macs for r in alex_summary.rows)
    assert all(r.macs == 0 for r in alex_summary.rows if r.kind not in ("Conv2d", "Linear"))


def test_summary_counts_macs_per_image(alex: nn.Module, alex_summary: glassnet.Summary) -> None:
    batched = glassnet.summary(alex, (8, 3, 227, 227))
    assert batched.total_macs == alex_summary.total_macs
    assert batched.input_shape == (1, 3, 227, 227)


def test_alexnet_receptive_fields(alex: nn.Module, alex_summary: glassnet.Summary) -> None:
    rows = {r.name: r for r in alex_summary.rows}
    assert (rows["features.0"].rf, rows["features.0"].jump) == ((11, 11), (4, 4))
    assert (rows["features.2"].rf, rows["features.2"].jump) == ((19, 19), (8, 8))
    assert rows["features.4"].rf == (19 + 4 * 8, 19 + 4 * 8)
    assert (rows["features.14"].rf, rows["features.14"].jump) == ((195, 195), (32, 32))
    assert rows["flatten"].rf == (227, 227)  # every dense unit sees the whole image
    assert glassnet.receptive_field(alex.features, (3, 227, 227)) == ((195, 195), (32, 32))


def test_alexnet_summary_text(alex_summary: glassnet.Summary) -> None:
    text = str(alex_summary)
    assert "total parameters:     62,378,344" in text
    assert "trainable parameters: 62,378,344" in text
    assert f"multiply-accumulates: {alex_summary.total_macs:,} per image" in text
    assert "frozen" not in text
    conv1 = next(line for line in text.splitlines() if line.startswith("features.0 "))
    for cell in ("Conv2d", "96×55×55", "34,944", "105,415,200", "11×11"):
        assert cell in conv1
    assert text.splitlines()[0].startswith("AlexNet  input 3×227×227")
    assert repr(alex_summary) == text
    table = alex_summary.table()
    assert table[0] == ["layer", "type", "output shape", "params", "MACs", "RF", "jump"]
    assert len(table) == len(alex_summary.rows) + 1


def test_lenet5_summary() -> None:
    s = glassnet.summary(lenet5(rng=0), (1, 28, 28))
    assert s.total_params == 61_706
    shapes = [r.output_shape[1:] for r in s.rows]
    assert shapes[:7] == [(6, 28, 28), (6, 28, 28), (6, 14, 14), (16, 10, 10), (16, 10, 10), (16, 5, 5), (400,)]
    assert s.output_shape == (1, 10)
    assert "61,706" in str(s)


def test_summary_of_residual_and_concat_blocks() -> None:
    model = nn.Sequential(
        nn.Residual(
            nn.Sequential(nn.Conv2d(2, 4, 3, stride=2, padding=1, rng=0), nn.ReLU(), nn.Conv2d(4, 4, 3, padding=1)),
            shortcut=nn.Conv2d(2, 4, 1, stride=2, rng=1),
            activation=nn.ReLU(),
        ),
        nn.Concat(nn.Conv2d(4, 2, 1, rng=2), nn.Conv2d(4, 3, 3, padding=1, rng=3)),
    )
    s = glassnet.summary(model, (2, 9, 9))
    names = [r.name for r in s.rows]
    assert "0 (add)" in names and "1 (concat)" in names
    assert "0.shortcut" in names and "0.activation" in names
    add = s.rows[names.index("0 (add)")]
    assert add.output_shape == (1, 4, 5, 5) and add.rf == (7, 7) and add.jump == (2, 2)
    cat = s.rows[names.index("1 (concat)")]
    assert cat.output_shape == (1, 5, 5, 5) and cat.rf == (11, 11)
    assert s.total_params == model.num_parameters()


# ---------------------------------------------------------------------------------- receptive fields


def test_receptive_field_strided_then_unit_stride() -> None:
    """CONCEPTS L3: 3×3/s2 then 3×3/s1 sees 7×7 input pixels; two 3×3/s1 see 5×5."""
    strided = nn.Sequential(nn.Conv2d(1, 1, 3, stride=2, rng=0), nn.Conv2d(1, 1, 3, rng=1))
    plain = nn.Sequential(nn.Conv2d(1, 1, 3, rng=0), nn.Conv2d(1, 1, 3, rng=1))
    assert glassnet.receptive_field(strided, (1, 15, 15)) == ((7, 7), (2, 2))
    assert glassnet.receptive_field(plain, (1, 15, 15)) == ((5, 5), (1, 1))
    assert _brute_force(strided, (15, 15), (1, 1))[0] == ((7, 7), 49)
    assert _brute_force(plain, (15, 15), (1, 1))[0] == ((5, 5), 25)


def test_receptive_field_single_layers() -> None:
    assert glassnet.receptive_field(nn.Conv2d(1, 1, (3, 5), rng=0), (1, 9, 9)) == ((3, 5), (1, 1))
    assert glassnet.receptive_field(nn.Conv2d(1, 1, 3, dilation=2, rng=0), (1, 9, 9)) == ((5, 5), (1, 1))
    assert glassnet.receptive_field(nn.MaxPool2d(2), (1, 8, 8)) == ((2, 2), (2, 2))
    assert glassnet.receptive_field(nn.Sequential(nn.Conv2d(1, 1, 3, rng=0), nn.Flatten()), (1, 8, 8)) == (
        (8, 8),
        (1, 1),
    )


def _positive_stack(layers: list[nn.Module], seed: int) -> nn.Sequential:
    """Positive weights and no bias: a large bump on any pixel of the receptive field
    raises every unit it reaches (and wins every max-pool window it enters)."""
    model = nn.Sequential(*layers).to(np.float64)
    rng = np.random.default_rng(seed)
    for name, p in model.named_parameters():
        p.data = rng.uniform(0.5, 1.0, p.shape) if name.endswith("weight") else np.zeros(p.shape)
    return model


def _brute_force(
    model: nn.Module, hw: tuple[int, int], unit: tuple[int, int], seed: int = 0
) -> tuple[tuple[tuple[int, int], int], tuple[int, int]]:
    """Perturb every input pixel in turn (one batch) and record which ones change output unit ``unit``
    of channel 0. Returns ((bounding-box height, width), number of such pixels) and the box's top-left."""
    h, w = hw
    cin = next(m for m in model.modules() if isinstance(m, nn.Conv2d)).in_channels
    base = np.random.default_rng(seed).uniform(0.5, 1.0, (1, cin, h, w))
    batch = np.repeat(base, h * w + 1, axis=0)
    idx = np.arange(h * w)
    batch[idx + 1, :, idx // w, idx % w] += 1e6
    out = model(batch)[:, 0, unit[0], unit[1]]
    changed = np.abs(out[1:] - out[0]) > 1e-6 * (1 + abs(out[0]))
    rows, cols = np.nonzero(changed.reshape(h, w))
    box = (int(rows.max() - rows.min() + 1), int(cols.max() - cols.min() + 1))
    return (box, int(changed.sum())), (int(rows.min()), int(cols.min()))


@st.composite
def layer_stacks(draw: Any) -> list[nn.Module]:
    layers: list[nn.Module] = []
    channels = first = draw(st.integers(1, 2))
    for _ in range(draw(st.integers(1, 3))):
        kind = draw(st.sampled_from(["conv", "conv", "max", "avg"]))
        k = (draw(st.integers(1, 3)), draw(st.integers(1, 3)))
        s = (draw(st.integers(1, 2)), draw(st.integers(1, 2)))
        if kind == "conv":
            out = draw(st.integers(1, 2))
            d = (draw(st.integers(1, 2)), draw(st.integers(1, 2)))
            layers.append(nn.Conv2d(channels, out, k, stride=s, dilation=d, rng=0))
            channels = out
        elif kind == "max":
            layers.append(nn.MaxPool2d(k, s, dilation=(draw(st.integers(1, 2)), 1)))
        else:
            layers.append(nn.AvgPool2d(k, s))
    if not isinstance(layers[0], nn.Conv2d):
        layers.insert(0, nn.Conv2d(1, first, 1, rng=0))
    return layers


@settings(max_examples=15, deadline=None)
@given(layers=layer_stacks(), extra=st.tuples(st.integers(0, 2), st.integers(0, 2)), seed=st.integers(0, 1000))
def test_receptive_field_equals_brute_force(layers: list[nn.Module], extra: tuple[int, int], seed: int) -> None:
    """CONCEPTS L1: the analytic receptive field equals the extent of the input pixels that change a unit.

    No padding, so every unit's field lies inside the input; the input holds at least two units per
    axis so the jump can be checked too. Where every layer has stride <= kernel and no dilation the
    field is a solid rectangle; otherwise (dilation, stride > kernel) it has holes and the analytic size
    is the extent of its bounding box.
    """
    model = _positive_stack(layers, seed)
    cin = layers[0].in_channels
    (rh, rw), (jh, jw) = glassnet.receptive_field(model, (cin, 64, 64))
    hw = (rh + jh + extra[0], rw + jw + extra[1])
    ((bh, bw), count), origin = _brute_force(model, hw, (0, 0), seed)
    assert (bh, bw) == (rh, rw)
    assert origin == (0, 0)
    _, origin_next = _brute_force(model, hw, (1, 1), seed)
    assert origin_next == (jh, jw)
    solid = all(getattr(m, "dilation", 1) in (1, (1, 1)) and _stride_le_kernel(m) for m in layers)
    if solid:
        assert count == rh * rw
    else:
        assert count <= rh * rw


def _stride_le_kernel(m: nn.Module) -> bool:
    k = glassnet.functional._args.pair(m.kernel_size, "k")
    s = k if getattr(m, "stride", None) is None else glassnet.functional._args.pair(m.stride, "s")
    return s[0] <= k[0] and s[1] <= k[1]


def test_receptive_field_brute_force_with_holes() -> None:
    """A dilated kernel sees a 5×5 extent but only 9 of its pixels; stride > kernel leaves gaps between windows."""
    dilated = _positive_stack([nn.Conv2d(1, 1, 3, dilation=2, rng=0)], 0)
    assert glassnet.receptive_field(dilated, (1, 9, 9))[0] == (5, 5)
    assert _brute_force(dilated, (9, 9), (0, 0))[0] == ((5, 5), 9)
    gappy = _positive_stack([nn.Conv2d(1, 1, 2, stride=3, rng=0), nn.Conv2d(1, 1, 2, rng=1)], 0)
    assert glassnet.receptive_field(gappy, (1, 12, 12)) == ((5, 5), (3, 3))
    assert _brute_force(gappy, (12, 12), (0, 0))[0] == ((5, 5), 16)


FIXED_STACKS = {
    "conv_s2_pool_conv_dilated": lambda: [
        nn.Conv2d(1, 2, 3, stride=2, rng=0),
        nn.MaxPool2d(3, 2),
        nn.Conv2d(2, 1, 3, dilation=2, rng=1),
    ],
    "alexnet_like": lambda: [nn.Conv2d(1, 2, 5, stride=2, rng=0), nn.MaxPool2d(3, 2), nn.Conv2d(2, 2, 3, rng=1)],
    "non_square": lambda: [
        nn.Conv2d(1, 2, (1, 3), stride=(1, 2), rng=0),
        nn.AvgPool2d((3, 2)),
        nn.Conv2d(2, 1, (3, 1)),
    ],
    "vgg_like": lambda: [
        nn.Conv2d(1, 2, 3, rng=0),
        nn.Conv2d(2, 2, 3, rng=1),
        nn.MaxPool2d(2),
        nn.Conv2d(2, 2, 3, rng=2),
        nn.Conv2d(2, 1, 3, rng=3),
    ],
}


@pytest.mark.parametrize("name", list(FIXED_STACKS))
def test_receptive_field_equals_brute_force_fixed_stacks(name: str) -> None:
    layers = FIXED_STACKS[name]()
    model = _positive_stack(layers, 1)
    (rh, rw), (jh, jw) = glassnet.receptive_field(model, (1, 64, 64))
    hw = (rh + jh, rw + jw)
    (box, count), origin = _brute_force(model, hw, (0, 0), 1)
    assert box == (rh, rw) and origin == (0, 0)
    assert _brute_force(model, hw, (1, 1), 1)[1] == (jh, jw)
    if name != "conv_s2_pool_conv_dilated":
        assert count == rh * rw
