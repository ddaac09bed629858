"""dcgan-serve: every route and bad input in-process, and one real uvicorn process on 127.0.0.1."""

import io
import json
import signal
import socket
import subprocess
import sys
import time
import urllib.error
import urllib.request
from pathlib import Path

import numpy as np
import pytest
from conftest import HAS_TORCH, run_coroutine
from PIL import Image

pytest.importorskip("starlette")
pytest.importorskip("httpx2")
pytestmark = pytest.mark.skipif(not HAS_TORCH, reason="the fixtures export with torch")
ROOT = Path(__file__).parents[1]


@pytest.fixture(scope="module")
def service(tiny_artifact):
    from starlette.testclient import TestClient

    from runtime import Generator
    from runtime.batcher import Batcher
    from serve.app import Limits, create_app

    with Generator.load(tiny_artifact, backend="ort-cpu") as gen, Batcher(gen, max_batch=16) as b:
        app = create_app(b, Limits(max_images_per_request=32))
        with TestClient(app) as client:  # runs the lifespan: warm-up, then ready
            yield client, gen


def _png(body: bytes) -> np.ndarray:
    return np.asarray(Image.open(io.BytesIO(body)))


def test_one_image_matches_generate_with_etag_and_304(service, tiny_artifact, tmp_path):
    client, gen = service
    r = client.get("/v1/images/7/12.png")
    assert r.status_code == 200 and r.headers["content-type"] == "image/png"
    np.testing.assert_array_equal(_png(r.content), gen.generate(1, seed=7, start=12)[0])
    # the same bytes dcgan-generate writes for that seed and index
    from runtime.cli import app as generate_app
    from runtime.cli_support import run_app

    assert run_app(generate_app, [str(tiny_artifact), "--seed", "7", "--start", "12", "-n", "1",
                                  "--out", str(tmp_path / "o"), "--backend", "ort-cpu"]) == 0
    assert r.content == (tmp_path / "o" / "000012.png").read_bytes()
    assert r.headers["cache-control"] == "public, max-age=31536000, immutable"
    tag = r.headers["etag"]
    again = client.get("/v1/images/7/12.png", headers={"If-None-Match": tag})
    assert again.status_code == 304 and again.content == b""
    assert client.get("/v1/images/7/13.png").headers["etag"] != tag


def test_many_images_npy_grid_and_fresh_seed(service):
    client, gen = service
    r = client.get("/v1/images?seed=3&start=4&n=5&format=npy")
    assert r.status_code == 200
    np.testing.assert_array_equal(np.load(io.BytesIO(r.content)), gen.generate(5, seed=3, start=4))
    grid = client.get("/v1/images?seed=3&n=4&format=grid")
    assert grid.status_code == 200 and _png(grid.content).shape == (2 * 66 + 2, 2 * 66 + 2, 3)
    fresh = client.get("/v1/images")
    assert fresh.headers["cache-control"] == "no-store"
    seed = int(fresh.headers["x-seed"])
    np.testing.assert_array_equal(_png(fresh.content), gen.generate(1, seed=seed)[0])


@pytest.mark.parametrize("path, status, message", [
    ("/v1/images/abc/1.png", 400, "seed must be a whole number"),
    ("/v1/images/-1/1.png", 400, "seed must be"),
    (f"/v1/images/1/{2**128}.png", 400, "index must be in"),
    ("/v1/images?n=0", 400, "n must be in"),
    ("/v1/images?n=33&format=npy", 400, "n must be in [1, 32]"),
    ("/v1/images?n=2&format=png", 400, "use format=grid or format=npy"),
    ("/v1/images?format=gif", 400, "format must be one of"),
    ("/v1/images?seed=1&bogus=2", 400, "unknown query parameter"),
    ("/nope", 404, ""),
])
def test_bad_input_is_a_4xx_with_one_line_json_and_the_server_stays_healthy(service, path, status,
                                                                         message):
    client, _ = service
    r = client.get(path)
    assert r.status_code == status
    assert message in r.json()["error"] and "\n" not in r.json()["error"]
    assert client.get("/healthz").status_code == 200


def test_oversized_body_and_header_are_refused(service):
    client, _ = service
    r = client.request("GET", "/v1/images/1/1.png", content=b"x" * 4096)
    assert r.status_code == 413 and "bodies are not accepted" in r.json()["error"]
    assert client.get("/healthz").status_code == 200


