"""Layers built on :mod:`glassnet.functional`, named as in ``torch.nn``.

Each layer's forward calls its op on Tensors; autograd records the op and calls the op's
own backward when ``loss.backward()`` runs. Shapes follow NCHW; see each op for its
output-size formula.
"""

from __future__ import annotations

from typing import Any

import numpy as np

from .. import functional as F
from ..autograd.function import inside_module
from ..autograd.tensor import no_grad
from ..backend import get_default_dtype
from ..functional._args import pair
from .init import init_bias, init_weight, make_rng
from .module import Module, Parameter, Shape, kwargs_repr

__all__ = ["no_grad"]


class Identity(Module):
    """Returns its input unchanged."""

    def forward(self, x: Any) -> Any:
        return x


class _OpLayer(Module):
    """A parameter-free layer that runs one functional op: ``op(x, *options)``.

    Subclasses name the op and return its options from ``_options()``.
    """

    op: F.Op

    def _options(self) -> tuple[Any, ...]:
        return ()

    def forward(self, x: Any) -> Any:
        return self.op(x, *self._options())


class Conv2d(Module):
    """2-D convolution layer (cross-correlation; ``flip=True`` for true convolution).

    Input [N, C_in, H, W] → output [N, C_out, H_out, W_out] with
    H_out = floor((H + P_top + P_bottom − d·(k−1) − 1)/s) + 1.
    Parameters: weight [C_out, C_in/groups, kH, kW] and bias [C_out], i.e.
    C_out·(C_in/groups·kH·kW + 1), whatever H and W are (weight sharing).
    """

    def __init__(
        self,
        in_channels: int,
        out_channels: int,
        kernel_size: Any,
        stride: Any = 1,
        padding: Any = 0,
        dilation: Any = 1,
        groups: int = 1,
        bias: bool = True,
        flip: bool = False,
        init: str = "default",
        rng: Any = None,
        dtype: Any = None,
    ) -> None:
        super().__init__()
        for name, v in (
            ("in_channels", in_channels),
            ("out_channels", out_channels),
            ("groups", groups),
        ):
            if not isinstance(v, int | np.integer) or v < 1:
                raise ValueError(f"Conv2d: {name} must be a positive int, got {v!r}")
        if in_channels % groups or out_channels % groups:
            raise ValueError(
                f"Conv2d: groups={groups} must divide in_channels={in_channels} and out_channels={out_channels}"
            )
        self.in_channels, self.out_channels, self.groups = in_channels, out_channels, groups
        self.kernel_size = pair(kernel_size, "kernel_size")
        self.stride = pair(stride, "stride")
        self.dilation = pair(dilation, "dilation")
        F._args.conv_padding(padding, self.kernel_size, self.stride, self.dilation, (1, 1))  # validate now
        self.padding = padding
        self.flip = flip
        self.init = init
        dt = np.dtype(dtype) if dtype is not None else get_default_dtype()
        self.weight = Parameter(np.zeros((out_channels, in_channels // groups, *self.kernel_size), dtype=dt))
        self.register_parameter("bias", Parameter(np.zeros(out_channels, dtype=dt)) if bias else None)
        self.reset_parameters(init, rng)

    def reset_parameters(self, scheme: str | None = None, rng: Any = None) -> Conv2d:
        scheme = scheme or self.init
        gen = make_rng(rng)
        w = self.weight
        w.data = init_weight(w.shape, scheme, gen, w.dtype)
        if self.bias is not None:
            fan_in = w.shape[1] * w.shape[2] * w.shape[3]
            self.bias.data = init_bias(self.out_channels, fan_in, scheme, gen, w.dtype)
        return self

    def _name(self) -> str:
        return f"Conv2d({self.in_channels}→{self.out_channels})"

    def _check_input(self, shape: Shape) -> None:
        if len(shape) != 4:
            raise ValueError(f"{self._name()} expected a 4-D input [N, C, H, W], got shape {tuple(shape)}")
        if shape[1] != self.in_channels:
            if shape[-1] == self.in_channels:  # channels last (Keras's input_shape=(32, 32, 3))
                raise ValueError(
                    f"{self._name()} expected [N, C, H, W] with C = {self.in_channels}, got shape {tuple(shape)}, "
                    "which looks channels-last [N, H, W, C]: convert with glassnet.data.layout.nhwc_to_nchw(x) "
                    "(or x.transpose(0, 3, 1, 2))"
                )
            raise ValueError(f"{self._name()} expected {self.in_channels} input channels, got {shape[1]}")

    def forward(self, x: Any) -> Any:
        self._check_input(x.shape)
        return F.conv2d(x, self.weight, self.bias, self.stride, self.padding, self.dilation, self.groups, self.flip)

    def extra_repr(self) -> str:
        rest = kwargs_repr(
            [
                ("stride", self.stride, (1, 1)),
                ("padding", self.padding, 0),
                ("dilation", self.dilation, (1, 1)),
                ("groups", self.groups, 1),
                ("bias", self.bias is not None, True),
                ("flip", self.flip, False),
            ]
        )
        return f"{self.in_channels}, {self.out_channels}, kernel_size={self.kernel_size}" + (
            f", {rest}" if rest else ""
        )


class MaxPool2d(_OpLayer):
    """Max pooling; stride defaults to the kernel size. No parameters.

    H_out = floor((H + 2P − d·(k−1) − 1)/s) + 1 (ceil with ``ceil_mode=True``).
    """

    op = F.max_pool2d

    def __init__(
        self,
        kernel_size: Any = 2,
        stride: Any = None,
        padding: Any = 0,
        dilation: Any = 1,
        ceil_mode: bool = False,
    ) -> None:
        super().__init__()
        self.kernel_size, self.stride, self.padding = kernel_size, stride, padding
        self.dilation, self.ceil_mode = dilation, ceil_mode
        pair(kernel_size, "kernel_size")

    def _options(self) -> tuple[Any, ...]:
        return self.kernel_size, self.stride, self.padding, self.dilation, self.ceil_mode

    def extra_repr(self) -> str:
        rest = kwargs_repr(
            [
                ("stride", self.stride, None),
                ("padding", self.padding, 0),
                ("dilation", self.dilation, 1),
                ("ceil_mode", self.ceil_mode, False),
            ]
        )
        return f"kernel_size={self.kernel_size!r}" + (f", {rest}" if rest else "")


class AvgPool2d(_OpLayer):
    """Average pooling; stride defaults to the kernel size. No parameters."""

    op = F.avg_pool2d

    def _options(self) -> tuple[Any, ...]:
        return (self.kernel_size, self.stride, self.padding, self.ceil_mode, self.count_include_pad)

    def __init__(
        self,
        kernel_size: Any = 2,
        stride: Any = None,
        padding: Any = 0,
        ceil_mode: bool = False,
        count_include_pad: bool = True,
    ) -> None:
        super().__init__()
        self.kernel_size, self.stride, self.padding = kernel_size, stride, padding
        self.ceil_mode, self.count_include_pad = ceil_mode, count_include_pad
        pair(kernel_size, "kernel_size")

    def extra_repr(self) -> str:
        rest = kwargs_repr(
            [
                ("stride", self.stride, None),
                ("padding", self.padding, 0),
                ("ceil_mode", self.ceil_mode, False),
                ("count_include_pad", self.count_include_pad, True),
            ]
        )
        return f"kernel_size={self.kernel_size!r}" + (f", {rest}" if rest else "")


class AdaptiveAvgPool2d(_OpLayer):
    """Average-pool to a fixed ``output_size`` (int or pair); ``AdaptiveAvgPool2d(1)`` is global pooling."""

    op = F.adaptive_avg_pool2d

    def _options(self) -> tuple[Any, ...]:
        return (self.output_size,)

    def __init__(self, output_size: Any) -> None:
        super().__init__()
        self.output_size = output_size

    def extra_repr(self) -> str:
        return f"output_size={self.output_size!r}"


class ReLU(_OpLayer):
    """max(0, x), element-wise."""

    op = F.relu


class ReLU6(_OpLayer):
    """min(max(0, x), 6), element-wise (MobileNet, EfficientNet-Lite)."""

    op = F.relu6


class LeakyReLU(_OpLayer):
    """x for x > 0, negative_slope·x otherwise."""

    op = F.leaky_relu

    def _options(self) -> tuple[Any, ...]:
        return (self.negative_slope,)

    def __init__(self, negative_slope: float = 0.01) -> None:
        super().__init__()
        self.negative_slope = negative_slope

    def extra_repr(self) -> str:
        return kwargs_repr([("negative_slope", self.negative_slope, 0.01)])


class Sigmoid(_OpLayer):
    """σ(x) = 1/(1 + e^(−x))."""

    op = F.sigmoid


class Tanh(_OpLayer):
    """Hyperbolic tangent."""

    op = F.tanh


class Softmax(_OpLayer):
    """Softmax along ``axis`` (default 1, the class axis of [N, K])."""

    op = F.softmax

    def _options(self) -> tuple[Any, ...]:
        return (self.axis,)

    def __init__(self, axis: int = 1) -> None:
        super().__init__()
        self.axis = axis

    def extra_repr(self) -> str:
        return f"axis={self.axis}"


class LogSoftmax(Softmax):
    """log softmax along ``axis``."""

    op = F.log_softmax


class Flatten(_OpLayer):
    """[N, C, H, W] → [N, C·H·W], row-major (channel by channel, row by row)."""

    op = F.flatten

    def _options(self) -> tuple[Any, ...]:
        return (self.start_dim,)

    def __init__(self, start_dim: int = 1) -> None:
        super().__init__()
        self.start_dim = start_dim

    def extra_repr(self) -> str:
        return kwargs_repr([("start_dim", self.start_dim, 1)])


class Linear(Module):
    """Fully connected (dense) layer: [N, in] → [N, out], y = x·Wᵀ + b.

    Parameters: weight [out, in] and bias [out]: (in + 1)·out with bias, in·out without.
    """

    def __init__(
        self,
        in_features: int,
        out_features: int,
        bias: bool = True,
        init: str = "default",
        rng: Any = None,
        dtype: Any = None,
    ) -> None:
        super().__init__()
        for name, v in (("in_features", in_features), ("out_features", out_features)):
            if not isinstance(v, int | np.integer) or v < 1:
                raise ValueError(f"Linear: {name} must be a positive int, got {v!r}")
        self.in_features, self.out_features, self.init = in_features, out_features, init
        dt = np.dtype(dtype) if dtype is not None else get_default_dtype()
        self.weight = Parameter(np.zeros((out_features, in_features), dtype=dt))
        self.register_parameter("bias", Parameter(np.zeros(out_features, dtype=dt)) if bias else None)
        self.reset_parameters(init, rng)

    def reset_parameters(self, scheme: str | None = None, rng: Any = None) -> Linear:
        scheme = scheme or self.init
        gen = make_rng(rng)
        self.weight.data = init_weight(self.weight.shape, scheme, gen, self.weight.dtype)
        if self.bias is not None:
            self.bias.data = init_bias(self.out_features, self.in_features, scheme, gen, self.weight.dtype)
        return self

    def _check_input(self, shape: Shape) -> None:
        if len(shape) < 2 or shape[-1] != self.in_features:
            raise ValueError(
                f"Linear({self.in_features}→{self.out_features}) expected input [N, {self.in_features}], "
                f"got shape {tuple(shape)}"
            )

    def forward(self, x: Any) -> Any:
        self._check_input(x.shape)
        return F.linear(x, self.weight, self.bias)

    def extra_repr(self) -> str:
        rest = kwargs_repr([("bias", self.bias is not None, True)])
        return f"in_features={self.in_features}, out_features={self.out_features}" + (f", {rest}" if rest else "")


Dense = Linear


class Dropout(_OpLayer):
    """Inverted dropout (zero with probability p, scale survivors by 1/(1−p)) in training;
    the identity in eval mode. Its random generator is its own, seeded by ``rng``."""

    op = F.dropout

    def _options(self) -> tuple[Any, ...]:
        return (self.p, self.training, self.rng)

    def __init__(self, p: float = 0.5, rng: Any = None) -> None:
        super().__init__()
        if not 0.0 <= p < 1.0:
            raise ValueError(f"Dropout: p must be in [0, 1), got {p!r}")
        self.p = p
        self.rng = make_rng(rng)

    def extra_repr(self) -> str:
        return f"p={self.p}"


class _BatchNorm(Module):
    _ndim = 4

    def __init__(
        self,
        num_features: int,
        eps: float = 1e-5,
        momentum: float = 0.1,
        affine: bool = True,
        track_running_stats: bool = True,
        dtype: Any = None,
    ) -> None:
        super().__init__()
        self.num_features, self.eps, self.momentum = num_features, eps, momentum
        self.affine, self.track_running_stats = affine, track_running_stats
        dt = np.dtype(dtype) if dtype is not None else get_default_dtype()
        if affine:
            self.weight = Parameter(np.ones(num_features, dtype=dt))
            self.bias = Parameter(np.zeros(num_features, dtype=dt))
        else:
            self.register_parameter("weight", None)
            self.register_parameter("bias", None)
        if track_running_stats:
            self.register_buffer("running_mean", np.zeros(num_features, dtype=dt))
            self.register_buffer("running_var", np.ones(num_features, dtype=dt))
            self.register_buffer("num_batches_tracked", np.zeros((), dtype=np.int64))
        else:
            for name in ("running_mean", "running_var", "num_batches_tracked"):
                self.register_buffer(name, None)

    def reset_parameters(self, scheme: str | None = None, rng: Any = None) -> _BatchNorm:
        if self.affine:
            self.weight.data = np.ones_like(self.weight.data)
            self.bias.data = np.zeros_like(self.bias.data)
        if self.track_running_stats:
            self.running_mean[...] = 0
            self.running_var[...] = 1
            self.num_batches_tracked[...] = 0
        return self

    def _arguments(self, x: Any) -> tuple[Any, ...]:
        """F.batch_norm's arguments after x for this call (x checked, ``num_batches_tracked`` counted)."""
        if x.ndim != self._ndim or x.shape[1] != self.num_features:
            want = "[N, C, H, W]" if self._ndim == 4 else "[N, C]"
            raise ValueError(
                f"{type(self).__name__}({self.num_features}) expected {want} input "
                f"with C = {self.num_features}, got shape {tuple(x.shape)}"
            )
        # A frozen batch norm (affine, every parameter requires_grad=False) normalises with its
        # running statistics and leaves them alone, in training too: fine-tuning a head on a
        # frozen pretrained network must not shift the features it was trained on (Keras's rule).
        use_batch = self.uses_batch_statistics
        tracing = type(x.data).__name__ == "MetaArray"
        if use_batch and self.track_running_stats and not tracing:
            self.num_batches_tracked += 1
        return self.running_mean, self.running_var, self.weight, self.bias, use_batch, self.momentum, self.eps

    @property
    def uses_batch_statistics(self) -> bool:
        """Whether a forward now normalises with the batch's statistics (training, not frozen) rather
        than the running ones."""
        frozen = self.affine and self.track_running_stats and not self.weight.requires_grad
        return (self.training and not frozen) or not self.track_running_stats

    def forward(self, x: Any) -> Any:
        return F.batch_norm(x, *self._arguments(x))

    def forward_conv_relu(self, conv: Any, x: Any, residual: Any = None) -> Any:
        """relu(self(conv(x)) + residual) as one op, :func:`F.conv2d_bn_relu
        <glassnet.functional.conv2d_bn_relu>`, for a batch norm with fixed statistics
        (:attr:`uses_batch_statistics` False: inference, or frozen).

        The same values as the three steps to rounding; recorded as this module's, and neither
        its hooks nor ``conv``'s are called.
        """
        if self.uses_batch_statistics:
            raise RuntimeError(f"{type(self).__name__}.forward_conv_relu: this batch norm uses batch statistics now")
        conv._check_input(x.shape)  # the layer's own checks and messages
        with inside_module(self):
            return F.conv2d_bn_relu(
                x, conv.weight, conv.bias, self.running_mean, self.running_var, self.weight, self.bias, self.eps,
                residual, conv.stride, conv.padding, conv.dilation, conv.groups, conv.flip,
            )  # fmt: skip

    def forward_relu(self, x: Any, residual: Any = None) -> Any:
        """relu(self(x) + residual) as one op, :func:`F.batch_norm_relu <glassnet.functional.batch_norm_relu>`
        (what :class:`~glassnet.models.BasicBlock` runs under the fast backend).

        The same output as the three steps, bit for bit (gradients to rounding); recorded as this
        module's, but its hooks are not called (there is no separate batch-norm output to show them).
        """
        with inside_module(self):
            return F.batch_norm_relu(x, *self._arguments(x), residual=residual)

    def extra_repr(self) -> str:
        rest = kwargs_repr(
            [
                ("eps", self.eps, 1e-5),
                ("momentum", self.momentum, 0.1),
                ("affine", self.affine, True),
                ("track_running_stats", self.track_running_stats, True),
            ]
        )
        return f"{self.num_features}" + (f", {rest}" if rest else "")


class BatchNorm2d(_BatchNorm):
    """Batch normalisation of [N, C, H, W] per channel (statistics over N, H, W)."""


class BatchNorm1d(_BatchNorm):
    """Batch normalisation of [N, C] features (statistics over N)."""

    _ndim = 2


class LocalResponseNorm(_OpLayer):
    """Local response normalisation across ``size`` neighbouring channels (AlexNet's "Norm").
    No parameters."""

    op = F.local_response_norm

    def _options(self) -> tuple[Any, ...]:
        return (self.size, self.alpha, self.beta, self.k)

    def __init__(self, size: int, alpha: float = 1e-4, beta: float = 0.75, k: float = 1.0) -> None:
        super().__init__()
        self.size, self.alpha, self.beta, self.k = size, alpha, beta, k

    def extra_repr(self) -> str:
        rest = kwargs_repr([("alpha", self.alpha, 1e-4), ("beta", self.beta, 0.75), ("k", self.k, 1.0)])
        return f"{self.size}" + (f", {rest}" if rest else "")
