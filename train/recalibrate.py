"""BatchNorm recalibration: eval-mode statistics that match what G sees at sampling time.

DCGAN generators are trained (and, in the reference code, sampled) in train mode; their running
statistics are a momentum average over weights that kept changing. Deployment runs eval mode,
so we re-estimate the statistics with the weights frozen: G in train mode on K latent batches,
with a cumulative (not momentum) average.
"""

from __future__ import annotations

import torch

from train.latent import sample_latent
from train.models import Generator

RECALIBRATION_BATCHES = 50  # what export does by default: 50 batches ...
RECALIBRATION_BATCH = 64  # ... of 64 latents


def _batchnorms(g: Generator) -> list[torch.nn.BatchNorm2d]:
    return [m for m in g.modules() if isinstance(m, torch.nn.BatchNorm2d)]


@torch.no_grad()
def recalibrate_bn(g: Generator, batches: int, batch_size: int = 256, seed: int = 0) -> Generator:
    """Replace G's BN running stats by their average over `batches` latent batches. In place.

    Returns G in eval mode. Weights are untouched.
    """
    bns = _batchnorms(g)
    saved = [bn.momentum for bn in bns]
    for bn in bns:
        bn.reset_running_stats()
        bn.momentum = None  # cumulative moving average: every batch weighs the same
    gen = torch.Generator().manual_seed(seed)
    g.train()
    for _ in range(batches):
        g(sample_latent(batch_size, g.cfg, torch.device("cpu"), gen))
    for bn, momentum in zip(bns, saved):
        bn.momentum = momentum
    return g.eval()


@torch.no_grad()
def train_eval_gap(g: Generator, n: int = 1024, seed: int = 12345) -> dict:
    """How far eval-mode outputs are from train-mode (batch-statistics) outputs on `n` latents.

    With a large batch, train-mode BN normalises by (nearly) the population statistics the
    generator was trained under, so this measures how well the running stats stand in for them.
    Returns {"max_abs": ..., "mean_abs": ...} in output units ([-1, 1]).
    """
    z = sample_latent(n, g.cfg, torch.device("cpu"), torch.Generator().manual_seed(seed))
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