def test_health_readiness_info_and_metrics(service):
    client, _ = service
    assert client.get("/healthz").json() == {"status": "alive"}
    assert client.get("/readyz").status_code == 200
    info = client.get("/v1/info").json()
    assert info["backend"] == "ort-cpu" and info["limits"]["max_batch"] == 16
    assert info["limits"]["concurrency"] == 1
    assert info["manifest"]["model"]["nz"] == 16
    client.get("/v1/images/1/1.png")
    # the image routes skip the router (serve/hot_routes.py): still counted, errors too
    assert client.post("/v2/models/dcgan/infer", json={"parameters": {"seed": 1}}).status_code == 200
    assert client.post("/v2/models/other/infer", json={"parameters": {"seed": 1}}).status_code == 404
    text = client.get("/metrics").text
    for name in ("dcgan_requests_total", "dcgan_request_seconds_bucket", "dcgan_queue_seconds",
                 "dcgan_batch_size_bucket", "dcgan_images_generated_total",
                 "dcgan_queue_depth_images", "dcgan_build_info"):
        assert name in text, name
    assert 'code="200",route="/v1/images/{seed}/{index}.png"' in text
    for code in (200, 404):
        assert f'dcgan_requests_total{{code="{code}",route="/v2/models/{{model}}/infer"}} 1.0' in text


def test_overload_is_503_with_retry_after_and_a_request_that_can_never_fit_is_400(tiny_artifact):
    from starlette.testclient import TestClient

    from runtime import Generator
    from runtime.batcher import Batcher
    from serve.app import create_app

    with Generator.load(tiny_artifact, backend="ort-cpu") as gen, \
            Batcher(gen, max_batch=4, max_queue=4) as b:
        with TestClient(create_app(b)) as client:
            never = client.get("/v1/images?n=5&format=npy")  # 5 images, a queue of 4: never fits
            b._queued_images += 4  # the queue is full (as if 4 images were waiting)
            try:
                r = client.get("/v1/images?n=2&format=npy")
            finally:
                b._queued_images -= 4
    assert never.status_code == 400 and "can never fit the queue of 4" in never.json()["error"]
    assert r.status_code == 503 and r.headers["retry-after"] == "1"
    assert "retry" in r.json()["error"]


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _get(url: str, timeout: float = 10):
    try:
        with urllib.request.urlopen(url, timeout=timeout) as r:
            return r.status, r.read()
    except urllib.error.HTTPError as e:
        return e.code, e.read()


def test_real_server_serves_and_drains_on_sigterm(tiny_artifact):
    port = _free_port()
    proc = subprocess.Popen([sys.executable, "-m", "serve.cli", str(tiny_artifact), "--port",
                             str(port), "--max-batch", "8", "--backend", "ort-cpu"],
                            cwd=ROOT, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    base = f"http://127.0.0.1:{port}"
    try:
        deadline = time.time() + 60
        while time.time() < deadline:
            try:
                if _get(base + "/readyz", 1)[0] == 200:
                    break
            except OSError:
                time.sleep(0.1)
        status, body = _get(base + "/v1/images/5/3.png")
        assert status == 200 and _png(body).shape == (64, 64, 3)
        status, body = _get(base + "/v1/images/x/3.png")
        assert status == 400 and "seed" in json.loads(body)["error"]
        huge = urllib.request.Request(base + "/healthz", headers={"X-Big": "y" * 70000})
        try:
            status = urllib.request.urlopen(huge, timeout=10).status
        except urllib.error.HTTPError as e:
            status = e.code
        except OSError:  # the server may close the connection instead of answering
            status = "closed"
        assert status in (400, 431, "closed")
        assert _get(base + "/healthz")[0] == 200  # and it stays healthy
    finally:
        proc.send_signal(signal.SIGTERM)
        _, err = proc.communicate(timeout=30)
    assert proc.returncode == 0, err
    assert "Traceback" not in err


def test_load_benchmark_drives_a_real_server_with_keep_alive_clients(tiny_artifact):
    from benchmarks.serve_load import InProcess, _run_loop, _serve_runs, markdown

    reference = InProcess(tiny_artifact)
    try:
        rows = run_coroutine(_run_loop, _serve_runs(tiny_artifact, 8, 2, [1, 4], 1.0, reference,
                                                    oip_clients=[2]))
        summary = reference.summary()
    finally:
        reference.close()
    assert len(reference.rates) == len(rows) + 1  # one in-process run before, and after, each row
    assert [(r["protocol"], r["clients"]) for r in rows] == [("v1", 1), ("v1", 4), ("oip-binary", 2),
                                                             ("oip-json", 2)]
    for row in rows:
        assert row["requests"] > 0 and row["errors"] == 0 and row["mean_batch"] >= 1.0
        assert row["p50_ms"] <= row["p99_ms"]
        assert row["server_cpu_ms"] > 0 and row["load_cpu_ms"] > 0
        assert min(reference.rates) <= row["in_process_images_per_s"] <= max(reference.rates)
    text = markdown({"machine": {"cpu": "cpu", "cores": 2}, "seconds": 1.0, "in_process": summary,
                     "rows": rows})
    assert text.count("| oip-binary |") == 1 and f"{summary['generate1_p50_ms']:.2f} ms" in text
