"""Checkpoints: one safetensors file, tensors plus one typed metadata record, written atomically
and verified on every load.

Layout of a checkpoint file (no pickle anywhere):

* tensors ``model/<state_dict key>`` (weights and buffers, e.g. ``model/features.0.weight``)
  and ``optim/<name>`` (optimiser state arrays, see :func:`glassnet.optim.flatten_state`);
* metadata key ``"glassnet"``: the JSON form of :class:`CheckpointMeta` (``format`` 2),
  written only by :meth:`CheckpointMeta.to_json` and read only by
  :meth:`CheckpointMeta.from_json`, which checks every field's type and range. It holds a
  SHA-256 of every tensor's bytes (``sha256``, in the model's own order);
* metadata key ``"glassnet_header_sha256"``: the SHA-256 of the whole header with this
  value replaced by 64 zeros, so a changed byte anywhere in the file is detected:
  in a tensor (the error names the tensor), in the metadata or in the header.

Loading checks, in this order and before anything is built: the file's framing, the header
checksum, the metadata record, the metadata against the stored tensors' shapes (class
count, input channels, sizes a model builder would allocate), then every tensor's SHA-256.

Writes go to a temporary file in the same directory, are fsync'ed, then renamed
over the target (``os.replace`` is atomic), so a crash leaves either the old or the
new checkpoint, never a torn one.
"""

from __future__ import annotations

import hashlib
import json
import math
import os
import re
import tempfile
from dataclasses import dataclass, field, fields
from pathlib import Path
from typing import Any

import numpy as np

from ._version import __version__
from .nn.module import Module
from .preprocessing import ImagePreprocessing

FORMAT = 2
META_KEY = "glassnet"
HEADER_SHA_KEY = "glassnet_header_sha256"
#: Largest input height or width a checkpoint may declare (the zoo's largest is 227).
MAX_INPUT_SIDE = 4096
#: safetensors' own limit on the JSON header.
MAX_HEADER_BYTES = 100_000_000

#: What a model's outputs mean: one per class (softmax), or one logit for two classes (sigmoid).
TASKS = ("multiclass", "binary")

_UMASK = os.umask(0o022)
os.umask(_UMASK)
_HEX64 = re.compile(r"^[0-9a-f]{64}$")
_ZERO_DIGEST = "0" * 64


class CheckpointError(ValueError):
    """A checkpoint that is missing, truncated, corrupt or does not fit the model."""


def atomic_write_bytes(path: str | os.PathLike[str], data: bytes) -> None:
    """Write ``data`` to ``path`` atomically (temp file, fsync, rename, fsync dir).

    On any failure the temporary file is removed and the old ``path`` (if any) is left
    untouched; an ``OSError`` (a full disk, say) names ``path``.
    """
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    try:
        if hasattr(os, "fchmod"):  # mkstemp makes the file 0600; give it the usual umask-based mode
            os.fchmod(fd, 0o666 & ~_UMASK)
        with os.fdopen(fd, "wb") as f:
            f.write(data)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException as e:
        with _suppress():
            os.unlink(tmp)
        if isinstance(e, OSError) and e.errno is not None and e.filename is None:
            raise OSError(e.errno, f"cannot write {path}: {e.strerror}") from None
        raise
    with _suppress():
        dfd = os.open(path.parent, os.O_RDONLY)
        try:
            os.fsync(dfd)
        finally:
            os.close(dfd)


def atomic_write_text(path: str | os.PathLike[str], text: str) -> None:
    """Atomically write a UTF-8 text file."""
    atomic_write_bytes(path, text.encode("utf-8"))


class _suppress:
    def __enter__(self) -> None:
        return None

    def __exit__(self, *exc: Any) -> bool:
        return exc[0] is not None and issubclass(exc[0], OSError)


def _json_default(o: Any) -> Any:
    if isinstance(o, np.integer):
        return int(o)
    if isinstance(o, np.floating):
        return float(o)
    if isinstance(o, np.ndarray):
        return o.tolist()
    raise TypeError(f"not JSON serialisable: {type(o).__name__}")


# ----------------------------------------------------------------------------- the metadata record


def _is_int(v: Any) -> bool:
    return isinstance(v, int) and not isinstance(v, bool)


