"""Ordinary mistakes and hostile inputs must never destroy or mislabel a user's files: merge,
generate and train refuse with one line, or do the right thing, and touch nothing that is not
their own output."""

import json
import os
import subprocess
import sys

import numpy as np
import pytest
from conftest import HAS_TORCH, tiny_train
from PIL import Image

from runtime import Generator
from runtime.cli import app as generate_app
from runtime.cli_support import run_app
from runtime.merge import app as merge_app

pytestmark = pytest.mark.skipif(not HAS_TORCH, reason="the fixtures train and export with torch")


def _generate(*argv):
    return run_app(generate_app, [str(a) for a in argv], prog="dcgan-generate")


def _merge(*argv):
    return run_app(merge_app, [str(a) for a in argv], prog="dcgan-merge")


def _parts(artifact, root, fmt="png", n=12, k=3):
    parts = []
    for i in range(k):
        part = root / f"q{i}"
        assert _generate(artifact, "-n", n, "--shard", f"{i}/{k}", "--format", fmt, "--out", part,
                         "--backend", "ort-cpu", "--shard-size", 3) == 0
        parts.append(part)
    return parts


def _snapshot(directory):
    return {p.relative_to(directory): p.read_bytes() for p in sorted(directory.rglob("*")) if p.is_file()}


# -- dcgan-merge ---------------------------------------------------------------------------------

def test_merge_overwrite_into_one_of_its_parts_is_refused(tiny_artifact, tmp_path, capsys):
    parts = _parts(tiny_artifact, tmp_path)
    before = _snapshot(parts[1])
    assert _merge(*parts, "--out", parts[1], "--overwrite") == 1
    assert "holds this command's input" in capsys.readouterr().err
    assert _snapshot(parts[1]) == before


def test_merge_overwrite_keeps_an_artifact_and_a_users_files(tiny_artifact, tmp_path, capsys):
    parts = _parts(tiny_artifact, tmp_path)
    art_before = _snapshot(tiny_artifact)
    assert _merge(*parts, "--out", tiny_artifact, "--overwrite") == 1
    assert _snapshot(tiny_artifact) == art_before
    capsys.readouterr()
    mine = tmp_path / "mine"
    mine.mkdir()
    (mine / "thesis.tex").write_text("years of work")
    assert _merge(*parts, "--out", mine, "--overwrite") == 1
    err = capsys.readouterr().err
    assert "thesis.tex" in err and err.startswith("error:") and err.count("\n") == 1  # one line
    assert (mine / "thesis.tex").read_text() == "years of work"


def test_merge_overwrite_replaces_an_earlier_merge_only(tiny_artifact, tmp_path):
    parts = _parts(tiny_artifact, tmp_path)
    out = tmp_path / "merged"
    assert _merge(*parts, "--out", out) == 0
    first = _snapshot(out)
    assert _merge(*parts, "--out", out, "--overwrite") == 0
    assert _snapshot(out) == first


@pytest.mark.parametrize("evil", ["../../x/pwn.txt", "/tmp/pwn.tar", "shard-000000.tar/../../pwn"])
def test_merge_refuses_a_part_that_names_files_outside_it(tiny_artifact, tmp_path, capsys, evil):
    parts = _parts(tiny_artifact, tmp_path, fmt="tar")
    victim = tmp_path / "x" / "pwn.txt"
    victim.parent.mkdir()
    victim.write_text("keep me")
    record = json.loads((parts[0] / "manifest.json").read_text())
    record["shards"][0]["file"] = evil
    (parts[0] / "manifest.json").write_text(json.dumps(record))
    out = tmp_path / "deep" / "a" / "merged"
    assert _merge(*parts, "--out", out) == 1
    assert "bad tar shard" in capsys.readouterr().err
    assert victim.read_text() == "keep me"
    assert not (tmp_path / "deep" / "pwn.txt").exists()


def test_merge_refuses_a_damaged_part_file(tiny_artifact, tmp_path, capsys):
    parts = _parts(tiny_artifact, tmp_path, fmt="tar")
    shard = sorted(parts[2].glob("shard-*.tar"))[0]
    data = bytearray(shard.read_bytes())
    data[600] ^= 0xFF
    shard.write_bytes(bytes(data))
    assert _merge(*parts, "--out", tmp_path / "merged") == 1
    err = capsys.readouterr().err
    assert shard.name in err and "does not match its checksum" in err and "--resume" in err
    assert not (tmp_path / "merged" / "manifest.json").exists()


