"""The ASGI app: routes, errors, metrics, readiness, over one Batcher.

Built by `create_app(batcher, limits)`, so tests drive it in-process with Starlette's TestClient
and production runs the same app under uvicorn (serve/cli.py).

    GET /v1/images/{seed}/{index}.png   one image (what dcgan-generate writes for it); immutable, ETag
    GET /v1/images?seed=&start=&n=&format=png|npy|grid   several; no seed: a fresh one (X-Seed)
    GET /healthz    alive            GET /readyz   200 once warm, 503 while starting or draining
    GET /v1/info    model, backend, limits          GET /metrics   Prometheus text
    GET /           the browser page, where the artifact has one (serve/web.py)
    /v2/...         the Open Inference Protocol (serve/oip.py)   GET /openapi.json   this API

Every image request, whatever its route, goes through the one batcher, and is dropped from its
queue when the client disconnects (serve/checks.py). With `api_keys`, every route but health and
readiness needs a key; with `cors_origins`, browsers on those origins may call it
(serve/security.py).
"""

from __future__ import annotations

import hashlib
import io
import json
import logging
import secrets
import time
from contextlib import asynccontextmanager
from dataclasses import asdict, dataclass

import numpy as np
from prometheus_client import (
    CONTENT_TYPE_LATEST,
    CollectorRegistry,
    Counter,
    Gauge,
    Histogram,
    generate_latest,
)
from starlette.applications import Starlette
from starlette.concurrency import run_in_threadpool
from starlette.exceptions import HTTPException
from starlette.middleware import Middleware
from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Route

from runtime.batcher import Batcher, BatcherClosed, BatchStats, DeadlineExceeded, Overloaded
from runtime.images import encode_image, make_grid
from runtime.latents import MAX_INDEX, MAX_SEED
from serve.checks import (
    BadRequest,
    ClientGone,
    ForgetGoneClients,
    canonical_int,
    declared_length,
    error,
    unless_gone,
)
from serve.hot_routes import HotRoutes
from serve.oip import OipRest
from serve.oip_model import OipModel
from serve.openapi import openapi
from serve.security import OPEN_PATHS, secure
from serve.web import web_routes

log = logging.getLogger("dcgan-serve")
IMMUTABLE = "public, max-age=31536000, immutable"
FORMATS = ("png", "npy", "grid")
MAX_BODY_BYTES = 1024  # on a GET route a body is a client error, not something to read
MAX_HEADER_BYTES = 16 * 1024


@dataclass(frozen=True)
class Limits:
    max_images_per_request: int = 256
    retry_after_s: int = 1


class Metrics:
    """The service's Prometheus metrics, in their own registry (base units, _total counters,
    labels of low cardinality: the route template and the status code, never the seed)."""

    def __init__(self, max_batch: int, info: dict):
        self.registry = r = CollectorRegistry()
        self.requests = Counter("dcgan_requests_total", "HTTP requests", ["route", "code"], registry=r)
        self.request_seconds = Histogram("dcgan_request_seconds", "Request latency", ["route"],
                                         registry=r)
        self.queue_seconds = Histogram("dcgan_queue_seconds", "Time a request piece waited for "
                                       "its batch", registry=r)
        buckets = sorted({1, 2, 4, 8, 16, 32, 64, 128, 256, max_batch} & set(range(1, max_batch + 1)))
        self.batch_size = Histogram("dcgan_batch_size", "Images per backend call",
                                    buckets=[*buckets, float("inf")], registry=r)
        self.images = Counter("dcgan_images_generated_total", "Images generated", registry=r)
        self.queue_depth = Gauge("dcgan_queue_depth_images", "Images waiting for a batch", registry=r)
        build = Gauge("dcgan_build_info", "The model and backend served", list(info), registry=r)
        build.labels(**info).set(1)

    def on_batch(self, stats: BatchStats) -> None:
        self.batch_size.observe(stats.images)
        self.images.inc(stats.images)
        for seconds in stats.queue_seconds:
            self.queue_seconds.observe(seconds)


def _int(value: str | None, name: str, lo: int, hi: int, default: int | None = None) -> int:
    if value is None:
        if default is None:
            raise BadRequest(f"missing {name}")
        return default
    return canonical_int(value, name, lo, hi)


