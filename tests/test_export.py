import json
import shutil

import numpy as np
import pytest

torch = pytest.importorskip("torch")
onnx = pytest.importorskip("onnx")
ort = pytest.importorskip("onnxruntime")

from conftest import reference_images  # noqa: E402

from export.artifact import ExportOptions, export_artifact  # noqa: E402
from export.errors import ExportError, VerificationError  # noqa: E402
from export.fold import FoldedGenerator, fold_generator  # noqa: E402
from runtime.files import sha256_file  # noqa: E402
from runtime.latents import latents  # noqa: E402
from train.config import ModelConfig  # noqa: E402
from train.models import build_models  # noqa: E402
from train.recalibrate import recalibrate_bn, train_eval_gap  # noqa: E402


def _randomise_bn(g, seed=0):
    gen = torch.Generator().manual_seed(seed)
    for m in g.modules():
        if isinstance(m, torch.nn.BatchNorm2d):
            n = m.num_features
            m.running_mean.copy_(torch.randn(n, generator=gen) * 0.5)
            m.running_var.copy_(torch.rand(n, generator=gen) * 2 + 0.1)
            m.weight.data.copy_(torch.randn(n, generator=gen) * 0.5 + 1)
            m.bias.data.copy_(torch.randn(n, generator=gen) * 0.3)
    return g.eval()


@pytest.mark.parametrize("cfg", [ModelConfig(nz=16, ngf=8), ModelConfig(nz=10, ngf=4, nc=1),
                                 ModelConfig(nz=100, ngf=16, latent="uniform")])
def test_folding_equals_reference(cfg):
    torch.manual_seed(0)
    g = _randomise_bn(build_models(cfg)[0])
    z = torch.randn(9, cfg.nz)
    with torch.no_grad():
        ref = g(z)
        folded = FoldedGenerator(fold_generator(g))(z)
    assert folded.shape == (9, cfg.nc, 64, 64)
    torch.testing.assert_close(folded, ref, rtol=0, atol=1e-5)


def test_fold_scales_the_output_channel_axis():
    """ConvTranspose2d weights are (in, out, kh, kw): BN's scale belongs on axis 1, not 0."""
    torch.manual_seed(0)
    g = _randomise_bn(build_models(ModelConfig(nz=16, ngf=8))[0])
    layers = fold_generator(g)
    for i, layer in zip((0, 3, 6, 9), layers):
        conv, bn = g.main[i], g.main[i + 1]
        scale = (bn.weight / torch.sqrt(bn.running_var + bn.eps)).detach().numpy()
        expected_w = conv.weight.detach().numpy() * scale[None, :, None, None]
        expected_b = bn.bias.detach().numpy() - bn.running_mean.numpy() * scale
        np.testing.assert_allclose(layer.weight, expected_w, rtol=1e-6, atol=1e-7)
        np.testing.assert_allclose(layer.bias, expected_b, rtol=1e-6, atol=1e-6)
    assert layers[-1].activation == "tanh" and not layers[-1].bias.any()


@pytest.mark.slow
def test_recalibration_moves_eval_toward_train_mode():
    torch.manual_seed(0)
    g = _randomise_bn(build_models(ModelConfig(nz=16, ngf=8))[0])  # stale, wrong stats
    before = train_eval_gap(g, n=512)
    weights = {k: v.clone() for k, v in g.state_dict().items() if "running" not in k}
    recalibrate_bn(g, batches=20, batch_size=64)
    after = train_eval_gap(g, n=512)
    assert after["mean_abs"] < before["mean_abs"] / 10
    assert not g.training
    for k, v in g.state_dict().items():  # weights frozen
        if k in weights and "num_batches" not in k:
            assert torch.equal(v, weights[k]), k


