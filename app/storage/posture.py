"""Bucket posture for ops: what `s3gate bucket check` verifies, `bucket setup` applies, and the
least-privilege IAM policy `s3gate iam-policy` prints. Not on the request path."""

from __future__ import annotations

import contextlib
import email.utils
import time
import uuid
from collections.abc import Callable
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Literal

from botocore.exceptions import BotoCoreError, ClientError

from app.config import Settings
from app.profiles import StoreProfile
from app.storage import CORS_ALLOWED_HEADERS, CORS_ALLOWED_METHODS

if TYPE_CHECKING:
    from mypy_boto3_s3 import S3Client

State = Literal["ok", "problem", "unsupported", "applied"]
LIFECYCLE_RULE_ID = "s3gate-abort-incomplete-multipart"
ABORT_INCOMPLETE_AFTER_DAYS = 1
MAX_CLOCK_SKEW_SECONDS = 60  # a download URL lives 60 s by default
_UNSUPPORTED = frozenset({"NotImplemented", "NotImplementedError", "MethodNotAllowed"})
_PUBLIC_ACCESS_BLOCK = {
    "BlockPublicAcls": True,
    "IgnorePublicAcls": True,
    "BlockPublicPolicy": True,
    "RestrictPublicBuckets": True,
}


@dataclass(frozen=True, slots=True)
class Check:
    name: str
    state: State
    detail: str


def _code(exc: ClientError) -> str:
    return str(exc.response.get("Error", {}).get("Code", ""))


def _ask(name: str, call: Callable[[], Check], missing: dict[str, Check] | None = None) -> Check:
    """Run one check; a store that does not implement the API is 'unsupported', not a failure."""
    try:
        return call()
    except ClientError as exc:
        code = _code(exc)
        status = exc.response.get("ResponseMetadata", {}).get("HTTPStatusCode")
        if code in _UNSUPPORTED or status == 501:
            return Check(name, "unsupported", f"this store does not implement it ({code or 501})")
        if missing and code in missing:
            return missing[code]
        return Check(name, "problem", f"the store answered {code or 'an error'}")
    except BotoCoreError as exc:
        return Check(name, "problem", f"could not ask the store ({type(exc).__name__})")
    except (KeyError, IndexError, TypeError, AttributeError, ValueError):
        # An answer of a shape the check does not know (Ceph RGW's encryption answer has no
        # Rules): reported, never a traceback.
        return Check(name, "problem", "the store's answer has an unexpected shape")


def _cors_covers(rules: list[Any], origins: list[str], profile: StoreProfile) -> str | None:
    needed_methods, needed_headers = set(CORS_ALLOWED_METHODS), set(CORS_ALLOWED_HEADERS)
    if not profile.sign_acl:  # browsers send x-amz-acl only where upload URLs sign it
        needed_headers.discard("x-amz-acl")
    for origin in origins:
        matching = [
            r
            for r in rules
            if origin in r.get("AllowedOrigins", []) or "*" in r.get("AllowedOrigins", [])
        ]
        methods = {m for r in matching for m in r.get("AllowedMethods", [])}
        headers = {h.lower() for r in matching for h in r.get("AllowedHeaders", [])}
        if not matching:
            return f"no rule allows {origin}"
        if needed_methods - methods:
            return f"{origin}: methods missing {sorted(needed_methods - methods)}"
        if "*" not in headers and needed_headers - headers:
            return f"{origin}: headers missing {sorted(needed_headers - headers)}"
    return None


