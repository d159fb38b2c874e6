"""Proving the store: try, with URLs the service itself issues, what s3gate relies on.

Two uses, one set of trials:
- `measure` decides S3GATE_STORE_PROFILE=auto at startup: a few small writes under the key
  prefix answer each capability question of app/profiles.py.
- `probe` is `s3gate bucket check --probe`: every behaviour s3gate's guarantees rest on, each
  `ok` / `problem` / `unsupported` with what it means under the profile in use.

Both work on probe keys under `<prefix>.s3gate-probe/` and delete what they wrote. Ops work,
never on the request path: blocking calls (boto3, a sync httpx client), run in a thread by
the service.
"""

from __future__ import annotations

import base64
import contextlib
import hashlib
import logging
import time
import uuid
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field, replace
from typing import TYPE_CHECKING

import httpx
from botocore.exceptions import BotoCoreError, ClientError

from app.config import Settings
from app.profiles import PROFILES, UNKNOWN, StoreProfile, measured, vendor_profile
from app.signer import PresignedPost, PresignedRequest, Signer
from app.storage import CORS_ALLOWED_HEADERS, CORS_ALLOWED_METHODS
from app.storage.posture import Check, State

if TYPE_CHECKING:
    from mypy_boto3_s3 import S3Client

log = logging.getLogger("s3gate.probe")

SignerFor = Callable[..., Signer]  # (profile=..., clock=...) -> a Signer of the service's
_TYPE = "text/plain"
_BODY = b"s3gate probe: what the store enforces\n"
_TTL = 120
_PART = 5 * 1024 * 1024
_FOREIGN_ORIGIN = "https://s3gate-probe.invalid"
# A profile that asks for everything (checksum, create-only, forms) and signs no ACL: the
# trials of `measure` need the store's own answer to each.
_ASK_EVERYTHING = replace(PROFILES["seaweedfs"], name="probe")


def _b64sha256(data: bytes) -> str:
    return base64.b64encode(hashlib.sha256(data).digest()).decode()


@dataclass
class _Trial:
    """The probe keys of one run, the client and signers it uses, and cleanup."""

    s3: S3Client
    http: httpx.Client
    settings: Settings
    run: str = field(default_factory=lambda: uuid.uuid4().hex)
    written: set[str] = field(default_factory=set)
    multipart: list[tuple[str, str]] = field(default_factory=list)

    def key(self, name: str) -> str:
        key = f"{self.settings.s3_key_prefix}.s3gate-probe/{self.run}/{name}"
        self.written.add(key)
        return key

    def put(self, url: PresignedRequest, body: bytes = _BODY, **headers: str) -> httpx.Response:
        sent = httpx.Headers(dict(url.headers))
        for name, value in headers.items():  # replaces a signed header of the same name
            sent[name.replace("_", "-")] = value
        return self.http.put(url.url, content=body, headers=sent)

    def post(
        self, form: PresignedPost, body: bytes = _BODY, extra: dict[str, str] | None = None
    ) -> httpx.Response:
        data = {**form.fields, **(extra or {})}
        return self.http.post(form.url, data=data, files={"file": ("probe.txt", body, _TYPE)})

    def head(self, key: str) -> dict[str, object] | None:
        try:
            answer = self.s3.head_object(
                Bucket=self.settings.s3_bucket, Key=key, ChecksumMode="ENABLED"
            )
        except ClientError:
            return None
        return dict(answer)

    def cleanup(self) -> None:
        bucket = self.settings.s3_bucket
        for key, upload_id in self.multipart:
            with contextlib.suppress(ClientError, BotoCoreError):
                self.s3.abort_multipart_upload(Bucket=bucket, Key=key, UploadId=upload_id)
        for key in self.written:
            with contextlib.suppress(ClientError, BotoCoreError):
                self.s3.delete_object(Bucket=bucket, Key=key)


@contextlib.contextmanager
def _trial(s3: S3Client, settings: Settings) -> Iterator[_Trial]:
    with httpx.Client(timeout=10.0) as http:
        trial = _Trial(s3, http, settings)
        try:
            yield trial
        finally:
            trial.cleanup()


def _ok(status: int) -> bool:
    return 200 <= status < 300


def _put_url(
    signer: Signer, key: str, body: bytes = _BODY, *, checksum: bool = True
) -> PresignedRequest:
    """A PUT URL as the service signs it under the signer's profile (create-only where the
    profile trusts If-None-Match; staged otherwise)."""
    return signer.presign_put(
        key,
        content_type=_TYPE,
        content_length=len(body),
        checksum_sha256=_b64sha256(body) if checksum else None,
        ttl_seconds=_TTL,
        create_only=signer.profile.create_only,
    )


