"""Sharing a file: grants to a subject or group, share links, and a link's use.

Only the owner (or an admin) manages a file's sharing. A grant or link never makes a URL live
longer: every use signs a fresh GET with the download TTL, after the ledger re-checked that
the grant or link is live, so a revocation holds from the next request on (docs/sharing.md).
"""

from __future__ import annotations

import hashlib
import logging
import secrets
import uuid
from datetime import datetime, timedelta
from typing import Literal

from uuid6 import uuid7

from app.auth import Principal
from app.config import SharingSettings, UrlSettings
from app.errors import FileNotAvailable, Forbidden, NotFound, ValidationFailed
from app.events import NewEvent, file_event
from app.ledger import FileRecord, Grant, Link
from app.logs import audit
from app.metrics import metrics
from app.models import AccessAction, EventType, FileStatus, GrantPermission
from app.ratelimit import RateLimiter, Unlimited
from app.schemas import GrantIn, GrantOut, LinkOut
from app.signer import PresignedRequest
from app.usecases.access import AccessRecorder
from app.usecases.common import Lookup, scope
from app.usecases.files import Files

log = logging.getLogger("s3gate.audit")

# 32 random bytes: guessing a live link is out of reach, so its 404 needs no other defence.
LINK_TOKEN_BYTES = 32

MAX_TOKEN_CHARS = 128

LinkState = Literal["active", "expired", "exhausted", "revoked"]


def token_hash(token: str) -> str:
    """What the ledger stores of a link's token (and looks it up by)."""
    return hashlib.sha256(token.encode()).hexdigest()


def grant_view(grant: Grant, now: datetime) -> GrantOut:
    """The Grant resource."""
    return GrantOut(
        id=grant.id,
        file_id=grant.file_id,
        subject=grant.subject,
        group=grant.group_name,
        permission=GrantPermission(grant.permission),
        created_by=grant.created_by,
        created_at=grant.created_at,
        expires_at=grant.expires_at,
        active=grant.expires_at is None or grant.expires_at > now,
    )


def link_state(link: Link, now: datetime) -> LinkState:
    if link.revoked_at is not None:
        return "revoked"
    if link.expires_at <= now:
        return "expired"
    if link.max_downloads is not None and link.downloads >= link.max_downloads:
        return "exhausted"
    return "active"


def link_view(link: Link, now: datetime) -> LinkOut:
    """The Link resource (never its token)."""
    return LinkOut(
        id=link.id,
        file_id=link.file_id,
        created_by=link.created_by,
        created_at=link.created_at,
        expires_at=link.expires_at,
        max_downloads=link.max_downloads,
        downloads=link.downloads,
        revoked_at=link.revoked_at,
        state=link_state(link, now),
    )


