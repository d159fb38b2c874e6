"""Sharing routes: a file's grants and share links (its owner's or an admin's to manage), the
public share-link route, and the file's access history."""

from __future__ import annotations

import uuid
from typing import Annotated, Literal

from fastapi import APIRouter, Path, Query, Request, Response, status
from fastapi.responses import RedirectResponse

from app.errors import (
    CredentialsUnavailable,
    FileNotAvailable,
    Forbidden,
    InvalidToken,
    MissingToken,
    NotFound,
    RateLimited,
    RateLimiterUnavailable,
    ValidationFailed,
)
from app.http.deps import AccessDep, FileIdDep, PrincipalDep, SettingsDep, SharingDep
from app.http.middleware import ModelResponse
from app.http.problems import problem_responses
from app.http.routing import LeanRoute
from app.schemas import (
    AccessOut,
    AccessPageOut,
    CreatedLinkOut,
    GrantIn,
    GrantListOut,
    GrantOut,
    LinkIn,
    LinkListOut,
    LinkOut,
)
from app.usecases.sharing import grant_view, link_view

router = APIRouter(tags=["sharing"], route_class=LeanRoute)

SHARE_LINK_PATH = "/s/{token}"
_MANAGE = (MissingToken, InvalidToken, Forbidden, NotFound)


def _item_id(value: str) -> uuid.UUID:
    # A malformed id names no grant or link: the same 404 as an unknown one.
    try:
        return uuid.UUID(value)
    except ValueError:
        raise NotFound() from None


ItemId = Annotated[str, Path(max_length=64, description="The grant's or link's id.")]


@router.post(
    "/files/{file_id}/grants",
    status_code=status.HTTP_201_CREATED,
    response_model=GrantOut,
    summary="Share a file with a subject or a group",
    responses={
        200: {"description": "The grantee had a grant: its permission and expiry replaced."},
        **problem_responses(*_MANAGE, ValidationFailed),
    },
)
async def create_grant(
    file_id: FileIdDep, body: GrantIn, principal: PrincipalDep, sharing: SharingDep
) -> Response:
    """The owner or an admin only (a grantee gets 403, anyone else 404). The grantee may then
    `GET /files/{id}`, `GET /downloads/{id}` (and, with `delete`, `DELETE /files/{id}`); it
    finds the file under `GET /files?shared=true`. Revoked or expired, the grant stops
    working at the next request."""
    grant, created = await sharing.grant(principal, file_id, body)
    view = grant_view(grant, grant.created_at)
    return ModelResponse(view, status_code=201 if created else 200)


@router.get(
    "/files/{file_id}/grants",
    response_model=GrantListOut,
    summary="List a file's grants",
    responses=problem_responses(*_MANAGE),
)
async def list_grants(file_id: FileIdDep, principal: PrincipalDep, sharing: SharingDep) -> Response:
    grants = await sharing.grants(principal, file_id)
    now = sharing.now()
    return ModelResponse(GrantListOut(items=[grant_view(grant, now) for grant in grants]))


@router.delete(
    "/files/{file_id}/grants/{grant_id}",
    status_code=status.HTTP_204_NO_CONTENT,
    summary="Revoke a grant",
    responses=problem_responses(*_MANAGE),
)
async def revoke_grant(
    file_id: FileIdDep, grant_id: ItemId, principal: PrincipalDep, sharing: SharingDep
) -> Response:
    """A URL the grantee already holds lives out its short TTL; nothing new is signed."""
    await sharing.revoke_grant(principal, file_id, _item_id(grant_id))
    return Response(status_code=status.HTTP_204_NO_CONTENT)


@router.post(
    "/files/{file_id}/links",
    status_code=status.HTTP_201_CREATED,
    response_model=CreatedLinkOut,
    summary="Create a share link",
    responses=problem_responses(*_MANAGE, FileNotAvailable, ValidationFailed),
)
async def create_link(
    file_id: FileIdDep,
    body: LinkIn,
    request: Request,
    principal: PrincipalDep,
    sharing: SharingDep,
    settings: SettingsDep,
) -> Response:
    """The token is in this answer only: s3gate stores its SHA-256. Anyone holding the URL
    gets, on each GET, a 307 to a fresh download URL, while the link is live (not revoked,
    expired or used `max_downloads` times) and the file available."""
    link, token = await sharing.create_link(principal, file_id, body.expires_in, body.max_downloads)
    base = settings.public_url or str(request.base_url).rstrip("/")
    view = link_view(link, link.created_at)
    url = base + SHARE_LINK_PATH.format(token=token)
    return ModelResponse(CreatedLinkOut(**view.model_dump(), token=token, url=url), status_code=201)


@router.get(
    "/files/{file_id}/links",
    response_model=LinkListOut,
    summary="List a file's share links",
    responses=problem_responses(*_MANAGE),
)
async def list_links(file_id: FileIdDep, principal: PrincipalDep, sharing: SharingDep) -> Response:
    """Never their tokens."""
    links = await sharing.links(principal, file_id)
    now = sharing.now()
    return ModelResponse(LinkListOut(items=[link_view(link, now) for link in links]))


@router.delete(
    "/files/{file_id}/links/{link_id}",
    status_code=status.HTTP_204_NO_CONTENT,
    summary="Revoke a share link",
    responses=problem_responses(*_MANAGE),
)
async def revoke_link(
    file_id: FileIdDep, link_id: ItemId, principal: PrincipalDep, sharing: SharingDep
) -> Response:
    """Its next use answers 404; revoking it again is a 204 too."""
    await sharing.revoke_link(principal, file_id, _item_id(link_id))
    return Response(status_code=status.HTTP_204_NO_CONTENT)


@router.get(
    SHARE_LINK_PATH,
    status_code=307,
    summary="Use a share link (no token needed)",
    response_class=RedirectResponse,
    responses={
        307: {"description": "Location is a fresh presigned GET (the download URL TTL)."},
        **problem_responses(NotFound, RateLimited, RateLimiterUnavailable, CredentialsUnavailable),
    },
)
async def use_link(
    token: Annotated[str, Path(description="The link's token.")],
    request: Request,
    sharing: SharingDep,
    disposition: Annotated[Literal["attachment", "inline"], Query()] = "attachment",
) -> Response:
    """A revoked, expired, used-up or unknown link, and one whose file is gone or not
    available, all get the same 404. Rate-limited per link and per client address."""
    client = request.client.host if request.client else None
    download = await sharing.use_link(token, disposition, client)
    return RedirectResponse(
        download.url, status_code=307, headers={"Referrer-Policy": "no-referrer"}
    )


@router.get(
    "/files/{file_id}/access",
    response_model=AccessPageOut,
    summary="Who was handed a URL for the file",
    responses=problem_responses(*_MANAGE, ValidationFailed),
)
async def access_history(
    file_id: FileIdDep,
    principal: PrincipalDep,
    sharing: SharingDep,
    access: AccessDep,
    limit: Annotated[int, Query(ge=1, le=500)] = 100,
    cursor: Annotated[str | None, Query(max_length=32)] = None,
) -> Response:
    """Every URL issued for the file (upload, part, download, share-link use), newest first:
    to whom, from which address, until when. The owner and admins only. Kept for
    S3GATE_ACCESS_RETENTION_DAYS (default 90)."""
    record = await sharing.managed(principal, file_id)
    page = await access.history(record.id, limit=limit, cursor=cursor)
    items = [AccessOut.model_validate(entry) for entry in page.items]
    return ModelResponse(AccessPageOut(items=items, next_cursor=page.next_cursor))


__all__ = ["SHARE_LINK_PATH", "LinkOut", "router"]
