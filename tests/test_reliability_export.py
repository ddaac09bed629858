"""dcgan-export under signals and dangerous --overwrite targets."""

import os
import shutil
import signal

import pytest
from conftest import HAS_TORCH, start_process, wait_for

from runtime.cli_support import run_app

pytestmark = pytest.mark.skipif(not HAS_TORCH, reason="the fixtures train and export with torch")


@pytest.mark.slow
def test_export_interrupted_exits_130_and_writes_nothing(tiny_checkpoint, tmp_path):
    out = tmp_path / "art"
    proc = start_process(["-m", "export.cli", str(tiny_checkpoint), "--out", str(out)])
    wait_for(lambda: any(p.name.startswith(".art.staging") for p in tmp_path.iterdir()))
    os.killpg(proc.pid, signal.SIGINT)
    _, err = proc.communicate(timeout=60)
    assert proc.returncode == 130, err
    assert not out.exists() and not list(tmp_path.glob(".art*"))


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