def _is_num(v: Any) -> bool:
    return isinstance(v, int | float) and not isinstance(v, bool) and math.isfinite(v)


@dataclass
class CheckpointMeta:
    """Everything a checkpoint says besides its tensors: one typed record.

    ``architecture`` / ``arch_kwargs`` rebuild the model from the zoo; ``classes`` names its
    outputs; ``dataset`` is the dataset it was trained on (``glassnet train --data``);
    ``normalization`` is ``{"mean": [...], "std": [...]}`` per input channel;
    ``input_shape`` is (C, H, W). ``task`` is ``"multiclass"`` (one output per class, softmax)
    or ``"binary"`` (one output, P(``classes[1]``) = σ(z)); ``preprocessing`` is how image files
    become inputs (:class:`glassnet.data.ImagePreprocessing`: size, mode, resize, interpolation;
    ``predict`` and ``evaluate`` apply it to new images); ``data_folder`` is the image folder a
    model was trained on (``glassnet train --data PATH``). ``epoch``, ``step``, ``optimizer`` / ``scheduler``
    (``{"type", "state"}``), ``rng``, ``loader`` and ``extra`` let training resume exactly;
    ``world_size`` is the number of processes that trained it (``glassnet.distributed``: a
    run resumes only with as many, since each one's share of the data depends on it).
    ``sha256`` maps every tensor to the SHA-256 of its bytes (filled in when written).
    """

    architecture: str | None = None
    arch_kwargs: dict[str, Any] = field(default_factory=dict)
    classes: list[str] = field(default_factory=list)
    dataset: str | None = None
    normalization: dict[str, list[float]] | None = None
    input_shape: tuple[int, int, int] | None = None
    task: str = "multiclass"
    preprocessing: ImagePreprocessing | None = None
    data_folder: str | None = None
    epoch: int = 0
    step: int = 0
    optimizer: dict[str, Any] | None = None
    scheduler: dict[str, Any] | None = None
    rng: dict[str, Any] = field(default_factory=dict)
    loader: dict[str, Any] | None = None
    extra: dict[str, Any] = field(default_factory=dict)
    world_size: int = 1
    glassnet_version: str = __version__
    sha256: dict[str, str] = field(default_factory=dict)

    # -- the one writer -------------------------------------------------------------------
    def to_json(self) -> str:
        """The JSON document stored under the ``"glassnet"`` metadata key."""
        doc: dict[str, Any] = {"format": FORMAT}
        for f in fields(self):
            v = getattr(self, f.name)
            if f.name == "input_shape" and v is not None:
                v = list(v)
            elif f.name == "preprocessing" and v is not None:
                v = v.to_dict()
            doc[f.name] = v
        return json.dumps(doc, default=_json_default)

    # -- the one reader -------------------------------------------------------------------
    @classmethod
    def from_json(cls, text: str | bytes, source: Any = "checkpoint") -> CheckpointMeta:
        """Parse and check the record: every field's type and range; unknown fields are errors."""
        try:
            doc = json.loads(text)
        except (json.JSONDecodeError, UnicodeDecodeError) as e:
            raise CheckpointError(f"{source}: corrupt metadata ({e})") from None
        if not isinstance(doc, dict):
            raise CheckpointError(f"{source}: corrupt metadata (a JSON {type(doc).__name__}, expected an object)")
        fmt = doc.pop("format", None)
        if fmt == 1:
            raise CheckpointError(
                f"{source}: checkpoint format 1 (written before checksums were added) cannot be verified; "
                "convert it once with glassnet.checkpoint.upgrade_checkpoint(path)"
            )
        if fmt != FORMAT:
            raise CheckpointError(f"{source}: checkpoint format {fmt!r}, this glassnet reads format {FORMAT}")
        return cls._from_doc(doc, source)

    @classmethod
    def _from_doc(cls, doc: dict[str, Any], source: Any) -> CheckpointMeta:
        known = {f.name for f in fields(cls)}
        unknown = sorted(set(doc) - known)
        if unknown:
            raise CheckpointError(f"{source}: unknown metadata fields {unknown}")

        def bad(name: str, expected: str) -> CheckpointError:
            value = repr(doc[name])
            value = value if len(value) <= 80 else value[:77] + "..."
            return CheckpointError(f"{source}: metadata field {name!r} must be {expected}, got {value}")

        def opt(name: str, check: Any, expected: str) -> None:
            if name in doc and doc[name] is not None and not check(doc[name]):
                raise bad(name, expected)

        opt("architecture", lambda v: isinstance(v, str) and 0 < len(v) <= 64, "a model name")
        opt("dataset", lambda v: isinstance(v, str) and 0 < len(v) <= 64, "a dataset name")
        opt("data_folder", lambda v: isinstance(v, str) and 0 < len(v) <= 4096, "a folder path")
        opt("task", lambda v: v in TASKS, f"one of {', '.join(TASKS)}")
        opt("glassnet_version", lambda v: isinstance(v, str) and len(v) <= 64, "a version string")
        scalar = (str, int, float, bool, type(None))
        opt(
            "arch_kwargs",
            lambda v: isinstance(v, dict) and all(isinstance(x, scalar) for x in v.values()),
            "an object of numbers, strings and booleans",
        )
        opt("classes", lambda v: isinstance(v, list) and all(isinstance(c, str) for c in v), "a list of names")
        opt(
            "normalization",
            lambda v: (
                isinstance(v, dict)
                and set(v) == {"mean", "std"}
                and all(isinstance(v[k], list) and v[k] and all(_is_num(x) for x in v[k]) for k in ("mean", "std"))
                and len(v["mean"]) == len(v["std"])
                and all(x > 0 for x in v["std"])
            ),
            '{"mean": [...], "std": [...]}: equal-length lists of finite numbers, std > 0',
        )
        opt(
            "input_shape",
            lambda v: (
                isinstance(v, list)
                and len(v) == 3
                and all(_is_int(d) for d in v)
                and 1 <= v[0] <= 4096
                and all(1 <= d <= MAX_INPUT_SIDE for d in v[1:])
            ),
            f"[C, H, W] with C in 1..4096 and H, W in 1..{MAX_INPUT_SIDE}",
        )
        for name in ("epoch", "step"):
            opt(name, lambda v: _is_int(v) and v >= 0, "a non-negative integer")
        opt("world_size", lambda v: _is_int(v) and v >= 1, "a positive integer")
        for name in ("optimizer", "scheduler"):
            opt(
                name,
                lambda v: isinstance(v, dict) and set(v) == {"type", "state"} and isinstance(v["type"], str),
                '{"type": name, "state": {...}}',
            )
        for name in ("rng", "extra"):
            opt(name, lambda v: isinstance(v, dict), "an object")
        opt("loader", lambda v: isinstance(v, dict), "an object")
        opt(
            "sha256",
            lambda v: isinstance(v, dict) and all(isinstance(h, str) and _HEX64.match(h) for h in v.values()),
            "an object of SHA-256 hex digests",
        )
        kw = {k: v for k, v in doc.items() if v is not None}  # null: the field's default
        if "input_shape" in kw:
            kw["input_shape"] = tuple(kw["input_shape"])
        if "preprocessing" in kw:
            try:
                kw["preprocessing"] = ImagePreprocessing.from_dict(kw["preprocessing"])
            except ValueError as e:
                raise CheckpointError(f"{source}: metadata field 'preprocessing': {e}") from None
            if "input_shape" in kw and kw["preprocessing"].input_shape != kw["input_shape"]:
                raise CheckpointError(
                    f"{source}: the preprocessing makes {list(kw['preprocessing'].input_shape)} inputs, "
                    f"input_shape is {list(kw['input_shape'])}"
                )
        return cls(**kw)

    def image_preprocessing(self) -> ImagePreprocessing | None:
        """How this checkpoint's model reads image files: the recorded ``preprocessing``; for a
        pretrained model's record (``extra["preprocessing"]`` from
        :func:`glassnet.models.pretrained.checkpoint_metadata`) its resize and crop; otherwise a
        plain resize and centre crop to ``input_shape`` (None without one)."""
        if self.preprocessing is not None:
            return self.preprocessing
        extra = self.extra.get("preprocessing")
        if isinstance(extra, dict) and _is_int(extra.get("crop")) and _is_int(extra.get("resize_shorter")):
            crop = extra["crop"]
            return ImagePreprocessing(
                (crop, crop), "RGB", extra["resize_shorter"], extra.get("interpolation", "bicubic")
            )
        if self.input_shape is None:
            return None
        c, h, w = self.input_shape
        return ImagePreprocessing((h, w), "L" if c == 1 else "RGB")

    # -- against the tensors --------------------------------------------------------------
    def check_tensors(self, shapes: dict[str, tuple[int, ...]], source: Any = "checkpoint") -> None:
        """Check the record against the stored tensors' names and shapes, before any model is built.

        Every tensor has a checksum and every checksum a tensor; the class count
        (``num_classes``, ``classes``) is the classifier's output size; ``in_channels`` and
        the input's C are the first convolution's input channels; no numeric keyword of the
        architecture exceeds the largest stored dimension (a builder would allocate for it);
        optimiser tensors come with optimiser metadata.
        """
        names = set(shapes)
        odd = sorted(n for n in names if not n.startswith(("model/", "optim/")))
        if odd:
            raise CheckpointError(f"{source}: tensors outside model/ and optim/: {odd[:5]}")
        missing, extra = sorted(names - set(self.sha256)), sorted(set(self.sha256) - names)
        if missing or extra:
            raise CheckpointError(
                f"{source}: the checksum list does not match the tensors (no checksum for {missing[:5]}, "
                f"no tensor for {extra[:5]})"
            )
        if self.optimizer is None and any(n.startswith("optim/") for n in names):
            raise CheckpointError(f"{source}: optimiser tensors without optimiser metadata")
        ordered = [shapes[n] for n in self.sha256 if n.startswith("model/")]  # the model's own order
        if not ordered:
            raise CheckpointError(f"{source}: the checkpoint holds no model tensors")
        largest = max((d for s in ordered for d in s), default=0)
        for key, v in self.arch_kwargs.items():
            if _is_num(v) and abs(v) > largest:
                raise CheckpointError(
                    f"{source}: arch_kwargs {key}={v} does not fit the stored tensors "
                    f"(their largest dimension is {largest}); refusing to build the model"
                )
        matrices = [s for s in ordered if len(s) == 2]
        if matrices:
            outputs = matrices[-1][0]
            k = self.arch_kwargs.get("num_classes")
            if k is not None and k != outputs:
                raise CheckpointError(
                    f"{source}: arch_kwargs num_classes={k!r}, but the classifier's stored weight has {outputs} outputs"
                )
            if self.task == "binary":
                if outputs != 1 or (self.classes and len(self.classes) != 2):
                    raise CheckpointError(
                        f"{source}: a binary classifier has one output and two class names, this one "
                        f"{outputs} output(s) and {len(self.classes)} name(s)"
                    )
            elif self.classes and len(self.classes) != outputs:
                raise CheckpointError(
                    f"{source}: {len(self.classes)} class names for a classifier with {outputs} outputs"
                )
        convs = [s for s in ordered if len(s) == 4]
        if convs:
            channels = convs[0][1]
            c_kw = self.arch_kwargs.get("in_channels")
            if c_kw is not None and c_kw != channels:
                raise CheckpointError(
                    f"{source}: arch_kwargs in_channels={c_kw!r}, but the first convolution takes {channels} channels"
                )
            if self.input_shape is not None and self.input_shape[0] != channels:
                raise CheckpointError(
                    f"{source}: input_shape {list(self.input_shape)} has {self.input_shape[0]} channels, "
                    f"the first convolution takes {channels}"
                )
        if self.normalization is not None and self.input_shape is not None:
            n = len(self.normalization["mean"])
            if n not in (1, self.input_shape[0]):
                raise CheckpointError(
                    f"{source}: normalization has {n} values per statistic for {self.input_shape[0]} input channels"
                )


