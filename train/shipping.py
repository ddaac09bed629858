"""The generator as it will be shipped: what sample grids and quality scores are made from.

Export takes the EMA weights when a checkpoint has them, re-estimates BN statistics with the
weights frozen (train/recalibrate.py) and runs G in eval mode on the runtime's latents. Doing
the same here means the grids and scores a run reports are those of the model a user deploys.
"""

from __future__ import annotations

import copy

import numpy as np
import torch

from runtime.images import images_from_float
from runtime.latents import latents
from train.recalibrate import RECALIBRATION_BATCH, RECALIBRATION_BATCHES, recalibrate_bn


def shipping_generator(g: torch.nn.Module, batches: int = RECALIBRATION_BATCHES) -> torch.nn.Module:
    """A CPU fp32 copy of `g` with recalibrated BN statistics, in eval mode."""
    shipped = copy.deepcopy(g).float().to("cpu", memory_format=torch.contiguous_format)
    return recalibrate_bn(shipped, batches, RECALIBRATION_BATCH, seed=0)


@torch.no_grad()
def sample_images(g: torch.nn.Module, n: int, seed: int, batch: int = 256) -> np.ndarray:
    """uint8 (n, 64, 64, C): images 0..n-1 of `seed`, the latents dcgan-generate would use."""
    cfg = g.cfg
    out = []
    for first in range(0, n, batch):
        z = latents(seed, first, min(batch, n - first), cfg.nz, cfg.latent)
        out.append(images_from_float(g(torch.from_numpy(z)).numpy()))
    return np.concatenate(out) if out else np.zeros((0, 64, 64, cfg.nc), np.uint8)
