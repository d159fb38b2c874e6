"""Bearer-token verification: signature, algorithm allow-list, claim rules, the admin rule, the
verified-token cache; and dev-token minting. The only module that imports python-jose."""

from __future__ import annotations

import json
import logging
import math
import re
import time
import unicodedata
from collections.abc import Callable
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, TypeGuard

from jose import jwk, jws, jwt
from jose.backends.base import Key

from app.auth.keys import KeySource, key_source, kty_for
from app.config import AuthSettings
from app.config.auth import quota_limits

if TYPE_CHECKING:
    import httpx
from app.errors import InvalidToken, MissingToken

log = logging.getLogger("s3gate.auth")

MAX_TOKEN_CHARS = 8 * 1024
MAX_SUB_CHARS = 255
MAX_GROUPS = 32  # distinct groups in one token
# Verified tokens are remembered briefly: clients reuse one token for many calls, and signature
# checking plus claim parsing is the largest CPU cost of a request. Entries never outlive the
# token's own exp, and a JWKS refresh empties the cache so a withdrawn key stops working.
VERIFIED_CACHE_SECONDS = 60.0
VERIFIED_CACHE_MAX_ENTRIES = 4096
VERIFIED_CACHE_MAX_TOKEN_CHARS = 2048

_COMPACT_JWS = re.compile(r"[A-Za-z0-9_-]+\.[A-Za-z0-9_-]+\.[A-Za-z0-9_-]+")
# A `sub` is stored in the ledger, logged and hashed into object keys, so it may hold none of:
# controls (Cc: NUL, newline, DEL, C1 such as U+0085), surrogates (Cs: not encodable as UTF-8),
# line/paragraph separators (Zl, Zp: break text log lines), or invisible format characters
# (Cf: bidi overrides reorder a log line, zero-width characters make two owners look alike).
_SUB_FORBIDDEN_CATEGORIES = frozenset({"Cc", "Cs", "Cf", "Zl", "Zp"})


@dataclass(frozen=True, slots=True)
class Quota:
    """An owner's quotas from its token (S3GATE_QUOTA_CLAIM); None: the global setting.
    0 means no limit, as in the settings."""

    bytes: int | None = None
    pending: int | None = None


@dataclass(frozen=True, slots=True)
class Principal:
    """Who is calling: the token's `sub`, whether it carries the admin scope, the groups it
    belongs to (S3GATE_GROUP_CLAIM; grants to a group reach it) and its quota tier."""

    sub: str
    is_admin: bool
    groups: tuple[str, ...] = ()
    quota: Quota | None = None


class _JoseKeys:
    """The KeyFactory of the key sources: python-jose keys, verify-only."""

    def from_material(self, material: str, algorithm: str) -> tuple[Key, str | None]:
        key = jwk.construct(material, algorithm)
        if kty_for(algorithm) != "oct":
            # A private PEM is accepted but only its public half is kept in memory.
            key = key.public_key()
        return key, key.to_dict().get("crv")

    def from_jwk(self, public: dict[str, str], algorithm: str) -> Key:
        return jwk.construct(public, algorithm)


def _is_number(value: object) -> TypeGuard[int | float]:
    # bool is an int subclass; JSON true must not pass as a timestamp.
    if isinstance(value, bool) or not isinstance(value, int | float):
        return False
    try:
        return math.isfinite(value)
    # A JSON integer beyond float range (10**400) is no interoperable number (RFC 8259 §6).
    except OverflowError:
        return False


def _is_valid_sub(value: object) -> TypeGuard[str]:
    if not isinstance(value, str) or not 0 < len(value) <= MAX_SUB_CHARS:
        return False
    if value.isascii():
        return value.isprintable()  # the common case; in ASCII only Cc is unprintable
    return not any(unicodedata.category(char) in _SUB_FORBIDDEN_CATEGORIES for char in value)


def _reject_constant(name: str) -> Any:
    raise ValueError("non-finite number in claims")


def _no_duplicates(pairs: list[tuple[str, Any]]) -> dict[str, Any]:
    # RFC 7519 §4: a parser may reject duplicate claim names; ambiguity is never worth accepting.
    result: dict[str, Any] = {}
    for name, value in pairs:
        if name in result:
            raise ValueError("duplicate claim name")
        result[name] = value
    return result


