"""Sharing without losing control: grants, share links, batch downloads and the access history,
on SQLite and PostgreSQL against a real SeaweedFS (docs/sharing.md)."""

from __future__ import annotations

import asyncio
import io
import uuid
from datetime import UTC, datetime, timedelta
from typing import Any

import httpx
import pytest
from prometheus_client import REGISTRY

from app.config import Settings
from app.ledger import BATCH_MAX_IDS
from tests.support import Api, new_sub, running_app, sha256_b64


async def _available(
    api: Api, s3_http: httpx.AsyncClient, owner: str, data: bytes, **extra: Any
) -> dict[str, Any]:
    file, _ = await api.upload(s3_http, owner, data, content_type="text/plain", **extra)
    completed = await api.complete(owner, file["id"])
    assert completed.status_code == 200, completed.text
    return file


def _shape(response: httpx.Response) -> tuple[int, dict[str, str], bytes]:
    varying = {"date", "x-request-id"}
    headers = {k: v for k, v in response.headers.items() if k not in varying}
    return response.status_code, headers, response.content


async def _as_missing(
    api: Api,
    method: str,
    path: str,
    file_id: str,
    headers: dict[str, str],
    body: dict[str, Any] | None = None,
) -> None:
    """The answer for `file_id` is byte for byte the answer for an id that does not exist."""
    theirs = await api.client.request(method, path.format(id=file_id), headers=headers, json=body)
    missing = await api.client.request(
        method, path.format(id=uuid.uuid4()), headers=headers, json=body
    )
    assert theirs.status_code == 404, theirs.text
    assert _shape(theirs) == _shape(missing)


async def _grant(api: Api, owner: str, file_id: str, **body: Any) -> dict[str, Any]:
    answer = await api.client.post(f"/files/{file_id}/grants", json=body, headers=api.auth(owner))
    assert answer.status_code in (200, 201), answer.text
    grant: dict[str, Any] = answer.json()
    return grant


async def test_a_grantee_downloads_identical_bytes_until_the_grant_is_revoked(
    api: Api, s3_http: httpx.AsyncClient
) -> None:
    owner, friend = new_sub(), new_sub()
    data = b"the bank statement, shared with one person"
    file = await _available(api, s3_http, owner, data)
    await _as_missing(api, "GET", "/downloads/{id}", file["id"], api.auth(friend))

    grant = await _grant(api, owner, file["id"], subject=friend)
    assert grant["subject"] == friend
    assert grant["permission"] == "read"
    assert grant["active"]
    seen = await api.client.get(f"/files/{file['id']}", headers=api.auth(friend))
    assert seen.status_code == 200
    assert seen.json()["checksum_sha256"] == sha256_b64(data)
    url = (await api.client.get(f"/downloads/{file['id']}", headers=api.auth(friend))).json()
    fetched = await s3_http.get(url["url"])
    assert fetched.status_code == 200
    assert fetched.content == data
    shared = await api.client.get("/files?shared=true", headers=api.auth(friend))
    assert [item["id"] for item in shared.json()["items"]] == [file["id"]]
    own = await api.client.get("/files", headers=api.auth(friend))
    assert own.json()["items"] == []  # shared with, not owned by

    listed = await api.client.get(f"/files/{file['id']}/grants", headers=api.auth(owner))
    assert [g["id"] for g in listed.json()["items"]] == [grant["id"]]
    revoked = await api.client.delete(
        f"/files/{file['id']}/grants/{grant['id']}", headers=api.auth(owner)
    )
    assert revoked.status_code == 204
    # The very next request: no cache outlives the grant.
    for method, path in (
        ("GET", "/files/{id}"),
        ("GET", "/downloads/{id}"),
        ("DELETE", "/files/{id}"),
    ):
        await _as_missing(api, method, path, file["id"], api.auth(friend))
    shared = await api.client.get("/files?shared=true", headers=api.auth(friend))
    assert shared.json()["items"] == []
    again = await api.client.delete(
        f"/files/{file['id']}/grants/{grant['id']}", headers=api.auth(owner)
    )
    assert again.status_code == 404
    assert again.json()["code"] == "not_found"


