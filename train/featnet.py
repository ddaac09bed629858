"""The feature network: a small conv net trained on the project's own renders, whose features
the continuous quality metrics (train/continuous.py) are computed in.

It has two heads over one 64-d vector: the class (circle, square, triangle) and the render
parameters train/shapes.py draws (centre, circumradius, rotation, both colours). Trained to read
those, it varies with what the spec varies; Inception features would need downloaded weights and
know nothing of flat colours. The metrics' features are that 64-d vector and, beside it, every
conv block's activations averaged over the image: the early blocks respond to edges and texture,
so grain, a blur or a faint frame move them where the heads' vector, trained only on clean
renders, hardly changes. Each of the five groups is scaled to unit RMS on renders (a buffer of
the weights), so no group outweighs the others in KID's kernel or in distances. The weights ship
beside this module (featnet.npz, about 0.4 MB), made by train/featnet_fit.py.
"""

from __future__ import annotations

import functools
import io
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
from torch import nn

from runtime.files import atomic_write_bytes
from train import shapes
from train.data import to_unit_range
from train.errors import TrainingError

WEIGHTS_PATH = Path(__file__).with_name("featnet.npz")
GROUPS = (16, 32, 64, 32, 64)  # the features: each conv block's channels averaged, then the heads' vector
FEATURES = sum(GROUPS)  # 208
# Regression targets, each scaled to about [0, 1]: centre x, y / 64; (radius - 10) / 14;
# cos, sin of the rotation times the class's symmetry (4 for squares, 3 for triangles: the
# angle is only defined modulo 2 pi / k; unused for circles); foreground RGB / 255; background RGB / 255.
PARAMS = 11
SYMMETRY = {1: 4, 2: 3}


class FeatureNet(nn.Module):
    """(B, 3, 64, 64) in [-1, 1] -> features (B, 208), class logits (B, 3), parameters (B, 11)."""

    def __init__(self) -> None:
        super().__init__()

        def block(cin: int, cout: int) -> list[nn.Module]:
            return [nn.Conv2d(cin, cout, 4, 2, 1, bias=False), nn.BatchNorm2d(cout), nn.ReLU()]

        self.body = nn.Sequential(
            *block(3, 16),  # (B, 16, 32, 32)
            *block(16, 32),  # (B, 32, 16, 16)
            *block(32, 64),  # (B, 64, 8, 8)
            *block(64, 32),  # (B, 32, 4, 4): where things are still matters (centre, corners)
            nn.Flatten(),  # (B, 512)
            nn.Linear(512, GROUPS[-1]), nn.ReLU(),  # (B, 64): what the heads read
        )
        self.classes = nn.Linear(GROUPS[-1], len(shapes.CLASSES))
        self.params = nn.Linear(GROUPS[-1], PARAMS)
        self.register_buffer("feature_scale", torch.ones(FEATURES))  # set by train/featnet_fit.py

    def forward(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        pooled = []
        h = x
        for layer in self.body:
            h = layer(h)
            if isinstance(layer, nn.ReLU) and h.dim() == 4:
                pooled.append(h.mean((2, 3)))  # (B, C): one conv block, averaged over the image
        features = torch.cat([*pooled, h], 1) * self.feature_scale  # (B, 208)
        return features, self.classes(h), self.params(h)


def targets(spec: shapes.ShapeSpec) -> np.ndarray:
    """float32 (11,) regression target of one render (see PARAMS)."""
    k = SYMMETRY.get(spec.label, 0)
    return np.array([spec.centre[0] / shapes.SIZE, spec.centre[1] / shapes.SIZE,
                     (spec.radius - shapes.MIN_RADIUS) / (shapes.MAX_RADIUS - shapes.MIN_RADIUS),
                     np.cos(k * spec.angle), np.sin(k * spec.angle),
                     *(np.asarray(spec.foreground) / 255), *(np.asarray(spec.background) / 255)],
                    np.float32)


@dataclass
class Embedding:
    """What the network reads in N images."""
    features: np.ndarray  # float64 (N, 208)
    probs: np.ndarray  # float64 (N, 3) class probabilities
    centre: np.ndarray  # float64 (N, 2) x, y in px
    radius: np.ndarray  # float64 (N,) circumradius in px
    foreground: np.ndarray  # float64 (N, 3) RGB levels
    background: np.ndarray  # float64 (N, 3)

    @property
    def labels(self) -> np.ndarray:
        return self.probs.argmax(1)


def save_weights(net: FeatureNet, path: Path) -> None:
    """The state dict as float32 arrays in a compressed .npz, written atomically."""
    buf = io.BytesIO()
    np.savez_compressed(buf, **{k: v.detach().cpu().numpy() for k, v in net.state_dict().items()})
    atomic_write_bytes(path, buf.getvalue())


@functools.lru_cache(maxsize=2)
def load_featnet(path: Path = WEIGHTS_PATH) -> FeatureNet:
    """The network with the weights at `path` (the shipped ones by default), in eval mode."""
    try:
        with np.load(path, allow_pickle=False) as arrays:
            state = {k: torch.from_numpy(arrays[k]) for k in arrays.files}
    except (OSError, ValueError) as e:
        raise TrainingError(f"cannot read the feature network's weights {path}: {e} — rebuild them "
                            "with `python -m train.featnet_fit`") from e
    net = FeatureNet()
    try:
        net.load_state_dict(state)
    except RuntimeError as e:
        raise TrainingError(f"{path} does not fit the feature network: {e} — rebuild them with "
                            "`python -m train.featnet_fit`") from e
    return net.eval().requires_grad_(False)


@torch.no_grad()
def embed(images: np.ndarray, net: FeatureNet | None = None, batch: int = 256) -> Embedding:
    """Read uint8 (N, 64, 64, 3) images with the shipped network (or `net`)."""
    images = np.asarray(images)
    if images.ndim != 4 or images.shape[1:] != (shapes.SIZE, shapes.SIZE, 3) or images.dtype != np.uint8:
        raise ValueError(f"expected uint8 (N, 64, 64, 3) images, got {images.dtype} {images.shape}")
    net = net or load_featnet()
    parts = []
    for first in range(0, len(images), batch):
        x = torch.from_numpy(to_unit_range(images[first:first + batch])).permute(0, 3, 1, 2)
        f, logits, p = net(x.contiguous())
        parts.append(torch.cat([f, logits.softmax(1), p], 1).double().numpy())
    out = np.concatenate(parts) if parts else np.zeros((0, FEATURES + 3 + PARAMS))
    f, probs, p = out[:, :FEATURES], out[:, FEATURES:FEATURES + 3], out[:, FEATURES + 3:]
    span = shapes.MAX_RADIUS - shapes.MIN_RADIUS
    return Embedding(features=f, probs=probs, centre=p[:, :2] * shapes.SIZE,
                     radius=p[:, 2] * span + shapes.MIN_RADIUS,
                     foreground=p[:, 5:8] * 255, background=p[:, 8:11] * 255)
