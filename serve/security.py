"""Who may call the service: API keys, and browsers of other origins (CORS).

Both are off unless configured (`--api-key-file`, `--cors-origin`), and cost nothing then. The
key check is a plain ASGI middleware (no per-request framework machinery on the hot path); keys
are compared in constant time, through their SHA-256, so neither the content nor the length of
a key leaks through timing. Health and readiness stay open, for load balancers and probes.
CORS sits outside the key check: a browser's preflight carries no credentials and is answered
by CORS itself, and a 401 still carries the CORS headers the browser needs to read it.
"""

from __future__ import annotations

import hashlib
import hmac
import re
from pathlib import Path

from starlette.middleware import Middleware
from starlette.middleware.cors import CORSMiddleware

from runtime.errors import DcganError
from serve.checks import error

OPEN_PATHS = re.compile(r"/healthz|/readyz|/v2/health/(live|ready)|/v2/models/[^/]+(/versions/[^/]+)?/ready")
ALLOWED_HEADERS = ["Authorization", "X-API-Key", "Content-Type", "Inference-Header-Content-Length",
                   "If-None-Match"]
EXPOSED_HEADERS = ["ETag", "X-Seed", "Retry-After", "Inference-Header-Content-Length"]
MAX_KEY_FILE_BYTES = 64 * 1024


def read_keys(path: Path) -> tuple[str, ...]:
    """The keys in `path`: one per line; blank lines and lines starting with # are ignored."""
    try:
        if path.stat().st_size > MAX_KEY_FILE_BYTES:
            raise DcganError(f"{path} is above {MAX_KEY_FILE_BYTES} bytes — an API key file holds "
                             "one key per line")
        lines = path.read_text().splitlines()
    except (OSError, UnicodeDecodeError) as e:
        raise DcganError(f"cannot read the API key file {path} ({e}) — check the path") from None
    keys = tuple(k.strip() for k in lines if k.strip() and not k.strip().startswith("#"))
    if not keys:
        raise DcganError(f"{path} holds no API key — write one key per line")
    return keys


def secure(cors_origins: tuple[str, ...], api_keys: tuple[str, ...],
           open_paths: re.Pattern = OPEN_PATHS) -> list[Middleware]:
    """The middleware for these settings, outermost first."""
    middleware = []
    if cors_origins:
        middleware.append(Middleware(CORSMiddleware, allow_origins=list(cors_origins),
                                     allow_methods=["GET", "POST"], allow_headers=ALLOWED_HEADERS,
                                     expose_headers=EXPOSED_HEADERS, max_age=600))
    if api_keys:
        middleware.append(Middleware(ApiKey, keys=api_keys, open_paths=open_paths))
    return middleware


def digest(key: str | bytes) -> bytes:
    return hashlib.sha256(key.encode() if isinstance(key, str) else key).digest()


def key_matches(given: bytes | None, digests: tuple[bytes, ...]) -> bool:
    """Whether `given` is one of the keys (every key compared, in constant time)."""
    if not given:
        return False
    d = digest(given)
    return sum(hmac.compare_digest(d, k) for k in digests) > 0


class ApiKey:
    """Refuse (401) an HTTP request without a valid key, except on `open_paths`."""

    def __init__(self, app, keys: tuple[str, ...], open_paths: re.Pattern):
        self.app, self.open_paths = app, open_paths
        self.digests = tuple(digest(k) for k in keys)

    async def __call__(self, scope, receive, send):
        if scope["type"] != "http" or self.open_paths.fullmatch(scope["path"]):
            return await self.app(scope, receive, send)
        if key_matches(_presented(scope["headers"]), self.digests):
            return await self.app(scope, receive, send)
        response = error(401, "a valid API key is required — send Authorization: Bearer <key> "
                         "or X-API-Key: <key>", {"WWW-Authenticate": "Bearer"})
        await response(scope, receive, send)


def _presented(headers: list[tuple[bytes, bytes]]) -> bytes | None:
    for name, value in headers:
        if name == b"x-api-key":
            return value.strip()
        if name == b"authorization" and value[:7].lower() == b"bearer ":
            return value[7:].strip()
    return None
