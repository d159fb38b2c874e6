"""What the clients saw: every call through nginx, and the users' create-PUT-complete-download
loop."""

from __future__ import annotations

import asyncio
import random
import time
import uuid
from collections import Counter
from dataclasses import dataclass, field
from typing import Any

import httpx

from replica_scenario.common import sha256_b64


@dataclass
class Call:
    """One request through nginx (or straight to a replica), as the client saw it."""

    request_id: str
    method: str
    route: str
    started: float
    ended: float
    status: int | None  # None: no HTTP answer at all
    error: str | None = None

    @property
    def failed(self) -> bool:
        return self.status is None or self.status >= 500


@dataclass
class Tally:
    calls: list[Call] = field(default_factory=list)
    s3: Counter[str] = field(default_factory=Counter)
    problems: list[str] = field(default_factory=list)
    # file id -> (size, checksum) for every file a client saw become `available`
    completed: dict[str, tuple[int, str]] = field(default_factory=dict)
    deleted: set[str] = field(default_factory=set)
    abandoned: set[str] = field(default_factory=set)
    downloads_compared: int = 0
    # DELETEs that answered 404: nginx may have replayed them after the first replica had
    # already done the work and then died (checked against nginx's log at the end)
    delete_404s: list[Call] = field(default_factory=list)


class Client:
    """Calls the API with a request id per attempt; retries only what is safe to retry."""

    def __init__(self, api: httpx.AsyncClient, s3: httpx.AsyncClient, tally: Tally) -> None:
        self.api = api
        self.s3 = s3
        self.tally = tally

    async def call(
        self,
        method: str,
        url: str,
        route: str,
        token: str,
        *,
        body: dict[str, Any] | None = None,
        headers: dict[str, str] | None = None,
        retry: bool = False,
    ) -> httpx.Response | None:
        """Retry (when `retry`) on 5xx or no answer: POST /uploads carries an Idempotency-Key
        and `complete` is idempotent; everything else the balancer must get right first time."""
        for attempt in range(5):
            request_id = uuid.uuid4().hex
            sent_headers = {
                "Authorization": f"Bearer {token}",
                "X-Request-ID": request_id,
                **(headers or {}),
            }
            started = time.time()
            response: httpx.Response | None = None
            error: str | None = None
            try:
                response = await self.api.request(method, url, json=body, headers=sent_headers)
            except httpx.HTTPError as exc:
                error = type(exc).__name__
            status = response.status_code if response is not None else None
            call = Call(request_id, method, route, started, time.time(), status, error)
            self.tally.calls.append(call)
            if not call.failed:
                return response
            if not retry:
                return None  # counted with the failed calls
            if attempt == 4:
                self.tally.problems.append(f"{route}: still failing after {attempt + 1} attempts")
                return None
            await asyncio.sleep(0.2 * (attempt + 1))
        return None

    async def put_bytes(self, upload: dict[str, Any], data: bytes) -> bool:
        response = await self.s3.put(upload["url"], content=data, headers=upload["headers"])
        self.tally.s3[f"PUT {response.status_code}"] += 1
        if response.status_code != 200:
            self.tally.problems.append(f"S3 PUT answered {response.status_code}")
        return response.status_code == 200


def expect(tally: Tally, response: httpx.Response | None, route: str, *codes: int) -> bool:
    if response is None:
        return False  # already counted as a failed call
    if response.status_code not in codes:
        tally.problems.append(f"{route}: {response.status_code} {response.text[:200]}")
        return False
    return True


async def user_loop(
    client: Client, name: str, token: str, stop: asyncio.Event, rng: random.Random
) -> None:
    """create -> PUT -> complete -> download and compare -> sometimes delete; until told."""
    tally = client.tally
    number = 0
    while not stop.is_set():
        number += 1
        data = rng.randbytes(rng.randint(1, 256 * 1024))
        checksum = sha256_b64(data)
        body = {
            "filename": f"{name}-{number:05d}.bin",
            "content_type": "application/octet-stream",
            "size": len(data),
            "checksum_sha256": checksum,
        }
        created = await client.call(
            "POST",
            "/uploads",
            "POST /uploads",
            token,
            body=body,
            headers={"Idempotency-Key": f"{name}-{number}"},
            retry=True,
        )
        if not expect(tally, created, "POST /uploads", 200, 201):
            continue
        assert created is not None
        file_id, upload = created.json()["file"]["id"], created.json()["upload"]
        if rng.random() < 0.08:
            abandoned = await client.call(
                "DELETE", f"/uploads/{file_id}", "DELETE /uploads/{id}", token
            )
            if abandoned is not None and abandoned.status_code == 404:
                tally.delete_404s.append(tally.calls[-1])
                tally.abandoned.add(file_id)
            elif expect(tally, abandoned, "DELETE /uploads/{id}", 204):
                tally.abandoned.add(file_id)
            continue
        if not await client.put_bytes(upload, data):
            continue
        done = await client.call(
            "POST", f"/uploads/{file_id}/complete", "POST /uploads/{id}/complete", token, retry=True
        )
        if not expect(tally, done, "POST /uploads/{id}/complete", 200):
            continue
        assert done is not None
        if done.json()["status"] != "available":
            tally.problems.append(f"complete: status {done.json()['status']}")
            continue
        tally.completed[file_id] = (len(data), checksum)
        link = await client.call("GET", f"/downloads/{file_id}", "GET /downloads/{id}", token)
        if expect(tally, link, "GET /downloads/{id}", 200):
            assert link is not None
            got = await client.s3.get(link.json()["url"])
            tally.s3[f"GET {got.status_code}"] += 1
            if got.content != data:
                tally.problems.append(f"download of {file_id}: bytes differ")
            tally.downloads_compared += 1
        if rng.random() < 0.2:
            listing = await client.call("GET", "/files?limit=20", "GET /files", token)
            expect(tally, listing, "GET /files", 200)
        if rng.random() < 0.3:
            gone = await client.call("DELETE", f"/files/{file_id}", "DELETE /files/{id}", token)
            if gone is not None and gone.status_code == 404:
                tally.delete_404s.append(tally.calls[-1])
                tally.deleted.add(file_id)
            elif expect(tally, gone, "DELETE /files/{id}", 204):
                tally.deleted.add(file_id)
