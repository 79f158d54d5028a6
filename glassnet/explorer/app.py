"""The explorer's FastAPI application: a static page plus a small JSON API.

Routes (all answers JSON; errors are ``{"error": message}`` with a 4xx status):

* ``GET  /``                                   the page (``static/index.html``)
* ``GET  /api/info``                           version, directories, limits
* ``GET  /api/samples``                        the bundled sample photographs and their licences
* ``GET  /api/kernels``                        the named kernels of :mod:`glassnet.kernels`
* ``POST /api/upload``                         an image (raw body or multipart field ``file``) → ``{"id"}``
* ``POST /api/kernel``                         apply a kernel → input, output, the size arithmetic, a token
* ``GET  /api/kernel/{token}/pixel?y=&x=``     window ⊙ kernel = products, their sum, the output value
* ``GET  /api/models``                         zoo models and their default input shapes
* ``GET  /api/checkpoints``                    checkpoints the explorer may open
* ``GET  /api/architecture?model=|checkpoint=`` the summary table and totals
* ``GET  /api/checkpoint?checkpoint=``         metadata, classes, where test images come from
* ``GET  /api/testimages?checkpoint=&offset=&limit=``  test-set thumbnails
* ``POST /api/activations``                    every layer's feature maps, first-layer filters, top-k
* ``GET  /api/activations/{token}/unit?layer=&c=&y=&x=``  one unit's value and receptive field
  (``&explain=true``: for a convolution's unit, or a ReLU's right after one, every input channel's
  window, kernel slice and sum, the bias, the total and the ReLU)
* ``GET  /api/runs``                           the runs under the runs directory
* ``GET  /api/runs/{name}?since=``             one run's history (``{"unchanged": true}`` if not newer)
* ``GET  /api/jobs/{id}?since=``               a background job's progress and results; ``DELETE`` cancels it

The views added later install their own routes: :mod:`._why` (``/api/why``, ``/api/why/layers``,
``/api/why/confusion``, ``/api/runs/{name}/metrics``) and :mod:`._backprop` (``/api/backprop``),
:mod:`._playground` (``/api/playground/summary``, ``/data``, ``/testimages``, ``/train``, ``/resume``,
``/save``) and :mod:`._channels`
(``/api/channels``, ``/api/channels/layers``, ``/api/channels/top``).
"""

from __future__ import annotations

import json
import logging
import os
import secrets
import threading
from collections import OrderedDict
from collections.abc import Iterable
from pathlib import Path
from typing import Any, Literal

import numpy as np
from fastapi import FastAPI, Query, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import FileResponse, JSONResponse
from fastapi.staticfiles import StaticFiles
from pydantic import BaseModel, ConfigDict, Field
from starlette.exceptions import HTTPException as StarletteHTTPException
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from .._version import __version__
from ..checkpoint import CheckpointError
from . import _images as img
from . import _kernels as kern
from . import _models as mdl
from . import _sources as src
from ._jobs import Busy, Jobs
from ._runs import AccessError, Roots, clean_history, read_history, run_summary

log = logging.getLogger("glassnet.explorer")

STATIC_DIR = Path(__file__).parent / "static"
SAMPLES_DIR = STATIC_DIR / "samples"

#: Defaults of the upload limits (bytes of the file, pixels of the decoded image).
MAX_UPLOAD_BYTES = 8 * 1024 * 1024
MAX_PIXELS = 16_000_000
#: Images are filtered at most this many pixels a side in the kernel view.
KERNEL_SIDE = 256
#: At most this many channels of one layer are drawn (and this many grid pixels).
MAX_CHANNELS = 256
GRID_PIXEL_BUDGET = 300_000


class ApiError(Exception):
    """An error answered with ``status`` and ``{"error": message}`` (plus ``extra`` fields, if any)."""

    def __init__(self, message: str, status: int = 400, extra: dict[str, Any] | None = None) -> None:
        super().__init__(message)
        self.message, self.status, self.extra = message, status, extra or {}


class _LRU:
    def __init__(self, size: int) -> None:
        self.size, self.items, self.lock = size, OrderedDict(), threading.Lock()

    def put(self, value: Any, key: Any = None) -> Any:
        key = key or secrets.token_urlsafe(9)
        with self.lock:
            self.items[key] = value
            self.items.move_to_end(key)
            while len(self.items) > self.size:
                self.items.popitem(last=False)
        return key

    def get(self, key: Any, what: str) -> Any:
        with self.lock:
            if key not in self.items:
                raise ApiError(f"unknown or expired {what} {key!r}; run it again", 404)
            self.items.move_to_end(key)
            return self.items[key]

    def peek(self, key: Any) -> Any:
        with self.lock:
            return self.items.get(key)


