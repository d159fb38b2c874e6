"""`bucket check` on stores that answer in shapes AWS never does (issue 13, item 3): every check
ends ok / problem / unsupported, never a traceback; HTTP 501 is `unsupported`."""

from __future__ import annotations

from typing import Any

from botocore.exceptions import ClientError

from app.config import Settings
from app.storage.posture import check_bucket
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
    checks = {c.name: c for c in check_bucket(OddStore(), settings)}  # type: ignore[arg-type]
    assert {c.state for c in checks.values()} <= {"ok", "problem", "unsupported"}
    assert checks["cors"].state == "unsupported"
    assert checks["default-encryption"].state == "problem"
    assert checks["default-encryption"].detail == "objects are not encrypted by default"
