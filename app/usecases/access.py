"""The access history: every URL issued (upload, part, download, share-link use) becomes a row.

Rows are buffered in the process and written in batches, one transaction per flush, by a
background task: a synchronous INSERT on every download would be a second ledger round trip
on the hottest route (bench/RESULTS.md has the measured cost). The history of this process is
flushed before it is read (`GET /files/{id}/access`) and at shutdown; a process killed with
SIGKILL loses at most its last FLUSH_INTERVAL_SECONDS of rows (the audit log lines are still
written as each URL leaves).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import uuid
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

from app.errors import AppError
from app.ledger import AccessEntry, Ledger
from app.logs import current_client
from app.metrics import metrics
from app.models import AccessAction
from app.usecases.common import Lookup, raise_if_cancelled
from app.usecases.plans import decode_seq_cursor, encode_seq_cursor

log = logging.getLogger("s3gate.access")

FLUSH_INTERVAL_SECONDS = 0.2
FLUSH_MAX_ROWS = 500
# While the database refuses the writes, rows wait; beyond this many the oldest are dropped
# (counted by s3gate_access_history_dropped_total) rather than growing without bound.
BUFFER_MAX_ROWS = 100_000
MAX_ADDRESS_CHARS = 64


@dataclass(frozen=True, slots=True)
class AccessPage:
    items: list[AccessEntry]
    next_cursor: str | None


class AccessRecorder:
    """Buffers access-history rows and writes them in batches."""

    def __init__(self, ledger: Ledger, lookup: Lookup) -> None:
        self._sharing = ledger.sharing
        self._lookup = lookup
        self._rows: list[dict[str, Any]] = []
        self._wake = asyncio.Event()
        self._flushing = asyncio.Lock()
        self._metrics = metrics()

    def issued(
        self,
        file_id: uuid.UUID,
        action: AccessAction,
        expires_at: datetime,
        *,
        sub: str | None = None,
        link_id: uuid.UUID | None = None,
        part_number: int | None = None,
    ) -> None:
        """Note one URL leaving: for whom (`sub`, or a share link), until when; the client's
        address is the running request's."""
        address = current_client()
        self._rows.append(
            {
                "file_id": file_id,
                "action": str(action),
                "actor_sub": sub,
                "link_id": link_id,
                "client_address": address[:MAX_ADDRESS_CHARS] if address else None,
                "issued_at": self._lookup.now(),
                "expires_at": expires_at,
                "part_number": part_number,
            }
        )
        if len(self._rows) >= FLUSH_MAX_ROWS:
            self._wake.set()

    async def flush(self) -> None:
        """Write every buffered row; on failure they stay buffered for the next flush."""
        async with self._flushing:
            while self._rows:
                batch, self._rows = self._rows[:FLUSH_MAX_ROWS], self._rows[FLUSH_MAX_ROWS:]
                try:
                    await self._sharing.record_access(batch)
                except BaseException:
                    self._rows[:0] = batch
                    self._drop_overflow()
                    raise

    def _drop_overflow(self) -> None:
        excess = len(self._rows) - BUFFER_MAX_ROWS
        if excess > 0:
            del self._rows[:excess]
            self._metrics.access_dropped.inc(excess)
            log.warning("access history: dropped %d rows the ledger could not take", excess)

    async def run_forever(self) -> None:
        """Flush every FLUSH_INTERVAL_SECONDS (sooner when a batch is full)."""
        while True:
            raise_if_cancelled()
            with contextlib.suppress(TimeoutError):
                async with asyncio.timeout(FLUSH_INTERVAL_SECONDS):
                    await self._wake.wait()
            self._wake.clear()
            try:
                await self.flush()
            except AppError as exc:  # the database is down: the rows wait for the next round
                log.warning("access history flush failed: %s", exc.code)
            except Exception as exc:
                log.warning("access history flush failed: %s", type(exc).__name__)

    async def history(self, file_id: uuid.UUID, *, limit: int, cursor: str | None) -> AccessPage:
        """The file's access history, newest first (the caller checked who may read it)."""
        await self.flush()  # what this process handed out so far is in the page
        before = decode_seq_cursor(cursor) if cursor else None
        rows = await self._sharing.access_of(file_id, limit=limit + 1, before=before)
        if len(rows) > limit:
            return AccessPage(rows[:limit], encode_seq_cursor(rows[limit - 1].seq))
        return AccessPage(rows, None)

    async def prune(self, retention: timedelta) -> None:
        """Forget history older than the retention, and grants and links that ended then."""
        await self._sharing.prune(self._lookup.now() - retention)
