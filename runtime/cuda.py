"""A thin layer over `cuda.bindings.runtime` (cuda-python >= 12.6): errors become exceptions,
buffers are small classes freed explicitly (as TensorRT's common_runtime.py does), because
`__del__` is not guaranteed to run."""

from __future__ import annotations

import ctypes
from dataclasses import dataclass

import numpy as np

from runtime.errors import BackendUnavailable
from runtime.optional import optional_import


class CudaError(BackendUnavailable):
    """A CUDA runtime call failed."""


def cudart():
    return optional_import("cuda.bindings.runtime", "pip install 'dcgan[gpu-cu13]' (or "
                                                    "'dcgan[gpu-cu12]': README, \"GPU\")")


def cuda_call(result):
    """Unpack a cuda.bindings call's (err, *values) tuple, raising CudaError on failure."""
    rt = cudart()
    err, values = (result[0], result[1:]) if isinstance(result, tuple) else (result, ())
    if err != rt.cudaError_t.cudaSuccess:
        name = rt.cudaGetErrorName(err)[1]
        name = name.decode() if isinstance(name, bytes) else str(name)
        if err == rt.cudaError_t.cudaErrorInsufficientDriver:
            hint = f" — {driver_problem()}"
        elif err == rt.cudaError_t.cudaErrorNoDevice:
            hint = " — no NVIDIA GPU on this machine"
        else:
            hint = ""
        raise CudaError(f"CUDA call failed: {name} ({int(err)}){hint}")
    if not values:
        return None
    return values[0] if len(values) == 1 else values


def _driver_cuda_version() -> int | None:
    """The CUDA version the installed driver supports (e.g. 12040), or None without a driver."""
    try:
        libcuda = ctypes.CDLL("libcuda.so.1")
    except OSError:
        return None
    version = ctypes.c_int(0)
    if libcuda.cuDriverGetVersion(ctypes.byref(version)) != 0:
        return None
    return version.value


def driver_problem() -> str:
    """Why the CUDA runtime reports an insufficient driver: none at all, or one too old."""
    driver = _driver_cuda_version()
    if driver is None:
        return "no NVIDIA driver on this machine (no GPU, or the driver is not installed)"
    runtime = cuda_runtime_version()
    have = f"{driver // 1000}.{driver % 1000 // 10}"
    need = f"{runtime // 1000}.{runtime % 1000 // 10}" if runtime else "a newer CUDA"
    return (f"the NVIDIA driver supports CUDA {have}, older than the installed CUDA {need} stack — "
            f"update the driver, or install the stack of its CUDA major: make install "
            f"GPU=cu{driver // 1000} (README, \"GPU\")")


def cuda_runtime_version() -> int | None:
    err, version = cudart().cudaRuntimeGetVersion()
    return int(version) if int(err) == 0 else None


@dataclass(frozen=True)
class GpuInfo:
    name: str
    compute_capability: str  # "9.0"


def gpu_info(device: int = 0) -> GpuInfo:
    """Name and compute capability of CUDA device `device` (raises CudaError without one)."""
    rt = cudart()
    count = cuda_call(rt.cudaGetDeviceCount())
    if device >= count:
        raise CudaError(f"CUDA device {device} requested, {count} present")
    prop = cuda_call(rt.cudaGetDeviceProperties(device))
    name = prop.name.decode(errors="replace") if isinstance(prop.name, bytes) else str(prop.name)
    return GpuInfo(name.rstrip("\x00").strip(), f"{prop.major}.{prop.minor}")


class DeviceBuffer:
    """`nbytes` of device memory; call free()."""

    def __init__(self, nbytes: int):
        self.nbytes = nbytes
        self.ptr = int(cuda_call(cudart().cudaMalloc(nbytes)))

    def free(self) -> None:
        if self.ptr:
            cuda_call(cudart().cudaFree(self.ptr))
            self.ptr = 0


class PinnedBuffer:
    """Page-locked host memory viewed as a numpy array (async copies need it); call free()."""

    def __init__(self, shape: tuple[int, ...], dtype: np.dtype):
        dtype = np.dtype(dtype)
        self.nbytes = int(np.prod(shape)) * dtype.itemsize
        self.ptr = int(cuda_call(cudart().cudaMallocHost(self.nbytes)))
        raw = (ctypes.c_byte * self.nbytes).from_address(self.ptr)
        self.array = np.frombuffer(raw, dtype=dtype).reshape(shape)

    def free(self) -> None:
        if self.ptr:
            self.array = None
            cuda_call(cudart().cudaFreeHost(self.ptr))
            self.ptr = 0


class Stream:
    def __init__(self):
        self.handle = cuda_call(cudart().cudaStreamCreate())

    def copy_to_device(self, dst: DeviceBuffer, src: PinnedBuffer, nbytes: int) -> None:
        rt = cudart()
        cuda_call(rt.cudaMemcpyAsync(dst.ptr, src.ptr, nbytes,
                                     rt.cudaMemcpyKind.cudaMemcpyHostToDevice, self.handle))

    def copy_to_host(self, dst: PinnedBuffer, src: DeviceBuffer, nbytes: int) -> None:
        rt = cudart()
        cuda_call(rt.cudaMemcpyAsync(dst.ptr, src.ptr, nbytes,
                                     rt.cudaMemcpyKind.cudaMemcpyDeviceToHost, self.handle))

    def synchronize(self) -> None:
        cuda_call(cudart().cudaStreamSynchronize(self.handle))

    def destroy(self) -> None:
        if self.handle is not None:
            cuda_call(cudart().cudaStreamDestroy(self.handle))
            self.handle = None