async def test_an_expired_grant_stops_working_at_once(api: Api, s3_http: httpx.AsyncClient) -> None:
    owner, friend = new_sub(), new_sub()
    file = await _available(api, s3_http, owner, b"for a moment only")
    soon = datetime.now(UTC) + timedelta(seconds=2)
    await _grant(api, owner, file["id"], subject=friend, expires_at=soon.isoformat())
    assert (
        await api.client.get(f"/downloads/{file['id']}", headers=api.auth(friend))
    ).status_code == 200
    await asyncio.sleep(max(0.0, (soon - datetime.now(UTC)).total_seconds()) + 0.2)
    await _as_missing(api, "GET", "/downloads/{id}", file["id"], api.auth(friend))
    await _as_missing(api, "GET", "/files/{id}", file["id"], api.auth(friend))
    listed = await api.client.get(f"/files/{file['id']}/grants", headers=api.auth(owner))
    assert [g["active"] for g in listed.json()["items"]] == [False]


@pytest.fixture
async def group_api(settings: Settings) -> Any:
    async with running_app(settings.model_copy(update={"group_claim": "groups"})) as client:
        yield Api(client, settings)


async def test_a_group_grant_reaches_every_member_and_nobody_else(
    group_api: Api, s3_http: httpx.AsyncClient
) -> None:
    api = group_api
    owner, member, outsider = new_sub(), new_sub(), new_sub()
    file = await _available(api, s3_http, owner, b"the contract, for accounting")
    group = f"acct-{uuid.uuid4().hex[:6]}"
    await _grant(api, owner, file["id"], group=group)
    mine = api.auth(member, groups=["other", group])
    answer = await api.client.get(f"/downloads/{file['id']}", headers=mine)
    assert answer.status_code == 200
    assert (await s3_http.get(answer.json()["url"])).content == b"the contract, for accounting"
    shared = await api.client.get("/files?shared=true", headers=mine)
    assert [item["id"] for item in shared.json()["items"]] == [file["id"]]
    await _as_missing(api, "GET", "/downloads/{id}", file["id"], api.auth(outsider, groups=["x"]))
    await _as_missing(api, "GET", "/files/{id}", file["id"], api.auth(outsider))


async def test_only_the_owner_or_an_admin_manages_grants(
    api: Api, s3_http: httpx.AsyncClient
) -> None:
    owner, friend, stranger = new_sub(), new_sub(), new_sub()
    file = await _available(api, s3_http, owner, b"mine to share")
    await _grant(api, owner, file["id"], subject=friend)
    # The grantee sees the file, so it is told it may not; a stranger gets the missing id's 404.
    by_friend = await api.client.post(
        f"/files/{file['id']}/grants", json={"subject": stranger}, headers=api.auth(friend)
    )
    assert by_friend.status_code == 403
    assert by_friend.json()["code"] == "forbidden"
    for path in ("/files/{id}/grants", "/files/{id}/links", "/files/{id}/access"):
        await _as_missing(api, "GET", path, file["id"], api.auth(stranger))
    by_admin = await api.client.post(
        f"/files/{file['id']}/grants",
        json={"subject": stranger},
        headers=api.auth(new_sub(), admin=True),
    )
    assert by_admin.status_code == 201
    # A second grant to the same grantee replaces the first (200), it does not add one.
    changed = await api.client.post(
        f"/files/{file['id']}/grants",
        json={"subject": friend, "permission": "delete"},
        headers=api.auth(owner),
    )
    assert changed.status_code == 200
    assert changed.json()["permission"] == "delete"
    listed = await api.client.get(f"/files/{file['id']}/grants", headers=api.auth(owner))
    assert sorted(g["subject"] for g in listed.json()["items"]) == sorted([friend, stranger])


