"""The service's part of data safety: work for clients that left is dropped, contradictory limits
are refused at startup, numbers have one spelling, numpy integers are ints, a port in use, SIGHUP,
a pipelining client that closes, and an oversized manifest. Real processes and sockets."""

import json
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest
from conftest import HAS_TORCH
from serving import free_port, gated, get, raw_request, running

pytest.importorskip("starlette")
pytestmark = pytest.mark.skipif(not HAS_TORCH, reason="the fixtures export with torch")
ROOT = Path(__file__).parents[1]


def test_numpy_integer_start_and_seed_are_not_image_zero(gen):
    from runtime.batcher import Batcher
    from runtime.latents import latents

    with Batcher(gen, max_batch=8) as batcher:
        got = batcher.generate(5, np.int64(1000), 8)
        assert not np.array_equal(got[0], gen.generate(1, seed=5, start=0)[0])
        np.testing.assert_array_equal(got, gen.generate(8, seed=5, start=1000))
        np.testing.assert_array_equal(batcher.generate(np.uint64(3), np.int32(2), np.int16(2)),
                                      gen.generate(2, seed=3, start=2))
    np.testing.assert_array_equal(latents(5, np.int64(10), 4, 16), latents(5, 10, 4, 16))


def test_clients_that_leave_cost_at_most_the_batches_already_running(gen):
    from runtime.batcher import Batcher
    from serve.app import Limits, create_app

    g, backend = gated(gen)
    clients, n, max_batch = 16, 256, 16
    with Batcher(g, max_batch=max_batch, max_queue=clients * n) as batcher:
        app = create_app(batcher, Limits(max_images_per_request=n))
        with running(app) as address:
            warm_up = len(backend.sizes)
            backend.gate.clear()  # the backend holds: every request queues
            try:
                host, port = address.split(":")
                socks = []
                for k in range(clients):
                    s = socket.create_connection((host, int(port)))
                    s.sendall(f"GET /v1/images?seed={k}&n={n}&format=npy HTTP/1.1\r\nHost: x\r\n\r\n"
                              .encode())
                    socks.append(s)
                deadline = time.monotonic() + 30
                while batcher.queued_images < clients * n - max_batch and time.monotonic() < deadline:
                    time.sleep(0.01)  # all queued, one batch taken by the worker (held at the gate)
                assert batcher.queued_images == clients * n - max_batch
                for s in socks:  # the clients leave
                    s.close()
                deadline = time.monotonic() + 10
                while batcher.queued_images and time.monotonic() < deadline:
                    time.sleep(0.01)
                assert batcher.queued_images == 0  # their queued work is gone
            finally:
                backend.gate.set()
            assert get(address, "/v1/images/1/1.png")[0] == 200  # and the server serves on
    # the batch already running when they left, and the last request: nothing of theirs queued
    assert sum(backend.sizes[warm_up:]) == max_batch + 1


@pytest.mark.parametrize("args, message", [
    (["--max-delay-ms", "5000", "--timeout", "1"], "longer than --timeout"),
    (["--max-images-per-request", "300", "--max-queue", "100"], "could never be queued"),
    (["--concurrency", "100000"], "--concurrency"),
])
def test_contradictory_or_absurd_limits_are_refused_with_one_line(tiny_artifact, capsys, args,
                                                                  message):
    from runtime.cli_support import run_app
    from serve.cli import app

    assert run_app(app, [str(tiny_artifact), "--port", "0", *args], prog="dcgan-serve") == 2
    err = capsys.readouterr().err
    assert err.startswith("error: ") and message in err and err.count("\n") == 1, err


def test_the_batcher_refuses_a_delay_past_its_timeout_and_absurd_concurrency(gen):
    from runtime.batcher import Batcher, TooLarge

    with pytest.raises(ValueError, match="longer than the timeout"):
        Batcher(gen, max_delay_ms=2000, timeout_s=1)
    with pytest.raises(ValueError, match="concurrency"):
        Batcher(gen, concurrency=100000)
    with Batcher(gen, max_queue=8) as batcher, pytest.raises(TooLarge, match="can never fit"):
        batcher.submit(0, 0, 9)


