"""One DCGAN update, in the order of pytorch/examples dcgan: D on real and fake images, then G.

The recipe's remedies enter here and nowhere else: differentiable augmentation and instance noise
on everything D sees, one-sided label smoothing of D's real target, and a lazy R1 penalty on real
images.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import AbstractContextManager, contextmanager
from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch.nn.parallel import DistributedDataParallel

from train.augment import augment, parse_policy
from train.config import TrainConfig


def with_noise(x: torch.Tensor, std: float) -> torch.Tensor:
    """Instance noise (Sønderby et al., 2016): D sees a noisy view of real and fake images alike,
    which keeps it from winning on pixel-exact cues (the flat colours of `shapes`)."""
    if not std:
        return x
    n, c, h, w = x.shape
    if c > 1 and x.is_contiguous(memory_format=torch.channels_last):
        # drawn NHWC and viewed as NCHW: randn_like on a channels_last tensor is ~8x slower
        noise = torch.randn(n, h, w, c, device=x.device, dtype=x.dtype).permute(0, 3, 1, 2)
    else:
        noise = torch.randn(x.shape, device=x.device, dtype=x.dtype)
    return x + std * noise


def noise_std(cfg: TrainConfig, step: int) -> float:
    """Instance noise at `step`: from cfg.instance_noise down to its floor, linearly."""
    if cfg.instance_noise_steps <= 0:
        return cfg.instance_noise
    left = max(0.0, 1.0 - step / cfg.instance_noise_steps)
    return cfg.instance_noise_floor + (cfg.instance_noise - cfg.instance_noise_floor) * left


def anneal_scale(cfg: TrainConfig, step: int, total_steps: int) -> float:
    """The factor on both learning rates and the instance noise at `step`: 1 until
    cfg.anneal_from of the run, then linearly down to 0 at its end. Annealing both lets G settle
    into the flat colours that D's noisy view cannot resolve, while D, no longer noised, does not
    outrun a G that still moves at full speed."""
    start = cfg.anneal_from * total_steps
    if cfg.anneal_from >= 1.0 or step < start:
        return 1.0
    return max(0.0, (total_steps - step) / (total_steps - start))


@contextmanager
def frozen(d: torch.nn.Module) -> Iterator[torch.nn.Module]:
    """D with its weights out of autograd, for G's update: G's gradient flows through D, but
    D's own weight gradients, which D's next zero_grad would discard, are never computed. The
    plain module, not a DistributedDataParallel wrapper: nothing of D's is reduced across ranks
    in G's step. G's gradients are bit-identical either way (tested)."""
    plain = d.module if isinstance(d, DistributedDataParallel) else d
    plain.requires_grad_(False)
    try:
        yield plain
    finally:
        plain.requires_grad_(True)


def r1_penalty(out_real: torch.Tensor, real: torch.Tensor) -> torch.Tensor:
    """E |grad_x D(x)|^2 over the batch, differentiable (for the R1 term)."""
    (grad,) = torch.autograd.grad(out_real.sum(), real, create_graph=True)
    return grad.pow(2).flatten(1).sum(1).mean()


@dataclass
class StepResult:
    """What one update reports: the losses and D's logits on real, fake (before and after D's
    step: the second is what G was trained against)."""

    loss_d: torch.Tensor
    loss_g: torch.Tensor
    out_real: torch.Tensor
    out_fake: torch.Tensor
    out_gen: torch.Tensor
    noise: float

    def metrics(self) -> dict:
        """The metrics.jsonl fields of this step (synchronises with the device)."""
        return {"loss_d": self.loss_d.item(), "loss_g": self.loss_g.item(),
                "d_x": torch.sigmoid(self.out_real).mean().item(),
                "d_g_z": torch.sigmoid(self.out_fake).mean().item(),
                "d_g_z_after": torch.sigmoid(self.out_gen).mean().item(),
                "instance_noise": self.noise}


def gan_step(g: torch.nn.Module, d: torch.nn.Module, opt_g: torch.optim.Optimizer,
             opt_d: torch.optim.Optimizer, real: torch.Tensor, z: torch.Tensor,
             cfg: TrainConfig, step: int, autocast: AbstractContextManager,
             anneal: float = 1.0) -> StepResult:
    """Update D, then G, once; `step` (the number of updates so far) sets the noise and R1,
    `anneal` (anneal_scale) scales the noise; the caller scales the learning rates."""
    b = real.size(0)
    device = real.device
    ones = torch.ones(b, device=device)
    real_targets = torch.full((b,), 1.0 - cfg.label_smoothing, device=device)
    zeros = torch.zeros(b, device=device)
    noise = noise_std(cfg, step) * anneal
    policy = parse_policy(cfg.augment)
    lazy_r1 = cfg.r1_gamma > 0 and step % cfg.r1_every == 0

    def view(x: torch.Tensor) -> torch.Tensor:  # what D sees of an image batch
        return with_noise(augment(x, policy), noise)

    # (1) D: maximise log D(x) + log(1 - D(G(z))), plus R1 on real images
    opt_d.zero_grad(set_to_none=True)
    real_in = view(real)
    if lazy_r1:
        real_in = real_in.detach().requires_grad_(True)
    with autocast:
        out_real = d(real_in).float()
        loss_real = F.binary_cross_entropy_with_logits(out_real, real_targets)
    if lazy_r1:  # scaled by r1_every: the same average strength as a penalty every step
        loss_real = loss_real + cfg.r1_gamma / 2 * cfg.r1_every * r1_penalty(out_real, real_in)
    loss_real.backward()
    with autocast:
        fake = g(z)
        out_fake = d(view(fake.detach())).float()
        loss_fake = F.binary_cross_entropy_with_logits(out_fake, zeros)
    loss_fake.backward()
    opt_d.step()

    # (2) G: maximise log D(G(z)) (real labels for fakes)
    opt_g.zero_grad(set_to_none=True)
    with frozen(d) as d_fixed:
        with autocast:
            out_gen = d_fixed(view(fake)).float()
            loss_g = F.binary_cross_entropy_with_logits(out_gen, ones)
        loss_g.backward()
    opt_g.step()
    return StepResult((loss_real + loss_fake).detach(), loss_g.detach(), out_real.detach(),
                      out_fake.detach(), out_gen.detach(), noise)
