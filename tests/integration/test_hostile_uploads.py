"""A hostile uploader against SeaweedFS: late requests through URLs that outlived their file,
headers the signature did not cover, a form posted again after verification, and a swarm of
concurrent completions. Every object stays accounted for, and what becomes available is what
was verified (issue 10, findings 2 to 5)."""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import Awaitable, Callable
from datetime import UTC, datetime, timedelta
from typing import Any

import httpx
import pytest
from prometheus_client import REGISTRY
from sqlalchemy import select

from app.config import Settings
from app.devstack import EmbeddedS3
from app.lifespan import open_use_cases
from app.models import files_table
from app.storage import Storage
from tests.support import (
    Api,
    new_sub,
    object_exists,
    run_s3gate,
    running_app,
    s3gate_env,
    sha256_b64,
    sql_engine,
    tiny_pdf,
    tiny_png,
)

TTL = 6  # seconds an upload URL lives: long enough for the steps a test takes within it
MARGIN = 2.0  # seconds past an expiry before a test counts on the store refusing the URL


def _short_lived(api: Api, **extra: Any) -> Settings:
    """Upload URLs that run out within the test, no grace or skew margin, no rate limit."""
    return api.settings.model_copy(
        update={
            "upload_url_ttl_seconds": TTL,
            "completion_grace_seconds": 0,
            "store_clock_skew_seconds": 0,
            "rate_limit_per_minute": 0,
            **extra,
        }
    )


async def _past(expires_at: str) -> None:
    """Sleep until the store refuses a URL that expires at `expires_at`, with a margin."""
    deadline = datetime.fromisoformat(expires_at.replace("Z", "+00:00")).timestamp() + MARGIN
    await asyncio.sleep(max(0.0, deadline - datetime.now(UTC).timestamp()))


def _key(url: str) -> str:
    return url.split("?", 1)[0].split("/", 4)[4]


def _purged_at(settings: Settings, file_id: str) -> Any:
    engine = sql_engine(settings.database_url)
    try:
        with engine.connect() as conn:
            return conn.execute(
                select(files_table.c.purged_at).where(files_table.c.id == uuid.UUID(file_id))
            ).scalar_one()
    finally:
        engine.dispose()


def _reap(api: Api, s3: EmbeddedS3) -> str:
    """One `s3gate reap` pass, as cron runs it; its report line."""
    env = s3gate_env(
        s3,
        api.settings.s3_bucket,
        S3GATE_DATABASE_URL=api.settings.database_url,
        S3GATE_COMPLETION_GRACE_SECONDS="0",
        S3GATE_STORE_CLOCK_SKEW_SECONDS="0",
    )
    result = run_s3gate("reap", env=env, timeout=60)
    assert result.returncode == 0, result.stderr
    return result.stdout.strip()


async def _send(s3_http: httpx.AsyncClient, upload: dict[str, Any], data: bytes) -> httpx.Response:
    """The bytes exactly as the upload says: a PUT with its headers, or the form POST."""
    if upload["method"] == "POST":
        files = {"file": ("f", data, upload["fields"]["Content-Type"])}
        return await s3_http.post(upload["url"], data=upload["fields"], files=files)
    return await s3_http.put(upload["url"], content=data, headers=upload["headers"])


Ending = Callable[[httpx.AsyncClient, dict[str, str], str, bytes], Awaitable[None]]


async def _abandon(client: httpx.AsyncClient, auth: dict[str, str], file_id: str, _: bytes) -> None:
    assert (await client.delete(f"/uploads/{file_id}", headers=auth)).status_code == 204


async def _delete(client: httpx.AsyncClient, auth: dict[str, str], file_id: str, _: bytes) -> None:
    done = await client.post(f"/uploads/{file_id}/complete", headers=auth)
    assert done.json()["status"] == "available", done.text
    assert (await client.delete(f"/files/{file_id}", headers=auth)).status_code == 204


async def _reject(client: httpx.AsyncClient, auth: dict[str, str], file_id: str, _: bytes) -> None:
    done = await client.post(f"/uploads/{file_id}/complete", headers=auth)
    assert done.json()["code"] == "upload_rejected", done.text