@pytest.mark.slow
def test_artifact_contents_and_numerics(tiny_checkpoint, tmp_path, monkeypatch):
    import export.artifact

    written = []  # the manifest is built in one piece and written once, never patched on disk
    real_write = export.artifact.write_manifest
    monkeypatch.setattr(export.artifact, "write_manifest",
                        lambda d, data: (written.append(d), real_write(d, data)))
    out = tmp_path / "art"
    manifest = export_artifact(tiny_checkpoint, out, ExportOptions(format="onnx", recalibrate_batches=0))
    assert len(written) == 1
    on_disk = json.loads((out / "manifest.json").read_text())
    assert on_disk == json.loads(json.dumps(manifest))
    assert on_disk["format_version"] == "1.0"
    assert on_disk["model"] == {"nz": 16, "latent": "normal", "image_size": 64, "channels": 3, "ngf": 8}
    assert on_disk["inputs"][0]["name"] == "z" and on_disk["outputs"][0]["dtype"] == "uint8"
    assert on_disk["source"]["sha256"] == sha256_file(tiny_checkpoint)
    assert set(on_disk["files"]) == {"model.onnx", "model.fp16.onnx", "model.int8.onnx"}
    assert on_disk["files"]["model.int8.onnx"]["precision"] == "int8"
    assert on_disk["files"]["model.int8.onnx"]["layout"] == "subpixel"
    assert on_disk["verification"]["runtime-int8"]["passed"]
    for name, entry in on_disk["files"].items():
        assert entry["sha256"] == sha256_file(out / name)
        v = on_disk["verification"][name]
        if v["verified"]:
            assert v["passed"] and v["batch_sizes"] == [1, 7, 64]
    assert on_disk["verification"]["model.onnx"]["max_abs"] <= 1e-4
    assert on_disk["bn_recalibration"]["recalibrated"] is None
    # independent check: onnxruntime on the written file against the reference
    z = latents(5, 0, 33, 16)
    ref_u8, _ = reference_images(tiny_checkpoint, z, recalibrate_batches=0)
    session = ort.InferenceSession(str(out / "model.onnx"), providers=["CPUExecutionProvider"])
    images = session.run(["images"], {"z": z})[0]
    assert images.shape == (33, 64, 64, 3) and images.dtype == np.uint8
    assert np.abs(images.astype(int) - ref_u8.astype(int)).max() <= 1
    model = onnx.load(out / "model.onnx")
    onnx.checker.check_model(model, full_check=True)
    meta = {p.key: p.value for p in model.metadata_props}
    assert meta["nz"] == "16" and meta["latent"] == "normal" and meta["image_size"] == "64"
    assert [d.dim_param for d in model.graph.input[0].type.tensor_type.shape.dim][:1] == ["N"]
    assert not list(tmp_path.glob(".art.*"))  # no staging left


@pytest.mark.slow
def test_int8_model_is_quantized_and_within_its_tolerance(tiny_checkpoint, tmp_path):
    from onnx import numpy_helper

    from export.verify import TOLERANCES

    out = tmp_path / "art"
    manifest = export_artifact(tiny_checkpoint, out, ExportOptions(format="onnx", recalibrate_batches=0))
    v = manifest["verification"]["model.int8.onnx"]
    assert v["verified"] and v["passed"] and v["uint8_mean_tolerance"] == TOLERANCES["int8"].uint8_mean
    model = onnx.load(out / "model.int8.onnx")
    ops = [n.op_type for n in model.graph.node]
    # the three stride-2 hidden layers: 4 phase convs each, weights stored as int8
    int8_weights = [t for t in model.graph.initializer
                    if t.name.endswith("weight_quantized") and numpy_helper.to_array(t).dtype == np.int8]
    assert len(int8_weights) == 12
    assert ops.count("QuantizeLinear") > 0 and "DepthToSpace" in ops
    assert {p.key: p.value for p in model.metadata_props}["precision"] == "int8"
    # independent check on fresh latents: within the int8 tolerance, and not a copy of fp32
    z = latents(5, 0, 33, 16)
    ref_u8, _ = reference_images(tiny_checkpoint, z, recalibrate_batches=0)
    session = ort.InferenceSession(str(out / "model.int8.onnx"), providers=["CPUExecutionProvider"])
    diff = np.abs(session.run(["images"], {"z": z})[0].astype(int) - ref_u8.astype(int))
    assert diff.max() <= TOLERANCES["int8"].uint8_max and diff.mean() <= TOLERANCES["int8"].uint8_mean
    assert diff.max() >= 1


