"""How fast the webhook dispatcher empties the outbox, and how soon an event reaches an idle
receiver, on SQLite and PostgreSQL (run by hand; numbers go to bench/RESULTS.md).

    .venv/bin/python -m bench.webhooks [--events 2000] [--concurrency 8] [--postgres-url URL]

The receiver is a separate process (a minimal HTTP/1.1 server answering 200), so its CPU is
not the dispatcher's. In the same run: the baseline is bare httpx POSTs of the same bodies at
the same concurrency (the network and the receiver alone); the peer is s3gate's WebhookSender
alone (signing and classifying, no ledger). The dispatcher's row adds the claim, the event read
and the recorded attempt per delivery.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import multiprocessing
import os
import socket
import tempfile
import time
import uuid
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path

import httpx

from app.ledger import FileRecord, Ledger
from app.ledger.driver import Driver
from app.migrate import run_migrations
from app.models import FileStatus
from app.usecases.dispatch import Dispatcher
from app.webhooks import WebhookSender, generate_secret, parse_endpoints
from devkit.postgres import throwaway_database

_ANSWER = b"HTTP/1.1 200 OK\r\ncontent-length: 2\r\n\r\nok"


def _receiver(sock: socket.socket) -> None:
    async def handle(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        try:
            while True:
                head = await reader.readuntil(b"\r\n\r\n")
                length = 0
                for line in head.split(b"\r\n"):
                    if line.lower().startswith(b"content-length:"):
                        length = int(line.split(b":", 1)[1])
                await reader.readexactly(length)
                writer.write(_ANSWER)
                await writer.drain()
        except (asyncio.IncompleteReadError, ConnectionError):
            writer.close()

    async def serve() -> None:
        server = await asyncio.start_server(handle, sock=sock)
        await server.serve_forever()

    asyncio.run(serve())


@contextlib.contextmanager
def receiver() -> Iterator[str]:
    sock = socket.socket()
    sock.bind(("127.0.0.1", 0))
    sock.listen(256)
    process = multiprocessing.Process(target=_receiver, args=(sock,), daemon=True)
    process.start()
    try:
        yield f"http://127.0.0.1:{sock.getsockname()[1]}/hooks"
    finally:
        process.terminate()
        process.join(5)
        sock.close()


def _record(owner: str) -> FileRecord:
    now = datetime.now(UTC).replace(microsecond=0)
    file_id = uuid.uuid4()
    return FileRecord(
        id=file_id,
        owner_id=owner,
        object_key=f"bench/{file_id}",
        filename="a.txt",
        content_type="text/plain",
        size=5,
        checksum_sha256=None,
        status=str(FileStatus.PENDING),
        idempotency_key=None,
        request_hash=None,
        created_at=now,
        upload_expires_at=now + timedelta(minutes=15),
        completed_at=None,
        deleted_at=None,
        purged_at=None,
        upload_method="put",
        multipart_upload_id=None,
        part_size=None,
        upload_key=None,
        verify_lease_until=None,
    )


async def _pending(ledger: Ledger, owner: str) -> FileRecord:
    record = _record(owner)
    await ledger.insert(record)
    return record


async def _abandon(ledger: Ledger, record: FileRecord) -> None:
    """A file.deleted event, with its delivery row, in the abandon's transaction."""
    await ledger.transition(
        record.id,
        None,
        from_status=FileStatus.PENDING,
        to_status=FileStatus.DELETED,
        deleted_at=datetime.now(UTC),
    )


async def _announce(ledger: Ledger, count: int) -> None:
    """`count` file.deleted events, each with its delivery row (abandoned pending uploads)."""
    for _ in range(count):
        await _abandon(ledger, await _pending(ledger, "bench"))


class _Settings:
    def __init__(self, concurrency: int) -> None:
        self.webhook_concurrency = concurrency
        self.webhook_poll_seconds = 1.0


