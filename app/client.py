"""A small synchronous client of the s3gate API, for `s3gate upload` / `s3gate download`.

It speaks the HTTP contract only (no server internals) and moves the bytes through the
presigned URLs exactly as the API says: the returned headers for a PUT, the form fields for a
POST, part URLs for a multipart upload (asked for in batches, again when they near expiry or
S3 refuses one). With resume records (app/client_state.py), a run that was killed is finished
by the next one as docs/mobile.md describes: same Idempotency-Key, same file, missing parts only.
An upload is done when its file is `available`: a `complete` answered 202 (`verifying`, checked
in the background) is followed by polling the file until the service's verdict.
"""

from __future__ import annotations

import base64
import contextlib
import hashlib
import mimetypes
import random
import re
import time
from collections.abc import Callable, Iterator
from datetime import UTC, datetime
from email.utils import parsedate_to_datetime
from pathlib import Path
from typing import Any, BinaryIO, Literal
from urllib.parse import quote

import httpx

from app.client_state import FileIdentity, UploadRecord, UploadRecords
from app.mediatypes import allowed, essence

Progress = Callable[[int, int], None]  # (bytes done, bytes in all)
# (file id, parts the store already holds, parts in all: None for a single PUT)
Resuming = Callable[[str, int, int | None], None]
CHUNK = 1024 * 1024
PART_ATTEMPTS = 3
# Part URLs asked for per call. The API takes up to 1000, but on a slow link 100 parts (1.6 GB
# at the default 16 MiB) already outlast the URLs' 15 minutes: a larger batch would only expire.
URLS_PER_CALL = 100
# A batch of part URLs is asked for again this long before it expires (or halfway through a
# shorter lifetime), so no PUT starts on a URL that dies during the request's first bytes.
REFRESH_MARGIN_SECONDS = 60.0
# Answers after which the saved state can never finish the upload: the next run starts anew.
_ENDS_THE_UPLOAD = frozenset(
    {"not_found", "not_pending", "upload_expired", "upload_rejected", "idempotency_key_reused"}
)
# `complete` asks the service to hold its answer this long for a background verification
# (RFC 7240 `Prefer: wait`); services cap it, and those that ignore it answer 202 at once.
COMPLETION_WAIT_SECONDS = 20
# Slack on top of the held answer before the read times out: the verdict itself takes time.
COMPLETION_READ_SLACK_SECONDS = 30.0
# Polls of a verifying file: exponential from the first delay, capped, with jitter so that
# clients that completed together do not poll together.
POLL_FIRST_SECONDS = 0.5
POLL_MAX_SECONDS = 5.0
# A whole-object checksum read or a malware scan of a large file takes minutes, not hours.
VERIFY_TIMEOUT_SECONDS = 600.0
# Answers to a poll that a later poll can change: the file is still there, the path is not.
_TRANSIENT = frozenset({429, 502, 503, 504})


class ApiError(Exception):
    """The API answered a problem+json (or something that is not s3gate)."""

    def __init__(self, status: int, code: str, detail: str) -> None:
        super().__init__(f"{code}: {detail}")
        self.status, self.code, self.detail = status, code, detail


class VerificationTimeout(ApiError):
    """The file was still `verifying` at the deadline. Not an end: a rerun with the same
    resume record waits again, and the service may yet make the file available."""

    def __init__(self, file_id: str, waited: float) -> None:
        super().__init__(
            202,
            "verification_timeout",
            f"upload {file_id} is still being verified after {waited:g} s; "
            "run again to keep waiting",
        )
        self.file_id = file_id


def _final(file: dict[str, Any]) -> dict[str, Any]:
    """`file` if it is available; else the error its status means, as `complete` says it."""
    status, file_id = file["status"], file["id"]
    if status == "available":
        return file
    if status == "rejected":
        raise ApiError(
            422,
            "upload_rejected",
            f"the service rejected upload {file_id} when it verified the stored bytes; "
            "create a new upload",
        )
    if status == "expired":
        raise ApiError(409, "upload_expired", f"upload {file_id} expired; create a new upload")
    raise ApiError(409, "upload_incomplete", f"upload {file_id} is {status}; complete it again")


