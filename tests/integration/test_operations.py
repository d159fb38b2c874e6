"""Probes, OpenAPI, storage outages, and secrets that must never reach a log line."""

from __future__ import annotations

import json
import logging
import socket
import threading
import time
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import httpx
import pytest
from fastapi.routing import APIRoute
from sqlalchemy import select, text

from app.config import Settings
from app.devstack import EmbeddedS3
from app.http.routers import downloads, files, ops, sharing, uploads
from app.logs import configure_logging
from app.migrate import run_migrations
from app.models import files_table
from devkit.processes import stop_process
from tests.support import (
    S3GATE,
    TEST_JWT_SECRET,
    Api,
    new_sub,
    run_s3gate,
    running_app,
    s3gate_env,
    serve_api,
    sql_engine,
    tiny_png,
)


async def test_healthz_and_readyz_answer_ok(api: Api) -> None:
    health = await api.client.get("/healthz")
    ready = await api.client.get("/readyz")
    assert health.json() == {"status": "ok"}
    assert ready.status_code == 200
    assert ready.json()["checks"] == {
        "database": "ok",
        "migrations": "ok",
        "verification_keys": "ok",
        "s3_credentials": "ok",
    }


async def test_readyz_names_the_failing_database(api: Api) -> None:
    broken = api.settings.model_copy(
        update={"database_url": "postgresql://nobody@127.0.0.1:1/nothing"}
    )
    async with running_app(broken) as client:
        started = time.monotonic()
        ready = await client.get("/readyz")
        health = await client.get("/healthz")
    assert time.monotonic() - started < 5
    assert ready.status_code == 503
    assert ready.json()["code"] == "not_ready"
    assert "database" in ready.json()["detail"]
    assert health.status_code == 200


async def test_openapi_declares_every_route_and_its_errors(api: Api) -> None:
    spec = (await api.client.get("/openapi.json")).json()
    expected = {
        ("/uploads", "post"): {"200", "201", "401", "409", "413", "415", "422", "503"},
        ("/uploads/{file_id}/parts", "post"): {"200", "401", "404", "409", "422", "503"},
        ("/uploads/{file_id}/parts", "get"): {"200", "401", "404", "409", "503"},
        ("/uploads/{file_id}/complete", "post"): {"200", "401", "404", "409", "422", "503"},
        ("/uploads/{file_id}", "delete"): {"204", "401", "404", "409"},
        ("/uploads/settings", "get"): {"200", "401"},
        ("/downloads/{file_id}", "get"): {"200", "307", "401", "404", "409"},
        ("/downloads", "post"): {"200", "401", "422", "429", "503"},
        ("/files/{file_id}/grants", "post"): {"200", "201", "401", "403", "404", "422"},
        ("/files/{file_id}/grants", "get"): {"200", "401", "403", "404"},
        ("/files/{file_id}/grants/{grant_id}", "delete"): {"204", "401", "403", "404"},
        ("/files/{file_id}/links", "post"): {"201", "401", "403", "404", "409", "422"},
        ("/files/{file_id}/links", "get"): {"200", "401", "403", "404"},
        ("/files/{file_id}/links/{link_id}", "delete"): {"204", "401", "403", "404"},
        ("/files/{file_id}/access", "get"): {"200", "401", "403", "404", "422"},
        ("/s/{token}", "get"): {"307", "404", "429"},
        ("/files", "get"): {"200", "401", "403", "422"},
        ("/files/{file_id}", "get"): {"200", "401", "404"},
        ("/files/{file_id}", "delete"): {"204", "401", "404"},
        ("/healthz", "get"): {"200"},
        ("/readyz", "get"): {"200", "503"},
        ("/metrics", "get"): {"200"},
    }
    # The routes the app serves, not a list kept by hand: each is in the document, and each
    # has its expected answers above (a new route fails here until it is given them).
    served = {
        (route.path, method.lower())
        for module in (downloads, files, ops, sharing, uploads)
        for route in module.router.routes
        if isinstance(route, APIRoute) and route.include_in_schema
        for method in route.methods
    }
    assert served == set(expected)
    for (path, method), statuses in expected.items():
        declared = set(spec["paths"][path][method]["responses"])
        assert statuses <= declared, (path, method, statuses - declared)
    upload_errors = spec["paths"]["/uploads"]["post"]["responses"]["409"]["content"]
    assert "not_pending" in upload_errors["application/problem+json"]["examples"]
    assert spec["components"]["securitySchemes"]["HTTPBearer"]["scheme"] == "bearer"
    request_schema = spec["components"]["schemas"]["CreateUploadRequest"]
    assert request_schema["examples"][0]["filename"] == "Résumé 2026.pdf"


