"""The run directory: claimed for a new run, or read back to resume one.

A run directory holds config.json, checkpoints/, samples/, metrics.jsonl, loss.png and
quality.png, and nothing else. A resumed run takes every setting that shapes its training from
the checkpoint (so a bare `--resume` continues exactly the run that was started); only the
settings of one invocation (device, workers, ...) come from the command line, and its length
when given (a bare `--resume` finishes the length the run was started with).
"""

from __future__ import annotations

import json
from dataclasses import fields
from pathlib import Path

from runtime.files import atomic_write_text
from runtime.outdir import LOCK_NAME
from train.checkpoint import load_checkpoint
from train.config import ModelConfig, TrainConfig
from train.errors import TrainingError

# The TrainConfig fields a resume may change; every other field is restored from the checkpoint.
PER_INVOCATION = ("out", "epochs", "steps", "device", "workers", "cache_dir")
RESUMED_KEYS = tuple(f.name for f in fields(TrainConfig) if f.name not in PER_INVOCATION)
# A setting newer than a checkpoint takes TrainConfig's default on resume, never the recipe's: a
# new setting's default is what training did before it existed (augment "": none), so a run
# started before `--augment` resumes without it even where the recipe now augments.
PREDATED = {f.name: f.default for f in fields(TrainConfig)}
# What a run writes: top-level files, and the one suffix each subdirectory holds.
RUN_FILES = ("config.json", "metrics.jsonl", "loss.png", "quality.png")
RUN_SUBDIRS = {"checkpoints": ".pt", "samples": ".png"}


def last_checkpoint(run_dir: Path) -> Path:
    return run_dir / "checkpoints" / "last.pt"


def _read_config(run_dir: Path) -> dict | None:
    try:
        return json.loads((run_dir / "config.json").read_text())
    except (OSError, ValueError):
        return None


def stored_run(run_dir: Path, cfg: TrainConfig, model_cfg: ModelConfig
               ) -> tuple[dict, ModelConfig]:
    """The checkpoint to resume from and the model config it holds; sets every resumed setting
    of `cfg` (RESUMED_KEYS) from it."""
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
    for key in RESUMED_KEYS:
        setattr(cfg, key, stored.get(key, PREDATED[key]))
    if cfg.steps is None and cfg.epochs is None:
        # No new length given: finish the run that was started (its learning-rate and noise
        # anneal is a share of that length, so another length is another schedule).
        cfg.steps, cfg.epochs = stored.get("steps"), stored.get("epochs")
    return state, model_cfg


def _run_files(run_dir: Path) -> tuple[list[Path], list[Path]]:
    """(what a dcgan-train run wrote here, everything else): only the first may ever be deleted."""
    ours, foreign = [], []
    for p in run_dir.iterdir():
        if p.name == LOCK_NAME:
            continue
        if p.name in RUN_SUBDIRS and p.is_dir():
            for q in p.iterdir():
                is_ours = q.is_file() and (q.suffix == RUN_SUBDIRS[p.name] or q.name.endswith(".tmp"))
                (ours if is_ours else foreign).append(q)
        elif p.name in RUN_FILES and p.is_file():
            ours.append(p)
        else:
            foreign.append(p)
    return ours, foreign


def prepare_run_dir(run_dir: Path, config: dict, resume: bool, overwrite: bool) -> None:
    """Make `run_dir` ready for a run (the caller holds its lock). A new run starts only in an
    empty directory, or with --overwrite in one that holds nothing but an earlier run's files
    (which are deleted). A directory whose run never got past writing its config counts as
    empty. Anything else there is refused, never deleted."""
    run_dir.mkdir(parents=True, exist_ok=True)
    if not resume:
        ours, foreign = _run_files(run_dir)
        if foreign:
            names = ", ".join(str(p.relative_to(run_dir)) for p in foreign[:3])
            raise TrainingError(f"{run_dir} holds files that are not a dcgan-train run's ({names}) "
                                "— pick another --out")
        started = [p for p in ours if p.name != "config.json"]
        if started and not overwrite:
            held = _read_config(run_dir)
            what = "a run with a different config" if held not in (None, config) else "a run"
            raise TrainingError(f"{run_dir} already holds {what} — pass --resume to continue it, "
                                "--overwrite to start over, or --out for a new directory")
        for p in ours:
            p.unlink()
    (run_dir / "checkpoints").mkdir(exist_ok=True)
    (run_dir / "samples").mkdir(exist_ok=True)
    if not resume:
        atomic_write_text(run_dir / "config.json", json.dumps(config, indent=2) + "\n")
