"""Media-type rules, in one place: what a declared type may look like, the essence of a
header value, the operator's allow-list patterns, and which essences are JSON."""

from __future__ import annotations

import re

# What a client may declare for an upload: lower-case type/subtype, no parameters (its
# validator lower-cases and strips first). Always used with fullmatch: `$` would also accept
# a trailing newline.
DECLARED_TYPE = re.compile(r"[a-z0-9][a-z0-9!#$&^_.+-]{0,126}/[a-z0-9][a-z0-9!#$&^_.+-]{0,126}")
# An operator's S3GATE_ALLOWED_CONTENT_TYPES entry: a declared type, `type/*` or `*/*`.
ALLOWED_PATTERN = re.compile(
    r"\*/\*|[a-z0-9][a-z0-9!#$&^_.+-]{0,126}/(\*|[a-z0-9][a-z0-9!#$&^_.+-]{0,126})"
)
# RFC 9110 token characters on both sides of the slash: a type a browser parses as written.
_TOKEN_ESSENCE = re.compile(r"[!#$%&'*+.^_`|~0-9a-z-]+/[!#$%&'*+.^_`|~0-9a-z-]+")


def essence(value: str | None) -> str:
    """The type/subtype of a Content-Type value, lower-cased, without its parameters."""
    return (value or "").split(";", 1)[0].strip().lower()


def is_token_essence(value: str) -> bool:
    """Whether an essence is RFC 9110 tokens on both sides of one slash."""
    return _TOKEN_ESSENCE.fullmatch(value) is not None


def is_json(content_type: str) -> bool:
    """application/json, or any +json structured syntax suffix (RFC 6839 §3.1)."""
    found = essence(content_type)
    return found == "application/json" or found.endswith("+json")


def allowed(content_type: str, patterns: list[str]) -> bool:
    """Whether type/subtype matches one of `*/*`, `type/*` or an exact `type/subtype`."""
    major = content_type.split("/", 1)[0]
    return any(p in ("*/*", content_type, f"{major}/*") for p in patterns)
