"""The startup cross-check: the direct engine and botocore sign fixed requests alike, or the
service refuses to start; and the check's fixed keys never reach a URL that is served.

Presigning is pure CPU: every endpoint here is a closed port or a name never contacted.
"""

from __future__ import annotations

import contextlib
import logging
import time
from collections.abc import Iterator
from datetime import datetime
from pathlib import Path
from typing import Any

import boto3
import pytest
from botocore.config import Config
from botocore.credentials import Credentials
from botocore.exceptions import NoCredentialsError

from app import signer as signer_module
from app.config import ConfigError, Settings
from app.errors import CredentialsUnavailable
from app.logs import QUIET_LOGGERS
from app.main import create_app
from app.signer import Signer
from app.signer.engines import DirectEngine, Keys, Request
from tests.support import offline_settings

CHECK_ACCESS_KEY = "AKIDS3GATECROSSCHECK"  # the check's fixed keys (app/signer/cross_check.py)
REAL_ACCESS_KEY = "AKIDS3GATEREALKEY"
REAL_SECRET_KEY = "s3gate-unit-test-secret-0123456789abcdef"
KEY = "uploads/0123abcd/0190c1de-0000-7000-8000-000000000000"

# (endpoint_url, region, addressing_style, bucket): custom endpoints and AWS, both styles.
SHAPES = [
    pytest.param("http://127.0.0.1:9", "us-east-1", "path", "s3gate-dev", id="custom-path"),
    pytest.param(
        "https://s3.example.com:8443", "eu-west-1", "virtual", "media", id="custom-virtual"
    ),
    pytest.param("https://objects.example.com", "ap-south-1", "auto", "photos", id="custom-auto"),
    pytest.param(None, "eu-central-1", "virtual", "my-bucket", id="aws-virtual"),
    pytest.param(None, "eu-central-1", "path", "my-bucket", id="aws-path"),
    pytest.param(None, "us-east-1", "auto", "dotted.bucket.name", id="aws-us-east-1-dotted"),
]
CREDENTIALS = [
    pytest.param(None, id="no-credentials"),
    pytest.param(Credentials(REAL_ACCESS_KEY, REAL_SECRET_KEY), id="static"),
    pytest.param(Credentials(REAL_ACCESS_KEY, REAL_SECRET_KEY, "session+token/="), id="session"),
]


def _client(endpoint: str | None, region: str, style: str, credentials: Credentials | None) -> Any:
    keys = (
        {}
        if credentials is None
        else {
            "aws_access_key_id": credentials.access_key,
            "aws_secret_access_key": credentials.secret_key,
            "aws_session_token": credentials.token,
        }
    )
    # Like lifespan's signing client (the conftest leaves the chain empty: no credentials).
    return boto3.session.Session(region_name=region, **keys).client(
        "s3",
        endpoint_url=endpoint,
        config=Config(
            signature_version="s3v4",
            s3={"addressing_style": style},  # type: ignore[typeddict-item]
            request_checksum_calculation="when_required",
        ),
    )


def _put(signer: Signer) -> Any:
    return signer.presign_put(
        KEY, content_type="text/plain", content_length=3, checksum_sha256=None, ttl_seconds=60
    )


@pytest.mark.parametrize("credentials", CREDENTIALS)
@pytest.mark.parametrize(("endpoint", "region", "style", "bucket"), SHAPES)
def test_the_real_engines_pass_the_cross_check(
    endpoint: str | None,
    region: str,
    style: str,
    bucket: str,
    credentials: Credentials | None,
) -> None:
    client = _client(endpoint, region, style, credentials)
    Signer(client, credentials, bucket).cross_check()  # raises ConfigError on any difference


@pytest.mark.parametrize("credentials", CREDENTIALS)
def test_the_check_leaves_the_signing_client_with_its_own_credentials(
    credentials: Credentials | None,
) -> None:
    client = _client("http://127.0.0.1:9", "us-east-1", "path", credentials)
    direct = Signer(client, credentials, "b1")
    direct.cross_check()
    botocore_signer = Signer(client, credentials, "b1", engine="boto3")
    if credentials is None:
        for signer in (direct, botocore_signer):
            with pytest.raises(CredentialsUnavailable):
                _put(signer)
        with pytest.raises(NoCredentialsError):  # the check's keys went with the check
            client.generate_presigned_url("get_object", Params={"Bucket": "b1", "Key": KEY})
        return
    for signer in (direct, botocore_signer):
        url = _put(signer).url
        assert f"X-Amz-Credential={REAL_ACCESS_KEY}%2F" in url
        assert CHECK_ACCESS_KEY not in url