@pytest.mark.parametrize(
    "body",
    [
        {},
        {"subject": "a", "group": "b"},
        {"subject": ""},
        {"subject": "a", "permission": "write"},
        {"subject": "a", "expires_at": "2020-01-01T00:00:00Z"},
        {"subject": "a", "expires_at": "2099-01-01T00:00:00"},
        {"subject": "a", "extra": 1},
        {"subject": ["a"]},
        {"subject": "line\nbreak"},
        {"group": "any"},  # groups are off (no S3GATE_GROUP_CLAIM): no token could match
    ],
)
async def test_a_bad_grant_is_a_422_and_grants_nothing(
    api: Api, s3_http: httpx.AsyncClient, body: dict[str, Any]
) -> None:
    owner = new_sub()
    file = await _available(api, s3_http, owner, b"x")
    answer = await api.client.post(
        f"/files/{file['id']}/grants", json=body, headers=api.auth(owner)
    )
    assert answer.status_code == 422, answer.text
    assert answer.headers["content-type"] == "application/problem+json"
    assert answer.json()["code"] == "validation_error"
    listed = await api.client.get(f"/files/{file['id']}/grants", headers=api.auth(owner))
    assert listed.json()["items"] == []


async def test_a_read_grant_cannot_delete_and_a_delete_grant_can(
    api: Api, s3_http: httpx.AsyncClient
) -> None:
    owner, reader, janitor = new_sub(), new_sub(), new_sub()
    file = await _available(api, s3_http, owner, b"to be cleaned up")
    await _grant(api, owner, file["id"], subject=reader)
    await _grant(api, owner, file["id"], subject=janitor, permission="delete")
    refused = await api.client.delete(f"/files/{file['id']}", headers=api.auth(reader))
    assert refused.status_code == 403
    assert refused.json()["code"] == "forbidden"
    deleted = await api.client.delete(f"/files/{file['id']}", headers=api.auth(janitor))
    assert deleted.status_code == 204
    await _as_missing(api, "GET", "/files/{id}", file["id"], api.auth(owner))


async def _link(api: Api, owner: str, file_id: str, **body: Any) -> dict[str, Any]:
    answer = await api.client.post(f"/files/{file_id}/links", json=body, headers=api.auth(owner))
    assert answer.status_code == 201, answer.text
    link: dict[str, Any] = answer.json()
    return link


def _path(link: dict[str, Any]) -> str:
    return "/s/" + link["token"]


async def test_a_share_link_redirects_to_a_fresh_url_and_lists_without_its_token(
    api: Api, s3_http: httpx.AsyncClient
) -> None:
    owner = new_sub()
    data = b"a medical record, for the doctor"
    file = await _available(api, s3_http, owner, data)
    link = await _link(api, owner, file["id"], expires_in=3600)
    assert link["url"] == "http://s3gate.test" + _path(link)
    assert len(link["token"]) >= 43
    assert link["state"] == "active"
    assert link["downloads"] == 0
    used = await api.client.get(_path(link))  # no Authorization: the link is the credential
    assert used.status_code == 307
    assert used.headers["cache-control"] == "no-store"
    assert used.headers["referrer-policy"] == "no-referrer"
    assert (await s3_http.get(used.headers["location"])).content == data
    second = await api.client.get(_path(link))
    # Each use is signed now, for the download TTL: the link itself lives an hour.
    ttl = api.settings.download_url_ttl_seconds
    assert second.status_code == 307
    assert f"X-Amz-Expires={ttl}&" in second.headers["location"]
    listed = await api.client.get(f"/files/{file['id']}/links", headers=api.auth(owner))
    [entry] = listed.json()["items"]
    assert entry["downloads"] == 2
    assert "token" not in entry
    assert "url" not in entry
    assert link["token"] not in listed.text


