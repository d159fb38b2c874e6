"""Upload routes: create a presigned upload, complete it, abandon it."""

from __future__ import annotations

from fastapi import APIRouter, Response, status

from app.errors import (
    ContentTypeNotAllowed,
    CredentialsUnavailable,
    FileTooLarge,
    FormUploadUnsupported,
    IdempotencyKeyReused,
    InvalidToken,
    MissingToken,
    NotFound,
    NotMultipart,
    NotPending,
    QuotaExceeded,
    RateLimited,
    RateLimiterUnavailable,
    RequestTooLarge,
    StorageUnavailable,
    UnsupportedMediaType,
    UploadExpired,
    UploadIncomplete,
    UploadRejected,
    ValidationFailed,
)
from app.http.deps import (
    CompletionDep,
    FileIdDep,
    IdempotencyKeyDep,
    LimitedPrincipalDep,
    PreferDep,
    PrincipalDep,
    UploadsDep,
)
from app.http.middleware import ModelResponse
from app.http.problems import problem_responses
from app.http.routing import LeanRoute
from app.models import FileStatus
from app.schemas import (
    CreateUploadRequest,
    CreateUploadResponse,
    FileOut,
    FormUploadOut,
    MultipartUploadOut,
    PartsOut,
    PartsRequest,
    PartUrlOut,
    StoredPartOut,
    StoredPartsOut,
    UploadOut,
    UploadSettingsOut,
)
from app.signer import PresignedPost, PresignedRequest
from app.usecases.plans import MultipartPlan

router = APIRouter(tags=["uploads"], route_class=LeanRoute)
_AUTH_ERRORS = (MissingToken, InvalidToken)


@router.post(
    "/uploads",
    status_code=status.HTTP_201_CREATED,
    response_model=CreateUploadResponse,
    summary="Declare a file and get a presigned upload",
    responses={
        200: {"model": CreateUploadResponse, "description": "Idempotency-Key replay"},
        **problem_responses(
            *_AUTH_ERRORS,
            NotPending,
            RequestTooLarge,
            FileTooLarge,
            ContentTypeNotAllowed,
            UnsupportedMediaType,
            ValidationFailed,
            FormUploadUnsupported,
            IdempotencyKeyReused,
            CredentialsUnavailable,
            RateLimited,
            RateLimiterUnavailable,
            QuotaExceeded,
        ),
    },
)
async def create_upload(
    body: CreateUploadRequest,
    principal: LimitedPrincipalDep,
    uploads: UploadsDep,
    idempotency_key: IdempotencyKeyDep = None,
) -> Response:
    """The URL is bound to the declared type, size and checksum: S3 refuses anything else."""
    ticket = await uploads.create_upload(principal, body, idempotency_key)
    answer = CreateUploadResponse(
        file=FileOut.model_validate(ticket.file), upload=_upload_out(ticket.upload)
    )
    return ModelResponse(answer, status.HTTP_201_CREATED if ticket.created else status.HTTP_200_OK)


def _upload_out(
    upload: PresignedRequest | PresignedPost | MultipartPlan,
) -> UploadOut | FormUploadOut | MultipartUploadOut:
    if isinstance(upload, MultipartPlan):
        return MultipartUploadOut(
            method="MULTIPART",
            part_size=upload.part_size,
            part_count=upload.part_count,
            expires_at=upload.expires_at,
        )
    if isinstance(upload, PresignedPost):
        return FormUploadOut(
            method="POST", url=upload.url, fields=dict(upload.fields), expires_at=upload.expires_at
        )
    return UploadOut(
        method="PUT", url=upload.url, headers=dict(upload.headers), expires_at=upload.expires_at
    )


@router.get(
    "/uploads/settings",
    response_model=UploadSettingsOut,
    summary="What this deployment accepts: sizes, types, parts, TTLs, limits",
    responses=problem_responses(*_AUTH_ERRORS),
)
async def upload_settings(principal: PrincipalDep, uploads: UploadsDep) -> Response:
    """For clients that plan an upload before creating it (Uppy decides single PUT or
    multipart, and the part size, on the client): read these instead of copying the server's
    settings. The quotas are the caller's own (a quota tier from its token)."""
    return ModelResponse(uploads.published(principal))


