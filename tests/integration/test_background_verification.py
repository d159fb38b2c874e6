"""Background verification (issue 14, items 4 and 5): `complete` answers 202 `verifying` when
the rest needs the whole object (a multipart file's declared SHA-256, a malware scan); the
worker finishes it to available or rejected with its event; scans run on a real clamd."""

from __future__ import annotations

import uuid
from typing import Any

import httpx
import pytest

from app.config import Settings
from app.devstack import EmbeddedS3
from app.lifespan import open_use_cases
from devkit.clamd import Clamd
from devkit.ports import free_port
from tests.support import Api, new_sub, object_exists, running_app, sha256_b64

PART = 64 * 1024  # any size: one part


async def _multipart(
    api: Api, s3_http: httpx.AsyncClient, owner: str, data: bytes, declared: bytes | None = None
) -> str:
    """A multipart upload of `data` declaring the SHA-256 of `declared` (by default, of
    `data`), every part sent; the file's id."""
    body = {
        "filename": "big.bin",
        "content_type": "application/octet-stream",
        "size": len(data),
        "checksum_sha256": sha256_b64(data if declared is None else declared),
        "multipart": True,
    }
    created = await api.created(owner, body)
    plan = created["upload"]
    assert plan["method"] == "MULTIPART"
    file_id: str = created["file"]["id"]
    numbers = list(range(1, plan["part_count"] + 1))
    parts = await api.client.post(
        f"/uploads/{file_id}/parts", json={"part_numbers": numbers}, headers=api.auth(owner)
    )
    for part in parts.json()["parts"]:
        start = (part["part_number"] - 1) * plan["part_size"]
        chunk = data[start : start + plan["part_size"]]
        assert (await s3_http.put(part["url"], content=chunk, headers=part["headers"])).is_success
    return file_id


def _types(feed: httpx.Response, file_id: str) -> list[str]:
    return [e["type"] for e in feed.json()["items"] if e["data"]["file"]["id"] == file_id]


async def test_a_multipart_checksum_is_checked_in_the_background_once(
    api: Api, s3_http: httpx.AsyncClient
) -> None:
    owner = new_sub()
    file_id = await _multipart(api, s3_http, owner, b"m" * (PART + 1234))
    first = await api.complete(owner, file_id, wait=None)
    assert first.status_code == 202, first.text
    assert first.json()["status"] == "verifying"
    # While it verifies: the same 202, never a second read; no download.
    download = await api.client.get(f"/downloads/{file_id}", headers=api.auth(owner))
    if download.status_code != 200:  # the worker may already be done on a fast machine
        assert download.status_code == 409
        assert download.json()["code"] == "file_not_available"
    held = await api.complete(owner, file_id, wait=30)  # Prefer: wait=30
    assert held.status_code == 200, held.text
    assert held.json()["status"] == "available"
    feed = await api.client.get("/events", headers=api.auth(owner))
    assert _types(feed, file_id) == ["file.available"]


async def test_a_wrong_multipart_checksum_is_rejected_by_the_worker(
    api: Api, s3_http: httpx.AsyncClient
) -> None:
    owner = new_sub()
    data = b"w" * (PART + 10)
    file_id = await _multipart(api, s3_http, owner, data, declared=b"x" * len(data))
    rejected = await api.complete(owner, file_id, wait=30)
    assert rejected.status_code == 422
    assert rejected.json()["code"] == "upload_rejected"
    assert "SHA-256 differs" in rejected.json()["detail"]
    feed = await api.client.get("/events", headers=api.auth(owner))
    [event] = [e for e in feed.json()["items"] if e["data"]["file"]["id"] == file_id]
    assert (event["type"], event["data"]["reason"]) == ("file.rejected", "checksum_mismatch")


def _scanning(settings: Settings, scanner: str, **extra: Any) -> Settings:
    return settings.model_copy(update={"scanner": scanner, **extra})


async def _put(api: Api, s3_http: httpx.AsyncClient, owner: str, data: bytes) -> dict[str, Any]:
    file, _ = await api.upload(s3_http, owner, data, content_type="text/plain")
    return file


