"""The transactional outbox (issue 14, item 1): every status change that backends hear of
writes its event in the same transaction, on SQLite and PostgreSQL; a change whose event
cannot be written does not happen."""

from __future__ import annotations

import contextlib
import json
import uuid
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from typing import Any

import httpx
import pytest
from sqlalchemy import select, text

from app.config import Settings
from app.lifespan import open_use_cases
from app.models import FileStatus, events_table
from tests.integration.test_reaper import _age, _stale
from tests.support import Api, new_sub, sql_engine

BODY = {"filename": "a.txt", "content_type": "text/plain", "size": 5}


def _events(settings: Settings, owner: str) -> list[dict[str, Any]]:
    engine = sql_engine(settings.database_url)
    try:
        with engine.connect() as conn:
            rows = conn.execute(
                select(events_table)
                .where(events_table.c.owner_id == owner)
                .order_by(events_table.c.seq)
            ).all()
    finally:
        engine.dispose()
    return [{**row._asdict(), "body": json.loads(row.payload)} for row in rows]


async def test_each_announced_change_writes_one_event_with_the_file_as_it_was(
    api: Api, s3_http: httpx.AsyncClient
) -> None:
    owner = new_sub()
    kept, _ = await api.upload(s3_http, owner, b"hello", content_type="text/plain")
    assert _events(api.settings, owner) == []  # a pending upload is not announced
    assert (await api.complete(owner, kept["id"])).status_code == 200
    # declared a PNG, sent text: the first bytes give it away
    wrong, _ = await api.upload(s3_http, owner, b"hello", content_type="image/png")
    assert (await api.complete(owner, wrong["id"])).json()["code"] == "upload_rejected"
    deleted = await api.client.delete(f"/files/{kept['id']}", headers=api.auth(owner))
    assert deleted.status_code == 204

    events = _events(api.settings, owner)
    assert [(e["type"], str(e["file_id"])) for e in events] == [
        ("file.available", kept["id"]),
        ("file.rejected", wrong["id"]),
        ("file.deleted", kept["id"]),
    ]
    available, rejected, gone = (e["body"] for e in events)
    assert available["type"] == "file.available"
    assert available["id"] == str(events[0]["id"])
    assert available["data"]["owner"] == owner
    assert available["data"]["file"]["status"] == "available"
    assert available["data"]["file"]["completed_at"] is not None
    assert available["data"]["file"]["filename"] == kept["filename"]
    assert rejected["data"]["reason"] == "content_mismatch"
    assert rejected["data"]["file"]["status"] == "rejected"
    assert gone["data"]["file"]["status"] == "deleted"
    assert all(e["body"]["timestamp"].endswith("Z") for e in events)
    ids = [uuid.UUID(e["body"]["id"]) for e in events]
    assert ids == sorted(ids)  # UUIDv7: time-ordered, like seq
    assert [e["seq"] for e in events] == sorted(e["seq"] for e in events)


async def test_a_replayed_create_and_an_abandoned_upload_are_announced_as_they_are(
    api: Api,
) -> None:
    owner = new_sub()
    key = {"Idempotency-Key": "outbox-replay"}
    first = await api.create(owner, BODY, key)
    again = await api.create(owner, BODY, key)
    assert (first.status_code, again.status_code) == (201, 200)
    assert _events(api.settings, owner) == []  # re-signed, still pending: nothing to say
    file_id = first.json()["file"]["id"]
    abandoned = await api.client.delete(f"/uploads/{file_id}", headers=api.auth(owner))
    assert abandoned.status_code == 204
    events = _events(api.settings, owner)
    assert [e["type"] for e in events] == ["file.deleted"]
    assert events[0]["body"]["data"]["file"]["completed_at"] is None


async def test_the_reaper_announces_each_upload_it_expires(
    api: Api, s3_http: httpx.AsyncClient
) -> None:
    owner = new_sub()
    stale = [(await api.create(owner, BODY)).json()["file"]["id"] for _ in range(3)]
    for file_id in stale:
        _age(api.settings, file_id)
    async with open_use_cases(_stale(api.settings)) as (_, use_cases):
        await use_cases.reaper.reap()
    events = _events(api.settings, owner)
    assert sorted(str(e["file_id"]) for e in events) == sorted(stale)
    assert {e["type"] for e in events} == {"upload.expired"}
    assert {e["body"]["data"]["file"]["status"] for e in events} == {"expired"}


@contextlib.contextmanager
def _event_writes_fail(settings: Settings) -> Iterator[None]:
    """Make every insert into the outbox fail inside the database, as a full disk or a
    broken constraint would."""
    engine = sql_engine(settings.database_url)
    postgres = engine.dialect.name == "postgresql"
    with engine.begin() as conn:
        if postgres:
            conn.execute(
                text(
                    "CREATE FUNCTION s3gate_test_refuse() RETURNS trigger AS $$ BEGIN "
                    "RAISE EXCEPTION 'injected failure'; END $$ LANGUAGE plpgsql"
                )
            )
            conn.execute(
                text(
                    "CREATE TRIGGER s3gate_test_refuse BEFORE INSERT ON events "
                    "FOR EACH ROW EXECUTE FUNCTION s3gate_test_refuse()"
                )
            )
        else:
            conn.execute(
                text(
                    "CREATE TRIGGER s3gate_test_refuse BEFORE INSERT ON events "
                    "BEGIN SELECT RAISE(ABORT, 'injected failure'); END"
                )
            )
    try:
        yield
    finally:
        with engine.begin() as conn:
            conn.execute(
                text("DROP TRIGGER s3gate_test_refuse" + (" ON events" if postgres else ""))
            )
            if postgres:
                conn.execute(text("DROP FUNCTION s3gate_test_refuse()"))
        engine.dispose()


