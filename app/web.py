"""The browser client (/client/, always) and the demo page (/demo/, when S3GATE_DEMO is on)."""

from __future__ import annotations

import functools
import os
from collections.abc import Callable, Mapping
from pathlib import Path
from types import MappingProxyType
from typing import TYPE_CHECKING

from fastapi import FastAPI
from starlette.responses import Response
from starlette.staticfiles import StaticFiles
from starlette.types import Scope

from app.config import Settings

if TYPE_CHECKING:
    from app.lifespan import AppState

STATIC_DIR = Path(__file__).resolve().parent / "static"
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
    return _demo_headers(state.service.storage_origin)


def mount_browser_assets(app: FastAPI, settings: Settings) -> None:
    app.mount("/client", _Assets(STATIC_DIR / "client", lambda _: _NOSNIFF), name="client")
    if settings.demo:
        app.mount("/demo", _Assets(STATIC_DIR / "demo", _demo_headers_for, html=True), name="demo")
