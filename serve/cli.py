"""dcgan-serve: serve an exported artifact over HTTP, with dynamic batching (pip install 'dcgan[serve]').

SIGTERM (or Ctrl-C): /readyz turns 503, requests in flight finish, the process exits 0.
"""

from __future__ import annotations

import logging
from pathlib import Path
from typing import Annotated

import typer

from runtime.backends import BACKENDS
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


@app.command()
def main_command(
    artifact: Annotated[Path | None, typer.Argument(
        help=f"Artifact directory [default: {DEFAULT_ARTIFACT}].", show_default=False)] = None,
    host: Annotated[str, typer.Option(help="Address to listen on.")] = "127.0.0.1",
    port: Annotated[int, typer.Option(min=0, max=65535, help="Port.")] = 8000,
    max_batch: Annotated[int, typer.Option(min=1, help="Most images per backend call.")] = 64,
    max_delay_ms: Annotated[float, typer.Option(min=0.0, help="How long a batch that is not full "
                                                "may wait for more requests (0: never).")] = 0.0,
    concurrency: Annotated[int, typer.Option(min=1, help="Batches in flight at once: with 2, the "
                                             "next batch runs while the last one's callers are "
                                             "answered.")] = 2,
    backend: Annotated[str, typer.Option(help=f"auto, {', '.join(BACKENDS)}.")] = "auto",
    precision: Annotated[str | None, typer.Option(help="fp32, fp16 or int8 model file.",
                                                  show_default=False)] = None,
    device: Annotated[int, typer.Option(min=0, help="CUDA device for GPU backends.")] = 0,
    max_images_per_request: Annotated[int, typer.Option(min=1, help="Largest n one request may "
                                                        "ask for.")] = 256,
    max_queue: Annotated[int, typer.Option(min=1, help="Most images queued; more gets 503.")] = 4096,
    timeout: Annotated[float, typer.Option(min=0.0, help="Seconds a request may wait in the queue "
                                           "(0: no limit).")] = 30.0,
    access_log: Annotated[bool, typer.Option(help="Log every request.")] = False,
    debug: Debug = False,
) -> None:
    """Serve images of an artifact: GET /v1/images/{seed}/{index}.png and friends (README)."""
    check_choice(backend, ("auto", *BACKENDS), "--backend")
    if precision is not None:
        check_choice(precision, FILE_PRECISIONS, "--precision")
    artifact = default_input(artifact, DEFAULT_ARTIFACT, "artifact", "dcgan-export", "artifacts/dcgan/")
    uvicorn, Limits, create_app = _imports()
    from runtime.batcher import Batcher
    from runtime.generator import Generator

    with Generator.load(artifact, backend=backend, device=device, precision=precision) as gen, \
            Batcher(gen, max_batch=max_batch, max_delay_ms=max_delay_ms, max_queue=max_queue,
                    timeout_s=timeout or None, concurrency=concurrency) as batcher:
        asgi = create_app(batcher, Limits(max_images_per_request=max_images_per_request))

        class Server(uvicorn.Server):
            def handle_exit(self, sig, frame) -> None:
                # SIGTERM/SIGINT: /readyz turns 503 at once, in-flight requests finish, and the
                # stop is the expected end of a service (exit 0), so uvicorn does not re-raise it
                asgi.state.service["draining"] = True
                super().handle_exit(sig, frame)
                self._captured_signals.clear()

        config = uvicorn.Config(asgi, host=host, port=port, access_log=access_log,
                                log_level="debug" if debug else "info", lifespan="on",
                                timeout_graceful_shutdown=max(5.0, timeout or 0.0),
                                h11_max_incomplete_event_size=16 * 1024)
        Server(config).run()
    log.info("stopped")


def main() -> None:
    from runtime.cli_support import run_app

    raise SystemExit(run_app(app, prog="dcgan-serve"))


if __name__ == "__main__":
    main()
