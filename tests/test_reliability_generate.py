"""The runtime and dcgan-generate under signals, crafted artifacts, racing runs, dangerous
--overwrite targets and unbounded work from tiny input."""

import contextlib
import json
import os
import shutil
import signal
import subprocess
import sys
import time

import numpy as np
import pytest
from conftest import HAS_TORCH, copy_artifact, edit_manifest, start_process, wait_for

from runtime import ArtifactError, Generator
from runtime.cli_support import run_app
from runtime.files import sha256_file

pytestmark = pytest.mark.skipif(not HAS_TORCH, reason="the fixtures train and export with torch")


@pytest.mark.parametrize("signum, code, again_after", [
    (signal.SIGINT, 130, None), (signal.SIGTERM, 143, None), (signal.SIGINT, 130, 0.01),
    (signal.SIGINT, 130, 0.1)])  # a second Ctrl-C during the cleanup, or while the error prints
@pytest.mark.slow
def test_generate_interrupted_exits_non_zero_and_leaves_no_temporary_file(
        tiny_artifact, tmp_path, signum, code, again_after):
    out = tmp_path / "out"
    proc = start_process(["-m", "runtime.cli", str(tiny_artifact), "-n", "200000", "--batch-size", "8",
                   "--out", str(out)])
    wait_for(lambda: out.is_dir() and len(list(out.glob("*.png"))) >= 16)
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


def test_run_app_returns_typers_interrupt_code(capsys):

    from runtime.cli_support import new_app

    app = new_app("test")

    @app.command()
    def main_command() -> None:
        raise KeyboardInterrupt

    assert run_app(app, [], prog="t") == 130
    assert "error: interrupted" in capsys.readouterr().err


@pytest.mark.parametrize("name", ["../outside.onnx", "/tmp/outside.onnx", "sub/model.onnx", ".."])
def test_manifest_file_names_cannot_leave_the_artifact(tiny_artifact, tmp_path, name):
    art = copy_artifact(tiny_artifact, tmp_path / "art")
    outside = tmp_path / "outside.onnx"
    shutil.copy(art / "model.onnx", outside)

    def point_outside(data):
        data["files"] = {name: {**data["files"]["model.onnx"], "sha256": sha256_file(outside)}}

    edit_manifest(art, point_outside)
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
    art = copy_artifact(tiny_artifact, tmp_path / "art")
    edit_manifest(art, edit)
    with pytest.raises(ArtifactError, match=message):
        Generator.load(art, backend="ort-cpu")


@pytest.mark.parametrize("content", [b"", b"garbage" * 100])
def test_garbage_model_with_a_matching_sha256_is_an_artifact_error(tiny_artifact, tmp_path, content):
    art = copy_artifact(tiny_artifact, tmp_path / "art")
    (art / "model.onnx").write_bytes(content)
    edit_manifest(art, lambda d: d["files"]["model.onnx"].update(sha256=sha256_file(art / "model.onnx")))
    with pytest.raises(ArtifactError, match="not a loadable ONNX model"):
        Generator.load(art, backend="ort-cpu")


@pytest.mark.parametrize("key, value", [("nz", 17), ("channels", 1)])
def test_manifest_that_disagrees_with_the_model_is_refused_at_load(tiny_artifact, tmp_path, key, value):
    art = copy_artifact(tiny_artifact, tmp_path / "art")
    edit_manifest(art, lambda d: d["model"].update({key: value}))
    with pytest.raises(ArtifactError, match="do not belong together"):
        Generator.load(art, backend="ort-cpu")


def test_concurrent_generate_into_one_directory_cannot_both_write(tiny_artifact, tmp_path):
    out = tmp_path / "out"
    argv = ["-m", "runtime.cli", str(tiny_artifact), "-n", "3000", "--batch-size", "16",
            "--out", str(out)]
    procs = [start_process(argv), start_process(argv)]
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


def test_generate_overwrite_refuses_the_artifact_and_foreign_directories(tiny_artifact, tmp_path, capsys):
    from runtime.cli import app

    art = copy_artifact(tiny_artifact, tmp_path / "art")
    before = (art / "manifest.json").read_bytes()
    assert run_app(app, [str(art), "-n", "2", "--out", str(art), "--overwrite"],
                   prog="dcgan-generate") == 1
    assert "holds this command's input" in capsys.readouterr().err
    assert (art / "manifest.json").read_bytes() == before
    other = tmp_path / "other"
    shutil.copytree(tiny_artifact, other)
    assert run_app(app, [str(art), "-n", "2", "--out", str(other), "--overwrite"],
                   prog="dcgan-generate") == 1
    assert "no dcgan-generate run wrote" in capsys.readouterr().err
    # an earlier generate run may be replaced
    run = tmp_path / "run"
    assert run_app(app, [str(art), "-n", "2", "--out", str(run)], prog="dcgan-generate") == 0
    assert run_app(app, [str(art), "-n", "3", "--out", str(run), "--overwrite"],
                   prog="dcgan-generate") == 0


def test_generate_refuses_a_huge_single_call(tiny_artifact):
    with Generator.load(tiny_artifact, backend="ort-cpu") as gen:
        with pytest.raises(ValueError, match="iter_batches"):
            gen.generate(10**6, seed=0)
        first, images = next(gen.iter_batches(10**6, seed=0))  # streaming has no such limit
        assert first == 0 and len(images) == 64


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
