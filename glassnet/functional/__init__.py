"""Pure functional ops on NumPy arrays (NCHW), each with its backward beside it.

For every op ``name`` there are ``name_forward(...) -> (out, ctx)``,
``name_backward(grad, ctx) -> grads`` and the front door ``name(...) -> out``
(an :class:`Op`, whose ``.forward`` / ``.backward`` are the two functions).

==================  ==========================================
file                ops
==================  ==========================================
``window.py``       the sliding-window taps shared by conv and pooling
``conv.py``         conv2d (cross-correlation; ``flip=True`` for convolution)
``pool.py``         max_pool2d, avg_pool2d, adaptive_avg_pool2d, global_avg_pool2d
``activation.py``   relu, leaky_relu, sigmoid, tanh, softmax, log_softmax
``linear.py``       linear, flatten, dropout
``norm.py``         batch_norm, local_response_norm
``loss.py``         cross_entropy, binary_cross_entropy_with_logits, mse_loss
==================  ==========================================
"""

from . import meta  # noqa: F401  (shape-only rules for glassnet.trace, attached to the ops above)
from ._op import Context, Op
from .activation import (
    leaky_relu,
    leaky_relu_backward,
    leaky_relu_forward,
    log_softmax,
    log_softmax_backward,
    log_softmax_forward,
    relu,
    relu6,
    relu6_backward,
    relu6_forward,
    relu_backward,
    relu_forward,
    sigmoid,
    sigmoid_backward,
    sigmoid_forward,
    softmax,
    softmax_backward,
    softmax_forward,
    tanh,
    tanh_backward,
    tanh_forward,
)
from .conv import conv2d, conv2d_backward, conv2d_forward
from .linear import (
    dropout,
    dropout_backward,
    dropout_forward,
    flatten,
    flatten_backward,
    flatten_forward,
    linear,
    linear_backward,
    linear_forward,
)
from .loss import (
    NonFiniteLossError,
    binary_cross_entropy_with_logits,
    binary_cross_entropy_with_logits_backward,
    binary_cross_entropy_with_logits_forward,
    cross_entropy,
    cross_entropy_backward,
    cross_entropy_forward,
    mse_loss,
    mse_loss_backward,
    mse_loss_forward,
)
from .norm import (
    batch_norm,
    batch_norm_backward,
    batch_norm_forward,
    local_response_norm,
    local_response_norm_backward,
    local_response_norm_forward,
)
from .pool import (
    adaptive_avg_pool2d,
    adaptive_avg_pool2d_backward,
    adaptive_avg_pool2d_forward,
    avg_pool2d,
    avg_pool2d_backward,
    avg_pool2d_forward,
    global_avg_pool2d,
    global_avg_pool2d_backward,
    global_avg_pool2d_forward,
    max_pool2d,
    max_pool2d_backward,
    max_pool2d_forward,
)

__all__ = [
    "conv2d_forward",
    "conv2d_backward",
    "conv2d",
    "Context",
    "NonFiniteLossError",
    "Op",
    "adaptive_avg_pool2d",
    "adaptive_avg_pool2d_backward",
    "adaptive_avg_pool2d_forward",
    "avg_pool2d",
    "avg_pool2d_backward",
    "avg_pool2d_forward",
    "batch_norm",
    "batch_norm_backward",
    "batch_norm_forward",
    "binary_cross_entropy_with_logits",
    "binary_cross_entropy_with_logits_backward",
    "binary_cross_entropy_with_logits_forward",
    "cross_entropy",
    "cross_entropy_backward",
    "cross_entropy_forward",
    "dropout",
    "dropout_backward",
    "dropout_forward",
    "flatten",
    "flatten_backward",
    "flatten_forward",
    "global_avg_pool2d",
    "global_avg_pool2d_backward",
    "global_avg_pool2d_forward",
    "leaky_relu",
    "leaky_relu_backward",
    "leaky_relu_forward",
    "linear",
    "linear_backward",
    "linear_forward",
    "local_response_norm",
    "local_response_norm_backward",
    "local_response_norm_forward",
    "log_softmax",
    "log_softmax_backward",
    "log_softmax_forward",
    "max_pool2d",
    "max_pool2d_backward",
    "max_pool2d_forward",
    "mse_loss",
    "mse_loss_backward",
    "mse_loss_forward",
    "relu",
    "relu6",
    "relu6_backward",
    "relu6_forward",
    "relu_backward",
    "relu_forward",
    "sigmoid",
    "sigmoid_backward",
    "sigmoid_forward",
    "softmax",
    "softmax_backward",
    "softmax_forward",
    "tanh",
    "tanh_backward",
    "tanh_forward",
]
