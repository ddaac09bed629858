"""Embedding example: `runtime.Generator` inside a small HTTP service (standard library only).

    python -m runtime.service_example artifacts/dcgan --port 8000
    curl 'http://127.0.0.1:8000/image?seed=7&n=16' > grid.png

GET /image?seed=S&n=N returns images 0..N-1 of seed S as one PNG: the image itself for n=1,
a grid for more.
One Generator serves every request thread: it is thread-safe, and loading it once keeps the
per-request cost to inference and PNG encoding.
"""

from __future__ import annotations

import argparse
from http import HTTPStatus
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from urllib.parse import parse_qs, urlparse

from runtime import Generator
from runtime.images import encode_image, make_grid

MAX_IMAGES = 64


def make_handler(gen: Generator) -> type[BaseHTTPRequestHandler]:
    class ImageHandler(BaseHTTPRequestHandler):
        def do_GET(self) -> None:  # noqa: N802 - the stdlib's name
            url = urlparse(self.path)
            if url.path != "/image":
                self.send_error(HTTPStatus.NOT_FOUND, "try /image?seed=0&n=1")
                return
            query = parse_qs(url.query)
            try:
                seed = int(query.get("seed", ["0"])[0])
                n = int(query.get("n", ["1"])[0])
                if not 1 <= n <= MAX_IMAGES:
                    raise ValueError(f"n must be in 1..{MAX_IMAGES}")
                images = gen.generate(n, seed=seed)
            except ValueError as e:
                self.send_error(HTTPStatus.BAD_REQUEST, str(e))
                return
            body = encode_image(images[0] if n == 1 else make_grid(images))
            self.send_response(HTTPStatus.OK)
            self.send_header("Content-Type", "image/png")
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

        def log_message(self, format: str, *args) -> None:  # quiet by default
            pass

    return ImageHandler


def serve(gen: Generator, host: str = "127.0.0.1", port: int = 8000) -> ThreadingHTTPServer:
    """An HTTP server (not yet serving) that answers /image with `gen`."""
    return ThreadingHTTPServer((host, port), make_handler(gen))


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("artifact", nargs="?", default="artifacts/dcgan")
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, default=8000)
    args = parser.parse_args(argv)
    with Generator.load(args.artifact) as gen:
        server = serve(gen, args.host, args.port)
        print(f"serving {args.artifact} ({gen.backend_name}) on http://{args.host}:{server.server_port}/image")
        try:
            server.serve_forever()
        except KeyboardInterrupt:
            pass
        finally:
            server.server_close()


if __name__ == "__main__":
    main()
