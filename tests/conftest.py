"""Shared fixtures: a real SeaweedFS, a throwaway PostgreSQL database, a per-test app.

Presigned-URL behaviour is only ever checked against SeaweedFS (it verifies SigV4 like AWS);
the ledger runs on SQLite and on PostgreSQL through the parametrised `database_url` fixture.
"""

from __future__ import annotations

import contextlib
import io
import logging
import os
import secrets
from collections.abc import AsyncIterator, Iterator
from pathlib import Path

import httpx
import pytest

from app.config import Settings
from app.devstack import EmbeddedS3, embedded_s3
from app.logs import log_handler
from app.migrate import run_migrations
from devkit.clamd import Clamd, ClamdUnavailable, running_clamd
from devkit.env import AWS_ISOLATION, is_caller_setting
from devkit.postgres import PostgresUnreachable, throwaway_database
from tests.support import TEST_JWT_SECRET, Api, empty_ledger, running_app, unavailable

POSTGRES_ADMIN_URL = os.environ.get(
    "S3GATE_TEST_POSTGRES_URL", "postgresql://postgres@127.0.0.1:5432/postgres"
)
REDIS_URL = os.environ.get("S3GATE_TEST_REDIS_URL", "redis://127.0.0.1:6379/0")
# CI sets these: there a missing PostgreSQL or Redis is a failure, never a silent skip.
REQUIRE_POSTGRES = os.environ.get("S3GATE_TEST_REQUIRE_POSTGRES", "") == "1"
REQUIRE_REDIS = os.environ.get("S3GATE_TEST_REQUIRE_REDIS", "") == "1"
REQUIRE_SCANNER = os.environ.get("S3GATE_TEST_REQUIRE_SCANNER") == "1"


@pytest.fixture(autouse=True)
def _clean_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    """Tests configure everything explicitly; the runner's S3GATE_/AWS_ variables never leak."""
    for name in list(os.environ):
        if is_caller_setting(name, keep=("S3GATE_TEST_",)):
            monkeypatch.delenv(name)
    for name, value in AWS_ISOLATION.items():
        monkeypatch.setenv(name, value)


# --- real services ------------------------------------------------------------------------


@pytest.fixture(scope="session")
def s3_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[EmbeddedS3]:
    """One SeaweedFS for the whole run, on free ports, data in a temp dir."""
    with embedded_s3(
        tmp_path_factory.mktemp("seaweedfs"),
        access_key="S3GATETEST",
        secret_key=secrets.token_urlsafe(24),
    ) as server:
        yield server


@pytest.fixture(scope="session")
def bucket(s3_server: EmbeddedS3) -> str:
    name = f"s3gate-test-{secrets.token_hex(4)}"
    s3_server.client().create_bucket(Bucket=name)
    return name


@contextlib.contextmanager
def _throwaway_postgres() -> Iterator[str]:
    """A new, empty database on the test server (its SQLAlchemy URL), dropped at the end; the
    test is skipped (failed in CI) when the server is not reachable."""
    with contextlib.ExitStack() as stack:
        try:
            url = stack.enter_context(throwaway_database(POSTGRES_ADMIN_URL, prefix="s3gate_test"))
        except PostgresUnreachable as exc:
            message = (
                "PostgreSQL not reachable at S3GATE_TEST_POSTGRES_URL "
                f"({type(exc.__cause__).__name__})"
            )
            unavailable(message, required=REQUIRE_POSTGRES)
        yield url


@pytest.fixture(scope="session")
def postgres_database() -> Iterator[str]:
    """A throwaway PostgreSQL database for this run, migrated, dropped at the end."""
    with _throwaway_postgres() as url:
        run_migrations(url)
        yield url


@pytest.fixture(scope="session")
def redis_url() -> str:
    """A reachable Redis for shared rate limits (S3GATE_TEST_REDIS_URL)."""
    import redis

    try:
        redis.Redis.from_url(REDIS_URL, socket_connect_timeout=1).ping()
    except redis.RedisError as exc:
        message = f"Redis not reachable at S3GATE_TEST_REDIS_URL ({type(exc).__name__})"
        unavailable(message, required=REQUIRE_REDIS)
    return REDIS_URL


@pytest.fixture(scope="session")
def clamd(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Clamd]:
    """One real clamd (Debian's) for the run, with an EICAR-only signature database."""
    with contextlib.ExitStack() as stack:
        try:
            server = stack.enter_context(running_clamd(tmp_path_factory.mktemp("clamd")))
        except ClamdUnavailable as exc:
            unavailable(str(exc), required=REQUIRE_SCANNER)
        yield server


@pytest.fixture(scope="session")
def sqlite_database(tmp_path_factory: pytest.TempPathFactory) -> str:
    url = f"sqlite:///{tmp_path_factory.mktemp('ledger') / 's3gate.db'}"
    run_migrations(url)
    return url


@pytest.fixture(params=["sqlite", pytest.param("postgres", marks=pytest.mark.postgres)])
def database_url(request: pytest.FixtureRequest) -> str:
    """Every test that takes this runs once per ledger backend."""
    fixture = "sqlite_database" if request.param == "sqlite" else "postgres_database"
    url: str = request.getfixturevalue(fixture)
    return url


@pytest.fixture
def empty_database_url(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[str]:
    """A database with no schema at all, for migration tests (SQLite or PostgreSQL)."""
    backend = getattr(request, "param", "sqlite")
    if backend == "sqlite":
        yield f"sqlite:///{tmp_path / 'empty.db'}"
        return
    with _throwaway_postgres() as url:
        yield url


# --- the app under test ---------------------------------------------------------------------


@pytest.fixture
def settings(
    database_url: str, s3_server: EmbeddedS3, bucket: str, monkeypatch: pytest.MonkeyPatch
) -> Settings:
    """Settings for one test; tests that need others call settings.model_copy(update=...)."""
    monkeypatch.setenv("AWS_ACCESS_KEY_ID", s3_server.access_key)
    monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", s3_server.secret_key)
    return Settings(
        _env_file=None,  # type: ignore[call-arg]
        database_url=database_url,
        s3_bucket=bucket,
        s3_region=s3_server.region,
        s3_endpoint_url=s3_server.endpoint_url,
        s3_addressing_style="path",
        jwt_secret=TEST_JWT_SECRET,  # type: ignore[arg-type]
        # Known, so no startup probe per test (tests/integration/test_store_profiles.py
        # proves `auto` measures exactly this on SeaweedFS).
        store_profile="seaweedfs",
    )


@pytest.fixture
async def api(settings: Settings) -> AsyncIterator[Api]:
    async with running_app(settings) as client:
        yield Api(client, settings)
    empty_ledger(settings.database_url)


@pytest.fixture
async def s3_http() -> AsyncIterator[httpx.AsyncClient]:
    """A plain HTTP client, as a browser or mobile app would use against the store."""
    async with httpx.AsyncClient(timeout=10) as client:
        yield client


@pytest.fixture
def json_log() -> Iterator[io.StringIO]:
    """s3gate's JSON log handler on the root logger at INFO, writing to a buffer."""
    buffer = io.StringIO()
    handler = log_handler("json", stream=buffer)
    root = logging.getLogger()
    level = root.level
    root.addHandler(handler)
    root.setLevel(logging.INFO)
    yield buffer
    root.removeHandler(handler)
    root.setLevel(level)
