import json
import subprocess
import sys
import textwrap
import threading
from pathlib import Path

import numpy as np
import pytest
from conftest import HAS_TORCH, reference_images

from runtime import ArtifactError, BackendUnavailable, Generator
from runtime.latents import latents, slerp

pytestmark = pytest.mark.skipif(not HAS_TORCH, reason="the fixtures export with torch")

BLOCK_TORCH = textwrap.dedent("""
    import importlib.abc, sys
    class NoTorch(importlib.abc.MetaPathFinder):
        def find_spec(self, name, path=None, target=None):
            if name == "torch" or name.startswith("torch."):
                raise ImportError("torch is blocked")
    sys.meta_path.insert(0, NoTorch())
""")


def _run_without_torch(code: str) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-c", BLOCK_TORCH + textwrap.dedent(code)],
                          capture_output=True, text=True, cwd=Path(__file__).parents[1])


def test_runtime_imports_and_generates_without_torch(tiny_artifact):
    result = _run_without_torch(f"""
        import runtime, runtime.cli, runtime.backends, runtime.writer, runtime.tensorrt_backend
        from runtime import Generator
        with Generator.load({str(tiny_artifact)!r}, backend="ort-cpu") as gen:
            print(gen.generate(3, seed=1).shape)
        assert "torch" not in sys.modules
    """)
    assert result.returncode == 0, result.stderr
    assert "(3, 64, 64, 3)" in result.stdout


def test_generate_help_without_torch():
    result = _run_without_torch("""
        from runtime.cli import main
        sys.argv = ["dcgan-generate", "--help"]
        main()
    """)
    assert result.returncode == 0, result.stderr
    assert "Usage: dcgan-generate" in result.stdout and "--shard" in result.stdout


def test_outputs_match_the_pytorch_reference(gen, tiny_checkpoint):
    z = gen.latents(65, seed=3)
    ref_u8, _ = reference_images(tiny_checkpoint, z)
    images = gen.from_latents(z)
    assert images.shape == (65, 64, 64, 3) and images.dtype == np.uint8
    assert np.abs(images.astype(int) - ref_u8.astype(int)).max() <= 1
    assert images.std() > 5  # real images, not a constant
    np.testing.assert_array_equal(gen.generate(65, seed=3), images)


def test_latents_depend_only_on_seed_and_index(gen):
    full = gen.latents(20, seed=9)
    np.testing.assert_array_equal(gen.latents(5, seed=9, start=15), full[15:])
    np.testing.assert_array_equal(latents(9, 7, 1, gen.nz), full[7:8])
    assert not np.array_equal(gen.latents(5, seed=10), full[:5])
    assert gen.latents(0, seed=1).shape == (0, gen.nz)


def test_uniform_latents_are_in_range():
    z = latents(0, 0, 500, 10, "uniform")
    assert z.min() >= -1 and z.max() < 1 and abs(z.mean()) < 0.05


def test_determinism_across_batch_sizes_and_starts(gen):
    whole = gen.generate(50, seed=4, batch_size=64)
    for batch in (1, 7, 50):
        np.testing.assert_array_equal(gen.generate(50, seed=4, batch_size=batch), whole)
    np.testing.assert_array_equal(gen.generate(20, seed=4, start=30, batch_size=3), whole[30:])
    streamed = list(gen.iter_batches(50, seed=4, batch_size=16))
    assert [first for first, _ in streamed] == [0, 16, 32, 48]
    np.testing.assert_array_equal(np.concatenate([b for _, b in streamed]), whole)


def test_threads_give_serial_results(gen):
    serial = {seed: gen.generate(3, seed=seed, batch_size=2) for seed in range(8)}
    failures, results = [], {}

    def worker(seed):
        try:
            results[seed] = [gen.generate(3, seed=seed, batch_size=2) for _ in range(50)]
        except Exception as e:  # noqa: BLE001
            failures.append(e)

    threads = [threading.Thread(target=worker, args=(s,)) for s in range(8)]
    [t.start() for t in threads]
    [t.join() for t in threads]
    assert not failures
    for seed, outs in results.items():
        assert len(outs) == 50
        for out in outs:
            np.testing.assert_array_equal(out, serial[seed])


