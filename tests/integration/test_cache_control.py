"""Every answer of every route carries a Cache-Control: `no-store` from the API (and its docs),
`no-cache` from the static files. The routes are read from `app.routes`, so a new one is covered
the day it is added; a route this test does not know how to call fails it."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
from fastapi import FastAPI
from starlette.routing import BaseRoute, Mount, Route
from starlette.staticfiles import StaticFiles

from app.main import create_app
from tests.support import Api, new_sub, running_app, tiny_png

ORIGIN = "https://app.example.com"
# What a request to each route sends as its body (others send none).
BODIES: dict[str, dict[str, Any]] = {
    "/uploads": {"filename": "a.txt", "content_type": "text/plain", "size": 3},
    "/uploads/{file_id}/parts": {"part_numbers": [1]},
    "/files/{file_id}/grants": {"subject": "a-friend"},
    "/files/{file_id}/links": {"expires_in": 3600},
    "/downloads": {"ids": ["0b6f1c1e-8a34-4c8e-9a51-2f0d3e0a9c11"]},
}


_NO_SUCH = "0b6f1c1e-8a34-4c8e-9a51-2f0d3e0a9c11"


def _calls(app: FastAPI, file_id: str) -> Iterator[tuple[str, str, str | None]]:
    """(method, path, expected Cache-Control or None for no-store) for every route."""
    # A grant or link that does not exist: its routes answer 404 (the cache header still set).
    values = {"file_id": file_id, "grant_id": _NO_SUCH, "link_id": _NO_SUCH, "token": "x" * 43}
    for route in app.routes:
        if isinstance(route, Route):
            unknown = set(route.param_convertors) - set(values)
            if unknown:
                pytest.fail(f"{route.path}: no value for {unknown}")
            path = route.path_format.format(**values)
            for method in sorted(route.methods or ()):
                yield method, path, None
        elif isinstance(route, Mount) and isinstance(route.app, StaticFiles):
            directory = Path(str(route.app.directory))
            files = sorted(p for p in directory.rglob("*") if p.is_file())
            assert files, route.path
            for file in files:
                for method in ("GET", "HEAD"):
                    yield method, f"{route.path}/{file.relative_to(directory)}", "no-cache"
            yield "GET", f"{route.path}/no-such-file.js", None  # a 404 from the mount
        else:
            pytest.fail(f"cannot call {_describe(route)}: teach this test how")


def _describe(route: BaseRoute) -> str:
    return f"{type(route).__name__} {getattr(route, 'path', '?')}"


@pytest.mark.parametrize("database_url", ["sqlite"], indirect=True)
async def test_every_answer_of_every_route_sets_cache_control(
    api: Api, s3_http: httpx.AsyncClient
) -> None:
    owner = new_sub()
    file, _ = await api.upload(s3_http, owner, tiny_png(), content_type="image/png")
    assert (await api.complete(owner, file["id"])).status_code == 200
    # Every setting that adds a route (or a middleware that answers) on.
    settings = api.settings.model_copy(update={"demo": True, "cors_origins": [ORIGIN]})
    # (DELETE last: the file must be there for every other call.)
    calls = sorted(_calls(create_app(settings), file["id"]), key=lambda call: call[0] == "DELETE")
    async with running_app(settings) as client:
        seen: list[tuple[str, str, int, str | None]] = []

        async def send(method: str, path: str, **options: Any) -> None:
            answer = await client.request(method, path, **options)
            seen.append((method, path, answer.status_code, answer.headers.get("cache-control")))

        for method, path, _ in calls:
            body = BODIES.get(path.replace(file["id"], "{file_id}"))
            for headers in ({}, api.auth(owner)):
                await send(method, path, headers={**headers, "Origin": ORIGIN}, json=body)
        for method, path, wanted in calls:
            if wanted == "no-cache" and method == "GET":  # a revalidation keeps it too
                first = await client.get(path)
                again = await client.get(path, headers={"If-None-Match": first.headers["etag"]})
                assert (again.status_code, again.headers.get("cache-control")) == (304, wanted)
        await send("GET", "/no/such/route")
        await send("DELETE", "/healthz")
        await send(
            "OPTIONS",
            "/files",
            headers={"Origin": ORIGIN, "Access-Control-Request-Method": "GET"},
        )

    expected = {(method, path): wanted or "no-store" for method, path, wanted in calls}
    wrong = [
        (method, path, status, got)
        for method, path, status, got in seen
        if got != expected.get((method, path), "no-store")
    ]
    assert not wrong, wrong
    statuses = {status for _, _, status, _ in seen}
    assert statuses >= {200, 201, 204, 401, 404, 405, 409}, statuses
    # The answers that carry a signed URL were really given, not refused.
    answered = {(method, path): status for method, path, status, _ in seen}
    assert answered[("GET", f"/downloads/{file['id']}")] == 200
    assert answered[("POST", "/uploads")] == 201
    assert answered[("OPTIONS", "/files")] == 200