class Sharing:
    """Grants and links of the caller's files, and the use of a link by whoever holds it."""

    def __init__(
        self,
        lookup: Lookup,
        files: Files,
        recorder: AccessRecorder,
        settings: SharingSettings,
        urls: UrlSettings,
        *,
        link_limiter: RateLimiter | None = None,
        address_limiter: RateLimiter | None = None,
        groups_enabled: bool = False,
    ) -> None:
        self._groups_enabled = groups_enabled  # S3GATE_GROUP_CLAIM is set
        self._lookup = lookup
        self._ledger = lookup.ledger
        self._rooms = lookup.ledger.sharing
        self._files = files
        self._recorder = recorder
        self._settings = settings
        self._urls = urls
        self._link_limiter = link_limiter or Unlimited()
        self._address_limiter = address_limiter or Unlimited()
        self._metrics = metrics()

    def now(self) -> datetime:
        return self._lookup.now()

    async def managed(self, principal: Principal, file_id: uuid.UUID) -> FileRecord:
        """The file, if the caller may manage its sharing (its owner, or an admin). A grantee
        learns it may not (403); anyone else gets the missing id's 404."""
        record = await self._ledger.get(file_id, scope(principal))
        if record is not None:
            return record
        if await self._files.readable(principal, file_id) is not None:
            raise Forbidden("Only the file's owner or an admin manages its sharing.")
        raise NotFound()

    async def grant(
        self, principal: Principal, file_id: uuid.UUID, request: GrantIn
    ) -> tuple[Grant, bool]:
        """Grant access (or change the grantee's grant); (the grant, whether it is new)."""
        record = await self.managed(principal, file_id)
        now = self._lookup.now()
        if request.expires_at is not None and request.expires_at <= now:
            raise ValidationFailed(
                errors=[{"loc": ["body", "expires_at"], "msg": "must be in the future"}]
            )
        if request.group is not None and not self._groups_enabled:
            # A grant no token could ever match would look like access that works.
            raise ValidationFailed(
                errors=[
                    {
                        "loc": ["body", "group"],
                        "msg": "groups are off: S3GATE_GROUP_CLAIM names no token claim",
                    }
                ]
            )
        if request.subject is not None and request.subject == record.owner_id:
            raise ValidationFailed(
                errors=[{"loc": ["body", "subject"], "msg": "the owner has access already"}]
            )
        draft = Grant(
            id=uuid7(),
            file_id=record.id,
            subject=request.subject,
            group_name=request.group,
            permission=request.permission,
            created_by=principal.sub,
            created_at=now,
            expires_at=request.expires_at,
        )
        grant = await self._rooms.put_grant(
            draft, lambda stored: self._grant_event(EventType.FILE_SHARED, record, stored, now)
        )
        audit(log, "granted access", file=record.id, owner=record.owner_id, by=principal.sub)
        return grant, grant.id == draft.id

    async def grants(self, principal: Principal, file_id: uuid.UUID) -> list[Grant]:
        """The file's grants."""
        record = await self.managed(principal, file_id)
        return await self._rooms.grants_of(record.id)

    async def revoke_grant(
        self, principal: Principal, file_id: uuid.UUID, grant_id: uuid.UUID
    ) -> None:
        """Revoke a grant: the grantee's next request is answered as for a missing id."""
        record = await self.managed(principal, file_id)
        now = self._lookup.now()
        revoked = await self._rooms.delete_grant(
            record.id,
            grant_id,
            lambda gone: self._grant_event(EventType.GRANT_REVOKED, record, gone, now),
        )
        if revoked is None:
            raise NotFound("No such grant.")
        audit(log, "revoked grant", file=record.id, owner=record.owner_id, by=principal.sub)

    async def create_link(
        self, principal: Principal, file_id: uuid.UUID, expires_in: int, max_downloads: int | None
    ) -> tuple[Link, str]:
        """A share link for an available file: (the link, its token, shown only now)."""
        record = await self.managed(principal, file_id)
        if expires_in > self._settings.link_max_ttl_seconds:
            raise ValidationFailed(
                errors=[
                    {
                        "loc": ["body", "expires_in"],
                        "msg": f"at most {self._settings.link_max_ttl_seconds} seconds",
                    }
                ]
            )
        if record.status != FileStatus.AVAILABLE:
            raise FileNotAvailable()
        token = secrets.token_urlsafe(LINK_TOKEN_BYTES)
        now = self._lookup.now()
        draft = Link(
            id=uuid7(),
            file_id=record.id,
            token_hash=token_hash(token),
            created_by=principal.sub,
            created_at=now,
            expires_at=now + timedelta(seconds=expires_in),
            max_downloads=max_downloads,
            downloads=0,
            revoked_at=None,
        )
        link = await self._rooms.insert_link(
            draft, lambda stored: self._link_event(EventType.LINK_CREATED, record, stored, now)
        )
        audit(log, "created share link", file=record.id, link=link.id, by=principal.sub)
        return link, token

    async def links(self, principal: Principal, file_id: uuid.UUID) -> list[Link]:
        """The file's links, newest first."""
        record = await self.managed(principal, file_id)
        return await self._rooms.links_of(record.id)

    async def revoke_link(
        self, principal: Principal, file_id: uuid.UUID, link_id: uuid.UUID
    ) -> None:
        """Revoke a link (again: no change); its next use is the unknown link's 404."""
        record = await self.managed(principal, file_id)
        now = self._lookup.now()
        revoked = await self._rooms.revoke_link(
            record.id,
            link_id,
            now,
            lambda stored: self._link_event(EventType.LINK_REVOKED, record, stored, now),
        )
        if revoked is None and await self._rooms.link(record.id, link_id) is None:
            raise NotFound("No such link.")
        audit(log, "revoked share link", file=record.id, link=link_id, by=principal.sub)

    async def use_link(
        self,
        token: str,
        disposition: Literal["attachment", "inline"],
        address: str | None,
    ) -> PresignedRequest:
        """One use of a share link: a fresh short GET, once the ledger counted the use of a
        live link to an available file. Every refusal is the same NotFound."""
        if address is not None:
            await self._address_limiter.check(address)
        # Any string is a token that names no link, however odd: one 404 for all of them.
        digest = token_hash(token[:MAX_TOKEN_CHARS])
        await self._link_limiter.check(digest)
        live = len(token) <= MAX_TOKEN_CHARS
        link = await self._rooms.use_link(digest, self._lookup.now()) if live else None
        record = await self._ledger.get(link.file_id, None) if link is not None else None
        if link is None or record is None or record.status != FileStatus.AVAILABLE:
            self._metrics.link_uses["refused"].inc()
            raise NotFound()
        download = self._files.sign_download(record, disposition)
        self._recorder.issued(record.id, AccessAction.LINK, download.expires_at, link_id=link.id)
        audit(log, "issued download url", file=record.id, link=link.id)
        self._metrics.link_uses["redirected"].inc()
        self._metrics.urls_issued["get"].inc()
        return download

    @staticmethod
    def _grant_event(kind: EventType, record: FileRecord, grant: Grant, now: datetime) -> NewEvent:
        view = grant_view(grant, now).model_dump(mode="json")
        return file_event(kind, record, now, {"grant": view})

    @staticmethod
    def _link_event(kind: EventType, record: FileRecord, link: Link, now: datetime) -> NewEvent:
        return file_event(kind, record, now, {"link": link_view(link, now).model_dump(mode="json")})
