"""BatchNorm recalibration: eval-mode statistics that match what G sees at sampling time.

DCGAN generators are trained (and, in the reference code, sampled) in train mode; their running
statistics are a momentum average over weights that kept changing. Deployment runs eval mode,
so we re-estimate the statistics with the weights frozen: G in train mode on K latent batches,
with a cumulative (not momentum) average. The latents are the runtime's (runtime/latents.py),
the same definition every exported image uses.
"""

from __future__ import annotations

import torch

from runtime.latents import latents
from train.models import GeneratorNet

RECALIBRATION_BATCHES = 50  # what export does by default: 50 batches ...
RECALIBRATION_BATCH = 64  # ... of 64 latents


def _batchnorms(g: GeneratorNet) -> list[torch.nn.BatchNorm2d]:
    return [m for m in g.modules() if isinstance(m, torch.nn.BatchNorm2d)]


@torch.no_grad()
def recalibrate_bn(g: GeneratorNet, batches: int, batch_size: int = 256, seed: int = 0) -> GeneratorNet:
    """Replace G's BN running stats by their average over `batches` latent batches. In place.

    Returns G in eval mode. Weights are untouched.
    """
    bns = _batchnorms(g)
    saved = [bn.momentum for bn in bns]
    for bn in bns:
        bn.reset_running_stats()
        bn.momentum = None  # cumulative moving average: every batch weighs the same
    g.train()
    for b in range(batches):
        g(torch.from_numpy(latents(seed, b * batch_size, batch_size, g.cfg.nz, g.cfg.latent)))
    for bn, momentum in zip(bns, saved):
        bn.momentum = momentum
    return g.eval()


@torch.no_grad()
def train_eval_gap(g: GeneratorNet, n: int = 1024, seed: int = 12345) -> dict:
    """How far eval-mode outputs are from train-mode (batch-statistics) outputs on `n` latents.

    With a large batch, train-mode BN normalises by (nearly) the population statistics the
    generator was trained under, so this measures how well the running stats stand in for them.
    Returns {"max_abs": ..., "mean_abs": ...} in output units ([-1, 1]).
    """
    z = torch.from_numpy(latents(seed, 0, n, g.cfg.nz, g.cfg.latent))
    was_training = g.training
    saved = [(bn.running_mean.clone(), bn.running_var.clone(), bn.num_batches_tracked.clone())
             for bn in _batchnorms(g)]
    g.train()
    train_out = g(z)
    # a train-mode forward updates running stats; put them back
    for bn, (mean, var, count) in zip(_batchnorms(g), saved):
        bn.running_mean.copy_(mean), bn.running_var.copy_(var), bn.num_batches_tracked.copy_(count)
    g.eval()
    diff = (g(z) - train_out).abs()
    g.train(was_training)
    return {"max_abs": diff.max().item(), "mean_abs": diff.mean().item(), "latents": n}
