"""Download route: a short-lived GET URL, as JSON or as a redirect."""

from __future__ import annotations

from typing import Annotated, Literal

from fastapi import APIRouter, Query
from fastapi.responses import RedirectResponse, Response

from app.errors import (
    CredentialsUnavailable,
    FileNotAvailable,
    InvalidToken,
    MissingToken,
    NotFound,
    RateLimited,
    RateLimiterUnavailable,
    ValidationFailed,
)
from app.http.deps import FileIdDep, FilesDep, LimitedPrincipalDep
from app.http.middleware import ModelResponse
from app.http.problems import problem_responses
from app.http.routing import LeanRoute
from app.schemas import DownloadOut

router = APIRouter(tags=["downloads"], route_class=LeanRoute)


@router.get(
    "/downloads/{file_id}",
    summary="Get a presigned download URL",
    response_model=DownloadOut,
    responses={
        307: {"description": "`redirect=true`: Location is the presigned URL"},
        **problem_responses(
            MissingToken,
            InvalidToken,
            NotFound,
            FileNotAvailable,
            ValidationFailed,
            CredentialsUnavailable,
            RateLimited,
            RateLimiterUnavailable,
        ),
    },
)
async def download(
    file_id: FileIdDep,
    principal: LimitedPrincipalDep,
    files: FilesDep,
    disposition: Annotated[Literal["attachment", "inline"], Query()] = "attachment",
    redirect: Annotated[bool, Query()] = False,
) -> Response:
    """The URL makes the store answer with `Cache-Control: private, no-store`. Only inert types
    are served inline and under their declared type: raster images (PNG, APNG, JPEG, GIF, WebP,
    AVIF, BMP), `video/*`, `audio/*`, `text/plain`, `application/json` and `application/pdf`.
    Every other type (HTML, SVG, XML, JavaScript, the "unknown" types browsers sniff, and any
    other) is served as an `application/octet-stream` attachment, whatever `disposition` asks.
    """
    presigned = await files.issue_download(principal, file_id, disposition)
    if redirect:
        return RedirectResponse(presigned.url, status_code=307)
    return ModelResponse(
        DownloadOut(url=presigned.url, method="GET", expires_at=presigned.expires_at)
    )
