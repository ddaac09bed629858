"""The routes every image request takes, dispatched straight to their handlers.

A one-image request spends most of the event loop's time in the framework around its handler:
Starlette's router tries every route in turn, and its exception layers wrap each request and
each `send`. The image routes' handlers (`measured` in serve/app.py) answer every error
themselves, so they need none of that. This ASGI middleware sits innermost, under the API key
and CORS middleware, which apply to these routes as to every other; the routes stay in the
router too, which answers a wrong method (405) and lists them.
"""

from __future__ import annotations

from starlette.requests import Request
from starlette.routing import Match, Route


class HotRoutes:
    """Send a request that fully matches one of `routes` (path and method) to its endpoint,
    which returns a Response for every outcome; everything else goes on to `app`."""

    def __init__(self, app, routes: list[Route]):
        self.app, self.routes = app, routes

    async def __call__(self, scope, receive, send):
        if scope["type"] == "http":
            for route in self.routes:
                match, child_scope = route.matches(scope)
                if match is Match.FULL:
                    scope.update(child_scope)
                    response = await route.endpoint(Request(scope, receive, send))
                    await response(scope, receive, send)
                    return
        await self.app(scope, receive, send)
