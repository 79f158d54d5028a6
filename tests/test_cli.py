"""The ``glassnet`` command line: every command's help, the commands themselves on small inputs,
and user errors (one ``error:`` line, exit status 2, no traceback)."""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
from pathlib import Path

import click
import numpy as np
import pytest
from click.testing import CliRunner
from PIL import Image

from glassnet.cli import EXIT_USER_ERROR, cli
from glassnet.data import SHAPES_CLASSES, DataLoader, load_dataset
from glassnet.models import MODELS, lenet5
from glassnet.optim import Adam
from glassnet.train import History, RunInfo, fit

REPO = Path(__file__).resolve().parents[1]


def invoke(*args, cwd=None):
    runner = CliRunner()
    if cwd is None:
        return runner.invoke(cli, [str(a) for a in args])
    old = os.getcwd()
    os.chdir(cwd)
    try:
        return runner.invoke(cli, [str(a) for a in args])
    finally:
        os.chdir(old)


def ok(*args, **kw):
    r = invoke(*args, **kw)
    assert r.exit_code == 0, (r.output, r.exception)
    return r.stdout


@pytest.fixture(scope="module")
def run_dir(tmp_path_factory):
    """A short real run on `shapes` (LeNet-5, 2 epochs on 640 images), written by ``fit``."""
    out = tmp_path_factory.mktemp("cli") / "run"
    train = load_dataset("shapes", "train", n=800)
    mean, std = train.mean_std()
    data = train.subset(range(640))
    loader = DataLoader(data, 32, shuffle=True, seed=0, normalize=(mean, std))
    val = DataLoader(train.subset(range(640, 800)), 160, normalize=(mean, std))
    model = lenet5(rng=0)
    info = RunInfo("lenet5", {"num_classes": 10, "in_channels": 1}, list(SHAPES_CLASSES),
                   {"mean": mean.tolist(), "std": std.tolist()}, (1, 28, 28))  # fmt: skip
    fit(model, loader, val, epochs=2, optimizer=Adam(model.parameters(), lr=3e-3), run_dir=out, info=info,
        config={"model": "lenet5", "data": "shapes"}, progress=False)  # fmt: skip
    return out


@pytest.fixture(scope="module")
def pngs(tmp_path_factory):
    """Two `shapes` test images (a circle and a square) as PNG files, and a 20×16 RGB picture."""
    d = tmp_path_factory.mktemp("images")
    test = load_dataset("shapes", "test", n=200)
    paths = []
    for label in (0, 1):
        i = int(np.flatnonzero(test.labels == label)[0])
        paths.append(d / f"{SHAPES_CLASSES[label]}.png")
        Image.fromarray(test.images[i, 0]).save(paths[-1])
    rgb = d / "picture.png"
    Image.fromarray(np.random.default_rng(0).integers(0, 256, (16, 20, 3), dtype=np.uint8)).save(rgb)
    return paths, rgb


# ----------------------------------------------------------------------------------- help
def _command_paths(group=cli, prefix=()):
    for name, cmd in group.commands.items():
        yield (*prefix, name), cmd
        if isinstance(cmd, click.Group):
            yield from _command_paths(cmd, (*prefix, name))


COMMANDS = list(_command_paths())


def test_all_documented_commands_exist():
    names = {" ".join(p) for p, _ in COMMANDS}
    want = {"train", "evaluate", "predict", "summary", "kernel", "datasets", "datasets list", "datasets fetch", "plot",
            "explore", "demo"}  # fmt: skip
    assert want <= names


@pytest.mark.parametrize(("path", "cmd"), COMMANDS, ids=[" ".join(p) for p, _ in COMMANDS])
def test_help_for_every_command(path, cmd):
    out = ok(*path, "--help")
    assert out.startswith(f"Usage: cli {' '.join(path)}")
    assert cmd.help.split("\n")[0].strip().rstrip(".")[:40] in " ".join(out.split())
    assert ok(*path, "-h") == out


def test_top_level_help_and_version():
    out = ok("--help")
    for name in ("train", "evaluate", "predict", "summary", "kernel", "datasets", "plot", "explore", "demo"):
        assert re.search(rf"^\s+{name}\s", out, re.M), name
    assert re.search(r"\d+\.\d+", ok("--version"))


