"""The Open Inference Protocol over gRPC, driven by tritonclient.grpc (sync and asyncio) against
the real grpcio server on 127.0.0.1: health, metadata, config, infer (z and seed-addressed),
byte equality with runtime.Generator, bad input, API keys."""

import asyncio

import numpy as np
import pytest
from conftest import HAS_TORCH, run_coroutine

grpcclient = pytest.importorskip("tritonclient.grpc")
pytestmark = pytest.mark.skipif(not HAS_TORCH, reason="the fixtures export with torch")
NZ, KEY = 16, "grpc-key"


@pytest.fixture(scope="module")
def batcher(gen):
    from runtime.batcher import Batcher

    with Batcher(gen, max_batch=16) as b:
        yield b


def _server(batcher, keys=()):
    from serve.oip_grpc import GrpcServer
    from serve.oip_model import OipModel

    return GrpcServer(OipModel(batcher, 32), lambda: True, "127.0.0.1:0", keys).start()


@pytest.fixture(scope="module")
def address(batcher):
    server = _server(batcher)
    yield f"127.0.0.1:{server.port}"
    server.stop(1)


@pytest.fixture
def client(address):
    c = grpcclient.InferenceServerClient(address)
    yield c
    c.close()


def _z(n, seed=0):
    return np.random.default_rng(seed).standard_normal((n, NZ), dtype=np.float32)


def _input(z, datatype="FP32"):
    inp = grpcclient.InferInput("z", list(z.shape), datatype)
    inp.set_data_from_numpy(z)
    return inp


def test_health_metadata_and_config(client, tmp_path):
    from google.protobuf import text_format
    from tritonclient.grpc import model_config_pb2

    from export.triton import write_repository

    assert client.is_server_live() and client.is_server_ready() and client.is_model_ready("dcgan")
    assert not client.is_model_ready("dcgan", "2")
    assert "binary_tensor_data" in client.get_server_metadata().extensions
    meta = client.get_model_metadata("dcgan")
    assert meta.name == "dcgan" and list(meta.versions) == ["1"]
    assert list(meta.inputs[0].shape) == [-1, NZ] and meta.inputs[0].datatype == "FP32"
    assert list(meta.outputs[0].shape) == [-1, 64, 64, 3] and meta.outputs[0].datatype == "UINT8"
    onnx = tmp_path / "m.onnx"
    onnx.write_bytes(b"")
    write_repository(tmp_path / "repo", "dcgan", onnx, None, NZ, 64, 3, 32)
    written = text_format.Parse((tmp_path / "repo" / "dcgan" / "config.pbtxt").read_text(),
                                model_config_pb2.ModelConfig())
    assert client.get_model_config("dcgan", "1").config == written


def test_infer_z_and_seed_are_byte_equal_to_generator(client, gen):
    z = _z(3)
    result = client.infer("dcgan", [_input(z)], request_id="g-1",
                          outputs=[grpcclient.InferRequestedOutput("images")])
    np.testing.assert_array_equal(result.as_numpy("images"), gen.from_latents(z))
    assert result.get_response().id == "g-1"
    result = client.infer("dcgan", [], parameters={"seed": 7, "start": 12, "n": 3})
    np.testing.assert_array_equal(result.as_numpy("images"), gen.generate(3, seed=7, start=12))
    big = 2**128 - 1
    result = client.infer("dcgan", [], parameters={"seed": str(big)})
    np.testing.assert_array_equal(result.as_numpy("images"), gen.generate(1, seed=big))


def test_fp32_contents_instead_of_raw(address, gen):
    import grpc
    from tritonclient.grpc import service_pb2, service_pb2_grpc

    z = _z(2, seed=4)
    tensor = service_pb2.ModelInferRequest.InferInputTensor(
        name="z", datatype="FP32", shape=[2, NZ],
        contents=service_pb2.InferTensorContents(fp32_contents=z.ravel().tolist()))
    with grpc.insecure_channel(address) as channel:
        stub = service_pb2_grpc.GRPCInferenceServiceStub(channel)
        response = stub.ModelInfer(service_pb2.ModelInferRequest(model_name="dcgan", inputs=[tensor]))
        images = np.frombuffer(response.raw_output_contents[0], np.uint8).reshape(2, 64, 64, 3)
        np.testing.assert_array_equal(images, gen.from_latents(z))
        # a shape that disagrees with the data
        bad = service_pb2.ModelInferRequest(model_name="dcgan", inputs=[tensor],
                                            raw_input_contents=[z[:1].tobytes()])
        with pytest.raises(grpc.RpcError) as e:
            stub.ModelInfer(bad)
        assert e.value.code() == grpc.StatusCode.INVALID_ARGUMENT and "needs 128 bytes" in e.value.details()