def check_bucket(
    client: S3Client,
    settings: Settings,
    profile: StoreProfile,
    *,
    clock: Callable[[], float] = time.time,
) -> list[Check]:
    """Every posture check, each ok / problem / unsupported-by-this-store."""
    bucket = settings.s3_bucket

    def cors() -> Check:
        if not settings.cors_origins:
            return Check("cors", "ok", "no browser origins configured (S3GATE_CORS_ORIGINS)")
        rules = client.get_bucket_cors(Bucket=bucket)["CORSRules"]
        gap = _cors_covers(list(rules), settings.cors_origins, profile)
        return Check("cors", "problem" if gap else "ok", gap or "covers every configured origin")

    def public_access() -> Check:
        config = client.get_public_access_block(Bucket=bucket)["PublicAccessBlockConfiguration"]
        off = [k for k, v in _PUBLIC_ACCESS_BLOCK.items() if config.get(k) is not v]
        if off == ["BlockPublicAcls"] and profile.block_public_acls_refuses_writes:
            return Check(
                "public-access-block",
                "ok",
                "BlockPublicAcls off (with it this store refuses every write); "
                "IgnorePublicAcls, BlockPublicPolicy and RestrictPublicBuckets on",
            )
        return Check(
            "public-access-block",
            "problem" if off else "ok",
            f"not set: {off}" if off else "all four settings on",
        )

    def policy() -> Check:
        public = client.get_bucket_policy_status(Bucket=bucket)["PolicyStatus"]["IsPublic"]
        return Check(
            "public-policy",
            "problem" if public else "ok",
            "the bucket policy makes it public" if public else "policy is not public",
        )

    def encryption() -> Check:
        answer = client.get_bucket_encryption(Bucket=bucket)
        rules = answer.get("ServerSideEncryptionConfiguration", {}).get("Rules", [])
        algorithms = [
            r.get("ApplyServerSideEncryptionByDefault", {}).get("SSEAlgorithm", "?") for r in rules
        ]
        if not algorithms:  # an empty configuration (Ceph RGW answers so): none by default
            return Check("default-encryption", "problem", "objects are not encrypted by default")
        return Check("default-encryption", "ok", ", ".join(algorithms))

    def versioning() -> Check:
        state = client.get_bucket_versioning(Bucket=bucket).get("Status", "never enabled")
        return Check(
            "versioning",
            "ok",
            f"{state} (deleted objects are {'kept as versions' if state == 'Enabled' else 'gone'})",
        )

    def lifecycle() -> Check:
        rules = client.get_bucket_lifecycle_configuration(Bucket=bucket)["Rules"]
        for rule in rules:
            prefix = rule.get("Filter", {}).get("Prefix", rule.get("Prefix", ""))
            if (
                rule.get("Status") == "Enabled"
                and "AbortIncompleteMultipartUpload" in rule
                and settings.s3_key_prefix.startswith(prefix)
            ):
                days = rule["AbortIncompleteMultipartUpload"]["DaysAfterInitiation"]
                return Check("abort-incomplete-multipart", "ok", f"after {days} day(s)")
        return Check(
            "abort-incomplete-multipart", "problem", "no enabled rule covers the key prefix"
        )

    def region() -> Check:
        actual = client.get_bucket_location(Bucket=bucket).get("LocationConstraint") or "us-east-1"
        if actual != settings.s3_region and not profile.region_redirects:
            return Check(
                "region",
                "ok",
                f"bucket reports {actual}; S3GATE_S3_REGION is {settings.s3_region}, and this "
                "store does not redirect by region",
            )
        if actual != settings.s3_region:
            return Check(
                "region",
                "problem",
                f"bucket is in {actual}, S3GATE_S3_REGION is {settings.s3_region} "
                "(browser preflights would meet a redirect)",
            )
        return Check("region", "ok", actual)

    def clock_skew() -> Check:
        response = client.head_bucket(Bucket=bucket)
        date = response["ResponseMetadata"]["HTTPHeaders"].get("date")
        if not date:
            return Check("clock-skew", "unsupported", "the store sent no Date header")
        skew = clock() - email.utils.parsedate_to_datetime(date).timestamp()
        state: State = "problem" if abs(skew) > MAX_CLOCK_SKEW_SECONDS else "ok"
        return Check("clock-skew", state, f"{skew:+.0f} s against the store")

    return [
        _ask(
            "cors",
            cors,
            {
                "NoSuchCORSConfiguration": Check(
                    "cors", "problem" if settings.cors_origins else "ok", "no CORS configuration"
                )
            },
        ),
        _ask(
            "public-access-block",
            public_access,
            {
                "NoSuchPublicAccessBlockConfiguration": Check(
                    "public-access-block", "problem", "not configured"
                )
            },
        ),
        _ask(
            "public-policy",
            policy,
            {"NoSuchBucketPolicy": Check("public-policy", "ok", "no bucket policy")},
        ),
        _ask(
            "default-encryption",
            encryption,
            {
                "ServerSideEncryptionConfigurationNotFoundError": Check(
                    "default-encryption", "problem", "not configured"
                )
            },
        ),
        _ask("versioning", versioning),
        _ask(
            "abort-incomplete-multipart",
            lifecycle,
            {
                "NoSuchLifecycleConfiguration": Check(
                    "abort-incomplete-multipart", "problem", "no lifecycle configuration"
                )
            },
        ),
        _ask("region", region),
        _ask("clock-skew", clock_skew),
    ]


