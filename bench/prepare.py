"""Files made through the API exactly as a client makes them, for the id-driven runs."""

from __future__ import annotations

import asyncio
import base64
import hashlib
from pathlib import Path

import httpx

from bench.common import BenchError, file_bytes
from bench.servers import Server

PREPARE_CONCURRENCY = 16


async def _prepare(base_url: str, token: str, count: int, *, complete: bool) -> list[str]:
    """Create `count` files via the API and PUT their bytes as a client would; complete them
    too when `complete`. Returns the file ids (in creation order)."""
    data = file_bytes()
    checksum = base64.b64encode(hashlib.sha256(data).digest()).decode()
    body = {
        "filename": "prepared.txt",
        "content_type": "text/plain",
        "size": len(data),
        "checksum_sha256": checksum,
    }
    ids: list[str | None] = [None] * count
    counter = iter(range(count))
    headers = {"Authorization": f"Bearer {token}"}

    async def one(api: httpx.AsyncClient, s3: httpx.AsyncClient, index: int) -> None:
        created = await api.post("/uploads", json=body)
        if created.status_code != 201:
            raise BenchError(f"POST /uploads answered {created.status_code}: {created.text}")
        payload = created.json()
        upload = payload["upload"]
        put = await s3.request(
            upload["method"], upload["url"], content=data, headers=upload["headers"]
        )
        if put.status_code != 200:
            raise BenchError(f"PUT to the presigned URL answered {put.status_code}: {put.text}")
        file_id: str = payload["file"]["id"]
        if complete:
            done = await api.post(f"/uploads/{file_id}/complete")
            if done.status_code != 200 or done.json().get("status") != "available":
                raise BenchError(f"complete answered {done.status_code}: {done.text}")
        ids[index] = file_id

    async def worker(api: httpx.AsyncClient, s3: httpx.AsyncClient) -> None:
        for index in counter:
            await one(api, s3, index)

    limits = httpx.Limits(max_connections=PREPARE_CONCURRENCY)
    async with (
        httpx.AsyncClient(base_url=base_url, headers=headers, timeout=30, limits=limits) as api,
        httpx.AsyncClient(timeout=30, limits=limits) as s3,
    ):
        await asyncio.gather(*(worker(api, s3) for _ in range(PREPARE_CONCURRENCY)))
    return [file_id for file_id in ids if file_id is not None]


def prepare_ids(server: Server, token: str, count: int, path: Path, *, complete: bool) -> Path:
    try:
        ids = asyncio.run(_prepare(server.url, token, count, complete=complete))
    except httpx.HTTPError as exc:
        raise BenchError(f"{server.name}: preparing files failed: {exc!r}") from exc
    if len(ids) != count:
        raise BenchError(f"{server.name}: prepared {len(ids)} of {count} files")
    path.write_text("".join(f"{file_id}\n" for file_id in ids))
    return path
