"""Pure-CPU SigV4 presigning: (key, method, headers, ttl) in, a PresignedRequest out. No I/O.

boto3 is the signing engine here; the credentials come from boto3's standard chain. A refresh of
temporary credentials is kept off the request path by lifespan's background refresher.
"""

from __future__ import annotations

import math
import re
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from types import MappingProxyType
from typing import TYPE_CHECKING, Any

from botocore.credentials import Credentials

from app.errors import CredentialsUnavailable

if TYPE_CHECKING:
    from mypy_boto3_s3 import S3Client

_AMZ_DATE = re.compile(r"[?&]X-Amz-Date=(\d{8}T\d{6}Z)")
_AMZ_DATE_FORMAT = "%Y%m%dT%H%M%SZ"
# X-Amz-Date has whole seconds and is read after we read the clock; one second of margin keeps
# expires_at at or before the credentials' expiry whatever the rounding.
_EXPIRY_MARGIN_SECONDS = 1


@dataclass(frozen=True, slots=True)
class PresignedRequest:
    url: str
    method: str
    headers: Mapping[str, str]  # exactly the headers the client must send (besides length)
    expires_at: datetime  # the real end of validity


class Signer:
    """Presigns PUT and GET requests for one bucket with the service's S3 credentials."""

    def __init__(
        self,
        client: S3Client,
        credentials: Credentials | None,
        bucket: str,
        *,
        clock: Callable[[], float] = time.time,
    ) -> None:
        self._client = client
        self._credentials = credentials
        self._bucket = bucket
        self._clock = clock

    def presign_put(
        self,
        key: str,
        *,
        content_type: str,
        content_length: int,
        checksum_sha256: str | None,
        ttl_seconds: int,
    ) -> PresignedRequest:
        """A PUT URL bound to the key, type, length, checksum, and create-only semantics."""
        headers = {"Content-Type": content_type, "If-None-Match": "*"}
        params: dict[str, Any] = {
            "Bucket": self._bucket,
            "Key": key,
            "ContentType": content_type,
            "ContentLength": content_length,
            # Signed `If-None-Match: *`: the URL can create the object, never overwrite it.
            "IfNoneMatch": "*",
        }
        if checksum_sha256 is not None:
            params["ChecksumSHA256"] = checksum_sha256
            headers["x-amz-checksum-sha256"] = checksum_sha256
        url, expires_at = self._presign("put_object", params, ttl_seconds)
        return PresignedRequest(url, "PUT", MappingProxyType(headers), expires_at)

    def presign_get(
        self,
        key: str,
        *,
        response_content_type: str,
        response_content_disposition: str,
        ttl_seconds: int,
    ) -> PresignedRequest:
        """A GET URL whose response carries our Content-Type and Content-Disposition."""
        params = {
            "Bucket": self._bucket,
            "Key": key,
            "ResponseContentType": response_content_type,
            "ResponseContentDisposition": response_content_disposition,
        }
        url, expires_at = self._presign("get_object", params, ttl_seconds)
        return PresignedRequest(url, "GET", MappingProxyType({}), expires_at)

    def _presign(
        self, operation: str, params: dict[str, Any], ttl_seconds: int
    ) -> tuple[str, datetime]:
        ttl = self._bounded_ttl(ttl_seconds)
        url = self._client.generate_presigned_url(operation, Params=params, ExpiresIn=ttl)
        match = _AMZ_DATE.search(url)
        if match is None:  # pragma: no cover - botocore always signs with SigV4 query auth here
            raise RuntimeError("presigned URL without X-Amz-Date; is signature_version s3v4?")
        signed_at = datetime.strptime(match.group(1), _AMZ_DATE_FORMAT).replace(tzinfo=UTC)
        return url, signed_at + timedelta(seconds=ttl)

    def _bounded_ttl(self, requested: int) -> int:
        """The requested TTL, cut so the URL dies no later than the credentials that sign it."""
        credentials = self._credentials
        if credentials is None:
            raise CredentialsUnavailable()
        # Freezing first refreshes credentials that are about to expire, so the expiry read
        # next belongs to the credentials the signature will use (or to older, shorter ones).
        try:
            credentials.get_frozen_credentials()
        except Exception as exc:  # botocore raises bare RuntimeError for expired credentials
            raise CredentialsUnavailable() from exc
        expiry: datetime | None = getattr(credentials, "_expiry_time", None)
        if expiry is None:  # static keys never expire
            return requested
        remaining = expiry.timestamp() - self._clock() - _EXPIRY_MARGIN_SECONDS
        if remaining < 1:
            raise CredentialsUnavailable("The signing credentials have expired.")
        return min(requested, math.floor(remaining))
