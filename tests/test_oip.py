"""The Open Inference Protocol over REST, driven by Triton's own clients (tritonclient.http, sync
and asyncio) against a real uvicorn on 127.0.0.1: every route, JSON and binary both ways, the
images byte-equal to runtime.Generator, z and seed requests in one batch, every bad input, CORS
and API keys."""

import asyncio
import json
import threading
import time

import numpy as np
import pytest
from conftest import HAS_TORCH, run_coroutine
from serving import gated, get, post, raw_request, running

pytest.importorskip("starlette")
httpclient = pytest.importorskip("tritonclient.http")
pytestmark = pytest.mark.skipif(not HAS_TORCH, reason="the fixtures export with torch")
ORIGIN = "https://app.example"
KEY = "s3cret-key"
NZ = 16  # the tiny artifact's


@pytest.fixture(scope="module")
def served(gen):
    """(address, gated backend, batcher) of a real server over a gated copy of `gen`."""
    from runtime.batcher import Batcher
    from serve.app import Limits, create_app

    g, backend = gated(gen)
    with Batcher(g, max_batch=16) as batcher:
        app = create_app(batcher, Limits(max_images_per_request=32), cors_origins=(ORIGIN,))
        with running(app) as address:
            yield address, backend, batcher


@pytest.fixture
def client(served):
    c = httpclient.InferenceServerClient(served[0])
    yield c
    c.close()


def _z(n: int, seed: int = 0) -> np.ndarray:
    return np.random.default_rng(seed).standard_normal((n, NZ), dtype=np.float32)


def test_health_and_metadata_with_tritonclient(client):
    assert client.is_server_live() and client.is_server_ready()
    assert client.is_model_ready("dcgan") and client.is_model_ready("dcgan", "1")
    assert "binary_tensor_data" in client.get_server_metadata()["extensions"]
    meta = client.get_model_metadata("dcgan", "1")
    assert meta["name"] == "dcgan" and meta["versions"] == ["1"]
    assert meta["inputs"] == [{"name": "z", "datatype": "FP32", "shape": [-1, NZ]}]
    assert meta["outputs"] == [{"name": "images", "datatype": "UINT8", "shape": [-1, 64, 64, 3]}]


def test_config_is_the_model_config_export_writes(client, tiny_checkpoint, tmp_path):
    json_format = pytest.importorskip("google.protobuf.json_format")
    text_format = pytest.importorskip("google.protobuf.text_format")
    from tritonclient.grpc import model_config_pb2

    from export.triton import write_repository

    config = client.get_model_config("dcgan")
    assert config["max_batch_size"] == 32 and config["dynamic_batching"] is not None
    served = json_format.ParseDict(config, model_config_pb2.ModelConfig())
    # the repository export writes for the same model and limit: the same message
    onnx = tmp_path / "m.onnx"
    onnx.write_bytes(b"")
    write_repository(tmp_path / "repo", "dcgan", onnx, None, NZ, 64, 3, 32)
    written = text_format.Parse((tmp_path / "repo" / "dcgan" / "config.pbtxt").read_text(),
                                model_config_pb2.ModelConfig())
    assert served == written


@pytest.mark.parametrize("binary_in", [False, True])
@pytest.mark.parametrize("binary_out", [False, True])
def test_infer_z_json_and_binary_both_ways_is_byte_equal_to_generator(client, gen, binary_in,
                                                                     binary_out):
    z = _z(3, seed=int(binary_in) * 2 + int(binary_out))
    inp = httpclient.InferInput("z", list(z.shape), "FP32")
    inp.set_data_from_numpy(z, binary_data=binary_in)
    out = httpclient.InferRequestedOutput("images", binary_data=binary_out)
    result = client.infer("dcgan", [inp], outputs=[out], request_id="req-42")
    np.testing.assert_array_equal(result.as_numpy("images"), gen.from_latents(z))
    assert result.get_response()["id"] == "req-42"
    assert result.get_response()["model_version"] == "1"


def test_infer_without_outputs_answers_binary(client, gen):
    z = _z(2, seed=9)
    inp = httpclient.InferInput("z", [2, NZ], "FP32")
    inp.set_data_from_numpy(z)
    result = client.infer("dcgan", [inp], model_version="1")
    assert "data" not in result.get_output("images")
    np.testing.assert_array_equal(result.as_numpy("images"), gen.from_latents(z))


