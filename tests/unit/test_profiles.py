"""Store profiles as data: which vendor an endpoint names, what `auto` keeps of a measurement,
and that the fallback trusts the store with nothing."""

from __future__ import annotations

import pytest

from app.config import Settings
from app.profiles import (
    PROFILE_NAMES,
    PROFILES,
    SIGNED_ACL,
    UNKNOWN,
    StoreProfile,
    measured,
    vendor_profile,
)
from tests.support import TEST_JWT_SECRET


@pytest.mark.parametrize(
    ("endpoint", "vendor"),
    [
        (None, "aws"),
        ("https://s3.eu-west-1.amazonaws.com", "aws"),
        ("https://0123abcd.r2.cloudflarestorage.com", "r2"),
        ("https://storage.googleapis.com", "gcs"),
        ("https://s3.us-west-004.backblazeb2.com", "b2"),
        ("http://127.0.0.1:8333", None),
        ("https://notamazonaws.com", None),  # a suffix match needs the dot
        ("https://ceph.internal:7480", None),
    ],
)
def test_the_endpoint_names_the_vendor(endpoint: str | None, vendor: str | None) -> None:
    profile = vendor_profile(endpoint)
    assert (profile.name if profile else None) == vendor


def _measured(answers: str, endpoint_url: str | None) -> StoreProfile:
    """`measured` from a string of y/n: checksum header, enforced, create-only, forms, ACL."""
    names = ("checksum_header", "checksums_enforced", "create_only", "form_post", "sign_acl")
    flags = {name: answer == "y" for name, answer in zip(names, answers, strict=True)}
    return measured(**flags, endpoint_url=endpoint_url)


def test_auto_keeps_what_it_measured_and_takes_the_rest_from_the_vendor() -> None:
    ceph_like = _measured("ynyyy", "http://ceph.internal:7480")
    assert ceph_like.closest() == "ceph"
    assert ceph_like.acl == SIGNED_ACL
    assert ceph_like.block_public_acls_refuses_writes  # assumed where no vendor says otherwise
    on_aws = _measured("yyyyn", None)
    assert on_aws.closest() in ("aws", "seaweedfs")  # the same measured answers
    assert on_aws.region_redirects  # AWS's, not measured
    # A store that refused the checksum header cannot be said to enforce it.
    assert not _measured("nynnn", None).checksums_enforced


def test_the_fallback_trusts_the_store_with_nothing() -> None:
    for name in ("checksum_header", "checksums_enforced", "create_only", "form_post"):
        assert getattr(UNKNOWN, name) is False, name
    assert UNKNOWN.sign_acl


def test_every_profile_name_but_auto_has_a_profile_and_the_setting_accepts_them() -> None:
    assert set(PROFILE_NAMES) == {"auto", *PROFILES}
    for name in PROFILE_NAMES:
        settings = Settings(
            _env_file=None,  # type: ignore[call-arg]
            s3_bucket="bucket",
            jwt_secret=TEST_JWT_SECRET,  # type: ignore[arg-type]
            store_profile=name,  # type: ignore[arg-type]
        )
        assert settings.store_profile == name
    assert {
        p.evidence for n, p in PROFILES.items() if n in ("seaweedfs", "localstack", "ceph")
    } == {"tested here"}
