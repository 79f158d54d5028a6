"""Shape-only tracing of the functional ops: each op's ``meta`` against its real forward.

``op.meta(*MetaArrays, **options)`` must give the shape the forward pass produces (for
every option that changes it), the multiply-accumulates the lectures count, and the window
that receptive fields grow by. Ops without a meta must keep their input's shape.
"""

from __future__ import annotations

import math
from typing import Any

import numpy as np
import pytest

import glassnet.functional as F
from glassnet.autograd import Meta, MetaArray, Op, Tensor

CASES: list[tuple[Op, tuple[tuple[int, ...], ...], dict[str, Any]]] = [
    (F.conv2d, ((2, 3, 9, 8), (4, 3, 3, 3), (4,)), {}),
    (F.conv2d, ((1, 4, 9, 8), (6, 2, 3, 2), (6,)), {"stride": (2, 1), "padding": ((1, 0), (2, 1)), "groups": 2}),
    (F.conv2d, ((1, 3, 7, 7), (3, 1, 3, 3)), {"groups": 3, "dilation": 2, "padding": "same", "stride": 2}),
    (F.conv2d, ((2, 2, 6, 5), (5, 2, 2, 3)), {"padding": "valid", "flip": True}),
    (F.conv2d_bn_relu, ((2, 3, 9, 8), (4, 3, 3, 3), (4,), (4,), (4,)), {"stride": 2, "padding": 1}),
    (F.max_pool2d, ((2, 3, 9, 8),), {"kernel_size": 2}),
    (F.max_pool2d, ((2, 3, 9, 8),), {"kernel_size": 3, "stride": 2, "padding": 1, "ceil_mode": True}),
    (F.max_pool2d, ((1, 1, 9, 9),), {"kernel_size": (2, 3), "stride": 1, "dilation": (2, 1)}),
    (F.avg_pool2d, ((2, 3, 9, 8),), {"kernel_size": 3, "stride": 2, "padding": 1, "ceil_mode": True}),
    (F.avg_pool2d, ((2, 3, 9, 8),), {"kernel_size": (2, 3), "count_include_pad": False}),
    (F.adaptive_avg_pool2d, ((2, 3, 9, 8),), {"output_size": (4, 3)}),
    (F.adaptive_avg_pool2d, ((2, 3, 9, 8),), {"output_size": 1}),
    (F.adaptive_avg_pool2d, ((2, 3, 9, 8),), {"output_size": (None, 2)}),
    (F.global_avg_pool2d, ((2, 3, 9, 8),), {}),
    (F.linear, ((4, 6), (5, 6), (5,)), {}),
    (F.linear, ((2, 3, 6), (5, 6)), {}),
    (F.flatten, ((2, 3, 4, 5),), {}),
    (F.flatten, ((2, 3, 4, 5),), {"start_dim": 2}),
    (F.cross_entropy, ((4, 5), (4,)), {}),
    (F.cross_entropy, ((4, 5), (4,)), {"reduction": "none"}),
    (F.binary_cross_entropy_with_logits, ((4, 5), (4, 5)), {"reduction": "sum"}),
    (F.binary_cross_entropy_with_logits, ((4, 5), (4, 5)), {"reduction": "none"}),
    (F.mse_loss, ((4, 5), (4, 5)), {}),
    (F.mse_loss, ((4, 5), (4, 5)), {"reduction": "none"}),
]


def _real(shape: tuple[int, ...], op: Op, position: int) -> np.ndarray:
    if op is F.cross_entropy and position == 1:
        return np.zeros(shape, dtype=np.int64)
    if op is F.conv2d_bn_relu and position == 4:
        return np.ones(shape)  # a variance
    if op is F.binary_cross_entropy_with_logits and position == 1:
        return np.random.default_rng(position).uniform(0, 1, shape)  # targets are probabilities
    return np.random.default_rng(position).standard_normal(shape)