def _post_form(signer: Signer, key: str, body: bytes = _BODY) -> PresignedPost:
    return signer.presign_post(
        key,
        content_type=_TYPE,
        content_length=len(body),
        checksum_sha256=_b64sha256(body),
        ttl_seconds=_TTL,
    )


def _tampered(form: PresignedPost) -> dict[str, str]:
    name = next(k for k in form.fields if k.lower() == "x-amz-signature")
    signature = form.fields[name]
    return {name: ("0" if signature[0] != "0" else "1") + signature[1:]}


def measure(s3: S3Client, signer_for: SignerFor, settings: Settings) -> StoreProfile:
    """The profile `auto` runs with: each capability answered by a trial on the store."""
    signer = signer_for(profile=_ASK_EVERYTHING)
    with _trial(s3, settings) as trial:
        # A signed checksum the store accepts, records and enforces.
        key = trial.key("checksum")
        url = _put_url(signer, key)
        checksum_header = _ok(trial.put(url).status_code)
        head = trial.head(key) if checksum_header else None
        recorded = bool(head) and head.get("ChecksumSHA256") == _b64sha256(_BODY)  # type: ignore[union-attr]
        wrong = _put_url(signer, trial.key("wrong-body"))
        enforced = recorded and not _ok(trial.put(wrong, _BODY.upper()).status_code)
        # If-None-Match: * honoured: the URL used again is refused with 412.
        create = _put_url(signer, trial.key("create-only"), checksum=False)
        create_only = _ok(trial.put(create).status_code) and trial.put(create).status_code == 412
        # An unsigned ACL header accepted: sign one (if the store takes a signed one).
        acl_url = _put_url(signer, trial.key("unsigned-acl"), checksum=False)
        sign_acl = _ok(trial.put(acl_url, x_amz_acl="public-read").status_code)
        if sign_acl:
            acl_signer = signer_for(profile=replace(_ASK_EVERYTHING, sign_acl=True))
            signed = _put_url(acl_signer, trial.key("signed-acl"), checksum=False)
            sign_acl = _ok(trial.put(signed).status_code)
        # Forms whose policy the store checks: the right one stored, a tampered or oversized
        # one refused.
        tampered = _post_form(signer, trial.key("form-tampered"))
        form_post = (
            _ok(trial.post(_post_form(signer, trial.key("form"))).status_code)
            and not _ok(trial.post(tampered, extra=_tampered(tampered)).status_code)
            and not _ok(
                trial.post(_post_form(signer, trial.key("form-size")), _BODY + b"!").status_code
            )
        )
    return measured(
        checksum_header=checksum_header,
        checksums_enforced=enforced,
        create_only=create_only,
        form_post=form_post,
        sign_acl=sign_acl,
        endpoint_url=settings.s3_endpoint_url,
    )


def probe(
    s3: S3Client, signer_for: SignerFor, settings: Settings, profile: StoreProfile
) -> list[Check]:
    """`bucket check --probe`: every behaviour s3gate relies on, tried with its own URLs."""
    signer = signer_for(profile=profile)
    checks: list[Check] = []

    def add(name: str, state: State, detail: str) -> None:
        checks.append(Check(name, state, detail))

    with _trial(s3, settings) as trial:
        _uploads(trial, signer, profile, add)
        _downloads(trial, signer, signer_for, profile, add)
        _forms(trial, signer, profile, add)
        _multipart(trial, signer, add)
        _cors(trial, signer, settings, profile, add)
    return checks


Add = Callable[[str, State, str], None]


def _refused(
    add: Add, name: str, answer: httpx.Response, accepted: str, if_accepted: State = "problem"
) -> None:
    """A trial the store should refuse: `ok` with its status, else `if_accepted`, saying what
    the acceptance means for s3gate's guarantees."""
    if _ok(answer.status_code):
        add(name, if_accepted, accepted)
    else:
        add(name, "ok", f"refused ({answer.status_code})")