@router.post(
    "/uploads/{file_id}/parts",
    response_model=PartsOut,
    summary="Get presigned URLs for parts of a multipart upload",
    responses=problem_responses(
        *_AUTH_ERRORS,
        NotFound,
        NotMultipart,
        NotPending,
        UploadExpired,
        UnsupportedMediaType,
        ValidationFailed,
        RateLimited,
        RateLimiterUnavailable,
    ),
)
async def sign_parts(
    file_id: FileIdDep, body: PartsRequest, principal: PrincipalDep, uploads: UploadsDep
) -> Response:
    """Each URL is bound to its part's exact length; ask again any time before the deadline.
    Up to two URLs per part (`part_url_budget_per_part` in `GET /uploads/settings`) come from
    the upload's own budget, admitted when it was created; past that, each request counts
    against the caller's rate limit. A client asking one part per request is never throttled
    on an ordinary file."""
    signed = await uploads.sign_parts(principal, file_id, body.part_numbers)
    parts = [
        PartUrlOut(
            part_number=number,
            url=url.url,
            headers=dict(url.headers),
            expires_at=url.expires_at,
        )
        for number, url in signed
    ]
    return ModelResponse(PartsOut(parts=parts))


@router.get(
    "/uploads/{file_id}/parts",
    response_model=StoredPartsOut,
    summary="List the parts the store already holds (resume after a crash)",
    responses=problem_responses(
        *_AUTH_ERRORS,
        NotFound,
        NotMultipart,
        NotPending,
        UploadExpired,
        StorageUnavailable,
        RateLimited,
        RateLimiterUnavailable,
    ),
)
async def stored_parts(
    file_id: FileIdDep, principal: LimitedPrincipalDep, uploads: UploadsDep
) -> Response:
    """Upload the parts that are missing here, then complete. Each call asks the store, so it
    counts against the caller's rate limit."""
    plan, parts = await uploads.stored_parts(principal, file_id)
    return ModelResponse(
        StoredPartsOut(
            part_size=plan.part_size,
            part_count=plan.part_count,
            parts=[StoredPartOut(part_number=p.number, size=p.size) for p in parts],
        )
    )


@router.post(
    "/uploads/{file_id}/complete",
    response_model=FileOut,
    summary="Verify the stored object and make the file available",
    responses={
        202: {
            "model": FileOut,
            "description": "Accepted: status `verifying`, finished by the background worker",
        },
        **problem_responses(
            *_AUTH_ERRORS,
            NotFound,
            UploadIncomplete,
            UploadExpired,
            UploadRejected,
            StorageUnavailable,
            RateLimited,
            RateLimiterUnavailable,
        ),
    },
)
async def complete_upload(
    file_id: FileIdDep,
    principal: LimitedPrincipalDep,
    completion: CompletionDep,
    prefer: PreferDep = None,
) -> Response:
    """Asks the store, never the client: size, type, checksum, leading bytes and stored
    headers must match. One completion verifies a file at a time (across replicas); another
    arriving meanwhile waits for its result (S3GATE_COMPLETION_WAIT_SECONDS, 15 s), then 409
    `upload_incomplete` ("verifying") without reading the object. Counts against the caller's
    rate limit (it reads the store).

    **202** with status `verifying` when the rest needs the whole object (a multipart or
    Ceph-stored file with a declared SHA-256, a malware scan): a background worker finishes it
    to `available` or `rejected` (a `file.available` / `file.rejected` event); a second call
    answers the same 202 without reading anything. Send `Prefer: wait=N` to have the answer
    held until then (up to N s), or poll `GET /files/{id}`."""
    record = await completion.complete_upload(principal, file_id, _wait_seconds(prefer))
    verifying = record.status == FileStatus.VERIFYING
    return ModelResponse(
        FileOut.model_validate(record),
        status.HTTP_202_ACCEPTED if verifying else status.HTTP_200_OK,
    )


def _wait_seconds(prefer: str | None) -> float:
    """N of a `wait=N` preference; anything else is ignored, as RFC 7240 asks."""
    for preference in (prefer or "").split(","):
        name, _, value = preference.strip().partition("=")
        if name.strip().lower() == "wait" and value.strip().isdigit():
            return float(value.strip())
    return 0.0


@router.delete(
    "/uploads/{file_id}",
    status_code=status.HTTP_204_NO_CONTENT,
    summary="Abandon a pending upload",
    responses=problem_responses(*_AUTH_ERRORS, NotFound, NotPending),
)
async def abandon_upload(
    file_id: FileIdDep, principal: PrincipalDep, uploads: UploadsDep
) -> Response:
    """Removes any partial object; the file disappears. Idempotent: an upload that already
    ended (rejected, expired, abandoned, deleted) answers 204 too, so a widget that aborts
    after a failed completion meets no error. A file that is `verifying` or `available` is
    409 `not_pending` (delete it with `DELETE /files/{id}`); an id the caller cannot see, 404."""
    await uploads.abandon_upload(principal, file_id)
    return Response(status_code=status.HTTP_204_NO_CONTENT)
