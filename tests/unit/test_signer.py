"""Signer: what the presigned URLs bind, and how their lifetime follows the credentials.

Presigning is pure CPU: the client's endpoint is a closed port and is never contacted.
Nothing here claims S3 enforces anything; these tests read what was signed.
"""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Any
from urllib.parse import parse_qs, urlsplit

import boto3
import pytest
from botocore.config import Config
from botocore.credentials import Credentials, RefreshableCredentials

from app.errors import CredentialsUnavailable
from app.signer import Signer

ACCESS_KEY = "AKIDS3GATETEST"
SECRET_KEY = "s3gate-test-secret-key-0123456789abcdef"
BUCKET = "test-bucket"
KEY = "uploads/0123abcd/0b6f1c1e-8a34-4c8e-9a51-2f0d3e0a9c11"
CHECKSUM = "n4bQgYhMfWWaL+qgxVrQFaO/TxsrC4Is0V1sFbDwCgg="
SEVEN_DAYS = 7 * 24 * 3600


@pytest.fixture
def client() -> Any:
    return boto3.client(
        "s3",
        endpoint_url="http://127.0.0.1:9",
        region_name="us-east-1",
        aws_access_key_id=ACCESS_KEY,
        aws_secret_access_key=SECRET_KEY,
        config=Config(
            signature_version="s3v4",
            s3={"addressing_style": "path"},
            request_checksum_calculation="when_required",
        ),
    )


@pytest.fixture
def signer(client: Any) -> Signer:
    return Signer(client, Credentials(ACCESS_KEY, SECRET_KEY), BUCKET)


def refreshable(expires_in: float) -> RefreshableCredentials:
    """Temporary credentials expiring `expires_in` seconds from now; a refresh changes nothing."""
    metadata = {
        "access_key": ACCESS_KEY,
        "secret_key": SECRET_KEY,
        "token": "session-token",
        "expiry_time": (datetime.now(UTC) + timedelta(seconds=expires_in)).isoformat(),
    }
    return RefreshableCredentials.create_from_metadata(
        metadata, refresh_using=lambda: dict(metadata), method="test"
    )


def query(url: str) -> dict[str, str]:
    parsed = parse_qs(urlsplit(url).query, keep_blank_values=True)
    assert all(len(values) == 1 for values in parsed.values()), url
    return {name: values[0] for name, values in parsed.items()}


def signed_at(url: str) -> datetime:
    return datetime.strptime(query(url)["X-Amz-Date"], "%Y%m%dT%H%M%SZ").replace(tzinfo=UTC)


def put(signer: Signer, *, checksum: str | None = None, ttl: int = 900) -> Any:
    return signer.presign_put(
        KEY,
        content_type="image/png",
        content_length=1234,
        checksum_sha256=checksum,
        ttl_seconds=ttl,
    )


# --- PUT ---------------------------------------------------------------------------------------


def test_put_headers_are_exactly_content_type_and_if_none_match(signer: Signer) -> None:
    upload = put(signer)
    assert upload.method == "PUT"
    assert dict(upload.headers) == {"Content-Type": "image/png", "If-None-Match": "*"}


def test_put_headers_add_the_checksum_when_given(signer: Signer) -> None:
    upload = put(signer, checksum=CHECKSUM)
    assert dict(upload.headers) == {
        "Content-Type": "image/png",
        "If-None-Match": "*",
        "x-amz-checksum-sha256": CHECKSUM,
    }


def test_put_headers_cannot_be_mutated(signer: Signer) -> None:
    upload = put(signer)
    with pytest.raises(TypeError):
        upload.headers["X-Extra"] = "1"  # type: ignore[index]


def test_put_url_signs_length_type_host_and_if_none_match(signer: Signer) -> None:
    params = query(put(signer).url)
    assert params["X-Amz-SignedHeaders"] == "content-length;content-type;host;if-none-match"
    assert params["X-Amz-Algorithm"] == "AWS4-HMAC-SHA256"
    assert params["X-Amz-Credential"].startswith(f"{ACCESS_KEY}/")
    assert params["X-Amz-Credential"].endswith("/us-east-1/s3/aws4_request")


def test_put_url_also_signs_the_checksum_when_given(signer: Signer) -> None:
    params = query(put(signer, checksum=CHECKSUM).url)
    assert params["X-Amz-SignedHeaders"] == (
        "content-length;content-type;host;if-none-match;x-amz-checksum-sha256"
    )


def test_put_url_targets_the_bucket_and_exact_key(signer: Signer) -> None:
    parts = urlsplit(put(signer).url)
    assert (parts.scheme, parts.netloc) == ("http", "127.0.0.1:9")
    assert parts.path == f"/{BUCKET}/{KEY}"


