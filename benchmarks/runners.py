"""What the benchmark times: the PyTorch reference and folded model, and every runtime backend.

Each runner maps float32 latents (n, nz) to uint8 images (n, 64, 64, C); where it can also
give the float output (N, C, 64, 64), `float_out` does so, for the error columns.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import numpy as np
import torch

from export.fold import FoldedGenerator, fold_generator
from runtime.images import images_from_float


@dataclass
class Runner:
    name: str
    precision: str  # "fp32" or "fp16": which tolerance applies
    images: Callable[[np.ndarray], np.ndarray]  # z -> uint8 NHWC
    float_out: Callable[[np.ndarray], np.ndarray] | None = None  # z -> float NCHW
    close: Callable[[], None] = lambda: None


def torch_runner(name: str, module: torch.nn.Module) -> Runner:
    module = module.eval()

    @torch.no_grad()
    def float_out(z: np.ndarray) -> np.ndarray:
        return module(torch.from_numpy(z)).float().numpy()

    return Runner(name, "fp32", lambda z: images_from_float(float_out(z)), float_out)


def reference_runner(g) -> Runner:
    """The reference: G in eval mode, fp32, BN unfolded."""
    return torch_runner("torch-eager", g)


def folded_runner(g) -> Runner:
    return torch_runner("torch-folded", FoldedGenerator(fold_generator(g)))


def runtime_runner(artifact, backend: str, precision: str) -> Runner:
    """A runtime backend through `runtime.Generator` (raises BackendUnavailable if it can't run)."""
    from runtime import Generator

    gen = Generator.load(artifact, backend=backend, precision=precision)
    float_out = None
    if backend == "ort-cpu":
        float_out = _ort_float_output(gen)
    return Runner(f"{backend}" + ("" if precision == "fp32" else f"-{precision}"), precision,
                  gen.from_latents, float_out, gen.close)


def _ort_float_output(gen) -> Callable[[np.ndarray], np.ndarray]:
    """The float image of the same ONNX file, from a session that also outputs it."""
    import onnx
    import onnxruntime as ort

    from export.onnx_graph import FLOAT_OUTPUT, with_float_output

    path = gen.manifest.checked_path(gen.backend.entry)
    session = ort.InferenceSession(with_float_output(onnx.load(path)).SerializeToString(),
                                   providers=["CPUExecutionProvider"])
    return lambda z: session.run([FLOAT_OUTPUT], {gen.manifest.input_name: z})[0]
