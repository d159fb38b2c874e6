"""The ledger's settings: its database URL (one backend check for settings, migrations and
drivers); how every command logs; and the two together, what `s3gate migrate` reads."""

from __future__ import annotations

import os
from pathlib import Path
from typing import Literal

from pydantic import (
    Field,
    field_validator,
)
from pydantic_settings import BaseSettings
from sqlalchemy.engine import URL, make_url
from sqlalchemy.exc import ArgumentError

from app.config.base import _MODEL_CONFIG

DATABASE_URL_VARIABLE = "S3GATE_DATABASE_URL"
_ACCEPTED_DATABASE_URLS = (
    "use sqlite:///path/to/ledger.db or postgresql://user:password@host/dbname"
)


def ledger_url(database_url: str) -> tuple[URL, Literal["sqlite", "postgresql"]]:
    """The parsed URL and its backend, if the ledger can run on it; else a ValueError that
    names S3GATE_DATABASE_URL and what is accepted (never the URL: it may hold a password).

    The one backend check: settings validation, migrations (app.migrate.sync_url) and the request
    path's drivers all call it. It lives here, not in app.migrate, so that workers need not import
    Alembic (~10 MB each) to validate their settings."""
    try:
        url = make_url(database_url)
    except ArgumentError:
        raise ValueError(
            f"{DATABASE_URL_VARIABLE}: not a database URL ({_ACCEPTED_DATABASE_URLS})"
        ) from None
    backend = url.get_backend_name()
    if backend in ("postgresql", "postgres"):
        return url, "postgresql"
    if backend != "sqlite":
        raise ValueError(
            f"{DATABASE_URL_VARIABLE}: the ledger does not run on {backend!r} "
            f"({_ACCEPTED_DATABASE_URLS})"
        )
    path = url.database or ""
    if path in ("", ":memory:"):
        return url, "sqlite"
    # SQLite would fail only at the first statement, deep in startup. A path is no secret, so
    # the message names it.
    file = Path(path).expanduser()
    if file.is_dir():
        problem = f"{path} is a directory, not a database file"
    elif not file.parent.is_dir():
        problem = f"the directory of {path} does not exist"
    elif not os.access(file.parent, os.W_OK | os.X_OK):
        problem = f"the directory of {path} is not writable (SQLite writes its WAL beside it)"
    else:
        return url, "sqlite"
    raise ValueError(f"{DATABASE_URL_VARIABLE}: {problem} ({_ACCEPTED_DATABASE_URLS})")


class DatabaseSettings(BaseSettings):
    """What `s3gate migrate` (and Alembic) need: only the ledger's URL."""

    model_config = _MODEL_CONFIG

    # sqlite:///path or postgresql+psycopg://user:pass@host/db (driver added when missing)
    database_url: str = "sqlite:///./s3gate.db"
    database_pool_size: int = Field(default=10, ge=1, le=200)

    @field_validator("database_url", mode="after")
    @classmethod
    def _usable_ledger(cls, value: str) -> str:
        ledger_url(value)
        return value


class LoggingSettings(BaseSettings):
    """How every command logs: lines (one per request in `s3gate.access`, plus audit and
    errors) as JSON objects on stderr, or `text` for a terminal."""

    model_config = _MODEL_CONFIG

    log_level: Literal["debug", "info", "warning", "error"] = "info"
    log_format: Literal["json", "text"] = "json"


class MigrateSettings(DatabaseSettings, LoggingSettings):
    """What `s3gate migrate` reads."""
