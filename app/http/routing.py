"""A leaner request handler for the API's routes, behind FastAPI's own declarations.

FastAPI's per-request handler is general: two exit stacks, telemetry hooks, an endpoint
context, an `email.message` parse of every Content-Type, a dependency cache and a recursive
solver per request. Measured on `GET /downloads/{id}` (bench/, one worker): ~115 us of its
~430 us go to that machinery. `LeanRoute` keeps everything FastAPI derives from the
declarations (OpenAPI, routing, the validation of each parameter by FastAPI's own
`request_params_to_args` / `request_body_to_args`, so errors are the same) and replaces only
the per-request walk with a plan built once per route. A route whose declarations use anything
the plan does not cover (yield or sync dependencies, nested or repeated dependencies, cookies,
forms, background tasks, a non-Response return) keeps FastAPI's handler unchanged.

Relies on FastAPI's `Dependant` and param helpers: fastapi is pinned below the next minor.
"""

from __future__ import annotations

import inspect
import json
import typing
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass
from typing import Any

from fastapi import HTTPException, params
from fastapi.dependencies.models import Dependant
from fastapi.dependencies.utils import (
    _get_param_aliases,
    _get_param_model,
    request_body_to_args,
    request_params_to_args,
)
from fastapi.exceptions import RequestValidationError
from fastapi.routing import APIRoute
from pydantic_core import PydanticUndefined
from starlette.requests import ClientDisconnect, Request
from starlette.responses import Response
from starlette.routing import request_response

from app import mediatypes

_Call = Callable[..., Awaitable[Any]]


@dataclass(frozen=True, slots=True)
class _Dependency:
    """One `Depends(call)` of the endpoint: called with the request and/or path params."""

    name: str
    call: _Call
    request_param: str | None
    path_params: Sequence[Any]


_IMMUTABLE = (type(None), str, int, float, bool)


@dataclass(frozen=True, slots=True)
class _Params:
    """The path, query or header parameters of a route. When none of them was sent and none is
    required, their values are their defaults: FastAPI's answer too, found by a walk over each
    annotation per request (~8% of `POST /uploads` without an Idempotency-Key)."""

    fields: Sequence[Any]
    aliases: tuple[str, ...] | None  # None: some parameter is required or not a plain one
    defaults: dict[str, Any]

    @classmethod
    def of(cls, fields: Sequence[Any]) -> _Params:
        plain = all(
            _get_param_model(field) is None
            and not field.field_info.is_required()
            and isinstance(field.field_info.default, _IMMUTABLE)
            for field in fields
        )
        if not plain:
            return cls(tuple(fields), None, {})
        aliases = tuple(alias for field in fields for _, alias in _get_param_aliases(field))
        return cls(tuple(fields), aliases, {f.name: f.field_info.default for f in fields})

    def read(self, received: Any) -> tuple[dict[str, Any], list[Any]]:
        if self.aliases is not None and not any(alias in received for alias in self.aliases):
            return dict(self.defaults), []
        return request_params_to_args(self.fields, received)


@dataclass(frozen=True, slots=True)
class _Plan:
    endpoint: _Call
    dependencies: tuple[_Dependency, ...]
    dependant: Dependant
    path: _Params
    query: _Params
    headers: _Params
    embed_body_fields: bool
    reads_body: bool

    async def handle(self, request: Request) -> Response:
        # The order is FastAPI's: the body is read (and JSON-decoded) first, then each
        # dependency in declaration order (one that raises answers before any param error),
        # then the path, query and header params and the body are validated together.
        body = await _read_body(request) if self.reads_body else PydanticUndefined
        values: dict[str, Any] = {}
        errors: list[Any] = []
        for dependency in self.dependencies:
            arguments: dict[str, Any] = {}
            if dependency.path_params:
                arguments, problems = request_params_to_args(
                    dependency.path_params, request.path_params
                )
                if problems:
                    errors.extend(problems)
                    continue
            if dependency.request_param is not None:
                arguments[dependency.request_param] = request
            values[dependency.name] = await dependency.call(**arguments)
        dependant = self.dependant
        for kind, received in (
            (self.path, request.path_params),
            (self.query, request.query_params),
            (self.headers, request.headers),
        ):
            if kind.fields:
                found, problems = kind.read(received)
                values.update(found)
                errors.extend(problems)
        if dependant.body_params:
            found, problems = await request_body_to_args(
                body_fields=dependant.body_params,
                received_body=body,
                embed_body_fields=self.embed_body_fields,
            )
            values.update(found)
            errors.extend(problems)
        if dependant.request_param_name:
            values[dependant.request_param_name] = request
        if errors:
            raise RequestValidationError(errors, body=body)
        response: Response = await self.endpoint(**values)
        return response


