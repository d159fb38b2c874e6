"""Standard Webhooks signatures (symmetric, `v1`): HMAC-SHA256 over "{id}.{timestamp}.{body}".

Pure CPU, no I/O. Secrets are `whsec_<base64 key>`; a WebhookSecret holds the decoded key and
never shows it, so an endpoint list can be logged or put in an error without leaking it.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import hmac
import re
import secrets as _random
from collections.abc import Sequence

SECRET_PREFIX = "whsec_"  # noqa: S105 - the format's marker, not a secret
SIGNATURE_VERSION = "v1"
# The spec's bounds for a symmetric key: at least 192 bits, at most 512.
MIN_KEY_BYTES = 24
MAX_KEY_BYTES = 64
GENERATED_KEY_BYTES = 32
# Words that say a secret was copied from a template rather than generated.
_PLACEHOLDER_WORDS = ("change", "example", "placeholder")
# A random key of 24 bytes or more has ~20+ distinct byte values; "aaaa..." or "abcabc..." has
# a handful. Below this the key is a typed stand-in, not randomness.
_MIN_DISTINCT_BYTES = 8
# The spec forbids "." in the id (it delimits the signed content); the rest keeps the header
# value a plain token (UUIDs, msg_... ids).
_MSG_ID = re.compile(r"[A-Za-z0-9_-]{1,128}")


class WebhookSecret:
    """One signing key. Build it with `parse`; `repr`/`str` never show the key."""

    __slots__ = ("_key",)

    def __init__(self, key: bytes) -> None:
        _check_key(key)
        self._key = key

    @classmethod
    def parse(cls, value: str) -> WebhookSecret:
        """A secret from its `whsec_<base64>` form; ValueError (without the value) otherwise."""
        if not isinstance(value, str) or not value.startswith(SECRET_PREFIX):
            raise ValueError(f"a webhook secret must start with {SECRET_PREFIX!r}")
        encoded = value[len(SECRET_PREFIX) :]
        lowered = encoded.lower()
        if any(word in lowered for word in _PLACEHOLDER_WORDS):
            raise ValueError("the webhook secret is a placeholder; generate one")
        try:
            # Unpadded base64 is common in copied secrets; anything outside the alphabet is not.
            key = base64.b64decode(encoded + "=" * (-len(encoded) % 4), validate=True)
        except (binascii.Error, ValueError):
            raise ValueError("a webhook secret must be whsec_ followed by base64") from None
        return cls(key)

    def signature(self, content: bytes) -> str:
        """The base64 HMAC-SHA256 of `content` (without the version prefix)."""
        digest = hmac.new(self._key, content, hashlib.sha256).digest()
        return base64.b64encode(digest).decode("ascii")

    def __repr__(self) -> str:
        return "WebhookSecret(whsec_***)"

    __str__ = __repr__

    def __eq__(self, other: object) -> bool:
        if not isinstance(other, WebhookSecret):
            return NotImplemented
        return hmac.compare_digest(self._key, other._key)

    def __hash__(self) -> int:
        return hash(self._key)

    # Immutable, so copies are the object itself (dataclasses.asdict deep-copies fields) ...
    def __copy__(self) -> WebhookSecret:
        return self

    def __deepcopy__(self, memo: dict[int, object]) -> WebhookSecret:
        return self

    # ... but pickling would carry the key into caches or task queues unnoticed.
    def __reduce__(self) -> tuple[object, ...]:
        raise TypeError("a WebhookSecret cannot be pickled")


def _check_key(key: bytes) -> None:
    if not MIN_KEY_BYTES <= len(key) <= MAX_KEY_BYTES:
        raise ValueError(
            f"a webhook secret's key must be {MIN_KEY_BYTES} to {MAX_KEY_BYTES} bytes, "
            f"not {len(key)}"
        )
    if len(set(key)) < _MIN_DISTINCT_BYTES:
        raise ValueError("the webhook secret's key repeats a few characters; generate one")
    lowered = key.decode("latin-1").lower()
    if any(word in lowered for word in _PLACEHOLDER_WORDS):
        raise ValueError("the webhook secret is a placeholder; generate one")


def generate_secret() -> str:
    """A new `whsec_` secret of 32 random bytes."""
    while True:
        value = SECRET_PREFIX + base64.b64encode(_random.token_bytes(GENERATED_KEY_BYTES)).decode()
        try:
            WebhookSecret.parse(value)
        except ValueError:
            # About one draw in 10^7 spells a placeholder word in its base64; draw again.
            continue
        return value


def sign(msg_id: str, timestamp: int, body: bytes, secrets: Sequence[WebhookSecret]) -> str:
    """The `webhook-signature` value: one `v1,<base64>` per secret, space-separated."""
    if not _MSG_ID.fullmatch(msg_id):
        raise ValueError("a webhook id must be 1 to 128 characters of [A-Za-z0-9_-]")
    if isinstance(timestamp, bool) or not isinstance(timestamp, int) or timestamp < 0:
        raise ValueError("a webhook timestamp must be a non-negative integer (seconds)")
    if not secrets:
        raise ValueError("signing needs at least one webhook secret")
    content = f"{msg_id}.{timestamp}.".encode("ascii") + body
    return " ".join(f"{SIGNATURE_VERSION},{secret.signature(content)}" for secret in secrets)


def signed_headers(
    msg_id: str, timestamp: int, body: bytes, secrets: Sequence[WebhookSecret]
) -> dict[str, str]:
    """The Standard Webhooks headers for one attempt, plus the JSON content type."""
    return {
        "content-type": "application/json",
        "webhook-id": msg_id,
        "webhook-timestamp": str(timestamp),
        "webhook-signature": sign(msg_id, timestamp, body, secrets),
    }
