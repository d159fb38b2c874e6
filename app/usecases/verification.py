"""The background verification worker: finishes the files `complete` left `verifying` (a
whole-object checksum read, a malware scan), across replicas one worker per file at a time.

A worker that dies mid-check leaves the file's lease to run out (10 s); any worker then takes
it again. A scanner or store that fails leaves the file verifying and tries again later."""

from __future__ import annotations

import asyncio
import contextlib
import logging
from dataclasses import dataclass
from datetime import timedelta

from app.config import VerificationSettings
from app.errors import AppError
from app.ledger import FileRecord, Ledger
from app.scanner import ScannerUnavailable
from app.usecases.common import Lookup, raise_if_cancelled
from app.usecases.completion import Completion

log = logging.getLogger("s3gate.audit")

_POLL_SECONDS = 2.0  # for other replicas' files and run-out leases; this process's wake it


@dataclass(frozen=True, slots=True)
class VerifyReport:
    claimed: int = 0
    finished: int = 0  # available or rejected
    retried: int = 0  # scanner or store unavailable: tried again later


class BackgroundVerification:
    def __init__(
        self,
        completion: Completion,
        lookup: Lookup,
        settings: VerificationSettings,
        lease: timedelta,
    ) -> None:
        self._completion = completion
        self._ledger: Ledger = lookup.ledger
        self._now = lookup.now
        self._settings = settings
        self._lease = lease

    async def run_once(self, limit: int = 16) -> VerifyReport:
        """Claim what is waiting (at most `limit`) and check each."""
        now = self._now()
        claimed = await self._ledger.claim_verifying(now, now + self._lease, limit)
        gate = asyncio.Semaphore(self._settings.verify_concurrency)

        async def check(record: FileRecord) -> bool:
            async with gate:
                return await self._check(record)

        results = await asyncio.gather(*(check(record) for record in claimed))
        return VerifyReport(len(claimed), results.count(True), results.count(False))

    async def drain(self, limit: int = 16) -> VerifyReport:
        """Passes until nothing is waiting (`s3gate verify`)."""
        claimed = finished = retried = 0
        while True:
            report = await self.run_once(limit)
            claimed, finished = claimed + report.claimed, finished + report.finished
            retried += report.retried
            if report.claimed < limit or report.finished == 0:
                return VerifyReport(claimed, finished, retried)

    async def run_forever(self) -> None:
        """The in-process worker (S3GATE_VERIFY_IN_PROCESS)."""
        wake = self._completion.wake
        while True:
            raise_if_cancelled()
            wake.clear()
            try:
                report = await self.run_once()
            except AppError as exc:  # the ledger is down or not migrated: the next poll
                log.warning("background verification pass failed: %s", exc.code)
                report = VerifyReport()
            except Exception:  # never the end of the worker: logged, retried at the next poll
                log.exception("background verification pass failed")
                report = VerifyReport()
            if report.finished:
                continue
            # asyncio.timeout, not wait_for (see Dispatcher.run_forever).
            with contextlib.suppress(TimeoutError):
                async with asyncio.timeout(_POLL_SECONDS):
                    await wake.wait()

    async def _check(self, record: FileRecord) -> bool:
        """True when the file reached its end (or left verifying); False: tried again later
        (Completion.finish moved its lease on)."""
        try:
            await self._completion.finish(record)
        except (ScannerUnavailable, AppError) as exc:
            why = exc.reason if isinstance(exc, ScannerUnavailable) else exc.code
            log.warning("file=%s stays verifying, tried again later: %s", record.id, why)
            return False
        return True
