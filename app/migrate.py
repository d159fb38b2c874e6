"""Database URLs and migrations (the request path's drivers live in app/ledger/)."""

from __future__ import annotations

import functools
from pathlib import Path

from alembic import command
from alembic.config import Config
from alembic.script import ScriptDirectory
from sqlalchemy.engine import URL

from app.config import ledger_url

# Replicas may all run `s3gate migrate` (or migrate on start) at the same moment. On PostgreSQL
# they take turns on this session-level advisory lock (app/migrations/env.py), and each later
# one finds the schema at head and does nothing. Any fixed number works; this one spells "s3gatemg".
MIGRATION_LOCK_KEY = int.from_bytes(b"s3gatemg", "big")


def sync_url(database_url: str) -> URL:
    """The URL with a synchronous driver (pysqlite or psycopg 3), for Alembic and tools."""
    url, backend = ledger_url(database_url)
    return url.set(drivername="sqlite" if backend == "sqlite" else "postgresql+psycopg")


# Shipped inside the package (package data), so an installed wheel migrates from any cwd.
MIGRATIONS_DIR = Path(__file__).resolve().parent / "migrations"


def alembic_config(database_url: str) -> Config:
    """Alembic's config for this ledger, built in code: no alembic.ini and no cwd involved."""
    config = Config()
    # Config options go through configparser interpolation, where a bare % is special.
    config.set_main_option("script_location", str(MIGRATIONS_DIR).replace("%", "%%"))
    config.set_main_option("path_separator", "os")
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
