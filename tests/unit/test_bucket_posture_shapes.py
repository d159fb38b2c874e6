"""`bucket check` and `bucket setup` on stores that behave as AWS never does (issue 13, items 3
and 4): every check ends ok / problem / unsupported, never a traceback; HTTP 501 is
`unsupported`; setup never leaves a bucket the service cannot write to."""

from __future__ import annotations

from typing import Any

from botocore.exceptions import ClientError

from app.config import Settings
from app.profiles import PROFILES
from app.storage.posture import check_bucket, setup_bucket
from tests.support import TEST_JWT_SECRET


def _error(code: str, status: int) -> ClientError:
    return ClientError(
        {"Error": {"Code": code}, "ResponseMetadata": {"HTTPStatusCode": status}}, "Op"
    )


class OddStore:
    """Answers like Ceph RGW 16 and other S3-compatible stores were seen to."""

    def get_bucket_cors(self, **_: Any) -> Any:
        raise _error("", 501)  # no code, only the status

    def get_public_access_block(self, **_: Any) -> Any:
        return {}  # no PublicAccessBlockConfiguration at all

    def get_bucket_policy_status(self, **_: Any) -> Any:
        return {"PolicyStatus": None}

    def get_bucket_encryption(self, **_: Any) -> Any:
        return {"ServerSideEncryptionConfiguration": {}}  # RGW: no Rules

    def get_bucket_versioning(self, **_: Any) -> Any:
        return {}

    def get_bucket_lifecycle_configuration(self, **_: Any) -> Any:
        return {"Rules": [{"ID": "x"}]}  # a rule without the fields the check reads

    def get_bucket_location(self, **_: Any) -> Any:
        return {"LocationConstraint": None}

    def head_bucket(self, **_: Any) -> Any:
        return {"ResponseMetadata": {"HTTPHeaders": {}}}


def test_odd_answers_give_states_not_tracebacks() -> None:
    settings = Settings(
        _env_file=None,  # type: ignore[call-arg]
        s3_bucket="bucket",
        jwt_secret=TEST_JWT_SECRET,  # type: ignore[arg-type]
        cors_origins=["https://app.example"],
    )
    checks = {c.name: c for c in check_bucket(OddStore(), settings, PROFILES["aws"])}  # type: ignore[arg-type]
    assert {c.state for c in checks.values()} <= {"ok", "problem", "unsupported"}
    assert checks["cors"].state == "unsupported"
    assert checks["default-encryption"].state == "problem"
    assert checks["default-encryption"].detail == "objects are not encrypted by default"


class RgwLikeStore:
    """Ceph RGW 16: with BlockPublicAcls on, every PUT is refused, ACL header or not."""

    def __init__(self) -> None:
        self.block: dict[str, bool] = {}
        self.objects: dict[str, bytes] = {}

    def head_bucket(self, **_: Any) -> Any:
        return {}

    def put_public_access_block(self, *, PublicAccessBlockConfiguration: Any, **_: Any) -> Any:
        self.block = dict(PublicAccessBlockConfiguration)

    def put_bucket_encryption(self, **_: Any) -> Any:
        return {}

    def get_bucket_lifecycle_configuration(self, **_: Any) -> Any:
        raise _error("NoSuchLifecycleConfiguration", 404)

    def put_bucket_lifecycle_configuration(self, **_: Any) -> Any:
        return {}

    def put_object(self, *, Key: str, Body: bytes, **_: Any) -> Any:
        if self.block.get("BlockPublicAcls"):
            raise _error("AccessDenied", 403)
        self.objects[Key] = Body

    def delete_object(self, *, Key: str, **_: Any) -> Any:
        self.objects.pop(Key, None)


def _settings() -> Settings:
    return Settings(
        _env_file=None,  # type: ignore[call-arg]
        s3_bucket="bucket",
        jwt_secret=TEST_JWT_SECRET,  # type: ignore[arg-type]
    )


def test_setup_rolls_back_block_public_acls_when_the_store_then_refuses_writes() -> None:
    store = RgwLikeStore()
    checks = {c.name: c for c in setup_bucket(store, _settings())}  # type: ignore[arg-type]
    assert checks["write-probe"].state == "ok"
    assert "first write: AccessDenied" in checks["write-probe"].detail
    assert "BlockPublicAcls rolled back" in checks["public-access-block"].detail
    assert store.block["BlockPublicAcls"] is False
    assert store.block["IgnorePublicAcls"] is True
    assert store.objects == {}  # the probe object is deleted again


def test_setup_says_so_when_writes_fail_for_another_reason() -> None:
    class ReadOnly(RgwLikeStore):
        def put_object(self, **_: Any) -> Any:
            raise _error("AccessDenied", 403)

    store = ReadOnly()
    checks = {c.name: c for c in setup_bucket(store, _settings())}  # type: ignore[arg-type]
    assert checks["write-probe"].state == "problem"
    assert "still fail (AccessDenied)" in checks["write-probe"].detail
