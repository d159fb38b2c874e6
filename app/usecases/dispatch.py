"""The webhook dispatcher: takes due deliveries from the outbox, posts them signed, records
each attempt, and schedules the next one or gives up.

At least once, in order per file and endpoint: a delivery is marked delivered only after a 2xx,
and the next event of the same file waits for it (app/ledger/statements.py). A dispatcher that
dies mid-attempt leaves its lease to run out; any dispatcher then takes the delivery again.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import random
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta

from app.config import WebhookSettings
from app.errors import AppError
from app.ledger import Delivery, Outbox
from app.metrics import metrics
from app.models import DeliveryStatus
from app.usecases.common import raise_if_cancelled
from app.webhooks import Attempt, Outcome, WebhookEndpoint, WebhookSender, retry_delay

log = logging.getLogger("s3gate.webhooks")

# Far longer than an attempt can take (the sender's deadline is at most 60 s): a live
# dispatcher always records its attempt before its lease can run out.
DELIVERY_LEASE = timedelta(seconds=120)
_ERROR_CHARS = 255  # deliveries.last_error


@dataclass(frozen=True, slots=True)
class DispatchReport:
    claimed: int = 0
    delivered: int = 0
    retried: int = 0
    failed: int = 0


class Dispatcher:
    def __init__(
        self,
        outbox: Outbox,
        sender: WebhookSender,
        endpoints: tuple[WebhookEndpoint, ...],
        settings: WebhookSettings,
        *,
        clock: Callable[[], datetime] = lambda: datetime.now(UTC),
        rng: random.Random | None = None,
    ) -> None:
        self._outbox = outbox
        self._sender = sender
        self._endpoints = {endpoint.name: endpoint for endpoint in endpoints}
        self._settings = settings
        self._now = clock
        self._rng = rng or random.SystemRandom()
        self._metrics = metrics()
        self.wake = asyncio.Event()  # set when this process commits an event

    async def run_once(self, limit: int = 100) -> DispatchReport:
        """One pass: claim what is due (at most `limit`), attempt each, record each."""
        now = self._now()
        # No more than are attempted at once: each leased delivery starts at once, so every
        # attempt ends within the sender's deadline, long before its lease runs out.
        limit = min(limit, self._settings.webhook_concurrency)
        claimed = await self._outbox.claim(now, now + DELIVERY_LEASE, limit)
        outcomes = await asyncio.gather(*(self._attempt(d) for d in claimed))
        await self._observe_backlog()
        return DispatchReport(
            claimed=len(claimed),
            delivered=outcomes.count(Outcome.DELIVERED),
            retried=outcomes.count(Outcome.RETRY),
            failed=outcomes.count(Outcome.FAILED),
        )

    async def drain(self, limit: int = 100) -> DispatchReport:
        """Passes until nothing is due now (`s3gate deliver`: cron-safe, since concurrent
        passes never take the same delivery)."""
        total = DispatchReport()
        while True:
            report = await self.run_once(limit)
            total = DispatchReport(
                total.claimed + report.claimed,
                total.delivered + report.delivered,
                total.retried + report.retried,
                total.failed + report.failed,
            )
            if report.claimed < min(limit, self._settings.webhook_concurrency):
                return total

    async def run_forever(self) -> None:
        """The in-process dispatcher (S3GATE_WEBHOOK_DISPATCH): a pass whenever this process
        commits an event, and every webhook_poll_seconds for other replicas' events."""
        while True:
            raise_if_cancelled()
            self.wake.clear()
            try:
                report = await self.run_once()
            except AppError as exc:  # the ledger is down: try again at the next poll
                log.warning("webhook dispatch pass failed: %s", exc.code)
                report = DispatchReport()
            except Exception:  # never the end of dispatching: logged, retried at the next poll
                log.exception("webhook dispatch pass failed")
                report = DispatchReport()
            if report.claimed:
                continue  # there may be more
            # asyncio.timeout, not wait_for: on 3.11 wait_for can swallow a cancellation that
            # meets the wake-up (the task then never ends and shutdown hangs: seen in tests).
            with contextlib.suppress(TimeoutError):
                async with asyncio.timeout(self._settings.webhook_poll_seconds):
                    await self.wake.wait()

    async def _attempt(self, delivery: Delivery) -> Outcome:
        endpoint = self._endpoints.get(delivery.endpoint)
        event = await self._outbox.event_at(delivery.event_seq)
        if endpoint is None or event is None:
            why = "endpoint no longer configured" if endpoint is None else "event pruned"
            await self._record(delivery, Outcome.FAILED, None, why, self._now())
            return Outcome.FAILED
        started = self._now()
        result = await self._sender.deliver(
            endpoint, str(event.id), int(started.timestamp()), event.payload.encode()
        )
        self._metrics.webhook_deliveries.labels(endpoint.name, str(result.outcome)).inc()
        outcome = result.outcome
        next_at = started
        if outcome is Outcome.RETRY:
            delay = retry_delay(delivery.attempts + 1, self._rng, result.retry_after_seconds)
            if delay is None:
                outcome = Outcome.FAILED  # the schedule is spent: dead-letter
            else:
                next_at = started + timedelta(seconds=delay)
        await self._record(delivery, outcome, result, result.error, next_at)
        if outcome is not Outcome.DELIVERED:
            log.warning(
                "webhook delivery %s: endpoint=%s event=%s attempt=%d status=%s error=%s",
                outcome,
                endpoint.name,
                event.id,
                delivery.attempts + 1,
                result.status_code,
                result.error,
            )
        return outcome

    async def _record(
        self,
        delivery: Delivery,
        outcome: Outcome,
        result: Attempt | None,
        error: str | None,
        next_at: datetime,
    ) -> None:
        status = {
            Outcome.DELIVERED: DeliveryStatus.DELIVERED,
            Outcome.RETRY: DeliveryStatus.PENDING,
            Outcome.FAILED: DeliveryStatus.FAILED,
        }[outcome]
        kept = await self._outbox.finish(
            delivery,
            status,
            next_attempt_at=next_at,
            last_status=result.status_code if result is not None else None,
            last_error=error[:_ERROR_CHARS] if error else None,
            delivered_at=self._now() if outcome is Outcome.DELIVERED else None,
        )
        if not kept:
            log.warning(
                "webhook delivery %d: lease ran out before its attempt was recorded", delivery.id
            )

    async def _observe_backlog(self) -> None:
        depth, oldest = await self._outbox.backlog()
        self._metrics.webhook_queue_depth.set(depth)
        age = (self._now() - oldest).total_seconds() if oldest is not None else 0.0
        self._metrics.webhook_oldest_pending.set(max(age, 0.0))
