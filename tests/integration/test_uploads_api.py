"""POST /uploads and friends: validation, limits, idempotency, abandoning and deleting."""

from __future__ import annotations

import asyncio
import json
import time
from typing import Any
from urllib.parse import urlsplit

import httpx
import pytest
from sqlalchemy import func, select

from app.devstack import EmbeddedS3
from app.models import files_table
from tests.support import (
    Api,
    hs256_token,
    new_sub,
    object_exists,
    running_app,
    sha256_b64,
    sql_engine,
)

GOOD = {"filename": "a.txt", "content_type": "text/plain", "size": 5}


def _problem(response: httpx.Response, status: int, code: str) -> dict[str, Any]:
    assert response.status_code == status, response.text
    assert response.headers["content-type"] == "application/problem+json"
    body: dict[str, Any] = response.json()
    assert body["code"] == code
    assert body["status"] == status
    assert {"type", "title", "detail"} <= set(body)
    return body


async def test_created_upload_is_pending_with_the_declared_fields(api: Api) -> None:
    owner = new_sub()
    answer = await api.create(owner, {**GOOD, "checksum_sha256": sha256_b64(b"hello")})
    assert answer.status_code == 201
    assert answer.headers["cache-control"] == "no-store"
    file, upload = answer.json()["file"], answer.json()["upload"]
    assert file["filename"] == "a.txt"
    assert file["status"] == "pending"
    assert file["upload_expires_at"] == upload["expires_at"]
    assert upload["headers"] == {
        "Content-Type": "text/plain",
        "If-None-Match": "*",
        "x-amz-checksum-sha256": sha256_b64(b"hello"),
    }
    assert "X-Amz-Algorithm=AWS4-HMAC-SHA256" in upload["url"]
    assert "X-Amz-Expires=900" in upload["url"]


async def test_object_key_never_contains_client_text(api: Api) -> None:
    owner = "alice"
    answer = await api.create(owner, {**GOOD, "filename": "..%2F..%2Fetc passwd.txt"})
    key = urlsplit(answer.json()["upload"]["url"]).path
    assert "alice" not in key
    assert "passwd" not in key
    assert key.startswith(f"/{api.settings.s3_bucket}/uploads/")
    assert key.endswith(answer.json()["file"]["id"])


@pytest.mark.parametrize(
    ("body", "loc"),
    [
        ({**GOOD, "extra": 1}, ["body", "extra"]),
        ({**GOOD, "size": "5"}, ["body", "size"]),
        ({**GOOD, "size": 0}, ["body", "size"]),
        ({**GOOD, "size": 5.5}, ["body", "size"]),
        ({**GOOD, "content_type": "text"}, ["body", "content_type"]),
        ({**GOOD, "content_type": "text/plain; charset=utf-8"}, ["body", "content_type"]),
        ({**GOOD, "filename": ""}, ["body", "filename"]),
        ({**GOOD, "filename": "a/b.txt"}, ["body", "filename"]),
        ({**GOOD, "filename": "evil\u202etxt.exe"}, ["body", "filename"]),
        ({**GOOD, "filename": "x" * 256}, ["body", "filename"]),
        ({**GOOD, "filename": "\u3164.pdf"}, ["body", "filename"]),  # Hangul filler
        ({**GOOD, "filename": "a\u115fb.txt"}, ["body", "filename"]),
        ({**GOOD, "filename": "a\u1160b"}, ["body", "filename"]),
        ({**GOOD, "filename": "a\uffa0b"}, ["body", "filename"]),
        ({**GOOD, "filename": "a\u034fb"}, ["body", "filename"]),  # combining grapheme joiner
        ({**GOOD, "filename": "a\u2060b"}, ["body", "filename"]),  # word joiner
        ({**GOOD, "checksum_sha256": "not-base64"}, ["body", "checksum_sha256"]),
        ({"filename": "a.txt", "size": 5}, ["body", "content_type"]),
    ],
)
async def test_invalid_body_is_422_validation_error(
    api: Api, body: dict[str, Any], loc: list[str]
) -> None:
    problem = _problem(await api.create(new_sub(), body), 422, "validation_error")
    assert loc in [error["loc"] for error in problem["errors"]]


