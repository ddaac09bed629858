"""Generation at scale: tar shards, one .npy, resumable runs, merging parts from several machines."""

import hashlib
import io
import json
import os
import signal
import subprocess
import sys
import tarfile
import time
from pathlib import Path

import numpy as np
import pytest
from conftest import HAS_TORCH, disk_full_at
from PIL import Image

from runtime import Generator
from runtime.cli import app
from runtime.cli_support import run_app

pytestmark = pytest.mark.skipif(not HAS_TORCH, reason="the fixtures export with torch")
ROOT = Path(__file__).parents[1]


def _run(argv):
    return run_app(app, [str(a) for a in argv], prog="dcgan-generate")


def _tree(directory: Path) -> dict[str, bytes]:
    return {p.name: p.read_bytes() for p in sorted(directory.iterdir())}


def test_tar_shards_round_trip_and_match_png_mode(tiny_artifact, tmp_path):
    assert _run([tiny_artifact, "-n", 25, "--seed", 4, "--out", tmp_path / "png", "--batch-size", 8,
                 "--backend", "ort-cpu"]) == 0
    assert _run([tiny_artifact, "-n", 25, "--seed", 4, "--out", tmp_path / "tar", "--batch-size", 8,
                 "--backend", "ort-cpu", "--format", "tar", "--shard-size", 10]) == 0
    shards = sorted((tmp_path / "tar").glob("*.tar"))
    assert [p.name for p in shards] == ["shard-000000.tar", "shard-000010.tar", "shard-000020.tar"]
    members = {}
    for shard in shards:
        with tarfile.open(shard) as tar:
            for m in tar.getmembers():
                members[m.name] = tar.extractfile(m).read()
    assert len(members) == 50
    for i in range(25):
        assert members[f"{i:06d}.png"] == (tmp_path / "png" / f"{i:06d}.png").read_bytes()
        assert json.loads(members[f"{i:06d}.json"]) == {"seed": 4, "index": i}
    record = json.loads((tmp_path / "tar" / "manifest.json").read_text())
    assert record["status"] == "complete"
    assert [(s["first_index"], s["count"]) for s in record["shards"]] == [(0, 10), (10, 10), (20, 5)]
    for s in record["shards"]:
        assert s["sha256"] == hashlib.sha256((tmp_path / "tar" / s["file"]).read_bytes()).hexdigest()


def test_tar_shards_are_the_bytes_tarfile_writes(tiny_artifact, tmp_path):
    """Members are built by the encoding threads, not by tarfile: the shard must still be exactly
    what tarfile writes for the same members (headers, padding, end blocks, record size)."""
    assert _run([tiny_artifact, "-n", 7, "--out", tmp_path / "tar", "--format", "tar",
                 "--backend", "ort-cpu", "--batch-size", 3]) == 0
    shard = (tmp_path / "tar" / "shard-000000.tar").read_bytes()
    with tarfile.open(fileobj=io.BytesIO(shard)) as tar:
        members = [(m.name, tar.extractfile(m).read()) for m in tar.getmembers()]
    again = io.BytesIO()
    with tarfile.open(fileobj=again, mode="w", format=tarfile.USTAR_FORMAT) as tar:
        for name, payload in members:
            info = tarfile.TarInfo(name)
            info.size, info.mtime, info.mode = len(payload), 0, 0o644
            tar.addfile(info, io.BytesIO(payload))
    assert len(members) == 14 and shard == again.getvalue()


def test_npy_matches_png_mode_pixels(tiny_artifact, tmp_path):
    assert _run([tiny_artifact, "-n", 11, "--out", tmp_path / "png", "--backend", "ort-cpu",
                 "--batch-size", 4]) == 0
    assert _run([tiny_artifact, "-n", 11, "--out", tmp_path / "npy", "--backend", "ort-cpu",
                 "--batch-size", 4, "--format", "npy"]) == 0
    array = np.load(tmp_path / "npy" / "images.npy")
    record = json.loads((tmp_path / "npy" / "manifest.json").read_text())
    assert record["sha256"] == hashlib.sha256((tmp_path / "npy" / "images.npy").read_bytes()).hexdigest()
    for i in range(11):
        assert np.array_equal(array[i], np.asarray(Image.open(tmp_path / "png" / f"{i:06d}.png")))