@pytest.mark.parametrize("case", range(len(CASES)), ids=lambda i: f"{CASES[i][0].__name__}-{i}")
def test_meta_shape_equals_the_forward_shape(case: int) -> None:
    op, shapes, opts = CASES[case]
    assert op.meta is not None, f"{op.__name__} changes shapes: it needs a meta"
    info = op.meta(*(MetaArray(s, np.float64) for s in shapes), **opts)
    out = op(*(_real(s, op, i) for i, s in enumerate(shapes)), **opts)
    assert isinstance(info, Meta)
    assert info.shape == tuple(np.shape(out))


def test_conv2d_meta_counts_macs_and_window() -> None:
    info = F.conv2d.meta(MetaArray((2, 4, 9, 8)), MetaArray((6, 2, 3, 2)), stride=(2, 1), dilation=(1, 2), groups=2)
    n, f, ho, wo = info.shape
    assert info.macs == n * f * ho * wo * (4 // 2) * 3 * 2
    assert info.window[:3] == ((3, 2), (2, 1), (1, 2))


def test_linear_meta_counts_macs() -> None:
    info = F.linear.meta(MetaArray((2, 3, 6)), MetaArray((5, 6)))
    assert info.macs == 2 * 3 * 6 * 5 and info.window == "whole"


@pytest.mark.parametrize(
    "op, opts, window",
    [
        (F.max_pool2d, {"kernel_size": 3, "stride": 2, "dilation": 2}, ((3, 3), (2, 2), (2, 2))),
        (F.max_pool2d, {"kernel_size": (2, 3)}, ((2, 3), (2, 3), (1, 1))),
        (F.avg_pool2d, {"kernel_size": 2, "stride": 1}, ((2, 2), (1, 1), (1, 1))),
        (F.adaptive_avg_pool2d, {"output_size": (9, 8)}, None),
        (F.adaptive_avg_pool2d, {"output_size": 1}, "whole"),
        (F.adaptive_avg_pool2d, {"output_size": (4, 3)}, ((3, 3), (2, 2), (1, 1))),
        (F.global_avg_pool2d, {}, "whole"),
        (F.flatten, {}, "whole"),
    ],
)
def test_pooling_windows(op: Op, opts: dict[str, Any], window: Any) -> None:
    w = op.meta(MetaArray((1, 2, 9, 8)), **opts).window
    assert (w[:3] if isinstance(w, tuple) and len(w) == 4 else w) == window


def test_meta_checks_like_forward() -> None:
    with pytest.raises(ValueError, match="groups=2 does not divide the 3 input channels"):
        F.conv2d.meta(MetaArray((1, 3, 5, 5)), MetaArray((4, 1, 3, 3)), groups=2)
    with pytest.raises(ValueError, match="window 5×5 is larger than the padded input 4×4"):
        F.max_pool2d.meta(MetaArray((1, 1, 4, 4)), 5)


def test_ops_without_meta_keep_their_shape() -> None:
    ops = {name: getattr(F, name) for name in F.__all__ if isinstance(getattr(F, name), Op)}
    without = sorted(name for name, op in ops.items() if op.meta is None)
    assert without == [
        "batch_norm", "batch_norm_relu", "dropout", "leaky_relu", "local_response_norm", "log_softmax", "relu",
        "relu6", "sigmoid", "softmax", "tanh",
    ]  # fmt: skip
    x = np.random.default_rng(0).standard_normal((3, 4, 2, 2))
    for name in without:
        args = (x, np.zeros(4), np.ones(4)) if name.startswith("batch_norm") else (x,)
        opts = {"local_response_norm": {"size": 3}, "dropout": {"rng": np.random.default_rng(0)}}.get(name, {})
        assert ops[name](*args, **opts).shape == x.shape, name


def test_trace_through_the_op_front_door() -> None:
    """Ops called on shape-only tensors record a node and compute nothing."""
    x, w = Tensor(MetaArray((2, 3, 9, 8))), Tensor(MetaArray((4, 3, 3, 3)))
    y = F.max_pool2d(F.relu(F.conv2d(x, w, padding=1)), 2)
    assert isinstance(y.data, MetaArray) and y.shape == (2, 4, 4, 4)
    conv_node = y.grad_fn.next_nodes[0].next_nodes[0]
    assert conv_node.ctx["meta"].macs == 2 * 4 * 9 * 8 * 3 * 9
    assert math.prod(y.shape) == 2 * 4 * 4 * 4
