"""Download route: a short-lived GET URL, as JSON or as a redirect."""

from __future__ import annotations

from typing import Annotated, Literal

from fastapi import APIRouter, Query
from fastapi.responses import RedirectResponse, Response

from app.errors import (
    AppError,
    CredentialsUnavailable,
    FileNotAvailable,
    InvalidToken,
    MissingToken,
    NotFound,
    RateLimited,
    RateLimiterUnavailable,
    ValidationFailed,
)
from app.http.deps import FileIdDep, FilesDep, LimitedPrincipalDep, PrincipalDep
from app.http.middleware import ModelResponse
from app.http.problems import problem_responses
from app.http.routing import LeanRoute
from app.schemas import (
    BatchDownloadIn,
    BatchDownloadItemOut,
    BatchDownloadOut,
    DownloadOut,
    ProblemOut,
)
from app.signer import PresignedRequest

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


@router.post(
    "/downloads",
    summary="Get presigned download URLs for up to 100 files",
    response_model=BatchDownloadOut,
    responses=problem_responses(
        MissingToken,
        InvalidToken,
        ValidationFailed,
        CredentialsUnavailable,
        RateLimited,
        RateLimiterUnavailable,
    ),
)
async def download_many(
    body: BatchDownloadIn, principal: PrincipalDep, files: FilesDep
) -> Response:
    """One entry per id, in order: `url`, `method` and `expires_at`, or the `problem` the single
    route would answer for it (`not_found`, `file_not_available`, `rate_limited`). One ledger
    query for the batch. Each URL issued counts once against the caller's rate limit: a batch
    gets as many URLs as the burst (S3GATE_RATE_LIMIT_BURST) has room for, the rest answer
    `rate_limited`; with no room at all the whole request is a 429."""
    answers = await files.issue_downloads(principal, body.ids, body.disposition)
    items = [_item(file_id, answer) for file_id, answer in zip(body.ids, answers, strict=True)]
    return ModelResponse(BatchDownloadOut(items=items))


def _item(file_id: str, answer: object) -> BatchDownloadItemOut:
    if isinstance(answer, AppError):
        return BatchDownloadItemOut(id=file_id, problem=ProblemOut(**answer.body()))
    assert isinstance(answer, PresignedRequest)
    return BatchDownloadItemOut(
        id=file_id, url=answer.url, method="GET", expires_at=answer.expires_at
    )