def test_tar_shards_read_with_webdataset(tiny_artifact, tmp_path):
    wds = pytest.importorskip("webdataset")
    assert _run([tiny_artifact, "-n", 12, "--out", tmp_path, "--format", "tar", "--shard-size", 5]) == 0
    urls = [str(p) for p in sorted(tmp_path.glob("*.tar"))]
    samples = list(wds.WebDataset(urls, shardshuffle=False).decode("rgb8"))
    assert [s["__key__"] for s in samples] == [f"{i:06d}" for i in range(12)]
    assert samples[0]["png"].shape == (64, 64, 3)


def _interrupt_then_resume(tiny_artifact, out: Path, extra: list[str]):
    argv = [sys.executable, "-m", "runtime.cli", str(tiny_artifact), "-n", "3000", "--seed", "9",
            "--batch-size", "16", "--out", str(out), "--backend", "ort-cpu", *extra]
    proc = subprocess.Popen(argv, cwd=ROOT, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                            text=True, start_new_session=True)
    deadline = time.time() + 60
    while time.time() < deadline and len(list(out.glob("*.png")) + list(out.glob("*.tar"))) < 3:
        time.sleep(0.02)
    os.killpg(proc.pid, signal.SIGINT)
    _, err = proc.communicate(timeout=60)
    assert proc.returncode == 130, err
    assert json.loads((out / "manifest.json").read_text())["status"] == "incomplete"
    assert not list(out.glob(".*"))
    done = subprocess.run([*argv, "--resume"], cwd=ROOT, capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stderr
    assert "were already there" in done.stdout


@pytest.mark.parametrize("extra", [[], ["--format", "tar", "--shard-size", "500"]])
@pytest.mark.slow
def test_resume_after_sigint_is_byte_identical_to_one_run(tiny_artifact, tmp_path, extra):
    _interrupt_then_resume(tiny_artifact, tmp_path / "resumed", extra)
    assert _run([tiny_artifact, "-n", 3000, "--seed", 9, "--batch-size", 16, "--out",
                 tmp_path / "once", "--backend", "ort-cpu", *extra]) == 0
    assert _tree(tmp_path / "resumed") == _tree(tmp_path / "once")


def test_resume_with_another_seed_or_artifact_is_refused(tiny_artifact, tmp_path, capsys):
    out = tmp_path / "o"
    assert _run([tiny_artifact, "-n", 4, "--out", out]) == 0
    assert _run([tiny_artifact, "-n", 4, "--out", out, "--seed", 1, "--resume"]) == 1
    assert "--resume: " in capsys.readouterr().err
    assert _run([tiny_artifact, "-n", 5, "--out", out, "--resume"]) == 1
    assert "count" in capsys.readouterr().err
    assert _run([tiny_artifact, "-n", 4, "--out", tmp_path / "empty", "--resume"]) == 1
    assert "holds no dcgan-generate run" in capsys.readouterr().err


def test_full_disk_leaves_no_partial_shard(tiny_artifact, tmp_path, monkeypatch, capsys):
    disk_full_at(monkeypatch, 15)
    out = tmp_path / "o"
    assert _run([tiny_artifact, "-n", 30, "--out", out, "--format", "tar", "--shard-size", 10,
                 "--batch-size", 5]) == 1
    assert "No space left on device" in capsys.readouterr().err
    assert not list(out.glob(".*"))
    for shard in out.glob("*.tar"):  # only whole shards under a final name
        with tarfile.open(shard) as tar:
            assert len(tar.getmembers()) == 20


def test_parts_from_several_machines_merge_into_one_data_set(tiny_artifact, tmp_path, capsys):
    from runtime.merge import app as merge_app

    for i in range(3):
        assert _run([tiny_artifact, "-n", 23, "--seed", 2, "--shard", f"{i}/3", "--out",
                     tmp_path / f"part{i}", "--format", "tar", "--shard-size", 4]) == 0
    assert run_app(merge_app, [str(tmp_path / f"part{i}") for i in range(3)] +
                   ["--out", str(tmp_path / "all")], prog="dcgan-merge") == 0
    record = json.loads((tmp_path / "all" / "manifest.json").read_text())
    assert record["status"] == "complete" and record["first_index"] == 0 and record["count"] == 23
    keys = []
    for s in record["shards"]:
        with tarfile.open(tmp_path / "all" / s["file"]) as tar:
            keys += [m.name for m in tar.getmembers() if m.name.endswith(".png")]
    assert keys == [f"{i:06d}.png" for i in range(23)]
    # a gap or another seed is refused
    assert run_app(merge_app, [str(tmp_path / "part0"), str(tmp_path / "part2"), "--out",
                               str(tmp_path / "gap")], prog="dcgan-merge") == 1
    assert "gap" in capsys.readouterr().err


def test_png_parts_merge(tiny_artifact, tmp_path):
    from runtime.merge import app as merge_app

    for i in range(2):
        assert _run([tiny_artifact, "-n", 6, "--shard", f"{i}/2", "--out", tmp_path / f"p{i}"]) == 0
    assert run_app(merge_app, [str(tmp_path / "p0"), str(tmp_path / "p1"), "--out",
                               str(tmp_path / "all")], prog="dcgan-merge") == 0
    with Generator.load(tiny_artifact) as gen:
        expected = gen.generate(6, seed=0)
    for i in range(6):
        assert np.array_equal(np.asarray(Image.open(tmp_path / "all" / f"{i:06d}.png")), expected[i])


def test_slurm_array_example_makes_one_data_set(tiny_artifact, tmp_path):
    """docs/examples/generate_array.sbatch, run as a 3-task array by hand, then dcgan-merge."""
    bin_dir = Path(sys.executable).parent
    env = {**os.environ, "PATH": f"{bin_dir}:{os.environ['PATH']}", "ARTIFACT": str(tiny_artifact),
           "N": "20", "SEED": "5", "OUT": str(tmp_path / "parts"), "SLURM_ARRAY_TASK_COUNT": "3"}
    for i in range(3):
        subprocess.run(["bash", str(ROOT / "docs/examples/generate_array.sbatch")], check=True,
                       env={**env, "SLURM_ARRAY_TASK_ID": str(i)}, capture_output=True, cwd=tmp_path)
    parts = sorted(str(p) for p in (tmp_path / "parts").iterdir())
    subprocess.run([str(bin_dir / "dcgan-merge"), *parts, "--out", str(tmp_path / "dataset")],
                   check=True, capture_output=True)
    record = json.loads((tmp_path / "dataset" / "manifest.json").read_text())
    assert record["count"] == 20 and record["seed"] == 5
    names = []
    for s in record["shards"]:
        with tarfile.open(tmp_path / "dataset" / s["file"]) as tar:
            names += [m.name for m in tar.getmembers() if m.name.endswith(".png")]
    assert names == [f"{i:06d}.png" for i in range(20)]


@pytest.mark.parametrize("extra", [[], ["--format", "tar", "--shard-size", "4"]])
def test_merged_parts_are_the_bytes_of_one_run(tiny_artifact, tmp_path, extra):
    """4 parts of 23 images (tar shards of 4 do not divide 23/4): the merge holds the very files
    one run writes, tar shards included, because tar parts are cut at whole shards."""
    from runtime.merge import app as merge_app

    common = [tiny_artifact, "-n", 23, "--start", 5, "--seed", 3, "--backend", "ort-cpu", *extra]
    for i in range(4):
        assert _run([*common, "--shard", f"{i}/4", "--out", tmp_path / f"part{i}"]) == 0
    assert run_app(merge_app, [str(tmp_path / f"part{i}") for i in range(4)] +
                   ["--out", str(tmp_path / "all")], prog="dcgan-merge") == 0
    assert _run([*common, "--out", tmp_path / "once"]) == 0
    merged, once = _tree(tmp_path / "all"), _tree(tmp_path / "once")
    del merged["manifest.json"], once["manifest.json"]
    assert merged == once and len(once) == (23 if not extra else 6) + 1  # and SHA256SUMS
