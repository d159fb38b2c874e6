"""Request validation (CreateUploadRequest) and response serialisation (FileOut)."""

from __future__ import annotations

import base64
import hashlib
import json
import uuid
from datetime import UTC, datetime, timedelta, timezone
from typing import Any

import pytest
from pydantic import ValidationError

from app.schemas import CreateUploadRequest, FileOut

DIGEST = hashlib.sha256(b"s3gate").digest()
CHECKSUM = base64.b64encode(DIGEST).decode()


def body(**changes: Any) -> dict[str, Any]:
    value: dict[str, Any] = {
        "filename": "report.pdf",
        "content_type": "application/pdf",
        "size": 48213,
        "checksum_sha256": CHECKSUM,
    }
    value.update(changes)
    return value


def error_locs(exc: ValidationError) -> list[tuple[Any, ...]]:
    return [tuple(error["loc"]) for error in exc.errors()]


def test_valid_request_is_accepted() -> None:
    request = CreateUploadRequest.model_validate(body())
    assert request.model_dump() == {**body(), "form": False, "multipart": False, "part_size": None}


def test_checksum_is_optional() -> None:
    request = CreateUploadRequest.model_validate(body(checksum_sha256=None))
    assert request.checksum_sha256 is None
    fields = body()
    del fields["checksum_sha256"]
    assert CreateUploadRequest.model_validate(fields).checksum_sha256 is None


def test_unknown_field_is_rejected() -> None:
    with pytest.raises(ValidationError) as info:
        CreateUploadRequest.model_validate(body(parts=3))
    assert info.value.errors()[0]["type"] == "extra_forbidden"
    assert error_locs(info.value) == [("parts",)]


@pytest.mark.parametrize("field", ["filename", "content_type", "size"])
def test_required_fields_are_required(field: str) -> None:
    fields = body()
    del fields[field]
    with pytest.raises(ValidationError) as info:
        CreateUploadRequest.model_validate(fields)
    assert error_locs(info.value) == [(field,)]


# --- size ----------------------------------------------------------------------------------------


@pytest.mark.parametrize("size", ["10", 10.5, 10.0, True, 0, -1, None])
def test_size_must_be_a_strict_positive_int(size: Any) -> None:
    with pytest.raises(ValidationError) as info:
        CreateUploadRequest.model_validate(body(size=size))
    assert error_locs(info.value) == [("size",)]


@pytest.mark.parametrize("raw", ['"10"', "10.5", "true", "0", "-1"])
def test_size_must_be_a_strict_positive_int_in_json(raw: str) -> None:
    text = json.dumps(body(size=0)).replace('"size": 0', f'"size": {raw}')
    with pytest.raises(ValidationError) as info:
        CreateUploadRequest.model_validate_json(text)
    assert error_locs(info.value) == [("size",)]


@pytest.mark.parametrize("size", [1, 5 * 1024**3, 10**15])
def test_positive_int_size_is_accepted(size: int) -> None:
    assert CreateUploadRequest.model_validate(body(size=size)).size == size


# --- content_type --------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("given", "expected"),
    [
        ("Image/PNG", "image/png"),
        ("  application/pdf ", "application/pdf"),
        ("application/vnd.openxmlformats-officedocument.wordprocessingml.document",) * 2,
        ("image/svg+xml", "image/svg+xml"),
    ],
)
def test_content_type_is_normalised(given: str, expected: str) -> None:
    assert CreateUploadRequest.model_validate(body(content_type=given)).content_type == expected


@pytest.mark.parametrize(
    "content_type", ["text/plain; charset=utf-8", "text/plain;", "image/png;q=1"]
)
def test_content_type_with_parameters_is_refused(content_type: str) -> None:
    with pytest.raises(ValidationError, match="parameters") as info:
        CreateUploadRequest.model_validate(body(content_type=content_type))
    assert error_locs(info.value) == [("content_type",)]


@pytest.mark.parametrize(
    "content_type",
    ["text", "text/", "/plain", "text/plain/x", "*/*", "image/*", "te xt/plain", "", "tëxt/plain"],
)
def test_malformed_content_type_is_refused(content_type: str) -> None:
    with pytest.raises(ValidationError) as info:
        CreateUploadRequest.model_validate(body(content_type=content_type))
    assert error_locs(info.value) == [("content_type",)]


def test_overlong_content_type_is_refused() -> None:
    with pytest.raises(ValidationError):
        CreateUploadRequest.model_validate(body(content_type="a/" + "b" * 254))


# --- checksum_sha256 -----------------------------------------------------------------------------


def _non_canonical(checksum: str) -> str:
    # 32 bytes -> 43 chars + "="; the 43rd char carries two unused bits. Setting one keeps
    # the decoded bytes the same but makes the text non-canonical.
    alphabet = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/"
    last = alphabet.index(checksum[42])
    return checksum[:42] + alphabet[last | 1] + "="


@pytest.mark.parametrize(
    "checksum",
    [
        base64.b64encode(DIGEST[:31]).decode(),  # 31 bytes
        base64.b64encode(DIGEST + b"\0").decode(),  # 33 bytes
        "not base64 at all!",
        CHECKSUM.rstrip("="),  # padding missing
        CHECKSUM + "\n",
        " " + CHECKSUM,
        DIGEST.hex(),  # hex, not base64
        "",
    ],
)
def test_checksum_that_is_not_base64_of_32_bytes_is_refused(checksum: str) -> None:
    with pytest.raises(ValidationError) as info:
        CreateUploadRequest.model_validate(body(checksum_sha256=checksum))
    assert error_locs(info.value) == [("checksum_sha256",)]


