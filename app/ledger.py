"""Ledger queries. Every query made for a caller carries the owner in its WHERE clause.

`owner=None` means "any owner" and is passed only on the explicit admin branch in service.py.
Plain Core statements: the request path needs rows, not an identity map or unit of work.
"""

from __future__ import annotations

import uuid
from collections.abc import Collection
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from sqlalchemy import ColumnElement, and_, select, text, update
from sqlalchemy.exc import IntegrityError
from sqlalchemy.ext.asyncio import AsyncEngine

from app.models import FileStatus, files_table

_c = files_table.c


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


class IdempotencyKeyTaken(Exception):
    """Another request inserted a file with this owner's Idempotency-Key first."""


def _visible(file_id: uuid.UUID, owner: str | None) -> ColumnElement[bool]:
    clauses = [_c.id == file_id, _c.status != FileStatus.DELETED]
    if owner is not None:
        clauses.append(_c.owner_id == owner)
    return and_(*clauses)


class Ledger:
    """The SQL side of every use case; one short transaction per call."""

    def __init__(self, engine: AsyncEngine) -> None:
        self._engine = engine

    async def insert(self, record: FileRecord) -> None:
        """Add a new file; IdempotencyKeyTaken when its key lost a race."""
        values: dict[str, Any] = {
            field: getattr(record, field) for field in FileRecord.__dataclass_fields__
        }
        try:
            async with self._engine.begin() as conn:
                await conn.execute(files_table.insert().values(values))
        except IntegrityError:
            if record.idempotency_key is None:
                raise
            raise IdempotencyKeyTaken from None

    async def get(self, file_id: uuid.UUID, owner: str | None) -> FileRecord | None:
        """The file if it exists, is not deleted and (unless owner is None) is owner's."""
        async with self._engine.connect() as conn:
            row = (await conn.execute(select(files_table).where(_visible(file_id, owner)))).first()
        return FileRecord(**row._mapping) if row is not None else None

    async def find_by_idempotency_key(self, owner: str, key: str) -> FileRecord | None:
        """The owner's file created with this Idempotency-Key, in any status."""
        query = select(files_table).where(_c.owner_id == owner, _c.idempotency_key == key)
        async with self._engine.connect() as conn:
            row = (await conn.execute(query)).first()
        return FileRecord(**row._mapping) if row is not None else None

    async def release_idempotency_key(self, owner: str, key: str, older_than: datetime) -> None:
        """Free a key whose replay window has passed, so it can name a new file."""
        statement = (
            update(files_table)
            .where(_c.owner_id == owner, _c.idempotency_key == key, _c.created_at < older_than)
            .values(idempotency_key=None, request_hash=None)
        )
        async with self._engine.begin() as conn:
            await conn.execute(statement)

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
        async with self._engine.begin() as conn:
            row = (await conn.execute(statement)).first()
        return FileRecord(**row._mapping) if row is not None else None

    async def mark_purged(self, file_id: uuid.UUID, when: datetime) -> None:
        """Record that the store confirmed the object's removal."""
        async with self._engine.begin() as conn:
            await conn.execute(update(files_table).where(_c.id == file_id).values(purged_at=when))

    async def list(
        self, owner: str | None, *, limit: int, before: uuid.UUID | None
    ) -> list[FileRecord]:
        """Visible files, newest first (UUIDv7 order), strictly older than `before`."""
        query = select(files_table).where(_c.status != FileStatus.DELETED)
        if owner is not None:
            query = query.where(_c.owner_id == owner)
        if before is not None:
            query = query.where(_c.id < before)
        query = query.order_by(_c.id.desc()).limit(limit)
        async with self._engine.connect() as conn:
            rows = (await conn.execute(query)).all()
        return [FileRecord(**row._mapping) for row in rows]

    async def ping(self) -> None:
        """Raise unless the database answers a trivial query."""
        async with self._engine.connect() as conn:
            await conn.execute(text("SELECT 1"))
