"""Ledger statements. Every query made for a caller carries the owner in its WHERE clause.

Statements are SQLAlchemy Core expressions with bound parameters, compiled once per dialect by
the Ledger. Each operation is one statement, atomic on its own: inserts, owner-scoped reads and
compare-and-set status updates.
"""

from __future__ import annotations

from collections.abc import Collection
from typing import Any

from sqlalchemy import (
    ClauseElement,
    ScalarSelect,
    and_,
    bindparam,
    func,
    literal,
    or_,
    select,
    text,
    update,
)

from app.models import FileStatus, events_table, files_table

_c = files_table.c
_VISIBLE = _c.status != FileStatus.DELETED
_ENDED = (FileStatus.DELETED, FileStatus.EXPIRED, FileStatus.REJECTED)
_COLUMNS = tuple(files_table.c.keys())
_e = events_table.c
EVENT_COLUMNS = tuple(column.name for column in events_table.c if column.name != "seq")
# PostgreSQL assigns `seq` when the INSERT runs, not at COMMIT: two transactions can commit in
# the other order, and a feed reader that saw the later seq first would skip the earlier one for
# good. Writers of events take this transaction lock first, so seq order is commit order. (One
# SQLite connection writes one transaction at a time: the order holds there by itself.)
EVENTS_LOCK_KEY = 0x5333_4741_5445_4556


def _usage(owner_param: str) -> tuple[ScalarSelect[Any], ScalarSelect[Any]]:
    """The owner's bytes held by pending and available files and by files whose object may
    still be (re)written through a live URL (not yet purged), and its pending uploads."""
    held = (literal(str(FileStatus.PENDING)), literal(str(FileStatus.AVAILABLE)))
    owner = bindparam(owner_param, type_=_c.owner_id.type)
    stored = (
        select(func.coalesce(func.sum(_c.size), 0))
        .where(_c.owner_id == owner, or_(_c.status.in_(held), _c.purged_at.is_(None)))
        .scalar_subquery()
    )
    pending = (
        select(func.count())
        .where(_c.owner_id == owner, _c.status == literal(str(FileStatus.PENDING)))
        .scalar_subquery()
    )
    return stored, pending


def _insert_within_quota() -> ClauseElement:
    stored, pending = _usage("owner_id")
    values = select(*(bindparam(name, type_=files_table.c[name].type) for name in _COLUMNS))
    values = values.where(
        stored + bindparam("size", type_=_c.size.type) <= bindparam("max_bytes"),
        pending < bindparam("max_pending"),
    )
    return files_table.insert().from_select(list(_COLUMNS), values).returning(_c.id)


def _select_visible(*, scoped: bool) -> ClauseElement:
    query = select(files_table).where(_c.id == bindparam("file_id"), _VISIBLE)
    return query.where(_c.owner_id == bindparam("owner")) if scoped else query


def _page(*, scoped: bool, paged: bool) -> ClauseElement:
    query = select(files_table).where(_VISIBLE)
    if scoped:
        query = query.where(_c.owner_id == bindparam("owner"))
    if paged:
        query = query.where(_c.id < bindparam("before"))
    return query.order_by(_c.id.desc()).limit(bindparam("limit"))


