"""What every use case shares: the clock, the one admin branch, owner-scoped lookups, and the
removal of a file (the row first, then what its URLs may have stored)."""

from __future__ import annotations

import asyncio
import logging
import time
import uuid
from collections.abc import Callable
from datetime import UTC, datetime, timedelta

from app.auth import Principal
from app.config import UrlSettings
from app.errors import AppError, NotFound, NotPending
from app.ledger import FileRecord, Ledger
from app.models import FileStatus
from app.storage import Storage

log = logging.getLogger("s3gate.audit")

Clock = Callable[[], float]


def scope(principal: Principal) -> str | None:
    """The one explicit admin branch: admins see every owner's files, others only their own."""
    return None if principal.is_admin else principal.sub


class Lookup:
    """The ledger and the clock, as every use case reads them."""

    def __init__(self, ledger: Ledger, clock: Clock = time.time) -> None:
        self.ledger = ledger
        self._clock = clock

    def now(self) -> datetime:
        return datetime.fromtimestamp(self._clock(), UTC)

    async def owned(self, principal: Principal, file_id: uuid.UUID) -> FileRecord:
        """The file if the caller may see it; NotFound (404) alike for missing and not yours."""
        record = await self.ledger.get(file_id, scope(principal))
        if record is None:
            raise NotFound()
        return record


class Removal:
    """Deleting files and the objects their URLs may have stored, without orphans."""

    def __init__(self, lookup: Lookup, storage: Storage, urls: UrlSettings) -> None:
        self._lookup = lookup
        self._ledger = lookup.ledger
        self._storage = storage
        self._urls = urls

    def writable_until(self, record: FileRecord) -> datetime:
        """Until when an upload URL or policy of the record may still store an object: S3
        admits a request that started before expiry (by the store's own clock)."""
        last_url = record.upload_expires_at
        if record.multipart_upload_id is not None and record.deleted_at is not None:
            # Part URLs are signed only while the file is pending, each for at most the URL
            # TTL, so the last one dies that long after the delete, not at the day's deadline.
            ttl = timedelta(seconds=self._urls.upload_url_ttl_seconds)
            last_url = min(last_url, record.deleted_at + ttl)
        margin = self._urls.completion_grace_seconds + self._urls.store_clock_skew_seconds
        return last_url + timedelta(seconds=margin)

    async def remove(
        self, principal: Principal, record: FileRecord, *, from_status: tuple[FileStatus, ...]
    ) -> None:
        """Mark the file deleted, then remove its object (or leave it to the reaper)."""
        # The row first: a concurrent completion can then no longer mark it available after
        # its object is gone. If the store fails next, the row keeps purged_at NULL for cleanup.
        now = self._lookup.now()
        removed = await self._ledger.transition(
            record.id,
            scope(principal),
            from_status=from_status,
            to_status=FileStatus.DELETED,
            deleted_at=now,
            purged_at=None,  # an available form upload's may be set: its own key is there
        )
        if removed is None:
            current = await self._ledger.get(record.id, scope(principal))
            if current is None:
                raise NotFound()
            raise NotPending()
        try:
            await self.purge_object(removed)
        except AppError:
            log.warning("object of deleted file=%s left for cleanup", record.id)
            return
        if now > self.writable_until(removed):
            await self._ledger.mark_purged(record.id, now)
        # else: its upload URL could store the object again; the reaper deletes it until not

    async def purge_object(self, record: FileRecord) -> None:
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


def raise_if_cancelled() -> None:
    """Raise CancelledError when this task was cancelled but a library swallowed it: Python
    3.11's asyncio.wait_for drops a cancellation that meets its result, and psycopg_pool waits
    with it (seen: a background loop that never ended, and a shutdown that hung). Loops call
    this each round."""
    task = asyncio.current_task()
    if task is not None and task.cancelling():
        raise asyncio.CancelledError
