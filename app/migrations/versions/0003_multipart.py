"""multipart uploads: the store's upload id and the part size; 'multipart' upload method

Revision ID: 0003
Revises: 0002
Create Date: 2026-11-30
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0003"
down_revision: str | None = "0002"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    with op.batch_alter_table("files") as batch:
        batch.add_column(sa.Column("multipart_upload_id", sa.String(length=1024), nullable=True))
        batch.add_column(sa.Column("part_size", sa.BigInteger(), nullable=True))
        batch.drop_constraint(op.f("ck_files_upload_method"), type_="check")
        batch.create_check_constraint(
            "upload_method", "upload_method IN ('put', 'form', 'multipart')"
        )


def downgrade() -> None:
    with op.batch_alter_table("files") as batch:
        batch.drop_constraint(op.f("ck_files_upload_method"), type_="check")
        batch.create_check_constraint("upload_method", "upload_method IN ('put', 'form')")
        batch.drop_column("part_size")
        batch.drop_column("multipart_upload_id")
