"""Pure decisions of the use cases: object keys, request fingerprints, type allow-list, cursors,
the completion verdict."""

from __future__ import annotations

import base64
import dataclasses
import re
import uuid
from datetime import UTC, datetime

import pytest
import uuid6

from app.errors import ValidationFailed
from app.ledger import FileRecord
from app.mediatypes import allowed as content_type_allowed
from app.schemas import CreateUploadRequest
from app.storage import ObjectInfo, unsigned_headers
from app.usecases.plans import (
    decode_cursor,
    encode_cursor,
    object_key,
    request_fingerprint,
    staging_key,
)
from app.usecases.verdict import checksum_mismatch, declaration_mismatch

CHECKSUM = "n4bQgYhMfWWaL+qgxVrQFaO/TxsrC4Is0V1sFbDwCgg="
OTHER_CHECKSUM = base64.b64encode(bytes(range(32))).decode()
FILE_ID = uuid.UUID("0b6f1c1e-8a34-4c8e-9a51-2f0d3e0a9c11")


# --- object_key ----------------------------------------------------------------------------------


def test_object_key_is_prefix_owner_hash_and_file_id() -> None:
    key = object_key("uploads/", "alice", FILE_ID)
    assert re.fullmatch(rf"uploads/[0-9a-f]{{32}}/{FILE_ID}", key), key


def test_object_key_contains_no_part_of_the_owner() -> None:
    key = object_key("uploads/", "alice/../x", FILE_ID)
    assert key.startswith("uploads/")
    assert str(FILE_ID) in key
    assert ".." not in key
    assert "alice" not in key
    assert key.count("/") == 2


@pytest.mark.parametrize("owner", ["", "a" * 255, "évé", "a b\r\nc", "%2e%2e", "\u202egpj.exe"])
def test_object_key_is_plain_ascii_for_any_owner(owner: str) -> None:
    key = object_key("", owner, FILE_ID)
    assert re.fullmatch(r"[0-9a-f]{32}/[0-9a-f-]{36}", key), key


def test_object_key_differs_per_owner() -> None:
    assert object_key("uploads/", "alice", FILE_ID) != object_key("uploads/", "bob", FILE_ID)


def test_object_key_differs_per_file() -> None:
    other = uuid.UUID("0b6f1c1e-8a34-4c8e-9a51-2f0d3e0a9c12")
    assert object_key("uploads/", "alice", FILE_ID) != object_key("uploads/", "alice", other)


def test_one_owners_objects_share_one_prefix() -> None:
    # Everything an owner stores lies under one prefix (what a per-owner listing or policy
    # scopes to), and another owner's prefix is another.
    other = uuid.UUID("0b6f1c1e-8a34-4c8e-9a51-2f0d3e0a9c12")
    first = object_key("uploads/", "alice", FILE_ID).rsplit("/", 1)[0]
    assert object_key("uploads/", "alice", other).rsplit("/", 1)[0] == first
    assert object_key("uploads/", "bob", FILE_ID).rsplit("/", 1)[0] != first


def test_object_key_uses_the_configured_prefix() -> None:
    assert object_key("t/1/", "alice", FILE_ID) == "t/1/" + object_key("", "alice", FILE_ID)


# --- request_fingerprint -------------------------------------------------------------------------


def request(**changes: object) -> CreateUploadRequest:
    body: dict[str, object] = {
        "filename": "report.pdf",
        "content_type": "application/pdf",
        "size": 1234,
        "checksum_sha256": CHECKSUM,
    }
    body.update(changes)
    return CreateUploadRequest.model_validate(body)


def test_fingerprint_is_equal_for_the_same_body_sent_another_way() -> None:
    # A client that replays its Idempotency-Key may serialise the same body differently.
    sent = CreateUploadRequest.model_validate_json(
        '{"filename": "report.pdf", "content_type": "application/pdf", "size": 1234, '
        f'"checksum_sha256": "{CHECKSUM}"}}'
    )
    resent = CreateUploadRequest.model_validate_json(
        f'{{"checksum_sha256":"{CHECKSUM}","size":1234,"content_type":"application/pdf",'
        '"filename":"report.pdf"}'
    )
    assert request_fingerprint(sent) == request_fingerprint(resent)


def test_fingerprint_is_equal_for_bodies_equal_after_normalisation() -> None:
    nfd = request(filename="Re\u0301sume\u0301.pdf", content_type="Application/PDF")
    nfc = request(filename="Résumé.pdf", content_type="application/pdf")
    assert request_fingerprint(nfd) == request_fingerprint(nfc)


@pytest.mark.parametrize(
    "change",
    [
        {"filename": "report2.pdf"},
        {"content_type": "application/octet-stream"},
        {"size": 1235},
        {"checksum_sha256": OTHER_CHECKSUM},
        {"checksum_sha256": None},
    ],
)
def test_fingerprint_differs_when_any_field_differs(change: dict[str, object]) -> None:
    assert request_fingerprint(request(**change)) != request_fingerprint(request())


def test_fingerprint_is_a_sha256_hex_digest() -> None:
    assert re.fullmatch(r"[0-9a-f]{64}", request_fingerprint(request()))


# --- content_type_allowed ------------------------------------------------------------------------


def test_wildcard_allows_any_type() -> None:
    assert content_type_allowed("application/x-anything", ["*/*"])


def test_major_wildcard_allows_that_major_type_only() -> None:
    assert content_type_allowed("image/png", ["image/*"])
    assert content_type_allowed("image/svg+xml", ["image/*"])
    assert not content_type_allowed("application/pdf", ["image/*"])
    assert not content_type_allowed("imagex/png", ["image/*"])


