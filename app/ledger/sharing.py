"""The sharing tables: grants, share links and the access history (one row per URL issued).

Who may read a file is decided with the file's own read (Ledger.accessible: owner OR a live
grant, in one statement); this room writes and lists the grants and links themselves, counts
a link's uses, and keeps the history. A grant or link change writes its event in the same
transaction (Ledger.event_writes), as a status change does.
"""

from __future__ import annotations

import dataclasses
import uuid
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from sqlalchemy import ClauseElement, bindparam, literal, or_, select, update

from app.events import NewEvent
from app.ledger.base import SqlRoom, converted, timed
from app.ledger.driver import Driver, DuplicateKey, Params, Row
from app.ledger.rows import result_converters
from app.models import FileStatus, access_table, files_table, grants_table, links_table

EventWrites = Callable[[Sequence[NewEvent]], list[tuple[str, Params]]]


@dataclass(frozen=True, slots=True)
class Grant:
    id: uuid.UUID
    file_id: uuid.UUID
    subject: str | None
    group_name: str | None
    permission: str
    created_by: str
    created_at: datetime
    expires_at: datetime | None


@dataclass(frozen=True, slots=True)
class Link:
    id: uuid.UUID
    file_id: uuid.UUID
    token_hash: str
    created_by: str
    created_at: datetime
    expires_at: datetime
    max_downloads: int | None
    downloads: int
    revoked_at: datetime | None


@dataclass(frozen=True, slots=True)
class AccessEntry:
    """One URL issued: to whom (a token's sub, or a share link), for what, until when."""

    seq: int
    file_id: uuid.UUID
    action: str
    actor_sub: str | None
    link_id: uuid.UUID | None
    client_address: str | None
    issued_at: datetime
    expires_at: datetime
    part_number: int | None


ACCESS_COLUMNS = tuple(column.name for column in access_table.c if column.name != "seq")

_g = grants_table.c
_l = links_table.c
_a = access_table.c
_f = files_table.c


def _update_grant(*, by_subject: bool) -> ClauseElement:
    """A second grant to the same grantee replaces the first's permission and expiry."""
    grantee = _g.subject if by_subject else _g.group_name
    return (
        update(grants_table)
        .where(_g.file_id == bindparam("file_id"), grantee == bindparam("grantee"))
        .values(
            permission=bindparam("permission"),
            expires_at=bindparam("expires_at", type_=_g.expires_at.type),
            created_by=bindparam("created_by"),
            created_at=bindparam("created_at", type_=_g.created_at.type),
        )
        .returning(*grants_table.c)
    )


_now = bindparam("now", type_=_l.expires_at.type)


def _of_deleted_file(file_id: Any) -> Any:
    """The row's file is deleted (a lookup by the files' primary key, not a scan of them)."""
    return (
        select(_f.id)
        .where(_f.id == file_id, _f.status == literal(str(FileStatus.DELETED)))
        .exists()
    )