def _uploads(trial: _Trial, signer: Signer, profile: StoreProfile, add: Add) -> None:
    key = trial.key("write")
    url = _put_url(signer, key)
    answer = trial.put(url)
    if _ok(answer.status_code):
        add("write", "ok", "an upload URL the service issues stores the object")
    else:
        add("write", "problem", f"an upload URL the service issues fails ({answer.status_code})")

    refused = trial.put(_put_url(signer, trial.key("wrong-type")), content_type="image/png")
    _refused(add, "wrong-content-type", refused, "accepted: the type bound into URLs does not hold")
    longer = trial.put(_put_url(signer, trial.key("wrong-length")), _BODY + b"!")
    _refused(add, "wrong-length", longer, "accepted: the size bound into URLs does not hold")

    if not profile.checksum_header:
        detail = "this profile signs no checksum; completion hashes every object"
        add("wrong-body-for-checksum", "unsupported", detail)
        add("checksum-recorded", "unsupported", detail)
    else:
        wrong = trial.put(_put_url(signer, trial.key("wrong-body")), _BODY.upper())
        if not _ok(wrong.status_code):
            add("wrong-body-for-checksum", "ok", f"refused by the store ({wrong.status_code})")
        elif profile.checksums_enforced:
            add(
                "wrong-body-for-checksum",
                "problem",
                "accepted, but this profile trusts the store's checksums: use one that hashes "
                "at completion (S3GATE_STORE_PROFILE=auto)",
            )
        else:
            add(
                "wrong-body-for-checksum",
                "unsupported",
                "accepted by the store; completion hashes the object and rejects it",
            )
        head = trial.head(key)
        recorded = head is not None and head.get("ChecksumSHA256") == _b64sha256(_BODY)
        if recorded:
            add("checksum-recorded", "ok", "HEAD returns the signed SHA-256")
        else:
            add(
                "checksum-recorded",
                "problem" if profile.checksums_enforced else "unsupported",
                "HEAD returns no SHA-256; "
                + (
                    "this profile would trust it (S3GATE_STORE_PROFILE=auto hashes instead)"
                    if profile.checksums_enforced
                    else "completion reads and hashes the object (~1.4 s/GiB)"
                ),
            )

    if profile.create_only:
        again = trial.put(url)
        if again.status_code == 412:
            add("create-only", "ok", "the upload URL used again answers 412")
        else:
            add(
                "create-only",
                "problem",
                f"the upload URL used again answers {again.status_code}: a holder could "
                "replace the bytes after completion (S3GATE_STORE_PROFILE=auto stages PUTs)",
            )
    else:
        add(
            "create-only",
            "unsupported",
            "this profile stages PUTs: completion copies the verified bytes to the file's key",
        )

    acl_key = trial.key("unsigned-acl")
    acl = trial.put(_put_url(signer, acl_key), x_amz_acl="public-read")
    if not _ok(acl.status_code):
        how = "a different ACL than the signed one" if profile.acl else "an unsigned ACL"
        add("unsigned-acl", "ok", f"{how} is refused ({acl.status_code})")
    elif _ok(trial.http.get(_anonymous_url(signer, acl_key)).status_code):
        add(
            "unsigned-acl",
            "problem",
            "x-amz-acl: public-read was accepted and made the object public: any holder of an "
            "upload URL can publish it (S3GATE_STORE_PROFILE=auto signs the ACL)",
        )
    else:
        add("unsigned-acl", "ok", "accepted, but the object stays private (IgnorePublicAcls)")

    meta = trial.put(_put_url(signer, trial.key("unsigned-meta")), x_amz_meta_probe="1")
    kept = "the store keeps unsigned x-amz-meta-* headers; completion rejects such uploads"
    _refused(add, "unsigned-metadata", meta, kept, "unsupported")


def _anonymous_url(signer: Signer, key: str) -> str:
    """The object's plain URL, no signature: what anyone on the internet can try."""
    url = signer.presign_get(
        key,
        response_content_type=_TYPE,
        response_content_disposition="attachment",
        response_cache_control="no-store",
        ttl_seconds=_TTL,
    ).url
    return url.split("?", 1)[0]


def _downloads(
    trial: _Trial, signer: Signer, signer_for: SignerFor, profile: StoreProfile, add: Add
) -> None:
    key = trial.key("write")  # written by _uploads
    anonymous = trial.http.get(_anonymous_url(signer, key))
    public = "the store serves objects without a signature: every file is public"
    _refused(add, "anonymous-get", anonymous, public)
    past = signer_for(profile=profile, clock=lambda: time.time() - 600)
    expired = past.presign_get(
        key,
        response_content_type=_TYPE,
        response_content_disposition="attachment",
        response_cache_control="no-store",
        ttl_seconds=60,
    )
    late = trial.http.get(expired.url)
    _refused(add, "expired-url", late, "a URL 9 minutes past expiry works: no lifetime holds")
    disposition = 'attachment; filename="probe.txt"'
    download = signer.presign_get(
        key,
        response_content_type="application/octet-stream",
        response_content_disposition=disposition,
        response_cache_control="private, no-store",
        ttl_seconds=_TTL,
    )
    got = trial.http.get(download.url)
    honoured = (
        _ok(got.status_code)
        and got.headers.get("content-disposition") == disposition
        and got.headers.get("content-type", "").startswith("application/octet-stream")
    )
    add(
        "response-content-disposition",
        "ok" if honoured else "problem",
        "downloads carry the type and filename s3gate signs"
        if honoured
        else f"not honoured ({got.status_code}, {got.headers.get('content-disposition')!r}): "
        "browsers could render uploaded files inline",
    )