async def _read_body(request: Request) -> Any:
    """The body as FastAPI reads it: JSON when labelled application/json or +json, else the
    raw bytes (which then fail validation as "not an object"), undefined when empty."""
    try:
        raw = await request.body()
    except ClientDisconnect:
        raise HTTPException(400, "There was an error parsing the body") from None
    if not raw:
        return PydanticUndefined
    major, _, minor = mediatypes.essence(request.headers.get("content-type")).partition("/")
    if major != "application" or not (minor == "json" or minor.endswith("+json")):
        return raw
    try:
        return json.loads(raw)
    except json.JSONDecodeError as exc:
        error = {
            "type": "json_invalid",
            "loc": ("body", exc.pos),
            "msg": "JSON decode error",
            "input": {},
            "ctx": {"error": exc.msg},
        }
        raise RequestValidationError([error], body=exc.doc) from None
    except UnicodeDecodeError:
        raise HTTPException(400, "There was an error parsing the body") from None


def _simple(dependant: Dependant) -> bool:
    """No parameter kind the plan does not handle."""
    return not (
        dependant.cookie_params
        or dependant.http_connection_param_name
        or dependant.websocket_param_name
        or dependant.background_tasks_param_name
        or dependant.response_param_name
        or dependant.security_scopes_param_name
        or dependant.own_oauth_scopes
        or dependant.parent_oauth_scopes
        or dependant.concurrency is not None
        or any(isinstance(f.field_info, params.Form) for f in dependant.body_params)
    )


def _dependency(sub: Dependant) -> _Dependency | None:
    call = sub.call
    if (
        call is None
        or sub.name is None
        or not inspect.iscoroutinefunction(call)
        or sub.dependencies
        or sub.query_params
        or sub.header_params
        or sub.body_params
        or not _simple(sub)
    ):
        return None
    return _Dependency(sub.name, call, sub.request_param_name, tuple(sub.path_params))


def _returns_response(endpoint: Callable[..., Any]) -> bool:
    try:
        returned = typing.get_type_hints(endpoint).get("return")
    except (NameError, TypeError):
        return False
    return inspect.isclass(returned) and issubclass(returned, Response)


def _plan(route: APIRoute) -> _Plan | None:
    """The route's plan, or None when FastAPI's own handler must serve it."""
    dependant = route.dependant
    endpoint = route.endpoint
    if (
        route.dependency_overrides_provider is not None
        or route.dependencies
        or route.max_body_size is not None
        or not inspect.iscoroutinefunction(endpoint)
        or not _returns_response(endpoint)
        or not _simple(dependant)
    ):
        return None
    dependencies = [_dependency(sub) for sub in dependant.dependencies]
    calls = [sub.call for sub in dependant.dependencies]
    if any(d is None for d in dependencies) or len(set(calls)) != len(calls):
        return None
    return _Plan(
        endpoint=endpoint,
        dependencies=tuple(d for d in dependencies if d is not None),
        dependant=dependant,
        path=_Params.of(dependant.path_params),
        query=_Params.of(dependant.query_params),
        headers=_Params.of(dependant.header_params),
        embed_body_fields=route._embed_body_fields,
        reads_body=route.body_field is not None,
    )


class LeanRoute(APIRoute):
    """An APIRoute served by its plan when it has one (see the module docstring)."""

    def __init__(self, path: str, endpoint: Callable[..., Any], **kwargs: Any) -> None:
        super().__init__(path, endpoint, **kwargs)
        self.fastapi_app = self.app  # FastAPI's own handler: the reference tests compare with
        plan = _plan(self)
        self.lean = plan is not None
        if plan is not None:
            self.app = request_response(plan.handle)