async def test_every_dead_link_answers_one_identical_404(
    api: Api, s3_http: httpx.AsyncClient
) -> None:
    owner = new_sub()
    file = await _available(api, s3_http, owner, b"gone soon")
    revoked = await _link(api, owner, file["id"], expires_in=3600)
    gone = await api.client.delete(
        f"/files/{file['id']}/links/{revoked['id']}", headers=api.auth(owner)
    )
    assert gone.status_code == 204
    assert (
        await api.client.delete(
            f"/files/{file['id']}/links/{revoked['id']}", headers=api.auth(owner)
        )
    ).status_code == 204  # revoking again changes nothing
    exhausted = await _link(api, owner, file["id"], expires_in=3600, max_downloads=1)
    assert (await api.client.get(_path(exhausted))).status_code == 307
    expiring = await _link(api, owner, file["id"], expires_in=60)
    deleted_file = await _available(api, s3_http, owner, b"deleted")
    of_deleted = await _link(api, owner, deleted_file["id"], expires_in=3600)
    assert (
        await api.client.delete(f"/files/{deleted_file['id']}", headers=api.auth(owner))
    ).status_code == 204

    unknown = await api.client.get("/s/" + "A" * 43)
    assert unknown.status_code == 404
    assert unknown.json()["code"] == "not_found"
    answers = [
        await api.client.get(_path(revoked)),
        await api.client.get(_path(exhausted)),
        await api.client.get(_path(of_deleted)),
        await api.client.get("/s/" + "x" * 5000),  # odd tokens too: never a 422 or a 500
        await api.client.get("/s/%00%ff"),
        await api.client.get("/s/" + revoked["token"] + "?disposition=inline"),
    ]
    for answer in answers:
        assert _shape(answer) == _shape(unknown)
    # Expiry: moved into the past behind the API (a minute is the shortest link).
    from sqlalchemy import update

    from app.models import links_table
    from tests.support import sql_engine

    engine = sql_engine(api.settings.database_url)
    with engine.begin() as conn:
        conn.execute(
            update(links_table)
            .where(links_table.c.id == uuid.UUID(expiring["id"]))
            .values(expires_at=datetime.now(UTC) - timedelta(seconds=1))
        )
    engine.dispose()
    assert _shape(await api.client.get(_path(expiring))) == _shape(unknown)
    states = await api.client.get(f"/files/{file['id']}/links", headers=api.auth(owner))
    assert sorted(item["state"] for item in states.json()["items"]) == [
        "exhausted",
        "expired",
        "revoked",
    ]


async def test_twenty_concurrent_uses_of_a_five_download_link_redirect_exactly_five_times(
    unlimited_api: Api, s3_http: httpx.AsyncClient
) -> None:
    api = unlimited_api
    owner = new_sub()
    file = await _available(api, s3_http, owner, b"five copies")
    link = await _link(api, owner, file["id"], expires_in=3600, max_downloads=5)
    answers = await asyncio.gather(*(api.client.get(_path(link)) for _ in range(20)))
    statuses = sorted(answer.status_code for answer in answers)
    assert statuses == [307] * 5 + [404] * 15
    listed = await api.client.get(f"/files/{file['id']}/links", headers=api.auth(owner))
    assert listed.json()["items"][0]["downloads"] == 5


async def test_a_link_is_rate_limited_per_link_and_per_address(
    settings: Settings, s3_http: httpx.AsyncClient
) -> None:
    tight = settings.model_copy(
        update={
            "link_rate_limit_per_minute": 1,
            "link_rate_limit_burst": 2,
            "link_address_rate_limit_per_minute": 1,
            "link_address_rate_limit_burst": 5,
        }
    )
    async with running_app(tight) as client:
        api = Api(client, tight)
        owner = new_sub()
        file = await _available(api, s3_http, owner, b"popular")
        one = await _link(api, owner, file["id"], expires_in=3600)
        two = await _link(api, owner, file["id"], expires_in=3600)
        assert [(await client.get(_path(one))).status_code for _ in range(3)] == [307, 307, 429]
        limited = await client.get(_path(one))
        assert limited.json()["code"] == "rate_limited"
        assert int(limited.headers["retry-after"]) >= 1
        # Another link from the same address: its own budget, until the address's runs out.
        assert [(await client.get(_path(two))).status_code for _ in range(2)] == [307, 429]
        assert (await client.get("/s/" + "B" * 43)).status_code == 429  # the address is spent