def test_train_help_lists_its_options():
    out = ok("train", "--help")
    for opt in ("--model", "--data", "--epochs", "--optimizer", "--schedule", "--augment", "--resume",
                "--checkpoint-every", "--limit", "--out", "--seed"):  # fmt: skip
        assert opt in out, opt


def _subprocess(*args, cwd=None):
    env = dict(os.environ, OPENBLAS_NUM_THREADS="1")
    env["PYTHONPATH"] = str(REPO) + os.pathsep + env.get("PYTHONPATH", "")
    return subprocess.run([sys.executable, "-m", "glassnet", *map(str, args)], capture_output=True, text=True,
                          env=env, cwd=cwd, timeout=120)  # fmt: skip


def test_help_and_a_user_error_in_a_real_process(tmp_path):
    r = _subprocess("--help")
    assert r.returncode == 0 and "Usage: glassnet" in r.stdout
    r = _subprocess("kernel", "--help")
    assert r.returncode == 0 and "--matrix" in r.stdout
    bad = tmp_path / "corrupt.safetensors"
    bad.write_bytes(b"\x10\x00\x00\x00\x00\x00\x00\x00{}")
    r = _subprocess("summary", bad)
    assert r.returncode == EXIT_USER_ERROR
    assert r.stdout == "" and r.stderr.count("\n") == 1 and r.stderr.startswith("error: ")
    assert "Traceback" not in r.stderr


# -------------------------------------------------------------------------------- summary
def test_summary_of_a_zoo_model():
    out = ok("summary", "lenet5")
    assert "Conv2d" in out and "6×28×28" in out and "16×5×5" in out
    assert re.search(r"total parameters:\s+61,706", out)
    assert re.search(r"total parameters:\s+272,279", ok("summary", "resnet20", "--num-classes", "7"))
    assert "1×32×32" in ok("summary", "tf_cnn", "--input-shape", "1,32,32")


def test_summary_list():
    out = ok("summary", "--list")
    assert [line.split()[0] for line in out.splitlines()] == list(MODELS)
    assert "resnet20     input 3×32×32" in out
    assert ok("summary") == out


def test_summary_of_a_checkpoint(run_dir):
    out = ok("summary", run_dir / "last.safetensors")
    assert re.search(r"total parameters:\s+61,706", out) and "input 1×28×28" in out


# --------------------------------------------------------------------------------- kernel
@pytest.mark.parametrize(
    ("args", "width", "height", "size"),
    [
        (["--name", "box_blur", "--stride", "2", "--padding", "valid"],
         "(20 − 3 + 2·0)/2 + 1 = 9", "(16 − 3 + 2·0)/2 + 1 = 7", (9, 7)),
        (["--matrix", "0,-1,0;-1,5,-1;0,-1,0", "--padding", "same"],
         "(20 − 3 + 2·1)/1 + 1 = 20", "(16 − 3 + 2·1)/1 + 1 = 16", (20, 16)),
        (["--matrix", "1,0;0,-1", "--padding", "same", "--stride", "2"],
         "(20 − 2 + 2·0)/2 + 1 = 10", "(16 − 2 + 2·0)/2 + 1 = 8", (10, 8)),
        (["--name", "identity", "--padding", "1", "--stride", "3"],
         "(20 − 3 + 2·1)/3 + 1 = 7", "(16 − 3 + 2·1)/3 + 1 = 6", (7, 6)),
        (["--matrix", "1,1,1,1,1", "--padding", "0", "--stride", "2", "--gray", "--abs"],
         "(20 − 5 + 2·0)/2 + 1 = 8", "(16 − 1 + 2·0)/2 + 1 = 8", (8, 8)),
    ],
)  # fmt: skip
def test_kernel_prints_the_output_size_arithmetic_and_writes_the_image(pngs, tmp_path, args, width, height, size):
    _, picture = pngs
    dest = tmp_path / "out.png"
    out = ok("kernel", picture, *args, "-o", dest)
    assert f"output width: (W − F + 2P)/S + 1 = {width}" in out
    assert f"output height: (W − F + 2P)/S + 1 = {height}" in out
    assert f"wrote {dest} ({size[0]}×{size[1]})" in out
    with Image.open(dest) as im:
        assert im.size == size
        assert im.mode == ("L" if "--gray" in args else "RGB")


