"""Settings, read from `S3GATE_*` environment variables and `.env`; validated and bounded."""

from __future__ import annotations

import ipaddress
import os
import re
from pathlib import Path
from typing import Annotated, Any, Literal, TypeVar
from urllib.parse import urlsplit

from pydantic import (
    BeforeValidator,
    Field,
    SecretStr,
    ValidationError,
    field_validator,
    model_validator,
)
from pydantic_settings import BaseSettings, NoDecode, SettingsConfigDict
from sqlalchemy.engine import URL, make_url
from sqlalchemy.exc import ArgumentError

from app.mediatypes import ALLOWED_PATTERN

HMAC_ALGORITHMS = frozenset({"HS256", "HS384", "HS512"})
ASYMMETRIC_ALGORITHMS = frozenset({"RS256", "RS384", "RS512", "ES256", "ES384", "ES512"})
# python-jose (the stack's JWT library) implements no RSASSA-PSS; refuse rather than fail later.
UNSUPPORTED_BY_JOSE = frozenset({"PS256", "PS384", "PS512"})
MAX_URL_TTL_SECONDS = 7 * 24 * 3600  # SigV4's hard ceiling for presigned URLs
MIN_HMAC_SECRET_BYTES = 32  # RFC 7518 §3.2: a key at least as long as the hash output
SINGLE_PUT_MAX_BYTES = 5 * 1024**3  # S3's limit for one PutObject (and for one part)
MAX_OBJECT_BYTES = 5 * 1024**4  # S3's limit for one object (multipart)
MIN_PART_BYTES = 5 * 1024**2  # S3's smallest part (all but the last)
MAX_PARTS = 10_000

_KEY_PREFIX_PATTERN = re.compile(r"([A-Za-z0-9._-]+/)*")
_BUCKET_PATTERN = re.compile(r"[a-z0-9][a-z0-9.-]{1,61}[a-z0-9]")
_IPV4 = re.compile(r"\d+\.\d+\.\d+\.\d+")
# RFC 6749 §3.3: scope-token = 1*NQCHAR, NQCHAR = %x21 / %x23-5B / %x5D-7E.
_SCOPE_TOKEN_PATTERN = re.compile(r"[\x21\x23-\x5b\x5d-\x7e]+")

# A JWT secret that is a placeholder, not a secret: anyone who read .env.example (or guessed)
# could mint admin tokens. Refused outright: words that only placeholders contain, and values
# that are one short chunk repeated ("aaaa...", "secretsecret...").
_PLACEHOLDER_WORDS = ("change-me", "change_me", "changeme", "replace", "example", "placeholder")
_REPEATED_CHUNK = re.compile(r"(.{1,8}?)\1+", re.DOTALL)
HOW_TO_GENERATE = "python -c 'import secrets; print(secrets.token_urlsafe(48))'"

DATABASE_URL_VARIABLE = "S3GATE_DATABASE_URL"
_ACCEPTED_DATABASE_URLS = (
    "use sqlite:///path/to/ledger.db or postgresql://user:password@host/dbname"
)

SettingsT = TypeVar("SettingsT", bound=BaseSettings)


class ConfigError(Exception):
    """Settings that cannot run; the message names every offending environment variable."""


def _split_csv(value: Any) -> Any:
    if isinstance(value, str):
        return [item.strip() for item in value.split(",") if item.strip()]
    return value


def _empty_to_none(value: Any) -> Any:
    if isinstance(value, str) and not value.strip():
        return None
    return value


# Declared once, by type: a comma-separated list, and text where blank (empty or spaces, from
# the environment, .env or a flag) means unset. env_ignore_empty (the model config) already
# drops empty variables; these also cover whitespace and values passed in code.
CsvList = Annotated[list[str], NoDecode, BeforeValidator(_split_csv)]
OptionalText = Annotated[str | None, BeforeValidator(_empty_to_none)]
OptionalSecret = Annotated[SecretStr | None, BeforeValidator(_empty_to_none)]


