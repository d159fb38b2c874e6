"""The completion verdict, pure: does the stored object prove the declaration? Each check
answers None (it holds) or the Rejection; completion runs them in order, reading only what the
next check needs."""

from __future__ import annotations

from typing import NamedTuple

from app.ledger import FileRecord
from app.mediatypes import essence
from app.sniff import check_magic
from app.storage import ObjectInfo


class Rejection(NamedTuple):
    """Why an upload is rejected: a stable code (the `file.rejected` event's `reason`) and a
    sentence for the client's problem detail."""

    code: str
    detail: str


# What a rejection's code says, for an answer given after the background worker decided.
DESCRIBED = {
    "size_mismatch": "the stored size differs from the declared one",
    "content_type_mismatch": "stored content type differs from the declared one",
    "unsigned_headers": "the object carries headers s3gate did not sign",
    "checksum_unavailable": "the store holds no SHA-256 for this object",
    "checksum_mismatch": "stored SHA-256 differs from the declared checksum",
    "content_mismatch": "its first bytes are not of the declared type",
    "malware": "the malware scanner found malware",
    "too_large_to_scan": "the file is larger than the malware scan limit",
}


def declaration_mismatch(record: FileRecord, info: ObjectInfo) -> Rejection | None:
    """Why the stored object's size, type or headers break the declaration, or None."""
    if info.size != record.size:
        return Rejection(
            "size_mismatch",
            f"stored size {info.size} differs from the declared {record.size} bytes",
        )
    if essence(info.content_type) != record.content_type:
        return Rejection("content_type_mismatch", DESCRIBED["content_type_mismatch"])
    if info.foreign_headers:
        # Sent unsigned with the upload, they would be served with every download.
        headers = ", ".join(info.foreign_headers)
        return Rejection(
            "unsigned_headers", f"the object carries headers s3gate did not sign: {headers}"
        )
    return None


def checksum_mismatch(declared: str | None, stored: str | None) -> Rejection | None:
    """Why the stored SHA-256 does not prove the declared one, or None."""
    if declared is None or stored == declared:
        return None
    if stored is None:
        return Rejection("checksum_unavailable", DESCRIBED["checksum_unavailable"])
    return Rejection("checksum_mismatch", DESCRIBED["checksum_mismatch"])


def content_mismatch(record: FileRecord, head: bytes) -> Rejection | None:
    """Why the object's first bytes are not of the declared type (magic numbers), or None."""
    detail = check_magic(record.content_type, head, record.size)
    return None if detail is None else Rejection("content_mismatch", detail)