@pytest.mark.parametrize("make, message", [
    (lambda: dict(inputs=[_input(_z(1).astype(np.float64), "FP64")]), "must be FP32"),
    (lambda: dict(inputs=[_input(_z(33))]), "above the limit of 32"),
    (lambda: dict(inputs=[_input(np.full((1, NZ), np.nan, np.float32))]), "NaN or inf"),
    (lambda: dict(inputs=[_input(np.full((1, NZ), np.inf, np.float32))]), "NaN or inf"),
    (lambda: dict(inputs=[_input(_z(1))], parameters={"seed": 1}), "got both"),
    (lambda: dict(inputs=[], parameters={"seed": "+7"}), "canonical"),
    (lambda: dict(inputs=[], parameters={"seed": 1, "n": 33}), "n must be in"),
    (lambda: dict(inputs=[], parameters={"seed": 1.5}), "whole number"),
    (lambda: dict(inputs=[]), "no input"),
    (lambda: dict(inputs=[_input(_z(1))],
                  outputs=[grpcclient.InferRequestedOutput("other")]), "unknown output"),
])
def test_bad_input_is_invalid_argument_and_the_server_stays_healthy(client, make, message):
    with pytest.raises(grpcclient.InferenceServerException) as e:
        client.infer("dcgan", **make())
    assert e.value.status() == "StatusCode.INVALID_ARGUMENT" and message in e.value.message()
    assert client.is_server_ready()


def test_unknown_model_or_version_is_not_found(client):
    for kwargs in ({"model_name": "other"}, {"model_name": "dcgan", "model_version": "2"}):
        with pytest.raises(grpcclient.InferenceServerException) as e:
            client.infer(inputs=[_input(_z(1))], **kwargs)
        assert e.value.status() == "StatusCode.NOT_FOUND"
    with pytest.raises(grpcclient.InferenceServerException, match="unknown model"):
        client.get_model_metadata("other")


def test_asyncio_client(address, gen):
    aio = pytest.importorskip("tritonclient.grpc.aio")

    async def main():
        client = aio.InferenceServerClient(address)
        try:
            assert await client.is_server_ready()
            results = await asyncio.gather(*(client.infer("dcgan", [], parameters={"seed": s})
                                             for s in range(4)))
        finally:
            await client.close()
        return results

    for s, result in enumerate(run_coroutine(asyncio.run, main())):
        np.testing.assert_array_equal(result.as_numpy("images"), gen.generate(1, seed=s))


def test_api_key_required_and_accepted(batcher):
    server = _server(batcher, keys=(KEY,))
    try:
        with grpcclient.InferenceServerClient(f"127.0.0.1:{server.port}") as c:
            assert c.is_server_live() and c.is_server_ready() and c.is_model_ready("dcgan")
            for headers in (None, {"authorization": "Bearer nope"}):
                with pytest.raises(grpcclient.InferenceServerException) as e:
                    c.infer("dcgan", [], parameters={"seed": 1}, headers=headers)
                assert e.value.status() == "StatusCode.UNAUTHENTICATED"
            for headers in ({"authorization": f"Bearer {KEY}"}, {"x-api-key": KEY}):
                result = c.infer("dcgan", [], parameters={"seed": 1}, headers=headers)
                assert result.as_numpy("images").shape == (1, 64, 64, 3)
    finally:
        server.stop(1)


def test_a_port_in_use_is_one_line(batcher, address):
    from runtime.errors import DcganError
    from serve.oip_grpc import GrpcServer
    from serve.oip_model import OipModel

    with pytest.raises(DcganError, match="port may be in use"):
        GrpcServer(OipModel(batcher, 32), lambda: True, address).start()


def test_dcgan_serve_with_grpc_port_api_key_and_cors(tiny_artifact, tmp_path, gen):
    import json
    import signal
    import subprocess
    import sys
    import time
    from pathlib import Path

    from serving import free_port, get

    keys = tmp_path / "keys"
    keys.write_text(KEY + "\n")
    port, grpc_port = free_port(), free_port()
    proc = subprocess.Popen(
        [sys.executable, "-m", "serve.cli", str(tiny_artifact), "--port", str(port), "--grpc-port",
         str(grpc_port), "--backend", "ort-cpu", "--max-batch", "8", "--api-key-file", str(keys),
         "--cors-origin", "https://a.example", "--cors-origin", "https://b.example"],
        cwd=Path(__file__).parents[1], stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    address = f"127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline and proc.poll() is None:
            try:
                if get(address, "/v2/health/ready")[0] == 200:
                    break
            except OSError:
                time.sleep(0.1)
        code, headers, body = get(address, "/v2/models/dcgan", {"Origin": "https://b.example"})
        assert code == 401 and headers["access-control-allow-origin"] == "https://b.example"
        assert "API key" in json.loads(body)["error"]
        with grpcclient.InferenceServerClient(f"127.0.0.1:{grpc_port}") as c:
            assert c.is_server_ready()
            result = c.infer("dcgan", [], parameters={"seed": 3, "n": 2},
                             headers={"authorization": f"Bearer {KEY}"})
            np.testing.assert_array_equal(result.as_numpy("images"), gen.generate(2, seed=3))
    finally:
        proc.send_signal(signal.SIGTERM)
        _, err = proc.communicate(timeout=60)
    assert proc.returncode == 0, err
    assert "gRPC (Open Inference Protocol) on" in err and "Traceback" not in err
