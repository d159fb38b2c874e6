"""The ledger: one statement per call, owner-scoped in SQL.

`owner=None` means "any owner" and is passed only on the explicit admin branch in service.py.
The statements (statements.py) are compiled once per dialect, their parameters and rows
converted by the column types (rows.py), and run by the driver (driver.py).
"""

from __future__ import annotations

import contextlib
import uuid
from collections.abc import Callable, Collection, Iterator, Sequence
from datetime import UTC, datetime
from typing import Any

from app.config import DatabaseSettings, ledger_url
from app.errors import MigrationsPending
from app.events import EVENT_FOR_STATUS, Event, NewEvent, announce
from app.ledger.base import IdempotencyKeyTaken, SqlRoom, converted, timed
from app.ledger.driver import Driver, DuplicateKey, FollowUp, Params, Row
from app.ledger.outbox import Delivery, Outbox
from app.ledger.rows import FileRecord, column_values, compile_for, result_converters
from app.ledger.sharing import AccessEntry, Grant, Link, Sharing
from app.ledger.statements import (
    BATCH_MAX_IDS,
    EVENT_COLUMNS,
    STATEMENTS,
    accessible_batch,
    accessible_file,
    shared_page,
    transition,
)
from app.models import FileStatus, GrantPermission, events_table

__all__ = [
    "BATCH_MAX_IDS",
    "AccessEntry",
    "Delivery",
    "Event",
    "FileRecord",
    "Grant",
    "IdempotencyKeyTaken",
    "Ledger",
    "Link",
    "Outbox",
    "Sharing",
    "Subscribers",
    "open_driver",
]

# The webhook endpoints an event type goes to (their names): each gets a delivery row with it.
Subscribers = Callable[[str], Sequence[str]]


def _nobody(event_type: str) -> Sequence[str]:
    return ()


async def open_driver(database_url: str, pool_size: int) -> Driver:
    """The driver for this URL (sqlite:///path or postgresql://...)."""
    url, backend = ledger_url(database_url)
    if backend == "sqlite":
        from app.ledger.sqlite import SqliteDriver

        return SqliteDriver(url.database or "")
    # Imported only for PostgreSQL: psycopg and its dialect cost ~12 MB per worker.
    from app.ledger.postgres import PostgresDriver

    conninfo = url.set(drivername="postgresql").render_as_string(hide_password=False)
    driver = PostgresDriver(conninfo, pool_size)
    await driver.open()
    return driver


def _numbered(prefix: str, values: Sequence[Any]) -> dict[str, Any]:
    """Values bound one by one as prefix0, prefix1, ... (IN lists of a compiled statement)."""
    return {f"{prefix}{index}": value for index, value in enumerate(values)}


@contextlib.contextmanager
def _idempotency_race(record: FileRecord) -> Iterator[None]:
    # The only unique constraint an insert of a fresh UUIDv7 row can meet is the owner's
    # Idempotency-Key; anything else is a real error.
    try:
        yield
    except DuplicateKey:
        if record.idempotency_key is None:
            raise
        raise IdempotencyKeyTaken from None