def test_seed_request_is_what_dcgan_generate_writes(client, gen, tiny_artifact, tmp_path):
    from PIL import Image

    from runtime.cli import app as generate_app
    from runtime.cli_support import run_app

    result = client.infer("dcgan", [], parameters={"seed": 7, "start": 12, "n": 3})
    images = result.as_numpy("images")
    np.testing.assert_array_equal(images, gen.generate(3, seed=7, start=12))
    assert run_app(generate_app, [str(tiny_artifact), "--seed", "7", "--start", "12", "-n", "3",
                                  "--out", str(tmp_path / "o"), "--backend", "ort-cpu"]) == 0
    for k in range(3):
        png = np.asarray(Image.open(tmp_path / "o" / f"{12 + k:06d}.png"))
        np.testing.assert_array_equal(images[k], png)
    big = 2**128 - 1  # a 128-bit seed travels as a canonical decimal string
    result = client.infer("dcgan", [], parameters={"seed": str(big), "start": str(2**100)})
    np.testing.assert_array_equal(result.as_numpy("images"), gen.generate(1, seed=big, start=2**100))


def test_asyncio_client(served, gen):
    aio = pytest.importorskip("tritonclient.http.aio")

    async def main():
        client = aio.InferenceServerClient(served[0])
        try:
            assert await client.is_server_ready()
            assert (await client.get_model_config("dcgan"))["name"] == "dcgan"
            inputs = []
            for k in range(4):
                inp = aio.InferInput("z", [1, NZ], "FP32")
                inp.set_data_from_numpy(_z(1, seed=100 + k), binary_data=k % 2 == 0)
                inputs.append(inp)
            return await asyncio.gather(*(client.infer("dcgan", [i]) for i in inputs))
        finally:
            await client.close()

    for k, result in enumerate(run_coroutine(asyncio.run, main())):
        np.testing.assert_array_equal(result.as_numpy("images"), gen.from_latents(_z(1, 100 + k)))


def test_z_and_seed_requests_are_coalesced_into_one_backend_call(served, gen):
    address, backend, batcher = served
    results = {}

    def call(name, **kwargs):
        with httpclient.InferenceServerClient(address) as c:
            results[name] = c.infer("dcgan", **kwargs).as_numpy("images")

    z = _z(2, seed=5)
    inp = httpclient.InferInput("z", [2, NZ], "FP32")
    inp.set_data_from_numpy(z)
    backend.gate.clear()
    try:
        blocker = threading.Thread(target=call, args=("blocker",),
                                   kwargs={"inputs": [], "parameters": {"seed": 1}})
        blocker.start()
        while not backend.sizes and batcher.queued_images:  # the blocker is taken (held at the gate)
            time.sleep(0.01)
        time.sleep(0.1)
        before = len(backend.sizes)
        threads = [threading.Thread(target=call, args=("z",), kwargs={"inputs": [inp]}),
                   threading.Thread(target=call, args=("seed",),
                                    kwargs={"inputs": [], "parameters": {"seed": 3, "n": 3}})]
        for t in threads:
            t.start()
        deadline = time.monotonic() + 30
        while batcher.queued_images < 5 and time.monotonic() < deadline:
            time.sleep(0.01)
    finally:
        backend.gate.set()
    for t in [blocker, *threads]:
        t.join(30)
    assert 5 in backend.sizes[before:]  # 2 latents and 3 seed images in one backend call
    np.testing.assert_array_equal(results["z"], gen.from_latents(z))
    np.testing.assert_array_equal(results["seed"], gen.generate(3, seed=3))


def _json_body(inputs=None, parameters=None, outputs=None) -> bytes:
    request = {"inputs": inputs if inputs is not None else []}
    if parameters is not None:
        request["parameters"] = parameters
    if outputs is not None:
        request["outputs"] = outputs
    return json.dumps(request).encode()


def _binary(z: np.ndarray, declared: int | None = None, extra: bytes = b"") -> tuple[bytes, dict]:
    raw = z.astype(np.float32).tobytes()
    header = json.dumps({"inputs": [{"name": "z", "datatype": "FP32", "shape": list(z.shape),
                                     "parameters": {"binary_data_size": declared or len(raw)}}]})
    return header.encode() + raw + extra, {"Inference-Header-Content-Length": len(header)}


Z1 = {"name": "z", "datatype": "FP32", "shape": [1, NZ], "data": [0.5] * NZ}
INFER = "/v2/models/dcgan/infer"