def test_non_canonical_checksum_is_refused() -> None:
    odd = _non_canonical(CHECKSUM)
    assert odd != CHECKSUM
    assert base64.b64decode(odd) == DIGEST
    with pytest.raises(ValidationError, match="canonical"):
        CreateUploadRequest.model_validate(body(checksum_sha256=odd))


def test_urlsafe_base64_checksum_is_refused() -> None:
    digest = bytes([0xFB, 0xFF] * 16)  # encodes to '+' and '/' characters
    standard = base64.b64encode(digest).decode()
    assert "+" in standard or "/" in standard
    assert CreateUploadRequest.model_validate(body(checksum_sha256=standard))
    with pytest.raises(ValidationError):
        CreateUploadRequest.model_validate(
            body(checksum_sha256=base64.urlsafe_b64encode(digest).decode())
        )


# --- filename ------------------------------------------------------------------------------------


def test_filename_is_nfc_normalised() -> None:
    request = CreateUploadRequest.model_validate(body(filename="Re\u0301sume\u0301 2026.pdf"))
    assert request.filename == "R\u00e9sum\u00e9 2026.pdf"


@pytest.mark.parametrize(
    "filename",
    [
        "",
        "a/b.txt",
        "a\\b.txt",
        ".",
        "..",
        "   ",
        "a\x00b",
        "a\r\nb",
        "\u202egpj.exe",
        "a\u200bb",
        "a\u2028b",
        "x" * 256,
        "é" * 128,  # 256 bytes of UTF-8
        "a\ud800b",
    ],
)
def test_bad_filename_is_refused(filename: str) -> None:
    with pytest.raises(ValidationError) as info:
        CreateUploadRequest.model_validate(body(filename=filename))
    assert error_locs(info.value) == [("filename",)]


def test_filename_of_255_utf8_bytes_is_accepted() -> None:
    name = "é" * 127 + "a"
    assert CreateUploadRequest.model_validate(body(filename=name)).filename == name


def test_filename_error_does_not_quote_the_filename() -> None:
    name = "evil-\x1b[31m-name/x"
    with pytest.raises(ValidationError) as info:
        CreateUploadRequest.model_validate(body(filename=name))
    assert "evil-" not in info.value.errors()[0]["msg"]


@pytest.mark.parametrize("escaped", ["\\ud800", "a\\udc00b.txt", "\\udfff\\ud800"])
def test_lone_surrogate_in_json_is_a_validation_error(escaped: str) -> None:
    text = json.dumps(body(filename="PLACEHOLDER")).replace("PLACEHOLDER", escaped)
    with pytest.raises(ValidationError):
        CreateUploadRequest.model_validate_json(text)


def test_lone_surrogate_from_a_python_json_parser_is_a_validation_error() -> None:
    # FastAPI parses bodies with json.loads, which keeps lone surrogates in the str.
    data = json.loads(json.dumps(body(filename="PLACEHOLDER")).replace("PLACEHOLDER", "\\ud800"))
    assert data["filename"] == "\ud800"
    with pytest.raises(ValidationError) as info:
        CreateUploadRequest.model_validate(data)
    assert error_locs(info.value) == [("filename",)]


def test_surrogate_pair_in_json_is_a_valid_character() -> None:
    text = json.dumps(body(filename="PLACEHOLDER")).replace("PLACEHOLDER", "\\ud83d\\ude00.png")
    assert CreateUploadRequest.model_validate_json(text).filename == "\U0001f600.png"


# --- FileOut -------------------------------------------------------------------------------------


def file_out(**changes: Any) -> FileOut:
    fields: dict[str, Any] = {
        "id": uuid.UUID("0b6f1c1e-8a34-4c8e-9a51-2f0d3e0a9c11"),
        "filename": "report.pdf",
        "content_type": "application/pdf",
        "size": 48213,
        "checksum_sha256": None,
        "status": "pending",
        "created_at": datetime(2026, 11, 22, 21, 0, 0, 123456, tzinfo=UTC),
        "completed_at": None,
        "upload_expires_at": datetime(2026, 11, 22, 21, 15, tzinfo=UTC),
    }
    fields.update(changes)
    return FileOut.model_validate(fields)


def test_file_out_timestamps_are_utc_seconds_with_z() -> None:
    dumped = file_out().model_dump(mode="json")
    assert dumped["created_at"] == "2026-11-22T21:00:00Z"
    assert dumped["upload_expires_at"] == "2026-11-22T21:15:00Z"
    assert dumped["completed_at"] is None
    assert dumped["id"] == "0b6f1c1e-8a34-4c8e-9a51-2f0d3e0a9c11"


def test_file_out_converts_other_offsets_to_utc() -> None:
    plus_two = timezone(timedelta(hours=2))
    out = file_out(completed_at=datetime(2026, 11, 22, 23, 5, 9, tzinfo=plus_two))
    assert json.loads(out.model_dump_json())["completed_at"] == "2026-11-22T21:05:09Z"


def test_file_out_refuses_unknown_status() -> None:
    with pytest.raises(ValidationError):
        file_out(status="deleted")


def test_form_and_multipart_together_are_refused() -> None:
    with pytest.raises(ValidationError, match="at most one of form and multipart"):
        CreateUploadRequest.model_validate(body(form=True, multipart=True))


@pytest.mark.parametrize(
    "numbers", [[], [0], [10_001], [1, 1], ["1"], list(range(1, 1002))], ids=str
)
def test_bad_part_number_lists_are_refused(numbers: list[object]) -> None:
    from app.schemas import PartsRequest

    with pytest.raises(ValidationError):
        PartsRequest.model_validate({"part_numbers": numbers})
