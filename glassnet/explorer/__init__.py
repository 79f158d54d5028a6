"""``glassnet explore``: a local web application to look inside convolutions and networks.

Eight views, each with the numbers behind its pictures: **Kernels** (filter a photo
with a named or typed kernel; output-size arithmetic; the sum of products behind any
output pixel), **Architecture** (summary table and layer-stack drawing of any zoo
model or checkpoint), **Activations** (feature maps of every layer, first-layer
filters, top-k predictions, receptive fields), **Training** (live loss and
accuracy curves of the runs under a runs directory), **Why this prediction**
(saliency, SmoothGrad, guided backprop, Grad-CAM and occlusion; a confusion-matrix
cell's test images), **Backprop** (the gradient at every layer, step by step, with a
numerical check per layer), **Playground** (build a small CNN, see its shapes, train
it) and **Channels** (feature visualisations of a layer's channels, and the test
images that excite each most).

FastAPI, uvicorn and python-multipart are ordinary dependencies, so after the README's
first command ``uv run glassnet explore --runs runs --port 8000`` serves the page.

:func:`create_app` builds the ASGI app (for tests and embedding); :func:`serve` runs
it with uvicorn, bound to 127.0.0.1 unless told otherwise. Long computations (feature
visualisations, playground training) run as background jobs, one of each kind at a time.
"""

from __future__ import annotations

from collections.abc import Iterable
from pathlib import Path
from typing import TYPE_CHECKING, Any

from ._server import ExplorerStartError

if TYPE_CHECKING:
    from fastapi import FastAPI

__all__ = ["ExplorerStartError", "create_app", "serve"]


def create_app(
    runs_dir: str | Path = "runs",
    data_dir: str | Path | None = None,
    checkpoints: Iterable[str | Path] = (),
    **limits: Any,
) -> FastAPI:
    """The explorer's FastAPI app (see :func:`glassnet.explorer.app.create_app`; ``folders=``: image
    folders the playground may train on)."""
    from .app import create_app as _create

    return _create(runs_dir, data_dir, checkpoints, **limits)


def serve(
    host: str = "127.0.0.1",
    port: int = 8000,
    runs_dir: str | Path = "runs",
    data_dir: str | Path | None = None,
    checkpoints: Iterable[str | Path] = (),
    open_browser: bool = False,
    folders: Iterable[str | Path] = (),
) -> None:
    """Run the explorer with uvicorn until interrupted, printing its URL first.

    Raises :class:`ExplorerStartError` (a clear one-line message) when the explorer's
    dependencies are missing or the address cannot be listened on (port in use).
    """
    from ._server import serve as _serve

    _serve(
        host=host,
        port=port,
        runs_dir=runs_dir,
        data_dir=data_dir,
        checkpoints=checkpoints,
        open_browser=open_browser,
        folders=folders,
    )