@pytest.mark.parametrize(
    "filename",
    ["\U0001f468\u200d\U0001f469\u200d\U0001f467.png", "\u2764\ufe0f.txt"],
    ids=["zwj-family", "heart-vs16"],
)
async def test_emoji_filenames_keep_their_joiners(api: Api, filename: str) -> None:
    created = await api.created(new_sub(), {**GOOD, "filename": filename})
    assert created["file"]["filename"] == filename


async def test_malformed_json_is_422(api: Api) -> None:
    answer = await api.client.post(
        "/uploads",
        content=b'{"filename": ',
        headers={**api.auth(new_sub()), "Content-Type": "application/json"},
    )
    _problem(answer, 422, "validation_error")


async def test_lone_surrogate_filename_is_422_not_500(api: Api) -> None:
    answer = await api.client.post(
        "/uploads",
        content=b'{"filename": "\\ud800.txt", "content_type": "text/plain", "size": 1}',
        headers={**api.auth(new_sub()), "Content-Type": "application/json"},
    )
    _problem(answer, 422, "validation_error")


async def test_oversized_request_body_is_413(api: Api) -> None:
    answer = await api.client.post(
        "/uploads",
        content=b'{"filename": "' + b"a" * 70_000 + b'"}',
        headers={**api.auth(new_sub()), "Content-Type": "application/json"},
    )
    _problem(answer, 413, "request_too_large")


async def test_file_over_the_size_limit_is_413(api: Api) -> None:
    answer = await api.create(new_sub(), {**GOOD, "size": api.settings.max_file_size + 1})
    _problem(answer, 413, "file_too_large")


async def test_huge_size_is_413_not_a_database_error(api: Api) -> None:
    _problem(await api.create(new_sub(), {**GOOD, "size": 10**30}), 413, "file_too_large")


async def test_content_type_outside_the_allow_list_is_415(api: Api) -> None:
    images = api.settings.model_copy(
        update={"allowed_content_types": ["image/*", "application/pdf"]}
    )
    async with running_app(images) as client:
        refused = await client.post("/uploads", json=GOOD, headers=api.auth(new_sub()))
        allowed = await client.post(
            "/uploads", json={**GOOD, "content_type": "image/png"}, headers=api.auth(new_sub())
        )
    _problem(refused, 415, "content_type_not_allowed")
    assert allowed.status_code == 201


SNIFFED = ["unknown/unknown", "application/unknown", "application/x-unknown-content-type"]


@pytest.mark.parametrize("content_type", SNIFFED)
@pytest.mark.parametrize("patterns", [["*/*"], ["application/*", "unknown/*"]])
async def test_a_sniffed_type_matched_only_by_a_wildcard_is_422(
    api: Api, content_type: str, patterns: list[str]
) -> None:
    wildcards = api.settings.model_copy(update={"allowed_content_types": patterns})
    async with running_app(wildcards) as client:
        refused = await client.post(
            "/uploads", json={**GOOD, "content_type": content_type}, headers=api.auth(new_sub())
        )
    problem = _problem(refused, 422, "validation_error")
    assert problem["errors"][0]["loc"] == ["body", "content_type"]


@pytest.mark.parametrize("content_type", SNIFFED)
async def test_a_sniffed_type_listed_exactly_is_admitted(api: Api, content_type: str) -> None:
    listed = api.settings.model_copy(update={"allowed_content_types": ["*/*", content_type]})
    async with running_app(listed) as client:
        admitted = await client.post(
            "/uploads", json={**GOOD, "content_type": content_type}, headers=api.auth(new_sub())
        )
    assert admitted.status_code == 201, admitted.text


async def test_missing_token_is_401_missing_token(api: Api) -> None:
    answer = await api.client.post("/uploads", json=GOOD)
    _problem(answer, 401, "missing_token")
    assert answer.headers["www-authenticate"] == "Bearer"


@pytest.mark.parametrize("header", ["Bearer nope", "Basic dXNlcjpwYXNz", "Bearer a.b.c"])
async def test_bad_token_is_401_invalid_token(api: Api, header: str) -> None:
    answer = await api.client.get("/files", headers={"Authorization": header})
    _problem(answer, 401, "invalid_token")
    assert answer.headers["www-authenticate"] == 'Bearer error="invalid_token"'


