"""Run directories and checkpoints the explorer may open, and nothing else.

Every path a request names goes through :class:`Roots`: it is resolved (symbolic links
followed, ``..`` collapsed) and must then lie under the runs directory the explorer was
started with (or be one of the checkpoints it was given explicitly); anything else is
refused with :class:`AccessError`. The same holds for the files the explorer finds by
itself (``history.json``, a run's checkpoints): a link that leads out of the runs directory
is not followed, and no path outside it is shown.
"""

from __future__ import annotations

import json
import os
import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

#: A run name: one folder directly under the runs directory.
RUN_NAME = re.compile(r"^[A-Za-z0-9_][A-Za-z0-9._+=,@-]{0,199}$")
#: At most this many per-step points go to the page (the last ones, evenly thinned before).
MAX_STEP_POINTS = 2000


class AccessError(ValueError):
    """A request for something the explorer may not or cannot open; ``status`` is its HTTP status."""

    def __init__(self, message: str, status: int = 403) -> None:
        super().__init__(message)
        self.status = status


def _is_under(path: Path, root: Path) -> bool:
    try:
        path.relative_to(root)
    except ValueError:
        return False
    return True


@dataclass
class Roots:
    """The directories (and explicit checkpoint files) the explorer was started with."""

    runs_dir: Path
    data_dir: Path | None
    checkpoints: tuple[Path, ...]
    #: image folders (class sub-folders) the playground may train on, by the name the page uses
    folders: dict[str, Path] = field(default_factory=dict)

    @classmethod
    def create(
        cls,
        runs_dir: str | os.PathLike[str],
        data_dir: str | os.PathLike[str] | None,
        checkpoints: Any,
        folders: Any = (),
    ) -> Roots:
        """Resolve the directories; a folder that is not a directory is refused (ValueError naming it)."""
        runs = Path(runs_dir).expanduser().resolve()
        data = Path(data_dir).expanduser().resolve() if data_dir is not None else None
        ckpts = tuple(Path(c).expanduser().resolve() for c in (checkpoints or ()))
        named: dict[str, Path] = {}
        for f in folders or ():
            path = Path(f).expanduser().resolve()
            if not path.is_dir():
                raise ValueError(f"image folder {str(f)!r} is not a folder (expected class sub-folders of images)")
            base = "folder:" + (re.sub(r"[^A-Za-z0-9._-]", "_", path.name) or "data")
            name, k = base, 2
            while name in named:
                name, k = f"{base}-{k}", k + 1
            if path not in named.values():
                named[name] = path
        return cls(runs, data, ckpts, named)

    # -- runs ---------------------------------------------------------------------------
    def run_dir(self, name: str) -> Path:
        """The folder of run ``name`` (a direct child of the runs directory holding a history.json)."""
        if not isinstance(name, str) or not RUN_NAME.match(name) or name in (".", ".."):
            raise AccessError(f"invalid run name {name!r}: a run is named by its folder under the runs directory", 400)
        path = (self.runs_dir / name).resolve()
        if path.parent != self.runs_dir:
            raise AccessError(f"run {name!r} is not a folder directly under the runs directory")
        if not (path / "history.json").is_file():
            raise AccessError(f"no run {name!r} (no {name}/history.json under the runs directory)", 404)
        return path

    def list_runs(self) -> list[Path]:
        if not self.runs_dir.is_dir():
            return []
        out = []
        for child in sorted(self.runs_dir.iterdir()):
            if RUN_NAME.match(child.name) and (child / "history.json").is_file():
                resolved = child.resolve()
                if resolved.parent == self.runs_dir:
                    out.append(resolved)
        return out

    def inside(self, path: Path) -> Path:
        """``path`` with its links resolved, if that lies under the runs directory (else AccessError)."""
        try:
            resolved = path.resolve()
        except (OSError, RuntimeError):
            raise AccessError(f"{path.name} cannot be resolved", 404) from None
        if not _is_under(resolved, self.runs_dir):
            raise AccessError(f"{path.name} leads outside the runs directory: not opened")
        return resolved

    def history_file(self, run: Path) -> Path:
        """RUN/history.json, refused when it is a link leading out of the runs directory."""
        return self.inside(run / "history.json")

    # -- checkpoints --------------------------------------------------------------------
    def checkpoint_id(self, path: Path) -> str:
        """How the page names a checkpoint: relative to the runs directory, else the full path."""
        if _is_under(path, self.runs_dir):
            return path.relative_to(self.runs_dir).as_posix()
        return str(path)

    def list_checkpoints(self) -> list[tuple[str, Path]]:
        """(id, path) of the explicit checkpoints and of RUNS/*.safetensors and RUNS/*/*.safetensors."""
        seen: dict[Path, str] = {}
        for p in self.checkpoints:
            if p.is_file():
                seen.setdefault(p, self.checkpoint_id(p))
        if self.runs_dir.is_dir():
            for d in [self.runs_dir, *_subdirs(self.runs_dir)]:
                for f in sorted(d.glob("*.safetensors")):
                    r = f.resolve()
                    if f.is_file() and _is_under(r, self.runs_dir):
                        seen.setdefault(r, self.checkpoint_id(r))
        return sorted(((name, p) for p, name in seen.items()), key=lambda t: t[0])

    def checkpoint(self, name: str) -> Path:
        """Resolve a checkpoint named by a request; only explicit ones or files under the runs directory."""
        if not isinstance(name, str) or not name.strip():
            raise AccessError("no checkpoint named: pass 'checkpoint' (see /api/checkpoints)", 400)
        if "\x00" in name or len(name) > 4096:
            raise AccessError("invalid checkpoint path", 400)
        raw = Path(name).expanduser()
        candidates = [raw] if raw.is_absolute() else [self.runs_dir / raw, raw]
        for cand in candidates:
            try:
                resolved = cand.resolve()
            except (OSError, RuntimeError):
                continue
            allowed = resolved in self.checkpoints or _is_under(resolved, self.runs_dir)
            if not allowed:
                continue
            if resolved.suffix != ".safetensors":
                raise AccessError(f"{name!r} is not a checkpoint (a .safetensors file)", 400)
            if not resolved.is_file():
                raise AccessError(f"checkpoint {name!r} not found", 404)
            return resolved
        raise AccessError(
            f"checkpoint {name!r} is outside the runs directory the explorer was started with "
            "(only checkpoints under it, or given with --checkpoint, can be opened)"
        )


