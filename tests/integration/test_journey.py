"""The core journey with real bytes over HTTP against SeaweedFS, and S3 refusing what was not
signed. Each test runs on the SQLite and the PostgreSQL ledger."""

from __future__ import annotations

import asyncio
import uuid
from urllib.parse import quote, urlsplit, urlunsplit

import httpx
import pytest
from botocore.exceptions import ClientError

from app.devstack import EmbeddedS3
from app.usecases.plans import object_key
from tests.support import Api, new_sub, running_app, sha256_b64, tiny_pdf, tiny_png


async def test_upload_complete_download_returns_the_same_bytes(
    api: Api, s3_http: httpx.AsyncClient
) -> None:
    owner, data = new_sub(), tiny_pdf("journey") * 50
    file, upload = await api.upload(
        s3_http, owner, data, content_type="application/pdf", filename="Résumé 2026.pdf"
    )
    assert upload["method"] == "PUT"
    assert file["status"] == "pending"
    assert file["checksum_sha256"] == sha256_b64(data)

    done = await api.complete(owner, file["id"])
    assert done.status_code == 200, done.text
    assert done.json()["status"] == "available"
    assert done.json()["completed_at"] is not None

    download = await api.client.get(f"/downloads/{file['id']}", headers=api.auth(owner))
    assert download.status_code == 200
    assert download.headers["cache-control"] == "no-store"
    assert download.json()["method"] == "GET"
    got = await s3_http.get(download.json()["url"])
    assert got.status_code == 200
    assert got.content == data
    assert got.headers["content-type"] == "application/pdf"
    assert got.headers["content-disposition"] == (
        "attachment; filename=\"Resume 2026.pdf\"; filename*=UTF-8''R%C3%A9sum%C3%A9%202026.pdf"
    )


async def test_inline_disposition_is_honoured_for_safe_types(
    api: Api, s3_http: httpx.AsyncClient
) -> None:
    owner = new_sub()
    file, _ = await api.upload(s3_http, owner, tiny_png(), content_type="image/png")
    assert (await api.complete(owner, file["id"])).status_code == 200
    download = await api.client.get(
        f"/downloads/{file['id']}?disposition=inline", headers=api.auth(owner)
    )
    got = await s3_http.get(download.json()["url"])
    assert got.headers["content-type"] == "image/png"
    assert got.headers["content-disposition"].startswith("inline; ")


async def test_download_is_private_no_store_whatever_cache_control_the_object_was_stored_with(
    api: Api, s3_http: httpx.AsyncClient, s3_server: EmbeddedS3
) -> None:
    owner, data = new_sub(), b"cache me if you can"
    file, _ = await api.upload(s3_http, owner, data, content_type="text/plain")
    assert (await api.complete(owner, file["id"])).status_code == 200
    # The stored object gets a long public lifetime (set with the service's own credentials).
    bucket = api.settings.s3_bucket
    key = object_key(api.settings.s3_key_prefix, owner, uuid.UUID(file["id"]))
    stored = s3_server.client()
    stored.copy_object(
        Bucket=bucket,
        Key=key,
        CopySource={"Bucket": bucket, "Key": key},
        MetadataDirective="REPLACE",
        ContentType="text/plain",
        CacheControl="public, max-age=31536000, immutable",
    )
    assert stored.head_object(Bucket=bucket, Key=key)["CacheControl"].startswith("public")
    for disposition in ("attachment", "inline"):
        download = await api.client.get(
            f"/downloads/{file['id']}?disposition={disposition}", headers=api.auth(owner)
        )
        got = await s3_http.get(download.json()["url"])
        assert got.content == data
        assert got.headers["cache-control"] == "private, no-store"


async def test_script_capable_type_is_forced_to_attachment_octet_stream(
    api: Api, s3_http: httpx.AsyncClient
) -> None:
    owner = new_sub()
    html = b"<html><script>alert(document.cookie)</script></html>"
    file, _ = await api.upload(s3_http, owner, html, content_type="text/html", filename="x.html")
    assert (await api.complete(owner, file["id"])).status_code == 200
    download = await api.client.get(
        f"/downloads/{file['id']}?disposition=inline", headers=api.auth(owner)
    )
    got = await s3_http.get(download.json()["url"])
    assert got.content == html
    assert got.headers["content-type"] == "application/octet-stream"
    assert got.headers["content-disposition"].startswith("attachment; ")


async def test_redirect_download_answers_307_to_the_signed_url(
    api: Api, s3_http: httpx.AsyncClient
) -> None:
    owner = new_sub()
    file, _ = await api.upload(s3_http, owner, b"redirect me", content_type="text/plain")
    assert (await api.complete(owner, file["id"])).status_code == 200
    answer = await api.client.get(f"/downloads/{file['id']}?redirect=true", headers=api.auth(owner))
    assert answer.status_code == 307
    assert answer.headers["cache-control"] == "no-store"
    got = await s3_http.get(answer.headers["location"])
    assert got.content == b"redirect me"


