"""Shared test setup: the hypothesis profile and the optional-PyTorch helper."""

from __future__ import annotations

import os

import pytest
from hypothesis import settings

# "ci" (the default): few, reproducible examples and no per-example deadline (CPU time is shared).
settings.register_profile("ci", deadline=None, max_examples=25, derandomize=True)
settings.load_profile(os.environ.get("HYPOTHESIS_PROFILE", "ci"))


@pytest.fixture
def torch():
    """The ``torch`` module, or skip the test when PyTorch is not installed (it is only the oracle)."""
    return pytest.importorskip("torch")
