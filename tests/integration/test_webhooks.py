"""Webhooks from the outbox (issue 14, item 2), against a real HTTP receiver: one verified
delivery per event in normal operation; every event at least once when the dispatcher is
killed mid-delivery or the receiver fails; two dispatchers on one PostgreSQL never make the
same attempt twice. Signatures are checked with the `standardwebhooks` package."""

from __future__ import annotations

import asyncio
import json
import signal
import subprocess
import threading
import time
import uuid
from collections import Counter
from collections.abc import AsyncIterator, Iterator
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import httpx
import pytest
from pydantic import SecretStr
from standardwebhooks.webhooks import Webhook

from app.config import Settings
from app.devstack import EmbeddedS3
from app.ledger import Ledger
from app.lifespan import open_use_cases
from app.models import deliveries_table
from app.usecases.dispatch import DELIVERY_LEASE, Dispatcher
from app.webhooks import WebhookSender, generate_secret
from app.webhooks.delivery import RETRY_SCHEDULE_SECONDS
from tests.support import (
    S3GATE,
    Api,
    ThreadedServer,
    empty_ledger,
    new_sub,
    received_request,
    run_s3gate,
    running_app,
    s3gate_env,
    sql_engine,
)

SECRET = generate_secret()
OLD_SECRET = generate_secret()
BODY = {"filename": "a.txt", "content_type": "text/plain", "size": 5}


@dataclass
class Delivered:
    headers: dict[str, str]
    body: bytes
    at: float


@dataclass
class Receiver:
    """An ASGI app standing in for an app backend: it records each delivery and answers with
    the next scripted status (200 once the script is spent); "hang" holds the request open
    until `release` is set."""

    script: list[int | str | tuple[int, dict[str, str]]] = field(default_factory=list)
    delay: float = 0.0
    got: list[Delivered] = field(default_factory=list)
    release: threading.Event = field(default_factory=threading.Event)

    async def __call__(self, scope: dict[str, Any], receive: Any, send: Any) -> None:
        if scope["type"] != "http":
            return
        body, headers = await received_request(scope, receive)
        self.got.append(Delivered(headers, body, time.monotonic()))
        answer = self.script.pop(0) if self.script else 200
        extra: dict[str, str] = {}
        if answer == "hang":
            await asyncio.to_thread(self.release.wait, 60)
            answer = 200
        elif isinstance(answer, tuple):
            answer, extra = answer
        if self.delay:
            await asyncio.sleep(self.delay)
        headers = [(k.encode(), v.encode()) for k, v in extra.items()]
        await send({"type": "http.response.start", "status": int(answer), "headers": headers})
        await send({"type": "http.response.body", "body": b"ok"})

    def ids(self) -> list[str]:
        return [d.headers["webhook-id"] for d in self.got]


@pytest.fixture(autouse=True)
def _fresh_outbox(database_url: str) -> None:
    empty_ledger(database_url)  # a dispatcher pass here must see this test's deliveries only


@pytest.fixture
def receiver() -> Iterator[tuple[Receiver, str]]:
    app = Receiver()
    with ThreadedServer(app) as server:
        yield app, f"http://127.0.0.1:{server.port}"
    app.release.set()


def _endpoints(url: str, *secrets: str, events: list[str] | None = None) -> str:
    endpoint: dict[str, Any] = {"name": "backend", "url": f"{url}/hooks?token=t0k3n-in-url"}
    endpoint["secrets"] = list(secrets or (SECRET,))
    if events is not None:
        endpoint["events"] = events
    return json.dumps([endpoint])


def _with_webhooks(settings: Settings, url: str, **extra: Any) -> Settings:
    update = {"webhook_endpoints": SecretStr(_endpoints(url)), **extra}
    return settings.model_copy(update=update)


