"""Per-owner quotas: refused before anything is handed out, never overshot by concurrency,
released as files leave the pending/available states."""

from __future__ import annotations

import asyncio
import logging
import time
from datetime import datetime
from typing import Any

import httpx
import pytest

from app.lifespan import open_use_cases
from tests.support import Api, new_sub, running_app


def _quota(api: Api, **limits: int) -> Any:
    # Rate limits off here: the point is what the quota admits under a burst.
    return api.settings.model_copy(update={"rate_limit_per_minute": 0, **limits})


def _body(size: int = 10, name: str = "a.txt") -> dict[str, Any]:
    return {"filename": name, "content_type": "text/plain", "size": size}


async def test_twenty_concurrent_creates_against_a_quota_of_five_admit_exactly_five(
    api: Api,
) -> None:
    owner = new_sub()
    async with running_app(_quota(api, quota_pending_uploads_per_owner=5)) as client:
        answers = await asyncio.gather(
            *(
                client.post("/uploads", json=_body(name=f"f{i}.txt"), headers=api.auth(owner))
                for i in range(20)
            )
        )
        listing = await client.get("/files?limit=50", headers=api.auth(owner))
    statuses = sorted(a.status_code for a in answers)
    assert statuses == [201] * 5 + [403] * 15
    refused = next(a for a in answers if a.status_code == 403)
    assert refused.json()["code"] == "quota_exceeded"
    assert "upload" not in refused.json()  # nothing signed is handed out
    assert len(listing.json()["items"]) == 5


async def test_concurrent_creates_never_overshoot_the_byte_quota(api: Api) -> None:
    owner = new_sub()
    async with running_app(_quota(api, quota_bytes_per_owner=1000)) as client:
        answers = await asyncio.gather(
            *(
                client.post("/uploads", json=_body(size=300), headers=api.auth(owner))
                for _ in range(12)
            )
        )
    assert sorted(a.status_code for a in answers) == [201] * 3 + [403] * 9


async def test_quota_is_released_when_a_deleted_or_abandoned_files_urls_have_run_out(
    api: Api, s3_http: httpx.AsyncClient
) -> None:
    owner = new_sub()
    settings = _quota(
        api,
        quota_bytes_per_owner=100,
        quota_pending_uploads_per_owner=1,
        upload_url_ttl_seconds=6,  # long enough for the steps below on a loaded machine
        completion_grace_seconds=0,
        store_clock_skew_seconds=0,
    )
    async with running_app(settings) as client:
        first = await client.post("/uploads", json=_body(size=60), headers=api.auth(owner))
        assert first.status_code == 201
        # one pending upload at a time
        blocked = await client.post("/uploads", json=_body(size=10), headers=api.auth(owner))
        assert blocked.json()["code"] == "quota_exceeded"
        upload = first.json()["upload"]
        await s3_http.put(upload["url"], content=b"x" * 60, headers=upload["headers"])
        file_id = first.json()["file"]["id"]
        done = await client.post(f"/uploads/{file_id}/complete", headers=api.auth(owner))
        assert done.json()["status"] == "available"
        # no longer pending, but its 60 bytes still count against the 100
        too_big = await client.post("/uploads", json=_body(size=50), headers=api.auth(owner))
        assert too_big.json()["code"] == "quota_exceeded"
        fits = await client.post("/uploads", json=_body(size=40), headers=api.auth(owner))
        assert fits.status_code == 201
        abandoned = fits.json()["file"]["id"]
        assert (
            await client.delete(f"/uploads/{abandoned}", headers=api.auth(owner))
        ).status_code == 204
        assert (
            await client.delete(f"/files/{file_id}", headers=api.auth(owner))
        ).status_code == 204
        # Their upload URLs could still store bytes: those bytes still count.
        held = await client.post("/uploads", json=_body(size=100), headers=api.auth(owner))
        assert held.json()["code"] == "quota_exceeded"
        last_url = datetime.fromisoformat(
            fits.json()["upload"]["expires_at"].replace("Z", "+00:00")
        )
        await asyncio.sleep(max(0.0, last_url.timestamp() + 2 - time.time()))  # + a margin
        async with open_use_cases(settings) as (_, use_cases):
            await use_cases.reaper.reap()
        again = await client.post("/uploads", json=_body(size=100), headers=api.auth(owner))
    assert again.status_code == 201


async def test_quotas_are_per_owner(api: Api) -> None:
    async with running_app(_quota(api, quota_pending_uploads_per_owner=1)) as client:
        first = await client.post("/uploads", json=_body(), headers=api.auth(new_sub()))
        second = await client.post("/uploads", json=_body(), headers=api.auth(new_sub()))
    assert (first.status_code, second.status_code) == (201, 201)


async def test_an_idempotent_replay_is_not_charged_twice(api: Api) -> None:
    owner, key = new_sub(), {"Idempotency-Key": "quota-replay"}
    async with running_app(_quota(api, quota_pending_uploads_per_owner=1)) as client:
        headers = {**api.auth(owner), **key}
        first = await client.post("/uploads", json=_body(), headers=headers)
        replay = await client.post("/uploads", json=_body(), headers=headers)
    assert (first.status_code, replay.status_code) == (201, 200)


async def test_only_urls_handed_out_are_in_the_audit_log(
    api: Api, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.INFO, logger="s3gate.audit")
    owner = new_sub()
    async with running_app(_quota(api, quota_pending_uploads_per_owner=2)) as client:
        answers = [
            await client.post("/uploads", json=_body(), headers=api.auth(owner)) for _ in range(4)
        ]
    issued = [r for r in caplog.records if r.getMessage().startswith("issued upload url")]
    assert [a.status_code for a in answers] == [201, 201, 403, 403]
    assert len(issued) == 2
