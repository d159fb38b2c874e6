"""One webhook delivery attempt over HTTP, and when to try again.

The dispatcher (claiming deliveries, storing attempts) calls `WebhookSender.deliver` and stores
the Attempt it returns; `retry_delay` says when the next attempt is due. Nothing here raises for
what a receiver does: every answer, silence or network failure becomes an Attempt.

An Attempt's `error` is log-safe: it names no URL query (the URL may carry a token), no secret,
and at most a short, cleaned excerpt of what the receiver answered.
"""

from __future__ import annotations

import asyncio
import email.utils
import math
import os
import random
import re
import socket
import ssl
import time
import urllib.parse
from dataclasses import dataclass
from datetime import UTC
from enum import StrEnum
from types import TracebackType

import httpx

from app.webhooks.endpoints import WebhookEndpoint
from app.webhooks.signing import signed_headers

DEFAULT_TIMEOUT_SECONDS = 5.0
MAX_TIMEOUT_SECONDS = 60.0
# Enough for an error message from the receiver; a receiver must never make us hold megabytes.
MAX_RESPONSE_BYTES = 1024
EXCERPT_CHARS = 200
ERROR_CHARS = 300
MAX_RETRY_AFTER_SECONDS = 24 * 3600
# Standard Webhooks' example schedule, up to 10 h: 7 attempts over about 17.5 hours.
RETRY_SCHEDULE_SECONDS: tuple[float, ...] = (5, 5 * 60, 30 * 60, 2 * 3600, 5 * 3600, 10 * 3600)
# Spreads the retries of deliveries that failed together (one receiver outage) apart.
RETRY_JITTER = 0.2
USER_AGENT = "s3gate-webhooks"

# Timeout, too early, too many requests: the receiver may well accept the same request later.
_RETRY_STATUSES = frozenset({408, 425, 429})
_RETRY_AFTER_STATUSES = frozenset({429, 503})
_DELTA_SECONDS = re.compile(r"[0-9]{1,16}")
_CONTROLS = re.compile("[\x00-\x1f\x7f-\x9f\u2028\u2029]+")
_SPACES = re.compile(r"\s+")
_REDACTED = "[redacted]"
_MAX_CAUSES = 8  # how far down an exception chain to look for the OS or TLS reason
# Query values shorter than this ("1", "en") are not credentials, and redacting them would
# shred the excerpt.
_MIN_REDACTED_VALUE_CHARS = 4


class Outcome(StrEnum):
    DELIVERED = "delivered"  # a 2xx: done
    RETRY = "retry"  # may succeed later: schedule another attempt
    FAILED = "failed"  # will not succeed by repetition: dead-letter


@dataclass(frozen=True, slots=True)
class Attempt:
    outcome: Outcome
    status_code: int | None  # None when no answer arrived
    retry_after_seconds: int | None  # the receiver's Retry-After on 429/503, capped
    duration_seconds: float
    error: str | None = None  # log-safe; None when delivered


def classify_status(status_code: int) -> Outcome:
    """What a receiver's status means for the delivery."""
    if 200 <= status_code < 300:
        return Outcome.DELIVERED
    if status_code in _RETRY_STATUSES or status_code >= 500:
        return Outcome.RETRY
    # A redirect is never followed (the endpoint URL should be updated instead) and a receiver
    # that refuses this request (400, 401, 404, 410, ...) will refuse it again.
    return Outcome.FAILED


def parse_retry_after(value: str | None, now: float) -> int | None:
    """Seconds from `now` that a Retry-After value (delta-seconds or HTTP-date) asks for,
    capped at MAX_RETRY_AFTER_SECONDS; None when absent or unreadable."""
    if value is None:
        return None
    value = value.strip()
    if _DELTA_SECONDS.fullmatch(value):
        return min(int(value), MAX_RETRY_AFTER_SECONDS)
    try:
        when = email.utils.parsedate_to_datetime(value)
    except (TypeError, ValueError, IndexError, OverflowError):
        return None
    if when.tzinfo is None:  # "-0000": HTTP-dates are UTC
        when = when.replace(tzinfo=UTC)
    seconds = math.ceil(when.timestamp() - now)
    return min(max(seconds, 0), MAX_RETRY_AFTER_SECONDS)


