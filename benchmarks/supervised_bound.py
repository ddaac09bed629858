"""A training experiment, not a benchmark of the toolkit: what G can learn to draw in a given
number of steps when it is told the answer.

G is fed each shapes image's own render parameters in place of z (class one-hot, centre, radius,
the cosine and sine of the rotation times the class's symmetry, both colours; the other latent
entries zero) and fitted to the render with an L1 loss: no discriminator, no guessing. No
adversarial run of the same G, steps and batch can be expected to draw better, so the quality
score of this fit bounds what a training schedule of that length can reach.

    python -m benchmarks.supervised_bound --ngf 32 --steps 3000 --lr 1e-3 --out bench/bound

Adam (β1 0.5), batch 64, fresh images every step from the built-in 50,000 (the last 512 held out),
the learning rate annealed linearly to 0 over the second half. Every --every steps the
reconstructions of the held-out images (G in training mode, batches of 64) are scored with
train/quality.py; the curve goes to OUT/bound.jsonl and a grid of the last one to OUT/bound.png.
"""

from __future__ import annotations

import json
import time
from pathlib import Path
from typing import Annotated

import numpy as np
import torch
import typer

from runtime.cli_support import Debug, new_app, run_app
from runtime.files import atomic_write_text
from runtime.images import images_from_float, make_grid, save_image
from train import shapes
from train.config import ModelConfig
from train.data import DEFAULT_SHAPES_LENGTH, open_dataset
from train.models import build_models
from train.quality import SYMMETRY, score_images

app = new_app(__doc__)
HELD_OUT = 512
BATCH = 64


def parameter_code(spec: shapes.ShapeSpec, nz: int) -> np.ndarray:
    """The latent that tells G what to draw: every render parameter, scaled to about [-1, 1]."""
    code = np.zeros(nz, np.float32)
    code[spec.label] = 1.0
    code[3:5] = np.array(spec.centre) / (shapes.SIZE / 2) - 1
    code[5] = (spec.radius - 17.0) / 7.0  # the spec's 10-24 px
    k = SYMMETRY.get(spec.label, 0)  # square 4, triangle 3: the angle matters modulo 2π / k
    code[6:8] = np.cos(k * spec.angle), np.sin(k * spec.angle)
    code[8:11] = np.array(spec.background) / 127.5 - 1
    code[11:14] = np.array(spec.foreground) / 127.5 - 1
    return code


def fit(ngf: int, steps: int, lr: float, every: int, length: int, out: Path) -> list[dict]:
    """Fit G (width ngf) for `steps` and return its quality curve (see the module docstring)."""
    dataset = open_dataset(f"shapes:{length}")
    images = dataset.images
    model_cfg = ModelConfig(ngf=ngf, ndf=16)
    codes = np.stack([parameter_code(shapes.draw_spec(0, i), model_cfg.nz) for i in range(length)])
    torch.manual_seed(0)
    # D is built and dropped: its construction draws from the seeded generator before G's init,
    # so its width fixes G's initial weights; ndf 16 reproduces the recorded curves
    g, _ = build_models(model_cfg)
    opt = torch.optim.Adam(g.parameters(), lr, betas=(0.5, 0.999))
    rng = np.random.default_rng(0)
    held = np.arange(length - HELD_OUT, length)
    curve, start = [], time.perf_counter()
    for step in range(steps):
        opt.param_groups[0]["lr"] = lr * min(1.0, (steps - step) / (steps / 2))
        idx = np.sort(rng.choice(length - HELD_OUT, BATCH, replace=False))
        x = torch.from_numpy(np.ascontiguousarray(images[idx])).permute(0, 3, 1, 2).float() / 127.5 - 1
        loss = (g(torch.from_numpy(codes[idx])) - x).abs().mean()
        opt.zero_grad()
        loss.backward()
        opt.step()
        if (step + 1) % every == 0 or step + 1 == steps:
            with torch.no_grad():
                drawn = np.concatenate([images_from_float(g(torch.from_numpy(codes[i:i + BATCH])).numpy())
                                        for i in range(held[0], length, BATCH)])
            score = score_images(drawn)
            curve.append({"step": step + 1, "seconds": round(time.perf_counter() - start, 1),
                          "l1": round(loss.item(), 4), **score.to_dict()})
            typer.echo(f"step {step + 1}: {score.summary()}")
    out.mkdir(parents=True, exist_ok=True)
    atomic_write_text(out / "bound.jsonl", "".join(json.dumps(p) + "\n" for p in curve))
    save_image(out / "bound.png", make_grid(drawn[:64], ncols=8))
    return curve


@app.command()
def main_command(
    ngf: Annotated[int, typer.Option(min=1, help="G's width.")] = 32,
    steps: Annotated[int, typer.Option(min=1, help="Optimizer steps.")] = 3000,
    lr: Annotated[float, typer.Option(min=0.0, help="Adam's learning rate (annealed to 0 over "
                                                    "the second half).")] = 1e-3,
    every: Annotated[int, typer.Option(min=1, help="Steps between quality scores.")] = 500,
    length: Annotated[int, typer.Option(min=HELD_OUT + BATCH, help="Shapes images (seed 0).")
                      ] = DEFAULT_SHAPES_LENGTH,
    out: Annotated[Path, typer.Option(help="Where bound.jsonl and bound.png go.")] = Path("bench/bound"),
    debug: Debug = False,
) -> None:
    """Fit G to the shapes renders from their own parameters and score it (module docstring)."""
    fit(ngf, steps, lr, every, length, out)


def main() -> None:
    raise SystemExit(run_app(app, prog="supervised_bound"))


if __name__ == "__main__":
    main()
