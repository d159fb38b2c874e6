"""The FastAPI application factory. `uvicorn app.main:app` builds it from the environment."""

from __future__ import annotations

import functools
from typing import Any

from fastapi import FastAPI
from fastapi.openapi.utils import get_openapi

from app.auth import TokenVerifier, bearer_description
from app.config import ConfigError, Settings, load_settings
from app.http.assets import add_docs_pages, mount_browser_assets
from app.http.middleware import CORS, BodyLimitMiddleware, RootPathMiddleware
from app.http.observer import RequestObserver
from app.http.problems import install_error_handlers
from app.http.routers import downloads, events, files, ops, sharing, uploads
from app.http.routers.sharing import SHARE_LINK_PATH
from app.lifespan import lifespan

DESCRIPTION = """\
Short-lived S3 presigned URLs for a private bucket. Callers authenticate with a JWT
(`Authorization: Bearer ...`); every file is owned by the token's `sub`.

Every error is `application/problem+json` with a stable `code`. Every answer is
`Cache-Control: no-store` (it is one caller's, and may carry a signed URL).
"""


def create_app(settings: Settings | None = None) -> FastAPI:
    """Build the app; tests pass their own Settings, servers read the environment."""
    settings = settings or load_settings(Settings)
    # Built here, not in lifespan: key material that cannot verify anything is a ConfigError
    # at startup with a clear message, not a traceback from inside the server.
    verifier = TokenVerifier(settings)
    app = FastAPI(
        title="s3gate",
        version="0.1.0",
        description=DESCRIPTION,
        lifespan=lifespan,
        # FastAPI's own docs pages load their scripts from a CDN; add_docs_pages serves them.
        docs_url=None,
        redoc_url=None,
        # s3gate exports Prometheus metrics and its own access/audit lines; FastAPI's native
        # OpenTelemetry hooks would only ask the (unconfigured) global providers per request.
        telemetry={"tracing": False, "metrics": False, "logs": False, "operation_spans": False},
    )
    app.state.settings = settings
    app.state.verifier = verifier
    install_error_handlers(app)
    for module in (uploads, downloads, files, sharing, events, ops):
        # The routes join the app's own router: include_router keeps each router as a
        # matching layer, ~20 us per request (bench/), for features (prefixes, router-wide
        # dependencies) this app does not use.
        app.router.routes.extend(module.router.routes)
    mount_browser_assets(app, settings)
    add_docs_pages(app)
    app.add_middleware(BodyLimitMiddleware)
    # Outside the body limit, so its 413s carry an X-Request-ID and are counted too.
    app.add_middleware(RequestObserver)
    if settings.cors_origins:
        # Outermost, so error answers carry CORS headers too and browsers can read their code.
        app.add_middleware(
            CORS,
            allow_origins=settings.cors_origins,
            allow_methods=["GET", "POST", "DELETE"],
            allow_headers=[
                "Authorization",
                "Content-Type",
                "Idempotency-Key",
                "Prefer",
                "X-Request-ID",
            ],
            expose_headers=["Location", "Retry-After", "X-Request-ID"],
            max_age=600,
        )
    if settings.root_path:
        app.add_middleware(RootPathMiddleware, root_path=settings.root_path)
    app.openapi = functools.partial(_openapi_with_bearer, app)  # type: ignore[method-assign]
    return app


PUBLIC_PATHS = frozenset({"/healthz", "/readyz", "/metrics", SHARE_LINK_PATH})


def _openapi_with_bearer(app: FastAPI) -> dict[str, Any]:
    """FastAPI's schema plus the bearer scheme on every authenticated operation.

    Declared here rather than through a Security() dependency, which would run (and parse the
    header again) on every request only to feed the docs.
    """
    if app.openapi_schema is None:
        schema = get_openapi(
            title=app.title,
            version=app.version,
            description=app.description,
            routes=app.routes,
        )
        schema.setdefault("components", {})["securitySchemes"] = {
            "HTTPBearer": {
                "type": "http",
                "scheme": "bearer",
                "bearerFormat": "JWT",
                "description": bearer_description(app.state.settings),
            }
        }
        for path, operations in schema.get("paths", {}).items():
            if path in PUBLIC_PATHS:
                continue
            for operation in operations.values():
                operation["security"] = [{"HTTPBearer": []}]
        app.openapi_schema = schema
    return app.openapi_schema


@functools.cache
def _app_from_environment() -> FastAPI:
    try:
        return create_app()
    except ConfigError as exc:
        raise SystemExit(f"s3gate: invalid configuration\n{exc}") from None


def __getattr__(name: str) -> Any:
    # `app` is built on first access (by uvicorn), so importing this module has no side effects.
    if name == "app":
        return _app_from_environment()
    raise AttributeError(name)
