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
    Select,
    and_,
    bindparam,
    exists,
    func,
    literal,
    or_,
    select,
    text,
    update,
)

from app.models import (
    DeliveryStatus,
    FileStatus,
    GrantPermission,
    deliveries_table,
    events_table,
    files_table,
    grants_table,
)

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
    held = tuple(
        literal(str(status))
        for status in (FileStatus.PENDING, FileStatus.VERIFYING, FileStatus.AVAILABLE)
    )
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


def _picked(rows: Select[Any], name: str) -> Any:
    """The ids a claim takes, as a CTE: evaluated once. As a plain `IN (subquery)`, PostgreSQL
    may rescan the subquery for each row of a semi-join, and with SKIP LOCKED each rescan
    takes another LIMIT's worth (measured: a claim of 4 updated 60 rows)."""
    return rows.cte(name).c.id


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
            select(
                _picked(
                    select(_c.id)
                    .where(
                        _c.status == literal(str(FileStatus.PENDING)),
                        _c.upload_expires_at < bindparam("cutoff"),
                    )
                    .order_by(_c.upload_expires_at)
                    .limit(bindparam("limit"))
                    .with_for_update(skip_locked=True),
                    "stale",
                )
            )
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
    "last_event_of_file": select(events_table)
    .where(_e.file_id == bindparam("file_id"))
    .order_by(_e.seq.desc())
    .limit(1),
    # An event leaves with its retention unless a delivery of it is still to be attempted
    # (the dispatcher was off for that long): it stays until delivered or given up.
    "prune_events": events_table.delete().where(
        _e.created_at < bindparam("before"),
        ~exists().where(
            deliveries_table.c.event_seq == _e.seq,
            deliveries_table.c.status == literal(str(DeliveryStatus.PENDING)),
        ),
    ),
    "prune_deliveries": deliveries_table.delete().where(
        deliveries_table.c.created_at < bindparam("before"),
        deliveries_table.c.status != literal(str(DeliveryStatus.PENDING)),
    ),
    # One completion at a time: the lease is taken only when free or run out.
    "claim_verification": update(files_table)
    .where(
        _c.id == bindparam("file_id"),
        _c.status == literal(str(FileStatus.PENDING)),
        or_(_c.verify_lease_until.is_(None), _c.verify_lease_until < bindparam("now")),
    )
    .values(verify_lease_until=bindparam("until"))
    .returning(*files_table.c),
    # The background worker's claim: verifying files whose lease is free or ran out (a worker
    # that died), oldest first; SKIP LOCKED as the reaper's.
    "claim_verifying": update(files_table)
    .where(
        _c.status == literal(str(FileStatus.VERIFYING)),
        or_(_c.verify_lease_until.is_(None), _c.verify_lease_until < bindparam("now")),
        _c.id.in_(
            select(
                _picked(
                    select(_c.id)
                    .where(
                        _c.status == literal(str(FileStatus.VERIFYING)),
                        or_(
                            _c.verify_lease_until.is_(None),
                            _c.verify_lease_until < bindparam("now"),
                        ),
                    )
                    .order_by(_c.id)
                    .limit(bindparam("limit"))
                    .with_for_update(skip_locked=True),
                    "unverified",
                )
            )
        ),
    )
    .values(verify_lease_until=bindparam("until"))
    .returning(*files_table.c),
    # Count part URLs against the upload's own budget, only while they fit in it.
    "charge_part_urls": update(files_table)
    .where(
        _c.id == bindparam("file_id"),
        _c.status == literal(str(FileStatus.PENDING)),
        _c.part_urls_signed + bindparam("count", type_=_c.part_urls_signed.type)
        <= bindparam("budget", type_=_c.part_urls_signed.type),
    )
    .values(part_urls_signed=_c.part_urls_signed + bindparam("count"))
    .returning(_c.id),
    # A file in any status, a deleted one's too (an abandoned upload's DELETE is answered
    # again), the owner's or (admins) anyone's.
    "get_owned_ended_too": select(files_table).where(
        _c.id == bindparam("file_id"), _c.owner_id == bindparam("owner")
    ),
    "get_any_ended_too": select(files_table).where(_c.id == bindparam("file_id")),
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


_d = deliveries_table.c
_PENDING_DELIVERY = literal(str(DeliveryStatus.PENDING))
_earlier = deliveries_table.alias("earlier")
_now = bindparam("now", type_=_d.created_at.type)
_lease_free = or_(_d.lease_until.is_(None), _d.lease_until < _now)


def _new_delivery(*, only_missing: bool) -> ClauseElement:
    """A delivery of the event `event_id` to `endpoint`, due now (with only_missing, unless
    that endpoint already has one)."""
    source = select(
        _e.seq,
        bindparam("endpoint", type_=_d.endpoint.type),
        _e.file_id,
        _PENDING_DELIVERY,
        literal(0),
        _now,
        _now,
    ).where(_e.id == bindparam("event_id", type_=_e.id.type))
    if only_missing:
        source = source.where(
            ~exists().where(_d.event_seq == _e.seq, _d.endpoint == bindparam("endpoint"))
        )
    columns = ["event_seq", "endpoint", "file_id", "status", "attempts", "next_attempt_at"]
    return deliveries_table.insert().from_select([*columns, "created_at"], source)


