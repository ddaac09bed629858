"""Inference backends, one small class each (the shape of Polygraphy's runners).

The constructor only stores what it needs; `activate()` acquires the session or engine;
`infer(z)` maps float32 (n, nz) latents to uint8 (n, H, W, C) images; `deactivate()` frees.
The base class checks state and input once; each backend implements `_activate`, `_infer`,
`_deactivate`. Every `infer` is safe to call from several threads at once.
"""

from __future__ import annotations

import logging
import os
import threading
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import numpy as np

from runtime.errors import ArtifactError, BackendUnavailable
from runtime.manifest import FileEntry, Manifest

log = logging.getLogger(__name__)

BACKENDS = ("ort-cpu", "ort-cuda", "trt")
PRECISIONS = ("fp32", "fp16", "int8")  # model files an artifact may hold


class Backend:
    name = "base"

    def __init__(self, manifest: Manifest, entry: FileEntry, device: int = 0):
        self.manifest, self.entry, self.device = manifest, entry, device
        self.max_batch: int | None = None  # None: any batch size
        self.active = False
        self._lock = threading.Lock()

    def activate(self) -> Backend:
        with self._lock:
            if not self.active:
                self._activate(self.manifest.checked_path(self.entry))
                self.active = True
        return self

    def infer(self, z: np.ndarray) -> np.ndarray:
        if not self.active:
            raise RuntimeError(f"backend {self.name} is not active — call activate() first")
        return self._infer(np.ascontiguousarray(z, dtype=np.float32))

    def deactivate(self) -> None:
        with self._lock:
            if self.active:
                self._deactivate()
                self.active = False

    def __enter__(self) -> Backend:
        return self.activate()

    def __exit__(self, *exc) -> None:
        self.deactivate()

    def _activate(self, model_path: Path) -> None:
        raise NotImplementedError

    def _infer(self, z: np.ndarray) -> np.ndarray:
        raise NotImplementedError

    def _deactivate(self) -> None:
        raise NotImplementedError


def physical_cores() -> int:
    """Physical cores available to this process (hyper-threads share a core's FPUs)."""
    try:
        cores, current = set(), {}
        with open("/proc/cpuinfo") as f:
            for line in f:
                key, _, value = line.partition(":")
                key, value = key.strip(), value.strip()
                if key in ("processor", "physical id", "core id"):
                    current[key] = value
                if not line.strip() and current:
                    cores.add((current.get("physical id"), current.get("core id", current.get("processor"))))
                    current = {}
        available = len(os.sched_getaffinity(0))
        return max(1, min(len(cores) or available, available))
    except (OSError, AttributeError):
        return max(1, os.cpu_count() or 1)


def _import_ort():
    try:
        import onnxruntime as ort
    except ImportError as e:
        raise BackendUnavailable("onnxruntime is not installed — pip install 'dcgan[cpu]' "
                                 "(or 'dcgan[gpu]' for onnxruntime-gpu)") from e
    return ort


class OrtBackend(Backend):
    """What the ONNX Runtime backends share: how a session is opened, and released."""

    providers: list = ["CPUExecutionProvider"]

    def _open_session(self, model_path: Path, threads: int):
        ort = _import_ort()
        opts = ort.SessionOptions()
        opts.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
        opts.intra_op_num_threads = threads
        opts.execution_mode = ort.ExecutionMode.ORT_SEQUENTIAL
        opts.log_severity_level = 3  # errors only; provider fallbacks are checked below
        try:
            session = ort.InferenceSession(str(model_path), opts, providers=self.providers)
        except Exception as e:  # onnxruntime raises its own types for a bad file: one error here
            detail = str(e).splitlines()[0][:200] if str(e) else ""
            raise ArtifactError(f"{self.entry.name} is not a loadable ONNX model ({type(e).__name__}: "
                                f"{detail}) — re-run dcgan-export") from e
        io = [[(t.name, list(t.shape), t.type) for t in ts]
              for ts in (session.get_inputs(), session.get_outputs())]
        self.manifest.check_model_io(self.entry, *io)
        return session

    def _deactivate(self) -> None:
        del self.session


