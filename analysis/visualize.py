"""visualize: guided backpropagation of D's strongest feature maps at one layer, over real
images (the paper's discriminator-feature figure), beside the same for a random-filter D."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import torch

from analysis.figures import save_json, save_rows
from analysis.sources import to_tensor
from train.models import DiscriminatorNet


class GuidedLeakyReLU(torch.autograd.Function):
    """Forward: LeakyReLU. Backward (guided backprop, Springenberg et al. 2015): pass only
    positive gradients, and only where the unit was active."""

    @staticmethod
    def forward(ctx, x: torch.Tensor, slope: float) -> torch.Tensor:
        ctx.save_for_backward(x)
        return torch.nn.functional.leaky_relu(x, slope)

    @staticmethod
    def backward(ctx, grad: torch.Tensor):
        (x,) = ctx.saved_tensors
        return grad.clamp(min=0) * (x > 0), None


def layer_activation(d: DiscriminatorNet, x: torch.Tensor, layer: int) -> torch.Tensor:
    """Output of conv block `layer` (1..4) with guided LeakyReLUs on the way."""
    seen = 0
    for module in d.main[:-1]:
        if isinstance(module, torch.nn.LeakyReLU):
            x = GuidedLeakyReLU.apply(x, module.negative_slope)
            seen += 1
            if seen == layer:
                return x
        else:
            x = module(x)
    raise ValueError(f"layer must be in 1..{seen}, got {layer}")


def guided_maps(d: DiscriminatorNet, images: np.ndarray, layer: int, top: int
                ) -> tuple[list[dict], np.ndarray, np.ndarray]:
    """For the `top` channels with the largest mean activation: the image that excites each
    most, and the guided gradient of that maximum with respect to the image."""
    d = d.eval()
    x = to_tensor(images)
    with torch.no_grad():
        act = layer_activation(d, x, layer)  # (N, C, h, w)
    strength = act.mean(dim=(0, 2, 3))
    channels = strength.argsort(descending=True)[:top].tolist()
    picked, grads, records = [], [], []
    for c in channels:
        n = int(act[:, c].flatten(1).max(1).values.argmax())
        xi = x[n:n + 1].clone().requires_grad_(True)
        layer_activation(d, xi, layer)[0, c].max().backward()
        g = xi.grad[0].numpy()  # (C, 64, 64)
        picked.append(images[n])
        grads.append(g)
        records.append({"channel": c, "mean_activation": float(strength[c]), "image_index": n})
    return records, np.stack(picked), np.stack(grads)


def _render(grads: np.ndarray) -> np.ndarray:
    """Guided gradients -> uint8 NHWC, each scaled to its own range (as such figures are shown)."""
    out = []
    for g in grads:
        g = g - g.mean()
        g = g / (3 * g.std() + 1e-12)
        out.append(np.clip((g + 0.5) * 255, 0, 255).astype(np.uint8).transpose(1, 2, 0))
    return np.stack(out)


def visualize_features(trained: DiscriminatorNet, random: DiscriminatorNet, images: np.ndarray,
                       out: Path, layer: int = 4, top: int = 8) -> dict:
    """Write visualize.png (rows: excitatory images, their guided maps for the trained D, the
    same for a random D) and visualize.json."""
    rows, result = [], {"analysis": "visualize", "layer": layer, "top": top, "images": len(images)}
    for name, d in (("trained_d", trained), ("random_d", random)):
        records, picked, grads = guided_maps(d, images, layer, top)
        rows += [picked, _render(grads)]
        result[name] = records
    out.mkdir(parents=True, exist_ok=True)
    save_rows(out / "visualize.png", rows)
    result["figure"] = "visualize.png"
    result["rows"] = ["trained D: most exciting images", "trained D: guided backprop",
                      "random D: most exciting images", "random D: guided backprop"]
    save_json(out / "visualize.json", result)
    return result
