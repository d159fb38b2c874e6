"""Multipart uploads against SeaweedFS: part URLs bound to exact lengths, resume from the
store's own state, server-side completion, whole-file checksum, abort and reaping."""

from __future__ import annotations

import hashlib
import logging
import os
import uuid
from datetime import UTC, datetime, timedelta
from typing import Any

import httpx
import pytest
from sqlalchemy import update

from app.devstack import EmbeddedS3
from app.lifespan import open_use_cases
from app.models import files_table
from tests.support import Api, new_sub, running_app, sha256_b64, sql_engine

MIB = 1024 * 1024


async def _create(api: Api, owner: str, data: bytes, **extra: Any) -> dict[str, Any]:
    body = {
        "filename": "big.bin",
        "content_type": "application/octet-stream",
        "size": len(data),
        "multipart": True,
        **extra,
    }
    return await api.created(owner, body)


async def _part_urls(api: Api, owner: str, file_id: str, numbers: list[int]) -> httpx.Response:
    return await api.client.post(
        f"/uploads/{file_id}/parts", json={"part_numbers": numbers}, headers=api.auth(owner)
    )


async def _send_parts(
    api: Api,
    s3_http: httpx.AsyncClient,
    owner: str,
    file_id: str,
    data: bytes,
    numbers: list[int],
    part_size: int,
) -> None:
    answer = await _part_urls(api, owner, file_id, numbers)
    assert answer.status_code == 200, answer.text
    for part in answer.json()["parts"]:
        start = (part["part_number"] - 1) * part_size
        chunk = data[start : start + part_size]
        put = await s3_http.put(part["url"], content=chunk, headers=part["headers"])
        assert put.status_code == 200, put.text


def _multipart_uploads(s3: EmbeddedS3, bucket: str, key_suffix: str) -> list[str]:
    listed = s3.client().list_multipart_uploads(Bucket=bucket)
    return [u["UploadId"] for u in listed.get("Uploads", []) if u["Key"].endswith(key_suffix)]


async def test_a_64_mib_file_uploads_in_parts_resumes_after_a_crash_and_downloads_intact(
    api: Api, s3_http: httpx.AsyncClient
) -> None:
    owner, data = new_sub(), os.urandom(64 * MIB)
    created = await _create(api, owner, data, checksum_sha256=sha256_b64(data))
    upload, file_id = created["upload"], created["file"]["id"]
    assert upload == {
        "method": "MULTIPART",
        "part_size": 16 * MIB,
        "part_count": 4,
        "expires_at": created["file"]["upload_expires_at"],
    }
    await _send_parts(api, s3_http, owner, file_id, data, [1, 2], upload["part_size"])
    # the client "crashes"; a new one asks the service what the store already holds
    held = await api.client.get(f"/uploads/{file_id}/parts", headers=api.auth(owner))
    assert held.json() == {
        "part_size": 16 * MIB,
        "part_count": 4,
        "parts": [{"part_number": 1, "size": 16 * MIB}, {"part_number": 2, "size": 16 * MIB}],
    }
    early = await api.complete(owner, file_id)
    assert early.json()["code"] == "upload_incomplete"
    await _send_parts(api, s3_http, owner, file_id, data, [3, 4], upload["part_size"])

    done = await api.complete(owner, file_id)
    assert done.status_code == 200, done.text
    assert done.json()["status"] == "available"
    link = await api.client.get(f"/downloads/{file_id}", headers=api.auth(owner))
    got = await s3_http.get(link.json()["url"])
    assert hashlib.sha256(got.content).digest() == hashlib.sha256(data).digest()


async def test_s3_refuses_a_part_of_the_wrong_length(api: Api, s3_http: httpx.AsyncClient) -> None:
    owner, data = new_sub(), os.urandom(12 * MIB)
    created = await _create(api, owner, data)
    assert created["upload"]["part_count"] == 1  # 12 MiB fits in one 16 MiB part
    part = (await _part_urls(api, owner, created["file"]["id"], [1])).json()["parts"][0]
    for wrong in (data + b"x", data[:-1]):
        put = await s3_http.put(part["url"], content=wrong, headers=part["headers"])
        assert put.status_code == 403
        assert "SignatureDoesNotMatch" in put.text


async def test_the_last_part_is_signed_for_its_shorter_length(
    api: Api, s3_http: httpx.AsyncClient
) -> None:
    owner, data = new_sub(), os.urandom(20 * MIB)
    created = await _create(api, owner, data)
    assert created["upload"]["part_count"] == 2
    await _send_parts(api, s3_http, owner, created["file"]["id"], data, [2, 1], 16 * MIB)
    done = await api.complete(owner, created["file"]["id"])
    assert done.json()["status"] == "available"


