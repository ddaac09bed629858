"""What every protocol of the service checks the same way: one error type with its HTTP status,
canonical numbers, bodies read no further than their limit, and callers that went away.

REST (/v1, /v2) and gRPC share these, so a request is refused for the same reason with the same
words whichever way it came in.
"""

from __future__ import annotations

import asyncio
import json
import logging
import re
from concurrent.futures import Future

from starlette.requests import Request
from starlette.responses import Response

log = logging.getLogger("dcgan-serve")
_CANONICAL = re.compile(r"0|[1-9][0-9]{0,38}")  # ASCII digits, no sign, no '_', no leading zero


class BadRequest(Exception):
    """A request the service refuses; `status` is its HTTP status (gRPC maps it to a code)."""

    def __init__(self, message: str, status: int = 400):
        super().__init__(message)
        self.status = status


class ClientGone(Exception):
    """The caller disconnected before its images were ready; nothing is sent."""


def canonical_int(value, name: str, lo: int, hi: int) -> int:
    """`value` (a str, or an int from JSON or protobuf) as an int in [lo, hi].

    Strings must be canonical decimal (`7`, not `+7`, `07`, `7_0` or non-ASCII digits), so one
    number has one spelling, and an immutable URL or a cached answer is never served under two."""
    if isinstance(value, str):
        if not _CANONICAL.fullmatch(value):
            raise BadRequest(f"{name} must be a whole number in canonical decimal (ASCII digits, "
                             f"no sign or leading zero), got {value[:50]!r}")
        value = int(value)
    elif not isinstance(value, int) or isinstance(value, bool):
        raise BadRequest(f"{name} must be a whole number, got {type(value).__name__}")
    if not lo <= value <= hi:
        raise BadRequest(f"{name} must be in [{lo}, {hi}], got {value}")
    return value


def declared_length(request: Request, limit: int) -> int | None:
    """The request's Content-Length (None if absent); above `limit` is a 413 before any byte
    of the body is read."""
    value = request.headers.get("content-length")
    if value is None:
        return None
    length = canonical_int(value, "Content-Length", 0, 2**63)
    if length > limit:
        raise BadRequest(f"a request body of {length} bytes is above the limit of {limit} bytes",
                         413)
    return length


async def read_body(request: Request, limit: int) -> bytes:
    """The body, read in chunks and abandoned the moment it passes `limit` bytes (413)."""
    declared_length(request, limit)
    chunks, size = [], 0
    async for chunk in request.stream():
        size += len(chunk)
        if size > limit:
            raise BadRequest(f"the request body is above the limit of {limit} bytes", 413)
        chunks.append(chunk)
    return b"".join(chunks)


async def unless_gone(request: Request, future: Future):
    """The result of a batcher `future`, cancelled (its pieces not yet computed dropped) the
    moment the HTTP client disconnects: a client that leaves costs at most the batches already
    running. Starlette does not cancel a handler whose client left, so this watches for it."""
    work = asyncio.wrap_future(future)
    watch = asyncio.ensure_future(_disconnect(request))
    watch.add_done_callback(lambda _: work.cancel())
    try:
        return await work
    except asyncio.CancelledError:
        if watch.done() and not watch.cancelled():
            raise ClientGone() from None
        raise
    finally:
        watch.cancel()


async def _disconnect(request: Request) -> None:
    while (await request.receive())["type"] != "http.disconnect":
        pass


def error(status: int, message: str, headers: dict | None = None) -> Response:
    """The protocol's error shape, on every route: {"error": "<one line>"}."""
    line = " ".join(message.split())  # one line, whatever the message held
    return Response(json.dumps({"error": line}) + "\n", status_code=status,
                    media_type="application/json", headers=headers)


class ForgetGoneClients:
    """ASGI middleware: an answer to a client that already closed its connection goes nowhere,
    quietly. uvicorn on uvloop raises from `send` when a pipelining client closed before its
    later answers were written, and the error reached the log as a traceback per request."""

    def __init__(self, app):
        self.app = app

    async def __call__(self, scope, receive, send):
        if scope["type"] != "http":
            return await self.app(scope, receive, send)
        gone = False

        async def forgetting_send(message):
            nonlocal gone
            if gone:
                return
            try:
                await send(message)
            except (RuntimeError, OSError) as e:  # the transport is closed
                gone = True
                log.debug("client of %s went away before its answer: %s", scope["path"], e)

        await self.app(scope, receive, forgetting_send)
