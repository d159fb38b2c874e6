"""The caller's files: read one, list them, delete one, download one."""

from __future__ import annotations

import logging
import uuid
from dataclasses import dataclass
from typing import Literal

from app.auth import Principal
from app.config import UrlSettings
from app.errors import FileNotAvailable, Forbidden
from app.filenames import DOWNLOAD_CACHE_CONTROL, download_headers
from app.ledger import FileRecord
from app.logs import audit
from app.metrics import metrics
from app.models import FileStatus
from app.signer import PresignedRequest, Signer
from app.usecases.common import Lookup, Removal
from app.usecases.plans import decode_cursor, encode_cursor

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
    def __init__(self, lookup: Lookup, removal: Removal, signer: Signer, urls: UrlSettings) -> None:
        self._lookup = lookup
        self._removal = removal
        self._signer = signer
        self._urls = urls
        self._metrics = metrics()

    async def get_file(self, principal: Principal, file_id: uuid.UUID) -> FileRecord:
        """One file the caller may see."""
        return await self._lookup.owned(principal, file_id)

    async def list_files(
        self, principal: Principal, *, limit: int, cursor: str | None, owner: str | None
    ) -> FilePage:
        """A page of files, newest first."""
        if owner is not None and owner != principal.sub and not principal.is_admin:
            raise Forbidden()
        before = decode_cursor(cursor) if cursor else None
        rows = await self._lookup.ledger.page(
            owner or principal.sub, limit=limit + 1, before=before
        )
        if len(rows) > limit:
            return FilePage(rows[:limit], encode_cursor(rows[limit - 1].id))
        return FilePage(rows, None)

    async def delete_file(self, principal: Principal, file_id: uuid.UUID) -> None:
        """Delete the file: it leaves listings and its object leaves the bucket."""
        record = await self._lookup.owned(principal, file_id)
        await self._removal.remove(principal, record, from_status=_VISIBLE)

    async def issue_download(
        self,
        principal: Principal,
        file_id: uuid.UUID,
        disposition: Literal["attachment", "inline"],
    ) -> PresignedRequest:
        """Sign a short-lived GET for an available file."""
        record = await self._lookup.owned(principal, file_id)
        if record.status != FileStatus.AVAILABLE:
            raise FileNotAvailable()
        content_type, content_disposition = download_headers(
            record.content_type, disposition, record.filename
        )
        download = self._signer.presign_get(
            record.object_key,
            response_content_type=content_type,
            response_content_disposition=content_disposition,
            response_cache_control=DOWNLOAD_CACHE_CONTROL,
            ttl_seconds=self._urls.download_url_ttl_seconds,
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
        return download