def ledger_url(database_url: str) -> tuple[URL, Literal["sqlite", "postgresql"]]:
    """The parsed URL and its backend, if the ledger can run on it; else a ValueError that
    names S3GATE_DATABASE_URL and what is accepted (never the URL: it may hold a password).

    The one backend check: settings validation, migrations (app.db.sync_url) and the request
    path's drivers all call it. It lives here, not in app.db, so that workers need not import
    Alembic (~10 MB each) to validate their settings."""
    try:
        url = make_url(database_url)
    except ArgumentError:
        raise ValueError(
            f"{DATABASE_URL_VARIABLE}: not a database URL ({_ACCEPTED_DATABASE_URLS})"
        ) from None
    backend = url.get_backend_name()
    if backend in ("postgresql", "postgres"):
        return url, "postgresql"
    if backend != "sqlite":
        raise ValueError(
            f"{DATABASE_URL_VARIABLE}: the ledger does not run on {backend!r} "
            f"({_ACCEPTED_DATABASE_URLS})"
        )
    path = url.database or ""
    if path in ("", ":memory:"):
        return url, "sqlite"
    # SQLite would fail only at the first statement, deep in startup. A path is no secret, so
    # the message names it.
    file = Path(path).expanduser()
    if file.is_dir():
        problem = f"{path} is a directory, not a database file"
    elif not file.parent.is_dir():
        problem = f"the directory of {path} does not exist"
    elif not os.access(file.parent, os.W_OK | os.X_OK):
        problem = f"the directory of {path} is not writable (SQLite writes its WAL beside it)"
    else:
        return url, "sqlite"
    raise ValueError(f"{DATABASE_URL_VARIABLE}: {problem} ({_ACCEPTED_DATABASE_URLS})")


def jwt_secret_problem(secret: str) -> str | None:
    """Why this HMAC secret must not be used (too short, or a placeholder), or None."""
    if len(secret.encode()) < MIN_HMAC_SECRET_BYTES:
        return f"needs {MIN_HMAC_SECRET_BYTES} bytes or more; generate one with {HOW_TO_GENERATE}"
    lowered = secret.lower()
    if any(word in lowered for word in _PLACEHOLDER_WORDS) or _REPEATED_CHUNK.fullmatch(lowered):
        return (
            "is a placeholder, not a secret (anyone could mint tokens with it); "
            f"generate one with {HOW_TO_GENERATE}"
        )
    return None


_MODEL_CONFIG = SettingsConfigDict(
    env_prefix="S3GATE_", env_file=".env", extra="ignore", frozen=True, env_ignore_empty=True
)


class DatabaseSettings(BaseSettings):
    """What `s3gate migrate` (and Alembic) need: only the ledger's URL."""

    model_config = _MODEL_CONFIG

    # sqlite:///path or postgresql+psycopg://user:pass@host/db (driver added when missing)
    database_url: str = "sqlite:///./s3gate.db"
    database_pool_size: int = Field(default=10, ge=1, le=200)

    @field_validator("database_url", mode="after")
    @classmethod
    def _usable_ledger(cls, value: str) -> str:
        ledger_url(value)
        return value


class LoggingSettings(BaseSettings):
    """How every command logs: lines (one per request in `s3gate.access`, plus audit and
    errors) as JSON objects on stderr, or `text` for a terminal."""

    model_config = _MODEL_CONFIG

    log_level: Literal["debug", "info", "warning", "error"] = "info"
    log_format: Literal["json", "text"] = "json"


class MigrateSettings(DatabaseSettings, LoggingSettings):
    """What `s3gate migrate` reads."""


