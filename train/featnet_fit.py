"""Train the feature network (train/featnet.py) on fresh renders and write its weights and anchors.

    python -m train.featnet_fit            # writes train/featnet.npz and train/featnet_anchors.json

Deterministic: the renders are a pure function of (seed, index), torch is seeded and runs on
one CPU thread with deterministic algorithms, so the same torch build on the same CPU writes the
same bytes (other CPUs may differ in the last bits; tests/test_metrics.py checks what matters,
the calibration). A few minutes on one core. The anchors (train/anchors.py) are computed with the
new weights at the end, so they always belong to the weights beside them.
"""

from __future__ import annotations

import argparse
import logging
import time
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F

from train import shapes
from train.data import to_unit_range
from train.featnet import FEATURES, GROUPS, WEIGHTS_PATH, FeatureNet, embed, save_weights, targets

log = logging.getLogger(__name__)

FIT_SEED = 1001  # the renders it learns from (training data of dcgan-train is seed 0)
HELDOUT_SEED = 1002  # the renders it is checked on
FIT_IMAGES = 24_000
EPOCHS = 10
BATCH = 64
LR = 2e-3
PARAM_WEIGHT = 20.0  # MSE of the ~[0, 1] parameters against cross-entropy of the class


def render_set(seed: int, n: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """uint8 (n, 64, 64, 3) renders of `seed`, their labels (n,) and targets (n, 11)."""
    specs = [shapes.draw_spec(seed, i) for i in range(n)]
    images = np.stack([shapes.render(seed, i)[0] for i in range(n)])
    return images, np.array([s.label for s in specs]), np.stack([targets(s) for s in specs])


def _loss(net: FeatureNet, x: torch.Tensor, y: torch.Tensor, t: torch.Tensor) -> torch.Tensor:
    _, logits, p = net(x)
    weight = torch.ones_like(t)
    weight[y == 0, 3:5] = 0  # a circle has no rotation
    return F.cross_entropy(logits, y) + PARAM_WEIGHT * (weight * (p - t) ** 2).mean()


def fit(images: np.ndarray, labels: np.ndarray, params: np.ndarray, seed: int = 0) -> FeatureNet:
    """Train a FeatureNet on uint8 (N, 64, 64, 3) renders; returned in eval mode."""
    torch.manual_seed(seed)
    net = FeatureNet()
    opt = torch.optim.Adam(net.parameters(), lr=LR)
    steps = EPOCHS * (len(images) // BATCH)
    sched = torch.optim.lr_scheduler.OneCycleLR(opt, LR, total_steps=steps, pct_start=0.1)
    x_all = torch.from_numpy(to_unit_range(images)).permute(0, 3, 1, 2).contiguous()  # (N, 3, 64, 64)
    y_all, t_all = torch.from_numpy(labels), torch.from_numpy(params)
    order = torch.Generator().manual_seed(seed)
    net.train()
    for epoch in range(EPOCHS):
        perm = torch.randperm(len(images), generator=order)
        total, start = 0.0, time.perf_counter()
        for b in range(len(images) // BATCH):
            idx = perm[b * BATCH:(b + 1) * BATCH]
            loss = _loss(net, x_all[idx], y_all[idx], t_all[idx])
            opt.zero_grad(set_to_none=True)
            loss.backward()
            opt.step()
            sched.step()
            total += loss.item()
        log.info("epoch %d: loss %.4f (%.0f s)", epoch + 1, total / (len(images) // BATCH),
                 time.perf_counter() - start)
    return net.eval().requires_grad_(False)


@torch.no_grad()
def normalise_features(net: FeatureNet, images: np.ndarray) -> FeatureNet:
    """Set the feature scale so that each group of features (train/featnet.py, GROUPS) has unit
    RMS on `images`: KID's cubic kernel (x·y / d + 1)³ then weighs its terms, and the distances
    their groups, alike rather than by the arbitrary scale training left. The heads are untouched."""
    net.feature_scale.fill_(1.0)
    features = embed(images, net).features
    scale, first = torch.ones(FEATURES), 0
    for width in GROUPS:
        scale[first:first + width] = 1.0 / float(np.sqrt((features[:, first:first + width] ** 2).mean()))
        first += width
    net.feature_scale.copy_(scale)
    return net


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(prog="python -m train.featnet_fit", description=__doc__.split("\n")[0])
    parser.add_argument("--out", type=Path, default=WEIGHTS_PATH,
                        help="weights file; the anchors go beside it [default: %(default)s]")
    parser.add_argument("--images", type=int, default=FIT_IMAGES, help="renders to learn from")
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(message)s")
    torch.set_num_threads(1)
    torch.use_deterministic_algorithms(True)
    images, labels, params = render_set(FIT_SEED, args.images)
    net = normalise_features(fit(images, labels, params), images[:4096])
    save_weights(net, args.out)
    log.info("wrote %s (%d parameters)", args.out, sum(p.numel() for p in net.parameters()))
    from train.anchors import ANCHORS_NAME, write_anchors

    write_anchors(net, args.out.with_name(ANCHORS_NAME), args.out)
    log.info("wrote %s", args.out.with_name(ANCHORS_NAME))


if __name__ == "__main__":
    main()
