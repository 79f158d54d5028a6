"""glassnet: a convolutional neural network library you can see through.

Every operation of a CNN is written on NumPy with its backward pass beside its
forward pass (:mod:`glassnet.functional`), wrapped as layers (:mod:`glassnet.nn`),
trained by optimisers (:mod:`glassnet.optim`) and checked against PyTorch.
"""

from . import fast, functional, nn  # fast: registers the fast kernels onto the ops
from ._version import __version__
from .backend import get_default_dtype, set_default_dtype
from .gradcheck import GradcheckReport, gradcheck
from .inspect import Summary, output_size, receptive_field, summary
from .nn.init import manual_seed

__all__ = [
    "GradcheckReport",
    "Summary",
    "fast",
    "functional",
    "get_default_dtype",
    "gradcheck",
    "manual_seed",
    "nn",
    "output_size",
    "receptive_field",
    "set_default_dtype",
    "summary",
    "__version__",
]
