"""TensorRT backend: a deserialized engine, one execution context behind a lock, device
buffers sized for the profile's max batch, pinned host buffers and async copies on one stream.

Imported only when the trt backend is asked for; tensorrt and cuda-python are optional.
"""

from __future__ import annotations

import logging
from pathlib import Path

import numpy as np

from runtime.backends import Backend
from runtime.cuda import DeviceBuffer, PinnedBuffer, Stream, cuda_call, cudart, gpu_info
from runtime.errors import BackendUnavailable
from runtime.manifest import FileEntry, Manifest

log = logging.getLogger(__name__)


def import_tensorrt():
    try:
        import tensorrt
    except ImportError as e:
        raise BackendUnavailable("tensorrt is not installed — on a machine with an NVIDIA GPU, "
                                 "pip install 'dcgan[trt]'") from e
    return tensorrt


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


class TrtBackend(Backend):
    name = "trt"

    def _activate(self, model_path: Path) -> None:
        trt = import_tensorrt()
        cuda_call(cudart().cudaSetDevice(self.device))
        self._logger = trt.Logger(trt.Logger.WARNING)
        self._runtime = trt.Runtime(self._logger)
        self.engine = self._runtime.deserialize_cuda_engine(model_path.read_bytes())
        if self.engine is None:
            raise BackendUnavailable(f"TensorRT could not deserialize {model_path} — re-run "
                                     "dcgan-export --format trt on this machine")
        self.context = self.engine.create_execution_context()
        name_in, name_out = self.manifest.input_name, self.manifest.output_name
        _, _, max_shape = self.engine.get_tensor_profile_shape(name_in, 0)
        self.max_batch = int(max_shape[0])
        size, c = self.manifest.image_size, self.manifest.channels
        self._buffers = []
        self._stream = Stream()
        self._host_in = self._keep(PinnedBuffer((self.max_batch, self.manifest.nz), np.float32))
        self._host_out = self._keep(PinnedBuffer((self.max_batch, size, size, c), np.uint8))
        self._dev_in = self._keep(DeviceBuffer(self._host_in.nbytes))
        self._dev_out = self._keep(DeviceBuffer(self._host_out.nbytes))
        self.context.set_tensor_address(name_in, self._dev_in.ptr)
        self.context.set_tensor_address(name_out, self._dev_out.ptr)

    def _keep(self, buffer):
        self._buffers.append(buffer)
        return buffer

    def _infer(self, z: np.ndarray) -> np.ndarray:
        n = z.shape[0]
        if n > self.max_batch:
            raise ValueError(f"batch of {n} is above the engine's max batch {self.max_batch}")
        # an execution context is not safe to share across threads: one call at a time
        with self._lock:
            self._host_in.array[:n] = z
            self._stream.copy_to_device(self._dev_in, self._host_in, z.nbytes)
            self.context.set_input_shape(self.manifest.input_name, (n, self.manifest.nz))
            if not self.context.execute_async_v3(int(self._stream.handle)):
                raise RuntimeError("TensorRT execute_async_v3 failed (see the TensorRT log above)")
            out_bytes = n * self._host_out.array[0].nbytes
            self._stream.copy_to_host(self._host_out, self._dev_out, out_bytes)
            self._stream.synchronize()
            return self._host_out.array[:n].copy()

    def _deactivate(self) -> None:
        del self.context, self.engine, self._runtime
        self._stream.synchronize()
        for buffer in self._buffers:
            buffer.free()
        self._stream.destroy()
        self._buffers = []
