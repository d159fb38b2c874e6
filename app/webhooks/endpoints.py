"""Webhook endpoints as configured: where each event goes and which secrets sign it.

The configuration is a JSON array (one object per endpoint). Every problem is a ValueError that
names the endpoint and the problem, never a secret or the URL (its query may carry a token).
"""

from __future__ import annotations

import json
import re
import urllib.parse
from dataclasses import dataclass
from typing import Any

import httpx

from app.models import EventType
from app.webhooks.signing import WebhookSecret

# Derived from the outbox's own list, so a new event type is configurable the day it exists.
EVENT_TYPES: tuple[str, ...] = tuple(event.value for event in EventType)
MAX_SECRETS = 2  # the current one and, while receivers rotate, the previous one
_NAME = re.compile(r"[a-z0-9-]{1,32}")
_SCHEMES = frozenset({"http", "https"})
_FIELDS = frozenset({"name", "url", "secrets", "events"})
# Space and the C0/C1 controls: httpx would quote some and refuse others; in configuration they
# are always a copy-paste accident.
_UNSAFE_URL_CHARS = re.compile("[\x00-\x20\x7f-\x9f]")


@dataclass(frozen=True, slots=True, repr=False)
class WebhookEndpoint:
    """One receiver. `event_types` None means every event type."""

    name: str
    url: str
    secrets: tuple[WebhookSecret, ...]
    event_types: frozenset[str] | None = None

    def __post_init__(self) -> None:
        if not isinstance(self.name, str) or not _NAME.fullmatch(self.name):
            raise ValueError(
                "a webhook endpoint name must be 1 to 32 characters of a-z, 0-9 and '-'"
            )
        where = f"webhook endpoint {self.name!r}"
        problem = _url_problem(self.url)
        if problem:
            raise ValueError(f"{where}: url {problem}")
        secrets = tuple(self.secrets)
        object.__setattr__(self, "secrets", secrets)
        if not 1 <= len(secrets) <= MAX_SECRETS:
            raise ValueError(f"{where}: needs 1 or {MAX_SECRETS} secrets, not {len(secrets)}")
        if not all(isinstance(secret, WebhookSecret) for secret in secrets):
            raise ValueError(f"{where}: secrets must be WebhookSecret values")
        if len(set(secrets)) != len(secrets):
            raise ValueError(f"{where}: the same secret is listed twice")
        if self.event_types is not None:
            if not self.event_types:
                raise ValueError(f"{where}: events is empty; leave it out for every event")
            unknown = sorted(set(self.event_types) - set(EVENT_TYPES))
            if unknown:
                raise ValueError(
                    f"{where}: unknown event type(s) {', '.join(map(repr, unknown))}; "
                    f"known: {', '.join(EVENT_TYPES)}"
                )
            object.__setattr__(self, "event_types", frozenset(self.event_types))

    def matches(self, event_type: str) -> bool:
        """Whether this endpoint wants events of `event_type`."""
        return self.event_types is None or event_type in self.event_types

    @property
    def display_url(self) -> str:
        """The URL without its query string, for logs and operators."""
        parts = urllib.parse.urlsplit(self.url)
        shown = urllib.parse.urlunsplit((parts.scheme, parts.netloc, parts.path, "", ""))
        return shown + ("?…" if parts.query else "")

    def __repr__(self) -> str:
        events = "all" if self.event_types is None else sorted(self.event_types)
        return (
            f"WebhookEndpoint(name={self.name!r}, url={self.display_url!r}, "
            f"secrets={len(self.secrets)}, events={events!r})"
        )


def _url_problem(url: object) -> str | None:
    """Why `url` cannot be an endpoint URL (a phrase that never quotes it), or None."""
    if not isinstance(url, str) or not url:
        return "must be a non-empty string"
    if _UNSAFE_URL_CHARS.search(url):
        return "contains spaces or control characters"
    try:
        parts = urllib.parse.urlsplit(url)
        port = parts.port  # reading it validates it
        httpx.URL(url)
    except (ValueError, httpx.InvalidURL):
        return "is not a valid URL"
    if parts.scheme not in _SCHEMES:
        return "must use http or https"
    if "@" in parts.netloc:
        # Credentials in the authority would be sent as Basic auth and end up in logs.
        return "must not carry a user name or password"
    if not parts.hostname:
        return "has no host"
    if port == 0:
        return "has port 0"
    if parts.fragment or url.endswith("#"):
        return "must not have a fragment"
    return None


def parse_endpoints(raw: str) -> tuple[WebhookEndpoint, ...]:
    """Endpoints from their JSON array; an empty or blank string means none."""
    if not raw.strip():
        return ()
    invalid_at: str | None
    try:
        data = json.loads(raw)
    except json.JSONDecodeError as exc:
        invalid_at = f"line {exc.lineno}, column {exc.colno}"
    else:
        invalid_at = None
    if invalid_at is not None:
        # Raised outside the handler: a decode error holds the whole document, secrets
        # included, and would travel along as this error's __context__.
        raise ValueError(f"webhook endpoints must be a JSON array: invalid JSON at {invalid_at}")
    if not isinstance(data, list):
        raise ValueError("webhook endpoints must be a JSON array of objects")
    endpoints = tuple(_endpoint(index, item) for index, item in enumerate(data))
    seen: set[str] = set()
    for endpoint in endpoints:
        if endpoint.name in seen:
            raise ValueError(f"webhook endpoint {endpoint.name!r}: the name is used twice")
        seen.add(endpoint.name)
    return endpoints


def _endpoint(index: int, item: Any) -> WebhookEndpoint:
    if not isinstance(item, dict):
        raise ValueError(f"webhook endpoint #{index + 1}: must be a JSON object")
    name = item.get("name")
    valid_name = isinstance(name, str) and _NAME.fullmatch(name) is not None
    where = f"webhook endpoint {name!r}" if valid_name else f"webhook endpoint #{index + 1}"
    unknown = sorted(str(key)[:32] for key in item.keys() - _FIELDS)
    if unknown:
        # A misspelt "events" must not silently mean every event.
        raise ValueError(
            f"{where}: unknown field(s) {', '.join(map(repr, unknown))}; "
            f"expected {', '.join(sorted(_FIELDS))}"
        )
    for field in ("name", "url", "secrets"):
        if field not in item:
            raise ValueError(f"{where}: {field} is missing")
    if not valid_name:
        raise ValueError(f"{where}: name must be 1 to 32 characters of a-z, 0-9 and '-'")
    raw_secrets = item["secrets"]
    if not isinstance(raw_secrets, list) or not all(isinstance(s, str) for s in raw_secrets):
        raise ValueError(f"{where}: secrets must be a list of whsec_ strings")
    secrets = []
    for position, value in enumerate(raw_secrets):
        try:
            secrets.append(WebhookSecret.parse(value))
        except ValueError as exc:
            raise ValueError(f"{where}: secrets[{position}]: {exc}") from None
    events = item.get("events")
    if events is not None and (
        not isinstance(events, list) or not all(isinstance(e, str) for e in events)
    ):
        raise ValueError(f"{where}: events must be a list of event type strings")
    return WebhookEndpoint(
        name=str(name),
        url=item["url"],
        secrets=tuple(secrets),
        event_types=None if events is None else frozenset(events),
    )
