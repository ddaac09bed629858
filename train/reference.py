"""Package a checkpoint as the repository's reference model: what export needs, nothing more.

    python -m train.reference RUN/checkpoints/epoch_040.pt --out reference/

Writes `checkpoint.pt` (model and training config, the weights export ships — G's moving average
where the run kept one, under both `generator` and `generator_ema`, stored once — D for the
paper's feature analyses, the step; no optimizer or RNG state, so a quarter of the size and not
resumable) and copies the run's `config.json` and `metrics.jsonl` beside it. The run directory
itself stays the place to resume from.
"""

from __future__ import annotations

import argparse
import io
import json
import shutil
from pathlib import Path

import torch

from runtime.files import atomic_write_bytes, atomic_write_text
from train.checkpoint import CHECKPOINT_FORMAT, load_checkpoint

KEPT = ("model_config", "train_config", "discriminator", "step", "epoch", "data_fingerprint")


def reference_checkpoint(state: dict) -> dict:
    """The exportable part of a training checkpoint: the shipped G's weights under both names
    (one copy on disk: torch.save stores a shared tensor once)."""
    shipped = state.get("generator_ema", state["generator"])
    return {"format": CHECKPOINT_FORMAT, **{k: state[k] for k in KEPT if k in state},
            "generator": shipped, "generator_ema": shipped}


def package(checkpoint: Path, out: Path) -> Path:
    state = load_checkpoint(checkpoint)
    out.mkdir(parents=True, exist_ok=True)
    buf = io.BytesIO()
    torch.save(reference_checkpoint(state), buf)
    atomic_write_bytes(out / "checkpoint.pt", buf.getvalue())
    run_dir = checkpoint.parent.parent
    if (run_dir / "config.json").exists():
        shutil.copyfile(run_dir / "config.json", out / "config.json")
    if (run_dir / "metrics.jsonl").exists():  # the rows up to the checkpoint's step
        rows = [line for line in (run_dir / "metrics.jsonl").read_text().splitlines()
                if json.loads(line).get("step", 0) <= state["step"]]
        atomic_write_text(out / "metrics.jsonl", "\n".join(rows) + "\n")
    return out / "checkpoint.pt"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("checkpoint", type=Path)
    parser.add_argument("--out", type=Path, default=Path("reference"))
    args = parser.parse_args()
    path = package(args.checkpoint, args.out)
    print(f"{path}: {path.stat().st_size / 1e6:.1f} MB")


if __name__ == "__main__":
    main()
