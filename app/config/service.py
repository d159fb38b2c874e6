"""The service's settings, one class per concern: the store, URLs, uploads, quotas, rate
limits, the reaper, HTTP serving."""

from __future__ import annotations

import ipaddress
import re
from typing import Literal

from pydantic import (
    Field,
    field_validator,
)
from pydantic_settings import BaseSettings

from app.config.base import (
    _MODEL_CONFIG,
    MAX_OBJECT_BYTES,
    MAX_URL_TTL_SECONDS,
    MIN_PART_BYTES,
    SINGLE_PUT_MAX_BYTES,
    CsvList,
    OptionalText,
)
from app.mediatypes import ALLOWED_PATTERN
from app.profiles import ProfileName

_KEY_PREFIX_PATTERN = re.compile(r"([A-Za-z0-9._-]+/)*")
_BUCKET_PATTERN = re.compile(r"[a-z0-9][a-z0-9.-]{1,61}[a-z0-9]")
_IPV4 = re.compile(r"\d+\.\d+\.\d+\.\d+")


class StoreSettings(BaseSettings):
    """The bucket, how to reach it, and how URLs for it are signed."""

    model_config = _MODEL_CONFIG

    s3_bucket: str
    s3_region: str = Field(default="us-east-1", min_length=1)
    s3_endpoint_url: OptionalText = None
    s3_public_endpoint_url: OptionalText = None
    s3_addressing_style: Literal["path", "virtual", "auto"] = "auto"
    s3_key_prefix: str = "uploads/"

    # sigv4: direct signing, byte-identical to boto3 and several times cheaper; boto3: the SDK's
    # generate_presigned_url, as a fallback.
    signer: Literal["sigv4", "boto3"] = "sigv4"
    # What the store enforces, and so how s3gate adapts (app/profiles.py, docs/stores.md). auto:
    # measured by a probe at startup, under the key prefix.
    store_profile: ProfileName = "auto"

    storage_connect_timeout_seconds: float = Field(default=2.0, gt=0, le=60)
    storage_read_timeout_seconds: float = Field(default=10.0, gt=0, le=300)
    storage_max_attempts: int = Field(default=3, ge=1, le=10)
    # Whole-object reads (hashing at completion) at once per process.
    hash_concurrency: int = Field(default=4, ge=1, le=64)

    @field_validator("s3_endpoint_url", "s3_public_endpoint_url", mode="after")
    @classmethod
    def _endpoint_is_http_url(cls, value: str | None) -> str | None:
        if value is not None and not re.fullmatch(r"https?://[^/?#\s]+/?", value):
            raise ValueError("must be an http(s) URL with no path, e.g. https://s3.example.com")
        return value.rstrip("/") if value else value

    @field_validator("s3_bucket")
    @classmethod
    def _bucket_name(cls, value: str) -> str:
        if not _BUCKET_PATTERN.fullmatch(value) or ".." in value or _IPV4.fullmatch(value):
            raise ValueError("not a valid S3 bucket name (3-63 of a-z 0-9 . -)")
        return value

    @field_validator("s3_key_prefix")
    @classmethod
    def _key_prefix(cls, value: str) -> str:
        segments = value.split("/")[:-1]
        if not _KEY_PREFIX_PATTERN.fullmatch(value) or {".", ".."} & set(segments):
            # Clients normalise dot segments away, so the path sent would not be the one signed.
            raise ValueError(
                "must be empty or segments of [A-Za-z0-9._-] each ending in '/', no '.' or '..'"
            )
        return value

    @property
    def signing_endpoint_url(self) -> str | None:
        """The endpoint that goes into presigned URLs (clients must be able to reach it)."""
        return self.s3_public_endpoint_url or self.s3_endpoint_url


class UrlSettings(BaseSettings):
    """How long the URLs handed out live, and how long after that they may still write."""

    model_config = _MODEL_CONFIG

    upload_url_ttl_seconds: int = Field(default=900, ge=1, le=MAX_URL_TTL_SECONDS)
    download_url_ttl_seconds: int = Field(default=60, ge=1, le=MAX_URL_TTL_SECONDS)
    # An upload that S3 accepted just before its URL expired may take a while to arrive.
    completion_grace_seconds: int = Field(default=3600, ge=0, le=MAX_URL_TTL_SECONDS)
    # How far the store's clock may run behind ours (`s3gate bucket check` measures it): an
    # upload URL may still write until its expiry plus the grace plus this, so until then an
    # ended file's object is deleted again on every reaper pass and its bytes count as held.
    store_clock_skew_seconds: int = Field(default=300, ge=0, le=3600)


