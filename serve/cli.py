"""dcgan-serve: serve an exported artifact over HTTP (and gRPC), with dynamic batching
(pip install 'dcgan[serve]').

SIGTERM, SIGINT or SIGHUP: /readyz turns 503, requests in flight finish, the process exits 0
(SIGHUP too: a closed terminal or a supervisor's hang-up never drops a request half-way).
Limits that contradict each other, and a port already in use, are refused at startup with one
line, before the model is loaded.
"""

from __future__ import annotations

import contextlib
import errno
import logging
import signal
import socket
from pathlib import Path
from typing import Annotated

import typer

from runtime.backends import BACKENDS
from runtime.batcher import MAX_CONCURRENCY
from runtime.cli_support import Debug, check_choice, default_input, new_app
from runtime.errors import DcganError
from runtime.manifest import FILE_PRECISIONS

log = logging.getLogger("dcgan-serve")
app = new_app(__doc__)
DEFAULT_ARTIFACT = Path("artifacts/dcgan")


def _imports():
    try:
        import uvicorn

        from serve.app import Limits, create_app
    except ImportError as e:
        raise DcganError(f"{e.name} is not installed — pip install 'dcgan[serve]'") from None
    return uvicorn, Limits, create_app


def check_limits(max_delay_ms: float, timeout: float, max_images_per_request: int,
                 max_queue: int) -> None:
    """Refuse limits that contradict each other (a usage error, exit 2)."""
    if timeout and max_delay_ms / 1000 > timeout:
        raise typer.BadParameter(f"--max-delay-ms {max_delay_ms:g} is longer than --timeout "
                                 f"{timeout:g} s: a held batch would expire before it runs — "
                                 "lower --max-delay-ms or raise --timeout")
    if max_images_per_request > max_queue:
        raise typer.BadParameter(f"--max-images-per-request {max_images_per_request} is above "
                                 f"--max-queue {max_queue}: such a request could never be queued "
                                 "— raise --max-queue or lower --max-images-per-request")


def bind(host: str, port: int, what: str = "--port") -> socket.socket:
    """A socket bound to (host, port), or one line saying why not (a port in use above all)."""
    try:
        family = socket.getaddrinfo(host, port, type=socket.SOCK_STREAM)[0][0]
        sock = socket.socket(family, socket.SOCK_STREAM)
    except OSError as e:
        raise DcganError(f"cannot listen on {host} ({e.strerror or e}) — check --host") from None
    try:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        sock.bind((host, port))
    except OSError as e:
        sock.close()
        if e.errno == errno.EADDRINUSE:
            raise DcganError(f"port {port} on {host} is already in use — stop what listens there "
                             f"or pick another {what}") from None
        raise DcganError(f"cannot listen on {host}:{port} ({e.strerror or e}) — pick another "
                         f"{what} or --host") from None
    return sock


