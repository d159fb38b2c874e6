"""Verification after `complete`: the background worker, and the malware scanner it runs."""

from __future__ import annotations

import re

from pydantic import Field, field_validator
from pydantic_settings import BaseSettings

from app.config.base import _MODEL_CONFIG, MAX_OBJECT_BYTES, OptionalText
from app.scanner import parse_scanner_url

_PREFIX = re.compile(r"([A-Za-z0-9._-]+/)+")


class VerificationSettings(BaseSettings):
    """What `complete` leaves to the background worker, and how that worker scans."""

    model_config = _MODEL_CONFIG

    # Scan every upload with clamd before it is available: clamav://HOST[:PORT] or
    # clamav:///path/to/clamd.sock. Unset: no scan.
    scanner: OptionalText = None
    # Scanner down or timing out: the file stays `verifying` and is tried again (false), or
    # becomes available unscanned (true; logged).
    scanner_fail_open: bool = False
    # Larger files are not scanned: rejected with reason too_large_to_scan, or (fail open)
    # available unscanned. Keep clamd's StreamMaxLength, MaxFileSize and MaxScanSize at least
    # this large, or clamd scans part of a file and answers OK.
    scanner_max_bytes: int = Field(default=100 * 1024**2, ge=1, le=MAX_OBJECT_BYTES)
    scanner_timeout_seconds: float = Field(default=30, ge=1, le=600)
    # Malware found: moved under this prefix (bucket-private, never signed for) instead of
    # deleted, for inspection. Unset: deleted.
    scanner_quarantine_prefix: OptionalText = None
    # Run the background verification worker in this process (any number of replicas may:
    # they never take the same file). Off: run `s3gate verify` (one pass) from cron.
    verify_in_process: bool = True
    verify_concurrency: int = Field(default=2, ge=1, le=32)
    # How long `complete` with `Prefer: wait=N` may hold its answer for the worker to finish.
    completion_max_wait_seconds: int = Field(default=30, ge=0, le=120)

    @field_validator("scanner", mode="after")
    @classmethod
    def _scanner(cls, value: str | None) -> str | None:
        if value is not None:
            parse_scanner_url(value)  # its ValueError says what is accepted
        return value

    @field_validator("scanner_quarantine_prefix", mode="after")
    @classmethod
    def _quarantine(cls, value: str | None) -> str | None:
        if value is not None and not _PREFIX.fullmatch(value):
            raise ValueError("a key prefix ending in '/', such as quarantine/")
        return value