def test_a_failed_merge_leaves_nothing_of_itself(tiny_artifact, tmp_path, monkeypatch):
    import runtime.merge

    parts = _parts(tiny_artifact, tmp_path)
    real, calls = runtime.merge._place, {"n": 0}

    def failing(src, dst):
        calls["n"] += 1
        if calls["n"] == 7:
            raise OSError(28, "No space left on device")
        real(src, dst)

    monkeypatch.setattr(runtime.merge, "_place", failing)
    out = tmp_path / "merged"
    assert _merge(*parts, "--out", out) == 1
    assert [p.name for p in out.iterdir()] == []


def test_an_interrupted_npy_merge_leaves_no_empty_array(tiny_artifact, tmp_path, monkeypatch):
    import runtime.merge

    parts = _parts(tiny_artifact, tmp_path, fmt="npy")
    real, calls = np.ascontiguousarray, {"n": 0}

    def failing(*args, **kwargs):
        calls["n"] += 1
        if calls["n"] == 2:
            raise KeyboardInterrupt
        return real(*args, **kwargs)

    monkeypatch.setattr(runtime.merge.np, "ascontiguousarray", failing)
    out = tmp_path / "merged"
    assert _merge(*parts, "--out", out) != 0
    assert [p.name for p in out.iterdir()] == []
    monkeypatch.undo()
    assert _merge(*parts, "--out", out) == 0
    with Generator.load(tiny_artifact, backend="ort-cpu") as gen:
        assert np.array_equal(np.load(out / "images.npy"), gen.generate(12, seed=0))


# -- dcgan-generate ------------------------------------------------------------------------------

def test_overwrite_never_adopts_a_users_files(tiny_artifact, tmp_path, capsys):
    pics = tmp_path / "userpics"
    pics.mkdir()
    Image.new("RGB", (8, 8), "red").save(pics / "000000.png")
    before = _snapshot(pics)
    assert _generate(tiny_artifact, "-n", 4, "--out", pics, "--overwrite") == 1
    assert "no dcgan-generate run wrote" in capsys.readouterr().err
    assert _snapshot(pics) == before


def test_overwrite_replaces_an_earlier_run_but_not_files_beside_it(tiny_artifact, tmp_path, capsys):
    out = tmp_path / "out"
    assert _generate(tiny_artifact, "-n", 4, "--out", out) == 0
    (out / "notes.txt").write_text("mine")
    assert _generate(tiny_artifact, "-n", 4, "--out", out, "--overwrite", "--seed", 1) == 1
    assert "notes.txt" in capsys.readouterr().err
    (out / "notes.txt").unlink()
    assert _generate(tiny_artifact, "-n", 2, "--out", out, "--overwrite", "--seed", 1) == 0
    assert sorted(p.name for p in out.iterdir()) == ["000000.png", "000001.png", "SHA256SUMS",
                                                     "manifest.json"]