def test_ort_cpu_runs_one_slice_per_core_with_the_same_bits(tiny_artifact, gen, monkeypatch):
    import runtime.ort_backends as ort_backends

    monkeypatch.setattr(ort_backends, "physical_cores", lambda: 3)
    calls = []
    original_run = ort_backends.OrtCpuBackend._run

    def spy(self, session, z):
        calls.append((session is self.session, len(z), threading.current_thread().name))
        return original_run(self, session, z)

    monkeypatch.setattr(ort_backends.OrtCpuBackend, "_run", spy)
    with Generator.load(tiny_artifact, backend="ort-cpu") as sharded:
        images = sharded.generate(10, seed=6, batch_size=10)
        assert sorted(n for _, n, _ in calls) == [3, 3, 4]
        assert all(not whole and name.startswith("ort-cpu") for whole, _, name in calls)
        calls.clear()
        one = sharded.generate(1, seed=6)
        assert [(whole, n) for whole, n, _ in calls] == [(True, 1)]
    np.testing.assert_array_equal(images[:1], one)
    np.testing.assert_array_equal(images, gen.generate(10, seed=6, batch_size=1))


def test_spin_wait_off_gives_the_same_bits(tiny_artifact, gen):
    with Generator.load(tiny_artifact, backend="ort-cpu", spin_wait=False) as quiet:
        backend = quiet.backend
        for session in (backend.session, getattr(backend, "per_core_session", backend.session)):
            options = session.get_session_options()
            assert options.get_session_config_entry("session.intra_op.allow_spinning") == "0"
        for n in (1, 7):
            np.testing.assert_array_equal(quiet.generate(n, seed=3), gen.generate(n, seed=3))


def test_int8_model_on_ort_cpu(tiny_artifact, tiny_checkpoint):
    from export.verify import TOLERANCES

    z = np.random.default_rng(3).standard_normal((40, 16)).astype(np.float32)
    ref_u8, _ = reference_images(tiny_checkpoint, z)
    with Generator.load(tiny_artifact, backend="ort-cpu", precision="int8") as int8:
        assert int8.backend.entry.name == "model.int8.onnx"
        images = int8.from_latents(z)
        np.testing.assert_array_equal(int8.from_latents(z[:1]), images[:1])  # batch-independent
    diff = np.abs(images.astype(int) - ref_u8.astype(int))
    assert diff.max() <= TOLERANCES["int8"].uint8_max and diff.mean() <= TOLERANCES["int8"].uint8_mean
    with pytest.raises(BackendUnavailable, match="int8 model is for ort-cpu"):
        Generator.load(tiny_artifact, backend="ort-cuda", precision="int8")


@pytest.mark.parametrize("call, message", [
    (lambda g: g.from_latents(np.zeros((2, 3), np.float32)), r"shape \(n, 16\)"),
    (lambda g: g.from_latents(np.zeros((2, 16), np.int64)), "float array"),
    (lambda g: g.from_latents(np.full((2, 16), np.nan, np.float32)), "NaN"),
    (lambda g: g.generate(-1, seed=0), "n must be an int >= 0"),
    (lambda g: g.generate(2, seed=-5), "seed must be an int"),
    (lambda g: g.generate(2, seed=0, batch_size=0), "batch_size must be a positive int"),
    (lambda g: g.generate(2, seed=0, start=-1), "start must be an int >= 0"),
    (lambda g: g.interpolate(np.zeros(16), np.ones(16), 1), "steps must be >= 2"),
    (lambda g: g.interpolate(np.zeros(3), np.ones(16), 4), r"z0 must have shape \(16,\)"),
    (lambda g: g.interpolate(np.zeros(16), np.ones(16), 4, method="cubic"), "slerp"),
])
def test_bad_input_raises_value_error(gen, call, message):
    with pytest.raises(ValueError, match=message):
        call(gen)


def test_batch_above_engine_max_is_refused(gen, monkeypatch):
    monkeypatch.setattr(gen.backend, "max_batch", 8)
    with pytest.raises(ValueError, match="above the engine's max batch 8"):
        gen.generate(10, seed=0, batch_size=16)
    assert gen.generate(10, seed=0).shape[0] == 10  # default batch follows the max


def test_interpolate_endpoints_and_slerp_norms(gen):
    z0, z1 = gen.latents(2, seed=5)
    walk = gen.interpolate(z0, z1, 6)
    ends = gen.from_latents(np.stack([z0, z1]))
    np.testing.assert_array_equal(walk[0], ends[0])
    np.testing.assert_array_equal(walk[-1], ends[1])
    path = slerp(z0, z1, np.linspace(0, 1, 9))
    np.testing.assert_allclose(path[0], z0, atol=1e-6)
    np.testing.assert_allclose(path[-1], z1, atol=1e-6)
    # equal-norm endpoints keep their norm all along a slerp path
    u, v = z0 / np.linalg.norm(z0), z1 / np.linalg.norm(z1)
    np.testing.assert_allclose(np.linalg.norm(slerp(u, v, np.linspace(0, 1, 9)), axis=1), 1, rtol=1e-5)


