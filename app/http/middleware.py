"""Pure ASGI middleware, CORS, and the response class of model answers."""

from __future__ import annotations

from collections.abc import Iterable

from fastapi.responses import Response
from pydantic import BaseModel
from starlette.datastructures import Headers
from starlette.middleware.cors import CORSMiddleware
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from app.errors import RequestTooLarge
from app.http.problems import problem_response

MAX_REQUEST_BODY_BYTES = 64 * 1024  # the largest body this API takes is a few hundred bytes
_CACHE_CONTROL = b"cache-control"
NO_STORE = (_CACHE_CONTROL, b"no-store")


def with_no_store(headers: Iterable[tuple[bytes, bytes]]) -> list[tuple[bytes, bytes]]:
    """`headers` plus `Cache-Control: no-store`, unless they set a Cache-Control of their own.

    Every API answer is one caller's private data, and many carry signed URLs: never cached.
    Applied to each answer as it leaves (app.http.observer.RequestObserver), not per response
    class: FastAPI answers some routes without the app's default response class.
    """
    listed = list(headers)
    if not any(name.lower() == _CACHE_CONTROL for name, _ in listed):
        listed.append(NO_STORE)
    return listed


class CORS(CORSMiddleware):
    """Starlette's CORS middleware, whose preflight answers are `no-store` too: it answers
    them itself, outside the request observer."""

    def preflight_response(self, request_headers: Headers) -> Response:
        response = super().preflight_response(request_headers)
        response.raw_headers = with_no_store(response.raw_headers)
        return response


class ModelResponse(Response):
    """A pydantic model rendered to JSON bytes by pydantic-core in one step.

    Returning it skips FastAPI's response path (validate, dump to dicts, then json.dumps);
    routes still declare `response_model` for the OpenAPI document.
    """

    media_type = "application/json"

    def __init__(self, model: BaseModel, status_code: int = 200) -> None:
        super().__init__(model.__pydantic_serializer__.to_json(model), status_code=status_code)


class RootPathMiddleware:
    """Serve under S3GATE_ROOT_PATH (a proxy strips the prefix and forwards the rest): what
    FastAPI's deprecated `root_path=` argument did, as the outermost middleware."""

    def __init__(self, app: ASGIApp, root_path: str) -> None:
        self.app = app
        self.root_path = root_path

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] in ("http", "websocket"):
            scope["root_path"] = self.root_path
        await self.app(scope, receive, send)


class BodyLimitMiddleware:
    """Refuse oversized request bodies, as problem+json, before anything buffers them.

    (Starlette's own limiter answers a declared-too-large body in plain text.) Responses pass
    straight through: no wrapper on `send` for every request.
    """

    def __init__(self, app: ASGIApp, max_body: int = MAX_REQUEST_BODY_BYTES) -> None:
        self.app = app
        self.max_body = max_body

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        length = next((v for k, v in scope["headers"] if k == b"content-length"), None)
        if length is not None:
            if not length.isdigit() or int(length) > self.max_body:
                await problem_response(RequestTooLarge())(scope, receive, send)
                return
            await self.app(scope, receive, send)
            return
        if scope["method"] in ("GET", "HEAD", "DELETE", "OPTIONS"):
            await self.app(scope, receive, send)
            return

        # No Content-Length (chunked): read the body here, within the limit, then replay it.
        # Failing inside the app's receive() instead would surface as FastAPI's generic 400.
        chunks: list[bytes] = []
        received = 0
        more = True
        while more:
            message = await receive()
            if message["type"] != "http.request":
                await self.app(scope, _replay([message]), send)
                return
            chunks.append(message.get("body", b""))
            received += len(chunks[-1])
            more = message.get("more_body", False)
            if received > self.max_body:
                await problem_response(RequestTooLarge())(scope, receive, send)
                return
        body = {"type": "http.request", "body": b"".join(chunks), "more_body": False}
        await self.app(scope, _replay([body], then=receive), send)


def _replay(messages: list[Message], then: Receive | None = None) -> Receive:
    pending = list(messages)

    async def receive() -> Message:
        if pending:
            return pending.pop(0)
        if then is not None:
            return await then()
        return {"type": "http.disconnect"}

    return receive
