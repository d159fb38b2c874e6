"""Sharing: share links (their lifetime and rate limits), the access history's retention, and
the public address links are made with."""

from __future__ import annotations

from urllib.parse import urlsplit

from pydantic import Field, field_validator
from pydantic_settings import BaseSettings

from app.config.base import _MODEL_CONFIG, OptionalText

MAX_LINK_TTL_SECONDS = 365 * 24 * 3600


class SharingSettings(BaseSettings):
    """Share links and the access history."""

    model_config = _MODEL_CONFIG

    # The longest `expires_in` a share link may ask for (the default: 7 days).
    link_max_ttl_seconds: int = Field(default=7 * 24 * 3600, ge=60, le=MAX_LINK_TTL_SECONDS)
    # Uses of one link (`burst` at once, refilled at `per_minute`), and uses of any link from
    # one client address; 0 turns a limit off. Shared through Redis when S3GATE_REDIS_URL is set.
    link_rate_limit_per_minute: int = Field(default=30, ge=0, le=1_000_000)
    link_rate_limit_burst: int = Field(default=10, ge=1, le=100_000)
    link_address_rate_limit_per_minute: int = Field(default=120, ge=0, le=1_000_000)
    link_address_rate_limit_burst: int = Field(default=30, ge=1, le=100_000)
    # How long the access history (every URL issued) is kept; the reaper prunes older rows,
    # and grants and links that ended longer ago.
    access_retention_days: int = Field(default=90, ge=1, le=3650)
    # Where clients reach this service, for the URLs of share links (https://files.example.com
    # or with a path prefix). Unset: the request's own address (behind a balancer, set
    # S3GATE_PROXY_HEADERS so it is the public one).
    public_url: OptionalText = None

    @field_validator("public_url", mode="after")
    @classmethod
    def _public_url(cls, value: str | None) -> str | None:
        if value is None:
            return None
        parts = urlsplit(value)
        if parts.scheme not in ("http", "https") or not parts.netloc or parts.query:
            raise ValueError("an http(s) URL such as https://files.example.com, no query")
        return value.rstrip("/")
