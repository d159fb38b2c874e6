"""What every part of the scenario shares."""

from __future__ import annotations

import base64
import hashlib
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parents[3]
HOST = "127.0.0.1"
BUCKET = "s3gate-replicas"
GRACE_SECONDS = 10  # S3GATE_GRACEFUL_SHUTDOWN_SECONDS in the containers
FAIL_TIMEOUT_SECONDS = 10  # nginx's fail_timeout in deploy/nginx.conf
PART_BYTES = 5 * 1024**2
BIG_FILE_BYTES = 12 * PART_BYTES  # its SHA-256 is read in the background: a long held `complete`
SLOW_BODY_SECONDS = 2.5


class ScenarioError(Exception):
    """The scenario could not be set up or run (as opposed to a check that failed)."""


def sha256_b64(data: bytes) -> str:
    return base64.b64encode(hashlib.sha256(data).digest()).decode()


def log(message: str) -> None:
    print(f"scenario: {message}", file=sys.stderr, flush=True)
