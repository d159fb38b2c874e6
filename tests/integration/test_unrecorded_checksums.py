"""A store that keeps no SHA-256 (Ceph RGW records none) cannot vouch for a declared checksum:
completion then reads the object through and hashes it itself (issue 13, item 1). Simulated on
SeaweedFS by storing the bytes without a checksum, with the service's own credentials."""

from __future__ import annotations

import hashlib
import uuid

from app.devstack import EmbeddedS3
from app.usecases.plans import object_key
from tests.support import Api, new_sub, object_exists, sha256_b64

DATA = b"the bytes the owner declared\n"


async def _declared_upload(api: Api, sub: str) -> str:
    created = await api.created(
        sub,
        {
            "filename": "notes.txt",
            "content_type": "text/plain",
            "size": len(DATA),
            "checksum_sha256": sha256_b64(DATA),
        },
    )
    file_id: str = created["file"]["id"]
    return file_id


def _store_without_checksum(api: Api, s3: EmbeddedS3, sub: str, file_id: str, body: bytes) -> str:

    key = object_key(api.settings.s3_key_prefix, sub, uuid.UUID(file_id))
    s3.client().put_object(
        Bucket=api.settings.s3_bucket, Key=key, Body=body, ContentType="text/plain"
    )
    head = s3.client().head_object(Bucket=api.settings.s3_bucket, Key=key, ChecksumMode="ENABLED")
    assert "ChecksumSHA256" not in head  # the store vouches for nothing
    return key


async def test_the_right_bytes_without_a_stored_checksum_are_hashed_and_accepted(
    api: Api, s3_server: EmbeddedS3
) -> None:
    sub = new_sub()
    file_id = await _declared_upload(api, sub)
    _store_without_checksum(api, s3_server, sub, file_id, DATA)
    completed = await api.complete(sub, file_id)
    assert completed.status_code == 200, completed.text
    assert completed.json()["status"] == "available"


async def test_other_bytes_of_the_same_size_without_a_stored_checksum_are_rejected(
    api: Api, s3_server: EmbeddedS3
) -> None:
    sub = new_sub()
    file_id = await _declared_upload(api, sub)
    forged = DATA.replace(b"owner", b"thief")
    assert len(forged) == len(DATA)
    assert hashlib.sha256(forged).digest() != hashlib.sha256(DATA).digest()
    key = _store_without_checksum(api, s3_server, sub, file_id, forged)
    completed = await api.complete(sub, file_id)
    assert completed.status_code == 422, completed.text
    assert completed.json()["code"] == "upload_rejected"
    assert "SHA-256 differs" in completed.json()["detail"]
    assert not object_exists(s3_server, api.settings.s3_bucket, key)