def test_kernel_identity_keeps_the_image_and_default_output_name(pngs, tmp_path):
    circle = pngs[0][0]
    copy = tmp_path / "circle.png"
    copy.write_bytes(circle.read_bytes())
    out = ok("kernel", copy, "--name", "identity", "--gray", "--flip")
    assert f"wrote {tmp_path / 'circle-identity.png'}" in out
    with Image.open(copy) as a, Image.open(tmp_path / "circle-identity.png") as b:
        assert np.array_equal(np.asarray(a.convert("L")), np.asarray(b))


def test_kernel_list():
    out = ok("kernel", "--list")
    assert re.search(r"^identity\s+\[\[0\.0, 0\.0, 0\.0\], \[0\.0, 1\.0, 0\.0\]", out, re.M)
    assert "box_blur" in out


# ------------------------------------------------------------------ predict / evaluate
def test_predict_top_k(run_dir, pngs):
    paths, _ = pngs
    out = ok("predict", run_dir / "last.safetensors", *paths, "--top-k", "3")
    blocks = out.strip().split("\n")
    assert len(blocks) == 2 * (1 + 3)
    for b, path in enumerate(paths):
        assert blocks[4 * b] == str(path)
        rows = [re.match(r"^  (\S+)\s+(\d+\.\d\d)%", line) for line in blocks[4 * b + 1 : 4 * b + 4]]
        assert all(rows), blocks
        probs = [float(m.group(2)) for m in rows]
        assert probs == sorted(probs, reverse=True) and 0 < sum(probs) <= 100.01
        assert {m.group(1) for m in rows} <= set(SHAPES_CLASSES)
    every = ok("predict", run_dir / "last.safetensors", paths[0], "--top-k", "50").strip().split("\n")
    assert len(every) == 1 + 10
    assert abs(sum(float(re.search(r"(\d+\.\d\d)%", line).group(1)) for line in every[1:]) - 100) < 0.1


def test_evaluate_a_checkpoint(run_dir):
    out = ok("evaluate", run_dir / "last.safetensors", "--data", "shapes")
    assert out.startswith("shapes (test, 2000 images)")
    assert re.search(r"accuracy \d+\.\d\d%", out) and "confusion matrix" in out
    for name in SHAPES_CLASSES:
        assert re.search(rf"^{name}\s", out, re.M), name
    metrics = json.loads(ok("evaluate", run_dir / "best.safetensors", "--json"))  # data from the run's history
    conf = np.array(metrics["confusion"])
    assert conf.shape == (10, 10) and conf.sum() == 2000
    assert metrics["accuracy"] == pytest.approx(np.trace(conf) / 2000)
    assert metrics["accuracy"] > 0.2  # two short epochs; chance is 0.1


# ------------------------------------------------------------------- datasets, plot, demo
def test_datasets_list():
    out = ok("datasets", "list")
    for name in ("shapes", "shapes-rgb", "mnist", "fashion-mnist", "cifar10", "cifar100"):
        assert re.search(rf"^{name}\s", out, re.M), name
    assert re.search(r"^shapes\s+built-in", out, re.M) and "searched:" in out
    assert ok("datasets") == out


def test_plot_of_runs(run_dir, tmp_path):
    dest = tmp_path / "curves.png"
    assert f"wrote {dest}" in ok("plot", run_dir, "-o", dest)
    with Image.open(dest) as im:
        assert im.format == "PNG" and im.size[0] > 400
    other = tmp_path / "other"
    h = History.load(run_dir)
    h.epochs = [dict(e, train_loss=e["train_loss"] * 2) for e in h.epochs]
    h.save(other)
    assert "wrote curves.png" in ok("plot", run_dir, other, cwd=tmp_path)
    assert (tmp_path / "curves.png").stat().st_size > 0


def test_demo():
    out = ok("demo")
    assert "LeNet-5 forward: logits (8, 10)" in out and "AlexNet" in out
    err = float(re.search(r"worst relative error ([0-9.e+-]+)", out).group(1))
    assert err < 1e-6