# ----------------------------------------------------------------------------- checkpoints


@dataclass
class Checkpoint:
    """A loaded checkpoint: metadata, model tensors and optimiser tensors."""

    meta: CheckpointMeta
    model_state: dict[str, np.ndarray]
    optim_arrays: dict[str, np.ndarray] = field(default_factory=dict)
    path: Path | None = None

    @property
    def architecture(self) -> str | None:
        return self.meta.architecture

    @property
    def classes(self) -> list[str]:
        return list(self.meta.classes)

    def build_model(self) -> Module:
        """Rebuild the model from the zoo and load the weights (checked by name, shape, dtype)."""
        from .models import get_model

        if not self.architecture:
            raise CheckpointError(f"{self.path}: the checkpoint does not name an architecture to rebuild")
        try:
            model = get_model(self.architecture, **self.meta.arch_kwargs)
        except (ValueError, TypeError) as e:
            raise CheckpointError(f"{self.path}: cannot rebuild {self.architecture!r} ({e})") from None
        self.load_into(model)
        return model

    def load_into(self, model: Module) -> Module:
        """Load the weights into ``model``; a mismatch raises :class:`CheckpointError` listing it."""
        try:
            model.load_state_dict(self.model_state)
        except ValueError as e:
            raise CheckpointError(f"{self.path}: {e}") from None
        return model


