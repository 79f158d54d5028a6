"""Training: learning, bit-exact reproducibility, checkpoints that survive Ctrl-C and ``kill -9``,
non-finite losses, checkpoint validation, optimiser/scheduler state, and real Fashion-MNIST."""

from __future__ import annotations

import json
import os
import signal
import stat
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest

from glassnet.checkpoint import CheckpointError, load_checkpoint, restore_optimizer, save_checkpoint
from glassnet.data import DataLoader, DatasetError, load_dataset
from glassnet.models import lenet5, tinyvgg
from glassnet.optim import SGD, Adam, AdamW, CosineAnnealingLR, OneCycleLR, RMSprop, StepLR
from glassnet.train import History, TrainingError, evaluate, fit
from glassnet.train.recipe import augmentation, build_run

REPO = Path(__file__).resolve().parents[1]


@pytest.fixture(scope="module")
def shapes_train():
    return load_dataset("shapes", "train", n=1200)


@pytest.fixture(scope="module")
def shapes_test():
    return load_dataset("shapes", "test", n=500)


def _loader(ds, n=None, batch_size=32, seed=0, augment="none"):
    data = ds if n is None else ds.subset(range(n))
    return DataLoader(data, batch_size, shuffle=True, seed=seed, normalize=ds.mean_std(),
                      transform=augmentation(augment, 28))  # fmt: skip


def _weights(model):
    return {k: v.copy() for k, v in model.state_dict().items()}


# ------------------------------------------------------------------------------ learning
def test_fit_learns_shapes(shapes_train, shapes_test, tmp_path):
    model = lenet5(rng=0)
    train = _loader(shapes_train, 1000)
    val = DataLoader(shapes_test.subset(range(200)), 100, normalize=shapes_train.mean_std())
    hist = fit(model, train, val, epochs=3, optimizer=Adam(model.parameters(), lr=2e-3), run_dir=tmp_path,
               progress=False)  # fmt: skip
    losses = [e["train_loss"] for e in hist.epochs]
    assert hist.status == "finished" and len(hist.epochs) == 3
    assert losses[2] < losses[1] < losses[0]
    m = evaluate(model, DataLoader(shapes_test, 250, normalize=shapes_train.mean_std()), shapes_train.classes)
    assert m.accuracy > 0.45, m.report()  # chance is 0.10
    assert m.confusion.sum() == len(shapes_test) and np.trace(m.confusion) == round(m.accuracy * len(shapes_test))
    # the run directory: history (JSON + CSV), curves, both checkpoints
    for name in ("history.json", "history.csv", "curves.png", "last.safetensors", "best.safetensors"):
        assert (tmp_path / name).is_file(), name
    saved = History.load(tmp_path)
    assert saved.status == "finished" and [e["epoch"] for e in saved.epochs] == [1, 2, 3]
    assert saved.best["epoch"] == int(np.argmax([e["val_acc"] for e in hist.epochs])) + 1
    assert load_checkpoint(tmp_path / "last.safetensors").meta.epoch == 3


def test_progress_bar_closes_with_the_epochs_own_loss_and_accuracy(shapes_train, capsys):
    """The bar's loss and accuracy are refreshed at most every POSTFIX_EVERY_S, but the line each
    epoch's bar leaves behind shows that epoch's final figures (those in the history)."""
    model = lenet5(rng=0)
    hist = fit(model, _loader(shapes_train, 320), epochs=2, optimizer=SGD(model.parameters(), lr=0.05),
               progress=True)  # fmt: skip
    err = capsys.readouterr().err
    for e in hist.epochs:
        finals = [line for line in err.replace("\r", "\n").splitlines() if f"epoch {e['epoch']}/2" in line]
        assert f"loss={e['train_loss']:.4f}" in finals[-1] and f"acc={e['train_acc']:.2%}" in finals[-1], finals[-1]


# ------------------------------------------------------------------------ reproducibility
def _one_epoch(ds, seed):
    model = lenet5(rng=seed)
    opt = SGD(model.parameters(), lr=0.05, momentum=0.9, nesterov=True)
    fit(model, _loader(ds, 320, seed=seed, augment="standard"), epochs=1, optimizer=opt, progress=False)
    return _weights(model), opt.state_dict()


