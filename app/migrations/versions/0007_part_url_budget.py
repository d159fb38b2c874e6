"""files.part_urls_signed: the part URLs signed for a multipart upload, metered against its own
budget before the owner's rate limit

Revision ID: 0007
Revises: 0006
Create Date: 2026-12-03
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0007"
down_revision: str | None = "0006"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    # A server default: old replicas (a rolling update) insert without the column.
    op.add_column(
        "files",
        sa.Column("part_urls_signed", sa.Integer(), server_default="0", nullable=False),
    )


def downgrade() -> None:
    with op.batch_alter_table("files") as batch:
        batch.drop_column("part_urls_signed")
