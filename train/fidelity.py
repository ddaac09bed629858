"""Distances between two sets of feature vectors: KID, Fréchet distance, precision and recall.

Numpy only, so the training loop, the analysis commands and the tests share one definition.
Features come from the project's own feature network (train/featnet.py); Inception features
would need downloaded weights, and a network trained on the renders knows what matters in them.

- KID (Bińkowski et al. 2018): the unbiased estimate of MMD² under the cubic polynomial kernel
  k(x, y) = (x·y / d + 1)³, averaged over random subsets (mean ± std). Unbiased: 0 in
  expectation for two samples of one distribution, whatever their size, so it may dip below 0.
- Fréchet distance (Heusel et al. 2017): between Gaussians fitted to each set. Biased upwards
  for finite sets, so it is only compared at one set size (the anchors are at 1,024).
- Precision and recall (Kynkäänniemi et al. 2019): each set's manifold is the union of balls
  around its points reaching their k-th nearest neighbour; precision is the share of generated
  points inside the real manifold (fidelity), recall the share of real points inside the
  generated one (coverage).
"""

from __future__ import annotations

import numpy as np

KID_SUBSETS = 100
KID_SUBSET_SIZE = 512  # half of the default 1,024 samples: subsets differ, so the std means something
PR_NEIGHBOURS = 3  # k of Kynkäänniemi et al.


def _check(real: np.ndarray, fake: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    real, fake = np.asarray(real, np.float64), np.asarray(fake, np.float64)
    if real.ndim != 2 or fake.ndim != 2 or real.shape[1] != fake.shape[1]:
        raise ValueError(f"expected two (N, D) feature arrays of one D, got {real.shape} and {fake.shape}")
    if min(len(real), len(fake)) < 2:
        raise ValueError(f"need at least 2 vectors per set, got {len(real)} and {len(fake)}")
    return real, fake


def kid(real: np.ndarray, fake: np.ndarray, subsets: int = KID_SUBSETS,
        subset_size: int = KID_SUBSET_SIZE, seed: int = 0) -> tuple[float, float]:
    """(mean, std) over `subsets` random subsets of the unbiased MMD² between (N, D) arrays.

    The subset size is capped at the smaller set. Kernel matrices are computed once over the
    whole sets; a subset's kernel sum is u' K v with 0/1 membership vectors u, v, so all subsets
    cost three matrix products.
    """
    real, fake = _check(real, fake)
    d = real.shape[1]
    m = min(subset_size, len(real), len(fake))
    rng = np.random.default_rng(seed)

    def members(n: int) -> np.ndarray:  # (subsets, n) 0/1 rows, m ones each
        u = np.zeros((subsets, n))
        for row in u:
            row[rng.choice(n, m, replace=False)] = 1.0
        return u

    u, v = members(len(real)), members(len(fake))
    k_rr = (real @ real.T / d + 1) ** 3  # (Nr, Nr)
    k_ff = (fake @ fake.T / d + 1) ** 3  # (Nf, Nf)
    k_rf = (real @ fake.T / d + 1) ** 3  # (Nr, Nf)
    within = (((u @ k_rr) * u).sum(1) - u @ np.diag(k_rr)
              + ((v @ k_ff) * v).sum(1) - v @ np.diag(k_ff)) / (m * (m - 1))  # (subsets,)
    values = within - 2 * ((u @ k_rf) * v).sum(1) / (m * m)
    return float(values.mean()), float(values.std())


def _sqrt_psd(a: np.ndarray) -> np.ndarray:
    """Symmetric square root of a symmetric positive semi-definite matrix."""
    w, v = np.linalg.eigh(a)
    return (v * np.sqrt(np.clip(w, 0, None))) @ v.T


def frechet_distance(real: np.ndarray, fake: np.ndarray) -> float:
    """|mu_r - mu_f|² + tr(S_r + S_f - 2 (S_r S_f)^½) between Gaussians fitted to (N, D) arrays.

    tr (S_r S_f)^½ is the sum of the square roots of the eigenvalues of S_r^½ S_f S_r^½, which is
    symmetric: eigh is exact where a general matrix square root returns complex round-off.
    """
    real, fake = _check(real, fake)
    mu_r, mu_f = real.mean(0), fake.mean(0)
    s_r, s_f = np.cov(real, rowvar=False), np.cov(fake, rowvar=False)  # (D, D)
    root = _sqrt_psd(s_r)
    cross = np.sqrt(np.clip(np.linalg.eigvalsh(root @ s_f @ root), 0, None)).sum()
    return float(((mu_r - mu_f) ** 2).sum() + np.trace(s_r) + np.trace(s_f) - 2 * cross)


def _distances(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """(Na, Nb) Euclidean distances."""
    sq = (a * a).sum(1)[:, None] + (b * b).sum(1)[None, :] - 2 * a @ b.T
    return np.sqrt(np.clip(sq, 0, None))


def _kth_radius(points: np.ndarray, k: int) -> np.ndarray:
    """(N,) distance of each point to its k-th nearest other point."""
    d = _distances(points, points)
    return np.partition(d, k, axis=1)[:, k]  # column 0 of the sorted row is the point itself


def precision_recall(real: np.ndarray, fake: np.ndarray, k: int = PR_NEIGHBOURS) -> tuple[float, float]:
    """(precision, recall) of the fake set against the real one, with k-NN manifolds."""
    real, fake = _check(real, fake)
    if min(len(real), len(fake)) <= k:
        raise ValueError(f"need more than k={k} vectors per set, got {len(real)} and {len(fake)}")
    cross = _distances(real, fake)  # (Nr, Nf)
    precision = (cross <= _kth_radius(real, k)[:, None]).any(axis=0).mean()
    recall = (cross <= _kth_radius(fake, k)[None, :]).any(axis=1).mean()
    return float(precision), float(recall)
