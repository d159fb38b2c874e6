"""The store contract, on three real S3 implementations (issue 13, item 6): SeaweedFS, LocalStack
and Ceph RADOS Gateway. Every upload path ends `available` with the same bytes back; a wrong
body for a declared checksum never becomes available; an unsigned ACL header never makes an
object public. What a store does not enforce is declared once, in STORE_GAPS, and each gap is
asserted to still be there (so a store that gains the feature fails the test until the table
is updated), never skipped silently.

LocalStack and Ceph start once per run (devkit/stores.py); without their software the tests
skip, or fail where the run requires them (CI: S3GATE_TEST_REQUIRE_STORES=1).
"""

from __future__ import annotations

import contextlib
import os
import secrets
import uuid
from collections.abc import AsyncIterator, Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest

from app.config import Settings
from app.devstack import EmbeddedS3
from app.lifespan import s3_clients, signer_factory
from app.migrate import run_migrations
from app.profiles import PROFILES
from app.storage import ensure_bucket
from app.storage.posture import setup_bucket
from app.usecases.plans import object_key
from app.usecases.probe import probe, resolve_profile
from devkit.stores import StoreUnavailable, ceph_rgw, localstack
from tests.support import TEST_JWT_SECRET, Api, new_sub, running_app, sha256_b64, unavailable

REQUIRE_STORES = os.environ.get("S3GATE_TEST_REQUIRE_STORES") == "1"
STORES = ("seaweedfs", "localstack", "ceph")
# What each store does not enforce, as seen here (docs/stores.md): the tests assert these gaps.
STORE_GAPS: dict[str, frozenset[str]] = {
    "seaweedfs": frozenset(),
    # Serves anonymous GETs of any object; checks neither the signature nor the fields of a
    # form POST (so its profile refuses forms).
    "localstack": frozenset({"anonymous_get_served", "no_form_policy_check"}),
    # Records no SHA-256 (completion hashes the object itself instead); honours an unsigned
    # x-amz-acl (so its profile signs one).
    "ceph": frozenset({"no_checksum_recorded", "honours_unsigned_acl"}),
}
PROBE_CHECKS = (
    "write",
    "wrong-content-type",
    "wrong-length",
    "wrong-body-for-checksum",
    "checksum-recorded",
    "create-only",
    "unsigned-acl",
    "unsigned-metadata",
    "anonymous-get",
    "expired-url",
    "response-content-disposition",
    "form-upload",
    "form-size-range",
    "form-tampered-signature",
    "multipart",
    "cors-preflight",
    "cors-foreign-origin",
)
# `s3gate bucket check --probe` on each store under the profile `auto` measures: the checks
# that are not `ok` (docs/stores.md has the whole output).
PROBE_NOT_OK: dict[str, dict[str, str]] = {
    "seaweedfs": {},
    "localstack": {
        "anonymous-get": "problem",
        "form-upload": "unsupported",
        "form-size-range": "unsupported",
        "form-tampered-signature": "unsupported",
    },
    "ceph": {
        "wrong-body-for-checksum": "unsupported",
        "checksum-recorded": "unsupported",
        "unsigned-metadata": "unsupported",
    },
}
PART = 5 * 1024 * 1024


@contextlib.contextmanager
def _started(kind: str, workdir: Path) -> Iterator[EmbeddedS3]:
    starter = localstack if kind == "localstack" else ceph_rgw
    with contextlib.ExitStack() as stack:
        try:
            server = stack.enter_context(starter(workdir))
        except StoreUnavailable as exc:
            unavailable(f"{kind}: {exc}", required=REQUIRE_STORES)
        yield server


@pytest.fixture(scope="session")
def localstack_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[EmbeddedS3]:
    with _started("localstack", tmp_path_factory.mktemp("localstack")) as server:
        yield server


@pytest.fixture(scope="session")
def ceph_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[EmbeddedS3]:
    with _started("ceph", tmp_path_factory.mktemp("ceph")) as server:
        yield server