def test_same_seed_gives_bit_identical_weights(shapes_train):
    w1, s1 = _one_epoch(shapes_train, seed=7)
    w2, s2 = _one_epoch(shapes_train, seed=7)
    w3, _ = _one_epoch(shapes_train, seed=8)
    assert w1.keys() == w2.keys()
    for k in w1:
        assert np.array_equal(w1[k], w2[k]), k
        assert not np.array_equal(w1[k], w3[k]), k
    for a, b in zip(s1["state"].values(), s2["state"].values(), strict=True):
        assert np.array_equal(a["momentum_buffer"], b["momentum_buffer"])


# ------------------------------------------------------------------- real kill, via the CLI
TRAIN_ARGS = ["--limit", "1000", "--epochs", "2", "--batch-size", "32", "--augment", "standard",
              "--checkpoint-every", "4", "--seed", "3", "--quiet"]  # fmt: skip
STEPS_PER_EPOCH = 29  # 900 training images (10% held out for validation) in batches of 32


def _env():
    env = dict(os.environ, OPENBLAS_NUM_THREADS="1", OMP_NUM_THREADS="1", MKL_NUM_THREADS="1")
    env["PYTHONPATH"] = str(REPO) + os.pathsep + env.get("PYTHONPATH", "")
    return env


def _glassnet(*args):
    return [sys.executable, "-m", "glassnet", *args]


def _run(args, cwd, timeout=180):
    return subprocess.run(_glassnet(*args), cwd=cwd, env=_env(), capture_output=True, text=True, timeout=timeout)


def _start(args, cwd):
    return subprocess.Popen(_glassnet(*args), cwd=cwd, env=_env(), stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                            text=True)  # fmt: skip