def test_the_check_costs_a_few_milliseconds() -> None:
    signer = Signer(_client("http://127.0.0.1:9", "us-east-1", "path", None), None, "b1")
    started = time.perf_counter()
    signer.cross_check()
    assert time.perf_counter() - started < 0.25  # ~5 ms on 2 shared cores; generous for CI


# --- through the real startup -------------------------------------------------------------------


class OneByteOff(DirectEngine):
    """A direct engine whose URLs differ from botocore's in their last character."""

    def presign(self, request: Request, ttl_seconds: int, keys: Keys) -> tuple[str, datetime]:
        url, expires_at = super().presign(request, ttl_seconds, keys)
        return url[:-1] + ("1" if url[-1] == "0" else "0"), expires_at


@pytest.fixture
def settings(tmp_path: Path) -> Settings:
    return offline_settings(tmp_path)


@contextlib.contextmanager
def service_logs(caplog: pytest.LogCaptureFixture) -> Iterator[None]:
    """Everything the service logs at DEBUG, with the library loggers app/logs.py holds at
    WARNING held there too (botocore's DEBUG lines carry canonical requests)."""
    with contextlib.ExitStack() as stack:
        stack.enter_context(caplog.at_level(logging.DEBUG))
        for name in QUIET_LOGGERS:
            stack.enter_context(caplog.at_level(logging.WARNING, logger=name))
        yield


@pytest.fixture
def with_credentials(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("AWS_ACCESS_KEY_ID", REAL_ACCESS_KEY)
    monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", REAL_SECRET_KEY)


@pytest.mark.parametrize("credentials", ["none", "env"])
async def test_a_direct_engine_one_byte_off_makes_the_startup_refuse(
    settings: Settings,
    monkeypatch: pytest.MonkeyPatch,
    caplog: pytest.LogCaptureFixture,
    request: pytest.FixtureRequest,
    credentials: str,
) -> None:
    if credentials == "env":
        request.getfixturevalue("with_credentials")
    monkeypatch.setattr(signer_module, "DirectEngine", OneByteOff)
    app = create_app(settings)
    with service_logs(caplog), pytest.raises(ConfigError) as refused:
        async with app.router.lifespan_context(app):
            pytest.fail("the app must not start")
    message = str(refused.value)
    assert message.startswith("S3GATE_SIGNER=sigv4: the direct SigV4 engine and botocore ")
    assert "startup check's PUT URL" in message
    assert "(the query parameter X-Amz-Signature differs)" in message
    assert "Set S3GATE_SIGNER=boto3" in message
    assert CHECK_ACCESS_KEY not in message + caplog.text
    assert "X-Amz-" not in caplog.text


async def test_with_the_boto3_engine_there_is_nothing_to_compare(
    settings: Settings, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(signer_module, "DirectEngine", OneByteOff)
    app = create_app(settings.model_copy(update={"signer": "boto3"}))
    async with app.router.lifespan_context(app):
        assert app.state.s3gate.use_cases.signer.origin == "http://127.0.0.1:9"


async def test_a_startup_without_credentials_passes_the_check_and_signs_nothing(
    settings: Settings, caplog: pytest.LogCaptureFixture
) -> None:
    app = create_app(settings)
    with service_logs(caplog):
        async with app.router.lifespan_context(app):
            signer = app.state.s3gate.use_cases.signer
            assert not signer.has_credentials
            with pytest.raises(CredentialsUnavailable):
                _put(signer)
    assert "no S3 credentials found; URL signing will answer 503" in caplog.text
    assert CHECK_ACCESS_KEY not in caplog.text


@pytest.mark.usefixtures("with_credentials")
async def test_after_the_check_urls_carry_the_service_credentials(
    settings: Settings, caplog: pytest.LogCaptureFixture
) -> None:
    app = create_app(settings)
    with service_logs(caplog):
        async with app.router.lifespan_context(app):
            url = _put(app.state.s3gate.use_cases.signer).url
    assert f"X-Amz-Credential={REAL_ACCESS_KEY}%2F" in url
    assert CHECK_ACCESS_KEY not in url + caplog.text
