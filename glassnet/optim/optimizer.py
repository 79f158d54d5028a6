"""``Optimizer``: parameter groups, per-parameter state, and a checkpoint-friendly state dict.

An optimiser holds ``param_groups``, a list of dicts; each has ``"params"`` (a list of
:class:`~glassnet.nn.Parameter`) and its hyper-parameters (``"lr"``, ``"momentum"``,
...). Schedulers change the hyper-parameters in these dicts between steps, exactly as
in PyTorch. ``step()`` updates, in place on ``p.data`` and in the parameter's dtype,
every parameter that has ``requires_grad`` and a gradient (``p.grad is not None``);
the others are skipped and get no state. Gradients are not checked for NaN/inf (as in
PyTorch): use :func:`glassnet.optim.clip_grad_norm_` with ``error_if_nonfinite=True``
for that.

State dict layout
-----------------
``state_dict()`` returns plain Python values and NumPy arrays, never objects::

    {
        "param_groups": [
            {"lr": 0.1, "momentum": 0.9, ..., "params": [0, 1, 2]},   # indices, not arrays
            {"lr": 0.01, ..., "params": [3]},
        ],
        "state": {                       # only parameters that have been updated
            0: {"step": 5, "exp_avg": ndarray, "exp_avg_sq": ndarray},
            ...
        },
    }

Parameters are numbered in order through the groups (group 0's first, then group 1's,
...), as in PyTorch. ``step`` is an ``int``; every other state entry is an array with
the parameter's shape. Arrays are copies: later steps do not change a saved dict.

For storage (safetensors tensors + JSON metadata, no pickle) use
:func:`flatten_state`, which splits the dict into ``{"state.<index>.<name>": array}``
and a JSON-serialisable ``meta`` dict, and :func:`unflatten_state`, its inverse.
Tuples (``betas``) come back from JSON as lists; ``load_state_dict`` turns them back
into tuples.
"""

from __future__ import annotations

import copy
import math
from collections.abc import Callable
from numbers import Real
from typing import Any

import numpy as np

from ..nn.module import Parameter

__all__ = ["Optimizer", "flatten_state", "unflatten_state"]

STATE_FORMAT = "glassnet.optim.state/1"