STATEMENTS: dict[str, ClauseElement] = {
    "insert": files_table.insert().values({name: bindparam(name) for name in _COLUMNS}),
    # Usage is read from the ledger itself (pending and available files), so every status
    # change releases quota with no counter to keep in step.
    "insert_within_quota": _insert_within_quota(),
    "usage": select(*_usage("owner")),
    "get_owned": _select_visible(scoped=True),
    "get_any": _select_visible(scoped=False),
    "by_idempotency_key": select(files_table).where(
        _c.owner_id == bindparam("owner"), _c.idempotency_key == bindparam("key")
    ),
    "release_idempotency_key": update(files_table)
    .where(
        _c.owner_id == bindparam("owner"),
        _c.idempotency_key == bindparam("key"),
        _c.created_at < bindparam("older_than"),
    )
    .values(idempotency_key=None, request_hash=None),
    "mark_purged": update(files_table)
    .where(_c.id == bindparam("file_id"))
    .values(purged_at=bindparam("purged")),
    "page_owned": _page(scoped=True, paged=False),
    "page_owned_before": _page(scoped=True, paged=True),
    "page_any": _page(scoped=False, paged=False),
    "page_any_before": _page(scoped=False, paged=True),
    "schema_revision": text("SELECT version_num FROM alembic_version"),
    # Claim stale pending uploads: one statement, and on PostgreSQL SKIP LOCKED, so reapers
    # running side by side never take the same row; the outer status test is the CAS that a
    # concurrent completion loses or wins.
    "expire_stale": update(files_table)
    .where(
        _c.status == literal(str(FileStatus.PENDING)),
        _c.id.in_(
            select(_c.id)
            .where(
                _c.status == literal(str(FileStatus.PENDING)),
                _c.upload_expires_at < bindparam("cutoff"),
            )
            .order_by(_c.upload_expires_at)
            .limit(bindparam("limit"))
            .with_for_update(skip_locked=True)
            .scalar_subquery()
        ),
    )
    .values(status=literal(str(FileStatus.EXPIRED)))
    .returning(*files_table.c),
    # Files with an object to remove that is not yet confirmed gone for good: deleted, expired
    # and rejected files (their object), and available staged uploads (their upload_key copy).
    "unpurged": select(files_table)
    .where(
        _c.purged_at.is_(None),
        or_(
            _c.status.in_([literal(str(status)) for status in _ENDED]),
            and_(_c.status == literal(str(FileStatus.AVAILABLE)), _c.upload_key.is_not(None)),
        ),
    )
    .order_by(_c.id)
    .limit(bindparam("limit")),
    "insert_event": events_table.insert().values({name: bindparam(name) for name in EVENT_COLUMNS}),
    "lock_events": text("SELECT pg_advisory_xact_lock(:key)").bindparams(key=EVENTS_LOCK_KEY),
    "events_any": select(events_table)
    .where(_e.seq > bindparam("after"))
    .order_by(_e.seq)
    .limit(bindparam("limit")),
    "events_owned": select(events_table)
    .where(_e.owner_id == bindparam("owner"), _e.seq > bindparam("after"))
    .order_by(_e.seq)
    .limit(bindparam("limit")),
    "event_by_id": select(events_table).where(_e.id == bindparam("event_id")),
    "prune_events": events_table.delete().where(_e.created_at < bindparam("before")),
    # One completion at a time: the lease is taken only when free or run out.
    "claim_verification": update(files_table)
    .where(
        _c.id == bindparam("file_id"),
        _c.status == literal(str(FileStatus.PENDING)),
        or_(_c.verify_lease_until.is_(None), _c.verify_lease_until < bindparam("now")),
    )
    .values(verify_lease_until=bindparam("until"))
    .returning(*files_table.c),
    # Renew or release a lease, only while it is still the one this completion holds.
    "move_lease": update(files_table)
    .where(_c.id == bindparam("file_id"), _c.verify_lease_until == bindparam("held"))
    .values(verify_lease_until=bindparam("until"))
    .returning(_c.id),
}


def transition(
    allowed: Collection[FileStatus], *, scoped: bool, columns: Collection[str]
) -> ClauseElement:
    """Compare-and-set: move a file in one of the `allowed` statuses to `to_status`, setting
    `columns` too; it returns the updated row."""
    statement = (
        update(files_table)
        .where(
            _c.id == bindparam("file_id"),
            _c.status.in_([literal(str(status)) for status in allowed]),
        )
        .values(status=bindparam("to_status"), **{k: bindparam(k) for k in columns})
        .returning(*files_table.c)
    )
    return statement.where(_c.owner_id == bindparam("owner")) if scoped else statement
