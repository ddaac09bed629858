"""The browser page at `/`: the artifact's web bundle (dcgan-export --format web) as static files.

Every file goes out with the cross-origin isolation headers (COOP same-origin, COEP require-corp):
browsers give SharedArrayBuffer, and so WebAssembly threads, only to isolated pages. One route per
file of the bundle and no catch-all, so the service's other routes are never shadowed.
"""

from __future__ import annotations

import json
from pathlib import Path

from starlette.requests import Request
from starlette.responses import FileResponse, Response
from starlette.routing import Route

from runtime.manifest import Manifest

ISOLATION = {"Cross-Origin-Opener-Policy": "same-origin", "Cross-Origin-Embedder-Policy": "require-corp"}
# browsers revalidate each file (a 304 while unchanged): a re-export is seen at the next load
CACHING = {"Cache-Control": "no-cache"}
MEDIA_TYPES = {".html": "text/html; charset=utf-8", ".js": "text/javascript", ".mjs": "text/javascript",
               ".wasm": "application/wasm", ".json": "application/json"}


def web_routes(manifest: Manifest) -> list[Route]:
    """Routes serving the artifact's web bundle at `/`; without one, `/` says how to build it."""
    web = manifest.web_dir
    if web is None or not (web / "index.html").is_file():
        return [Route("/", _no_page)]
    files = {p.relative_to(web).as_posix(): p for p in sorted(web.rglob("*")) if p.is_file()}
    return [Route("/", _file(files["index.html"]))] + [Route(f"/{name}", _file(path))
                                                       for name, path in files.items()]


def _file(path: Path):
    media_type = MEDIA_TYPES.get(path.suffix, "application/octet-stream")

    async def endpoint(request: Request) -> Response:
        response = FileResponse(path, media_type=media_type, headers={**ISOLATION, **CACHING},
                                stat_result=path.stat())
        etag = response.headers.get("etag")
        if etag and etag in [t.strip() for t in request.headers.get("if-none-match", "").split(",")]:
            return Response(status_code=304, headers={**ISOLATION, **CACHING, "ETag": etag})
        return response
    return endpoint


async def _no_page(request: Request) -> Response:
    message = "this artifact has no web page — re-export it with dcgan-export --format web (or all)"
    return Response(json.dumps({"error": message}) + "\n", status_code=404, media_type="application/json")