async def test_other_bytes_than_the_declared_checksum_are_rejected_at_completion(
    api: Api, s3_http: httpx.AsyncClient, s3_server: EmbeddedS3
) -> None:
    # S3 checks no whole-file SHA-256 for multipart objects: the service reads the object.
    owner, declared = new_sub(), os.urandom(6 * MIB)
    created = await _create(api, owner, declared, checksum_sha256=sha256_b64(declared))
    other = os.urandom(len(declared))
    await _send_parts(api, s3_http, owner, created["file"]["id"], other, [1], 16 * MIB)
    rejected = await api.complete(owner, created["file"]["id"])
    assert rejected.status_code == 422
    assert rejected.json()["code"] == "upload_rejected"
    gone = await api.client.get(f"/files/{created['file']['id']}", headers=api.auth(owner))
    assert gone.json()["status"] == "rejected"


async def test_files_above_the_threshold_always_upload_in_parts(api: Api) -> None:
    small = api.settings.model_copy(update={"multipart_threshold": 5 * MIB})
    async with running_app(small) as client:
        created = await client.post(
            "/uploads",
            json={"filename": "v.bin", "content_type": "video/mp4", "size": 6 * MIB},
            headers=api.auth(new_sub()),
        )
    assert created.json()["upload"]["method"] == "MULTIPART"


async def test_part_requests_are_validated(api: Api) -> None:
    owner = new_sub()
    created = await _create(api, owner, b"x" * 10)
    beyond = await _part_urls(api, owner, created["file"]["id"], [2])
    assert beyond.status_code == 422
    single = await api.create(owner, {"filename": "a.txt", "content_type": "text/plain", "size": 3})
    not_multipart = await _part_urls(api, owner, single.json()["file"]["id"], [1])
    assert not_multipart.json()["code"] == "not_multipart"
    listing = await api.client.get(
        f"/uploads/{single.json()['file']['id']}/parts", headers=api.auth(owner)
    )
    assert listing.json()["code"] == "not_multipart"
    other = await _part_urls(api, new_sub(), created["file"]["id"], [1])
    assert other.status_code == 404


async def test_abandoning_a_multipart_upload_aborts_it_in_the_store(
    api: Api, s3_http: httpx.AsyncClient, s3_server: EmbeddedS3
) -> None:
    owner, data = new_sub(), os.urandom(6 * MIB)
    created = await _create(api, owner, data)
    file_id = created["file"]["id"]
    await _send_parts(api, s3_http, owner, file_id, data, [1], 16 * MIB)
    assert _multipart_uploads(s3_server, api.settings.s3_bucket, file_id)
    assert (
        await api.client.delete(f"/uploads/{file_id}", headers=api.auth(owner))
    ).status_code == 204
    assert not _multipart_uploads(s3_server, api.settings.s3_bucket, file_id)


async def test_the_reaper_aborts_a_stale_multipart_upload(
    api: Api, s3_http: httpx.AsyncClient, s3_server: EmbeddedS3
) -> None:
    owner, data = new_sub(), os.urandom(6 * MIB)
    created = await _create(api, owner, data)
    file_id = created["file"]["id"]
    await _send_parts(api, s3_http, owner, file_id, data, [1], 16 * MIB)
    engine = sql_engine(api.settings.database_url)
    try:
        with engine.begin() as conn:  # the deadline passed long ago
            conn.execute(
                update(files_table)
                .where(files_table.c.id == uuid.UUID(file_id))
                .values(upload_expires_at=datetime.now(UTC) - timedelta(days=2))
            )
    finally:
        engine.dispose()
    async with open_use_cases(api.settings) as (_, use_cases):
        report = await use_cases.reaper.reap()
    assert report.expired >= 1
    assert not _multipart_uploads(s3_server, api.settings.s3_bucket, file_id)
    late = await _part_urls(api, owner, file_id, [1])
    assert late.json()["code"] == "upload_expired"


@pytest.mark.parametrize("size", [1, 5 * MIB, 16 * MIB, 16 * MIB + 1, 5 * 1024**4])
def test_part_plans_stay_within_s3_limits(size: int) -> None:
    from app.usecases.plans import part_plan, part_sizes

    part_size = part_plan(size, 16 * MIB)
    sizes = part_sizes(size, part_size)
    assert sum(sizes) == size
    assert len(sizes) <= 10_000
    assert all(5 * MIB <= s <= 5 * 1024**3 for s in sizes[:-1])
    assert 0 < sizes[-1] <= part_size


async def test_audit_log_accounts_for_the_plan_and_each_part_url(
    api: Api, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.INFO, logger="s3gate.audit")
    owner = new_sub()
    created = await _create(api, owner, os.urandom(1024))  # one part
    file_id = created["file"]["id"]
    assert (await _part_urls(api, owner, file_id, [1])).status_code == 200
    lines = [r for r in caplog.records if str(getattr(r, "fields", {}).get("file")) == file_id]
    # The plan carries no URL, so it is no "issued upload url"; the part URLs are.
    assert [line.getMessage() for line in lines] == [
        "created multipart upload",
        "issued part urls",
    ]
    assert [line.fields["parts"] for line in lines] == [1, 1]  # type: ignore[attr-defined]
