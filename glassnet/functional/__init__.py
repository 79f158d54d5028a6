"""The ops (NCHW), each a forward with its backward beside it: the readable reference.

Every file here defines its ops as pairs of plain functions, ``name_forward(...) -> (out, ctx)``
and ``name_backward(grad, ctx) -> grads``, written against the Python Array API (``xp`` is the
inputs' namespace: NumPy, CuPy, array-api-strict), with the lectures' formulas in the
docstrings. ``name = Op(name_forward, name_backward)`` is the front door ``name(...) -> out``;
it accepts arrays or :class:`~glassnet.Tensor` s (and then records the graph for backward).

Some ops also have a fast NumPy pair in :mod:`glassnet.fast`, tested equal to the reference;
``name(...)`` runs it by default and the reference inside ``glassnet.use_backend("reference")``
(or for non-NumPy arrays). The public ``F.name_forward`` / ``F.name_backward`` dispatch the
same way (they are ``name.forward`` / ``name.backward``); the reference functions themselves
are ``name.reference_forward`` / ``name.reference_backward``.

==================  ==========================================
file                ops
==================  ==========================================
``window.py``       the sliding-window taps shared by conv and pooling
``conv.py``         conv2d (cross-correlation; ``flip=True`` for convolution)
``pool.py``         max_pool2d, avg_pool2d, adaptive_avg_pool2d, global_avg_pool2d
``activation.py``   relu, leaky_relu, sigmoid, tanh, softmax, log_softmax
``linear.py``       linear, flatten, dropout
``norm.py``         batch_norm, batch_norm_relu, local_response_norm
``fused.py``        conv2d_bn_relu (a convolution, its batch norm in inference and ReLU as one op)
``loss.py``         cross_entropy, binary_cross_entropy_with_logits, mse_loss
==================  ==========================================
"""

from ._op import Context, Op, front_pair
from .activation import leaky_relu, log_softmax, relu, relu6, sigmoid, softmax, tanh
from .conv import conv2d
from .fused import conv2d_bn_relu
from .linear import dropout, flatten, linear
from .loss import NonFiniteLossError, binary_cross_entropy_with_logits, cross_entropy, mse_loss
from .norm import batch_norm, batch_norm_relu, local_response_norm
from .pool import adaptive_avg_pool2d, avg_pool2d, global_avg_pool2d, max_pool2d

# name_forward / name_backward: the op's forward and backward as functions, dispatching like the op
# (see front_pair); the reference definitions are the functions of the same names in each file.
relu_forward, relu_backward = front_pair(relu)
relu6_forward, relu6_backward = front_pair(relu6)
leaky_relu_forward, leaky_relu_backward = front_pair(leaky_relu)
sigmoid_forward, sigmoid_backward = front_pair(sigmoid)
tanh_forward, tanh_backward = front_pair(tanh)
softmax_forward, softmax_backward = front_pair(softmax)
log_softmax_forward, log_softmax_backward = front_pair(log_softmax)
conv2d_forward, conv2d_backward = front_pair(conv2d)
conv2d_bn_relu_forward, conv2d_bn_relu_backward = front_pair(conv2d_bn_relu)
linear_forward, linear_backward = front_pair(linear)
flatten_forward, flatten_backward = front_pair(flatten)
dropout_forward, dropout_backward = front_pair(dropout)
binary_cross_entropy_with_logits_forward, binary_cross_entropy_with_logits_backward = front_pair(
    binary_cross_entropy_with_logits
)
cross_entropy_forward, cross_entropy_backward = front_pair(cross_entropy)
mse_loss_forward, mse_loss_backward = front_pair(mse_loss)
batch_norm_forward, batch_norm_backward = front_pair(batch_norm)
batch_norm_relu_forward, batch_norm_relu_backward = front_pair(batch_norm_relu)
local_response_norm_forward, local_response_norm_backward = front_pair(local_response_norm)
adaptive_avg_pool2d_forward, adaptive_avg_pool2d_backward = front_pair(adaptive_avg_pool2d)
avg_pool2d_forward, avg_pool2d_backward = front_pair(avg_pool2d)
global_avg_pool2d_forward, global_avg_pool2d_backward = front_pair(global_avg_pool2d)
max_pool2d_forward, max_pool2d_backward = front_pair(max_pool2d)

__all__ = [
    "conv2d_forward",
    "conv2d_backward",
    "conv2d",
    "conv2d_bn_relu",
    "conv2d_bn_relu_backward",
    "conv2d_bn_relu_forward",
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
    "batch_norm_relu",
    "batch_norm_relu_backward",
    "batch_norm_relu_forward",
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