@dataclass
class BlackHole:
    url: str
    accepted: list[socket.socket]  # every connection it took, for tests that count them


@pytest.fixture
def black_hole() -> Iterator[BlackHole]:
    """A TCP server that accepts connections and never answers."""
    server = socket.socket()
    server.bind(("127.0.0.1", 0))
    server.listen(64)
    accepted: list[socket.socket] = []
    stop = threading.Event()

    def accept() -> None:
        server.settimeout(0.2)
        while not stop.is_set():
            try:
                accepted.append(server.accept()[0])
            except OSError:
                continue

    thread = threading.Thread(target=accept, daemon=True)
    thread.start()
    yield BlackHole(f"http://127.0.0.1:{server.getsockname()[1]}", accepted)
    stop.set()
    thread.join()
    for conn in accepted:
        conn.close()
    server.close()


@pytest.mark.parametrize("store", ["refused", "silent"])
async def test_store_down_is_a_quick_503_while_signing_still_works(
    api: Api, s3_http: httpx.AsyncClient, black_hole: BlackHole, store: str
) -> None:
    endpoint = "http://127.0.0.1:9" if store == "refused" else black_hole.url
    down = api.settings.model_copy(
        update={
            "s3_endpoint_url": endpoint,
            "s3_public_endpoint_url": api.settings.s3_endpoint_url,
            "storage_connect_timeout_seconds": 0.5,
            "storage_read_timeout_seconds": 0.5,
            "storage_max_attempts": 2,
        }
    )
    owner = new_sub()
    async with running_app(down) as client:
        created = await client.post(
            "/uploads",
            json={"filename": "a.png", "content_type": "image/png", "size": len(tiny_png())},
            headers=api.auth(owner),
        )
        assert created.status_code == 201
        upload = created.json()["upload"]
        put = await s3_http.put(upload["url"], content=tiny_png(), headers=upload["headers"])
        assert put.status_code == 200  # the public endpoint is up; only server-side calls fail

        started = time.monotonic()
        answer = await client.post(
            f"/uploads/{created.json()['file']['id']}/complete", headers=api.auth(owner)
        )
        elapsed = time.monotonic() - started
    assert answer.status_code == 503
    assert answer.json()["code"] == "storage_unavailable"
    assert elapsed < 5
    assert endpoint not in answer.text
    # and nothing was lost: once the store is back, the same upload completes
    done = await api.complete(owner, created.json()["file"]["id"])
    assert done.json()["status"] == "available"


async def test_delete_while_store_is_down_leaves_an_orphan_marker(api: Api) -> None:
    down = api.settings.model_copy(
        update={"s3_endpoint_url": "http://127.0.0.1:9", "storage_max_attempts": 1}
    )
    owner = new_sub()
    async with running_app(down) as client:
        created = await client.post(
            "/uploads",
            json={"filename": "a.txt", "content_type": "text/plain", "size": 1},
            headers=api.auth(owner),
        )
        file_id = created.json()["file"]["id"]
        deleted = await client.delete(f"/files/{file_id}", headers=api.auth(owner))
    assert deleted.status_code == 204
    engine = sql_engine(api.settings.database_url)
    try:
        with engine.connect() as conn:
            row = conn.execute(
                select(files_table.c.status, files_table.c.purged_at).where(
                    files_table.c.id == uuid.UUID(file_id)
                )
            ).one()
    finally:
        engine.dispose()
    assert row.status == "deleted"
    assert row.purged_at is None  # the cleanup job's cue that the object may still be there


