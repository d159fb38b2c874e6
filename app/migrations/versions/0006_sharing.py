"""Sharing: grants (a file's access for a subject or a group), links (share links, stored as
their token's hash), access (one row per URL issued); the events file.shared, grant.revoked,
link.created and link.revoked

Revision ID: 0006
Revises: 0005
Create Date: 2026-12-03
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0006"
down_revision: str | None = "0005"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

_FILE_EVENTS = "'file.available', 'file.rejected', 'upload.expired', 'file.deleted'"
_SHARING_EVENTS = "'file.shared', 'grant.revoked', 'link.created', 'link.revoked'"
_SEQUENCE = sa.BigInteger().with_variant(sa.Integer(), "sqlite")


def _event_types(check: str) -> None:
    with op.batch_alter_table("events") as batch:
        batch.drop_constraint(op.f("ck_events_type"), type_="check")
        batch.create_check_constraint(op.f("ck_events_type"), check)


def upgrade() -> None:
    _event_types(f"type IN ({_FILE_EVENTS}, {_SHARING_EVENTS})")
    op.create_table(
        "grants",
        sa.Column("id", sa.Uuid(), nullable=False),
        sa.Column("file_id", sa.Uuid(), nullable=False),
        sa.Column("subject", sa.String(length=255), nullable=True),
        sa.Column("group_name", sa.String(length=255), nullable=True),
        sa.Column("permission", sa.String(length=16), nullable=False),
        sa.Column("created_by", sa.String(length=255), nullable=False),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("expires_at", sa.DateTime(timezone=True), nullable=True),
        sa.CheckConstraint("permission IN ('read', 'delete')", name=op.f("ck_grants_permission")),
        sa.CheckConstraint(
            "(subject IS NULL) <> (group_name IS NULL)", name=op.f("ck_grants_subject_or_group")
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_grants")),
        sa.UniqueConstraint("subject", "file_id", name=op.f("uq_grants_subject_file_id")),
        sa.UniqueConstraint("group_name", "file_id", name=op.f("uq_grants_group_name_file_id")),
    )
    op.create_index(op.f("ix_grants_file_id"), "grants", ["file_id"], unique=False)
    op.create_table(
        "links",
        sa.Column("id", sa.Uuid(), nullable=False),
        sa.Column("file_id", sa.Uuid(), nullable=False),
        sa.Column("token_hash", sa.String(length=64), nullable=False),
        sa.Column("created_by", sa.String(length=255), nullable=False),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("expires_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("max_downloads", sa.Integer(), nullable=True),
        sa.Column("downloads", sa.Integer(), nullable=False),
        sa.Column("revoked_at", sa.DateTime(timezone=True), nullable=True),
        sa.CheckConstraint("downloads >= 0", name=op.f("ck_links_downloads")),
        sa.CheckConstraint(
            "max_downloads IS NULL OR max_downloads > 0", name=op.f("ck_links_max_downloads")
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_links")),
        sa.UniqueConstraint("token_hash", name=op.f("uq_links_token_hash")),
    )
    op.create_index(op.f("ix_links_file_id_id"), "links", ["file_id", "id"], unique=False)
    op.create_table(
        "access",
        sa.Column("seq", _SEQUENCE, autoincrement=True, nullable=False),
        sa.Column("file_id", sa.Uuid(), nullable=False),
        sa.Column("action", sa.String(length=16), nullable=False),
        sa.Column("actor_sub", sa.String(length=255), nullable=True),
        sa.Column("link_id", sa.Uuid(), nullable=True),
        sa.Column("client_address", sa.String(length=64), nullable=True),
        sa.Column("issued_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("expires_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("part_number", sa.Integer(), nullable=True),
        sa.CheckConstraint(
            "action IN ('upload', 'part', 'download', 'link')", name=op.f("ck_access_action")
        ),
        sa.PrimaryKeyConstraint("seq", name=op.f("pk_access")),
    )
    op.create_index(op.f("ix_access_file_id_seq"), "access", ["file_id", "seq"], unique=False)
    op.create_index(op.f("ix_access_issued_at"), "access", ["issued_at"], unique=False)


def downgrade() -> None:
    op.drop_index(op.f("ix_access_issued_at"), table_name="access")
    op.drop_index(op.f("ix_access_file_id_seq"), table_name="access")
    op.drop_table("access")
    op.drop_index(op.f("ix_links_file_id_id"), table_name="links")
    op.drop_table("links")
    op.drop_index(op.f("ix_grants_file_id"), table_name="grants")
    op.drop_table("grants")
    # The sharing events go with the feature; the file events stay.
    sharing = f"SELECT seq FROM events WHERE type IN ({_SHARING_EVENTS})"  # noqa: S608 constants
    op.execute(f"DELETE FROM deliveries WHERE event_seq IN ({sharing})")  # noqa: S608
    op.execute(f"DELETE FROM events WHERE type IN ({_SHARING_EVENTS})")  # noqa: S608
    _event_types(f"type IN ({_FILE_EVENTS})")
