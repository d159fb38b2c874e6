"""Quotas from the token (S3GATE_QUOTA_CLAIM): an owner's own limits or a named tier
(S3GATE_QUOTA_TIERS) override the global ones; a malformed claim is refused, never a bypass."""

from __future__ import annotations

from typing import Any

import pytest
from sqlalchemy import func, select

from app.auth import mint_token
from app.config.auth import QuotaTier
from app.models import files_table
from tests.support import TEST_JWT_SECRET, Api, new_sub, running_app, sql_engine


def _tiered(api: Api, **limits: Any) -> Any:
    # Rate limits off here, as in test_quotas: the point is what the quota admits.
    return api.settings.model_copy(
        update={
            "rate_limit_per_minute": 0,
            "quota_claim": "quota",
            "quota_tiers": {
                "solo": QuotaTier(pending=1),
                "team": QuotaTier(pending=3),
                "small": QuotaTier(bytes=100),
                "unlimited": QuotaTier(bytes=0, pending=0),
            },
            **limits,
        }
    )


def _auth(sub: str, quota: Any = None) -> dict[str, str]:
    extra = None if quota is None else {"quota": quota}
    return {"Authorization": f"Bearer {mint_token(TEST_JWT_SECRET, sub, extra_claims=extra)}"}


def _body(size: int = 10, name: str = "a.txt") -> dict[str, Any]:
    return {"filename": name, "content_type": "text/plain", "size": size}


async def _creates(client: Any, headers: dict[str, str], count: int, size: int = 10) -> list[int]:
    return [
        (await client.post("/uploads", json=_body(size, f"f{i}.txt"), headers=headers)).status_code
        for i in range(count)
    ]


async def test_a_quota_claim_limits_its_owner_while_others_keep_the_global_quota(
    api: Api,
) -> None:
    limited, other = new_sub(), new_sub()
    async with running_app(_tiered(api, quota_pending_uploads_per_owner=3)) as client:
        first = await client.post("/uploads", json=_body(), headers=_auth(limited, {"pending": 1}))
        second = await client.post("/uploads", json=_body(), headers=_auth(limited, {"pending": 1}))
        others = await _creates(client, _auth(other), 4)
    assert first.status_code == 201
    assert second.status_code == 403
    assert second.json()["code"] == "quota_exceeded"
    assert "upload" not in second.json()  # nothing signed is handed out
    assert others == [201, 201, 201, 403]


async def test_a_quota_claim_overrides_only_the_quota_it_sets(api: Api) -> None:
    owner = new_sub()
    settings = _tiered(api, quota_pending_uploads_per_owner=1, quota_bytes_per_owner=1000)
    async with running_app(settings) as client:
        # Its own byte quota (100); the global pending quota (1) still holds.
        answers = await _creates(client, _auth(owner, {"bytes": 100}), 2, size=60)
        other = await _creates(client, _auth(new_sub(), {"bytes": 100}), 1, size=150)
    assert answers == [201, 403]
    assert other == [403]


async def test_a_tier_named_in_the_token_applies(api: Api) -> None:
    solo, team, small, unlimited, plain = (new_sub() for _ in range(5))
    async with running_app(_tiered(api, quota_pending_uploads_per_owner=2)) as client:
        solo_answers = await _creates(client, _auth(solo, "solo"), 2)
        team_answers = await _creates(client, _auth(team, "team"), 4)
        small_answers = await _creates(client, _auth(small, "small"), 2, size=60)
        unlimited_answers = await _creates(client, _auth(unlimited, "unlimited"), 4)
        plain_answers = await _creates(client, _auth(plain), 3)
    assert solo_answers == [201, 403]
    assert team_answers == [201, 201, 201, 403]
    assert small_answers == [201, 403]  # 60 + 60 > 100 bytes
    assert unlimited_answers == [201] * 4  # 0: no limit, over the global 2
    assert plain_answers == [201, 201, 403]


@pytest.mark.parametrize(
    "quota",
    [{"pending": -1}, {"pending": True}, {"bytes": 1.5}, {"files": 1}, "gold", 42, ["solo"]],
    ids=["negative", "bool", "float", "unknown-key", "unknown-tier", "number", "list"],
)
async def test_a_malformed_quota_claim_is_401_and_creates_no_file(api: Api, quota: Any) -> None:
    owner = new_sub()
    async with running_app(_tiered(api, quota_pending_uploads_per_owner=1)) as client:
        answer = await client.post("/uploads", json=_body(), headers=_auth(owner, quota))
        listing = await client.get("/files", headers=_auth(owner))
    assert answer.status_code == 401
    assert answer.headers["content-type"] == "application/problem+json"
    assert answer.json()["code"] == "invalid_token"
    assert "upload" not in answer.json()
    assert listing.status_code == 200
    assert listing.json()["items"] == []
    engine = sql_engine(api.settings.database_url)
    try:
        with engine.connect() as conn:
            rows = conn.scalar(
                select(func.count()).select_from(files_table).where(files_table.c.owner_id == owner)
            )
    finally:
        engine.dispose()
    assert rows == 0