# ----------------------------------------------------------------------------- request bodies


class ImageRef(BaseModel):
    """Where an image comes from: exactly one of the fields."""

    model_config = ConfigDict(extra="forbid")
    sample: str | None = Field(None, max_length=64, description="a bundled sample's name")
    upload: str | None = Field(None, max_length=64, description="an id from /api/upload")
    test: int | None = Field(None, ge=0, description="an index into the checkpoint's test set")
    drawing: str | None = Field(None, description="a data:image/png;base64 URL (the canvas)")

    def which(self) -> str:
        given = [k for k in ("sample", "upload", "test", "drawing") if getattr(self, k) is not None]
        if len(given) != 1:
            raise ApiError(
                "image: give exactly one of 'sample', 'upload', 'test' or 'drawing'"
                + (f" (got {', '.join(given)})" if given else "")
            )
        return given[0]


class KernelRequest(BaseModel):
    model_config = ConfigDict(extra="forbid")
    image: ImageRef
    kernel: str | None = Field(None, max_length=64, description="a named kernel")
    matrix: list[list[float]] | None = Field(None, description="a typed 3×3 or 5×5 kernel")
    stride: int = Field(1, ge=1, le=kern.MAX_STRIDE)
    padding: int = Field(0, ge=0, le=5)
    flip: bool = False
    color: Literal["grey", "rgb"] = "grey"
    display: Literal["auto", "clip", "abs", "normalize"] = "auto"


class ActivationsRequest(BaseModel):
    model_config = ConfigDict(extra="forbid")
    checkpoint: str = Field(..., min_length=1, max_length=4096)
    image: ImageRef
    invert: bool = False
    fit: Literal["auto", "crop", "digit"] = "auto"
    max_channels: int = Field(64, ge=1, le=MAX_CHANNELS)
    top_k: int = Field(5, ge=1, le=20)


# ----------------------------------------------------------------------------- body limit


class BodyLimit:
    """Refuse request bodies over ``limit`` bytes with 413, whether or not Content-Length is sent."""

    class _TooLarge(StarletteHTTPException):
        def __init__(self, seen: int, limit: int) -> None:
            super().__init__(413, _too_large(seen, limit))

    def __init__(self, app: ASGIApp, limit: int) -> None:
        self.app, self.limit = app, limit

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        for k, v in scope.get("headers") or []:
            if k == b"content-length":
                try:
                    n = int(v)
                except ValueError:
                    await _send_json(send, 400, {"error": "invalid Content-Length header"})
                    return
                if n > self.limit:
                    await _send_json(send, 413, {"error": _too_large(n, self.limit)})
                    return
        seen = 0
        started = False

        async def limited_receive() -> Message:
            nonlocal seen
            msg = await receive()
            if msg["type"] == "http.request":
                seen += len(msg.get("body", b""))
                if seen > self.limit:
                    raise BodyLimit._TooLarge(seen, self.limit)
            return msg

        async def tracking_send(msg: Message) -> None:
            nonlocal started
            if msg["type"] == "http.response.start":
                started = True
            await send(msg)

        try:
            await self.app(scope, limited_receive, tracking_send)
        except BodyLimit._TooLarge as e:  # raised outside a route (routes answer it themselves)
            if not started:
                await _send_json(send, 413, {"error": e.detail})


def _too_large(n: int, limit: int) -> str:
    return f"request body too large ({n:,} bytes or more; the limit is {limit:,} bytes)"


async def _send_json(send: Send, status: int, doc: dict[str, Any]) -> None:
    body = json.dumps(doc).encode()
    headers = [(b"content-type", b"application/json"), (b"content-length", str(len(body)).encode())]
    await send({"type": "http.response.start", "status": status, "headers": headers})
    await send({"type": "http.response.body", "body": body})


# ----------------------------------------------------------------------------- the app


