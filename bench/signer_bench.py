"""The signer micro-benchmark, in the bench's own process: s3gate's Signer as the app builds it,
boto3's generate_presigned_url with the same parameters, and the bare SigV4 HMAC chain."""

from __future__ import annotations

import asyncio
import base64
import dataclasses
import hashlib
import hmac
import os
import timeit
import urllib.parse
from collections.abc import Callable
from typing import Any

# Imported once at start-up (bench.run imports this module): the in-process signer benchmark
# then measures the same tree as the first server, even if app/ is edited while the bench runs.
from app.config import Settings, load_settings
from app.filenames import DOWNLOAD_CACHE_CONTROL
from app.main import create_app
from app.signer import Signer
from bench.common import FILE_SIZE, OWNER, BenchError, file_bytes


@dataclasses.dataclass
class SignerResult:
    iterations: int
    s3gate_put_us: float
    s3gate_get_us: float
    boto3_put_us: float
    boto3_get_us: float
    hmac_chain_us: float
    how_built: str


def _per_call_us(fn: Callable[[], object], iterations: int) -> float:
    fn()  # warm caches (botocore loads its models on first use)
    best = min(timeit.repeat(fn, number=iterations, repeat=3))
    return best / iterations * 1e6


def _bare_hmac_chain(secret: str, region: str) -> Callable[[], str]:
    """The irreducible SigV4 work for one URL: derive the signing key (4 HMACs), hash the
    canonical request (1 SHA-256) and sign the string to sign (1 HMAC)."""
    amz_date, date = "20260101T000000Z", "20260101"
    scope = f"{date}/{region}/s3/aws4_request"
    canonical = (
        "PUT\n/s3gate-bench/uploads/bench-user/0190c1de-0000-7000-8000-000000000000\n"
        "X-Amz-Algorithm=AWS4-HMAC-SHA256&X-Amz-Credential=S3GATEBENCH%2F"
        + scope.replace("/", "%2F")
        + "&X-Amz-Date="
        + amz_date
        + "&X-Amz-Expires=900"
        "&X-Amz-SignedHeaders=content-length%3Bcontent-type%3Bhost%3Bif-none-match"
        "%3Bx-amz-checksum-sha256\n"
        "content-length:1024\ncontent-type:text/plain\nhost:127.0.0.1:8333\nif-none-match:*\n"
        "x-amz-checksum-sha256:47DEQpj8HBSa+/TImW+5JCeuQeRkm5NMpJWZG3hSuFU=\n\n"
        "content-length;content-type;host;if-none-match;x-amz-checksum-sha256\nUNSIGNED-PAYLOAD"
    ).encode()
    key = ("AWS4" + secret).encode()

    def chain() -> str:
        k = hmac.digest(key, date.encode(), "sha256")
        k = hmac.digest(k, region.encode(), "sha256")
        k = hmac.digest(k, b"s3", "sha256")
        k = hmac.digest(k, b"aws4_request", "sha256")
        digest = hashlib.sha256(canonical).hexdigest()
        to_sign = f"AWS4-HMAC-SHA256\n{amz_date}\n{scope}\n{digest}".encode()
        return hmac.new(k, to_sign, hashlib.sha256).hexdigest()

    return chain


