"""Pure ASGI middleware: cheap, and it sees every response the routes produce."""

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

        async def send_no_store(message: Message) -> None:
            if message["type"] == "http.response.start":
                headers = list(message.get("headers", []))
                if not any(name.lower() == b"cache-control" for name, _ in headers):
                    # Every answer is one caller's private data, and many carry signed URLs.
                    headers.append((b"cache-control", b"no-store"))
                message["headers"] = headers
            await send(message)

        length = next((v for k, v in scope["headers"] if k == b"content-length"), None)
        if length is not None:
            if not length.isdigit() or int(length) > self.max_body:
                await problem_response(RequestTooLarge())(scope, receive, send_no_store)
                return
            await self.app(scope, receive, send_no_store)
            return

        # No Content-Length (chunked): read the body here, within the limit, then replay it.
        # Failing inside the app's receive() instead would surface as FastAPI's generic 400.
        chunks: list[bytes] = []
        received = 0
        more = True
        while more:
            message = await receive()
            if message["type"] != "http.request":
                await self.app(scope, _replay([message]), send_no_store)
                return
            chunks.append(message.get("body", b""))
            received += len(chunks[-1])
            more = message.get("more_body", False)
            if received > self.max_body:
                await problem_response(RequestTooLarge())(scope, receive, send_no_store)
                return
        body = {"type": "http.request", "body": b"".join(chunks), "more_body": False}
        await self.app(scope, _replay([body], then=receive), send_no_store)


def _replay(messages: list[Message], then: Receive | None = None) -> Receive:
    pending = list(messages)

    async def receive() -> Message:
        if pending:
            return pending.pop(0)
        if then is not None:
            return await then()
        return {"type": "http.disconnect"}

    return receive
