"""Completing an upload: check the stored object against the declaration, once at a time
across every replica (a lease in the ledger), then make the file available or reject it."""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
import uuid
from collections.abc import AsyncIterator
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import NoReturn

from app.auth import Principal
from app.config import UploadSettings, UrlSettings, VerificationSettings
from app.errors import (
    AppError,
    NotFound,
    StorageUnavailable,
    UploadExpired,
    UploadIncomplete,
    UploadRejected,
    VerificationInProgress,
)
from app.ledger import FileRecord
from app.logs import audit
from app.metrics import metrics
from app.models import FileStatus
from app.profiles import StoreProfile
from app.scanner import ClamdScanner, ScannerUnavailable
from app.sniff import SNIFF_BYTES
from app.storage import ObjectInfo, Storage
from app.usecases.common import Lookup
from app.usecases.plans import part_sizes
from app.usecases.verdict import (
    DESCRIBED,
    Rejection,
    checksum_mismatch,
    content_mismatch,
    declaration_mismatch,
)

log = logging.getLogger("s3gate.audit")

# The `outcome` of a completion that raised (any other error counts as "error").
_FAILED_COMPLETIONS: dict[type[Exception], str] = {
    UploadRejected: "rejected",
    UploadIncomplete: "not_uploaded",
    VerificationInProgress: "in_progress",
    UploadExpired: "expired",
    NotFound: "not_found",
}
# A completion holds the file's verification lease this long, renewed a third of the way
# through, so a completion that died with its replica holds the file 10 s at most: a client's
# retry elsewhere waits that out (S3GATE_COMPLETION_WAIT_SECONDS is longer) and then verifies.
VERIFY_LEASE_SECONDS = 10.0
# A background check the scanner or the store failed is tried again this much later.
RETRY_AFTER_FAILURE = timedelta(seconds=30)
_WAIT_POLL_SECONDS = 0.05


@dataclass(slots=True)
class _Lease:
    held: datetime  # the verify_lease_until this completion wrote (its compare-and-set token)
    cleared: bool = False  # set once the status change that also clears it is under way


