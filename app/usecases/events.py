"""The event feed: what backends that poll read instead of a webhook (`GET /events`)."""

from __future__ import annotations

from dataclasses import dataclass

from app.auth import Principal
from app.ledger import Event, Ledger
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
