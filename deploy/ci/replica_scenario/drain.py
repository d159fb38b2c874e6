"""The drain: SIGTERM to replica A while requests are in flight on it."""

from __future__ import annotations

import asyncio
import json
import os
import time
from dataclasses import dataclass, field

import httpx

from replica_scenario.clients import Tally
from replica_scenario.common import (
    BIG_FILE_BYTES,
    HOST,
    SLOW_BODY_SECONDS,
    ScenarioError,
    sha256_b64,
)
from replica_scenario.stack import Replica, Stack


async def slow_create(replica: Replica, token: str, release: asyncio.Event) -> tuple[int, str]:
    """POST /uploads whose body arrives in two halves, the second once `release` is set."""
    body = json.dumps(
        {"filename": "slow.bin", "content_type": "application/octet-stream", "size": 10}
    ).encode()
    head = (
        f"POST /uploads HTTP/1.1\r\nHost: {replica.address}\r\n"
        f"Authorization: Bearer {token}\r\nContent-Type: application/json\r\n"
        f"Content-Length: {len(body)}\r\nConnection: close\r\n\r\n"
    ).encode()
    reader, writer = await asyncio.open_connection(HOST, replica.port)
    try:
        writer.write(head + body[:8])
        await writer.drain()
        await release.wait()
        writer.write(body[8:])
        await writer.drain()
        answer = await asyncio.wait_for(reader.read(), timeout=30)
    finally:
        writer.close()
    status = int(answer.split(b" ", 2)[1])
    payload = answer.split(b"\r\n\r\n", 1)[1].decode(errors="replace")
    return status, payload


async def big_upload(
    direct: httpx.AsyncClient, s3: httpx.AsyncClient, token: str, number: int
) -> tuple[str, bytes]:
    """A multipart upload with every part stored, ready for a long `complete`."""
    data = os.urandom(BIG_FILE_BYTES)
    auth = {"Authorization": f"Bearer {token}"}
    body = {
        "filename": f"big-{number}.bin",
        "content_type": "application/octet-stream",
        "size": len(data),
        "checksum_sha256": sha256_b64(data),
    }
    created = await direct.post("/uploads", json=body, headers=auth)
    if created.status_code != 201:
        raise ScenarioError(f"big upload: {created.status_code} {created.text[:300]}")
    file_id, plan = created.json()["file"]["id"], created.json()["upload"]
    numbers = list(range(1, plan["part_count"] + 1))
    parts = await direct.post(
        f"/uploads/{file_id}/parts", json={"part_numbers": numbers}, headers=auth
    )
    for part in parts.json()["parts"]:
        start = (part["part_number"] - 1) * plan["part_size"]
        chunk = data[start : start + plan["part_size"]]
        stored = await s3.put(part["url"], content=chunk, headers=part["headers"])
        if stored.status_code != 200:
            raise ScenarioError(f"big upload part: {stored.status_code} {stored.text[:300]}")
    return file_id, data


async def _until_received(
    other: Replica,
    token: str,
    file_ids: list[str],
    completes: list[asyncio.Task[tuple[int, str, float]]],
) -> None:
    """Until each completion was received (its file left `pending`) or answered, asked of
    the other replica; ScenarioError after 20 s."""
    auth = {"Authorization": f"Bearer {token}"}
    deadline = time.monotonic() + 20
    async with httpx.AsyncClient(base_url=other.url, timeout=10) as client:
        while True:
            waiting = []
            for file_id, completing in zip(file_ids, completes, strict=True):
                if completing.done():
                    continue
                answer = await client.get(f"/files/{file_id}", headers=auth)
                if answer.status_code != 200 or answer.json()["status"] == "pending":
                    waiting.append(file_id)
            if not waiting:
                return
            if time.monotonic() > deadline:
                raise ScenarioError(f"drain: completions not received in 20 s: {waiting}")
            await asyncio.sleep(0.05)


@dataclass
class DrainReport:
    in_flight: int = 0
    finished_ok: int = 0
    finished_after_term: int = 0
    exit_seconds: float = 0.0
    exit_code: int | None = None
    term_at: float = 0.0
    # the creates whose bodies straddled SIGTERM: pending files, abandoned afterwards
    pending: list[str] = field(default_factory=list)


async def drain(stack: Stack, tally: Tally, token: str, s3: httpx.AsyncClient) -> DrainReport:
    """SIGTERM replica A while requests are in flight on it (sent to it directly)."""
    replica = stack.a
    report = DrainReport()
    async with httpx.AsyncClient(base_url=replica.url, timeout=60) as direct:
        bigs = await asyncio.gather(*(big_upload(direct, s3, token, n) for n in range(3)))
        release = asyncio.Event()
        slow = [asyncio.create_task(slow_create(replica, token, release)) for _ in range(2)]

        async def complete(file_id: str) -> tuple[int, str, float]:
            # The whole-object read runs in the background worker (202 `verifying`); held
            # for its end with Prefer: wait, as the clients do, the request stays in flight.
            answer = await direct.post(
                f"/uploads/{file_id}/complete",
                headers={"Authorization": f"Bearer {token}", "Prefer": "wait=30"},
            )
            return answer.status_code, answer.text, time.time()

        completes = [asyncio.create_task(complete(file_id)) for file_id, _ in bigs]
        # SIGTERM only once the service holds every completion (its file is `verifying`, or
        # it already answered): a request still on its way meets a replica that stopped
        # reading, which is no drain to test (on a slow machine 0.3 s was not always enough).
        await _until_received(stack.b, token, [file_id for file_id, _ in bigs], completes)
        # A completion that already answered was not in flight: on a quiet machine one may take
        # less than that. Only those still open count, and at least one must be.
        open_completes = [not completing.done() for completing in completes]
        report.in_flight = len(slow) + sum(open_completes)
        report.term_at = time.time()
        await stack.docker_async("kill", "--signal", "TERM", replica.container)
        waiter = asyncio.create_task(stack.docker_async("wait", replica.container))
        await asyncio.sleep(SLOW_BODY_SECONDS)
        release.set()
        for (file_id, data), completing, was_open in zip(
            bigs, completes, open_completes, strict=True
        ):
            status, text, ended = await completing
            if status == 200 and json.loads(text)["status"] == "available":
                report.finished_ok += was_open
                tally.completed[file_id] = (len(data), sha256_b64(data))
            else:
                tally.problems.append(f"drain: complete in flight answered {status} {text[:200]}")
            report.finished_after_term += was_open and ended > report.term_at
        if not any(open_completes):
            tally.problems.append("drain: every complete answered before SIGTERM; none was tested")
        for creating in slow:
            status, payload = await creating
            if status == 201:
                report.finished_ok += 1
                report.finished_after_term += 1  # its body was sent after TERM
                report.pending.append(json.loads(payload)["file"]["id"])
            else:
                tally.problems.append(f"drain: slow create in flight answered {status}")
        report.exit_code = int(await waiter)
        report.exit_seconds = time.time() - report.term_at
    return report
