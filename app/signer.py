"""Pure-CPU SigV4 presigning: (key, method, headers, ttl) in, a PresignedRequest out. No I/O.

Two engines produce byte-identical URLs (tests/unit/test_signer_differential.py proves it):
- "sigv4" (default): SigV4 query signing done here directly. botocore's presigner spends ~3/4
  of its time on endpoint resolution and event hooks that give the same answer for every key
  of one bucket; this engine asks botocore for the bucket's endpoint once, caches the day's
  signing key, and per URL does only the canonical request and one HMAC.
- "boto3": `generate_presigned_url`, the reference, kept as a fallback (S3GATE_SIGNER=boto3).
Credentials always come from boto3's chain; refreshes are kept off the request path by
lifespan's background refresher.
"""

from __future__ import annotations

import base64
import functools
import hashlib
import hmac
import json
import math
import re
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from types import MappingProxyType
from typing import TYPE_CHECKING, Any, Literal, NamedTuple
from urllib.parse import quote, urlsplit

import botocore
from botocore.credentials import Credentials

from app.errors import CredentialsUnavailable

if TYPE_CHECKING:
    from mypy_boto3_s3 import S3Client

SignerEngine = Literal["sigv4", "boto3"]

_AMZ_DATE = re.compile(r"[?&]X-Amz-Date=(\d{8}T\d{6}Z)")
_AMZ_DATE_FORMAT = "%Y%m%dT%H%M%SZ"
_POLICY_EXPIRATION_FORMAT = "%Y-%m-%dT%H:%M:%SZ"
# X-Amz-Date has whole seconds and is read after we read the clock; one second of margin keeps
# expires_at at or before the credentials' expiry whatever the rounding.
_EXPIRY_MARGIN_SECONDS = 1
_UNRESERVED = "-_.~"  # RFC 3986 unreserved punctuation: what SigV4 leaves unencoded
_DEFAULT_PORTS = {"http": 80, "https": 443}
_TEMPLATE_KEY = "k"
_TEMPLATE_HOOK = "s3gate-unsigned-template"


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


class _Keys(NamedTuple):
    access_key: str
    secret_key: str
    token: str | None


@dataclass(frozen=True, slots=True)
class _Endpoint:
    """Where one bucket's objects live, as botocore resolves it (asked once, at startup)."""

    origin: str  # scheme://netloc as botocore writes it into URLs
    path_prefix: str  # "/bucket/" (path style) or "/" (virtual-hosted)
    host: str  # the Host header value SigV4 signs
    region: str  # the signing region botocore chose


@functools.lru_cache(maxsize=4096)
def _encode(value: str, safe: str = _UNRESERVED) -> str:
    # Memoised: content types, signed-header lists and a hot file's key and disposition repeat,
    # and a dict lookup is several times cheaper than quote().
    return quote(value, safe=safe)


def _template_url(client: S3Client, bucket: str) -> tuple[str, str]:
    """(an unsigned GET URL of a template key, the region botocore would sign it for).

    Unsigned, so the endpoint is known without credentials: a service that starts without
    them answers 503 on URL routes instead of failing to start. Signing changes only the
    query, never the scheme, host or path the URL is built from.
    """
    region: list[str] = []

    def unsigned(region_name: str, **_: Any) -> object:
        region.append(region_name)
        return botocore.UNSIGNED

    event = "choose-signer.s3.GetObject"
    # The stubs type every handler as returning None; choose-signer handlers answer a value.
    client.meta.events.register_first(event, unsigned, unique_id=_TEMPLATE_HOOK)  # type: ignore[arg-type]
    try:
        url = client.generate_presigned_url(
            "get_object", Params={"Bucket": bucket, "Key": _TEMPLATE_KEY}, ExpiresIn=60
        )
    finally:
        client.meta.events.unregister(event, unique_id=_TEMPLATE_HOOK)
    return url, region[0] if region else ""


def _origin(url: str) -> str:
    parts = urlsplit(url)
    return f"{parts.scheme}://{parts.netloc}"


