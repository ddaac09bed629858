"""Latent vectors: image i under seed s always gets the same z, whatever the batch or backend.

Each image draws from its own counter-based stream: Philox keyed by the seed, with the image
index in the high words of the counter. Any index can be drawn alone, in any order, on any
machine, and batches, starts and shards all see the same vectors.
"""

from __future__ import annotations

import operator

import numpy as np

DISTRIBUTIONS = ("normal", "uniform")
MAX_SEED = 2**128 - 1  # Philox's key width
MAX_INDEX = 2**128 - 1  # image indices live in the counter's upper 128 bits


def latents(seed: int, start: int, n: int, nz: int, distribution: str = "normal") -> np.ndarray:
    """float32 (n, nz) latents for images start .. start+n-1 under `seed`.

    Args:
        seed: 0 <= seed < 2**128.
        start: global index of the first image (>= 0).
        n: how many (>= 0).
        nz: latent size.
        distribution: "normal" (N(0, 1)) or "uniform" (U(-1, 1)).
    """
    # numpy integers become Python ints: `(start + k) << 128` is 0 for an np.int64
    seed, start, n = operator.index(seed), operator.index(start), operator.index(n)
    if distribution not in DISTRIBUTIONS:
        raise ValueError(f"latent distribution must be one of {DISTRIBUTIONS}, got {distribution!r}")
    if not 0 <= seed <= MAX_SEED:
        raise ValueError(f"seed must be in [0, 2**128), got {seed}")
    if start < 0 or n < 0:
        raise ValueError(f"start and n must be >= 0, got start={start}, n={n}")
    out = np.empty((n, nz), np.float32)
    for k in range(n):
        # index in counter words 2-3: the stream of image i never reaches that of image i+1
        rng = np.random.Generator(np.random.Philox(key=seed, counter=(start + k) << 128))
        if distribution == "normal":
            out[k] = rng.standard_normal(nz, dtype=np.float32)
        else:
            out[k] = rng.random(nz, dtype=np.float32) * 2 - 1
    return out


def slerp(z0: np.ndarray, z1: np.ndarray, t: np.ndarray | float) -> np.ndarray:
    """Spherical interpolation between two latents (falls back to linear when nearly parallel).

    Returns float32 (len(t), nz) for array t, or (nz,) for a scalar t. t=0 gives z0, t=1 gives z1.
    """
    z0, z1 = np.asarray(z0, np.float64), np.asarray(z1, np.float64)
    ts = np.atleast_1d(np.asarray(t, np.float64))[:, None]
    cos = np.dot(z0, z1) / (np.linalg.norm(z0) * np.linalg.norm(z1))
    omega = np.arccos(np.clip(cos, -1.0, 1.0))
    if np.sin(omega) < 1e-6:
        out = (1 - ts) * z0 + ts * z1
    else:
        out = (np.sin((1 - ts) * omega) * z0 + np.sin(ts * omega) * z1) / np.sin(omega)
    out = out.astype(np.float32)
    return out if np.ndim(t) else out[0]


def lerp(z0: np.ndarray, z1: np.ndarray, t: np.ndarray | float) -> np.ndarray:
    """Linear interpolation, shaped like `slerp`."""
    z0, z1 = np.asarray(z0, np.float64), np.asarray(z1, np.float64)
    ts = np.atleast_1d(np.asarray(t, np.float64))[:, None]
    out = ((1 - ts) * z0 + ts * z1).astype(np.float32)
    return out if np.ndim(t) else out[0]
