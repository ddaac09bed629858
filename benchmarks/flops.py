"""The generator's exact FLOP count and the machine's fp32 matrix-multiply rate."""

from __future__ import annotations

import time

import torch

from train.config import ModelConfig


def generator_flops(cfg: ModelConfig) -> int:
    """FLOPs of one image through G's five transposed convolutions (a multiply-add counts 2).

    A ConvTranspose2d scatters every input pixel through a Cin x Cout x k x k kernel, so it costs
    2 * Cin * Cout * k*k * Hin * Win. Bias adds, BN (folded away), ReLU and Tanh are elementwise
    and left out: they are < 0.2 % of the total at the defaults.
    """
    nz, ngf, nc = cfg.nz, cfg.ngf, cfg.nc
    # (Cin, Cout, input side) of each layer: 1x1 -> 4x4 -> 8x8 -> 16x16 -> 32x32 -> 64x64
    layers = [(nz, ngf * 8, 1), (ngf * 8, ngf * 4, 4), (ngf * 4, ngf * 2, 8), (ngf * 2, ngf, 16),
              (ngf, nc, 32)]
    return sum(2 * cin * cout * 16 * side * side for cin, cout, side in layers)


def matmul_gflops(n: int = 2048, repeats: int = 5) -> float:
    """Best fp32 GEMM rate (GFLOP/s) of torch.mm on n x n matrices with all intra-op threads."""
    a, b = torch.randn(n, n), torch.randn(n, n)
    torch.mm(a, b)  # warm-up
    best = float("inf")
    for _ in range(repeats):
        t0 = time.perf_counter()
        torch.mm(a, b)
        best = min(best, time.perf_counter() - t0)
    return 2 * n**3 / best / 1e9