class AuthSettings(BaseSettings):
    """What it takes to verify (and, in development, mint) the callers' JWTs."""

    model_config = _MODEL_CONFIG

    jwt_secret: OptionalSecret = None
    jwt_public_key: OptionalSecret = None
    jwt_jwks_url: OptionalText = None
    jwt_algorithms: CsvList = Field(default_factory=list)
    jwt_issuer: OptionalText = None
    jwt_audience: OptionalText = None
    # A public key or JWKS is usually an identity provider's, signing tokens for many
    # applications; without an audience check any of their tokens is accepted here.
    jwt_audience_optional: bool = False
    jwt_leeway_seconds: int = Field(default=30, ge=0, le=3600)
    jwt_jwks_cache_seconds: int = Field(default=3600, ge=10, le=7 * 24 * 3600)
    jwt_jwks_cooldown_seconds: int = Field(default=60, ge=1, le=3600)
    admin_scope: str = Field(default="s3gate:admin", min_length=1)
    # The claim (a list of strings) whose exact element equal to admin_scope also makes a
    # caller admin; unset, only `scope` does.
    admin_roles_claim: OptionalText = None

    @field_validator("admin_scope", mode="after")
    @classmethod
    def _one_scope_token(cls, value: str) -> str:
        # Scopes are split on spaces (RFC 6749 §3.3), so any other value could never match.
        if not _SCOPE_TOKEN_PATTERN.fullmatch(value):
            raise ValueError('must be one scope token: printable ASCII, no space, " or \\')
        return value

    @field_validator("admin_roles_claim", mode="after")
    @classmethod
    def _claim_name(cls, value: str | None) -> str | None:
        # A name with stray whitespace would silently never be found in any token.
        if value is not None and value != value.strip():
            raise ValueError("must be a claim name without leading or trailing whitespace")
        return value

    @field_validator("jwt_secret", mode="after")
    @classmethod
    def _usable_secret(cls, value: SecretStr | None) -> SecretStr | None:
        if value is not None and (problem := jwt_secret_problem(value.get_secret_value())):
            raise ValueError(problem)
        return value

    @field_validator("jwt_public_key", mode="after")
    @classmethod
    def _read_key_file(cls, value: SecretStr | None) -> SecretStr | None:
        # A value that is not PEM text is a path (Docker/Kubernetes secrets are mounted as files).
        if value is None or value.get_secret_value().lstrip().startswith("-----BEGIN"):
            return value
        path = Path(value.get_secret_value()).expanduser()
        try:
            return SecretStr(path.read_text(encoding="ascii"))
        except (OSError, UnicodeDecodeError) as exc:
            reason = exc.strerror if isinstance(exc, OSError) else "not ASCII"
            raise ValueError(f"not PEM text and not a readable PEM file ({reason})") from None

    @field_validator("jwt_jwks_url", mode="after")
    @classmethod
    def _jwks_over_tls(cls, value: str | None) -> str | None:
        # Keys fetched over plain HTTP can be swapped by anyone on the path; loopback is exempt
        # for local identity providers and tests.
        if value is None:
            return None
        try:
            parts = urlsplit(value)
            host = parts.hostname
        except ValueError:
            host = None
        if parts.scheme not in ("http", "https") or not host or any(c.isspace() for c in value):
            raise ValueError("must be an http(s) URL")
        if parts.scheme == "http" and host not in ("localhost", "127.0.0.1", "::1"):
            raise ValueError("must use https (plain http is allowed only for localhost)")
        return value

    @model_validator(mode="after")
    def _check_key_material(self) -> AuthSettings:
        sources = [
            name
            for name, value in (
                ("S3GATE_JWT_SECRET", self.jwt_secret),
                ("S3GATE_JWT_PUBLIC_KEY", self.jwt_public_key),
                ("S3GATE_JWT_JWKS_URL", self.jwt_jwks_url),
            )
            if value is not None
        ]
        if len(sources) != 1:
            found = ", ".join(sources) if sources else "none"
            raise ValueError(
                "set exactly one of S3GATE_JWT_SECRET, S3GATE_JWT_PUBLIC_KEY, "
                f"S3GATE_JWT_JWKS_URL (found: {found})"
            )
        hmac_mode = self.jwt_secret is not None
        algorithms = [a.upper() for a in self.jwt_algorithms] or (
            ["HS256"] if hmac_mode else ["RS256"]
        )
        # Collected rather than raised one by one: one start names every problem.
        problems = []
        if pss := sorted(set(algorithms) & UNSUPPORTED_BY_JOSE):
            problems.append(
                f"S3GATE_JWT_ALGORITHMS: {pss} not supported (python-jose has no RSASSA-PSS); "
                "use RS256/384/512 or ES256/384/512"
            )
        unknown = sorted(set(algorithms) - HMAC_ALGORITHMS - ASYMMETRIC_ALGORITHMS)
        if unknown:
            problems.append(f"S3GATE_JWT_ALGORITHMS: unsupported algorithm(s) {unknown}")
        hmac = set(algorithms) & HMAC_ALGORITHMS
        asymmetric = set(algorithms) & ASYMMETRIC_ALGORITHMS
        if hmac and asymmetric:
            problems.append(
                "S3GATE_JWT_ALGORITHMS: HMAC and asymmetric algorithms must not be allowed "
                "together (a public key would become a forgeable HMAC secret)"
            )
        elif hmac_mode and asymmetric:
            problems.append(
                "S3GATE_JWT_ALGORITHMS: S3GATE_JWT_SECRET works only with HS256/HS384/HS512"
            )
        elif not hmac_mode and hmac:
            problems.append(
                "S3GATE_JWT_ALGORITHMS: a public key or JWKS works only with RS/ES algorithms"
            )
        # An HMAC secret is the service's own: only its own issuer can mint tokens with it.
        if not hmac_mode and self.jwt_audience is None and not self.jwt_audience_optional:
            problems.append(
                "S3GATE_JWT_AUDIENCE: required with S3GATE_JWT_PUBLIC_KEY or S3GATE_JWT_JWKS_URL "
                "(an identity provider's key also signs tokens meant for other applications); "
                "set S3GATE_JWT_AUDIENCE_OPTIONAL=true only if every token this key signs is "
                "for this service"
            )
        if problems:
            raise ValueError("\n".join(problems))
        object.__setattr__(self, "jwt_algorithms", algorithms)
        return self


