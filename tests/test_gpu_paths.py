"""GPU paths checked where no GPU is: our own logic around TensorRT and CUDA, driven through fakes
of the documented APIs, and every exported graph against TensorRT's parser constraints."""

import json
import subprocess
import sys
import threading
from pathlib import Path

import numpy as np
import onnx
import pytest
from conftest import HAS_TORCH
from onnx import TensorProto, helper

import runtime.tensorrt_backend as trt_backend
from runtime.manifest import FileEntry, Manifest

ROOT = Path(__file__).parents[1]


# -- 1. every graph TensorRT or Triton may read parses under the documented constraints ----------

@pytest.mark.skipif(not HAS_TORCH, reason="builds graphs from a torch model")
@pytest.mark.parametrize("layout", ["convtranspose", "subpixel"])
@pytest.mark.parametrize("precision", ["fp32", "fp16"])
def test_exported_graphs_meet_tensorrt_parser_constraints(layout, precision):
    from export.fold import fold_generator
    from export.onnx_graph import build_onnx
    from export.trt_constraints import tensorrt_problems
    from train.config import ModelConfig
    from train.models import build_models

    g = build_models(ModelConfig(nz=16, ngf=8))[0].eval()
    model = build_onnx(fold_generator(g), g.cfg, precision, layout=layout)
    assert tensorrt_problems(model) == []
    assert model.graph.node[-1].op_type == "Cast"  # uint8 only at the very end


def test_uint8_inside_the_network_is_caught():
    """The graph as it was before: Cast to uint8, then Transpose."""
    from export.trt_constraints import tensorrt_problems

    nodes = [helper.make_node("Cast", ["x"], ["x8"], to=TensorProto.UINT8),
             helper.make_node("Transpose", ["x8"], ["images"], perm=[0, 2, 3, 1])]
    graph = helper.make_graph(
        nodes, "g", [helper.make_tensor_value_info("x", TensorProto.FLOAT, ["N", 3, 64, 64])],
        [helper.make_tensor_value_info("images", TensorProto.UINT8, ["N", 64, 64, 3])])
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])
    problems = tensorrt_problems(model)
    assert any("UINT8 is allowed only as a network output" in p for p in problems)
    assert any("x8 is UINT8 inside the network" in p for p in problems)


@pytest.mark.skipif(not HAS_TORCH, reason="exports with torch")
def test_every_exported_artifact_is_checked(tiny_artifact):
    from export.trt_constraints import tensorrt_problems

    for name in ("model.onnx", "model.fp16.onnx"):
        assert tensorrt_problems(onnx.load(tiny_artifact / name)) == []


# -- 3, 4, 8. device per thread, profile minimum, set_input_shape, context None --------------

class FakeContext:
    def __init__(self, accept_shapes=True):
        self.accept_shapes, self.shapes, self.addresses = accept_shapes, [], {}

    def set_tensor_address(self, name, ptr):
        self.addresses[name] = ptr

    def set_input_shape(self, name, shape):
        self.shapes.append(shape)
        return self.accept_shapes

    def execute_async_v3(self, stream):
        assert isinstance(stream, int)
        return True


class FakeEngine:
    num_io_tensors = 2

    def __init__(self, min_batch, max_batch, context):
        self.min_batch, self.max_batch, self.context = min_batch, max_batch, context

    def get_tensor_profile_shape(self, name, profile):
        return (self.min_batch, 16), (self.max_batch, 16), (self.max_batch, 16)

    def get_tensor_name(self, i):
        return ("z", "images")[i]

    def create_execution_context(self):
        return self.context


class FakeBuffer:
    def __init__(self, *shape_or_bytes):
        if len(shape_or_bytes) == 2:
            self.array = np.zeros(*shape_or_bytes)
            self.nbytes = self.array.nbytes
        else:
            self.nbytes = shape_or_bytes[0]
        self.ptr = 1

    def free(self):
        pass


class FakeStream:
    class Handle:
        def getPtr(self):
            return 1234

    def __init__(self):
        self.handle = FakeStream.Handle()

    def copy_to_device(self, *a):
        pass

    def copy_to_host(self, *a):
        pass

    def synchronize(self):
        pass

    def destroy(self):
        pass