SHARING_STATEMENTS: dict[str, ClauseElement] = {
    "insert_grant": grants_table.insert()
    .values({column.name: bindparam(column.name) for column in grants_table.c})
    .returning(*grants_table.c),
    "update_subject_grant": _update_grant(by_subject=True),
    "update_group_grant": _update_grant(by_subject=False),
    "grants_of": select(grants_table)
    .where(_g.file_id == bindparam("file_id"))
    .order_by(_g.created_at, _g.id),
    "delete_grant": grants_table.delete()
    .where(_g.id == bindparam("grant_id"), _g.file_id == bindparam("file_id"))
    .returning(*grants_table.c),
    "insert_link": links_table.insert()
    .values({column.name: bindparam(column.name) for column in links_table.c})
    .returning(*links_table.c),
    "links_of": select(links_table)
    .where(_l.file_id == bindparam("file_id"))
    .order_by(_l.id.desc()),
    "link": select(links_table).where(
        _l.id == bindparam("link_id"), _l.file_id == bindparam("file_id")
    ),
    "revoke_link": update(links_table)
    .where(
        _l.id == bindparam("link_id"),
        _l.file_id == bindparam("file_id"),
        _l.revoked_at.is_(None),
    )
    .values(revoked_at=_now)
    .returning(*links_table.c),
    # One use of a live link, counted in the statement that checks it: concurrent uses are
    # serialized on the row (PostgreSQL re-checks the WHERE on the row it waited for; SQLite
    # writes one statement at a time), so `max_downloads` is never exceeded.
    "use_link": update(links_table)
    .where(
        _l.token_hash == bindparam("token_hash"),
        _l.revoked_at.is_(None),
        _l.expires_at > _now,
        or_(_l.max_downloads.is_(None), _l.downloads < _l.max_downloads),
        select(_f.id)
        .where(_f.id == _l.file_id, _f.status == literal(str(FileStatus.AVAILABLE)))
        .exists(),
    )
    .values(downloads=_l.downloads + 1)
    .returning(*links_table.c),
    "insert_access": access_table.insert().values(
        {name: bindparam(name) for name in ACCESS_COLUMNS}
    ),
    "access_of": select(access_table)
    .where(_a.file_id == bindparam("file_id"))
    .order_by(_a.seq.desc())
    .limit(bindparam("limit")),
    "access_of_before": select(access_table)
    .where(_a.file_id == bindparam("file_id"), _a.seq < bindparam("before"))
    .order_by(_a.seq.desc())
    .limit(bindparam("limit")),
    "prune_access": access_table.delete().where(_a.issued_at < bindparam("before")),
    # Grants and links that ended before the retention, and any of a deleted file (it is
    # never visible again: they can give nothing).
    "prune_grants": grants_table.delete().where(
        or_(_g.expires_at < bindparam("before"), _of_deleted_file(_g.file_id))
    ),
    "prune_links": links_table.delete().where(
        or_(
            _l.expires_at < bindparam("before"),
            _l.revoked_at < bindparam("before"),
            _of_deleted_file(_l.file_id),
        )
    ),
}


