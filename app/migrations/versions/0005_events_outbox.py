"""files.status `verifying` (a background worker checks the whole object); events: the outbox
of status changes (file.available, file.rejected, upload.expired,
file.deleted), written in the same transaction as each change; deliveries: each event for each
webhook endpoint, written with it

Revision ID: 0005
Revises: 0004
Create Date: 2026-12-03
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0005"
down_revision: str | None = "0004"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


_STATUSES_BEFORE = "status IN ('pending', 'available', 'rejected', 'expired', 'deleted')"
_STATUSES = "status IN ('pending', 'verifying', 'available', 'rejected', 'expired', 'deleted')"


def _statuses(check: str) -> None:
    with op.batch_alter_table("files") as batch:
        batch.drop_constraint(op.f("ck_files_status"), type_="check")
        batch.create_check_constraint(op.f("ck_files_status"), check)


def upgrade() -> None:
    _statuses(_STATUSES)
    op.create_table(
        "events",
        sa.Column(
            "seq",
            sa.BigInteger().with_variant(sa.Integer(), "sqlite"),
            autoincrement=True,
            nullable=False,
        ),
        sa.Column("id", sa.Uuid(), nullable=False),
        sa.Column("type", sa.String(length=32), nullable=False),
        sa.Column("file_id", sa.Uuid(), nullable=False),
        sa.Column("owner_id", sa.String(length=255), nullable=False),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("payload", sa.Text(), nullable=False),
        sa.CheckConstraint(
            "type IN ('file.available', 'file.rejected', 'upload.expired', 'file.deleted')",
            name=op.f("ck_events_type"),
        ),
        sa.PrimaryKeyConstraint("seq", name=op.f("pk_events")),
        sa.UniqueConstraint("id", name=op.f("uq_events_id")),
    )
    op.create_index(op.f("ix_events_owner_id_seq"), "events", ["owner_id", "seq"], unique=False)
    op.create_index(op.f("ix_events_created_at"), "events", ["created_at"], unique=False)
    op.create_table(
        "deliveries",
        sa.Column(
            "id",
            sa.BigInteger().with_variant(sa.Integer(), "sqlite"),
            autoincrement=True,
            nullable=False,
        ),
        sa.Column("event_seq", sa.BigInteger(), nullable=False),
        sa.Column("endpoint", sa.String(length=32), nullable=False),
        sa.Column("file_id", sa.Uuid(), nullable=False),
        sa.Column("status", sa.String(length=16), nullable=False),
        sa.Column("attempts", sa.Integer(), nullable=False),
        sa.Column("next_attempt_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("lease_until", sa.DateTime(timezone=True), nullable=True),
        sa.Column("last_status", sa.Integer(), nullable=True),
        sa.Column("last_error", sa.String(length=255), nullable=True),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("delivered_at", sa.DateTime(timezone=True), nullable=True),
        sa.CheckConstraint(
            "status IN ('pending', 'delivered', 'failed')", name=op.f("ck_deliveries_status")
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_deliveries")),
        sa.UniqueConstraint("event_seq", "endpoint", name=op.f("uq_deliveries_event_seq_endpoint")),
    )
    op.create_index(
        op.f("ix_deliveries_status_next_attempt_at"),
        "deliveries",
        ["status", "next_attempt_at"],
        unique=False,
    )
    op.create_index(
        op.f("ix_deliveries_endpoint_file_id_event_seq"),
        "deliveries",
        ["endpoint", "file_id", "event_seq"],
        unique=False,
    )


def downgrade() -> None:
    # A file still verifying goes back to pending: `complete` verifies it again.
    op.execute("UPDATE files SET status = 'pending' WHERE status = 'verifying'")
    _statuses(_STATUSES_BEFORE)
    op.drop_index(op.f("ix_deliveries_endpoint_file_id_event_seq"), table_name="deliveries")
    op.drop_index(op.f("ix_deliveries_status_next_attempt_at"), table_name="deliveries")
    op.drop_table("deliveries")
    op.drop_index(op.f("ix_events_created_at"), table_name="events")
    op.drop_index(op.f("ix_events_owner_id_seq"), table_name="events")
    op.drop_table("events")