def create_app(batcher: Batcher, limits: Limits = Limits(), cors_origins: tuple[str, ...] = (),
               api_keys: tuple[str, ...] = ()) -> Starlette:
    """The service around `batcher` (which owns an open Generator).

    Args:
        batcher: the one Batcher every image request goes through.
        limits: per-request limits.
        cors_origins: origins whose browsers may call the API (preflight answered); none: no CORS.
        api_keys: keys accepted as `Authorization: Bearer K` or `X-API-Key: K`; none: open.
    """
    gen = batcher.generator
    entry = gen.model_file
    model = {"model_sha256": entry.sha256, "backend": gen.backend_name, "precision": entry.precision}
    metrics = Metrics(batcher.max_batch, model)
    batcher.on_batch = metrics.on_batch
    state = {"ready": False, "draining": False}

    def etag(seed: int, index: int) -> str:
        key = f"{entry.sha256}:{gen.backend_name}:{entry.precision}:{seed}:{index}"
        return '"' + hashlib.sha256(key.encode()).hexdigest()[:32] + '"'

    async def images(request: Request, seed: int, start: int, n: int) -> np.ndarray:
        metrics.queue_depth.set(batcher.queued_images + n)
        try:
            return await unless_gone(request, batcher.submit(seed, start, n))
        finally:
            metrics.queue_depth.set(batcher.queued_images)

    async def one_image(request: Request) -> Response:
        seed = _int(request.path_params["seed"], "seed", 0, MAX_SEED)
        index = _int(request.path_params["index"], "index", 0, MAX_INDEX)
        tag = etag(seed, index)
        headers = {"ETag": tag, "Cache-Control": IMMUTABLE}
        if tag in [t.strip() for t in request.headers.get("if-none-match", "").split(",")]:
            return Response(status_code=304, headers=headers)
        # one 64x64 PNG encodes in a fraction of a millisecond: on the event loop it costs less
        # than the hop to a worker thread and back (p50 at one client 4.1 -> 2.6 ms, serve.md)
        png = encode_image((await images(request, seed, index, 1))[0], "png")
        return Response(png, media_type="image/png", headers=headers)

    async def many_images(request: Request) -> Response:
        q = request.query_params
        unknown = set(q) - {"seed", "start", "n", "format"}
        if unknown:
            raise BadRequest(f"unknown query parameter(s): {', '.join(sorted(unknown))}")
        fmt = q.get("format", "png")
        if fmt not in FORMATS:
            raise BadRequest(f"format must be one of {', '.join(FORMATS)}, got {fmt!r}")
        n = _int(q.get("n"), "n", 1, limits.max_images_per_request, default=1)
        start = _int(q.get("start"), "start", 0, MAX_INDEX - n + 1, default=0)
        fresh = "seed" not in q
        seed = secrets.randbits(63) if fresh else _int(q.get("seed"), "seed", 0, MAX_SEED)
        if fmt == "png" and n != 1:
            raise BadRequest("format=png holds one image — use format=grid or format=npy for n > 1")
        batch = await images(request, seed, start, n)
        if fmt == "npy":
            buf = io.BytesIO()
            np.save(buf, batch)
            body, media = buf.getvalue(), "application/octet-stream"
        elif fmt == "png":
            body, media = encode_image(batch[0], "png"), "image/png"
        else:  # a contact sheet of up to max_images_per_request images: off the event loop
            body, media = await run_in_threadpool(encode_image, make_grid(batch), "png"), "image/png"
        headers = {"X-Seed": str(seed), "Cache-Control": "no-store" if fresh else IMMUTABLE}
        return Response(body, media_type=media, headers=headers)

    async def healthz(request: Request) -> Response:
        return JSONResponse({"status": "alive"})

    async def readyz(request: Request) -> Response:
        ready = state["ready"] and not state["draining"]
        return JSONResponse({"ready": ready, "draining": state["draining"]},
                            status_code=200 if ready else 503)

    # encoded once: the manifest is bounded (runtime/manifest.py) and never changes while served
    info_body = json.dumps({"manifest": gen.info, "backend": gen.backend_name,
                            "precision": entry.precision, "model_file": entry.name,
                            "limits": {**asdict(limits), "max_batch": batcher.max_batch,
                                       "max_delay_ms": batcher.max_delay * 1000,
                                       "max_queue_images": batcher.max_queue,
                                       "timeout_s": batcher.timeout_s,
                                       "concurrency": batcher.concurrency}}).encode()

    async def info(request: Request) -> Response:
        return Response(info_body, media_type="application/json")

    async def openapi_json(request: Request) -> Response:
        return Response(openapi_body, media_type="application/json")

    async def prometheus(request: Request) -> Response:
        metrics.queue_depth.set(batcher.queued_images)
        return Response(generate_latest(metrics.registry), media_type=CONTENT_TYPE_LATEST)

    def measured(route: str, endpoint, max_body: int = 0):
        """`endpoint` with its errors answered in one shape and counted; `max_body` 0: a GET,
        whose body (beyond a few stray bytes) is refused unread."""
        latency = metrics.request_seconds.labels(route)
        counters = {}  # status code -> its counter: labels() looks up under a lock every call

        async def handler(request: Request) -> Response:
            t0 = time.perf_counter()
            try:
                if max_body == 0 and int(declared_length(request, 2**63) or 0) > MAX_BODY_BYTES:
                    raise BadRequest("request bodies are not accepted on this route (a GET)", 413)
                if sum(len(k) + len(v) for k, v in request.headers.raw) > MAX_HEADER_BYTES:
                    raise BadRequest(f"request headers above {MAX_HEADER_BYTES} bytes", 431)
                response = await endpoint(request)
            except BadRequest as e:
                # a body refused unread: close the connection, or uvicorn would read (and discard)
                # the rest of it to find the next request on the connection
                response = error(e.status, str(e), {"Connection": "close"} if e.status == 413 else None)
            except ValueError as e:  # the batcher's checks (NaN in z, more than the queue holds)
                response = error(400, str(e))
            except Overloaded as e:
                response = error(503, str(e), {"Retry-After": str(limits.retry_after_s)})
            except BatcherClosed as e:
                response = error(503, str(e), {"Retry-After": str(limits.retry_after_s)})
            except DeadlineExceeded as e:
                response = error(504, str(e))
            except ClientGone:  # nobody to answer; the status is for the metrics only
                response = Response(status_code=499)
            except Exception as e:  # noqa: BLE001 - one line in the log, a 500, the server lives on
                log.error("error on %s: %s: %s", request.url.path, type(e).__name__, e)
                response = error(500, f"internal error ({type(e).__name__})")
            code = response.status_code
            counter = counters.get(code)
            if counter is None:
                counter = counters[code] = metrics.requests.labels(route, str(code))
            counter.inc()
            latency.observe(time.perf_counter() - t0)
            return response
        return handler

    one_image_route = Route("/v1/images/{seed}/{index}.png",
                            measured("/v1/images/{seed}/{index}.png", one_image))
    routes = [
        one_image_route,
        Route("/v1/images", measured("/v1/images", many_images)),
        Route("/healthz", measured("/healthz", healthz)),
        Route("/readyz", measured("/readyz", readyz)),
        Route("/v1/info", measured("/v1/info", info)),
        Route("/metrics", prometheus),
        Route("/openapi.json", measured("/openapi.json", openapi_json)),
        *web_routes(gen.manifest),  # the browser page at / (serve/web.py)
    ]
    oip = OipRest(OipModel(batcher, limits.max_images_per_request),
                  lambda: state["ready"] and not state["draining"])
    oip_routes = oip.routes(measured)
    routes += oip_routes
    hot = [one_image_route, *(r for r in oip_routes if r.path.endswith("/infer"))]
    openapi_body = json.dumps(openapi(batcher.generator.nz, limits.max_images_per_request,
                                      bool(api_keys))).encode()

    async def http_error(request: Request, exc: HTTPException) -> Response:
        metrics.requests.labels("other", str(exc.status_code)).inc()
        return error(exc.status_code, exc.detail if isinstance(exc.detail, str) else "error")

    @asynccontextmanager
    async def lifespan(app):
        # warm-up: one full batch through the whole path before saying ready
        await batcher.agenerate(0, 0, batcher.max_batch)
        state["ready"] = True
        log.info("ready: %s on %s (%s), max batch %d", entry.name, gen.backend_name,
                 entry.precision, batcher.max_batch)
        yield
        state["draining"] = True

    app = Starlette(routes=routes, exception_handlers={HTTPException: http_error},
                    lifespan=lifespan,
                    middleware=[Middleware(ForgetGoneClients),
                                *secure(cors_origins, api_keys, OPEN_PATHS),
                                Middleware(HotRoutes, routes=hot)])
    app.state.service = state
    app.state.oip = oip.model
    return app
