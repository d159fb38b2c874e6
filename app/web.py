"""The browser client (/client/, always) and the demo page (/demo/, when S3GATE_DEMO is on)."""

from __future__ import annotations

import os
from pathlib import Path
from urllib.parse import urlsplit

from fastapi import FastAPI
from starlette.responses import Response
from starlette.staticfiles import StaticFiles
from starlette.types import Scope

from app.config import Settings

STATIC_DIR = Path(__file__).resolve().parent / "static"
# Python's mimetypes calls `.ts` MPEG transport stream.
_TYPES = {".js": "text/javascript; charset=utf-8", ".ts": "text/plain; charset=utf-8"}


class _Assets(StaticFiles):
    """Static files with the security headers each folder needs (revalidated through ETag)."""

    def __init__(self, directory: Path, headers: dict[str, str], *, html: bool = False) -> None:
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
        response.headers.update(self.extra_headers)
        return response


def storage_origin(settings: Settings) -> str:
    """Where the browser sends bytes: the public S3 endpoint's origin, else AWS."""
    endpoint = settings.signing_endpoint_url
    if not endpoint:
        return "https://*.amazonaws.com"
    parts = urlsplit(endpoint)
    return f"{parts.scheme}://{parts.netloc}"


def mount_browser_assets(app: FastAPI, settings: Settings) -> None:
    nosniff = {"x-content-type-options": "nosniff"}
    app.mount("/client", _Assets(STATIC_DIR / "client", nosniff), name="client")
    if settings.demo:
        # The page may talk to this service and the store, load nothing from elsewhere, and
        # never be framed.
        policy = (
            "default-src 'none'; script-src 'self'; style-src 'self'; img-src 'self' data:; "
            f"connect-src 'self' {storage_origin(settings)}; base-uri 'none'; "
            "form-action 'none'; frame-ancestors 'none'"
        )
        headers = {**nosniff, "content-security-policy": policy, "referrer-policy": "no-referrer"}
        app.mount("/demo", _Assets(STATIC_DIR / "demo", headers, html=True), name="demo")
