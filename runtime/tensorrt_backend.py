"""TensorRT backend: a deserialized engine, one execution context behind a lock, device
buffers sized for the profile's max batch, pinned host buffers and async copies on one stream.

Imported only when the trt backend is asked for; tensorrt and cuda-python are optional. Facts it
is built on (TensorRT's Python API docs and samples): one trt.Logger per process; the CUDA
current device is per thread, so every call sets it; an execution context serves one thread at a
time; a dynamic batch needs `set_input_shape` within the profile, which returns False otherwise.
"""

from __future__ import annotations

import logging
from pathlib import Path

import numpy as np

from runtime.backend import Backend
from runtime.cuda import DeviceBuffer, PinnedBuffer, Stream, cuda_call, cudart, gpu_info
from runtime.errors import BackendUnavailable
from runtime.manifest import FileEntry, Manifest
from runtime.optional import optional_import

log = logging.getLogger(__name__)
FLOAT_OUTPUT = "pixels"  # the float image an engine may also output, for verification at export
_LOGGER = None


def import_tensorrt():
    return optional_import("tensorrt", "on a machine with an NVIDIA GPU, pip install "
                                       "'dcgan[gpu-cu13]' (or 'dcgan[gpu-cu12]': README, \"GPU\")")


def trt_logger(trt):
    """The process's one TensorRT logger (TensorRT expects a single logger per process)."""
    global _LOGGER
    if _LOGGER is None:
        _LOGGER = trt.Logger(trt.Logger.WARNING)
    return _LOGGER


def engine_mismatch(entry: FileEntry, device: int) -> str | None:
    """Why this engine cannot run here (other GPU or TensorRT version), or None if it can."""
    trt = import_tensorrt()
    gpu = gpu_info(device)
    if entry.meta.get("tensorrt_version") != trt.__version__:
        return (f"{entry.name} was built with TensorRT {entry.meta.get('tensorrt_version')}, this "
                f"is {trt.__version__}")
    if (entry.meta.get("gpu_name"), entry.meta.get("compute_capability")) != (
            gpu.name, gpu.compute_capability):
        return (f"{entry.name} was built for {entry.meta.get('gpu_name')} (sm "
                f"{entry.meta.get('compute_capability')}), this GPU is {gpu.name} (sm "
                f"{gpu.compute_capability})")
    return None


def pick_engine(manifest: Manifest, device: int, precision: str | None) -> FileEntry:
    """The manifest's engine for this GPU and TensorRT version (fp32 first unless asked)."""
    engines = [e for e in manifest.files("trt") if precision in (None, e.precision)]
    if not engines:
        raise BackendUnavailable("the artifact has no TensorRT engine"
                                 + (f" of precision {precision}" if precision else "")
                                 + " — run dcgan-export --format trt on this machine")
    reasons = []
    for entry in sorted(engines, key=lambda e: e.precision != "fp32"):
        why = engine_mismatch(entry, device)
        if why is None:
            return entry
        reasons.append(why)
    raise BackendUnavailable(f"{'; '.join(reasons)} — engines are tied to one GPU model and "
                             "TensorRT version: re-run dcgan-export --format trt here")


def stream_handle(handle) -> int:
    """The integer address of a cuda.bindings stream (`int(handle)` is deprecated in 13.x)."""
    return int(handle.getPtr()) if hasattr(handle, "getPtr") else int(handle)


def padded_batch(n: int, min_batch: int, max_batch: int) -> int:
    """The batch an engine runs for n images: n, raised to the profile's minimum."""
    if not 1 <= n <= max_batch:
        raise ValueError(f"batch of {n} is outside the engine's profile (1..{max_batch})")
    return max(n, min_batch)