def _segment(value: str) -> str:
    """An id as one path segment: a slash or `?` in it cannot reach another route."""
    return quote(value, safe="")


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


def _seconds_left(expires_at: str, answer: httpx.Response) -> float:
    """How long a URL in `answer` lives, on the server's clock (its Date header) when it
    sent one: a client whose clock is off still asks for fresh URLs in time."""
    now = datetime.now(UTC)
    with contextlib.suppress(KeyError, TypeError, ValueError):
        now = parsedate_to_datetime(answer.headers["date"])
        if now.tzinfo is None:
            now = now.replace(tzinfo=UTC)
    return (datetime.fromisoformat(expires_at) - now).total_seconds()


class _PartUrls:
    """Part URLs for `order` (the parts to send, in sending order), `per_call` at a time: the
    batch from the part wanted on, asked for again when it nears expiry or S3 refused one."""

    def __init__(
        self, ask: Callable[[list[int]], httpx.Response], order: list[int], per_call: int
    ) -> None:
        self._ask, self._order, self._per_call = ask, order, per_call
        self._urls: dict[int, dict[str, Any]] = {}
        self._refresh_at = 0.0  # on time.monotonic()

    def get(self, number: int) -> dict[str, Any]:
        if number not in self._urls or time.monotonic() >= self._refresh_at:
            first = self._order.index(number)
            answer = self._ask(self._order[first : first + self._per_call])
            parts = answer.json()["parts"]
            self._urls = {part["part_number"]: part for part in parts}
            lifetime = min(_seconds_left(part["expires_at"], answer) for part in parts)
            margin = min(REFRESH_MARGIN_SECONDS, lifetime / 2)
            self._refresh_at = time.monotonic() + lifetime - margin
        return self._urls[number]

    def expire(self) -> None:
        """Ask for a fresh batch next time (S3 said 403: most often, "Request has expired")."""
        self._refresh_at = 0.0


