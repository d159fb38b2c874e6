"""The API client: S3 refusals by code and message only (never S3's signature details), part
URLs in batches, and resuming a killed upload from its record."""

from __future__ import annotations

import json
import os
import stat
import uuid
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import httpx
import pytest
from httpx import MockTransport

import app.client
from app.client import PART_ATTEMPTS, ApiError, S3gateClient, _s3_refusal
from app.client_state import UploadRecords, default_state_dir

SIGNATURE_MISMATCH = (
    "<?xml version='1.0' encoding='UTF-8'?><Error><Code>SignatureDoesNotMatch</Code>"
    "<Message>The request signature we calculated does not match</Message>"
    "<AWSAccessKeyId>AKIDEXAMPLE</AWSAccessKeyId>"
    "<SignatureProvided>5d672d79c15b13162d9279b0855cfba6789a8edb4c82c400e06b5924a6f2b5d7"
    "</SignatureProvided><StringToSign>AWS4-HMAC-SHA256 ...</StringToSign></Error>"
)


def test_an_s3_refusal_names_the_code_and_hides_signature_details() -> None:
    error = _s3_refusal(httpx.Response(403, text=SIGNATURE_MISMATCH))
    text = str(error)
    assert error.code == "storage_refused:SignatureDoesNotMatch"
    assert "does not match" in text
    assert "5d672d79" not in text
    assert "AKIDEXAMPLE" not in text
    assert "StringToSign" not in text


def test_a_refusal_without_xml_still_has_a_code() -> None:
    error = _s3_refusal(httpx.Response(502, text="bad gateway"))
    assert error.code == "storage_refused:502"


