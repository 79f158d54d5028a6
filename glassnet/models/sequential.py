"""A plain chain of layers described by one line of text, so that a model built by hand (the
explorer's playground) can be saved in a checkpoint and rebuilt from it like a zoo model.

The description lists the modules in order, separated by ``;``, each written as its
constructor call with integer or decimal arguments::

    Conv2d(1, 8, 3, padding=1); ReLU; MaxPool2d(2); Flatten; Linear(1568, 10)

Understood: ``Conv2d(in, out, k, stride=, padding=)``, ``MaxPool2d(k, stride=)``,
``AvgPool2d(k, stride=)``, ``Dropout(p)``, ``Linear(in, out)``, ``ReLU`` and ``Flatten``.
:func:`describe_sequential` writes the line for such a model; :func:`sequential` builds it
(``get_model("sequential", layers=...)``, which is what a checkpoint records in
``arch_kwargs``: a string, no code, nothing to unpickle).
"""

from __future__ import annotations

import re
from typing import Any

from ..nn import AvgPool2d, Conv2d, Dropout, Flatten, Linear, MaxPool2d, Module, ReLU, Sequential

#: At most this many modules and characters in a description.
MAX_MODULES = 64
MAX_CHARS = 4096

_ITEM = re.compile(r"^([A-Za-z][A-Za-z0-9]*)\s*(?:\((.*)\))?$")
#: name → (positional parameter names, keyword parameter names, which are integers)
_SIGNATURES: dict[str, tuple[tuple[str, ...], tuple[str, ...]]] = {
    "Conv2d": (("in_channels", "out_channels", "kernel_size"), ("stride", "padding")),
    "MaxPool2d": (("kernel_size",), ("stride",)),
    "AvgPool2d": (("kernel_size",), ("stride",)),
    "Dropout": (("p",), ()),
    "Linear": (("in_features", "out_features"), ()),
    "ReLU": ((), ()),
    "Flatten": ((), ()),
}


def _number(text: str, where: str) -> int | float:
    try:
        return int(text)
    except ValueError:
        pass
    try:
        return float(text)
    except ValueError:
        raise ValueError(f"{where}: {text!r} is not a number") from None


def parse_layers(layers: str) -> list[tuple[str, dict[str, Any]]]:
    """``[(module name, keyword arguments), ...]`` of a description; ValueError naming the bad item."""
    if not isinstance(layers, str) or not layers.strip():
        raise ValueError("sequential: 'layers' must be a non-empty description such as 'Conv2d(1, 8, 3); ReLU; ...'")
    if len(layers) > MAX_CHARS:
        raise ValueError(f"sequential: the description has {len(layers)} characters, at most {MAX_CHARS} allowed")
    items = [s.strip() for s in layers.split(";") if s.strip()]
    if len(items) > MAX_MODULES:
        raise ValueError(f"sequential: {len(items)} modules, at most {MAX_MODULES} allowed")
    out = []
    for i, item in enumerate(items):
        where = f"sequential: module {i} ({item!r})"
        m = _ITEM.match(item)
        if not m or m.group(1) not in _SIGNATURES:
            raise ValueError(f"{where} is not one of {', '.join(_SIGNATURES)} (written as its constructor call)")
        name, args = m.group(1), (m.group(2) or "").strip()
        positional, keywords = _SIGNATURES[name]
        kwargs: dict[str, Any] = {}
        parts = [p.strip() for p in args.split(",")] if args else []
        for j, part in enumerate(parts):
            if "=" in part:
                key, value = (s.strip() for s in part.split("=", 1))
                if key not in keywords:
                    raise ValueError(f"{where}: unknown argument {key!r} (it takes {', '.join(positional + keywords)})")
                kwargs[key] = _number(value, where)
            elif j < len(positional) and not any("=" in p for p in parts[:j]):
                kwargs[positional[j]] = _number(part, where)
            else:
                raise ValueError(f"{where}: too many positional arguments (it takes {', '.join(positional)})")
        missing = [p for p in positional if p not in kwargs]
        if missing:
            raise ValueError(f"{where}: missing {', '.join(missing)}")
        for key, value in kwargs.items():
            if key != "p" and (not isinstance(value, int) or value < (0 if key == "padding" else 1)):
                raise ValueError(f"{where}: {key} must be a {'non-negative' if key == 'padding' else 'positive'} "
                                 f"integer, got {value!r}")  # fmt: skip
        out.append((name, kwargs))
    return out


