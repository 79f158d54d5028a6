"""Bringing weights in from other frameworks and handing them back.

:mod:`.pth`: PyTorch ``.pth`` files read without torch; :mod:`.torch_state`: torchvision-layout
state dicts loaded into zoo models (:func:`load_torch_state`) and written back
(:func:`save_torch_state`).

:func:`load_pth` reads a state dict (name → NumPy array) from either of torch's file
formats through an allow-list unpickler that runs nothing from the file;
:func:`convert_to_safetensors` turns one into a safetensors file that records the
source's SHA-256.
"""

from .pth import (
    ALLOWED_GLOBALS,
    STORAGE_TYPES,
    PthError,
    convert_to_safetensors,
    load_pth,
    pth_format,
    read_pth_object,
    sha256_file,
)
from .torch_state import TORCH_LAYOUTS, TorchStateError, load_torch_state, read_state, save_torch_state

__all__ = [
    "TORCH_LAYOUTS",
    "TorchStateError",
    "load_torch_state",
    "read_state",
    "save_torch_state",
    "ALLOWED_GLOBALS",
    "STORAGE_TYPES",
    "PthError",
    "convert_to_safetensors",
    "load_pth",
    "pth_format",
    "read_pth_object",
    "sha256_file",
]