class FakeCudart:
    """Records cudaSetDevice per thread, as the CUDA runtime keeps the current device."""

    def __init__(self):
        self.calls = []

    def cudaSetDevice(self, device):
        self.calls.append((threading.current_thread().name, device))
        return 0


@pytest.fixture
def fake_trt(monkeypatch):
    cudart = FakeCudart()
    monkeypatch.setattr(trt_backend, "cudart", lambda: cudart)
    monkeypatch.setattr(trt_backend, "cuda_call", lambda result: None)
    monkeypatch.setattr(trt_backend, "PinnedBuffer", FakeBuffer)
    monkeypatch.setattr(trt_backend, "DeviceBuffer", FakeBuffer)
    monkeypatch.setattr(trt_backend, "Stream", FakeStream)
    return cudart


def _backend(engine, device=1):
    manifest = Manifest(Path("."), {"model": {"nz": 16, "image_size": 64, "channels": 3, "latent": "normal"},
                                    "inputs": [{"name": "z"}], "outputs": [{"name": "images"}]})
    backend = trt_backend.TrtBackend(manifest, FileEntry("m.plan", "trt", "fp32", "0" * 64, {}), device)
    backend.engine, backend.context = engine, engine.context
    backend._allocate()
    backend.active = True
    return backend


def test_short_batches_are_padded_to_the_profile_minimum(fake_trt):
    context = FakeContext()
    backend = _backend(FakeEngine(min_batch=8, max_batch=64, context=context))
    out = backend.infer(np.ones((3, 16), np.float32))
    assert out.shape == (3, 64, 64, 3)
    assert context.shapes == [(8, 16)]  # run at the profile minimum, 3 images returned
    with pytest.raises(ValueError, match="outside the engine's profile"):
        backend.infer(np.ones((65, 16), np.float32))


def test_a_refused_input_shape_is_an_error_not_garbage(fake_trt):
    backend = _backend(FakeEngine(1, 64, FakeContext(accept_shapes=False)))
    with pytest.raises(RuntimeError, match="refused input shape"):
        backend.infer(np.ones((2, 16), np.float32))


def test_every_thread_sets_the_device_before_running(fake_trt):
    backend = _backend(FakeEngine(1, 64, FakeContext()), device=1)
    threads = [threading.Thread(target=backend.infer, args=(np.ones((2, 16), np.float32),),
                                name=f"worker{i}") for i in range(3)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert {name for name, device in fake_trt.calls if device == 1} >= {"worker0", "worker1", "worker2"}
    assert all(device == 1 for _, device in fake_trt.calls)


def test_no_execution_context_is_backend_unavailable(fake_trt, monkeypatch, tmp_path):
    from runtime.errors import BackendUnavailable

    class FakeTrt:
        class Logger:
            WARNING = 0

            def __init__(self, level):
                pass

        class Runtime:
            def __init__(self, logger):
                pass

            def deserialize_cuda_engine(self, data):
                return FakeEngine(1, 64, None)

    monkeypatch.setattr(trt_backend, "import_tensorrt", lambda: FakeTrt)
    backend = _backend(FakeEngine(1, 64, FakeContext()))
    (tmp_path / "m.plan").write_bytes(b"x")
    with pytest.raises(BackendUnavailable, match="execution context"):
        backend._activate(tmp_path / "m.plan")


def test_stream_handle_prefers_getptr():
    assert trt_backend.stream_handle(FakeStream.Handle()) == 1234
    assert trt_backend.stream_handle(77) == 77


def test_one_logger_per_process():
    class FakeTrt:
        class Logger:
            WARNING = 0

            def __init__(self, level):
                pass

    first = trt_backend.trt_logger(FakeTrt)
    assert trt_backend.trt_logger(FakeTrt) is first


# -- 6. timing cache: per device, never loaded across devices --------------------------------

def test_timing_cache_is_named_per_gpu_and_tensorrt_version():
    from export.tensorrt_build import timing_cache_name
    from runtime.cuda import GpuInfo

    a = timing_cache_name(GpuInfo("NVIDIA H100 80GB HBM3", "9.0"), "10.13.0")
    b = timing_cache_name(GpuInfo("NVIDIA A100-SXM4-40GB", "8.0"), "10.13.0")
    c = timing_cache_name(GpuInfo("NVIDIA H100 80GB HBM3", "9.0"), "11.0.0")
    assert len({a, b, c}) == 3 and "/" not in a and a.endswith(".cache")


# -- 2. install resolution per CUDA major --------------------------------------------------------

def test_gpu_extras_pin_one_cuda_major_each():
    import tomllib

    extras = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]["optional-dependencies"]
    cu12, cu13 = " ".join(extras["gpu-cu12"]), " ".join(extras["gpu-cu13"])
    assert "tensorrt-cu12" in cu12 and "cuda-python>=12.6,<13" in cu12
    assert "onnxruntime-gpu[cuda,cudnn]" in cu12 and "<1.27" in cu12
    assert "tensorrt-cu13" in cu13 and "cuda-python>=13" in cu13
    assert "onnxruntime-gpu[cuda,cudnn]>=1.27" in cu13