class UploadSettings(BaseSettings):
    """What may be uploaded, and how: sizes, types, parts, completion."""

    model_config = _MODEL_CONFIG

    # How long a completion waits for another one that is verifying the same file, to answer
    # with its result; past it, 409 upload_incomplete ("verifying": call again). Longer than
    # the 10 s verification lease, so a retry after a replica died mid-way verifies itself.
    completion_wait_seconds: float = Field(default=15.0, ge=0, le=60)
    max_file_size: int = Field(default=SINGLE_PUT_MAX_BYTES, ge=1, le=MAX_OBJECT_BYTES)
    # Files above the threshold (or declared "multipart": true) upload in parts of part_size
    # (grown when needed to stay within 10,000 parts); part URLs can be asked for again until
    # the multipart deadline.
    multipart_threshold: int = Field(
        default=100 * 1024**2, ge=MIN_PART_BYTES, le=SINGLE_PUT_MAX_BYTES
    )
    part_size: int = Field(default=16 * 1024**2, ge=MIN_PART_BYTES, le=SINGLE_PUT_MAX_BYTES)
    multipart_deadline_seconds: int = Field(default=86400, ge=60, le=MAX_URL_TTL_SECONDS)
    allowed_content_types: CsvList = Field(default_factory=lambda: ["*/*"])

    @field_validator("allowed_content_types", mode="after")
    @classmethod
    def _content_type_patterns(cls, value: list[str]) -> list[str]:
        patterns = [item.lower() for item in value]
        bad = [item for item in patterns if not ALLOWED_PATTERN.fullmatch(item)]
        if bad:
            raise ValueError(f"not type/subtype patterns: {bad} (e.g. image/*,application/pdf)")
        if not patterns:
            raise ValueError("must allow at least one pattern (default */*)")
        return patterns


class QuotaSettings(BaseSettings):
    """Per-owner quotas, checked before anything is handed out (0: no limit)."""

    model_config = _MODEL_CONFIG

    # Per-owner quotas, checked before anything is handed out (0: no limit): bytes held by
    # pending and available files, and the number of uploads pending at once.
    quota_bytes_per_owner: int = Field(default=0, ge=0, le=2**62)
    quota_pending_uploads_per_owner: int = Field(default=0, ge=0, le=1_000_000)


class RateLimitSettings(BaseSettings):
    """The per-owner request rate limit on the routes that issue URLs."""

    model_config = _MODEL_CONFIG

    # Per-owner limit on the routes that issue URLs (uploads, part URLs, downloads):
    # `burst` at once, refilled at `per_minute`; 0 turns it off. Shared through Redis when
    # S3GATE_REDIS_URL is set, per process otherwise.
    rate_limit_per_minute: int = Field(default=600, ge=0, le=10_000_000)
    rate_limit_burst: int = Field(default=100, ge=1, le=1_000_000)
    redis_url: OptionalText = None
    # When Redis fails: true lets requests through (logged), false answers 503.
    rate_limit_fail_open: bool = True

    @field_validator("redis_url", mode="after")
    @classmethod
    def _redis_url(cls, value: str | None) -> str | None:
        if value is not None and not re.match(r"^(redis|rediss|unix)://", value):
            raise ValueError("must be a redis://, rediss:// or unix:// URL")
        return value


class ReaperSettings(BaseSettings):
    """The in-process reaper (`s3gate reap` runs the same pass on demand)."""

    model_config = _MODEL_CONFIG

    # Expire stale uploads and remove orphaned objects in-process every N seconds (0: off; run
    # `s3gate reap` from cron or a Kubernetes CronJob instead, or as well: runs never clash).
    reaper_interval_seconds: int = Field(default=0, ge=0, le=86400)
    reaper_batch_size: int = Field(default=500, ge=1, le=10_000)


class HttpSettings(BaseSettings):
    """How the HTTP server runs and whom it answers: CORS, the demo, proxies, the drain."""

    model_config = _MODEL_CONFIG

    cors_origins: CsvList = Field(default_factory=list)
    # The demo page at /demo/ (a development aid: `s3gate dev` turns it on). The browser
    # client at /client/s3gate.js is always served.
    demo: bool = False
    root_path: str = ""

    # Deployment: how `s3gate serve` runs, so a container is configured by its environment
    # (command-line flags win). Proxy headers are trusted only from the listed addresses or
    # networks ("*": any, only where nothing else can reach the port).
    host: str = Field(default="127.0.0.1", min_length=1)
    port: int = Field(default=8000, ge=1, le=65535)
    workers: int = Field(default=1, ge=1, le=64)
    proxy_headers: bool = False
    forwarded_allow_ips: CsvList = Field(default_factory=lambda: ["127.0.0.1"])
    # After SIGTERM: stop accepting, let in-flight requests finish for up to this long, exit.
    # Keep it below the orchestrator's own grace period (docker stop -t, Kubernetes'
    # terminationGracePeriodSeconds), which ends in SIGKILL.
    graceful_shutdown_seconds: int = Field(default=25, ge=0, le=3600)
    # Apply ledger migrations before serving (safe with several replicas starting at once:
    # they take turns on a PostgreSQL advisory lock). Off: run `s3gate migrate` as a release step.
    migrate_on_start: bool = False

    @field_validator("cors_origins", mode="after")
    @classmethod
    def _origins(cls, value: list[str]) -> list[str]:
        bad = [o for o in value if not re.fullmatch(r"https?://[^/?#\s]+", o)]
        if bad:
            raise ValueError(f"origins are scheme://host[:port] with no path: {bad}")
        return value

    @field_validator("forwarded_allow_ips", mode="after")
    @classmethod
    def _proxy_networks(cls, value: list[str]) -> list[str]:
        bad = []
        for item in value:
            try:
                if item != "*":
                    ipaddress.ip_network(item, strict=False)
            except ValueError:
                bad.append(item)
        if bad:
            raise ValueError(f"not IP addresses or networks: {bad} (e.g. 10.0.0.0/8,127.0.0.1)")
        return value

    @field_validator("root_path")
    @classmethod
    def _root_path(cls, value: str) -> str:
        value = value.rstrip("/")
        if value and not value.startswith("/"):
            raise ValueError("must start with '/'")
        return value
