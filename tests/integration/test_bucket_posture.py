"""`s3gate bucket check` / `bucket setup` / `iam-policy` against SeaweedFS, including the checks
this store does not implement (reported as unsupported, never as a failure)."""

from __future__ import annotations

import os
import secrets
import subprocess
from pathlib import Path

import pytest

from app.config import Settings
from app.devstack import EmbeddedS3
from app.profiles import PROFILES
from app.storage.posture import check_bucket, iam_policy, setup_bucket
from tests.support import TEST_JWT_SECRET, run_s3gate

SEAWEEDFS = PROFILES["seaweedfs"]

ORIGIN = "https://app.example.com"


@pytest.fixture
def fresh(s3_server: EmbeddedS3, monkeypatch: pytest.MonkeyPatch) -> Settings:
    """Settings for a new, empty bucket with one browser origin."""
    monkeypatch.setenv("AWS_ACCESS_KEY_ID", s3_server.access_key)
    monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", s3_server.secret_key)
    bucket = f"posture-{secrets.token_hex(4)}"
    s3_server.client().create_bucket(Bucket=bucket)
    return Settings(
        _env_file=None,  # type: ignore[call-arg]
        s3_bucket=bucket,
        s3_endpoint_url=s3_server.endpoint_url,
        s3_addressing_style="path",
        jwt_secret=TEST_JWT_SECRET,  # type: ignore[arg-type]
        cors_origins=[ORIGIN],
    )


def _states(checks: list) -> dict[str, str]:  # type: ignore[type-arg]
    return {c.name: c.state for c in checks}


def test_a_fresh_bucket_has_problems_and_unsupported_checks(
    fresh: Settings, s3_server: EmbeddedS3
) -> None:
    states = _states(check_bucket(s3_server.client(), fresh, SEAWEEDFS))
    assert states == {
        "cors": "problem",
        "public-access-block": "unsupported",  # SeaweedFS: NotImplemented
        "public-policy": "ok",
        "default-encryption": "problem",
        "versioning": "ok",
        "abort-incomplete-multipart": "problem",
        "region": "ok",
        "clock-skew": "ok",
    }


def test_setup_applies_what_the_store_supports_and_check_then_passes(
    fresh: Settings, s3_server: EmbeddedS3
) -> None:
    client = s3_server.client()
    applied = _states(setup_bucket(client, fresh))
    assert applied == {
        "bucket+cors": "applied",
        "public-access-block": "unsupported",
        "default-encryption": "applied",
        "abort-incomplete-multipart": "applied",
        "write-probe": "ok",
    }
    after = _states(check_bucket(client, fresh, SEAWEEDFS))
    assert {name for name, state in after.items() if state == "problem"} == set()
    assert after["public-access-block"] == "unsupported"


def test_setup_is_idempotent_and_keeps_other_lifecycle_rules(
    fresh: Settings, s3_server: EmbeddedS3
) -> None:
    client = s3_server.client()
    other = {
        "ID": "keep-logs",
        "Status": "Enabled",
        "Filter": {"Prefix": "logs/"},
        "Expiration": {"Days": 30},
    }
    client.put_bucket_lifecycle_configuration(
        Bucket=fresh.s3_bucket, LifecycleConfiguration={"Rules": [other]}
    )
    setup_bucket(client, fresh)
    setup_bucket(client, fresh)
    rules = client.get_bucket_lifecycle_configuration(Bucket=fresh.s3_bucket)["Rules"]
    assert sorted(r["ID"] for r in rules) == ["keep-logs", "s3gate-abort-incomplete-multipart"]


def test_cors_without_a_signed_header_is_a_problem_and_without_etag_is_not(
    fresh: Settings, s3_server: EmbeddedS3
) -> None:
    client = s3_server.client()
    rule = {
        "AllowedOrigins": [ORIGIN],
        "AllowedMethods": ["PUT", "POST", "GET", "HEAD"],
        "AllowedHeaders": ["content-type", "if-none-match", "x-amz-checksum-sha256"],
    }
    client.put_bucket_cors(Bucket=fresh.s3_bucket, CORSConfiguration={"CORSRules": [rule]})
    cors = next(c for c in check_bucket(client, fresh, SEAWEEDFS) if c.name == "cors")
    # No s3gate client reads a response header of the store (completion lists the parts).
    assert cors.state == "ok", cors.detail
    client.put_bucket_cors(
        Bucket=fresh.s3_bucket,
        CORSConfiguration={
            "CORSRules": [{**rule, "AllowedHeaders": ["content-type"], "ExposeHeaders": ["ETag"]}]
        },
    )
    cors = next(c for c in check_bucket(client, fresh, SEAWEEDFS) if c.name == "cors")
    assert cors.state == "problem"
    assert "if-none-match" in cors.detail


