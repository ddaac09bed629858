"""Unlucky users and attackers: signals, crafted artifacts and checkpoints, racing runs,
dangerous --overwrite targets, unbounded work from tiny input."""

import contextlib
import json
import os
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest
from conftest import HAS_TORCH

from runtime import ArtifactError, Generator
from runtime.cli_support import run_app

pytestmark = pytest.mark.skipif(not HAS_TORCH, reason="the fixtures train and export with torch")
ROOT = Path(__file__).parents[1]


def _copy(artifact: Path, to: Path) -> Path:
    shutil.copytree(artifact, to)
    return to


def _edit_manifest(artifact: Path, edit) -> None:
    path = artifact / "manifest.json"
    data = json.loads(path.read_text())
    edit(data)
    path.write_text(json.dumps(data))


def _sha256(path: Path) -> str:
    from runtime.files import sha256_file

    return sha256_file(path)


# -- 1. signals: exit codes 130/143, nothing half-written --------------------------------------

def _start(argv: list[str]) -> subprocess.Popen:
    return subprocess.Popen([sys.executable, *argv], cwd=ROOT, stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, text=True, start_new_session=True)


def _wait_for(predicate, timeout: float = 60.0) -> None:
    deadline = time.time() + timeout
    while time.time() < deadline and not predicate():
        time.sleep(0.02)
    assert predicate(), "timed out"


@pytest.mark.parametrize("signum, code, again_after", [
    (signal.SIGINT, 130, None), (signal.SIGTERM, 143, None), (signal.SIGINT, 130, 0.01),
    (signal.SIGINT, 130, 0.1)])  # a second Ctrl-C during the cleanup, or while the error prints
def test_generate_interrupted_exits_non_zero_and_leaves_no_temporary_file(
        tiny_artifact, tmp_path, signum, code, again_after):
    out = tmp_path / "out"
    proc = _start(["-m", "runtime.cli", str(tiny_artifact), "-n", "200000", "--batch-size", "8",
                   "--out", str(out)])
    _wait_for(lambda: out.is_dir() and len(list(out.glob("*.png"))) >= 16)
    os.killpg(proc.pid, signum)
    if again_after is not None:
        time.sleep(again_after)
        with contextlib.suppress(ProcessLookupError):  # it may have finished already
            os.killpg(proc.pid, signum)
    _, err = proc.communicate(timeout=60)
    assert proc.returncode == code, err
    assert f"stopped by {signal.Signals(signum).name}" in err
    assert "Traceback" not in err
    assert not [p.name for p in out.iterdir() if p.name.startswith(".")]  # no .tmp, no lock
    assert json.loads((out / "manifest.json").read_text())["status"] == "incomplete"


def test_export_interrupted_exits_130_and_writes_nothing(tiny_checkpoint, tmp_path):
    out = tmp_path / "art"
    proc = _start(["-m", "export.cli", str(tiny_checkpoint), "--out", str(out)])
    _wait_for(lambda: any(p.name.startswith(".art.staging") for p in tmp_path.iterdir()))
    os.killpg(proc.pid, signal.SIGINT)
    _, err = proc.communicate(timeout=60)
    assert proc.returncode == 130, err
    assert not out.exists() and not list(tmp_path.glob(".art*"))


def test_run_app_returns_typers_interrupt_code(capsys):

    from runtime.cli_support import new_app

    app = new_app("test")

    @app.command()
    def main_command() -> None:
        raise KeyboardInterrupt

    assert run_app(app, [], prog="t") == 130
    assert "error: interrupted" in capsys.readouterr().err


# -- 2. the artifact is a trust boundary ---------------------------------------------------------

@pytest.mark.parametrize("name", ["../outside.onnx", "/tmp/outside.onnx", "sub/model.onnx", ".."])
def test_manifest_file_names_cannot_leave_the_artifact(tiny_artifact, tmp_path, name):
    art = _copy(tiny_artifact, tmp_path / "art")
    outside = tmp_path / "outside.onnx"
    shutil.copy(art / "model.onnx", outside)

    def point_outside(data):
        data["files"] = {name: {**data["files"]["model.onnx"], "sha256": _sha256(outside)}}

    _edit_manifest(art, point_outside)
    with pytest.raises(ArtifactError, match="not a bare file name inside the artifact"):
        Generator.load(art, backend="ort-cpu")


