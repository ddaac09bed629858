"""Which backend runs an artifact: the factory, with the heavy engines imported lazily."""

from __future__ import annotations

import logging

from runtime.backend import Backend
from runtime.errors import BackendUnavailable
from runtime.manifest import Manifest

log = logging.getLogger(__name__)

BACKENDS = ("ort-cpu", "ort-cuda", "trt")


def create_backend(name: str, manifest: Manifest, device: int = 0,
                   precision: str | None = None, spin_wait: bool = True) -> Backend:
    """An inactive backend `name` for the best matching file in the manifest (`spin_wait`:
    Generator.load's)."""
    if name in ("ort-cpu", "ort-cuda"):
        # fp32 unless asked; the CPU provider has fast int8 kernels, the CUDA provider fp16 ones
        want = precision or "fp32"
        if name == "ort-cuda" and want == "int8":
            raise BackendUnavailable("the int8 model is for ort-cpu; ort-cuda runs fp32 or fp16")
        entries = [e for e in manifest.files("onnx") if e.precision == want]
        if not entries:
            left_out = [s for s in manifest.data.get("skipped", []) if s.get("precision") == want]
            if left_out:
                raise BackendUnavailable(
                    f"the artifact has no {want} model: export left it out ({left_out[0]['reason']}) "
                    f"— use --precision fp32 (the default)")
            raise BackendUnavailable(f"the artifact has no {want} ONNX model (files: "
                                     f"{[e.name for e in manifest.files()]}) — re-run dcgan-export")
        from runtime.ort_backends import OrtCpuBackend, OrtCudaBackend

        if name == "ort-cpu":
            return OrtCpuBackend(manifest, entries[0], device, spin_wait)
        return OrtCudaBackend(manifest, entries[0], device)
    if name == "trt":
        from runtime.tensorrt_backend import TrtBackend, pick_engine

        return TrtBackend(manifest, pick_engine(manifest, device, precision), device)
    raise ValueError(f"unknown backend {name!r}; expected auto or one of {', '.join(BACKENDS)}")


def auto_backend(manifest: Manifest, device: int = 0, precision: str | None = None,
                 spin_wait: bool = True) -> Backend:
    """trt where an engine for this GPU exists, else ort-cuda where CUDA works, else ort-cpu."""
    reasons = []
    for name in ("trt", "ort-cuda"):
        if name == "trt" and not manifest.files("trt"):
            reasons.append("trt: no engine in the artifact")
            continue
        try:
            backend = create_backend(name, manifest, device, precision).activate()
            log.info("backend: %s (auto)", name)
            return backend
        except BackendUnavailable as e:
            reasons.append(f"{name}: {e}")
    log.info("backend: ort-cpu (auto; %s)", "; ".join(r.split(" — ")[0] for r in reasons))
    return create_backend("ort-cpu", manifest, device, precision, spin_wait).activate()