def test_a_region_mismatch_is_a_problem_where_the_store_redirects(
    fresh: Settings, s3_server: EmbeddedS3
) -> None:
    elsewhere = fresh.model_copy(update={"s3_region": "eu-west-1"})
    client = s3_server.client()
    region = next(c for c in check_bucket(client, elsewhere, PROFILES["aws"]) if c.name == "region")
    assert region.state == "problem"
    # Ceph names its zonegroup (`default`) and redirects nowhere: said, not a problem.
    region = next(
        c for c in check_bucket(client, elsewhere, PROFILES["ceph"]) if c.name == "region"
    )
    assert region.state == "ok"
    assert "does not redirect" in region.detail


def test_the_commands_exit_non_zero_on_a_problem_and_zero_once_set_up(
    fresh: Settings, s3_server: EmbeddedS3, tmp_path: Path
) -> None:
    env = {
        "PATH": os.environ["PATH"],
        "S3GATE_S3_BUCKET": fresh.s3_bucket,
        "S3GATE_S3_ENDPOINT_URL": fresh.s3_endpoint_url or "",
        "S3GATE_S3_ADDRESSING_STYLE": "path",
        "S3GATE_JWT_SECRET": TEST_JWT_SECRET,
        "S3GATE_CORS_ORIGINS": ORIGIN,
        "AWS_ACCESS_KEY_ID": s3_server.access_key,
        "AWS_SECRET_ACCESS_KEY": s3_server.secret_key,
    }

    def run(*args: str) -> subprocess.CompletedProcess[str]:
        return run_s3gate(*args, env=env, cwd=tmp_path, timeout=60)

    before = run("bucket", "check")
    assert before.returncode == 1, before.stdout + before.stderr
    assert "unsupported" in before.stdout
    assert run("bucket", "setup").returncode == 0
    after = run("bucket", "check")
    assert after.returncode == 0, after.stdout
    assert "not done by this store" in after.stdout  # public access block, said plainly
    probed = run("bucket", "check", "--probe")
    assert probed.returncode == 0, probed.stdout
    assert "store profile: auto, measured (like seaweedfs)" in probed.stdout
    assert "ok           create-only" in probed.stdout
    assert "problem" not in probed.stdout


def test_the_iam_policy_grants_only_what_the_service_uses() -> None:
    settings = Settings(
        _env_file=None, s3_bucket="media", s3_key_prefix="files/", jwt_secret=TEST_JWT_SECRET
    )  # type: ignore[call-arg, arg-type]
    policy = iam_policy(settings, PROFILES["aws"])
    objects, listing = policy["Statement"]
    assert objects["Resource"] == "arn:aws:s3:::media/files/*"
    assert set(objects["Action"]) == {
        "s3:PutObject",
        "s3:GetObject",
        "s3:DeleteObject",
        "s3:AbortMultipartUpload",
        "s3:ListMultipartUploadParts",
    }
    assert listing == {
        "Sid": "S3gateMissingObjectsAre404",
        "Effect": "Allow",
        "Action": "s3:ListBucket",
        "Resource": "arn:aws:s3:::media",
    }
    assert not any("*" in str(s["Action"]) for s in policy["Statement"])


def test_the_iam_policy_asks_for_put_object_acl_only_where_upload_urls_sign_an_acl() -> None:
    settings = Settings(
        _env_file=None, s3_bucket="media", s3_key_prefix="files/", jwt_secret=TEST_JWT_SECRET
    )  # type: ignore[call-arg, arg-type]
    for name, profile in PROFILES.items():
        actions = iam_policy(settings, profile)["Statement"][0]["Action"]
        assert ("s3:PutObjectAcl" in actions) is profile.sign_acl, name
    assert PROFILES["ceph"].sign_acl