def _bad_cases():
    nan, nan_headers = _binary(np.full((1, NZ), np.nan, np.float32))
    inf, inf_headers = _binary(np.full((1, NZ), np.inf, np.float32))
    short, short_headers = _binary(_z(1), declared=NZ * 4 + 8)
    long, long_headers = _binary(_z(1), extra=b"\0" * 8)
    off, _ = _binary(_z(1))
    return [
        ("malformed JSON", b'{"inputs": [', {}, 400, "not valid JSON"),
        ("not an object", b"[1, 2]", {}, 400, "must be a JSON object"),
        ("binary shorter than declared", short, short_headers, 400, "shorter than"),
        ("binary longer than declared", long, long_headers, 400, "longer than"),
        ("header length past the body", off, {"Inference-Header-Content-Length": len(off) + 1},
         400, "but the body holds"),
        ("header length not canonical", off, {"Inference-Header-Content-Length": "+12"}, 400,
         "canonical decimal"),
        ("wrong datatype", _json_body([{**Z1, "datatype": "FP64"}]), {}, 400, "must be FP32"),
        ("unknown datatype", _json_body([{**Z1, "datatype": "COMPLEX"}]), {}, 400,
         "unknown datatype"),
        ("shape vs data", _json_body([{**Z1, "shape": [2, NZ]}]), {}, 400, "its data holds"),
        ("shape of the wrong rank", _json_body([{**Z1, "shape": [NZ]}]), {}, 400, "shape [N, 16]"),
        ("strings as data", _json_body([{**Z1, "data": ["1"] * NZ}]), {}, 400, "list of numbers"),
        ("N above the limit", _json_body([{**Z1, "shape": [33, NZ], "data": [0.0] * 33 * NZ}]),
         {}, 400, "above the limit of 32"),
        ("seed n above the limit", _json_body(parameters={"seed": 1, "n": 33}), {}, 400,
         "n must be in [1, 32]"),
        ("NaN in z (binary)", nan, nan_headers, 400, "NaN or inf"),
        ("Inf in z (binary)", inf, inf_headers, 400, "NaN or inf"),
        ("NaN in z (JSON)", b'{"inputs": [{"name": "z", "datatype": "FP32", "shape": [1, 16], '
         b'"data": [NaN, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0]}]}', {}, 400,
         "not a number JSON allows"),
        ("1e39 in z (inf as float32)", _json_body([{**Z1, "data": [1e39] * NZ}]), {}, 400,
         "NaN or inf"),
        ("both z and seed", _json_body([Z1], parameters={"seed": 1}), {}, 400, "got both"),
        ("neither", _json_body(), {}, 400, "no input"),
        ("unknown input", _json_body([{**Z1, "name": "x"}]), {}, 400, "unknown input"),
        ("unknown output", _json_body([Z1], outputs=[{"name": "nope"}]), {}, 400,
         "unknown output"),
        ("seed not canonical", _json_body(parameters={"seed": "+7"}), {}, 400, "canonical"),
        ("seed too large", _json_body(parameters={"seed": 2**128}), {}, 400, "seed must be in"),
        ("seed a float", _json_body(parameters={"seed": 1.5}), {}, 400, "whole number"),
        ("id not a string", b'{"id": 5, "parameters": {"seed": 1}}', {}, 400, "id must be"),
        ("deeply nested", b"[" * 20000, {}, 400, "nested too deeply"),
        ("compressed", _json_body([Z1]), {"Content-Encoding": "gzip"}, 415, "uncompressed"),
    ]


@pytest.mark.parametrize("name, body, headers, status, message", _bad_cases(),
                         ids=[c[0] for c in _bad_cases()])
def test_bad_input_is_a_4xx_with_one_line_and_the_server_stays_healthy(served, name, body,
                                                                       headers, status, message):
    code, _, answer = post(served[0], INFER, body, headers)
    error = json.loads(answer)["error"]
    assert code == status and message in error, (code, error)
    assert "\n" not in error
    assert get(served[0], "/v2/health/ready")[0] == 200


def test_unknown_model_or_version_is_404(client, served):
    for path in ("/v2/models/other", "/v2/models/dcgan/versions/2", "/v2/models/other/config",
                 "/v2/models/dcgan/versions/2/ready"):
        code, _, body = get(served[0], path)
        assert code == 404 and "unknown" in json.loads(body)["error"], path
    code, _, body = post(served[0], "/v2/models/dcgan/versions/7/infer", _json_body([Z1]))
    assert code == 404 and "unknown version" in json.loads(body)["error"]
    with pytest.raises(Exception, match="unknown model"):
        client.get_model_metadata("other")


def test_a_1gb_content_length_is_refused_before_reading(served):
    head = (f"POST {INFER} HTTP/1.1\r\nHost: x\r\nContent-Length: {10**9}\r\n\r\n").encode()
    code, _, body = raw_request(served[0], head + b'{"inputs": [')
    assert code == 413 and "above the limit" in json.loads(body)["error"]
    assert get(served[0], "/v2/health/ready")[0] == 200


def test_chunked_body_past_the_limit_is_refused(served):
    chunk = b"x" * 65536
    parts = b"".join(b"%x\r\n%s\r\n" % (len(chunk), chunk) for _ in range(40))  # 2.6 MB
    head = f"POST {INFER} HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n\r\n".encode()
    try:
        code, _, body = raw_request(served[0], head + parts + b"0\r\n\r\n")
    except ConnectionResetError:  # the server answered and closed while the rest was in flight
        code, body = 413, b'{"error": "above the limit"}'
    assert code == 413 and "above the limit" in json.loads(body)["error"]
    assert get(served[0], "/v2/health/ready")[0] == 200


