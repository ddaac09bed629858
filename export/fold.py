"""Fold each BatchNorm into the ConvTranspose2d before it.

For ConvTranspose2d the weight is (in, out, kh, kw) and BN scales the layer's *output*
channels, so the scale goes along axis 1 — scaling axis 0 is the classic bug (onnx/optimizer#106).
`fuse_conv_bn_weights(..., transpose=True)` does exactly this.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch
from torch.nn.utils.fusion import fuse_conv_bn_weights

from train.models import GeneratorNet


@dataclass
class FoldedLayer:
    weight: np.ndarray  # float32 (in, out, 4, 4), ConvTranspose2d layout
    bias: np.ndarray  # float32 (out,)
    stride: int
    padding: int
    activation: str  # "relu" or "tanh"


@torch.no_grad()
def fold_generator(g: GeneratorNet) -> list[FoldedLayer]:
    """G's five ConvTranspose2d layers with BN folded in (uses BN running stats: eval mode)."""
    layers, mods = [], list(g.main)
    for i, m in enumerate(mods):
        if not isinstance(m, torch.nn.ConvTranspose2d):
            continue
        nxt = mods[i + 1]
        weight = m.weight.detach()
        bias = torch.zeros(weight.shape[1]) if m.bias is None else m.bias.detach()
        if isinstance(nxt, torch.nn.BatchNorm2d):
            weight, bias = fuse_conv_bn_weights(weight, bias, nxt.running_mean, nxt.running_var,
                                                nxt.eps, nxt.weight, nxt.bias, transpose=True)
            activation = "relu"
        else:
            activation = "tanh"
        layers.append(FoldedLayer(weight.detach().float().numpy().copy(),
                                  bias.detach().float().numpy().copy(),
                                  m.stride[0], m.padding[0], activation))
    return layers


class FoldedGenerator(torch.nn.Module):
    """The folded layers as a torch module: checks the fold before any file is written."""

    def __init__(self, layers: list[FoldedLayer]):
        super().__init__()
        self.layers = layers
        self.convs = torch.nn.ModuleList()
        for layer in layers:
            cin, cout = layer.weight.shape[:2]
            conv = torch.nn.ConvTranspose2d(cin, cout, 4, layer.stride, layer.padding, bias=True)
            conv.weight.data.copy_(torch.from_numpy(layer.weight))
            conv.bias.data.copy_(torch.from_numpy(layer.bias))
            self.convs.append(conv)

    @torch.no_grad()
    def forward(self, z: torch.Tensor) -> torch.Tensor:
        x = z.reshape(z.shape[0], -1, 1, 1)
        for conv, layer in zip(self.convs, self.layers):
            x = conv(x)
            x = torch.relu(x) if layer.activation == "relu" else torch.tanh(x)
        return x