class FakeS3gate:
    """Just enough of the API (with Idempotency-Key replays) and of a store, behind
    httpx.MockTransport: multipart plans of `part_count` parts of `part_size` bytes."""

    def __init__(self, part_size: int, *, url_ttl_seconds: int = 900) -> None:
        self.part_size, self.url_ttl = part_size, url_ttl_seconds
        self.files: dict[str, dict[str, Any]] = {}
        self.by_key: dict[str, str] = {}
        self.parts: dict[int, bytes] = {}
        self.keys_sent: list[str | None] = []
        self.part_url_calls: list[list[int]] = []
        self.puts: list[int] = []
        self.refuse_puts: list[int] = []  # part numbers whose next PUT S3 answers 403
        self.fail_puts_from: int | None = None  # parts from here on answer 500, every time
        # GET /uploads/settings, as published; None: a service without that route (404).
        self.settings: dict[str, Any] | None = {
            "max_file_size": 1 << 30,
            "allowed_content_types": ["*/*"],
            "max_part_numbers_per_request": 1000,
        }
        self.settings_calls = 0

    def client(self) -> S3gateClient:
        return S3gateClient(
            "http://s3gate.test", "token", http=httpx.Client(transport=MockTransport(self.handle))
        )

    def handle(self, request: httpx.Request) -> httpx.Response:
        path, method = request.url.path, request.method
        if request.url.host == "s3.test":
            return self._put_part(int(path.rsplit("/", 1)[1]), request)
        if (method, path) == ("POST", "/uploads"):
            return self._create(request)
        if (method, path) == ("GET", "/uploads/settings"):
            self.settings_calls += 1
            if self.settings is None:
                return problem(404, "not_found")
            return httpx.Response(200, json=self.settings)
        file_id = path.split("/")[2]
        file = self.files[file_id]
        if (method, path) == ("GET", f"/files/{file_id}"):
            return httpx.Response(200, json=file)
        if (method, path) == ("GET", f"/uploads/{file_id}/parts"):
            held = [{"part_number": n, "size": len(b)} for n, b in sorted(self.parts.items())]
            return httpx.Response(200, json={"parts": held})
        if (method, path) == ("POST", f"/uploads/{file_id}/parts"):
            numbers = json.loads(request.content)["part_numbers"]
            assert len(numbers) <= 1000  # the API's limit
            self.part_url_calls.append(numbers)
            expires = datetime.now(UTC) + timedelta(seconds=self.url_ttl)
            parts = [
                {
                    "part_number": n,
                    "url": f"http://s3.test/part/{n}",
                    "headers": {},
                    "expires_at": expires.isoformat().replace("+00:00", "Z"),
                }
                for n in numbers
            ]
            return httpx.Response(200, json={"parts": parts})
        assert (method, path) == ("POST", f"/uploads/{file_id}/complete")
        if len(b"".join(self.parts[n] for n in sorted(self.parts))) != file["size"]:
            return problem(409, "upload_incomplete")
        file["status"] = "available"
        return httpx.Response(200, json=file)

    def _create(self, request: httpx.Request) -> httpx.Response:
        key = request.headers.get("Idempotency-Key")
        self.keys_sent.append(key)
        body = json.loads(request.content)
        if key in self.by_key:
            file = self.files[self.by_key[key]]
            if file["status"] != "pending":
                return problem(409, "not_pending")
            status = 200
        else:
            file = {"id": str(uuid.uuid4()), "size": body["size"], "status": "pending"}
            self.files[file["id"]] = file
            if key:
                self.by_key[key] = file["id"]
            status = 201
        count = -(-body["size"] // self.part_size)
        plan = {"method": "MULTIPART", "part_size": self.part_size, "part_count": count}
        return httpx.Response(status, json={"file": file, "upload": plan})

    def _put_part(self, number: int, request: httpx.Request) -> httpx.Response:
        self.puts.append(number)
        if number in self.refuse_puts:
            self.refuse_puts.remove(number)
            return httpx.Response(403, text="<Error><Code>AccessDenied</Code></Error>")
        if self.fail_puts_from is not None and number >= self.fail_puts_from:
            return httpx.Response(500, text="<Error><Code>InternalError</Code></Error>")
        assert request.headers["Content-Length"] == str(len(request.content))
        self.parts[number] = request.content
        return httpx.Response(200)


def problem(status: int, code: str) -> httpx.Response:
    return httpx.Response(status, json={"status": status, "code": code, "detail": code})


@pytest.mark.parametrize(
    ("part_count", "calls"), [(1, [1]), (7, [7]), (100, [100]), (250, [100, 100, 50])]
)
def test_part_urls_are_asked_for_up_to_100_at_a_time(
    tmp_path: Path, part_count: int, calls: list[int]
) -> None:
    fake = FakeS3gate(part_size=4)
    source = tmp_path / "data.bin"
    source.write_bytes(os.urandom(4 * part_count - 1))
    assert fake.client().upload(source)["status"] == "available"
    assert [len(numbers) for numbers in fake.part_url_calls] == calls
    assert [n for call in fake.part_url_calls for n in call] == list(range(1, part_count + 1))
    assert b"".join(fake.parts[n] for n in sorted(fake.parts)) == source.read_bytes()


def test_part_url_batches_stay_within_what_the_service_publishes(tmp_path: Path) -> None:
    fake = FakeS3gate(part_size=4)
    assert fake.settings is not None
    fake.settings["max_part_numbers_per_request"] = 30
    source = tmp_path / "data.bin"
    source.write_bytes(os.urandom(4 * 70))
    client = fake.client()
    assert client.upload(source)["status"] == "available"
    assert [len(numbers) for numbers in fake.part_url_calls] == [30, 30, 10]
    assert client.upload(source)["status"] == "available"
    assert fake.settings_calls == 1  # asked once per client


@pytest.mark.parametrize(
    ("name", "size", "content_type", "status", "code"),
    [
        ("big.bin", 101, None, 413, "file_too_large"),
        ("notes.txt", 10, None, 415, "content_type_not_allowed"),
        ("photo.bin", 10, "Text/Plain; charset=utf-8", 415, "content_type_not_allowed"),
    ],
)
def test_what_the_published_settings_refuse_is_refused_before_the_file_is_read(
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    name: str,
    size: int,
    content_type: str | None,
    status: int,
    code: str,
) -> None:
    fake = FakeS3gate(part_size=4)
    fake.settings = {
        "max_file_size": 100,
        "allowed_content_types": ["image/*", "application/octet-stream"],
        "max_part_numbers_per_request": 1000,
    }
    source = tmp_path / name
    source.write_bytes(os.urandom(size))

    def never(path: Path) -> str:
        raise AssertionError(f"{path} was hashed before the refusal")

    monkeypatch.setattr(app.client, "_sha256_b64", never)
    with pytest.raises(ApiError) as refused:
        fake.client().upload(source, content_type=content_type)
    assert (refused.value.status, refused.value.code) == (status, code)
    assert fake.keys_sent == []  # nothing was declared


def test_a_service_that_publishes_no_settings_decides_at_create(tmp_path: Path) -> None:
    fake = FakeS3gate(part_size=4)
    fake.settings = None
    source = tmp_path / "data.bin"
    source.write_bytes(os.urandom(4 * 3))
    assert fake.client().upload(source)["status"] == "available"
    assert fake.part_url_calls == [[1, 2, 3]]


def test_a_part_refused_with_403_is_sent_again_on_a_fresh_batch(tmp_path: Path) -> None:
    fake = FakeS3gate(part_size=4)
    fake.refuse_puts = [3]  # "Request has expired"
    source = tmp_path / "data.bin"
    source.write_bytes(os.urandom(4 * 5))
    assert fake.client().upload(source)["status"] == "available"
    assert fake.part_url_calls == [[1, 2, 3, 4, 5], [3, 4, 5]]
    assert fake.puts == [1, 2, 3, 3, 4, 5]


def test_part_urls_near_expiry_are_asked_for_again_before_use(tmp_path: Path) -> None:
    fake = FakeS3gate(part_size=4, url_ttl_seconds=-5)  # already past: each is refreshed
    source = tmp_path / "data.bin"
    source.write_bytes(os.urandom(4 * 3))
    assert fake.client().upload(source)["status"] == "available"
    assert fake.part_url_calls == [[1, 2, 3], [2, 3], [3]]


def test_a_part_that_keeps_failing_gives_up_after_part_attempts(tmp_path: Path) -> None:
    fake = FakeS3gate(part_size=4)
    fake.fail_puts_from = 2
    source = tmp_path / "data.bin"
    source.write_bytes(os.urandom(4 * 3))
    with pytest.raises(ApiError, match="storage_refused:InternalError"):
        fake.client().upload(source)
    assert fake.puts == [1] + [2] * PART_ATTEMPTS


def interrupted_upload(
    tmp_path: Path, parts: int, stored: int
) -> tuple[FakeS3gate, UploadRecords, Path]:
    """A run with resume records that stopped after `stored` of `parts` parts (S3 refused
    the next one every time); the store works again afterwards."""
    fake = FakeS3gate(part_size=4)
    records = UploadRecords(tmp_path / "state")
    source = tmp_path / "data.bin"
    source.write_bytes(os.urandom(4 * parts))
    fake.fail_puts_from = stored + 1
    with pytest.raises(ApiError):
        fake.client().upload(source, records=records)
    fake.fail_puts_from, fake.puts = None, []
    return fake, records, source


def test_a_rerun_resumes_with_the_same_key_and_sends_only_missing_parts(tmp_path: Path) -> None:
    fake, records, source = interrupted_upload(tmp_path, parts=5, stored=3)
    (saved,) = records.directory.glob("*.json")
    assert stat.S_IMODE(saved.stat().st_mode) == 0o600

    resumed: list[tuple[str, int, int | None]] = []
    file = fake.client().upload(
        source, records=records, on_resume=lambda *args: resumed.append(args)
    )
    assert file["status"] == "available"
    assert len(fake.files) == 1
    assert fake.keys_sent[0] is not None
    assert fake.keys_sent == [fake.keys_sent[0]] * 2
    assert resumed == [(file["id"], 3, 5)]
    assert fake.puts == [4, 5]
    assert list(records.directory.glob("*.json")) == []  # forgotten once complete


def test_a_file_changed_since_the_killed_run_starts_a_new_upload(tmp_path: Path) -> None:
    fake, records, source = interrupted_upload(tmp_path, parts=3, stored=1)
    source.write_bytes(os.urandom(4 * 3))  # same size, new bytes and mtime
    os.utime(source, ns=(1, 1))  # an mtime that differs for sure
    fake.client().upload(source, records=records)
    assert len(set(fake.keys_sent)) == 2
    assert len(fake.files) == 2
    assert list(records.directory.glob("*.json")) == []  # the stale record went too


def test_a_rerun_after_the_upload_completed_answers_the_completed_file(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Stopped after `complete` answered but before the record was forgotten: the replayed
    key answers 409 not_pending, and the client looks the file up instead of failing."""
    fake = FakeS3gate(part_size=4)
    records = UploadRecords(tmp_path / "state")
    source = tmp_path / "data.bin"
    source.write_bytes(os.urandom(4 * 2))
    with monkeypatch.context() as killed:
        killed.setattr(records, "remove", lambda record: None)  # never got that far
        first = fake.client().upload(source, records=records)
    assert len(list(records.directory.glob("*.json"))) == 1
    fake.puts = []

    again = fake.client().upload(source, records=records)
    assert again == first
    assert fake.keys_sent == [fake.keys_sent[0]] * 2
    assert fake.puts == []
    assert len(fake.files) == 1
    assert list(records.directory.glob("*.json")) == []


def test_an_earlier_upload_that_expired_is_dropped_and_the_next_run_starts_anew(
    tmp_path: Path,
) -> None:
    fake, records, source = interrupted_upload(tmp_path, parts=3, stored=1)
    (earlier,) = fake.files.values()
    earlier["status"] = "expired"  # the reaper ended it meanwhile

    with pytest.raises(ApiError, match="is expired; run again"):
        fake.client().upload(source, records=records)
    assert list(records.directory.glob("*.json")) == []
    assert fake.client().upload(source, records=records)["status"] == "available"
    assert len(set(fake.keys_sent)) == 2


def test_records_live_under_xdg_state_home_or_else_local_state(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    monkeypatch.setenv("XDG_STATE_HOME", str(tmp_path))
    assert default_state_dir() == tmp_path / "s3gate" / "uploads"
    monkeypatch.setenv("XDG_STATE_HOME", "relative/is/ignored")
    monkeypatch.setenv("HOME", str(tmp_path / "home"))
    assert default_state_dir() == tmp_path / "home" / ".local" / "state" / "s3gate" / "uploads"


def test_download_many_posts_the_ids_once_and_returns_the_items_in_order() -> None:
    sent: list[dict[str, Any]] = []
    items = [
        {"id": "a", "url": "https://s3.example/a", "method": "GET", "expires_at": "x"},
        {"id": "b", "problem": {"code": "not_found", "status": 404}},
    ]

    def handle(request: httpx.Request) -> httpx.Response:
        assert (request.method, request.url.path) == ("POST", "/downloads")
        assert request.headers["authorization"] == "Bearer token"
        sent.append(json.loads(request.content))
        return httpx.Response(200, json={"items": items})

    client = S3gateClient(
        "http://s3gate.test", "token", http=httpx.Client(transport=MockTransport(handle))
    )
    assert client.download_many(["a", "b"], disposition="inline") == items
    assert sent == [{"ids": ["a", "b"], "disposition": "inline"}]
