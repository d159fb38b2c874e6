"""The API client waits for a background verification: `complete` sends `Prefer: wait=20`, a
202 `verifying` is polled with capped exponential backoff until the service's verdict, and the
resume record outlives the wait (a rerun waits for the same file instead of uploading again)."""

from __future__ import annotations

import os
import random
from pathlib import Path
from typing import Any

import httpx
import pytest
from httpx import MockTransport

from app.client import (
    COMPLETION_WAIT_SECONDS,
    ApiError,
    S3gateClient,
    VerificationTimeout,
)
from app.client_state import UploadRecords
from tests.unit.test_client import FakeS3gate, problem


class FakeTime:
    """A clock that moves only when the client sleeps."""

    def __init__(self) -> None:
        self.now = 1000.0
        self.sleeps: list[float] = []

    def sleep(self, seconds: float) -> None:
        self.sleeps.append(seconds)
        self.now += seconds

    def clock(self) -> float:
        return self.now


class Highest(random.Random):
    """No jitter: every delay at the top of its range, so the backoff itself shows."""

    def uniform(self, a: float, b: float) -> float:
        return b


class VerifyingS3gate(FakeS3gate):
    """FakeS3gate whose `complete` answers 202 `verifying`, each GET of a verifying file the
    next status of `verdicts` (the last one repeats); with `at_once`, `complete` answers the
    first verdict itself, as a service that verifies inline does (200, or 422)."""

    def __init__(self, verdicts: list[str], *, at_once: bool = False) -> None:
        super().__init__(part_size=4)
        self.verdicts, self.at_once = list(verdicts), at_once
        self.prefer: list[str | None] = []
        self.polls = 0
        self.poll_failures: list[int] = []  # statuses the next polls answer instead
        self.complete_timeouts: list[Any] = []
        self.time = FakeTime()

    def client(
        self, *, http: httpx.Client | None = None, rng: random.Random | None = None
    ) -> S3gateClient:
        return S3gateClient(
            "http://s3gate.test",
            "token",
            http=http or httpx.Client(transport=MockTransport(self.handle)),
            sleep=self.time.sleep,
            clock=self.time.clock,
            rng=rng or Highest(),
        )

    def handle(self, request: httpx.Request) -> httpx.Response:
        path, method = request.url.path, request.method
        if request.url.host == "s3.test" or path in ("/uploads", "/uploads/settings"):
            return super().handle(request)
        file = self.files[path.split("/")[2]]
        if method == "POST" and path.endswith("/complete"):
            self.prefer.append(request.headers.get("Prefer"))
            self.complete_timeouts.append(request.extensions.get("timeout"))
            if self.at_once:
                file["status"] = self.verdicts[0]
            if file["status"] == "rejected":
                return problem(422, "upload_rejected")
            if file["status"] == "available":
                return httpx.Response(200, json=file)
            file["status"] = "verifying"
            return httpx.Response(202, json=file)
        if method == "GET" and path.startswith("/files/") and file["status"] == "verifying":
            self.polls += 1
            if self.poll_failures:
                return problem(self.poll_failures.pop(0), "storage_unavailable")
            file["status"] = self.verdicts.pop(0) if len(self.verdicts) > 1 else self.verdicts[0]
        return super().handle(request)


def _source(tmp_path: Path) -> Path:
    source = tmp_path / "data.bin"
    source.write_bytes(os.urandom(4 * 2))
    return source


def test_a_202_is_polled_until_the_file_is_available(tmp_path: Path) -> None:
    fake = VerifyingS3gate(["verifying", "verifying", "available"])
    records = UploadRecords(tmp_path / "state")
    file = fake.client().upload(_source(tmp_path), records=records)
    assert file["status"] == "available"
    assert fake.polls == 3
    assert list(records.directory.glob("*.json")) == []  # forgotten once available


def test_complete_asks_the_service_to_hold_its_answer(tmp_path: Path) -> None:
    fake = VerifyingS3gate(["available"])
    fake.client().upload(_source(tmp_path))
    assert fake.prefer == [f"wait={COMPLETION_WAIT_SECONDS}"] == ["wait=20"]


