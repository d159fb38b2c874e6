"""files.upload_key (where a form's policy writes, when it is not object_key) and
files.verify_lease_until (one completion verifies a file at a time, across replicas)

Revision ID: 0004
Revises: 0003
Create Date: 2026-12-02
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0004"
down_revision: str | None = "0003"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    with op.batch_alter_table("files") as batch:
        batch.add_column(sa.Column("upload_key", sa.String(length=1024), nullable=True))
        batch.add_column(sa.Column("verify_lease_until", sa.DateTime(timezone=True), nullable=True))
        batch.create_unique_constraint(op.f("uq_files_upload_key"), ["upload_key"])


def downgrade() -> None:
    with op.batch_alter_table("files") as batch:
        batch.drop_constraint(op.f("uq_files_upload_key"), type_="unique")
        batch.drop_column("verify_lease_until")
        batch.drop_column("upload_key")