def test_int8_tolerance_bounds_the_mean_error_too():
    from export.verify import compare
    from runtime.images import images_from_float

    ref = np.random.default_rng(0).uniform(-0.9, 0.9, (2, 3, 64, 64)).astype(np.float32)
    exact = images_from_float(ref).astype(np.int16)
    two_off, three_off = (np.clip(exact + d, 0, 255).astype(np.uint8) for d in (2, 3))
    assert compare(ref, None, two_off, "int8")["passed"]
    result = compare(ref, None, three_off, "int8")  # max 3 is fine, a mean of 3 levels is not
    assert result["uint8_max_diff"] == 3 and not result["passed"]
    assert not compare(ref, None, two_off, "fp32")["passed"]  # fp32 allows 1 level


@pytest.mark.slow
def test_recalibrated_export_matches_recalibrated_reference(tiny_checkpoint, tmp_path):
    from export.load import load_for_export

    manifest = export_artifact(tiny_checkpoint, tmp_path / "a", ExportOptions(recalibrate_batches=3))
    rec = manifest["bn_recalibration"]
    assert rec["recalibrated"]["batches"] == 3
    assert rec["recalibrated"]["mean_abs"] < rec["checkpoint_stats"]["mean_abs"]
    g = recalibrate_bn(load_for_export(tiny_checkpoint).generator, 3, 64, seed=0)
    z = latents(1, 0, 8, 16)
    with torch.no_grad():
        ref = g(torch.from_numpy(z)).numpy()
    session = ort.InferenceSession(str(tmp_path / "a" / "model.onnx"), providers=["CPUExecutionProvider"])
    from runtime.images import to_uint8
    got = session.run(["images"], {"z": z})[0].astype(int)
    assert np.abs(got - to_uint8(ref).transpose(0, 2, 3, 1)).max() <= 1


@pytest.mark.slow
def test_pytorch_examples_state_dict(tmp_path):
    torch.manual_seed(0)
    cfg = ModelConfig(nz=20, ngf=8, nc=1)
    g = _randomise_bn(build_models(cfg)[0])
    torch.save(g.state_dict(), tmp_path / "netG_epoch_24.pth")
    manifest = export_artifact(tmp_path / "netG_epoch_24.pth", tmp_path / "art",
                               ExportOptions(recalibrate_batches=0))
    assert manifest["source"]["kind"] == "pytorch-examples"
    assert manifest["model"]["nz"] == 20 and manifest["model"]["channels"] == 1
    assert manifest["outputs"][0]["shape"] == ["N", 64, 64, 1]
    assert manifest["verification"]["model.onnx"]["passed"]


@pytest.mark.slow
def test_triton_config_parses_against_schema(tiny_checkpoint, tmp_path):
    text_format = pytest.importorskip("google.protobuf.text_format")
    model_config_pb2 = pytest.importorskip("tritonclient.grpc.model_config_pb2")
    out = tmp_path / "art"
    manifest = export_artifact(tiny_checkpoint, out, ExportOptions(format="triton", recalibrate_batches=0))
    assert manifest["triton"]["models"] == ["dcgan"]
    config = text_format.Parse((out / "triton" / "dcgan" / "config.pbtxt").read_text(),
                               model_config_pb2.ModelConfig())
    model = onnx.load(out / "triton" / "dcgan" / "1" / "model.onnx")
    assert config.platform == "onnxruntime_onnx" and config.max_batch_size == 256
    assert config.HasField("dynamic_batching")
    assert list(config.dynamic_batching.preferred_batch_size) == []  # one profile: none (Triton docs)
    assert config.dynamic_batching.max_queue_delay_microseconds == 0
    types = {onnx.TensorProto.FLOAT: model_config_pb2.TYPE_FP32,
             onnx.TensorProto.UINT8: model_config_pb2.TYPE_UINT8}
    for spec, value in ((config.input[0], model.graph.input[0]), (config.output[0], model.graph.output[0])):
        assert spec.name == value.name
        assert spec.data_type == types[value.type.tensor_type.elem_type]
        dims = [d.dim_value for d in value.type.tensor_type.shape.dim][1:]  # without batch
        assert list(spec.dims) == dims
    copied = out / "triton" / "dcgan" / "1" / "model.onnx"
    assert sha256_file(copied) == manifest["files"]["model.onnx"]["sha256"]


