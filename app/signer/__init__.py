"""Presigned S3 requests for one bucket: what each URL binds, and a lifetime that never outlasts
the credentials. Pure CPU: (key, type, length, checksum, ttl) in, a PresignedRequest out.

The signing itself is one of the two engines of engines.py (S3GATE_SIGNER: "sigv4", the
direct one, by default; "boto3", botocore's, as a fallback), both behind `SigningEngine`.
Credentials always come from boto3's chain; refreshes are kept off the request path by
lifespan's background refresher.
"""

from __future__ import annotations

import base64
import functools
import json
import math
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from datetime import UTC, datetime
from types import MappingProxyType
from typing import TYPE_CHECKING, Any, Literal

from botocore.credentials import Credentials

from app.errors import CredentialsUnavailable
from app.profiles import PROFILES, StoreProfile
from app.signer.cross_check import cross_check
from app.signer.engines import (
    Boto3Engine,
    DirectEngine,
    GetObject,
    Keys,
    PutObject,
    Request,
    SigningEngine,
    UploadPart,
)

if TYPE_CHECKING:
    from mypy_boto3_s3 import S3Client

SignerEngine = Literal["sigv4", "boto3"]

_POLICY_EXPIRATION_FORMAT = "%Y-%m-%dT%H:%M:%SZ"
# X-Amz-Date has whole seconds and is read after we read the clock; one second of margin keeps
# expires_at at or before the credentials' expiry whatever the rounding.
_EXPIRY_MARGIN_SECONDS = 1
_CREATE_ONLY = "*"  # If-None-Match: * makes a PUT create the object, never overwrite it


@dataclass(frozen=True, slots=True)
class PresignedRequest:
    url: str
    method: str
    headers: Mapping[str, str]  # exactly the headers the client must send (besides length)
    expires_at: datetime  # the real end of validity


@dataclass(frozen=True, slots=True)
class PresignedPost:
    url: str
    fields: Mapping[str, str]  # every form field to send, in order, before the file itself
    expires_at: datetime  # the policy's expiration, which is what S3 enforces