class Optimizer:
    """Base class of the optimisers (``torch.optim.Optimizer``-like).

    Args:
        params: an iterable of :class:`Parameter`, of ``(name, Parameter)`` pairs (as
            from ``module.named_parameters()``; names then appear in error messages),
            or of dicts ``{"params": [...], "lr": ..., ...}`` defining parameter groups
            whose missing hyper-parameters are taken from ``defaults``.
        defaults: the default hyper-parameters of every group.

    Subclasses implement :meth:`_validate_group`, :meth:`_state_keys` and
    :meth:`_update`.
    """

    def __init__(self, params: Any, defaults: dict[str, Any]) -> None:
        self.defaults: dict[str, Any] = dict(defaults)
        self.param_groups: list[dict[str, Any]] = []
        self.state: dict[Parameter, dict[str, Any]] = {}
        if isinstance(params, Parameter | np.ndarray):
            raise TypeError(
                "params argument given to the optimizer should be an iterable of Parameters or dicts, "
                f"but got {type(params).__name__}"
            )
        if isinstance(params, set | frozenset):
            raise TypeError("params must be an ordered iterable (list, tuple), not a set: its order is random")
        groups = list(params)
        if len(groups) == 0:
            raise ValueError("optimizer got an empty parameter list")
        if not isinstance(groups[0], dict):
            groups = [{"params": groups}]
        for g in groups:
            self.add_param_group(g)

    # -- groups -----------------------------------------------------------------------
    def add_param_group(self, param_group: dict[str, Any]) -> None:
        """Add a group of parameters (a dict with ``"params"``) with its own hyper-parameters."""
        if not isinstance(param_group, dict):
            raise TypeError(f"a parameter group must be a dict, got {type(param_group).__name__}")
        group = dict(param_group)
        params = group.get("params")
        if params is None:
            raise ValueError("a parameter group needs a 'params' entry")
        if isinstance(params, Parameter):
            params = [params]
        elif isinstance(params, set | frozenset):
            raise TypeError("params must be an ordered iterable (list, tuple), not a set: its order is random")
        params = list(params)
        if len(params) == 0:
            raise ValueError("optimizer got an empty parameter list")
        names: list[str] | None = None
        if all(isinstance(p, tuple) and len(p) == 2 for p in params):
            names = [str(n) for n, _ in params]
            params = [p for _, p in params]
        for i, p in enumerate(params):
            if not isinstance(p, Parameter):
                raise TypeError(f"optimizer can only optimize Parameters, but params[{i}] is {type(p).__name__}")
        seen: set[int] = set()
        for p in params:
            if id(p) in seen:
                raise ValueError(f"parameter {p!r} appears twice in one parameter group")
            seen.add(id(p))
        for other in self.param_groups:
            if any(id(q) in seen for q in other["params"]):
                raise ValueError("some parameters appear in more than one parameter group")
        group["params"] = params
        if names is not None:
            group["param_names"] = names
        else:
            group.pop("param_names", None)
        for key, value in self.defaults.items():
            group.setdefault(key, value)
        if "betas" in group:
            group["betas"] = tuple(group["betas"])
        self._validate_group(group)
        self.param_groups.append(group)

    def _validate_group(self, group: dict[str, Any]) -> None:
        """Raise ``ValueError`` naming any invalid hyper-parameter of ``group``."""

    # -- stepping -----------------------------------------------------------------------
    def zero_grad(self, set_to_none: bool = True) -> None:
        """Forget the gradients: ``grad = None`` (default) or fill them with zeros."""
        for group in self.param_groups:
            for p in group["params"]:
                if p.grad is None:
                    continue
                if set_to_none:
                    p.grad = None
                else:
                    p.grad.fill(0)

    def step(self, closure: Callable[[], Any] | None = None) -> Any:
        """Update every parameter that has ``requires_grad`` and a gradient; return ``closure()``'s loss."""
        loss = closure() if closure is not None else None
        index = 0
        for group in self.param_groups:
            for p in group["params"]:
                if p.requires_grad and p.grad is not None:
                    grad = np.asarray(p.grad)
                    if grad.shape != p.data.shape:
                        raise ValueError(
                            f"parameter {self._describe(index, group, p)}: gradient shape {grad.shape} "
                            f"does not match the parameter"
                        )
                    if grad.dtype != p.data.dtype:
                        grad = grad.astype(p.data.dtype)
                    state = self.state.get(p)
                    if state is None:
                        state = self.state[p] = self._init_state(p, group)
                    self._update(p.data, grad, state, group)
                index += 1
        return loss

    def _init_state(self, p: Parameter, group: dict[str, Any]) -> dict[str, Any]:
        """The fresh state of a parameter on its first update."""
        return {}

    def _update(self, param: np.ndarray, grad: np.ndarray, state: dict[str, Any], group: dict[str, Any]) -> None:
        """Update ``param`` in place from ``grad`` (never modified) and ``state``."""
        raise NotImplementedError

    def _state_keys(self, group: dict[str, Any]) -> tuple[set[str], set[str]]:
        """(array entries, integer entries) that a parameter's state has under ``group``."""
        return set(), set()

    @staticmethod
    def _describe(index: int, group: dict[str, Any], p: Parameter) -> str:
        names = group.get("param_names")
        if names is not None:
            pos = next(i for i, q in enumerate(group["params"]) if q is p)
            return f"{index} ({names[pos]!r}, shape {p.data.shape})"
        return f"{index} (shape {p.data.shape})"

    # -- state dict -----------------------------------------------------------------------
    def state_dict(self) -> dict[str, Any]:
        """The optimiser's state; see the module docstring for the layout."""
        groups = []
        state: dict[int, dict[str, Any]] = {}
        index = 0
        for group in self.param_groups:
            packed = {k: copy.deepcopy(v) for k, v in group.items() if k != "params"}
            ids = []
            for p in group["params"]:
                ids.append(index)
                if self.state.get(p):
                    state[index] = {
                        k: (np.array(v, copy=True) if isinstance(v, np.ndarray) else v)
                        for k, v in self.state[p].items()
                    }
                index += 1
            packed["params"] = ids
            groups.append(packed)
        return {"param_groups": groups, "state": state}

    def load_state_dict(self, state_dict: dict[str, Any]) -> None:
        """Load a dict from :meth:`state_dict` (or :func:`unflatten_state`).

        Checks the number of groups, of parameters per group, the state entries and the
        array shapes, and names what does not match. Hyper-parameters come from the
        saved groups (so a scheduler's learning rates are restored too); arrays are
        copied and cast to each parameter's dtype.
        """
        if not isinstance(state_dict, dict) or "param_groups" not in state_dict or "state" not in state_dict:
            raise ValueError("optimizer state dict must have 'param_groups' and 'state' entries")
        saved_groups = state_dict["param_groups"]
        if len(saved_groups) != len(self.param_groups):
            raise ValueError(
                f"loaded state dict has {len(saved_groups)} parameter group(s), "
                f"but the optimizer has {len(self.param_groups)}"
            )
        params: list[Parameter] = []
        id_map: dict[int, int] = {}  # saved index -> position in ``params``
        new_groups = []
        for gi, (saved, group) in enumerate(zip(saved_groups, self.param_groups, strict=True)):
            ids = list(saved.get("params", []))
            if len(ids) != len(group["params"]):
                raise ValueError(
                    f"parameter group {gi} of the loaded state dict has {len(ids)} parameter(s), "
                    f"but the optimizer's group {gi} has {len(group['params'])}"
                )
            for k, saved_index in enumerate(ids):
                if int(saved_index) in id_map:
                    raise ValueError(f"parameter index {saved_index} appears twice in the loaded param_groups")
                id_map[int(saved_index)] = len(params) + k
            new = {k: copy.deepcopy(v) for k, v in saved.items() if k != "params"}
            if "betas" in new:
                new["betas"] = tuple(new["betas"])
            for k, v in group.items():
                new.setdefault(k, v)  # keys the saved group lacks (e.g. param_names)
            new["params"] = group["params"]
            self._validate_group(new)
            new_groups.append(new)
            params.extend(group["params"])

        raw_state = {int(k): v for k, v in state_dict["state"].items()}
        new_state: dict[Parameter, dict[str, Any]] = {}
        group_of = [g for g, group in zip(new_groups, self.param_groups, strict=True) for _ in group["params"]]
        for saved_index in sorted(raw_state):
            if saved_index not in id_map:
                raise ValueError(
                    f"loaded state has an entry for parameter {saved_index}, which is in none of the "
                    f"loaded param_groups"
                )
            index = id_map[saved_index]
            p = params[index]
            entry = raw_state[saved_index]
            arrays, ints = self._state_keys(group_of[index])
            have = set(entry)
            missing = sorted((arrays | ints) - have)
            unexpected = sorted(have - arrays - ints)
            if missing or unexpected:
                raise ValueError(
                    f"state of parameter {index} does not fit {type(self).__name__} with these "
                    f"hyper-parameters: missing {missing}, unexpected {unexpected}"
                )
            loaded: dict[str, Any] = {}
            for key, value in entry.items():
                if key in ints:
                    if isinstance(value, np.ndarray):
                        value = value.item()
                    if not isinstance(value, Real) or value != int(value):
                        raise ValueError(f"state[{index}][{key!r}] must be an integer, got {value!r}")
                    loaded[key] = int(value)
                else:
                    arr = np.asarray(value)
                    if arr.shape != p.data.shape:
                        raise ValueError(
                            f"state[{index}][{key!r}] has shape {arr.shape}, but parameter {index} "
                            f"has shape {p.data.shape}"
                        )
                    loaded[key] = np.array(arr, dtype=p.data.dtype, copy=True)
            new_state[p] = loaded
        for group, new in zip(self.param_groups, new_groups, strict=True):
            group.clear()
            group.update(new)
        self.state = new_state

    def __repr__(self) -> str:
        lines = [f"{type(self).__name__} ("]
        for i, group in enumerate(self.param_groups):
            lines.append(f"Parameter Group {i}")
            for key in sorted(group):
                if key not in ("params", "param_names"):
                    lines.append(f"    {key}: {group[key]}")
        lines.append(")")
        return "\n".join(lines)


