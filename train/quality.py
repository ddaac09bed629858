"""The project's quality score for models trained on `shapes`: is each sample one clean shape?

A sample is valid when it is what the shapes spec draws (train/shapes.py): one flat background
colour, one connected, filled foreground region of one flat colour with enough contrast, whose
outline matches a circle, square or equilateral triangle of circumradius 10-24 px. The checker
fits each class to the sample's coverage map (area gives the radius, an angular moment the
rotation), renders the fitted shape with the dataset's own renderer and compares the two.

Thresholds are set on what an eye calls flat and clean, and calibrated on rendered data (tests:
every render of 2,000 passes; noise, flat images and blobs fail):

- flat: 98 % of background pixels (away from the outline) and 95 % of interior foreground pixels
  lie within FLAT_TOLERANCE (RGB distance) of their region's median colour, and the mean
  distance is under FLAT_MEAN;
- clean outline: the fitted shape's coverage overlaps the sample's with soft IoU >= MIN_IOU.

The score of a set of samples: the valid share, the class balance of the valid ones (normalised
entropy, 1 = uniform) and the share of distinct images (not a near-copy of another sample). Two
diagnostics say where invalid samples stand: the background deviation (how far from one flat
colour, the check generators fail most) and the share that would be valid but for the flatness
of their colours (one clean outline of a spec shape, the rest of the check).
"""

from __future__ import annotations

from collections import Counter
from dataclasses import dataclass, field

import numpy as np

from train import shapes

FOREGROUND_THRESHOLD = 60.0  # RGB distance from the background: half the spec's minimum contrast
MIN_CONTRAST = 100.0  # measured fg/bg distance (the spec draws >= 120; edges blur medians a little)
FLAT_TOLERANCE = 24.0  # RGB distance a flat pixel may stray from its region's median colour
FLAT_MEAN = 6.0  # mean RGB distance from the median, per region
BACKGROUND_FLAT_SHARE = 0.98
FOREGROUND_FLAT_SHARE = 0.95
MAX_STRAY_PIXELS = 3  # foreground pixels outside the main region, or holes inside it
MIN_IOU = 0.88  # fitted shape vs sample coverage; equal-area circle vs square scores ~0.90 at best
RADIUS_SLACK = 1.0  # px beyond the spec's 10-24 px range still accepted
DUPLICATE_LEVELS = 2.0  # RMS uint8 difference under which two samples count as one
AREA_PER_R2 = {0: np.pi, 1: 2.0, 2: 3 * np.sqrt(3) / 4}  # shape area / circumradius**2
SYMMETRY = {1: 4, 2: 3}  # rotational symmetry of square and triangle


@dataclass(frozen=True)
class Verdict:
    valid: bool
    reason: str  # "ok" or what failed first
    label: int = -1  # best-fitting class (index into shapes.CLASSES) when a shape was found
    radius: float = 0.0
    iou: float = 0.0


@dataclass
class QualityScore:
    n: int
    valid: float  # share of samples that are one clean shape of the spec
    balance: float  # normalised entropy of the valid samples' classes (1: uniform)
    distinct: float  # share of samples that are not a near-copy of an earlier one
    classes: dict = field(default_factory=dict)  # class name -> count among valid samples
    failures: dict = field(default_factory=dict)  # reason -> count
    background_deviation: float = 0.0  # median over samples of `background_deviation`
    shape_valid: float = 0.0  # share that passes every check but the flatness of its colours

    def to_dict(self) -> dict:
        return {"n": self.n, "valid": self.valid, "balance": self.balance, "distinct": self.distinct,
                "background_deviation": self.background_deviation,
                "shape_valid": self.shape_valid, "classes": self.classes,
                "failures": self.failures}

    def summary(self) -> str:
        return (f"{self.valid:.1%} valid, class balance {self.balance:.3f}, "
                f"{self.distinct:.1%} distinct, background deviation "
                f"{self.background_deviation:.1f}, {self.shape_valid:.1%} clean shapes but for "
                f"flatness (n={self.n})")