@pytest.mark.slow
@pytest.mark.parametrize("extra, major", [("gpu-cu12", "12"), ("gpu-cu13", "13")])
def test_gpu_extras_resolve_to_one_cuda_major(tmp_path, extra, major):
    """pip's resolver, installing nothing: every CUDA library an extra pulls is of its major.
    TensorRT's own wheels resolve only through NVIDIA's index (a placeholder package on PyPI
    fetches them), so here its requirement is checked by name: tensorrt-cu12 / tensorrt-cu13."""
    import tomllib

    reqs = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]["optional-dependencies"][extra]
    assert [r for r in reqs if r.startswith(f"tensorrt-cu{major}")]
    report = tmp_path / "report.json"
    result = subprocess.run(
        [sys.executable, "-m", "pip", "install", "--dry-run", "--ignore-installed", "--quiet",
         "--report", str(report), *[r for r in reqs if not r.startswith("tensorrt")]],
        capture_output=True, text=True, timeout=900)
    if result.returncode != 0 and any(s in result.stderr for s in ("Could not find", "No matching",
                                                                   "ConnectionError", "NewConnection")):
        pytest.skip(f"the package index cannot resolve {extra} here: {result.stderr.strip()[-200:]}")
    assert result.returncode == 0, result.stderr[-2000:]
    installs = {i["metadata"]["name"].lower(): i["metadata"]["version"]
                for i in json.loads(report.read_text())["install"]}
    assert installs["cuda-python"].split(".")[0] == major
    cuda_libs = [n for n in installs if n.startswith("nvidia-")]
    assert cuda_libs, installs
    other = "13" if major == "12" else "12"
    assert not [n for n in cuda_libs if n.endswith(f"-cu{other}")], cuda_libs
    if major == "12":
        assert all(n.endswith("-cu12") for n in cuda_libs), cuda_libs
        assert int(installs["onnxruntime-gpu"].split(".")[1]) < 27
    else:  # CUDA 13's libraries dropped the suffix; their versions say the major
        assert installs["nvidia-cuda-runtime"].startswith("13."), installs


# -- 2. a driver too old for the stack is its own error, not "no GPU" ------------------------

def test_insufficient_driver_says_whether_it_is_missing_or_too_old(monkeypatch):
    pytest.importorskip("cuda.bindings.runtime")
    import runtime.cuda as cuda

    monkeypatch.setattr(cuda, "_driver_cuda_version", lambda: None)
    assert "no NVIDIA driver on this machine" in cuda.driver_problem()
    monkeypatch.setattr(cuda, "_driver_cuda_version", lambda: 12040)
    monkeypatch.setattr(cuda, "cuda_runtime_version", lambda: 13000)
    message = cuda.driver_problem()
    assert "supports CUDA 12.4, older than the installed CUDA 13.0 stack" in message
    assert "make install GPU=cu12" in message
