"""One helper for the optional packages the runtime can use (onnxruntime, tensorrt, cuda-python)."""

from __future__ import annotations

import importlib
from types import ModuleType

from runtime.errors import BackendUnavailable


def optional_import(module: str, install: str) -> ModuleType:
    """Import `module`, or raise BackendUnavailable saying it is missing and how to `install` it."""
    try:
        return importlib.import_module(module)
    except ImportError as e:
        raise BackendUnavailable(f"{module.split('.')[0]} is not installed — {install}") from e


def import_onnxruntime() -> ModuleType:
    return optional_import("onnxruntime", "pip install 'dcgan[cpu]' (or 'dcgan[gpu-cu13]' / "
                                          "'dcgan[gpu-cu12]' on a GPU machine)")
