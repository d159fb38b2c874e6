"""The reaper: expire uploads past their deadline, remove every object no file should keep."""

from __future__ import annotations

import logging
from dataclasses import dataclass
from datetime import timedelta

from app.config import EventSettings, SharingSettings, UrlSettings
from app.errors import AppError
from app.usecases.access import AccessRecorder
from app.usecases.common import Lookup, Removal

log = logging.getLogger("s3gate.audit")


@dataclass(frozen=True, slots=True)
class ReapReport:
    expired: int  # pending uploads past their deadline, now expired
    purged: int  # objects confirmed gone for good (no URL can write them again)
    failed: int  # objects the store did not delete this time (retried next run)
    watched: int = 0  # objects deleted again whose upload URL may still write: next run too


class Reaper:
    def __init__(
        self,
        lookup: Lookup,
        removal: Removal,
        urls: UrlSettings,
        events: EventSettings,
        sharing: SharingSettings,
        recorder: AccessRecorder,
    ) -> None:
        self._lookup = lookup
        self._ledger = lookup.ledger
        self._removal = removal
        self._urls = urls
        self._retention = timedelta(days=events.event_retention_days)
        self._access_retention = timedelta(days=sharing.access_retention_days)
        self._recorder = recorder

    async def reap(self, *, batch_size: int = 500) -> ReapReport:
        """Expire uploads past their deadline and remove every object no file should keep."""
        now = self._lookup.now
        # Completion is accepted until deadline + grace, so only rows past both expire.
        grace = timedelta(seconds=self._urls.completion_grace_seconds)
        expired = await self._ledger.expire_stale(now() - grace, batch_size)
        # Every ended row (this run's and earlier) whose object is not gone for good: deletes
        # the store missed, and objects a still-valid upload URL could write again.
        leftovers = await self._ledger.unpurged(batch_size * 2)
        purged = failed = watched = 0
        for record in leftovers:
            # Read before the delete: nothing the URL admits can land after this moment.
            settled = now() > self._removal.writable_until(record)
            try:
                await self._removal.purge_object(record)
            except AppError:
                failed += 1
                continue
            if not settled:
                watched += 1
                continue
            await self._ledger.mark_purged(record.id, now())
            purged += 1
        await self._ledger.prune_events(now() - self._retention)
        await self._recorder.prune(self._access_retention)
        if expired or purged or failed:
            log.info(
                "reaper: expired=%d purged=%d failed=%d watched=%d",
                len(expired),
                purged,
                failed,
                watched,
            )
        return ReapReport(expired=len(expired), purged=purged, failed=failed, watched=watched)
