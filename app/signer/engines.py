"""SigV4 query signing for one bucket: two engines behind one protocol.

- `DirectEngine` (S3GATE_SIGNER=sigv4, the default): SigV4 query signing done here. botocore's
  presigner spends ~3/4 of its time on endpoint resolution and event hooks that give the same
  answer for every key of one bucket; this engine asks botocore for the bucket's endpoint
  once, caches the day's signing key, and per URL does only the canonical request and one HMAC.
- `Boto3Engine` (S3GATE_SIGNER=boto3): botocore's `generate_presigned_url`, the reference. It
  also signs form-upload policies, which the direct engine does not do.

Both produce byte-identical URLs: tests/unit/test_signer_differential.py proves it over many
cases, and cross_check.py proves it at startup for the configured endpoint and the botocore
that is installed. Pure CPU: no engine does I/O.
"""

from __future__ import annotations

import contextlib
import functools
import hashlib
import hmac
import re
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import TYPE_CHECKING, Any, NamedTuple, Protocol
from urllib.parse import quote, urlsplit

import botocore
import botocore.exceptions
from botocore.credentials import Credentials

if TYPE_CHECKING:
    from mypy_boto3_s3 import S3Client

_AMZ_DATE = re.compile(r"[?&]X-Amz-Date=(\d{8}T\d{6}Z)")
_AMZ_DATE_FORMAT = "%Y%m%dT%H%M%SZ"
_UNRESERVED = "-_.~"  # RFC 3986 unreserved punctuation: what SigV4 leaves unencoded
_DEFAULT_PORTS = {"http": 80, "https": 443}
_TEMPLATE_KEY = "k"
_TEMPLATE_HOOK = "s3gate-unsigned-template"
_CHECK_HOOK = "s3gate-cross-check-keys"


class Keys(NamedTuple):
    """Frozen credentials: what one signature is computed with."""

    access_key: str
    secret_key: str
    token: str | None


# The requests an engine signs, described by what they bind; each engine spells them its way.


class PutObject(NamedTuple):
    key: str
    content_type: str
    content_length: int
    checksum_sha256: str | None
    if_none_match: str | None  # "*": the URL can create the object, never overwrite it
    acl: str | None = None  # a canned ACL the client must send (stores that honour unsigned ones)


class GetObject(NamedTuple):
    key: str
    response_content_type: str
    response_content_disposition: str
    response_cache_control: str


class UploadPart(NamedTuple):
    key: str
    upload_id: str
    part_number: int
    content_length: int


Request = PutObject | GetObject | UploadPart


class SigningEngine(Protocol):
    """Presigns requests for one bucket."""

    @property
    def origin(self) -> str:
        """The scheme://host[:port] every URL of this engine starts with."""
        ...

    def presign(self, request: Request, ttl_seconds: int, keys: Keys) -> tuple[str, datetime]:
        """(the URL, the end of its validity) for `request`, valid `ttl_seconds`."""
        ...


@functools.lru_cache(maxsize=4096)
def _encode(value: str, safe: str = _UNRESERVED) -> str:
    # Memoised: content types, signed-header lists and a hot file's key and disposition repeat,
    # and a dict lookup is several times cheaper than quote().
    return quote(value, safe=safe)


@functools.lru_cache(maxsize=8)  # a few access keys and scopes a day
def _encoded_credential(access_key: str, scope: str) -> str:
    return _encode(f"{access_key}/{scope}")


def _signed_at(url: str) -> datetime:
    match = _AMZ_DATE.search(url)
    if match is None:  # pragma: no cover - botocore always signs with SigV4 query auth here
        raise RuntimeError("presigned URL without X-Amz-Date; is signature_version s3v4?")
    return datetime.strptime(match.group(1), _AMZ_DATE_FORMAT).replace(tzinfo=UTC)


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


@dataclass(frozen=True, slots=True)
class Endpoint:
    """Where one bucket's objects live, as botocore resolves it (asked once, at startup)."""

    origin: str  # scheme://netloc as botocore writes it into URLs
    path_prefix: str  # "/bucket/" (path style) or "/" (virtual-hosted)
    host: str  # the Host header value SigV4 signs
    region: str  # the signing region botocore chose


def resolve_endpoint(client: S3Client, bucket: str) -> Endpoint:
    """Ask botocore once where `bucket` is addressed, so every later URL agrees with it."""
    template, region = _template_url(client, bucket)
    parts = urlsplit(template)
    if not parts.path.endswith("/" + _TEMPLATE_KEY) or not region or parts.hostname is None:
        raise RuntimeError("unexpected presigned URL shape from botocore; use S3GATE_SIGNER=boto3")
    host = f"[{parts.hostname}]" if ":" in parts.hostname else parts.hostname
    if parts.port is not None and parts.port != _DEFAULT_PORTS.get(parts.scheme):
        host = f"{host}:{parts.port}"
    return Endpoint(
        origin=_origin(template),
        path_prefix=parts.path[: -len(_TEMPLATE_KEY)],
        host=host,
        region=region,
    )


