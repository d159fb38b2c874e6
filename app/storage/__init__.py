"""The only module that talks to S3 over the network: HEAD, ranged GET, delete, bucket setup.

boto3 is blocking, so every call runs in a worker thread; timeouts and retries are bounded so
a store that is down turns into a quick 503, never a hung request.
"""

from __future__ import annotations

import asyncio
import base64
import contextlib
import hashlib
import logging
from collections.abc import AsyncIterator, Callable, Sequence
from dataclasses import dataclass
from time import perf_counter
from typing import TYPE_CHECKING, Any, TypeVar

import anyio.to_thread
from botocore.exceptions import BotoCoreError, ClientError

from app.errors import StorageUnavailable
from app.metrics import metrics

if TYPE_CHECKING:
    from mypy_boto3_s3 import S3Client
    from mypy_boto3_s3.type_defs import CORSRuleTypeDef

log = logging.getLogger("s3gate.storage")
T = TypeVar("T")

_MISSING_CODES = frozenset({"404", "NoSuchKey", "NotFound"})
# Headers the signer binds into PUT URLs; a browser must be allowed to send them cross-origin.
CORS_ALLOWED_HEADERS = ("content-type", "if-none-match", "x-amz-checksum-sha256", "x-amz-acl")
CORS_ALLOWED_METHODS = ("PUT", "POST", "GET", "HEAD")
# The `operation` label values (and the names in log lines): Storage's own method names.
OPERATIONS = (
    "head",
    "read_head",
    "sha256",
    "stream",
    "delete",
    "create_multipart_upload",
    "list_parts",
    "complete_multipart_upload",
    "abort_multipart_upload",
    "copy",
)
# What HeadObject names the representation headers and metadata that an uploader can add to
# an object unsigned (S3 stores extra headers sent with a presigned PUT or fields of a POST),
# with the header each stands for. s3gate itself sets none of them.
_FOREIGN_HEAD_FIELDS = (
    ("ContentEncoding", "Content-Encoding"),
    ("CacheControl", "Cache-Control"),
    ("ContentDisposition", "Content-Disposition"),
    ("ContentLanguage", "Content-Language"),
    ("ExpiresString", "Expires"),
    ("Expires", "Expires"),
    ("WebsiteRedirectLocation", "x-amz-website-redirect-location"),
)


@dataclass(frozen=True, slots=True)
class StoredPart:
    number: int
    size: int
    etag: str


@dataclass(frozen=True, slots=True)
class ObjectInfo:
    size: int
    content_type: str | None
    checksum_sha256: str | None
    etag: str | None = None
    # Headers and metadata stored with the object that s3gate never sets (see above).
    foreign_headers: tuple[str, ...] = ()


# Request directives a browser adds to a PUT by itself (a hard reload, DevTools' "disable
# cache"), which S3 then stores; harmless on an object, and every download URL overrides the
# object's Cache-Control anyway (response-cache-control).
_BROWSER_CACHE_CONTROL = frozenset({"no-cache", "max-age=0"})


def unsigned_headers(head: Any) -> tuple[str, ...]:
    found = [
        header
        for field, header in _FOREIGN_HEAD_FIELDS
        if head.get(field)
        and not (
            field == "CacheControl" and str(head[field]).strip().lower() in _BROWSER_CACHE_CONTROL
        )
    ]
    found += [f"x-amz-meta-{name}" for name in sorted(head.get("Metadata") or {})]
    return tuple(dict.fromkeys(found))


def _error_code(exc: ClientError) -> str:
    return str(exc.response.get("Error", {}).get("Code", ""))


