"""problem+json: the one renderer of AppError, and the handlers that route FastAPI's and
Starlette's own errors (validation, unknown routes, anything unexpected) through it."""

from __future__ import annotations

import logging
from http import HTTPStatus
from typing import Any

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from pydantic import BaseModel
from starlette.exceptions import HTTPException as StarletteHTTPException

from app.errors import (
    AppError,
    MethodNotAllowed,
    NotFound,
    UnsupportedMediaType,
    ValidationFailed,
)
from app.mediatypes import is_json

log = logging.getLogger("s3gate.errors")

PROBLEM_JSON = "application/problem+json"


class ValidationErrorItem(BaseModel):
    loc: list[str | int]
    msg: str


class Problem(BaseModel):
    """RFC 9457 problem details with a stable `code` to switch on."""

    type: str
    title: str
    status: int
    detail: str
    code: str
    errors: list[ValidationErrorItem] | None = None


def problem_responses(*errors: type[AppError]) -> dict[int | str, dict[str, Any]]:
    """OpenAPI `responses` declaring these errors, one example per code."""
    declared: dict[int | str, dict[str, Any]] = {}
    for error in errors:
        entry = declared.setdefault(
            error.status,
            {
                "model": Problem,
                "description": "",
                "content": {PROBLEM_JSON: {"examples": {}}},
            },
        )
        entry["description"] = " / ".join(filter(None, [entry["description"], f"`{error.code}`"]))
        entry["content"][PROBLEM_JSON]["examples"][error.code] = {"value": error().body()}
    return declared


def problem_response(error: AppError) -> JSONResponse:
    """Render an AppError; the one place an error body is built."""
    return JSONResponse(
        error.body(), status_code=error.status, headers=error.headers, media_type=PROBLEM_JSON
    )


def _validation_errors(exc: RequestValidationError) -> list[dict[str, Any]]:
    # Only loc and msg: pydantic's `input`/`ctx` could echo a token or other secret back.
    return [
        {"loc": list(error.get("loc", ())), "msg": str(error.get("msg", "invalid"))}
        for error in exc.errors()
    ]


async def _on_app_error(_: Request, exc: Exception) -> JSONResponse:
    assert isinstance(exc, AppError)
    return problem_response(exc)


async def _on_validation_error(request: Request, exc: Exception) -> JSONResponse:
    assert isinstance(exc, RequestValidationError)
    errors = _validation_errors(exc)
    # FastAPI parses a body as JSON only when it is labelled so; any other label reaches the
    # model as raw bytes and fails as "not an object", which would hide the real mistake.
    sent_body = request.headers.get("content-length", "0") != "0" or (
        "transfer-encoding" in request.headers
    )
    if (
        sent_body
        and not is_json(request.headers.get("content-type", ""))
        and any(error["loc"][:1] == ["body"] for error in errors)
    ):
        return problem_response(UnsupportedMediaType())
    return problem_response(ValidationFailed(errors=errors))


async def _on_http_error(_: Request, exc: Exception) -> JSONResponse:
    assert isinstance(exc, StarletteHTTPException)
    if exc.status_code == 404:
        return problem_response(NotFound())
    if exc.status_code == 405:
        return problem_response(MethodNotAllowed(headers=exc.headers))
    phrase = HTTPStatus(exc.status_code).phrase
    error = AppError(phrase, headers=exc.headers)
    error.status, error.title = exc.status_code, phrase
    error.code = phrase.lower().replace(" ", "_").replace("-", "_")
    return problem_response(error)


async def _on_unexpected(request: Request, exc: Exception) -> JSONResponse:
    # Logged with the route template, never the raw URL or headers (they may carry secrets).
    route = request.scope.get("route")
    log.error(
        "unhandled %s on %s %s",
        type(exc).__name__,
        request.method,
        getattr(route, "path", "?"),
        exc_info=exc,
    )
    return problem_response(AppError())


def install_error_handlers(app: FastAPI) -> None:
    """Route every error, ours, FastAPI's and Starlette's, through problem_response."""
    app.add_exception_handler(AppError, _on_app_error)
    app.add_exception_handler(RequestValidationError, _on_validation_error)
    app.add_exception_handler(StarletteHTTPException, _on_http_error)
    app.add_exception_handler(Exception, _on_unexpected)
