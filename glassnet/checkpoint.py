"""Checkpoints: one safetensors file, tensors plus JSON metadata, written atomically.

Layout of a checkpoint file (no pickle anywhere):

* tensors ``model/<state_dict key>`` (weights and buffers, e.g. ``model/features.0.weight``)
  and ``optim/<name>`` (optimiser state arrays, see :func:`glassnet.optim.flatten_state`);
* metadata key ``"glassnet"``: a JSON document with ``format`` (version of this layout),
  ``glassnet_version``, ``architecture`` and ``arch_kwargs`` (to rebuild the model from
  the zoo), ``classes``, ``normalization`` ({"mean": [...], "std": [...]}), ``input_shape``
  ([C, H, W]), ``epoch``, ``step``, ``optimizer`` / ``scheduler`` state (JSON parts),
  ``rng`` (random states), ``loader`` (data position) and free-form ``extra``.

Writes go to a temporary file in the same directory, are fsync'ed, then renamed
over the target (``os.replace`` is atomic), so a crash leaves either the old or the
new checkpoint, never a torn one.
"""

from __future__ import annotations

import json
import os
import tempfile
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from ._version import __version__
from .nn.module import Module

FORMAT = 1
META_KEY = "glassnet"


_UMASK = os.umask(0o022)
os.umask(_UMASK)


class CheckpointError(ValueError):
    """A checkpoint that is missing, truncated, corrupt or does not fit the model."""


def atomic_write_bytes(path: str | os.PathLike[str], data: bytes) -> None:
    """Write ``data`` to ``path`` atomically (temp file, fsync, rename, fsync dir)."""
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
    except BaseException:
        with _suppress():
            os.unlink(tmp)
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


@dataclass
class Checkpoint:
    """A loaded checkpoint: metadata, model tensors and optimiser tensors."""

    meta: dict[str, Any]
    model_state: dict[str, np.ndarray]
    optim_arrays: dict[str, np.ndarray] = field(default_factory=dict)
    path: Path | None = None

    @property
    def architecture(self) -> str | None:
        return self.meta.get("architecture")

    @property
    def classes(self) -> list[str]:
        return list(self.meta.get("classes") or [])

    def build_model(self) -> Module:
        """Rebuild the model from the zoo and load the weights (checked by name, shape, dtype)."""
        from .models import get_model

        if not self.architecture:
            raise CheckpointError(f"{self.path}: the checkpoint does not name an architecture to rebuild")
        model = get_model(self.architecture, **(self.meta.get("arch_kwargs") or {}))
        self.load_into(model)
        return model

    def load_into(self, model: Module) -> Module:
        """Load the weights into ``model``; a mismatch raises :class:`CheckpointError` listing it."""
        try:
            model.load_state_dict(self.model_state)
        except ValueError as e:
            raise CheckpointError(f"{self.path}: {e}") from None
        return model


def save_checkpoint(
    path: str | os.PathLike[str],
    model: Module,
    *,
    architecture: str | None = None,
    arch_kwargs: dict[str, Any] | None = None,
    classes: list[str] | None = None,
    normalization: dict[str, Any] | None = None,
    input_shape: tuple[int, ...] | None = None,
    optimizer: Any = None,
    scheduler: Any = None,
    epoch: int = 0,
    step: int = 0,
    rng: dict[str, Any] | None = None,
    loader: dict[str, Any] | None = None,
    extra: dict[str, Any] | None = None,
) -> Path:
    """Write ``model`` (and optionally optimiser/scheduler state) to ``path`` atomically."""
    from safetensors.numpy import save

    tensors = {f"model/{k}": np.asarray(v, order="C") for k, v in model.state_dict().items()}
    meta: dict[str, Any] = {
        "format": FORMAT,
        "glassnet_version": __version__,
        "architecture": architecture,
        "arch_kwargs": arch_kwargs or {},
        "classes": classes or [],
        "normalization": normalization,
        "input_shape": list(input_shape) if input_shape is not None else None,
        "epoch": epoch,
        "step": step,
        "rng": rng or {},
        "loader": loader,
        "extra": extra or {},
    }
    if optimizer is not None:
        from .optim import flatten_state

        arrays, ometa = flatten_state(optimizer.state_dict())
        tensors.update({f"optim/{k}": np.asarray(v, order="C") for k, v in arrays.items()})
        meta["optimizer"] = {"type": type(optimizer).__name__, "state": ometa}
    if scheduler is not None:
        meta["scheduler"] = {"type": type(scheduler).__name__, "state": scheduler.state_dict()}
    data = save(tensors, metadata={META_KEY: json.dumps(meta, default=_json_default)})
    atomic_write_bytes(path, data)
    return Path(path)


def load_checkpoint(path: str | os.PathLike[str]) -> Checkpoint:
    """Read a checkpoint, reporting a missing, truncated or corrupt file clearly."""
    from safetensors.numpy import load

    p = Path(path)
    if not p.is_file():
        raise CheckpointError(f"checkpoint not found: {p}")
    raw = p.read_bytes()
    if len(raw) < 8:
        raise CheckpointError(f"{p}: truncated ({len(raw)} bytes; a checkpoint starts with an 8-byte header length)")
    header_len = int.from_bytes(raw[:8], "little")
    if header_len > len(raw) - 8:
        raise CheckpointError(f"{p}: truncated or not a checkpoint (header of {header_len} bytes, file {len(raw)})")
    try:
        header = json.loads(raw[8 : 8 + header_len])
        tensors = load(raw)
    except Exception as e:  # safetensors raises its own error types
        raise CheckpointError(f"{p}: corrupt or truncated checkpoint ({e})") from None
    meta_json = (header.get("__metadata__") or {}).get(META_KEY)
    if meta_json is None:
        raise CheckpointError(f"{p}: a safetensors file without glassnet metadata (not a glassnet checkpoint)")
    try:
        meta = json.loads(meta_json)
    except json.JSONDecodeError as e:
        raise CheckpointError(f"{p}: corrupt metadata ({e})") from None
    if meta.get("format") != FORMAT:
        raise CheckpointError(f"{p}: checkpoint format {meta.get('format')!r}, this glassnet reads format {FORMAT}")
    model_state = {k[len("model/") :]: v for k, v in tensors.items() if k.startswith("model/")}
    optim_arrays = {k[len("optim/") :]: v for k, v in tensors.items() if k.startswith("optim/")}
    return Checkpoint(meta, model_state, optim_arrays, p)


def restore_optimizer(ckpt: Checkpoint, optimizer: Any) -> None:
    """Load the optimiser state saved in ``ckpt`` into ``optimizer``."""
    from .optim import unflatten_state

    info = ckpt.meta.get("optimizer")
    if info is None:
        raise CheckpointError(f"{ckpt.path}: the checkpoint holds no optimiser state")
    if info["type"] != type(optimizer).__name__:
        raise CheckpointError(
            f"{ckpt.path}: optimiser state is for {info['type']}, got a {type(optimizer).__name__} to load it into"
        )
    optimizer.load_state_dict(unflatten_state(ckpt.optim_arrays, info["state"]))