@pytest.mark.parametrize(
    ("ending", "form"),
    [(_abandon, False), (_reject, False), (_delete, False), (_delete, True), (_reject, True)],
    ids=["abandon", "reject", "delete", "delete-form", "reject-form"],
)
async def test_a_late_upload_through_a_url_that_outlived_its_file_is_reaped_and_counted(
    api: Api,
    s3_http: httpx.AsyncClient,
    s3_server: EmbeddedS3,
    ending: Ending,
    form: bool,
) -> None:
    owner = new_sub()
    auth = api.auth(owner)
    good = tiny_png()
    # A rejection needs bytes that break the declaration: a PNG's size and type, not its magic.
    sent = b"\0" * len(good) if ending is _reject else good
    settings = _short_lived(api, quota_bytes_per_owner=len(good))
    body = {"filename": "p.png", "content_type": "image/png", "size": len(good), "form": form}
    async with running_app(settings) as client:
        created = await client.post("/uploads", json=body, headers=auth)
        assert created.status_code == 201, created.text
        file_id, upload = created.json()["file"]["id"], created.json()["upload"]
        if ending is not _abandon:
            assert (await _send(s3_http, upload, sent)).is_success
        await ending(client, auth, file_id, sent)

        late = await _send(s3_http, upload, b"\xff" * len(good))
        assert late.is_success, late.text  # the store admits it: the URL is still valid
        key = upload["fields"]["key"] if form else _key(upload["url"])
        assert object_exists(s3_server, settings.s3_bucket, key)
        # Its bytes still count: the owner cannot stack unaccounted uploads past the quota.
        refused = await client.post("/uploads", json={**body, "form": False}, headers=auth)
        assert refused.json()["code"] == "quota_exceeded"

        # A pass within the URL's lifetime deletes the late object, and does not let go.
        async with open_use_cases(settings) as (_, use_cases):
            assert (await use_cases.reaper.reap()).watched >= 1
        assert not object_exists(s3_server, settings.s3_bucket, key)
        assert _purged_at(settings, file_id) is None

        await _past(upload["expires_at"])
        assert (await _send(s3_http, upload, sent)).status_code == 403  # expired now
        report = _reap(api, s3_server)
        assert "purged=" in report
        assert not object_exists(s3_server, settings.s3_bucket, key)
        assert _purged_at(settings, file_id) is not None
        again = await client.post("/uploads", json={**body, "form": False}, headers=auth)
        assert again.status_code == 201, again.text  # the quota is released only now


async def test_a_deleted_multipart_upload_is_purged_once_its_last_part_url_died(
    api: Api, s3_server: EmbeddedS3
) -> None:
    """Its deadline is a day away, but part URLs live one URL TTL at most: the bytes it held
    count against the quota only until then."""
    owner = new_sub()
    settings = _short_lived(api, upload_url_ttl_seconds=1, quota_bytes_per_owner=10)
    body = {"filename": "a.bin", "content_type": "application/octet-stream", "size": 10}
    async with running_app(settings) as client:
        created = await client.post(
            "/uploads", json={**body, "multipart": True}, headers=api.auth(owner)
        )
        file_id = created.json()["file"]["id"]
        assert (
            await client.delete(f"/uploads/{file_id}", headers=api.auth(owner))
        ).status_code == 204
        held = await client.post("/uploads", json=body, headers=api.auth(owner))
        assert held.json()["code"] == "quota_exceeded"
        await asyncio.sleep(1 + MARGIN)  # the URL TTL after the delete, and a margin
        async with open_use_cases(settings) as (_, use_cases):
            await use_cases.reaper.reap()
        assert _purged_at(settings, file_id) is not None
        again = await client.post("/uploads", json=body, headers=api.auth(owner))
        assert again.status_code == 201, again.text


