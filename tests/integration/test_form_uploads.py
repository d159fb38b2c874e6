"""Form uploads (`"form": true`): a presigned POST whose policy S3 itself enforces."""

from __future__ import annotations

import asyncio
from typing import Any

import httpx
import pytest

from tests.support import Api, new_sub, running_app, sha256_b64, tiny_pdf


def _s3_error(response: httpx.Response) -> str:
    return response.text.split("<Code>", 1)[-1].split("</Code>", 1)[0]


async def _create_form(api: Api, owner: str, data: bytes, **extra: Any) -> dict[str, Any]:
    body = {
        "filename": "scan.pdf",
        "content_type": "application/pdf",
        "size": len(data),
        "form": True,
        **extra,
    }
    return await api.created(owner, body)


async def _post(
    s3_http: httpx.AsyncClient,
    upload: dict[str, Any],
    data: bytes,
    content_type: str = "application/pdf",
    **override: str,
) -> httpx.Response:
    fields = {**upload["fields"], **override}
    return await s3_http.post(
        upload["url"], data=fields, files={"file": ("scan.pdf", data, content_type)}
    )


async def test_form_upload_completes_and_downloads_the_same_bytes(
    api: Api, s3_http: httpx.AsyncClient
) -> None:
    owner, data = new_sub(), tiny_pdf("form") * 20
    created = await _create_form(api, owner, data, checksum_sha256=sha256_b64(data))
    upload = created["upload"]
    assert upload["method"] == "POST"
    assert "headers" not in upload
    assert upload["fields"]["Content-Type"] == "application/pdf"
    assert upload["fields"]["x-amz-checksum-sha256"] == sha256_b64(data)
    assert created["file"]["upload_expires_at"] == upload["expires_at"]

    posted = await _post(s3_http, upload, data)
    assert posted.status_code in (200, 201, 204), posted.text
    done = await api.complete(owner, created["file"]["id"])
    assert done.json()["status"] == "available"
    link = await api.client.get(f"/downloads/{created['file']['id']}", headers=api.auth(owner))
    assert (await s3_http.get(link.json()["url"])).content == data


async def test_s3_refuses_an_oversize_form_upload(api: Api, s3_http: httpx.AsyncClient) -> None:
    owner, data = new_sub(), tiny_pdf()
    created = await _create_form(api, owner, data)
    posted = await _post(s3_http, created["upload"], data + b"more bytes")
    assert posted.status_code == 400
    assert _s3_error(posted) == "EntityTooLarge"
    still = await api.complete(owner, created["file"]["id"])
    assert still.json()["code"] == "upload_incomplete"


async def test_s3_refuses_a_short_form_upload(api: Api, s3_http: httpx.AsyncClient) -> None:
    created = await _create_form(api, new_sub(), tiny_pdf())
    posted = await _post(s3_http, created["upload"], tiny_pdf()[:-5])
    assert posted.status_code == 400
    assert _s3_error(posted) == "EntityTooSmall"


@pytest.mark.parametrize(
    "override",
    [{"Content-Type": "text/html"}, {"key": "uploads/someone-elses-key"}],
    ids=["other-type", "other-key"],
)
async def test_s3_refuses_a_form_that_breaks_the_policy(
    api: Api, s3_http: httpx.AsyncClient, override: dict[str, str]
) -> None:
    created = await _create_form(api, new_sub(), tiny_pdf())
    posted = await _post(s3_http, created["upload"], tiny_pdf(), **override)
    assert posted.status_code == 403
    assert _s3_error(posted) == "AccessDenied"


async def test_s3_refuses_form_bytes_that_do_not_match_the_checksum(
    api: Api, s3_http: httpx.AsyncClient
) -> None:
    declared = tiny_pdf("declared")
    created = await _create_form(api, new_sub(), declared, checksum_sha256=sha256_b64(declared))
    posted = await _post(s3_http, created["upload"], tiny_pdf("tampered"))
    assert posted.status_code == 400
    assert _s3_error(posted) == "BadDigest"


async def test_s3_refuses_an_expired_form(api: Api, s3_http: httpx.AsyncClient) -> None:
    short = api.settings.model_copy(update={"upload_url_ttl_seconds": 1})
    async with running_app(short) as client:
        created = await client.post(
            "/uploads",
            json={
                "filename": "a.pdf",
                "content_type": "application/pdf",
                "size": len(tiny_pdf()),
                "form": True,
            },
            headers=api.auth(new_sub()),
        )
    await asyncio.sleep(2.2)
    posted = await _post(s3_http, created.json()["upload"], tiny_pdf())
    assert posted.status_code == 403


async def test_an_idempotent_replay_of_a_form_upload_is_a_form_again(api: Api) -> None:
    owner, key = new_sub(), {"Idempotency-Key": "form-1"}
    body = {"filename": "a.pdf", "content_type": "application/pdf", "size": 9, "form": True}
    first = await api.create(owner, body, key)
    second = await api.create(owner, body, key)
    assert (first.status_code, second.status_code) == (201, 200)
    assert second.json()["upload"]["method"] == "POST"
    other = await api.create(owner, {**body, "form": False}, key)
    assert other.json()["code"] == "idempotency_key_reused"


async def test_openapi_describes_both_upload_kinds(api: Api) -> None:
    spec = (await api.client.get("/openapi.json")).json()
    schemas = spec["components"]["schemas"]
    assert {"UploadOut", "FormUploadOut"} <= set(schemas)
    assert "form" in schemas["CreateUploadRequest"]["properties"]
