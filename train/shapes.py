"""The built-in `shapes` dataset: procedural, labelled, deterministic by (seed, index).

Each 64x64 RGB image has one solid background colour and one filled, anti-aliased circle, square
or equilateral triangle of a solid foreground colour (docs/architecture.md, "The shapes dataset").
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

CLASSES = ("circle", "square", "triangle")
SIZE = 64
RENDER_VERSION = 1  # bump whenever render() draws different bytes: cached renders are rebuilt
MIN_RADIUS, MAX_RADIUS = 10.0, 24.0  # circumradius, px
MIN_COLOUR_DISTANCE = 120.0  # Euclidean RGB distance between foreground and background
SUPERSAMPLE = 4  # 4x4 samples per pixel give the anti-aliased coverage

# Sample points of every pixel at sub-pixel offsets, built once: (SIZE*S, SIZE*S) coordinates.
_sub = (np.arange(SIZE * SUPERSAMPLE, dtype=np.float32) + 0.5) / SUPERSAMPLE
_YS, _XS = np.meshgrid(_sub, _sub, indexing="ij")
_PY, _PX = np.meshgrid(np.arange(SIZE) + 0.5, np.arange(SIZE) + 0.5, indexing="ij")  # pixel centres
_SURE = 0.6  # px from the outline beyond which a pixel is wholly inside or outside (> 0.375 * sqrt 2)


@dataclass(frozen=True)
class ShapeSpec:
    label: int  # index into CLASSES
    centre: tuple[float, float]  # (x, y) in pixels, origin at the top-left corner
    radius: float  # circumradius in pixels
    angle: float  # rotation in radians (0 for circles)
    background: tuple[int, int, int]
    foreground: tuple[int, int, int]

    def vertices(self) -> np.ndarray:
        """(K, 2) polygon vertices (x, y), counter-clockwise in image coordinates; empty for circles."""
        k = {1: 4, 2: 3}.get(self.label, 0)
        theta = self.angle + 2 * np.pi * np.arange(k) / max(k, 1)
        cx, cy = self.centre
        return np.stack([cx + self.radius * np.cos(theta), cy + self.radius * np.sin(theta)], 1)


def draw_spec(seed: int, index: int) -> ShapeSpec:
    """The shape parameters of image `index` under `seed`: a pure function of the pair."""
    rng = np.random.default_rng([seed, index])
    label = int(rng.integers(len(CLASSES)))
    radius = float(rng.uniform(MIN_RADIUS, MAX_RADIUS))
    # The circumscribed circle inside the frame keeps the whole shape inside at any rotation.
    cx, cy = (float(v) for v in rng.uniform(radius, SIZE - radius, size=2))
    angle = 0.0 if label == 0 else float(rng.uniform(0, 2 * np.pi))
    background = rng.integers(0, 256, size=3)
    while True:
        foreground = rng.integers(0, 256, size=3)
        if np.linalg.norm((foreground - background).astype(float)) >= MIN_COLOUR_DISTANCE:
            break
    return ShapeSpec(label, (cx, cy), radius, angle,
                     tuple(int(c) for c in background), tuple(int(c) for c in foreground))


def _inside(spec: ShapeSpec, xs: np.ndarray, ys: np.ndarray) -> np.ndarray:
    """Whether each sample point (xs, ys) lies inside the shape (the boundary counts as inside)."""
    cx, cy = spec.centre
    if spec.label == 0:
        return (xs - cx) ** 2 + (ys - cy) ** 2 <= spec.radius**2
    inside = np.ones(xs.shape, dtype=bool)
    v = spec.vertices()
    for (x0, y0), (x1, y1) in zip(v, np.roll(v, -1, axis=0)):
        # Left of every edge of a counter-clockwise convex polygon = inside.
        inside &= (x1 - x0) * (ys - y0) - (y1 - y0) * (xs - x0) >= 0
    return inside


def _centre_distance(spec: ShapeSpec) -> np.ndarray:
    """(64, 64) signed distance of each pixel centre to the outline, positive inside (for polygons
    the distance to the nearest edge line, exact where it matters: near the outline)."""
    cx, cy = spec.centre
    if spec.label == 0:
        return spec.radius - np.hypot(_PX - cx, _PY - cy)
    v = spec.vertices()
    d = np.full(_PX.shape, np.inf)
    for (x0, y0), (x1, y1) in zip(v, np.roll(v, -1, axis=0)):
        edge = np.hypot(x1 - x0, y1 - y0)
        d = np.minimum(d, ((x1 - x0) * (_PY - y0) - (y1 - y0) * (_PX - x0)) / edge)
    return d


def coverage(spec: ShapeSpec) -> np.ndarray:
    """(64, 64) float32 fraction of each pixel the shape covers, from 4x4 supersampling.

    Only pixels near the outline are supersampled: a pixel whose centre lies further than
    _SURE from the outline has all 16 samples on one side of it (they sit within 0.53 px of the
    centre), so its coverage is exactly 0 or 1. The result is bit-identical to supersampling
    every pixel, at about a tenth of the cost.
    """
    d = _centre_distance(spec)
    alpha = (d > _SURE).astype(np.float32)
    rows, cols = np.nonzero(np.abs(d) <= _SURE)
    s = SUPERSAMPLE
    # the edge pixels' sample points: the same float32 values as the full supersampled grid
    ys = _YS.reshape(SIZE, s, SIZE, s)[rows, :, cols, :]  # (K, s, s)
    xs = _XS.reshape(SIZE, s, SIZE, s)[rows, :, cols, :]
    alpha[rows, cols] = _inside(spec, xs, ys).reshape(len(rows), s * s).mean(axis=1, dtype=np.float32)
    return alpha


def paint(spec: ShapeSpec) -> np.ndarray:
    """uint8 (64, 64, 3): the shape `spec` describes on its background."""
    alpha = coverage(spec)[:, :, None]
    bg = np.asarray(spec.background, np.float32)
    fg = np.asarray(spec.foreground, np.float32)
    return np.round(bg * (1 - alpha) + fg * alpha).astype(np.uint8)


def render(seed: int, index: int) -> tuple[np.ndarray, int]:
    """Image `index` of `seed`: uint8 (64, 64, 3) and its class label."""
    spec = draw_spec(seed, index)
    return paint(spec), spec.label