def setup_bucket(client: S3Client, settings: Settings) -> list[Check]:
    """Apply what the store supports, idempotently: each step applied / unsupported / problem."""
    from app.storage import ensure_bucket

    bucket = settings.s3_bucket

    def create() -> Check:
        ensure_bucket(client, bucket, settings.cors_origins)
        detail = f"CORS for {settings.cors_origins}" if settings.cors_origins else "no CORS origins"
        return Check("bucket+cors", "applied", detail)

    def public_access() -> Check:
        client.put_public_access_block(
            Bucket=bucket,
            PublicAccessBlockConfiguration=_PUBLIC_ACCESS_BLOCK,  # type: ignore[arg-type]
        )
        return Check("public-access-block", "applied", "all four settings on")

    def encryption() -> Check:
        client.put_bucket_encryption(
            Bucket=bucket,
            ServerSideEncryptionConfiguration={
                "Rules": [{"ApplyServerSideEncryptionByDefault": {"SSEAlgorithm": "AES256"}}]
            },
        )
        return Check("default-encryption", "applied", "AES256")

    def lifecycle() -> Check:
        try:
            existing = list(client.get_bucket_lifecycle_configuration(Bucket=bucket)["Rules"])
        except ClientError as exc:
            if _code(exc) != "NoSuchLifecycleConfiguration":
                raise
            existing = []
        # Other teams' rules stay; only ours is replaced.
        rules = [r for r in existing if r.get("ID") != LIFECYCLE_RULE_ID]
        rules.append(
            {
                "ID": LIFECYCLE_RULE_ID,
                "Status": "Enabled",
                "Filter": {"Prefix": settings.s3_key_prefix},
                "AbortIncompleteMultipartUpload": {
                    "DaysAfterInitiation": ABORT_INCOMPLETE_AFTER_DAYS
                },
            }
        )
        client.put_bucket_lifecycle_configuration(
            Bucket=bucket,
            LifecycleConfiguration={"Rules": rules},
        )
        return Check(
            "abort-incomplete-multipart", "applied", f"after {ABORT_INCOMPLETE_AFTER_DAYS} day(s)"
        )

    applied = [
        _ask("bucket+cors", create),
        _ask("public-access-block", public_access),
        _ask(
            "default-encryption",
            encryption,
            {
                # Ceph RGW without an SSE-S3 backend (rgw_crypt_sse_s3_backend) answers so.
                "InvalidArgument": Check(
                    "default-encryption",
                    "unsupported",
                    "the store refused SSE-S3 (InvalidArgument): it has no encryption backend "
                    "configured; configure one, or encrypt its disks",
                )
            },
        ),
        _ask("abort-incomplete-multipart", lifecycle),
    ]
    return _prove_writable(client, settings, applied)


_PROBE_BODY = b"s3gate bucket setup: a write still succeeds\n"
# On Ceph RGW, BlockPublicAcls refuses every PUT, ACL header or not: without it, IgnorePublicAcls
# still makes any ACL a client sends have no effect, which is what s3gate relies on.
_ROLLED_BACK = {**_PUBLIC_ACCESS_BLOCK, "BlockPublicAcls": False}


