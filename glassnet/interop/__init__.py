"""Bringing weights in from other frameworks: PyTorch ``.pth`` files read without torch.

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

__all__ = [
    "ALLOWED_GLOBALS",
    "STORAGE_TYPES",
    "PthError",
    "convert_to_safetensors",
    "load_pth",
    "pth_format",
    "read_pth_object",
    "sha256_file",
]
