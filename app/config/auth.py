"""The callers' JWTs: which keys verify them, which algorithms, claims and admin rules."""

from __future__ import annotations

import dataclasses
import json
import re
from dataclasses import dataclass
from pathlib import Path
from typing import Annotated, Any
from urllib.parse import urlsplit

from pydantic import (
    BeforeValidator,
    Field,
    SecretStr,
    field_validator,
    model_validator,
)
from pydantic_settings import BaseSettings, NoDecode

from app.config.base import _MODEL_CONFIG, CsvList, OptionalSecret, OptionalText

HMAC_ALGORITHMS = frozenset({"HS256", "HS384", "HS512"})
ASYMMETRIC_ALGORITHMS = frozenset({"RS256", "RS384", "RS512", "ES256", "ES384", "ES512"})
# python-jose (the stack's JWT library) implements no RSASSA-PSS; refuse rather than fail later.
UNSUPPORTED_BY_JOSE = frozenset({"PS256", "PS384", "PS512"})
MIN_HMAC_SECRET_BYTES = 32  # RFC 7518 §3.2: a key at least as long as the hash output
# RFC 6749 §3.3: scope-token = 1*NQCHAR, NQCHAR = %x21 / %x23-5B / %x5D-7E.
_SCOPE_TOKEN_PATTERN = re.compile(r"[\x21\x23-\x5b\x5d-\x7e]+")

# A JWT secret that is a placeholder, not a secret: anyone who read .env.example (or guessed)
# could mint admin tokens. Refused outright: words that only placeholders contain, and values
# that are one short chunk repeated ("aaaa...", "secretsecret...").
_PLACEHOLDER_WORDS = ("change-me", "change_me", "changeme", "replace", "example", "placeholder")
_REPEATED_CHUNK = re.compile(r"(.{1,8}?)\1+", re.DOTALL)
HOW_TO_GENERATE = "python -c 'import secrets; print(secrets.token_urlsafe(48))'"
MAX_CLAIM_NAME_CHARS = 64
MAX_TIER_NAME_CHARS = 64
# A quota from a token or a tier stays within what the ledger's quota check can bind: 2**62 is
# its "no limit" stand-in (a BIGINT sum plus a size never overflows it); the pending bound is
# the global setting's.
MAX_QUOTA_BYTES = 2**62
MAX_QUOTA_PENDING = 1_000_000
_QUOTA_BOUNDS = {"bytes": MAX_QUOTA_BYTES, "pending": MAX_QUOTA_PENDING}


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


@dataclass(frozen=True, slots=True)
class QuotaTier:
    """One named tier of S3GATE_QUOTA_TIERS; None: the global setting, 0: no limit."""

    bytes: int | None = None
    pending: int | None = None


def quota_limits(value: object) -> tuple[int | None, int | None]:
    """(bytes, pending) from {"bytes": int, "pending": int}, each optional; a ValueError names
    the problem (a tier's in the settings, a token's quota claim in the verifier)."""
    if not isinstance(value, dict):
        raise ValueError('must be an object such as {"bytes": 1073741824, "pending": 10}')
    unknown = [key for key in value if key not in _QUOTA_BOUNDS]
    if unknown:
        raise ValueError(
            f"unknown key(s) {', '.join(map(repr, unknown))}; only bytes and pending are read"
        )
    limits: list[int | None] = []
    for key, bound in _QUOTA_BOUNDS.items():
        limit = value.get(key)
        # bool is an int subclass: JSON true must not pass as a quota of 1.
        if key in value and (
            isinstance(limit, bool) or not isinstance(limit, int) or not 0 <= limit <= bound
        ):
            raise ValueError(f"{key} must be an integer from 0 (no limit) to {bound}")
        limits.append(limit)
    return limits[0], limits[1]


def _no_duplicate_names(pairs: list[tuple[str, Any]]) -> dict[str, Any]:
    result: dict[str, Any] = {}
    for name, value in pairs:
        if name in result:
            raise ValueError(f"{name!r} appears twice in one object")
        result[name] = value
    return result


def parse_quota_tiers(value: Any) -> dict[str, QuotaTier]:
    """S3GATE_QUOTA_TIERS: a JSON object of tier name -> {"bytes": int, "pending": int};
    blank means no tiers. Also takes the decoded mapping (settings built in code)."""
    if isinstance(value, str):
        if not value.strip():
            return {}
        try:
            value = json.loads(value, object_pairs_hook=_no_duplicate_names)
        except json.JSONDecodeError as exc:
            raise ValueError(
                f"must be a JSON object: invalid JSON at line {exc.lineno}, column {exc.colno}"
            ) from None
    if not isinstance(value, dict):
        raise ValueError(
            'must be a JSON object of tier name -> {"bytes": ..., "pending": ...}, '
            'e.g. {"pro": {"bytes": 10737418240, "pending": 50}}'
        )
    tiers: dict[str, QuotaTier] = {}
    for name, limits in value.items():
        if isinstance(limits, QuotaTier):  # settings built in code: checked all the same
            limits = {k: v for k, v in dataclasses.asdict(limits).items() if v is not None}
        if not _plausible_name(name, MAX_TIER_NAME_CHARS):
            raise ValueError(
                f"a tier name must be 1 to {MAX_TIER_NAME_CHARS} printable characters "
                "without leading or trailing whitespace"
            )
        try:
            tiers[name] = QuotaTier(*quota_limits(limits))
        except ValueError as exc:
            raise ValueError(f"tier {name!r}: {exc}") from None
    return tiers


def _plausible_name(value: object, max_chars: int) -> bool:
    return (
        isinstance(value, str)
        and 0 < len(value) <= max_chars
        and value.isprintable()
        and value == value.strip()
    )


QuotaTiers = Annotated[dict[str, QuotaTier], NoDecode, BeforeValidator(parse_quota_tiers)]


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
    # The claim holding the caller's groups (a string or a list of strings); unset, no groups.
    group_claim: OptionalText = None
    # The claim holding the caller's quotas: {"bytes": int, "pending": int} (each optional) or
    # the name of one of quota_tiers; unset (or absent from a token), the global quotas apply.
    quota_claim: OptionalText = None
    quota_tiers: QuotaTiers = Field(default_factory=dict)

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

    @field_validator("group_claim", "quota_claim", mode="after")
    @classmethod
    def _plausible_claim_name(cls, value: str | None) -> str | None:
        if value is not None and not _plausible_name(value, MAX_CLAIM_NAME_CHARS):
            raise ValueError(
                f"must be a claim name: 1 to {MAX_CLAIM_NAME_CHARS} printable characters "
                "without leading or trailing whitespace"
            )
        return value

    @model_validator(mode="after")
    def _distinct_claims(self) -> AuthSettings:
        # A string would be both a group and a tier name: one claim cannot mean both.
        if self.group_claim is not None and self.group_claim == self.quota_claim:
            raise ValueError("S3GATE_QUOTA_CLAIM: must not be the same claim as S3GATE_GROUP_CLAIM")
        return self

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