# --- S3 itself refuses anything the URL was not signed for -----------------------------------


async def _create(api: Api, owner: str, data: bytes, **extra: object) -> dict[str, object]:
    body = {"filename": "f.txt", "content_type": "text/plain", "size": len(data), **extra}
    created = await api.create(owner, body)
    assert created.status_code == 201, created.text
    upload: dict[str, object] = created.json()["upload"]
    return upload


def _s3_error(response: httpx.Response) -> str:
    return response.text.split("<Code>", 1)[-1].split("</Code>", 1)[0]


async def test_s3_refuses_a_different_size(api: Api, s3_http: httpx.AsyncClient) -> None:
    upload = await _create(api, new_sub(), b"0123456789")
    put = await s3_http.put(str(upload["url"]), content=b"0123456789X", headers=upload["headers"])  # type: ignore[arg-type]
    assert put.status_code == 403
    assert _s3_error(put) == "SignatureDoesNotMatch"


async def test_s3_refuses_a_different_content_type(api: Api, s3_http: httpx.AsyncClient) -> None:
    upload = await _create(api, new_sub(), b"0123456789")
    headers = {**upload["headers"], "Content-Type": "text/html"}  # type: ignore[dict-item]
    put = await s3_http.put(str(upload["url"]), content=b"0123456789", headers=headers)
    assert put.status_code == 403
    assert _s3_error(put) == "SignatureDoesNotMatch"


async def test_s3_refuses_bytes_that_do_not_match_the_checksum(
    api: Api, s3_http: httpx.AsyncClient
) -> None:
    declared = b"0123456789"
    upload = await _create(api, new_sub(), declared, checksum_sha256=sha256_b64(declared))
    assert upload["headers"]["x-amz-checksum-sha256"] == sha256_b64(declared)  # type: ignore[index]
    put = await s3_http.put(str(upload["url"]), content=b"9876543210", headers=upload["headers"])  # type: ignore[arg-type]
    assert put.status_code == 400
    assert _s3_error(put) == "BadDigest"


async def test_s3_refuses_a_changed_checksum_header(api: Api, s3_http: httpx.AsyncClient) -> None:
    declared, other = b"0123456789", b"9876543210"
    upload = await _create(api, new_sub(), declared, checksum_sha256=sha256_b64(declared))
    headers = {**upload["headers"], "x-amz-checksum-sha256": sha256_b64(other)}  # type: ignore[dict-item]
    put = await s3_http.put(str(upload["url"]), content=other, headers=headers)
    assert put.status_code == 403


async def test_s3_refuses_a_request_without_the_signed_headers(
    api: Api, s3_http: httpx.AsyncClient
) -> None:
    upload = await _create(api, new_sub(), b"0123456789")
    put = await s3_http.put(
        str(upload["url"]), content=b"0123456789", headers={"Content-Type": "text/plain"}
    )
    assert put.status_code == 403


@pytest.mark.parametrize("method", ["GET", "POST", "DELETE"])
async def test_s3_refuses_another_method(api: Api, s3_http: httpx.AsyncClient, method: str) -> None:
    owner = new_sub()
    created = await api.create(
        owner, {"filename": "f.txt", "content_type": "text/plain", "size": 10}
    )
    upload = created.json()["upload"]
    answer = await s3_http.request(
        method, upload["url"], content=b"0123456789", headers=upload["headers"]
    )
    # 403 for a signature mismatch; SeaweedFS answers a POST on an object path with 405.
    assert answer.status_code in (403, 405)
    still = await api.complete(owner, created.json()["file"]["id"])
    assert still.json()["code"] == "upload_incomplete"


async def test_s3_refuses_another_key(
    api: Api, s3_http: httpx.AsyncClient, s3_server: EmbeddedS3
) -> None:
    upload = await _create(api, new_sub(), b"0123456789")
    parts = urlsplit(str(upload["url"]))
    moved = parts._replace(path=parts.path.rsplit("/", 1)[0] + "/" + quote("someone-elses-key"))
    put = await s3_http.put(urlunsplit(moved), content=b"0123456789", headers=upload["headers"])  # type: ignore[arg-type]
    assert put.status_code == 403
    assert _s3_error(put) == "SignatureDoesNotMatch"


async def test_s3_refuses_a_tampered_signature(api: Api, s3_http: httpx.AsyncClient) -> None:
    upload = await _create(api, new_sub(), b"0123456789")
    url = str(upload["url"])
    signature = url.rsplit("X-Amz-Signature=", 1)[1]
    flipped = ("0" if signature[0] != "0" else "1") + signature[1:]
    put = await s3_http.put(
        url.replace(signature, flipped),
        content=b"0123456789",
        headers=upload["headers"],  # type: ignore[arg-type]
    )
    assert put.status_code == 403


