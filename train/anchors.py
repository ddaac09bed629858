"""The anchors of the continuous metrics: what real renders score, and renders perturbed to the
edge of the strict checker. Computed once, when the feature network is trained
(train/featnet_fit.py), and shipped as featnet_anchors.json beside its weights, so scoring
during training never recomputes them.

How: N = 1,024 renders of ANCHOR_SEED are scored against the reference renders (REFERENCE_SEED,
train/continuous.py) as they are ("real": the floor, what sampling noise alone gives) and
perturbed four ways. Each perturbation with a strength takes the weakest strength of its grid at
which the strict checker refuses at least half of CALIBRATION_IMAGES renders: the edge, where an
image starts to fail. A model that scores beyond an anchor is further from the spec than an
image the checker only just refuses.

- grain: Gaussian noise of std s levels on every pixel and channel (the flatness checks);
- frame: a 1-px rectangle one pixel inside the border, blended s of the way from the background
  to the foreground colour (the one-region and flat-background checks);
- blur: a Gaussian blur of std s px (the flatness and outline checks at the edge);
- circles: every shape replaced by the circle of equal area, same centre and colours. No strength:
  an equal-area circle is already at the outline check's edge for a square (IoU ~0.90 against
  0.88), and the strict checker passes most of them, as circles. The class shares catch it.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from pathlib import Path

import numpy as np

from runtime.files import atomic_write_text, sha256_file
from train import shapes
from train.continuous import DEFAULT_SAMPLES, REFERENCE_SEED, score_continuous
from train.featnet import FeatureNet
from train.quality import AREA_PER_R2, check_image

ANCHORS_NAME = "featnet_anchors.json"
ANCHOR_SEED = 1004
CALIBRATION_IMAGES = 200  # renders the edge of each perturbation is found on
EDGE = 0.5  # the edge: the weakest strength at which at most this share still passes


def grain(images: np.ndarray, specs: list, s: float) -> np.ndarray:
    noise = np.random.default_rng(0).normal(0.0, s, images.shape)
    return np.clip(np.round(images + noise), 0, 255).astype(np.uint8)


def frame(images: np.ndarray, specs: list, s: float) -> np.ndarray:
    out = images.copy()
    for image, spec in zip(out, specs):
        bg, fg = np.asarray(spec.background, float), np.asarray(spec.foreground, float)
        colour = np.round(bg + s * (fg - bg)).astype(np.uint8)
        image[1, 1:-1] = image[-2, 1:-1] = image[1:-1, 1] = image[1:-1, -2] = colour
    return out


def blur(images: np.ndarray, specs: list, s: float) -> np.ndarray:
    r = int(np.ceil(3 * s))
    kernel = np.exp(-0.5 * (np.arange(-r, r + 1) / s) ** 2)
    kernel /= kernel.sum()
    x = np.pad(images.astype(np.float64), ((0, 0), (r, r), (r, r), (0, 0)), mode="edge")
    x = sum(w * x[:, i:i + x.shape[1] - 2 * r] for i, w in enumerate(kernel))  # rows
    x = sum(w * x[:, :, i:i + x.shape[2] - 2 * r] for i, w in enumerate(kernel))  # columns
    return np.clip(np.round(x), 0, 255).astype(np.uint8)


def circles(images: np.ndarray, specs: list, s: float | None = None) -> np.ndarray:
    return np.stack([shapes.paint(shapes.ShapeSpec(
        0, spec.centre, spec.radius * float(np.sqrt(AREA_PER_R2[spec.label] / np.pi)), 0.0,
        spec.background, spec.foreground)) for spec in specs])


Perturbation = Callable[[np.ndarray, list, float], np.ndarray]
# name -> (perturbation, strengths tried from weakest, what the strength is)
PERTURBATIONS: dict[str, tuple[Perturbation, tuple, str]] = {
    "grain": (grain, (1, 2, 3, 4, 5, 6, 8, 10, 12, 16), "noise std, RGB levels"),
    "frame": (frame, (0.05, 0.1, 0.15, 0.2, 0.25, 0.3, 0.4, 0.5, 0.75, 1.0),
              "blend from background to foreground colour"),
    "blur": (blur, (0.3, 0.4, 0.5, 0.6, 0.7, 0.8, 1.0, 1.25, 1.5, 2.0), "Gaussian std, px"),
    "circles": (circles, (None,), "none"),
}


def _renders(seed: int, n: int) -> tuple[np.ndarray, list]:
    specs = [shapes.draw_spec(seed, i) for i in range(n)]
    return np.stack([shapes.paint(s) for s in specs]), specs


def valid_share(images: np.ndarray) -> float:
    return float(np.mean([check_image(im).valid for im in images]))


def find_edge(perturb: Perturbation, strengths: tuple, images: np.ndarray,
              specs: list) -> tuple[float | None, dict]:
    """The weakest strength at which at most EDGE of `images` pass the strict checker (the last
    one tried if none does), and the valid share at each strength tried."""
    tried = {}
    for s in strengths:
        tried[s] = valid_share(perturb(images, specs, s))
        if tried[s] <= EDGE:
            break
    return s, tried


def compute_anchors(net: FeatureNet, n: int = DEFAULT_SAMPLES) -> dict:
    """Every anchor's scores under `net`, with how it was made."""
    calib, calib_specs = _renders(ANCHOR_SEED, CALIBRATION_IMAGES)
    images, specs = _renders(ANCHOR_SEED, n)
    anchors = {"real": {"strength": None, "unit": "none", "valid": valid_share(images),
                        "scores": score_continuous(images, net).to_dict()}}
    for name, (perturb, strengths, unit) in PERTURBATIONS.items():
        edge, tried = find_edge(perturb, strengths, calib, calib_specs)
        perturbed = perturb(images, specs, edge)
        anchors[name] = {"strength": edge, "unit": unit, "valid": valid_share(perturbed),
                         "valid_by_strength": {str(k): v for k, v in tried.items()},
                         "scores": score_continuous(perturbed, net).to_dict()}
    return {"n": n, "reference": f"renders 0..{n - 1} of seed {REFERENCE_SEED}",
            "samples": f"renders 0..{n - 1} of seed {ANCHOR_SEED}, perturbed as named",
            "edge": f"weakest strength at which <= {EDGE:.0%} of {CALIBRATION_IMAGES} renders "
                    "pass the strict checker", "anchors": anchors}


def write_anchors(net: FeatureNet, path: Path, weights: Path) -> dict:
    """Compute the anchors and write them to `path`, with the sha256 of the `weights` file they
    belong to."""
    result = compute_anchors(net)
    result["weights_sha256"] = sha256_file(weights)
    atomic_write_text(path, json.dumps(result, indent=1) + "\n")
    return result
