"""The ONNX Runtime backends: ort-cpu and ort-cuda."""

from __future__ import annotations

from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import numpy as np

from runtime.backend import Backend
from runtime.cores import physical_cores
from runtime.errors import ArtifactError, BackendUnavailable
from runtime.manifest import FileEntry, Manifest
from runtime.optional import import_onnxruntime


class OrtBackend(Backend):
    """What the ONNX Runtime backends share: how a session is opened, and released."""

    providers: list = ["CPUExecutionProvider"]
    log_severity = 3  # errors only
    spin_wait = True

    def _open_session(self, model_path: Path, threads: int):
        ort = import_onnxruntime()
        opts = ort.SessionOptions()
        opts.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
        opts.intra_op_num_threads = threads
        opts.execution_mode = ort.ExecutionMode.ORT_SEQUENTIAL
        opts.log_severity_level = self.log_severity
        if not self.spin_wait:
            opts.add_session_config_entry("session.intra_op.allow_spinning", "0")
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


def run_per_core(pool: ThreadPoolExecutor, cores: int, run_slice, z: np.ndarray) -> np.ndarray:
    """Cut the batch `z` into one slice per core, run `run_slice` on each at once on `pool`
    (ONNX Runtime releases the GIL), and join the results in order."""
    futures = [pool.submit(run_slice, s) for s in np.array_split(z, min(len(z), cores))]
    return np.concatenate([f.result() for f in futures])


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

    def __init__(self, manifest: Manifest, entry: FileEntry, device: int = 0,
                 spin_wait: bool = True):
        super().__init__(manifest, entry, device)
        self.spin_wait = spin_wait

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
        return run_per_core(self.pool, self.cores, lambda s: self._run(self.per_core_session, s), z)

    def _deactivate(self) -> None:
        if self.pool is not None:
            self.pool.shutdown(wait=True)
            del self.per_core_session
        super()._deactivate()


class OrtCudaBackend(OrtBackend):
    """ONNX Runtime, CUDA execution provider, with I/O binding (uint8 output copied once)."""

    name = "ort-cuda"
    # warnings too: ONNX Runtime says why the CUDA provider could not start (missing CUDA or
    # cuDNN library, driver too old) only as a warning, then falls back to the CPU
    log_severity = 2

    def _activate(self, model_path: Path) -> None:
        ort = import_onnxruntime()
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
