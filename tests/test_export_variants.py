"""Optional model variants: one that misses its tolerance is left out, unless it was asked for."""

import json
import shutil

import pytest

pytest.importorskip("torch")

from export.verify import TOLERANCES, Tolerance  # noqa: E402
from runtime.cli_support import run_app  # noqa: E402


@pytest.fixture
def int8_beyond_tolerance(monkeypatch):
    """A tolerance no int8 model can meet: exactness."""
    monkeypatch.setitem(TOLERANCES, "int8", Tolerance(0.0, 0, 0.0))


@pytest.mark.slow
def test_failed_optional_variant_is_left_out_and_the_rest_ships(
        tiny_checkpoint, tmp_path, int8_beyond_tolerance, caplog):
    from export.cli import app

    out = tmp_path / "art"
    code = run_app(app, [str(tiny_checkpoint), "--out", str(out), "--recalibrate-bn", "2"],
                   prog="dcgan-export")
    assert code == 0
    manifest = json.loads((out / "manifest.json").read_text())
    assert set(manifest["files"]) == {"model.onnx", "model.fp16.onnx"}
    assert not (out / "model.int8.onnx").exists()
    [left_out] = manifest["skipped"]
    assert left_out["file"] == "model.int8.onnx" and left_out["precision"] == "int8"
    assert "beyond tolerance" in left_out["reason"]
    assert "left out model.int8.onnx" in caplog.text

    # the runtime serves fp32 and says why int8 is absent
    from runtime import Generator
    from runtime.errors import BackendUnavailable

    with Generator.load(out, backend="ort-cpu") as gen:
        assert gen.generate(2, seed=0).shape == (2, 64, 64, 3)
    with pytest.raises(BackendUnavailable, match="export left it out .*beyond tolerance"):
        Generator.load(out, backend="ort-cpu", precision="int8")


@pytest.mark.slow
def test_failed_variant_asked_for_explicitly_fails_and_writes_nothing(
        tiny_checkpoint, tmp_path, int8_beyond_tolerance, capsys):
    from export.cli import app

    out = tmp_path / "art"
    code = run_app(app, [str(tiny_checkpoint), "--out", str(out), "--recalibrate-bn", "2",
                         "--onnx-precisions", "fp32,int8"], prog="dcgan-export")
    assert code == 1
    assert "the int8 ONNX model differs from the PyTorch reference" in capsys.readouterr().err
    assert not out.exists()
    assert not [p for p in tmp_path.iterdir() if p.name.startswith(".art")]  # no staging left


def test_explicit_precisions_write_exactly_those(tiny_checkpoint, tmp_path):
    from export.cli import app

    out = tmp_path / "art"
    assert run_app(app, [str(tiny_checkpoint), "--out", str(out), "--recalibrate-bn", "2",
                         "--onnx-precisions", "fp32"], prog="dcgan-export") == 0
    assert set(json.loads((out / "manifest.json").read_text())["files"]) == {"model.onnx"}
    assert run_app(app, [str(tiny_checkpoint), "--out", str(tmp_path / "b"),
                         "--onnx-precisions", "fp32,int4"], prog="dcgan-export") == 2
    shutil.rmtree(out)
