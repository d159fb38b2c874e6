"""Uploads: declare a file and get its presigned upload (PUT, form POST or a multipart plan),
replay it by Idempotency-Key, keep within quota, sign part URLs, abandon it."""

from __future__ import annotations

import dataclasses
import logging
import uuid
from dataclasses import dataclass
from datetime import datetime, timedelta

import uuid6

from app import mediatypes
from app.auth import Principal, Quota
from app.config import (
    MAX_PARTS,
    MIN_PART_BYTES,
    SINGLE_PUT_MAX_BYTES,
    QuotaSettings,
    RateLimitSettings,
    UploadSettings,
    UrlSettings,
    VerificationSettings,
)
from app.errors import (
    ContentTypeNotAllowed,
    FileTooLarge,
    FormUploadUnsupported,
    IdempotencyKeyReused,
    NotFound,
    NotMultipart,
    NotPending,
    QuotaExceeded,
    UploadExpired,
    ValidationFailed,
)
from app.filenames import SNIFFED_TYPES
from app.ledger import FileRecord, IdempotencyKeyTaken
from app.logs import audit
from app.metrics import metrics
from app.models import AccessAction, FileStatus, UploadMethod
from app.profiles import StoreProfile
from app.ratelimit import RateLimiter, Unlimited
from app.schemas import MAX_PART_NUMBERS, CreateUploadRequest, UploadSettingsOut
from app.signer import PresignedPost, PresignedRequest, Signer
from app.storage import Storage, StoredPart
from app.usecases.access import AccessRecorder
from app.usecases.common import Lookup, Removal, scope
from app.usecases.plans import (
    MultipartPlan,
    object_key,
    part_plan,
    part_sizes,
    request_fingerprint,
    staging_key,
)

log = logging.getLogger("s3gate.audit")

IDEMPOTENCY_WINDOW = timedelta(hours=24)
# Part URLs an upload may have signed per part before its requests count against the owner's
# rate limit: every part once, and once more for retries and URLs that expired in between.
PART_URL_BUDGET = 2
# Statuses in which an upload has ended: abandoning it again changes nothing.
_ENDED = frozenset({FileStatus.REJECTED, FileStatus.EXPIRED, FileStatus.DELETED})


@dataclass(frozen=True, slots=True)
class UploadTicket:
    file: FileRecord
    upload: PresignedRequest | PresignedPost | MultipartPlan
    created: bool  # False when an Idempotency-Key replay returned an existing file