def _shift_or(mask: np.ndarray) -> np.ndarray:
    """3x3 dilation of a boolean mask."""
    p = np.pad(mask, 1)
    out = np.zeros_like(mask)
    for dy in range(3):
        for dx in range(3):
            out |= p[dy:dy + mask.shape[0], dx:dx + mask.shape[1]]
    return out


def _erode(mask: np.ndarray) -> np.ndarray:
    return ~_shift_or(~mask)


def _component(mask: np.ndarray, seed: np.ndarray) -> np.ndarray:
    """The part of `mask` 8-connected to `seed` (morphological reconstruction)."""
    region = seed & mask
    while True:
        grown = _shift_or(region) & mask
        if np.array_equal(grown, region):
            return region
        region = grown


def _from_border_colour(f: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """The background colour (median of the border pixels: the spec keeps shapes inside the
    frame) and every pixel's RGB distance from it."""
    border = np.concatenate([f[0], f[-1], f[1:-1, 0], f[1:-1, -1]])
    bg = np.median(border, axis=0)
    return bg, np.linalg.norm(f - bg, axis=2)


def _fit(alpha: np.ndarray, label: int) -> tuple[float, float, np.ndarray]:
    """Fit a shape of class `label` to the coverage map: (radius, soft IoU, fitted coverage)."""
    area = float(alpha.sum())
    radius = float(np.sqrt(area / AREA_PER_R2[label]))
    w = alpha / area
    cx, cy = float((w * shapes._PX).sum()), float((w * shapes._PY).sum())
    angle = 0.0
    if label in SYMMETRY:
        k = SYMMETRY[label]
        dx, dy = shapes._PX - cx, shapes._PY - cy
        # the r**4-weighted k-fold moment points at a vertex: far points are the corners
        moment = (alpha * (dx * dx + dy * dy) ** 2 * np.exp(1j * k * np.arctan2(dy, dx))).sum()
        angle = float(np.angle(moment)) / k
    spec = shapes.ShapeSpec(label, (cx, cy), radius, angle, (0, 0, 0), (255, 255, 255))
    fitted = shapes.coverage(spec)
    iou = float(np.minimum(alpha, fitted).sum() / max(np.maximum(alpha, fitted).sum(), 1e-6))
    return radius, iou, fitted


def check_image(image: np.ndarray, flatness: bool = True) -> Verdict:
    """Whether one uint8 (64, 64, 3) image is a clean shape of the spec; the first failure if not.
    With flatness=False the flatness of the two colours is not checked: everything else (one
    region, no holes, contrast, the outline and size of a spec shape) still is."""
    f = image.astype(np.float32)
    if f.ndim != 3 or f.shape[2] != 3:
        raise ValueError(f"expected a (64, 64, 3) RGB image, got shape {image.shape}")
    bg, dist_bg = _from_border_colour(f)
    mask = dist_bg > FOREGROUND_THRESHOLD
    min_area = 0.5 * AREA_PER_R2[2] * shapes.MIN_RADIUS**2
    if mask.sum() < min_area:
        return Verdict(False, "no shape")
    # the main region: grown from the densest foreground spot
    density = sum(np.roll(np.roll(mask, dy, 0), dx, 1) for dy in (-2, 0, 2) for dx in (-2, 0, 2))
    seed = np.zeros_like(mask)
    seed[np.unravel_index(np.argmax(density * mask), mask.shape)] = True
    region = _component(mask, seed)
    if mask.sum() - region.sum() > MAX_STRAY_PIXELS:
        return Verdict(False, "several foreground regions")
    outside = np.zeros_like(mask)
    outside[[0, -1], :] = outside[:, [0, -1]] = True
    holes = ~region & ~_component(~region, outside & ~region)
    if holes.sum() > MAX_STRAY_PIXELS:
        return Verdict(False, "hole in the shape")
    interior = _erode(_erode(region))
    background = ~_shift_or(_shift_or(region))
    if interior.sum() < 10:
        return Verdict(False, "shape too thin")
    fg = np.median(f[interior], axis=0)
    if np.linalg.norm(fg - bg) < MIN_CONTRAST:
        return Verdict(False, "low contrast")
    for name, pixels, colour, share in (("background", background, bg, BACKGROUND_FLAT_SHARE),
                                        ("foreground", interior, fg, FOREGROUND_FLAT_SHARE)):
        dist = np.linalg.norm(f[pixels] - colour, axis=1)
        if flatness and (np.mean(dist <= FLAT_TOLERANCE) < share or dist.mean() > FLAT_MEAN):
            return Verdict(False, f"{name} not flat")
    axis = fg - bg
    alpha = np.clip(((f - bg) @ axis) / float(axis @ axis), 0.0, 1.0)
    alpha[~_shift_or(region)] = 0.0  # stray specks are not part of the outline
    fits = {label: _fit(alpha, label) for label in AREA_PER_R2}
    label = max(fits, key=lambda k: fits[k][1])
    radius, iou, _ = fits[label]
    if iou < MIN_IOU:
        return Verdict(False, "outline not a circle, square or triangle", label, radius, iou)
    if not shapes.MIN_RADIUS - RADIUS_SLACK <= radius <= shapes.MAX_RADIUS + RADIUS_SLACK:
        return Verdict(False, "size outside the spec", label, radius, iou)
    return Verdict(True, "ok", label, radius, iou)


def background_deviation(image: np.ndarray) -> float:
    """Mean RGB distance from the border's median colour over the background, away from anything
    that stands out of it: 0 for a render (one flat colour), the grain and drift of a sample
    otherwise. The most failed check as a number, so runs with no valid sample yet still compare
    (a valid sample has at most about FLAT_MEAN)."""
    _, dist = _from_border_colour(image.astype(np.float32))
    away = ~_shift_or(_shift_or(dist > FOREGROUND_THRESHOLD))
    return float(dist[away].mean()) if away.any() else float(FOREGROUND_THRESHOLD)


def distinct_share(images: np.ndarray, levels: float = DUPLICATE_LEVELS) -> float:
    """Share of images whose RMS difference from every earlier image is at least `levels`."""
    n = len(images)
    if n == 0:
        return 0.0
    x = images.reshape(n, -1).astype(np.float64)
    sq = (x * x).sum(axis=1)
    d2 = (sq[:, None] + sq[None, :] - 2 * x @ x.T) / x.shape[1]  # mean squared difference
    earlier = np.tril(np.ones((n, n), bool), k=-1)
    duplicate = np.any((d2 < levels**2) & earlier, axis=1)
    return float(1.0 - duplicate.mean())


def score_images(images: np.ndarray) -> QualityScore:
    """Score uint8 (N, 64, 64, 3) samples against the shapes spec."""
    images = np.asarray(images)
    if images.ndim != 4 or images.shape[1:] != (shapes.SIZE, shapes.SIZE, 3) or images.dtype != np.uint8:
        raise ValueError(f"expected uint8 (N, 64, 64, 3) images, got {images.dtype} {images.shape}")
    verdicts = [check_image(im) for im in images]
    valid = [v for v in verdicts if v.valid]
    # the outline checks alone, where flatness was what failed (every other failure stands)
    flat_failures = {"background not flat", "foreground not flat"}
    shape_valid = len(valid) + sum(check_image(im, flatness=False).valid
                                   for im, v in zip(images, verdicts) if v.reason in flat_failures)
    counts = np.bincount([v.label for v in valid], minlength=len(shapes.CLASSES))
    p = counts[counts > 0] / max(counts.sum(), 1)
    balance = float(-(p * np.log(p)).sum() / np.log(len(shapes.CLASSES))) if len(valid) else 0.0
    return QualityScore(
        n=len(images), valid=len(valid) / max(len(images), 1), balance=balance,
        distinct=distinct_share(images),
        background_deviation=float(np.median([background_deviation(im) for im in images])),
        shape_valid=shape_valid / max(len(images), 1),
        classes={shapes.CLASSES[c]: int(k) for c, k in enumerate(counts)},
        failures=dict(Counter(v.reason for v in verdicts if not v.valid).most_common()))
