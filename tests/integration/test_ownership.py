"""Ownership lives in SQL: another owner's file answers exactly like a file that does not exist."""

from __future__ import annotations

import time
import uuid
from typing import Any

import httpx
import pytest
from fastapi.routing import APIRoute

from app.http.routers import downloads, files, sharing, uploads
from tests.support import Api, hs256_token, new_sub, running_app

# Every route that names a file, taken from the routers the app serves: a new one is covered
# the day it is added. The bodies are valid, so only ownership can refuse the call.
_NAMING_A_FILE = sorted(
    (method, route.path.replace("{file_id}", "{id}"))
    for module in (downloads, files, sharing, uploads)
    for route in module.router.routes
    if isinstance(route, APIRoute) and "{file_id}" in route.path
    for method in route.methods
)
# A grant's or link's id under another owner's file: formatted with a fresh id (the file's
# own is `{id}`), so the route can only refuse because the file is not the caller's.
ROUTES = [
    (method, route.replace("{grant_id}", "{other}").replace("{link_id}", "{other}"))
    for method, route in [*_NAMING_A_FILE, ("GET", "/downloads/{id}?redirect=true")]
]
BODIES: dict[tuple[str, str], dict[str, Any]] = {
    ("POST", "/uploads/{id}/parts"): {"part_numbers": [1]},
    ("POST", "/files/{id}/grants"): {"subject": "someone-else"},
    ("POST", "/files/{id}/links"): {"expires_in": 3600},
}


def test_the_route_list_is_found_in_the_routers() -> None:
    # The derivation itself: a rename of the path parameter would otherwise empty the list and
    # leave the parametrized test above with nothing to check.
    assert {("GET", "/uploads/{id}/parts"), ("POST", "/uploads/{id}/parts")} <= set(ROUTES)
    assert {path.split("/")[1] for _, path in _NAMING_A_FILE} == {"downloads", "files", "uploads"}
    assert {("POST", "/files/{id}/links"), ("DELETE", "/files/{id}/grants/{other}")} <= set(ROUTES)


def _shape(response: httpx.Response) -> tuple[int, dict[str, str], bytes]:
    varying = {"date", "x-request-id"}
    headers = {k: v for k, v in response.headers.items() if k not in varying}
    return response.status_code, headers, response.content


@pytest.mark.parametrize(("method", "route"), ROUTES)
@pytest.mark.parametrize("status", ["pending", "available"])
async def test_other_owner_gets_exactly_the_404_of_a_missing_id(
    api: Api, s3_http: httpx.AsyncClient, method: str, route: str, status: str
) -> None:
    owner, intruder = new_sub(), new_sub()
    file, _ = await api.upload(s3_http, owner, b"mine, not yours", content_type="text/plain")
    if status == "available":
        assert (await api.complete(owner, file["id"])).status_code == 200

    body = BODIES.get((method, route))
    other = uuid.uuid4()
    theirs = await api.client.request(
        method, route.format(id=file["id"], other=other), headers=api.auth(intruder), json=body
    )
    missing = await api.client.request(
        method, route.format(id=uuid.uuid4(), other=other), headers=api.auth(intruder), json=body
    )
    assert theirs.status_code == 404
    assert theirs.json()["code"] == "not_found"
    assert _shape(theirs) == _shape(missing)

    # and the intruder's attempt changed nothing for the owner
    still = await api.client.get(f"/files/{file['id']}", headers=api.auth(owner))
    assert still.json()["status"] == status


async def test_malformed_id_is_the_same_404(api: Api) -> None:
    answer = await api.client.get("/files/not-a-uuid", headers=api.auth(new_sub()))
    missing = await api.client.get(f"/files/{uuid.uuid4()}", headers=api.auth(new_sub()))
    assert _shape(answer) == _shape(missing)


async def test_other_owners_files_are_not_listed(api: Api, s3_http: httpx.AsyncClient) -> None:
    owner, other = new_sub(), new_sub()
    await api.upload(s3_http, owner, b"one", content_type="text/plain")
    listing = await api.client.get("/files", headers=api.auth(other))
    assert listing.json() == {"items": [], "next_cursor": None}


async def test_listing_another_owner_needs_admin(api: Api, s3_http: httpx.AsyncClient) -> None:
    owner = new_sub()
    await api.upload(s3_http, owner, b"one", content_type="text/plain")
    refused = await api.client.get(f"/files?owner={owner}", headers=api.auth(new_sub()))
    assert refused.status_code == 403
    assert refused.json()["code"] == "forbidden"
    own = await api.client.get(f"/files?owner={owner}", headers=api.auth(owner))
    assert len(own.json()["items"]) == 1


async def test_admin_acts_on_any_owners_file(api: Api, s3_http: httpx.AsyncClient) -> None:
    owner, admin = new_sub(), new_sub()
    file, _ = await api.upload(s3_http, owner, b"audited", content_type="text/plain")
    admin_headers = api.auth(admin, admin=True)

    listing = await api.client.get(f"/files?owner={owner}", headers=admin_headers)
    assert [item["id"] for item in listing.json()["items"]] == [file["id"]]
    assert (await api.complete(admin, file["id"], admin=True)).status_code == 200
    download = await api.client.get(f"/downloads/{file['id']}", headers=admin_headers)
    assert (await s3_http.get(download.json()["url"])).content == b"audited"
    deleted = await api.client.delete(f"/files/{file['id']}", headers=admin_headers)
    assert deleted.status_code == 204
    gone = await api.client.get(f"/files/{file['id']}", headers=api.auth(owner))
    assert gone.status_code == 404


async def test_admin_without_owner_lists_their_own_files(
    api: Api, s3_http: httpx.AsyncClient
) -> None:
    owner, admin = new_sub(), new_sub()
    await api.upload(s3_http, owner, b"x", content_type="text/plain")
    listing = await api.client.get("/files", headers=api.auth(admin, admin=True))
    assert listing.json()["items"] == []


def _bearer(sub: str, **claims: Any) -> dict[str, str]:
    now = int(time.time())
    token = hs256_token({"sub": sub, "iat": now, "exp": now + 600, **claims})
    return {"Authorization": f"Bearer {token}"}


@pytest.mark.parametrize("separator", ["\u00a0", "\u3000", "\u001f", "\u0085"])
async def test_admin_scope_glued_by_unicode_whitespace_is_not_admin(
    api: Api, s3_http: httpx.AsyncClient, separator: str
) -> None:
    owner = new_sub()
    await api.upload(s3_http, owner, b"one", content_type="text/plain")
    headers = _bearer(new_sub(), scope=f"files:read{separator}s3gate:admin")
    refused = await api.client.get(f"/files?owner={owner}", headers=headers)
    assert refused.status_code == 403
    assert refused.json()["code"] == "forbidden"


async def test_roles_make_admin_only_through_the_configured_roles_claim(
    api: Api, s3_http: httpx.AsyncClient
) -> None:
    owner = new_sub()
    await api.upload(s3_http, owner, b"one", content_type="text/plain")
    headers = _bearer(new_sub(), roles=["s3gate:admin"])
    refused = await api.client.get(f"/files?owner={owner}", headers=headers)
    assert refused.status_code == 403
    assert refused.json()["code"] == "forbidden"

    with_roles = api.settings.model_copy(update={"admin_roles_claim": "roles"})
    async with running_app(with_roles) as client:
        listing = await client.get(f"/files?owner={owner}", headers=headers)
    assert listing.status_code == 200
    assert len(listing.json()["items"]) == 1
