"""Alembic environment: the URL comes from s3gate's settings (or a caller's override)."""

from __future__ import annotations

import contextlib
from collections.abc import Iterator
from logging.config import fileConfig

from alembic import context
from sqlalchemy import Connection, create_engine, pool, text

from app.config import DatabaseSettings, load_settings
from app.migrate import MIGRATION_LOCK_KEY, sync_url
from app.models import Base

config = context.config
if config.config_file_name is not None and config.attributes.get("configure_logger", True):
    fileConfig(config.config_file_name, disable_existing_loggers=False)

target_metadata = Base.metadata


@contextlib.contextmanager
def _migration_lock(connection: Connection) -> Iterator[None]:
    """Concurrent runs on PostgreSQL take turns (see MIGRATION_LOCK_KEY)."""
    if connection.dialect.name != "postgresql":
        yield  # SQLite serializes writers itself, and a file is never shared between hosts
        return
    connection.execute(text("SELECT pg_advisory_lock(:key)"), {"key": MIGRATION_LOCK_KEY})
    # Session-level: the lock outlives this transaction; Alembic reads the current revision
    # and migrates in its own transaction, which starts only once the lock is held.
    connection.commit()
    try:
        yield
    finally:
        if not connection.invalidated:
            connection.execute(text("SELECT pg_advisory_unlock(:key)"), {"key": MIGRATION_LOCK_KEY})
            connection.commit()


def _url() -> str:
    override = config.attributes.get("database_url")
    url = override or load_settings(DatabaseSettings).database_url
    return sync_url(url).render_as_string(hide_password=False)


def run_migrations_offline() -> None:
    context.configure(
        url=_url(), target_metadata=target_metadata, literal_binds=True, render_as_batch=True
    )
    with context.begin_transaction():
        context.run_migrations()


def run_migrations_online() -> None:
    engine = create_engine(_url(), poolclass=pool.NullPool)
    with engine.connect() as connection:
        context.configure(
            connection=connection,
            target_metadata=target_metadata,
            # SQLite cannot ALTER most things in place; batch mode rebuilds the table instead.
            render_as_batch=connection.dialect.name == "sqlite",
            compare_type=True,
        )
        with _migration_lock(connection), context.begin_transaction():
            context.run_migrations()
    engine.dispose()


if context.is_offline_mode():
    run_migrations_offline()
else:
    run_migrations_online()
