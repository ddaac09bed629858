import json

import numpy as np
import pytest
from conftest import HAS_TORCH, disk_full_at
from PIL import Image

from runtime import Generator
from runtime.cli import app, shard_range
from runtime.cli_support import run_app

pytestmark = pytest.mark.skipif(not HAS_TORCH, reason="the fixtures export with torch")


def _run(argv, capsys):
    code = run_app(app, [str(a) for a in argv], prog="dcgan-generate")
    out = capsys.readouterr()
    return code, out.out, out.err


def _read(path):
    return np.asarray(Image.open(path))


def test_writes_files_manifest_and_summary(tiny_artifact, tmp_path, capsys):
    out = tmp_path / "out"
    # --backend ort-cpu: under a GPU install, auto would pick ort-cuda
    code, stdout, _ = _run([tiny_artifact, "-n", 70, "--out", out, "--seed", 3, "--batch-size", 16,
                            "--backend", "ort-cpu",
                            "--grid", tmp_path / "grid.png"], capsys)
    assert code == 0
    names = sorted(p.name for p in out.iterdir())
    assert names == [f"{i:06d}.png" for i in range(70)] + ["SHA256SUMS", "manifest.json"]
    with Generator.load(tiny_artifact, backend="ort-cpu") as gen:
        expected = gen.generate(70, seed=3)
    for i in (0, 33, 69):
        np.testing.assert_array_equal(_read(out / f"{i:06d}.png"), expected[i])
    record = json.loads((out / "manifest.json").read_text())
    assert record["seed"] == 3 and record["first_index"] == 0 and record["count"] == 70
    assert record["backend"] == "ort-cpu" and record["latent"] == "normal"
    assert record["model_sha256"] == json.loads((tiny_artifact / "manifest.json").read_text())[
        "files"]["model.onnx"]["sha256"]
    assert "70 images in" in stdout and "images/s), backend ort-cpu" in stdout
    assert _read(tmp_path / "grid.png").shape == (8 * 66 + 2, 8 * 66 + 2, 3)
    assert not list(out.glob(".*"))  # no temporary files left


def test_shards_concatenate_to_the_whole_run(tiny_artifact, tmp_path, capsys):
    assert _run([tiny_artifact, "-n", 23, "--out", tmp_path / "all", "--seed", 1], capsys)[0] == 0
    for i in range(3):
        assert _run([tiny_artifact, "-n", 23, "--out", tmp_path / f"s{i}", "--seed", 1,
                     "--shard", f"{i}/3", "--batch-size", 5], capsys)[0] == 0
    parts = sorted(p for i in range(3) for p in (tmp_path / f"s{i}").glob("*.png"))
    assert [p.name for p in parts] == sorted(p.name for p in (tmp_path / "all").glob("*.png"))
    for p in parts:
        assert p.read_bytes() == (tmp_path / "all" / p.name).read_bytes()


def test_shard_ranges_cover_exactly():
    ranges = [shard_range(10, 23, i, 4) for i in range(4)]
    assert ranges == [(10, 6), (16, 6), (22, 6), (28, 5)]
    assert shard_range(0, 2, 3, 4) == (2, 0)


def test_tar_shard_ranges_cut_at_whole_tar_shards():
    """23 images in tar shards of 4 (6 shards, the last of 3) over 4 parts: 2+2+1+1 shards."""
    ranges = [shard_range(10, 23, i, 4, unit=4) for i in range(4)]
    assert ranges == [(10, 8), (18, 8), (26, 4), (30, 3)]
    assert [shard_range(0, 5, i, 3, unit=10) for i in range(3)] == [(0, 5), (5, 0), (5, 0)]


