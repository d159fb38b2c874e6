"""Pure helpers of the service: object keys, request fingerprints, type allow-list, cursors."""

from __future__ import annotations

import base64
import re
import uuid

import pytest
import uuid6

from app.errors import ValidationFailed
from app.schemas import CreateUploadRequest
from app.service import (
    content_type_allowed,
    decode_cursor,
    encode_cursor,
    object_key,
    request_fingerprint,
)

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


def test_object_key_is_stable() -> None:
    assert object_key("uploads/", "alice", FILE_ID) == object_key("uploads/", "alice", FILE_ID)


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


def test_fingerprint_is_equal_for_equal_bodies() -> None:
    assert request_fingerprint(request()) == request_fingerprint(request())


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
