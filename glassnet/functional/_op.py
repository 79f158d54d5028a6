"""``Op`` and ``Context`` live in :mod:`glassnet.autograd.function`; re-exported here for the ops."""

from ..autograd.function import Context, Meta, Op

__all__ = ["Context", "Meta", "Op"]
