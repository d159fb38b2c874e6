"""Running several replicas: concurrent migrations, settings from the environment, the drain."""

from __future__ import annotations

import json
import signal
import socket
import subprocess
import time
from pathlib import Path

import psycopg
import pytest
from alembic.script import ScriptDirectory
from sqlalchemy import inspect, text

from app import serving
from app.devstack import EmbeddedS3
from app.migrate import MIGRATION_LOCK_KEY, alembic_config
from devkit.env import clean_env
from devkit.ports import free_port
from devkit.postgres import libpq_url
from devkit.processes import answers, kill_process
from tests.support import (
    S3GATE,
    Api,
    s3gate_env,
    sql_engine,
    start_s3gate,
    wait_until,
)

CONCURRENT_MIGRATIONS = 6


@pytest.mark.parametrize("empty_database_url", [pytest.param("postgres")], indirect=True)
@pytest.mark.postgres
def test_concurrent_migrate_commands_take_turns_and_all_succeed(empty_database_url: str) -> None:
    # Hold the migration lock while the commands start, so that all of them are waiting on it
    # at once; releasing it then lets them race for real.
    with psycopg.connect(libpq_url(empty_database_url)) as holder:
        holder.execute("SELECT pg_advisory_lock(%s)", (MIGRATION_LOCK_KEY,))
        holder.commit()
        migrations = [
            subprocess.Popen(
                [S3GATE, "migrate"],
                env=clean_env(S3GATE_DATABASE_URL=empty_database_url),
                stdout=subprocess.PIPE,
                stderr=subprocess.STDOUT,
                text=True,
            )
            for _ in range(CONCURRENT_MIGRATIONS)
        ]

        def all_waiting() -> bool:
            row = holder.execute(
                "SELECT count(*) FROM pg_locks WHERE locktype = 'advisory' AND NOT granted"
            ).fetchone()
            holder.commit()
            return row is not None and row[0] == CONCURRENT_MIGRATIONS

        try:
            wait_until(all_waiting, timeout=60)
        finally:
            holder.execute("SELECT pg_advisory_unlock(%s)", (MIGRATION_LOCK_KEY,))
            holder.commit()
        outputs = [(process.wait(timeout=60), process.communicate()[0]) for process in migrations]

    assert [code for code, _ in outputs] == [0] * CONCURRENT_MIGRATIONS, outputs
    head = ScriptDirectory.from_config(alembic_config(empty_database_url)).get_current_head()
    engine = sql_engine(empty_database_url)
    try:
        with engine.connect() as conn:
            versions = conn.execute(text("SELECT version_num FROM alembic_version")).all()
            assert "files" in inspect(conn).get_table_names()
    finally:
        engine.dispose()
    assert versions == [(head,)]


def _start_serving(
    tmp_path: Path, s3_server: EmbeddedS3, bucket: str, **settings: str
) -> tuple[str, subprocess.Popen[str]]:
    port = free_port()
    env = s3gate_env(
        s3_server,
        bucket,
        # A ledger nobody migrated: S3GATE_MIGRATE_ON_START does it.
        S3GATE_DATABASE_URL=f"sqlite:///{tmp_path / 'ledger.db'}",
        S3GATE_PORT=str(port),
        S3GATE_MIGRATE_ON_START="true",
        **settings,
    )
    server = start_s3gate("serve", env=env, cwd=tmp_path)
    api = f"http://127.0.0.1:{port}"
    try:
        wait_until(lambda: answers(f"{api}/healthz"))
    except AssertionError:
        kill_process(server)
        raise AssertionError(server.communicate()[0]) from None
    return api, server


@pytest.mark.parametrize("workers", [1, 2])
def test_sigterm_finishes_in_flight_requests_and_refuses_new_connections(
    tmp_path: Path, s3_server: EmbeddedS3, bucket: str, workers: int
) -> None:
    api, server = _start_serving(
        tmp_path,
        s3_server,
        bucket,
        S3GATE_WORKERS=str(workers),
        S3GATE_GRACEFUL_SHUTDOWN_SECONDS="20",
    )
    try:
        port = int(api.rsplit(":", 1)[1])
        body = json.dumps(
            {"filename": "late.txt", "content_type": "text/plain", "size": 5}
        ).encode()
        head = (
            f"POST /uploads HTTP/1.1\r\nHost: s3gate\r\nContent-Type: application/json\r\n"
            f"Authorization: {Api.auth('drain')['Authorization']}\r\n"
            f"Content-Length: {len(body)}\r\nConnection: close\r\n\r\n"
        ).encode()
        with (
            socket.create_connection(("127.0.0.1", port), timeout=20) as in_flight,
            socket.create_connection(("127.0.0.1", port), timeout=20) as on_its_way,
        ):
            # A request the server has begun (headers read, body still coming) when TERM lands,
            # and a connection it has accepted whose request is not there yet.
            in_flight.sendall(head + body[:10])
            time.sleep(0.5)
            signalled = time.monotonic()
            server.send_signal(signal.SIGTERM)  # the parent only, as `docker stop` does
            # uvicorn's supervisor relays signals twice a second; then the worker drains
            time.sleep(0.75)
            on_its_way.sendall(b"GET /healthz HTTP/1.1\r\nHost: s3gate\r\n\r\n")
            late = on_its_way.makefile("rb").read().decode()
            assert late.startswith("HTTP/1.1 200"), late  # served, not reset
            assert "connection: close" in late.lower()

            time.sleep(max(0.0, signalled + 1.5 - time.monotonic()))
            assert server.poll() is None, "the drain waits for the request in flight"
            started = time.monotonic()
            with pytest.raises(ConnectionRefusedError):
                socket.create_connection(("127.0.0.1", port), timeout=5).close()
            # refused at once (a balancer tries the next replica), not left waiting in a backlog
            assert time.monotonic() - started < 1

            in_flight.sendall(body[10:])
            answer = in_flight.makefile("rb").read().decode()
        assert answer.startswith("HTTP/1.1 201"), answer  # the ledger was migrated at start
        server.wait(timeout=20)
        assert time.monotonic() - signalled < 20
        assert server.returncode in (0, -signal.SIGTERM)
    finally:
        kill_process(server)


def test_taking_the_accept_queue_leaves_nothing_to_reset_and_refuses_later_clients() -> None:
    with socket.socket() as listener:
        listener.bind(("127.0.0.1", 0))
        listener.listen(16)
        address = listener.getsockname()
        queued = [socket.create_connection(address, timeout=5) for _ in range(3)]
        for number, client in enumerate(queued):
            client.sendall(b"request %d" % number)
        taken = serving.take_queued_connections(listener.fileno())
    # the listener is closed now: a new client is refused, which a balancer retries elsewhere
    with pytest.raises(ConnectionRefusedError):
        socket.create_connection(address, timeout=5).close()
    assert len(taken) == len(queued)
    for client, server_side in zip(queued, taken, strict=True):
        server_side.setblocking(True)
        request = server_side.recv(100)  # nothing queued was reset
        server_side.sendall(b"answer to " + request)
        assert client.recv(100) == b"answer to " + request
        client.close()
        server_side.close()