class Ledger(SqlRoom):
    """The SQL side of every use case: one statement per call, owner-scoped in SQL."""

    def __init__(self, driver: Driver, subscribers: Subscribers = _nobody) -> None:
        super().__init__(driver, STATEMENTS)
        self._subscribers = subscribers
        self.outbox = Outbox(driver)
        self.sharing = Sharing(driver, self.event_writes, self.delivered_to)
        # Called after this process commits an event with deliveries (the dispatcher's wake-up).
        self.on_delivery: Callable[[], None] | None = None
        self._delivery_insert = self.outbox.compiled("insert_delivery")
        self._from_db = result_converters(driver.dialect)
        self._event_from_db = result_converters(driver.dialect, events_table)
        # Only PostgreSQL needs the events lock to keep seq in commit order (statements.py).
        self._lock_events = driver.dialect.name == "postgresql"

    def subscribers(self, event_type: str) -> Sequence[str]:
        """The webhook endpoints this event type is delivered to."""
        return self._subscribers(event_type)

    @classmethod
    async def open(cls, settings: DatabaseSettings, subscribers: Subscribers = _nobody) -> Ledger:
        """Connect to the configured database (lazily for PostgreSQL's pool)."""
        driver = await open_driver(settings.database_url, settings.database_pool_size)
        return cls(driver, subscribers)

    async def close(self) -> None:
        """Release every connection."""
        await self._driver.close()

    @timed
    async def insert(self, record: FileRecord) -> None:
        """Add a new file; IdempotencyKeyTaken when its key lost a race."""
        with _idempotency_race(record):
            await self._execute("insert", column_values(record))

    @timed
    async def insert_within_quota(
        self, record: FileRecord, *, max_bytes: int, max_pending: int
    ) -> bool:
        """Add the file only if its owner stays within both quotas; False when it would not."""
        statement = self._compiled["insert_within_quota"]
        params = column_values(record)
        params.update(max_bytes=max_bytes, max_pending=max_pending)
        with _idempotency_race(record):
            row = await self._driver.fetch_one_serialized(
                f"quota:{record.owner_id}", statement.sql, self._bind(statement, params)
            )
        return row is not None

    @timed
    async def usage(self, owner: str) -> tuple[int, int]:
        """The owner's bytes held by pending and available files, and its pending uploads."""
        statement = self._compiled["usage"]
        row = await self._driver.fetch_one(statement.sql, self._bind(statement, {"owner": owner}))
        assert row is not None  # an aggregate always answers one row
        return int(row[0]), int(row[1])

    @timed
    async def get(self, file_id: uuid.UUID, owner: str | None) -> FileRecord | None:
        """The file if it exists, is not deleted and (unless owner is None) is owner's."""
        if owner is None:
            return await self._one("get_any", {"file_id": file_id})
        return await self._one("get_owned", {"file_id": file_id, "owner": owner})

    @timed
    async def accessible(
        self,
        file_id: uuid.UUID,
        sub: str,
        groups: Sequence[str],
        now: datetime,
        permission: GrantPermission = GrantPermission.READ,
    ) -> FileRecord | None:
        """The file if it is visible and `sub` owns it or holds (itself or through one of
        `groups`) a live grant of `permission`: one statement."""
        shape = ("accessible", len(groups), permission)
        if shape not in self._compiled:
            statement = accessible_file(len(groups), permission)
            self._compiled[shape] = compile_for(statement, self._driver.dialect)
        params = {"file_id": file_id, "sub": sub, "now": now, **_numbered("group", groups)}
        return await self._one(shape, params)

    @timed
    async def accessible_many(
        self, file_ids: Sequence[uuid.UUID], sub: str | None, groups: Sequence[str], now: datetime
    ) -> list[FileRecord]:
        """Of up to BATCH_MAX_IDS ids, the visible files `sub` may read (owner or live grant;
        None: any owner), in one statement, in no particular order."""
        if len(file_ids) > BATCH_MAX_IDS:
            raise ValueError(f"at most {BATCH_MAX_IDS} ids")
        shape = ("accessible_many", len(groups), sub is not None)
        if shape not in self._compiled:
            statement = accessible_batch(len(groups), scoped=sub is not None)
            self._compiled[shape] = compile_for(statement, self._driver.dialect)
        padded = [*file_ids, *([None] * (BATCH_MAX_IDS - len(file_ids)))]
        params = {"sub": sub, "now": now, **_numbered("group", groups), **_numbered("id", padded)}
        return await self._all(shape, params)

    @timed
    async def shared_with(
        self,
        sub: str,
        groups: Sequence[str],
        now: datetime,
        *,
        limit: int,
        before: uuid.UUID | None,
    ) -> list[FileRecord]:
        """Visible files with a live grant to `sub` or its groups, newest first."""
        shape = ("shared_with", len(groups), before is not None)
        if shape not in self._compiled:
            statement = shared_page(len(groups), paged=before is not None)
            self._compiled[shape] = compile_for(statement, self._driver.dialect)
        params = {"sub": sub, "now": now, "limit": limit, "before": before}
        return await self._all(shape, {**params, **_numbered("group", groups)})

    @timed
    async def get_ended_too(self, file_id: uuid.UUID, owner: str | None) -> FileRecord | None:
        """The file in any status, deleted too; owner-scoped unless owner is None."""
        if owner is None:
            return await self._one("get_any_ended_too", {"file_id": file_id})
        return await self._one("get_owned_ended_too", {"file_id": file_id, "owner": owner})

    @timed
    async def charge_part_urls(self, file_id: uuid.UUID, count: int, budget: int) -> bool:
        """Count `count` part URLs against the pending upload's budget; False when they do not
        fit (nothing is counted then)."""
        statement = self._compiled["charge_part_urls"]
        params = {"file_id": file_id, "count": count, "budget": budget}
        return (
            await self._driver.fetch_one(statement.sql, self._bind(statement, params)) is not None
        )

    @timed
    async def find_by_idempotency_key(self, owner: str, key: str) -> FileRecord | None:
        """The owner's file created with this Idempotency-Key, in any status."""
        return await self._one("by_idempotency_key", {"owner": owner, "key": key})

    @timed
    async def release_idempotency_key(self, owner: str, key: str, older_than: datetime) -> None:
        """Free a key whose replay window has passed, so it can name a new file."""
        params = {"owner": owner, "key": key, "older_than": older_than}
        await self._execute("release_idempotency_key", params)

    @timed
    async def transition(
        self,
        file_id: uuid.UUID,
        owner: str | None,
        *,
        from_status: FileStatus | Collection[FileStatus],
        to_status: FileStatus,
        event_reason: str | None = None,
        **values: Any,
    ) -> FileRecord | None:
        """Compare-and-set the status; the updated file, or None if it was not in from_status.

        A status that backends hear of (app/events.py) writes its event in the same
        transaction: the change and its event are committed together or not at all.
        `event_reason` is a rejection's code."""
        allowed = (from_status,) if isinstance(from_status, FileStatus) else tuple(from_status)
        shape = ("transition", allowed, owner is not None, tuple(sorted(values)))
        if shape not in self._compiled:
            statement = transition(allowed, scoped=owner is not None, columns=sorted(values))
            self._compiled[shape] = compile_for(statement, self._driver.dialect)
        params = {"file_id": file_id, "owner": owner, "to_status": str(to_status), **values}
        if to_status not in EVENT_FOR_STATUS:
            return await self._one(shape, params)
        compiled = self._compiled[shape]
        rows = await self._driver.write_with(
            compiled.sql, self._bind(compiled, params), self._announcing(event_reason)
        )
        self.delivered_to(rows)
        return self._record(rows[0]) if rows else None

    @timed
    async def claim_verification(
        self, file_id: uuid.UUID, now: datetime, until: datetime
    ) -> FileRecord | None:
        """Take the pending file's verification lease until `until`; None if another
        completion holds a lease that has not run out (or the file is no longer pending)."""
        return await self._one(
            "claim_verification", {"file_id": file_id, "now": now, "until": until}
        )

    @timed
    async def claim_verifying(self, now: datetime, until: datetime, limit: int) -> list[FileRecord]:
        """Take up to `limit` verifying files whose lease is free or ran out, until `until`."""
        return await self._all("claim_verifying", {"now": now, "until": until, "limit": limit})

    @timed
    async def move_lease(self, file_id: uuid.UUID, held: datetime, until: datetime | None) -> bool:
        """Renew (or, with None, release) the lease this completion holds; False if it is
        no longer held (it ran out and another completion took it, or the file moved on)."""
        statement = self._compiled["move_lease"]
        params = self._bind(statement, {"file_id": file_id, "held": held, "until": until})
        return await self._driver.fetch_one(statement.sql, params) is not None

    @timed
    async def mark_purged(self, file_id: uuid.UUID, when: datetime) -> None:
        """Record that the store confirmed the object's removal."""
        await self._execute("mark_purged", {"file_id": file_id, "purged": when})

    @timed
    async def page(
        self, owner: str | None, *, limit: int, before: uuid.UUID | None
    ) -> list[FileRecord]:
        """Visible files, newest first (UUIDv7 order), strictly older than `before`."""
        name = ("page_any" if owner is None else "page_owned") + ("_before" if before else "")
        return await self._all(name, {"owner": owner, "before": before, "limit": limit})

    @timed
    async def expire_stale(self, cutoff: datetime, limit: int) -> list[FileRecord]:
        """Mark up to `limit` pending uploads whose deadline is before `cutoff` expired (with
        their upload.expired events, in the same transaction)."""
        statement = self._compiled["expire_stale"]
        params = self._bind(statement, {"cutoff": cutoff, "limit": limit})
        rows = await self._driver.write_with(statement.sql, params, self._announcing(None))
        self.delivered_to(rows)
        return [self._record(row) for row in rows]

    @timed
    async def events(self, owner: str | None, *, after: int, limit: int) -> list[Event]:
        """Events in commit order after the `after` seq: the owner's, or (None) everyone's."""
        if owner is None:
            return await self._events("events_any", {"after": after, "limit": limit})
        return await self._events("events_owned", {"owner": owner, "after": after, "limit": limit})

    @timed
    async def event(self, event_id: uuid.UUID) -> Event | None:
        """One event by its public id."""
        found = await self._events("event_by_id", {"event_id": event_id})
        return found[0] if found else None

    @timed
    async def last_event_of(self, file_id: uuid.UUID) -> Event | None:
        """The file's latest event (a rejection's carries its reason)."""
        found = await self._events("last_event_of_file", {"file_id": file_id})
        return found[0] if found else None

    @timed
    async def prune_events(self, before: datetime) -> None:
        """Forget the events written before `before` (the retention setting), and their
        finished deliveries; an event with a delivery still to make stays."""
        await self._execute("prune_events", {"before": before})
        await self._execute("prune_deliveries", {"before": before})

    @timed
    async def unpurged(self, limit: int) -> list[FileRecord]:
        """Files whose object removal is not confirmed for good yet (see statements.py)."""
        return await self._all("unpurged", {"limit": limit})

    @timed
    async def schema_revision(self) -> str | None:
        """The Alembic revision the schema is at; None when it was never migrated."""
        try:
            row = await self._driver.fetch_one(self._compiled["schema_revision"].sql, {})
        except MigrationsPending:  # no alembic_version table: an empty database
            return None
        return str(row[0]) if row is not None else None

    async def pending_migrations(self) -> MigrationsPending | None:
        """The error to answer while the schema is behind the code's revision, else None."""
        # Imported here: alembic is needed for this one check, not by every worker at import.
        from app.migrate import head_revision, shipped_revisions

        current, head = await self.schema_revision(), head_revision()
        # A revision this package does not ship is a newer release's: during a rolling update
        # old replicas keep serving on the expanded schema (docs/deploy.md), so it is no fault.
        if current == head or (current is not None and current not in shipped_revisions()):
            return None
        return MigrationsPending(
            f"The ledger's schema is at revision {current or 'none'}; this version of s3gate "
            f"needs {head}: run `s3gate migrate`."
        )

    def _announcing(self, reason: str | None) -> FollowUp:
        """What a status change writes after it, in its transaction: an event per changed row
        (app/events.py), after the events lock where the backend needs it."""
        now = datetime.now(UTC)

        def then(rows: list[Row]) -> list[tuple[str, Params]]:
            events = [announce(self._record(row), reason, now) for row in rows]
            return self.event_writes([event for event in events if event is not None])

        return then

    def event_writes(self, events: Sequence[NewEvent]) -> list[tuple[str, Params]]:
        """The statements that commit these events with the change they announce (in its
        transaction): each event, its deliveries, after the events lock where needed."""
        inserts = []
        for event in events:
            inserts.append(self._insert_event(event))
            for endpoint in self._subscribers(event.type):
                values = {"event_id": event.id, "endpoint": endpoint, "now": event.created_at}
                inserts.append(
                    (self._delivery_insert.sql, self._bind(self._delivery_insert, values))
                )
        if inserts and self._lock_events:
            lock = self._compiled["lock_events"]
            inserts.insert(0, (lock.sql, self._bind(lock, {})))
        return inserts

    def delivered_to(self, rows: Sequence[Any]) -> None:
        """Wake this process's dispatcher after a commit that wrote events with deliveries."""
        if rows and self.on_delivery is not None:
            self.on_delivery()

    def _insert_event(self, event: NewEvent) -> tuple[str, Params]:
        statement = self._compiled["insert_event"]
        values = {name: getattr(event, name) for name in EVENT_COLUMNS}
        return statement.sql, self._bind(statement, values)

    async def _events(self, key: str, params: Params) -> list[Event]:
        statement = self._compiled[key]
        rows = await self._driver.fetch_all(statement.sql, self._bind(statement, params))
        return [Event(*converted(row, self._event_from_db)) for row in rows]

    def _record(self, row: Row) -> FileRecord:
        """The row (every column, in the table's order) as the driver returned it."""
        return FileRecord(*converted(row, self._from_db))

    async def _one(self, key: Any, params: Params) -> FileRecord | None:
        statement = self._compiled[key]
        row = await self._driver.fetch_one(statement.sql, self._bind(statement, params))
        return self._record(row) if row is not None else None

    async def _all(self, key: Any, params: Params) -> list[FileRecord]:
        statement = self._compiled[key]
        rows = await self._driver.fetch_all(statement.sql, self._bind(statement, params))
        return [self._record(row) for row in rows]

    async def _execute(self, key: Any, params: Params) -> None:
        statement = self._compiled[key]
        await self._driver.execute(statement.sql, self._bind(statement, params))