def test_start_and_npy_and_jpg(tiny_artifact, tmp_path, capsys):
    assert _run([tiny_artifact, "-n", 3, "--start", 999_998, "--format", "npy", "--out",
                 tmp_path / "n", "--backend", "ort-cpu"], capsys)[0] == 0
    array = np.load(tmp_path / "n" / "images.npy")
    assert array.shape == (3, 64, 64, 3) and array.dtype == np.uint8
    with Generator.load(tiny_artifact, backend="ort-cpu") as gen:
        np.testing.assert_array_equal(array, gen.generate(3, seed=0, start=999_998))
    record = json.loads((tmp_path / "n" / "manifest.json").read_text())
    assert record["status"] == "complete" and record["file"] == "images.npy"
    assert _run([tiny_artifact, "-n", 2, "--format", "jpg", "--out", tmp_path / "j"], capsys)[0] == 0
    assert _read(tmp_path / "j" / "000001.jpg").shape == (64, 64, 3)


def test_int8_precision_is_recorded_and_regenerates(tiny_artifact, tmp_path, capsys):
    out = tmp_path / "q"
    assert _run([tiny_artifact, "-n", 5, "--out", out, "--seed", 2, "--backend", "ort-cpu",
                 "--precision", "int8"], capsys)[0] == 0
    record = json.loads((out / "manifest.json").read_text())
    assert record["model_file"] == "model.int8.onnx" and record["precision"] == "int8"
    assert "--backend ort-cpu --precision int8" in record["regenerate"]
    with Generator.load(tiny_artifact, backend="ort-cpu", precision="int8") as gen:
        np.testing.assert_array_equal(_read(out / "000004.png"), gen.generate(1, seed=2, start=4)[0])


def test_refuses_non_empty_output_without_overwrite(tiny_artifact, tmp_path, capsys):
    out = tmp_path / "o"
    out.mkdir()
    (out / "mine.txt").write_text("keep")
    code, _, err = _run([tiny_artifact, "-n", 2, "--out", out], capsys)
    assert code == 1 and err.startswith("error: ") and "--overwrite" in err
    assert sorted(p.name for p in out.iterdir()) == ["mine.txt"]
    # --overwrite replaces an earlier run only: a folder of someone else's files is refused
    code, _, err = _run([tiny_artifact, "-n", 2, "--out", out, "--overwrite"], capsys)
    assert code == 1 and "no dcgan-generate run wrote (mine.txt)" in err
    assert sorted(p.name for p in out.iterdir()) == ["mine.txt"]


def test_failure_mid_run_leaves_no_partial_image(tiny_artifact, tmp_path, capsys, monkeypatch):
    disk_full_at(monkeypatch, 20)
    out = tmp_path / "o"
    code, _, err = _run([tiny_artifact, "-n", 64, "--out", out, "--batch-size", 8], capsys)
    assert code == 1
    [line] = [x for x in err.splitlines() if "error" in x]
    assert line.startswith("error: No space left on device — check the path")
    assert not list(out.glob(".*tmp"))
    for p in out.glob("*.png"):  # whatever was written is whole
        assert _read(p).shape == (64, 64, 3)
    assert json.loads((out / "manifest.json").read_text())["status"] == "incomplete"


@pytest.mark.parametrize("argv, code, message", [
    (["--shard", "3/3"], 2, "need 0 <= i < k"),
    (["--shard", "x"], 2, "--shard must look like i/k"),
    (["--format", "gif"], 2, "--format must be one of png, jpg, tar, npy"),
    (["--backend", "tpu"], 2, "--backend must be one of auto, ort-cpu"),
    (["--precision", "int4"], 2, "--precision must be one of fp32, fp16, int8"),
    (["--backend", "ort-cuda", "--precision", "int8"], 1, "the int8 model is for ort-cpu"),
    (["-n", "-1"], 2, "-n"),
    (["--backend", "trt"], 1, "TensorRT"),
])
def test_usage_errors(tiny_artifact, tmp_path, capsys, argv, code, message):
    got, _, err = _run([tiny_artifact, "--out", tmp_path / "o", *argv], capsys)
    assert got == code, err
    lines = err.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("error: ") and message in lines[0]


def test_default_artifact_missing_names_the_command(tmp_path, capsys, monkeypatch):
    monkeypatch.chdir(tmp_path)
    code, _, err = _run(["-n", 5, "--out", "dir"], capsys)
    assert code == 1
    assert "error: no artifact at artifacts/dcgan — run dcgan-export first" in err
