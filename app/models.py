"""The ledger's table: the one description of a row, for the migrations and the request path.

The statements live in app/ledger/statements.py. The column types also say how each value is
stored on each backend: the request path applies their own conversions (app/ledger/rows.py).
"""

from __future__ import annotations

import uuid
from datetime import UTC, datetime
from enum import StrEnum
from typing import Any

from sqlalchemy import (
    BigInteger,
    CheckConstraint,
    DateTime,
    Dialect,
    Index,
    Integer,
    MetaData,
    String,
    Table,
    Text,
    UniqueConstraint,
    Uuid,
)
from sqlalchemy.orm import DeclarativeBase, Mapped, mapped_column
from sqlalchemy.types import TypeDecorator

# Stable constraint names, so migrations can name what they alter on every backend.
NAMING_CONVENTION = {
    "ix": "ix_%(table_name)s_%(column_0_N_name)s",
    "uq": "uq_%(table_name)s_%(column_0_N_name)s",
    "ck": "ck_%(table_name)s_%(constraint_name)s",
    "fk": "fk_%(table_name)s_%(column_0_name)s_%(referred_table_name)s",
    "pk": "pk_%(table_name)s",
}


class FileStatus(StrEnum):
    PENDING = "pending"
    # Uploaded and accepted by `complete`; a background worker reads the whole object (its
    # checksum, a malware scan) before it becomes available or rejected.
    VERIFYING = "verifying"
    AVAILABLE = "available"
    REJECTED = "rejected"
    EXPIRED = "expired"
    # Kept as a row (never shown to clients) so the ledger still accounts for the object.
    DELETED = "deleted"


class UploadMethod(StrEnum):
    PUT = "put"  # one presigned PUT
    FORM = "form"  # an HTML-form presigned POST with a policy
    MULTIPART = "multipart"  # an S3 multipart upload, one presigned PUT per part


class UtcDateTime(TypeDecorator[datetime]):
    """Timezone-aware UTC in Python on every backend (SQLite stores naive UTC); a naive
    datetime is refused."""

    impl = DateTime(timezone=True)
    cache_ok = True

    @property
    def python_type(self) -> type[datetime]:
        return datetime

    def process_bind_param(self, value: datetime | None, dialect: Dialect) -> datetime | None:
        if value is None:
            return None
        if value.tzinfo is None:
            raise ValueError("naive datetime given to the ledger")
        value = value.astimezone(UTC)
        return value.replace(tzinfo=None) if dialect.name == "sqlite" else value

    def process_result_value(self, value: Any, dialect: Dialect) -> datetime | None:
        if value is None:
            return None
        assert isinstance(value, datetime)
        return value.replace(tzinfo=UTC) if value.tzinfo is None else value.astimezone(UTC)


class Base(DeclarativeBase):
    metadata = MetaData(naming_convention=NAMING_CONVENTION)


class FileRow(Base):
    __tablename__ = "files"

    # UUIDv7: time-ordered, so "newest first" is an index scan on the primary key.
    id: Mapped[uuid.UUID] = mapped_column(Uuid(), primary_key=True)
    owner_id: Mapped[str] = mapped_column(String(255))
    object_key: Mapped[str] = mapped_column(String(1024))
    filename: Mapped[str] = mapped_column(String(255))
    content_type: Mapped[str] = mapped_column(String(255))
    size: Mapped[int] = mapped_column(BigInteger)
    checksum_sha256: Mapped[str | None] = mapped_column(String(44))
    status: Mapped[str] = mapped_column(String(16))
    idempotency_key: Mapped[str | None] = mapped_column(String(255))
    request_hash: Mapped[str | None] = mapped_column(String(64))
    created_at: Mapped[datetime] = mapped_column(UtcDateTime())
    upload_expires_at: Mapped[datetime] = mapped_column(UtcDateTime())
    completed_at: Mapped[datetime | None] = mapped_column(UtcDateTime())
    deleted_at: Mapped[datetime | None] = mapped_column(UtcDateTime())
    # Set once the store confirmed the object is gone; a deleted row without it is an orphan
    # for the cleanup job to remove.
    purged_at: Mapped[datetime | None] = mapped_column(UtcDateTime())
    # How the client was told to send the bytes; a replay re-signs the same kind of upload.
    upload_method: Mapped[str] = mapped_column(String(16), server_default=UploadMethod.PUT)
    multipart_upload_id: Mapped[str | None] = mapped_column(String(1024))
    part_size: Mapped[int | None] = mapped_column(BigInteger)
    # Where the upload URL or policy writes, when that is not object_key: a form policy cannot
    # be create-only, so its bytes land here and only a verified copy is made at object_key.
    upload_key: Mapped[str | None] = mapped_column(String(1024))
    # While set and in the future, one completion is verifying this file (renewed as it runs);
    # any other completion answers 409 instead of reading the object again.
    verify_lease_until: Mapped[datetime | None] = mapped_column(UtcDateTime())
    # Part URLs signed so far: up to PART_URL_BUDGET per part they are free of the owner's
    # rate limit (a client that asks one part per request is not throttled on its own file).
    part_urls_signed: Mapped[int] = mapped_column(Integer, server_default="0")

    __table_args__ = (
        CheckConstraint(
            "status IN ('pending', 'verifying', 'available', 'rejected', 'expired', 'deleted')",
            name="status",
        ),
        CheckConstraint("size > 0", name="size_positive"),
        CheckConstraint("upload_method IN ('put', 'form', 'multipart')", name="upload_method"),
        UniqueConstraint("object_key"),
        UniqueConstraint("upload_key"),
        # NULL keys never collide, so only requests that sent Idempotency-Key are constrained.
        UniqueConstraint("owner_id", "idempotency_key"),
        Index(None, "owner_id", "id"),
    )


