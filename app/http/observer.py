"""The request observer: request id, `Cache-Control: no-store`, HTTP metrics, access line."""

from __future__ import annotations

import logging
import os
import re
from collections.abc import Iterable
from time import perf_counter

from starlette.routing import BaseRoute, Match
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from app.errors import AppError
from app.http.middleware import with_no_store
from app.http.problems import problem_response
from app.logs import RequestContext, bind_request, unbind_request
from app.metrics import metrics

access_log = logging.getLogger("s3gate.access")

UNMATCHED_ROUTE = "unmatched"
OTHER_METHOD = "other"
_METHODS = frozenset({"GET", "HEAD", "POST", "PUT", "PATCH", "DELETE", "OPTIONS"})
_REQUEST_ID = re.compile(rb"[A-Za-z0-9._:-]{1,128}")
_REQUEST_ID_HEADER = b"x-request-id"
MAX_LOGGED_PATH = 1024
# Paths that carry a secret (a share link's token), logged as their template only: matched
# by prefix, so a mistyped or extended one is hidden too.
SECRET_PATH_PREFIXES = {"/s/": "/s/{token}"}


def _incoming_request_id(headers: Iterable[tuple[bytes, bytes]]) -> bytes | None:
    for name, value in headers:
        if name == _REQUEST_ID_HEADER:
            return value if _REQUEST_ID.fullmatch(value) else None
    return None


def _route_for(scope: Scope) -> BaseRoute | None:
    """The route the router chose without saying so (a mount), or would have chosen for a
    request answered before routing (the body limit's 413)."""
    if "app_root_path" in scope:  # a mount moved root_path to its own prefix: match as the app
        scope = {**scope, "root_path": scope["app_root_path"]}
    app = scope.get("app")
    partial = None
    for route in getattr(app, "routes", ()):
        match, _ = route.matches(scope)
        if match is Match.FULL:
            return route  # type: ignore[no-any-return]
        if match is Match.PARTIAL and partial is None:
            partial = route
    return partial


class RequestObserver:
    """Pure ASGI: gives each request an id (the caller's X-Request-ID when well-formed),
    echoes it on every answer, marks every answer that sets no Cache-Control of its own
    `no-store`, counts and times the request by route template, and writes the
    `s3gate.access` line. Sits outside the body limit (its 413s get an id too) and inside
    CORS.

    Logged: method, route template, path without the query string, status, duration, owner
    and client address. Never headers, the query string or bodies (tokens, signed URLs).
    """

    def __init__(self, app: ASGIApp) -> None:
        self.app = app
        self._metrics = metrics()

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        started = perf_counter()
        raw_id = _incoming_request_id(scope["headers"])
        if raw_id is None:
            request_id = os.urandom(16).hex()
            raw_id = request_id.encode()
        else:
            request_id = raw_id.decode()
        id_header = (_REQUEST_ID_HEADER, raw_id)
        client = scope.get("client")
        context = RequestContext(request_id, client=client[0] if client else None)
        token = bind_request(context)
        status = 0

        async def send_with_id(message: Message) -> None:
            nonlocal status
            if message["type"] == "http.response.start":
                status = message["status"]
                message["headers"] = [*with_no_store(message.get("headers", ())), id_header]
            await send(message)

        try:
            await self.app(scope, receive, send_with_id)
        except Exception:
            if not status:
                # Starlette's outermost middleware answers unhandled errors past this one; the
                # same problem+json answered here carries the id. (The error is still logged
                # by problems._on_unexpected, within this request's context.)
                await problem_response(AppError())(scope, receive, send_with_id)
            self._observe(scope, status, perf_counter() - started, context)
            raise  # with the request still bound: the error's log lines carry its id
        self._observe(scope, status, perf_counter() - started, context)
        unbind_request(token)

    def _observe(self, scope: Scope, status: int, seconds: float, context: RequestContext) -> None:
        status = status or 500
        route = scope.get("route")
        if route is None and status != 404:
            route = _route_for(scope)
        template: str = (
            getattr(route, "path_format", None) or getattr(route, "path", None) or UNMATCHED_ROUTE
        )
        method = scope["method"]
        counter, histogram = self._metrics.http(
            template, method if method in _METHODS else OTHER_METHOD, status
        )
        counter.inc()
        histogram.observe(seconds)
        if access_log.isEnabledFor(logging.INFO):
            access_log.info(
                "%s %s %s",
                method,
                template,
                status,
                extra={
                    "fields": {
                        "method": method,
                        "route": template,
                        "path": _loggable(scope["path"], scope.get("root_path", "")),
                        "status": status,
                        "duration_ms": round(seconds * 1000, 3),
                        "owner": context.owner,
                        "client_ip": context.client,
                    }
                },
            )


def _loggable(path: str, root_path: str = "") -> str:
    # Matched below the root path too: servers differ on whether `path` includes it.
    route_path = path.removeprefix(root_path) if root_path else path
    for prefix, template in SECRET_PATH_PREFIXES.items():
        if route_path.startswith(prefix):
            return template
    return path[:MAX_LOGGED_PATH]