# ---------------------------------------------------------------------------- user errors
@pytest.fixture
def bad_files(tmp_path):
    corrupt = tmp_path / "corrupt.safetensors"
    corrupt.write_bytes(np.random.default_rng(1).bytes(1000))
    text = tmp_path / "notes.png"
    text.write_text("not an image")
    empty = tmp_path / "empty"
    empty.mkdir()
    return {"corrupt": corrupt, "notimage": text, "empty": empty, "missing": tmp_path / "missing.png"}


USER_ERRORS = {
    "unknown model": (["summary", "nosuch"], "unknown model 'nosuch'"),
    "unknown model to train": (["train", "--model", "nosuch", "--limit", "50", "--out", "{empty}/r"], "unknown model"),
    "bad --matrix": (["kernel", "{picture}", "--matrix", "1,2;x,4"], "--matrix must be numbers"),
    "ragged --matrix": (["kernel", "{picture}", "--matrix", "1,2;3"], "same length"),
    "no kernel": (["kernel", "{picture}"], "exactly one of --name or --matrix"),
    "no image": (["kernel", "--name", "identity"], "give an IMAGE"),
    "unknown kernel": (["kernel", "{picture}", "--name", "nosuch"], "unknown kernel 'nosuch'"),
    "bad padding": (["kernel", "{picture}", "--name", "identity", "--padding", "wide"], "--padding must be"),
    "kernel too big": (
        ["kernel", "{picture}", "--matrix", ";".join([",".join(["1"] * 30)] * 30), "--padding", "valid"],
        "",
    ),  # fmt: skip
    "missing file": (["kernel", "{missing}", "--name", "identity"], "does not exist"),
    "not an image": (["kernel", "{notimage}", "--name", "identity"], "cannot read image"),
    "not an image to predict": (["predict", "{ckpt}", "{notimage}"], "cannot read image"),
    "corrupt checkpoint (evaluate)": (["evaluate", "{corrupt}", "--data", "shapes"], "corrupt.safetensors"),
    "corrupt checkpoint (predict)": (["predict", "{corrupt}", "{picture}"], "corrupt.safetensors"),
    "corrupt checkpoint (summary)": (["summary", "{corrupt}"], "corrupt.safetensors"),
    "resume a non-run directory": (["train", "--resume", "{empty}"], "not a run directory"),
    "resume a missing directory": (["train", "--resume", "{missing}"], "does not exist"),
    "run directory in use": (["train", "--out", "{run}", "--limit", "50"], "already holds a run"),
    "unknown dataset": (["train", "--data", "nosuch", "--out", "{empty}/r"], "unknown dataset 'nosuch'"),
    "unknown dataset to evaluate": (["evaluate", "{ckpt}", "--data", "nosuch"], "unknown dataset 'nosuch'"),
    "wrong image size": (["evaluate", "{ckpt}", "--data", "shapes-rgb"], "the model expects [1, 28, 28]"),
    "unknown dataset to fetch": (["datasets", "fetch", "nosuch"], "unknown dataset 'nosuch'"),
    "plot a non-run": (["plot", "{empty}"], "not a run directory"),
    "unknown option": (["summary", "--bogus"], "No such option"),
    "unknown command": (["frobnicate"], "No such command 'frobnicate'"),
    "bad choice": (["train", "--optimizer", "lbfgs"], "'lbfgs' is not one of"),
}


@pytest.mark.parametrize("case", list(USER_ERRORS))
def test_user_errors_are_one_line_exit_2_no_traceback(case, bad_files, pngs, run_dir):
    args, expect = USER_ERRORS[case]
    names = {**bad_files, "picture": pngs[1], "ckpt": run_dir / "last.safetensors", "run": run_dir}
    r = invoke(*[a.format(**names) for a in args])
    assert r.exit_code == EXIT_USER_ERROR, (r.output, r.exception)
    assert not isinstance(r.exception, Exception) or isinstance(r.exception, SystemExit), r.exception
    assert "Traceback" not in r.output
    lines = r.stderr.splitlines()
    assert len(lines) == 1 and lines[0].startswith("error: "), r.stderr
    assert expect in lines[0]
