"""One webhook delivery attempt against a real HTTP receiver (uvicorn on a loopback port), and
the retry schedule the dispatcher applies to its outcome.

Every endpoint URL here carries `?token=...`, as a real one may: no Attempt's error may show it.
"""

from __future__ import annotations

import asyncio
import email.utils
import json
import random
import socket
import threading
import time
import urllib.parse
from collections.abc import AsyncIterator, Awaitable, Callable, Iterator
from dataclasses import dataclass
from typing import Any

import httpx
import pytest
from standardwebhooks.webhooks import Webhook

from app.webhooks import (
    Attempt,
    Outcome,
    WebhookEndpoint,
    WebhookSecret,
    WebhookSender,
    generate_secret,
    next_attempt_delay,
    parse_retry_after,
    retry_delay,
)
from app.webhooks.delivery import (
    EXCERPT_CHARS,
    MAX_RETRY_AFTER_SECONDS,
    RETRY_SCHEDULE_SECONDS,
    USER_AGENT,
)
from tests.support import ThreadedServer, received_request

TOKEN = "tok-9c1d7e5a3b2f"
SECRET = generate_secret()
BODY = json.dumps(
    {"id": "evt", "type": "file.available", "data": {"file": {"id": "f1"}}},
    separators=(",", ":"),
).encode()
MSG_ID = "0193a6b2-5c1e-7cc0-9d2a-1f2e3d4c5b6a"
HUGE_BODY_LIMIT = 256 * 1024 * 1024  # the receiver stops there if the client never hangs up

Receive = Callable[[], Awaitable[dict[str, Any]]]
Send = Callable[[dict[str, Any]], Awaitable[None]]


@dataclass(frozen=True)
class Received:
    method: str
    path: str
    query: str
    headers: dict[str, str]
    body: bytes