@pytest.mark.parametrize(
    "claims",
    [
        {"sub": "\ud800"},
        {"sub": "al\nice"},
        {"exp": 10**400},
        {"nbf": -(10**400)},
        {"iat": 10**309},
    ],
    ids=["sub-lone-surrogate", "sub-newline", "exp-10e400", "nbf-minus-10e400", "iat-10e309"],
)
async def test_signed_token_with_unusable_claims_is_401_invalid_token(
    api: Api, claims: dict[str, Any]
) -> None:
    now = int(time.time())
    token = hs256_token({"sub": new_sub(), "iat": now, "exp": now + 600, **claims})
    headers = {"Authorization": f"Bearer {token}"}
    for answer in (
        await api.client.post("/uploads", json=GOOD, headers=headers),
        await api.client.get("/files", headers=headers),
    ):
        _problem(answer, 401, "invalid_token")
        assert answer.headers["www-authenticate"] == 'Bearer error="invalid_token"'
        assert token not in answer.text


# --- idempotency ------------------------------------------------------------------------------


async def test_idempotent_retry_returns_the_same_file_with_200(api: Api) -> None:
    owner, key = new_sub(), {"Idempotency-Key": "order-42"}
    first = await api.create(owner, GOOD, key)
    second = await api.create(owner, GOOD, key)
    assert first.status_code == 201
    assert second.status_code == 200
    assert second.json()["file"]["id"] == first.json()["file"]["id"]
    assert second.json()["upload"]["url"].startswith("http")
    listing = await api.client.get("/files", headers=api.auth(owner))
    assert len(listing.json()["items"]) == 1


async def test_same_key_with_another_body_is_422(api: Api) -> None:
    owner, key = new_sub(), {"Idempotency-Key": "order-43"}
    assert (await api.create(owner, GOOD, key)).status_code == 201
    other = await api.create(owner, {**GOOD, "size": 6}, key)
    _problem(other, 422, "idempotency_key_reused")


async def test_same_key_from_another_owner_is_a_new_file(api: Api) -> None:
    key = {"Idempotency-Key": "shared-key"}
    first = await api.create(new_sub(), GOOD, key)
    second = await api.create(new_sub(), GOOD, key)
    assert first.status_code == second.status_code == 201
    assert first.json()["file"]["id"] != second.json()["file"]["id"]


async def test_concurrent_requests_with_one_key_make_one_file(api: Api) -> None:
    owner, key = new_sub(), {"Idempotency-Key": "burst"}
    answers = await asyncio.gather(*(api.create(owner, GOOD, key) for _ in range(8)))
    assert sorted(a.status_code for a in answers) == [200] * 7 + [201]
    assert len({a.json()["file"]["id"] for a in answers}) == 1
    engine = sql_engine(api.settings.database_url)
    try:
        with engine.connect() as conn:
            rows = conn.execute(
                select(func.count()).select_from(files_table).where(files_table.c.owner_id == owner)
            ).scalar_one()
    finally:
        engine.dispose()
    assert rows == 1


async def test_replaying_a_completed_upload_is_409(api: Api, s3_http: httpx.AsyncClient) -> None:
    owner, key = new_sub(), {"Idempotency-Key": "done"}
    created = await api.create(owner, GOOD, key)
    upload = created.json()["upload"]
    await s3_http.put(upload["url"], content=b"hello", headers=upload["headers"])
    assert (await api.complete(owner, created.json()["file"]["id"])).status_code == 200
    _problem(await api.create(owner, GOOD, key), 409, "not_pending")


@pytest.mark.parametrize("key", ["", "x" * 256, "caf\u00e9"])
async def test_invalid_idempotency_key_is_422(api: Api, key: str) -> None:
    answer = await api.client.post(
        "/uploads",
        json=GOOD,
        headers={**api.auth(new_sub()), "Idempotency-Key": key.encode()},
    )
    _problem(answer, 422, "validation_error")


# --- abandoning and deleting ------------------------------------------------------------------


def _key_of(upload: dict[str, Any]) -> str:
    return urlsplit(upload["url"]).path.split("/", 2)[2]


async def test_abandoning_a_pending_upload_removes_object_and_file(
    api: Api, s3_http: httpx.AsyncClient, s3_server: EmbeddedS3
) -> None:
    owner = new_sub()
    file, upload = await api.upload(s3_http, owner, b"partial", content_type="text/plain")
    assert object_exists(s3_server, api.settings.s3_bucket, _key_of(upload))
    answer = await api.client.delete(f"/uploads/{file['id']}", headers=api.auth(owner))
    assert answer.status_code == 204
    assert not object_exists(s3_server, api.settings.s3_bucket, _key_of(upload))
    assert (
        await api.client.get(f"/files/{file['id']}", headers=api.auth(owner))
    ).status_code == 404