async def _backend(name: str, driver: Driver, url: str, args: argparse.Namespace) -> list[str]:
    endpoints = parse_endpoints(
        json.dumps([{"name": "bench", "url": url, "secrets": [generate_secret()]}])
    )
    ledger = Ledger(driver, lambda _type: ("bench",))
    rows = []
    try:
        async with WebhookSender(timeout_seconds=5) as sender:
            dispatcher = Dispatcher(ledger.outbox, sender, endpoints, _Settings(args.concurrency))  # type: ignore[arg-type]
            await _announce(ledger, args.events)
            started = time.perf_counter()
            report = await dispatcher.drain(limit=args.concurrency)
            seconds = time.perf_counter() - started
            assert report.delivered == args.events, report
            rows.append((f"{name} dispatcher", args.events / seconds))

            # Idle latency: one event into a dispatcher waiting in run_forever.
            timings = []
            answered = asyncio.Event()
            original = sender.deliver

            async def timed(*a: object, **k: object) -> object:
                answer = await original(*a, **k)  # type: ignore[arg-type]
                timings.append(time.perf_counter())
                answered.set()
                return answer

            sender.deliver = timed  # type: ignore[method-assign,assignment]
            ledger.on_delivery = dispatcher.wake.set
            task = asyncio.create_task(dispatcher.run_forever())
            latencies = []
            for _ in range(20):
                await asyncio.sleep(0.05)
                record = await _pending(ledger, "idle")
                answered.clear()
                before = time.perf_counter()
                await _abandon(ledger, record)
                await asyncio.wait_for(answered.wait(), 10)
                latencies.append(timings[-1] - before)
            task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await task
    finally:
        await ledger.close()
    latencies.sort()
    rows_text = [f"  {label:28s} {rate:8.0f} events/s" for label, rate in rows]
    rows_text.append(
        f"  {name + ' idle latency':28s} p50 {latencies[len(latencies) // 2] * 1000:6.1f} ms"
        f"   max {latencies[-1] * 1000:6.1f} ms (commit to the receiver's 200)"
    )
    return rows_text


async def _references(url: str, args: argparse.Namespace) -> tuple[float, float]:
    body = json.dumps({"id": str(uuid.uuid4()), "type": "file.deleted", "data": {}}).encode()
    gate = asyncio.Semaphore(args.concurrency)
    async with httpx.AsyncClient() as client:

        async def bare() -> None:
            async with gate:
                (await client.post(url, content=body)).raise_for_status()

        started = time.perf_counter()
        await asyncio.gather(*(bare() for _ in range(args.events)))
        baseline = args.events / (time.perf_counter() - started)
    [endpoint] = parse_endpoints(
        json.dumps([{"name": "bench", "url": url, "secrets": [generate_secret()]}])
    )
    async with WebhookSender(timeout_seconds=5) as sender:

        async def signed(n: int) -> None:
            async with gate:
                await sender.deliver(endpoint, str(n), int(time.time()), body)

        started = time.perf_counter()
        await asyncio.gather(*(signed(n) for n in range(args.events)))
        peer = args.events / (time.perf_counter() - started)
    return baseline, peer


async def _run(args: argparse.Namespace) -> None:
    from app.ledger import open_driver

    with receiver() as url, tempfile.TemporaryDirectory() as tmp:
        baseline, peer = await _references(url, args)
        lines = [
            f"  {'baseline: bare httpx POST':28s} {baseline:8.0f} events/s",
            f"  {'peer: WebhookSender alone':28s} {peer:8.0f} events/s",
        ]
        sqlite_url = f"sqlite:///{Path(tmp) / 'ledger.db'}"
        run_migrations(sqlite_url)
        lines += await _backend("sqlite", await open_driver(sqlite_url, 10), url, args)
        with throwaway_database(args.postgres_url, prefix="s3gate_bench_hooks") as pg_url:
            run_migrations(pg_url)
            lines += await _backend("postgres", await open_driver(pg_url, 10), url, args)
    print(
        f"webhook dispatch: {args.events} events, concurrency {args.concurrency}, "
        f"{os.cpu_count()} cores"
    )
    for line in lines:
        print(line)
    for line in lines[2:]:
        if "events/s" in line:
            rate = float(line.split()[-2])
            name = line.split()[0]
            print(f"  {name}: {rate / baseline:.2f}x the baseline, {rate / peer:.2f}x the peer")


def main() -> None:
    parser = argparse.ArgumentParser(prog="python -m bench.webhooks", description=__doc__)
    parser.add_argument("--events", type=int, default=2000)
    parser.add_argument("--concurrency", type=int, default=8)
    parser.add_argument(
        "--postgres-url",
        default=os.environ.get(
            "S3GATE_TEST_POSTGRES_URL", "postgresql://postgres@127.0.0.1:5432/postgres"
        ),
    )
    asyncio.run(_run(parser.parse_args()))


if __name__ == "__main__":
    main()
