"""``get_model("sequential", layers=...)``: a plain chain of layers described by one line, so that a
model built by hand is saved and rebuilt like a zoo model (no code in the checkpoint)."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from glassnet.checkpoint import load_checkpoint, save_checkpoint
from glassnet.models import get_model
from glassnet.models.sequential import describe_sequential, parse_layers, sequential
from glassnet.nn import Conv2d, Linear, MaxPool2d, ReLU, Sequential

LINE = "Conv2d(1, 8, 3, stride=1, padding=1); ReLU; MaxPool2d(2, stride=2); Dropout(0.25); Flatten; Linear(1568, 10)"


def test_the_description_builds_the_model_and_back() -> None:
    model = get_model("sequential", layers=LINE, num_classes=10, in_channels=1, rng=0)
    assert describe_sequential(model) == LINE
    assert [type(m).__name__ for m in model] == ["Conv2d", "ReLU", "MaxPool2d", "Dropout", "Flatten", "Linear"]
    assert model[0].padding == 1 and model[2].stride == 2 and model[3].p == 0.25
    assert model(np.zeros((2, 1, 28, 28), np.float32)).shape == (2, 10)
    by_hand = Sequential(Conv2d(3, 4, 5, stride=2), ReLU(), MaxPool2d(2), Linear(4, 2))
    assert (
        describe_sequential(by_hand)
        == "Conv2d(3, 4, 5, stride=2, padding=0); ReLU; MaxPool2d(2, stride=2); Linear(4, 2)"
    )


def test_a_checkpoint_of_it_rebuilds_the_same_model(tmp_path: Path) -> None:
    model = sequential(LINE, rng=3)
    path = save_checkpoint(tmp_path / "m.safetensors", model, architecture="sequential",
                           arch_kwargs={"layers": LINE, "num_classes": 10, "in_channels": 1},
                           input_shape=(1, 28, 28), classes=[str(i) for i in range(10)])  # fmt: skip
    again = load_checkpoint(path).build_model()
    x = np.random.default_rng(0).standard_normal((3, 1, 28, 28)).astype(np.float32)
    model.eval()
    again.eval()
    assert np.array_equal(model(x).numpy(), again(x).numpy())


@pytest.mark.parametrize(
    ("line", "fragment"),
    [
        ("", "non-empty description"),
        ("LSTM(3)", "module 0 ('LSTM(3)') is not one of Conv2d"),
        ("Conv2d(1, 8)", "missing kernel_size"),
        ("Linear(3, 4, bias=0)", "unknown argument 'bias'"),
        ("Conv2d(1, 0, 3)", "out_channels must be a positive integer, got 0"),
        ("Conv2d(1, 8, 3, padding=-1)", "padding must be a non-negative integer"),
        ("ReLU; Linear(3, x)", "module 1 ('Linear(3, x)'): 'x' is not a number"),
        ("; ".join(["ReLU"] * 65), "65 modules, at most 64"),
    ],
)
def test_a_bad_description_is_refused_naming_the_module(line: str, fragment: str) -> None:
    with pytest.raises(ValueError, match=None) as e:
        parse_layers(line)
    assert fragment in str(e.value)


def test_counts_that_disagree_with_the_description_are_refused() -> None:
    with pytest.raises(ValueError, match="num_classes=3, but the last Linear has 10 outputs"):
        sequential(LINE, num_classes=3)
    with pytest.raises(ValueError, match="in_channels=3, but the first Conv2d takes 1"):
        sequential(LINE, in_channels=3)
    with pytest.raises(ValueError, match="no pretrained weights"):
        get_model("sequential", pretrained=True, layers=LINE)
    with pytest.raises(ValueError, match="a description holds only"):
        describe_sequential(Sequential(Conv2d(1, 2, 3), Sequential(ReLU())))
