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

import httpx
import pytest

from app.config import Settings
from app.devstack import EmbeddedS3
from app.migrate import run_migrations
from app.storage.posture import setup_bucket
from app.usecases.plans import object_key
from devkit.stores import StoreUnavailable, ceph_rgw, localstack
from tests.support import TEST_JWT_SECRET, Api, new_sub, running_app, sha256_b64, unavailable

REQUIRE_STORES = os.environ.get("S3GATE_TEST_REQUIRE_STORES") == "1"
STORES = ("seaweedfs", "localstack", "ceph")
# What each store does not enforce, as seen here (docs/stores.md): the tests assert these gaps.
STORE_GAPS: dict[str, frozenset[str]] = {
    "seaweedfs": frozenset(),
    # Serves anonymous GETs of any object.
    "localstack": frozenset({"anonymous_get_served"}),
    # Records no SHA-256 (completion hashes the object itself instead).
    "ceph": frozenset({"no_checksum_recorded"}),
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


async def test_a_wrong_body_for_the_declared_checksum_never_becomes_available(
    contract: tuple[str, EmbeddedS3, Api], s3_http: httpx.AsyncClient
) -> None:
    _, _, api = contract
    sub, data = new_sub(), secrets.token_bytes(3000)
    created = await api.created(
        sub,
        {
            "filename": "f.bin",
            "content_type": "application/octet-stream",
            "size": len(data),
            "checksum_sha256": sha256_b64(data),
        },
    )
    upload = created["upload"]
    forged = secrets.token_bytes(len(data))
    put = await s3_http.put(upload["url"], content=forged, headers=upload["headers"])
    completed = await api.complete(sub, created["file"]["id"])
    if put.status_code == 200:  # the store did not check the signed checksum: completion does
        assert completed.status_code == 422, completed.text
        assert completed.json()["code"] == "upload_rejected"
    else:
        assert put.status_code == 400, put.text  # BadDigest
        assert completed.status_code == 409, completed.text  # nothing was stored


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


async def test_a_form_upload_ends_available_with_the_same_bytes(
    contract: tuple[str, EmbeddedS3, Api], s3_http: httpx.AsyncClient
) -> None:
    _, _, api = contract
    sub, data = new_sub(), b"%PDF-1.4\n" + secrets.token_bytes(2000)
    created = await api.created(
        sub,
        {
            "filename": "scan.pdf",
            "content_type": "application/pdf",
            "size": len(data),
            "form": True,
            "checksum_sha256": sha256_b64(data),
        },
    )
    upload = created["upload"]
    posted = await s3_http.post(
        upload["url"], data=upload["fields"], files={"file": ("scan.pdf", data, "application/pdf")}
    )
    assert posted.status_code in (200, 201, 204), posted.text
    await _completes(api, sub, created["file"]["id"])
    assert await _download(api, s3_http, sub, created["file"]["id"]) == data


async def test_an_unsigned_acl_header_never_makes_an_object_public(
    contract: tuple[str, EmbeddedS3, Api], s3_http: httpx.AsyncClient
) -> None:
    kind, _, api = contract
    sub, data = new_sub(), secrets.token_bytes(100)
    created = await api.created(
        sub, {"filename": "f.bin", "content_type": "application/octet-stream", "size": len(data)}
    )
    upload = created["upload"]
    put = await s3_http.put(
        upload["url"], content=data, headers={**upload["headers"], "x-amz-acl": "public-read"}
    )
    plain = upload["url"].split("?", 1)[0]
    anonymous = await s3_http.get(plain)
    if put.status_code != 200:
        assert put.status_code == 403, put.text  # refused: the header is not signed
        return
    if "anonymous_get_served" in STORE_GAPS[kind]:
        assert anonymous.status_code == 200  # the declared gap: it serves every object
        return
    assert anonymous.status_code == 403, anonymous.text


def _key(api: Api, sub: str, file_id: str) -> str:
    return object_key(api.settings.s3_key_prefix, sub, uuid.UUID(file_id))
