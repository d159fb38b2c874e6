"""Ledger queries. Every query made for a caller carries the owner in its WHERE clause.

`owner=None` means "any owner" and is passed only on the explicit admin branch in service.py.
Plain Core statements, built once at import with bound parameters: the request path needs rows,
not an identity map or unit of work, nor a statement rebuilt on every call. Each operation is
one statement (atomic on its own under the engine's autocommit) run in one worker-thread hop.
"""

from __future__ import annotations

import logging
import uuid
from collections.abc import Callable, Collection
from dataclasses import dataclass
from datetime import datetime
from typing import Any, TypeVar

import anyio.to_thread
from sqlalchemy import Engine, Executable, bindparam, select, text, update
from sqlalchemy.exc import DBAPIError, IntegrityError

from app.errors import DatabaseUnavailable
from app.models import FileStatus, files_table

log = logging.getLogger("s3gate.ledger")

_c = files_table.c
_VISIBLE = _c.status != FileStatus.DELETED

_INSERT = files_table.insert()
_GET_OWNED = select(files_table).where(
    _c.id == bindparam("id"), _c.owner_id == bindparam("owner"), _VISIBLE
)
_GET_ANY = select(files_table).where(_c.id == bindparam("id"), _VISIBLE)
_BY_IDEMPOTENCY_KEY = select(files_table).where(
    _c.owner_id == bindparam("owner"), _c.idempotency_key == bindparam("key")
)
_RELEASE_IDEMPOTENCY_KEY = (
    update(files_table)
    .where(
        _c.owner_id == bindparam("owner"),
        _c.idempotency_key == bindparam("key"),
        _c.created_at < bindparam("older_than"),
    )
    .values(idempotency_key=None, request_hash=None)
)
_MARK_PURGED = (
    update(files_table).where(_c.id == bindparam("file_id")).values(purged_at=bindparam("purged"))
)


@dataclass(frozen=True, slots=True)
class FileRecord:
    id: uuid.UUID
    owner_id: str
    object_key: str
    filename: str
    content_type: str
    size: int
    checksum_sha256: str | None
    status: str
    idempotency_key: str | None
    request_hash: str | None
    created_at: datetime
    upload_expires_at: datetime
    completed_at: datetime | None
    deleted_at: datetime | None
    purged_at: datetime | None


# Rows are unpacked positionally: FileRecord lists the table's columns in the table's order
# (tests/unit/test_ledger_shape.py holds them to it).
_FIELDS = tuple(FileRecord.__dataclass_fields__)
T = TypeVar("T")


class IdempotencyKeyTaken(Exception):
    """Another request inserted a file with this owner's Idempotency-Key first."""


class Ledger:
    """The SQL side of every use case: one statement, one thread hop per call."""

    def __init__(self, engine: Engine) -> None:
        self._engine = engine

    async def insert(self, record: FileRecord) -> None:
        """Add a new file; IdempotencyKeyTaken when its key lost a race."""
        values = {field: getattr(record, field) for field in _FIELDS}
        try:
            await self._execute(_INSERT, values)
        except IntegrityError:
            if record.idempotency_key is None:
                raise
            raise IdempotencyKeyTaken from None

    async def get(self, file_id: uuid.UUID, owner: str | None) -> FileRecord | None:
        """The file if it exists, is not deleted and (unless owner is None) is owner's."""
        if owner is None:
            return await self._one(_GET_ANY, {"id": file_id})
        return await self._one(_GET_OWNED, {"id": file_id, "owner": owner})

    async def find_by_idempotency_key(self, owner: str, key: str) -> FileRecord | None:
        """The owner's file created with this Idempotency-Key, in any status."""
        return await self._one(_BY_IDEMPOTENCY_KEY, {"owner": owner, "key": key})

    async def release_idempotency_key(self, owner: str, key: str, older_than: datetime) -> None:
        """Free a key whose replay window has passed, so it can name a new file."""
        params = {"owner": owner, "key": key, "older_than": older_than}
        await self._execute(_RELEASE_IDEMPOTENCY_KEY, params)

    async def transition(
        self,
        file_id: uuid.UUID,
        owner: str | None,
        *,
        from_status: FileStatus | Collection[FileStatus],
        to_status: FileStatus,
        **values: Any,
    ) -> FileRecord | None:
        """Compare-and-set the status; the updated file, or None if it was not in from_status."""
        allowed = [from_status] if isinstance(from_status, FileStatus) else list(from_status)
        clauses = [_c.id == file_id, _c.status.in_(allowed)]
        if owner is not None:
            clauses.append(_c.owner_id == owner)
        statement = (
            update(files_table)
            .where(*clauses)
            .values(status=to_status, **values)
            .returning(*files_table.c)
        )
        return await self._one(statement, {})

    async def mark_purged(self, file_id: uuid.UUID, when: datetime) -> None:
        """Record that the store confirmed the object's removal."""
        await self._execute(_MARK_PURGED, {"file_id": file_id, "purged": when})

    async def list(
        self, owner: str | None, *, limit: int, before: uuid.UUID | None
    ) -> list[FileRecord]:
        """Visible files, newest first (UUIDv7 order), strictly older than `before`."""
        query = select(files_table).where(_VISIBLE)
        if owner is not None:
            query = query.where(_c.owner_id == owner)
        if before is not None:
            query = query.where(_c.id < before)
        query = query.order_by(_c.id.desc()).limit(limit)

        def work() -> list[FileRecord]:
            with self._engine.connect() as conn:
                return [FileRecord(*row) for row in conn.execute(query)]

        return await self._run(work)

    async def ping(self) -> None:
        """Raise unless the database answers a trivial query."""
        await self._execute(text("SELECT 1"), {})

    async def dispose(self) -> None:
        """Close every pooled connection."""
        await anyio.to_thread.run_sync(self._engine.dispose)

    async def _one(self, statement: Executable, params: dict[str, Any]) -> FileRecord | None:
        def work() -> FileRecord | None:
            with self._engine.connect() as conn:
                row = conn.execute(statement, params).first()
            return FileRecord(*row) if row is not None else None

        return await self._run(work)

    async def _execute(self, statement: Executable, params: dict[str, Any]) -> None:
        def work() -> None:
            with self._engine.connect() as conn:
                conn.execute(statement, params)

        await self._run(work)

    async def _run(self, work: Callable[[], T]) -> T:
        try:
            return await anyio.to_thread.run_sync(work)
        except IntegrityError:
            raise
        except DBAPIError as exc:
            # Connection refused, dropped or timed out: the dependency failed, not the client.
            log.warning("database call failed: %s", type(exc.orig).__name__)
            raise DatabaseUnavailable() from None
