"""problem+json rendering of every error; the body limit and the no-store header on every answer."""

from __future__ import annotations

import logging
from collections.abc import AsyncIterator
from typing import Any

import httpx
import pytest
from fastapi import FastAPI, Request, Response
from pydantic import BaseModel, Field

from app.config import Settings
from app.errors import (
    AppError,
    InvalidToken,
    MissingToken,
    NotFound,
    UploadRejected,
    ValidationFailed,
)
from app.http.middleware import BodyLimitMiddleware
from app.http.observer import RequestObserver
from app.http.problems import PROBLEM_JSON, Problem, install_error_handlers, problem_responses
from tests.support import TEST_JWT_SECRET

LIMIT = 64 * 1024  # the body limit the tests below hold the default middleware to
PROBLEM_FIELDS = {"type", "title", "status", "detail", "code"}


class Body(BaseModel):
    name: str = Field(max_length=5)
    size: int


def build_app(*, guard: bool) -> FastAPI:
    # `guard` = the app as s3gate builds it: the body limit inside the request observer.
    app = FastAPI()
    install_error_handlers(app)

    @app.get("/missing")
    async def missing() -> None:
        raise NotFound()

    @app.get("/rejected")
    async def rejected() -> None:
        raise UploadRejected("x")

    @app.get("/token")
    async def token() -> None:
        raise InvalidToken()

    @app.get("/no-token")
    async def no_token() -> None:
        raise MissingToken()

    @app.post("/body")
    async def body(payload: Body) -> dict[str, Any]:
        return {"name": payload.name}

    @app.post("/raw")
    async def raw(request: Request) -> dict[str, int]:
        return {"received": len(await request.body())}

    @app.get("/boom")
    async def boom() -> None:
        raise RuntimeError("secret-token-123")

    @app.get("/ok")
    async def ok() -> dict[str, str]:
        return {"status": "ok"}

    @app.get("/cached")
    async def cached() -> Response:
        return Response("x", headers={"Cache-Control": "public, max-age=60"})

    if guard:
        app.add_middleware(BodyLimitMiddleware)
        app.add_middleware(RequestObserver)
    return app


async def _client(app: FastAPI) -> AsyncIterator[httpx.AsyncClient]:
    transport = httpx.ASGITransport(app=app, raise_app_exceptions=False)
    async with httpx.AsyncClient(transport=transport, base_url="http://testserver") as client:
        yield client


@pytest.fixture
async def client() -> AsyncIterator[httpx.AsyncClient]:
    async for c in _client(build_app(guard=False)):
        yield c


@pytest.fixture
async def guarded() -> AsyncIterator[httpx.AsyncClient]:
    async for c in _client(build_app(guard=True)):
        yield c


def assert_problem(response: httpx.Response, status: int, code: str) -> dict[str, Any]:
    assert response.status_code == status
    assert response.headers["content-type"] == PROBLEM_JSON
    body = response.json()
    assert body.keys() >= PROBLEM_FIELDS
    assert body["status"] == status
    assert body["code"] == code
    assert body["type"] == f"urn:s3gate:problem:{code}"
    assert isinstance(body["title"], str)
    assert body["title"]
    assert isinstance(body["detail"], str)
    assert body["detail"]
    return body


# --- error rendering -----------------------------------------------------------------------------


async def test_app_error_is_rendered_as_problem_json(client: httpx.AsyncClient) -> None:
    body = assert_problem(await client.get("/missing"), 404, "not_found")
    assert body["title"] == "Not found"
    assert "errors" not in body


async def test_app_error_detail_passed_by_the_raiser_is_kept(client: httpx.AsyncClient) -> None:
    body = assert_problem(await client.get("/rejected"), 422, "upload_rejected")
    assert body["detail"] == "x"


async def test_invalid_token_carries_the_rfc6750_challenge(client: httpx.AsyncClient) -> None:
    response = await client.get("/token")
    assert_problem(response, 401, "invalid_token")
    assert response.headers["www-authenticate"] == 'Bearer error="invalid_token"'


