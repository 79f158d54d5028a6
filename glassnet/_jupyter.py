"""Where glassnet runs: a terminal, or a Jupyter kernel (progress bars and rich output there too)."""

from __future__ import annotations

import sys


def in_notebook() -> bool:
    """True inside a Jupyter (IPython kernel) session."""
    shell = sys.modules.get("IPython")
    if shell is None or "ipykernel" not in sys.modules:
        return False
    try:
        ip = shell.get_ipython()  # type: ignore[attr-defined]
    except Exception:  # pragma: no cover - an odd IPython
        return False
    return ip is not None and type(ip).__name__ == "ZMQInteractiveShell"


def show_progress(progress: bool | None) -> bool:
    """Whether to draw a progress bar: ``progress`` when given, else when stderr is a terminal
    or the code runs in Jupyter (where ``tqdm.auto`` draws a widget)."""
    if progress is not None:
        return bool(progress)
    return sys.stderr.isatty() or in_notebook()