@pytest.fixture(scope="session", params=STORES)
def store(
    request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory
) -> tuple[str, EmbeddedS3, str]:
    """(store name, server, a bucket set up by `s3gate bucket setup`) for one store."""
    kind: str = request.param
    fixture = {"seaweedfs": "s3_server", "localstack": "localstack_server"}.get(kind, "ceph_server")
    server: EmbeddedS3 = request.getfixturevalue(fixture)
    bucket = f"s3gate-contract-{secrets.token_hex(4)}"
    settings = _settings(server, bucket, tmp_path_factory.mktemp("setup"))
    server.client().create_bucket(Bucket=bucket)
    states = {check.name: check.state for check in setup_bucket(server.client(), settings)}
    assert states.get("write-probe") == "ok", states
    return kind, server, bucket


def _settings(server: EmbeddedS3, bucket: str, ledger_dir: Path) -> Settings:
    return Settings(
        _env_file=None,  # type: ignore[call-arg]
        database_url=f"sqlite:///{ledger_dir / 'ledger.db'}",
        s3_bucket=bucket,
        s3_region=server.region,
        s3_endpoint_url=server.endpoint_url,
        s3_addressing_style="path",
        jwt_secret=TEST_JWT_SECRET,  # type: ignore[arg-type]
        rate_limit_per_minute=0,
        part_size=PART,  # two parts for a file of PART + a little
    )