def test_exact_pattern_allows_that_type_only() -> None:
    assert content_type_allowed("application/pdf", ["image/*", "application/pdf"])
    assert not content_type_allowed("application/pdfx", ["application/pdf"])
    assert not content_type_allowed("application/json", ["application/pdf"])
    assert not content_type_allowed("text/pdf", ["application/pdf"])


def test_nothing_is_allowed_by_an_empty_list() -> None:
    assert not content_type_allowed("image/png", [])


# --- cursors -------------------------------------------------------------------------------------


@pytest.mark.parametrize("file_id", [FILE_ID, uuid6.uuid7(), uuid.UUID(int=0)])
def test_cursor_round_trips(file_id: uuid.UUID) -> None:
    cursor = encode_cursor(file_id)
    assert re.fullmatch(r"[A-Za-z0-9_-]+", cursor), cursor
    assert decode_cursor(cursor) == file_id


def test_cursors_differ_per_file() -> None:
    assert encode_cursor(FILE_ID) != encode_cursor(uuid.UUID(int=FILE_ID.int + 1))


@pytest.mark.parametrize(
    "cursor",
    [
        "!!!",
        "",
        base64.urlsafe_b64encode(b"abc").decode(),
        base64.urlsafe_b64encode(bytes(17)).decode(),
        "é" * 22,
        "a",
    ],
)
def test_invalid_cursor_is_a_validation_failure(cursor: str) -> None:
    with pytest.raises(ValidationFailed) as info:
        decode_cursor(cursor)
    assert info.value.status == 422
    assert info.value.errors == [{"loc": ["query", "cursor"], "msg": "invalid cursor"}]
    assert info.value.__cause__ is None


def test_headers_an_uploader_can_add_unsigned_are_named_from_a_head_answer() -> None:
    head = {
        "ContentLength": 5,
        "ContentType": "text/plain",
        "ContentEncoding": "gzip",
        "CacheControl": "public",
        "ContentDisposition": "inline",
        "ContentLanguage": "de",
        "ExpiresString": "Wed, 21 Oct 2037 07:28:00 GMT",
        "Expires": "2037-10-21T07:28:00Z",
        "WebsiteRedirectLocation": "https://example.com/",
        "Metadata": {"b": "2", "a": "1"},
    }
    assert unsigned_headers(head) == (
        "Content-Encoding",
        "Cache-Control",
        "Content-Disposition",
        "Content-Language",
        "Expires",
        "x-amz-website-redirect-location",
        "x-amz-meta-a",
        "x-amz-meta-b",
    )
    assert unsigned_headers({"ContentLength": 5, "ContentType": "text/plain", "Metadata": {}}) == ()


def _record(**values: object) -> FileRecord:
    now = datetime(2026, 12, 2, tzinfo=UTC)
    base = FileRecord(
        id=FILE_ID,
        owner_id="alice",
        object_key="uploads/k",
        filename="a.pdf",
        content_type="application/pdf",
        size=10,
        checksum_sha256=CHECKSUM,
        status="pending",
        idempotency_key=None,
        request_hash=None,
        created_at=now,
        upload_expires_at=now,
        completed_at=None,
        deleted_at=None,
        purged_at=None,
        upload_method="put",
        multipart_upload_id=None,
        part_size=None,
        upload_key=None,
        verify_lease_until=None,
    )
    return dataclasses.replace(base, **values)  # type: ignore[arg-type]


@pytest.mark.parametrize(
    ("info", "code", "detail"),
    [
        (ObjectInfo(10, "application/pdf", CHECKSUM), None, None),
        (ObjectInfo(10, "Application/PDF; charset=x", CHECKSUM), None, None),
        (ObjectInfo(11, "application/pdf", CHECKSUM), "size_mismatch", "stored size 11 differs"),
        (
            ObjectInfo(10, "text/html", CHECKSUM),
            "content_type_mismatch",
            "stored content type differs",
        ),
        (ObjectInfo(10, None, CHECKSUM), "content_type_mismatch", "stored content type differs"),
        (
            ObjectInfo(10, "application/pdf", CHECKSUM, foreign_headers=("Cache-Control",)),
            "unsigned_headers",
            "headers s3gate did not sign: Cache-Control",
        ),
    ],
)
def test_the_declaration_verdict_names_what_the_stored_object_breaks(
    info: ObjectInfo, code: str | None, detail: str | None
) -> None:
    verdict = declaration_mismatch(_record(), info)
    if code is None:
        assert verdict is None
    else:
        assert verdict is not None
        assert verdict.code == code
        assert detail in verdict.detail


def test_the_checksum_verdict_needs_the_declared_digest_proved() -> None:
    assert checksum_mismatch(None, None) is None
    assert checksum_mismatch(CHECKSUM, CHECKSUM) is None
    missing = checksum_mismatch(CHECKSUM, None)
    assert missing is not None
    assert missing.code == "checksum_unavailable"
    assert "holds no SHA-256" in missing.detail
    wrong = checksum_mismatch(CHECKSUM, OTHER_CHECKSUM)
    assert wrong is not None
    assert wrong.code == "checksum_mismatch"
    assert "differs" in wrong.detail


def test_a_form_uploads_key_is_its_files_key_with_a_suffix_no_other_key_has() -> None:
    key = object_key("uploads/", "alice", FILE_ID)
    assert staging_key(key) == f"{key}.upload"
    assert staging_key(key) != object_key("uploads/", "alice", uuid6.uuid7())


@pytest.mark.parametrize("value", ["no-cache", "max-age=0", " No-Cache "])
def test_the_cache_control_a_browser_adds_to_a_put_by_itself_is_not_foreign(value: str) -> None:
    assert unsigned_headers({"CacheControl": value}) == ()
    assert unsigned_headers({"CacheControl": f"{value}, public"}) == ("Cache-Control",)
