"""Build a TensorRT engine from our ONNX model (TensorRT 10/11 Python API).

Strongly typed network (TensorRT 11 removed BuilderFlag.FP16: the fp16 engine comes from the
fp16 ONNX), one optimization profile for the batch axis, and a timing cache kept beside the
artifact and reused. Kept small and close to NVIDIA's samples: it runs only on GPU machines,
so export verifies every engine it builds before keeping it.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from pathlib import Path

from export.errors import ExportError
from runtime.cuda import gpu_info
from runtime.errors import BackendUnavailable
from runtime.manifest import INPUT_NAME
from runtime.tensorrt_backend import import_tensorrt

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class Profile:
    min_batch: int = 1
    opt_batch: int = 64
    max_batch: int = 256

    def check(self) -> None:
        if not 1 <= self.min_batch <= self.opt_batch <= self.max_batch:
            raise ExportError(f"need 1 <= --min-batch <= --opt-batch <= --max-batch, got "
                              f"{self.min_batch}, {self.opt_batch}, {self.max_batch}")


def trt_requirements(device: int = 0) -> str | None:
    """Why a TensorRT engine cannot be built here, or None if it can."""
    try:
        import_tensorrt()
        gpu_info(device)
    except BackendUnavailable as e:
        return str(e)
    return None


def build_engine(onnx_bytes: bytes, nz: int, profile: Profile, timing_cache: Path,
                 device: int = 0) -> tuple[bytes, dict]:
    """Serialize an engine for `onnx_bytes`; returns (engine bytes, manifest fields)."""
    trt = import_tensorrt()
    gpu = gpu_info(device)
    logger = trt.Logger(trt.Logger.WARNING)
    builder = trt.Builder(logger)
    # STRONGLY_TYPED: required for fp16-from-ONNX on TensorRT 10, always on (flag ignored) in 11
    network = builder.create_network(1 << int(trt.NetworkDefinitionCreationFlag.STRONGLY_TYPED))
    parser = trt.OnnxParser(network, logger)
    if not parser.parse(onnx_bytes):
        errors = "; ".join(str(parser.get_error(i)) for i in range(parser.num_errors))
        raise ExportError(f"TensorRT could not parse the ONNX model: {errors}")
    config = builder.create_builder_config()
    trt_profile = builder.create_optimization_profile()
    trt_profile.set_shape(INPUT_NAME, (profile.min_batch, nz), (profile.opt_batch, nz),
                          (profile.max_batch, nz))
    config.add_optimization_profile(trt_profile)
    cache = config.create_timing_cache(timing_cache.read_bytes() if timing_cache.exists() else b"")
    config.set_timing_cache(cache, ignore_mismatch=True)
    serialized = builder.build_serialized_network(network, config)
    if serialized is None:
        raise ExportError("TensorRT failed to build the engine (see its log above)")
    timing_cache.write_bytes(memoryview(config.get_timing_cache().serialize()))
    fields = {"tensorrt_version": trt.__version__, "gpu_name": gpu.name,
              "compute_capability": gpu.compute_capability, "min_batch": profile.min_batch,
              "opt_batch": profile.opt_batch, "max_batch": profile.max_batch}
    return bytes(memoryview(serialized)), fields