class Sharing(SqlRoom):
    """Grants, share links and the access history, each call one statement or transaction."""

    def __init__(
        self, driver: Driver, event_writes: EventWrites, committed: Callable[[list[Row]], None]
    ) -> None:
        super().__init__(driver, SHARING_STATEMENTS)
        self._event_writes = event_writes
        self._committed = committed  # the dispatcher's wake-up, after events were committed
        self._grant_from_db = result_converters(driver.dialect, grants_table)
        self._link_from_db = result_converters(driver.dialect, links_table)
        self._access_from_db = result_converters(driver.dialect, access_table)

    @timed
    async def put_grant(self, grant: Grant, announce: Callable[[Grant], NewEvent]) -> Grant:
        """Add the grant, or update the file's grant to the same grantee; with its event."""
        then = self._announcing(self._grant, announce)
        try:
            rows = await self._write_announced(*self._bound("insert_grant", vars_of(grant)), then)
        except DuplicateKey:
            by_subject = grant.subject is not None
            params = {
                "file_id": grant.file_id,
                "grantee": grant.subject if by_subject else grant.group_name,
                "permission": grant.permission,
                "expires_at": grant.expires_at,
                "created_by": grant.created_by,
                "created_at": grant.created_at,
            }
            key = "update_subject_grant" if by_subject else "update_group_grant"
            rows = await self._write_announced(*self._bound(key, params), then)
            if not rows:  # revoked between the two statements: add it after all
                return await self.put_grant(grant, announce)
        return self._grant(rows[0])

    @timed
    async def grants_of(self, file_id: uuid.UUID) -> list[Grant]:
        """The file's grants, oldest first (expired ones too, until the reaper prunes them)."""
        rows = await self._driver.fetch_all(*self._bound("grants_of", {"file_id": file_id}))
        return [self._grant(row) for row in rows]

    @timed
    async def delete_grant(
        self, file_id: uuid.UUID, grant_id: uuid.UUID, announce: Callable[[Grant], NewEvent]
    ) -> Grant | None:
        """Revoke the grant (with its event); None when the file has no such grant."""
        params = {"file_id": file_id, "grant_id": grant_id}
        then = self._announcing(self._grant, announce)
        rows = await self._write_announced(*self._bound("delete_grant", params), then)
        return self._grant(rows[0]) if rows else None

    @timed
    async def insert_link(self, link: Link, announce: Callable[[Link], NewEvent]) -> Link:
        """Add the share link, with its event."""
        then = self._announcing(self._link, announce)
        rows = await self._write_announced(*self._bound("insert_link", vars_of(link)), then)
        return self._link(rows[0])

    @timed
    async def links_of(self, file_id: uuid.UUID) -> list[Link]:
        """The file's links, newest first (revoked and expired ones too)."""
        rows = await self._driver.fetch_all(*self._bound("links_of", {"file_id": file_id}))
        return [self._link(row) for row in rows]

    @timed
    async def link(self, file_id: uuid.UUID, link_id: uuid.UUID) -> Link | None:
        """One of the file's links."""
        row = await self._driver.fetch_one(
            *self._bound("link", {"file_id": file_id, "link_id": link_id})
        )
        return self._link(row) if row is not None else None

    @timed
    async def revoke_link(
        self,
        file_id: uuid.UUID,
        link_id: uuid.UUID,
        now: datetime,
        announce: Callable[[Link], NewEvent],
    ) -> Link | None:
        """Revoke a live link (with its event); None when it is unknown or already revoked."""
        params = {"file_id": file_id, "link_id": link_id, "now": now}
        then = self._announcing(self._link, announce)
        rows = await self._write_announced(*self._bound("revoke_link", params), then)
        return self._link(rows[0]) if rows else None

    @timed
    async def use_link(self, token_hash: str, now: datetime) -> Link | None:
        """Count one use of the live link with this token hash; None when there is none (unknown,
        revoked, expired, used up, or its file is not available)."""
        params = {"token_hash": token_hash, "now": now}
        row = await self._driver.fetch_one(*self._bound("use_link", params))
        return self._link(row) if row is not None else None

    @timed
    async def record_access(self, entries: Sequence[dict[str, Any]]) -> None:
        """Add access-history rows (ACCESS_COLUMNS each), in one transaction."""
        if not entries:
            return
        statement = self._compiled["insert_access"]
        await self._driver.execute_many(
            statement.sql, [self._bind(statement, entry) for entry in entries]
        )

    @timed
    async def access_of(
        self, file_id: uuid.UUID, *, limit: int, before: int | None
    ) -> list[AccessEntry]:
        """The file's access history, newest first, strictly before the `before` seq."""
        key = "access_of" if before is None else "access_of_before"
        params = {"file_id": file_id, "limit": limit, "before": before}
        rows = await self._driver.fetch_all(*self._bound(key, params))
        return [AccessEntry(*converted(row, self._access_from_db)) for row in rows]

    @timed
    async def prune(self, before: datetime) -> None:
        """Forget history older than `before`, and grants and links that ended before it."""
        for key in ("prune_access", "prune_grants", "prune_links"):
            await self._driver.execute(*self._bound(key, {"before": before}))

    async def _write_announced(
        self, sql: str, params: Params, then: Callable[[list[Row]], list[tuple[str, Params]]]
    ) -> list[Row]:
        rows = await self._driver.write_with(sql, params, then)
        self._committed(rows)
        return rows

    def _announcing(
        self, record: Callable[[Row], Any], announce: Callable[[Any], NewEvent]
    ) -> Callable[[list[Row]], list[tuple[str, Params]]]:
        return lambda rows: self._event_writes([announce(record(row)) for row in rows])

    def _grant(self, row: Row) -> Grant:
        return Grant(*converted(row, self._grant_from_db))

    def _link(self, row: Row) -> Link:
        return Link(*converted(row, self._link_from_db))


def vars_of(record: Grant | Link) -> dict[str, Any]:
    """A record as an insert's parameters, named after its columns."""
    return {field.name: getattr(record, field.name) for field in dataclasses.fields(record)}