@pytest.fixture
async def hooked(settings: Settings, receiver: tuple[Receiver, str]) -> AsyncIterator[Api]:
    """The app with the receiver configured as its one endpoint, dispatching in-process. Its
    poll is a minute: a delivery within the tests' waits came from the commit's wake-up."""
    hooked = _with_webhooks(settings, receiver[1], webhook_dispatch=True, webhook_poll_seconds=60)
    async with running_app(hooked) as client:
        yield Api(client, hooked)


def _verified(delivery: Delivered, *secrets: str) -> dict[str, Any]:
    """The body, after checking its signature as a receiver would (standardwebhooks)."""
    for secret in secrets or (SECRET,):
        payload: dict[str, Any] = Webhook(secret).verify(delivery.body, delivery.headers)
    return payload


def _deliveries(settings: Settings) -> list[dict[str, Any]]:
    engine = sql_engine(settings.database_url)
    try:
        with engine.connect() as conn:
            rows = conn.execute(deliveries_table.select().order_by(deliveries_table.c.id)).all()
    finally:
        engine.dispose()
    return [row._asdict() for row in rows]


async def _delete_pending(api: Api, owner: str) -> str:
    """A file.deleted event: create an upload, abandon it; the file's id."""
    file_id: str = (await api.create(owner, BODY)).json()["file"]["id"]
    answer = await api.client.delete(f"/uploads/{file_id}", headers=api.auth(owner))
    assert answer.status_code == 204
    return file_id


async def _until(predicate: Any, seconds: float = 15) -> None:
    deadline = time.monotonic() + seconds
    while not predicate():
        assert time.monotonic() < deadline, "timed out"
        await asyncio.sleep(0.02)


async def test_each_event_is_delivered_once_signed_and_in_order(
    hooked: Api, receiver: tuple[Receiver, str], s3_http: httpx.AsyncClient
) -> None:
    got, _ = receiver
    owner = new_sub()
    file, _ = await hooked.upload(s3_http, owner, b"hello", content_type="text/plain")
    completed = await hooked.complete(owner, file["id"])
    assert completed.status_code == 200
    await _until(lambda: len(got.got) >= 1)  # woken by the commit: the poll is a minute away
    deleted = await hooked.client.delete(f"/files/{file['id']}", headers=hooked.auth(owner))
    assert deleted.status_code == 204
    await _until(lambda: len(got.got) >= 2)
    await asyncio.sleep(1.0)  # the passes after each claim find nothing more to deliver
    assert len(got.got) == 2

    bodies = [_verified(delivery) for delivery in got.got]
    assert [b["type"] for b in bodies] == ["file.available", "file.deleted"]
    assert [b["data"]["file"]["id"] for b in bodies] == [file["id"], file["id"]]
    # webhook-id is the event's id: a receiver dedupes retries by it
    assert got.ids() == [b["id"] for b in bodies]
    feed = await hooked.client.get("/events", headers=hooked.auth(owner))
    assert [e["id"] for e in feed.json()["items"]] == got.ids()
    assert [d.body for d in got.got] == [
        json.dumps(e, separators=(",", ":"), ensure_ascii=False).encode()
        for e in feed.json()["items"]
    ]
    assert all(d.headers["content-type"] == "application/json" for d in got.got)
    assert {row["status"] for row in _deliveries(hooked.settings)} == {"delivered"}


async def test_an_endpoint_hears_only_the_event_types_it_asked_for(
    settings: Settings, receiver: tuple[Receiver, str]
) -> None:
    got, url = receiver
    only_expired = settings.model_copy(
        update={
            "webhook_endpoints": SecretStr(_endpoints(url, events=["upload.expired"])),
            "webhook_dispatch": True,
        }
    )
    async with running_app(only_expired) as client:
        await _delete_pending(Api(client, only_expired), new_sub())
    assert _deliveries(only_expired) == []
    assert got.got == []


