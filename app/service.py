"""Use cases: create an upload, complete it, issue a download, list and delete files.

Order of steps is chosen so that a crash or a store outage between two steps never leaves a row
that says `available` without its object, nor an object that no row accounts for.
"""

from __future__ import annotations

import asyncio
import base64
import binascii
import contextlib
import dataclasses
import hashlib
import json
import logging
import time
import uuid
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Literal, NoReturn

import uuid6

from app.auth import Principal
from app.config import MAX_PARTS, SINGLE_PUT_MAX_BYTES, Settings
from app.errors import (
    AppError,
    ContentTypeNotAllowed,
    FileNotAvailable,
    FileTooLarge,
    Forbidden,
    IdempotencyKeyReused,
    NotFound,
    NotMultipart,
    NotPending,
    QuotaExceeded,
    UploadExpired,
    UploadIncomplete,
    UploadRejected,
    ValidationFailed,
    VerificationInProgress,
)
from app.filenames import DOWNLOAD_CACHE_CONTROL, SNIFFED_TYPES, download_headers
from app.ledger import FileRecord, IdempotencyKeyTaken, Ledger
from app.logs import audit
from app.models import FileStatus, UploadMethod
from app.observability import metrics
from app.schemas import CreateUploadRequest
from app.signer import PresignedPost, PresignedRequest, Signer
from app.sniff import SNIFF_BYTES, check_magic
from app.storage import ObjectInfo, Storage, StoredPart

log = logging.getLogger("s3gate.audit")

IDEMPOTENCY_WINDOW = timedelta(hours=24)
# The `outcome` of a completion that raised (any other error counts as "error").
_FAILED_COMPLETIONS: dict[type[Exception], str] = {
    UploadRejected: "rejected",
    UploadIncomplete: "not_uploaded",
    VerificationInProgress: "in_progress",
    UploadExpired: "expired",
    NotFound: "not_found",
}
_VISIBLE = (FileStatus.PENDING, FileStatus.AVAILABLE, FileStatus.REJECTED, FileStatus.EXPIRED)
# A completion holds the file's verification lease this long, renewed a third of the way
# through, so a completion that died with its replica holds the file 10 s at most: a client's
# retry elsewhere waits that out (S3GATE_COMPLETION_WAIT_SECONDS is longer) and then verifies.
VERIFY_LEASE_SECONDS = 10.0
_WAIT_POLL_SECONDS = 0.05


@dataclass(frozen=True, slots=True)
class MultipartPlan:
    part_size: int
    part_count: int
    expires_at: datetime  # the deadline for asking part URLs and uploading parts


@dataclass(frozen=True, slots=True)
class UploadTicket:
    file: FileRecord
    upload: PresignedRequest | PresignedPost | MultipartPlan
    created: bool  # False when an Idempotency-Key replay returned an existing file


@dataclass(frozen=True, slots=True)
class ReapReport:
    expired: int  # pending uploads past their deadline, now expired
    purged: int  # objects confirmed gone for good (no URL can write them again)
    failed: int  # objects the store did not delete this time (retried next run)
    watched: int = 0  # objects deleted again whose upload URL may still write: next run too


@dataclass(slots=True)
class _Lease:
    held: datetime  # the verify_lease_until this completion wrote (its compare-and-set token)
    cleared: bool = False  # set once the status change that also clears it is under way


@dataclass(frozen=True, slots=True)
class FilePage:
    items: list[FileRecord]
    next_cursor: str | None


def object_key(prefix: str, owner: str, file_id: uuid.UUID) -> str:
    """The object key: server data only (owner hash + file id), never client text."""
    owner_hash = hashlib.sha256(owner.encode()).hexdigest()[:32]
    return f"{prefix}{owner_hash}/{file_id}"


def form_upload_key(key: str) -> str:
    """Where a form upload's policy writes: a POST cannot be create-only, so the verified
    bytes are copied from here to the file's own key, which no policy names."""
    return f"{key}.upload"


def declaration_mismatch(record: FileRecord, info: ObjectInfo) -> str | None:
    """Why the stored object's size, type or headers break the declaration, or None."""
    if info.size != record.size:
        return f"stored size {info.size} differs from the declared {record.size} bytes"
    if _media_type(info.content_type) != record.content_type:
        return "stored content type differs from the declared one"
    if info.foreign_headers:
        # Sent unsigned with the upload, they would be served with every download.
        return f"the object carries headers s3gate did not sign: {', '.join(info.foreign_headers)}"
    return None


