"""Shared fixtures: a tiny trained run (ngf=8) that export, runtime and benchmark tests build on."""

from __future__ import annotations

import importlib.util
from pathlib import Path

import pytest

HAS_TORCH = importlib.util.find_spec("torch") is not None


def tiny_train(out: Path, steps: int = 4, resume: bool = False, overwrite: bool = False,
               **overrides):
    """Train a tiny model on shapes for a few steps; returns the TrainResult."""
    from train.config import ModelConfig
    from train.loop import TrainConfig, train

    model_keys = {"nz", "ngf", "ndf", "nc", "latent"}
    model = ModelConfig(**{"nz": 16, "ngf": 8, "ndf": 8,
                           **{k: v for k, v in overrides.items() if k in model_keys}})
    cfg = TrainConfig(**{"data": "shapes:256", "out": str(out), "steps": steps, "batch_size": 16,
                         "workers": 0, "log_every": 1, "save_every": 2,
                         **{k: v for k, v in overrides.items() if k not in model_keys}})
    return train(cfg, model, resume=resume, overwrite=overwrite)


@pytest.fixture(scope="session")
def tiny_run(tmp_path_factory) -> Path:
    """A run directory holding checkpoints/last.pt of a tiny model (nz=16, ngf=ndf=8)."""
    out = tmp_path_factory.mktemp("run") / "tiny"
    tiny_train(out, steps=6)
    return out


@pytest.fixture(scope="session")
def tiny_checkpoint(tiny_run) -> Path:
    return tiny_run / "checkpoints" / "last.pt"
