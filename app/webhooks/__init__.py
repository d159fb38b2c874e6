"""Webhooks to app backends: Standard Webhooks signatures, endpoint configuration, and one
delivery attempt with its retry schedule. The dispatcher (outbox claims, stored attempts)
builds on these; nothing here touches the ledger or the web framework."""

from __future__ import annotations

from app.webhooks.delivery import (
    Attempt,
    Outcome,
    WebhookSender,
    next_attempt_delay,
    parse_retry_after,
    retry_delay,
)
from app.webhooks.endpoints import EVENT_TYPES, WebhookEndpoint, parse_endpoints
from app.webhooks.signing import WebhookSecret, generate_secret, sign, signed_headers

__all__ = [
    "EVENT_TYPES",
    "Attempt",
    "Outcome",
    "WebhookEndpoint",
    "WebhookSecret",
    "WebhookSender",
    "generate_secret",
    "next_attempt_delay",
    "parse_endpoints",
    "parse_retry_after",
    "retry_delay",
    "sign",
    "signed_headers",
]