def _subdirs(d: Path) -> list[Path]:
    try:
        return [c for c in sorted(d.iterdir()) if c.is_dir() and not c.name.startswith(".")]
    except OSError:
        return []


# ----------------------------------------------------------------------------- history.json


def read_history(run: Path, roots: Roots) -> dict[str, Any]:
    """Read RUN/history.json (only if it lies under the runs directory once links are resolved);
    raises ``AccessError`` (403 outside, 422 when it is not a history document)."""
    path = roots.history_file(run)
    try:
        text = path.read_text(encoding="utf-8")
    except OSError as e:
        raise AccessError(f"{run.name}/history.json cannot be read ({e.strerror})", 404) from None
    try:
        doc = json.loads(text)
    except json.JSONDecodeError as e:
        raise AccessError(f"{run.name}/history.json is not valid JSON ({e.msg} at line {e.lineno})", 422) from None
    if not isinstance(doc, dict):
        raise AccessError(f"{run.name}/history.json is not a JSON object", 422)
    return doc


def _num(v: Any) -> float | None:
    if isinstance(v, bool) or not isinstance(v, int | float):
        return None
    f = float(v)
    return f if f == f and abs(f) != float("inf") else None


def clean_history(doc: dict[str, Any]) -> dict[str, Any]:
    """Keep the known fields with the expected types (numbers or null); thin long step lists."""
    epochs = []
    for e in doc.get("epochs") or []:
        if isinstance(e, dict) and _num(e.get("epoch")) is not None:
            epochs.append(
                {
                    k: _num(e.get(k))
                    for k in ("epoch", "train_loss", "train_acc", "val_loss", "val_acc", "lr", "seconds")
                }
            )
    steps = [
        {k: _num(s.get(k)) for k in ("step", "epoch", "loss", "acc", "lr")}
        for s in (doc.get("steps") or [])
        if isinstance(s, dict) and _num(s.get("step")) is not None
    ]
    n_steps = len(steps)
    if n_steps > MAX_STEP_POINTS:
        idx = [round(i * (n_steps - 1) / (MAX_STEP_POINTS - 1)) for i in range(MAX_STEP_POINTS)]
        steps = [steps[i] for i in idx]
    best = doc.get("best")
    if isinstance(best, dict):
        best = {"epoch": _num(best.get("epoch")), "val_acc": _num(best.get("val_acc"))}
    else:
        best = None
    status = doc.get("status")
    message = doc.get("message")
    config = doc.get("config") if isinstance(doc.get("config"), dict) else {}
    return {
        "status": status if isinstance(status, str) else "unknown",
        "message": message if isinstance(message, str) else None,
        "config": config,
        "epochs": epochs,
        "steps": steps,
        "total_steps": n_steps,
        "best": best,
    }


def run_summary(run: Path, roots: Roots) -> dict[str, Any]:
    """One line of the run list: status, progress, last numbers, checkpoints."""
    try:
        mtime_ns = roots.history_file(run).stat().st_mtime_ns
        hist = clean_history(read_history(run, roots))
        error = None
    except (AccessError, OSError) as e:
        hist, error, mtime_ns = clean_history({}), str(e) if isinstance(e, AccessError) else "unreadable", 0
    epochs = hist["epochs"]
    cfg = hist["config"]
    ckpts = []
    for p in sorted(run.glob("*.safetensors")):
        try:  # only checkpoints under the runs directory, named relative to it: no outside path is shown
            target = roots.inside(p)
        except AccessError:
            continue
        if target.is_file() and roots.checkpoint_id(target) not in ckpts:
            ckpts.append(roots.checkpoint_id(target))
    return {
        "name": run.name,
        "status": "unreadable" if error else hist["status"],
        "message": error or hist["message"],
        "epochs_done": len(epochs),
        "epochs_planned": _num(cfg.get("epochs")),
        "last": epochs[-1] if epochs else None,
        "best": hist["best"],
        "architecture": cfg.get("model") or cfg.get("architecture"),
        "dataset": cfg.get("data") if isinstance(cfg.get("data"), str) else None,
        "checkpoints": ckpts,
        "has_metrics": _has_file(run / "metrics.json", roots),
        "mtime_ns": mtime_ns,
    }


def _has_file(path: Path, roots: Roots) -> bool:
    try:
        return roots.inside(path).is_file()
    except AccessError:
        return False