def test_get_on_infer_is_405_in_the_protocol_shape(served):
    code, _, body = get(served[0], INFER)
    assert code == 405 and json.loads(body)["error"]


def test_cors_preflight_is_answered(served):
    code, headers, _ = raw_request(served[0], (
        f"OPTIONS {INFER} HTTP/1.1\r\nHost: x\r\nOrigin: {ORIGIN}\r\n"
        "Access-Control-Request-Method: POST\r\n"
        "Access-Control-Request-Headers: content-type, inference-header-content-length\r\n"
        "Connection: close\r\n\r\n").encode())
    assert code == 200 and headers["access-control-allow-origin"] == ORIGIN
    assert "POST" in headers["access-control-allow-methods"]
    code, headers, _ = get(served[0], "/v2/models/dcgan", {"Origin": ORIGIN})
    assert code == 200 and headers["access-control-allow-origin"] == ORIGIN
    assert "inference-header-content-length" in headers["access-control-expose-headers"].lower()
    code, headers, _ = raw_request(served[0], (
        f"OPTIONS {INFER} HTTP/1.1\r\nHost: x\r\nOrigin: https://evil.example\r\n"
        "Access-Control-Request-Method: POST\r\nConnection: close\r\n\r\n").encode())
    assert code == 400 and "access-control-allow-origin" not in headers


def test_openapi_covers_v1_and_v2(served):
    code, _, body = get(served[0], "/openapi.json")
    doc = json.loads(body)
    assert code == 200 and doc["openapi"].startswith("3.")
    for path in ("/v1/images/{seed}/{index}.png", "/v1/images", "/v2", "/v2/health/ready",
                 "/v2/models/{model}/infer", "/v2/models/{model}/versions/{version}/config"):
        assert path in doc["paths"], path


@pytest.fixture(scope="module")
def keyed(gen, tmp_path_factory):
    from runtime.batcher import Batcher
    from serve.app import create_app
    from serve.security import read_keys

    path = tmp_path_factory.mktemp("keys") / "keys.txt"
    path.write_text(f"# the service's keys\n{KEY}\n\nother-key\n")
    with Batcher(gen, max_batch=8) as batcher:
        app = create_app(batcher, cors_origins=(ORIGIN,), api_keys=read_keys(path))
        with running(app) as address:
            yield address


def test_api_key_required_and_accepted_health_stays_open(keyed):
    for path in ("/healthz", "/readyz", "/v2/health/live", "/v2/health/ready",
                 "/v2/models/dcgan/ready", "/v2/models/dcgan/versions/1/ready"):
        assert get(keyed, path)[0] == 200, path
    body = _json_body(parameters={"seed": 1})
    for headers in ({}, {"Authorization": "Bearer wrong"}, {"X-API-Key": "s3cret-ke"},
                    {"Authorization": f"Basic {KEY}"}):
        code, answer_headers, answer = post(keyed, INFER, body, headers)
        assert code == 401 and "API key" in json.loads(answer)["error"], headers
        assert answer_headers["www-authenticate"] == "Bearer"
    for path in ("/v1/images/1/1.png", "/v2/models/dcgan", "/metrics", "/v1/info"):
        assert get(keyed, path)[0] == 401, path
    assert post(keyed, INFER, body, {"Authorization": f"Bearer {KEY}"})[0] == 200
    assert post(keyed, INFER, body, {"X-API-Key": "other-key"})[0] == 200
    assert get(keyed, "/v1/images/1/1.png", {"X-API-Key": KEY})[0] == 200
    with httpclient.InferenceServerClient(keyed) as c:
        result = c.infer("dcgan", [], parameters={"seed": 1},
                         headers={"Authorization": f"Bearer {KEY}"})
        assert result.as_numpy("images").shape == (1, 64, 64, 3)
    # a browser's preflight carries no key: answered by CORS, not refused
    code, headers, _ = raw_request(keyed, (
        f"OPTIONS {INFER} HTTP/1.1\r\nHost: x\r\nOrigin: {ORIGIN}\r\n"
        "Access-Control-Request-Method: POST\r\nAccess-Control-Request-Headers: authorization\r\n"
        "Connection: close\r\n\r\n").encode())
    assert code == 200 and headers["access-control-allow-origin"] == ORIGIN


def test_an_empty_key_file_is_refused(tmp_path):
    from runtime.errors import DcganError
    from serve.security import read_keys

    (tmp_path / "k").write_text("# nothing\n\n")
    with pytest.raises(DcganError, match="holds no API key"):
        read_keys(tmp_path / "k")
