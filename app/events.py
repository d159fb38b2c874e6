"""What backends hear of: an event per status change they act on, as the outbox stores it.

The ledger writes an event in the same transaction as the status change it announces
(app/ledger), so an event exists exactly when its change was committed. Its payload is the
event as delivered, rendered once at that moment: the feed and every webhook attempt send the
same bytes, with the File resource as it was then. Pure: no I/O.
"""

from __future__ import annotations

import json
import uuid
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

from uuid6 import uuid7

from app.models import EventType, FileStatus
from app.schemas import EventFileOut

# The statuses whose arrival is announced, and as what. A pending upload re-signed for a
# replay stays pending: no event.
EVENT_FOR_STATUS: dict[str, EventType] = {
    FileStatus.AVAILABLE: EventType.FILE_AVAILABLE,
    FileStatus.REJECTED: EventType.FILE_REJECTED,
    FileStatus.EXPIRED: EventType.UPLOAD_EXPIRED,
    FileStatus.DELETED: EventType.FILE_DELETED,
}


@dataclass(frozen=True, slots=True)
class Event:
    """An outbox row. `seq` is the commit order (the feed's cursor); `id` the public id."""

    seq: int
    id: uuid.UUID
    type: str
    file_id: uuid.UUID
    owner_id: str
    created_at: datetime
    payload: str

    def body(self) -> dict[str, Any]:
        """The payload as JSON data (the feed's entries)."""
        data: dict[str, Any] = json.loads(self.payload)
        return data


@dataclass(frozen=True, slots=True)
class NewEvent:
    """An event to insert: every column but `seq`, which the database assigns."""

    id: uuid.UUID
    type: str
    file_id: uuid.UUID
    owner_id: str
    created_at: datetime
    payload: str


def _timestamp(moment: datetime) -> str:
    return moment.astimezone(UTC).isoformat(timespec="milliseconds").replace("+00:00", "Z")


def announce(file: Any, reason: str | None, now: datetime) -> NewEvent | None:
    """The event for a file that has just reached its status (`file` is the ledger's record
    after the change), or None when that status is not announced."""
    event_type = EVENT_FOR_STATUS.get(file.status)
    if event_type is None:
        return None
    extra = {"reason": reason or "rejected"} if event_type is EventType.FILE_REJECTED else {}
    return file_event(event_type, file, now, extra)


def file_event(
    event_type: EventType, file: Any, now: datetime, extra: dict[str, Any] | None = None
) -> NewEvent:
    """An event about `file` (a ledger record), its data carrying `extra` too (a rejection's
    reason; a sharing event's grant or link, as JSON data)."""
    event_id = uuid7()
    data: dict[str, Any] = {
        "owner": file.owner_id,
        "file": EventFileOut.model_validate(file).model_dump(mode="json"),
        **(extra or {}),
    }
    payload = {
        "id": str(event_id),
        "type": str(event_type),
        "timestamp": _timestamp(now),
        "data": data,
    }
    return NewEvent(
        id=event_id,
        type=str(event_type),
        file_id=file.id,
        owner_id=file.owner_id,
        created_at=now,
        payload=json.dumps(payload, separators=(",", ":"), ensure_ascii=False),
    )
