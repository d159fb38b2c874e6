"""Alembic: upgrade -> downgrade -> upgrade works, and the models match the migrations."""

from __future__ import annotations

import pytest
from alembic import command
from alembic.autogenerate import compare_metadata
from alembic.migration import MigrationContext
from sqlalchemy import inspect

from app.migrate import alembic_config, run_migrations
from app.models import Base
from tests.support import sql_engine


@pytest.mark.parametrize(
    "empty_database_url",
    ["sqlite", pytest.param("postgres", marks=pytest.mark.postgres)],
    indirect=True,
)
def test_upgrade_downgrade_upgrade_has_no_drift(empty_database_url: str) -> None:
    run_migrations(empty_database_url, "head")
    command.downgrade(alembic_config(empty_database_url), "base")
    engine = sql_engine(empty_database_url)
    try:
        with engine.connect() as conn:
            assert "files" not in inspect(conn).get_table_names()
        run_migrations(empty_database_url, "head")
        with engine.connect() as conn:
            assert "files" in inspect(conn).get_table_names()
            diff = compare_metadata(
                MigrationContext.configure(conn, opts={"compare_type": True}), Base.metadata
            )
    finally:
        engine.dispose()
    assert diff == []