def _digest(a: np.ndarray) -> str:
    a = np.asarray(a, order="C")  # (ascontiguousarray would make a 0-d array 1-d)
    if a.dtype.byteorder == ">":
        a = a.astype(a.dtype.newbyteorder("<"))
    return hashlib.sha256(memoryview(a).cast("B") if a.size else b"").hexdigest()


def non_finite_tensors(state: dict[str, np.ndarray]) -> list[str]:
    """Names of the floating arrays in ``state`` holding NaN or infinite values."""
    return [k for k, v in state.items() if np.asarray(v).dtype.kind == "f" and not np.all(np.isfinite(v))]


def write_checkpoint(
    path: str | os.PathLike[str],
    meta: CheckpointMeta,
    tensors: dict[str, np.ndarray],
    *,
    allow_non_finite: bool = False,
) -> Path:
    """Write ``tensors`` (names ``model/...``, ``optim/...``) with ``meta`` atomically.

    The checksums of every tensor and of the header are computed here; a model tensor
    holding NaN or infinity is refused unless ``allow_non_finite``.
    """
    from safetensors.numpy import save

    tensors = {k: np.asarray(v, order="C") for k, v in tensors.items()}
    if not allow_non_finite:
        bad = non_finite_tensors({k: v for k, v in tensors.items() if k.startswith("model/")})
        if bad:
            raise CheckpointError(f"{path}: not written: non-finite values in {', '.join(bad[:5])}")
    meta.sha256 = {k: _digest(v) for k, v in tensors.items()}
    data = bytearray(save(tensors, metadata={META_KEY: meta.to_json(), HEADER_SHA_KEY: _ZERO_DIGEST}))
    n = int.from_bytes(data[:8], "little")
    placeholder = f'"{_ZERO_DIGEST}"'.encode()
    at = data.find(placeholder, 8, 8 + n)
    if at < 0 or data.find(placeholder, at + 1, 8 + n) >= 0:  # pragma: no cover - safetensors changed its header
        raise CheckpointError("cannot place the header checksum in the safetensors header")
    digest = hashlib.sha256(data[8 : 8 + n]).hexdigest()
    data[at + 1 : at + 65] = digest.encode()
    atomic_write_bytes(path, bytes(data))
    return Path(path)