files_table: Table = FileRow.__table__  # type: ignore[assignment]


class EventType(StrEnum):
    FILE_AVAILABLE = "file.available"
    FILE_REJECTED = "file.rejected"
    UPLOAD_EXPIRED = "upload.expired"
    FILE_DELETED = "file.deleted"
    FILE_SHARED = "file.shared"
    GRANT_REVOKED = "grant.revoked"
    LINK_CREATED = "link.created"
    LINK_REVOKED = "link.revoked"


EVENT_TYPES_CHECK = "type IN ({})".format(", ".join(f"'{kind}'" for kind in EventType))

# SQLite makes only an INTEGER PRIMARY KEY an alias of the rowid (the autoincrementing one).
_SEQUENCE = BigInteger().with_variant(Integer(), "sqlite")


class EventRow(Base):
    """The outbox: one row per status change that backends hear of, written in the same
    transaction as the change (app/ledger), read by the event feed and the webhook dispatcher."""

    __tablename__ = "events"

    # Commit order, the feed's cursor: writers take turns assigning it (app/ledger).
    seq: Mapped[int] = mapped_column(_SEQUENCE, primary_key=True, autoincrement=True)
    # The public id (webhook-id, the feed's `id`): UUIDv7, time-ordered.
    id: Mapped[uuid.UUID] = mapped_column(Uuid())
    type: Mapped[str] = mapped_column(String(32))
    file_id: Mapped[uuid.UUID] = mapped_column(Uuid())
    owner_id: Mapped[str] = mapped_column(String(255))
    created_at: Mapped[datetime] = mapped_column(UtcDateTime())
    # The event as delivered, JSON: {"id", "type", "timestamp", "data": {"file": ..., ...}}.
    payload: Mapped[str] = mapped_column(Text())

    __table_args__ = (
        CheckConstraint(EVENT_TYPES_CHECK, name="type"),
        UniqueConstraint("id"),
        Index(None, "owner_id", "seq"),
        Index(None, "created_at"),
    )


events_table: Table = EventRow.__table__  # type: ignore[assignment]


class DeliveryStatus(StrEnum):
    PENDING = "pending"  # to be attempted at next_attempt_at (or in progress, under a lease)
    DELIVERED = "delivered"
    FAILED = "failed"  # dead-lettered: the last attempt failed or the receiver refused it


class DeliveryRow(Base):
    """One event for one webhook endpoint, written with the event (the same transaction), so
    no configured endpoint misses an event that was committed."""

    __tablename__ = "deliveries"

    id: Mapped[int] = mapped_column(_SEQUENCE, primary_key=True, autoincrement=True)
    event_seq: Mapped[int] = mapped_column(BigInteger)
    endpoint: Mapped[str] = mapped_column(String(32))
    # Copied from the event: deliveries of one file to one endpoint go out in event order.
    file_id: Mapped[uuid.UUID] = mapped_column(Uuid())
    status: Mapped[str] = mapped_column(String(16))
    attempts: Mapped[int] = mapped_column(Integer)
    next_attempt_at: Mapped[datetime] = mapped_column(UtcDateTime())
    # While set and in the future, one dispatcher is attempting it (across replicas).
    lease_until: Mapped[datetime | None] = mapped_column(UtcDateTime())
    last_status: Mapped[int | None] = mapped_column(Integer)
    last_error: Mapped[str | None] = mapped_column(String(255))
    created_at: Mapped[datetime] = mapped_column(UtcDateTime())
    delivered_at: Mapped[datetime | None] = mapped_column(UtcDateTime())

    __table_args__ = (
        CheckConstraint("status IN ('pending', 'delivered', 'failed')", name="status"),
        UniqueConstraint("event_seq", "endpoint"),
        Index(None, "status", "next_attempt_at"),
        Index(None, "endpoint", "file_id", "event_seq"),
    )