async def test_a_clean_upload_is_scanned_and_available(
    settings: Settings, s3_http: httpx.AsyncClient, clamd: Clamd
) -> None:
    scanning = _scanning(settings, clamd.tcp_url)
    async with running_app(scanning) as client:
        api, owner = Api(client, scanning), new_sub()
        file = await _put(api, s3_http, owner, b"just a text file\n")
        assert (await api.complete(owner, file["id"], wait=None)).status_code == 202
        done = await api.complete(owner, file["id"], wait=30)
        assert done.status_code == 200, done.text
        assert done.json()["status"] == "available"


async def test_malware_is_rejected_deleted_and_announced(
    settings: Settings, s3_http: httpx.AsyncClient, clamd: Clamd, s3_server: EmbeddedS3
) -> None:
    scanning = _scanning(settings, clamd.socket_url)  # over the unix socket
    async with running_app(scanning) as client:
        api, owner = Api(client, scanning), new_sub()
        file, upload = await api.upload(s3_http, owner, clamd.eicar, content_type="text/plain")
        rejected = await api.complete(owner, file["id"], wait=30)
        assert rejected.status_code == 422, rejected.text
        assert "malware" in rejected.json()["detail"]
        feed = await api.client.get("/events", headers=api.auth(owner))
        [event] = feed.json()["items"]
        assert (event["type"], event["data"]["reason"]) == ("file.rejected", "malware")
        download = await api.client.get(f"/downloads/{file['id']}", headers=api.auth(owner))
        assert download.status_code == 409
    key = upload["url"].split("?", 1)[0].split("/", 4)[4]
    assert not object_exists(s3_server, scanning.s3_bucket, key)


async def test_malware_goes_to_quarantine_when_asked(
    settings: Settings, s3_http: httpx.AsyncClient, clamd: Clamd, s3_server: EmbeddedS3
) -> None:
    scanning = _scanning(settings, clamd.tcp_url, scanner_quarantine_prefix="quarantine/")
    async with running_app(scanning) as client:
        api, owner = Api(client, scanning), new_sub()
        file, upload = await api.upload(s3_http, owner, clamd.eicar, content_type="text/plain")
        assert (await api.complete(owner, file["id"], wait=30)).status_code == 422
    key = upload["url"].split("?", 1)[0].split("/", 4)[4]
    assert not object_exists(s3_server, scanning.s3_bucket, key)
    assert object_exists(s3_server, scanning.s3_bucket, f"quarantine/{key}")


@pytest.mark.parametrize("fail_open", [False, True])
async def test_a_scanner_that_is_down_fails_closed_unless_told_otherwise(
    settings: Settings, s3_http: httpx.AsyncClient, fail_open: bool
) -> None:
    down = f"clamav://127.0.0.1:{free_port()}"  # nobody listens
    scanning = _scanning(settings, down, scanner_fail_open=fail_open, verify_in_process=False)
    async with running_app(scanning) as client:
        api, owner = Api(client, scanning), new_sub()
        file = await _put(api, s3_http, owner, b"text while the scanner is down\n")
        assert (await api.complete(owner, file["id"], wait=None)).status_code == 202
        async with open_use_cases(scanning) as (ledger, use_cases):
            report = await use_cases.verification.run_once()
            assert report.claimed == 1
            record = await ledger.get(uuid.UUID(file["id"]), owner)
            assert record is not None
            if fail_open:
                assert (report.finished, record.status) == (1, "available")
            else:
                # Stays verifying, and is not retried at once (its lease moved on).
                assert (report.retried, record.status) == (1, "verifying")
                assert (await use_cases.verification.run_once()).claimed == 0
        again = await api.complete(owner, file["id"], wait=None)
        assert again.status_code == (200 if fail_open else 202)


async def test_a_file_over_the_scan_limit_is_rejected_unless_fail_open(
    settings: Settings, s3_http: httpx.AsyncClient, clamd: Clamd
) -> None:
    scanning = _scanning(settings, clamd.tcp_url, scanner_max_bytes=10)
    async with running_app(scanning) as client:
        api, owner = Api(client, scanning), new_sub()
        file = await _put(api, s3_http, owner, b"more than ten bytes\n")
        rejected = await api.complete(owner, file["id"], wait=30)
        assert rejected.status_code == 422
        feed = await api.client.get("/events", headers=api.auth(owner))
        assert feed.json()["items"][0]["data"]["reason"] == "too_large_to_scan"
