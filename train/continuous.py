"""Continuous quality metrics for models trained on `shapes`: numbers that move long before the
strict checker (train/quality.py) passes a single sample.

Samples and real renders are read by the feature network (train/featnet.py). In its features:
KID, Fréchet distance, precision and recall against renders 0..N-1 of REFERENCE_SEED
(train/fidelity.py). From its heads, over all samples, valid or not: the class shares (a model
that draws only circles shows 100 % circle here, whatever else it does), and histograms of the
circumradius and of both colours against the spec's, as total-variation distances (0: same
histogram, 1: disjoint) and as the shares the strict checker would refuse: dots under the
spec's minimum size, too little contrast.

Each number means most beside its anchors (train/anchors.py, featnet_anchors.json): real renders
against the reference (the floor), and renders perturbed to the edge of the strict checker.
"""

from __future__ import annotations

import functools
import json
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from train import shapes
from train.errors import TrainingError
from train.featnet import WEIGHTS_PATH, FeatureNet, embed, load_featnet
from train.fidelity import frechet_distance, kid, precision_recall
from train.quality import MIN_CONTRAST, RADIUS_SLACK

REFERENCE_SEED = 1003  # the real renders every sample set is compared with
DEFAULT_SAMPLES = 1024
ANCHORS_PATH = WEIGHTS_PATH.with_name("featnet_anchors.json")
RADIUS_BINS = np.arange(0.0, 34.0, 2.0)  # px; predictions outside [0, 32] count in the end bins
COLOUR_BINS = np.linspace(0.0, 256.0, 9)  # RGB levels, 8 bins per channel
SMALL_RADIUS = shapes.MIN_RADIUS - RADIUS_SLACK  # the strict checker refuses smaller shapes
# what each metric is called where it is printed
LABELS = {"kid": "KID", "fd": "Fréchet distance", "precision": "precision", "recall": "recall",
          "small_radius": f"radius < {SMALL_RADIUS:g} px", "radius_tv": "radius histogram TV",
          "low_contrast": f"contrast < {MIN_CONTRAST:g}", "colour_tv": "colour histogram TV"}


@dataclass(frozen=True)
class Reference:
    """The real side of every comparison: renders 0..n-1 of REFERENCE_SEED."""
    features: np.ndarray  # (n, 64) the network's features of the renders
    radius: np.ndarray  # (n,) the spec's circumradius, px
    foreground: np.ndarray  # (n, 3) the spec's colours
    background: np.ndarray  # (n, 3)


@functools.lru_cache(maxsize=4)
def reference(net: FeatureNet, n: int = DEFAULT_SAMPLES) -> Reference:
    """The reference set of `n` renders as `net` reads it (computed once per network and size)."""
    specs = [shapes.draw_spec(REFERENCE_SEED, i) for i in range(n)]
    features = embed(np.stack([shapes.paint(s) for s in specs]), net).features
    return Reference(features, np.array([s.radius for s in specs]),
                     np.array([s.foreground for s in specs], np.float64),
                     np.array([s.background for s in specs], np.float64))


def _histogram(values: np.ndarray, bins: np.ndarray) -> np.ndarray:
    """Shares per bin, values outside the range in the end bins."""
    counts, _ = np.histogram(np.clip(values, bins[0], bins[-1] - 1e-6), bins)
    return counts / max(len(values), 1)


def _tv(a: np.ndarray, b: np.ndarray) -> float:
    return float(0.5 * np.abs(a - b).sum())