class TrtBackend(Backend):
    name = "trt"

    def _activate(self, model_path: Path) -> None:
        trt = import_tensorrt()
        cuda_call(cudart().cudaSetDevice(self.device))
        self._runtime = trt.Runtime(trt_logger(trt))
        self.engine = self._runtime.deserialize_cuda_engine(model_path.read_bytes())
        if self.engine is None:
            raise BackendUnavailable(f"TensorRT could not deserialize {model_path.name} — re-run "
                                     "dcgan-export --format trt on this machine")
        self.context = self.engine.create_execution_context()
        if self.context is None:  # e.g. out of device memory
            raise BackendUnavailable("TensorRT could not create an execution context (device "
                                     "memory?) — free the GPU or use --backend ort-cuda/ort-cpu")
        self._allocate()

    def _allocate(self) -> None:
        """Buffers for the profile's largest batch, every engine output bound once."""
        name_in, name_out = self.manifest.input_name, self.manifest.output_name
        min_shape, _, max_shape = self.engine.get_tensor_profile_shape(name_in, 0)
        self.min_batch, self.max_batch = int(min_shape[0]), int(max_shape[0])
        size, c = self.manifest.image_size, self.manifest.channels
        self._buffers = []
        self._stream = Stream()
        self._host_in = self._keep(PinnedBuffer((self.max_batch, self.manifest.nz), np.float32))
        self._host_out = self._keep(PinnedBuffer((self.max_batch, size, size, c), np.uint8))
        self._dev_in = self._keep(DeviceBuffer(self._host_in.nbytes))
        self._dev_out = self._keep(DeviceBuffer(self._host_out.nbytes))
        self.context.set_tensor_address(name_in, self._dev_in.ptr)
        self.context.set_tensor_address(name_out, self._dev_out.ptr)
        names = [self.engine.get_tensor_name(i) for i in range(self.engine.num_io_tensors)]
        self.has_float_output = FLOAT_OUTPUT in names
        if self.has_float_output:  # (N, C, H, W) float32, read only by verify()
            self._host_float = self._keep(PinnedBuffer((self.max_batch, c, size, size), np.float32))
            self._dev_float = self._keep(DeviceBuffer(self._host_float.nbytes))
            self.context.set_tensor_address(FLOAT_OUTPUT, self._dev_float.ptr)

    def _keep(self, buffer):
        self._buffers.append(buffer)
        return buffer

    def _run(self, z: np.ndarray, with_float: bool) -> tuple[np.ndarray, np.ndarray | None]:
        n = z.shape[0]
        batch = padded_batch(n, self.min_batch, self.max_batch)
        # an execution context serves one thread at a time, and the current device is per thread
        with self._lock:
            cuda_call(cudart().cudaSetDevice(self.device))
            self._host_in.array[:n] = z
            self._host_in.array[n:batch] = 0.0  # padding up to the profile minimum
            self._stream.copy_to_device(self._dev_in, self._host_in, batch * z[0].nbytes)
            if not self.context.set_input_shape(self.manifest.input_name, (batch, self.manifest.nz)):
                raise RuntimeError(f"TensorRT refused input shape ({batch}, {self.manifest.nz})")
            if not self.context.execute_async_v3(stream_handle(self._stream.handle)):
                raise RuntimeError("TensorRT execute_async_v3 failed (see the TensorRT log above)")
            self._stream.copy_to_host(self._host_out, self._dev_out, n * self._host_out.array[0].nbytes)
            if with_float:
                self._stream.copy_to_host(self._host_float, self._dev_float,
                                          n * self._host_float.array[0].nbytes)
            self._stream.synchronize()
            images = self._host_out.array[:n].copy()
            return images, self._host_float.array[:n].copy() if with_float else None

    def _infer(self, z: np.ndarray) -> np.ndarray:
        return self._run(z, with_float=False)[0]

    def infer_with_float(self, z: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """(uint8 images, float (N, C, H, W) output) from an engine built with the float output."""
        if not self.has_float_output:
            raise RuntimeError(f"{self.entry.name} has no {FLOAT_OUTPUT} output")
        return self._run(np.ascontiguousarray(z, dtype=np.float32), with_float=True)

    def _deactivate(self) -> None:
        cuda_call(cudart().cudaSetDevice(self.device))
        del self.context, self.engine, self._runtime
        self._stream.synchronize()
        for buffer in self._buffers:
            buffer.free()
        self._stream.destroy()
        self._buffers = []