class TokenVerifier:
    """Verifies bearer JWTs against the configured key material and claim rules."""

    def __init__(
        self,
        settings: AuthSettings,
        *,
        http: httpx.AsyncClient | None = None,
        clock: Callable[[], float] = time.time,
    ) -> None:
        self._settings = settings
        self._algorithms = frozenset(settings.jwt_algorithms)
        self._clock = clock
        self._leeway = settings.jwt_leeway_seconds
        self._verified: dict[str, tuple[Principal, float]] = {}  # token -> (who, valid until)
        self._tiers = {
            name: Quota(bytes=tier.bytes, pending=tier.pending)
            for name, tier in settings.quota_tiers.items()
        }
        # Static keys are built (and refused with a ConfigError) here; JWKS keys at start().
        self._keys: KeySource[Key] = key_source(
            settings, _JoseKeys(), http=http, clock=clock, on_rotate=self._verified.clear
        )

    async def start(self) -> None:
        """Fetch the JWKS once (JWKS mode); a failure is logged and left to later refreshes."""
        await self._keys.start()

    async def aclose(self) -> None:
        """Close the HTTP client if this verifier created it."""
        await self._keys.aclose()

    @property
    def keys_loaded(self) -> bool:
        """Whether a token could be verified now (JWKS mode: at least one usable key cached)."""
        return self._keys.keys_loaded

    async def authenticate(self, authorization: str | None) -> Principal:
        """Verify an `Authorization` header value of the form `Bearer <token>`."""
        if authorization is None or not authorization.strip():
            raise MissingToken()
        scheme, _, token = authorization.strip().partition(" ")
        token = token.strip()
        if scheme.lower() != "bearer" or not token or " " in token:
            raise InvalidToken()
        return await self.verify(token)

    async def verify(self, token: str) -> Principal:
        """Verify a compact JWT's signature and claims; any failure raises InvalidToken."""
        # Length first: the cheap guard before any decoding or regex work.
        if not isinstance(token, str) or len(token) > MAX_TOKEN_CHARS:
            raise InvalidToken()
        cached = self._verified.get(token)
        if cached is not None:
            now = self._clock()
            # A stale key set must be refreshed first: it may have withdrawn this token's key.
            if now < cached[1] and not self._keys.stale(now):
                return cached[0]
            del self._verified[token]
        # jose's base64 decoder skips stray characters; only canonical compact JWS gets through.
        if not _COMPACT_JWS.fullmatch(token):
            raise InvalidToken()
        header = self._header(token)
        alg = header.get("alg")
        if not isinstance(alg, str) or alg not in self._algorithms:
            raise InvalidToken()
        # RFC 7515 §4.1.11: extensions we do not implement (e.g. b64=false) must be refused.
        if "crit" in header:
            raise InvalidToken()
        kid = header.get("kid")
        if kid is not None and not isinstance(kid, str):
            raise InvalidToken()
        keys = await self._keys.keys_for(alg, kid)
        if not keys:
            raise InvalidToken()
        claims = self._verified_claims(token, alg, keys)
        try:
            principal = self._principal(claims)
        except InvalidToken:
            raise
        # Claims are attacker-shaped values: a check that trips over one nobody foresaw must
        # still refuse the token, never answer 500. The type name only: messages can quote claims.
        except Exception as exc:
            log.warning("token refused: a claim check raised %s", type(exc).__name__)
            raise InvalidToken() from None
        # Only now, with every check passed, may the token be remembered.
        self._remember(token, principal, claims["exp"])
        return principal

    def _remember(self, token: str, principal: Principal, exp: float) -> None:
        if len(token) > VERIFIED_CACHE_MAX_TOKEN_CHARS:
            return
        if len(self._verified) >= VERIFIED_CACHE_MAX_ENTRIES:
            self._verified.clear()  # rare; a full clear keeps the bound without LRU bookkeeping
        # _principal accepted `now - leeway < exp`; the entry ends where that stops holding.
        until = min(exp + self._leeway, self._clock() + VERIFIED_CACHE_SECONDS)
        self._verified[token] = (principal, until)

    @staticmethod
    def _header(token: str) -> dict[str, Any]:
        try:
            header = jws.get_unverified_header(token)
        # jose leaks TypeError/ValueError/binascii/Unicode errors on malformed input, not JWTError.
        except Exception:
            raise InvalidToken() from None
        if not isinstance(header, dict):
            raise InvalidToken()
        return header

    @staticmethod
    def _verified_claims(token: str, alg: str, keys: list[Key]) -> dict[str, Any]:
        for key in keys:
            try:
                payload = jws.verify(token, key, algorithms=[alg])
            # Any exception means "this key did not verify it"; none may escape as a 500.
            except Exception:  # noqa: S112 - try the next candidate key
                continue
            try:
                claims = json.loads(
                    payload, parse_constant=_reject_constant, object_pairs_hook=_no_duplicates
                )
            # Malformed JSON, bad UTF-8 or absurd nesting (RecursionError) all mean "invalid".
            except Exception:
                raise InvalidToken() from None
            if not isinstance(claims, dict):
                raise InvalidToken()
            return claims
        raise InvalidToken()

    def _principal(self, claims: dict[str, Any]) -> Principal:
        settings = self._settings
        now = self._clock()
        exp = claims.get("exp")
        if not _is_number(exp) or now - self._leeway >= exp:
            raise InvalidToken()
        for name in ("nbf", "iat"):
            if name in claims:
                value = claims[name]
                # iat in the future means a broken issuer clock or a pre-minted token: not yet.
                if not _is_number(value) or value > now + self._leeway:
                    raise InvalidToken()
        sub = claims.get("sub")
        if not _is_valid_sub(sub):
            raise InvalidToken()
        if settings.jwt_issuer is not None and claims.get("iss") != settings.jwt_issuer:
            raise InvalidToken()
        if settings.jwt_audience is not None:
            aud = claims.get("aud")
            audiences = aud if isinstance(aud, list) else [aud]
            if not all(isinstance(a, str) for a in audiences):
                raise InvalidToken()
            if settings.jwt_audience not in audiences:
                raise InvalidToken()
        return Principal(
            sub=sub,
            is_admin=self._is_admin(claims),
            groups=self._groups(claims),
            quota=self._quota(claims),
        )

    def _groups(self, claims: dict[str, Any]) -> tuple[str, ...]:
        name = self._settings.group_claim
        if name is None or name not in claims:
            return ()
        value = claims[name]
        members = [value] if isinstance(value, str) else value
        # Groups are matched against grants and logged like a `sub`: held to the same rule.
        # A claim of any other shape is refused, never read as "no groups".
        if not isinstance(members, list) or not all(_is_valid_sub(group) for group in members):
            raise InvalidToken()
        groups = tuple(dict.fromkeys(members))
        if len(groups) > MAX_GROUPS:
            raise InvalidToken()
        return groups

    def _quota(self, claims: dict[str, Any]) -> Quota | None:
        name = self._settings.quota_claim
        if name is None or name not in claims:
            return None
        value = claims[name]
        if isinstance(value, str):
            tier = self._tiers.get(value)
            if tier is None:  # a tier this deployment does not define: never the global one
                raise InvalidToken()
            return tier
        try:
            limits = quota_limits(value)
        except ValueError:
            raise InvalidToken() from None
        return Quota(bytes=limits[0], pending=limits[1])

    def _is_admin(self, claims: dict[str, Any]) -> bool:
        wanted = self._settings.admin_scope
        scope = claims.get("scope")
        # RFC 6749 §3.3: scope tokens are separated by SP alone. str.split() also splits on
        # U+00A0, U+3000, U+001F, U+0085..., which made "files:read\u00a0s3gate:admin" admin.
        if isinstance(scope, str) and wanted in scope.split(" "):
            return True
        roles_claim = self._settings.admin_roles_claim
        if roles_claim is None:
            return False
        roles = claims.get(roles_claim)
        return (
            isinstance(roles, list)
            and all(isinstance(role, str) for role in roles)
            and wanted in roles
        )


