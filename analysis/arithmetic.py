"""arithmetic: vector arithmetic on averaged exemplars, mean(A) - mean(B) + mean(C)."""

from __future__ import annotations

from pathlib import Path

import numpy as np

from analysis.figures import save_json, save_rows
from analysis.sources import AnalysisError
from runtime.generator import Generator
from runtime.latents import latents
from runtime.run_record import RecordError, RunRecord

NEIGHBOURS = 8  # results around the arithmetic's latent, as in the paper's figure
NOISE = 0.25  # uniform noise half-width added to the result for those neighbours


def group_latents(gen: Generator, group: str, run_dir: Path | None) -> np.ndarray:
    """Latents for `group`: a .npy file of (k, nz) latents, or comma-separated image indices of
    the dcgan-generate run in `run_dir` (its manifest gives seed and distribution)."""
    if group.endswith(".npy"):
        z = np.load(group)
        if z.ndim != 2 or z.shape[1] != gen.nz:
            raise AnalysisError(f"{group} holds shape {z.shape}; expected (k, {gen.nz}) latents")
        return z.astype(np.float32)
    if run_dir is None:
        raise AnalysisError("image indices need --run, the dcgan-generate output directory")
    try:
        indices = [int(i) for i in group.split(",") if i.strip()]
    except ValueError:
        raise AnalysisError(f"bad group {group!r} — give comma-separated indices or a .npy file") from None
    try:
        record = RunRecord.read(run_dir)
    except RecordError as e:
        raise AnalysisError(f"{e} — pass a dcgan-generate output directory as --run") from None
    first, count = record.first_index, record.count
    for i in indices:
        if not first <= i < first + count:
            raise AnalysisError(f"index {i} is not in the run {run_dir} (indices {first}.."
                                f"{first + count - 1})")
    if record.nz != gen.nz or record.latent != gen.manifest.latent:
        raise AnalysisError(f"the run {run_dir} was made by another model (nz {record.nz}) — "
                            "pass the artifact it was generated with")
    return np.concatenate([latents(record.seed, i, 1, gen.nz, record.latent) for i in indices])


def vector_arithmetic(gen: Generator, a: np.ndarray, b: np.ndarray, c: np.ndarray, out: Path,
                      seed: int = 0) -> dict:
    """Render A, B, C and mean(A) - mean(B) + mean(C) with neighbours; write arithmetic.png/json."""
    if min(len(a), len(b), len(c)) == 0:
        raise AnalysisError("each of the three groups needs at least one latent")
    result_z = a.mean(0) - b.mean(0) + c.mean(0)
    rng = np.random.default_rng(seed)
    around = result_z + rng.uniform(-NOISE, NOISE, size=(NEIGHBOURS, gen.nz)).astype(np.float32)
    width = max(len(a), len(b), len(c), NEIGHBOURS + 1)

    def row(z: np.ndarray) -> np.ndarray:
        images = gen.from_latents(z)
        pad = np.zeros((width - len(images), *images.shape[1:]), np.uint8)
        return np.concatenate([images, pad])

    means = np.stack([a.mean(0), b.mean(0), c.mean(0)])
    out.mkdir(parents=True, exist_ok=True)
    save_rows(out / "arithmetic.png", [row(a), row(b), row(c), row(means),
                                       row(np.concatenate([result_z[None], around]))])
    np.save(out / "result_latent.npy", result_z[None].astype(np.float32))
    summary = {"analysis": "arithmetic", "sizes": [len(a), len(b), len(c)],
               "result_norm": float(np.linalg.norm(result_z)), "neighbours": NEIGHBOURS,
               "noise_uniform_half_width": NOISE, "figure": "arithmetic.png",
               "rows": ["A", "B", "C", "mean(A), mean(B), mean(C)", "A - B + C, then neighbours"],
               "result_latent": "result_latent.npy"}
    save_json(out / "arithmetic.json", summary)
    return summary