class DirectEngine:
    """SigV4 query signing with the same steps, names and encodings as botocore's
    S3SigV4QueryAuth, for an endpoint resolved once."""

    def __init__(self, endpoint: Endpoint, *, clock: Callable[[], float] = time.time) -> None:
        self._endpoint = endpoint
        self._clock = clock
        self._signing_keys: dict[tuple[str, str], bytes] = {}

    @classmethod
    def for_bucket(
        cls, client: S3Client, bucket: str, *, clock: Callable[[], float] = time.time
    ) -> DirectEngine:
        return cls(resolve_endpoint(client, bucket), clock=clock)

    def with_clock(self, clock: Callable[[], float]) -> DirectEngine:
        """The same engine (its own signing-key cache) reading another clock."""
        return type(self)(self._endpoint, clock=clock)

    @property
    def origin(self) -> str:
        return self._endpoint.origin

    def presign(self, request: Request, ttl_seconds: int, keys: Keys) -> tuple[str, datetime]:
        headers: dict[str, str]  # what the URL signs besides host, names in lower case
        query: tuple[tuple[str, str], ...] = ()  # the operation's own query parameters
        match request:
            case PutObject():
                method = "PUT"
                headers = {
                    "content-type": request.content_type,
                    "content-length": str(request.content_length),
                }
                if request.if_none_match is not None:
                    headers["if-none-match"] = request.if_none_match
                if request.checksum_sha256 is not None:
                    headers["x-amz-checksum-sha256"] = request.checksum_sha256
                if request.acl is not None:
                    headers["x-amz-acl"] = request.acl
            case GetObject():
                method, headers = "GET", {}
                query = (
                    ("response-content-type", request.response_content_type),
                    ("response-content-disposition", request.response_content_disposition),
                    ("response-cache-control", request.response_cache_control),
                )
            case UploadPart():
                method = "PUT"
                headers = {"content-length": str(request.content_length)}
                query = (("partNumber", str(request.part_number)), ("uploadId", request.upload_id))
        # The same steps, names and encodings as botocore's S3SigV4QueryAuth.
        endpoint = self._endpoint
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
            f"&X-Amz-Credential={_encoded_credential(keys.access_key, scope)}"
            f"&X-Amz-Date={amz_date}&X-Amz-Expires={ttl_seconds}"
            f"&X-Amz-SignedHeaders={_encode(signed_headers)}"
        )
        if keys.token is not None:
            auth_query += f"&X-Amz-Security-Token={_encode(keys.token)}"
        url_query = f"{operation_query}&{auth_query}" if operation_query else auth_query

        path = endpoint.path_prefix + _encode(request.key, safe="/~")
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
        signing_key = self._signing_key(keys.secret_key, amz_date[:8], endpoint.region)
        signature = hmac.new(signing_key, string_to_sign.encode(), hashlib.sha256).hexdigest()
        url = f"{endpoint.origin}{path}?{url_query}&X-Amz-Signature={signature}"
        return url, datetime.fromtimestamp(now, UTC) + timedelta(seconds=ttl_seconds)

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


class Boto3Engine:
    """botocore's presigner on the signing client.

    botocore signs with the client's own credentials: the chain the `keys` handed to `presign`
    were frozen from (or, inside `signing_with`, the keys given there). It reads its own clock.
    """

    def __init__(self, client: S3Client, bucket: str) -> None:
        self._client = client
        self._bucket = bucket

    @functools.cached_property
    def origin(self) -> str:
        # Asked when first needed: this engine resolves nothing at startup.
        return _origin(_template_url(self._client, self._bucket)[0])

    def presign(self, request: Request, ttl_seconds: int, keys: Keys) -> tuple[str, datetime]:
        params: dict[str, Any]
        match request:
            case PutObject():
                operation = "put_object"
                params = {
                    "Bucket": self._bucket,
                    "Key": request.key,
                    "ContentType": request.content_type,
                    "ContentLength": request.content_length,
                }
                if request.if_none_match is not None:
                    params["IfNoneMatch"] = request.if_none_match
                if request.checksum_sha256 is not None:
                    params["ChecksumSHA256"] = request.checksum_sha256
                if request.acl is not None:
                    params["ACL"] = request.acl
            case GetObject():
                operation = "get_object"
                params = {
                    "Bucket": self._bucket,
                    "Key": request.key,
                    "ResponseContentType": request.response_content_type,
                    "ResponseContentDisposition": request.response_content_disposition,
                    "ResponseCacheControl": request.response_cache_control,
                }
            case UploadPart():
                operation = "upload_part"
                params = {
                    "Bucket": self._bucket,
                    "Key": request.key,
                    "PartNumber": request.part_number,
                    "UploadId": request.upload_id,
                    "ContentLength": request.content_length,
                }
        url = self._client.generate_presigned_url(operation, Params=params, ExpiresIn=ttl_seconds)
        return url, _signed_at(url) + timedelta(seconds=ttl_seconds)

    def presign_post(
        self, key: str, fields: dict[str, str], conditions: list[Any], ttl_seconds: int
    ) -> dict[str, Any]:
        """botocore's form upload ({"url", "fields"}) whose policy holds `conditions`."""
        return self._client.generate_presigned_post(
            self._bucket, key, Fields=fields, Conditions=conditions, ExpiresIn=ttl_seconds
        )

    @contextlib.contextmanager
    def signing_with(self, keys: Keys) -> Iterator[None]:
        """Within the block botocore signs this engine's URLs with `keys`, not the client's
        credentials (which may be missing, or need a network call to freeze)."""
        credentials = Credentials(keys.access_key, keys.secret_key, keys.token)

        def use_keys(request: Any, **_: Any) -> None:
            # Read by botocore's RequestSigner.sign right after the before-sign event.
            request.context.setdefault("signing", {})["request_credentials"] = credentials

        events = self._client.meta.events
        events.register_first("before-sign.s3", use_keys, unique_id=_CHECK_HOOK)
        try:
            yield
        finally:
            events.unregister("before-sign.s3", unique_id=_CHECK_HOOK)
