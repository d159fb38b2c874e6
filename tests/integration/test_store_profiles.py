"""Store profiles (S3GATE_STORE_PROFILE) change what upload URLs bind and how completion proves
the bytes; each adaptation is tried here on SeaweedFS, which checks SigV4 and every signed
header, so a URL that binds something the client does not send fails for real.

The three stores' own profiles, measured by `auto` and probed, are in test_store_contract.py.
"""

from __future__ import annotations

import dataclasses
import secrets
import uuid
from collections.abc import AsyncIterator

import httpx
import pytest

from app.config import Settings
from app.devstack import EmbeddedS3
from app.lifespan import s3_clients, signer_factory
from app.profiles import PROFILES, SIGNED_ACL
from app.storage import ObjectInfo, Storage
from app.usecases.plans import object_key
from app.usecases.probe import measure, resolve_profile
from tests.support import Api, new_sub, object_exists, running_app, sha256_b64


@pytest.fixture
async def profiled(request: pytest.FixtureRequest, settings: Settings) -> AsyncIterator[Api]:
    profiled = settings.model_copy(update={"store_profile": request.param})
    async with running_app(profiled) as client:
        yield Api(client, profiled)


def _body(data: bytes, **extra: object) -> dict[str, object]:
    return {
        "filename": "f.bin",
        "content_type": "application/octet-stream",
        "size": len(data),
    } | extra


@pytest.mark.parametrize("profiled", ["minio"], indirect=True)
async def test_without_create_only_a_put_is_staged_and_a_url_used_again_changes_nothing(
    profiled: Api, s3_http: httpx.AsyncClient, s3_server: EmbeddedS3
) -> None:
    api, sub = profiled, new_sub()
    data, other = secrets.token_bytes(2000), secrets.token_bytes(2000)
    created = await api.created(sub, _body(data))
    upload, file_id = created["upload"], created["file"]["id"]
    assert "If-None-Match" not in upload["headers"]
    assert upload["url"].split("?", 1)[0].endswith(".upload")  # the staging key
    assert (await s3_http.put(upload["url"], content=data, headers=upload["headers"])).is_success
    done = await api.complete(sub, file_id)
    assert done.json()["status"] == "available", done.text
    # The URL still lives: used again, it writes the staging key, never the verified object.
    again = await s3_http.put(upload["url"], content=other, headers=upload["headers"])
    assert again.is_success, again.text
    link = await api.client.get(f"/downloads/{file_id}", headers=api.auth(sub))
    assert (await s3_http.get(link.json()["url"])).content == data
    key = object_key(api.settings.s3_key_prefix, sub, uuid.UUID(file_id))
    assert object_exists(s3_server, api.settings.s3_bucket, key)


@pytest.mark.parametrize("profiled", ["ceph"], indirect=True)
async def test_a_signed_acl_is_sent_by_the_client_and_any_other_acl_breaks_the_signature(
    profiled: Api, s3_http: httpx.AsyncClient
) -> None:
    api, sub, data = profiled, new_sub(), secrets.token_bytes(500)
    created = await api.created(sub, _body(data))
    upload = created["upload"]
    assert upload["headers"]["x-amz-acl"] == SIGNED_ACL
    public = {**upload["headers"], "x-amz-acl": "public-read"}
    refused = await s3_http.put(upload["url"], content=data, headers=public)
    assert refused.status_code == 403, refused.text
    sent = await s3_http.put(upload["url"], content=data, headers=upload["headers"])
    assert sent.is_success, sent.text
    assert (await api.complete(sub, created["file"]["id"])).json()["status"] == "available"

    form = await api.created(new_sub(), _body(data, form=True))
    assert form["upload"]["fields"]["acl"] == SIGNED_ACL


@pytest.mark.parametrize("profiled", ["r2"], indirect=True)
async def test_without_store_checksums_the_url_binds_none_and_completion_hashes(
    profiled: Api, s3_http: httpx.AsyncClient
) -> None:
    api, sub = profiled, new_sub()
    data = secrets.token_bytes(3000)
    right = await api.created(sub, _body(data, checksum_sha256=sha256_b64(data)))
    assert "x-amz-checksum-sha256" not in right["upload"]["headers"]
    put = await s3_http.put(
        right["upload"]["url"], content=data, headers=right["upload"]["headers"]
    )
    assert put.is_success
    assert (await api.complete(sub, right["file"]["id"])).json()["status"] == "available"

    wrong = await api.created(sub, _body(data, checksum_sha256=sha256_b64(data)))
    forged = secrets.token_bytes(len(data))
    put = await s3_http.put(
        wrong["upload"]["url"], content=forged, headers=wrong["upload"]["headers"]
    )
    assert put.is_success  # nothing at the store binds the checksum now
    rejected = await api.complete(sub, wrong["file"]["id"])
    assert rejected.status_code == 422, rejected.text
    assert rejected.json()["code"] == "upload_rejected"