async def test_a_link_needs_an_available_file_and_a_bounded_lifetime(
    api: Api, s3_http: httpx.AsyncClient
) -> None:
    owner = new_sub()
    pending, _ = await api.upload(s3_http, owner, b"not yet", content_type="text/plain")
    answer = await api.client.post(
        f"/files/{pending['id']}/links", json={"expires_in": 3600}, headers=api.auth(owner)
    )
    assert answer.status_code == 409
    assert answer.json()["code"] == "file_not_available"
    file = await _available(api, s3_http, owner, b"ready")
    for body in (
        {"expires_in": api.settings.link_max_ttl_seconds + 1},
        {"expires_in": 10},
        {"expires_in": "3600"},
        {"expires_in": 3600, "max_downloads": 0},
        {},
    ):
        refused = await api.client.post(
            f"/files/{file['id']}/links", json=body, headers=api.auth(owner)
        )
        assert refused.status_code == 422, body
        assert refused.json()["code"] == "validation_error", body


def _db_calls() -> dict[str, float]:
    counts: dict[str, float] = {}
    for metric in REGISTRY.collect():
        if metric.name == "s3gate_db_call_duration_seconds":
            for sample in metric.samples:
                if sample.name.endswith("_count"):
                    counts[sample.labels["statement"]] = sample.value
    return counts


@pytest.fixture
async def unlimited_api(settings: Settings) -> Any:
    """No rate limits: a test that issues a hundred URLs at once counts queries, not hits."""
    unlimited = settings.model_copy(
        update={
            "rate_limit_per_minute": 0,
            "link_rate_limit_per_minute": 0,
            "link_address_rate_limit_per_minute": 0,
        }
    )
    async with running_app(unlimited) as client:
        yield Api(client, unlimited)


async def test_a_batch_of_a_hundred_ids_is_one_ledger_query_and_answers_in_order(
    unlimited_api: Api, s3_http: httpx.AsyncClient
) -> None:
    api = unlimited_api
    owner, other, _friend = new_sub(), new_sub(), new_sub()
    mine = [await _available(api, s3_http, owner, f"file {i}".encode()) for i in range(3)]
    pending, _ = await api.upload(s3_http, owner, b"pending", content_type="text/plain")
    theirs = await _available(api, s3_http, other, b"not yours")
    granted = await _available(api, s3_http, other, b"shared with you")
    await _grant(api, other, granted["id"], subject=owner)
    ids = [
        mine[0]["id"],
        pending["id"],
        theirs["id"],
        "not-a-uuid",
        granted["id"],
        mine[1]["id"],
        str(uuid.uuid4()),
        mine[2]["id"],
    ]
    ids += [mine[0]["id"]] * (BATCH_MAX_IDS - len(ids))
    before = _db_calls()
    answer = await api.client.post(
        "/downloads", json={"ids": ids, "disposition": "inline"}, headers=api.auth(owner)
    )
    after = _db_calls()
    assert answer.status_code == 200, answer.text
    queries = {k: after[k] - before.get(k, 0) for k in after if after[k] != before.get(k, 0)}
    queries.pop("record_access", None)  # the access history's background flush
    assert queries == {"accessible_many": 1}
    items = answer.json()["items"]
    assert [item["id"] for item in items] == ids
    codes = [item["problem"]["code"] if item["problem"] else "url" for item in items[:8]]
    assert codes == [
        "url",
        "file_not_available",
        "not_found",
        "not_found",
        "url",
        "url",
        "not_found",
        "url",
    ]
    assert (
        items[2]["problem"]
        == (await api.client.get(f"/downloads/{theirs['id']}", headers=api.auth(owner))).json()
    )
    fetched = await s3_http.get(items[4]["url"])
    assert fetched.content == b"shared with you"
    assert all(item["url"] for item in items[8:])
    too_many = await api.client.post(
        "/downloads", json={"ids": [*ids, ids[0]]}, headers=api.auth(owner)
    )
    assert too_many.status_code == 422
    assert too_many.json()["code"] == "validation_error"


