"""Pure ASGI middleware: cheap, and it sees every response, errors included."""

from __future__ import annotations

from starlette.types import ASGIApp, Message, Receive, Scope, Send

from app.errors import RequestTooLarge, problem_response

MAX_REQUEST_BODY_BYTES = 64 * 1024  # the largest body this API takes is a few hundred bytes


class GuardMiddleware:
    """Refuse oversized bodies before they are buffered; mark every response `no-store`."""

    def __init__(self, app: ASGIApp, max_body: int = MAX_REQUEST_BODY_BYTES) -> None:
        self.app = app
        self.max_body = max_body

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        for name, value in scope["headers"]:
            if name == b"content-length" and (not value.isdigit() or int(value) > self.max_body):
                await problem_response(RequestTooLarge())(scope, receive, send)
                return

        received = 0

        async def limited_receive() -> Message:
            nonlocal received
            message = await receive()
            if message["type"] == "http.request":
                received += len(message.get("body", b""))
                if received > self.max_body:  # chunked bodies have no Content-Length
                    raise _BodyTooLarge
            return message

        async def send_no_store(message: Message) -> None:
            if message["type"] == "http.response.start":
                headers = list(message.get("headers", []))
                if not any(name.lower() == b"cache-control" for name, _ in headers):
                    # Every answer is one caller's private data, and many carry signed URLs.
                    headers.append((b"cache-control", b"no-store"))
                message["headers"] = headers
            await send(message)

        try:
            await self.app(scope, limited_receive, send_no_store)
        except _BodyTooLarge:
            await problem_response(RequestTooLarge())(scope, receive, send_no_store)


class _BodyTooLarge(Exception):
    pass
