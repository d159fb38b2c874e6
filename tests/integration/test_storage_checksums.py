"""The storage client sends no checksum the store did not ask for (issue 13, item 5): botocore's
defaults add CRC32 headers, and validate CRCs on answers, that several S3-compatible stores
refuse or mishandle. Proven against SeaweedFS on every request of the request path."""

from __future__ import annotations

from typing import Any

from app.config import Settings
from app.lifespan import s3_clients
from app.storage import Storage, StoredPart
from tests.support import sha256_b64

PART = 5 * 1024 * 1024


async def test_no_request_of_the_storage_client_carries_a_checksum_header(
    settings: Settings,
) -> None:
    storage_client, signing_client, _ = s3_clients(settings)
    sent: list[tuple[str, list[str]]] = []

    def record(request: Any, **_: Any) -> None:
        checksum_headers = [
            name
            for name in request.headers
            # x-amz-checksum-mode is s3gate's own ask, on HEAD, for the SHA-256 the store kept.
            if (
                name.lower().startswith(("x-amz-checksum-", "x-amz-sdk-checksum", "content-md5"))
                and name.lower() != "x-amz-checksum-mode"
            )
            or name.lower() == "x-amz-trailer"
        ]
        sent.append((request.method, checksum_headers))

    storage_client.meta.events.register("before-send.s3", record)
    storage = Storage(storage_client, settings.s3_bucket)
    body = b"x" * (PART + 3)
    key = f"{settings.s3_key_prefix}checksums/object"
    try:
        # Objects put by a client (signing client: it is how bytes arrive), then every call the
        # request path makes on them through the storage client.
        signing_client.put_object(
            Bucket=settings.s3_bucket, Key=key, Body=body, ChecksumSHA256=sha256_b64(body)
        )
        assert await storage.head(key) is not None
        assert await storage.read_head(key, 16) == b"x" * 16
        assert await storage.sha256(key) == sha256_b64(body)
        info = await storage.head(key)
        assert info is not None
        assert info.etag
        assert await storage.copy(key, f"{key}.copy", if_match=info.etag, content_type="text/plain")
        await storage.delete(f"{key}.copy")

        upload_id = await storage.create_multipart_upload(f"{key}.mp", "text/plain")
        for number, chunk in ((1, body[:PART]), (2, body[PART:])):
            signing_client.upload_part(
                Bucket=settings.s3_bucket,
                Key=f"{key}.mp",
                UploadId=upload_id,
                PartNumber=number,
                Body=chunk,
            )
        parts = await storage.list_parts(f"{key}.mp", upload_id)
        assert parts is not None
        assert [p.number for p in parts] == [1, 2]
        assert await storage.complete_multipart_upload(
            f"{key}.mp", upload_id, [StoredPart(p.number, p.size, p.etag) for p in parts]
        )
        # A write by the storage client itself (what bucket setup's probe object is): botocore's
        # default would add a CRC32 here.
        storage_client.put_object(Bucket=settings.s3_bucket, Key=f"{key}.probe", Body=b"probe")
        await storage.delete(f"{key}.probe")
        spare = await storage.create_multipart_upload(f"{key}.spare", "text/plain")
        await storage.abort_multipart_upload(f"{key}.spare", spare)
        await storage.delete(f"{key}.mp")
        await storage.delete(key)
    finally:
        storage_client.close()
        signing_client.close()
    methods = {method for method, _ in sent}
    assert {"HEAD", "GET", "PUT", "POST", "DELETE"} <= methods
    assert [entry for entry in sent if entry[1]] == []