async def test_missing_token_carries_a_bare_bearer_challenge(client: httpx.AsyncClient) -> None:
    response = await client.get("/no-token")
    assert_problem(response, 401, "missing_token")
    assert response.headers["www-authenticate"] == "Bearer"


async def test_validation_error_lists_loc_and_msg_only(client: httpx.AsyncClient) -> None:
    response = await client.post("/body", json={"name": "ok", "size": "not-a-number"})
    body = assert_problem(response, 422, "validation_error")
    assert body["errors"]
    for item in body["errors"]:
        assert set(item) == {"loc", "msg"}
    assert ["body", "size"] in [item["loc"] for item in body["errors"]]


async def test_validation_error_never_echoes_the_submitted_value(
    client: httpx.AsyncClient,
) -> None:
    response = await client.post("/body", json={"name": "sekrit-value-xyz", "size": 1})
    body = assert_problem(response, 422, "validation_error")
    assert ["body", "name"] in [item["loc"] for item in body["errors"]]
    assert "sekrit-value-xyz" not in response.text


async def test_malformed_json_is_a_validation_problem_without_the_raw_body(
    client: httpx.AsyncClient,
) -> None:
    response = await client.post(
        "/body",
        content=b'{"name": "sekrit-value-xyz", ',
        headers={"content-type": "application/json"},
    )
    assert_problem(response, 422, "validation_error")
    assert "sekrit-value-xyz" not in response.text


async def test_unknown_route_is_a_not_found_problem(client: httpx.AsyncClient) -> None:
    assert_problem(await client.get("/no/such/route"), 404, "not_found")


async def test_wrong_method_is_a_method_not_allowed_problem(client: httpx.AsyncClient) -> None:
    response = await client.delete("/missing")
    assert_problem(response, 405, "method_not_allowed")
    assert response.headers["allow"] == "GET"


async def test_unexpected_exception_is_a_generic_internal_error(
    client: httpx.AsyncClient, caplog: pytest.LogCaptureFixture
) -> None:
    with caplog.at_level(logging.ERROR, logger="s3gate.errors"):
        response = await client.get("/boom?token=secret-token-123")
    assert_problem(response, 500, "internal_error")
    assert "secret-token-123" not in response.text
    assert "RuntimeError" not in response.text
    assert "Traceback" not in response.text
    # Logged with the route template, not the raw URL with its query.
    messages = [record.getMessage() for record in caplog.records]
    assert any("RuntimeError" in m and "/boom" in m for m in messages)
    assert not any("token=" in m for m in messages)


def test_problem_model_accepts_every_rendered_body() -> None:
    for error in (NotFound(), UploadRejected("x"), InvalidToken()):
        assert Problem.model_validate(error.body()).code == error.code
    failed = ValidationFailed(errors=[{"loc": ["body", "size"], "msg": "bad"}])
    assert Problem.model_validate(failed.body()).errors is not None


def test_problem_responses_declares_each_code_under_its_status() -> None:
    declared = problem_responses(NotFound, UploadRejected, ValidationFailed, InvalidToken)
    assert set(declared) == {404, 422, 401}
    for entry in declared.values():
        assert entry["model"] is Problem
    examples_422 = declared[422]["content"][PROBLEM_JSON]["examples"]
    assert set(examples_422) == {"upload_rejected", "validation_error"}
    assert examples_422["upload_rejected"]["value"]["status"] == 422
    assert examples_422["upload_rejected"]["value"]["code"] == "upload_rejected"
    assert "`upload_rejected`" in declared[422]["description"]
    assert "`validation_error`" in declared[422]["description"]
    assert set(declared[404]["content"][PROBLEM_JSON]["examples"]) == {"not_found"}
    assert declared[401]["description"] == "`invalid_token`"