async def test_both_secrets_sign_while_a_receiver_rotates(
    settings: Settings, receiver: tuple[Receiver, str]
) -> None:
    got, url = receiver
    rotating = settings.model_copy(
        update={
            "webhook_endpoints": SecretStr(_endpoints(url, SECRET, OLD_SECRET)),
            "webhook_dispatch": True,
            "webhook_poll_seconds": 0.2,
        }
    )
    async with running_app(rotating) as client:
        await _delete_pending(Api(client, rotating), new_sub())
        await _until(lambda: len(got.got) == 1)
    assert len(got.got[0].headers["webhook-signature"].split(" ")) == 2
    _verified(got.got[0], SECRET)  # a receiver on the new secret
    _verified(got.got[0], OLD_SECRET)  # and one still on the old one


class Clock:
    """The dispatcher's clock: real time, moved ahead by the test."""

    def __init__(self) -> None:
        self.ahead = timedelta()

    def __call__(self) -> datetime:
        return datetime.now(UTC) + self.ahead

    def advance(self, seconds: float) -> None:
        self.ahead += timedelta(seconds=seconds)


@pytest.fixture
async def outbox_only(
    settings: Settings, receiver: tuple[Receiver, str]
) -> AsyncIterator[tuple[Api, Ledger, Dispatcher, Clock]]:
    """The app with the endpoint configured but no dispatcher running, and a dispatcher the
    test drives pass by pass on its own clock."""
    configured = _with_webhooks(settings, receiver[1])
    clock = Clock()
    async with (
        running_app(configured) as client,
        open_use_cases(configured) as (ledger, _),
        WebhookSender(timeout_seconds=2) as sender,
    ):
        dispatcher = Dispatcher(
            ledger.outbox, sender, configured.webhook_endpoint_list(), configured, clock=clock
        )
        yield Api(client, configured), ledger, dispatcher, clock


async def test_a_failing_receiver_is_retried_on_the_schedule_until_it_answers(
    outbox_only: tuple[Api, Ledger, Dispatcher, Clock], receiver: tuple[Receiver, str]
) -> None:
    api, _, dispatcher, clock = outbox_only
    got, _ = receiver
    got.script = [500, 500, 500]
    await _delete_pending(api, new_sub())
    for attempt, wait in enumerate(RETRY_SCHEDULE_SECONDS[:3], start=1):
        report = await dispatcher.run_once()
        assert (report.claimed, report.retried) == (1, 1)
        assert len(got.got) == attempt
        clock.advance(wait * 0.75)  # before the earliest jittered retry: not due yet
        assert (await dispatcher.run_once()).claimed == 0
        clock.advance(wait * 0.5)  # past the latest
    assert (await dispatcher.run_once()).delivered == 1
    assert len(got.got) == 4
    assert len(set(got.ids())) == 1  # one event, four attempts, one webhook-id
    stamps = [int(d.headers["webhook-timestamp"]) for d in got.got]
    assert stamps == sorted(stamps)
    assert len(set(stamps)) == 4  # each attempt signed at its own time
    [row] = _deliveries(api.settings)
    assert (row["status"], row["attempts"], row["last_status"]) == ("delivered", 4, 200)


async def test_after_the_last_attempt_a_delivery_is_dead_lettered_and_can_be_replayed(
    outbox_only: tuple[Api, Ledger, Dispatcher, Clock], receiver: tuple[Receiver, str]
) -> None:
    api, ledger, dispatcher, clock = outbox_only
    got, _ = receiver
    got.script = [503] * (len(RETRY_SCHEDULE_SECONDS) + 1)
    await _delete_pending(api, new_sub())
    for wait in RETRY_SCHEDULE_SECONDS:
        assert (await dispatcher.run_once()).retried == 1
        clock.advance(wait * 1.25)
    assert (await dispatcher.run_once()).failed == 1
    assert len(got.got) == len(RETRY_SCHEDULE_SECONDS) + 1
    [row] = _deliveries(api.settings)
    assert (row["status"], row["last_status"]) == ("failed", 503)
    assert "503" in row["last_error"]
    assert "t0k3n-in-url" not in row["last_error"]
    clock.advance(86400)
    assert (await dispatcher.run_once()).claimed == 0  # dead: never again by itself

    assert await ledger.outbox.requeue_failed(clock()) == 1  # `s3gate events replay --failed`
    assert (await dispatcher.run_once()).delivered == 1
    assert len(set(got.ids())) == 1