class Uploads:
    def __init__(
        self,
        lookup: Lookup,
        removal: Removal,
        signer: Signer,
        storage: Storage,
        *,
        uploads: UploadSettings,
        urls: UrlSettings,
        quotas: QuotaSettings,
        key_prefix: str,
        profile: StoreProfile,
        recorder: AccessRecorder,
        rates: RateLimitSettings,
        verification: VerificationSettings,
        limiter: RateLimiter | None = None,
    ) -> None:
        self._rates = rates
        self._verification = verification
        self._recorder = recorder
        self._limiter = limiter or Unlimited()  # part URLs beyond an upload's budget
        self._lookup = lookup
        self._ledger = lookup.ledger
        self._removal = removal
        self._signer = signer
        self._storage = storage
        self._uploads = uploads
        self._urls = urls
        self._quotas = quotas
        self._key_prefix = key_prefix
        self._profile = profile
        self._metrics = metrics()

    def _upload_for(self, record: FileRecord) -> PresignedRequest | PresignedPost | MultipartPlan:
        """How to send the record's bytes: a signed PUT or form POST, or the multipart plan."""
        if record.multipart_upload_id is not None and record.part_size is not None:
            count = len(part_sizes(record.size, record.part_size))
            return MultipartPlan(record.part_size, count, record.upload_expires_at)
        if record.upload_method == UploadMethod.FORM:
            assert record.upload_key is not None
            return self._signer.presign_post(
                record.upload_key,
                content_type=record.content_type,
                content_length=record.size,
                checksum_sha256=record.checksum_sha256,
                ttl_seconds=self._urls.upload_url_ttl_seconds,
            )
        # A PUT to the file's own key must be create-only; one to a staging key need not be.
        return self._signer.presign_put(
            record.upload_key or record.object_key,
            content_type=record.content_type,
            content_length=record.size,
            checksum_sha256=record.checksum_sha256,
            ttl_seconds=self._urls.upload_url_ttl_seconds,
            create_only=record.upload_key is None,
        )

    def _handed_out(self, ticket: UploadTicket) -> UploadTicket:
        # The audit line is written (and the URL counted) when a URL leaves, not when it is
        # signed: a refused create (quota, lost race) signs one that nobody ever sees.
        if isinstance(ticket.upload, PresignedPost | PresignedRequest):
            audit(
                log,
                "issued upload url",
                file=ticket.file.id,
                owner=ticket.file.owner_id,
                method=ticket.file.upload_method,
                expires=ticket.upload.expires_at,
            )
            kind = "post" if isinstance(ticket.upload, PresignedPost) else "put"
            self._metrics.urls_issued[kind].inc()
            self._recorder.issued(
                ticket.file.id,
                AccessAction.UPLOAD,
                ticket.upload.expires_at,
                sub=ticket.file.owner_id,
            )
        else:
            # A multipart plan carries no URL: its part URLs are logged and counted as signed.
            audit(
                log,
                "created multipart upload",
                file=ticket.file.id,
                owner=ticket.file.owner_id,
                parts=ticket.upload.part_count,
                deadline=ticket.upload.expires_at,
            )
        return ticket

    async def create_upload(
        self, principal: Principal, request: CreateUploadRequest, idempotency_key: str | None
    ) -> UploadTicket:
        """Record a pending file and sign the one upload (PUT or form POST) that may fill it."""
        if request.size > self._uploads.max_file_size:
            raise FileTooLarge(f"The largest file accepted is {self._uploads.max_file_size} bytes.")
        if not mediatypes.allowed(request.content_type, self._uploads.allowed_content_types):
            raise ContentTypeNotAllowed(
                f"Content type {request.content_type} is not accepted here."
            )
        # A wildcard such as the default */* does not count: only an operator who names the
        # type has chosen to accept it.
        allowed = self._uploads.allowed_content_types
        if request.content_type in SNIFFED_TYPES and request.content_type not in allowed:
            raise ValidationFailed(
                "This content type makes browsers guess the file's type; declare the real one.",
                errors=[
                    {
                        "loc": ["body", "content_type"],
                        "msg": "a type that makes browsers sniff the content is accepted only "
                        "when S3GATE_ALLOWED_CONTENT_TYPES lists it exactly",
                    }
                ],
            )
        fingerprint = request_fingerprint(request) if idempotency_key else None
        if idempotency_key:
            replay = await self._replay(principal, idempotency_key, fingerprint)
            if replay is not None:
                return replay

        multipart = not request.form and (
            request.multipart
            or request.part_size is not None
            or request.size > self._uploads.multipart_threshold
        )
        if request.form and not self._profile.form_post:
            raise FormUploadUnsupported()
        if request.form and request.size > SINGLE_PUT_MAX_BYTES:
            raise FileTooLarge("Form uploads are limited to 5 GiB; upload larger files in parts.")
        now = self._lookup.now()
        file_id = uuid6.uuid7()
        draft = FileRecord(
            id=file_id,
            owner_id=principal.sub,
            object_key=object_key(self._key_prefix, principal.sub, file_id),
            filename=request.filename,
            content_type=request.content_type,
            size=request.size,
            checksum_sha256=request.checksum_sha256,
            status=FileStatus.PENDING,
            idempotency_key=idempotency_key,
            request_hash=fingerprint,
            created_at=now.replace(microsecond=0),
            upload_expires_at=now,
            completed_at=None,
            deleted_at=None,
            purged_at=None,
            upload_method=UploadMethod.FORM if request.form else UploadMethod.PUT,
            multipart_upload_id=None,
            part_size=None,
            upload_key=None,
            verify_lease_until=None,
        )
        if request.form or (not multipart and not self._profile.create_only):
            # A form, or a PUT to a store that does not honour If-None-Match, writes a staging
            # key that completion copies to the file's own key once verified: a URL used
            # again afterwards never touches the verified object.
            draft = dataclasses.replace(draft, upload_key=staging_key(draft.object_key))
        if multipart:
            draft = await self._start_multipart(draft, now, request.part_size)
        # Signing is pure CPU; the row then records the URL's real expiry.
        upload = self._upload_for(draft)
        record = dataclasses.replace(draft, upload_expires_at=upload.expires_at)
        try:
            await self._insert(record, principal.quota)
        except (IdempotencyKeyTaken, QuotaExceeded) as refused:
            if record.multipart_upload_id is not None:  # refused: nothing may stay in the store
                await self._storage.abort_multipart_upload(
                    record.object_key, record.multipart_upload_id
                )
            if isinstance(refused, QuotaExceeded):
                raise
            # A concurrent request with the same key won the insert; answer as its replay.
            assert idempotency_key is not None
            replay = await self._replay(principal, idempotency_key, fingerprint)
            if replay is None:  # pragma: no cover - the winner's row is there by construction
                raise
            return replay
        return self._handed_out(UploadTicket(record, upload, created=True))

    async def _start_multipart(
        self, draft: FileRecord, now: datetime, chosen: int | None
    ) -> FileRecord:
        # The client's part size as it chunks (checked against S3's limits by the schema),
        # else the setting, grown to need at most 10,000 parts.
        part_size = chosen or part_plan(draft.size, self._uploads.part_size)
        upload_id = await self._storage.create_multipart_upload(
            draft.object_key, draft.content_type
        )
        return dataclasses.replace(
            draft,
            upload_method=UploadMethod.MULTIPART,
            multipart_upload_id=upload_id,
            part_size=part_size,
            upload_expires_at=now + timedelta(seconds=self._uploads.multipart_deadline_seconds),
        )

    def _quotas_of(self, quota: Quota | None) -> tuple[int, int]:
        """(bytes, pending uploads) for an owner: the token's quota (S3GATE_QUOTA_CLAIM)
        overrides each global one it sets; 0: no limit."""
        max_bytes = self._quotas.quota_bytes_per_owner
        max_pending = self._quotas.quota_pending_uploads_per_owner
        if quota is not None:
            max_bytes = max_bytes if quota.bytes is None else quota.bytes
            max_pending = max_pending if quota.pending is None else quota.pending
        return max_bytes, max_pending

    async def _insert(self, record: FileRecord, quota: Quota | None) -> None:
        max_bytes, max_pending = self._quotas_of(quota)
        if not (max_bytes or max_pending):
            await self._ledger.insert(record)
            return
        # One statement checks the owner's usage and inserts, serialized per owner, so
        # concurrent creates cannot overshoot (the URL signed above is then never handed out).
        admitted = await self._ledger.insert_within_quota(
            record, max_bytes=max_bytes or 2**62, max_pending=max_pending or 2**31 - 1
        )
        if not admitted:
            kind = await self._full_quota(record, max_bytes, max_pending)
            self._metrics.quota_refusals[kind].inc()
            raise QuotaExceeded()

    async def _full_quota(self, refused: FileRecord, max_bytes: int, max_pending: int) -> str:
        """Which quota refused the record: "bytes" or "pending_uploads" (for the metric)."""
        if not max_pending:
            return "bytes"
        if not max_bytes:
            return "pending_uploads"
        # Both are set and the insert said only "no": ask the ledger which one is full now.
        stored, _ = await self._ledger.usage(refused.owner_id)
        return "bytes" if stored + refused.size > max_bytes else "pending_uploads"

    async def _replay(
        self, principal: Principal, key: str, fingerprint: str | None
    ) -> UploadTicket | None:
        existing = await self._ledger.find_by_idempotency_key(principal.sub, key)
        if existing is None:
            return None
        if existing.created_at < self._lookup.now() - IDEMPOTENCY_WINDOW:
            await self._ledger.release_idempotency_key(
                principal.sub, key, self._lookup.now() - IDEMPOTENCY_WINDOW
            )
            return None
        if existing.request_hash != fingerprint:
            raise IdempotencyKeyReused()
        if existing.status != FileStatus.PENDING:
            raise NotPending("This Idempotency-Key named a file that is no longer pending.")
        upload = self._upload_for(existing)
        refreshed = await self._ledger.transition(
            existing.id,
            principal.sub,
            from_status=FileStatus.PENDING,
            to_status=FileStatus.PENDING,
            upload_expires_at=upload.expires_at,
        )
        if refreshed is None:
            raise NotPending("This Idempotency-Key named a file that is no longer pending.")
        return self._handed_out(UploadTicket(refreshed, upload, created=False))

    def published(self, principal: Principal) -> UploadSettingsOut:
        """What this deployment accepts, as GET /uploads/settings tells clients that plan an
        upload before creating it (the caller's own quotas included)."""
        bytes_quota, pending_quota = self._quotas_of(principal.quota)
        return UploadSettingsOut(
            max_file_size=self._uploads.max_file_size,
            allowed_content_types=list(self._uploads.allowed_content_types),
            multipart_threshold=self._uploads.multipart_threshold,
            part_size=self._uploads.part_size,
            min_part_size=MIN_PART_BYTES,
            max_part_size=SINGLE_PUT_MAX_BYTES,
            max_parts=MAX_PARTS,
            max_part_numbers_per_request=MAX_PART_NUMBERS,
            part_url_budget_per_part=PART_URL_BUDGET,
            upload_url_ttl_seconds=self._urls.upload_url_ttl_seconds,
            download_url_ttl_seconds=self._urls.download_url_ttl_seconds,
            multipart_deadline_seconds=self._uploads.multipart_deadline_seconds,
            form_uploads=self._profile.form_post,
            completion_max_wait_seconds=self._verification.completion_max_wait_seconds,
            rate_limit_per_minute=self._rates.rate_limit_per_minute,
            rate_limit_burst=self._rates.rate_limit_burst,
            quota_bytes=bytes_quota,
            quota_pending_uploads=pending_quota,
        )

    async def sign_parts(
        self, principal: Principal, file_id: uuid.UUID, part_numbers: list[int]
    ) -> list[tuple[int, PresignedRequest]]:
        """PUT URLs for these parts, each bound to its exact length; any time before the
        deadline, as often as asked (a slow upload never dies with its first URLs). Up to
        PART_URL_BUDGET URLs per part come from the upload's own budget; beyond it, each
        request counts against the owner's rate limit."""
        record = await self._pending_multipart(principal, file_id)
        assert record.multipart_upload_id is not None
        assert record.part_size is not None
        sizes = part_sizes(record.size, record.part_size)
        beyond = [n for n in part_numbers if n > len(sizes)]
        if beyond:
            raise ValidationFailed(
                errors=[
                    {"loc": ["body", "part_numbers"], "msg": f"this upload has {len(sizes)} parts"}
                ]
            )
        budget = PART_URL_BUDGET * len(sizes)
        if not await self._ledger.charge_part_urls(record.id, len(part_numbers), budget):
            await self._limiter.check(principal.sub)
        remaining = (record.upload_expires_at - self._lookup.now()).total_seconds()
        ttl = max(1, min(self._urls.upload_url_ttl_seconds, int(remaining)))
        signed = [
            (
                number,
                self._signer.presign_upload_part(
                    record.object_key,
                    upload_id=record.multipart_upload_id,
                    part_number=number,
                    content_length=sizes[number - 1],
                    ttl_seconds=ttl,
                ),
            )
            for number in part_numbers
        ]
        audit(log, "issued part urls", file=record.id, owner=record.owner_id, parts=len(signed))
        self._metrics.urls_issued["part"].inc(len(signed))
        for number, part in signed:
            self._recorder.issued(
                record.id,
                AccessAction.PART,
                part.expires_at,
                sub=principal.sub,
                part_number=number,
            )
        return signed

    async def stored_parts(
        self, principal: Principal, file_id: uuid.UUID
    ) -> tuple[MultipartPlan, list[StoredPart]]:
        """The plan and the parts the store already holds, to resume after a crash or reload."""
        record = await self._pending_multipart(principal, file_id)
        assert record.multipart_upload_id is not None
        parts = await self._storage.list_parts(record.object_key, record.multipart_upload_id)
        if parts is None:
            raise UploadExpired("The store no longer holds this multipart upload.")
        plan = self._upload_for(record)
        assert isinstance(plan, MultipartPlan)
        return plan, parts

    async def _pending_multipart(self, principal: Principal, file_id: uuid.UUID) -> FileRecord:
        record = await self._lookup.owned(principal, file_id)
        if record.multipart_upload_id is None:
            raise NotMultipart()
        if record.status == FileStatus.EXPIRED or (
            record.status == FileStatus.PENDING and self._lookup.now() > record.upload_expires_at
        ):
            raise UploadExpired()
        if record.status != FileStatus.PENDING:
            raise NotPending()
        return record

    async def abandon_upload(self, principal: Principal, file_id: uuid.UUID) -> None:
        """Drop a pending upload and any object it left. An upload that already ended
        (rejected, expired, abandoned or deleted) is left as it is: the same 204, so a client
        that aborts after a failed completion, or twice, meets no error."""
        record = await self._ledger.get_ended_too(file_id, scope(principal))
        if record is None:
            raise NotFound()
        if record.status in _ENDED:
            return
        if record.status != FileStatus.PENDING:
            raise NotPending()  # verifying or available: a file now, DELETE /files/{id}
        try:
            await self._removal.remove(principal, record, from_status=(FileStatus.PENDING,))
        except NotPending:
            current = await self._ledger.get_ended_too(file_id, scope(principal))
            if current is None or current.status not in _ENDED:
                raise  # it was completed meanwhile