def save_checkpoint(
    path: str | os.PathLike[str],
    model: Module,
    *,
    architecture: str | None = None,
    arch_kwargs: dict[str, Any] | None = None,
    classes: list[str] | None = None,
    dataset: str | None = None,
    normalization: dict[str, Any] | None = None,
    input_shape: tuple[int, ...] | None = None,
    task: str = "multiclass",
    preprocessing: ImagePreprocessing | dict[str, Any] | None = None,
    data_folder: str | None = None,
    optimizer: Any = None,
    scheduler: Any = None,
    epoch: int = 0,
    step: int = 0,
    rng: dict[str, Any] | None = None,
    loader: dict[str, Any] | None = None,
    extra: dict[str, Any] | None = None,
    world_size: int = 1,
) -> Path:
    """Write ``model`` (and optionally optimiser/scheduler state) to ``path`` atomically.

    ``world_size``: the number of data-parallel processes that trained it (see :mod:`glassnet.distributed`).

    Refuses (:class:`CheckpointError`) weights holding NaN or infinity.
    """
    tensors = {f"model/{k}": np.asarray(v) for k, v in model.state_dict().items()}
    meta = CheckpointMeta(
        architecture=architecture,
        arch_kwargs=dict(arch_kwargs or {}),
        classes=list(classes or []),
        dataset=dataset,
        normalization=None
        if normalization is None
        else {"mean": [float(v) for v in normalization["mean"]], "std": [float(v) for v in normalization["std"]]},
        input_shape=tuple(int(d) for d in input_shape) if input_shape is not None else None,  # type: ignore[arg-type]
        task=task,
        preprocessing=ImagePreprocessing.from_dict(preprocessing) if isinstance(preprocessing, dict) else preprocessing,
        data_folder=data_folder,
        epoch=int(epoch),
        step=int(step),
        rng=dict(rng or {}),
        loader=loader,
        extra=dict(extra or {}),
        world_size=int(world_size),
    )
    if optimizer is not None:
        from .optim import flatten_state

        arrays, ometa = flatten_state(optimizer.state_dict())
        tensors.update({f"optim/{k}": np.asarray(v) for k, v in arrays.items()})
        meta.optimizer = {"type": type(optimizer).__name__, "state": ometa}
    if scheduler is not None:
        meta.scheduler = {"type": type(scheduler).__name__, "state": scheduler.state_dict()}
    # the record is checked on the way out too: a writer cannot produce a file its reader refuses
    CheckpointMeta.from_json(meta.to_json(), path)
    return write_checkpoint(path, meta, tensors)