def bearer_description(settings: AuthSettings) -> str:
    """The OpenAPI text of the bearer scheme: the claims this deployment requires."""
    claim = settings.admin_roles_claim
    roles = f", or an element of the list `{claim}`" if claim is not None else ""
    groups = (
        f"`{settings.group_claim}` (when present) is one group or a list of up to {MAX_GROUPS} "
        "distinct groups, each held to the rule of `sub`. "
        if settings.group_claim is not None
        else ""
    )
    quota = (
        f'`{settings.quota_claim}` (when present) is {{"bytes": n, "pending": n}} (each '
        "optional, a non-negative integer, 0: no limit) or the name of a quota tier. "
        if settings.quota_claim is not None
        else ""
    )
    return (
        "A JWT issued by your identity provider. `sub` (the owner id) is 1-255 printable "
        "characters: no control, lone surrogate, line/paragraph separator or invisible format "
        f"character. `exp` (and `nbf`/`iat` when present) are finite numbers. {groups}{quota}"
        "Any other token is 401 `invalid_token`. "
        f"Admin: `{settings.admin_scope}` as one of the space-separated tokens of `scope`{roles}."
    )


def mint_token(
    secret: str,
    sub: str,
    *,
    algorithm: str = "HS256",
    ttl_seconds: int = 3600,
    admin_scope: str | None = None,
    issuer: str | None = None,
    audience: str | None = None,
    now: float | None = None,
    extra_claims: dict[str, Any] | None = None,
) -> str:
    """Mint an HMAC-signed token (for `s3gate token` and tests); `extra_claims` are merged
    in last (e.g. a groups or quota claim)."""
    issued = int(time.time() if now is None else now)
    claims: dict[str, Any] = {"sub": sub, "iat": issued, "exp": issued + ttl_seconds}
    if admin_scope is not None:
        claims["scope"] = admin_scope
    if issuer is not None:
        claims["iss"] = issuer
    if audience is not None:
        claims["aud"] = audience
    claims.update(extra_claims or {})
    return jwt.encode(claims, secret, algorithm=algorithm)
