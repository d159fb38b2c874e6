"""The caller's files: read one, list them (its own, or those shared with it), delete one,
download one or a batch. Reads and downloads are granted to the owner, admins and the
holders of a live grant, decided in the file's own statement (Ledger.accessible)."""

from __future__ import annotations

import logging
import uuid
from dataclasses import dataclass
from typing import Literal

from app.auth import Principal
from app.config import UrlSettings
from app.errors import (
    AppError,
    FileNotAvailable,
    Forbidden,
    NotFound,
    RateLimited,
    ValidationFailed,
)
from app.filenames import DOWNLOAD_CACHE_CONTROL, download_headers
from app.ledger import BATCH_MAX_IDS, FileRecord
from app.logs import audit
from app.metrics import metrics
from app.models import AccessAction, FileStatus, GrantPermission
from app.ratelimit import RateLimiter, Unlimited
from app.signer import PresignedRequest, Signer
from app.usecases.access import AccessRecorder
from app.usecases.common import Lookup, Removal
from app.usecases.plans import decode_cursor, encode_cursor

Disposition = Literal["attachment", "inline"]

log = logging.getLogger("s3gate.audit")

_VISIBLE = (
    FileStatus.PENDING,
    FileStatus.VERIFYING,
    FileStatus.AVAILABLE,
    FileStatus.REJECTED,
    FileStatus.EXPIRED,
)


@dataclass(frozen=True, slots=True)
class FilePage:
    items: list[FileRecord]
    next_cursor: str | None