@pytest.mark.parametrize("path", ["/v1/images/+7/1.png", "/v1/images/4_2/1.png",
                                  "/v1/images/%D9%A4%D9%A2/1.png", "/v1/images/07/1.png",
                                  "/v1/images/7/%201.png", "/v1/images?seed=%2B7&format=npy",
                                  "/v1/images?seed=1&start=4_2&format=npy",
                                  "/v1/images?seed=1&n=%D9%A2&format=npy"])
def test_non_canonical_numbers_are_refused(gen, path):
    from starlette.testclient import TestClient

    from runtime.batcher import Batcher
    from serve.app import create_app

    with Batcher(gen, max_batch=4) as b, TestClient(create_app(b)) as client:
        r = client.get(path)
    assert r.status_code == 400 and "canonical decimal" in r.json()["error"]


def test_a_manifest_above_the_limit_is_refused(tiny_artifact, tmp_path):
    import shutil

    from runtime import Generator
    from runtime.errors import ArtifactError

    art = tmp_path / "art"
    shutil.copytree(tiny_artifact, art)
    data = json.loads((art / "manifest.json").read_text())
    data["padding"] = "x" * (2 * 1024 * 1024)
    (art / "manifest.json").write_text(json.dumps(data))
    with pytest.raises(ArtifactError, match="above the 1048576 bytes a manifest may have"):
        Generator.load(art, backend="ort-cpu")


def _serve(artifact, port, *args):
    return subprocess.Popen([sys.executable, "-m", "serve.cli", str(artifact), "--port", str(port),
                             "--backend", "ort-cpu", *args],
                            cwd=ROOT, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)


def test_a_port_in_use_is_one_line_before_the_model_loads(tiny_artifact):
    with socket.socket() as holder:
        holder.bind(("127.0.0.1", 0))
        holder.listen()
        port = holder.getsockname()[1]
        proc = _serve(tiny_artifact, port)
        _, err = proc.communicate(timeout=60)
    assert proc.returncode == 1
    assert err.startswith("error: port") and "already in use" in err and err.count("\n") == 1, err
    assert "ready:" not in err  # refused before the model loaded


def _ready(address: str, proc) -> None:
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline and proc.poll() is None:
        try:
            if get(address, "/readyz")[0] == 200:
                return
        except OSError:
            time.sleep(0.1)
    raise AssertionError(proc.stderr.read() if proc.poll() is not None else "not ready")


def test_a_pipelining_client_that_closes_leaves_no_traceback_and_sighup_drains(tiny_artifact):
    port = free_port()
    address = f"127.0.0.1:{port}"
    proc = _serve(tiny_artifact, port)
    try:
        _ready(address, proc)
        for _ in range(5):  # pipelined requests, and the client gone before the answers
            s = socket.create_connection(("127.0.0.1", port))
            s.sendall(b"GET /v1/images?seed=1&n=200&format=npy HTTP/1.1\r\nHost: x\r\n\r\n" * 5)
            s.close()
            time.sleep(0.2)
        assert get(address, "/healthz")[0] == 200
        # SIGHUP with a request in flight: it is answered in full, and the server exits 0
        s = socket.create_connection(("127.0.0.1", port), timeout=30)
        s.sendall(b"GET /v1/images?seed=2&n=256&format=npy HTTP/1.1\r\nHost: x\r\n"
                  b"Connection: close\r\n\r\n")
        time.sleep(0.02)
        proc.send_signal(signal.SIGHUP)
        answer = b""
        while chunk := s.recv(1 << 20):
            answer += chunk
        s.close()
        _, err = proc.communicate(timeout=60)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.communicate()
    assert answer.startswith(b"HTTP/1.1 200"), answer[:200]
    head, _, body = answer.partition(b"\r\n\r\n")
    assert np.load(__import__("io").BytesIO(body)).shape == (256, 64, 64, 3)
    assert proc.returncode == 0, err
    assert "SIGHUP: draining" in err and "Traceback" not in err, err


def test_a_1gb_content_length_on_a_get_route_is_refused_unread(gen):
    from runtime.batcher import Batcher
    from serve.app import create_app

    with Batcher(gen, max_batch=4) as b, running(create_app(b)) as address:
        code, _, body = raw_request(address, b"GET /v1/images/1/1.png HTTP/1.1\r\nHost: x\r\n"
                                    b"Content-Length: 1000000000\r\n\r\nxx")
        assert code == 413 and "not accepted" in json.loads(body)["error"]
        assert get(address, "/healthz")[0] == 200
