"""The browser client (/client/, always), the demo page (/demo/, when S3GATE_DEMO is on) and
the API docs pages (/docs, /redoc), every script and style served from this service."""

from __future__ import annotations

import base64
import functools
import hashlib
import os
import re
from collections.abc import Awaitable, Callable, Mapping
from pathlib import Path
from types import MappingProxyType
from typing import TYPE_CHECKING

import fastapi_offline
from fastapi import FastAPI, Request
from fastapi.openapi.docs import get_redoc_html, get_swagger_ui_html
from starlette.responses import HTMLResponse, Response
from starlette.staticfiles import StaticFiles
from starlette.types import Scope

from app.config import Settings

if TYPE_CHECKING:
    from app.lifespan import AppState

STATIC_DIR = Path(__file__).resolve().parent.parent / "static"
# The Swagger UI and ReDoc bundles fastapi-offline ships (its static/ folder, hence the
# upper bound on it in pyproject.toml): the docs pages work offline and load no third party.
DOCS_ASSETS_DIR = Path(fastapi_offline.__file__).resolve().parent / "static"
DOCS_ASSETS_PATH = "/docs/assets"
# Swagger UI starts from an inline script, allowed by its hash. ReDoc injects its styles at run
# time (styled-components), hence inline styles; nothing else the pages use comes from
# elsewhere, and the browser refuses what would (ReDoc's sidebar links a logo on its CDN).
DOCS_POLICY = (
    "default-src 'none'; script-src 'self'{scripts}; style-src 'self' 'unsafe-inline'; "
    "img-src 'self' data:; font-src 'self' data:; connect-src 'self'; worker-src 'self' blob:; "
    "base-uri 'none'; form-action 'none'; frame-ancestors 'none'"
)
_INLINE_SCRIPT = re.compile(r"<script>(.*?)</script>", re.DOTALL)
# Python's mimetypes calls `.ts` MPEG transport stream.
_TYPES = {".js": "text/javascript; charset=utf-8", ".ts": "text/plain; charset=utf-8"}


Headers = Callable[[Scope], Mapping[str, str]]


class _Assets(StaticFiles):
    """Static files with the security headers each folder needs (revalidated through ETag)."""

    def __init__(self, directory: Path, headers: Headers, *, html: bool = False) -> None:
        super().__init__(directory=directory, html=html)
        self.extra_headers = headers

    def file_response(
        self,
        full_path: str | os.PathLike[str],
        stat_result: os.stat_result,
        scope: Scope,
        status_code: int = 200,
    ) -> Response:
        response = super().file_response(full_path, stat_result, scope, status_code)
        media_type = _TYPES.get(Path(full_path).suffix)
        if media_type:
            response.headers["content-type"] = media_type
        response.headers["cache-control"] = "no-cache"
        response.headers.update(self.extra_headers(scope))
        return response


_NOSNIFF = MappingProxyType({"x-content-type-options": "nosniff"})


@functools.lru_cache(maxsize=4)
def _demo_headers(storage_origin: str) -> Mapping[str, str]:
    # The page may talk to this service and the store, load nothing from elsewhere, and never
    # be framed.
    policy = (
        "default-src 'none'; script-src 'self'; style-src 'self'; img-src 'self' data:; "
        f"connect-src 'self' {storage_origin}; base-uri 'none'; "
        "form-action 'none'; frame-ancestors 'none'"
    )
    return MappingProxyType(
        {**_NOSNIFF, "content-security-policy": policy, "referrer-policy": "no-referrer"}
    )


def _demo_headers_for(scope: Scope) -> Mapping[str, str]:
    # The store's origin is the one the running signer writes into every URL (bucket, region
    # and addressing style resolved by botocore), known once the lifespan has built it.
    state: AppState = scope["app"].state.s3gate
    return _demo_headers(state.use_cases.signer.origin)


def mount_browser_assets(app: FastAPI, settings: Settings) -> None:
    app.mount("/client", _Assets(STATIC_DIR / "client", lambda _: _NOSNIFF), name="client")
    if settings.demo:
        app.mount("/demo", _Assets(STATIC_DIR / "demo", _demo_headers_for, html=True), name="demo")


def add_docs_pages(app: FastAPI) -> None:
    """/docs (Swagger UI) and /redoc on the OpenAPI document, their assets under /docs/assets."""
    app.mount(
        DOCS_ASSETS_PATH,
        _Assets(DOCS_ASSETS_DIR, lambda _: _NOSNIFF),
        name="docs-assets",
    )
    openapi_url = app.openapi_url or "/openapi.json"

    def prefix(request: Request) -> str:
        # Behind a proxy that strips a path prefix, every URL on the page carries it.
        root: str = request.scope.get("root_path", "")
        return root.rstrip("/")

    async def swagger_ui(request: Request) -> HTMLResponse:
        root = prefix(request)
        return get_swagger_ui_html(
            openapi_url=root + openapi_url,
            title=f"{app.title} - Swagger UI",
            swagger_js_url=f"{root}{DOCS_ASSETS_PATH}/swagger-ui-bundle.js",
            swagger_css_url=f"{root}{DOCS_ASSETS_PATH}/swagger-ui.css",
            swagger_favicon_url=f"{root}{DOCS_ASSETS_PATH}/favicon.png",
            oauth2_redirect_url=None,  # bearer tokens only: no OAuth2 flow to come back from
            swagger_ui_parameters=app.swagger_ui_parameters,
        )

    async def redoc(request: Request) -> HTMLResponse:
        root = prefix(request)
        return get_redoc_html(
            openapi_url=root + openapi_url,
            title=f"{app.title} - ReDoc",
            redoc_js_url=f"{root}{DOCS_ASSETS_PATH}/redoc.standalone.js",
            redoc_favicon_url=f"{root}{DOCS_ASSETS_PATH}/favicon.png",
            with_google_fonts=False,
        )

    app.add_route("/docs", _with_policy(swagger_ui), include_in_schema=False)
    app.add_route("/redoc", _with_policy(redoc), include_in_schema=False)


def _with_policy(
    page: Callable[[Request], Awaitable[HTMLResponse]],
) -> Callable[[Request], Awaitable[HTMLResponse]]:
    """`page` answered with DOCS_POLICY, its own inline scripts allowed by their hashes."""

    async def answer(request: Request) -> HTMLResponse:
        response = await page(request)
        scripts = "".join(
            f" 'sha256-{base64.b64encode(hashlib.sha256(script.encode()).digest()).decode()}'"
            for script in _INLINE_SCRIPT.findall(bytes(response.body).decode())
        )
        response.headers["content-security-policy"] = DOCS_POLICY.format(scripts=scripts)
        response.headers["referrer-policy"] = "no-referrer"
        response.headers["x-content-type-options"] = "nosniff"
        return response

    return answer