deliveries_table: Table = DeliveryRow.__table__  # type: ignore[assignment]


class GrantPermission(StrEnum):
    READ = "read"  # GET /files/{id}, GET /downloads/{id} (and batch), the file in listings
    DELETE = "delete"  # read, and DELETE /files/{id}


class GrantRow(Base):
    """Access to one file for a subject (a token's `sub`) or a group (a value of the claim
    S3GATE_GROUP_CLAIM names). Revoking deletes the row: access is decided from live rows
    only, and the revocation is kept as its grant.revoked event."""

    __tablename__ = "grants"

    id: Mapped[uuid.UUID] = mapped_column(Uuid(), primary_key=True)
    file_id: Mapped[uuid.UUID] = mapped_column(Uuid())
    subject: Mapped[str | None] = mapped_column(String(255))
    group_name: Mapped[str | None] = mapped_column(String(255))
    permission: Mapped[str] = mapped_column(String(16))
    created_by: Mapped[str] = mapped_column(String(255))
    created_at: Mapped[datetime] = mapped_column(UtcDateTime())
    expires_at: Mapped[datetime | None] = mapped_column(UtcDateTime())

    __table_args__ = (
        CheckConstraint("permission IN ('read', 'delete')", name="permission"),
        CheckConstraint("(subject IS NULL) <> (group_name IS NULL)", name="subject_or_group"),
        # One grant per file and grantee (a second grant updates it); NULLs never collide,
        # so each constraint binds only its kind of grantee. They are the access check's
        # indexes too: (subject, file_id) and (group_name, file_id).
        UniqueConstraint("subject", "file_id"),
        UniqueConstraint("group_name", "file_id"),
        Index(None, "file_id"),
    )


grants_table: Table = GrantRow.__table__  # type: ignore[assignment]


class LinkRow(Base):
    """A share link: whoever holds its token may download the file, within its expiry and
    download count. Only the token's SHA-256 is stored; revoking sets revoked_at."""

    __tablename__ = "links"

    id: Mapped[uuid.UUID] = mapped_column(Uuid(), primary_key=True)
    file_id: Mapped[uuid.UUID] = mapped_column(Uuid())
    token_hash: Mapped[str] = mapped_column(String(64))
    created_by: Mapped[str] = mapped_column(String(255))
    created_at: Mapped[datetime] = mapped_column(UtcDateTime())
    expires_at: Mapped[datetime] = mapped_column(UtcDateTime())
    max_downloads: Mapped[int | None] = mapped_column(Integer)
    downloads: Mapped[int] = mapped_column(Integer)
    revoked_at: Mapped[datetime | None] = mapped_column(UtcDateTime())

    __table_args__ = (
        CheckConstraint("downloads >= 0", name="downloads"),
        CheckConstraint("max_downloads IS NULL OR max_downloads > 0", name="max_downloads"),
        UniqueConstraint("token_hash"),
        Index(None, "file_id", "id"),
    )


links_table: Table = LinkRow.__table__  # type: ignore[assignment]


class AccessAction(StrEnum):
    UPLOAD = "upload"  # a PUT URL or form POST policy
    PART = "part"  # one multipart part URL
    DOWNLOAD = "download"  # a GET URL for a token's holder
    LINK = "link"  # a GET URL for a share link's holder


class AccessRow(Base):
    """The access history: one row per URL issued, who it went to and until when."""

    __tablename__ = "access"

    seq: Mapped[int] = mapped_column(_SEQUENCE, primary_key=True, autoincrement=True)
    file_id: Mapped[uuid.UUID] = mapped_column(Uuid())
    action: Mapped[str] = mapped_column(String(16))
    # The token's sub, or (a share link's use) None with the link's id.
    actor_sub: Mapped[str | None] = mapped_column(String(255))
    link_id: Mapped[uuid.UUID | None] = mapped_column(Uuid())
    client_address: Mapped[str | None] = mapped_column(String(64))
    issued_at: Mapped[datetime] = mapped_column(UtcDateTime())
    expires_at: Mapped[datetime] = mapped_column(UtcDateTime())
    part_number: Mapped[int | None] = mapped_column(Integer)

    __table_args__ = (
        CheckConstraint("action IN ('upload', 'part', 'download', 'link')", name="action"),
        Index(None, "file_id", "seq"),
        Index(None, "issued_at"),
    )


access_table: Table = AccessRow.__table__  # type: ignore[assignment]
