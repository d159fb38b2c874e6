"""Helpers shared by tests (fixtures themselves live in conftest.py)."""

from __future__ import annotations

import base64
import contextlib
import hashlib
import hmac
import json
import socket
import subprocess
import sys
import threading
import time
import uuid
from collections.abc import AsyncIterator, Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, NoReturn
from urllib.parse import urlsplit

import httpx
import pytest
import uvicorn
from botocore.exceptions import ClientError
from sqlalchemy import Engine, NullPool, create_engine, delete

from app.auth import mint_token
from app.config import Settings
from app.devstack import EmbeddedS3
from app.main import create_app
from app.migrate import sync_url
from app.models import (
    access_table,
    deliveries_table,
    events_table,
    files_table,
    grants_table,
    links_table,
)
from devkit.env import clean_env
from devkit.ports import free_port
from devkit.processes import (
    NotReady,
    ProcessExited,
    answers,
    kill_process,
    start_process,
    wait_for,
    wait_ready,
)

TEST_JWT_SECRET = "test-secret-" + "x" * 40


def sql_engine(database_url: str) -> Engine:
    """A plain SQLAlchemy engine on the ledger's database, for looking behind the API."""
    return create_engine(sync_url(database_url), poolclass=NullPool)


def empty_ledger(database_url: str) -> None:
    """Forget every file, event, delivery, grant, link and access row (tests share one
    database per backend)."""
    engine = sql_engine(database_url)
    try:
        with engine.begin() as conn:
            tables = (access_table, links_table, grants_table, deliveries_table, events_table)
            for table in (*tables, files_table):
                conn.execute(delete(table))
    finally:
        engine.dispose()


def object_exists(s3: EmbeddedS3, bucket: str, key: str) -> bool:
    """Whether the store holds the object (asked with the server's own credentials)."""
    try:
        s3.client().head_object(Bucket=bucket, Key=key)
    except ClientError:
        return False
    return True


def offline_settings(tmp_path: Path, **extra: Any) -> Settings:
    """Settings for tests that build the app's clients but never reach a store (a SQLite
    ledger in tmp_path, an endpoint nothing listens on)."""
    extra.setdefault("store_profile", "seaweedfs")  # no startup probe of a store not there
    return Settings(
        _env_file=None,  # type: ignore[call-arg]
        database_url=f"sqlite:///{tmp_path / 'ledger.db'}",
        s3_bucket="bucket",
        s3_endpoint_url="http://127.0.0.1:9",  # never contacted: building clients is offline
        jwt_secret=TEST_JWT_SECRET,  # type: ignore[arg-type]
        **extra,
    )


def new_sub() -> str:
    """A fresh owner id, so tests never see each other's files."""
    return f"user-{uuid.uuid4().hex[:10]}"


@contextlib.asynccontextmanager
async def running_app(settings: Settings) -> AsyncIterator[httpx.AsyncClient]:
    """Run create_app(settings) with its lifespan; yield an httpx client bound to it."""
    app = create_app(settings)
    transport = httpx.ASGITransport(app=app)
    async with (
        app.router.lifespan_context(app),
        httpx.AsyncClient(transport=transport, base_url="http://s3gate.test") as client,
    ):
        yield client


