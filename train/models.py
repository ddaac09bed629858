"""The DCGAN generator and discriminator (Radford, Metz & Chintala, 2016), 64x64.

Module layout matches pytorch/examples dcgan (`main.0.weight`, `main.1.running_mean`, ...), so
its `netG_epoch_N.pth` / `netD_epoch_N.pth` state dicts load unchanged. D returns logits: its
Sigmoid is folded into the loss (BCE-with-logits), and Sigmoid holds no parameters.
"""

from __future__ import annotations

import torch
from torch import nn

from train.config import ModelConfig


class GeneratorNet(nn.Module):
    """G: latents (B, nz) or (B, nz, 1, 1) -> images (B, nc, 64, 64) in [-1, 1]. (runtime.Generator
    is the deployed, torch-free generator built from an exported artifact.)"""

    def __init__(self, cfg: ModelConfig):
        super().__init__()
        self.cfg = cfg
        nz, ngf, nc = cfg.nz, cfg.ngf, cfg.nc
        self.main = nn.Sequential(
            nn.ConvTranspose2d(nz, ngf * 8, 4, 1, 0, bias=False),  # (B, ngf*8, 4, 4)
            nn.BatchNorm2d(ngf * 8),
            nn.ReLU(True),
            nn.ConvTranspose2d(ngf * 8, ngf * 4, 4, 2, 1, bias=False),  # (B, ngf*4, 8, 8)
            nn.BatchNorm2d(ngf * 4),
            nn.ReLU(True),
            nn.ConvTranspose2d(ngf * 4, ngf * 2, 4, 2, 1, bias=False),  # (B, ngf*2, 16, 16)
            nn.BatchNorm2d(ngf * 2),
            nn.ReLU(True),
            nn.ConvTranspose2d(ngf * 2, ngf, 4, 2, 1, bias=False),  # (B, ngf, 32, 32)
            nn.BatchNorm2d(ngf),
            nn.ReLU(True),
            nn.ConvTranspose2d(ngf, nc, 4, 2, 1, bias=False),  # (B, nc, 64, 64)
            nn.Tanh(),
        )

    def forward(self, z: torch.Tensor) -> torch.Tensor:
        if z.dim() == 2:
            z = z[:, :, None, None]  # (B, nz) -> (B, nz, 1, 1)
        return self.main(z)


class DiscriminatorNet(nn.Module):
    """D: images (B, nc, 64, 64) -> logits (B,)."""

    def __init__(self, cfg: ModelConfig):
        super().__init__()
        self.cfg = cfg
        nc, ndf = cfg.nc, cfg.ndf
        self.main = nn.Sequential(
            nn.Conv2d(nc, ndf, 4, 2, 1, bias=False),  # (B, ndf, 32, 32), no BN on D's input
            nn.LeakyReLU(0.2, inplace=True),
            nn.Conv2d(ndf, ndf * 2, 4, 2, 1, bias=False),  # (B, ndf*2, 16, 16)
            nn.BatchNorm2d(ndf * 2),
            nn.LeakyReLU(0.2, inplace=True),
            nn.Conv2d(ndf * 2, ndf * 4, 4, 2, 1, bias=False),  # (B, ndf*4, 8, 8)
            nn.BatchNorm2d(ndf * 4),
            nn.LeakyReLU(0.2, inplace=True),
            nn.Conv2d(ndf * 4, ndf * 8, 4, 2, 1, bias=False),  # (B, ndf*8, 4, 4)
            nn.BatchNorm2d(ndf * 8),
            nn.LeakyReLU(0.2, inplace=True),
            nn.Conv2d(ndf * 8, 1, 4, 1, 0, bias=False),  # (B, 1, 1, 1) logits
        )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.main(x).flatten()  # (B,) logits

    def features(self, x: torch.Tensor) -> list[torch.Tensor]:
        """Activations after each conv block (post-LeakyReLU), as the paper's feature analyses use."""
        out = []
        for layer in self.main[:-1]:
            x = layer(x)
            if isinstance(layer, nn.LeakyReLU):
                out.append(x)
        return out


def dcgan_init_(module: nn.Module) -> None:
    """The paper's init: conv weights N(0, 0.02); BN weight N(1, 0.02), bias 0. Use with .apply()."""
    if isinstance(module, (nn.Conv2d, nn.ConvTranspose2d)):
        nn.init.normal_(module.weight, 0.0, 0.02)
    elif isinstance(module, nn.BatchNorm2d):
        nn.init.normal_(module.weight, 1.0, 0.02)
        nn.init.zeros_(module.bias)


def build_models(cfg: ModelConfig) -> tuple[GeneratorNet, DiscriminatorNet]:
    """A freshly initialised (G, D) pair."""
    g, d = GeneratorNet(cfg), DiscriminatorNet(cfg)
    g.apply(dcgan_init_)
    d.apply(dcgan_init_)
    return g, d


def count_parameters(module: nn.Module) -> int:
    return sum(p.numel() for p in module.parameters())