def test_bare_onnx_file(tiny_artifact, gen):
    with Generator.load(tiny_artifact / "model.onnx", backend="ort-cpu") as bare:
        assert bare.nz == 16 and bare.manifest.latent == "normal"
        np.testing.assert_array_equal(bare.generate(4, seed=2), gen.generate(4, seed=2))
    with Generator.load(tiny_artifact / "model.int8.onnx", backend="ort-cpu") as bare, \
            Generator.load(tiny_artifact, backend="ort-cpu", precision="int8") as int8:
        np.testing.assert_array_equal(bare.generate(4, seed=2), int8.generate(4, seed=2))


def test_info_and_repr(gen):
    assert gen.info["model"]["nz"] == 16 and "verification" in gen.info
    assert "ort-cpu" in repr(gen)


def _copy_artifact(src: Path, dst: Path) -> Path:
    import shutil

    shutil.copytree(src, dst)
    return dst


def test_refuses_tampered_model(tiny_artifact, tmp_path):
    art = _copy_artifact(tiny_artifact, tmp_path / "a")
    data = bytearray((art / "model.onnx").read_bytes())
    data[-10] ^= 0xFF
    (art / "model.onnx").write_bytes(bytes(data))
    with pytest.raises(ArtifactError, match="does not match its sha256"):
        Generator.load(art, backend="ort-cpu")


def test_refuses_unknown_major_version(tiny_artifact, tmp_path):
    art = _copy_artifact(tiny_artifact, tmp_path / "a")
    manifest = json.loads((art / "manifest.json").read_text())
    manifest["format_version"] = "2.0"
    (art / "manifest.json").write_text(json.dumps(manifest))
    with pytest.raises(ArtifactError, match="format version 2.0; this runtime reads 1.x"):
        Generator.load(art)


def test_missing_artifact(tmp_path):
    with pytest.raises(ArtifactError, match="no manifest.json"):
        Generator.load(tmp_path)
    with pytest.raises(ArtifactError, match="does not exist"):
        Generator.load(tmp_path / "x.onnx")


def test_unknown_backend(tiny_artifact):
    with pytest.raises(ValueError, match="unknown backend 'tpu'"):
        Generator.load(tiny_artifact, backend="tpu")


def test_tensorrt_backend_unavailable_is_one_clear_line(tiny_artifact):
    try:
        import tensorrt  # noqa: F401
        pytest.skip("tensorrt is installed here")
    except ImportError:
        pass
    with pytest.raises(BackendUnavailable, match="no TensorRT engine"):
        Generator.load(tiny_artifact, backend="trt")


def test_cuda_calls_without_a_gpu_raise_cuda_error():
    pytest.importorskip("cuda.bindings.runtime")
    from runtime.cuda import CudaError, gpu_info

    try:
        gpu_info(0)
    except CudaError as e:
        assert "CUDA call failed" in str(e)
    else:
        pytest.skip("a CUDA GPU is present")


def test_auto_backend_falls_back_to_cpu(tiny_artifact, caplog):
    import logging

    with caplog.at_level(logging.INFO), Generator.load(tiny_artifact) as g:
        if not _has_cuda():
            assert g.backend_name == "ort-cpu"
        assert f"backend: {g.backend_name} (auto" in caplog.text


def _has_cuda() -> bool:
    try:
        from runtime.cuda import gpu_info

        gpu_info(0)
        return True
    except Exception:  # noqa: BLE001
        return False


def _ort_cuda_missing() -> str | None:
    """Why the ort-cuda test cannot run: no GPU, or the CPU build of onnxruntime (plain
    `make test`). Under `make test GPU=...` (DCGAN_REQUIRE_GPU=1) a GPU that is present but
    unusable fails the test instead (conftest.py)."""
    import onnxruntime as ort

    if not _has_cuda():
        return "needs a CUDA GPU (and cuda-python)"
    if "CUDAExecutionProvider" not in ort.get_available_providers():
        return "onnxruntime here is the CPU build (make test GPU=cu12|cu13 installs the GPU stack)"
    return None


@pytest.mark.gpu
@pytest.mark.skipif(_ort_cuda_missing() is not None, reason=str(_ort_cuda_missing()))
def test_ort_cuda_matches_reference(tiny_artifact, tiny_checkpoint):
    with Generator.load(tiny_artifact, backend="ort-cuda") as g:
        z = g.latents(64, seed=0)
        ref, _ = reference_images(tiny_checkpoint, z)
        assert np.abs(g.from_latents(z).astype(int) - ref.astype(int)).max() <= 1
