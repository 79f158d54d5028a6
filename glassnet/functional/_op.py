"""``Op`` and ``Context`` live in :mod:`glassnet.autograd.function`; re-exported here for the ops.

:func:`front_pair` makes the public ``F.name_forward`` / ``F.name_backward`` of an op.
"""

from __future__ import annotations

import functools
from collections.abc import Callable
from typing import Any

from ..autograd.function import Context, Meta, Op

__all__ = ["Context", "Meta", "Op", "front_pair"]


def front_pair(op: Op) -> tuple[Callable[..., tuple[Any, Context]], Callable[..., tuple[Any, ...]]]:
    """``F.name_forward`` and ``F.name_backward``: ``op.forward`` / ``op.backward`` as plain functions.

    They dispatch like the op itself (the fast pair where one is registered and applies,
    the reference inside ``use_backend("reference")``), so a forward and a backward called
    by hand always match: ``ctx.backend`` says which pair made ``ctx``. Name, signature and
    docstring are the reference's (``op.reference_forward``, the code in this package).
    """

    @functools.wraps(op.reference_forward)
    def forward(*args: Any, **kwargs: Any) -> tuple[Any, Context]:
        return op.forward(*args, **kwargs)

    @functools.wraps(op.reference_backward)
    def backward(grad: Any, ctx: Context, **kwargs: Any) -> tuple[Any, ...]:
        return op.backward(grad, ctx, **kwargs)

    return forward, backward