def next_attempt_delay(attempt_number: int, rng: random.Random) -> float | None:
    """Seconds to wait after attempt `attempt_number` (1 is the first) failed, with ±20%
    jitter; None once the schedule is spent (give up: failed)."""
    if attempt_number < 1:
        raise ValueError("attempt numbers start at 1")
    if attempt_number > len(RETRY_SCHEDULE_SECONDS):
        return None
    base = RETRY_SCHEDULE_SECONDS[attempt_number - 1]
    return base * rng.uniform(1 - RETRY_JITTER, 1 + RETRY_JITTER)


def retry_delay(
    attempt_number: int, rng: random.Random, retry_after_seconds: float | None = None
) -> float | None:
    """The schedule's delay, or the receiver's Retry-After when that is longer (capped); None
    once the schedule is spent, whatever the receiver asked."""
    delay = next_attempt_delay(attempt_number, rng)
    if delay is None:
        return None
    if retry_after_seconds is not None:
        delay = max(delay, retry_after_seconds)
    return min(delay, MAX_RETRY_AFTER_SECONDS)


class WebhookSender:
    """Posts signed webhooks through one shared HTTP client (built once, e.g. in lifespan).

    A `client` passed in (tests) stays the caller's: `aclose` closes only the one built here.
    Whatever the client, redirects are not followed and the timeout is this sender's.
    """

    def __init__(
        self,
        *,
        timeout_seconds: float = DEFAULT_TIMEOUT_SECONDS,
        client: httpx.AsyncClient | None = None,
    ) -> None:
        if not 0 < timeout_seconds <= MAX_TIMEOUT_SECONDS:
            raise ValueError(f"timeout_seconds must be in (0, {MAX_TIMEOUT_SECONDS:g}]")
        self._timeout_seconds = timeout_seconds
        self._owns_client = client is None
        self._client = client or httpx.AsyncClient(
            follow_redirects=False,
            timeout=httpx.Timeout(timeout_seconds),
            headers={"user-agent": USER_AGENT},
        )

    async def aclose(self) -> None:
        if self._owns_client:
            await self._client.aclose()

    async def __aenter__(self) -> WebhookSender:
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        traceback: TracebackType | None,
    ) -> None:
        await self.aclose()

    async def deliver(
        self, endpoint: WebhookEndpoint, msg_id: str, timestamp: int, body: bytes
    ) -> Attempt:
        """POST `body`, signed for `endpoint`, once; the Attempt says what came of it."""
        headers = signed_headers(msg_id, timestamp, body, endpoint.secrets)
        headers["user-agent"] = USER_AGENT
        # The excerpt is read raw: a compressed answer could inflate far past the read limit.
        headers["accept-encoding"] = "identity"
        started = time.monotonic()
        status: int | None = None
        retry_after: str | None = None
        received = bytearray()
        try:
            # httpx's timeouts are per read; a receiver trickling bytes would reset them
            # forever. This deadline bounds the whole attempt.
            async with (
                asyncio.timeout(self._timeout_seconds),
                self._client.stream(
                    "POST",
                    endpoint.url,
                    content=body,
                    headers=headers,
                    follow_redirects=False,
                    timeout=self._timeout_seconds,
                ) as response,
            ):
                status = response.status_code
                retry_after = response.headers.get("retry-after")
                async for chunk in response.aiter_raw():
                    received += chunk[: MAX_RESPONSE_BYTES - len(received)]
                    if len(received) >= MAX_RESPONSE_BYTES:
                        break  # leaving the stream closes the connection; the rest is unread
        except (TimeoutError, httpx.TimeoutException) as exc:
            if status is None:
                return self._no_answer(started, _timeout_text(exc, self._timeout_seconds))
        except (httpx.UnsupportedProtocol, httpx.InvalidURL):
            # Endpoint validation should make this unreachable; retrying would not help.
            return self._no_answer(started, "the endpoint URL cannot be requested", retry=False)
        except httpx.TransportError as exc:
            if status is None:
                return self._no_answer(started, _redact(_transport_text(exc), endpoint.url))
        # Without an exception a status arrived; after one, only if it did (the returns above).
        assert status is not None
        # Once a status arrived, it decides, even if the rest of the answer then failed.
        return self._answered(endpoint, status, retry_after, bytes(received), started)

    def _no_answer(self, started: float, error: str, *, retry: bool = True) -> Attempt:
        return Attempt(
            outcome=Outcome.RETRY if retry else Outcome.FAILED,
            status_code=None,
            retry_after_seconds=None,
            duration_seconds=time.monotonic() - started,
            error=_clip(error, ERROR_CHARS),
        )

    def _answered(
        self,
        endpoint: WebhookEndpoint,
        status: int,
        retry_after: str | None,
        received: bytes,
        started: float,
    ) -> Attempt:
        outcome = classify_status(status)
        return Attempt(
            outcome=outcome,
            status_code=status,
            retry_after_seconds=(
                parse_retry_after(retry_after, time.time())
                if status in _RETRY_AFTER_STATUSES
                else None
            ),
            duration_seconds=time.monotonic() - started,
            error=None
            if outcome is Outcome.DELIVERED
            else _status_text(status, received, endpoint),
        )


