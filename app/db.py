"""Engine construction: one place that knows the drivers and per-backend tuning."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from alembic import command
from alembic.config import Config
from sqlalchemy import event
from sqlalchemy.engine import URL, make_url
from sqlalchemy.ext.asyncio import AsyncEngine, create_async_engine

from app.config import DatabaseSettings


def sync_url(database_url: str) -> URL:
    """The URL with a synchronous driver (Alembic, admin scripts)."""
    url = make_url(database_url)
    backend = url.get_backend_name()
    if backend == "sqlite":
        return url.set(drivername="sqlite")
    if backend in ("postgresql", "postgres"):
        return url.set(drivername="postgresql+psycopg")
    raise ValueError(f"unsupported database backend {backend!r} (use sqlite or postgresql)")


def async_url(database_url: str) -> URL:
    """The URL with an asyncio driver (the request path)."""
    url = sync_url(database_url)
    # psycopg 3 serves both; SQLAlchemy picks its async dialect for create_async_engine.
    return url.set(drivername="sqlite+aiosqlite") if url.get_backend_name() == "sqlite" else url


def _tune_sqlite(dbapi_connection: Any, _record: Any) -> None:
    # One writer at a time: WAL lets readers run beside it, busy_timeout queues writers
    # instead of failing, NORMAL sync is durable across process crashes in WAL mode.
    cursor = dbapi_connection.cursor()
    cursor.execute("PRAGMA journal_mode=WAL")
    cursor.execute("PRAGMA synchronous=NORMAL")
    cursor.execute("PRAGMA busy_timeout=5000")
    cursor.execute("PRAGMA foreign_keys=ON")
    cursor.close()


def create_engine(settings: DatabaseSettings) -> AsyncEngine:
    """The ledger's async engine, tuned for its backend."""
    url = async_url(settings.database_url)
    if url.get_backend_name() == "sqlite":
        engine = create_async_engine(url, connect_args={"timeout": 5})
        event.listen(engine.sync_engine, "connect", _tune_sqlite)
        return engine
    return create_async_engine(
        url,
        pool_size=settings.database_pool_size,
        max_overflow=settings.database_pool_size,
        pool_pre_ping=True,
        pool_recycle=1800,
        connect_args={"connect_timeout": 5},
    )


def _alembic_ini() -> Path:
    # A source checkout (and the Docker image) has alembic.ini beside app/; else the cwd.
    for candidate in (Path(__file__).resolve().parent.parent, Path.cwd()):
        if (candidate / "alembic.ini").is_file():
            return candidate / "alembic.ini"
    raise FileNotFoundError("alembic.ini not found beside the app package or in the cwd")


def alembic_config(database_url: str) -> Config:
    """Alembic's config for this ledger, with the URL passed in rather than read from env."""
    config = Config(str(_alembic_ini()))
    config.attributes["database_url"] = database_url
    config.attributes["configure_logger"] = False
    return config


def run_migrations(database_url: str, revision: str = "head") -> None:
    """Bring the ledger's schema to `revision` (what `alembic upgrade head` does)."""
    command.upgrade(alembic_config(database_url), revision)