def _wait_for_checkpoint(proc, path, min_step, timeout=120):
    """Poll ``path`` until it holds a checkpoint at ``min_step`` or later; every read must load
    (an atomic writer never shows a reader a torn file)."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            pytest.fail(f"training ended before step {min_step} (rc {proc.returncode}): {proc.communicate()}")
        if path.exists():
            step = load_checkpoint(path).meta.step
            if step >= min_step:
                return step
        time.sleep(0.01)
    proc.kill()
    pytest.fail(f"no checkpoint at step >= {min_step} within {timeout} s")


def _tensors(path):
    ckpt = load_checkpoint(path)
    return {
        **{f"model/{k}": v for k, v in ckpt.model_state.items()},
        **{f"optim/{k}": v for k, v in ckpt.optim_arrays.items()},
    }


def _assert_same_final_state(run, reference):
    got, want = _tensors(run / "last.safetensors"), _tensors(reference / "last.safetensors")
    assert got.keys() == want.keys()
    for k in want:
        assert np.array_equal(got[k], want[k]), f"{k} differs from the uninterrupted run"
    assert json.loads((run / "metrics.json").read_text()) == json.loads((reference / "metrics.json").read_text())
    hist = History.load(run)
    assert hist.status == "finished" and [e["epoch"] for e in hist.epochs] == [1, 2]
    steps = [s["step"] for s in hist.steps]
    assert steps == sorted(set(steps)), "resumed history repeats or reorders steps"


@pytest.fixture(scope="module")
def reference_run(tmp_path_factory):
    """The same training, never interrupted."""
    out = tmp_path_factory.mktemp("reference") / "run"
    r = _run(["train", *TRAIN_ARGS, "--out", str(out)], cwd=out.parent)
    assert r.returncode == 0, r.stderr
    assert "test accuracy" in r.stdout
    assert load_checkpoint(out / "last.safetensors").meta.step == 2 * STEPS_PER_EPOCH
    return out


def test_sigint_checkpoints_and_resume_is_exact(reference_run, tmp_path):
    out = tmp_path / "run"
    proc = _start(["train", *TRAIN_ARGS, "--out", str(out)], cwd=tmp_path)
    _wait_for_checkpoint(proc, out / "last.safetensors", min_step=4)
    proc.send_signal(signal.SIGINT)
    stdout, stderr = proc.communicate(timeout=120)
    assert proc.returncode == 130, (stdout, stderr)
    assert "Traceback" not in stderr and f"--resume {out}" in stderr
    ckpt = load_checkpoint(out / "last.safetensors")
    epoch, position = ckpt.meta.epoch, ckpt.meta.loader["position"]
    assert ckpt.meta.step == epoch * STEPS_PER_EPOCH + position and ckpt.meta.step < 2 * STEPS_PER_EPOCH
    assert (epoch, ckpt.meta.loader["epoch"]) in ((0, 0), (1, 1))  # mid-epoch 1 (or, on a slow machine, later)
    hist = History.load(out)
    assert hist.status == "interrupted" and f"step {ckpt.meta.step}" in hist.message
    assert not (out / "metrics.json").exists()

    r = _run(["train", "--resume", str(out), "--quiet"], cwd=tmp_path)
    assert r.returncode == 0, r.stderr
    assert r.stdout.startswith(f"resuming {out}")
    _assert_same_final_state(out, reference_run)


def test_sigkill_after_periodic_checkpoint_then_resume_is_exact(reference_run, tmp_path):
    out = tmp_path / "run"
    proc = _start(["train", *TRAIN_ARGS, "--out", str(out)], cwd=tmp_path)
    seen = _wait_for_checkpoint(proc, out / "last.safetensors", min_step=STEPS_PER_EPOCH + 8)  # in epoch 2
    proc.kill()  # SIGKILL: no handler, no cleanup
    proc.communicate(timeout=30)
    assert proc.returncode == -signal.SIGKILL
    ckpt = load_checkpoint(out / "last.safetensors")  # straight after the kill: whole, never torn
    assert ckpt.meta.step >= seen and ckpt.meta.step % 4 == 0 and ckpt.meta.epoch == 1
    assert History.load(out).status == "running"  # nobody had the chance to say otherwise

    r = _run(["train", "--resume", str(out), "--quiet"], cwd=tmp_path)
    assert r.returncode == 0, r.stderr
    _assert_same_final_state(out, reference_run)


# ------------------------------------------------- stops at an epoch's edge, in-process
class SigintAt:
    """Wraps a DataLoader and sends this process a SIGINT while handing out its ``at``-th batch."""

    def __init__(self, inner, at):
        self.inner, self.at, self.count = inner, at, 0

    def __len__(self):
        return len(self.inner)

    def state_dict(self):
        return self.inner.state_dict()

    def load_state_dict(self, state):
        self.inner.load_state_dict(state)

    def __iter__(self):
        for batch in self.inner:
            self.count += 1
            if self.count == self.at:
                # only with fit's handler in place: the default one would stop the whole test session
                assert signal.getsignal(signal.SIGINT) is not signal.default_int_handler
                os.kill(os.getpid(), signal.SIGINT)
            yield batch


class CrashOnce:
    """A validation loader whose first pass dies (as a ``kill -9`` during validation would)."""

    def __init__(self, inner):
        self.inner, self.crashed = inner, False

    def __iter__(self):
        if not self.crashed:
            self.crashed = True
            raise RuntimeError("killed during validation")
        return iter(self.inner)


def _small_run(ds, run_dir=None, train=None, val=None, resume=False, checkpoint_every=None):
    model = lenet5(rng=0)
    opt = SGD(model.parameters(), lr=0.05, momentum=0.9)
    sched = CosineAnnealingLR(opt, T_max=18)
    val = val or DataLoader(ds.subset(range(1000, 1064)), 64, normalize=ds.mean_std())
    hist = fit(model, train or _loader(ds, 192, augment="crop"), val, epochs=3, optimizer=opt, scheduler=sched,
               scheduler_interval="step", run_dir=run_dir, resume=resume, checkpoint_every=checkpoint_every,
               progress=False)  # fmt: skip
    return model, hist


@pytest.mark.parametrize("at", [3, 6, 12])  # mid-epoch; the last step of epoch 1; the last step of epoch 2
def test_sigint_anywhere_in_an_epoch_resumes_exactly(shapes_train, tmp_path, at):
    reference, _ = _small_run(shapes_train)  # 6 steps per epoch, 3 epochs
    _, hist = _small_run(shapes_train, tmp_path, train=SigintAt(_loader(shapes_train, 192, augment="crop"), at))
    assert hist.status == "interrupted"
    ckpt = load_checkpoint(tmp_path / "last.safetensors")
    assert ckpt.meta.step == at and ckpt.meta.epoch == at // 6  # a whole epoch is closed before stopping
    assert len(hist.epochs) == at // 6
    model, hist = _small_run(shapes_train, tmp_path, resume=True)
    assert hist.status == "finished" and [e["epoch"] for e in hist.epochs] == [1, 2, 3]
    for k, v in reference.state_dict().items():
        assert np.array_equal(model.state_dict()[k], v), k


def test_crash_between_the_last_step_and_the_end_of_an_epoch_resumes_exactly(shapes_train, tmp_path):
    """checkpoint_every divides the epoch: the checkpoint of the epoch's last step must not be one that
    a resumed run would read as 'epoch not finished' (it would train the next epoch's batches twice)."""
    reference, _ = _small_run(shapes_train)
    val = DataLoader(shapes_train.subset(range(1000, 1064)), 64, normalize=shapes_train.mean_std())
    with pytest.raises(RuntimeError, match="killed during validation"):
        _small_run(shapes_train, tmp_path, val=CrashOnce(val), checkpoint_every=3)
    assert load_checkpoint(tmp_path / "last.safetensors").meta.step == 3
    model, _ = _small_run(shapes_train, tmp_path, resume=True, checkpoint_every=3)
    for k, v in reference.state_dict().items():
        assert np.array_equal(model.state_dict()[k], v), k


# -------------------------------------------------------------------------- non-finite loss
class PoisonedLoader:
    """Wraps a DataLoader; the ``at``-th batch it hands out (counting from 1) is all NaN."""

    def __init__(self, inner, at):
        self.inner, self.at, self.count = inner, at, 0

    def __len__(self):
        return len(self.inner)

    def state_dict(self):
        return self.inner.state_dict()

    def load_state_dict(self, state):
        self.inner.load_state_dict(state)

    def __iter__(self):
        for x, y in self.inner:
            self.count += 1
            if self.count == self.at:
                x = np.full_like(x, np.nan)
            yield x, y


def test_fit_returns_only_after_its_plotting_warm_up(shapes_train, tmp_path):
    """fit warms matplotlib up in a background thread; a process that ended while that thread
    was inside matplotlib aborted ("terminate called without an active exception", seen in a
    short resumed MPI run). fit waits for it, also when it stops with an error, and a short
    training in a fresh process exits cleanly."""
    import threading

    def warm_ups() -> list:
        return [t for t in threading.enumerate() if t.name == "glassnet-plot-warm-up" and t.is_alive()]

    model = lenet5(rng=0)
    fit(model, _loader(shapes_train, 64), epochs=1, optimizer=SGD(model.parameters(), lr=0.01),
        run_dir=tmp_path / "ok", progress=False)  # fmt: skip
    assert warm_ups() == []
    with pytest.raises(TrainingError):
        fit(model, PoisonedLoader(_loader(shapes_train, 64), at=1), epochs=1,
            optimizer=SGD(model.parameters(), lr=0.01), run_dir=tmp_path / "bad", progress=False)  # fmt: skip
    assert warm_ups() == []
    script = (
        "import sys; import numpy as np; from glassnet.data import DataLoader, load_dataset; "
        "from glassnet.models import lenet5; from glassnet.optim import SGD; from glassnet.train import fit; "
        "ds = load_dataset('shapes', 'train', n=64); m = lenet5(rng=0); "
        "fit(m, DataLoader(ds, 32), epochs=1, optimizer=SGD(m.parameters(), lr=0.01), run_dir=sys.argv[1], "
        "progress=False)"
    )
    for i in range(3):
        done = subprocess.run([sys.executable, "-c", script, str(tmp_path / f"p{i}")], capture_output=True,
                              text=True, timeout=300)  # fmt: skip
        assert done.returncode == 0, done.stderr[-2000:]


def test_curves_on_the_reused_figure_are_pixel_for_pixel_a_new_figure_s():
    """plot_curves draws on one figure per process, cleared each time (building it was a third of
    a drawing's cost): whatever was drawn before, the picture is the one a new figure gives."""
    import io

    from PIL import Image

    from glassnet.train import history as history_module
    from glassnet.train import plot_curves

    steps = [{"epoch": i / 100, "loss": 2.0 - i / 80} for i in range(100)]
    epochs = [{"epoch": e, "train_loss": 1 / e, "train_acc": 1 - 1 / (e + 1), "val_loss": 1.2 / e,
               "val_acc": 0.9 - 1 / (e + 2)} for e in range(1, 12)]  # fmt: skip
    drawings = [
        [("a", History(epochs=epochs, steps=steps))],
        [("a", History(steps=steps[:5]))],  # no epoch yet: the accuracy axes are empty
        [("a", History(epochs=epochs[:1])), ("b", History(epochs=epochs[:3], steps=steps))],
        [("a", History(epochs=[{"epoch": 1, "train_loss": 1e4, "train_acc": 0.1}]))],
    ]

    def pixels(png: bytes) -> np.ndarray:
        return np.asarray(Image.open(io.BytesIO(png)).convert("RGBA"))

    after_others = [pixels(plot_curves(runs)) for runs in drawings + drawings][len(drawings) :]
    for runs, got in zip(drawings, after_others, strict=True):
        history_module._canvas.clear()  # the next drawing builds a new figure
        want = pixels(plot_curves(runs))
        assert got.shape == want.shape and np.array_equal(got, want), f"{len(runs)} run(s) drawn differently"


def test_non_finite_loss_stops_with_epoch_and_step_and_keeps_the_checkpoint(shapes_train, tmp_path):
    model = lenet5(rng=0)
    opt = SGD(model.parameters(), lr=0.05, momentum=0.9)
    fit(model, _loader(shapes_train, 192), epochs=1, optimizer=opt, run_dir=tmp_path, progress=False)  # 6 steps
    last = tmp_path / "last.safetensors"
    before = last.read_bytes()

    model2 = lenet5(rng=0)
    opt2 = SGD(model2.parameters(), lr=0.05, momentum=0.9)
    poisoned = PoisonedLoader(_loader(shapes_train, 192), at=3)
    with pytest.raises(TrainingError, match=r"non-finite loss at epoch 2, step 9\b") as err:
        fit(model2, poisoned, epochs=3, optimizer=opt2, run_dir=tmp_path, resume=True, checkpoint_every=1,
            progress=False)  # fmt: skip
    assert "last.safetensors holds step 8" in str(err.value)  # what is on disk, in words
    # steps 7 and 8 were checkpointed (checkpoint_every=1), the poisoned step 9 was not
    ckpt = load_checkpoint(last)
    assert ckpt.meta.step == 8 and all(np.all(np.isfinite(v)) for v in ckpt.model_state.values())
    hist = History.load(tmp_path)
    assert hist.status == "failed" and "epoch 2, step 9" in hist.message

    # with no checkpoint inside the epoch, the file from before is left byte for byte
    model3 = lenet5(rng=0)
    opt3 = SGD(model3.parameters(), lr=0.05, momentum=0.9)
    last.write_bytes(before)
    with pytest.raises(TrainingError, match="epoch 2, step 8"):
        fit(model3, PoisonedLoader(_loader(shapes_train, 192), at=2), epochs=3, optimizer=opt3, run_dir=tmp_path,
            resume=True, progress=False)  # fmt: skip
    assert last.read_bytes() == before
    assert load_checkpoint(last).meta.step == 6


# ------------------------------------------------------------------------ checkpoint errors
@pytest.fixture
def checkpoint(tmp_path):
    model = lenet5(rng=0)
    path = save_checkpoint(tmp_path / "model.safetensors", model, architecture="lenet5",
                           arch_kwargs={"num_classes": 10}, classes=[str(i) for i in range(10)],
                           input_shape=(1, 28, 28))  # fmt: skip
    return path, model


def test_checkpoint_round_trip_and_file_format(checkpoint):
    path, model = checkpoint
    raw = path.read_bytes()
    header = json.loads(raw[8 : 8 + int.from_bytes(raw[:8], "little")])  # safetensors: JSON header, raw tensors
    meta = json.loads(header["__metadata__"]["glassnet"])
    assert meta["architecture"] == "lenet5" and meta["input_shape"] == [1, 28, 28] and meta["format"] == 2
    assert {k for k in header if k != "__metadata__"} == {f"model/{k}" for k in model.state_dict()}
    rebuilt = load_checkpoint(path).build_model()
    for k, v in model.state_dict().items():
        assert np.array_equal(rebuilt.state_dict()[k], v)
    assert stat.S_IMODE(path.stat().st_mode) == 0o666 & ~_umask()
    assert [p.name for p in path.parent.iterdir()] == [path.name]  # no temporary file left behind


def _umask():
    mask = os.umask(0o022)
    os.umask(mask)
    return mask


def test_interrupted_write_leaves_the_old_checkpoint(checkpoint, monkeypatch):
    path, _ = checkpoint
    before = path.read_bytes()

    def crash(*args):
        raise OSError("disk full")

    monkeypatch.setattr(os, "replace", crash)
    with pytest.raises(OSError, match="disk full"):
        save_checkpoint(path, lenet5(rng=1))
    monkeypatch.undo()
    assert path.read_bytes() == before
    assert [p.name for p in path.parent.iterdir()] == [path.name]


def test_truncated_checkpoint(checkpoint):
    path, _ = checkpoint
    raw = path.read_bytes()
    for size in (4, 100, len(raw) // 2, len(raw) - 1):
        path.write_bytes(raw[:size])
        with pytest.raises(CheckpointError, match="truncated"):
            load_checkpoint(path)


def test_random_bytes_and_missing_file(tmp_path):
    path = tmp_path / "noise.safetensors"
    path.write_bytes(np.random.default_rng(0).bytes(4096))
    with pytest.raises(CheckpointError, match=str(path)):
        load_checkpoint(path)
    path.write_bytes((20).to_bytes(8, "little") + b"{not json at all!!!}" + b"\0" * 64)
    with pytest.raises(CheckpointError, match="corrupt"):
        load_checkpoint(path)
    with pytest.raises(CheckpointError, match="not found"):
        load_checkpoint(tmp_path / "missing.safetensors")


def test_safetensors_file_without_glassnet_metadata(tmp_path):
    from safetensors.numpy import save_file

    path = tmp_path / "foreign.safetensors"
    save_file({"weight": np.zeros((2, 2), np.float32)}, str(path), metadata={"format": "pt"})
    with pytest.raises(CheckpointError, match="without glassnet metadata"):
        load_checkpoint(path)


def test_mismatched_model_lists_what_does_not_match(checkpoint):
    path, _ = checkpoint
    ckpt = load_checkpoint(path)
    with pytest.raises(CheckpointError) as err:
        ckpt.load_into(lenet5(num_classes=5))  # the last Linear layer (index 11) has other shapes
    msg = str(err.value)
    assert "11.weight" in msg and "11.bias" in msg and "(10, 84)" in msg and "(5, 84)" in msg
    assert "3.weight" not in msg and "7.bias" not in msg  # only what does not match is listed
    wide = lenet5().to(np.float64)  # floating dtypes are cast, as torch's load_state_dict does
    ckpt.load_into(wide)
    assert all(p.dtype == np.float64 for p in wide.parameters())
    np.testing.assert_array_equal(wide.state_dict()["0.weight"], ckpt.model_state["0.weight"].astype(np.float64))
    with pytest.raises(CheckpointError, match="missing keys") as err:
        ckpt.load_into(tinyvgg(in_channels=1, input_size=28))
    assert "block1.0.weight" in str(err.value) and "unexpected keys" in str(err.value)


def test_no_pickle_anywhere():
    """Nothing unpickles, except the .pth reader, whose unpickler resolves only an allow-list
    (tests/test_interop_pth.py refuses os.system, eval, subprocess.Popen, ...)."""
    reader = REPO / "glassnet" / "interop" / "pth.py"
    sources = [p for p in (REPO / "glassnet").rglob("*.py") if p != reader]
    offenders = [str(p) for p in sources if "import pickle" in p.read_text() or "allow_pickle=True" in p.read_text()]
    assert not offenders
    text = reader.read_text()
    assert "class _RestrictedUnpickler(pickle.Unpickler)" in text and "def find_class" in text
    assert "pickle.load(" not in text and "pickle.loads(" not in text


# ------------------------------------------------------------- optimiser/scheduler round trip
OPTIMIZERS = {
    "sgd": lambda ps: SGD(ps, lr=0.05, momentum=0.9, nesterov=True, weight_decay=1e-4),
    "adam": lambda ps: Adam(ps, lr=2e-3),
    "adamw": lambda ps: AdamW(ps, lr=2e-3, weight_decay=0.05),
    "rmsprop": lambda ps: RMSprop(ps, lr=1e-3, momentum=0.5),
}
SCHEDULERS = {
    "cosine": lambda opt: CosineAnnealingLR(opt, T_max=10),
    "step": lambda opt: StepLR(opt, step_size=3, gamma=0.5),
    "onecycle": lambda opt: OneCycleLR(opt, max_lr=0.01, total_steps=10),
}


@pytest.mark.parametrize(("opt_name", "sched_name"), [("sgd", "cosine"), ("adam", "onecycle"), ("adamw", "step"),
                                                      ("rmsprop", "cosine")])  # fmt: skip
def test_optimizer_and_scheduler_state_round_trip(shapes_train, tmp_path, opt_name, sched_name):
    from glassnet import functional as F

    rng = np.random.default_rng(0)
    batches = [(rng.standard_normal((8, 1, 28, 28)).astype(np.float32), rng.integers(0, 10, 8)) for _ in range(10)]

    def make():
        model = lenet5(rng=0)
        opt = OPTIMIZERS[opt_name](model.parameters())
        return model, opt, SCHEDULERS[sched_name](opt)

    def steps(model, opt, sched, part):
        for x, y in part:
            loss = F.cross_entropy(model(x), y)
            model.zero_grad()
            loss.backward()
            opt.step()
            sched.step()

    a = make()
    steps(*a, batches[:5])
    save_checkpoint(tmp_path / "c.safetensors", a[0], optimizer=a[1], scheduler=a[2], epoch=0, step=5)
    b = make()
    ckpt = load_checkpoint(tmp_path / "c.safetensors")
    ckpt.load_into(b[0])
    restore_optimizer(ckpt, b[1])
    b[2].load_state_dict(ckpt.meta.scheduler["state"])
    assert ckpt.meta.scheduler["type"] == type(a[2]).__name__
    assert b[1].param_groups[0]["lr"] == a[1].param_groups[0]["lr"]
    steps(*a, batches[5:])
    steps(*b, batches[5:])
    for k, v in a[0].state_dict().items():
        assert np.array_equal(b[0].state_dict()[k], v), k
    assert b[1].param_groups[0]["lr"] == a[1].param_groups[0]["lr"]


def test_restore_optimizer_checks_the_type(tmp_path):
    model = lenet5(rng=0)
    save_checkpoint(tmp_path / "c.safetensors", model, optimizer=SGD(model.parameters(), lr=0.1))
    with pytest.raises(CheckpointError, match="optimiser state is for SGD"):
        restore_optimizer(load_checkpoint(tmp_path / "c.safetensors"), Adam(model.parameters()))
    save_checkpoint(tmp_path / "d.safetensors", model)
    with pytest.raises(CheckpointError, match="no optimiser state"):
        restore_optimizer(load_checkpoint(tmp_path / "d.safetensors"), Adam(model.parameters()))


# -------------------------------------------------------------------- real Fashion-MNIST
FASHION_DIR = Path("/usr/share/datasets/fashion-mnist")


@pytest.mark.slow
def test_lenet5_learns_real_fashion_mnist_in_one_epoch():
    """LeNet-5, one epoch on the first 10,000 training images: >= 80% on all 10,000 test images."""
    try:
        load_dataset("fashion-mnist", "test", download=False)
    except DatasetError:
        pytest.skip(
            f"Fashion-MNIST not found: {FASHION_DIR} is absent (Debian package dataset-fashion-mnist, installed "
            "by .ci/run) and nothing is cached (glassnet datasets fetch fashion-mnist)"
        )
    run = build_run({"data": "fashion-mnist", "limit": 10_000, "epochs": 1, "batch_size": 16, "optimizer": "adam",
                     "lr": 4e-3, "schedule": "cosine", "val_split": 0, "seed": 0}, download=False)  # fmt: skip
    assert len(run.train.labels) == 10_000 and len(run.test.labels) == 10_000
    hist = fit(run.model, run.train, epochs=1, optimizer=run.optimizer, scheduler=run.scheduler,
               scheduler_interval=run.scheduler_interval, progress=False)  # fmt: skip
    m = evaluate(run.model, run.test, run.info.classes)
    assert m.accuracy >= 0.80, f"test accuracy {m.accuracy:.2%} (train {hist.epochs[0]['train_acc']:.2%})\n{m.report()}"