async def test_a_429_waits_at_least_its_retry_after(
    outbox_only: tuple[Api, Ledger, Dispatcher, Clock], receiver: tuple[Receiver, str]
) -> None:
    api, _, dispatcher, clock = outbox_only
    got, _ = receiver
    got.script = [(429, {"retry-after": "600"})]
    await _delete_pending(api, new_sub())
    assert (await dispatcher.run_once()).retried == 1
    clock.advance(RETRY_SCHEDULE_SECONDS[0] * 2)  # the schedule alone would retry now
    assert (await dispatcher.run_once()).claimed == 0
    clock.advance(600)
    assert (await dispatcher.run_once()).delivered == 1


async def test_later_events_of_a_file_wait_for_its_earlier_ones(
    outbox_only: tuple[Api, Ledger, Dispatcher, Clock],
    receiver: tuple[Receiver, str],
    s3_http: httpx.AsyncClient,
) -> None:
    api, _, dispatcher, clock = outbox_only
    got, _ = receiver
    got.script = [500]  # file.available fails once
    owner = new_sub()
    file, _ = await api.upload(s3_http, owner, b"hello", content_type="text/plain")
    assert (await api.complete(owner, file["id"])).status_code == 200
    assert (
        await api.client.delete(f"/files/{file['id']}", headers=api.auth(owner))
    ).status_code == 204
    assert (await dispatcher.run_once()).claimed == 1  # file.deleted is not due before it
    clock.advance(RETRY_SCHEDULE_SECONDS[0] * 1.25)
    assert (await dispatcher.run_once()).delivered == 1
    assert (await dispatcher.run_once()).delivered == 1
    assert [json.loads(d.body)["type"] for d in got.got] == [
        "file.available",
        "file.available",
        "file.deleted",
    ]


def _cli_env(settings: Settings, s3: EmbeddedS3) -> dict[str, str]:
    assert settings.webhook_endpoints is not None
    return s3gate_env(
        s3,
        settings.s3_bucket,
        S3GATE_DATABASE_URL=settings.database_url,
        S3GATE_WEBHOOK_ENDPOINTS=settings.webhook_endpoints.get_secret_value(),
        S3GATE_STORE_PROFILE="seaweedfs",
        S3GATE_LOG_LEVEL="warning",
    )


def _deliver_process(
    settings: Settings, s3: EmbeddedS3, tmp_path: Path, *args: str
) -> subprocess.Popen[str]:
    env = _cli_env(settings, s3)
    return subprocess.Popen(
        [S3GATE, "deliver", *args], env=env, cwd=tmp_path, stdout=subprocess.PIPE, text=True
    )


async def test_an_event_whose_dispatcher_was_killed_mid_delivery_is_delivered_later(
    outbox_only: tuple[Api, Ledger, Dispatcher, Clock],
    receiver: tuple[Receiver, str],
    s3_server: EmbeddedS3,
    tmp_path: Path,
) -> None:
    api, _, dispatcher, clock = outbox_only
    got, _ = receiver
    got.script = ["hang"]
    await _delete_pending(api, new_sub())
    process = _deliver_process(api.settings, s3_server, tmp_path)
    try:
        await _until(lambda: len(got.got) == 1, seconds=30)  # the request is in flight
        process.send_signal(signal.SIGKILL)
        process.wait(10)
    finally:
        if process.poll() is None:
            process.kill()
        got.release.set()
    [row] = _deliveries(api.settings)
    assert (row["status"], row["attempts"]) == ("pending", 0)  # the attempt never finished
    assert (await dispatcher.run_once()).claimed == 0  # its lease still holds
    clock.advance(DELIVERY_LEASE.total_seconds() + 1)
    assert (await dispatcher.run_once()).delivered == 1  # the lease ran out: taken again
    assert len(got.got) == 2
    assert len(set(got.ids())) == 1


