"""The reaper: stale uploads expire and their objects leave the bucket; concurrent reapers
never take the same row; deletes that met a store outage are finished later."""

from __future__ import annotations

import asyncio
import os
import uuid
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import httpx
from sqlalchemy import insert, select, update

from app.config import Settings
from app.devstack import EmbeddedS3
from app.lifespan import open_use_cases
from app.models import files_table
from tests.support import Api, new_sub, object_exists, run_s3gate, running_app, sql_engine

BODY = {"filename": "a.txt", "content_type": "text/plain", "size": 5}


def _stale(settings: Settings) -> Settings:
    return settings.model_copy(
        update={"completion_grace_seconds": 0, "store_clock_skew_seconds": 0}
    )


def _age(settings: Settings, file_id: str) -> None:
    """Move the file's upload deadline a minute into the past, in the ledger itself: these
    tests are about what the reaper does with ledger state, not about the store's expiry (a
    1 s URL raced the PUT on a loaded machine)."""
    engine = sql_engine(settings.database_url)
    try:
        with engine.begin() as conn:
            conn.execute(
                update(files_table)
                .where(files_table.c.id == uuid.UUID(file_id))
                .values(upload_expires_at=datetime.now(UTC) - timedelta(minutes=1))
            )
    finally:
        engine.dispose()


def _key(upload: dict[str, Any]) -> str:
    return str(upload["url"]).split("?", 1)[0].split("/", 4)[4]


async def _stale_upload_with_bytes(
    api: Api, s3_http: httpx.AsyncClient, owner: str
) -> tuple[str, str]:
    created = await api.create(owner, BODY)
    upload = created.json()["upload"]
    assert (
        await s3_http.put(upload["url"], content=b"hello", headers=upload["headers"])
    ).is_success
    _age(api.settings, created.json()["file"]["id"])
    return created.json()["file"]["id"], _key(upload)


async def test_a_stale_upload_expires_and_its_object_is_removed(
    api: Api, s3_http: httpx.AsyncClient, s3_server: EmbeddedS3
) -> None:
    owner = new_sub()
    file_id, key = await _stale_upload_with_bytes(api, s3_http, owner)
    fresh = (await api.create(owner, BODY)).json()["file"]["id"]

    async with open_use_cases(_stale(api.settings)) as (_, use_cases):
        first = await use_cases.reaper.reap()
        # a second pass finds this file done (counts are database-wide)
        await use_cases.reaper.reap()
    assert first.expired >= 1
    assert not object_exists(s3_server, api.settings.s3_bucket, key)
    stale = await api.client.get(f"/files/{file_id}", headers=api.auth(owner))
    assert stale.json()["status"] == "expired"
    late = await api.complete(owner, file_id)
    assert late.json()["code"] == "upload_expired"
    # the default settings still give the other upload its full 15 minutes
    kept = await api.client.get(f"/files/{fresh}", headers=api.auth(owner))
    assert kept.json()["status"] == "pending"


async def test_the_reaper_leaves_available_files_and_their_objects_alone(
    api: Api, s3_http: httpx.AsyncClient, s3_server: EmbeddedS3
) -> None:
    owner = new_sub()
    file, upload = await api.upload(s3_http, owner, b"keep me", content_type="text/plain")
    assert (await api.complete(owner, file["id"])).status_code == 200
    _age(api.settings, file["id"])  # its URL long dead: the reaper still keeps its object
    async with open_use_cases(_stale(api.settings)) as (_, use_cases):
        await use_cases.reaper.reap()
    assert object_exists(s3_server, api.settings.s3_bucket, _key(upload))
    kept = await api.client.get(f"/files/{file['id']}", headers=api.auth(owner))
    assert kept.json()["status"] == "available"


async def test_the_reaper_finishes_a_delete_that_met_a_store_outage(
    api: Api, s3_http: httpx.AsyncClient, s3_server: EmbeddedS3
) -> None:
    owner = new_sub()
    file_id, key = await _stale_upload_with_bytes(api, s3_http, owner)
    down = _stale(api.settings).model_copy(
        update={"s3_endpoint_url": "http://127.0.0.1:9", "storage_max_attempts": 1}
    )
    async with running_app(down) as client:
        assert (
            await client.delete(f"/files/{file_id}", headers=api.auth(owner))
        ).status_code == 204
    assert object_exists(s3_server, api.settings.s3_bucket, key)  # left behind

    _age(api.settings, file_id)  # its upload URL is dead: no request can store it again
    async with open_use_cases(_stale(api.settings)) as (_, use_cases):
        report = await use_cases.reaper.reap()
    assert report.purged >= 1
    assert not object_exists(s3_server, api.settings.s3_bucket, key)
    engine = sql_engine(api.settings.database_url)
    try:
        with engine.connect() as conn:
            purged = conn.execute(
                select(files_table.c.purged_at).where(files_table.c.id == uuid.UUID(file_id))
            ).scalar_one()
    finally:
        engine.dispose()
    assert purged is not None


