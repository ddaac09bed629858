"""Check exported models against the PyTorch reference: G in eval mode, fp32, BN unfolded.

Tolerances (docs/architecture.md, "Numerics"): float output max abs error <= 1e-4 for fp32 and <= 2e-2
for fp16; uint8 output within 1 level for fp32. For fp16 the uint8 bound follows from the float
one: 2e-2 * 127.5 = 2.55, so 3 levels. int8 (opt-in, ort-cpu) is judged on its mean as well as
its worst case, as quantization error is spread over every pixel: at most 0.25 float (32 uint8
levels) anywhere and 2.5 uint8 levels on average. Measured on a paper-width model trained for
1,500 steps: max 21 levels, mean 1.6 (41 dB PSNR); the bounds leave room for other models while
a broken quantization (tens of levels on average) still fails.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import onnx
import torch

from export.errors import VerificationError
from export.onnx_graph import FLOAT_OUTPUT, with_float_output
from runtime.images import images_from_float
from runtime.latents import latents
from runtime.manifest import INPUT_NAME, OUTPUT_NAME
from train.models import GeneratorNet


@dataclass(frozen=True)
class Tolerance:
    max_abs: float  # float output, [-1, 1] units
    uint8_max: int  # levels, anywhere
    uint8_mean: float | None = None  # levels, averaged over all values


TOLERANCES = {"fp32": Tolerance(1e-4, 1), "fp16": Tolerance(2e-2, 3), "int8": Tolerance(0.25, 32, 2.5)}
VERIFY_BATCHES = (1, 7, 64)
VERIFY_SEED = 2016


def verification_latents(g: GeneratorNet, n: int) -> np.ndarray:
    return latents(VERIFY_SEED, 0, n, g.cfg.nz, g.cfg.latent)


@torch.no_grad()
def reference(g: GeneratorNet, z: np.ndarray) -> np.ndarray:
    """The reference float output (N, nc, 64, 64) of G in eval mode, fp32."""
    g.eval()
    return g(torch.from_numpy(z)).float().numpy()


def compare(ref: np.ndarray, got_float: np.ndarray | None, got_uint8: np.ndarray,
            precision: str) -> dict:
    """Errors of one backend's outputs against the reference; `passed` applies the tolerances."""
    tol = TOLERANCES[precision]
    u8_diff = np.abs(got_uint8.astype(np.int16) - images_from_float(ref).astype(np.int16))
    result = {"uint8_max_diff": int(u8_diff.max()), "uint8_mean_diff": float(u8_diff.mean()),
              "uint8_tolerance": tol.uint8_max}
    passed = result["uint8_max_diff"] <= tol.uint8_max
    if tol.uint8_mean is not None:
        result["uint8_mean_tolerance"] = tol.uint8_mean
        passed = passed and result["uint8_mean_diff"] <= tol.uint8_mean
    if got_float is not None:
        err = np.abs(got_float.astype(np.float64) - ref.astype(np.float64))
        result.update(max_abs=float(err.max()), mean_abs=float(err.mean()), tolerance=tol.max_abs)
        passed = passed and result["max_abs"] <= tol.max_abs
    result["passed"] = bool(passed)
    return result


def merge(results: list[dict]) -> dict:
    """Worst case over several batch sizes."""
    out = dict(results[0])
    for r in results[1:]:
        for key in ("max_abs", "uint8_max_diff"):
            if key in r:
                out[key] = max(out[key], r[key])
        for key in ("mean_abs", "uint8_mean_diff"):
            if key in r:
                out[key] = max(out[key], r[key])
        out["passed"] = out["passed"] and r["passed"]
    return out


def require(result: dict, what: str) -> dict:
    if not result["passed"]:
        detail = ", ".join(f"{k}={result[k]:.3g}" for k in ("max_abs", "uint8_max_diff", "uint8_mean_diff")
                           if k in result)
        mean = (f", mean {result['uint8_mean_tolerance']}" if "uint8_mean_tolerance" in result else "")
        error = VerificationError(f"{what} differs from the PyTorch reference beyond tolerance "
                                  f"({detail}; tolerance {result.get('tolerance', '-')} float, "
                                  f"{result['uint8_tolerance']} uint8 levels{mean}) — nothing was "
                                  "written")
        error.result = result
        raise error
    return result


def verify_onnx(model: onnx.ModelProto, g: GeneratorNet, precision: str,
                batch_sizes: tuple[int, ...] = VERIFY_BATCHES) -> dict:
    """Run `model` on onnxruntime's CPU provider at each batch size; compare float and uint8.

    Returns {"verified": True, "backend": "ort-cpu", "batch_sizes": [...], errors...}, or
    {"verified": False, "reason": ...} when the CPU provider cannot run this model (fp16).
    Raises VerificationError if any output is beyond tolerance.
    """
    import onnxruntime as ort

    try:
        session = ort.InferenceSession(with_float_output(model).SerializeToString(),
                                       providers=["CPUExecutionProvider"])
    except Exception as e:  # e.g. no fp16 ConvTranspose kernel on the CPU provider
        reason = str(e).splitlines()[0][:300]
        return {"verified": False, "reason": f"onnxruntime {ort.__version__} CPU provider cannot "
                                             f"run it: {reason}"}
    z_all = verification_latents(g, max(batch_sizes))
    results = []
    for b in batch_sizes:
        z = z_all[:b]
        images, pixels = session.run([OUTPUT_NAME, FLOAT_OUTPUT], {INPUT_NAME: z})
        results.append(compare(reference(g, z), pixels, images, precision))
    result = require(merge(results), f"the {precision} ONNX model")
    return {"verified": True, "backend": "ort-cpu", "onnxruntime": ort.__version__,
            "batch_sizes": list(batch_sizes), **result}