@pytest.mark.parametrize(
    "header",
    [
        {"Content-Encoding": "gzip"},
        {"Cache-Control": "public, max-age=31536000"},
        {"Content-Disposition": "inline"},
        {"Content-Language": "de"},
        {"Expires": "Wed, 21 Oct 2037 07:28:00 GMT"},
    ],
    ids=lambda header: next(iter(header)),
)
async def test_an_unsigned_representation_header_sent_with_a_put_rejects_the_upload(
    api: Api, s3_http: httpx.AsyncClient, s3_server: EmbeddedS3, header: dict[str, str]
) -> None:
    owner, data = new_sub(), tiny_pdf("headers")
    body = {"filename": "a.pdf", "content_type": "application/pdf", "size": len(data)}
    created = await api.created(owner, body)
    upload = created["upload"]
    put = await s3_http.put(upload["url"], content=data, headers={**upload["headers"], **header})
    assert put.status_code == 200, put.text  # S3 (like AWS) stores headers it did not sign
    done = await api.complete(owner, created["file"]["id"])
    assert done.status_code == 422
    assert done.json()["code"] == "upload_rejected"
    assert next(iter(header)) in done.json()["detail"]
    assert not object_exists(s3_server, api.settings.s3_bucket, _key(upload["url"]))


@pytest.mark.parametrize(
    "field",
    # (SeaweedFS itself refuses x-amz-meta-* fields a policy does not name; AWS refuses all.)
    [{"Cache-Control": "public, max-age=31536000"}, {"Content-Encoding": "gzip"}],
    ids=["cache-control", "content-encoding"],
)
async def test_a_form_field_the_policy_did_not_name_rejects_the_upload(
    api: Api, s3_http: httpx.AsyncClient, field: dict[str, str]
) -> None:
    owner, data = new_sub(), tiny_pdf("fields")
    body = {"filename": "a.pdf", "content_type": "application/pdf", "size": len(data)}
    created = await api.created(owner, {**body, "form": True})
    upload = created["upload"]
    posted = await s3_http.post(
        upload["url"],
        data={**upload["fields"], **field},
        files={"file": ("a.pdf", data, "application/pdf")},
    )
    assert posted.is_success, posted.text  # SeaweedFS stores fields the policy did not name
    done = await api.complete(owner, created["file"]["id"])
    assert done.json()["code"] == "upload_rejected", done.text


async def test_a_form_posted_again_after_completion_cannot_replace_the_verified_bytes(
    api: Api, s3_http: httpx.AsyncClient
) -> None:
    owner, png = new_sub(), tiny_png()
    html = b"<html><script>alert(document.domain)</script>".ljust(len(png), b" ")
    body = {"filename": "a.png", "content_type": "image/png", "size": len(png), "form": True}
    created = await api.created(owner, body)
    file_id, upload = created["file"]["id"], created["upload"]
    assert (await _send(s3_http, upload, png)).is_success
    assert (await api.complete(owner, file_id)).json()["status"] == "available"

    again = await _send(s3_http, upload, html)  # the same policy, still valid
    assert again.is_success, again.text
    link = await api.client.get(f"/downloads/{file_id}", headers=api.auth(owner))
    served = await s3_http.get(link.json()["url"])
    assert served.content == png
    assert served.headers["content-type"] == "image/png"


async def test_an_available_form_uploads_posted_copy_is_reaped_once_its_policy_ran_out(
    api: Api, s3_http: httpx.AsyncClient, s3_server: EmbeddedS3
) -> None:
    owner, data = new_sub(), tiny_pdf("reaped")
    body = {"filename": "a.pdf", "content_type": "application/pdf", "size": len(data)}
    async with running_app(_short_lived(api)) as client:
        created = await client.post(
            "/uploads", json={**body, "form": True}, headers=api.auth(owner)
        )
        file_id, upload = created.json()["file"]["id"], created.json()["upload"]
        assert (await _send(s3_http, upload, data)).is_success
        done = await client.post(f"/uploads/{file_id}/complete", headers=api.auth(owner))
        assert done.json()["status"] == "available"
        assert not object_exists(s3_server, api.settings.s3_bucket, upload["fields"]["key"])
        assert (await _send(s3_http, upload, data)).is_success  # posted again
        await _past(upload["expires_at"])
        _reap(api, s3_server)
        assert not object_exists(s3_server, api.settings.s3_bucket, upload["fields"]["key"])
        assert _purged_at(api.settings, file_id) is not None
        link = await client.get(f"/downloads/{file_id}", headers=api.auth(owner))
        assert (await s3_http.get(link.json()["url"])).content == data  # the file itself stays


