"""The embedded SQLite ledger under sustained writes: its WAL file stays under 64 MB (issue 11,
item 11), on a real `s3gate serve` driven over HTTP (an in-process client never lets the event
loop run the checkpointer, so it would measure nothing real)."""

from __future__ import annotations

import asyncio
import time
from pathlib import Path

import httpx

from app.devstack import EmbeddedS3
from app.ledger.sqlite import SQLITE_WAL_LIMIT_BYTES, SQLITE_WAL_TRUNCATE_BYTES
from devkit.processes import stop_process
from tests.support import S3GATE, Api, serve_api

BODY = {"filename": "a.txt", "content_type": "text/plain", "size": 5}


def _size(path: Path) -> int:
    try:
        return path.stat().st_size
    except FileNotFoundError:
        return 0


async def test_the_wal_stays_under_its_limit_under_sustained_creates(
    tmp_path: Path, s3_server: EmbeddedS3, bucket: str
) -> None:
    with (tmp_path / "server.log").open("w") as sink:
        base, server = serve_api(
            [S3GATE, "serve"],
            tmp_path=tmp_path,
            s3=s3_server,
            bucket=bucket,
            stdout=sink,
            S3GATE_RATE_LIMIT_PER_MINUTE="0",
            S3GATE_LOG_LEVEL="warning",
        )
    wal = tmp_path / "ledger.db-wal"
    sizes: list[int] = []
    try:
        limits = httpx.Limits(max_connections=32)
        async with httpx.AsyncClient(base_url=base, limits=limits, timeout=30) as client:
            auth = Api.auth("wal-writer")
            stop = time.monotonic() + 8

            async def writer() -> None:
                while time.monotonic() < stop:
                    answer = await client.post("/uploads", json=BODY, headers=auth)
                    assert answer.status_code == 201, answer.text
                    sizes.append(_size(wal))

            await asyncio.gather(*(writer() for _ in range(32)))
    finally:
        stop_process(server)
    # The load crossed the size where a TRUNCATE checkpoint runs, and the file came back down
    # (a PASSIVE checkpoint never shrinks it: without the bound it only grew, to 823 MB in 30 s).
    peak = max(sizes)
    assert peak > SQLITE_WAL_TRUNCATE_BYTES, f"the load wrote too little ({len(sizes)} creates)"
    assert min(sizes[sizes.index(peak) :]) < peak // 2
    assert peak < SQLITE_WAL_LIMIT_BYTES, f"WAL peaked at {peak} bytes"