@dataclass
class Api:
    """An in-process client of the app plus helpers that speak the contract."""

    client: httpx.AsyncClient
    settings: Settings

    @staticmethod
    def auth(sub: str, *, admin: bool = False, **claims: Any) -> dict[str, str]:
        """A bearer header for `sub` (an admin's), with any other `claims` (groups=[...])."""
        token = mint_token(
            TEST_JWT_SECRET,
            sub,
            admin_scope="s3gate:admin" if admin else None,
            extra_claims=claims or None,
        )
        return {"Authorization": f"Bearer {token}"}

    async def create(
        self, sub: str, body: dict[str, Any], headers: dict[str, str] | None = None
    ) -> httpx.Response:
        return await self.client.post(
            "/uploads", json=body, headers={**self.auth(sub), **(headers or {})}
        )

    async def created(self, sub: str, body: dict[str, Any]) -> dict[str, Any]:
        """POST /uploads that must answer 201; its JSON ({"file", "upload"})."""
        created = await self.create(sub, body)
        assert created.status_code == 201, created.text
        answer: dict[str, Any] = created.json()
        return answer

    async def upload(
        self,
        s3_http: httpx.AsyncClient,
        sub: str,
        data: bytes,
        *,
        content_type: str = "application/octet-stream",
        filename: str = "file.bin",
        checksum: bool = True,
    ) -> tuple[dict[str, Any], dict[str, Any]]:
        """Create an upload and PUT the bytes exactly as instructed; (file, upload) JSON."""
        body: dict[str, Any] = {
            "filename": filename,
            "content_type": content_type,
            "size": len(data),
        }
        if checksum:
            body["checksum_sha256"] = sha256_b64(data)
        created = await self.created(sub, body)
        upload = created["upload"]
        put = await s3_http.put(upload["url"], content=data, headers=upload["headers"])
        assert put.status_code == 200, put.text
        return created["file"], upload

    async def complete(
        self, sub: str, file_id: str, *, admin: bool = False, wait: int | None = 30
    ) -> httpx.Response:
        """POST complete, by default holding the answer while the file verifies in the
        background (`Prefer: wait=30`): 200 or 422 then, as the clients see it."""
        headers = self.auth(sub, admin=admin)
        if wait is not None:
            headers["Prefer"] = f"wait={wait}"
        return await self.client.post(f"/uploads/{file_id}/complete", headers=headers)


def hs256_token(claims: dict[str, Any], secret: str = TEST_JWT_SECRET) -> str:
    """An HS256 JWT signed by hand, so a test can send claims that mint_token cannot make."""

    def b64url(data: bytes) -> str:
        return base64.urlsafe_b64encode(data).rstrip(b"=").decode()

    header = b64url(json.dumps({"alg": "HS256", "typ": "JWT"}).encode())
    signing_input = f"{header}.{b64url(json.dumps(claims).encode())}"
    signature = hmac.new(secret.encode(), signing_input.encode(), hashlib.sha256).digest()
    return f"{signing_input}.{b64url(signature)}"


def sha256_b64(data: bytes) -> str:
    return base64.b64encode(hashlib.sha256(data).digest()).decode()


def tiny_png() -> bytes:
    """A real 1x1 PNG."""
    import struct
    import zlib

    def chunk(kind: bytes, payload: bytes) -> bytes:
        crc = zlib.crc32(kind + payload) & 0xFFFFFFFF
        return struct.pack(">I", len(payload)) + kind + payload + struct.pack(">I", crc)

    header = struct.pack(">IIBBBBB", 1, 1, 8, 2, 0, 0, 0)
    pixels = zlib.compress(b"\x00\xff\x00\x00")
    return (
        b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", header) + chunk(b"IDAT", pixels) + chunk(b"IEND", b"")
    )


def tiny_pdf(text: str = "s3gate") -> bytes:
    """A small, well-formed PDF."""
    return (
        b"%PDF-1.4\n1 0 obj<</Type/Catalog/Pages 2 0 R>>endobj\n"
        b"2 0 obj<</Type/Pages/Kids[]/Count 0>>endobj\n% " + text.encode() + b"\n"
        b"trailer<</Root 1 0 R>>\n%%EOF\n"
    )


# --- real processes -------------------------------------------------------------------------

S3GATE = str(Path(sys.executable).parent / "s3gate")
UVICORN = str(Path(sys.executable).parent / "uvicorn")


def s3gate_env(s3: EmbeddedS3, bucket: str, **extra: str) -> dict[str, str]:
    """Settings for an `s3gate` process on the test store and the test JWT secret."""
    return clean_env(
        S3GATE_S3_BUCKET=bucket,
        S3GATE_S3_ENDPOINT_URL=s3.endpoint_url,
        S3GATE_S3_ADDRESSING_STYLE="path",
        S3GATE_JWT_SECRET=TEST_JWT_SECRET,
        AWS_ACCESS_KEY_ID=s3.access_key,
        AWS_SECRET_ACCESS_KEY=s3.secret_key,
        **extra,
    )


def unavailable(message: str, *, required: bool) -> NoReturn:
    """Skip the test for a service or tool this machine lacks, or fail it where the run
    requires it (CI: S3GATE_TEST_REQUIRE_*), so a missing server is never a silent skip."""
    if required:
        pytest.fail(message)
    pytest.skip(message)