class Completion:
    def __init__(
        self,
        lookup: Lookup,
        storage: Storage,
        uploads: UploadSettings,
        urls: UrlSettings,
        verification: VerificationSettings,
        *,
        profile: StoreProfile,
        scanner: ClamdScanner | None = None,
        verify_lease_seconds: float = VERIFY_LEASE_SECONDS,
    ) -> None:
        self._verification = verification
        self._scanner = scanner
        self.wake = asyncio.Event()  # set when a file starts verifying in this process
        self._lookup = lookup
        self._ledger = lookup.ledger
        self._storage = storage
        self._uploads = uploads
        self._urls = urls
        self._lease = timedelta(seconds=verify_lease_seconds)
        # Whether a SHA-256 the store returns on HEAD proves the bytes (it refused others).
        self._store_vouches = profile.checksums_enforced
        self._metrics = metrics()

    async def complete_upload(
        self, principal: Principal, file_id: uuid.UUID, wait_seconds: float = 0
    ) -> FileRecord:
        """Check the stored object against the declaration; make the file available or reject
        it, or leave it `verifying` for the background worker. With `wait_seconds` (capped by
        S3GATE_COMPLETION_MAX_WAIT_SECONDS) a verifying file is waited for that long."""
        try:
            record, outcome = await self._complete(principal, file_id)
            if record.status == FileStatus.VERIFYING and wait_seconds > 0:
                record, outcome = await self._await_worker(principal, record, wait_seconds)
        except Exception as exc:
            self._metrics.completions[_FAILED_COMPLETIONS.get(type(exc), "error")].inc()
            raise
        self._metrics.completions[outcome].inc()
        return record

    async def _complete(self, principal: Principal, file_id: uuid.UUID) -> tuple[FileRecord, str]:
        """complete_upload's work; the file and the outcome: available or already_available."""
        record = await self._lookup.owned(principal, file_id)
        if record.status == FileStatus.AVAILABLE:
            return record, "already_available"
        if record.status == FileStatus.VERIFYING:
            return record, "verifying"  # single-flight: the worker has it, nothing is read
        if record.status == FileStatus.REJECTED:
            raise UploadRejected(await self._rejection(record, again=True))
        if record.status == FileStatus.EXPIRED:
            raise UploadExpired()
        grace = timedelta(seconds=self._urls.completion_grace_seconds)
        if self._lookup.now() > record.upload_expires_at + grace:
            raise UploadExpired()

        waited_until = time.monotonic() + self._uploads.completion_wait_seconds
        while True:
            async with self._verification_lease(record) as lease:
                if lease is not None:
                    done = await self._verify(record, lease)
                    break
            # Another completion is verifying it: answer with its result when it ends (a
            # ledger read every poll, never a second read of the object).
            current = await self._lookup.owned(principal, file_id)
            if current.status != FileStatus.PENDING:
                return await self._complete(principal, file_id)
            if time.monotonic() >= waited_until:
                raise VerificationInProgress()
            await asyncio.sleep(_WAIT_POLL_SECONDS)
        if done is not None:
            return done, str(done.status)
        return await self._complete(principal, file_id)  # lost a race: answer as it ended

    async def _rejection(self, record: FileRecord, *, again: bool = False) -> str:
        """The problem detail for a rejected file, from its file.rejected event's reason."""
        event = await self._ledger.last_event_of(record.id)
        code = event.body()["data"].get("reason") if event is not None else None
        reason = DESCRIBED.get(code or "", "it did not pass verification")
        if again:
            return f"This upload was already rejected ({reason}); create a new upload."
        return f"The uploaded bytes do not match the declaration: {reason}."

    async def _await_worker(
        self, principal: Principal, record: FileRecord, wait_seconds: float
    ) -> tuple[FileRecord, str]:
        deadline = time.monotonic() + min(
            wait_seconds, self._verification.completion_max_wait_seconds
        )
        pause = 0.05
        while time.monotonic() < deadline:
            await asyncio.sleep(min(pause, max(deadline - time.monotonic(), 0)))
            pause = min(pause * 2, 0.5)
            record = await self._lookup.owned(principal, record.id)
            if record.status == FileStatus.AVAILABLE:
                return record, "available"
            if record.status == FileStatus.REJECTED:
                raise UploadRejected(await self._rejection(record))
            if record.status != FileStatus.VERIFYING:  # back to pending: complete again
                raise UploadIncomplete("The upload changed while it was verified; complete again.")
        return record, "verifying"

    @contextlib.asynccontextmanager
    async def _verification_lease(self, record: FileRecord) -> AsyncIterator[_Lease | None]:
        """Hold the file's verification lease while the block runs (None: another
        completion holds it), so however many completions arrive, across every replica,
        the object is read and checked once at a time."""
        now = self._lookup.now()
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
            renewed = self._lookup.now() + self._lease
            if not await self._ledger.move_lease(file_id, lease.held, renewed):
                return  # lost it; the final compare-and-set decides who answers
            lease.held = renewed

    async def _verify(self, record: FileRecord, lease: _Lease) -> FileRecord | None:
        """`complete`'s check: what HEAD and the leading bytes prove now, and the rest (a whole
        read, a scan) left to the background worker. The file as it is then, or None if the row
        moved on first."""
        if record.multipart_upload_id is not None:
            await self._assemble_parts(record)
        target, info = await self._stored(record)
        reason = declaration_mismatch(record, info)
        if reason is None and (self._scanner is not None or self._needs_read(record, info)):
            lease.cleared = True  # by the status change below
            moved = await self._ledger.transition(
                record.id,
                record.owner_id,
                from_status=FileStatus.PENDING,
                to_status=FileStatus.VERIFYING,
                verify_lease_until=None,
            )
            if moved is not None:
                self.wake.set()
            return moved
        return await self._decide(record, target, info, reason, lease, FileStatus.PENDING)

    async def finish(self, record: FileRecord) -> FileRecord | None:
        """The background worker's check of a file it claimed (`record.verify_lease_until` is
        its lease): the whole object, then available or rejected. None when the row moved on
        (deleted meanwhile); raises ScannerUnavailable or StorageUnavailable to be retried."""
        assert record.verify_lease_until is not None
        lease = _Lease(record.verify_lease_until)
        renewer = asyncio.create_task(self._renew_lease(record.id, lease))
        try:
            target, info = await self._stored(record)
            reason = declaration_mismatch(record, info)
            return await self._decide(record, target, info, reason, lease, FileStatus.VERIFYING)
        except UploadRejected:
            return await self._ledger.get(record.id, record.owner_id)
        except UploadIncomplete:
            # The object is gone or changed (a form re-posted): the client uploads and
            # completes again, as it would have been told by a synchronous `complete`.
            lease.cleared = True
            return await self._ledger.transition(
                record.id,
                record.owner_id,
                from_status=FileStatus.VERIFYING,
                to_status=FileStatus.PENDING,
                verify_lease_until=None,
            )
        except (ScannerUnavailable, StorageUnavailable):
            # Tried again once the lease, moved on past its renewals, runs out.
            await _stop(renewer)
            retry_at = self._lookup.now() + RETRY_AFTER_FAILURE
            with contextlib.suppress(AppError):
                await self._ledger.move_lease(record.id, lease.held, retry_at)
            raise
        finally:
            await _stop(renewer)

    async def _stored(self, record: FileRecord) -> tuple[str, ObjectInfo]:
        target = record.upload_key or record.object_key
        info = await self._storage.head(target)
        if info is None:
            raise UploadIncomplete()
        return target, info

    def _needs_read(self, record: FileRecord, info: ObjectInfo) -> bool:
        """Whether the declared SHA-256 can only be proved by reading the whole object: a
        multipart object's checksum is one of part checksums, some stores (Ceph RGW) keep none
        at all, and a store whose profile does not enforce signed checksums may keep what the
        client sent. Never trusted from the client, never skipped."""
        return record.checksum_sha256 is not None and (
            record.multipart_upload_id is not None
            or info.checksum_sha256 is None
            or not self._store_vouches
        )

    async def _decide(
        self,
        record: FileRecord,
        target: str,
        info: ObjectInfo,
        reason: Rejection | None,
        lease: _Lease,
        from_status: FileStatus,
    ) -> FileRecord | None:
        """The rest of the checks, then the status change: available, or rejected (raises)."""
        if reason is None and record.checksum_sha256 is not None:
            stored_sha256 = info.checksum_sha256
            if self._needs_read(record, info):
                stored_sha256 = await self._storage.sha256(target)
                if stored_sha256 is None:  # gone between the HEAD and the read
                    raise UploadIncomplete()
            reason = checksum_mismatch(record.checksum_sha256, stored_sha256)
        if reason is None:
            head = await self._storage.read_head(target, min(SNIFF_BYTES, record.size))
            if head is None:
                raise UploadIncomplete()
            reason = content_mismatch(record, head)
        if reason is None and self._scanner is not None:
            reason = await self._scan(record, target)
        if reason is not None:
            await self._reject(record, target, info, reason, lease, from_status)
        if record.upload_key is not None:
            await self._promote(record, info)
        lease.cleared = True  # by the status change below
        return await self._ledger.transition(
            record.id,
            record.owner_id,
            from_status=from_status,
            to_status=FileStatus.AVAILABLE,
            completed_at=self._lookup.now().replace(microsecond=0),
            verify_lease_until=None,
        )

    async def _scan(self, record: FileRecord, target: str) -> Rejection | None:
        """The scanner's verdict; raises ScannerUnavailable (fail closed) to be retried."""
        assert self._scanner is not None
        settings = self._verification
        if record.size > settings.scanner_max_bytes:
            if settings.scanner_fail_open:
                log.warning("file=%s is larger than the scan limit: available unscanned", record.id)
                return None
            return Rejection(
                "too_large_to_scan",
                f"the file is larger than the malware scan limit "
                f"({settings.scanner_max_bytes} bytes)",
            )
        try:
            async with self._storage.stream(target) as chunks:
                if chunks is None:
                    raise UploadIncomplete()
                result = await self._scanner.scan(chunks)
        except ScannerUnavailable as exc:
            if not settings.scanner_fail_open:
                raise
            log.warning("file=%s available unscanned: %s (fail open)", record.id, exc.reason)
            return None
        if result.verdict == "infected":
            return Rejection("malware", f"the malware scanner found {result.signature}")
        return None

    async def _reject(
        self,
        record: FileRecord,
        target: str,
        info: ObjectInfo,
        reason: Rejection,
        lease: _Lease,
        from_status: FileStatus,
    ) -> NoReturn:
        quarantine = self._verification.scanner_quarantine_prefix
        if reason.code == "malware" and quarantine:
            await self._storage.copy(
                target,
                quarantine + record.object_key,
                if_match=info.etag or "",
                content_type=record.content_type,
            )
        await self._storage.delete(target)  # before the row says so: no orphan
        lease.cleared = True  # by the status change below
        # The row keeps purged_at empty: a late request through the still-valid URL could
        # store the object again, so the reaper deletes it again until no URL can.
        await self._ledger.transition(
            record.id,
            record.owner_id,
            from_status=from_status,
            to_status=FileStatus.REJECTED,
            event_reason=reason.code,
            verify_lease_until=None,
        )
        audit(log, "rejected upload", file=record.id, owner=record.owner_id, reason=reason.code)
        raise UploadRejected(f"The uploaded bytes do not match the declaration: {reason.detail}.")

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


async def _stop(task: asyncio.Task[None]) -> None:
    task.cancel()
    with contextlib.suppress(asyncio.CancelledError):
        await task
