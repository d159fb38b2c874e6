"""Store profiles: what an S3 implementation enforces, and so how s3gate adapts to it
(S3GATE_STORE_PROFILE). Pure data; docs/stores.md has the matrix with its evidence.

Each capability is one question with a safe answer when the store says no:

- `checksum_header`: the store accepts a signed `x-amz-checksum-sha256`. No (Backblaze B2
  refuses it): URLs do not carry it, and completion hashes the object.
- `checksums_enforced`: the store refuses bytes that do not match the signed checksum and
  returns it on HEAD. No (Ceph RGW keeps none): completion reads the object through and hashes.
- `create_only`: the store honours a signed `If-None-Match: *` (412 on a second PUT). No: PUT
  URLs write a staging key that completion copies, conditionally, to the file's own key, so a
  URL used again after completion never touches what was verified.
- `form_post`: the store checks POST policies (signature, size range, every field). No (R2 has
  no form POST; LocalStack checks neither signature nor fields): `form: true` is refused, 422.
- `sign_acl`: the store honours an unsigned `x-amz-acl` header on a presigned PUT (Ceph RGW
  does). Yes: `x-amz-acl: bucket-owner-full-control` is signed into every PUT URL and form
  policy, so any other ACL breaks the signature (AWS then also asks for s3:PutObjectAcl).
- `public_access_block`: the store implements PutPublicAccessBlock.
- `block_public_acls_refuses_writes`: with BlockPublicAcls on, the store refuses every PUT
  (Ceph RGW 16): `bucket setup` keeps it off and IgnorePublicAcls on.
- `region_redirects`: a bucket in another region answers with a redirect (AWS), so the
  configured region must be the bucket's.
"""

from __future__ import annotations

from dataclasses import dataclass, fields
from typing import Literal
from urllib.parse import urlsplit

ProfileName = Literal["auto", "aws", "ceph", "minio", "r2", "gcs", "b2", "seaweedfs", "localstack"]
PROFILE_NAMES: tuple[str, ...] = ProfileName.__args__  # type: ignore[attr-defined]
Evidence = Literal["tested here", "vendor documentation", "measured at startup", "assumed"]
# The canned ACL signed where a store honours unsigned ACL headers: for objects the bucket
# owner writes it means private, and it is the one ACL AWS accepts with ACLs disabled.
SIGNED_ACL = "bucket-owner-full-control"


@dataclass(frozen=True, slots=True)
class StoreProfile:
    name: str
    checksum_header: bool
    checksums_enforced: bool
    create_only: bool
    form_post: bool
    sign_acl: bool
    public_access_block: bool
    block_public_acls_refuses_writes: bool
    region_redirects: bool
    evidence: Evidence

    @property
    def acl(self) -> str | None:
        """The ACL header value signed into upload URLs, if any."""
        return SIGNED_ACL if self.sign_acl else None

    def capabilities(self) -> dict[str, bool]:
        return {
            f.name: getattr(self, f.name)
            for f in fields(self)
            if isinstance(getattr(self, f.name), bool)
        }

    def summary(self) -> str:
        """What the profile decides for upload URLs and completion, for logs and `bucket check`."""
        return ", ".join(f"{name} {'yes' if getattr(self, name) else 'no'}" for name in _MEASURED)

    def closest(self) -> str:
        """The named profile with the same capabilities (for a measured one), or 'none'."""
        mine = self.capabilities()
        for name, profile in PROFILES.items():
            if {k: v for k, v in profile.capabilities().items() if k in _MEASURED} == {
                k: v for k, v in mine.items() if k in _MEASURED
            }:
                return name
        return "none"


# What the startup probe measures (the rest comes from the endpoint's vendor, or safe defaults).
_MEASURED = ("checksum_header", "checksums_enforced", "create_only", "form_post", "sign_acl")

PROFILES: dict[str, StoreProfile] = {
    "seaweedfs": StoreProfile(
        "seaweedfs", True, True, True, True, False, False, False, False, "tested here"
    ),
    "localstack": StoreProfile(
        "localstack", True, True, True, False, False, True, False, False, "tested here"
    ),
    "ceph": StoreProfile("ceph", True, False, True, True, True, True, True, False, "tested here"),
    "aws": StoreProfile(
        "aws", True, True, True, True, False, True, False, True, "vendor documentation"
    ),
    # MinIO has had conditional-write bugs: PUTs are staged rather than trusted to If-None-Match.
    "minio": StoreProfile(
        "minio", True, True, False, True, False, False, False, False, "vendor documentation"
    ),
    "r2": StoreProfile(
        "r2", False, False, False, False, False, False, False, False, "vendor documentation"
    ),
    "gcs": StoreProfile(
        "gcs", False, False, False, False, False, False, False, False, "vendor documentation"
    ),
    "b2": StoreProfile(
        "b2", False, False, False, False, False, False, False, False, "vendor documentation"
    ),
}
# What `auto` falls back to when the probe cannot run and the endpoint names no vendor: every
# guarantee proven by s3gate itself (hash at completion, staged PUTs, no forms, ACL signed).
# BlockPublicAcls may refuse every write there (as on Ceph): IgnorePublicAcls is what s3gate
# relies on, and `bucket setup` finds out with its write probe.
UNKNOWN = StoreProfile("unknown", False, False, False, False, True, False, True, False, "assumed")
_VENDOR_HOSTS = (
    ("amazonaws.com", "aws"),
    ("r2.cloudflarestorage.com", "r2"),
    ("storage.googleapis.com", "gcs"),
    ("backblazeb2.com", "b2"),
)


def vendor_profile(endpoint_url: str | None) -> StoreProfile | None:
    """The profile of the vendor the endpoint's host names (no endpoint: AWS), or None."""
    if endpoint_url is None:
        return PROFILES["aws"]
    host = (urlsplit(endpoint_url).hostname or "").lower()
    for suffix, name in _VENDOR_HOSTS:
        if host == suffix or host.endswith("." + suffix):
            return PROFILES[name]
    return None


def measured(
    *,
    checksum_header: bool,
    checksums_enforced: bool,
    create_only: bool,
    form_post: bool,
    sign_acl: bool,
    endpoint_url: str | None,
) -> StoreProfile:
    """The profile `auto` runs with: what the probe measured, the rest from the vendor."""
    base = vendor_profile(endpoint_url) or UNKNOWN
    return StoreProfile(
        "auto",
        checksum_header=checksum_header,
        checksums_enforced=checksum_header and checksums_enforced,
        create_only=create_only,
        form_post=form_post,
        sign_acl=sign_acl,
        public_access_block=base.public_access_block,
        block_public_acls_refuses_writes=base.block_public_acls_refuses_writes,
        region_redirects=base.region_redirects,
        evidence="measured at startup",
    )
