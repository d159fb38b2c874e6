"""Rate limits on the routes that issue URLs: 429 with Retry-After, shared across replicas
through Redis, and a documented choice when Redis is down."""

from __future__ import annotations

import logging
from typing import Any

import httpx
import pytest

from tests.support import Api, new_sub, running_app

BODY = {"filename": "a.txt", "content_type": "text/plain", "size": 3}


def _limited(api: Api, **extra: Any) -> Any:
    return api.settings.model_copy(
        update={"rate_limit_per_minute": 6, "rate_limit_burst": 3, **extra}
    )


async def test_over_the_limit_is_429_with_retry_after(api: Api) -> None:
    owner = new_sub()
    async with running_app(_limited(api)) as client:
        answers = [
            await client.post("/uploads", json=BODY, headers=api.auth(owner)) for _ in range(4)
        ]
        listing = await client.get("/files", headers=api.auth(owner))
        other = await client.post("/uploads", json=BODY, headers=api.auth(new_sub()))
    assert [a.status_code for a in answers] == [201, 201, 201, 429]
    refused = answers[-1]
    assert refused.headers["content-type"] == "application/problem+json"
    assert refused.json()["code"] == "rate_limited"
    assert int(refused.headers["retry-after"]) >= 1
    assert listing.status_code == 200  # reading the ledger issues no URL: not limited
    assert other.status_code == 201  # another owner has a bucket of its own


async def test_downloads_count_against_the_same_limit(api: Api, s3_http: httpx.AsyncClient) -> None:
    owner = new_sub()
    file, _ = await api.upload(s3_http, owner, b"abc", content_type="text/plain")
    assert (await api.complete(owner, file["id"])).status_code == 200
    async with running_app(_limited(api)) as client:
        statuses = [
            (await client.get(f"/downloads/{file['id']}", headers=api.auth(owner))).status_code
            for _ in range(4)
        ]
    assert statuses == [200, 200, 200, 429]


async def test_replicas_sharing_redis_share_one_limit(api: Api, redis_url: str) -> None:
    owner = new_sub()
    shared = _limited(api, redis_url=redis_url, rate_limit_burst=4)
    async with running_app(shared) as first, running_app(shared) as second:
        statuses = []
        for client in (first, second, first, second, first, second):
            answer = await client.post("/uploads", json=BODY, headers=api.auth(owner))
            statuses.append(answer.status_code)
    assert statuses == [201, 201, 201, 201, 429, 429]


async def test_without_redis_each_replica_counts_alone(api: Api) -> None:
    owner = new_sub()
    local = _limited(api, rate_limit_burst=2)
    async with running_app(local) as first, running_app(local) as second:
        statuses = [
            (await client.post("/uploads", json=BODY, headers=api.auth(owner))).status_code
            for client in (first, first, second, second)
        ]
    assert statuses == [201, 201, 201, 201]


async def test_redis_down_fails_open_with_one_warning(
    api: Api, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.WARNING, logger="s3gate.ratelimit")
    down = _limited(api, redis_url="redis://127.0.0.1:1/0", rate_limit_burst=1)
    owner = new_sub()
    async with running_app(down) as client:
        statuses = [
            (await client.post("/uploads", json=BODY, headers=api.auth(owner))).status_code
            for _ in range(3)
        ]
    assert statuses == [201, 201, 201]
    warnings = [r.getMessage() for r in caplog.records if r.name == "s3gate.ratelimit"]
    assert len(warnings) == 1
    assert "allowing" in warnings[0]


async def test_redis_down_fails_closed_when_configured(api: Api) -> None:
    down = _limited(api, redis_url="redis://127.0.0.1:1/0", rate_limit_fail_open=False)
    async with running_app(down) as client:
        answer = await client.post("/uploads", json=BODY, headers=api.auth(new_sub()))
    assert answer.status_code == 503
    assert answer.json()["code"] == "rate_limiter_unavailable"


async def test_part_urls_beyond_the_uploads_budget_count_against_the_same_limit(
    api: Api,
) -> None:
    owner = new_sub()
    body = {
        "filename": "big.bin",
        "content_type": "application/octet-stream",
        "size": 10,
        "multipart": True,
    }
    async with running_app(_limited(api)) as client:
        created = await client.post("/uploads", json=body, headers=api.auth(owner))
        file_id = created.json()["file"]["id"]
        statuses = [
            (
                await client.post(
                    f"/uploads/{file_id}/parts",
                    json={"part_numbers": [1]},
                    headers=api.auth(owner),
                )
            ).status_code
            for _ in range(5)
        ]
        listing = await client.get(f"/uploads/{file_id}/parts", headers=api.auth(owner))
    assert created.status_code == 201
    # One part: two URLs from the upload's budget; then the burst of 3 (the create, two more).
    assert statuses == [200, 200, 200, 200, 429]
    assert listing.status_code == 429  # listing stored parts asks the store: it counts too