@pytest.mark.parametrize("fmt", ["png", "tar"])
def test_resume_rewrites_damaged_files(tiny_artifact, tmp_path, fmt):
    out = tmp_path / "out"
    assert _generate(tiny_artifact, "-n", 9, "--out", out, "--format", fmt, "--shard-size", 3) == 0
    good = _snapshot(out)
    files = sorted(out.glob("*.png" if fmt == "png" else "*.tar"))
    files[0].write_bytes(b"")  # a 0-byte file a crash left
    torn = bytearray(files[1].read_bytes())
    torn[len(torn) // 2] ^= 0x01  # one flipped bit
    files[1].write_bytes(bytes(torn))
    files[2].write_bytes(files[2].read_bytes()[:100])  # truncated
    assert _generate(tiny_artifact, "-n", 9, "--out", out, "--format", fmt, "--shard-size", 3,
                     "--resume") == 0
    assert _snapshot(out) == good
    sums = dict(line.split("  ")[::-1] for line in (out / "SHA256SUMS").read_text().splitlines())
    assert set(sums) == {p.name for p in files}


def test_resume_refuses_another_index_width(tiny_artifact, tmp_path, capsys):
    out = tmp_path / "out"
    assert _generate(tiny_artifact, "-n", 2_000_000, "--shard", "0/400000", "--out", out) == 0
    assert sorted(out.glob("*.png"))[0].name == "0000000.png"
    assert _generate(tiny_artifact, "-n", 5, "--out", out, "--resume") == 1
    assert "index_width" in capsys.readouterr().err
    assert not (out / "000000.png").exists()


def test_grid_inside_out_is_refused(tiny_artifact, tmp_path, capsys):
    out = tmp_path / "out"
    assert _generate(tiny_artifact, "-n", 3, "--out", out) == 0
    before = _snapshot(out)
    assert _generate(tiny_artifact, "-n", 3, "--out", out, "--resume", "--grid", out / "000001.png") == 1
    assert "--grid" in capsys.readouterr().err
    assert _snapshot(out) == before


def test_numpy_integer_start_and_seed(tiny_artifact):
    from runtime.batcher import Batcher

    with Generator.load(tiny_artifact, backend="ort-cpu") as gen:
        want = gen.generate(4, seed=5, start=10)
        assert not np.array_equal(want[0], gen.generate(1, seed=5, start=0)[0])
        assert np.array_equal(gen.generate(4, seed=np.uint64(5), start=np.int64(10)), want)
        assert np.array_equal(gen.latents(np.int32(4), np.int64(5), np.int64(10)),
                              gen.latents(4, 5, 10))
        with Batcher(gen, max_batch=8) as batcher:
            assert np.array_equal(batcher.generate(np.int64(5), np.int64(10), np.int64(4)), want)


# -- dcgan-train ---------------------------------------------------------------------------------

def _train_cli(*argv, cwd=None):
    env = {**os.environ, "PYTHONPATH": os.getcwd()}
    return subprocess.run([sys.executable, "-m", "train.cli", *map(str, argv)], capture_output=True,
                          text=True, cwd=cwd, env=env, timeout=900)


def test_train_keeps_an_earlier_runs_checkpoints(tmp_path):
    run = tmp_path / "run"
    (run / "checkpoints").mkdir(parents=True)
    (run / "config.json").write_text("{}")
    for name in ("best.pt", "epoch_003.pt"):
        (run / "checkpoints" / name).write_bytes(b"weeks of training")
    before = _snapshot(run)
    result = _train_cli("--data", "shapes:64", "--out", run, "--steps", 1, "--ngf", 8, "--ndf", 8,
                        "--batch-size", 16, "--workers", 0)
    assert result.returncode == 1
    last = result.stderr.strip().splitlines()[-1]
    assert last.startswith("error:") and "already holds a run" in last
    assert _snapshot(run) == before


def test_train_overwrite_never_deletes_what_is_not_a_run(tmp_path):
    folder = tmp_path / "docs"
    folder.mkdir()
    (folder / "thesis.tex").write_text("mine")
    (folder / "loss.png").write_bytes(b"my own plot")
    before = _snapshot(folder)
    with pytest.raises(Exception, match="not a dcgan-train run's"):
        tiny_train(folder, steps=1, overwrite=True)
    assert _snapshot(folder) == before


def test_two_trainings_in_one_directory(tmp_path):
    run = tmp_path / "run"
    run.mkdir()
    other = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(60)"])
    try:
        (run / ".dcgan.lock").write_text(f"{other.pid} dcgan-train\n")
        result = _train_cli("--data", "shapes:64", "--out", run, "--steps", 1, "--ngf", 8,
                            "--ndf", 8, "--batch-size", 16, "--workers", 0)
    finally:
        other.kill()
        other.wait()
    assert result.returncode == 1
    assert f"in use by another dcgan-train (pid {other.pid})" in result.stderr
    assert sorted(p.name for p in run.iterdir()) == [".dcgan.lock"]


def test_sixteen_bit_grey_images_keep_their_values(tmp_path):
    from train.data import prepare_image

    grey = np.full((64, 64), 32768, np.uint16)
    grey[:32] = 65535
    path = tmp_path / "grey16.png"
    Image.fromarray(grey).save(path)
    assert Image.open(path).mode.startswith("I")
    image = prepare_image(path.read_bytes(), nc=1)
    assert image[40, 0, 0] == 128 and image[0, 0, 0] == 255