class Explorer:
    """State behind the routes: roots, limits and small in-memory caches."""

    def __init__(self, roots: Roots, max_upload_bytes: int, max_pixels: int, cache_dir: Path | None = None) -> None:
        self.roots = roots
        self.cache_dir = cache_dir
        self.jobs = Jobs()
        self.zoo = src.ZooCache()
        self.layer_lists = _LRU(16)
        self.max_upload_bytes = max_upload_bytes
        self.max_pixels = max_pixels
        self.samples = _load_samples()
        self.uploads = _LRU(32)
        self.kernel_results = _LRU(16)
        self.activations = _LRU(8)
        self.checkpoints = mdl.CheckpointCache(4)
        self.summaries = _LRU(16)
        self.datasets = _LRU(2)
        self._dataset_lock = threading.Lock()

    # -- images -------------------------------------------------------------------------
    def decode(self, data: bytes) -> np.ndarray:
        try:
            return img.decode_image(data, max_bytes=self.max_upload_bytes, max_pixels=self.max_pixels)
        except img.ImageInputError as e:
            raise ApiError(str(e), e.status) from None

    def sample_pixels(self, name: str) -> np.ndarray:
        info = self.samples.get(name)
        if info is None:
            raise ApiError(f"unknown sample {name!r}; samples: {', '.join(self.samples)}", 404)
        return self.decode((SAMPLES_DIR / info["file"]).read_bytes())

    def image_pixels(self, ref: ImageRef, loaded: mdl.LoadedCheckpoint | None = None) -> tuple[np.ndarray, str]:
        """uint8 (H, W) or (H, W, 3) and a label for the image a request names."""
        kind = ref.which()
        if kind == "sample":
            return self.sample_pixels(ref.sample or ""), f"sample {ref.sample}"
        if kind == "upload":
            stored: img.StoredImage = self.uploads.get(ref.upload or "", "upload")
            return stored.pixels, stored.name
        if kind == "drawing":
            try:
                px = img.decode_data_url(ref.drawing or "", max_bytes=self.max_upload_bytes, max_pixels=self.max_pixels)
            except img.ImageInputError as e:
                raise ApiError(str(e), e.status) from None
            return px, "drawing"
        if loaded is None:
            raise ApiError("a test image needs a checkpoint (its test set)")
        ds = self.test_set(loaded)
        idx = int(ref.test or 0)
        if idx >= len(ds):
            raise ApiError(f"test image {idx} does not exist: the test set has {len(ds)} images", 404)
        chw = ds.images[idx]
        px = chw[0] if chw.shape[0] == 1 else np.transpose(chw, (1, 2, 0))
        return np.ascontiguousarray(px), f"test image {idx} ({ds.classes[int(ds.labels[idx])]})"

    # -- datasets -----------------------------------------------------------------------
    def dataset_for(self, loaded: mdl.LoadedCheckpoint) -> str | None:
        if loaded.meta.dataset:
            return loaded.meta.dataset
        hist = loaded.path.parent / "history.json"
        if hist.is_file():
            try:  # the run's config: `glassnet train` records its --data there
                cfg = read_history(loaded.path.parent, self.roots).get("config") or {}
                if isinstance(cfg.get("data"), str):
                    return cfg["data"]
            except AccessError:
                pass
        from ..data import CIFAR10_CLASSES, FASHION_MNIST_CLASSES, MNIST_CLASSES, SHAPES_CLASSES

        c = loaded.input_shape[0]
        for classes, gray, rgb in (
            (SHAPES_CLASSES, "shapes", "shapes-rgb"),
            (MNIST_CLASSES, "mnist", None),
            (FASHION_MNIST_CLASSES, "fashion-mnist", None),
            (CIFAR10_CLASSES, None, "cifar10"),
        ):
            if loaded.classes == list(classes):
                return gray if c == 1 else rgb
        return None

    def test_set(self, loaded: mdl.LoadedCheckpoint) -> Any:
        folder = self.folder_of(loaded)
        if folder is not None:
            return self.folder_test_set(loaded, folder)
        name = self.dataset_for(loaded)
        if not name:
            raise ApiError("this checkpoint does not say which dataset it was trained on: no test images", 404)
        key = (name, str(self.roots.data_dir))
        hit = self.datasets.peek(key)
        if hit is not None:
            return hit
        from ..data import DatasetError, load_dataset

        with self._dataset_lock:
            hit = self.datasets.peek(key)
            if hit is not None:
                return hit
            try:
                ds = load_dataset(name, "test", root=self.roots.data_dir, download=False, progress=False)
            except (DatasetError, ValueError, OSError) as e:
                raise ApiError(f"test images of {name!r} are not available: {e}", 404) from None
            self.datasets.put(ds, key)
        return ds

    def folder_of(self, loaded: mdl.LoadedCheckpoint) -> tuple[str, Path] | None:
        """The image folder (one the explorer was started with) a checkpoint was trained on, if any."""
        recorded = loaded.meta.data_folder
        if not recorded:
            return None
        try:
            path = Path(recorded).resolve()
        except (OSError, RuntimeError):
            return None
        return next(((n, p) for n, p in self.roots.folders.items() if p == path), None)

    def folder_test_set(self, loaded: mdl.LoadedCheckpoint, folder: tuple[str, Path]) -> Any:
        """The test images of a folder a checkpoint was trained on (its test/ or val/ part, else the
        part the playground held out), read with the checkpoint's own preprocessing."""
        from dataclasses import replace

        from ._folders import FolderError, folder_info, load_folder

        prep = loaded.meta.image_preprocessing()
        key = ("folder", str(folder[1]), repr(prep), tuple(loaded.classes))
        hit = self.datasets.peek(key)
        if hit is not None:
            return hit
        with self._dataset_lock:
            try:
                info = folder_info(*folder)
                if prep is not None and prep.mode in ("L", "RGB") and prep.size[0] == prep.size[1]:
                    info = replace(info, side=prep.size[0], mode=prep.mode)
                if info.classes != list(loaded.classes):
                    raise FolderError(f"its classes {info.classes} are not the checkpoint's {loaded.classes}")
                ds = load_folder(info)[1]
            except FolderError as e:
                raise ApiError(f"test images of {folder[0]!r} are not available: {e}", 404) from None
            self.datasets.put(ds, key)
        return ds

    # -- checkpoints --------------------------------------------------------------------
    def loaded(self, name: str) -> mdl.LoadedCheckpoint:
        try:
            path = self.roots.checkpoint(name)
            return self.checkpoints.get(path)
        except AccessError as e:
            raise ApiError(str(e), e.status) from None
        except CheckpointError as e:
            raise ApiError(f"cannot load checkpoint {name!r}: {e}", 422) from None

    def subject(self, fields: src.SourceFields) -> src.Subject:
        """The model a request names: ``checkpoint``, or ``model`` (+ ``pretrained``)."""
        if (fields.checkpoint is None) == (fields.model is None):
            raise ApiError("give exactly one of 'checkpoint' (see /api/checkpoints) or 'model' (see /api/models)")
        if fields.checkpoint is not None:
            if fields.pretrained:
                raise ApiError("'pretrained' applies to zoo models, not to a checkpoint (its weights are its own)")
            return src.from_checkpoint(fields.checkpoint, self.loaded(fields.checkpoint))
        try:
            return self.zoo.get(fields.model or "", fields.pretrained)
        except src.SourceError as e:
            raise ApiError(str(e), e.status) from None

    def layers_of(self, subject: src.Subject) -> list[dict[str, Any]]:
        """The layers of ``subject`` a visualisation can be asked about (cached per model)."""
        hit = self.layer_lists.peek(subject.key)
        if hit is None:
            try:
                hit = src.map_layers(subject)
            except (ValueError, TypeError) as e:
                raise _bad(e, 422) from None
            self.layer_lists.put(hit, subject.key)
        return hit

    def check_layer(self, subject: src.Subject, layer: str, what: str, spatial: bool = False) -> dict[str, Any]:
        """The layer entry called ``layer``; 400 naming the valid ones otherwise."""
        layers = [L for L in self.layers_of(subject) if L["spatial"] or not spatial]
        for L in layers:
            if L["name"] == layer:
                return L
        raise ApiError(src.layer_names_message(layers, layer, what), 400, {"valid_layers": [L["name"] for L in layers]})


