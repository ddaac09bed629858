"""neighbors: the memorisation check. For generated samples, their nearest training images in
pixel space and in D-feature space; and the distance from generated images to the training set
next to the distance from held-out real images to it. A generator that copies its training
data sits much closer to it than unseen real images do."""

from __future__ import annotations

from pathlib import Path

import numpy as np

from analysis.features import d_features
from analysis.figures import save_json, save_rows
from runtime.files import atomic_write_bytes
from train.data import to_unit_range
from train.plot import figure_png

SHOWN = 12  # samples in the side-by-side figure
SUSPICIOUS_RATIO = 0.5  # generated->train median below half of held-out->train: flag it


def nearest(queries: np.ndarray, refs: np.ndarray, chunk: int = 256) -> tuple[np.ndarray, np.ndarray]:
    """(index, Euclidean distance) of each query's nearest row of `refs` (float arrays)."""
    refs = refs.astype(np.float32)
    ref_sq = (refs**2).sum(1)
    idx, dist = [], []
    for i in range(0, len(queries), chunk):
        q = queries[i:i + chunk].astype(np.float32)
        d2 = (q**2).sum(1)[:, None] - 2 * q @ refs.T + ref_sq[None, :]
        j = d2.argmin(1)
        idx.append(j)
        dist.append(np.sqrt(np.maximum(d2[np.arange(len(q)), j], 0)))
    return np.concatenate(idx), np.concatenate(dist)


def _pixels(images: np.ndarray) -> np.ndarray:
    """Flattened pixels in [-1, 1], scaled so the distance is a per-pixel RMS difference."""
    x = to_unit_range(images).reshape(len(images), -1)
    return x / np.sqrt(x.shape[1])


def memorisation_check(generated: np.ndarray, train: np.ndarray, heldout: np.ndarray, d,
                       out: Path, device: str = "cpu") -> dict:
    """Write neighbors.png, distances.png and neighbors.json; returns the JSON."""
    feats = [d_features(d, x, device=device) for x in (generated, train, heldout)]
    mu, sd = feats[1].mean(0), feats[1].std(0) + 1e-6  # standardise on the training set
    f_gen, f_train, f_held = ((f - mu) / sd / np.sqrt(f.shape[1]) for f in feats)
    px_gen_idx, px_gen = nearest(_pixels(generated), _pixels(train))
    _, px_held = nearest(_pixels(heldout), _pixels(train))
    ft_gen_idx, ft_gen = nearest(f_gen, f_train)
    _, ft_held = nearest(f_held, f_train)

    def summary(a: np.ndarray) -> dict:
        return {"median": float(np.median(a)), "mean": float(a.mean()), "min": float(a.min())}

    ratio_px = float(np.median(px_gen) / max(np.median(px_held), 1e-12))
    ratio_ft = float(np.median(ft_gen) / max(np.median(ft_held), 1e-12))
    suspicious = min(ratio_px, ratio_ft) < SUSPICIOUS_RATIO
    verdict = ("Generated images sit much closer to training images than unseen real images do: "
               "the generator may be copying its training data." if suspicious else
               "No sign of memorisation: generated images are no closer to the training set than "
               "unseen real images are.")
    shown = min(SHOWN, len(generated))
    out.mkdir(parents=True, exist_ok=True)
    save_rows(out / "neighbors.png", [generated[:shown], train[px_gen_idx[:shown]],
                                      train[ft_gen_idx[:shown]]])
    atomic_write_bytes(out / "distances.png", _histograms(px_gen, px_held, ft_gen, ft_held))
    result = {"analysis": "neighbors", "generated": len(generated), "train": len(train),
              "heldout": len(heldout),
              "pixel": {"generated_to_train": summary(px_gen), "heldout_to_train": summary(px_held),
                        "median_ratio": ratio_px},
              "d_feature": {"generated_to_train": summary(ft_gen),
                            "heldout_to_train": summary(ft_held), "median_ratio": ratio_ft},
              "suspicious_ratio": SUSPICIOUS_RATIO, "verdict": verdict,
              "figures": {"neighbors.png": "rows: generated, nearest training image in pixels, "
                                           "nearest in D features", "distances.png": "histograms"}}
    save_json(out / "neighbors.json", result)
    return result


def _histograms(px_gen, px_held, ft_gen, ft_held) -> bytes:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, axes = plt.subplots(1, 2, figsize=(8, 3.2), dpi=100)
    for ax, gen, held, title in ((axes[0], px_gen, px_held, "pixel RMS distance"),
                                 (axes[1], ft_gen, ft_held, "D-feature distance")):
        bins = np.linspace(0, max(gen.max(), held.max()) * 1.05, 30)
        ax.hist(held, bins, alpha=0.6, label="held-out real -> train")
        ax.hist(gen, bins, alpha=0.6, label="generated -> train")
        ax.set_title(title)
        ax.set_xlabel("distance to nearest training image")
    axes[0].legend(fontsize=8)
    fig.tight_layout()
    return figure_png(fig)