class Storage:
    """Network calls on the bucket; every failure of the store becomes StorageUnavailable."""

    def __init__(self, client: S3Client, bucket: str, *, hash_concurrency: int = 4) -> None:
        self._client = client
        self._bucket = bucket
        # Whole-object reads hold a worker thread and the network for as long as the object
        # takes to stream: this many at once per process, the rest wait their turn.
        self._hashing = asyncio.Semaphore(hash_concurrency)
        self._calls = {operation: metrics().storage_call(operation) for operation in OPERATIONS}

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
                etag=head.get("ETag"),
                foreign_headers=unsigned_headers(head),
            )

        return await self._run("head", call)

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

        return await self._run("read_head", call)

    async def delete(self, key: str) -> None:
        """Remove the object; removing an object that is not there is not an error."""
        await self._run("delete", lambda: self._client.delete_object(Bucket=self._bucket, Key=key))

    async def create_multipart_upload(self, key: str, content_type: str) -> str:
        """Start a multipart upload whose object will have this type; its upload id."""

        def call() -> str:
            started = self._client.create_multipart_upload(
                Bucket=self._bucket, Key=key, ContentType=content_type
            )
            return started["UploadId"]

        return await self._run("create_multipart_upload", call)

    async def list_parts(self, key: str, upload_id: str) -> list[StoredPart] | None:
        """Every part the store holds for the upload (all pages); None if the upload is gone."""

        def call() -> list[StoredPart] | None:
            parts: list[StoredPart] = []
            marker = 0
            while True:
                try:
                    page = self._client.list_parts(
                        Bucket=self._bucket, Key=key, UploadId=upload_id, PartNumberMarker=marker
                    )
                except ClientError as exc:
                    if _error_code(exc) in _MISSING_CODES | {"NoSuchUpload"}:
                        return None
                    raise
                for part in page.get("Parts", []):
                    parts.append(StoredPart(part["PartNumber"], part["Size"], part["ETag"]))
                if not page.get("IsTruncated"):
                    return parts
                marker = int(page["NextPartNumberMarker"])

        return await self._run("list_parts", call)

    async def complete_multipart_upload(
        self, key: str, upload_id: str, parts: list[StoredPart]
    ) -> bool:
        """Assemble the object from these parts; False if the upload no longer exists."""

        def call() -> bool:
            try:
                self._client.complete_multipart_upload(
                    Bucket=self._bucket,
                    Key=key,
                    UploadId=upload_id,
                    MultipartUpload={
                        "Parts": [{"PartNumber": p.number, "ETag": p.etag} for p in parts]
                    },
                )
            except ClientError as exc:
                if _error_code(exc) in _MISSING_CODES | {"NoSuchUpload"}:
                    return False
                raise
            return True

        return await self._run("complete_multipart_upload", call)

    async def abort_multipart_upload(self, key: str, upload_id: str) -> None:
        """Drop the upload and its parts; an upload that is already gone is not an error."""

        def call() -> None:
            try:
                self._client.abort_multipart_upload(
                    Bucket=self._bucket, Key=key, UploadId=upload_id
                )
            except ClientError as exc:
                if _error_code(exc) not in _MISSING_CODES | {"NoSuchUpload"}:
                    raise

        await self._run("abort_multipart_upload", call)

    async def sha256(self, key: str) -> str | None:
        """Base64 SHA-256 of the stored bytes, read through once (multipart objects, whose
        store-side checksum is a checksum of part checksums); None if the object is gone."""

        def call() -> str | None:
            try:
                response = self._client.get_object(Bucket=self._bucket, Key=key)
            except ClientError as exc:
                if _error_code(exc) in _MISSING_CODES:
                    return None
                raise
            digest = hashlib.sha256()
            with response["Body"] as body:
                for chunk in iter(lambda: body.read(1024 * 1024), b""):
                    digest.update(chunk)
            return base64.b64encode(digest.digest()).decode()

        async with self._hashing:
            return await self._run("sha256", call)

    @contextlib.asynccontextmanager
    async def stream(
        self, key: str, chunk_bytes: int = 1024 * 1024
    ) -> AsyncIterator[AsyncIterator[bytes] | None]:
        """The object's bytes as they arrive from the store, chunk by chunk (each read in a
        worker thread), for a consumer that must not hold the whole object (the scanner);
        None if the object is not there. The body is closed when the block ends."""
        async with self._hashing:

            def open_body() -> Any:
                try:
                    return self._client.get_object(Bucket=self._bucket, Key=key)["Body"]
                except ClientError as exc:
                    if _error_code(exc) in _MISSING_CODES:
                        return None
                    raise

            body = await self._run("stream", open_body)
            if body is None:
                yield None
                return

            async def chunks() -> AsyncIterator[bytes]:
                while chunk := await self._run("stream", lambda: body.read(chunk_bytes)):
                    yield chunk

            try:
                yield chunks()
            finally:
                await anyio.to_thread.run_sync(body.close)

    async def copy(self, source: str, target: str, *, if_match: str, content_type: str) -> bool:
        """Copy the object at `source` to `target` with only this Content-Type (no other
        header or metadata); False if `source` is gone or no longer has ETag `if_match`."""

        def call() -> bool:
            try:
                self._client.copy_object(
                    Bucket=self._bucket,
                    Key=target,
                    CopySource={"Bucket": self._bucket, "Key": source},
                    CopySourceIfMatch=if_match,
                    MetadataDirective="REPLACE",
                    ContentType=content_type,
                )
            except ClientError as exc:
                if _error_code(exc) in _MISSING_CODES | {"PreconditionFailed", "412"}:
                    return False
                raise
            return True

        return await self._run("copy", call)

    async def _run(self, operation: str, call: Callable[[], T]) -> T:
        calls = self._calls[operation]
        started = perf_counter()
        try:
            return await anyio.to_thread.run_sync(call)
        except ClientError as exc:
            calls.errors.inc()
            # The error code says what failed; the message could quote request details.
            log.warning("s3 %s failed: %s", operation, _error_code(exc) or "ClientError")
            raise StorageUnavailable() from None
        except BotoCoreError as exc:
            calls.errors.inc()
            log.warning("s3 %s failed: %s", operation, type(exc).__name__)
            raise StorageUnavailable() from None
        finally:
            calls.duration.observe(perf_counter() - started)


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
            # s3gate's own clients never read it (completion lists the stored parts), but
            # browser widgets that send parts themselves (Uppy's S3 plugin) fail without it.
            "ExposeHeaders": ["ETag"],
            "MaxAgeSeconds": 3000,
        }
        client.put_bucket_cors(Bucket=bucket, CORSConfiguration={"CORSRules": [rule]})
