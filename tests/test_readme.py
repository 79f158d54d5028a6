"""The README's Python snippets run as written: the quick start and "Write your own model".

Each section's ``python`` code blocks are executed in order in one namespace (a later
block uses what an earlier one defined), in a temporary working directory.
"""

from __future__ import annotations

import re
from pathlib import Path

import pytest

README = Path(__file__).resolve().parent.parent / "README.md"


def section_blocks(title: str) -> list[str]:
    """The ```python blocks of the README section headed ``## {title}``."""
    text = README.read_text(encoding="utf-8")
    parts = re.split(r"^## ", text, flags=re.MULTILINE)
    body = next((p for p in parts if p.startswith(title + "\n")), None)
    assert body is not None, f"README has no section {title!r}"
    return re.findall(r"^```python\n(.*?)^```", body, flags=re.MULTILINE | re.DOTALL)


def run_blocks(
    blocks: list[str], tmp_path: Path, monkeypatch: pytest.MonkeyPatch, namespace: dict | None = None
) -> dict:
    monkeypatch.chdir(tmp_path)
    namespace = {"__name__": "readme"} if namespace is None else namespace
    for i, code in enumerate(blocks):
        exec(compile(code, f"README block {i}", "exec"), namespace)  # noqa: S102 - the README's own code
    return namespace


def test_quick_start(tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]) -> None:
    blocks = section_blocks("Quick start (Python)")
    assert len(blocks) == 2
    ns = run_blocks(blocks[:1], tmp_path, monkeypatch)
    assert ns["x"].grad.shape == (2, 3, 5, 5) and ns["y"].shape == (2, 3, 3, 3)
    assert all(p.grad is not None for p in ns["model"].parameters())
    out = capsys.readouterr().out
    assert "gradcheck passed" in out and "total parameters:     11,926" in out


@pytest.mark.slow
def test_quick_start_training(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    ns = run_blocks(section_blocks("Quick start (Python)")[1:], tmp_path, monkeypatch)
    assert ns["history"].epochs and (tmp_path / "runs" / "demo").is_dir()


def test_write_your_own_model(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    blocks = section_blocks("Write your own model")
    assert len(blocks) == 4
    ns = run_blocks(blocks[:1], tmp_path, monkeypatch)
    assert float(ns["loss"]) < 2.0  # the claim: 40 Adam steps take the loss well below chance (2.30)
    run_blocks(blocks[1:], tmp_path, monkeypatch, ns)
    out = capsys.readouterr().out
    assert "loss after 40 steps" in out and ns["report"].ok
    assert "trace: input 1×1×28×28 → output 1×10" in out and "block (Conv2d)" in out
    assert "(add)" in out  # the summary's rows for the residual adds
    assert "VGG-16: 15,470,264,320 multiply-accumulates per image" in out
    assert "#1 linear in head (Linear): ∂L/∂out 4×10 → x 4×1568, weight 10×1568, bias 10" in out
    assert ns["stepper"].done


def test_coming_from_keras(tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]) -> None:
    """The glassnet column runs and builds the Keras model's network: same layers, 122,570 parameters."""
    import ast

    from glassnet.models import tf_cnn

    keras, mine = section_blocks("Coming from Keras")
    ast.parse(keras)  # the Keras original is shown, not run (TensorFlow is no dependency)
    assert "input_shape=(32, 32, 3)" in keras and "MaxPooling2D((2, 2))" in keras
    ns = run_blocks([mine], tmp_path, monkeypatch)
    model = ns["model"]
    assert model.num_parameters() == tf_cnn().num_parameters() == 122_570
    assert [p.shape for p in model.parameters()] == [p.shape for p in tf_cnn().parameters()]
    out = capsys.readouterr().out
    assert "total parameters:     122,570" in out
    assert len(ns["history"].epochs) == 2 and 0.0 <= float(out.strip().splitlines()[-1]) <= 1.0


def test_your_own_images_commands_use_real_options() -> None:
    """Every option in the section's commands exists on the command it is given to."""
    from glassnet.cli import cli

    text = README.read_text(encoding="utf-8")
    body = re.split(r"^## ", text, flags=re.MULTILINE)
    section = next(p for p in body if p.startswith("Your own images\n"))
    (bash,) = re.findall(r"^```bash\n(.*?)^```", section, flags=re.MULTILINE | re.DOTALL)
    for line in bash.splitlines():
        words = line.split("#")[0].split()
        assert words[0] == "glassnet"
        command = cli.commands[words[1]]
        known = {o for p in command.params for o in (*p.opts, *p.secondary_opts)}
        for w in words[2:]:
            if w.startswith("--"):
                assert w in known, (line, w)
    for opt in ("--val-split", "--image-size", "--grayscale", "--rgb", "--augment", "--unreadable", "--no-cache",
                "--task", "--threshold", "--pretrained", "--freeze"):  # fmt: skip
        assert opt in section, opt
