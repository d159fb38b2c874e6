"""Logging setup. Library loggers that can print signatures or keys stay at WARNING."""

from __future__ import annotations

import logging

# At DEBUG, botocore logs canonical requests and the SigV4 signature of every presigned URL,
# and urllib3 logs full request lines; neither may ever reach our logs.
QUIET_LOGGERS = ("botocore", "boto3", "s3transfer", "urllib3", "httpx", "httpcore")


def configure_logging(level: str) -> None:
    """Plain-text logs at `level` on stderr, with secret-bearing library loggers held back."""
    logging.basicConfig(
        level=level.upper(), format="%(asctime)s %(levelname)s %(name)s %(message)s"
    )
    for name in QUIET_LOGGERS:
        logging.getLogger(name).setLevel(logging.WARNING)
