"""walk: rows of interpolations between random latent pairs (the paper's smooth transitions)."""

from __future__ import annotations

from pathlib import Path

import numpy as np

from analysis.figures import save_json, save_rows
from runtime.generator import Generator


def latent_walk(gen: Generator, out: Path, rows: int = 8, steps: int = 10, seed: int = 0,
                method: str = "slerp") -> dict:
    """Write walk.png (rows x steps) and walk.json; returns the JSON.

    Row r walks from the latent of image 2r to that of image 2r+1 under `seed`. The JSON gives
    each row's mean absolute pixel change between neighbouring frames: a smooth walk changes
    a little at every step rather than jumping once.
    """
    z = gen.latents(2 * rows, seed)
    images, changes = [], []
    for r in range(rows):
        frames = gen.interpolate(z[2 * r], z[2 * r + 1], steps, method)
        images.append(frames)
        diffs = np.abs(np.diff(frames.astype(np.int16), axis=0)).mean(axis=(1, 2, 3))
        changes.append({"mean_step_change": float(diffs.mean()), "max_step_change": float(diffs.max())})
    out.mkdir(parents=True, exist_ok=True)
    save_rows(out / "walk.png", images)
    result = {"analysis": "walk", "rows": rows, "steps": steps, "seed": seed, "method": method,
              "endpoints": [[2 * r, 2 * r + 1] for r in range(rows)], "per_row": changes,
              "figure": "walk.png"}
    save_json(out / "walk.json", result)
    return result
