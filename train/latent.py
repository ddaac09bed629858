"""Training-time latents, drawn with torch.

The deployed contract for latents is runtime/latents.py (a counter-based numpy stream: image i
of seed s is the same everywhere). Training does not need that contract, only a fast,
resumable stream on the training device, so it keeps torch's generator; everything a user sees
(sample grids, quality scores, exported images) uses the runtime's latents.
"""

from __future__ import annotations

import torch

from train.config import ModelConfig


def sample_latent(n: int, cfg: ModelConfig, device: torch.device,
                  generator: torch.Generator | None = None) -> torch.Tensor:
    """(n, nz) latents from the config's distribution, drawn on the CPU for reproducibility."""
    if cfg.latent == "uniform":
        z = torch.rand(n, cfg.nz, generator=generator) * 2 - 1
    else:
        z = torch.randn(n, cfg.nz, generator=generator)
    return z.to(device)