def _forms(trial: _Trial, signer: Signer, profile: StoreProfile, add: Add) -> None:
    if not profile.form_post:
        detail = "this profile refuses form uploads (422 form_upload_unsupported)"
        for name in ("form-upload", "form-size-range", "form-tampered-signature"):
            add(name, "unsupported", detail)
        return
    posted = trial.post(_post_form(signer, trial.key("form")))
    add(
        "form-upload",
        "ok" if _ok(posted.status_code) else "problem",
        "a form the service issues stores the object"
        if _ok(posted.status_code)
        else f"a form the service issues fails ({posted.status_code})",
    )
    oversize = trial.post(_post_form(signer, trial.key("form-size")), _BODY + b"!")
    _refused(add, "form-size-range", oversize, "a body over the policy's size range was stored")
    form = _post_form(signer, trial.key("form-tampered"))
    tampered = trial.post(form, extra=_tampered(form))
    bound = "a tampered form was stored: policies bind nothing (auto refuses forms)"
    _refused(add, "form-tampered-signature", tampered, bound)


def _multipart(trial: _Trial, signer: Signer, add: Add) -> None:
    bucket, key = trial.settings.s3_bucket, trial.key("multipart")
    try:
        upload_id = trial.s3.create_multipart_upload(Bucket=bucket, Key=key, ContentType=_TYPE)[
            "UploadId"
        ]
        trial.multipart.append((key, upload_id))
        for number, body in ((1, b"p" * _PART), (2, b"!")):
            url = signer.presign_upload_part(
                key,
                upload_id=upload_id,
                part_number=number,
                content_length=len(body),
                ttl_seconds=_TTL,
            )
            sent = trial.put(url, body)
            if not _ok(sent.status_code):
                add("multipart", "problem", f"part {number} was refused ({sent.status_code})")
                return
        parts = trial.s3.list_parts(Bucket=bucket, Key=key, UploadId=upload_id)["Parts"]
        trial.s3.complete_multipart_upload(
            Bucket=bucket,
            Key=key,
            UploadId=upload_id,
            MultipartUpload={
                "Parts": [{"PartNumber": p["PartNumber"], "ETag": p["ETag"]} for p in parts]
            },
        )
        trial.multipart.clear()
        size = trial.s3.head_object(Bucket=bucket, Key=key)["ContentLength"]
    except (ClientError, BotoCoreError, KeyError) as exc:
        add("multipart", "problem", f"a two-part upload did not complete ({type(exc).__name__})")
        return
    add(
        "multipart",
        "ok" if size == _PART + 1 else "problem",
        "a two-part upload with a 1-byte last part completes"
        if size == _PART + 1
        else f"the assembled object has {size} bytes, not {_PART + 1}",
    )


def _cors(
    trial: _Trial, signer: Signer, settings: Settings, profile: StoreProfile, add: Add
) -> None:
    url = _put_url(signer, trial.key("cors")).url
    headers = [h for h in CORS_ALLOWED_HEADERS if h != "x-amz-acl" or profile.sign_acl]

    def preflight(origin: str) -> bool:
        answer = trial.http.options(
            url,
            headers={
                "Origin": origin,
                "Access-Control-Request-Method": "PUT",
                "Access-Control-Request-Headers": ",".join(headers),
            },
        )
        allowed = answer.headers.get("access-control-allow-origin")
        return _ok(answer.status_code) and allowed in (origin, "*")

    if not settings.cors_origins:
        add("cors-preflight", "ok", "no browser origins configured (S3GATE_CORS_ORIGINS)")
        return
    failing = [origin for origin in settings.cors_origins if not preflight(origin)]
    if failing:
        add("cors-preflight", "problem", f"a browser upload from {failing[0]} would be blocked")
    else:
        add("cors-preflight", "ok", f"passes from {len(settings.cors_origins)} origin(s)")
    methods = ", ".join(CORS_ALLOWED_METHODS)
    if preflight(_FOREIGN_ORIGIN):
        add("cors-foreign-origin", "problem", f"any web page may send {methods} to the bucket")
    else:
        add("cors-foreign-origin", "ok", "a preflight from another origin is refused")


def resolve_profile(
    s3: S3Client, signer_for: SignerFor, settings: Settings
) -> tuple[StoreProfile, str]:
    """The profile to run with and how it was decided: named, or measured for `auto` (the
    vendor's, or every guarantee proven by s3gate itself, when the probe cannot run)."""
    if settings.store_profile != "auto":
        return PROFILES[settings.store_profile], "configured"
    try:
        profile = measure(s3, signer_for, settings)
    except Exception as exc:  # best effort: any failure falls back to a safe profile, said
        fallback = vendor_profile(settings.s3_endpoint_url) or UNKNOWN
        return fallback, f"the probe could not run ({type(exc).__name__}); using {fallback.name}"
    return profile, f"measured (like {profile.closest()})"