_BUILD = {
    "Conv2d": Conv2d,
    "MaxPool2d": MaxPool2d,
    "AvgPool2d": AvgPool2d,
    "Dropout": Dropout,
    "Linear": Linear,
    "ReLU": ReLU,
    "Flatten": Flatten,
}


def sequential(
    layers: str, num_classes: int | None = None, in_channels: int | None = None, rng: Any = None
) -> Sequential:
    """The :class:`~glassnet.nn.Sequential` a description builds (see the module docstring).

    ``num_classes`` and ``in_channels``, when given, must be the last Linear's outputs and the
    first convolution's input channels (ValueError otherwise): a checkpoint's record of them is
    checked against the tensors, and here against the description.
    """
    modules: list[Module] = []
    for name, kwargs in parse_layers(layers):
        cls = _BUILD[name]
        if name in ("Conv2d", "Linear", "Dropout"):
            kwargs = {**kwargs, "rng": rng}
        modules.append(cls(**kwargs))
    convs = [m for m in modules if isinstance(m, Conv2d)]
    linears = [m for m in modules if isinstance(m, Linear)]
    if in_channels is not None and convs and convs[0].in_channels != in_channels:
        raise ValueError(f"sequential: in_channels={in_channels}, but the first Conv2d takes {convs[0].in_channels}")
    if num_classes is not None and (not linears or linears[-1].out_features != num_classes):
        last = f"the last Linear has {linears[-1].out_features} outputs" if linears else "there is no Linear"
        raise ValueError(f"sequential: num_classes={num_classes}, but {last}")
    return Sequential(*modules)


def describe_sequential(model: Module) -> str:
    """The description of a Sequential of the understood modules (ValueError for any other module)."""
    if not isinstance(model, Sequential):
        raise ValueError(f"describe_sequential: expected a Sequential, got {type(model).__name__}")
    items = []
    for i, m in enumerate(model):
        if isinstance(m, Conv2d):
            if m.dilation != (1, 1) or m.groups != 1 or m.bias is None or m.flip or not isinstance(m.padding, int):
                raise ValueError(f"describe_sequential: module {i} ({m!r}) has settings a description cannot hold")
            if m.kernel_size[0] != m.kernel_size[1] or m.stride[0] != m.stride[1]:
                raise ValueError(f"describe_sequential: module {i} has a non-square kernel or stride")
            items.append(f"Conv2d({m.in_channels}, {m.out_channels}, {m.kernel_size[0]}, stride={m.stride[0]}, "
                         f"padding={m.padding})")  # fmt: skip
        elif isinstance(m, MaxPool2d | AvgPool2d):
            k, s = m.kernel_size, m.stride if m.stride is not None else m.kernel_size
            odd = m.padding or m.ceil_mode or getattr(m, "dilation", 1) != 1
            if not isinstance(k, int) or not isinstance(s, int) or odd:
                raise ValueError(f"describe_sequential: module {i} ({m!r}) has settings a description cannot hold")
            items.append(f"{type(m).__name__}({k}, stride={s})")
        elif isinstance(m, Dropout):
            items.append(f"Dropout({float(m.p)!r})")
        elif isinstance(m, Linear):
            items.append(f"Linear({m.in_features}, {m.out_features})")
        elif type(m) in (ReLU, Flatten):
            if isinstance(m, Flatten) and m.start_dim != 1:
                raise ValueError(f"describe_sequential: module {i} flattens from dimension {m.start_dim}, not 1")
            items.append(type(m).__name__)
        else:
            raise ValueError(
                f"describe_sequential: module {i} is a {type(m).__name__}; a description holds only "
                f"{', '.join(_SIGNATURES)}"
            )
    return "; ".join(items)
