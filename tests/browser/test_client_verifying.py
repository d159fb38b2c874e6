"""The browser client waits for a background verification, in real Chromium against an API
that Playwright plays (route interception): no server, so each answer is the one under test."""

from __future__ import annotations

import json
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest

from devkit.ports import free_port

CLIENT = Path(__file__).resolve().parents[2] / "app" / "static" / "client" / "s3gate.js"
FILE_ID = "0b6f1c1e-8a34-4c8e-9a51-2f0d3e0a9c11"

# Imports the client from the played origin and uploads a small Blob; the File, or the error.
UPLOAD = """async ({ abortAfterMs }) => {
  const { createClient } = await import("/client/s3gate.js");
  const signal = abortAfterMs == null ? undefined : AbortSignal.timeout(abortAfterMs);
  const blob = new File([new Uint8Array(1000)], "scan-me.bin", { lastModified: 1 });
  try {
    return { file: await createClient({ token: "t" }).upload(blob, { checksum: false, signal }) };
  } catch (error) {
    return { error: { name: error.name, code: error.code ?? null, status: error.status ?? null } };
  } finally {
    window.records = Object.keys(localStorage).filter((k) => k.startsWith("s3gate.upload.v1:"));
  }
}"""


# What GET /uploads/settings publishes (the defaults; upload() works within them).
SETTINGS = {
    "max_file_size": 5 * 1024**3,
    "allowed_content_types": ["*/*"],
    "multipart_threshold": 100 * 1024**2,
    "part_size": 16 * 1024**2,
    "min_part_size": 5 * 1024**2,
    "max_part_size": 5 * 1024**3,
    "max_parts": 10_000,
    "max_part_numbers_per_request": 1000,
    "part_url_budget_per_part": 2,
    "upload_url_ttl_seconds": 900,
    "download_url_ttl_seconds": 300,
    "multipart_deadline_seconds": 86_400,
    "form_uploads": True,
    "completion_max_wait_seconds": 30,
    "rate_limit_per_minute": 0,
    "rate_limit_burst": 0,
    "quota_bytes": 0,
    "quota_pending_uploads": 0,
}


@dataclass
class PlayedApi:
    """POST /uploads (409 not_pending once completed), the PUT, `complete` (202 verifying) and
    GET /files/{id}, which answers the next of `verdicts` (the last one repeats)."""

    origin: str
    verdicts: list[str]
    prefer: list[str | None] = field(default_factory=list)
    puts: int = 0
    polls: int = 0

    def file(self, status: str) -> dict[str, Any]:
        return {
            "id": FILE_ID,
            "filename": "scan-me.bin",
            "content_type": "application/octet-stream",
            "size": 1000,
            "checksum_sha256": None,
            "status": status,
            "created_at": "2026-11-22T21:00:00Z",
            "completed_at": None,
            "upload_expires_at": "2099-11-22T21:15:00Z",
        }

    def handle(self, route: Any) -> None:
        request = route.request
        path = request.url.removeprefix(self.origin)
        if path == "/":
            route.fulfill(content_type="text/html", body="<!doctype html><title>played</title>")
        elif path == "/client/s3gate.js":
            route.fulfill(content_type="text/javascript", body=CLIENT.read_text())
        elif (request.method, path) == ("GET", "/uploads/settings"):
            self._json(route, 200, SETTINGS)
        elif (request.method, path) == ("POST", "/uploads") and self.prefer:
            problem = {"status": 409, "code": "not_pending", "detail": "no longer pending"}
            self._json(route, 409, problem)
        elif (request.method, path) == ("POST", "/uploads"):
            upload = {
                "method": "PUT",
                "url": f"{self.origin}/store/object",
                "headers": {"Content-Type": "application/octet-stream"},
                "expires_at": "2099-11-22T21:15:00Z",
            }
            self._json(route, 201, {"file": self.file("pending"), "upload": upload})
        elif (request.method, path) == ("PUT", "/store/object"):
            self.puts += 1
            route.fulfill(status=200, body="")
        elif (request.method, path) == ("POST", f"/uploads/{FILE_ID}/complete"):
            self.prefer.append(request.headers.get("prefer"))
            self._json(route, 202, self.file("verifying"))
        elif (request.method, path) == ("GET", f"/files/{FILE_ID}"):
            self.polls += 1
            status = self.verdicts.pop(0) if len(self.verdicts) > 1 else self.verdicts[0]
            self._json(route, 200, self.file(status))
        else:
            route.fulfill(status=599, body=f"not played: {request.method} {path}")

    @staticmethod
    def _json(route: Any, status: int, body: dict[str, Any]) -> None:
        route.fulfill(status=status, content_type="application/json", body=json.dumps(body))


@pytest.fixture
def played(browser: Any) -> Iterator[tuple[Any, PlayedApi]]:
    """A page at the played API's origin (127.0.0.1, a secure context like a real one)."""
    context = browser.new_context()
    page = context.new_page()
    page.set_default_timeout(30_000)
    api = PlayedApi(f"http://127.0.0.1:{free_port()}", ["verifying", "available"])
    page.route(f"{api.origin}/**", api.handle)
    page.goto(f"{api.origin}/")
    yield page, api
    context.close()


def test_a_202_is_polled_until_available_and_asks_the_service_to_wait(
    played: tuple[Any, PlayedApi],
) -> None:
    page, api = played
    result = page.evaluate(UPLOAD, {"abortAfterMs": None})
    assert result.get("file", {}).get("status") == "available", result
    assert api.prefer == ["wait=20"]
    assert api.polls == 2
    assert page.evaluate("window.records") == []  # forgotten once available


def test_a_file_rejected_while_verifying_fails_as_upload_rejected(
    played: tuple[Any, PlayedApi],
) -> None:
    page, api = played
    api.verdicts = ["rejected"]
    result = page.evaluate(UPLOAD, {"abortAfterMs": None})
    assert result["error"] == {"name": "S3gateError", "code": "upload_rejected", "status": 422}


def test_the_signal_stops_the_wait_and_the_next_upload_waits_for_the_same_file(
    played: tuple[Any, PlayedApi],
) -> None:
    page, api = played
    api.verdicts = ["verifying"]
    result = page.evaluate(UPLOAD, {"abortAfterMs": 1500})
    assert result["error"]["name"] == "TimeoutError"  # AbortSignal.timeout's reason
    assert api.polls >= 1
    assert len(page.evaluate("window.records")) == 1

    api.verdicts, api.polls = ["verifying", "available"], 0
    page.reload()
    result = page.evaluate(UPLOAD, {"abortAfterMs": None})
    assert result.get("file", {}).get("status") == "available", result
    assert (api.puts, len(api.prefer), api.polls) == (1, 1, 2)  # no second PUT nor complete
    assert page.evaluate("window.records") == []
