"""Starting the explorer: ``serve`` prints its URL and binds to 127.0.0.1; a background server for tests."""

from __future__ import annotations

import json
import subprocess
import sys
import urllib.request
from pathlib import Path

import pytest

pytest.importorskip("fastapi", reason="the explorer needs the 'explorer' extra (fastapi, uvicorn)")

from glassnet.explorer import create_app
from glassnet.explorer._server import BackgroundServer, ExplorerStartError, bind, is_loopback, url_for


def test_serve_prints_its_url_and_listens_on_loopback(tmp_path: Path) -> None:
    code = f"from glassnet.explorer import serve; serve(port=0, runs_dir={str(tmp_path)!r})"
    proc = subprocess.Popen([sys.executable, "-c", code], stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        line = proc.stdout.readline()
        assert line.startswith("glassnet explorer: http://127.0.0.1:"), line
        url = line.split()[2]
        with urllib.request.urlopen(url + "api/info", timeout=10) as r:
            info = json.loads(r.read())
        assert info["runs_dir"] == str(tmp_path.resolve())
        with urllib.request.urlopen(url, timeout=10) as r:
            assert b"glassnet explorer" in r.read()
    finally:
        proc.terminate()
        proc.wait(timeout=10)
    assert "Traceback" not in proc.stderr.read()


def test_background_server_and_port_in_use(tmp_path: Path) -> None:
    with BackgroundServer(create_app(tmp_path)) as url:
        assert url.startswith("http://127.0.0.1:")
        with urllib.request.urlopen(url + "api/runs", timeout=10) as r:
            assert json.loads(r.read())["runs"] == []
        port = int(url.rstrip("/").rsplit(":", 1)[1])
        with pytest.raises(ExplorerStartError, match="choose another with --port"):
            bind("127.0.0.1", port).close()


def test_addresses() -> None:
    assert is_loopback("127.0.0.1") and is_loopback("::1") and is_loopback("localhost")
    assert not is_loopback("0.0.0.0") and not is_loopback("192.168.1.5")
    assert url_for("127.0.0.1", 8000) == "http://127.0.0.1:8000/"
    assert url_for("::1", 8000) == "http://[::1]:8000/"
    assert url_for("0.0.0.0", 80) == "http://127.0.0.1:80/"
    with pytest.raises(ExplorerStartError, match="port"):
        bind("127.0.0.1", 70000)


def test_explore_passes_image_folders_to_the_playground(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    from click.testing import CliRunner

    import glassnet.explorer
    from glassnet.cli import cli
    from glassnet.explorer import serve

    seen: dict = {}
    monkeypatch.setattr(glassnet.explorer, "serve", lambda **kw: seen.update(kw))
    (tmp_path / "pets").mkdir()
    r = CliRunner().invoke(cli, ["explore", "--runs", str(tmp_path), "--folder", str(tmp_path / "pets")])
    assert r.exit_code == 0, r.output
    assert seen["folders"] == (str(tmp_path / "pets"),)
    r = CliRunner().invoke(cli, ["explore", "--folder", str(tmp_path / "nope")])
    assert r.exit_code != 0 and "does not exist" in r.output
    monkeypatch.undo()
    with pytest.raises(ExplorerStartError, match="is not a folder"):
        serve(runs_dir=tmp_path, folders=[__file__])