def _read_header(p: Path, raw: bytes) -> tuple[int, dict[str, Any]]:
    if len(raw) < 8:
        raise CheckpointError(f"{p}: truncated ({len(raw)} bytes; a checkpoint starts with an 8-byte header length)")
    header_len = int.from_bytes(raw[:8], "little")
    if header_len > len(raw) - 8 or header_len > MAX_HEADER_BYTES:
        raise CheckpointError(f"{p}: truncated or not a checkpoint (header of {header_len} bytes, file {len(raw)})")
    try:
        header = json.loads(raw[8 : 8 + header_len])
    except (json.JSONDecodeError, UnicodeDecodeError) as e:
        raise CheckpointError(f"{p}: corrupt or truncated checkpoint (unreadable header: {e})") from None
    if not isinstance(header, dict):
        raise CheckpointError(f"{p}: corrupt checkpoint (the header is not a JSON object)")
    return header_len, header


def _verified_meta(p: Path, raw: bytes, header_len: int, header: dict[str, Any]) -> str:
    """The metadata JSON, after checking the header checksum."""
    metadata = header.get("__metadata__")
    meta_json = metadata.get(META_KEY) if isinstance(metadata, dict) else None
    if not isinstance(meta_json, str):
        raise CheckpointError(f"{p}: a safetensors file without glassnet metadata (not a glassnet checkpoint)")
    stored = metadata.get(HEADER_SHA_KEY)
    if stored is None:
        try:
            fmt = json.loads(meta_json).get("format")
        except (json.JSONDecodeError, AttributeError):
            fmt = None
        if fmt == 1:
            CheckpointMeta.from_json(meta_json, p)  # raises: format 1, with how to convert it
        raise CheckpointError(f"{p}: corrupt checkpoint (the header has no checksum)")
    if not isinstance(stored, str) or not _HEX64.match(stored):
        raise CheckpointError(f"{p}: corrupt checkpoint (the header checksum is malformed)")
    head = raw[8 : 8 + header_len]
    quoted = f'"{stored}"'.encode()
    at = head.find(quoted)
    if at < 0:
        raise CheckpointError(f"{p}: corrupt checkpoint (the header checksum cannot be located)")
    blank = head[: at + 1] + _ZERO_DIGEST.encode() + head[at + 65 :]
    if hashlib.sha256(blank).hexdigest() != stored:
        raise CheckpointError(f"{p}: corrupt checkpoint: the header or the metadata does not match its SHA-256")
    return meta_json


def read_checkpoint_meta(path: str | os.PathLike[str]) -> CheckpointMeta:
    """The metadata of a checkpoint (header checksum verified), without reading its tensors."""
    p = Path(path)
    if not p.is_file():
        raise CheckpointError(f"checkpoint not found: {p}")
    size = p.stat().st_size
    with open(p, "rb") as f:
        raw = f.read(8)
        n = int.from_bytes(raw, "little") if len(raw) == 8 else 0
        if len(raw) == 8 and n <= min(size - 8, MAX_HEADER_BYTES):
            raw += f.read(n)
    header_len, header = _read_header(p, raw)
    return CheckpointMeta.from_json(_verified_meta(p, raw, header_len, header), p)