def _check_real(name: str, value: Any) -> float:
    if isinstance(value, bool) or not isinstance(value, Real) or not math.isfinite(float(value)):
        raise ValueError(f"Invalid {name}: {value!r} (must be a finite real number)")
    return float(value)


def check_nonneg(name: str, value: Any) -> None:
    """Raise ``ValueError`` unless ``value`` is a finite real ``>= 0``."""
    if _check_real(name, value) < 0:
        raise ValueError(f"Invalid {name}: {value!r} (must be >= 0)")


def check_unit(name: str, value: Any) -> None:
    """Raise ``ValueError`` unless ``0 <= value < 1``."""
    v = _check_real(name, value)
    if not 0.0 <= v < 1.0:
        raise ValueError(f"Invalid {name}: {value!r} (must be in [0, 1))")


def check_bool(name: str, value: Any) -> None:
    if not isinstance(value, bool | np.bool_):
        raise ValueError(f"Invalid {name}: {value!r} (must be True or False)")


# -- flatten / unflatten for safetensors + JSON --------------------------------------------
def flatten_state(state_dict: dict[str, Any]) -> tuple[dict[str, np.ndarray], dict[str, Any]]:
    """Split an optimiser state dict into arrays and JSON-serialisable metadata.

    Returns ``(arrays, meta)``: ``arrays`` maps ``"state.<index>.<name>"`` to the state
    arrays (contiguous copies, ready for ``safetensors.numpy.save_file``); ``meta`` is
    ``{"format": ..., "param_groups": [...], "state": {"<index>": {<non-array entries>}}}``
    and survives ``json.dumps`` / ``json.loads``. :func:`unflatten_state` inverts it.
    """
    arrays: dict[str, np.ndarray] = {}
    scalars: dict[str, dict[str, Any]] = {}
    for index, entry in state_dict["state"].items():
        idx = int(index)
        scalars[str(idx)] = {}
        for key, value in entry.items():
            if "." in key:
                raise ValueError(f"state entry name {key!r} must not contain '.'")
            if isinstance(value, np.ndarray):
                arrays[f"state.{idx}.{key}"] = np.ascontiguousarray(value).copy()
            else:
                scalars[str(idx)][key] = _jsonable(value, f"state[{idx}][{key!r}]")
    groups = []
    for group in state_dict["param_groups"]:
        groups.append({k: _jsonable(v, f"param group entry {k!r}") for k, v in group.items()})
    return arrays, {"format": STATE_FORMAT, "param_groups": groups, "state": scalars}


