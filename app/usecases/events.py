"""The event feed, what backends that poll read instead of a webhook (`GET /events`), and the
operators' view of the outbox (`s3gate events list|replay`)."""

from __future__ import annotations

import uuid
from dataclasses import dataclass
from datetime import UTC, datetime

from app.auth import Principal
from app.errors import NotFound
from app.ledger import Delivery, Event, Ledger
from app.usecases.plans import decode_event_cursor, encode_event_cursor


@dataclass(frozen=True, slots=True)
class EventPage:
    items: list[Event]
    # Always set: where the next read starts (this page's end, or the same place when empty).
    next_cursor: str


class EventFeed:
    def __init__(self, ledger: Ledger) -> None:
        self._ledger = ledger

    async def read(self, principal: Principal, *, after: str | None, limit: int) -> EventPage:
        """Events in commit order after the cursor: every owner's for an admin, else the
        caller's own files' events."""
        after_seq = decode_event_cursor(after) if after else 0
        owner = None if principal.is_admin else principal.sub
        events = await self._ledger.events(owner, after=after_seq, limit=limit)
        end = events[-1].seq if events else after_seq
        return EventPage(events, encode_event_cursor(end))

    async def recent(self, *, after: int, limit: int) -> list[tuple[Event, list[Delivery]]]:
        """Every owner's events after the seq `after`, each with its deliveries."""
        events = await self._ledger.events(None, after=after, limit=limit)
        return [(event, await self._ledger.outbox.of_event(event.seq)) for event in events]

    async def failed(self, limit: int) -> list[Delivery]:
        """The dead-lettered deliveries."""
        return await self._ledger.outbox.failed(limit)

    async def replay(self, event_id: uuid.UUID, endpoints: tuple[str, ...] | None = None) -> int:
        """Deliver one event again, now, to every configured endpoint that takes its type
        (or those named): how many deliveries are due."""
        event = await self._ledger.event(event_id)
        if event is None:
            raise NotFound("No event has this id (or it was pruned).")
        wanted = [
            name
            for name in self._ledger.subscribers(event.type)
            if endpoints is None or name in endpoints
        ]
        return await self._ledger.outbox.requeue(event, wanted, datetime.now(UTC))

    async def replay_failed(self) -> int:
        """Every dead-lettered delivery due again now: how many."""
        return await self._ledger.outbox.requeue_failed(datetime.now(UTC))
