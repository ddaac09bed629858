"""A bare `dcgan-train --resume` continues any run bit for bit, whatever recipe and options
started it: every setting that shapes training comes back from the checkpoint."""

import os
import subprocess
import sys

import pytest
from conftest import HAS_TORCH

pytestmark = [pytest.mark.skipif(not HAS_TORCH, reason="training needs torch"), pytest.mark.slow]

TINY = ("--data", "shapes:64", "--ngf", "8", "--ndf", "8", "--nz", "16", "--batch-size", "16",
        "--workers", "0", "--quality-every", "0", "--log-every", "1")


def _train(*argv):
    result = subprocess.run([sys.executable, "-m", "train.cli", *map(str, argv)], capture_output=True,
                            text=True, env={**os.environ, "PYTHONPATH": os.getcwd()}, timeout=900)
    assert result.returncode == 0, result.stderr[-2000:]


def _weights(run):
    import torch

    state = torch.load(run / "checkpoints" / "last.pt", weights_only=True)
    return {f"{part}.{k}": v for part in ("generator", "discriminator", "generator_ema")
            for k, v in state.get(part, {}).items()}, state["train_config"]


@pytest.mark.parametrize("options, stop_at, total", [
    (("--recipe", "paper"), 2, 4),  # paper on shapes data: a bare resume must not turn it into `shapes`
    # the anneal must start where the run's own setting says; the augmentation's draws come back
    (("--anneal-from", "0.9", "--augment", "translation,cutout"), 4, 10),
])
def test_bare_resume_continues_the_run_bit_for_bit(tmp_path, options, stop_at, total):
    whole, parts = tmp_path / "whole", tmp_path / "parts"
    _train(*TINY, *options, "--steps", total, "--out", whole)
    _train(*TINY, *options, "--steps", stop_at, "--out", parts)
    _train("--resume", "--out", parts, "--steps", total, "--workers", "0")
    (a, cfg_a), (b, cfg_b) = _weights(whole), _weights(parts)
    assert {**cfg_a, "out": None} == {**cfg_b, "out": None}
    assert a.keys() == b.keys()
    different = [k for k in a if not bool((a[k] == b[k]).all())]
    assert different == []


def test_bare_resume_of_an_interrupted_run_finishes_its_own_length(tmp_path):
    """No --steps on the resume: the run goes on to the length it was started with, on the same
    anneal schedule, and ends bit-equal to the uninterrupted run."""
    import signal

    from conftest import start_process, wait_for

    total = 120
    whole, parts = tmp_path / "whole", tmp_path / "parts"
    _train(*TINY, "--steps", total, "--out", whole)
    proc = start_process(["-m", "train.cli", *TINY, "--steps", str(total), "--out", str(parts)])
    metrics = parts / "metrics.jsonl"
    wait_for(lambda: metrics.exists() and metrics.read_text().count("\n") >= 20, timeout=300)
    proc.send_signal(signal.SIGINT)
    assert proc.wait(timeout=120) == 130, proc.stderr.read()[-2000:]
    import torch

    stopped_at = torch.load(parts / "checkpoints" / "last.pt", weights_only=True)["step"]
    assert 0 < stopped_at < total
    _train("--resume", "--out", parts, "--workers", "0")
    (a, cfg_a), (b, cfg_b) = _weights(whole), _weights(parts)
    assert {**cfg_a, "out": None} == {**cfg_b, "out": None}
    assert [k for k in a if not bool((a[k] == b[k]).all())] == []
