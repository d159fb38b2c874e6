"""The only module that talks to S3 over the network: HEAD, ranged GET, delete, bucket setup.

boto3 is blocking, so every call runs in a worker thread; timeouts and retries are bounded so
a store that is down turns into a quick 503, never a hung request.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, TypeVar

import anyio.to_thread
from botocore.exceptions import BotoCoreError, ClientError

from app.errors import StorageUnavailable

if TYPE_CHECKING:
    from mypy_boto3_s3 import S3Client
    from mypy_boto3_s3.type_defs import CORSRuleTypeDef

log = logging.getLogger("s3gate.storage")
T = TypeVar("T")

_MISSING_CODES = frozenset({"404", "NoSuchKey", "NotFound"})
# Headers the signer binds into PUT URLs; a browser must be allowed to send them cross-origin.
CORS_ALLOWED_HEADERS = ("content-type", "if-none-match", "x-amz-checksum-sha256")
CORS_ALLOWED_METHODS = ("PUT", "POST", "GET", "HEAD")


@dataclass(frozen=True, slots=True)
class ObjectInfo:
    size: int
    content_type: str | None
    checksum_sha256: str | None


def _error_code(exc: ClientError) -> str:
    return str(exc.response.get("Error", {}).get("Code", ""))


class Storage:
    """Network calls on the bucket; every failure of the store becomes StorageUnavailable."""

    def __init__(self, client: S3Client, bucket: str) -> None:
        self._client = client
        self._bucket = bucket

    async def head(self, key: str) -> ObjectInfo | None:
        """Size, type and stored SHA-256 of the object, or None if it is not there."""

        def call() -> ObjectInfo | None:
            try:
                head = self._client.head_object(
                    Bucket=self._bucket, Key=key, ChecksumMode="ENABLED"
                )
            except ClientError as exc:
                if _error_code(exc) in _MISSING_CODES:
                    return None
                raise
            return ObjectInfo(
                size=int(head["ContentLength"]),
                content_type=head.get("ContentType"),
                checksum_sha256=head.get("ChecksumSHA256"),
            )

        return await self._run("head_object", call)

    async def read_head(self, key: str, length: int) -> bytes | None:
        """The first `length` bytes of the object, or None if it is not there."""

        def call() -> bytes | None:
            try:
                response = self._client.get_object(
                    Bucket=self._bucket, Key=key, Range=f"bytes=0-{length - 1}"
                )
            except ClientError as exc:
                if _error_code(exc) in _MISSING_CODES:
                    return None
                raise
            with response["Body"] as body:
                return body.read(length)

        return await self._run("get_object", call)

    async def delete(self, key: str) -> None:
        """Remove the object; removing an object that is not there is not an error."""
        await self._run(
            "delete_object", lambda: self._client.delete_object(Bucket=self._bucket, Key=key)
        )

    async def _run(self, operation: str, call: Callable[[], T]) -> T:
        try:
            return await anyio.to_thread.run_sync(call)
        except ClientError as exc:
            # The error code says what failed; the message could quote request details.
            log.warning("s3 %s failed: %s", operation, _error_code(exc) or "ClientError")
            raise StorageUnavailable() from None
        except BotoCoreError as exc:
            log.warning("s3 %s failed: %s", operation, type(exc).__name__)
            raise StorageUnavailable() from None


def ensure_bucket(client: S3Client, bucket: str, cors_origins: Sequence[str]) -> None:
    """Create the bucket if missing and allow the given browser origins to use signed URLs."""
    try:
        client.head_bucket(Bucket=bucket)
    except ClientError as exc:
        if _error_code(exc) not in _MISSING_CODES | {"NoSuchBucket"}:
            raise
        client.create_bucket(Bucket=bucket)
    if cors_origins:
        rule: CORSRuleTypeDef = {
            "AllowedOrigins": list(cors_origins),
            "AllowedMethods": list(CORS_ALLOWED_METHODS),
            "AllowedHeaders": list(CORS_ALLOWED_HEADERS),
            # Multipart clients read part ETags; without this the browser hides the header.
            "ExposeHeaders": ["ETag"],
            "MaxAgeSeconds": 3000,
        }
        client.put_bucket_cors(Bucket=bucket, CORSConfiguration={"CORSRules": [rule]})
