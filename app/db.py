"""Database URLs and migrations (the request path's drivers live in app/ledger/drivers.py)."""

from __future__ import annotations

import functools
from pathlib import Path

from alembic import command
from alembic.config import Config
from alembic.script import ScriptDirectory
from sqlalchemy.engine import URL, make_url

# Replicas may all run `s3gate migrate` (or migrate on start) at the same moment. On PostgreSQL
# they take turns on this session-level advisory lock (alembic/env.py), and each later one finds
# the schema at head and does nothing. Any fixed number works; this one spells "s3gatemg".
MIGRATION_LOCK_KEY = int.from_bytes(b"s3gatemg", "big")


def sync_url(database_url: str) -> URL:
    """The URL with a synchronous driver (pysqlite or psycopg 3), for Alembic and tools."""
    url = make_url(database_url)
    backend = url.get_backend_name()
    if backend == "sqlite":
        return url.set(drivername="sqlite")
    if backend in ("postgresql", "postgres"):
        return url.set(drivername="postgresql+psycopg")
    raise ValueError(f"unsupported database backend {backend!r} (use sqlite or postgresql)")


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


@functools.cache
def shipped_revisions() -> tuple[str, ...]:
    """The revisions of the migrations this package ships, oldest first (the head last)."""
    scripts = ScriptDirectory.from_config(alembic_config(""))
    return tuple(reversed([script.revision for script in scripts.walk_revisions()]))


def head_revision() -> str:
    """The revision the shipped migrations end at: the schema this code needs."""
    return shipped_revisions()[-1]
