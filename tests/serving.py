"""Test helpers for the service: a real uvicorn on 127.0.0.1 in a thread, a gated backend, raw
HTTP. Imported by the serve tests (this module holds no tests)."""

from __future__ import annotations

import contextlib
import socket
import threading
import time

from runtime import Generator


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@contextlib.contextmanager
def running(app, port: int | None = None):
    """Serve `app` with uvicorn on 127.0.0.1 in a thread (lifespan included); yields host:port."""
    import uvicorn

    port = port or free_port()
    server = uvicorn.Server(uvicorn.Config(app, host="127.0.0.1", port=port, log_level="warning",
                                           lifespan="on"))
    thread = threading.Thread(target=server.run, daemon=True)
    thread.start()
    deadline = time.monotonic() + 60
    while not server.started:
        if time.monotonic() > deadline or not thread.is_alive():
            raise RuntimeError("uvicorn did not start")
        time.sleep(0.02)
    try:
        yield f"127.0.0.1:{port}"
    finally:
        server.should_exit = True
        thread.join(30)


class GatedBackend:
    """Wraps a real backend: every call waits on `gate` first, and records its batch size."""

    def __init__(self, backend):
        self.backend, self.sizes = backend, []
        self.gate = threading.Event()
        self.gate.set()
        self.entry, self.name, self.max_batch = backend.entry, backend.name, backend.max_batch

    def infer(self, z):
        self.gate.wait(30)
        self.sizes.append(len(z))
        return self.backend.infer(z)


def gated(gen: Generator) -> tuple[Generator, GatedBackend]:
    backend = GatedBackend(gen.backend)
    return Generator(backend, gen.manifest), backend


def raw_request(address: str, data: bytes, timeout: float = 10) -> tuple[int, dict, bytes]:
    """Send `data` (a whole HTTP/1.1 request) on a fresh connection; (status, headers, body) of
    the answer, read until the server closes or Content-Length is reached."""
    host, port = address.split(":")
    with socket.create_connection((host, int(port)), timeout=timeout) as s:
        s.sendall(data)
        buf = b""
        while b"\r\n\r\n" not in buf:
            chunk = s.recv(65536)
            if not chunk:
                break
            buf += chunk
        head, _, body = buf.partition(b"\r\n\r\n")
        lines = head.decode("latin-1").split("\r\n")
        headers = {k.strip().lower(): v.strip() for k, _, v in (x.partition(":") for x in lines[1:])}
        length = int(headers.get("content-length", 0))
        while len(body) < length:
            chunk = s.recv(65536)
            if not chunk:
                break
            body += chunk
    return int(lines[0].split()[1]), headers, body


def post(address: str, path: str, body: bytes, headers: dict | None = None) -> tuple[int, dict, bytes]:
    extra = "".join(f"{k}: {v}\r\n" for k, v in (headers or {}).items())
    head = (f"POST {path} HTTP/1.1\r\nHost: x\r\nContent-Length: {len(body)}\r\n{extra}"
            "Connection: close\r\n\r\n")
    return raw_request(address, head.encode() + body)


def get(address: str, path: str, headers: dict | None = None) -> tuple[int, dict, bytes]:
    extra = "".join(f"{k}: {v}\r\n" for k, v in (headers or {}).items())
    return raw_request(address, f"GET {path} HTTP/1.1\r\nHost: x\r\n{extra}Connection: close\r\n\r\n"
                       .encode())