@pytest.mark.parametrize("edit, message", [
    (lambda d: d.update(files=[]), "'files' must be an object"),
    (lambda d: d["files"]["model.onnx"].pop("kind"), "has kind None"),
    (lambda d: d["files"]["model.onnx"].update(sha256=1), "no valid sha256"),
    (lambda d: d["model"].update(nz="100"), "model.nz"),
    (lambda d: d["model"].update(nz=10**9), "model.nz"),
    (lambda d: d["model"].update(latent="cauchy"), "model.latent"),
    (lambda d: d.update(inputs={}), "'inputs' must be a list"),
])
def test_malformed_manifest_is_an_artifact_error(tiny_artifact, tmp_path, edit, message):
    art = _copy(tiny_artifact, tmp_path / "art")
    _edit_manifest(art, edit)
    with pytest.raises(ArtifactError, match=message):
        Generator.load(art, backend="ort-cpu")


@pytest.mark.parametrize("content", [b"", b"garbage" * 100])
def test_garbage_model_with_a_matching_sha256_is_an_artifact_error(tiny_artifact, tmp_path, content):
    art = _copy(tiny_artifact, tmp_path / "art")
    (art / "model.onnx").write_bytes(content)
    _edit_manifest(art, lambda d: d["files"]["model.onnx"].update(sha256=_sha256(art / "model.onnx")))
    with pytest.raises(ArtifactError, match="not a loadable ONNX model"):
        Generator.load(art, backend="ort-cpu")


@pytest.mark.parametrize("key, value", [("nz", 17), ("channels", 1)])
def test_manifest_that_disagrees_with_the_model_is_refused_at_load(tiny_artifact, tmp_path, key, value):
    art = _copy(tiny_artifact, tmp_path / "art")
    _edit_manifest(art, lambda d: d["model"].update({key: value}))
    with pytest.raises(ArtifactError, match="do not belong together"):
        Generator.load(art, backend="ort-cpu")


# -- 3. a failed start does not poison the run directory -----------------------------------------

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


# -- 4. two runs into one --out ------------------------------------------------------------------

def test_concurrent_generate_into_one_directory_cannot_both_write(tiny_artifact, tmp_path):
    out = tmp_path / "out"
    argv = ["-m", "runtime.cli", str(tiny_artifact), "-n", "3000", "--batch-size", "16",
            "--out", str(out)]
    procs = [_start(argv), _start(argv)]
    results = [p.communicate(timeout=120) for p in procs]
    codes = sorted(p.returncode for p in procs)
    assert codes == [0, 1], results
    err = next(e for p, (_, e) in zip(procs, results) if p.returncode == 1)
    assert "in use by another dcgan-generate" in err or "is not empty" in err
    assert json.loads((out / "manifest.json").read_text())["count"] == 3000


def test_stale_lock_of_a_dead_process_is_taken_over(tiny_artifact, tmp_path, capsys):
    from runtime.cli import app
    from runtime.outdir import LOCK_NAME

    out = tmp_path / "out"
    out.mkdir()
    dead = subprocess.Popen([sys.executable, "-c", "pass"])
    dead.wait()
    (out / LOCK_NAME).write_text(f"{dead.pid} dcgan-generate\n")
    assert run_app(app, [str(tiny_artifact), "-n", "2", "--out", str(out)], prog="dcgan-generate") == 0
    assert not (out / LOCK_NAME).exists()


# -- 5. --overwrite never destroys the command's own input or a foreign directory ----------------

def test_export_overwrite_refuses_the_run_directory_it_reads(tiny_run, tmp_path, capsys):
    from export.cli import app

    run = shutil.copytree(tiny_run, tmp_path / "run")
    ckpt = run / "checkpoints" / "last.pt"
    assert run_app(app, [str(ckpt), "--out", str(run), "--overwrite"], prog="dcgan-export") == 1
    assert "holds this command's input" in capsys.readouterr().err
    assert ckpt.exists()
    foreign = tmp_path / "photos"
    foreign.mkdir()
    (foreign / "holiday.jpg").write_bytes(b"x")
    assert run_app(app, [str(ckpt), "--out", str(foreign), "--overwrite"], prog="dcgan-export") == 1
    assert "not a dcgan artifact" in capsys.readouterr().err
    assert (foreign / "holiday.jpg").exists()


