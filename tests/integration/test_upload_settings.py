"""What a client can plan with: the published upload settings, the client's own part size,
part URLs metered per upload, and an abandon that is idempotent (against a real SeaweedFS)."""

from __future__ import annotations

import uuid
from typing import Any

import httpx
from sqlalchemy import update

from app.config import Settings
from app.models import files_table
from tests.support import Api, new_sub, running_app, sha256_b64, sql_engine

MIB = 1024 * 1024


async def test_the_settings_are_the_deployments_and_the_callers_quotas(
    settings: Settings,
) -> None:
    tuned = settings.model_copy(
        update={
            "multipart_threshold": 8 * MIB,
            "part_size": 6 * MIB,
            "max_file_size": 64 * MIB,
            "allowed_content_types": ["image/*", "application/pdf"],
            "quota_pending_uploads_per_owner": 7,
            "quota_claim": "quota",
        }
    )
    async with running_app(tuned) as client:
        api = Api(client, tuned)
        answer = await client.get("/uploads/settings", headers=api.auth(new_sub()))
        assert answer.status_code == 200, answer.text
        published = answer.json()
        assert published["multipart_threshold"] == 8 * MIB
        assert published["part_size"] == 6 * MIB
        assert published["max_file_size"] == 64 * MIB
        assert published["allowed_content_types"] == ["image/*", "application/pdf"]
        assert (published["min_part_size"], published["max_parts"]) == (5 * MIB, 10_000)
        assert published["max_part_size"] == 5 * 1024**3
        assert published["form_uploads"] is True  # SeaweedFS checks form policies
        assert published["part_url_budget_per_part"] == 2
        assert published["upload_url_ttl_seconds"] == tuned.upload_url_ttl_seconds
        assert published["quota_pending_uploads"] == 7
        tiered = await client.get(
            "/uploads/settings", headers=api.auth(new_sub(), quota={"pending": 2, "bytes": 9})
        )
        assert (tiered.json()["quota_bytes"], tiered.json()["quota_pending_uploads"]) == (9, 2)
        anonymous = await client.get("/uploads/settings")
        assert anonymous.status_code == 401
        assert anonymous.json()["code"] == "missing_token"


async def test_the_clients_part_size_is_what_gets_signed(
    api: Api, s3_http: httpx.AsyncClient
) -> None:
    owner = new_sub()
    data = bytes(range(256)) * (12 * MIB // 256)  # 12 MiB: parts of 5, 5 and 2 MiB
    created = await api.created(
        owner,
        {
            "filename": "chunks.bin",
            "content_type": "application/octet-stream",
            "size": len(data),
            "checksum_sha256": sha256_b64(data),
            "part_size": 5 * MIB,
        },
    )
    plan = created["upload"]
    assert (plan["method"], plan["part_size"], plan["part_count"]) == ("MULTIPART", 5 * MIB, 3)
    file_id = created["file"]["id"]
    parts = await api.client.post(
        f"/uploads/{file_id}/parts", json={"part_numbers": [1, 2, 3]}, headers=api.auth(owner)
    )
    for part in parts.json()["parts"]:
        start = (part["part_number"] - 1) * 5 * MIB
        chunk = data[start : start + 5 * MIB]
        sent = await s3_http.put(part["url"], content=chunk, headers=part["headers"])
        assert sent.status_code == 200, sent.text
    completed = await api.complete(owner, file_id)
    assert completed.status_code == 200, completed.text
    assert completed.json()["status"] == "available"


async def test_a_part_size_s3_would_refuse_is_a_422(api: Api) -> None:
    base = {"filename": "a.bin", "content_type": "application/octet-stream"}
    for body in (
        {**base, "size": 10 * MIB, "part_size": 5 * MIB - 1},  # below S3's smallest part
        {**base, "size": 10 * MIB, "part_size": 5 * 1024**3 + 1},  # above its largest
        {**base, "size": 5 * MIB * 10_001, "part_size": 5 * MIB},  # more than 10,000 parts
        {**base, "size": 10 * MIB, "part_size": 5 * MIB, "form": True},
        {**base, "size": 10 * MIB, "part_size": "5242880"},
    ):
        answer = await api.create(new_sub(), body)
        assert answer.status_code == 422, body
        assert answer.json()["code"] == "validation_error", body


async def test_one_part_per_request_is_never_throttled_within_the_uploads_budget(
    settings: Settings,
) -> None:
    # Two requests a minute for the owner: the create takes one.
    tight = settings.model_copy(update={"rate_limit_per_minute": 1, "rate_limit_burst": 2})
    async with running_app(tight) as client:
        api = Api(client, tight)
        owner = new_sub()
        created = await api.created(
            owner,
            {
                "filename": "slow.bin",
                "content_type": "application/octet-stream",
                "size": 15 * MIB,
                "part_size": 5 * MIB,
            },
        )
        file_id = created["file"]["id"]

        async def one_part(number: int) -> int:
            answer = await client.post(
                f"/uploads/{file_id}/parts",
                json={"part_numbers": [number]},
                headers=api.auth(owner),
            )
            return answer.status_code

        # Every part twice (a retry each): the upload's own budget, 2 per part.
        assert [await one_part(n) for n in (1, 2, 3, 1, 2, 3)] == [200] * 6
        # Beyond it, the owner's rate limit again: its one request left, then 429.
        assert [await one_part(1), await one_part(2)] == [200, 429]


async def test_abandoning_an_upload_that_already_ended_is_a_204(
    api: Api, s3_http: httpx.AsyncClient
) -> None:
    owner, stranger = new_sub(), new_sub()
    body: dict[str, Any] = {"filename": "a.txt", "content_type": "text/plain", "size": 3}
    pending = (await api.created(owner, body))["file"]["id"]
    assert (
        await api.client.delete(f"/uploads/{pending}", headers=api.auth(owner))
    ).status_code == 204
    again = await api.client.delete(f"/uploads/{pending}", headers=api.auth(owner))
    assert again.status_code == 204  # abandoned already

    # Declared a PNG, sent text: refused at completion.
    rejected, _ = await api.upload(s3_http, owner, b"not a png", content_type="image/png")
    assert (await api.complete(owner, rejected["id"])).status_code == 422
    assert (
        await api.client.delete(f"/uploads/{rejected['id']}", headers=api.auth(owner))
    ).status_code == 204

    expired = (await api.created(owner, body))["file"]["id"]
    engine = sql_engine(api.settings.database_url)
    with engine.begin() as conn:
        conn.execute(
            update(files_table)
            .where(files_table.c.id == uuid.UUID(expired))
            .values(status="expired")
        )
    engine.dispose()
    assert (
        await api.client.delete(f"/uploads/{expired}", headers=api.auth(owner))
    ).status_code == 204

    available, _ = await api.upload(s3_http, owner, b"kept", content_type="text/plain")
    assert (await api.complete(owner, available["id"])).status_code == 200
    refused = await api.client.delete(f"/uploads/{available['id']}", headers=api.auth(owner))
    assert refused.status_code == 409
    assert refused.json()["code"] == "not_pending"

    # Someone else's ended upload is still the missing id's 404.
    theirs = await api.client.delete(f"/uploads/{pending}", headers=api.auth(stranger))
    missing = await api.client.delete(f"/uploads/{uuid.uuid4()}", headers=api.auth(stranger))
    assert theirs.status_code == 404
    assert theirs.content == missing.content
