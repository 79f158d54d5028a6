"""glassnet in 40 lines: data, model, training, evaluation, checkpoint, summary (a few seconds on one core)."""

import tempfile
from pathlib import Path

import numpy as np

from glassnet import summary
from glassnet.checkpoint import load_checkpoint, save_checkpoint
from glassnet.data import DataLoader, load_dataset
from glassnet.models import lenet5
from glassnet.optim import Adam, CosineAnnealingLR
from glassnet.train import evaluate, fit

# 1. Data: the built-in `shapes` dataset (ten glyph classes, 28×28 grayscale, generated in memory).
train = load_dataset("shapes", "train", n=4000)
test = load_dataset("shapes", "test", n=1000)
norm = train.mean_std()  # per-channel mean/std of the training images
train_loader = DataLoader(train, batch_size=32, shuffle=True, seed=0, normalize=norm)
test_loader = DataLoader(test, batch_size=250, normalize=norm)

# 2. Model, optimiser and a learning-rate schedule stepped after every batch.
model = lenet5(num_classes=10, rng=0)
print(summary(model, (1, 28, 28)))
epochs = 4
opt = Adam(model.parameters(), lr=2e-3)
sched = CosineAnnealingLR(opt, T_max=epochs * len(train_loader))

# 3. Train (forward, loss, backward, update for every mini-batch), then test.
history = fit(model, train_loader, test_loader, epochs=epochs, optimizer=opt, scheduler=sched,
              scheduler_interval="step", progress=False)  # fmt: skip
for e in history.epochs:
    print(f"epoch {e['epoch']}: train loss {e['train_loss']:.3f}, train acc {e['train_acc']:.1%}, "
          f"test acc {e['val_acc']:.1%}")  # fmt: skip
metrics = evaluate(model, test_loader, train.classes)
print(metrics.report())

# 4. Save a checkpoint (safetensors + JSON metadata, written atomically), load it back, check it.
with tempfile.TemporaryDirectory() as tmp:
    path = save_checkpoint(Path(tmp) / "lenet5-shapes.safetensors", model, architecture="lenet5",
                           classes=train.classes, input_shape=(1, 28, 28),
                           normalization={"mean": norm[0].tolist(), "std": norm[1].tolist()})  # fmt: skip
    restored = load_checkpoint(path).build_model()
    x, _ = next(iter(test_loader))
    assert np.array_equal(restored.eval()(x), model.eval()(x))
    print(f"saved and reloaded {path.name}: same predictions; test accuracy {metrics.accuracy:.1%}")