@pytest.mark.parametrize("profiled", ["r2", "localstack"], indirect=True)
async def test_form_uploads_are_refused_up_front_where_the_store_checks_no_policy(
    profiled: Api,
) -> None:
    answer = await profiled.create(new_sub(), _body(b"x" * 10, form=True))
    assert answer.status_code == 422, answer.text
    assert answer.headers["content-type"] == "application/problem+json"
    assert answer.json()["code"] == "form_upload_unsupported"


def test_auto_measures_seaweedfs_as_its_profile_and_leaves_no_probe_object(
    settings: Settings, s3_server: EmbeddedS3
) -> None:
    auto = settings.model_copy(update={"store_profile": "auto"})
    storage_client, signing_client, credentials = s3_clients(auto)
    try:
        signer_for = signer_factory(signing_client, credentials, auto)
        measured = measure(storage_client, signer_for, auto)
        profile, how = resolve_profile(storage_client, signer_for, auto)
    finally:
        storage_client.close()
        signing_client.close()
    assert measured.closest() == "seaweedfs"
    assert profile.name == "auto"
    assert how == "measured (like seaweedfs)"
    probes = f"{auto.s3_key_prefix}.s3gate-probe/"
    listed = s3_server.client().list_objects_v2(Bucket=auto.s3_bucket, Prefix=probes)
    assert listed.get("KeyCount", 0) == 0, listed.get("Contents")


def test_auto_falls_back_to_proving_everything_when_the_probe_cannot_run(
    settings: Settings,
) -> None:
    nowhere = settings.model_copy(
        update={"store_profile": "auto", "s3_endpoint_url": "http://127.0.0.1:9"}
    )
    storage_client, signing_client, credentials = s3_clients(nowhere)
    try:
        signer_for = signer_factory(signing_client, credentials, nowhere)
        profile, how = resolve_profile(storage_client, signer_for, nowhere)
    finally:
        storage_client.close()
        signing_client.close()
    assert profile.name == "unknown", how
    assert "the probe could not run" in how
    assert not profile.checksums_enforced
    assert not profile.create_only
    assert not profile.form_post
    assert PROFILES["seaweedfs"].form_post  # the fallback is stricter than any tested store


@pytest.mark.parametrize("profiled", ["ceph"], indirect=True)
async def test_a_checksum_the_store_returns_but_never_enforced_is_not_trusted(
    profiled: Api, s3_server: EmbeddedS3, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A store that keeps whatever checksum the client sent without checking it (its profile
    says `checksums_enforced: false`) returns the declared SHA-256 on HEAD for other bytes;
    completion hashes them anyway. The store's answer is stood in for by wrapping HEAD."""
    api, sub = profiled, new_sub()
    data = secrets.token_bytes(1000)
    forged = secrets.token_bytes(len(data))
    created = await api.created(sub, _body(data, checksum_sha256=sha256_b64(data)))
    file_id = created["file"]["id"]
    key = object_key(api.settings.s3_key_prefix, sub, uuid.UUID(file_id))
    s3_server.client().put_object(
        Bucket=api.settings.s3_bucket, Key=key, Body=forged, ContentType="application/octet-stream"
    )
    real_head = Storage.head

    async def lying_head(self: Storage, target: str) -> ObjectInfo | None:
        info = await real_head(self, target)
        return None if info is None else dataclasses.replace(info, checksum_sha256=sha256_b64(data))

    monkeypatch.setattr(Storage, "head", lying_head)
    rejected = await api.complete(sub, file_id)
    assert rejected.status_code == 422, rejected.text
    assert rejected.json()["code"] == "upload_rejected"
    assert not object_exists(s3_server, api.settings.s3_bucket, key)


async def test_a_url_re_signed_by_a_replica_with_another_profile_keeps_the_file_create_only(
    settings: Settings, s3_http: httpx.AsyncClient
) -> None:
    """The row decides what a PUT binds: a file created create-only on its own key stays so
    when a replica whose probe said otherwise (here `minio`: staged PUTs) re-signs its URL for
    an Idempotency-Key replay. Else that URL could overwrite the object after completion."""
    sub, data = new_sub(), secrets.token_bytes(700)
    key = {"Idempotency-Key": f"replay-{uuid.uuid4().hex}"}
    async with running_app(settings) as client:
        first = await Api(client, settings).create(sub, _body(data), headers=key)
    assert first.status_code == 201, first.text
    staged = settings.model_copy(update={"store_profile": "minio"})
    async with running_app(staged) as client:
        replay = await Api(client, staged).create(sub, _body(data), headers=key)
    assert replay.status_code == 200, replay.text
    upload = replay.json()["upload"]
    assert upload["headers"]["If-None-Match"] == "*"
    assert upload["url"].split("?", 1)[0] == first.json()["upload"]["url"].split("?", 1)[0]
    assert (await s3_http.put(upload["url"], content=data, headers=upload["headers"])).is_success
    again = await s3_http.put(upload["url"], content=data, headers=upload["headers"])
    assert again.status_code == 412, again.text
