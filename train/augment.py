"""Differentiable augmentation (Zhao et al., 2020, "DiffAugment"): D sees randomly translated and
cut-out views of real and generated images alike, and G's gradient flows back through the same
kind of view. D can no longer win by memorising the exact pixels of a finite data set (the
50,000 renders of `shapes` are seen about 50 times in a 40,000-step run), while what it learns
about shapes still transfers to G, because fakes are augmented in G's update too.

The draws use torch's global generator, which checkpoints capture, so a resumed run stays
bit-exact.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F

POLICIES = ("translation", "cutout")


def parse_policy(text: str) -> tuple[str, ...]:
    """'translation,cutout' -> ('translation', 'cutout'); '' -> (). ValueError names a bad entry."""
    names = tuple(p.strip() for p in text.split(",") if p.strip())
    unknown = [p for p in names if p not in POLICIES]
    if unknown:
        raise ValueError(f"unknown augmentation {unknown[0]!r}: use a comma-separated list of "
                         f"{', '.join(POLICIES)}, or '' for none")
    return names


def augment(x: torch.Tensor, policy: tuple[str, ...]) -> torch.Tensor:
    """`x` (N, C, H, W) through each transform of `policy`, drawn independently per image."""
    for name in policy:
        x = _TRANSFORMS[name](x)
    return x


def translate(x: torch.Tensor, ratio: float = 0.125) -> torch.Tensor:
    """Shift each image by up to `ratio` of its size in x and y; vacated pixels are 0 (mid-grey)."""
    n, _, h, w = x.shape
    sy, sx = int(h * ratio + 0.5), int(w * ratio + 0.5)
    dy = torch.randint(-sy, sy + 1, (n, 1, 1), device=x.device)
    dx = torch.randint(-sx, sx + 1, (n, 1, 1), device=x.device)
    rows = (torch.arange(h, device=x.device).view(1, h, 1) + dy + 1).clamp(0, h + 1)
    cols = (torch.arange(w, device=x.device).view(1, 1, w) + dx + 1).clamp(0, w + 1)
    batch = torch.arange(n, device=x.device).view(n, 1, 1)
    padded = F.pad(x, [1, 1, 1, 1]).permute(0, 2, 3, 1)  # a zero border: what shifts in
    return padded[batch, rows, cols].permute(0, 3, 1, 2)


def cutout(x: torch.Tensor, ratio: float = 0.5) -> torch.Tensor:
    """Zero one square of `ratio` of the image's size per image, at a random centre (it may
    reach past the edge, as in the paper's code)."""
    n, _, h, w = x.shape
    ch, cw = int(h * ratio + 0.5), int(w * ratio + 0.5)
    cy = torch.randint(0, h + (1 - ch % 2), (n, 1, 1), device=x.device)
    cx = torch.randint(0, w + (1 - cw % 2), (n, 1, 1), device=x.device)
    rows = torch.arange(h, device=x.device).view(1, h, 1)
    cols = torch.arange(w, device=x.device).view(1, 1, w)
    top, left = cy - ch // 2, cx - cw // 2
    inside = (rows >= top) & (rows < top + ch) & (cols >= left) & (cols < left + cw)
    return x * (~inside).unsqueeze(1).to(x.dtype)


_TRANSFORMS = {"translation": translate, "cutout": cutout}
