"""Request and response bodies, exactly the shapes of the HTTP contract."""

from __future__ import annotations

import base64
import binascii
import uuid
from datetime import UTC, datetime
from typing import Annotated, Any, Literal

from pydantic import (
    AfterValidator,
    BaseModel,
    ConfigDict,
    Field,
    PlainSerializer,
    WithJsonSchema,
    model_validator,
)

from app.config.base import MAX_PARTS, MIN_PART_BYTES, SINGLE_PUT_MAX_BYTES
from app.filenames import normalize_filename
from app.mediatypes import DECLARED_TYPE


def _rfc3339(value: datetime) -> str:
    return value.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


Timestamp = Annotated[
    datetime,
    PlainSerializer(_rfc3339, return_type=str),
    WithJsonSchema({"type": "string", "format": "date-time", "example": "2026-11-22T21:00:00Z"}),
]


def _content_type(value: str) -> str:
    value = value.strip().lower()
    if ";" in value:
        raise ValueError("parameters (such as '; charset=...') are not accepted; send type/subtype")
    if not DECLARED_TYPE.fullmatch(value):
        raise ValueError("must be a media type of the form type/subtype")
    return value


def _checksum(value: str) -> str:
    try:
        digest = base64.b64decode(value, validate=True)
    except (binascii.Error, ValueError):
        raise ValueError("must be standard base64 of a SHA-256 digest") from None
    if len(digest) != 32 or base64.b64encode(digest).decode() != value:
        raise ValueError("must be the canonical base64 of a 32-byte SHA-256 digest")
    return value


def _filename(value: str) -> str:
    return normalize_filename(value)


FileStatusOut = Literal["pending", "verifying", "available", "rejected", "expired"]