async def test_upload_url_creates_but_never_overwrites(
    api: Api, s3_http: httpx.AsyncClient
) -> None:
    upload = await _create(api, new_sub(), b"0123456789")
    first = await s3_http.put(str(upload["url"]), content=b"0123456789", headers=upload["headers"])  # type: ignore[arg-type]
    again = await s3_http.put(str(upload["url"]), content=b"abcdefghij", headers=upload["headers"])  # type: ignore[arg-type]
    assert first.status_code == 200
    assert again.status_code == 412


async def test_s3_refuses_an_expired_upload_url(api: Api, s3_http: httpx.AsyncClient) -> None:
    short = api.settings.model_copy(update={"upload_url_ttl_seconds": 1})
    async with running_app(short) as client:
        created = await client.post(
            "/uploads",
            json={"filename": "late.txt", "content_type": "text/plain", "size": 4},
            headers=api.auth(new_sub()),
        )
    upload = created.json()["upload"]
    await asyncio.sleep(2.2)
    put = await s3_http.put(upload["url"], content=b"late", headers=upload["headers"])
    assert put.status_code == 403
    assert _s3_error(put) == "AccessDenied"


async def test_s3_refuses_an_expired_download_url(api: Api, s3_http: httpx.AsyncClient) -> None:
    owner = new_sub()
    file, _ = await api.upload(s3_http, owner, b"soon gone", content_type="text/plain")
    assert (await api.complete(owner, file["id"])).status_code == 200
    short = api.settings.model_copy(update={"download_url_ttl_seconds": 1})
    async with running_app(short) as client:
        download = await client.get(f"/downloads/{file['id']}", headers=api.auth(owner))
    await asyncio.sleep(2.2)
    got = await s3_http.get(download.json()["url"])
    assert got.status_code == 403


# --- completion asks the store, never the client ----------------------------------------------


async def test_completion_rejects_bytes_that_are_not_the_declared_type(
    api: Api, s3_http: httpx.AsyncClient, s3_server: EmbeddedS3
) -> None:
    owner = new_sub()
    not_a_png = b"<html>not an image at all</html>"
    file, upload = await api.upload(
        s3_http, owner, not_a_png, content_type="image/png", filename="cat.png"
    )
    rejected = await api.complete(owner, file["id"])
    assert rejected.status_code == 422
    assert rejected.headers["content-type"] == "application/problem+json"
    assert rejected.json()["code"] == "upload_rejected"

    key = urlsplit(upload["url"]).path.split("/", 2)[2]
    with pytest.raises(ClientError) as missing:
        s3_server.client().head_object(Bucket=api.settings.s3_bucket, Key=key)
    assert missing.value.response["Error"]["Code"] in ("404", "NoSuchKey")
    status = await api.client.get(f"/files/{file['id']}", headers=api.auth(owner))
    assert status.json()["status"] == "rejected"
    again = await api.complete(owner, file["id"])
    assert again.json()["code"] == "upload_rejected"
    download = await api.client.get(f"/downloads/{file['id']}", headers=api.auth(owner))
    assert download.json()["code"] == "file_not_available"


async def test_completion_before_the_bytes_arrive_is_409_and_stays_pending(
    api: Api,
) -> None:
    owner = new_sub()
    created = await api.create(
        owner, {"filename": "a.txt", "content_type": "text/plain", "size": 3}
    )
    file_id = created.json()["file"]["id"]
    early = await api.complete(owner, file_id)
    assert early.status_code == 409
    assert early.json()["code"] == "upload_incomplete"
    status = await api.client.get(f"/files/{file_id}", headers=api.auth(owner))
    assert status.json()["status"] == "pending"


async def test_completion_is_idempotent(api: Api, s3_http: httpx.AsyncClient) -> None:
    owner = new_sub()
    file, _ = await api.upload(s3_http, owner, b"twice", content_type="text/plain")
    first = await api.complete(owner, file["id"])
    second = await api.complete(owner, file["id"])
    assert first.status_code == second.status_code == 200
    assert first.json() == second.json()


async def test_concurrent_completions_agree(api: Api, s3_http: httpx.AsyncClient) -> None:
    owner = new_sub()
    file, _ = await api.upload(s3_http, owner, tiny_png(), content_type="image/png")
    answers = await asyncio.gather(*(api.complete(owner, file["id"]) for _ in range(5)))
    assert {a.status_code for a in answers} == {200}
    assert {a.json()["completed_at"] for a in answers} == {answers[0].json()["completed_at"]}


async def test_completion_after_the_deadline_is_409_expired(api: Api) -> None:
    late = api.settings.model_copy(
        update={"upload_url_ttl_seconds": 1, "completion_grace_seconds": 0}
    )
    owner = new_sub()
    async with running_app(late) as client:
        created = await client.post(
            "/uploads",
            json={"filename": "a.txt", "content_type": "text/plain", "size": 3},
            headers=api.auth(owner),
        )
        await asyncio.sleep(2.1)
        answer = await client.post(
            f"/uploads/{created.json()['file']['id']}/complete", headers=api.auth(owner)
        )
    assert answer.status_code == 409
    assert answer.json()["code"] == "upload_expired"
