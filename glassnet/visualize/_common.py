"""What every visualisation needs: layer lookup by dotted name, eval mode and frozen
parameters for the duration of a call, a probe that reads (or replaces) one layer's output,
and target/input checking."""

from __future__ import annotations

import contextlib
import difflib
from collections.abc import Callable, Iterator
from typing import Any

import numpy as np

from ..autograd.tensor import Tensor
from ..nn.module import Module


def layer_names(model: Module) -> list[str]:
    """Every dotted name of ``model.named_modules()`` except the model itself (``""``)."""
    return [name for name, _ in model.named_modules() if name]


def get_layer(model: Module, layer: str) -> Module:
    """The submodule called ``layer`` (a dotted name from ``named_modules()``).

    An unknown name raises ``ValueError`` on one line that names it, suggests close
    matches, and lists every valid name.
    """
    modules = dict(model.named_modules())
    if not isinstance(layer, str) or not layer or layer not in modules:
        names = layer_names(model)
        close = difflib.get_close_matches(str(layer), names, n=3)
        hint = f" (did you mean {' or '.join(map(repr, close))}?)" if close else ""
        raise ValueError(f"unknown layer {layer!r}{hint}; valid layers: {', '.join(names)}")
    return modules[layer]


@contextlib.contextmanager
def inspection_mode(model: Module, freeze: bool = True) -> Iterator[Module]:
    """Eval mode (and, with ``freeze``, no parameter gradients) inside the block; both restored after.

    Every module's own ``training`` flag and every parameter's ``requires_grad`` are put
    back exactly as they were, also when the block raises. Frozen parameters also keep
    their ``.grad`` untouched: attribution never writes into a model's gradients. The model
    object itself is changed for the duration, so do not train or run it in another thread
    meanwhile (use a copy there).
    """
    modes = [(m, m.training) for m in model.modules()]
    params = model.parameters()
    flags = [p.requires_grad for p in params]
    try:
        model.eval()
        if freeze:
            for p in params:
                p.requires_grad = False
        yield model
    finally:
        for p, flag in zip(params, flags, strict=True):
            p.requires_grad = flag
        for m, mode in modes:
            object.__setattr__(m, "training", mode)


class StopForward(Exception):  # noqa: N818 - control flow, not an error
    """Raised by a :class:`LayerProbe` with ``stop=True`` once it has the layer's output."""


class LayerProbe:
    """Read the output of one layer during a forward pass (a forward hook, removed by ``close``).

    ``leaf=True`` replaces the output by a fresh leaf Tensor that requires gradients, so a
    backward pass from anything computed after the layer stops there and leaves ``d/dA``
    in ``probe.output.grad`` (and nothing before the layer records a graph).
    ``stop=True`` ends the forward pass right after the layer (:class:`StopForward`):
    nothing after the layer is computed. A layer that runs more than once per forward pass
    is refused (which of its outputs would be meant?).
    """

    def __init__(self, model: Module, layer: str, leaf: bool = False, stop: bool = False) -> None:
        self.layer, self.leaf, self.stop = layer, leaf, stop
        self.module = get_layer(model, layer)
        self.output: Tensor | None = None
        self.calls = 0
        self._handle = self.module.register_forward_hook(self._hook)

    def _hook(self, module: Module, inputs: tuple[Any, ...], output: Any) -> Any:
        self.calls += 1
        if self.calls > 1:
            raise ValueError(
                f"layer {self.layer!r} runs more than once per forward pass; choose a layer that runs once"
            )
        if not isinstance(output, Tensor):
            raise ValueError(f"layer {self.layer!r} returns {type(output).__name__}, not a single tensor")
        if self.leaf:
            output = Tensor(output.data, requires_grad=True)
        self.output = output
        if self.stop:
            raise StopForward
        return output if self.leaf else None

    def run(self, fn: Callable[[], Any]) -> Any:
        """Call ``fn()`` (a forward pass) with a fresh probe; returns its result (None when stopped)."""
        self.output, self.calls = None, 0
        try:
            result = fn()
        except StopForward:
            result = None
        if self.output is None:
            raise ValueError(f"layer {self.layer!r} did not run in the forward pass (a branch the model skips?)")
        return result

    def close(self) -> None:
        self._handle.remove()

    def __enter__(self) -> LayerProbe:
        return self

    def __exit__(self, *exc: Any) -> None:
        self.close()


def model_dtype(model: Module) -> np.dtype:
    """The floating dtype of the model's parameters (the default dtype for a parameter-free model)."""
    from ..backend import get_default_dtype

    for p in model.parameters():
        return np.dtype(str(p.data.dtype))
    return np.dtype(get_default_dtype())


def as_batch(x: Any, dtype: np.dtype, who: str) -> tuple[np.ndarray, bool]:
    """``x`` as a float array [N, C, H, W] of ``dtype``, and whether a batch axis was added ([C, H, W] in)."""
    arr = np.asarray(x.numpy() if isinstance(x, Tensor) else x)
    if arr.ndim not in (3, 4):
        raise ValueError(f"{who}: expected an image [C, H, W] or a batch [N, C, H, W], got shape {arr.shape}")
    if arr.dtype.kind not in "fiub":
        raise ValueError(f"{who}: expected numbers, got dtype {arr.dtype}")
    single = arr.ndim == 3
    return np.ascontiguousarray(arr[None] if single else arr, dtype=dtype), single


def check_logits(out: Any, who: str) -> Tensor:
    if not isinstance(out, Tensor) or out.ndim != 2:
        shape = getattr(out, "shape", type(out).__name__)
        raise ValueError(f"{who}: the model must return logits [N, classes], got {shape}")
    return out


def targets(target: Any, logits: np.ndarray, who: str) -> np.ndarray:
    """One class index per sample: ``target`` (an int, or one int per sample), or the
    predicted class (argmax of the logits) where ``target`` is None."""
    n, k = logits.shape
    if target is None:
        return np.argmax(logits, axis=1)
    t = np.asarray(target)
    if t.dtype.kind not in "iu" and not (t.dtype.kind == "f" and np.all(t == np.round(t))):
        raise ValueError(f"{who}: target must be a class index (an int, or one per sample), got {target!r}")
    t = t.astype(np.int64)
    if t.ndim == 0:
        t = np.full(n, int(t))
    if t.shape != (n,):
        raise ValueError(f"{who}: target must be one int or {n} ints (one per sample), got shape {t.shape}")
    bad = t[(t < 0) | (t >= k)]
    if bad.size:
        raise ValueError(f"{who}: target {int(bad[0])} is out of range: the model has {k} classes (0..{k - 1})")
    return t


def check_channel(channel: Any, channels: int, layer: str) -> list[int]:
    """``channel`` (an int or a sequence of ints) as a list, each checked against the layer's channels."""
    many = isinstance(channel, list | tuple | np.ndarray)
    values = list(np.asarray(channel).ravel()) if many else [channel]
    if many and not values:
        raise ValueError("feature_visualization: give at least one channel")
    out = []
    for c in values:
        if isinstance(c, np.integer):
            c = int(c)
        if isinstance(c, bool) or not isinstance(c, int) or not 0 <= c < channels:
            raise ValueError(
                f"channel {c!r} is out of range: layer {layer!r} has {channels} channels (0..{channels - 1})"
            )
        out.append(c)
    return out


def check_progress(progress: Any) -> Callable[[int, int], None] | None:
    if progress is not None and not callable(progress):
        raise TypeError(f"progress must be a function progress(done, total), got {type(progress).__name__}")
    return progress
