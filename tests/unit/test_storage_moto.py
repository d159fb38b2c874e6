"""Storage's own logic against moto's in-process S3: how answers and failures are mapped.

moto checks no signatures and enforces no conditions; nothing here says anything about what a
presigned URL allows. Only the mapping done by app.storage is under test.
"""

from __future__ import annotations

import asyncio
import base64
import hashlib
import io
import threading
import time
from collections.abc import Iterator
from typing import Any, cast

import boto3
import pytest
from botocore.config import Config
from botocore.credentials import Credentials
from botocore.exceptions import ClientError
from moto import mock_aws

from app.errors import StorageUnavailable
from app.signer import Signer
from app.storage import ObjectInfo, Storage, ensure_bucket

BUCKET = "s3gate-moto"
DATA = b"\x89PNG\r\n\x1a\n" + bytes(range(200))


@pytest.fixture
def s3() -> Iterator[Any]:
    with mock_aws():
        yield boto3.client(
            "s3", region_name="us-east-1", aws_access_key_id="a", aws_secret_access_key="b"
        )


@pytest.fixture
def storage(s3: Any) -> Storage:
    s3.create_bucket(Bucket=BUCKET)
    return Storage(s3, BUCKET)


def sha256_b64(data: bytes) -> str:
    return base64.b64encode(hashlib.sha256(data).digest()).decode()


# --- head ----------------------------------------------------------------------------------------


async def test_head_of_missing_object_is_none(storage: Storage) -> None:
    assert await storage.head("uploads/nothing-here") is None


async def test_head_reports_size_and_content_type(storage: Storage, s3: Any) -> None:
    put = s3.put_object(Bucket=BUCKET, Key="k", Body=DATA, ContentType="image/png")
    info = await storage.head("k")
    assert info == ObjectInfo(
        size=len(DATA), content_type="image/png", checksum_sha256=None, etag=put["ETag"]
    )


async def test_head_reports_the_stored_sha256(storage: Storage, s3: Any) -> None:
    checksum = sha256_b64(DATA)
    # moto stores a checksum only when the algorithm is named too.
    put = s3.put_object(
        Bucket=BUCKET,
        Key="k",
        Body=DATA,
        ContentType="image/png",
        ChecksumAlgorithm="SHA256",
        ChecksumSHA256=checksum,
    )
    assert s3.head_object(Bucket=BUCKET, Key="k", ChecksumMode="ENABLED")["ChecksumSHA256"]
    info = await storage.head("k")
    assert info == ObjectInfo(
        size=len(DATA), content_type="image/png", checksum_sha256=checksum, etag=put["ETag"]
    )


async def test_whole_object_reads_wait_for_the_process_wide_hashing_limit() -> None:
    running = peak = 0
    lock = threading.Lock()
    release = threading.Event()

    class SlowBody(io.BytesIO):
        def read(self, size: int | None = -1) -> bytes:
            nonlocal running, peak
            with lock:
                running += 1
                peak = max(peak, running)
            release.wait(5)
            with lock:
                running -= 1
            return b""

    class Client:
        def get_object(self, **_: Any) -> dict[str, Any]:
            return {"Body": SlowBody()}

    storage = Storage(cast(Any, Client()), BUCKET, hash_concurrency=2)
    reads = [asyncio.create_task(storage.sha256(f"k{i}")) for i in range(6)]
    await asyncio.sleep(0.3)
    assert peak == 2  # the other four wait without holding a worker thread
    release.set()
    assert len(await asyncio.gather(*reads)) == 6
    assert peak == 2


async def test_head_in_a_missing_bucket_is_storage_unavailable(s3: Any) -> None:
    # moto names the error (NoSuchBucket); only a missing *object* may read as "not there".
    with pytest.raises(StorageUnavailable):
        await Storage(s3, "no-such-bucket").head("k")


# --- read_head -----------------------------------------------------------------------------------


async def test_read_head_returns_the_first_bytes(storage: Storage, s3: Any) -> None:
    s3.put_object(Bucket=BUCKET, Key="k", Body=DATA)
    assert await storage.read_head("k", 8) == DATA[:8]


async def test_read_head_longer_than_the_object_returns_all_of_it(
    storage: Storage, s3: Any
) -> None:
    s3.put_object(Bucket=BUCKET, Key="k", Body=b"tiny")
    assert await storage.read_head("k", 64) == b"tiny"


async def test_read_head_of_missing_object_is_none(storage: Storage) -> None:
    assert await storage.read_head("nothing-here", 8) is None