@app.command()
def serve_command(
    artifact: Annotated[Path | None, typer.Argument(
        help=f"Artifact directory [default: {DEFAULT_ARTIFACT}].", show_default=False)] = None,
    host: Annotated[str, typer.Option(help="Address to listen on.")] = "127.0.0.1",
    port: Annotated[int, typer.Option(min=0, max=65535, help="Port.")] = 8000,
    grpc_port: Annotated[int | None, typer.Option(
        min=0, max=65535, help="Also serve the Open Inference Protocol over gRPC on this port "
        "(Triton's GRPCInferenceService; off by default).", show_default=False)] = None,
    max_batch: Annotated[int, typer.Option(min=1, help="Most images per backend call.")] = 64,
    max_delay_ms: Annotated[float, typer.Option(min=0.0, help="How long a batch that is not full "
                                                "may wait for more requests (0: never).")] = 0.0,
    concurrency: Annotated[int, typer.Option(min=1, max=MAX_CONCURRENCY, help="Batches in "
                                             "flight at once: with 2, the next batch runs while "
                                             "the last one's callers are answered.")] = 2,
    backend: Annotated[str, typer.Option(help=f"auto, {', '.join(BACKENDS)}.")] = "auto",
    precision: Annotated[str | None, typer.Option(help="fp32, fp16 or int8 model file.",
                                                  show_default=False)] = None,
    device: Annotated[int, typer.Option(min=0, help="CUDA device for GPU backends.")] = 0,
    max_images_per_request: Annotated[int, typer.Option(min=1, help="Largest n one request may "
                                                        "ask for.")] = 256,
    max_queue: Annotated[int, typer.Option(min=1, help="Most images queued; more gets 503.")] = 4096,
    timeout: Annotated[float, typer.Option(min=0.0, help="Seconds a request may wait in the queue "
                                           "(0: no limit).")] = 30.0,
    cors_origin: Annotated[list[str] | None, typer.Option(
        help="An origin whose browser pages may call the API (repeatable), e.g. "
        "https://app.example.", show_default=False)] = None,
    api_key_file: Annotated[Path | None, typer.Option(
        help="Require one of the keys in this file (one per line) as `Authorization: Bearer` "
        "or `X-API-Key` on every route but health and readiness.", show_default=False)] = None,
    access_log: Annotated[bool, typer.Option(help="Log every request.")] = False,
    debug: Debug = False,
) -> None:
    """Serve images of an artifact: /v1 (GET /v1/images/{seed}/{index}.png and friends) and the
    Open Inference Protocol (/v2, and gRPC with --grpc-port) (README)."""
    check_choice(backend, ("auto", *BACKENDS), "--backend")
    if precision is not None:
        check_choice(precision, FILE_PRECISIONS, "--precision")
    check_limits(max_delay_ms, timeout, max_images_per_request, max_queue)
    artifact = default_input(artifact, DEFAULT_ARTIFACT, "artifact", "dcgan-export", "artifacts/dcgan/")
    uvicorn, Limits, create_app = _imports()
    from runtime.batcher import Batcher
    from runtime.generator import Generator
    from serve.security import read_keys

    keys = read_keys(api_key_file) if api_key_file is not None else ()
    sock = bind(host, port)  # before the model loads: a port in use is one line, at once
    if grpc_port is not None:
        bind(host, grpc_port, "--grpc-port").close()  # in use: the same line, before loading
    with contextlib.closing(sock), \
            Generator.load(artifact, backend=backend, device=device, precision=precision,
                           spin_wait=False) as gen, \
            Batcher(gen, max_batch=max_batch, max_delay_ms=max_delay_ms, max_queue=max_queue,
                    timeout_s=timeout or None, concurrency=concurrency) as batcher:
        limits = Limits(max_images_per_request=max_images_per_request)
        asgi = create_app(batcher, limits, cors_origins=tuple(cors_origin or ()), api_keys=keys)
        state = asgi.state.service

        class Server(uvicorn.Server):
            def handle_exit(self, sig, frame) -> None:
                # SIGTERM/SIGINT/SIGHUP: /readyz turns 503 at once, in-flight requests finish, and
                # the stop is the expected end of a service (exit 0), so uvicorn does not re-raise it
                log.info("%s: draining", signal.Signals(sig).name)
                state["draining"] = True
                super().handle_exit(signal.SIGTERM if sig == signal.SIGHUP else sig, frame)
                self._captured_signals.clear()

            @contextlib.contextmanager
            def capture_signals(self):
                previous = signal.signal(signal.SIGHUP, self.handle_exit)
                try:
                    with super().capture_signals():
                        yield
                finally:
                    signal.signal(signal.SIGHUP, previous)

        config = uvicorn.Config(asgi, host=host, port=sock.getsockname()[1], access_log=access_log,
                                log_level="debug" if debug else "info", lifespan="on",
                                timeout_graceful_shutdown=max(5.0, timeout or 0.0),
                                h11_max_incomplete_event_size=16 * 1024)
        grpc_server = None
        if grpc_port is not None:
            from serve.oip_grpc import GrpcServer

            grpc_server = GrpcServer(asgi.state.oip, lambda: state["ready"] and not state["draining"],
                                     f"{host}:{grpc_port}", keys).start()
        try:
            Server(config).run(sockets=[sock])
        finally:
            if grpc_server is not None:
                grpc_server.stop(grace_s=max(5.0, timeout or 0.0))
    log.info("stopped")


def main() -> None:
    from runtime.cli_support import run_app

    raise SystemExit(run_app(app, prog="dcgan-serve"))


if __name__ == "__main__":
    main()