def _load_samples() -> dict[str, dict[str, Any]]:
    with open(SAMPLES_DIR / "samples.json", encoding="utf-8") as f:
        items = json.load(f)
    return {it["name"]: it for it in items}


def create_app(
    runs_dir: str | Path = "runs",
    data_dir: str | Path | None = None,
    checkpoints: Iterable[str | Path] = (),
    *,
    max_upload_bytes: int = MAX_UPLOAD_BYTES,
    max_pixels: int = MAX_PIXELS,
    cache_dir: str | Path | None = None,
    folders: Iterable[str | Path] = (),
) -> FastAPI:
    """Build the explorer's FastAPI app for a runs directory (and optional data directory and checkpoints).

    Only files under ``runs_dir`` (runs, checkpoints) and the explicitly given
    ``checkpoints`` can be opened through the API; test sets are loaded by dataset
    name from ``data_dir`` (and glassnet's usual places), never downloaded. Feature
    visualisations are cached under ``cache_dir`` (default ``$GLASSNET_CACHE/explorer`` or
    ``~/.cache/glassnet/explorer``). ``folders``: folders of class sub-folders of images that the
    playground may train on (``folder:NAME``); a path that is not a folder raises ValueError.
    """
    from . import _backprop, _channels, _playground, _why

    roots = Roots.create(runs_dir, data_dir, tuple(checkpoints), tuple(folders))
    cache = Path(cache_dir).expanduser().resolve() if cache_dir is not None else default_cache_dir()
    ex = Explorer(roots, int(max_upload_bytes), int(max_pixels), cache)
    app = FastAPI(title="glassnet explorer", version=__version__, docs_url=None, redoc_url=None, openapi_url=None)
    app.state.explorer = ex
    _install_error_handlers(app)
    app.mount("/static", StaticFiles(directory=STATIC_DIR), name="static")
    _routes_page(app, ex)
    _routes_kernels(app, ex)
    _routes_models(app, ex)
    _routes_runs(app, ex)
    _routes_jobs(app, ex)
    _why.install(app, ex)
    _backprop.install(app, ex)
    _playground.install(app, ex)
    _channels.install(app, ex)
    app.add_middleware(BodyLimit, limit=ex.max_upload_bytes * 4 // 3 + 64 * 1024)
    return app


def default_cache_dir() -> Path:
    """``$GLASSNET_CACHE/explorer``, else ``$XDG_CACHE_HOME/glassnet/explorer`` or ``~/.cache/glassnet/explorer``."""
    env = os.environ.get("GLASSNET_CACHE")
    if env:
        return Path(env).expanduser().resolve() / "explorer"
    xdg = os.environ.get("XDG_CACHE_HOME")
    return ((Path(xdg) if xdg else Path.home() / ".cache") / "glassnet" / "explorer").resolve()


# ----------------------------------------------------------------------------- errors


def _install_error_handlers(app: FastAPI) -> None:
    @app.exception_handler(ApiError)
    async def _api_error(request: Request, exc: ApiError) -> JSONResponse:
        return JSONResponse({**exc.extra, "error": exc.message}, status_code=exc.status)

    @app.exception_handler(src.TimeLimit)
    async def _time_limit(request: Request, exc: src.TimeLimit) -> JSONResponse:
        return JSONResponse({"error": str(exc)}, status_code=503)

    @app.exception_handler(Busy)
    async def _busy(request: Request, exc: Busy) -> JSONResponse:
        return JSONResponse({"error": str(exc), "job": exc.job.snapshot(with_result=False)}, status_code=409)

    @app.exception_handler(StarletteHTTPException)
    async def _http_error(request: Request, exc: StarletteHTTPException) -> JSONResponse:
        msg = exc.detail if isinstance(exc.detail, str) else "request failed"
        if exc.status_code == 404 and msg == "Not Found":
            msg = f"no such page or API route: {request.url.path}"
        return JSONResponse({"error": msg}, status_code=exc.status_code, headers=exc.headers)

    @app.exception_handler(RequestValidationError)
    async def _validation_error(request: Request, exc: RequestValidationError) -> JSONResponse:
        parts = []
        for err in exc.errors()[:8]:
            loc = ".".join(str(p) for p in err.get("loc", ()) if p not in ("body",))
            if err.get("type") == "json_invalid":
                parts.append("the request body is not valid JSON")
            else:
                parts.append(f"{loc or 'request'}: {err.get('msg', 'invalid')}")
        return JSONResponse({"error": "invalid request: " + "; ".join(parts)}, status_code=422)

    @app.exception_handler(Exception)
    async def _unexpected(request: Request, exc: Exception) -> JSONResponse:
        log.exception("explorer: unexpected error on %s", request.url.path)
        return JSONResponse({"error": f"internal error ({type(exc).__name__}): {exc}"}, status_code=500)


def _bad(e: Exception, status: int = 400) -> ApiError:
    msg = e.args[0] if e.args and isinstance(e.args[0], str) else str(e)
    return ApiError(msg, status)


# ----------------------------------------------------------------------------- page, samples, uploads


def _routes_page(app: FastAPI, ex: Explorer) -> None:
    @app.get("/", include_in_schema=False)
    def index() -> FileResponse:
        return FileResponse(STATIC_DIR / "index.html", headers={"Cache-Control": "no-cache"})

    @app.get("/api/info")
    def info() -> dict[str, Any]:
        return {
            "version": __version__,
            "runs_dir": str(ex.roots.runs_dir),
            "data_dir": str(ex.roots.data_dir) if ex.roots.data_dir else None,
            "cache_dir": str(ex.cache_dir) if ex.cache_dir else None,
            "folders": {name: str(p) for name, p in ex.roots.folders.items()},
            "limits": {
                "max_upload_bytes": ex.max_upload_bytes,
                "max_pixels": ex.max_pixels,
                "kernel_side": KERNEL_SIDE,
            },
        }

    @app.get("/api/samples")
    def samples() -> list[dict[str, Any]]:
        return [
            {k: it[k] for k in ("name", "title", "author", "source", "licence")}
            | {"url": f"/static/samples/{it['file']}"}
            for it in ex.samples.values()
        ]

    @app.post("/api/upload")
    async def upload(request: Request) -> dict[str, Any]:
        ctype = request.headers.get("content-type", "")
        name = "upload"
        if ctype.startswith("multipart/form-data"):
            try:
                form = await request.form(max_files=1, max_fields=4)
            except StarletteHTTPException:
                raise
            except Exception as e:  # malformed multipart
                raise ApiError(f"malformed multipart body ({e})") from None
            file = form.get("file")
            if file is None or isinstance(file, str):
                raise ApiError("multipart upload: put the image in a file field named 'file'")
            data = await file.read(ex.max_upload_bytes + 1)
            name = (file.filename or "upload")[:100]
        else:
            data = await request.body()
            name = (request.headers.get("x-filename") or "upload")[:100]
        pixels = ex.decode(data)
        stored = img.StoredImage(pixels, name)
        key = ex.uploads.put(stored)
        return {
            "id": key,
            "name": name,
            "width": stored.width,
            "height": stored.height,
            "channels": stored.channels,
            "bytes": len(data),
        }


# ----------------------------------------------------------------------------- kernels


def _routes_kernels(app: FastAPI, ex: Explorer) -> None:
    @app.get("/api/kernels")
    def kernels() -> list[dict[str, Any]]:
        return kern.kernel_catalogue()

    @app.post("/api/kernel")
    def apply(req: KernelRequest) -> dict[str, Any]:
        if req.image.which() == "test":
            raise ApiError("the kernel view takes a sample, an upload or a drawing, not a test image")
        pixels, label = ex.image_pixels(req.image)
        pixels = img.fit_side(pixels, KERNEL_SIDE)
        if req.color == "grey":
            pixels = img.to_grey(pixels)
        elif pixels.ndim == 2:
            pixels = np.repeat(pixels[:, :, None], 3, axis=2)
        try:
            name, k = kern.resolve_kernel(req.kernel, req.matrix)
            h, w = pixels.shape[:2]
            ar_h = kern.arithmetic(h, k.shape[0], req.padding, req.stride, "height")
            ar_w = kern.arithmetic(w, k.shape[1], req.padding, req.stride, "width")
            res = kern.run_kernel(pixels, k, req.stride, req.padding, req.flip)
        except ValueError as e:
            raise _bad(e) from None
        c, ho, wo = res.output.shape
        if (ho, wo) != (ar_h["out"], ar_w["out"]):  # the formula and the engine must agree
            raise ApiError(f"internal mismatch: formula {ar_h['out']}×{ar_w['out']}, engine {ho}×{wo}", 500)
        pic, mode = kern.display_pixels(res.output, req.display, k)
        token = ex.kernel_results.put(res)
        out = res.output
        return {
            "token": token,
            "label": label,
            "kernel": {"name": name, "matrix": k.tolist(), "applied": res.kernel.tolist(), "flip": req.flip},
            "input": {"png": img.png_data_url(pixels), "width": w, "height": h, "channels": c},
            "output": {
                "png": img.png_data_url(pic),
                "width": wo,
                "height": ho,
                "channels": c,
                "min": float(out.min()),
                "max": float(out.max()),
                "mean": float(out.mean()),
                "display": mode,
            },
            "stride": req.stride,
            "padding": req.padding,
            "arithmetic": {"height": ar_h, "width": ar_w},
        }

    @app.get("/api/kernel/{token}/pixel")
    def pixel(token: str, y: int = Query(..., ge=0), x: int = Query(..., ge=0)) -> dict[str, Any]:
        res: kern.KernelResult = ex.kernel_results.get(token, "kernel result")
        try:
            return kern.explain_pixel(res, y, x)
        except ValueError as e:
            raise _bad(e) from None


# ----------------------------------------------------------------------------- models


def _parse_shape(text: str | None) -> tuple[int, int, int] | None:
    if text is None or not text.strip():
        return None
    try:
        parts = tuple(int(p) for p in text.replace("×", ",").replace("x", ",").split(","))
    except ValueError:
        raise ApiError(f"input_shape must be 'C,H,W' (three integers), got {text!r}") from None
    if len(parts) != 3 or not all(1 <= p <= 4096 for p in parts):
        raise ApiError(f"input_shape must be three integers C,H,W between 1 and 4096, got {text!r}")
    return parts  # type: ignore[return-value]


def _routes_models(app: FastAPI, ex: Explorer) -> None:
    @app.get("/api/models")
    def models() -> list[dict[str, Any]]:
        pretrained = set(src.pretrained_models())
        return [
            {"name": n, "input_shape": list(mdl.default_input_shape(n)), "pretrained": n in pretrained}
            for n in mdl.zoo_models()
        ]

    @app.get("/api/checkpoints")
    def checkpoints() -> list[dict[str, Any]]:
        out = []
        for cid, path in ex.roots.list_checkpoints():
            try:
                st = path.stat()
            except OSError:
                continue
            out.append({"id": cid, "file": path.name, "bytes": st.st_size, "mtime": st.st_mtime})
        return out

    @app.get("/api/architecture")
    def architecture(
        model: str | None = Query(None, max_length=64),
        checkpoint: str | None = Query(None, max_length=4096),
        input_shape: str | None = Query(None, max_length=64),
        num_classes: int | None = Query(None, ge=1, le=100_000),
    ) -> dict[str, Any]:
        if (model is None) == (checkpoint is None):
            raise ApiError("give exactly one of 'model' (a zoo name, see /api/models) or 'checkpoint'")
        shape = _parse_shape(input_shape)
        if checkpoint is not None:
            loaded = ex.loaded(checkpoint)
            key = ("ckpt", str(loaded.path), shape or loaded.input_shape)
            title = f"{loaded.meta.architecture} ({checkpoint})"
            net, shape = loaded.model, shape or loaded.input_shape
        else:
            name = model.lower().replace("-", "_")  # type: ignore[union-attr]
            if name not in mdl.zoo_models():
                raise ApiError(f"unknown model {model!r}; zoo models: {', '.join(mdl.zoo_models())}", 404)
            kwargs: dict[str, Any] = {"num_classes": num_classes} if num_classes else {}
            shape = shape or mdl.default_input_shape(name)
            if shape[0] != mdl.default_input_shape(name)[0]:
                kwargs["in_channels"] = shape[0]
            key = ("zoo", name, shape, tuple(sorted(kwargs.items())))
            title = name
            net = None
        hit = ex.summaries.peek(key)
        if hit is not None:
            return hit
        try:
            if net is None:
                net = mdl.build_zoo_model(name, shape_only=True, **kwargs)
                doc = mdl.summary_dict(net, shape, title)
            else:
                with loaded.lock:  # the summary traces the model's forward: not while it runs on an image
                    doc = mdl.summary_dict(net, shape, title)
        except (ValueError, TypeError) as e:
            raise _bad(e) from None
        ex.summaries.put(doc, key)
        return doc

    @app.get("/api/checkpoint")
    def checkpoint_info(checkpoint: str = Query(..., min_length=1, max_length=4096)) -> dict[str, Any]:
        loaded = ex.loaded(checkpoint)
        doc = loaded.describe()
        doc["id"] = checkpoint
        try:
            ds = ex.test_set(loaded)
            doc["test_images"] = {"available": True, "dataset": ds.name, "count": len(ds), "message": None}
        except ApiError as e:
            doc["test_images"] = {"available": False, "dataset": ex.dataset_for(loaded), "count": 0, "message": str(e)}
        first = mdl.first_conv(loaded.model)
        doc["first_conv"] = first[0] if first else None
        return doc

    @app.get("/api/testimages")
    def test_images(
        checkpoint: str = Query(..., min_length=1, max_length=4096),
        offset: int = Query(0, ge=0),
        limit: int = Query(24, ge=1, le=200),
    ) -> dict[str, Any]:
        loaded = ex.loaded(checkpoint)
        ds = ex.test_set(loaded)
        items = []
        for i in range(offset, min(offset + limit, len(ds))):
            chw = ds.images[i]
            px = chw[0] if chw.shape[0] == 1 else np.transpose(chw, (1, 2, 0))
            label = int(ds.labels[i])
            items.append({"index": i, "label": label, "class": ds.classes[label], "png": img.png_data_url(px)})
        return {"dataset": ds.name, "count": len(ds), "offset": offset, "items": items}

    @app.post("/api/activations")
    def activations(req: ActivationsRequest) -> dict[str, Any]:
        loaded = ex.loaded(req.checkpoint)
        pixels, label = ex.image_pixels(req.image, loaded)
        fit = req.fit
        if fit == "auto":
            fit = "digit" if req.image.drawing is not None else "crop"
        try:
            x, view = mdl.prepare_input(pixels, loaded.input_shape, loaded.mean, loaded.std, fit, req.invert)
        except ValueError as e:
            raise _bad(e) from None
        with loaded.lock:
            try:
                logits, records = mdl.trace(loaded.model, x)
            except ValueError as e:
                raise _bad(e, 422) from None
        doc = mdl.describe_activations(loaded, logits, records, req.max_channels, req.top_k, GRID_PIXEL_BUDGET)
        token = ex.activations.put((records, (int(x.shape[2]), int(x.shape[3]))))
        doc["token"] = token
        doc["label"] = label
        doc["input"] = {"png": img.png_data_url(view), "height": int(x.shape[2]), "width": int(x.shape[3])}
        return doc

    @app.get("/api/activations/{token}/unit")
    def unit(
        token: str,
        layer: int = Query(..., ge=0),
        c: int = Query(0, ge=0),
        y: int = Query(0, ge=0),
        x: int = Query(0, ge=0),
        explain: bool = Query(False, description="break a convolution's unit down into windows and kernels"),
    ) -> dict[str, Any]:
        records, input_hw = ex.activations.get(token, "activation result")
        if layer >= len(records):
            raise ApiError(f"layer {layer} does not exist: the model has {len(records)} recorded layers")
        try:
            doc = mdl.unit_info(records[layer], layer, c, y, x, input_hw)
            if explain:
                doc["computation"] = mdl.conv_unit(records, layer, c, y, x)
        except ValueError as e:
            raise _bad(e) from None
        return doc


# ----------------------------------------------------------------------------- jobs


def _routes_jobs(app: FastAPI, ex: Explorer) -> None:
    def job_of(job_id: str) -> Any:
        job = ex.jobs.get(job_id)
        if job is None:
            raise ApiError(f"unknown or expired job {job_id!r}", 404)
        return job

    @app.get("/api/jobs/{job_id}")
    def job_status(job_id: str, since: int | None = Query(None, ge=0)) -> dict[str, Any]:
        job = job_of(job_id)
        if since is not None and since == job.version:
            return {"id": job.id, "unchanged": True, "version": job.version, "status": job.status}
        return job.snapshot()

    @app.delete("/api/jobs/{job_id}")
    def job_cancel(job_id: str) -> dict[str, Any]:
        job = job_of(job_id)
        job.cancel()
        ex.jobs.wait(job_id, timeout=10.0)
        return job.snapshot(with_result=False)


# ----------------------------------------------------------------------------- runs


def _routes_runs(app: FastAPI, ex: Explorer) -> None:
    @app.get("/api/runs")
    def runs() -> dict[str, Any]:
        return {"runs_dir": str(ex.roots.runs_dir), "runs": [run_summary(r, ex.roots) for r in ex.roots.list_runs()]}

    @app.get("/api/runs/{name}")
    def run(name: str, since: int | None = Query(None, ge=0)) -> dict[str, Any]:
        try:
            path = ex.roots.run_dir(name)
            mtime_ns = ex.roots.history_file(path).stat().st_mtime_ns
            if since is not None and since == mtime_ns:
                return {"name": name, "unchanged": True, "mtime_ns": mtime_ns}
            doc = clean_history(read_history(path, ex.roots))
        except AccessError as e:
            raise ApiError(str(e), e.status) from None
        except OSError as e:
            raise ApiError(f"run {name!r} cannot be read ({e.strerror})", 404) from None
        doc["name"] = name
        doc["mtime_ns"] = mtime_ns
        doc["unchanged"] = False
        return doc
