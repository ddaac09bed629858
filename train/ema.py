"""An exponential moving average of G's weights (Karras et al. 2018; Yazici et al. 2019).

GAN weights keep oscillating around a good solution; their running average draws cleaner images
than the last iterate. BN running statistics are copied, not averaged: the shipped generator
recalibrates them anyway (train/shipping.py).
"""

from __future__ import annotations

import torch
from torch import nn


def ema_decay(decay: float, step: int) -> float:
    """The decay at `step`, ramped up so early steps are not dominated by the random init."""
    return min(decay, (1 + step) / (10 + step))


@torch.no_grad()
def update_ema(ema: nn.Module, model: nn.Module, decay: float) -> None:
    """ema <- decay * ema + (1 - decay) * model, for every parameter; buffers copied."""
    torch._foreach_lerp_(list(ema.parameters()), list(model.parameters()), 1.0 - decay)
    for mine, theirs in zip(ema.buffers(), model.buffers()):
        mine.copy_(theirs)