class StoreSettings(BaseSettings):
    """The bucket, how to reach it, and how URLs for it are signed."""

    model_config = _MODEL_CONFIG

    s3_bucket: str
    s3_region: str = Field(default="us-east-1", min_length=1)
    s3_endpoint_url: OptionalText = None
    s3_public_endpoint_url: OptionalText = None
    s3_addressing_style: Literal["path", "virtual", "auto"] = "auto"
    s3_key_prefix: str = "uploads/"

    # sigv4: direct signing, byte-identical to boto3 and several times cheaper; boto3: the SDK's
    # generate_presigned_url, as a fallback.
    signer: Literal["sigv4", "boto3"] = "sigv4"

    storage_connect_timeout_seconds: float = Field(default=2.0, gt=0, le=60)
    storage_read_timeout_seconds: float = Field(default=10.0, gt=0, le=300)
    storage_max_attempts: int = Field(default=3, ge=1, le=10)
    # Whole-object reads (hashing at completion) at once per process.
    hash_concurrency: int = Field(default=4, ge=1, le=64)

    @field_validator("s3_endpoint_url", "s3_public_endpoint_url", mode="after")
    @classmethod
    def _endpoint_is_http_url(cls, value: str | None) -> str | None:
        if value is not None and not re.fullmatch(r"https?://[^/?#\s]+/?", value):
            raise ValueError("must be an http(s) URL with no path, e.g. https://s3.example.com")
        return value.rstrip("/") if value else value

    @field_validator("s3_bucket")
    @classmethod
    def _bucket_name(cls, value: str) -> str:
        if not _BUCKET_PATTERN.fullmatch(value) or ".." in value or _IPV4.fullmatch(value):
            raise ValueError("not a valid S3 bucket name (3-63 of a-z 0-9 . -)")
        return value

    @field_validator("s3_key_prefix")
    @classmethod
    def _key_prefix(cls, value: str) -> str:
        segments = value.split("/")[:-1]
        if not _KEY_PREFIX_PATTERN.fullmatch(value) or {".", ".."} & set(segments):
            # Clients normalise dot segments away, so the path sent would not be the one signed.
            raise ValueError(
                "must be empty or segments of [A-Za-z0-9._-] each ending in '/', no '.' or '..'"
            )
        return value

    @property
    def signing_endpoint_url(self) -> str | None:
        """The endpoint that goes into presigned URLs (clients must be able to reach it)."""
        return self.s3_public_endpoint_url or self.s3_endpoint_url


class UrlSettings(BaseSettings):
    """How long the URLs handed out live, and how long after that they may still write."""

    model_config = _MODEL_CONFIG

    upload_url_ttl_seconds: int = Field(default=900, ge=1, le=MAX_URL_TTL_SECONDS)
    download_url_ttl_seconds: int = Field(default=60, ge=1, le=MAX_URL_TTL_SECONDS)
    # An upload that S3 accepted just before its URL expired may take a while to arrive.
    completion_grace_seconds: int = Field(default=3600, ge=0, le=MAX_URL_TTL_SECONDS)
    # How far the store's clock may run behind ours (`s3gate bucket check` measures it): an
    # upload URL may still write until its expiry plus the grace plus this, so until then an
    # ended file's object is deleted again on every reaper pass and its bytes count as held.
    store_clock_skew_seconds: int = Field(default=300, ge=0, le=3600)


