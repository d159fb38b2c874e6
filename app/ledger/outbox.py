"""The outbox's deliveries: each event for each webhook endpoint, claimed under a lease by one
dispatcher at a time (across replicas on PostgreSQL), in event order per file and endpoint.

The delivery rows are written with their event (Ledger.transition), so an endpoint configured
when a change was committed is owed that event for as long as the row exists."""

from __future__ import annotations

import uuid
from dataclasses import dataclass
from datetime import datetime

from app.events import Event
from app.ledger.base import SqlRoom, converted, timed
from app.ledger.driver import Driver
from app.ledger.rows import result_converters
from app.ledger.statements import OUTBOX_STATEMENTS
from app.models import DeliveryStatus, deliveries_table, events_table


@dataclass(frozen=True, slots=True)
class Delivery:
    id: int
    event_seq: int
    endpoint: str
    file_id: uuid.UUID
    status: str
    attempts: int
    next_attempt_at: datetime
    lease_until: datetime | None
    last_status: int | None
    last_error: str | None
    created_at: datetime
    delivered_at: datetime | None


class Outbox(SqlRoom):
    def __init__(self, driver: Driver) -> None:
        super().__init__(driver, OUTBOX_STATEMENTS)
        self._delivery_from_db = result_converters(driver.dialect, deliveries_table)
        self._event_from_db = result_converters(driver.dialect, events_table)

    @timed
    async def claim(self, now: datetime, until: datetime, limit: int) -> list[Delivery]:
        """Take up to `limit` due deliveries under a lease until `until`."""
        return await self._deliveries("claim", {"now": now, "until": until, "limit": limit})

    @timed
    async def finish(
        self,
        delivery: Delivery,
        status: DeliveryStatus,
        *,
        next_attempt_at: datetime,
        last_status: int | None,
        last_error: str | None,
        delivered_at: datetime | None = None,
    ) -> bool:
        """Record an attempt; False when the lease ran out first (another dispatcher owns the
        delivery now, and its attempt is the one that counts)."""
        sql, params = self._bound(
            "finish",
            {
                "delivery_id": delivery.id,
                "held": delivery.lease_until,
                "to_status": str(status),
                "next_attempt_at": next_attempt_at,
                "last_status": last_status,
                "last_error": last_error,
                "delivered_at": delivered_at,
            },
        )
        return await self._driver.fetch_one(sql, params) is not None

    @timed
    async def event_at(self, seq: int) -> Event | None:
        """The event a delivery carries (None once pruned)."""
        sql, params = self._bound("event_by_seq", {"seq": seq})
        row = await self._driver.fetch_one(sql, params)
        return Event(*converted(row, self._event_from_db)) if row is not None else None

    @timed
    async def backlog(self) -> tuple[int, datetime | None]:
        """Deliveries still to make, and when the oldest of them was written."""
        sql, params = self._bound("backlog", {})
        row = await self._driver.fetch_one(sql, params)
        assert row is not None  # an aggregate always answers one row
        oldest = row[1]
        if oldest is not None:
            convert = deliveries_table.c.created_at.type.dialect_impl(
                self._driver.dialect
            ).result_processor(self._driver.dialect, None)
            oldest = convert(oldest) if convert is not None else oldest
        return int(row[0]), oldest

    @timed
    async def requeue(self, event: Event, endpoints: list[str], now: datetime) -> int:
        """Deliver the event again to every endpoint listed, now and with a fresh schedule,
        including endpoints configured after it was written; how many deliveries are due."""
        for endpoint in endpoints:
            await self._driver.execute(
                *self._bound(
                    "insert_missing_delivery",
                    {"event_id": event.id, "endpoint": endpoint, "now": now},
                )
            )
        sql, params = self._bound("requeue_event", {"event_id": event.id, "now": now})
        return len(await self._driver.fetch_all(sql, params))

    @timed
    async def requeue_failed(self, now: datetime) -> int:
        """Every dead-lettered delivery due again now, with a fresh schedule."""
        sql, params = self._bound("requeue_failed", {"now": now})
        return len(await self._driver.fetch_all(sql, params))

    @timed
    async def failed(self, limit: int) -> list[Delivery]:
        """Dead-lettered deliveries, oldest event first."""
        return await self._deliveries("failed", {"limit": limit})

    @timed
    async def of_event(self, seq: int) -> list[Delivery]:
        """The deliveries of one event."""
        return await self._deliveries("of_event", {"seq": seq})

    async def _deliveries(self, key: str, params: dict[str, object]) -> list[Delivery]:
        sql, bound = self._bound(key, params)
        rows = await self._driver.fetch_all(sql, bound)
        return [Delivery(*converted(row, self._delivery_from_db)) for row in rows]
