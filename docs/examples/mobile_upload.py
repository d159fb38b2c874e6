"""How a mobile app uploads through s3gate and survives being killed mid-upload.

Runnable: `python docs/examples/mobile_upload.py API_URL TOKEN FILE [STATE_FILE]`. A test runs
it against a real server (tests/integration/test_cli.py), so it stays true to the API.

The rules it follows (docs/mobile.md explains each):
0. Read GET /uploads/settings first: refuse a file the service would refuse before reading it
   (size, type), and choose the part size from what it publishes: the smallest part it allows,
   so a dropped connection on a phone costs one small part. No setting is copied into the app.
1. Persist an Idempotency-Key and the declaration *before* the first POST /uploads. After a
   crash, the same key and body return the same file (200) with a fresh URL, never a second
   file.
2. Send exactly the headers the API returned (plus Content-Length).
3. Multipart: after a restart, GET /uploads/{id}/parts says which parts the store holds;
   upload only the missing ones, asking for part URLs a few at a time as you go (they expire;
   the upload's own budget pays for them, so this never meets the rate limit).
4. Always finish with POST /uploads/{id}/complete; 409 upload_incomplete means "not all bytes
   are there yet", not failure. Send `Prefer: wait=20`; a 202 means "verifying" (a whole-object
   check or a malware scan in the background): poll GET /files/{id} with backoff until the
   status is final, and keep the state file until it is `available`.
"""

from __future__ import annotations

import base64
import hashlib
import json
import mimetypes
import sys
import time
import uuid
from pathlib import Path
from typing import Any

import httpx


def _api(client: httpx.Client, method: str, url: str, **kwargs: Any) -> httpx.Response:
    answer = client.request(method, url, **kwargs)
    if answer.status_code >= 500:
        answer.raise_for_status()  # a real app retries with backoff here
    return answer


def upload(
    api_url: str,
    token: str,
    path: Path,
    state_file: Path,
    *,
    stop_after_parts: int | None = None,
) -> str | None:
    """Upload `path`; returns the file id, or None when "killed" after `stop_after_parts`."""
    auth = {"Authorization": f"Bearer {token}"}
    state = json.loads(state_file.read_text()) if state_file.exists() else {}
    with httpx.Client(timeout=60) as client:
        if "body" not in state:
            settings = _api(client, "GET", f"{api_url}/uploads/settings", headers=auth)
            settings.raise_for_status()
            # rule 0: refused here, before the bytes are read (the service would answer 413/415)
            body = _declaration(path, settings.json())
            state = {"idempotency_key": str(uuid.uuid4()), "body": body}
            state_file.write_text(json.dumps(state))  # rule 1: before the request leaves
        data = path.read_bytes()
        # A first run creates the upload (201); a run after a crash gets the same one (200).
        created = _api(
            client,
            "POST",
            f"{api_url}/uploads",
            json={**state["body"], "checksum_sha256": _sha256(data)},
            headers={**auth, "Idempotency-Key": state["idempotency_key"]},
        )
        if created.status_code == 409:  # completed by an earlier run: verified yet?
            return _finished(client, api_url, auth, str(state["file_id"]), state_file)
        created.raise_for_status()
        file_id, upload_plan = created.json()["file"]["id"], created.json()["upload"]
        state["file_id"] = file_id
        state_file.write_text(json.dumps(state))

        if upload_plan["method"] == "MULTIPART":
            part_size = upload_plan["part_size"]
            held = _api(client, "GET", f"{api_url}/uploads/{file_id}/parts", headers=auth).json()
            missing = sorted(
                set(range(1, upload_plan["part_count"] + 1))
                - {p["part_number"] for p in held["parts"]}
            )
            urls: dict[int, dict[str, Any]] = {}
            for sent, number in enumerate(missing):
                if stop_after_parts is not None and sent >= stop_after_parts:
                    return None  # the OS killed the app here
                if number not in urls:  # the next few, fresh (a real app re-asks near expiry)
                    ask = missing[sent : sent + PART_URLS_AT_ONCE]
                    answer = _api(
                        client,
                        "POST",
                        f"{api_url}/uploads/{file_id}/parts",
                        json={"part_numbers": ask},
                        headers=auth,
                    )
                    answer.raise_for_status()
                    urls = {p["part_number"]: p for p in answer.json()["parts"]}
                part = urls[number]
                chunk = data[(number - 1) * part_size : number * part_size]
                client.put(part["url"], content=chunk, headers=part["headers"]).raise_for_status()
        else:
            if stop_after_parts == 0:
                return None  # the OS killed the app before the bytes left
            put = client.put(upload_plan["url"], content=data, headers=upload_plan["headers"])
            # 412: the object is already there from an earlier run; complete will check it.
            if put.status_code != 412:
                put.raise_for_status()

        done = _api(
            client,
            "POST",
            f"{api_url}/uploads/{file_id}/complete",
            headers={**auth, "Prefer": "wait=20"},
        )
        done.raise_for_status()
        return _finished(client, api_url, auth, file_id, state_file)


PART_URLS_AT_ONCE = 4  # a few minutes of parts on a slow link: still fresh when used


def _declaration(path: Path, settings: dict[str, Any]) -> dict[str, Any]:
    """What POST /uploads gets for `path` (its checksum aside), within what the service
    publishes; raises ValueError for a file it would refuse."""
    size = path.stat().st_size
    content_type = mimetypes.guess_type(path.name)[0] or "application/octet-stream"
    if size > settings["max_file_size"]:
        raise ValueError(f"{path.name}: {size} bytes, over {settings['max_file_size']}")
    major = content_type.split("/")[0]
    patterns = settings["allowed_content_types"]
    if not {"*/*", content_type, f"{major}/*"} & set(patterns):
        raise ValueError(f"{path.name}: {content_type} is not among {patterns}")
    body: dict[str, Any] = {"filename": path.name, "content_type": content_type, "size": size}
    if size > settings["multipart_threshold"]:
        # The smallest part allowed (whole MiB, at most max_parts of them): on a phone, a
        # dropped connection loses one small part, not a large one.
        mib = 1024 * 1024
        smallest = -(-size // settings["max_parts"] // mib) * mib
        body["part_size"] = min(settings["max_part_size"], max(settings["min_part_size"], smallest))
    return body


def _sha256(data: bytes) -> str:
    return base64.b64encode(hashlib.sha256(data).digest()).decode()


def _finished(
    client: httpx.Client, api_url: str, auth: dict[str, str], file_id: str, state_file: Path
) -> str:
    """Wait while the file is `verifying` (a 202 from complete), with backoff; forget the
    upload once it is available."""
    pause = 0.5
    while True:
        file = _api(client, "GET", f"{api_url}/files/{file_id}", headers=auth)
        file.raise_for_status()
        status = file.json()["status"]
        if status == "available":
            state_file.unlink(missing_ok=True)
            return file_id
        if status != "verifying":
            raise RuntimeError(f"file {file_id} ended {status}")
        time.sleep(pause)
        pause = min(pause * 2, 5.0)


if __name__ == "__main__":
    api_url, token, file_name = sys.argv[1:4]
    state_path = Path(sys.argv[4] if len(sys.argv) > 4 else f"{file_name}.s3gate-upload.json")
    print(upload(api_url, token, Path(file_name), state_path))