async def test_read_head_in_a_missing_bucket_is_storage_unavailable(s3: Any) -> None:
    with pytest.raises(StorageUnavailable):
        await Storage(s3, "no-such-bucket").read_head("k", 8)


# --- delete --------------------------------------------------------------------------------------


async def test_delete_removes_the_object(storage: Storage, s3: Any) -> None:
    s3.put_object(Bucket=BUCKET, Key="k", Body=DATA)
    await storage.delete("k")
    assert await storage.head("k") is None


async def test_delete_of_missing_object_does_not_raise(storage: Storage) -> None:
    await storage.delete("nothing-here")
    assert await storage.head("nothing-here") is None


async def test_delete_in_a_missing_bucket_is_storage_unavailable(s3: Any) -> None:
    with pytest.raises(StorageUnavailable):
        await Storage(s3, "no-such-bucket").delete("k")


# --- unreachable store ---------------------------------------------------------------------------


async def test_unreachable_store_is_storage_unavailable_quickly() -> None:
    client = boto3.client(
        "s3",
        endpoint_url="http://127.0.0.1:9",
        region_name="us-east-1",
        aws_access_key_id="a",
        aws_secret_access_key="b",
        config=Config(connect_timeout=0.5, read_timeout=0.5, retries={"total_max_attempts": 1}),
    )
    storage = Storage(client, BUCKET)
    started = time.monotonic()
    with pytest.raises(StorageUnavailable) as info:
        await storage.head("uploads/k")
    assert time.monotonic() - started < 3
    assert info.value.status == 503
    assert info.value.code == "storage_unavailable"
    text = str(info.value)
    assert "http" not in text
    assert "127.0.0.1" not in text
    assert info.value.__cause__ is None
    assert info.value.__suppress_context__


# --- ensure_bucket -------------------------------------------------------------------------------


def _signed_put_headers() -> set[str]:
    client = boto3.client(
        "s3",
        endpoint_url="http://127.0.0.1:9",
        region_name="us-east-1",
        aws_access_key_id="a",
        aws_secret_access_key="b",
        config=Config(signature_version="s3v4", s3={"addressing_style": "path"}),
    )
    upload = Signer(client, Credentials("a", "b"), BUCKET).presign_put(
        "k",
        content_type="image/png",
        content_length=1,
        checksum_sha256=sha256_b64(b"x"),
        ttl_seconds=60,
    )
    return {name.lower() for name in upload.headers}


def test_ensure_bucket_creates_a_missing_bucket(s3: Any) -> None:
    with pytest.raises(ClientError):
        s3.head_bucket(Bucket="fresh-bucket")
    ensure_bucket(s3, "fresh-bucket", [])
    s3.head_bucket(Bucket="fresh-bucket")


def test_ensure_bucket_sets_cors_for_the_signed_headers(s3: Any) -> None:
    ensure_bucket(s3, "fresh-bucket", ["https://app.example", "http://localhost:3000"])
    (rule,) = s3.get_bucket_cors(Bucket="fresh-bucket")["CORSRules"]
    assert rule["AllowedOrigins"] == ["https://app.example", "http://localhost:3000"]
    assert {"PUT", "GET"} <= set(rule["AllowedMethods"])
    assert "ETag" in rule["ExposeHeaders"]
    allowed = {h.lower() for h in rule["AllowedHeaders"]}
    signed = _signed_put_headers()
    assert signed == {"content-type", "if-none-match", "x-amz-checksum-sha256"}
    assert signed <= allowed


def test_ensure_bucket_without_origins_sets_no_cors(s3: Any) -> None:
    ensure_bucket(s3, "fresh-bucket", [])
    with pytest.raises(ClientError) as info:
        s3.get_bucket_cors(Bucket="fresh-bucket")
    assert info.value.response["Error"]["Code"] == "NoSuchCORSConfiguration"


def test_ensure_bucket_is_idempotent_and_keeps_objects(s3: Any) -> None:
    ensure_bucket(s3, "fresh-bucket", ["https://app.example"])
    s3.put_object(Bucket="fresh-bucket", Key="kept", Body=b"data")
    first = s3.get_bucket_cors(Bucket="fresh-bucket")["CORSRules"]
    ensure_bucket(s3, "fresh-bucket", ["https://app.example"])
    assert s3.get_bucket_cors(Bucket="fresh-bucket")["CORSRules"] == first
    assert s3.get_object(Bucket="fresh-bucket", Key="kept")["Body"].read() == b"data"
    assert [b["Name"] for b in s3.list_buckets()["Buckets"]] == ["fresh-bucket"]