@pytest.fixture
def root_logger_restored() -> Iterator[None]:
    """configure_logging changes the process's root logger: put it back after the test."""
    root = logging.getLogger()
    handlers, level = list(root.handlers), root.level
    yield
    for handler in root.handlers[:]:
        if handler not in handlers:
            root.removeHandler(handler)
    root.setLevel(level)


@pytest.mark.parametrize("log_format", ["json", "text"])
@pytest.mark.usefixtures("root_logger_restored")
async def test_no_token_url_or_key_reaches_the_logs(
    api: Api,
    s3_http: httpx.AsyncClient,
    caplog: pytest.LogCaptureFixture,
    capsys: pytest.CaptureFixture[str],
    log_format: str,
) -> None:
    configure_logging("debug", "json" if log_format == "json" else "text")
    caplog.set_level(logging.DEBUG)
    owner = new_sub()
    file, upload = await api.upload(s3_http, owner, tiny_png(), content_type="image/png")
    await api.complete(owner, file["id"])
    download = await api.client.get(
        f"/downloads/{file['id']}?disposition=inline", headers=api.auth(owner)
    )
    await api.client.get("/files", headers={"Authorization": "Bearer garbage.token.here"})
    exposition = (await api.client.get("/metrics")).text

    text = "\n".join(record.getMessage() for record in caplog.records)
    written = capsys.readouterr().err  # the lines as our handler formatted them
    assert "issued upload url" in text  # the audit trail is there...
    assert "issued upload url" in written
    if log_format == "json":
        lines = [json.loads(line) for line in written.splitlines()]
        access = [line for line in lines if line["logger"] == "s3gate.access"]
        routes = [line["route"] for line in access][-3:]
        assert routes == ["/downloads/{file_id}", "/files", "/metrics"]
        assert access[-3]["owner"] == owner
    assert "disposition=inline" not in written  # no query string either
    secrets_seen = [
        api.auth(owner)["Authorization"].split()[1],
        upload["url"].split("X-Amz-Signature=")[1],
        download.json()["url"].split("X-Amz-Signature=")[1],
        "X-Amz-Signature",
        "garbage.token.here",
        TEST_JWT_SECRET,
    ]
    for secret in secrets_seen:  # ...and no secret is, nor in the metrics
        assert secret not in text
        assert secret not in written
        assert secret not in exposition


# --- starting as users do: `s3gate serve` without credentials, on an unmigrated ledger --------

UPLOAD = {"filename": "a.png", "content_type": "image/png", "size": 68}


def test_serve_without_s3_credentials_starts_within_seconds_and_answers_503(
    tmp_path: Path, s3_server: EmbeddedS3, bucket: str, black_hole: BlackHole
) -> None:
    empty = tmp_path / "empty-aws-file"
    empty.write_text("")
    env = s3gate_env(s3_server, bucket, S3GATE_DATABASE_URL=f"sqlite:///{tmp_path / 'ledger.db'}")
    assert run_s3gate("migrate", env=env).returncode == 0
    started = time.monotonic()
    api, server = serve_api(
        [S3GATE, "serve"],
        tmp_path=tmp_path,
        s3=s3_server,
        bucket=bucket,
        migrate=False,
        ready_path="/healthz",
        unset=("AWS_ACCESS_KEY_ID", "AWS_SECRET_ACCESS_KEY"),
        AWS_CONFIG_FILE=str(empty),
        AWS_SHARED_CREDENTIALS_FILE=str(empty),
        # Instance metadata that never answers, as off EC2 behind a silent route: the chain's
        # probe must be asked once and be bounded by its timeout.
        AWS_EC2_METADATA_SERVICE_ENDPOINT=black_hole.url,
    )
    try:
        ready_after = time.monotonic() - started
        ready = httpx.get(f"{api}/readyz")
        upload = httpx.post(f"{api}/uploads", json=UPLOAD, headers=Api.auth(new_sub()))
        health = httpx.get(f"{api}/healthz")
    finally:
        stop_process(server)
    output = server.stdout.read() if server.stdout else ""
    assert ready_after < 8, ready_after
    # One probe: the token PUT and the role GET of IMDSv2/v1 (three probes before: six).
    assert len(black_hole.accepted) <= 2, len(black_hole.accepted)
    assert ready.status_code == 503
    assert ready.json()["code"] == "not_ready"
    assert "s3_credentials" in ready.json()["detail"]
    assert upload.status_code == 503
    assert upload.headers["content-type"] == "application/problem+json"
    assert upload.json()["code"] == "credentials_unavailable"
    assert health.status_code == 200
    assert "no S3 credentials found" in output
    assert "Traceback" not in output
    assert "Application shutdown complete." in output


