"""Build a TensorRT engine from our ONNX model (TensorRT 10/11 Python API).

Strongly typed network (TensorRT 11 removed BuilderFlag.FP16: the fp16 engine comes from the
fp16 ONNX), TF32 cleared for fp32, one optimization profile for the batch axis, built on the
device the user named, and a timing cache per GPU model and TensorRT version, kept beside the
artifact and replaced atomically once an engine built with it verified. Kept small and close to
NVIDIA's samples: it runs only on GPU machines, so export verifies every engine it builds
before keeping it.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass

from export.errors import ExportError
from runtime.cuda import cuda_call, cudart, gpu_info
from runtime.errors import BackendUnavailable
from runtime.manifest import INPUT_NAME
from runtime.tensorrt_backend import import_tensorrt, trt_logger

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


def timing_cache_name(gpu, trt_version: str) -> str:
    """A timing cache per GPU model and TensorRT version: a cache from another device is never
    loaded (TensorRT would refuse it, or with ignore_mismatch use timings that do not apply)."""
    tag = "".join(ch if ch.isalnum() else "-" for ch in f"{gpu.name}-sm{gpu.compute_capability}")
    return f"timing-{tag}-trt{trt_version}.cache"


def build_engine(onnx_bytes: bytes, nz: int, profile: Profile, precision: str,
                 timing_cache: bytes = b"", device: int = 0) -> tuple[bytes, dict, bytes]:
    """Serialize an engine for `onnx_bytes` on CUDA device `device`.

    Returns (engine bytes, manifest fields, updated timing cache bytes). The caller keeps the
    cache only once the engine verified. fp32 engines are built with TF32 cleared (TensorRT
    enables it by default); fp16 ones come from the fp16 ONNX, as the network is strongly typed.
    """
    trt = import_tensorrt()
    gpu = gpu_info(device)
    cuda_call(cudart().cudaSetDevice(device))  # the builder works on the current device
    logger = trt_logger(trt)
    builder = trt.Builder(logger)
    # STRONGLY_TYPED: required for fp16-from-ONNX on TensorRT 10, always on (flag ignored) in 11
    network = builder.create_network(1 << int(trt.NetworkDefinitionCreationFlag.STRONGLY_TYPED))
    parser = trt.OnnxParser(network, logger)
    if not parser.parse(onnx_bytes):
        errors = "; ".join(str(parser.get_error(i)) for i in range(parser.num_errors))
        raise ExportError(f"TensorRT could not parse the ONNX model: {errors}")
    config = builder.create_builder_config()
    if precision == "fp32":
        config.clear_flag(trt.BuilderFlag.TF32)
    trt_profile = builder.create_optimization_profile()
    trt_profile.set_shape(INPUT_NAME, (profile.min_batch, nz), (profile.opt_batch, nz),
                          (profile.max_batch, nz))
    config.add_optimization_profile(trt_profile)
    cache = config.create_timing_cache(timing_cache)
    if not config.set_timing_cache(cache, ignore_mismatch=False):
        log.info("the timing cache does not match this device; starting a fresh one")
        config.set_timing_cache(config.create_timing_cache(b""), ignore_mismatch=False)
    serialized = builder.build_serialized_network(network, config)
    if serialized is None:
        raise ExportError("TensorRT failed to build the engine (see its log above)")
    fields = {"tensorrt_version": trt.__version__, "gpu_name": gpu.name,
              "compute_capability": gpu.compute_capability, "min_batch": profile.min_batch,
              "opt_batch": profile.opt_batch, "max_batch": profile.max_batch,
              "tf32": precision != "fp32"}
    return (bytes(memoryview(serialized)), fields,
            bytes(memoryview(config.get_timing_cache().serialize())))