class UploadSettings(BaseSettings):
    """What may be uploaded, and how: sizes, types, parts, completion."""

    model_config = _MODEL_CONFIG

    # How long a completion waits for another one that is verifying the same file, to answer
    # with its result; past it, 409 upload_incomplete ("verifying": call again). Longer than
    # the 10 s verification lease, so a retry after a replica died mid-way verifies itself.
    completion_wait_seconds: float = Field(default=15.0, ge=0, le=60)
    max_file_size: int = Field(default=SINGLE_PUT_MAX_BYTES, ge=1, le=MAX_OBJECT_BYTES)
    # Files above the threshold (or declared "multipart": true) upload in parts of part_size
    # (grown when needed to stay within 10,000 parts); part URLs can be asked for again until
    # the multipart deadline.
    multipart_threshold: int = Field(
        default=100 * 1024**2, ge=MIN_PART_BYTES, le=SINGLE_PUT_MAX_BYTES
    )
    part_size: int = Field(default=16 * 1024**2, ge=MIN_PART_BYTES, le=SINGLE_PUT_MAX_BYTES)
    multipart_deadline_seconds: int = Field(default=86400, ge=60, le=MAX_URL_TTL_SECONDS)
    allowed_content_types: CsvList = Field(default_factory=lambda: ["*/*"])

    @field_validator("allowed_content_types", mode="after")
    @classmethod
    def _content_type_patterns(cls, value: list[str]) -> list[str]:
        patterns = [item.lower() for item in value]
        bad = [item for item in patterns if not ALLOWED_PATTERN.fullmatch(item)]
        if bad:
            raise ValueError(f"not type/subtype patterns: {bad} (e.g. image/*,application/pdf)")
        if not patterns:
            raise ValueError("must allow at least one pattern (default */*)")
        return patterns


class QuotaSettings(BaseSettings):
    """Per-owner quotas, checked before anything is handed out (0: no limit)."""

    model_config = _MODEL_CONFIG

    # Per-owner quotas, checked before anything is handed out (0: no limit): bytes held by
    # pending and available files, and the number of uploads pending at once.
    quota_bytes_per_owner: int = Field(default=0, ge=0)
    quota_pending_uploads_per_owner: int = Field(default=0, ge=0, le=1_000_000)


class RateLimitSettings(BaseSettings):
    """The per-owner request rate limit on the routes that issue URLs."""

    model_config = _MODEL_CONFIG

    # Per-owner limit on the routes that issue URLs (uploads, part URLs, downloads):
    # `burst` at once, refilled at `per_minute`; 0 turns it off. Shared through Redis when
    # S3GATE_REDIS_URL is set, per process otherwise.
    rate_limit_per_minute: int = Field(default=600, ge=0, le=10_000_000)
    rate_limit_burst: int = Field(default=100, ge=1, le=1_000_000)
    redis_url: OptionalText = None
    # When Redis fails: true lets requests through (logged), false answers 503.
    rate_limit_fail_open: bool = True

    @field_validator("redis_url", mode="after")
    @classmethod
    def _redis_url(cls, value: str | None) -> str | None:
        if value is not None and not re.match(r"^(redis|rediss|unix)://", value):
            raise ValueError("must be a redis://, rediss:// or unix:// URL")
        return value


class ReaperSettings(BaseSettings):
    """The in-process reaper (`s3gate reap` runs the same pass on demand)."""

    model_config = _MODEL_CONFIG

    # Expire stale uploads and remove orphaned objects in-process every N seconds (0: off; run
    # `s3gate reap` from cron or a Kubernetes CronJob instead, or as well: runs never clash).
    reaper_interval_seconds: int = Field(default=0, ge=0, le=86400)
    reaper_batch_size: int = Field(default=500, ge=1, le=10_000)