@pytest.fixture
async def contract(
    store: tuple[str, EmbeddedS3, str], tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> AsyncIterator[tuple[str, EmbeddedS3, Api]]:
    kind, server, bucket = store
    monkeypatch.setenv("AWS_ACCESS_KEY_ID", server.access_key)
    monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", server.secret_key)
    settings = _settings(server, bucket, tmp_path)
    run_migrations(settings.database_url)
    async with running_app(settings) as client:
        yield kind, server, Api(client, settings)


async def _download(api: Api, s3_http: httpx.AsyncClient, sub: str, file_id: str) -> bytes:
    answer = await api.client.get(f"/downloads/{file_id}", headers=api.auth(sub))
    assert answer.status_code == 200, answer.text
    fetched = await s3_http.get(answer.json()["url"])
    assert fetched.status_code == 200, fetched.text
    return fetched.content


async def _completes(api: Api, sub: str, file_id: str) -> None:
    completed = await api.complete(sub, file_id)
    assert completed.status_code == 200, completed.text
    assert completed.json()["status"] == "available"


@pytest.mark.parametrize("checksum", [True, False], ids=["with-sha256", "without"])
async def test_a_put_ends_available_with_the_same_bytes(
    contract: tuple[str, EmbeddedS3, Api], s3_http: httpx.AsyncClient, checksum: bool
) -> None:
    kind, server, api = contract
    sub, data = new_sub(), secrets.token_bytes(3000)
    file, _ = await api.upload(s3_http, sub, data, checksum=checksum)
    if checksum:
        head = server.client().head_object(
            Bucket=api.settings.s3_bucket, Key=_key(api, sub, file["id"]), ChecksumMode="ENABLED"
        )
        recorded = head.get("ChecksumSHA256") == sha256_b64(data)
        assert recorded is ("no_checksum_recorded" not in STORE_GAPS[kind])
    await _completes(api, sub, file["id"])
    assert await _download(api, s3_http, sub, file["id"]) == data


async def _send_wrong_body(
    api: Api, s3_http: httpx.AsyncClient, sub: str, path: str, size: int, checksum: str
) -> tuple[str, int] | None:
    """Declare `checksum`, send other bytes of the same size by `path`; (file id, the store's
    status for the bytes), or None where the path is refused up front."""
    body = {
        "filename": "f.bin",
        "content_type": "application/octet-stream",
        "size": size,
        "checksum_sha256": checksum,
        "form": path == "form",
        "multipart": path == "multipart",
    }
    answer = await api.create(sub, body)
    if answer.status_code == 422 and answer.json()["code"] == "form_upload_unsupported":
        return None
    assert answer.status_code == 201, answer.text
    created = answer.json()
    file_id, upload = created["file"]["id"], created["upload"]
    forged = secrets.token_bytes(size)
    if path == "put":
        sent = await s3_http.put(upload["url"], content=forged, headers=upload["headers"])
    elif path == "form":
        files = {"file": ("f.bin", forged, "application/octet-stream")}
        sent = await s3_http.post(upload["url"], data=upload["fields"], files=files)
    else:
        parts = await api.client.post(
            f"/uploads/{file_id}/parts", json={"part_numbers": [1, 2]}, headers=api.auth(sub)
        )
        part_size = upload["part_size"]
        for part in parts.json()["parts"]:
            start = (part["part_number"] - 1) * part_size
            chunk = forged[start : start + part_size]
            sent = await s3_http.put(part["url"], content=chunk, headers=part["headers"])
            assert sent.status_code == 200, sent.text  # parts carry no whole-file checksum
    return file_id, sent.status_code


@pytest.mark.parametrize("path", ["put", "form", "multipart"])
async def test_a_wrong_body_for_the_declared_checksum_never_becomes_available(
    contract: tuple[str, EmbeddedS3, Api], s3_http: httpx.AsyncClient, path: str
) -> None:
    kind, _, api = contract
    sub = new_sub()
    size = PART + 1234 if path == "multipart" else 3000
    declared = sha256_b64(secrets.token_bytes(size))
    sent = await _send_wrong_body(api, s3_http, sub, path, size, declared)
    if sent is None:  # forms refused up front (the store checks no policy)
        assert "no_form_policy_check" in STORE_GAPS[kind]
        return
    file_id, status = sent
    completed = await api.complete(sub, file_id)
    if status in (200, 201, 204):  # the store did not check the signed checksum: completion does
        assert completed.status_code == 422, completed.text
        assert completed.json()["code"] == "upload_rejected"
    else:
        assert status == 400  # BadDigest (or the form's policy): nothing stored
        assert completed.status_code == 409, completed.text
    link = await api.client.get(f"/downloads/{file_id}", headers=api.auth(sub))
    assert link.status_code in (404, 409), link.text  # never downloadable


async def test_a_multipart_upload_with_a_shorter_last_part_ends_available(
    contract: tuple[str, EmbeddedS3, Api], s3_http: httpx.AsyncClient
) -> None:
    _, _, api = contract
    sub, data = new_sub(), secrets.token_bytes(PART + 1234)
    created = await api.created(
        sub,
        {
            "filename": "big.bin",
            "content_type": "application/octet-stream",
            "size": len(data),
            "multipart": True,
            "checksum_sha256": sha256_b64(data),
        },
    )
    file_id, part_size = created["file"]["id"], created["upload"]["part_size"]
    answer = await api.client.post(
        f"/uploads/{file_id}/parts", json={"part_numbers": [1, 2]}, headers=api.auth(sub)
    )
    assert answer.status_code == 200, answer.text
    for part in answer.json()["parts"]:
        start = (part["part_number"] - 1) * part_size
        put = await s3_http.put(
            part["url"], content=data[start : start + part_size], headers=part["headers"]
        )
        assert put.status_code == 200, put.text
    await _completes(api, sub, file_id)
    assert await _download(api, s3_http, sub, file_id) == data


async def test_a_form_upload_ends_available_or_is_refused_up_front(
    contract: tuple[str, EmbeddedS3, Api], s3_http: httpx.AsyncClient
) -> None:
    kind, _, api = contract
    sub, data = new_sub(), b"%PDF-1.4\n" + secrets.token_bytes(2000)
    answer = await api.create(
        sub,
        {
            "filename": "scan.pdf",
            "content_type": "application/pdf",
            "size": len(data),
            "form": True,
            "checksum_sha256": sha256_b64(data),
        },
    )
    if "no_form_policy_check" in STORE_GAPS[kind]:  # a form would bind nothing there
        assert answer.status_code == 422, answer.text
        assert answer.json()["code"] == "form_upload_unsupported"
        return
    assert answer.status_code == 201, answer.text
    created = answer.json()
    upload = created["upload"]
    posted = await s3_http.post(
        upload["url"], data=upload["fields"], files={"file": ("scan.pdf", data, "application/pdf")}
    )
    assert posted.status_code in (200, 201, 204), posted.text
    await _completes(api, sub, created["file"]["id"])
    assert await _download(api, s3_http, sub, created["file"]["id"]) == data


async def test_an_unsigned_acl_header_never_makes_an_object_public_even_without_setup(
    store: tuple[str, EmbeddedS3, str],
    s3_http: httpx.AsyncClient,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """On a bucket `bucket setup` never touched (no IgnorePublicAcls): where the store honours
    unsigned ACL headers (Ceph), `auto` signs one, and any other ACL breaks the signature."""
    kind, server, _ = store
    monkeypatch.setenv("AWS_ACCESS_KEY_ID", server.access_key)
    monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", server.secret_key)
    raw = f"s3gate-raw-{secrets.token_hex(4)}"
    server.client().create_bucket(Bucket=raw)
    settings = _settings(server, raw, tmp_path)
    run_migrations(settings.database_url)
    async with running_app(settings) as client:
        api = Api(client, settings)
        sub, data = new_sub(), secrets.token_bytes(100)
        body = {"filename": "f.bin", "content_type": "application/octet-stream", "size": len(data)}
        upload = (await api.created(sub, body))["upload"]
        assert ("x-amz-acl" in upload["headers"]) is ("honours_unsigned_acl" in STORE_GAPS[kind])
        public = {**upload["headers"], "x-amz-acl": "public-read"}
        put = await s3_http.put(upload["url"], content=data, headers=public)
        assert put.status_code == 403, put.text  # unsigned, or not the signed value
        sent = await s3_http.put(upload["url"], content=data, headers=upload["headers"])
        assert sent.status_code == 200, sent.text
    anonymous = await s3_http.get(upload["url"].split("?", 1)[0])
    # Private, except on the store that serves every object (its declared gap).
    assert anonymous.is_success is ("anonymous_get_served" in STORE_GAPS[kind]), anonymous.text


def _clients(server: EmbeddedS3, settings: Settings, monkeypatch: pytest.MonkeyPatch) -> Any:
    monkeypatch.setenv("AWS_ACCESS_KEY_ID", server.access_key)
    monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", server.secret_key)
    return s3_clients(settings)


def test_auto_measures_each_store_as_its_tested_profile(
    store: tuple[str, EmbeddedS3, str], tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    kind, server, bucket = store
    settings = _settings(server, bucket, tmp_path)
    storage_client, signing_client, credentials = _clients(server, settings, monkeypatch)
    with contextlib.closing(storage_client), contextlib.closing(signing_client):
        profile, how = resolve_profile(
            storage_client, signer_factory(signing_client, credentials, settings), settings
        )
    assert how == f"measured (like {kind})", profile
    assert PROFILES[kind].evidence == "tested here"


def test_bucket_check_probe_finds_what_each_store_enforces(
    store: tuple[str, EmbeddedS3, str], tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    kind, server, bucket = store
    settings = _settings(server, bucket, tmp_path).model_copy(
        update={"cors_origins": ["https://app.example.com"]}
    )
    ensure_bucket(server.client(), bucket, settings.cors_origins)
    storage_client, signing_client, credentials = _clients(server, settings, monkeypatch)
    with contextlib.closing(storage_client), contextlib.closing(signing_client):
        signer_for = signer_factory(signing_client, credentials, settings)
        profile, _ = resolve_profile(storage_client, signer_for, settings)
        checks = probe(storage_client, signer_for, settings, profile)
    not_ok = {c.name: c.state for c in checks if c.state != "ok"}
    assert not_ok == PROBE_NOT_OK[kind], [c for c in checks if c.state != "ok"]
    assert [c.name for c in checks] == list(PROBE_CHECKS)
    probes = f"{settings.s3_key_prefix}.s3gate-probe/"
    left = server.client().list_objects_v2(Bucket=bucket, Prefix=probes).get("KeyCount", 0)
    assert left == 0


def _key(api: Api, sub: str, file_id: str) -> str:
    return object_key(api.settings.s3_key_prefix, sub, uuid.UUID(file_id))