def _probe_write(client: S3Client, settings: Settings) -> str | None:
    """Write and delete one small object under the key prefix; why it failed, or None."""
    key = f"{settings.s3_key_prefix}.s3gate-probe/{uuid.uuid4().hex}"
    try:
        client.put_object(Bucket=settings.s3_bucket, Key=key, Body=_PROBE_BODY)
    except ClientError as exc:
        return _code(exc) or "an error"
    except BotoCoreError as exc:
        return type(exc).__name__
    with contextlib.suppress(ClientError, BotoCoreError):
        client.delete_object(Bucket=settings.s3_bucket, Key=key)
    return None


def _prove_writable(client: S3Client, settings: Settings, applied: list[Check]) -> list[Check]:
    """Setup must never leave a bucket the service cannot write to: after the settings, one
    probe write; if it fails after the public access block was applied, that block's
    BlockPublicAcls is rolled back (IgnorePublicAcls stays on) and the write tried again."""
    failure = _probe_write(client, settings)
    if failure is None:
        return [*applied, Check("write-probe", "ok", "a write under the key prefix succeeds")]
    blocked = next((i for i, c in enumerate(applied) if c.name == "public-access-block"), None)
    if blocked is None or applied[blocked].state != "applied":
        return [*applied, Check("write-probe", "problem", f"writes fail ({failure})")]
    try:
        client.put_public_access_block(
            Bucket=settings.s3_bucket,
            PublicAccessBlockConfiguration=_ROLLED_BACK,  # type: ignore[arg-type]
        )
    except (ClientError, BotoCoreError) as exc:
        detail = f"writes fail ({failure}) and rolling back BlockPublicAcls failed too ({exc})"
        return [*applied, Check("write-probe", "problem", detail)]
    retried = _probe_write(client, settings)
    applied[blocked] = Check(
        "public-access-block",
        "applied",
        "BlockPublicAcls rolled back: with it this store refused every write; "
        "IgnorePublicAcls, BlockPublicPolicy and RestrictPublicBuckets on",
    )
    if retried is not None:
        return [*applied, Check("write-probe", "problem", f"writes still fail ({retried})")]
    return [*applied, Check("write-probe", "ok", f"after the rollback (first write: {failure})")]


def iam_policy(settings: Settings, profile: StoreProfile) -> dict[str, Any]:
    """The least-privilege policy for the service's runtime identity."""
    bucket_arn = f"arn:aws:s3:::{settings.s3_bucket}"
    # A PUT that carries x-amz-acl needs s3:PutObjectAcl too (AWS's PutObject reference); only
    # profiles that sign one (the store honours unsigned ACL headers) ask for it.
    acl = ["s3:PutObjectAcl"] if profile.sign_acl else []
    return {
        "Version": "2012-10-17",
        "Statement": [
            {
                "Sid": "S3gateObjects",
                "Effect": "Allow",
                "Action": [
                    # PUT, form POST, part uploads and Create/CompleteMultipartUpload
                    "s3:PutObject",
                    *acl,
                    # download URLs, HeadObject and the ranged read at completion
                    "s3:GetObject",
                    # rejected, abandoned, deleted and expired files
                    "s3:DeleteObject",
                    "s3:AbortMultipartUpload",
                    # GET /uploads/{id}/parts and completion without client ETags
                    "s3:ListMultipartUploadParts",
                ],
                "Resource": f"{bucket_arn}/{settings.s3_key_prefix}*",
            },
            {
                # Without it S3 answers 403 instead of 404 for an object not uploaded yet, and
                # `complete` could not tell "not there yet" (409) from "forbidden" (503).
                "Sid": "S3gateMissingObjectsAre404",
                "Effect": "Allow",
                "Action": "s3:ListBucket",
                "Resource": bucket_arn,
            },
        ],
    }
