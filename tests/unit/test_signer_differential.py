"""The direct SigV4 engine produces byte-identical URLs to botocore's generate_presigned_url.

Same credentials, same clock reading, same parameters; many generated cases. Presigning does no
network I/O, so no server is needed: this proves equality with the reference, and the
SeaweedFS tests prove the reference's URLs are accepted and enforced.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import random
import string
from collections.abc import Iterator
from datetime import UTC, datetime
from unittest import mock
from urllib.parse import urlsplit

import boto3
import pytest
from botocore.config import Config

from app.filenames import content_disposition
from app.profiles import PROFILES, UNKNOWN, StoreProfile
from app.signer import Signer

FROZEN = datetime(2026, 11, 30, 3, 4, 5, tzinfo=UTC)
SEED = 20261130
CASES_PER_SETUP = 60

# (endpoint_url, region, addressing_style, bucket)
SETUPS = [
    pytest.param("http://127.0.0.1:18433", "us-east-1", "path", "s3gate-dev", id="seaweed-path"),
    pytest.param("http://localhost:9000", "eu-west-1", "path", "b.with.dots", id="minio-path"),
    pytest.param(
        "https://s3.example.com:8443", "us-west-2", "virtual", "media", id="custom-virtual"
    ),
    pytest.param("https://objects.example.com", "ap-south-1", "auto", "photos", id="custom-auto"),
    pytest.param("https://s3.example.com:443", "us-east-1", "path", "b1", id="default-port"),
    pytest.param(None, "us-east-1", "auto", "my-bucket", id="aws-us-east-1-auto"),
    pytest.param(None, "eu-central-1", "virtual", "my-bucket", id="aws-virtual"),
    pytest.param(None, "eu-central-1", "path", "my-bucket", id="aws-path"),
    pytest.param(None, "us-east-1", "auto", "dotted.bucket.name", id="aws-dotted"),
]
# Every shape of PUT a profile asks for: create-only with checksum (aws), with an ACL too
# (ceph), staged with an ACL and no checksum (unknown).
PUT_PROFILES = [PROFILES["aws"], PROFILES["ceph"], UNKNOWN]
TOKENS = [None, "FwoGZXIvYXdzEJr//////////wEaDNf+example/token==", "a b+c%d~e"]
NASTY = " +~%&=?#/;:@!$'()*,\"<>[]{}|\\^`é漢字😀\u00a0-_."


def _text(rng: random.Random, alphabet: str, length: int) -> str:
    return "".join(rng.choice(alphabet) for _ in range(length))


def _cases(rng: random.Random) -> Iterator[dict[str, object]]:
    for index in range(CASES_PER_SETUP):
        key = "uploads/" + _text(rng, string.ascii_letters + NASTY, rng.randint(1, 40))
        if index % 7 == 0:
            key = key.replace("/", "//")
        data = rng.randbytes(rng.randint(1, 64))
        yield {
            "key": key,
            "content_type": rng.choice(
                [
                    "application/pdf",
                    "image/png",
                    "text/plain",
                    "application/vnd.ms-excel",
                    "application/x.a+b-c",
                    "video/mp4",
                ]
            ),
            "content_length": rng.choice([1, len(data), 5 * 1024**3, rng.randint(1, 10**9)]),
            "checksum": (
                base64.b64encode(hashlib.sha256(data).digest()).decode() if index % 2 else None
            ),
            "filename": _text(rng, string.ascii_letters + NASTY, rng.randint(1, 30)),
            "disposition": rng.choice(["attachment", "inline"]),
            "cache_control": rng.choice(["private, no-store", "no-cache", "max-age=0, s-maxage=1"]),
            "ttl": rng.choice([1, 60, 900, 604800]),
            "token": TOKENS[index % len(TOKENS)],
            # Real upload ids are opaque strings of URL-unsafe characters too.
            "upload_id": _text(rng, string.ascii_letters + string.digits + "+/=._-~", 40),
            "part_number": rng.randint(1, 10_000),
        }


def _signers(
    endpoint: str | None,
    region: str,
    style: str,
    bucket: str,
    token: str | None,
    profile: StoreProfile = PROFILES["aws"],
) -> tuple[Signer, Signer]:
    session = boto3.session.Session(
        aws_access_key_id="AKIDEXAMPLE",
        aws_secret_access_key="wJalrXUtnFEMI/K7MDENG+bPxRfiCYEXAMPLEKEY",
        aws_session_token=token,
        region_name=region,
    )
    client = session.client(
        "s3",
        endpoint_url=endpoint,
        config=Config(
            signature_version="s3v4",
            s3={"addressing_style": style},  # type: ignore[typeddict-item]
            request_checksum_calculation="when_required",
        ),
    )
    credentials = session.get_credentials()
    clock = FROZEN.timestamp
    return (
        Signer(client, credentials, bucket, engine="sigv4", clock=clock, profile=profile),
        Signer(client, credentials, bucket, engine="boto3", clock=clock, profile=profile),
    )


@pytest.fixture(autouse=True)
def _frozen_botocore_clock() -> Iterator[None]:
    naive = FROZEN.replace(tzinfo=None)
    with mock.patch("botocore.auth.get_current_datetime", return_value=naive):
        yield


@pytest.mark.parametrize(("endpoint", "region", "style", "bucket"), SETUPS)
def test_direct_engine_matches_botocore_byte_for_byte(
    endpoint: str | None, region: str, style: str, bucket: str
) -> None:
    rng = random.Random(f"{SEED}-{endpoint}-{region}-{style}-{bucket}")
    signers = {
        (token, profile.name): _signers(endpoint, region, style, bucket, token, profile)
        for token in TOKENS
        for profile in PUT_PROFILES
    }
    compared = 0
    for index, case in enumerate(_cases(rng)):
        profile = PUT_PROFILES[(index // len(TOKENS)) % len(PUT_PROFILES)]  # every pairing
        direct, reference = signers[case["token"], profile.name]  # type: ignore[index]
        put = {
            "content_type": case["content_type"],
            "content_length": case["content_length"],
            "checksum_sha256": case["checksum"],
            "ttl_seconds": case["ttl"],
            "create_only": profile.create_only,
        }
        ours = direct.presign_put(case["key"], **put)  # type: ignore[arg-type]
        theirs = reference.presign_put(case["key"], **put)  # type: ignore[arg-type]
        assert ours == theirs, case
        disposition = content_disposition(case["filename"], case["disposition"])  # type: ignore[arg-type]
        get = {
            "response_content_type": case["content_type"],
            "response_content_disposition": disposition,
            "response_cache_control": case["cache_control"],
            "ttl_seconds": case["ttl"],
        }
        ours = direct.presign_get(case["key"], **get)  # type: ignore[arg-type]
        theirs = reference.presign_get(case["key"], **get)  # type: ignore[arg-type]
        assert ours == theirs, case
        part = {
            "upload_id": case["upload_id"],
            "part_number": case["part_number"],
            "content_length": case["content_length"],
            "ttl_seconds": case["ttl"],
        }
        ours = direct.presign_upload_part(case["key"], **part)  # type: ignore[arg-type]
        theirs = reference.presign_upload_part(case["key"], **part)  # type: ignore[arg-type]
        assert ours == theirs, case
        compared += 3
    assert compared == 3 * CASES_PER_SETUP


def test_the_comparison_would_notice_a_difference() -> None:
    direct, reference = _signers("http://127.0.0.1:18433", "us-east-1", "path", "b1", None)
    put = {"content_type": "text/plain", "content_length": 3, "checksum_sha256": None}
    ours = direct.presign_put("uploads/a", ttl_seconds=60, **put)  # type: ignore[arg-type]
    theirs = reference.presign_put("uploads/a", ttl_seconds=61, **put)  # type: ignore[arg-type]
    assert ours.url != theirs.url


def test_the_signing_key_is_reused_within_a_day() -> None:
    direct, _ = _signers("http://127.0.0.1:18433", "us-east-1", "path", "b1", None)
    with mock.patch("app.signer.engines.hmac.new", wraps=hmac.new) as hmac_new:
        direct.presign_get(
            "k1",
            response_content_type="a/b",
            response_content_disposition="x",
            response_cache_control="no-store",
            ttl_seconds=60,
        )
        first = hmac_new.call_count
        direct.presign_get(
            "k2",
            response_content_type="a/b",
            response_content_disposition="x",
            response_cache_control="no-store",
            ttl_seconds=60,
        )
    assert first == 5  # 4 to derive the day's key + 1 signature
    assert hmac_new.call_count - first == 1  # later URLs: the signature only


@pytest.mark.parametrize(("endpoint", "region", "style", "bucket"), SETUPS)
def test_both_engines_report_the_origin_their_urls_start_with(
    endpoint: str | None, region: str, style: str, bucket: str
) -> None:
    for signer in _signers(endpoint, region, style, bucket, None):
        url = signer.presign_get(
            "uploads/k",
            response_content_type="text/plain",
            response_content_disposition="attachment",
            response_cache_control="no-store",
            ttl_seconds=60,
        ).url
        assert "*" not in signer.origin
        assert url.startswith(signer.origin + "/")
        parts = urlsplit(url)
        assert signer.origin == f"{parts.scheme}://{parts.netloc}"