class S3gateClient:
    """Upload and download files through an s3gate service."""

    def __init__(
        self,
        api_url: str,
        token: str,
        *,
        http: httpx.Client | None = None,
        sleep: Callable[[float], None] = time.sleep,
        clock: Callable[[], float] = time.monotonic,
        rng: random.Random | None = None,
    ) -> None:
        self._api = api_url.rstrip("/")
        self._auth = {"Authorization": f"Bearer {token}"}
        self._http = http or httpx.Client(timeout=httpx.Timeout(30.0, read=300.0))
        self._sleep, self._clock = sleep, clock
        self._rng = rng or random.SystemRandom()
        self._settings: dict[str, Any] | None = None

    def close(self) -> None:
        self._http.close()

    def _send(
        self, method: str, path: str, *, headers: dict[str, str] | None = None, **kwargs: Any
    ) -> httpx.Response:
        answer = self._http.request(
            method, self._api + path, headers={**self._auth, **(headers or {})}, **kwargs
        )
        if answer.is_success:
            return answer
        try:
            problem = answer.json()
            raise ApiError(answer.status_code, problem["code"], problem.get("detail", ""))
        except (ValueError, KeyError, TypeError):
            raise ApiError(answer.status_code, "http_error", answer.reason_phrase) from None

    def _call(self, method: str, path: str, **kwargs: Any) -> Any:
        answer = self._send(method, path, **kwargs)
        return answer.json() if answer.content else None

    def upload(
        self,
        path: Path,
        *,
        content_type: str | None = None,
        progress: Progress | None = None,
        records: UploadRecords | None = None,
        on_resume: Resuming | None = None,
        verify_timeout: float = VERIFY_TIMEOUT_SECONDS,
    ) -> dict[str, Any]:
        """Upload one file (single PUT or multipart, as the server decides); the File, once
        available. A file the service verifies in the background is waited for, up to
        `verify_timeout` seconds from `complete` (then VerificationTimeout).

        With `records`, the upload is saved before it starts and forgotten once available, so
        a run that was killed is resumed by the next one for the same file: the same
        Idempotency-Key returns the same file, and only what the store lacks is sent.
        """
        identity = FileIdentity.of(path)
        declared = content_type or mimetypes.guess_type(path.name)[0] or "application/octet-stream"
        self._admissible(identity.size, declared)
        body = {
            "filename": path.name,
            "content_type": declared,
            "size": identity.size,
            "checksum_sha256": _sha256_b64(path),
        }
        record = records.resume_or_start(self._api, identity, body) if records else None
        try:
            file = self._upload(path, body, records, record, progress, on_resume, verify_timeout)
        except ApiError as exc:
            if records and record and exc.code in _ENDS_THE_UPLOAD:
                records.remove(record)
            raise
        if records and record:
            records.remove(record)
        return file

    def _upload(
        self,
        path: Path,
        body: dict[str, Any],
        records: UploadRecords | None,
        record: UploadRecord | None,
        progress: Progress | None,
        on_resume: Resuming | None,
        verify_timeout: float,
    ) -> dict[str, Any]:
        key = {"Idempotency-Key": record.idempotency_key} if record else {}
        try:
            created = self._send("POST", "/uploads", json=body, headers=key)
        except ApiError as exc:
            if exc.code != "not_pending" or record is None or record.file_id is None:
                raise
            # The key's file is past pending: an earlier run completed it (and was stopped
            # before it could forget the record, or while the service verified it), or it
            # was rejected or expired.
            earlier: dict[str, Any] = self._call("GET", f"/files/{record.file_id}")
            if earlier["status"] == "available":
                return earlier
            if earlier["status"] == "verifying":
                return self._verdict(earlier, self._clock() + verify_timeout, verify_timeout)
            raise ApiError(
                exc.status,
                exc.code,
                f"the earlier upload {record.file_id} of this file is {earlier['status']}; "
                "run again to start a new one",
            ) from None
        file, upload = created.json()["file"], created.json()["upload"]
        if records and record and record.file_id != file["id"]:
            record.file_id = file["id"]
            records.save(record)
        # 200 instead of 201: the server knew the key, this run resumes an earlier one.
        resuming = on_resume if created.status_code == 200 else None
        size = body["size"]
        done = [0]
        if upload["method"] == "MULTIPART":
            self._upload_parts(path, file["id"], size, upload, done, progress, resuming)
        else:
            if resuming:
                resuming(file["id"], 0, None)
            sent = self._http.put(
                upload["url"],
                content=_chunks(path, 0, size, done, size, progress),
                headers={**upload["headers"], "Content-Length": str(size)},
            )
            # 412: the create-only URL found the object there (an earlier run's PUT got
            # through); complete checks it.
            if not sent.is_success and sent.status_code != 412:
                raise _s3_refusal(sent)
        return self._complete(file["id"], verify_timeout)

    def _complete(self, file_id: str, verify_timeout: float) -> dict[str, Any]:
        deadline = self._clock() + verify_timeout
        wait = COMPLETION_WAIT_SECONDS
        configured = self._http.timeout
        read = configured.read
        if read is not None:
            # A client built with a short read timeout would give up on a held answer.
            read = max(read, wait + COMPLETION_READ_SLACK_SECONDS)
        answer = self._send(
            "POST",
            f"/uploads/{file_id}/complete",
            headers={"Prefer": f"wait={wait}"},
            timeout=httpx.Timeout(
                connect=configured.connect, read=read, write=configured.write, pool=configured.pool
            ),
        )
        file: dict[str, Any] = answer.json()
        return self._verdict(file, deadline, verify_timeout)

    def _verdict(self, file: dict[str, Any], deadline: float, waited: float) -> dict[str, Any]:
        """Poll a `verifying` file until it is not; available, else its status's error."""
        delay = POLL_FIRST_SECONDS
        while file["status"] == "verifying":
            left = deadline - self._clock()
            if left <= 0:
                raise VerificationTimeout(file["id"], waited)
            # Equal jitter: spread out, yet never polling much sooner than the backoff says.
            self._sleep(min(left, self._rng.uniform(delay / 2, delay)))
            delay = min(delay * 2, POLL_MAX_SECONDS)
            try:
                file = self._call("GET", f"/files/{file['id']}")
            except ApiError as exc:
                # A minutes-long wait should outlast a proxy's blip; anything else is an answer.
                if exc.status not in _TRANSIENT:
                    raise
            except httpx.TransportError:
                pass
        return _final(file)

    def _upload_parts(
        self,
        path: Path,
        file_id: str,
        size: int,
        upload: dict[str, Any],
        done: list[int],
        progress: Progress | None,
        resuming: Resuming | None,
    ) -> None:
        part_size, count = upload["part_size"], upload["part_count"]
        lengths = {n: min(part_size, size - (n - 1) * part_size) for n in range(1, count + 1)}
        stored = self._call("GET", f"/uploads/{file_id}/parts")["parts"]
        # A part stored at another length (a PUT cut short) is sent again.
        held = {p["part_number"] for p in stored if lengths.get(p["part_number"]) == p["size"]}
        missing = [n for n in lengths if n not in held]
        done[0] = sum(lengths[n] for n in held)
        if resuming:
            resuming(file_id, len(held), count)
        urls = _PartUrls(
            lambda numbers: self._send(
                "POST", f"/uploads/{file_id}/parts", json={"part_numbers": numbers}
            ),
            missing,
            self._urls_per_call(),
        )
        for number in missing:
            start, length = (number - 1) * part_size, lengths[number]
            for attempt in range(1, PART_ATTEMPTS + 1):
                url = urls.get(number)
                before = done[0]
                failure: Exception
                try:
                    sent = self._http.put(
                        url["url"],
                        content=_chunks(path, start, length, done, size, progress),
                        headers={**url["headers"], "Content-Length": str(length)},
                    )
                    if sent.is_success:
                        break
                    failure = _s3_refusal(sent)
                    if sent.status_code == 403:
                        urls.expire()
                except httpx.TransportError as exc:
                    failure = exc
                done[0] = before
                if attempt == PART_ATTEMPTS:
                    raise failure

    @contextlib.contextmanager
    def _object(self, file_id: str) -> Iterator[tuple[dict[str, Any], httpx.Response]]:
        """The File and the store's answer to its presigned GET, streaming."""
        file = self._call("GET", f"/files/{file_id}")
        link = self._call("GET", f"/downloads/{file_id}")
        with self._http.stream("GET", link["url"]) as answer:
            if not answer.is_success:
                answer.read()
                raise _s3_refusal(answer)
            yield file, answer

    @staticmethod
    def _copy(answer: httpx.Response, out: BinaryIO, total: int, progress: Progress | None) -> None:
        done = 0
        for chunk in answer.iter_bytes(CHUNK):
            out.write(chunk)
            done += len(chunk)
            if progress:
                progress(done, total)

    def download(
        self, file_id: str, destination: Path | None = None, *, progress: Progress | None = None
    ) -> Path:
        """Fetch a file's bytes to `destination` (default: its name in the cwd)."""
        with self._object(file_id) as (file, answer):
            target = destination or Path(Path(file["filename"]).name)
            with target.open("wb") as out:
                self._copy(answer, out, file["size"], progress)
        return target

    def download_to(
        self, file_id: str, out: BinaryIO, *, progress: Progress | None = None
    ) -> dict[str, Any]:
        """Write a file's bytes to an open binary stream (stdout, for `-o -`); the File."""
        with self._object(file_id) as (file, answer):
            self._copy(answer, out, file["size"], progress)
        return file

    def upload_settings(self) -> dict[str, Any]:
        """What the deployment accepts (GET /uploads/settings): sizes, types, the multipart
        threshold and part size, URL TTLs, the caller's quotas. Asked once per client."""
        if self._settings is None:
            self._settings = self._call("GET", "/uploads/settings")
        return self._settings

    def _admissible(self, size: int, content_type: str) -> None:
        """Refuse what the service's published settings refuse, with its own code, before the
        file is read: a file over the limit is not hashed first only to meet a 413. A service
        without GET /uploads/settings (an older one) decides at create, as before."""
        try:
            settings = self.upload_settings()
        except ApiError as exc:
            if exc.status in (404, 405):
                return
            raise
        if size > settings["max_file_size"]:
            raise ApiError(
                413,
                "file_too_large",
                f"{size} bytes; this service accepts up to {settings['max_file_size']}",
            )
        if not allowed(essence(content_type), settings["allowed_content_types"]):
            raise ApiError(
                415,
                "content_type_not_allowed",
                f"{essence(content_type)!r} is not among {settings['allowed_content_types']}",
            )

    def _urls_per_call(self) -> int:
        """Part URLs asked for at once: ours, within what the service takes in one call."""
        published = (self._settings or {}).get("max_part_numbers_per_request")
        return min(URLS_PER_CALL, published) if isinstance(published, int) else URLS_PER_CALL

    # --- sharing (docs/sharing.md): the owner's or an admin's calls ---------------------------

    def share(
        self,
        file_id: str,
        *,
        subject: str | None = None,
        group: str | None = None,
        permission: Literal["read", "delete"] = "read",
        expires_at: str | datetime | None = None,
    ) -> dict[str, Any]:
        """Grant `subject` (a token's sub) or `group` access to the file; the Grant. A grantee
        that had a grant gets its permission and expiry replaced. `expires_at`: RFC 3339 with a
        time zone, or an aware datetime."""
        body: dict[str, Any] = {"permission": permission}
        if subject is not None:
            body["subject"] = subject
        if group is not None:
            body["group"] = group
        if expires_at is not None:
            body["expires_at"] = (
                expires_at.isoformat() if isinstance(expires_at, datetime) else expires_at
            )
        grant: dict[str, Any] = self._call("POST", f"/files/{_segment(file_id)}/grants", json=body)
        return grant

    def grants(self, file_id: str) -> list[dict[str, Any]]:
        """The file's grants (expired ones too, `active` false, until the reaper prunes them)."""
        items: list[dict[str, Any]] = self._call("GET", f"/files/{_segment(file_id)}/grants")[
            "items"
        ]
        return items

    def revoke_grant(self, file_id: str, grant_id: str) -> None:
        self._call("DELETE", f"/files/{_segment(file_id)}/grants/{_segment(grant_id)}")

    def create_link(
        self, file_id: str, *, expires_in: int, max_downloads: int | None = None
    ) -> dict[str, Any]:
        """A share link to the file; the answer holds its `token` and absolute `url`, shown
        this once (the service keeps only a hash): whoever holds the URL gets the bytes."""
        body: dict[str, Any] = {"expires_in": expires_in}
        if max_downloads is not None:
            body["max_downloads"] = max_downloads
        link: dict[str, Any] = self._call("POST", f"/files/{_segment(file_id)}/links", json=body)
        return link

    def links(self, file_id: str) -> list[dict[str, Any]]:
        """The file's share links, never their tokens."""
        items: list[dict[str, Any]] = self._call("GET", f"/files/{_segment(file_id)}/links")[
            "items"
        ]
        return items

    def revoke_link(self, file_id: str, link_id: str) -> None:
        self._call("DELETE", f"/files/{_segment(file_id)}/links/{_segment(link_id)}")

    def download_many(
        self, ids: list[str], *, disposition: Literal["attachment", "inline"] = "attachment"
    ) -> list[dict[str, Any]]:
        """Download URLs for up to 100 files, one item per id in order: `url`, `method` and
        `expires_at`, or the `problem` the single route would answer for that id."""
        answer = self._call("POST", "/downloads", json={"ids": ids, "disposition": disposition})
        items: list[dict[str, Any]] = answer["items"]
        return items
