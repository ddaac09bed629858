"""Score a checkpoint or an artifact on shapes: the strict checker (train/quality.py) and the
continuous metrics beside their anchors (train/continuous.py)."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np

from analysis.sources import AnalysisError
from runtime.files import atomic_write_text
from runtime.images import make_grid, save_image
from runtime.manifest import MANIFEST_NAME
from train.continuous import ContinuousScore, score_continuous
from train.quality import QualityScore, check_image, score_images


def generated_images(source: Path, n: int, seed: int) -> np.ndarray:
    """Images 0..n-1 of `seed`: through the runtime for an artifact; for a checkpoint, from the
    generator export would ship (EMA weights, BN recalibrated, eval mode, fp32), which every
    exported fp32 model matches within one uint8 level."""
    source = Path(source)
    if source.is_dir() and (source / MANIFEST_NAME).exists():
        from runtime.generator import Generator

        with Generator.load(source, backend="ort-cpu") as gen:
            return gen.generate(n, seed=seed)
    if not source.is_file():
        raise AnalysisError(f"{source} is neither an artifact directory nor a checkpoint — pass "
                            "what dcgan-export or dcgan-train wrote")
    from export.load import load_for_export
    from train.shipping import sample_images, shipping_generator

    return sample_images(shipping_generator(load_for_export(source).generator), n, seed)


def score_source(source: Path, n: int, seed: int, out: Path) -> tuple[QualityScore, ContinuousScore]:
    """Score `source`; write quality.json (both scores, the histograms too) and a grid of the
    first 64 samples, failures marked."""
    if n < 16:
        raise AnalysisError(f"--n {n} is too few for KID and precision/recall — score at least 16 "
                            "samples (the anchors are at 1024)")
    images = generated_images(source, n, seed)
    if images.shape[-1] != 3:
        raise AnalysisError("the quality score is for RGB models trained on shapes — this model "
                            f"makes {images.shape[-1]}-channel images")
    result, continuous = score_images(images), score_continuous(images)
    out.mkdir(parents=True, exist_ok=True)
    atomic_write_text(out / "quality.json", json.dumps(
        {"source": str(source), "seed": seed, **result.to_dict(),
         **continuous.to_dict(histograms=True)}, indent=2) + "\n")
    shown = images[:64].copy()
    for image in shown:  # a red corner on every sample that fails
        if not check_image(image).valid:
            image[:6, :6] = (255, 0, 0)
    save_image(out / "samples.png", make_grid(shown, ncols=8))
    return result, continuous