@pytest.mark.parametrize(
    "empty_database_url",
    ["sqlite", pytest.param("postgres", marks=pytest.mark.postgres)],
    indirect=True,
)
def test_an_unmigrated_ledger_is_not_ready_and_answers_503_until_migrated(
    tmp_path: Path, s3_server: EmbeddedS3, bucket: str, empty_database_url: str
) -> None:
    api, server = serve_api(
        [S3GATE, "serve"],
        tmp_path=tmp_path,
        s3=s3_server,
        bucket=bucket,
        database_url=empty_database_url,
        migrate=False,
        ready_path="/healthz",
    )
    headers = Api.auth(new_sub())
    try:
        ready = httpx.get(f"{api}/readyz")
        upload = httpx.post(f"{api}/uploads", json=UPLOAD, headers=headers)
        listing = httpx.get(f"{api}/files", headers=headers)
        for answer in (upload, listing):
            assert answer.status_code == 503, answer.text
            assert answer.headers["content-type"] == "application/problem+json"
            assert answer.json()["code"] == "migrations_pending"
            assert "s3gate migrate" in answer.json()["detail"]
        assert ready.status_code == 503
        assert "migrations_pending" in ready.json()["detail"]
        assert "s3gate migrate" in ready.json()["detail"]

        env = s3gate_env(s3_server, bucket, S3GATE_DATABASE_URL=empty_database_url)
        migrated = run_s3gate("migrate", env=env, cwd=tmp_path)
        assert migrated.returncode == 0, migrated.stderr
        assert httpx.get(f"{api}/readyz").status_code == 200
        assert httpx.post(f"{api}/uploads", json=UPLOAD, headers=headers).status_code == 201
        assert httpx.get(f"{api}/files", headers=headers).status_code == 200
    finally:
        stop_process(server)
    output = server.stdout.read() if server.stdout else ""
    assert "run `s3gate migrate`" in output  # the startup check's warning
    assert "Traceback" not in output


@pytest.mark.parametrize("database_url", ["sqlite"], indirect=True)
@pytest.mark.parametrize(
    "empty_database_url",
    ["sqlite", pytest.param("postgres", marks=pytest.mark.postgres)],
    indirect=True,
)
async def test_a_ledger_one_migration_behind_is_pending_and_a_newer_one_is_ready(
    settings: Settings, empty_database_url: str
) -> None:
    run_migrations(empty_database_url, "0003")  # before 0004's verify_lease_until
    behind = settings.model_copy(update={"database_url": empty_database_url})
    owner = new_sub()
    async with running_app(behind) as client:
        ready = await client.get("/readyz")
        upload = await client.post("/uploads", json=UPLOAD, headers=Api.auth(owner))
    assert ready.status_code == 503
    assert "migrations_pending" in ready.json()["detail"]
    assert "at revision 0003" in ready.json()["detail"]
    assert upload.status_code == 503, upload.text
    assert upload.json()["code"] == "migrations_pending"

    # A release after this one migrated (rolling update): this one keeps serving on it.
    run_migrations(empty_database_url)
    engine = sql_engine(empty_database_url)
    try:
        with engine.begin() as conn:
            conn.execute(text("UPDATE alembic_version SET version_num = '9999_next_release'"))
    finally:
        engine.dispose()
    async with running_app(behind) as client:
        assert (await client.get("/readyz")).status_code == 200
        assert (
            await client.post("/uploads", json=UPLOAD, headers=Api.auth(owner))
        ).status_code == 201