@pytest.mark.slow
def test_format_all_skips_tensorrt_with_reason(tiny_checkpoint, tmp_path):
    try:
        import tensorrt  # noqa: F401
        pytest.skip("tensorrt is installed here; the skip path does not apply")
    except ImportError:
        pass
    opts = ExportOptions(format="all", recalibrate_batches=0)
    manifest = export_artifact(tiny_checkpoint, tmp_path / "a", opts)
    assert [s["format"] for s in manifest["skipped"]] == ["trt"]
    assert "tensorrt is not installed" in manifest["skipped"][0]["reason"]
    assert (tmp_path / "a" / "triton" / "dcgan" / "config.pbtxt").exists()


def test_tensorrt_refused_without_it_and_nothing_written(tiny_checkpoint, tmp_path):
    try:
        import tensorrt  # noqa: F401
        pytest.skip("tensorrt is installed here")
    except ImportError:
        pass
    with pytest.raises(ExportError, match="cannot build a TensorRT engine here: tensorrt is not installed"):
        export_artifact(tiny_checkpoint, tmp_path / "a", ExportOptions(format="trt"))
    assert list(tmp_path.iterdir()) == []


def test_tampered_weight_fails_verification_and_leaves_nothing(tiny_checkpoint, tmp_path, monkeypatch):
    import export.artifact

    real_build = export.artifact.build_onnx

    def tampered(layers, cfg, precision="fp32", metadata=None, layout="convtranspose"):
        layers = [*layers]
        layers[-1].weight = layers[-1].weight * 1.2  # a 20% error in the output layer
        return real_build(layers, cfg, precision, metadata, layout)

    monkeypatch.setattr(export.artifact, "build_onnx", tampered)
    with pytest.raises(VerificationError, match="differs from the PyTorch reference"):
        export_artifact(tiny_checkpoint, tmp_path / "a", ExportOptions(recalibrate_batches=2))
    assert list(tmp_path.iterdir()) == []


@pytest.mark.slow
def test_existing_output_needs_overwrite(tiny_checkpoint, tmp_path):
    out = tmp_path / "a"
    out.mkdir()
    (out / "keep.txt").write_text("mine")
    with pytest.raises(ExportError, match="--overwrite"):
        export_artifact(tiny_checkpoint, out, ExportOptions(recalibrate_batches=0))
    assert (out / "keep.txt").read_text() == "mine"
    # --overwrite replaces an earlier artifact, never a directory of something else
    with pytest.raises(ExportError, match="not a dcgan artifact"):
        export_artifact(tiny_checkpoint, out, ExportOptions(recalibrate_batches=0, overwrite=True))
    assert (out / "keep.txt").read_text() == "mine"
    (out / "keep.txt").unlink()
    export_artifact(tiny_checkpoint, out, ExportOptions(recalibrate_batches=0))
    first = (out / "manifest.json").read_text()
    export_artifact(tiny_checkpoint, out, ExportOptions(recalibrate_batches=0, overwrite=True))
    assert (out / "manifest.json").exists() and (out / "manifest.json").read_text() != first
    assert sorted(p.name for p in tmp_path.iterdir()) == ["a"]


def test_unwritable_output_is_a_clear_error(tiny_checkpoint, tmp_path):
    blocker = tmp_path / "file"
    blocker.write_text("x")
    with pytest.raises(OSError):
        export_artifact(tiny_checkpoint, blocker / "art", ExportOptions(recalibrate_batches=0))
    assert sorted(p.name for p in tmp_path.iterdir()) == ["file"]


@pytest.mark.parametrize("content, message", [
    (b"not a checkpoint", "not a readable checkpoint"),
    (None, "does not exist"),
])
def test_bad_checkpoints(tmp_path, content, message):
    path = tmp_path / "x.pt"
    if content is not None:
        path.write_bytes(content)
    with pytest.raises(ExportError, match=message):
        export_artifact(path, tmp_path / "a", ExportOptions())
    assert not (tmp_path / "a").exists()