async def test_a_batch_issues_only_as_many_urls_as_the_burst_allows(
    settings: Settings, s3_http: httpx.AsyncClient
) -> None:
    # Create and complete count one hit each: two of the four are left for the batch.
    tight = settings.model_copy(update={"rate_limit_per_minute": 1, "rate_limit_burst": 4})
    async with running_app(tight) as client:
        api = Api(client, tight)
        owner = new_sub()
        file = await _available(api, s3_http, owner, b"many times")  # create: one hit
        answer = await client.post(
            "/downloads", json={"ids": [file["id"]] * 4}, headers=api.auth(owner)
        )
        codes = [
            item["problem"]["code"] if item["problem"] else "url" for item in answer.json()["items"]
        ]
        assert codes == ["url", "url", "rate_limited", "rate_limited"]
        spent = await client.post("/downloads", json={"ids": [file["id"]]}, headers=api.auth(owner))
        assert spent.status_code == 429
        assert "retry-after" in spent.headers


async def test_every_url_issued_is_in_the_access_history_with_its_actor(
    api: Api, s3_http: httpx.AsyncClient
) -> None:
    owner, friend = new_sub(), new_sub()
    file = await _available(api, s3_http, owner, b"who saw this?")
    await _grant(api, owner, file["id"], subject=friend)
    await api.client.get(f"/downloads/{file['id']}", headers=api.auth(owner))
    await api.client.get(f"/downloads/{file['id']}", headers=api.auth(friend))
    await api.client.post("/downloads", json={"ids": [file["id"]]}, headers=api.auth(friend))
    link = await _link(api, owner, file["id"], expires_in=3600)
    assert (await api.client.get(_path(link))).status_code == 307
    multipart = await api.created(
        owner,
        {
            "filename": "big.bin",
            "content_type": "application/octet-stream",
            "size": 40 * 1024**2,
            "multipart": True,
        },
    )
    parts = await api.client.post(
        f"/uploads/{multipart['file']['id']}/parts",
        json={"part_numbers": [1, 2]},
        headers=api.auth(owner),
    )
    assert parts.status_code == 200, parts.text

    history = await api.client.get(f"/files/{file['id']}/access", headers=api.auth(owner))
    assert history.status_code == 200
    entries = [(e["action"], e["actor_sub"], e["link_id"]) for e in history.json()["items"]]
    assert entries == [
        ("link", None, link["id"]),
        ("download", friend, None),
        ("download", friend, None),
        ("download", owner, None),
        ("upload", owner, None),
    ]
    for entry in history.json()["items"]:
        assert entry["client_address"] == "127.0.0.1"
        assert entry["expires_at"] > entry["issued_at"]
    page = await api.client.get(f"/files/{file['id']}/access?limit=2", headers=api.auth(owner))
    rest = await api.client.get(
        f"/files/{file['id']}/access?limit=10&cursor={page.json()['next_cursor']}",
        headers=api.auth(owner),
    )
    assert len(page.json()["items"]) == 2
    assert len(rest.json()["items"]) == 3
    assert rest.json()["next_cursor"] is None
    of_parts = await api.client.get(
        f"/files/{multipart['file']['id']}/access", headers=api.auth(owner)
    )
    assert [(e["action"], e["part_number"]) for e in of_parts.json()["items"]] == [
        ("part", 2),
        ("part", 1),
    ]
    by_friend = await api.client.get(f"/files/{file['id']}/access", headers=api.auth(friend))
    assert by_friend.status_code == 403


async def test_sharing_changes_are_events_in_the_feed(api: Api, s3_http: httpx.AsyncClient) -> None:
    owner, friend = new_sub(), new_sub()
    file = await _available(api, s3_http, owner, b"announced")
    grant = await _grant(api, owner, file["id"], subject=friend)
    await api.client.delete(f"/files/{file['id']}/grants/{grant['id']}", headers=api.auth(owner))
    link = await _link(api, owner, file["id"], expires_in=3600)
    await api.client.delete(f"/files/{file['id']}/links/{link['id']}", headers=api.auth(owner))
    feed = (await api.client.get("/events", headers=api.auth(owner))).json()["items"]
    assert [event["type"] for event in feed] == [
        "file.available",
        "file.shared",
        "grant.revoked",
        "link.created",
        "link.revoked",
    ]
    assert feed[1]["data"]["grant"]["subject"] == friend
    assert feed[1]["data"]["file"]["id"] == file["id"]
    assert feed[3]["data"]["link"]["id"] == link["id"]
    assert link["token"] not in str(feed)
    # The grantee's own feed is about its own files: it hears nothing of the owner's.
    assert (await api.client.get("/events", headers=api.auth(friend))).json()["items"] == []