OUTBOX_STATEMENTS: dict[str, ClauseElement] = {
    "insert_delivery": _new_delivery(only_missing=False),
    "insert_missing_delivery": _new_delivery(only_missing=True),
    # Due deliveries, one per file and endpoint at a time (none while an earlier event of the
    # same file is still to be delivered there: in order per file), taken under a lease. On
    # PostgreSQL SKIP LOCKED lets dispatchers side by side take different rows, and the outer
    # test is the compare-and-set that a concurrent claim of the same row loses.
    "claim": update(deliveries_table)
    .where(
        _d.status == _PENDING_DELIVERY,
        _lease_free,
        _d.id.in_(
            select(
                _picked(
                    select(_d.id)
                    .where(
                        _d.status == _PENDING_DELIVERY,
                        _d.next_attempt_at <= _now,
                        _lease_free,
                        ~exists().where(
                            _earlier.c.endpoint == _d.endpoint,
                            _earlier.c.file_id == _d.file_id,
                            _earlier.c.event_seq < _d.event_seq,
                            _earlier.c.status == _PENDING_DELIVERY,
                        ),
                    )
                    .order_by(_d.event_seq)
                    .limit(bindparam("limit"))
                    .with_for_update(skip_locked=True, of=deliveries_table),
                    "due",
                )
            )
        ),
    )
    .values(lease_until=bindparam("until", type_=_d.lease_until.type))
    .returning(*deliveries_table.c),
    # An attempt's outcome, recorded only by the dispatcher that still holds the lease.
    "finish": update(deliveries_table)
    .where(_d.id == bindparam("delivery_id"), _d.lease_until == bindparam("held"))
    .values(
        status=bindparam("to_status"),
        attempts=_d.attempts + 1,
        next_attempt_at=bindparam("next_attempt_at", type_=_d.next_attempt_at.type),
        lease_until=None,
        last_status=bindparam("last_status"),
        last_error=bindparam("last_error"),
        delivered_at=bindparam("delivered_at", type_=_d.delivered_at.type),
    )
    .returning(_d.id),
    "event_by_seq": select(events_table).where(_e.seq == bindparam("seq")),
    "backlog": select(func.count(), func.min(_d.created_at)).where(_d.status == _PENDING_DELIVERY),
    # Replays: due again now, with a fresh schedule.
    "requeue_event": update(deliveries_table)
    .where(
        _d.event_seq == select(_e.seq).where(_e.id == bindparam("event_id")).scalar_subquery(),
        _lease_free,
    )
    .values(status=_PENDING_DELIVERY, attempts=0, next_attempt_at=_now, last_error=None)
    .returning(_d.id),
    "requeue_failed": update(deliveries_table)
    .where(_d.status == literal(str(DeliveryStatus.FAILED)))
    .values(status=_PENDING_DELIVERY, attempts=0, next_attempt_at=_now, last_error=None)
    .returning(_d.id),
    "failed": select(deliveries_table)
    .where(_d.status == literal(str(DeliveryStatus.FAILED)))
    .order_by(_d.event_seq)
    .limit(bindparam("limit")),
    "of_event": select(deliveries_table)
    .where(_d.event_seq == bindparam("seq"))
    .order_by(_d.endpoint),
}


_g = grants_table.c
# A file in a batch download: the ids are bound as id0..id{n-1}; shorter batches pad with NULL,
# which matches nothing, so one compiled statement serves every batch size.
BATCH_MAX_IDS = 100


def _grantee(groups: int) -> Any:
    """The grant names the caller: its sub, or one of its groups (bound as group0...)."""
    subject = _g.subject == bindparam("sub", type_=_g.subject.type)
    if not groups:
        return subject
    names = [bindparam(f"group{i}", type_=_g.group_name.type) for i in range(groups)]
    return or_(subject, _g.group_name.in_(names))


def _live_grant(groups: int, permission: GrantPermission) -> Any:
    """Conditions of a grant that gives the caller `permission` now (a `delete` grant reads too)."""
    allowed = [GrantPermission.READ, GrantPermission.DELETE]
    if permission is GrantPermission.DELETE:
        allowed = [GrantPermission.DELETE]
    return and_(
        _grantee(groups),
        or_(_g.expires_at.is_(None), _g.expires_at > bindparam("now", type_=_g.expires_at.type)),
        _g.permission.in_([literal(str(p)) for p in allowed]),
    )


def _accessible(groups: int, permission: GrantPermission) -> Any:
    """The caller owns the file, or a live grant reaches it: decided in the statement itself,
    so a revoked (deleted) or expired grant stops working with the next request."""
    granted = exists().where(_g.file_id == _c.id, _live_grant(groups, permission))
    return or_(_c.owner_id == bindparam("sub"), granted)


def accessible_file(groups: int, permission: GrantPermission) -> ClauseElement:
    """One visible file the caller may act on with `permission` (owner or live grant)."""
    return select(files_table).where(
        _c.id == bindparam("file_id"), _VISIBLE, _accessible(groups, permission)
    )


def accessible_batch(groups: int, *, scoped: bool) -> ClauseElement:
    """Up to BATCH_MAX_IDS visible files by id, those the caller may read (scoped), in one
    statement; scoped=False is the admin branch."""
    ids = [bindparam(f"id{i}", type_=_c.id.type) for i in range(BATCH_MAX_IDS)]
    query = select(files_table).where(_c.id.in_(ids), _VISIBLE)
    return query.where(_accessible(groups, GrantPermission.READ)) if scoped else query


def shared_page(groups: int, *, paged: bool) -> ClauseElement:
    """Visible files with a live grant to the caller, newest first; driven by the grants'
    (subject, file_id) and (group_name, file_id) indexes, not by a scan of every file."""
    granted = select(_g.file_id).where(_live_grant(groups, GrantPermission.READ))
    query = select(files_table).where(_c.id.in_(granted), _VISIBLE)
    if paged:
        query = query.where(_c.id < bindparam("before"))
    return query.order_by(_c.id.desc()).limit(bindparam("limit"))
