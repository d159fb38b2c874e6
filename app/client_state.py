"""Resume records of `s3gate upload`: what a rerun needs to finish an upload a kill interrupted.

One JSON file per upload in a per-user directory, named by a hash of the API URL and the
file's identity (absolute path, size, mtime), so a changed file never meets an old record.
A record is written before the first `POST /uploads` leaves (docs/mobile.md, rule 1), replaced
atomically, readable by its owner only: its Idempotency-Key is never printed or logged.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import os
import tempfile
import uuid
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

RECORD_VERSION = 1


def default_state_dir() -> Path:
    """`$XDG_STATE_HOME/s3gate/uploads`, else `~/.local/state/s3gate/uploads`."""
    base = os.environ.get("XDG_STATE_HOME", "")
    if not os.path.isabs(base):  # the XDG spec: a relative value is to be ignored
        base = str(Path.home() / ".local" / "state")
    return Path(base) / "s3gate" / "uploads"


@dataclass(frozen=True, slots=True)
class FileIdentity:
    path: str  # absolute
    size: int
    mtime_ns: int

    @classmethod
    def of(cls, path: Path) -> FileIdentity:
        stat = path.stat()
        return cls(str(path.resolve()), stat.st_size, stat.st_mtime_ns)


@dataclass(slots=True)
class UploadRecord:
    api: str
    file: FileIdentity
    body: dict[str, Any]  # the POST /uploads body: a replay must send it unchanged
    idempotency_key: str
    file_id: str | None = None  # known once the server has answered the create


class UploadRecords:
    """The records in one directory."""

    def __init__(self, directory: Path) -> None:
        self.directory = directory

    def _path(self, api: str, file: FileIdentity) -> Path:
        identity = json.dumps([api, file.path, file.size, file.mtime_ns])
        return self.directory / f"{hashlib.sha256(identity.encode()).hexdigest()[:32]}.json"

    def resume_or_start(self, api: str, file: FileIdentity, body: dict[str, Any]) -> UploadRecord:
        """The record of an earlier run for this very file and body, else a new one (saved,
        with a fresh Idempotency-Key), replacing any left for an older version of the file."""
        found = self._read(self._path(api, file))
        if found is not None and found.file == file and found.body == body:
            return found
        self._forget_path(api, file.path)
        record = UploadRecord(api, file, body, str(uuid.uuid4()))
        self.save(record)
        return record

    def save(self, record: UploadRecord) -> None:
        self.directory.mkdir(mode=0o700, parents=True, exist_ok=True)
        data = {"version": RECORD_VERSION, **asdict(record)}
        # mkstemp creates the file 0600; os.replace swaps it in whole, so a kill mid-write
        # leaves the old record or the new one, never half of one.
        fd, temporary = tempfile.mkstemp(dir=self.directory, prefix=".", suffix=".tmp")
        try:
            with os.fdopen(fd, "w") as out:
                json.dump(data, out)
                out.flush()
                os.fsync(out.fileno())
            os.replace(temporary, self._path(record.api, record.file))
        except BaseException:
            with contextlib.suppress(FileNotFoundError):
                os.unlink(temporary)
            raise

    def remove(self, record: UploadRecord) -> None:
        self._path(record.api, record.file).unlink(missing_ok=True)

    def _forget_path(self, api: str, path: str) -> None:
        """Drop records of another size, mtime or body of this file: they can never resume."""
        if not self.directory.is_dir():
            return
        for candidate in self.directory.glob("*.json"):
            found = self._read(candidate)
            if found is not None and found.api == api and found.file.path == path:
                candidate.unlink(missing_ok=True)

    @staticmethod
    def _read(path: Path) -> UploadRecord | None:
        """The record in `path`; None when there is none or it cannot be understood."""
        try:
            data = json.loads(path.read_text())
            if data.get("version") != RECORD_VERSION:
                return None
            return UploadRecord(
                api=data["api"],
                file=FileIdentity(**data["file"]),
                body=data["body"],
                idempotency_key=data["idempotency_key"],
                file_id=data["file_id"],
            )
        except (OSError, ValueError, KeyError, TypeError, AttributeError):
            return None
