"""Shared test setup: the hypothesis profile and the optional-PyTorch helper."""

from __future__ import annotations

import os
from collections.abc import Iterator

import pytest
from hypothesis import settings

# "ci" (the default): few, reproducible examples and no per-example deadline (CPU time is shared).
settings.register_profile("ci", deadline=None, max_examples=25, derandomize=True)
# "thorough": HYPOTHESIS_PROFILE=thorough for many random examples (run after changing a kernel).
settings.register_profile("thorough", deadline=None, max_examples=500)
settings.load_profile(os.environ.get("HYPOTHESIS_PROFILE", "ci"))


@pytest.fixture
def torch():
    """The ``torch`` module, or skip the test when PyTorch is not installed (it is only the oracle)."""
    return pytest.importorskip("torch")


def pytest_configure(config: pytest.Config) -> None:
    config.addinivalue_line("markers", "fast_only: tests the fast kernels themselves (run on the 'fast' backend only)")


def pytest_generate_tests(metafunc: pytest.Metafunc) -> None:
    """Tests that use the ``backend`` fixture run once per backend ("fast", then "reference")."""
    if "backend" in metafunc.fixturenames:
        names = ["fast"] if metafunc.definition.get_closest_marker("fast_only") else ["fast", "reference"]
        metafunc.parametrize("backend", names, indirect=True)


@pytest.fixture
def backend(request: pytest.FixtureRequest) -> Iterator[str]:
    """Run the test with every op dispatched to one backend (``glassnet.autograd.use_backend``).

    A module opts in with ``pytestmark = pytest.mark.usefixtures("backend")``; a test of a
    fast kernel's internals (its ``ctx.path``, its thresholds) is marked ``fast_only``.
    """
    from glassnet.autograd import use_backend

    name = getattr(request, "param", "fast")
    with use_backend(name):
        yield name