def wait_until(predicate: Callable[[], object], timeout: float = 60) -> None:
    """devkit's wait_for, failing the test (AssertionError) when the time is up. 60 s: what
    must happen gets time on a slow 2-core machine under the whole suite (a server's start
    there has taken over 30 s); it costs nothing when it happens at once."""
    if not wait_for(predicate, timeout=timeout):
        raise AssertionError("timed out")


def start_s3gate(
    *args: str, env: dict[str, str], cwd: Path, stdout: Any = subprocess.PIPE
) -> subprocess.Popen[str]:
    """Start `s3gate ARGS` as devkit's start_process does (own session, stderr merged)."""
    return start_process([S3GATE, *args], env=env, cwd=cwd, stdout=stdout)


def run_s3gate(
    *args: str,
    env: dict[str, str],
    cwd: Path | None = None,
    timeout: float = 120,
    executable: str = S3GATE,
) -> subprocess.CompletedProcess[str]:
    """Run `s3gate ARGS` (this checkout's, or another install's `executable`) to completion;
    stdout and stderr captured as text."""
    return subprocess.run(
        [executable, *args], env=env, cwd=cwd, capture_output=True, text=True, timeout=timeout
    )


def serve_api(
    argv: list[str],
    *,
    tmp_path: Path,
    s3: EmbeddedS3,
    bucket: str,
    stdout: Any = subprocess.PIPE,
    database_url: str | None = None,
    s3gate: str = S3GATE,
    migrate: bool = True,
    ready_path: str = "/readyz",
    unset: Sequence[str] = (),
    **settings: str,
) -> tuple[str, subprocess.Popen[str]]:
    """`s3gate migrate` (the `s3gate` executable) on `database_url` (a SQLite ledger in
    `tmp_path` by default; skipped with migrate=False), then `argv --port P` (`s3gate serve`,
    `uvicorn app.main:app`, ...) until `ready_path` answers 200: (its URL, the process; stop it
    with devkit's stop_process). `unset` names variables of s3gate_env to leave out (e.g. the
    AWS keys)."""
    database_url = database_url or f"sqlite:///{tmp_path / 'ledger.db'}"
    env = s3gate_env(s3, bucket, S3GATE_DATABASE_URL=database_url, **settings)
    for name in unset:
        del env[name]
    if migrate:
        migrated = run_s3gate("migrate", env=env, cwd=tmp_path, executable=s3gate)
        assert migrated.returncode == 0, migrated.stderr
    port = free_port()
    server = start_process([*argv, "--port", str(port)], env=env, cwd=tmp_path, stdout=stdout)
    api = f"http://127.0.0.1:{port}"
    try:
        wait_ready(server, lambda: answers(f"{api}{ready_path}"), timeout=30)
    except ProcessExited:
        raise AssertionError(
            f"{argv} exited with {server.returncode} before it was ready"
        ) from None
    except NotReady:
        kill_process(server)
        raise AssertionError("timed out") from None
    return api, server


def upload_over_http(api: str, sub: str, data: bytes) -> dict[str, Any]:
    """One PNG upload through a running server and the store, as a client makes it: create,
    PUT the bytes to the presigned URL, complete. The completed file's JSON."""
    auth = Api.auth(sub)
    body = {
        "filename": "p.png",
        "content_type": "image/png",
        "size": len(data),
        "checksum_sha256": sha256_b64(data),
    }
    created = httpx.post(f"{api}/uploads", json=body, headers=auth)
    assert created.status_code == 201, created.text
    upload = created.json()["upload"]
    put = httpx.put(upload["url"], content=data, headers=upload["headers"])
    assert put.status_code == 200, put.text
    done = httpx.post(f"{api}/uploads/{created.json()['file']['id']}/complete", headers=auth)
    assert done.status_code == 200, done.text
    file: dict[str, Any] = done.json()
    return file


