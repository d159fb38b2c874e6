"""files.upload_method: how the client was told to send the bytes (put or form)

Revision ID: 0002
Revises: 0001
Create Date: 2026-11-30
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0002"
down_revision: str | None = "0001"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    # Batch mode: SQLite can add a column in place but not a CHECK constraint.
    with op.batch_alter_table("files") as batch:
        batch.add_column(
            sa.Column("upload_method", sa.String(length=16), server_default="put", nullable=False)
        )
        batch.create_check_constraint("upload_method", "upload_method IN ('put', 'form')")


def downgrade() -> None:
    with op.batch_alter_table("files") as batch:
        batch.drop_constraint(op.f("ck_files_upload_method"), type_="check")
        batch.drop_column("upload_method")