async def _signer_from_lifespan(settings: Any, iterations: int) -> SignerResult:
    """Time the Signer exactly as the app builds it: run create_app's lifespan (which calls
    app.lifespan.s3_clients and Signer(...) however the tree does that today) and take the
    Signer the service holds, so constructor changes and S3GATE_SIGNER are followed."""
    import boto3
    from botocore.config import Config

    app = create_app(settings)
    async with app.router.lifespan_context(app):
        signer = _find_signer(app.state.s3gate)
        engine = getattr(settings, "signer", None)
        how = "the app's own, built by its lifespan" + (
            f", S3GATE_SIGNER={engine}" if engine is not None else ""
        )

        key = f"{settings.s3_key_prefix}{OWNER}/0190c1de-0000-7000-8000-000000000000"
        checksum = base64.b64encode(hashlib.sha256(file_bytes()).digest()).decode()
        disposition = "attachment; filename=\"report.txt\"; filename*=UTF-8''report.txt"
        put_ttl, get_ttl = settings.upload_url_ttl_seconds, settings.download_url_ttl_seconds

        def s3gate_put() -> object:
            return signer.presign_put(
                key,
                content_type="text/plain",
                content_length=FILE_SIZE,
                checksum_sha256=checksum,
                ttl_seconds=put_ttl,
            )

        def s3gate_get() -> object:
            return signer.presign_get(
                key,
                response_content_type="text/plain",
                response_content_disposition=disposition,
                response_cache_control=DOWNLOAD_CACHE_CONTROL,
                ttl_seconds=get_ttl,
            )

        # A plain boto3 client with the same endpoint, region, addressing and checksum policy.
        client = boto3.session.Session(region_name=settings.s3_region).client(
            "s3",
            endpoint_url=settings.signing_endpoint_url,
            config=Config(
                signature_version="s3v4",
                s3={"addressing_style": settings.s3_addressing_style},
                request_checksum_calculation="when_required",
            ),
        )
        put_params = {
            "Bucket": settings.s3_bucket,
            "Key": key,
            "ContentType": "text/plain",
            "ContentLength": FILE_SIZE,
            "ChecksumSHA256": checksum,
            "IfNoneMatch": "*",
        }
        get_params = {
            "Bucket": settings.s3_bucket,
            "Key": key,
            "ResponseContentType": "text/plain",
            "ResponseContentDisposition": disposition,
            "ResponseCacheControl": DOWNLOAD_CACHE_CONTROL,
        }

        def boto3_put() -> object:
            return client.generate_presigned_url("put_object", Params=put_params, ExpiresIn=put_ttl)

        def boto3_get() -> object:
            return client.generate_presigned_url("get_object", Params=get_params, ExpiresIn=get_ttl)

        for name, ours, theirs in (
            ("PUT", s3gate_put(), boto3_put()),
            ("GET", s3gate_get(), boto3_get()),
        ):
            if _signed_parts(getattr(ours, "url", "")) != _signed_parts(str(theirs)):
                raise BenchError(
                    f"s3gate's and boto3's {name} URLs sign different things; "
                    "the comparison would not be like for like"
                )
        secret = os.environ["AWS_SECRET_ACCESS_KEY"]
        result = SignerResult(
            iterations=iterations,
            s3gate_put_us=_per_call_us(s3gate_put, iterations),
            s3gate_get_us=_per_call_us(s3gate_get, iterations),
            boto3_put_us=_per_call_us(boto3_put, iterations),
            boto3_get_us=_per_call_us(boto3_get, iterations),
            hmac_chain_us=_per_call_us(_bare_hmac_chain(secret, settings.s3_region), iterations),
            how_built=how,
        )
        client.close()
        return result


def _find_signer(state: Any) -> Signer:
    """The Signer inside the app's state: on the service, or one attribute further down."""
    seen: list[Any] = [state]
    for _depth in range(3):
        found: list[Any] = []
        for holder in seen:
            fields = getattr(holder, "__dict__", None) or {
                name: getattr(holder, name)
                for name in getattr(type(holder), "__slots__", ())
                if hasattr(holder, name)
            }
            for value in fields.values():
                if isinstance(value, Signer):
                    return value
                if not isinstance(value, str | int | float | bool | bytes | type(None)):
                    found.append(value)
        seen = found
    raise BenchError("no app.signer.Signer found in app.state.s3gate after the lifespan ran")


def _signed_parts(url: str) -> tuple[str, str, list[str]]:
    """(path, signed headers, query parameter names): what two presigned URLs for the same
    request must agree on; date, signature and parameter order may differ."""
    parts = urllib.parse.urlsplit(url)
    query = urllib.parse.parse_qs(parts.query)
    return parts.path, query.get("X-Amz-SignedHeaders", [""])[0], sorted(query)


def signer_benchmark(iterations: int) -> SignerResult:
    """Settings come from this process's environment, which main() set like the servers'."""
    return asyncio.run(_signer_from_lifespan(load_settings(Settings), iterations))