def test_discriminator_state_dict_is_refused(tmp_path):
    _, d = build_models(ModelConfig(ngf=8, ndf=8))
    torch.save(d.state_dict(), tmp_path / "netD.pth")
    with pytest.raises(ExportError, match="discriminator"):
        export_artifact(tmp_path / "netD.pth", tmp_path / "a", ExportOptions())


def test_cli_default_chain_messages(tmp_path, monkeypatch, capsys):
    from export.cli import app
    from runtime.cli_support import run_app

    monkeypatch.chdir(tmp_path)
    assert run_app(app, ["--format", "onnx"], prog="dcgan-export") == 1
    err = capsys.readouterr().err
    assert "error: no checkpoint at runs/dcgan/checkpoints/last.pt — run dcgan-train first" in err
    assert run_app(app, ["--format", "bogus"], prog="dcgan-export") == 2


def test_cli_exports_with_defaults(tiny_run, tmp_path, monkeypatch, capsys):
    from export.cli import app
    from runtime.cli_support import run_app

    (tmp_path / "runs").mkdir()
    shutil.copytree(tiny_run, tmp_path / "runs" / "dcgan")
    monkeypatch.chdir(tmp_path)
    assert run_app(app, ["--recalibrate-bn", "2"], prog="dcgan-export") == 0
    assert (tmp_path / "artifacts" / "dcgan" / "manifest.json").exists()
    assert run_app(app, [], prog="dcgan-export") == 1
    assert "already exists and is not empty — pass --overwrite" in capsys.readouterr().err


@pytest.mark.parametrize("precision", ["fp32", "fp16"])
def test_subpixel_layout_matches_reference(precision):
    from export.onnx_graph import build_onnx
    from export.verify import verify_onnx

    torch.manual_seed(0)
    cfg = ModelConfig(nz=16, ngf=8)
    g = _randomise_bn(build_models(cfg)[0])
    model = build_onnx(fold_generator(g), cfg, precision, layout="subpixel")
    ops = {n.op_type for n in model.graph.node}
    assert "DepthToSpace" in ops
    assert sum(n.op_type == "ConvTranspose" for n in model.graph.node) == 1  # only the 1x1 -> 4x4 layer
    result = verify_onnx(model, g, precision)
    assert result["verified"] and result["passed"]


def _tensorrt_missing() -> str | None:
    from export.tensorrt_build import trt_requirements

    return trt_requirements(0)


@pytest.mark.trt
@pytest.mark.gpu
@pytest.mark.skipif(_tensorrt_missing() is not None,
                    reason=f"needs TensorRT and a CUDA GPU: {_tensorrt_missing()}")
@pytest.mark.parametrize("precision", ["fp32", "fp16"])
def test_tensorrt_engine_is_built_verified_and_runs(tiny_checkpoint, tmp_path, precision):
    from runtime import Generator

    out = tmp_path / "a"
    from export.tensorrt_build import Profile

    opts = ExportOptions(format="all", precision=precision, recalibrate_batches=2,
                         profile=Profile(1, 16, 64))
    manifest = export_artifact(tiny_checkpoint, out, opts)
    engine = f"model.{precision}.plan"
    entry = manifest["files"][engine]
    assert entry["kind"] == "trt" and entry["max_batch"] == 64 and entry["gpu_name"]
    assert manifest["verification"][engine]["passed"]
    assert (out.parent / "a.timing.cache").stat().st_size > 0
    assert manifest["triton"]["models"] == ["dcgan", "dcgan_trt"]
    with Generator.load(out, backend="trt", precision=precision) as gen:
        assert gen.max_batch == 64
        with Generator.load(out, backend="ort-cpu") as cpu:
            diff = np.abs(gen.generate(64, seed=1).astype(int) - cpu.generate(64, seed=1).astype(int))
        assert diff.max() <= (1 if precision == "fp32" else 3)
        with pytest.raises(ValueError, match="above the engine's max batch 64"):
            gen.generate(100, seed=0, batch_size=100)