def checksum_mismatch(declared: str | None, stored: str | None) -> str | None:
    """Why the stored SHA-256 does not prove the declared one, or None."""
    if declared is None or stored == declared:
        return None
    if stored is None:
        return "the store holds no SHA-256 for this object"
    return "stored SHA-256 differs from the declared checksum"


def part_plan(size: int, preferred: int) -> int:
    """The part size for a file: the preferred one, grown (in whole MiB) to need at most
    10,000 parts."""
    needed = -(-size // MAX_PARTS)
    mib = 1024 * 1024
    return max(preferred, -(-needed // mib) * mib)


def part_sizes(size: int, part_size: int) -> list[int]:
    """Each part's exact length; the last may be shorter."""
    count = -(-size // part_size)
    return [part_size] * (count - 1) + [size - part_size * (count - 1)]


def request_fingerprint(request: CreateUploadRequest) -> str:
    """A digest of the normalised request body, to tell a retry from a different request."""
    # Defaults left out: a field added later (with its default) must not change old digests.
    body = request.model_dump(exclude_defaults=True)
    canonical = json.dumps(body, sort_keys=True, ensure_ascii=False)
    return hashlib.sha256(canonical.encode()).hexdigest()


def content_type_allowed(content_type: str, patterns: list[str]) -> bool:
    """Whether type/subtype matches one of `*/*`, `type/*` or an exact `type/subtype`."""
    major = content_type.split("/", 1)[0]
    return any(p in ("*/*", content_type, f"{major}/*") for p in patterns)


def encode_cursor(file_id: uuid.UUID) -> str:
    return base64.urlsafe_b64encode(file_id.bytes).rstrip(b"=").decode()


def decode_cursor(cursor: str) -> uuid.UUID:
    try:
        raw = base64.urlsafe_b64decode(cursor + "=" * (-len(cursor) % 4))
        return uuid.UUID(bytes=raw)
    except (binascii.Error, ValueError):
        raise ValidationFailed(
            errors=[{"loc": ["query", "cursor"], "msg": "invalid cursor"}]
        ) from None


def _media_type(value: str | None) -> str:
    return (value or "").split(";", 1)[0].strip().lower()


class FileService:
    """The use cases; routers call these and nothing else."""

    def __init__(
        self,
        settings: Settings,
        ledger: Ledger,
        signer: Signer,
        storage: Storage,
        *,
        clock: Callable[[], float] = time.time,
        verify_lease_seconds: float = VERIFY_LEASE_SECONDS,
    ) -> None:
        self._settings = settings
        self._ledger = ledger
        self._signer = signer
        self._storage = storage
        self._clock = clock
        self._lease = timedelta(seconds=verify_lease_seconds)
        self._metrics = metrics()

    @property
    def storage_origin(self) -> str:
        """Where the URLs handed out point: the origin browsers send bytes to and fetch from."""
        return self._signer.origin

    @property
    def can_sign(self) -> bool:
        """Whether URLs can be signed now (credentials found and not expired)."""
        return self._signer.has_credentials

    def _now(self) -> datetime:
        return datetime.fromtimestamp(self._clock(), UTC)

    def _writable_until(self, record: FileRecord) -> datetime:
        """Until when an upload URL or policy of the record may still store an object: S3
        admits a request that started before expiry (by the store's own clock)."""
        settings = self._settings
        last_url = record.upload_expires_at
        if record.multipart_upload_id is not None and record.deleted_at is not None:
            # Part URLs are signed only while the file is pending, each for at most the URL
            # TTL, so the last one dies that long after the delete, not at the day's deadline.
            ttl = timedelta(seconds=settings.upload_url_ttl_seconds)
            last_url = min(last_url, record.deleted_at + ttl)
        margin = settings.completion_grace_seconds + settings.store_clock_skew_seconds
        return last_url + timedelta(seconds=margin)

    @staticmethod
    def _scope(principal: Principal) -> str | None:
        # The one explicit admin branch: admins see every owner's files, others only their own.
        return None if principal.is_admin else principal.sub

    async def _owned(self, principal: Principal, file_id: uuid.UUID) -> FileRecord:
        record = await self._ledger.get(file_id, self._scope(principal))
        if record is None:
            raise NotFound()
        return record

    def _upload_for(self, record: FileRecord) -> PresignedRequest | PresignedPost | MultipartPlan:
        """How to send the record's bytes: a signed PUT or form POST, or the multipart plan."""
        if record.multipart_upload_id is not None and record.part_size is not None:
            count = len(part_sizes(record.size, record.part_size))
            return MultipartPlan(record.part_size, count, record.upload_expires_at)
        sign = (
            self._signer.presign_post
            if record.upload_method == UploadMethod.FORM
            else self._signer.presign_put
        )
        return sign(
            record.upload_key or record.object_key,
            content_type=record.content_type,
            content_length=record.size,
            checksum_sha256=record.checksum_sha256,
            ttl_seconds=self._settings.upload_url_ttl_seconds,
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
        if request.size > self._settings.max_file_size:
            raise FileTooLarge(
                f"The largest file accepted is {self._settings.max_file_size} bytes."
            )
        if not content_type_allowed(request.content_type, self._settings.allowed_content_types):
            raise ContentTypeNotAllowed(
                f"Content type {request.content_type} is not accepted here."
            )
        # A wildcard such as the default */* does not count: only an operator who names the
        # type has chosen to accept it.
        allowed = self._settings.allowed_content_types
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
            request.multipart or request.size > self._settings.multipart_threshold
        )
        if request.form and request.size > SINGLE_PUT_MAX_BYTES:
            raise FileTooLarge("Form uploads are limited to 5 GiB; upload larger files in parts.")
        now = self._now()
        file_id = uuid6.uuid7()
        draft = FileRecord(
            id=file_id,
            owner_id=principal.sub,
            object_key=object_key(self._settings.s3_key_prefix, principal.sub, file_id),
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
        if request.form:
            draft = dataclasses.replace(draft, upload_key=form_upload_key(draft.object_key))
        if multipart:
            draft = await self._start_multipart(draft, now)
        # Signing is pure CPU; the row then records the URL's real expiry.
        upload = self._upload_for(draft)
        record = dataclasses.replace(draft, upload_expires_at=upload.expires_at)
        try:
            await self._insert(record)
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

    async def _start_multipart(self, draft: FileRecord, now: datetime) -> FileRecord:
        part_size = part_plan(draft.size, self._settings.part_size)
        upload_id = await self._storage.create_multipart_upload(
            draft.object_key, draft.content_type
        )
        return dataclasses.replace(
            draft,
            upload_method=UploadMethod.MULTIPART,
            multipart_upload_id=upload_id,
            part_size=part_size,
            upload_expires_at=now + timedelta(seconds=self._settings.multipart_deadline_seconds),
        )

    async def _insert(self, record: FileRecord) -> None:
        settings = self._settings
        if not (settings.quota_bytes_per_owner or settings.quota_pending_uploads_per_owner):
            await self._ledger.insert(record)
            return
        # One statement checks the owner's usage and inserts, serialized per owner, so
        # concurrent creates cannot overshoot (the URL signed above is then never handed out).
        admitted = await self._ledger.insert_within_quota(
            record,
            max_bytes=settings.quota_bytes_per_owner or 2**62,
            max_pending=settings.quota_pending_uploads_per_owner or 2**31 - 1,
        )
        if not admitted:
            self._metrics.quota_refusals[await self._full_quota(record)].inc()
            raise QuotaExceeded()

    async def _full_quota(self, refused: FileRecord) -> str:
        """Which quota refused the record: "bytes" or "pending_uploads" (for the metric)."""
        settings = self._settings
        if not settings.quota_pending_uploads_per_owner:
            return "bytes"
        if not settings.quota_bytes_per_owner:
            return "pending_uploads"
        # Both are set and the insert said only "no": ask the ledger which one is full now.
        stored, _ = await self._ledger.usage(refused.owner_id)
        return (
            "bytes" if stored + refused.size > settings.quota_bytes_per_owner else "pending_uploads"
        )

    async def _replay(
        self, principal: Principal, key: str, fingerprint: str | None
    ) -> UploadTicket | None:
        existing = await self._ledger.find_by_idempotency_key(principal.sub, key)
        if existing is None:
            return None
        if existing.created_at < self._now() - IDEMPOTENCY_WINDOW:
            await self._ledger.release_idempotency_key(
                principal.sub, key, self._now() - IDEMPOTENCY_WINDOW
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

    async def complete_upload(self, principal: Principal, file_id: uuid.UUID) -> FileRecord:
        """Check the stored object against the declaration; make the file available or reject it."""
        try:
            record, outcome = await self._complete(principal, file_id)
        except Exception as exc:
            self._metrics.completions[_FAILED_COMPLETIONS.get(type(exc), "error")].inc()
            raise
        self._metrics.completions[outcome].inc()
        return record

    async def _complete(self, principal: Principal, file_id: uuid.UUID) -> tuple[FileRecord, str]:
        """complete_upload's work; the file and the outcome: available or already_available."""
        record = await self._owned(principal, file_id)
        if record.status == FileStatus.AVAILABLE:
            return record, "already_available"
        if record.status == FileStatus.REJECTED:
            raise UploadRejected("This upload was already rejected; create a new upload.")
        if record.status == FileStatus.EXPIRED:
            raise UploadExpired()
        grace = timedelta(seconds=self._settings.completion_grace_seconds)
        if self._now() > record.upload_expires_at + grace:
            raise UploadExpired()

        waited_until = time.monotonic() + self._settings.completion_wait_seconds
        while True:
            async with self._verification_lease(record) as lease:
                if lease is not None:
                    done = await self._verify(record, lease)
                    break
            # Another completion is verifying it: answer with its result when it ends (a
            # ledger read every poll, never a second read of the object).
            current = await self._owned(principal, file_id)
            if current.status != FileStatus.PENDING:
                return await self._complete(principal, file_id)
            if time.monotonic() >= waited_until:
                raise VerificationInProgress()
            await asyncio.sleep(_WAIT_POLL_SECONDS)
        if done is not None:
            return done, "available"
        return await self._complete(principal, file_id)  # lost a race: answer as it ended

    @contextlib.asynccontextmanager
    async def _verification_lease(self, record: FileRecord) -> AsyncIterator[_Lease | None]:
        """Hold the file's verification lease while the block runs (None: another
        completion holds it), so however many completions arrive, across every replica,
        the object is read and checked once at a time."""
        now = self._now()
        lease = _Lease(now + self._lease)
        if await self._ledger.claim_verification(record.id, now, lease.held) is None:
            yield None
            return
        renewer = asyncio.create_task(self._renew_lease(record.id, lease))
        try:
            yield lease
        finally:
            renewer.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await renewer
            if not lease.cleared:  # free it for the next completion (a status change did)
                try:
                    await self._ledger.move_lease(record.id, lease.held, None)
                except AppError:
                    log.warning("verification lease of file=%s left to run out", record.id)

    async def _renew_lease(self, file_id: uuid.UUID, lease: _Lease) -> None:
        while True:
            await asyncio.sleep(self._lease.total_seconds() / 3)
            renewed = self._now() + self._lease
            if not await self._ledger.move_lease(file_id, lease.held, renewed):
                return  # lost it; the final compare-and-set decides who answers
            lease.held = renewed

    async def _verify(self, record: FileRecord, lease: _Lease) -> FileRecord | None:
        """Check the stored object; the available file, or None if the row moved on first."""
        if record.multipart_upload_id is not None:
            await self._assemble_parts(record)
        target = record.upload_key or record.object_key
        info = await self._storage.head(target)
        if info is None:
            raise UploadIncomplete()
        reason = declaration_mismatch(record, info)
        if reason is None and record.checksum_sha256 is not None:
            stored_sha256 = info.checksum_sha256
            if record.multipart_upload_id is not None:
                # The store's checksum of a multipart object is one of part checksums, so the
                # declared whole-file SHA-256 is checked by reading the object through once.
                stored_sha256 = await self._storage.sha256(target)
            reason = checksum_mismatch(record.checksum_sha256, stored_sha256)
        if reason is None:
            head = await self._storage.read_head(target, min(SNIFF_BYTES, record.size))
            if head is None:
                raise UploadIncomplete()
            reason = check_magic(record.content_type, head, record.size)
        if reason is not None:
            await self._reject(record, target, reason, lease)
        if record.upload_key is not None:
            await self._promote(record, info)
        lease.cleared = True  # by the status change below
        return await self._ledger.transition(
            record.id,
            record.owner_id,
            from_status=FileStatus.PENDING,
            to_status=FileStatus.AVAILABLE,
            completed_at=self._now().replace(microsecond=0),
            verify_lease_until=None,
        )

    async def _reject(
        self, record: FileRecord, target: str, reason: str, lease: _Lease
    ) -> NoReturn:
        await self._storage.delete(target)  # before the row says so: no orphan
        lease.cleared = True  # by the status change below
        # The row keeps purged_at empty: a late request through the still-valid URL could
        # store the object again, so the reaper deletes it again until no URL can.
        await self._ledger.transition(
            record.id,
            record.owner_id,
            from_status=FileStatus.PENDING,
            to_status=FileStatus.REJECTED,
            verify_lease_until=None,
        )
        audit(log, "rejected upload", file=record.id, owner=record.owner_id)
        raise UploadRejected(f"The uploaded bytes do not match the declaration: {reason}.")

    async def _promote(self, record: FileRecord, verified: ObjectInfo) -> None:
        """Copy the verified form upload to the file's own key, with only its declared type."""
        assert record.upload_key is not None
        copied = await self._storage.copy(
            record.upload_key,
            record.object_key,
            if_match=verified.etag or "",
            content_type=record.content_type,
        )
        if not copied:  # posted again between the check and the copy: check what is there now
            raise UploadIncomplete("The upload changed while it was verified; complete again.")
        # The reaper deletes it again (purged_at stays empty) until the policy has run out.
        with contextlib.suppress(AppError):
            await self._storage.delete(record.upload_key)

    async def _assemble_parts(self, record: FileRecord) -> None:
        """Complete the store's multipart upload from the parts it lists (clients send no
        ETags); a no-op when a concurrent completion got there first."""
        assert record.multipart_upload_id is not None
        assert record.part_size is not None
        parts = await self._storage.list_parts(record.object_key, record.multipart_upload_id)
        if parts is None:
            return  # already assembled (or aborted: the HEAD that follows tells which)
        expected = part_sizes(record.size, record.part_size)
        held = {part.number: part for part in parts}
        missing = [n for n in range(1, len(expected) + 1) if n not in held]
        if missing:
            raise UploadIncomplete(
                f"{len(missing)} of {len(expected)} parts are not in the store yet "
                f"(first missing: {missing[0]})."
            )
        ordered = [held[n] for n in range(1, len(expected) + 1)]
        await self._storage.complete_multipart_upload(
            record.object_key, record.multipart_upload_id, ordered
        )

    async def sign_parts(
        self, principal: Principal, file_id: uuid.UUID, part_numbers: list[int]
    ) -> list[tuple[int, PresignedRequest]]:
        """PUT URLs for these parts, each bound to its exact length; any time before the
        deadline, as often as asked (a slow upload never dies with its first URLs)."""
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
        remaining = (record.upload_expires_at - self._now()).total_seconds()
        ttl = max(1, min(self._settings.upload_url_ttl_seconds, int(remaining)))
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
        record = await self._owned(principal, file_id)
        if record.multipart_upload_id is None:
            raise NotMultipart()
        if record.status == FileStatus.EXPIRED or (
            record.status == FileStatus.PENDING and self._now() > record.upload_expires_at
        ):
            raise UploadExpired()
        if record.status != FileStatus.PENDING:
            raise NotPending()
        return record

    async def abandon_upload(self, principal: Principal, file_id: uuid.UUID) -> None:
        """Drop a pending upload and any object it left."""
        record = await self._owned(principal, file_id)
        if record.status != FileStatus.PENDING:
            raise NotPending()
        await self._remove(principal, record, from_status=(FileStatus.PENDING,))

    async def delete_file(self, principal: Principal, file_id: uuid.UUID) -> None:
        """Delete the file: it leaves listings and its object leaves the bucket."""
        record = await self._owned(principal, file_id)
        await self._remove(principal, record, from_status=_VISIBLE)

    async def _remove(
        self, principal: Principal, record: FileRecord, *, from_status: tuple[FileStatus, ...]
    ) -> None:
        # The row first: a concurrent completion can then no longer mark it available after
        # its object is gone. If the store fails next, the row keeps purged_at NULL for cleanup.
        now = self._now()
        removed = await self._ledger.transition(
            record.id,
            self._scope(principal),
            from_status=from_status,
            to_status=FileStatus.DELETED,
            deleted_at=now,
            purged_at=None,  # an available form upload's may be set: its own key is there
        )
        if removed is None:
            current = await self._ledger.get(record.id, self._scope(principal))
            if current is None:
                raise NotFound()
            raise NotPending()
        try:
            await self._purge_object(removed)
        except AppError:
            log.warning("object of deleted file=%s left for cleanup", record.id)
            return
        if now > self._writable_until(removed):
            await self._ledger.mark_purged(record.id, now)
        # else: its upload URL could store the object again; the reaper deletes it until not

    async def _purge_object(self, record: FileRecord) -> None:
        """Remove what the record's URLs may have stored: for an available file only the
        form upload's copy, else its object and, for multipart, the parts the store holds."""
        if record.upload_key is not None:
            await self._storage.delete(record.upload_key)
        if record.status == FileStatus.AVAILABLE:
            return
        if record.multipart_upload_id is not None:
            await self._storage.abort_multipart_upload(
                record.object_key, record.multipart_upload_id
            )
        await self._storage.delete(record.object_key)

    async def issue_download(
        self,
        principal: Principal,
        file_id: uuid.UUID,
        disposition: Literal["attachment", "inline"],
    ) -> PresignedRequest:
        """Sign a short-lived GET for an available file."""
        record = await self._owned(principal, file_id)
        if record.status != FileStatus.AVAILABLE:
            raise FileNotAvailable()
        content_type, content_disposition = download_headers(
            record.content_type, disposition, record.filename
        )
        download = self._signer.presign_get(
            record.object_key,
            response_content_type=content_type,
            response_content_disposition=content_disposition,
            response_cache_control=DOWNLOAD_CACHE_CONTROL,
            ttl_seconds=self._settings.download_url_ttl_seconds,
        )
        audit(
            log,
            "issued download url",
            file=record.id,
            owner=record.owner_id,
            by=principal.sub,
            expires=download.expires_at,
        )
        self._metrics.urls_issued["get"].inc()
        return download

    async def get_file(self, principal: Principal, file_id: uuid.UUID) -> FileRecord:
        """One file the caller may see."""
        return await self._owned(principal, file_id)

    async def list_files(
        self, principal: Principal, *, limit: int, cursor: str | None, owner: str | None
    ) -> FilePage:
        """A page of files, newest first."""
        if owner is not None and owner != principal.sub and not principal.is_admin:
            raise Forbidden()
        before = decode_cursor(cursor) if cursor else None
        rows = await self._ledger.page(owner or principal.sub, limit=limit + 1, before=before)
        if len(rows) > limit:
            return FilePage(rows[:limit], encode_cursor(rows[limit - 1].id))
        return FilePage(rows, None)

    async def reap(self, *, batch_size: int = 500) -> ReapReport:
        """Expire uploads past their deadline and remove every object no file should keep."""
        # Completion is accepted until deadline + grace, so only rows past both expire.
        grace = timedelta(seconds=self._settings.completion_grace_seconds)
        expired = await self._ledger.expire_stale(self._now() - grace, batch_size)
        # Every ended row (this run's and earlier) whose object is not gone for good: deletes
        # the store missed, and objects a still-valid upload URL could write again.
        leftovers = await self._ledger.unpurged(batch_size * 2)
        purged = failed = watched = 0
        for record in leftovers:
            # Read before the delete: nothing the URL admits can land after this moment.
            settled = self._now() > self._writable_until(record)
            try:
                await self._purge_object(record)
            except AppError:
                failed += 1
                continue
            if not settled:
                watched += 1
                continue
            await self._ledger.mark_purged(record.id, self._now())
            purged += 1
        if expired or purged or failed:
            log.info(
                "reaper: expired=%d purged=%d failed=%d watched=%d",
                len(expired),
                purged,
                failed,
                watched,
            )
        return ReapReport(expired=len(expired), purged=purged, failed=failed, watched=watched)
