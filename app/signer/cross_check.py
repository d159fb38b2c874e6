"""The startup cross-check: the direct SigV4 engine and botocore's sign fixed requests alike,
or the service refuses to start (so an endpoint setting or a botocore upgrade can never
silently change the URLs handed out)."""

from __future__ import annotations

from datetime import datetime
from urllib.parse import parse_qsl, urlsplit

import botocore

from app.config import ConfigError
from app.signer.engines import (
    Boto3Engine,
    DirectEngine,
    GetObject,
    Keys,
    PutObject,
    Request,
    UploadPart,
    _signed_at,
)

# Fixed keys and requests: the check compares signing, not credentials, so it never needs (or
# freezes) the service's own. The requests have the shapes the service signs (keys of
# S3GATE_S3_KEY_PREFIX characters, owner hash and file id; the API's media types and
# Content-Disposition; an opaque upload id and session token full of characters to encode).
_CHECK_KEYS = Keys(
    "AKIDS3GATECROSSCHECK", "s3gate/cross+check=fixed/not-a-key", "s3gate+check/token=="
)
_CHECK_TTL = 900
_CHECK_KEY = "up_loads.v-1/0123456789abcdef0123456789abcdef/0190c1de-0000-7000-8000-000000000000"
_CHECK_REQUESTS: tuple[tuple[str, Request], ...] = (
    (
        "PUT",
        PutObject(
            key=_CHECK_KEY,
            content_type="application/vnd.s3gate.check+json",
            content_length=1234,
            checksum_sha256="n4bQgYhMfWWaL+qgxVrQFaO/TxsrC4Is0V1sFbDwCgg=",
            if_none_match="*",
        ),
    ),
    (
        # The other shape: a staged PUT (no If-None-Match, no checksum) with a signed ACL.
        "PUT with ACL",
        PutObject(
            key=_CHECK_KEY,
            content_type="text/plain; charset=utf-8",
            content_length=0,
            checksum_sha256=None,
            if_none_match=None,
            acl="bucket-owner-full-control",
        ),
    ),
    (
        "GET",
        GetObject(
            key=_CHECK_KEY,
            response_content_type="application/vnd.s3gate.check+json",
            response_content_disposition=(
                'attachment; filename="resume 2026 _final_.pdf"; '
                "filename*=UTF-8''r%C3%A9sum%C3%A9%202026%20%22final%22.pdf"
            ),
            response_cache_control="private, no-store",
        ),
    ),
    (
        "multipart part",
        UploadPart(
            key=_CHECK_KEY,
            upload_id="2~Zk.Q_x-9+a/b=c",
            part_number=10_000,
            content_length=5 * 1024**2,
        ),
    ),
)


def cross_check(direct: DirectEngine, reference: Boto3Engine) -> None:
    """Sign a fixed PUT, GET and part URL with both engines; a ConfigError if any differ.

    botocore reads its own clock, so it signs first and the direct engine signs at the second
    botocore wrote into X-Amz-Date: one instant for both. The URLs are compared and dropped,
    never served or logged, and the error names the part that differs, never a value.
    """
    with reference.signing_with(_CHECK_KEYS):
        for name, request in _CHECK_REQUESTS:
            try:
                theirs = reference.presign(request, _CHECK_TTL, _CHECK_KEYS)
            except botocore.exceptions.BotoCoreError as exc:
                raise ConfigError(_refusal(name, f"botocore raised {type(exc).__name__}")) from None
            engine = direct.with_clock(_signed_at(theirs[0]).timestamp)
            ours = engine.presign(request, _CHECK_TTL, _CHECK_KEYS)
            if ours != theirs:
                raise ConfigError(_refusal(name, f"{_difference(ours, theirs)} differs"))


def _refusal(name: str, what: str) -> str:
    return (
        f"S3GATE_SIGNER=sigv4: the direct SigV4 engine and botocore {botocore.__version__} "
        f"do not sign the startup check's {name} URL alike ({what}) for the endpoint that "
        "S3GATE_S3_ENDPOINT_URL / S3GATE_S3_PUBLIC_ENDPOINT_URL, S3GATE_S3_ADDRESSING_STYLE and "
        "S3GATE_S3_REGION configure. Set S3GATE_SIGNER=boto3 to sign with botocore alone, "
        "and report this."
    )


def _difference(ours: tuple[str, datetime], theirs: tuple[str, datetime]) -> str:
    """The part of two presigned URLs that differs, by name only (values carry the keys)."""
    a, b = urlsplit(ours[0]), urlsplit(theirs[0])
    if (a.scheme, a.netloc) != (b.scheme, b.netloc):
        return "the origin"
    if a.path != b.path:
        return "the path"
    ours_query, theirs_query = parse_qsl(a.query), parse_qsl(b.query)
    if [k for k, _ in ours_query] != [k for k, _ in theirs_query]:
        return "the query parameters' names or order"
    for (name, mine), (_, other) in zip(ours_query, theirs_query, strict=True):
        if mine != other:
            return f"the query parameter {name}"
    if a.query != b.query:
        return "the query's encoding"
    return "the expiry time" if ours[1] != theirs[1] else "the URL"
