"""A new user's first minutes, for real: a fresh clone, the README's first command, then the explorer.

The clone is of the committed HEAD, in a temporary folder; ``uv`` creates its environment
there from ``uv.lock`` (packages come from uv's cache, or from the package index when not
cached). The README's first command must train and print the test accuracy without
installing the developer tools, and then ``uv run glassnet explore`` must serve its page on
127.0.0.1.
"""

from __future__ import annotations

import os
import re
import shutil
import socket
import subprocess
import time
import urllib.request
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]


def first_command() -> str:
    """The README's first command: the first line of its first ```bash block, without the comment."""
    text = (REPO / "README.md").read_text(encoding="utf-8")
    block = re.search(r"^```bash\n(.*?)^```", text, flags=re.MULTILINE | re.DOTALL)
    assert block is not None, "the README has no bash block"
    return block.group(1).splitlines()[0].split("#")[0].strip()


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@pytest.mark.slow
def test_readme_first_command_then_explore_in_a_fresh_clone(tmp_path: Path) -> None:
    uv = shutil.which("uv")
    if uv is None:
        pytest.skip("uv is not installed (the README's first command installs it with pip)")
    if not (REPO / ".git").exists():
        pytest.skip("not a git checkout: nothing to clone")
    command = first_command()
    assert command.startswith("pip install uv && uv run glassnet"), command
    uv_part = command.split("&&", 1)[1].strip()  # uv is already here: no need to pip-install it again
    head = subprocess.run(["git", "-C", str(REPO), "rev-parse", "HEAD"], capture_output=True, text=True, check=True)
    clone = tmp_path / "glassnet"
    subprocess.run(["git", "clone", "--quiet", "--no-checkout", str(REPO), str(clone)], check=True, timeout=300)
    subprocess.run(["git", "-C", str(clone), "checkout", "--quiet", head.stdout.strip()], check=True, timeout=300)
    env = {k: v for k, v in os.environ.items() if not k.startswith(("VIRTUAL_ENV", "UV_PROJECT", "PYTHONPATH"))}
    env.update(OPENBLAS_NUM_THREADS="1", XDG_CACHE_HOME=str(tmp_path / "cache"), NO_COLOR="1")
    if "UV_CACHE_DIR" not in os.environ and "XDG_CACHE_HOME" not in os.environ:  # keep uv's own cache
        env["UV_CACHE_DIR"] = str(Path.home() / ".cache" / "uv")
    elif "UV_CACHE_DIR" not in os.environ:
        env["UV_CACHE_DIR"] = str(Path(os.environ["XDG_CACHE_HOME"]) / "uv")

    r = subprocess.run(uv_part.split(), cwd=clone, env=env, capture_output=True, text=True, timeout=900)
    assert r.returncode == 0, r.stdout[-2000:] + r.stderr[-2000:]
    acc = re.search(r"^test accuracy: ([\d.]+)%", r.stdout, flags=re.MULTILINE)
    assert acc is not None and float(acc.group(1)) >= 90, r.stdout[-2000:]
    site = list((clone / ".venv").glob("lib/python*/site-packages"))
    assert site, "uv made no .venv in the clone"
    for dev_tool in ("playwright", "pytest", "hypothesis", "ruff", "nbclient"):
        assert not (site[0] / dev_tool).exists(), f"the main job installed the developer tool {dev_tool}"

    port = free_port()
    server = subprocess.Popen([uv, "run", "glassnet", "explore", "--port", str(port)], cwd=clone, env=env,
                              stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)  # fmt: skip
    try:
        deadline = time.monotonic() + 180
        page = None
        while time.monotonic() < deadline and server.poll() is None:
            try:
                with urllib.request.urlopen(f"http://127.0.0.1:{port}/", timeout=5) as resp:
                    page = (resp.status, resp.read().decode("utf-8", "replace"))
                break
            except OSError:
                time.sleep(0.5)
        assert server.poll() is None, f"glassnet explore exited: {server.stdout.read() if server.stdout else ''}"
        assert page is not None, "glassnet explore did not answer on 127.0.0.1 within 180 s"
        assert page[0] == 200 and "<html" in page[1].lower() and "glassnet" in page[1].lower()
        with urllib.request.urlopen(f"http://127.0.0.1:{port}/api/info", timeout=10) as resp:
            assert resp.status == 200
    finally:
        server.terminate()
        try:
            server.wait(timeout=20)
        except subprocess.TimeoutExpired:
            server.kill()
            server.wait(timeout=20)