class Files:
    def __init__(
        self,
        lookup: Lookup,
        removal: Removal,
        signer: Signer,
        urls: UrlSettings,
        recorder: AccessRecorder,
        limiter: RateLimiter | None = None,
    ) -> None:
        self._lookup = lookup
        self._ledger = lookup.ledger
        self._removal = removal
        self._signer = signer
        self._urls = urls
        self._recorder = recorder
        self._limiter = limiter or Unlimited()  # batches count one hit per URL
        self._metrics = metrics()

    async def readable(
        self,
        principal: Principal,
        file_id: uuid.UUID,
        permission: GrantPermission = GrantPermission.READ,
    ) -> FileRecord | None:
        """The file if the caller may act on it with `permission`: an admin, its owner, or
        the holder of a live grant (itself or one of its groups)."""
        if principal.is_admin:
            return await self._ledger.get(file_id, None)
        return await self._ledger.accessible(
            file_id, principal.sub, principal.groups, self._lookup.now(), permission
        )

    async def _visible(
        self,
        principal: Principal,
        file_id: uuid.UUID,
        permission: GrantPermission = GrantPermission.READ,
    ) -> FileRecord:
        record = await self.readable(principal, file_id, permission)
        if record is None:
            raise NotFound()  # missing, not yours, not shared with you: one answer
        return record

    async def get_file(self, principal: Principal, file_id: uuid.UUID) -> FileRecord:
        """One file the caller may see."""
        return await self._visible(principal, file_id)

    async def list_files(
        self,
        principal: Principal,
        *,
        limit: int,
        cursor: str | None,
        owner: str | None,
        shared: bool = False,
    ) -> FilePage:
        """A page of files, newest first: the caller's (or, for an admin, `owner`'s), or with
        `shared` the files other owners granted the caller."""
        if owner is not None and owner != principal.sub and not principal.is_admin:
            raise Forbidden()
        if shared and owner is not None:
            raise ValidationFailed(
                errors=[{"loc": ["query", "owner"], "msg": "not with shared=true"}]
            )
        before = decode_cursor(cursor) if cursor else None
        if shared:
            rows = await self._ledger.shared_with(
                principal.sub, principal.groups, self._lookup.now(), limit=limit + 1, before=before
            )
        else:
            rows = await self._ledger.page(owner or principal.sub, limit=limit + 1, before=before)
        if len(rows) > limit:
            return FilePage(rows[:limit], encode_cursor(rows[limit - 1].id))
        return FilePage(rows, None)

    async def delete_file(self, principal: Principal, file_id: uuid.UUID) -> None:
        """Delete the file: it leaves listings and its object leaves the bucket. The owner,
        an admin, or the holder of a live `delete` grant may."""
        record = await self.readable(principal, file_id, GrantPermission.DELETE)
        if record is None:
            if await self.readable(principal, file_id) is not None:
                raise Forbidden("Your grant on this file is read-only.")
            raise NotFound()
        # A grantee removes the owner's row: the removal's compare-and-set is scoped to it.
        if not principal.is_admin and record.owner_id != principal.sub:
            principal = _owner_of(record)
        await self._removal.remove(principal, record, from_status=_VISIBLE)

    def sign_download(self, record: FileRecord, disposition: Disposition) -> PresignedRequest:
        """A short-lived GET for an available file's object (no access check: the caller's)."""
        content_type, content_disposition = download_headers(
            record.content_type, disposition, record.filename
        )
        return self._signer.presign_get(
            record.object_key,
            response_content_type=content_type,
            response_content_disposition=content_disposition,
            response_cache_control=DOWNLOAD_CACHE_CONTROL,
            ttl_seconds=self._urls.download_url_ttl_seconds,
        )

    def _handed_out(
        self, principal: Principal, record: FileRecord, download: PresignedRequest
    ) -> None:
        self._recorder.issued(
            record.id, AccessAction.DOWNLOAD, download.expires_at, sub=principal.sub
        )
        audit(
            log,
            "issued download url",
            file=record.id,
            owner=record.owner_id,
            by=principal.sub,
            expires=download.expires_at,
        )
        self._metrics.urls_issued["get"].inc()

    async def issue_download(
        self, principal: Principal, file_id: uuid.UUID, disposition: Disposition
    ) -> PresignedRequest:
        """Sign a short-lived GET for an available file."""
        record = await self._visible(principal, file_id)
        if record.status != FileStatus.AVAILABLE:
            raise FileNotAvailable()
        download = self.sign_download(record, disposition)
        self._handed_out(principal, record, download)
        return download

    async def issue_downloads(
        self, principal: Principal, file_ids: list[str], disposition: Disposition
    ) -> list[PresignedRequest | AppError]:
        """A GET per id, in order, or the error the single route would answer for it; one
        ledger statement for the whole batch, and one rate-limit hit per URL issued (as many
        as the caller's burst allows: the rest answer rate_limited)."""
        parsed = [_file_id(raw) for raw in file_ids]
        wanted = list(dict.fromkeys(file_id for file_id in parsed if file_id is not None))
        assert len(wanted) <= BATCH_MAX_IDS  # the request's schema caps the list
        sub = None if principal.is_admin else principal.sub
        rows = await self._ledger.accessible_many(wanted, sub, principal.groups, self._lookup.now())
        found = {record.id: record for record in rows}
        signable = sum(
            1
            for file_id in parsed
            if file_id in found and found[file_id].status == FileStatus.AVAILABLE
        )
        allowed = await self._limiter.take(principal.sub, signable) if signable else 0
        answers: list[PresignedRequest | AppError] = []
        for file_id in parsed:
            record = found.get(file_id) if file_id is not None else None
            if record is None:
                answers.append(NotFound())
            elif record.status != FileStatus.AVAILABLE:
                answers.append(FileNotAvailable())
            elif allowed == 0:
                answers.append(RateLimited("Over the rate limit: ask for this one again later."))
            else:
                allowed -= 1
                download = self.sign_download(record, disposition)
                self._handed_out(principal, record, download)
                answers.append(download)
        return answers


def _file_id(raw: str) -> uuid.UUID | None:
    try:
        return uuid.UUID(raw)
    except ValueError:
        return None  # names no file: the missing id's answer


def _owner_of(record: FileRecord) -> Principal:
    """The owner as the principal a removal is scoped to (a `delete` grantee acting)."""
    return Principal(sub=record.owner_id, is_admin=False)