def resolve_endpoint(client: S3Client, bucket: str) -> _Endpoint:
    """Ask botocore once where `bucket` is addressed, so every later URL agrees with it."""
    template, region = _template_url(client, bucket)
    parts = urlsplit(template)
    if not parts.path.endswith("/" + _TEMPLATE_KEY) or not region or parts.hostname is None:
        raise RuntimeError("unexpected presigned URL shape from botocore; use S3GATE_SIGNER=boto3")
    host = f"[{parts.hostname}]" if ":" in parts.hostname else parts.hostname
    if parts.port is not None and parts.port != _DEFAULT_PORTS.get(parts.scheme):
        host = f"{host}:{parts.port}"
    return _Endpoint(
        origin=_origin(template),
        path_prefix=parts.path[: -len(_TEMPLATE_KEY)],
        host=host,
        region=region,
    )


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
    ) -> None:
        self._client = client
        self._credentials = credentials
        self._bucket = bucket
        self._engine = engine
        self._clock = clock
        self._endpoint = resolve_endpoint(client, bucket) if engine == "sigv4" else None
        self._signing_keys: dict[tuple[str, str], bytes] = {}

    @functools.cached_property
    def origin(self) -> str:
        """The scheme://host[:port] every URL of this signer starts with (for a page's CSP)."""
        if self._endpoint is not None:
            return self._endpoint.origin
        # Asked when first needed: the boto3 engine resolves nothing at startup.
        return _origin(_template_url(self._client, self._bucket)[0])

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
        # Signed `If-None-Match: *`: the URL can create the object, never overwrite it.
        headers = {"Content-Type": content_type, "If-None-Match": "*"}
        if checksum_sha256 is not None:
            headers["x-amz-checksum-sha256"] = checksum_sha256
        if self._endpoint is None:
            params: dict[str, Any] = {
                "Bucket": self._bucket,
                "Key": key,
                "ContentType": content_type,
                "ContentLength": content_length,
                "IfNoneMatch": "*",
            }
            if checksum_sha256 is not None:
                params["ChecksumSHA256"] = checksum_sha256
            url, expires_at = self._presign_boto3("put_object", params, ttl_seconds)
        else:
            signed = {name.lower(): value for name, value in headers.items()}
            signed["content-length"] = str(content_length)
            url, expires_at = self._presign_direct("PUT", key, signed, (), ttl_seconds)
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
        if self._endpoint is None:
            params: dict[str, Any] = {
                "Bucket": self._bucket,
                "Key": key,
                "PartNumber": part_number,
                "UploadId": upload_id,
                "ContentLength": content_length,
            }
            url, expires_at = self._presign_boto3("upload_part", params, ttl_seconds)
        else:
            query = (("partNumber", str(part_number)), ("uploadId", upload_id))
            signed = {"content-length": str(content_length)}
            url, expires_at = self._presign_direct("PUT", key, signed, query, ttl_seconds)
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
        if self._endpoint is None:
            params = {
                "Bucket": self._bucket,
                "Key": key,
                "ResponseContentType": response_content_type,
                "ResponseContentDisposition": response_content_disposition,
                "ResponseCacheControl": response_cache_control,
            }
            url, expires_at = self._presign_boto3("get_object", params, ttl_seconds)
        else:
            query = (
                ("response-content-type", response_content_type),
                ("response-content-disposition", response_content_disposition),
                ("response-cache-control", response_cache_control),
            )
            url, expires_at = self._presign_direct("GET", key, {}, query, ttl_seconds)
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
        if checksum_sha256 is not None:
            fields["x-amz-checksum-sha256"] = checksum_sha256
            conditions.append({"x-amz-checksum-sha256": checksum_sha256})
        ttl, _ = self._credentials_for(ttl_seconds)
        # botocore signs the policy (bucket and key conditions included) with the same
        # credentials chain; form uploads are rare enough not to need the direct engine.
        post = self._client.generate_presigned_post(
            self._bucket, key, Fields=fields, Conditions=conditions, ExpiresIn=ttl
        )
        policy = json.loads(base64.b64decode(post["fields"]["policy"]))
        expires_at = datetime.strptime(policy["expiration"], _POLICY_EXPIRATION_FORMAT)
        return PresignedPost(
            post["url"], MappingProxyType(dict(post["fields"])), expires_at.replace(tzinfo=UTC)
        )

    # --- engines -----------------------------------------------------------------------------

    def _presign_boto3(
        self, operation: str, params: dict[str, Any], ttl_seconds: int
    ) -> tuple[str, datetime]:
        ttl, _ = self._credentials_for(ttl_seconds)
        url = self._client.generate_presigned_url(operation, Params=params, ExpiresIn=ttl)
        match = _AMZ_DATE.search(url)
        if match is None:  # pragma: no cover - botocore always signs with SigV4 query auth here
            raise RuntimeError("presigned URL without X-Amz-Date; is signature_version s3v4?")
        signed_at = datetime.strptime(match.group(1), _AMZ_DATE_FORMAT).replace(tzinfo=UTC)
        return url, signed_at + timedelta(seconds=ttl)

    def _presign_direct(
        self,
        method: str,
        key: str,
        headers: dict[str, str],
        query: tuple[tuple[str, str], ...],
        ttl_seconds: int,
    ) -> tuple[str, datetime]:
        # The same steps, names and encodings as botocore's S3SigV4QueryAuth.
        endpoint = self._endpoint
        assert endpoint is not None
        ttl, credentials = self._credentials_for(ttl_seconds)
        now = int(self._clock())
        amz_date = time.strftime(_AMZ_DATE_FORMAT, time.gmtime(now))
        scope = f"{amz_date[:8]}/{endpoint.region}/s3/aws4_request"
        headers["host"] = endpoint.host
        names = sorted(headers)
        signed_headers = ";".join(names)

        operation_query = "&".join(f"{_encode(k)}={_encode(v)}" for k, v in query)
        # Only the credential scope and token need encoding; the date and TTL are [0-9TZ] and
        # the names are fixed, so the constant parts are spelled out already encoded.
        auth_query = (
            "X-Amz-Algorithm=AWS4-HMAC-SHA256"
            f"&X-Amz-Credential={self._encoded_credential(credentials.access_key, scope)}"
            f"&X-Amz-Date={amz_date}&X-Amz-Expires={ttl}"
            f"&X-Amz-SignedHeaders={_encode(signed_headers)}"
        )
        if credentials.token is not None:
            auth_query += f"&X-Amz-Security-Token={_encode(credentials.token)}"
        url_query = f"{operation_query}&{auth_query}" if operation_query else auth_query

        path = endpoint.path_prefix + _encode(key, safe="/~")
        pairs = sorted(pair.partition("=")[::2] for pair in url_query.split("&"))
        canonical_query = "&".join(f"{k}={v}" for k, v in pairs)
        canonical_headers = "".join(f"{n}:{' '.join(headers[n].split())}\n" for n in names)
        canonical_request = (
            f"{method}\n{path}\n{canonical_query}\n{canonical_headers}\n"
            f"{signed_headers}\nUNSIGNED-PAYLOAD"
        )
        string_to_sign = (
            f"AWS4-HMAC-SHA256\n{amz_date}\n{scope}\n"
            f"{hashlib.sha256(canonical_request.encode()).hexdigest()}"
        )
        signing_key = self._signing_key(credentials.secret_key, amz_date[:8], endpoint.region)
        signature = hmac.new(signing_key, string_to_sign.encode(), hashlib.sha256).hexdigest()
        url = f"{endpoint.origin}{path}?{url_query}&X-Amz-Signature={signature}"
        return url, datetime.fromtimestamp(now, UTC) + timedelta(seconds=ttl)

    @functools.lru_cache(maxsize=4)  # noqa: B019 - one signer per process, a few keys a day
    def _encoded_credential(self, access_key: str, scope: str) -> str:
        return _encode(f"{access_key}/{scope}")

    def _signing_key(self, secret: str, datestamp: str, region: str) -> bytes:
        # The derived key changes once a day (or when credentials rotate); derive it once.
        cached = self._signing_keys.get((secret, datestamp))
        if cached is not None:
            return cached
        key = hmac.new(f"AWS4{secret}".encode(), datestamp.encode(), hashlib.sha256).digest()
        for part in (region, "s3", "aws4_request"):
            key = hmac.new(key, part.encode(), hashlib.sha256).digest()
        self._signing_keys = {(secret, datestamp): key}  # only today's key is ever needed
        return key

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

    def _credentials_for(self, requested: int) -> tuple[int, _Keys]:
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
        keys = _Keys(frozen.access_key, frozen.secret_key, frozen.token)
        remaining = self._remaining(credentials)
        if remaining == math.inf:  # static keys never expire
            return requested, keys
        if remaining < 1:
            raise CredentialsUnavailable("The signing credentials have expired.")
        return min(requested, math.floor(remaining)), keys