def test_generate_overwrite_refuses_the_artifact_and_foreign_directories(tiny_artifact, tmp_path, capsys):
    from runtime.cli import app

    art = _copy(tiny_artifact, tmp_path / "art")
    before = (art / "manifest.json").read_bytes()
    assert run_app(app, [str(art), "-n", "2", "--out", str(art), "--overwrite"],
                   prog="dcgan-generate") == 1
    assert "holds this command's input" in capsys.readouterr().err
    assert (art / "manifest.json").read_bytes() == before
    other = tmp_path / "other"
    shutil.copytree(tiny_artifact, other)
    assert run_app(app, [str(art), "-n", "2", "--out", str(other), "--overwrite"],
                   prog="dcgan-generate") == 1
    assert "something other than dcgan-generate output" in capsys.readouterr().err
    # an earlier generate run may be replaced
    run = tmp_path / "run"
    assert run_app(app, [str(art), "-n", "2", "--out", str(run)], prog="dcgan-generate") == 0
    assert run_app(app, [str(art), "-n", "3", "--out", str(run), "--overwrite"],
                   prog="dcgan-generate") == 0


# -- 6. bounded work from tiny input --------------------------------------------------------------

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


def test_generate_refuses_a_huge_single_call(tiny_artifact):
    with Generator.load(tiny_artifact, backend="ort-cpu") as gen:
        with pytest.raises(ValueError, match="iter_batches"):
            gen.generate(10**6, seed=0)
        first, images = next(gen.iter_batches(10**6, seed=0))  # streaming has no such limit
        assert first == 0 and len(images) == 64


# -- 7. smaller ------------------------------------------------------------------------------------

@pytest.mark.parametrize("argv, message", [
    (["--seed", str(2**200)], "--seed must be below 2**128"),
    (["--start", str(2**128)], "within 2**128"),
])
def test_out_of_range_seed_or_start_is_usage_and_creates_nothing(tiny_artifact, tmp_path, capsys,
                                                                 argv, message):
    from runtime.cli import app

    out = tmp_path / "out"
    assert run_app(app, [str(tiny_artifact), "--out", str(out), *argv], prog="dcgan-generate") == 2
    assert message in capsys.readouterr().err
    assert not out.exists()


def test_huge_float64_latents_are_not_finite_as_float32(tiny_artifact):
    with Generator.load(tiny_artifact, backend="ort-cpu") as gen:
        with pytest.raises(ValueError, match="NaN or inf"):
            gen.from_latents(np.full((1, gen.nz), 1e300))


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


@pytest.mark.parametrize("module, argv, message", [
    ("export.cli", ["--min-batch", "10", "--max-batch", "5"], "--min-batch"),
    ("train.cli", ["--device", "tpu"], "--device 'tpu'"),
])
def test_bad_options_are_usage_errors(capsys, module, argv, message):
    import importlib

    app = importlib.import_module(module).app
    assert run_app(app, argv, prog="dcgan") == 2
    err = capsys.readouterr().err
    assert message in err and "Traceback" not in err


def test_train_interrupted_during_start_up_exits_130_and_leaves_nothing(tmp_path):
    from PIL import Image

    folder = tmp_path / "images"
    folder.mkdir()
    for i in range(3000):  # enough that building the cache takes a while
        Image.fromarray(np.full((96, 96, 3), i % 256, np.uint8)).save(folder / f"{i:05d}.png")
    cache, out = tmp_path / "cache", tmp_path / "run"
    proc = _start(["-m", "train.cli", "--data", str(folder), "--cache-dir", str(cache), "--out",
                   str(out), "--ngf", "8", "--ndf", "8", "--steps", "1"])
    _wait_for(lambda: cache.is_dir() and any(p.name.endswith(".tmp") for p in cache.iterdir()))
    os.killpg(proc.pid, signal.SIGINT)
    _, err = proc.communicate(timeout=60)
    assert proc.returncode == 130, err
    assert "stopped by SIGINT" in err and "Traceback" not in err
    assert not (out / "config.json").exists()
    assert not [p for p in cache.iterdir() if p.name.endswith(".tmp")]