def _reads(operation: str) -> float:
    value = REGISTRY.get_sample_value(
        "s3gate_storage_call_duration_seconds_count", {"operation": operation}
    )
    return value or 0.0


async def test_sixteen_concurrent_completions_on_two_replicas_read_the_object_once(
    api: Api, s3_http: httpx.AsyncClient
) -> None:
    owner, data = new_sub(), b"multipart bytes " * 4096
    body = {
        "filename": "big.bin",
        "content_type": "application/octet-stream",
        "size": len(data),
        "multipart": True,
        "checksum_sha256": sha256_b64(data),
    }
    file_id = (await api.created(owner, body))["file"]["id"]
    parts = await api.client.post(
        f"/uploads/{file_id}/parts", json={"part_numbers": [1]}, headers=api.auth(owner)
    )
    part = parts.json()["parts"][0]
    assert (await s3_http.put(part["url"], content=data, headers=part["headers"])).is_success

    before = _reads("sha256")
    async with running_app(api.settings) as other:  # a second replica on the same ledger
        # Half of them hold their answer for the background worker (Prefer: wait).
        answers = await asyncio.gather(
            *(
                client.post(
                    f"/uploads/{file_id}/complete",
                    headers={**api.auth(owner), **({"Prefer": "wait=30"} if n % 2 else {})},
                )
                for n, client in enumerate([api.client, other] * 8)
            )
        )
    # One read of the object (by one worker of the two replicas), however many asked.
    assert _reads("sha256") - before == 1
    codes = sorted((a.status_code, a.json().get("code") or a.json()["status"]) for a in answers)
    assert (200, "available") in codes
    assert {code for code in codes if code != (200, "available")} <= {
        (202, "verifying"),  # handed to the worker, or found with it
        (409, "upload_incomplete"),  # met the HEAD of another completion's lease
    }
    busy = [a for a in answers if a.status_code == 409]
    assert all("verifying" in a.json()["detail"] for a in busy)
    final = await api.complete(owner, file_id)
    assert final.json()["status"] == "available"


async def test_a_completion_that_died_mid_way_holds_the_file_only_until_its_lease_runs_out(
    api: Api, s3_http: httpx.AsyncClient
) -> None:
    owner = new_sub()
    file, _ = await api.upload(s3_http, owner, b"hello", content_type="text/plain")
    async with open_use_cases(api.settings) as (ledger, _):
        now = datetime.now(UTC)
        held = await ledger.claim_verification(
            uuid.UUID(file["id"]), now, now + timedelta(seconds=2)
        )
        assert held is not None  # a completion took the lease and then its process died
    impatient = api.settings.model_copy(update={"completion_wait_seconds": 0})
    async with running_app(impatient) as client:
        busy = await client.post(f"/uploads/{file['id']}/complete", headers=api.auth(owner))
    assert busy.status_code == 409
    assert busy.json()["code"] == "upload_incomplete"
    assert "verifying" in busy.json()["detail"]
    started = asyncio.get_running_loop().time()
    waited = await api.complete(owner, file["id"])  # waits for the dead one's lease to end
    assert waited.json()["status"] == "available"
    assert 0.5 < asyncio.get_running_loop().time() - started < 5


async def test_complete_and_the_parts_listing_count_against_the_rate_limit(api: Api) -> None:
    owner = new_sub()
    limited = api.settings.model_copy(update={"rate_limit_per_minute": 1, "rate_limit_burst": 2})
    body = {"filename": "a.bin", "content_type": "application/octet-stream", "size": 10}
    async with running_app(limited) as client:
        created = await client.post(
            "/uploads", json={**body, "multipart": True}, headers=api.auth(owner)
        )
        file_id = created.json()["file"]["id"]
        listed = await client.get(f"/uploads/{file_id}/parts", headers=api.auth(owner))
        assert listed.status_code == 200
        completed = await client.post(f"/uploads/{file_id}/complete", headers=api.auth(owner))
        assert completed.status_code == 429
        assert completed.json()["code"] == "rate_limited"
        assert "retry-after" in completed.headers
        listed_again = await client.get(f"/uploads/{file_id}/parts", headers=api.auth(owner))
        assert listed_again.status_code == 429


