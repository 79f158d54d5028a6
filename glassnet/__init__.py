"""glassnet: a convolutional neural network library you can see through.

Every operation of a CNN is written with its backward pass beside its forward pass
(:mod:`glassnet.functional`, the readable reference; fast kernels apart), recorded by
autograd (:mod:`glassnet.autograd`: users write only ``forward``), wrapped as layers
(:mod:`glassnet.nn`), trained by optimisers (:mod:`glassnet.optim`) and checked against
PyTorch.
"""

from . import autograd, functional, nn
from ._version import __version__
from .autograd import (
    Graph,
    Node,
    Op,
    Tensor,
    cat,
    enable_grad,
    get_backend,
    is_grad_enabled,
    no_grad,
    stack,
    trace,
    use_backend,
)
from .backend import get_default_dtype, set_default_dtype
from .gradcheck import GradcheckReport, gradcheck
from .inspect import Summary, output_size, receptive_field, summary
from .nn.init import manual_seed

__all__ = [
    "Graph",
    "GradcheckReport",
    "Node",
    "Op",
    "Tensor",
    "autograd",
    "cat",
    "enable_grad",
    "get_backend",
    "is_grad_enabled",
    "no_grad",
    "stack",
    "use_backend",
    "Summary",
    "functional",
    "get_default_dtype",
    "gradcheck",
    "manual_seed",
    "nn",
    "output_size",
    "receptive_field",
    "set_default_dtype",
    "summary",
    "trace",
    "__version__",
]