async def test_concurrent_reapers_claim_every_stale_row_exactly_once(api: Api) -> None:
    past = datetime.now(UTC) - timedelta(hours=2)
    rows = [
        {
            "id": uuid.uuid4(),
            "owner_id": "reaped",
            "object_key": f"uploads/r/{uuid.uuid4()}",
            "filename": "f",
            "content_type": "text/plain",
            "size": 1,
            "checksum_sha256": None,
            "status": "pending",
            "idempotency_key": None,
            "request_hash": None,
            "created_at": past,
            "upload_expires_at": past,
            "completed_at": None,
            "deleted_at": None,
            "purged_at": None,
            "upload_method": "put",
        }
        for _ in range(60)
    ]
    engine = sql_engine(api.settings.database_url)
    try:
        with engine.begin() as conn:
            conn.execute(insert(files_table), rows)
    finally:
        engine.dispose()

    claimed: list[uuid.UUID] = []
    cutoff = datetime.now(UTC) - timedelta(hours=1)
    async with open_use_cases(api.settings) as (a, _), open_use_cases(api.settings) as (b, _):

        async def drain(ledger: Any) -> None:
            while batch := await ledger.expire_stale(cutoff, 3):
                claimed.extend(record.id for record in batch)

        await asyncio.gather(*(drain(ledger) for ledger in (a, b, a, b)))
    assert len(claimed) == len(set(claimed)) == len(rows)
    assert set(claimed) == {row["id"] for row in rows}


async def test_the_in_process_reaper_runs_on_its_interval(
    api: Api, s3_http: httpx.AsyncClient, s3_server: EmbeddedS3
) -> None:
    owner = new_sub()
    file_id, key = await _stale_upload_with_bytes(api, s3_http, owner)
    reaping = _stale(api.settings).model_copy(update={"reaper_interval_seconds": 1})
    async with running_app(reaping) as client:
        for _ in range(50):
            await asyncio.sleep(0.2)
            status = (await client.get(f"/files/{file_id}", headers=api.auth(owner))).json()
            if status["status"] == "expired" and not object_exists(
                s3_server, api.settings.s3_bucket, key
            ):
                break
        else:
            raise AssertionError(f"not reaped: {status}")


def test_reap_command_runs_one_pass(api: Api, tmp_path: Path) -> None:
    settings = api.settings
    env = {
        "PATH": "/usr/bin:/bin",
        "S3GATE_DATABASE_URL": settings.database_url,
        "S3GATE_S3_BUCKET": settings.s3_bucket,
        "S3GATE_S3_ENDPOINT_URL": settings.s3_endpoint_url or "",
        "S3GATE_S3_ADDRESSING_STYLE": "path",
        "S3GATE_JWT_SECRET": settings.jwt_secret.get_secret_value() if settings.jwt_secret else "",
        "AWS_ACCESS_KEY_ID": os.environ["AWS_ACCESS_KEY_ID"],
        "AWS_SECRET_ACCESS_KEY": os.environ["AWS_SECRET_ACCESS_KEY"],
    }
    result = run_s3gate("reap", "--batch-size", "50", env=env, cwd=tmp_path, timeout=60)
    assert result.returncode == 0, result.stderr
    assert result.stdout.startswith("expired=")


async def test_a_reaper_pass_expires_no_more_than_its_batch(api: Api) -> None:
    # The claim is a CTE: as `IN (subquery ... LIMIT n FOR UPDATE SKIP LOCKED)` PostgreSQL
    # may rescan the subquery and take more than n (a webhook claim of 4 took 60).
    owner = new_sub()
    stale = [(await api.create(owner, BODY)).json()["file"]["id"] for _ in range(7)]
    for file_id in stale:
        _age(api.settings, file_id)
    async with open_use_cases(_stale(api.settings)) as (_, use_cases):
        first = await use_cases.reaper.reap(batch_size=3)
        second = await use_cases.reaper.reap(batch_size=3)
        third = await use_cases.reaper.reap(batch_size=3)
    assert (first.expired, second.expired, third.expired) == (3, 3, 1)
