"""Running the explorer: uvicorn in the foreground (:func:`serve`) or in a thread
(:class:`BackgroundServer`, for tests and notebooks)."""

from __future__ import annotations

import ipaddress
import socket
import sys
import threading
import time
import webbrowser
from collections.abc import Iterable
from pathlib import Path
from typing import Any


def _extra_hint() -> str:
    from ..backend import install_hint

    return f"the explorer needs FastAPI, uvicorn and python-multipart: {install_hint('explorer')}"


class ExplorerStartError(RuntimeError):
    """The explorer cannot start (missing dependency, address in use, ...)."""


def _require_deps() -> None:
    import importlib.util

    missing = [m for m in ("fastapi", "uvicorn") if importlib.util.find_spec(m) is None]
    if importlib.util.find_spec("python_multipart") is None and importlib.util.find_spec("multipart") is None:
        missing.append("python-multipart")
    if missing:
        raise ExplorerStartError(f"{_extra_hint()} (missing: {', '.join(missing)})")


def is_loopback(host: str) -> bool:
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


def url_for(host: str, port: int) -> str:
    shown = "127.0.0.1" if host in ("0.0.0.0", "") else ("::1" if host == "::" else host)
    if ":" in shown:
        shown = f"[{shown}]"
    return f"http://{shown}:{port}/"


def bind(host: str, port: int) -> socket.socket:
    """A listening TCP socket on (host, port); port 0 picks a free one."""
    if not 0 <= int(port) <= 65535:
        raise ExplorerStartError(f"port must be between 0 and 65535, got {port}")
    try:
        infos = socket.getaddrinfo(host, port, type=socket.SOCK_STREAM, flags=socket.AI_PASSIVE)
    except socket.gaierror as e:
        raise ExplorerStartError(f"cannot resolve host {host!r}: {e.strerror}") from None
    family, _, _, _, addr = infos[0]
    sock = socket.socket(family, socket.SOCK_STREAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    try:
        sock.bind(addr)
    except OSError as e:
        sock.close()
        hint = "; choose another with --port" if e.errno in (98, 48, 10048) else ""
        raise ExplorerStartError(f"cannot listen on {host}:{port}: {e.strerror}{hint}") from None
    sock.listen(128)
    sock.set_inheritable(True)
    return sock


def _config(app: Any, host: str, port: int) -> Any:
    import uvicorn

    return uvicorn.Config(app, host=host, port=port, log_level="warning", access_log=False, lifespan="off")


def serve(
    host: str = "127.0.0.1",
    port: int = 8000,
    runs_dir: str | Path = "runs",
    data_dir: str | Path | None = None,
    checkpoints: Iterable[str | Path] = (),
    open_browser: bool = False,
    folders: Iterable[str | Path] = (),
) -> None:
    """Run the explorer in the foreground until Ctrl-C; prints the URL once it listens."""
    _require_deps()
    import uvicorn

    from .app import create_app

    try:
        app = create_app(runs_dir, data_dir, checkpoints, folders=folders)
    except ValueError as e:  # a --folder that is not a folder
        raise ExplorerStartError(str(e)) from None
    sock = bind(host, port)
    actual_port = sock.getsockname()[1]
    url = url_for(host, actual_port)
    runs = Path(runs_dir).resolve()
    note = "" if runs.is_dir() else ", not there yet"
    print(f"glassnet explorer: {url}  (runs: {runs}{note}; Ctrl-C to stop)", flush=True)
    if not is_loopback(host):
        print(
            f"warning: listening on {host}, not on the loopback interface: anyone who can reach this "
            "machine on that port can use the explorer",
            file=sys.stderr,
            flush=True,
        )
    if open_browser:
        threading.Timer(0.8, webbrowser.open, args=(url,)).start()
    server = uvicorn.Server(_config(app, host, actual_port))
    try:
        server.run(sockets=[sock])
    except KeyboardInterrupt:
        pass
    finally:
        sock.close()


class BackgroundServer:
    """Serve an ASGI app with uvicorn in a daemon thread (``with BackgroundServer(app) as url: ...``)."""

    def __init__(self, app: Any, host: str = "127.0.0.1", port: int = 0) -> None:
        _require_deps()
        import uvicorn

        self.sock = bind(host, port)
        self.port = self.sock.getsockname()[1]
        self.url = url_for(host, self.port)
        self.server = uvicorn.Server(_config(app, host, self.port))
        self.thread = threading.Thread(
            target=self.server.run, kwargs={"sockets": [self.sock]}, name="glassnet-explorer", daemon=True
        )

    def start(self, timeout: float = 15.0) -> str:
        self.thread.start()
        deadline = time.monotonic() + timeout
        while not self.server.started:
            if not self.thread.is_alive() or time.monotonic() > deadline:
                raise ExplorerStartError("the explorer's server thread did not start")
            time.sleep(0.02)
        return self.url

    def stop(self, timeout: float = 10.0) -> None:
        self.server.should_exit = True
        self.thread.join(timeout)
        self.sock.close()

    def __enter__(self) -> str:
        return self.start()

    def __exit__(self, *exc: Any) -> None:
        self.stop()
