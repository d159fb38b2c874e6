"""Pure decisions of an upload: its object keys, its parts, its request fingerprint, cursors."""

from __future__ import annotations

import base64
import binascii
import hashlib
import json
import uuid
from dataclasses import dataclass
from datetime import datetime

from app.config import MAX_PARTS
from app.errors import ValidationFailed
from app.schemas import CreateUploadRequest


@dataclass(frozen=True, slots=True)
class MultipartPlan:
    part_size: int
    part_count: int
    expires_at: datetime  # the deadline for asking part URLs and uploading parts


def object_key(prefix: str, owner: str, file_id: uuid.UUID) -> str:
    """The object key: server data only (owner hash + file id), never client text."""
    owner_hash = hashlib.sha256(owner.encode()).hexdigest()[:32]
    return f"{prefix}{owner_hash}/{file_id}"


def staging_key(key: str) -> str:
    """Where a form upload's policy (or a PUT URL, on a store that ignores If-None-Match)
    writes: such an upload cannot be create-only, so the verified bytes are copied from here
    to the file's own key, which no URL names."""
    return f"{key}.upload"


def part_plan(size: int, preferred: int) -> int:
    """The part size for a file: the preferred one, grown (in whole MiB) to need at most
    10,000 parts."""
    needed = -(-size // MAX_PARTS)
    mib = 1024 * 1024
    return max(preferred, -(-needed // mib) * mib)


def part_sizes(size: int, part_size: int) -> list[int]:
    """Each part's exact length; the last may be shorter."""
    count = -(-size // part_size)
    return [part_size] * (count - 1) + [size - part_size * (count - 1)]


def request_fingerprint(request: CreateUploadRequest) -> str:
    """A digest of the normalised request body, to tell a retry from a different request."""
    # Defaults left out: a field added later (with its default) must not change old digests.
    body = request.model_dump(exclude_defaults=True)
    canonical = json.dumps(body, sort_keys=True, ensure_ascii=False)
    return hashlib.sha256(canonical.encode()).hexdigest()


def _encode(raw: bytes) -> str:
    return base64.urlsafe_b64encode(raw).rstrip(b"=").decode()


def _decode(cursor: str, parameter: str, length: int) -> bytes:
    try:
        raw = base64.urlsafe_b64decode(cursor + "=" * (-len(cursor) % 4))
    except (binascii.Error, ValueError):
        raw = b""
    if len(raw) != length:
        raise ValidationFailed(errors=[{"loc": ["query", parameter], "msg": "invalid cursor"}])
    return raw


def encode_cursor(file_id: uuid.UUID) -> str:
    return _encode(file_id.bytes)


def decode_cursor(cursor: str) -> uuid.UUID:
    return uuid.UUID(bytes=_decode(cursor, "cursor", 16))


def encode_seq_cursor(seq: int) -> str:
    """The position after (or before) the row `seq` of a sequence (opaque to clients)."""
    return _encode(seq.to_bytes(8, "big"))


def decode_seq_cursor(cursor: str, parameter: str = "cursor") -> int:
    return int.from_bytes(_decode(cursor, parameter, 8), "big")


def encode_event_cursor(seq: int) -> str:
    """The feed's position after the event `seq`."""
    return encode_seq_cursor(seq)


def decode_event_cursor(cursor: str) -> int:
    return decode_seq_cursor(cursor, "after")