class CreateUploadRequest(BaseModel):
    """What the client declares about the file it is going to upload."""

    model_config = ConfigDict(
        extra="forbid",
        json_schema_extra={
            "examples": [
                {
                    "filename": "Résumé 2026.pdf",
                    "content_type": "application/pdf",
                    "size": 48213,
                    "checksum_sha256": "n4bQgYhMfWWaL+qgxVrQFaO/TxsrC4Is0V1sFbDwCgg=",
                }
            ]
        },
    )

    filename: Annotated[
        str,
        Field(
            max_length=1024,
            description="1 to 255 bytes of UTF-8 after NFC; no path separators, controls, "
            "format characters or other Default_Ignorable code points (Hangul fillers, "
            "variation selectors, joiners), except ZWJ and VS16 inside emoji.",
        ),
        AfterValidator(_filename),
    ]
    content_type: Annotated[
        str,
        Field(
            max_length=255,
            description="`type/subtype`, allowed by S3GATE_ALLOWED_CONTENT_TYPES (else 415). "
            "`unknown/unknown`, `application/unknown` and `application/x-unknown-content-type` "
            "make browsers guess the type from the bytes: they are refused with 422 "
            "`validation_error` (at `body.content_type`) unless that setting names them exactly.",
        ),
        AfterValidator(_content_type),
    ]
    size: Annotated[int, Field(strict=True, ge=1)]
    checksum_sha256: Annotated[
        str | None,
        Field(max_length=64),
        AfterValidator(lambda v: None if v is None else _checksum(v)),
    ] = None
    form: bool = Field(
        default=False,
        description="Answer with an HTML-form presigned POST (for clients that cannot set "
        "headers) instead of a PUT. The policy writes to an upload key of its own; `complete` "
        "copies the verified bytes to the file's key, which no policy names, so posting again "
        "later never changes the file. Refused (422 `form_upload_unsupported`) where the "
        "store checks no form policy (S3GATE_STORE_PROFILE).",
    )
    multipart: bool = Field(
        default=False,
        description="Upload in parts even below the multipart threshold (files above it always "
        "are).",
    )
    part_size: int | None = Field(
        default=None,
        strict=True,
        ge=MIN_PART_BYTES,
        le=SINGLE_PUT_MAX_BYTES,
        description="The part size the client chunks with (5 MiB to 5 GiB, at most 10,000 "
        "parts): the part URLs are signed for exactly these lengths. Implies a multipart "
        "upload. Absent: S3GATE_PART_SIZE (GET /uploads/settings), grown to fit 10,000 parts.",
    )

    @model_validator(mode="after")
    def _one_kind(self) -> CreateUploadRequest:
        if self.form and (self.multipart or self.part_size is not None):
            raise ValueError("choose at most one of form and multipart (or part_size)")
        if self.part_size is not None and -(-self.size // self.part_size) > MAX_PARTS:
            raise ValueError(f"part_size makes more than {MAX_PARTS} parts of this size")
        return self


class FileOut(BaseModel):
    """The File resource."""

    model_config = ConfigDict(
        from_attributes=True,
        json_schema_extra={
            "examples": [
                {
                    "id": "0b6f1c1e-8a34-4c8e-9a51-2f0d3e0a9c11",
                    "filename": "Résumé 2026.pdf",
                    "content_type": "application/pdf",
                    "size": 48213,
                    "checksum_sha256": "n4bQgYhMfWWaL+qgxVrQFaO/TxsrC4Is0V1sFbDwCgg=",
                    "status": "pending",
                    "created_at": "2026-11-22T21:00:00Z",
                    "completed_at": None,
                    "upload_expires_at": "2026-11-22T21:15:00Z",
                }
            ]
        },
    )

    id: uuid.UUID
    filename: str
    content_type: str
    size: int
    checksum_sha256: str | None
    status: FileStatusOut
    created_at: Timestamp
    completed_at: Timestamp | None
    upload_expires_at: Timestamp


class EventFileOut(FileOut):
    """The File resource as an event carries it: as it was at the change, a deleted file's
    too (the API itself never shows a deleted file)."""

    status: FileStatusOut | Literal["deleted"]  # type: ignore[assignment]


class UploadOut(BaseModel):
    """How to send the bytes: a presigned PUT the client replays exactly."""

    method: Literal["PUT"]
    url: str
    headers: dict[str, str] = Field(
        description="Every header the client must send besides Content-Length: Content-Type, "
        "and as far as the store enforces them (S3GATE_STORE_PROFILE) If-None-Match: *, "
        "x-amz-checksum-sha256 and x-amz-acl. Send the map as given, never a fixed list.",
        examples=[{"Content-Type": "application/pdf", "If-None-Match": "*"}],
    )
    expires_at: Timestamp


class FormUploadOut(BaseModel):
    """How to send the bytes from an HTML form: a presigned POST (multipart/form-data)."""

    method: Literal["POST"]
    url: str
    fields: dict[str, str] = Field(
        description="Form fields to send, in this order, before the `file` field.",
        examples=[{"key": "uploads/...", "Content-Type": "application/pdf", "policy": "..."}],
    )
    expires_at: Timestamp


class MultipartUploadOut(BaseModel):
    """Upload in parts: ask POST /uploads/{id}/parts for part URLs, then complete."""

    method: Literal["MULTIPART"]
    part_size: int = Field(description="Bytes in every part but the last (which may be shorter).")
    part_count: int
    expires_at: Timestamp = Field(description="Deadline: part URLs can be asked for until then.")


class CreateUploadResponse(BaseModel):
    file: FileOut
    upload: Annotated[UploadOut | FormUploadOut | MultipartUploadOut, Field(discriminator="method")]


PartNumber = Annotated[int, Field(strict=True, ge=1, le=10_000)]


MAX_PART_NUMBERS = 1000  # part URLs signed by one request


class PartsRequest(BaseModel):
    """Which parts to sign URLs for (any time before the deadline, as often as needed)."""

    model_config = ConfigDict(
        extra="forbid", json_schema_extra={"examples": [{"part_numbers": [1, 2, 3]}]}
    )

    part_numbers: Annotated[list[PartNumber], Field(min_length=1, max_length=MAX_PART_NUMBERS)]

    @model_validator(mode="after")
    def _distinct(self) -> PartsRequest:
        if len(set(self.part_numbers)) != len(self.part_numbers):
            raise ValueError("part_numbers must not repeat")
        return self


class PartUrlOut(BaseModel):
    part_number: int
    url: str
    headers: dict[str, str] = Field(description="Headers to send besides Content-Length.")
    expires_at: Timestamp


class PartsOut(BaseModel):
    parts: list[PartUrlOut]


class StoredPartOut(BaseModel):
    part_number: int
    size: int


class StoredPartsOut(BaseModel):
    """What the store already holds: upload the missing parts, then complete."""

    part_size: int
    part_count: int
    parts: list[StoredPartOut]


class DownloadOut(BaseModel):
    url: str
    method: Literal["GET"]
    expires_at: Timestamp


class FileListOut(BaseModel):
    items: list[FileOut]
    next_cursor: str | None = Field(
        description="Pass as `cursor` to get the next page; null on the last page."
    )


class EventDataOut(BaseModel):
    owner: str = Field(description="The file's owner (the `sub` of the token that created it).")
    file: EventFileOut
    reason: str | None = Field(
        default=None,
        description=(
            "file.rejected only: why, as a stable code (size_mismatch, content_type_mismatch, "
            "unsigned_headers, checksum_mismatch, checksum_unavailable, content_mismatch, "
            "malware, too_large_to_scan)."
        ),
    )
    grant: GrantOut | None = Field(
        default=None, description="file.shared and grant.revoked: the grant (as it was)."
    )
    link: LinkOut | None = Field(
        default=None,
        description="link.created and link.revoked: the link (never its token).",
    )


class EventOut(BaseModel):
    """One event, the same JSON a webhook delivery carries as its body."""

    model_config = ConfigDict(
        json_schema_extra={
            "examples": [
                {
                    "id": "01a23ad4-3b15-708d-a530-06f6746d1ca8",
                    "type": "file.available",
                    "timestamp": "2026-12-03T07:35:11.019Z",
                    "data": {
                        "owner": "user-42",
                        "file": {
                            "id": "01a23ad4-3b10-7c2e-9d51-2f0d3e0a9c11",
                            "filename": "report.pdf",
                            "content_type": "application/pdf",
                            "size": 48213,
                            "checksum_sha256": "n4bQgYhMfWWaL+qgxVrQFaO/TxsrC4Is0V1sFbDwCgg=",
                            "status": "available",
                            "created_at": "2026-12-03T07:35:01Z",
                            "completed_at": "2026-12-03T07:35:11Z",
                            "upload_expires_at": "2026-12-03T07:50:01Z",
                        },
                    },
                }
            ]
        }
    )

    id: uuid.UUID = Field(description="UUIDv7; also the webhook-id of its deliveries.")
    type: Literal[
        "file.available",
        "file.rejected",
        "upload.expired",
        "file.deleted",
        "file.shared",
        "grant.revoked",
        "link.created",
        "link.revoked",
    ]
    timestamp: str = Field(description="When the change was committed (RFC 3339, UTC).")
    data: EventDataOut


class EventPageOut(BaseModel):
    items: list[EventOut]
    next_cursor: str = Field(
        description=(
            "Pass as `after` to read on; never null: with no new events it is the cursor "
            "you sent, so a poller always stores the last one it got."
        )
    )


# A grantee is compared with a token's `sub` or group names, which never hold controls.
_NO_CONTROLS = r"^[^\x00-\x1f\x7f-\x9f\u2028\u2029]+$"
_GRANTEE = Field(
    default=None,
    min_length=1,
    max_length=255,
    pattern=_NO_CONTROLS,
    description="Exactly one of `subject` (a token's `sub`) and `group`.",
)


class GrantIn(BaseModel):
    """Who gets access to the file, what they may do, until when."""

    model_config = ConfigDict(
        extra="forbid",
        json_schema_extra={
            "examples": [
                {"subject": "user-7", "permission": "read", "expires_at": "2026-12-31T00:00:00Z"},
                {"group": "accounting"},
            ]
        },
    )

    subject: Annotated[str | None, _GRANTEE]
    group: Annotated[
        str | None,
        Field(
            default=None,
            min_length=1,
            max_length=255,
            pattern=_NO_CONTROLS,
            description="A value of the token claim S3GATE_GROUP_CLAIM names (e.g. an org id).",
        ),
    ]
    permission: Literal["read", "delete"] = Field(
        default="read",
        description="`read`: see the file and download it; `delete`: that, and delete it.",
    )
    expires_at: datetime | None = Field(
        default=None, description="When the grant stops working (RFC 3339, in the future)."
    )

    @model_validator(mode="after")
    def _one_grantee(self) -> GrantIn:
        if (self.subject is None) == (self.group is None):
            raise ValueError("give exactly one of subject and group")
        if self.expires_at is not None and self.expires_at.tzinfo is None:
            raise ValueError("expires_at needs a time zone (such as Z)")
        return self


class GrantOut(BaseModel):
    model_config = ConfigDict(from_attributes=True)

    id: uuid.UUID
    file_id: uuid.UUID
    subject: str | None
    group: str | None
    permission: Literal["read", "delete"]
    created_by: str = Field(description="The `sub` that granted it (the owner or an admin).")
    created_at: Timestamp
    expires_at: Timestamp | None
    active: bool = Field(description="False once expired (kept until the reaper prunes it).")


class GrantListOut(BaseModel):
    items: list[GrantOut]


class LinkIn(BaseModel):
    model_config = ConfigDict(
        extra="forbid", json_schema_extra={"examples": [{"expires_in": 3600, "max_downloads": 5}]}
    )

    expires_in: int = Field(
        strict=True,
        ge=60,
        description="Seconds the link works for (at most S3GATE_LINK_MAX_TTL_SECONDS).",
    )
    max_downloads: int | None = Field(
        default=None, strict=True, ge=1, le=1_000_000, description="Uses allowed; null: no cap."
    )


class LinkOut(BaseModel):
    """A share link as listed: never its token (only its hash is stored)."""

    id: uuid.UUID
    file_id: uuid.UUID
    created_by: str
    created_at: Timestamp
    expires_at: Timestamp
    max_downloads: int | None
    downloads: int = Field(description="Uses so far (each one a redirect to a fresh URL).")
    revoked_at: Timestamp | None
    state: Literal["active", "expired", "exhausted", "revoked"]


class CreatedLinkOut(LinkOut):
    token: str = Field(description="Shown this once; s3gate keeps only its SHA-256.")
    url: str = Field(description="`/s/{token}`: each GET redirects to a fresh download URL.")


class LinkListOut(BaseModel):
    items: list[LinkOut]


class BatchDownloadIn(BaseModel):
    model_config = ConfigDict(
        extra="forbid",
        json_schema_extra={"examples": [{"ids": ["0b6f1c1e-8a34-4c8e-9a51-2f0d3e0a9c11"]}]},
    )

    ids: list[Annotated[str, Field(max_length=64)]] = Field(min_length=1, max_length=100)
    disposition: Literal["attachment", "inline"] = "attachment"


class ProblemOut(BaseModel):
    type: str
    title: str
    status: int
    detail: str
    code: str


class BatchDownloadItemOut(BaseModel):
    """One id's answer, in the request's order: a URL, or the problem the single route gives."""

    id: str
    url: str | None = None
    method: Literal["GET"] | None = None
    expires_at: Timestamp | None = None
    problem: ProblemOut | None = None


class BatchDownloadOut(BaseModel):
    items: list[BatchDownloadItemOut]


class AccessOut(BaseModel):
    """One URL issued for the file."""

    model_config = ConfigDict(from_attributes=True)

    id: int = Field(validation_alias="seq")
    action: Literal["upload", "part", "download", "link"]
    actor_sub: str | None = Field(description="The token's `sub`; null for a share link's use.")
    link_id: uuid.UUID | None = Field(description="The share link used (action `link`).")
    client_address: str | None
    issued_at: Timestamp
    expires_at: Timestamp = Field(description="When the URL stops working.")
    part_number: int | None


class AccessPageOut(BaseModel):
    items: list[AccessOut]
    next_cursor: str | None = Field(
        description="Pass as `cursor` to read older entries; null on the last page."
    )


class UploadSettingsOut(BaseModel):
    """What this deployment accepts, for clients that plan an upload before creating it (the
    single-or-multipart choice, the part size, retries)."""

    max_file_size: int = Field(description="Bytes (S3GATE_MAX_FILE_SIZE).")
    allowed_content_types: list[str] = Field(
        description="`type/subtype` patterns (`*/*`, `image/*`): S3GATE_ALLOWED_CONTENT_TYPES."
    )
    multipart_threshold: int = Field(
        description="Files larger than this upload in parts; smaller ones with one PUT."
    )
    part_size: int = Field(description="The part size used when `POST /uploads` names none.")
    min_part_size: int = Field(description="S3's smallest part but the last: 5 MiB.")
    max_part_size: int = Field(description="S3's largest part: 5 GiB.")
    max_parts: int = Field(description="S3's most parts in one upload: 10,000.")
    max_part_numbers_per_request: int = Field(description="Of `POST /uploads/{id}/parts`.")
    part_url_budget_per_part: int = Field(
        description="Part URLs per part an upload may have signed before its part requests "
        "count against the owner's rate limit."
    )
    upload_url_ttl_seconds: int
    download_url_ttl_seconds: int
    multipart_deadline_seconds: int = Field(
        description="A multipart upload's parts may be asked for and sent until then."
    )
    form_uploads: bool = Field(
        description="Whether `form: true` works on this store (an HTML-form POST policy)."
    )
    completion_max_wait_seconds: int = Field(description="The cap of `Prefer: wait=N`.")
    rate_limit_per_minute: int = Field(description="The owner's; 0: no limit.")
    rate_limit_burst: int
    quota_bytes: int = Field(description="This caller's byte quota; 0: no limit.")
    quota_pending_uploads: int = Field(description="This caller's pending uploads; 0: no limit.")


class HealthOut(BaseModel):
    status: Literal["ok"]


class ReadyOut(BaseModel):
    status: Literal["ok"]
    checks: dict[str, Any]


EventDataOut.model_rebuild()  # its grant and link are declared after it