def unflatten_state(arrays: dict[str, np.ndarray], meta: dict[str, Any]) -> dict[str, Any]:
    """Rebuild the state dict that :func:`flatten_state` split into ``(arrays, meta)``."""
    if meta.get("format") != STATE_FORMAT:
        raise ValueError(f"not an optimizer state (format {meta.get('format')!r}, expected {STATE_FORMAT!r})")
    state: dict[int, dict[str, Any]] = {int(k): dict(v) for k, v in meta["state"].items()}
    for name, arr in arrays.items():
        parts = name.split(".")
        if len(parts) != 3 or parts[0] != "state" or not parts[1].isdigit():
            raise ValueError(f"unexpected array {name!r} in optimizer state (expected 'state.<index>.<name>')")
        state.setdefault(int(parts[1]), {})[parts[2]] = np.asarray(arr)
    groups = [dict(g) for g in meta["param_groups"]]
    for g in groups:
        if "betas" in g:
            g["betas"] = tuple(g["betas"])
    return {"param_groups": groups, "state": dict(sorted(state.items()))}


def _jsonable(value: Any, what: str) -> Any:
    if isinstance(value, bool | np.bool_):
        return bool(value)
    if isinstance(value, int | np.integer):
        return int(value)
    if isinstance(value, float | np.floating):
        return float(value)
    if value is None or isinstance(value, str):
        return value
    if isinstance(value, list | tuple):
        return [_jsonable(v, what) for v in value]
    if isinstance(value, np.ndarray) and value.ndim == 0:
        return value.item()
    raise TypeError(f"{what} of type {type(value).__name__} cannot be stored as JSON")