def test_no_openapi_error_example_shows_the_internal_error_text() -> None:
    from app.main import create_app

    settings = Settings(_env_file=None, s3_bucket="bucket", jwt_secret=TEST_JWT_SECRET)  # type: ignore[call-arg, arg-type]
    spec = create_app(settings).openapi()
    examples = {
        code: example["value"]
        for path in spec["paths"].values()
        for operation in path.values()
        for response in operation.get("responses", {}).values()
        for code, example in response.get("content", {})
        .get(PROBLEM_JSON, {})
        .get("examples", {})
        .items()
    }
    assert {"file_too_large", "content_type_not_allowed", "upload_rejected", "not_ready"} <= set(
        examples
    )
    internal = AppError.default_detail
    assert [code for code, body in examples.items() if body["detail"] == internal] == []


def test_an_error_code_without_its_own_detail_is_refused_at_definition() -> None:
    with pytest.raises(TypeError, match="default_detail"):

        class Undocumented(AppError):
            status, code, title = 418, "teapot", "Teapot"


# --- body limit and no-store --------------------------------------------------------------------


async def _chunks(total: int, size: int = 8192) -> AsyncIterator[bytes]:
    sent = 0
    while sent < total:
        n = min(size, total - sent)
        sent += n
        yield b"x" * n


async def test_declared_length_over_the_limit_is_refused(guarded: httpx.AsyncClient) -> None:
    response = await guarded.post("/raw", content=b"x" * (LIMIT + 1))
    assert_problem(response, 413, "request_too_large")


async def test_early_413_is_marked_no_store(guarded: httpx.AsyncClient) -> None:
    response = await guarded.post("/raw", content=b"x" * (LIMIT + 1))
    assert response.status_code == 413
    assert response.headers.get("cache-control") == "no-store"


async def test_chunked_413_is_marked_no_store(guarded: httpx.AsyncClient) -> None:
    response = await guarded.post("/raw", content=_chunks(LIMIT + 1))
    assert response.status_code == 413
    assert response.headers.get("cache-control") == "no-store"


async def test_internal_error_is_still_a_problem_behind_the_guard(
    guarded: httpx.AsyncClient,
) -> None:
    response = await guarded.get("/boom")
    assert_problem(response, 500, "internal_error")
    assert "secret-token-123" not in response.text


async def test_internal_error_is_marked_no_store(guarded: httpx.AsyncClient) -> None:
    response = await guarded.get("/boom")
    assert response.status_code == 500
    assert response.headers.get("cache-control") == "no-store"


async def test_declared_length_at_the_limit_is_accepted(guarded: httpx.AsyncClient) -> None:
    response = await guarded.post("/raw", content=b"x" * LIMIT)
    assert response.status_code == 200
    assert response.json() == {"received": LIMIT}


async def test_chunked_body_over_the_limit_is_refused(guarded: httpx.AsyncClient) -> None:
    request = guarded.build_request("POST", "/raw", content=_chunks(LIMIT + 1))
    assert "content-length" not in request.headers
    response = await guarded.send(request)
    assert_problem(response, 413, "request_too_large")


async def test_chunked_body_at_the_limit_is_accepted(guarded: httpx.AsyncClient) -> None:
    response = await guarded.post("/raw", content=_chunks(LIMIT))
    assert response.status_code == 200
    assert response.json() == {"received": LIMIT}


async def test_chunked_body_over_the_limit_is_refused_on_a_pydantic_route(
    guarded: httpx.AsyncClient,
) -> None:
    response = await guarded.post(
        "/body", content=_chunks(LIMIT + 1), headers={"content-type": "application/json"}
    )
    assert_problem(response, 413, "request_too_large")


async def test_responses_are_marked_no_store(guarded: httpx.AsyncClient) -> None:
    response = await guarded.get("/ok")
    assert response.status_code == 200
    assert response.headers["cache-control"] == "no-store"


async def test_error_responses_are_marked_no_store(guarded: httpx.AsyncClient) -> None:
    for response in (await guarded.get("/missing"), await guarded.get("/no/such/route")):
        assert response.headers["cache-control"] == "no-store"


async def test_route_cache_control_is_kept(guarded: httpx.AsyncClient) -> None:
    response = await guarded.get("/cached")
    assert response.headers.get_list("cache-control") == ["public, max-age=60"]