class HttpSettings(BaseSettings):
    """How the HTTP server runs and whom it answers: CORS, the demo, proxies, the drain."""

    model_config = _MODEL_CONFIG

    cors_origins: CsvList = Field(default_factory=list)
    # The demo page at /demo/ (a development aid: `s3gate dev` turns it on). The browser
    # client at /client/s3gate.js is always served.
    demo: bool = False
    root_path: str = ""

    # Deployment: how `s3gate serve` runs, so a container is configured by its environment
    # (command-line flags win). Proxy headers are trusted only from the listed addresses or
    # networks ("*": any, only where nothing else can reach the port).
    host: str = Field(default="127.0.0.1", min_length=1)
    port: int = Field(default=8000, ge=1, le=65535)
    workers: int = Field(default=1, ge=1, le=64)
    proxy_headers: bool = False
    forwarded_allow_ips: CsvList = Field(default_factory=lambda: ["127.0.0.1"])
    # After SIGTERM: stop accepting, let in-flight requests finish for up to this long, exit.
    # Keep it below the orchestrator's own grace period (docker stop -t, Kubernetes'
    # terminationGracePeriodSeconds), which ends in SIGKILL.
    graceful_shutdown_seconds: int = Field(default=25, ge=0, le=3600)
    # Apply ledger migrations before serving (safe with several replicas starting at once:
    # they take turns on a PostgreSQL advisory lock). Off: run `s3gate migrate` as a release step.
    migrate_on_start: bool = False

    @field_validator("cors_origins", mode="after")
    @classmethod
    def _origins(cls, value: list[str]) -> list[str]:
        bad = [o for o in value if not re.fullmatch(r"https?://[^/?#\s]+", o)]
        if bad:
            raise ValueError(f"origins are scheme://host[:port] with no path: {bad}")
        return value

    @field_validator("forwarded_allow_ips", mode="after")
    @classmethod
    def _proxy_networks(cls, value: list[str]) -> list[str]:
        bad = []
        for item in value:
            try:
                if item != "*":
                    ipaddress.ip_network(item, strict=False)
            except ValueError:
                bad.append(item)
        if bad:
            raise ValueError(f"not IP addresses or networks: {bad} (e.g. 10.0.0.0/8,127.0.0.1)")
        return value

    @field_validator("root_path")
    @classmethod
    def _root_path(cls, value: str) -> str:
        value = value.rstrip("/")
        if value and not value.startswith("/"):
            raise ValueError("must start with '/'")
        return value


class Settings(
    DatabaseSettings,
    LoggingSettings,
    AuthSettings,
    StoreSettings,
    UrlSettings,
    UploadSettings,
    QuotaSettings,
    RateLimitSettings,
    ReaperSettings,
    HttpSettings,
):
    """Everything `s3gate serve` needs: each concern's settings, read from one environment.

    Each part takes only the concern it uses (e.g. the upload use case an UploadSettings), so
    its type says which variables can change its behaviour."""


def _problems(exc: ValidationError, prefix: str) -> list[str]:
    lines = []
    for error in exc.errors(include_input=False, include_url=False):
        variable = prefix + ".".join(str(part) for part in error["loc"]).upper()
        message = str(error["msg"]).removeprefix("Value error, ")
        # A message from a shared check (ledger_url) or a cross-field rule names its variable.
        named = not error["loc"] or message.startswith(f"{variable}:")
        lines.append(message if named else f"{variable}: {message}")
    return lines


def describe_validation_error(exc: ValidationError, prefix: str = "S3GATE_") -> str:
    """One line per problem, each naming the environment variable to fix; never a value."""
    return "\n".join(_problems(exc, prefix))


_SETTINGS_GROUPS: tuple[type[BaseSettings], ...] = (DatabaseSettings, LoggingSettings, AuthSettings)


def load_settings(cls: type[SettingsT], **overrides: Any) -> SettingsT:
    """Build settings from the environment (`overrides`, such as command-line flags, win),
    turning validation errors into a ConfigError that names every invalid setting."""
    try:
        return cls(**overrides)
    except ValidationError as exc:
        problems = _problems(exc, "S3GATE_")
    # pydantic checks cross-field rules (the JWT key material's) only once every field is
    # valid; each group is checked on its own too, so one start names every problem at once.
    for group in _SETTINGS_GROUPS:
        if group is not cls and issubclass(cls, group):
            try:
                group(**overrides)
            except ValidationError as exc:
                problems += [line for line in _problems(exc, "S3GATE_") if line not in problems]
    raise ConfigError("\n".join(problems))