async def test_the_promoting_copy_is_conditional_on_the_verified_etag_and_drops_headers(
    api: Api, s3_server: EmbeddedS3
) -> None:
    client, bucket = s3_server.client(), api.settings.s3_bucket
    source, target = f"uploads/t/{uuid.uuid4()}.upload", f"uploads/t/{uuid.uuid4()}"
    put = client.put_object(
        Bucket=bucket,
        Key=source,
        Body=b"%PDF-",
        ContentType="application/pdf",
        CacheControl="public",
    )
    storage = Storage(client, bucket)
    assert not await storage.copy(source, target, if_match='"0000"', content_type="application/pdf")
    assert not object_exists(s3_server, bucket, target)
    assert await storage.copy(source, target, if_match=put["ETag"], content_type="application/pdf")
    copied = await storage.head(target)
    assert copied is not None
    assert (copied.size, copied.content_type, copied.foreign_headers) == (5, "application/pdf", ())


async def test_every_object_in_the_bucket_is_accounted_for_by_a_row_after_a_hostile_session(
    api: Api, s3_http: httpx.AsyncClient, s3_server: EmbeddedS3
) -> None:
    """A mix of honest and hostile uploads by one owner, a reaper pass once every URL is dead:
    the owner's objects in the bucket are exactly the available files' objects."""
    owner, png = new_sub(), tiny_png()
    auth = api.auth(owner)
    settings = _short_lived(api)
    body = {"filename": "p.png", "content_type": "image/png", "size": len(png)}
    available: list[str] = []
    async with running_app(settings) as client:

        async def create(**extra: Any) -> tuple[str, dict[str, Any]]:
            created = await client.post("/uploads", json={**body, **extra}, headers=auth)
            assert created.status_code == 201, created.text
            return created.json()["file"]["id"], created.json()["upload"]

        async def complete(file_id: str) -> httpx.Response:
            return await client.post(f"/uploads/{file_id}/complete", headers=auth)

        for form in (False, True):  # kept, each sent again after completion
            file_id, upload = await create(form=form)
            assert (await _send(s3_http, upload, png)).is_success
            assert (await complete(file_id)).json()["status"] == "available"
            await _send(s3_http, upload, png)
            available.append(file_id)
        for form in (False, True):  # deleted, then sent again
            file_id, upload = await create(form=form)
            assert (await _send(s3_http, upload, png)).is_success
            await complete(file_id)
            await client.delete(f"/files/{file_id}", headers=auth)
            assert (await _send(s3_http, upload, png)).is_success
        file_id, upload = await create()  # rejected, then sent again
        await _send(s3_http, upload, b"\0" * len(png))
        assert (await complete(file_id)).status_code == 422
        assert (await _send(s3_http, upload, png)).is_success
        file_id, upload = await create()  # abandoned, then sent anyway
        await client.delete(f"/uploads/{file_id}", headers=auth)
        assert (await _send(s3_http, upload, png)).is_success
        file_id, upload = await create()  # sent but never completed: expires
        assert (await _send(s3_http, upload, png)).is_success

        await _past(upload["expires_at"])
        async with open_use_cases(settings) as (_, use_cases):
            await use_cases.reaper.reap()

        engine = sql_engine(settings.database_url)
        try:
            with engine.connect() as conn:
                keys = dict(
                    conn.execute(
                        select(files_table.c.id, files_table.c.object_key).where(
                            files_table.c.id.in_([uuid.UUID(i) for i in available])
                        )
                    ).all()
                )
        finally:
            engine.dispose()
    owner_prefix = next(iter(keys.values())).rsplit("/", 1)[0] + "/"
    listed = s3_server.client().list_objects_v2(Bucket=settings.s3_bucket, Prefix=owner_prefix)
    stored = sorted(item["Key"] for item in listed.get("Contents", []))
    assert stored == sorted(keys.values())
