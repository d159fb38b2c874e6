"""LeanRoute answers every request exactly as FastAPI's own handler does (app/http/routing.py):
the same requests, hostile ones above all, sent once through each, must get the same answers."""

from __future__ import annotations

import uuid
from typing import Any

import httpx
import pytest

from app.http.routing import LeanRoute
from app.main import create_app
from tests.support import Api, new_sub

NOBODY = str(uuid.uuid4())
VARYING_HEADERS = {"x-request-id", "date", "content-length"}


def test_every_api_route_is_served_by_its_plan(api: Api) -> None:
    # A route the plan cannot serve silently falls back to FastAPI's slower handler: say so.
    app = create_app(api.settings)
    routes = [r for r in app.routes if isinstance(r, LeanRoute)]
    assert len(routes) >= 12
    assert [r.path for r in routes if not r.lean] == []


def _requests(sub: str, file_id: str) -> list[tuple[str, str, dict[str, Any]]]:
    token = Api.auth(sub)
    json_headers = {**token, "Content-Type": "application/json"}
    body = b'{"filename": "a.txt", "content_type": "text/plain", "size": 3}'
    return [
        ("POST", "/uploads", {}),
        ("POST", "/uploads", {"headers": {"Authorization": "Bearer nope"}}),
        ("POST", "/uploads", {"headers": {"Authorization": "Basic abc"}}),
        ("POST", "/uploads", {"headers": json_headers, "content": b'{"filename": '}),
        ("POST", "/uploads", {"headers": json_headers, "content": b"\xff\xfe"}),
        ("POST", "/uploads", {"headers": json_headers, "content": b"[1, 2]"}),
        ("POST", "/uploads", {"headers": json_headers, "content": b"null"}),
        ("POST", "/uploads", {"headers": json_headers, "content": b""}),
        ("POST", "/uploads", {"headers": json_headers, "content": b'{"size": -1}'}),
        ("POST", "/uploads", {"headers": {**token, "Content-Type": "text/plain"}, "content": body}),
        ("POST", "/uploads", {"headers": {**token}, "content": body}),
        (
            "POST",
            "/uploads",
            {"headers": {**json_headers, "Idempotency-Key": "k" * 300}, "content": body},
        ),
        ("POST", "/uploads", {"headers": {**json_headers, "Idempotency-Key": ""}, "content": body}),
        ("POST", "/uploads/not-a-uuid/parts", {"headers": json_headers, "content": b"{}"}),
        (
            "POST",
            f"/uploads/{NOBODY}/parts",
            {"headers": json_headers, "content": b'{"part_numbers": []}'},
        ),
        (
            "POST",
            f"/uploads/{NOBODY}/parts",
            {"headers": json_headers, "content": b'{"part_numbers": [1]}'},
        ),
        ("POST", f"/uploads/{NOBODY}/parts", {"headers": token}),
        ("GET", f"/uploads/{NOBODY}/parts", {"headers": token}),
        ("POST", f"/uploads/{NOBODY}/complete", {"headers": token}),
        ("POST", "/uploads/xyz/complete", {}),
        ("DELETE", "/uploads/not-a-uuid", {"headers": token}),
        ("DELETE", f"/uploads/{file_id}", {}),
        ("GET", "/downloads/not-a-uuid", {}),
        ("GET", f"/downloads/{file_id}", {"headers": token}),
        ("GET", f"/downloads/{file_id}", {"headers": token, "params": {"disposition": "x"}}),
        ("GET", f"/downloads/{file_id}", {"headers": token, "params": {"redirect": "maybe"}}),
        ("GET", f"/downloads/{NOBODY}", {"headers": token, "params": {"redirect": "true"}}),
        ("GET", "/files", {"headers": token, "params": {"limit": "0"}}),
        ("GET", "/files", {"headers": token, "params": {"limit": "x", "cursor": "!" * 65}}),
        ("GET", "/files", {"headers": token, "params": {"cursor": "!!!"}}),
        ("GET", "/files", {"headers": token, "params": {"owner": "someone-else"}}),
        ("GET", "/files", {"headers": token, "params": {"owner": ""}}),
        ("GET", "/files", {"headers": token}),
        ("GET", f"/files/{file_id}", {"headers": token}),
        ("GET", f"/files/{NOBODY}", {"headers": token}),
        ("DELETE", f"/files/{NOBODY}", {"headers": token}),
        ("GET", "/healthz", {}),
        ("GET", "/readyz", {}),
        ("HEAD", "/healthz", {}),
        ("PUT", "/files", {"headers": token}),
    ]


def _answer(response: httpx.Response) -> tuple[Any, ...]:
    headers = sorted(
        (name, value) for name, value in response.headers.items() if name not in VARYING_HEADERS
    )
    return response.status_code, headers, response.content


async def test_lean_and_fastapi_handlers_answer_alike(
    api: Api, monkeypatch: pytest.MonkeyPatch
) -> None:
    sub = new_sub()
    file_id = (
        await api.created(sub, {"filename": "a.txt", "content_type": "text/plain", "size": 3})
    )["file"]["id"]
    requests = _requests(sub, file_id)
    lean = [_answer(await api.client.request(m, path, **kw)) for m, path, kw in requests]
    for route in create_app(api.settings).routes:
        if isinstance(route, LeanRoute):
            monkeypatch.setattr(route, "app", route.fastapi_app)
    reference = [_answer(await api.client.request(m, path, **kw)) for m, path, kw in requests]
    differing = [
        (m, path, ours, theirs)
        for (m, path, _), ours, theirs in zip(requests, lean, reference, strict=True)
        if ours != theirs
    ]
    assert differing == []


async def test_a_structured_json_body_is_read_as_json_by_both(
    api: Api, monkeypatch: pytest.MonkeyPatch
) -> None:
    headers = {**Api.auth(new_sub()), "Content-Type": "application/vnd.s3gate+json"}
    body = b'{"filename": "a.txt", "content_type": "text/plain", "size": 3}'
    lean = await api.client.post("/uploads", headers=headers, content=body)
    for route in create_app(api.settings).routes:
        if isinstance(route, LeanRoute):
            monkeypatch.setattr(route, "app", route.fastapi_app)
    reference = await api.client.post("/uploads", headers=headers, content=body)
    assert (lean.status_code, reference.status_code) == (201, 201)
    assert lean.json().keys() == reference.json().keys()