async def test_a_share_token_never_reaches_the_logs(
    api: Api, s3_http: httpx.AsyncClient, json_log: io.StringIO
) -> None:
    owner = new_sub()
    file = await _available(api, s3_http, owner, b"secret link")
    link = await _link(api, owner, file["id"], expires_in=3600)
    used = await api.client.get(_path(link))
    await api.client.get(_path(link) + "/extra")
    # The service's lines (the test's own HTTP client logs what it requested).
    logged = "\n".join(
        line for line in json_log.getvalue().splitlines() if '"logger": "s3gate' in line
    )
    assert link["token"] not in logged
    assert used.headers["location"].split("?")[1] not in logged
    assert '"/s/{token}"' in logged


async def test_a_grant_opens_no_upload_route_and_no_other_file(
    api: Api, s3_http: httpx.AsyncClient
) -> None:
    from fastapi.routing import APIRoute

    from app.http.routers import uploads

    owner, friend = new_sub(), new_sub()
    file, _ = await api.upload(s3_http, owner, b"pending, shared", content_type="text/plain")
    await _grant(api, owner, file["id"], subject=friend)
    other = await _available(api, s3_http, owner, b"not shared")
    for route in uploads.router.routes:
        if isinstance(route, APIRoute) and "{file_id}" in route.path:
            path = route.path.replace("{file_id}", "{id}")
            body = {"part_numbers": [1]} if path.endswith("/parts") else None
            for method in route.methods:
                await _as_missing(api, method, path, file["id"], api.auth(friend), body)
    await _as_missing(api, "GET", "/files/{id}", other["id"], api.auth(friend))
    still = await api.client.get(f"/files/{file['id']}", headers=api.auth(owner))
    assert still.json()["status"] == "pending"


async def test_shared_and_owner_together_are_a_422(api: Api) -> None:
    me = new_sub()
    answer = await api.client.get(f"/files?shared=true&owner={me}", headers=api.auth(me))
    assert answer.status_code == 422
    assert answer.json()["code"] == "validation_error"


async def test_the_reaper_prunes_old_history_and_what_a_deleted_file_shared(
    api: Api, s3_http: httpx.AsyncClient
) -> None:
    from sqlalchemy import func, select, update

    from app.lifespan import open_use_cases
    from app.models import access_table, grants_table, links_table
    from tests.support import sql_engine

    owner, friend = new_sub(), new_sub()
    kept = await _available(api, s3_http, owner, b"kept")
    gone = await _available(api, s3_http, owner, b"gone")
    for file in (kept, gone):
        await _grant(api, owner, file["id"], subject=friend)
        await _link(api, owner, file["id"], expires_in=3600)
        await api.client.get(f"/downloads/{file['id']}", headers=api.auth(owner))
    await api.client.get(f"/files/{kept['id']}/access", headers=api.auth(owner))  # flushed
    assert (
        await api.client.delete(f"/files/{gone['id']}", headers=api.auth(owner))
    ).status_code == 204
    engine = sql_engine(api.settings.database_url)
    old = datetime.now(UTC) - timedelta(days=api.settings.access_retention_days + 1)
    with engine.begin() as conn:
        conn.execute(
            update(access_table)
            .where(
                access_table.c.file_id == uuid.UUID(kept["id"]), access_table.c.action == "upload"
            )
            .values(issued_at=old)
        )
    async with open_use_cases(api.settings) as (_, use_cases):
        await use_cases.reaper.reap()

    def count(table: Any, file: dict[str, Any]) -> int:
        with engine.connect() as conn:
            query = select(func.count()).where(table.c.file_id == uuid.UUID(file["id"]))
            return int(conn.execute(query).scalar_one())

    try:
        assert [count(t, kept) for t in (grants_table, links_table)] == [1, 1]
        assert [count(t, gone) for t in (grants_table, links_table)] == [0, 0]
        assert count(access_table, kept) == 1  # the download; the old upload row is gone
    finally:
        engine.dispose()
