"""The run directory: claimed for a new run, or read back to resume one.

A run directory holds config.json, checkpoints/, samples/, metrics.jsonl and loss.png. A resumed
run takes its model and recipe from the checkpoint; only its length may change.
"""

from __future__ import annotations

import json
from pathlib import Path

from runtime.files import atomic_write_text
from train.checkpoint import load_checkpoint
from train.config import ModelConfig, TrainConfig
from train.errors import TrainingError

# What a resumed run takes from its checkpoint rather than the command line: the recipe.
RECIPE_KEYS = ("data", "batch_size", "lr", "lr_d", "beta1", "beta2", "seed", "label_smoothing",
               "instance_noise", "instance_noise_floor", "instance_noise_steps", "r1_gamma",
               "r1_every", "ema", "recipe")


def last_checkpoint(run_dir: Path) -> Path:
    return run_dir / "checkpoints" / "last.pt"


def _read_config(run_dir: Path) -> dict | None:
    try:
        return json.loads((run_dir / "config.json").read_text())
    except (OSError, ValueError):
        return None


def stored_run(run_dir: Path, cfg: TrainConfig, model_cfg: ModelConfig
               ) -> tuple[dict, ModelConfig]:
    """The checkpoint to resume from and the model config it holds; sets `cfg`'s recipe from it."""
    ckpt_path = last_checkpoint(run_dir)
    if not ckpt_path.exists():
        raise TrainingError(f"--resume: no checkpoint at {ckpt_path} — drop --resume to start a new run")
    state = load_checkpoint(ckpt_path)
    held = _read_config(run_dir)
    if held is not None and held.get("model") != state["model_config"]:
        raise TrainingError(f"--resume: {ckpt_path} holds a model of another configuration "
                            f"({state['model_config']}) than {run_dir / 'config.json'} "
                            f"({held.get('model')}) — start a new run with --out")
    try:
        model_cfg = ModelConfig.from_dict(state["model_config"])
    except (TypeError, ValueError) as e:
        raise TrainingError(f"--resume: {ckpt_path} has a bad model config ({e})") from None
    stored = state["train_config"]
    for key in RECIPE_KEYS:
        setattr(cfg, key, stored.get(key, getattr(cfg, key)))
    return state, model_cfg


def prepare_run_dir(run_dir: Path, config: dict, resume: bool, overwrite: bool) -> None:
    """Create the run directory, refusing to clobber another run unless asked. A directory with
    a config but no checkpoint holds a run that never saved a step: it is started afresh."""
    config_path = run_dir / "config.json"
    started = last_checkpoint(run_dir).exists()
    if config_path.exists() and started and not (resume or overwrite):
        held = json.loads(config_path.read_text())
        what = "a run with a different config" if held != config else "a run"
        raise TrainingError(f"{run_dir} already holds {what} — pass --resume to continue it, "
                            "--overwrite to start over, or --out for a new directory")
    if (overwrite or not started) and not resume:
        for pattern in ("checkpoints/*.pt", "samples/*.png", "metrics.jsonl", "loss.png"):
            for p in run_dir.glob(pattern):
                p.unlink()
    (run_dir / "checkpoints").mkdir(parents=True, exist_ok=True)
    (run_dir / "samples").mkdir(exist_ok=True)
    if not resume:
        atomic_write_text(config_path, json.dumps(config, indent=2) + "\n")
