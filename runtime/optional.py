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


RAY_INSTALL = "pip install 'dcgan[ray]'"


def import_ray() -> ModuleType:
    """Ray, imported only by the commands and functions that run on it (the extra `ray`)."""
    return optional_import("ray", RAY_INSTALL)


def import_ray_data() -> ModuleType:
    """ray.data: a bare `pip install ray` lacks its dependencies (pyarrow, pandas), so the
    message names them rather than saying ray is missing."""
    import_ray()
    try:
        return importlib.import_module("ray.data")
    except ImportError as e:
        raise BackendUnavailable(f"ray.data cannot be imported ({e}) — {RAY_INSTALL} (it brings "
                                 "ray[data])") from e
