"""A small synchronous client of the s3gate API, for `s3gate upload` / `s3gate download`.

It speaks the HTTP contract only (no server internals) and moves the bytes through the
presigned URLs exactly as the API says: the returned headers for a PUT, the form fields for a
POST, part URLs for a multipart upload (asked for again when one fails or expires).
"""

from __future__ import annotations

import base64
import hashlib
import mimetypes
import re
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import httpx

Progress = Callable[[int, int], None]  # (bytes done, bytes in all)
CHUNK = 1024 * 1024
PART_ATTEMPTS = 3
URLS_PER_CALL = 100


class ApiError(Exception):
    """The API answered a problem+json (or something that is not s3gate)."""

    def __init__(self, status: int, code: str, detail: str) -> None:
        super().__init__(f"{code}: {detail}")
        self.status, self.code, self.detail = status, code, detail


def _sha256_b64(path: Path) -> str:
    digest = hashlib.sha256()
    with path.open("rb") as stream:
        for chunk in iter(lambda: stream.read(CHUNK), b""):
            digest.update(chunk)
    return base64.b64encode(digest.digest()).decode()


def _chunks(
    path: Path, start: int, length: int, done: list[int], total: int, progress: Progress | None
) -> Iterator[bytes]:
    with path.open("rb") as stream:
        stream.seek(start)
        left = length
        while left:
            chunk = stream.read(min(CHUNK, left))
            if not chunk:
                raise OSError(f"{path} shrank while it was being uploaded")
            left -= len(chunk)
            done[0] += len(chunk)
            if progress:
                progress(done[0], total)
            yield chunk


def _s3_refusal(answer: httpx.Response) -> ApiError:
    # Only S3's code and message: its XML can also carry SignatureProvided and the canonical
    # request, which have no place on a terminal or in a log.
    code = re.search(r"<Code>([^<]{1,64})</Code>", answer.text)
    message = re.search(r"<Message>([^<]{1,200})</Message>", answer.text)
    return ApiError(
        answer.status_code,
        f"storage_refused:{code.group(1) if code else answer.status_code}",
        message.group(1) if message else answer.reason_phrase,
    )


class S3gateClient:
    """Upload and download files through an s3gate service."""

    def __init__(self, api_url: str, token: str, *, http: httpx.Client | None = None) -> None:
        self._api = api_url.rstrip("/")
        self._auth = {"Authorization": f"Bearer {token}"}
        self._http = http or httpx.Client(timeout=httpx.Timeout(30.0, read=300.0))

    def close(self) -> None:
        self._http.close()

    def _call(self, method: str, path: str, **kwargs: Any) -> Any:
        answer = self._http.request(method, self._api + path, headers=self._auth, **kwargs)
        if answer.is_success:
            return answer.json() if answer.content else None
        try:
            problem = answer.json()
            raise ApiError(answer.status_code, problem["code"], problem.get("detail", ""))
        except (ValueError, KeyError, TypeError):
            raise ApiError(answer.status_code, "http_error", answer.reason_phrase) from None

    def upload(
        self, path: Path, *, content_type: str | None = None, progress: Progress | None = None
    ) -> dict[str, Any]:
        """Upload one file (single PUT or multipart, as the server decides); the File."""
        size = path.stat().st_size
        body = {
            "filename": path.name,
            "content_type": content_type
            or mimetypes.guess_type(path.name)[0]
            or "application/octet-stream",
            "size": size,
            "checksum_sha256": _sha256_b64(path),
        }
        created = self._call("POST", "/uploads", json=body)
        file, upload = created["file"], created["upload"]
        done = [0]
        if upload["method"] == "MULTIPART":
            self._upload_parts(path, file["id"], size, upload, done, progress)
        else:
            sent = self._http.put(
                upload["url"],
                content=_chunks(path, 0, size, done, size, progress),
                headers={**upload["headers"], "Content-Length": str(size)},
            )
            if not sent.is_success:
                raise _s3_refusal(sent)
        completed: dict[str, Any] = self._call("POST", f"/uploads/{file['id']}/complete")
        return completed

    def _upload_parts(
        self,
        path: Path,
        file_id: str,
        size: int,
        upload: dict[str, Any],
        done: list[int],
        progress: Progress | None,
    ) -> None:
        part_size, count = upload["part_size"], upload["part_count"]
        held = self._call("GET", f"/uploads/{file_id}/parts")["parts"]
        missing = sorted(set(range(1, count + 1)) - {p["part_number"] for p in held})
        done[0] = sum(p["size"] for p in held)  # resuming: what the store already has
        for first in range(0, len(missing), URLS_PER_CALL):
            batch = missing[first : first + URLS_PER_CALL]
            for number in batch:
                start = (number - 1) * part_size
                length = min(part_size, size - start)
                for attempt in range(1, PART_ATTEMPTS + 1):
                    # A fresh URL per attempt: the last one may have expired meanwhile.
                    url = self._call(
                        "POST", f"/uploads/{file_id}/parts", json={"part_numbers": [number]}
                    )["parts"][0]
                    before = done[0]
                    sent = self._http.put(
                        url["url"],
                        content=_chunks(path, start, length, done, size, progress),
                        headers={**url["headers"], "Content-Length": str(length)},
                    )
                    if sent.is_success:
                        break
                    done[0] = before
                    if attempt == PART_ATTEMPTS:
                        raise _s3_refusal(sent)

    def download(
        self, file_id: str, destination: Path | None = None, *, progress: Progress | None = None
    ) -> Path:
        """Fetch a file's bytes to `destination` (default: its name in the cwd)."""
        file = self._call("GET", f"/files/{file_id}")
        link = self._call("GET", f"/downloads/{file_id}")
        target = destination or Path(Path(file["filename"]).name)
        done = 0
        with self._http.stream("GET", link["url"]) as answer:
            if not answer.is_success:
                answer.read()
                raise _s3_refusal(answer)
            with target.open("wb") as out:
                for chunk in answer.iter_bytes(CHUNK):
                    out.write(chunk)
                    done += len(chunk)
                    if progress:
                        progress(done, file["size"])
        return target
