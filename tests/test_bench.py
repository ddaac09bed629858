import json
from pathlib import Path

import numpy as np
import pytest

pytest.importorskip("torch")

from benchmarks.cli import app  # noqa: E402
from benchmarks.flops import generator_flops  # noqa: E402
from export.verify import TOLERANCES  # noqa: E402
from runtime.cli_support import run_app  # noqa: E402
from train.config import ModelConfig  # noqa: E402

FAST = ["--batches", "1,3", "--min-seconds", "0", "--min-reps", "2", "--warmup-iters", "1",
        "--e2e-images", "8"]


def test_flop_count_at_the_paper_defaults():
    # 2 * (100*512*16 + 512*256*16*16 + 256*128*16*64 + 128*64*16*256 + 64*3*16*1024)
    assert generator_flops(ModelConfig()) == 209_256_448


def _bench(tiny_artifact, tiny_checkpoint, tmp_path, capsys, extra=()):
    code = run_app(app, [str(tiny_artifact), "--checkpoint", str(tiny_checkpoint), *FAST,
                         "--out", str(tmp_path / "b"), *extra], prog="dcgan-bench")
    return code, capsys.readouterr()


@pytest.mark.slow
def test_every_row_and_output_file(tiny_artifact, tiny_checkpoint, tmp_path, capsys):
    code, captured = _bench(tiny_artifact, tiny_checkpoint, tmp_path, capsys)
    assert code == 0, captured.err
    result = json.loads((tmp_path / "b" / "bench.json").read_text())
    assert set(result) >= {"date", "machine", "model", "gflop_per_image", "matmul_gflops",
                           "bound_images_per_s", "rows", "skipped", "end_to_end", "timing"}
    assert result["machine"]["cores"] >= 1 and "torch" in result["machine"]["versions"]
    measured = {(r["backend"], r["batch"]) for r in result["rows"]}
    assert measured >= {(b, n) for b in ("torch-eager", "torch-folded", "ort-cpu", "ort-cpu-int8")
                         for n in (1, 3)}
    skipped = {s["backend"] for s in result["skipped"]}
    assert measured | {(b, 1) for b in skipped} >= {(b, 1) for b in ("ort-cuda", "trt", "trt-fp16")}
    for row in result["rows"]:
        assert row["images_per_s"] > 0 and row["repetitions"] >= 2
        assert row["latency_p99_ms"] >= row["latency_p50_ms"] > 0
        assert row["passed"]
        if row["backend"] == "torch-eager":
            assert row["max_abs"] == 0.0 and row["vs_reference"] == 1.0  # the reference itself
        elif row["backend"] in ("torch-folded", "ort-cpu"):
            assert 0 < row["max_abs"] <= 1e-4 and row["uint8_max_diff"] <= 1
        elif row["backend"] == "ort-cpu-int8":
            tol = TOLERANCES["int8"]
            assert row["precision"] == "int8" and 0 < row["max_abs"] <= tol.max_abs
            assert row["uint8_max_diff"] <= tol.uint8_max and row["uint8_mean_diff"] <= tol.uint8_mean
        if row["backend"].startswith(("torch", "ort-cpu")):
            assert 0 < row["fraction_of_bound"] and row["vs_reference"] > 0
    assert result["end_to_end"]["images"] == 8 and result["end_to_end"]["images_per_s"] > 0
    assert "| backend | batch |" in (tmp_path / "b" / "bench.md").read_text()
    assert (tmp_path / "b" / "bench.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    assert "ort-cpu" in captured.out


@pytest.mark.slow
def test_a_backend_beyond_tolerance_fails_the_run(tiny_artifact, tiny_checkpoint, tmp_path, capsys,
                                                  monkeypatch):
    from runtime import Generator

    original = Generator.from_latents

    def tampered(self, z, batch_size=None):
        out = original(self, z, batch_size)
        return np.clip(out.astype(np.int16) + 3, 0, 255).astype(np.uint8)

    monkeypatch.setattr(Generator, "from_latents", tampered)
    code, captured = _bench(tiny_artifact, tiny_checkpoint, tmp_path, capsys,
                            ["--backends", "torch-eager,ort-cpu", "--e2e-images", "0"])
    assert code == 1
    assert "error: beyond tolerance against the PyTorch reference: ort-cpu@1, ort-cpu@3" in captured.err
    rows = json.loads((tmp_path / "b" / "bench.json").read_text())["rows"]
    assert [r["passed"] for r in rows if r["backend"] == "ort-cpu"] == [False, False]


@pytest.mark.slow
def test_wrong_checkpoint_is_refused(tiny_artifact, tmp_path, capsys):
    from conftest import tiny_train

    other = tiny_train(tmp_path / "other", steps=1).run_dir / "checkpoints" / "last.pt"
    code = run_app(app, [str(tiny_artifact), "--checkpoint", str(other), *FAST, "--out",
                         str(tmp_path / "b")], prog="dcgan-bench")
    assert code == 1
    assert "is not the checkpoint this artifact was exported from" in capsys.readouterr().err


@pytest.mark.slow
def test_generate_speed_measures_every_format_against_inference(tiny_artifact, tmp_path):
    from benchmarks.generate_speed import app as speed_app
    from runtime.cli_support import run_app

    assert run_app(speed_app, [str(tiny_artifact), "-n", "64", "--rounds", "1", "--out",
                               str(tmp_path)], prog="generate_speed") == 0
    result = json.loads((tmp_path / "generate.json").read_text())
    assert set(result["ratio_to_inference"]) == {"png", "tar", "npy"}
    assert all(r > 0 for r in result["ratio_to_inference"].values())
    assert "`dcgan-generate --format tar`" in (tmp_path / "generate.md").read_text()


@pytest.mark.slow
def test_train_speed_compares_two_trees(tmp_path):
    from benchmarks.train_speed import app as speed_app
    from runtime.cli_support import run_app

    here = Path(__file__).resolve().parents[1]
    tiny = "--data shapes:512 --ngf 8 --ndf 8 --nz 16 --batch-size 8 --workers 0"
    assert run_app(speed_app, [str(here), "--base-args", tiny, "--args", tiny, "--steps", "41",
                               "--rounds", "1", "--out", str(tmp_path)], prog="train_speed") == 0
    result = json.loads((tmp_path / "train_speed.json").read_text())
    (row,) = result["rows"]
    assert row["order"] == ["base", "this"] and row["base"] > 0 and row["this"] > 0
    assert result["median_ratio"] == pytest.approx(row["this"] / row["base"])
    assert result["this"]["args"][0] == "--data"
    assert "| round | base images/s | this images/s | ratio |" in (tmp_path / "train_speed.md").read_text()


def test_train_speed_refuses_a_tree_without_the_project(tmp_path, capsys):
    from benchmarks.train_speed import app as speed_app
    from runtime.cli_support import run_app

    assert run_app(speed_app, [str(tmp_path)], prog="train_speed") == 1
    assert "holds no train/cli.py" in capsys.readouterr().err


def test_parameter_code_carries_the_render_parameters():
    from benchmarks.supervised_bound import parameter_code
    from train import shapes

    spec = shapes.draw_spec(0, 7)
    code = parameter_code(spec, 100)
    assert code.dtype == np.float32 and code.shape == (100,)
    assert code[:3].tolist() == [float(k == spec.label) for k in range(3)]
    assert np.allclose((code[8:11] + 1) * 127.5, spec.background, atol=1e-3)
    assert np.allclose((code[11:14] + 1) * 127.5, spec.foreground, atol=1e-3)
    assert not code[14:].any() and np.abs(code).max() <= 1.0


@pytest.mark.slow
def test_supervised_bound_writes_its_curve(tmp_path):
    from benchmarks.supervised_bound import app as bound_app
    from runtime.cli_support import run_app

    assert run_app(bound_app, ["--ngf", "8", "--steps", "4", "--every", "2", "--length", "600",
                               "--out", str(tmp_path)], prog="supervised_bound") == 0
    curve = [json.loads(line) for line in (tmp_path / "bound.jsonl").read_text().splitlines()]
    assert [p["step"] for p in curve] == [2, 4]
    assert all(p["n"] == 512 and 0.0 <= p["valid"] <= 1.0 and p["background_deviation"] > 0
               for p in curve)
    assert (tmp_path / "bound.png").stat().st_size > 1000