class Receiver:
    """An ASGI app whose path picks its behaviour; it records every request it gets."""

    def __init__(self) -> None:
        self.requests: list[Received] = []
        self.huge_bytes_sent = 0
        self.huge_done = threading.Event()

    async def __call__(self, scope: dict[str, Any], receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            return
        body, headers = await received_request(scope, receive)
        query = scope["query_string"].decode()
        self.requests.append(Received(scope["method"], scope["path"], query, headers, body))
        params = dict(urllib.parse.parse_qsl(query))
        match scope["path"].strip("/").split("/"):
            case ["status", code]:
                extra = []
                if "retry_after" in params:
                    extra.append((b"retry-after", params["retry_after"].encode()))
                # Like many frameworks' error pages, echo the request target back.
                answer = f"Cannot {scope['method']} {scope['path']}?{query}".encode()
                await respond(send, int(code), answer, extra)
            case ["redirect"]:
                location = f"/target?token={TOKEN}".encode()
                await respond(send, 302, b"", [(b"location", location)])
            case ["target"]:
                await respond(send, 200, b"ok")
            case ["silent"]:
                await hung_up(receive).wait()
            case ["huge"]:
                await self._huge(receive, send)
            case ["trickle"]:
                await trickle(receive, send)
            case _:
                await respond(send, 404, b"no such route")

    async def _huge(self, receive: Receive, send: Send) -> None:
        await send({"type": "http.response.start", "status": 500, "headers": []})
        gone = hung_up(receive)
        chunk = b"<h1>Internal error</h1>" + b"x" * 65_000
        while not gone.is_set() and self.huge_bytes_sent < HUGE_BODY_LIMIT:
            await send({"type": "http.response.body", "body": chunk, "more_body": True})
            self.huge_bytes_sent += len(chunk)
            await asyncio.sleep(0)  # lets the disconnect watcher run
        self.huge_done.set()
        await send({"type": "http.response.body", "body": b""})


async def respond(
    send: Send, status: int, body: bytes, headers: list[tuple[bytes, bytes]] | None = None
) -> None:
    all_headers = [(b"content-type", b"text/plain"), *(headers or [])]
    await send({"type": "http.response.start", "status": status, "headers": all_headers})
    await send({"type": "http.response.body", "body": body})


def hung_up(receive: Receive) -> asyncio.Event:
    """An event set once the client disconnects (the request body is already read)."""
    gone = asyncio.Event()

    async def watch() -> None:
        while (await receive())["type"] != "http.disconnect":
            pass
        gone.set()

    task = asyncio.get_running_loop().create_task(watch())
    task.add_done_callback(lambda _: gone.set())
    return gone


async def trickle(receive: Receive, send: Send) -> None:
    """A 200 whose body arrives one byte at a time: each read succeeds, the whole never ends."""
    headers = [(b"content-length", b"100000")]
    await send({"type": "http.response.start", "status": 200, "headers": headers})
    gone = hung_up(receive)
    while not gone.is_set():
        await send({"type": "http.response.body", "body": b".", "more_body": True})
        await asyncio.sleep(0.02)


@pytest.fixture(scope="module")
def server() -> Iterator[tuple[Receiver, str]]:
    receiver = Receiver()
    with ThreadedServer(receiver) as running:
        yield receiver, f"http://127.0.0.1:{running.port}"


@pytest.fixture
def receiver(server: tuple[Receiver, str]) -> Receiver:
    server[0].requests.clear()
    return server[0]


@pytest.fixture
def base_url(server: tuple[Receiver, str]) -> str:
    return server[1]


@pytest.fixture
async def sender() -> AsyncIterator[WebhookSender]:
    async with WebhookSender(timeout_seconds=2.0) as sender:
        yield sender


def endpoint(url: str, *secrets: str) -> WebhookEndpoint:
    values = secrets or (SECRET,)
    return WebhookEndpoint(
        name="billing", url=url, secrets=tuple(WebhookSecret.parse(v) for v in values)
    )


def at(base_url: str, path: str, **query: str) -> str:
    return f"{base_url}{path}?{urllib.parse.urlencode({**query, 'token': TOKEN})}"


def assert_log_safe(attempt: Attempt, *secrets: str) -> None:
    if attempt.error is None:
        return
    assert TOKEN not in attempt.error
    assert "token=" not in attempt.error
    for value in (SECRET, *secrets):
        assert value.removeprefix("whsec_") not in attempt.error
    assert len(attempt.error) <= 300


async def deliver(sender: WebhookSender, url: str, *secrets: str) -> Attempt:
    attempt = await sender.deliver(endpoint(url, *secrets), MSG_ID, int(time.time()), BODY)
    assert_log_safe(attempt, *secrets)
    return attempt


# --- what the receiver gets -----------------------------------------------------------------


async def test_a_2xx_receiver_gets_the_exact_body_with_headers_that_verify(
    receiver: Receiver, base_url: str, sender: WebhookSender
) -> None:
    old, new = generate_secret(), generate_secret()
    attempt = await deliver(sender, at(base_url, "/status/200"), new, old)
    assert attempt == Attempt(Outcome.DELIVERED, 200, None, attempt.duration_seconds, None)
    (request,) = receiver.requests
    assert request.method == "POST"
    assert request.query == f"token={TOKEN}"
    assert request.body == BODY
    assert request.headers["content-type"] == "application/json"
    assert request.headers["user-agent"] == USER_AGENT
    assert request.headers["webhook-id"] == MSG_ID
    # What a receiver runs: each of the two secrets (rotation) verifies the request as received.
    for value in (old, new):
        assert Webhook(value).verify(request.body, request.headers) == json.loads(BODY)


@pytest.mark.parametrize("status", [200, 201, 202, 204, 299])
async def test_every_2xx_is_delivered(
    receiver: Receiver, base_url: str, sender: WebhookSender, status: int
) -> None:
    attempt = await deliver(sender, at(base_url, f"/status/{status}"))
    assert (attempt.outcome, attempt.status_code, attempt.error) == (
        Outcome.DELIVERED,
        status,
        None,
    )


# --- answers that say "later" ----------------------------------------------------------------


@pytest.mark.parametrize("status", [408, 425, 429, 500, 502, 503, 504])
async def test_a_busy_or_failing_receiver_is_retried(
    receiver: Receiver, base_url: str, sender: WebhookSender, status: int
) -> None:
    attempt = await deliver(sender, at(base_url, f"/status/{status}"))
    assert attempt.outcome is Outcome.RETRY
    assert attempt.status_code == status
    assert attempt.retry_after_seconds is None
    assert attempt.error is not None
    assert attempt.error.startswith(f"HTTP {status} ")


async def test_a_500_is_retried_with_a_safe_excerpt_of_the_answer(
    receiver: Receiver, base_url: str, sender: WebhookSender
) -> None:
    attempt = await deliver(sender, at(base_url, "/status/500"))
    assert attempt.outcome is Outcome.RETRY
    assert attempt.status_code == 500
    # The receiver echoed the request target, token included; the excerpt keeps the rest.
    assert attempt.error == "HTTP 500 Internal Server Error: Cannot POST /status/500?[redacted]"


async def test_a_429_with_retry_after_seconds_is_retried_no_sooner(
    receiver: Receiver, base_url: str, sender: WebhookSender
) -> None:
    attempt = await deliver(sender, at(base_url, "/status/429", retry_after="7"))
    assert attempt.outcome is Outcome.RETRY
    assert attempt.status_code == 429
    assert attempt.retry_after_seconds == 7


async def test_a_503_with_an_http_date_retry_after_is_read_as_seconds(
    receiver: Receiver, base_url: str, sender: WebhookSender
) -> None:
    when = email.utils.formatdate(time.time() + 120, usegmt=True)
    attempt = await deliver(sender, at(base_url, "/status/503", retry_after=when))
    assert attempt.outcome is Outcome.RETRY
    assert attempt.retry_after_seconds is not None
    assert 118 <= attempt.retry_after_seconds <= 121


async def test_a_retry_after_beyond_a_day_is_capped(
    receiver: Receiver, base_url: str, sender: WebhookSender
) -> None:
    attempt = await deliver(sender, at(base_url, "/status/429", retry_after=str(30 * 86400)))
    assert attempt.retry_after_seconds == MAX_RETRY_AFTER_SECONDS


async def test_retry_after_is_only_read_on_429_and_503(
    receiver: Receiver, base_url: str, sender: WebhookSender
) -> None:
    attempt = await deliver(sender, at(base_url, "/status/500", retry_after="7"))
    assert attempt.outcome is Outcome.RETRY
    assert attempt.retry_after_seconds is None


# --- answers that say "never" ----------------------------------------------------------------


async def test_a_redirect_fails_and_its_location_is_never_requested(
    receiver: Receiver, base_url: str, sender: WebhookSender
) -> None:
    attempt = await deliver(sender, at(base_url, "/redirect"))
    assert attempt.outcome is Outcome.FAILED
    assert attempt.status_code == 302
    assert attempt.error is not None
    assert "redirects are not followed" in attempt.error
    assert [request.path for request in receiver.requests] == ["/redirect"]


async def test_a_redirect_is_not_followed_even_through_a_client_that_follows(
    receiver: Receiver, base_url: str
) -> None:
    async with (
        httpx.AsyncClient(follow_redirects=True) as client,
        WebhookSender(timeout_seconds=2.0, client=client) as sender,
    ):
        attempt = await deliver(sender, at(base_url, "/redirect"))
    assert attempt.outcome is Outcome.FAILED
    assert [request.path for request in receiver.requests] == ["/redirect"]


@pytest.mark.parametrize("status", [301, 303, 307, 308, 400, 401, 403, 404, 405, 410, 413, 422])
async def test_a_refusing_receiver_fails_for_good(
    receiver: Receiver, base_url: str, sender: WebhookSender, status: int
) -> None:
    attempt = await deliver(sender, at(base_url, f"/status/{status}"))
    assert attempt.outcome is Outcome.FAILED
    assert attempt.status_code == status
    assert attempt.retry_after_seconds is None


async def test_a_400_fails_with_the_receivers_reason_minus_the_token(
    receiver: Receiver, base_url: str, sender: WebhookSender
) -> None:
    attempt = await deliver(sender, at(base_url, "/status/400"))
    assert attempt.outcome is Outcome.FAILED
    assert attempt.error == "HTTP 400 Bad Request: Cannot POST /status/400?[redacted]"


async def test_a_410_says_the_receiver_wants_no_more(
    receiver: Receiver, base_url: str, sender: WebhookSender
) -> None:
    attempt = await deliver(sender, at(base_url, "/status/410"))
    assert attempt.outcome is Outcome.FAILED
    assert attempt.error is not None
    assert "no longer wants" in attempt.error


# --- no answer ------------------------------------------------------------------------------


async def test_a_receiver_that_never_answers_is_retried_after_the_timeout(
    receiver: Receiver, base_url: str
) -> None:
    async with WebhookSender(timeout_seconds=0.3) as sender:
        attempt = await deliver(sender, at(base_url, "/silent"))
    assert attempt.outcome is Outcome.RETRY
    assert attempt.status_code is None
    assert attempt.error == "no answer within 0.3 s"
    assert 0.3 <= attempt.duration_seconds < 1.5
    assert [request.body for request in receiver.requests] == [BODY]


async def test_a_trickling_answer_is_cut_off_at_the_total_timeout_and_judged_by_its_status(
    receiver: Receiver, base_url: str
) -> None:
    # One byte every 20 ms never trips a per-read timeout; only a total deadline ends it.
    async with WebhookSender(timeout_seconds=0.4) as sender:
        attempt = await deliver(sender, at(base_url, "/trickle"))
    assert attempt.outcome is Outcome.DELIVERED
    assert attempt.status_code == 200
    assert 0.4 <= attempt.duration_seconds < 1.5


async def test_nothing_listening_is_retried_at_once(sender: WebhookSender) -> None:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    # Closed again: nothing listens there, so the connection is refused.
    attempt = await deliver(sender, f"http://127.0.0.1:{port}/hooks?token={TOKEN}")
    assert attempt.outcome is Outcome.RETRY
    assert attempt.status_code is None
    assert attempt.error is not None
    assert attempt.error.startswith("could not connect")
    assert attempt.duration_seconds < 1.0


async def test_a_tls_failure_is_retried(
    receiver: Receiver, base_url: str, sender: WebhookSender
) -> None:
    # An https URL aimed at a plain-HTTP port: the handshake fails.
    url = at(base_url.replace("http://", "https://"), "/status/200")
    attempt = await deliver(sender, url)
    assert attempt.outcome is Outcome.RETRY
    assert attempt.status_code is None
    assert attempt.error is not None
    assert attempt.error.startswith("TLS ")
    assert receiver.requests == []


# --- what is read of the answer -------------------------------------------------------------


async def test_a_huge_answer_is_not_read_whole(
    server: tuple[Receiver, str], base_url: str, sender: WebhookSender
) -> None:
    receiver = server[0]
    receiver.huge_bytes_sent = 0
    receiver.huge_done.clear()
    attempt = await deliver(sender, at(base_url, "/huge"))
    assert attempt.outcome is Outcome.RETRY
    assert attempt.status_code == 500
    assert attempt.error is not None
    assert attempt.error.startswith("HTTP 500 Internal Server Error: <h1>Internal error</h1>xxx")
    assert len(attempt.error) <= len("HTTP 500 Internal Server Error: ") + EXCERPT_CHARS
    # The sender hung up after its first KiB; the receiver stopped writing long before its
    # limit (what it wrote meanwhile sat in socket buffers).
    assert await asyncio.to_thread(receiver.huge_done.wait, 5)
    assert 0 < receiver.huge_bytes_sent < 32 * 1024 * 1024
    assert attempt.duration_seconds < 2.0


# --- the schedule ---------------------------------------------------------------------------


def test_the_retry_schedule_is_5s_5min_30min_2h_5h_10h_with_jitter_then_gives_up() -> None:
    rng = random.Random(7)
    expected = [5, 300, 1800, 7200, 18000, 36000]
    assert list(RETRY_SCHEDULE_SECONDS) == expected
    for _ in range(200):
        for number, base in enumerate(expected, start=1):
            delay = next_attempt_delay(number, rng)
            assert delay is not None
            assert base * 0.8 <= delay <= base * 1.2
    assert next_attempt_delay(len(expected) + 1, rng) is None
    assert next_attempt_delay(100, rng) is None


def test_jitter_spreads_retries_that_failed_together() -> None:
    rng = random.Random(11)
    delays = {next_attempt_delay(3, rng) for _ in range(50)}
    assert len(delays) == 50


def test_attempt_numbers_start_at_one() -> None:
    with pytest.raises(ValueError, match="start at 1"):
        next_attempt_delay(0, random.Random(1))


def test_retry_delay_waits_for_the_longer_of_the_schedule_and_retry_after() -> None:
    assert retry_delay(1, random.Random(3), None) == next_attempt_delay(1, random.Random(3))
    assert retry_delay(1, random.Random(3), 120) == 120
    assert retry_delay(2, random.Random(3), 7) == next_attempt_delay(2, random.Random(3))
    assert retry_delay(6, random.Random(3), 10**9) == MAX_RETRY_AFTER_SECONDS


def test_retry_delay_gives_up_when_the_schedule_is_spent_whatever_retry_after_says() -> None:
    assert retry_delay(7, random.Random(3), 5) is None


@pytest.mark.parametrize(
    ("value", "seconds"),
    [
        (None, None),
        ("7", 7),
        (" 7 ", 7),
        ("0", 0),
        ("90000", MAX_RETRY_AFTER_SECONDS),
        ("9" * 40, None),
        ("-5", None),
        ("1.5", None),
        ("soon", None),
        ("", None),
        ("Thu, 01 Jan 1970 00:03:00 GMT", 120),
        ("Thu, 01 Jan 1970 00:03:00 -0000", 120),
        ("Thu, 01 Jan 1970 00:00:30 GMT", 0),  # in the past: now
        ("Sat, 01 Jan 2000 00:00:00 GMT", MAX_RETRY_AFTER_SECONDS),
    ],
)
def test_retry_after_is_read_as_delta_seconds_or_http_date(
    value: str | None, seconds: int | None
) -> None:
    assert parse_retry_after(value, now=60.0) == seconds