class ByteGate:
    """A TCP forwarder to `upstream_url` that lets `allow(n)` bytes from clients through, then
    holds the rest: an upload stalls at a chosen byte, with no race against a timer.

    Signed URLs that name `url` (as S3GATE_S3_PUBLIC_ENDPOINT_URL) reach the store unchanged,
    Host header included, so their signatures still hold. `reset()` cuts every connection (what
    was held never arrives), opens the gate and starts counting `forwarded` from zero.
    """

    def __init__(self, upstream_url: str) -> None:
        parts = urlsplit(upstream_url)
        self._upstream = (parts.hostname or "127.0.0.1", parts.port or 80)
        self._listener = socket.create_server(("127.0.0.1", 0))
        self.url = f"http://127.0.0.1:{self._listener.getsockname()[1]}"
        self.forwarded = 0  # client bytes passed on since the last reset
        self._allowance: int | None = None  # None: open
        self._generation = 0
        self._connections: list[socket.socket] = []
        self._state = threading.Condition()
        threading.Thread(target=self._accept, daemon=True).start()

    def allow(self, nbytes: int | None) -> None:
        with self._state:
            self._allowance = nbytes
            self._state.notify_all()

    def reset(self) -> None:
        with self._state:
            self._generation += 1
            for connection in self._connections:
                with contextlib.suppress(OSError):
                    connection.shutdown(socket.SHUT_RDWR)
                connection.close()
            self._connections.clear()
            self._allowance, self.forwarded = None, 0
            self._state.notify_all()

    def close(self) -> None:
        # shutdown() first: a thread blocked in accept() keeps a merely closed socket listening.
        with contextlib.suppress(OSError):
            self._listener.shutdown(socket.SHUT_RDWR)
        self._listener.close()
        self.reset()

    def __enter__(self) -> ByteGate:
        return self

    def __exit__(self, *_: object) -> None:
        self.close()

    def _accept(self) -> None:
        while True:
            try:
                client, _ = self._listener.accept()
                upstream = socket.create_connection(self._upstream)
            except OSError:
                return
            with self._state:
                self._connections += [client, upstream]
                generation = self._generation
            for source, sink, metered in ((client, upstream, True), (upstream, client, False)):
                threading.Thread(
                    target=self._pump, args=(source, sink, metered, generation), daemon=True
                ).start()

    def _pump(
        self, source: socket.socket, sink: socket.socket, metered: bool, generation: int
    ) -> None:
        try:
            while True:
                size = 65536
                if metered:
                    with self._state:
                        self._state.wait_for(
                            lambda: self._generation != generation or self._allowance != 0
                        )
                        if self._generation != generation:
                            return
                        if self._allowance is not None:
                            size = min(size, self._allowance)
                            self._allowance -= size  # reserved; what recv did not use is back
                data = source.recv(size)
                if metered:
                    with self._state:
                        if self._generation != generation:
                            return  # cut by reset(): nothing more of it arrives
                        if self._allowance is not None:
                            self._allowance += size - len(data)
                        self.forwarded += len(data)
                if not data:
                    sink.shutdown(socket.SHUT_WR)
                    return
                sink.sendall(data)
        except OSError:
            return


class ThreadedServer(uvicorn.Server):
    """uvicorn in a thread with its own loop, so a test that blocks cannot stall it."""

    def __init__(self, app: Any) -> None:
        # log_config=None: leave the test process's logging as the suite configured it.
        config = uvicorn.Config(
            app, lifespan="off", log_config=None, access_log=False, timeout_graceful_shutdown=1
        )
        super().__init__(config)
        self.socket = socket.socket()
        self.socket.bind(("127.0.0.1", 0))
        self.port: int = self.socket.getsockname()[1]
        self.thread = threading.Thread(target=self.run, kwargs={"sockets": [self.socket]})

    def __enter__(self) -> ThreadedServer:
        self.thread.start()
        deadline = time.monotonic() + 10
        while not self.started:
            assert self.thread.is_alive(), "the receiver stopped while starting"
            assert time.monotonic() < deadline, "the receiver did not start"
            time.sleep(0.01)
        return self

    def __exit__(self, *_: object) -> None:
        self.should_exit = True
        self.thread.join(10)
        self.socket.close()


async def received_request(scope: dict[str, Any], receive: Any) -> tuple[bytes, dict[str, str]]:
    """An ASGI request's whole body and its headers (the test receivers' first step)."""
    body = b""
    while True:
        message = await receive()
        body += message.get("body", b"")
        if not message.get("more_body"):
            break
    return body, {name.decode(): value.decode() for name, value in scope["headers"]}