async def test_a_change_whose_event_cannot_be_written_does_not_happen(api: Api) -> None:
    owner = new_sub()
    file_id = uuid.UUID((await api.create(owner, BODY)).json()["file"]["id"])
    async with open_use_cases(api.settings) as (ledger, _):
        with _event_writes_fail(api.settings), pytest.raises(Exception, match="injected"):
            await ledger.transition(
                file_id,
                owner,
                from_status=FileStatus.PENDING,
                to_status=FileStatus.DELETED,
                deleted_at=datetime.now(UTC),
            )
        record = await ledger.get(file_id, owner)
        assert record is not None
        assert record.status == FileStatus.PENDING
        assert _events(api.settings, owner) == []
        # the same change goes through once events can be written again
        moved = await ledger.transition(
            file_id,
            owner,
            from_status=FileStatus.PENDING,
            to_status=FileStatus.DELETED,
            deleted_at=datetime.now(UTC),
        )
        assert moved is not None
        assert moved.status == FileStatus.DELETED
    assert [e["type"] for e in _events(api.settings, owner)] == ["file.deleted"]


# --- the feed (item 3) ---------------------------------------------------------------------


async def _read(api: Api, sub: str, *, admin: bool = False, **params: Any) -> dict[str, Any]:
    answer = await api.client.get("/events", params=params, headers=api.auth(sub, admin=admin))
    assert answer.status_code == 200, answer.text
    assert answer.headers["content-type"] == "application/json"
    page: dict[str, Any] = answer.json()
    return page


async def test_the_feed_shows_owners_their_own_events_and_admins_everyones(api: Api) -> None:
    alice, bob = new_sub(), new_sub()
    ids = {}
    for owner in (alice, bob, alice):
        file_id = (await api.create(owner, BODY)).json()["file"]["id"]
        await api.client.delete(f"/uploads/{file_id}", headers=api.auth(owner))
        ids.setdefault(owner, []).append(file_id)

    mine = await _read(api, alice)
    assert [e["data"]["file"]["id"] for e in mine["items"]] == ids[alice]
    assert {e["data"]["owner"] for e in mine["items"]} == {alice}
    assert [e["data"]["file"]["id"] for e in (await _read(api, bob))["items"]] == ids[bob]
    everyone = await _read(api, "ops", admin=True)
    seen = [e["data"]["file"]["id"] for e in everyone["items"]]
    assert [i for i in seen if i in ids[alice] + ids[bob]] == [
        ids[alice][0],
        ids[bob][0],
        ids[alice][1],
    ]
    # the items are the stored events, byte for byte the webhook bodies
    assert mine["items"][0] == _events(api.settings, alice)[0]["body"]


async def test_the_cursor_pages_in_commit_order_and_waits_at_the_end(api: Api) -> None:
    owner = new_sub()
    made = []
    for _ in range(5):
        file_id = (await api.create(owner, BODY)).json()["file"]["id"]
        await api.client.delete(f"/uploads/{file_id}", headers=api.auth(owner))
        made.append(file_id)
    first = await _read(api, owner, limit=2)
    second = await _read(api, owner, limit=2, after=first["next_cursor"])
    third = await _read(api, owner, limit=2, after=second["next_cursor"])
    pages = [first, second, third]
    assert [e["data"]["file"]["id"] for p in pages for e in p["items"]] == made
    end = await _read(api, owner, after=third["next_cursor"])
    assert end == {"items": [], "next_cursor": third["next_cursor"]}  # store it, poll again
    later = (await api.create(owner, BODY)).json()["file"]["id"]
    await api.client.delete(f"/uploads/{later}", headers=api.auth(owner))
    news = await _read(api, owner, after=end["next_cursor"])
    assert [e["data"]["file"]["id"] for e in news["items"]] == [later]


@pytest.mark.parametrize("after", ["!!!", "AAAA", "A" * 33, "AAAAAAAAAAAAAAAAAAAAAA"])
async def test_a_broken_cursor_is_a_422_not_a_500(api: Api, after: str) -> None:
    answer = await api.client.get("/events", params={"after": after}, headers=api.auth("x"))
    assert answer.status_code == 422
    assert answer.headers["content-type"] == "application/problem+json"
    assert answer.json()["code"] == "validation_error"


async def test_the_feed_needs_a_token(api: Api) -> None:
    answer = await api.client.get("/events")
    assert answer.status_code == 401
    assert answer.json()["code"] == "missing_token"


async def test_the_reaper_prunes_events_past_their_retention(api: Api) -> None:
    owner = new_sub()
    file_id = (await api.create(owner, BODY)).json()["file"]["id"]
    await api.client.delete(f"/uploads/{file_id}", headers=api.auth(owner))
    engine = sql_engine(api.settings.database_url)
    try:
        with engine.begin() as conn:
            conn.execute(
                events_table.update()
                .where(events_table.c.owner_id == owner)
                .values(created_at=datetime.now(UTC) - timedelta(days=31))
            )
    finally:
        engine.dispose()
    keep = (await api.create(owner, BODY)).json()["file"]["id"]
    await api.client.delete(f"/uploads/{keep}", headers=api.auth(owner))
    async with open_use_cases(api.settings) as (_, use_cases):
        await use_cases.reaper.reap()
    assert [str(e["file_id"]) for e in _events(api.settings, owner)] == [keep]
