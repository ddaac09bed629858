"""The built-in `shapes` dataset: procedural, labelled, deterministic by (seed, index).

Each 64x64 RGB image has one solid background colour and one filled, anti-aliased circle, square
or equilateral triangle of a solid foreground colour (DESIGN.md, "The shapes dataset").
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

CLASSES = ("circle", "square", "triangle")
SIZE = 64
MIN_RADIUS, MAX_RADIUS = 10.0, 24.0  # circumradius, px
MIN_COLOUR_DISTANCE = 120.0  # Euclidean RGB distance between foreground and background
SUPERSAMPLE = 4  # 4x4 samples per pixel give the anti-aliased coverage

# Sample points of every pixel at sub-pixel offsets, built once: (SIZE*S, SIZE*S) coordinates.
_sub = (np.arange(SIZE * SUPERSAMPLE, dtype=np.float32) + 0.5) / SUPERSAMPLE
_YS, _XS = np.meshgrid(_sub, _sub, indexing="ij")


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


def coverage(spec: ShapeSpec) -> np.ndarray:
    """(64, 64) float32 fraction of each pixel the shape covers, from 4x4 supersampling."""
    cx, cy = spec.centre
    if spec.label == 0:
        inside = (_XS - cx) ** 2 + (_YS - cy) ** 2 <= spec.radius**2
    else:
        inside = np.ones_like(_XS, dtype=bool)
        v = spec.vertices()
        for (x0, y0), (x1, y1) in zip(v, np.roll(v, -1, axis=0)):
            # Left of every edge of a counter-clockwise convex polygon = inside.
            inside &= (x1 - x0) * (_YS - y0) - (y1 - y0) * (_XS - x0) >= 0
    s = SUPERSAMPLE
    return inside.reshape(SIZE, s, SIZE, s).mean(axis=(1, 3), dtype=np.float32)


def render(seed: int, index: int) -> tuple[np.ndarray, int]:
    """Image `index` of `seed`: uint8 (64, 64, 3) and its class label."""
    spec = draw_spec(seed, index)
    alpha = coverage(spec)[:, :, None]
    bg = np.asarray(spec.background, np.float32)
    fg = np.asarray(spec.foreground, np.float32)
    image = np.round(bg * (1 - alpha) + fg * alpha).astype(np.uint8)
    return image, spec.label