@dataclass
class ContinuousScore:
    n: int
    kid: float  # mean over subsets of the unbiased MMD², cubic kernel
    kid_std: float  # its std over the subsets
    fd: float  # Fréchet distance in the network's features
    precision: float  # share of samples inside the real renders' k-NN manifold (k = 3)
    recall: float  # share of real renders inside the samples' k-NN manifold
    class_shares: dict  # class name -> share of ALL samples the network gives that class
    small_radius: float  # share whose circumradius reads under 9 px (the spec's 10 less 1 px slack)
    radius_tv: float  # total variation between the radius histograms of samples and spec
    low_contrast: float  # share whose colours read closer than 100 RGB levels (the checker's bound)
    colour_tv: float  # mean TV between per-channel histograms of fg and bg, samples vs spec
    # shares per bin of samples and spec: radius, fg_r ... bg_b (with radius_bins, colour_bins)
    histograms: dict = field(default_factory=dict, repr=False)

    def to_dict(self, histograms: bool = False) -> dict:
        keys = ("n", "kid", "kid_std", "fd", "precision", "recall", "class_shares", "small_radius",
                "radius_tv", "low_contrast", "colour_tv")
        out = {k: getattr(self, k) for k in keys}
        return {**out, "histograms": self.histograms} if histograms else out

    def summary(self, anchors: dict | None = None) -> str:
        """One line per metric, each with its anchors (name value) where they are known."""
        anchors = load_anchors() if anchors is None else anchors
        lines = []
        for key, label in LABELS.items():
            value = f"{self.kid:.2e} ± {self.kid_std:.1e}" if key == "kid" else _fmt(key, getattr(self, key))
            beside = " · ".join(f"{name} {_fmt(key, a['scores'][key])}" for name, a in anchors.get(
                "anchors", {}).items())
            lines.append(f"  {label:<20} {value:<20} {'[' + beside + ']' if beside else ''}")
        shares = ", ".join(f"{k} {v:.1%}" for k, v in self.class_shares.items())
        lines.append(f"  {'class shares':<20} {shares}")
        head = f"continuous metrics (n={self.n}"
        if anchors.get("n") and anchors["n"] != self.n:
            head += f"; anchors at n={anchors['n']}: FD, precision and recall depend on n"
        return head + "; anchors: real renders, then renders at the edge of the strict checker):\n" \
            + "\n".join(lines)


def _fmt(key: str, value: float) -> str:
    if key == "kid":
        return f"{value:.2e}"
    if key == "fd":
        return f"{value:.3g}"
    return f"{value:.1%}" if key in ("precision", "recall", "small_radius", "low_contrast") \
        else f"{value:.3f}"


def score_continuous(images: np.ndarray, net: FeatureNet | None = None) -> ContinuousScore:
    """Score uint8 (N, 64, 64, 3) samples against N reference renders, in `net`'s features (the
    shipped network by default)."""
    net = net or load_featnet()
    read = embed(images, net)
    ref = reference(net, len(images))
    k_mean, k_std = kid(ref.features, read.features)
    precision, recall = precision_recall(ref.features, read.features)
    counts = np.bincount(read.labels, minlength=len(shapes.CLASSES))
    radius = (_histogram(read.radius, RADIUS_BINS), _histogram(ref.radius, RADIUS_BINS))
    roles = {"fg": (read.foreground, ref.foreground), "bg": (read.background, ref.background)}
    colours = {f"{role}_{channel}": (_histogram(got[:, c], COLOUR_BINS), _histogram(spec[:, c], COLOUR_BINS))
               for role, (got, spec) in roles.items() for c, channel in enumerate("rgb")}
    contrast = np.linalg.norm(read.foreground - read.background, axis=1)
    return ContinuousScore(
        n=len(images), kid=k_mean, kid_std=k_std, fd=frechet_distance(ref.features, read.features),
        precision=precision, recall=recall,
        class_shares={name: float(c / max(len(images), 1)) for name, c in zip(shapes.CLASSES, counts)},
        small_radius=float(np.mean(read.radius < SMALL_RADIUS)), radius_tv=_tv(*radius),
        low_contrast=float(np.mean(contrast < MIN_CONTRAST)),
        colour_tv=float(np.mean([_tv(a, b) for a, b in colours.values()])),
        histograms={"radius_bins": RADIUS_BINS.tolist(), "colour_bins": COLOUR_BINS.tolist(),
                    **{name: {"samples": a.tolist(), "spec": b.tolist()}
                       for name, (a, b) in {"radius": radius, **colours}.items()}})


@functools.lru_cache(maxsize=2)
def load_anchors(path: Path = ANCHORS_PATH) -> dict:
    """The anchors shipped beside the weights (train/anchors.py says how they were made)."""
    try:
        return json.loads(Path(path).read_text())
    except (OSError, ValueError) as e:
        raise TrainingError(f"cannot read the metrics' anchors {path}: {e} — rebuild them with "
                            "`python -m train.featnet_fit`") from e