class Signer:
    """Presigns PUT and GET requests for one bucket with the service's S3 credentials."""

    def __init__(
        self,
        client: S3Client,
        credentials: Credentials | None,
        bucket: str,
        *,
        engine: SignerEngine = "sigv4",
        clock: Callable[[], float] = time.time,
        profile: StoreProfile = PROFILES["aws"],
    ) -> None:
        self._credentials = credentials
        self._clock = clock
        self.profile = profile
        # What upload URLs bind besides type, length and key, as far as the store honours it.
        self._sign_checksums = profile.checksum_header
        self._acl = profile.acl
        # Form uploads are rare enough not to need the direct engine: botocore signs them.
        self._botocore = Boto3Engine(client, bucket)
        self._engine: SigningEngine = (
            DirectEngine.for_bucket(client, bucket, clock=clock)
            if engine == "sigv4"
            else self._botocore
        )

    def cross_check(self) -> None:
        """Refuse (ConfigError) to run a direct engine that signs unlike botocore does here.

        For startup: it signs a fixed PUT, GET and part URL both ways with fixed keys, never
        the service's, so it works without credentials too. With S3GATE_SIGNER=boto3 botocore
        signs every URL itself and there is nothing to compare.
        """
        if isinstance(self._engine, DirectEngine):
            cross_check(self._engine, self._botocore)

    @functools.cached_property
    def origin(self) -> str:
        """The scheme://host[:port] every URL of this signer starts with (for a page's CSP)."""
        return self._engine.origin

    def presign_put(
        self,
        key: str,
        *,
        content_type: str,
        content_length: int,
        checksum_sha256: str | None,
        ttl_seconds: int,
        create_only: bool = True,
    ) -> PresignedRequest:
        """A PUT URL bound to the key, type, length, the checksum where the store's profile
        says it enforces one, and a signed ACL where it honours unsigned ones; create-only
        unless the caller writes a staging key (the file's row decides, not this replica's
        profile, so a URL re-signed by any replica keeps the semantics of the first)."""
        headers = {"Content-Type": content_type}
        if_none_match = _CREATE_ONLY if create_only else None
        if if_none_match is not None:
            # Signed `If-None-Match: *`: the URL can create the object, never overwrite it.
            headers["If-None-Match"] = if_none_match
        checksum = checksum_sha256 if self._sign_checksums else None
        if checksum is not None:
            headers["x-amz-checksum-sha256"] = checksum
        if self._acl is not None:
            headers["x-amz-acl"] = self._acl
        request = PutObject(key, content_type, content_length, checksum, if_none_match, self._acl)
        url, expires_at = self._presign(request, ttl_seconds)
        return PresignedRequest(url, "PUT", MappingProxyType(headers), expires_at)

    def presign_upload_part(
        self,
        key: str,
        *,
        upload_id: str,
        part_number: int,
        content_length: int,
        ttl_seconds: int,
    ) -> PresignedRequest:
        """A PUT URL for one part of a multipart upload, bound to that part's exact length."""
        request = UploadPart(key, upload_id, part_number, content_length)
        url, expires_at = self._presign(request, ttl_seconds)
        return PresignedRequest(url, "PUT", MappingProxyType({}), expires_at)

    def presign_get(
        self,
        key: str,
        *,
        response_content_type: str,
        response_content_disposition: str,
        response_cache_control: str,
        ttl_seconds: int,
    ) -> PresignedRequest:
        """A GET URL whose response carries our Content-Type, Content-Disposition and
        Cache-Control, whatever metadata the object was stored with."""
        request = GetObject(
            key, response_content_type, response_content_disposition, response_cache_control
        )
        url, expires_at = self._presign(request, ttl_seconds)
        return PresignedRequest(url, "GET", MappingProxyType({}), expires_at)

    def presign_post(
        self,
        key: str,
        *,
        content_type: str,
        content_length: int,
        checksum_sha256: str | None,
        ttl_seconds: int,
    ) -> PresignedPost:
        """An HTML-form upload whose policy pins the key, type, exact size and checksum."""
        fields = {"Content-Type": content_type}
        conditions: list[Any] = [
            {"Content-Type": content_type},
            ["content-length-range", content_length, content_length],
        ]
        if checksum_sha256 is not None and self._sign_checksums:
            fields["x-amz-checksum-sha256"] = checksum_sha256
            conditions.append({"x-amz-checksum-sha256": checksum_sha256})
        if self._acl is not None:
            fields["acl"] = self._acl
            conditions.append({"acl": self._acl})
        ttl, _ = self._credentials_for(ttl_seconds)
        # botocore signs the policy (bucket and key conditions included) with the same
        # credentials chain.
        post = self._botocore.presign_post(key, fields, conditions, ttl)
        policy = json.loads(base64.b64decode(post["fields"]["policy"]))
        expires_at = datetime.strptime(policy["expiration"], _POLICY_EXPIRATION_FORMAT)
        return PresignedPost(
            post["url"], MappingProxyType(dict(post["fields"])), expires_at.replace(tzinfo=UTC)
        )

    def _presign(self, request: Request, ttl_seconds: int) -> tuple[str, datetime]:
        ttl, keys = self._credentials_for(ttl_seconds)
        return self._engine.presign(request, ttl, keys)

    @property
    def has_credentials(self) -> bool:
        """Whether there are credentials to sign with that have not expired (no network call)."""
        return self._credentials is not None and self._remaining(self._credentials) >= 1

    def _remaining(self, credentials: Credentials) -> float:
        # Seconds a URL signed now may live before the credentials run out (inf: static keys).
        expiry: datetime | None = getattr(credentials, "_expiry_time", None)
        if expiry is None:
            return math.inf
        return expiry.timestamp() - self._clock() - _EXPIRY_MARGIN_SECONDS

    def _credentials_for(self, requested: int) -> tuple[int, Keys]:
        """The TTL to sign with (cut so the URL dies no later than the credentials) and them."""
        credentials = self._credentials
        if credentials is None:
            raise CredentialsUnavailable()
        # Freezing first refreshes credentials that are about to expire, so the expiry read
        # next belongs to the credentials the signature will use (or to older, shorter ones).
        try:
            frozen = credentials.get_frozen_credentials()
        except Exception as exc:  # botocore raises bare RuntimeError for expired credentials
            raise CredentialsUnavailable() from exc
        if not frozen.access_key or not frozen.secret_key:
            raise CredentialsUnavailable()
        keys = Keys(frozen.access_key, frozen.secret_key, frozen.token)
        remaining = self._remaining(credentials)
        if remaining == math.inf:  # static keys never expire
            return requested, keys
        if remaining < 1:
            raise CredentialsUnavailable("The signing credentials have expired.")
        return min(requested, math.floor(remaining)), keys