def test_a_short_read_timeout_is_lengthened_for_the_held_answer(tmp_path: Path) -> None:
    fake = VerifyingS3gate(["available"])
    http = httpx.Client(transport=MockTransport(fake.handle), timeout=5.0)
    fake.client(http=http).upload(_source(tmp_path))
    (timeout,) = fake.complete_timeouts
    assert timeout["read"] > COMPLETION_WAIT_SECONDS
    assert timeout["connect"] == 5.0


@pytest.mark.parametrize("when", ["while verifying", "at complete"])
def test_a_rejected_file_raises_upload_rejected_and_drops_the_record(
    tmp_path: Path, when: str
) -> None:
    """Rejected after a 202 or at once (a 422 from `complete`): the same error, and the
    record goes, since that upload can never finish."""
    at_once = when == "at complete"
    fake = VerifyingS3gate(["rejected"] if at_once else ["verifying", "rejected"], at_once=at_once)
    records = UploadRecords(tmp_path / "state")
    with pytest.raises(ApiError) as raised:
        fake.client().upload(_source(tmp_path), records=records)
    assert (raised.value.status, raised.value.code) == (422, "upload_rejected")
    if not at_once:
        (file_id,) = fake.files
        assert file_id in str(raised.value)
        assert fake.polls == 2
    assert list(records.directory.glob("*.json")) == []


def test_polls_back_off_doubling_from_half_a_second_up_to_five(tmp_path: Path) -> None:
    fake = VerifyingS3gate(["verifying"] * 7 + ["available"])
    fake.client().upload(_source(tmp_path))
    assert fake.time.sleeps == [0.5, 1.0, 2.0, 4.0, 5.0, 5.0, 5.0, 5.0]


def test_jitter_keeps_each_poll_between_half_and_all_of_its_backoff(tmp_path: Path) -> None:
    fake = VerifyingS3gate(["verifying"] * 7 + ["available"])
    fake.client(rng=random.Random(7)).upload(_source(tmp_path))
    nominal = [0.5, 1.0, 2.0, 4.0, 5.0, 5.0, 5.0, 5.0]
    assert len(fake.time.sleeps) == len(nominal)
    assert all(n / 2 <= s <= n for s, n in zip(fake.time.sleeps, nominal, strict=True))
    assert fake.time.sleeps != nominal


def test_a_poll_answered_503_is_polled_again(tmp_path: Path) -> None:
    fake = VerifyingS3gate(["available"])
    fake.poll_failures = [503, 429]
    assert fake.client().upload(_source(tmp_path))["status"] == "available"
    assert fake.polls == 3


def test_a_file_still_verifying_at_the_deadline_raises_naming_it_and_keeps_the_record(
    tmp_path: Path,
) -> None:
    fake = VerifyingS3gate(["verifying"])
    records = UploadRecords(tmp_path / "state")
    with pytest.raises(VerificationTimeout) as raised:
        fake.client().upload(_source(tmp_path), records=records, verify_timeout=30)
    (file_id,) = fake.files
    assert raised.value.file_id == file_id
    assert file_id in str(raised.value)
    assert "30 s" in str(raised.value)
    assert sum(fake.time.sleeps) == 30  # the last sleep is cut to the deadline
    assert len(list(records.directory.glob("*.json"))) == 1


def test_a_rerun_waits_for_the_verifying_file_instead_of_uploading_again(tmp_path: Path) -> None:
    fake = VerifyingS3gate(["verifying"])
    records = UploadRecords(tmp_path / "state")
    source = _source(tmp_path)
    with pytest.raises(VerificationTimeout):
        fake.client().upload(source, records=records, verify_timeout=10)
    fake.puts, fake.verdicts, fake.prefer = [], ["verifying", "available"], []

    file = fake.client().upload(source, records=records)
    assert file["status"] == "available"
    assert len(fake.files) == 1
    assert fake.keys_sent == [fake.keys_sent[0]] * 2  # the same key: 409 not_pending
    assert fake.puts == []
    assert fake.prefer == []  # nothing to complete again: it waits for the verdict
    assert list(records.directory.glob("*.json")) == []


def test_a_200_from_complete_needs_no_polling(tmp_path: Path) -> None:
    fake = VerifyingS3gate(["available"], at_once=True)
    assert fake.client().upload(_source(tmp_path))["status"] == "available"
    assert fake.polls == 0
    assert fake.time.sleeps == []
    assert fake.prefer == ["wait=20"]