async def test_abandoning_an_available_file_is_409(api: Api, s3_http: httpx.AsyncClient) -> None:
    owner = new_sub()
    file, _ = await api.upload(s3_http, owner, b"kept", content_type="text/plain")
    assert (await api.complete(owner, file["id"])).status_code == 200
    answer = await api.client.delete(f"/uploads/{file['id']}", headers=api.auth(owner))
    _problem(answer, 409, "not_pending")


async def test_deleting_a_file_removes_its_object_and_a_second_delete_is_404(
    api: Api, s3_http: httpx.AsyncClient, s3_server: EmbeddedS3
) -> None:
    owner = new_sub()
    file, upload = await api.upload(s3_http, owner, b"bye", content_type="text/plain")
    assert (await api.complete(owner, file["id"])).status_code == 200
    first = await api.client.delete(f"/files/{file['id']}", headers=api.auth(owner))
    second = await api.client.delete(f"/files/{file['id']}", headers=api.auth(owner))
    assert first.status_code == 204
    _problem(second, 404, "not_found")
    assert not object_exists(s3_server, api.settings.s3_bucket, _key_of(upload))
    listing = await api.client.get("/files", headers=api.auth(owner))
    assert listing.json()["items"] == []
    download = await api.client.get(f"/downloads/{file['id']}", headers=api.auth(owner))
    _problem(download, 404, "not_found")


async def test_download_of_a_pending_file_is_409(api: Api) -> None:
    owner = new_sub()
    created = await api.create(owner, GOOD)
    answer = await api.client.get(
        f"/downloads/{created.json()['file']['id']}", headers=api.auth(owner)
    )
    _problem(answer, 409, "file_not_available")


@pytest.mark.parametrize("query", ["disposition=evil", "redirect=maybe"])
async def test_bad_download_query_is_422(api: Api, query: str) -> None:
    owner = new_sub()
    created = await api.create(owner, GOOD)
    answer = await api.client.get(
        f"/downloads/{created.json()['file']['id']}?{query}", headers=api.auth(owner)
    )
    _problem(answer, 422, "validation_error")


# --- listing ----------------------------------------------------------------------------------


async def test_listing_pages_newest_first_with_a_cursor(api: Api) -> None:
    owner = new_sub()
    ids = []
    for index in range(5):
        created = await api.create(owner, {**GOOD, "filename": f"f{index}.txt"})
        ids.append(created.json()["file"]["id"])
    seen, cursor = [], None
    while True:
        query = f"/files?limit=2{'&cursor=' + cursor if cursor else ''}"
        page = (await api.client.get(query, headers=api.auth(owner))).json()
        assert len(page["items"]) <= 2
        seen += [item["id"] for item in page["items"]]
        cursor = page["next_cursor"]
        if cursor is None:
            break
    assert seen == list(reversed(ids))


@pytest.mark.parametrize("query", ["limit=0", "limit=201", "limit=x", "cursor=%21%21"])
async def test_bad_listing_query_is_422(api: Api, query: str) -> None:
    answer = await api.client.get(f"/files?{query}", headers=api.auth(new_sub()))
    _problem(answer, 422, "validation_error")


@pytest.mark.parametrize(
    "content_type", ["text/plain", "application/x-www-form-urlencoded", None], ids=str
)
async def test_a_json_body_under_another_content_type_is_415_saying_so(
    api: Api, content_type: str | None
) -> None:
    body = json.dumps({"filename": "a.txt", "content_type": "text/plain", "size": 3})
    headers = {**api.auth(new_sub())}
    if content_type is not None:
        headers["Content-Type"] = content_type
    answer = await api.client.post("/uploads", content=body, headers=headers)
    assert answer.status_code == 415
    assert answer.json()["code"] == "unsupported_media_type"
    assert "application/json" in answer.json()["detail"]
    labelled = await api.client.post(
        "/uploads", content=body, headers={**headers, "Content-Type": "application/json"}
    )
    assert labelled.status_code == 201


async def test_a_missing_body_is_still_a_422_validation_error(api: Api) -> None:
    answer = await api.client.post("/uploads", headers=api.auth(new_sub()))
    assert answer.status_code == 422
    assert answer.json()["code"] == "validation_error"