class OrtCpuBackend(OrtBackend):
    """ONNX Runtime, CPU execution provider.

    A batch of two or more images is cut into one slice per core, and the slices run at once on
    a session with a single intra-op thread, so each core works through whole images alone: at
    the paper's width 1.12-1.19x faster than splitting every convolution across the cores
    (benchmarks/results/ort_cpu_options.md). A single image has nothing to split, so it runs on
    a second session that spreads each layer over all cores. Each image comes out the same bits
    either way (tested): the kernels split work across threads by output, never within a sum.
    """

    name = "ort-cpu"

    def _activate(self, model_path: Path) -> None:
        self.cores = physical_cores()
        self.session = self._open_session(model_path, self.cores)
        self.pool = None
        if self.cores > 1:
            self.per_core_session = self._open_session(model_path, 1)
            self.pool = ThreadPoolExecutor(self.cores, thread_name_prefix="ort-cpu")

    def _run(self, session, z: np.ndarray) -> np.ndarray:
        # InferenceSession.run is thread-safe and releases the GIL
        return session.run([self.manifest.output_name], {self.manifest.input_name: z})[0]

    def _infer(self, z: np.ndarray) -> np.ndarray:
        if self.pool is None or len(z) < 2:
            return self._run(self.session, z)
        slices = np.array_split(z, min(len(z), self.cores))
        futures = [self.pool.submit(self._run, self.per_core_session, s) for s in slices]
        return np.concatenate([f.result() for f in futures])

    def _deactivate(self) -> None:
        if self.pool is not None:
            self.pool.shutdown(wait=True)
            del self.per_core_session
        super()._deactivate()


class OrtCudaBackend(OrtBackend):
    """ONNX Runtime, CUDA execution provider, with I/O binding (uint8 output copied once)."""

    name = "ort-cuda"

    def _activate(self, model_path: Path) -> None:
        ort = _import_ort()
        if "CUDAExecutionProvider" not in ort.get_available_providers():
            raise BackendUnavailable(
                f"onnxruntime {ort.__version__} has no CUDA provider (available: "
                f"{ort.get_available_providers()}) — pip uninstall onnxruntime; pip install "
                "'dcgan[gpu]'")
        if hasattr(ort, "preload_dlls"):
            try:  # use CUDA/cuDNN libraries that a CUDA build of torch or nvidia-* wheels brought
                ort.preload_dlls()
            except Exception:  # noqa: BLE001 - best effort; the provider check below decides
                pass
        self.providers = [("CUDAExecutionProvider", {"device_id": self.device}), "CPUExecutionProvider"]
        # the CPU threads only feed the GPU and run any node it cannot
        self.session = self._open_session(model_path, physical_cores())
        if self.session.get_providers()[0] != "CUDAExecutionProvider":
            raise BackendUnavailable(
                "onnxruntime could not start its CUDA provider (no GPU, or CUDA 12/13 and cuDNN 9 "
                "libraries missing) — install them, or use --backend ort-cpu")

    def _infer(self, z: np.ndarray) -> np.ndarray:
        binding = self.session.io_binding()  # one per call: calls stay thread-safe
        binding.bind_cpu_input(self.manifest.input_name, z)
        binding.bind_output(self.manifest.output_name, "cpu")
        self.session.run_with_iobinding(binding)
        return binding.copy_outputs_to_cpu()[0]


def create_backend(name: str, manifest: Manifest, device: int = 0,
                   precision: str | None = None) -> Backend:
    """An inactive backend `name` for the best matching file in the manifest."""
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
        cls = OrtCpuBackend if name == "ort-cpu" else OrtCudaBackend
        return cls(manifest, entries[0], device)
    if name == "trt":
        from runtime.tensorrt_backend import TrtBackend, pick_engine

        return TrtBackend(manifest, pick_engine(manifest, device, precision), device)
    raise ValueError(f"unknown backend {name!r}; expected auto or one of {', '.join(BACKENDS)}")


def auto_backend(manifest: Manifest, device: int = 0, precision: str | None = None) -> Backend:
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
    return create_backend("ort-cpu", manifest, device, precision).activate()
