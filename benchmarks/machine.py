"""What the numbers were measured on: CPU, cores, GPU, library versions."""

from __future__ import annotations

import importlib.metadata
import os
import platform

from runtime.cores import physical_cores

PACKAGES = ("torch", "onnxruntime", "onnxruntime-gpu", "onnx", "numpy", "tensorrt")


def cpu_model() -> str:
    try:
        with open("/proc/cpuinfo") as f:
            for line in f:
                if line.startswith("model name"):
                    return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine()


def gpu_name() -> str | None:
    try:
        from runtime.cuda import gpu_info

        return gpu_info(0).name
    except Exception:  # noqa: BLE001 - no cuda-python, no driver, no GPU: all mean "none"
        return None


def describe() -> dict:
    versions = {}
    for name in PACKAGES:
        try:
            versions[name] = importlib.metadata.version(name)
        except importlib.metadata.PackageNotFoundError:
            pass
    return {"cpu": cpu_model(), "cores": physical_cores(), "logical_cpus": os.cpu_count(),
            "gpu": gpu_name(), "python": platform.python_version(), "versions": versions}
