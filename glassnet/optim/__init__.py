"""Optimisers, learning-rate schedules and gradient clipping, with PyTorch's semantics.

Optimisers (:class:`SGD`, :class:`Adam`, :class:`AdamW`, :class:`RMSprop`) update
``Parameter.data`` in place from ``Parameter.grad``; frozen parameters and parameters
without a gradient are left alone. Their results match ``torch.optim`` to ~1e-15 in
float64 (see ``tests/test_optim.py``). Schedules live in
:mod:`glassnet.optim.lr_scheduler` and are re-exported here; state dicts are plain
values and arrays, stored with :func:`flatten_state` / :func:`unflatten_state`.

Typical loop::

    opt = AdamW(model.parameters(), lr=1e-3)
    sched = OneCycleLR(opt, max_lr=1e-2, total_steps=len(loader) * epochs)
    for x, y in loader:
        opt.zero_grad()
        loss = F.cross_entropy(model(x), y)
        loss.backward()
        clip_grad_norm_(model.parameters(), 1.0)
        opt.step()
        sched.step()
"""

from . import lr_scheduler
from .adam import Adam, AdamW
from .clip import NonFiniteGradientError, clip_grad_norm_, clip_grad_value_
from .lr_scheduler import (
    CosineAnnealingLR,
    LinearLR,
    LinearWarmup,
    LRScheduler,
    OneCycleLR,
    SequentialLR,
    StepLR,
)
from .optimizer import Optimizer, flatten_state, unflatten_state
from .rmsprop import RMSprop
from .sgd import SGD

__all__ = [
    "SGD",
    "Adam",
    "AdamW",
    "CosineAnnealingLR",
    "LRScheduler",
    "LinearLR",
    "LinearWarmup",
    "NonFiniteGradientError",
    "OneCycleLR",
    "Optimizer",
    "RMSprop",
    "SequentialLR",
    "StepLR",
    "clip_grad_norm_",
    "clip_grad_value_",
    "flatten_state",
    "lr_scheduler",
    "unflatten_state",
]