def load_checkpoint(path: str | os.PathLike[str]) -> Checkpoint:
    """Read and verify a checkpoint, reporting a missing, truncated or corrupt file clearly.

    Every byte is checked: the header against its SHA-256, the metadata record against
    the tensors' shapes, and every tensor against its SHA-256 (the error names it).
    """
    from safetensors.numpy import load

    p = Path(path)
    if not p.is_file():
        raise CheckpointError(f"checkpoint not found: {p}")
    raw = p.read_bytes()
    header_len, header = _read_header(p, raw)
    meta = CheckpointMeta.from_json(_verified_meta(p, raw, header_len, header), p)
    try:
        tensors = load(raw)
    except Exception as e:  # safetensors raises its own error types
        raise CheckpointError(f"{p}: corrupt or truncated checkpoint ({e})") from None
    meta.check_tensors({k: tuple(v.shape) for k, v in tensors.items()}, p)
    base = 8 + header_len
    for name, want in meta.sha256.items():
        start, end = header[name]["data_offsets"]
        if hashlib.sha256(raw[base + start : base + end]).hexdigest() != want:
            raise CheckpointError(f"{p}: tensor {name!r} is corrupt: its bytes do not match the SHA-256 recorded")
    model_state = {k[len("model/") :]: tensors[k] for k in meta.sha256 if k.startswith("model/")}
    optim_arrays = {k[len("optim/") :]: tensors[k] for k in meta.sha256 if k.startswith("optim/")}
    return Checkpoint(meta, model_state, optim_arrays, p)


def upgrade_checkpoint(src: str | os.PathLike[str], dst: str | os.PathLike[str] | None = None) -> Path:
    """Rewrite a format-1 checkpoint (no checksums) as format 2, in place unless ``dst`` is given.

    Its tensors cannot be verified (they were never checksummed): only do this with a
    file you trust. A file that is already format 2 is verified and copied.
    """
    from safetensors.numpy import load

    p = Path(src)
    raw = p.read_bytes()
    _, header = _read_header(p, raw)
    metadata = header.get("__metadata__") or {}
    doc = json.loads(metadata.get(META_KEY, "null") or "null")
    if not isinstance(doc, dict) or doc.get("format") not in (1, FORMAT):
        raise CheckpointError(f"{p}: not a glassnet checkpoint of format 1 or {FORMAT}")
    if doc.get("format") == FORMAT:
        ckpt = load_checkpoint(p)
        tensors = {**{f"model/{k}": v for k, v in ckpt.model_state.items()},
                   **{f"optim/{k}": v for k, v in ckpt.optim_arrays.items()}}  # fmt: skip
        return write_checkpoint(dst or p, ckpt.meta, tensors, allow_non_finite=True)
    doc.pop("format")
    meta = CheckpointMeta._from_doc(doc, p)
    tensors = load(raw)
    from .models import get_model

    order = list(tensors)
    if meta.architecture:  # put the model tensors in the model's own order (the checks rely on it)
        try:
            keys = [f"model/{k}" for k in get_model(meta.architecture, **meta.arch_kwargs).state_dict()]
            order = [k for k in keys if k in tensors] + [k for k in tensors if k not in keys]
        except (ValueError, TypeError):
            pass
    return write_checkpoint(dst or p, meta, {k: tensors[k] for k in order}, allow_non_finite=True)


def restore_optimizer(ckpt: Checkpoint, optimizer: Any) -> None:
    """Load the optimiser state saved in ``ckpt`` into ``optimizer``."""
    from .optim import unflatten_state

    info = ckpt.meta.optimizer
    if info is None:
        raise CheckpointError(f"{ckpt.path}: the checkpoint holds no optimiser state")
    if info["type"] != type(optimizer).__name__:
        raise CheckpointError(
            f"{ckpt.path}: optimiser state is for {info['type']}, got a {type(optimizer).__name__} to load it into"
        )
    try:
        optimizer.load_state_dict(unflatten_state(ckpt.optim_arrays, info["state"]))
    except (ValueError, KeyError, TypeError) as e:
        raise CheckpointError(f"{ckpt.path}: the optimiser state does not fit this optimiser ({e})") from None