@pytest.mark.parametrize(
    "database_url", [pytest.param("postgres", marks=pytest.mark.postgres)], indirect=True
)
async def test_two_dispatchers_on_one_postgresql_never_make_the_same_attempt(
    settings: Settings, receiver: tuple[Receiver, str], s3_server: EmbeddedS3, tmp_path: Path
) -> None:
    got, url = receiver
    got.delay = 0.2  # small claims, slow answers: the two runs overlap for seconds
    configured = _with_webhooks(settings, url)
    async with running_app(configured) as client:
        api = Api(client, configured)
        owner = new_sub()
        made = [await _delete_pending(api, owner) for _ in range(60)]
    first = _deliver_process(configured, s3_server, tmp_path, "--batch-size", "4")
    second = _deliver_process(configured, s3_server, tmp_path, "--batch-size", "4")
    outputs = [p.communicate(timeout=60)[0] for p in (first, second)]
    assert [p.returncode for p in (first, second)] == [0, 0]
    counts = Counter(got.ids())
    assert len(counts) == len(made)
    assert set(counts.values()) == {1}, "an attempt was made twice"
    claimed = [int(out.split("claimed=")[1].split()[0]) for out in outputs]
    assert sum(claimed) == len(made)
    assert all(claimed), f"one run took everything: {claimed} {outputs}"
    assert {row["status"] for row in _deliveries(configured)} == {"delivered"}


# One backend: the commands are thin over the ledger calls the tests above run on both.
@pytest.mark.parametrize("database_url", ["sqlite"], indirect=True)
async def test_operators_list_and_replay_deliveries_from_the_command_line(
    outbox_only: tuple[Api, Ledger, Dispatcher, Clock],
    receiver: tuple[Receiver, str],
    s3_server: EmbeddedS3,
    tmp_path: Path,
) -> None:
    api, _, dispatcher, _ = outbox_only
    got, _ = receiver
    got.script = [410]  # the receiver refuses it: dead-lettered at once
    await _delete_pending(api, new_sub())
    assert (await dispatcher.run_once()).failed == 1
    env = _cli_env(api.settings, s3_server)

    listed = run_s3gate("events", "list", env=env, cwd=tmp_path)
    assert listed.returncode == 0, listed.stderr
    [line] = listed.stdout.splitlines()
    assert "file.deleted" in line
    assert "deliveries=backend:failed" in line
    event_id = line.split()[1]
    failed = run_s3gate("events", "list", "--failed", env=env, cwd=tmp_path)
    assert "endpoint=backend" in failed.stdout
    assert "last_status=410" in failed.stdout
    assert "t0k3n-in-url" not in failed.stdout + failed.stderr + listed.stdout

    again = run_s3gate("events", "replay", "--failed", env=env, cwd=tmp_path)
    assert again.stdout.strip() == "due again: 1"
    assert (await dispatcher.run_once()).delivered == 1
    one = run_s3gate("events", "replay", event_id, env=env, cwd=tmp_path)
    assert one.stdout.strip() == "due again: 1"  # delivered, and once more on request
    delivered = run_s3gate("deliver", env=env, cwd=tmp_path)
    assert delivered.stdout.strip() == "claimed=1 delivered=1 retried=0 failed=0"
    assert len(got.got) == 3
    assert len(set(got.ids())) == 1

    unknown = run_s3gate("events", "replay", str(uuid.uuid4()), env=env, cwd=tmp_path)
    assert (unknown.returncode, "No event has this id" in unknown.stderr) == (1, True)
    broken = run_s3gate("events", "replay", "not-a-uuid", env=env, cwd=tmp_path)
    assert broken.returncode == 2
    assert "Traceback" not in broken.stderr + unknown.stderr
    secret = run_s3gate("webhook-secret", env=env, cwd=tmp_path).stdout.strip()
    assert secret.startswith("whsec_")
    Webhook(secret)  # a secret the receivers' library takes