def _status_text(status: int, received: bytes, endpoint: WebhookEndpoint) -> str:
    text = f"HTTP {status}"
    phrase = httpx.codes.get_reason_phrase(status)
    if phrase:
        text += f" {phrase}"
    if 300 <= status < 400:
        # The Location is not shown: it may carry a token like the endpoint URL.
        text += " (redirects are not followed; configure the final URL)"
    elif status == 410:
        text += " (the receiver no longer wants these webhooks)"
    excerpt = _excerpt(received, endpoint.url)
    if excerpt:
        text += f": {excerpt}"
    return _clip(text, ERROR_CHARS)


def _excerpt(received: bytes, url: str) -> str:
    text = received.decode("utf-8", "replace")
    if len(received) >= MAX_RESPONSE_BYTES:
        # The read stopped mid-answer: the tail may hold the start of a token that redaction
        # cannot recognise. Drop as much as the longest redacted value.
        longest = max((len(value) for value in _sensitive_values(url)), default=0)
        text = text[: max(len(text) - longest, 0)]
    text = _SPACES.sub(" ", _CONTROLS.sub(" ", _redact(text, url))).strip()
    return _clip(text, EXCERPT_CHARS)


def _sensitive_values(url: str) -> list[str]:
    """What of the endpoint URL must not appear in an error: the URL itself, its query, and
    each query value, raw and decoded; longest first so that the longest match is replaced."""
    parts = urllib.parse.urlsplit(url)
    values = {url}
    if parts.query:
        values.add(parts.query)
        values.add(urllib.parse.unquote_plus(parts.query))
        for pair in parts.query.split("&"):
            raw = pair.partition("=")[2]
            values.update({raw, urllib.parse.unquote_plus(raw)})
    return sorted(
        (value for value in values if len(value) >= _MIN_REDACTED_VALUE_CHARS),
        key=len,
        reverse=True,
    )


def _redact(text: str, url: str) -> str:
    for value in _sensitive_values(url):
        text = text.replace(value, _REDACTED)
    return text


def _clip(text: str, limit: int) -> str:
    return text if len(text) <= limit else text[: limit - 1] + "…"


def _timeout_text(exc: BaseException, timeout_seconds: float) -> str:
    if isinstance(exc, httpx.ConnectTimeout):
        return f"could not connect within {timeout_seconds:g} s"
    return f"no answer within {timeout_seconds:g} s"


def _transport_text(exc: httpx.TransportError) -> str:
    """A short reason from the exception chain (TLS reason, OS error), not httpx's message,
    which may quote the request."""
    cause: BaseException | None = exc
    for _ in range(_MAX_CAUSES):
        if cause is None:
            break
        if isinstance(cause, ssl.SSLCertVerificationError):
            return f"TLS certificate not accepted: {cause.verify_message or cause.reason}"
        if isinstance(cause, ssl.SSLError):
            return f"TLS handshake failed: {cause.reason or type(cause).__name__}"
        if isinstance(cause, socket.gaierror) and cause.strerror:
            return f"{_kind(exc)}: {cause.strerror}"  # name resolution: its codes are no errno
        if isinstance(cause, OSError) and cause.errno:
            # The errno's own text: asyncio's strerror appends the address it tried.
            return f"{_kind(exc)}: {os.strerror(cause.errno)}"
        cause = cause.__cause__ or cause.__context__
    detail = _CONTROLS.sub(" ", str(exc)).strip()
    return f"{_kind(exc)}: {detail}" if detail else _kind(exc)


def _kind(exc: httpx.TransportError) -> str:
    if isinstance(exc, httpx.ConnectError):
        return "could not connect"
    if isinstance(exc, httpx.RemoteProtocolError):
        return "the receiver broke the HTTP exchange"
    return f"network error ({type(exc).__name__})"