def test_put_url_expires_after_the_requested_ttl(signer: Signer) -> None:
    upload = put(signer, ttl=900)
    assert query(upload.url)["X-Amz-Expires"] == "900"
    assert upload.expires_at == signed_at(upload.url) + timedelta(seconds=900)
    assert upload.expires_at.tzinfo is not None


def test_seven_day_ttl_with_static_credentials_is_kept(signer: Signer) -> None:
    upload = put(signer, ttl=SEVEN_DAYS)
    assert query(upload.url)["X-Amz-Expires"] == str(SEVEN_DAYS)
    assert upload.expires_at == signed_at(upload.url) + timedelta(seconds=SEVEN_DAYS)


# --- GET ---------------------------------------------------------------------------------------


def test_get_url_carries_response_content_type_disposition_and_cache_control(
    signer: Signer,
) -> None:
    disposition = "attachment; filename=\"a.pdf\"; filename*=UTF-8''a.pdf"
    download = signer.presign_get(
        KEY,
        response_content_type="application/pdf",
        response_content_disposition=disposition,
        response_cache_control="private, no-store",
        ttl_seconds=60,
    )
    params = query(download.url)
    assert download.method == "GET"
    assert dict(download.headers) == {}
    assert params["response-content-type"] == "application/pdf"
    assert params["response-content-disposition"] == disposition
    assert params["response-cache-control"] == "private, no-store"
    assert params["X-Amz-Expires"] == "60"
    assert params["X-Amz-SignedHeaders"] == "host"
    assert urlsplit(download.url).path == f"/{BUCKET}/{KEY}"
    assert download.expires_at == signed_at(download.url) + timedelta(seconds=60)


# --- credentials ---------------------------------------------------------------------------------


def test_ttl_is_cut_to_the_temporary_credentials_lifetime(client: Any) -> None:
    credentials = refreshable(100)
    expiry = credentials._expiry_time
    upload = put(Signer(client, credentials, BUCKET), ttl=900)
    expires = int(query(upload.url)["X-Amz-Expires"])
    assert 90 <= expires <= 100
    assert upload.expires_at <= expiry
    assert upload.expires_at == signed_at(upload.url) + timedelta(seconds=expires)


def test_download_ttl_shorter_than_credentials_lifetime_is_kept(client: Any) -> None:
    download = Signer(client, refreshable(3600), BUCKET).presign_get(
        KEY,
        response_content_type="text/plain",
        response_content_disposition="inline",
        response_cache_control="no-store",
        ttl_seconds=60,
    )
    assert query(download.url)["X-Amz-Expires"] == "60"


def test_credentials_with_under_one_second_left_are_unavailable(client: Any) -> None:
    credentials = refreshable(100)
    expiry = credentials._expiry_time.timestamp()
    # The service's clock says 0.5 s remain (botocore still considers them valid).
    signer = Signer(client, credentials, BUCKET, clock=lambda: expiry - 0.5)
    with pytest.raises(CredentialsUnavailable) as info:
        put(signer)
    assert info.value.status == 503
    assert info.value.code == "credentials_unavailable"


def test_credentials_just_about_to_expire_are_unavailable(client: Any) -> None:
    with pytest.raises(CredentialsUnavailable):
        put(Signer(client, refreshable(0.5), BUCKET))


def test_expired_credentials_are_unavailable(client: Any) -> None:
    with pytest.raises(CredentialsUnavailable) as info:
        put(Signer(client, refreshable(-10), BUCKET))
    assert info.value.status == 503


@pytest.mark.parametrize("engine", ["sigv4", "boto3"])
def test_a_signer_builds_without_any_credentials_and_answers_unavailable(engine: Any) -> None:
    # The client of a process that found no credentials at all: the chain itself has none.
    bare = boto3.session.Session(region_name="eu-west-3").client(
        "s3", endpoint_url="http://127.0.0.1:9", config=Config(signature_version="s3v4")
    )
    assert bare._request_signer._credentials is None
    signer = Signer(bare, None, BUCKET, engine=engine)
    assert signer.origin == "http://127.0.0.1:9"
    assert not signer.has_credentials
    with pytest.raises(CredentialsUnavailable) as info:
        put(signer)
    assert info.value.status == 503
    with pytest.raises(CredentialsUnavailable):  # downloads too
        signer.presign_get(
            KEY,
            response_content_type="text/plain",
            response_content_disposition="inline",
            response_cache_control="no-store",
            ttl_seconds=60,
        )


def test_has_credentials_follows_their_expiry(client: Any) -> None:
    assert Signer(client, Credentials(ACCESS_KEY, SECRET_KEY), BUCKET).has_credentials
    assert Signer(client, refreshable(100), BUCKET).has_credentials
    assert not Signer(client, refreshable(-10), BUCKET).has_credentials
