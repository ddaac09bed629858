"""dcgan-train under signals, crafted checkpoints and failed starts."""

import os
import signal

import numpy as np
import pytest
from conftest import HAS_TORCH, start_process, wait_for

from runtime.cli_support import run_app

pytestmark = pytest.mark.skipif(not HAS_TORCH, reason="the fixtures train and export with torch")


def test_failed_start_leaves_the_run_directory_usable(tmp_path, capsys):
    from train.cli import app

    out = tmp_path / "run"
    base = ["--ngf", "8", "--ndf", "8", "--nz", "16", "--batch-size", "8", "--steps", "1",
            "--workers", "0", "--quality-every", "0", "--out", str(out)]
    assert run_app(app, [*base, "--data", str(tmp_path / "typo")], prog="dcgan-train") == 1
    assert not (out / "config.json").exists()
    empty = tmp_path / "empty"
    empty.mkdir()
    assert run_app(app, [*base, "--data", str(empty)], prog="dcgan-train") == 1
    assert run_app(app, [*base, "--data", "shapes:4"], prog="dcgan-train") == 1  # fewer than a batch
    assert not (out / "config.json").exists()
    # a run that wrote its config but never a checkpoint (Ctrl-C during start-up) starts afresh
    out.mkdir(exist_ok=True)
    (out / "config.json").write_text('{"model": {}, "train": {}}')
    assert run_app(app, [*base, "--data", "shapes:64"], prog="dcgan-train") == 0
    capsys.readouterr()


def test_resume_refuses_another_configuration_or_data(tmp_path):
    from conftest import tiny_train

    from train.checkpoint import load_checkpoint, save_checkpoint
    from train.errors import TrainingError

    tiny_train(tmp_path / "r", steps=2, data="shapes:64")
    ckpt = tmp_path / "r" / "checkpoints" / "last.pt"
    state = load_checkpoint(ckpt)
    save_checkpoint(ckpt, {**{k: v for k, v in state.items() if k != "format"},
                           "data_fingerprint": "folder:changed-since"})
    with pytest.raises(TrainingError, match="the data changed"):
        tiny_train(tmp_path / "r", steps=3, data="shapes:64", resume=True)
    tiny_train(tmp_path / "other", steps=2, data="shapes:64", nz=8)
    save_checkpoint(ckpt, {k: v for k, v in load_checkpoint(tmp_path / "other" / "checkpoints" /
                                                            "last.pt").items() if k != "format"})
    with pytest.raises(TrainingError, match="another configuration"):
        tiny_train(tmp_path / "r", steps=3, data="shapes:64", resume=True)


def test_checkpoint_config_that_disagrees_with_its_weights_is_refused_before_allocation(
        tiny_checkpoint, tmp_path):
    import torch

    from export.errors import ExportError
    from export.load import load_for_export

    state = torch.load(tiny_checkpoint, weights_only=True)
    state["model_config"]["nz"] = 3000
    bad = tmp_path / "bad.pt"
    torch.save(state, bad)
    with pytest.raises(ExportError, match="config and weights disagree"):
        load_for_export(bad)
    state["model_config"]["nz"] = 300000
    torch.save(state, bad)
    with pytest.raises(ExportError, match="nz must be an int in"):
        load_for_export(bad)


def test_nan_loss_without_any_checkpoint_says_so(tmp_path, monkeypatch):
    import torch
    from conftest import tiny_train

    import train.step
    from train.errors import TrainingError

    real = torch.nn.functional.binary_cross_entropy_with_logits
    monkeypatch.setattr(train.step.F, "binary_cross_entropy_with_logits",
                        lambda *a, **k: real(*a, **k) * float("nan"))
    with pytest.raises(TrainingError, match="no checkpoint had been written yet"):
        tiny_train(tmp_path / "r", steps=5)


@pytest.mark.slow
def test_train_interrupted_during_start_up_exits_130_and_leaves_nothing(tmp_path):
    from PIL import Image

    folder = tmp_path / "images"
    folder.mkdir()
    for i in range(3000):  # enough that building the cache takes a while
        Image.fromarray(np.full((96, 96, 3), i % 256, np.uint8)).save(folder / f"{i:05d}.png")
    cache, out = tmp_path / "cache", tmp_path / "run"
    proc = start_process(["-m", "train.cli", "--data", str(folder), "--cache-dir", str(cache), "--out",
                   str(out), "--ngf", "8", "--ndf", "8", "--steps", "1"])
    wait_for(lambda: cache.is_dir() and any(p.name.endswith(".tmp") for p in cache.iterdir()))
    os.killpg(proc.pid, signal.SIGINT)
    _, err = proc.communicate(timeout=60)
    assert proc.returncode == 130, err
    assert "stopped by SIGINT" in err and "Traceback" not in err
    assert not (out / "config.json").exists()
    assert not [p for p in cache.iterdir() if p.name.endswith(".tmp")]
