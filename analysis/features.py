"""D's features as the paper uses them: every conv layer's activations, max-pooled to 4x4 and
concatenated."""

from __future__ import annotations

import numpy as np
import torch
import torch.nn.functional as F

from analysis.sources import to_tensor
from train.models import DiscriminatorNet


@torch.no_grad()
def d_features(d: DiscriminatorNet, images: np.ndarray, batch_size: int = 256,
               device: str = "cpu") -> np.ndarray:
    """float32 (N, F): each conv block's output max-pooled to 4x4, flattened and concatenated.

    F = 16 * (ndf + 2 ndf + 4 ndf + 8 ndf) = 240 ndf.
    """
    d = d.to(device).eval()
    out = []
    for i in range(0, len(images), batch_size):
        x = to_tensor(images[i:i + batch_size]).to(device)
        feats = [F.adaptive_max_pool2d(f, 4).flatten(1) for f in d.features(x)]
        out.append(torch.cat(feats, 1).float().cpu().numpy())
    return np.concatenate(out) if out else np.zeros((0, 240 * d.cfg.ndf), np.float32)
