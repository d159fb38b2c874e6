"""Bearer-token verification (HMAC secret, PEM public key or JWKS) and dev-token minting."""

from __future__ import annotations

import asyncio
import json
import logging
import math
import re
import time
import unicodedata
from collections.abc import Callable
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, TypeGuard
from urllib.parse import urlsplit

from jose import jwk, jws, jwt
from jose.backends.base import Key

from app.config import AuthSettings, ConfigError

if TYPE_CHECKING:
    import httpx
from app.errors import InvalidToken, MissingToken

log = logging.getLogger("s3gate.auth")

MAX_TOKEN_CHARS = 8 * 1024
MAX_SUB_CHARS = 255
MAX_JWKS_BYTES = 512 * 1024
JWKS_TIMEOUT_SECONDS = 3.0
# Verified tokens are remembered briefly: clients reuse one token for many calls, and signature
# checking plus claim parsing is the largest CPU cost of a request. Entries never outlive the
# token's own exp, and a JWKS refresh empties the cache so a withdrawn key stops working.
VERIFIED_CACHE_SECONDS = 60.0
VERIFIED_CACHE_MAX_ENTRIES = 4096
VERIFIED_CACHE_MAX_TOKEN_CHARS = 2048

# RFC 7518 §3.4: each ES algorithm is defined for exactly one curve.
_EC_CURVES = {"ES256": "P-256", "ES384": "P-384", "ES512": "P-521"}
_COMPACT_JWS = re.compile(r"[A-Za-z0-9_-]+\.[A-Za-z0-9_-]+\.[A-Za-z0-9_-]+")
# alg -> key for one JWK; kid -> alg -> keys (a kid may repeat, e.g. mid-rotation).
_KeysByAlg = dict[str, Key]
_KidIndex = dict[str, dict[str, list[Key]]]
_PUBLIC_MEMBERS = {"RSA": ("n", "e"), "EC": ("crv", "x", "y")}
# A `sub` is stored in the ledger, logged and hashed into object keys, so it may hold none of:
# controls (Cc: NUL, newline, DEL, C1 such as U+0085), surrogates (Cs: not encodable as UTF-8),
# line/paragraph separators (Zl, Zp: break text log lines), or invisible format characters
# (Cf: bidi overrides reorder a log line, zero-width characters make two owners look alike).
_SUB_FORBIDDEN_CATEGORIES = frozenset({"Cc", "Cs", "Cf", "Zl", "Zp"})


@dataclass(frozen=True, slots=True)
class Principal:
    """Who is calling: the token's `sub` and whether it carries the admin scope."""

    sub: str
    is_admin: bool


def _kty_for(algorithm: str) -> str:
    return {"HS": "oct", "RS": "RSA", "ES": "EC"}.get(algorithm[:2], "")


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


def _redacted_url(url: str) -> str:
    # Query strings and userinfo of JWKS URLs sometimes carry API keys; logs get neither.
    try:
        parts = urlsplit(url)
        port = f":{parts.port}" if parts.port else ""
    except ValueError:
        return "<unparsable JWKS URL>"
    return f"{parts.scheme}://{parts.hostname or ''}{port}{parts.path}"


class _FetchFailed(Exception):
    def __init__(self, reason: str) -> None:
        super().__init__(reason)
        self.reason = reason


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
        # alg -> Key, for the secret/PEM modes; built once so requests never parse key material.
        self._static_keys: dict[str, Key] = {}
        # The JWKS cache, plus the keys of the set's only usable JWK: the one a token without
        # `kid` may use.
        self._jwks_by_kid: _KidIndex = {}
        self._jwks_sole: _KeysByAlg | None = None
        self._jwks_usable = 0
        self._jwks_fetched_at: float | None = None
        self._jwks_attempted_at: float | None = None
        self._jwks_lock = asyncio.Lock()
        self._jwks_url = settings.jwt_jwks_url
        self._jwks_log_url = _redacted_url(self._jwks_url) if self._jwks_url else ""
        self._http = http
        self._owns_http = False
        self._verified: dict[str, tuple[Principal, float]] = {}  # token -> (who, valid until)

        if settings.jwt_secret is not None:
            secret = settings.jwt_secret.get_secret_value()
            for algorithm in self._algorithms:
                self._static_keys[algorithm] = self._static_key(secret, algorithm, "SECRET")
        elif settings.jwt_public_key is not None:
            pem = settings.jwt_public_key.get_secret_value()
            for algorithm in self._algorithms:
                self._static_keys[algorithm] = self._static_key(pem, algorithm, "PUBLIC_KEY")
        elif self._http is None:
            import httpx  # only JWKS mode needs an HTTP client (~3 MB per worker otherwise)

            self._http = httpx.AsyncClient(timeout=JWKS_TIMEOUT_SECONDS)
            self._owns_http = True

    @staticmethod
    def _static_key(material: str, algorithm: str, variable: str) -> Key:
        try:
            key = jwk.construct(material, algorithm)
            if _kty_for(algorithm) != "oct":
                # A private PEM is accepted but only its public half is kept in memory.
                key = key.public_key()
            fields = key.to_dict()
        # jose signals a mismatched key with assorted exception types (AttributeError included).
        except Exception:
            raise ConfigError(
                f"S3GATE_JWT_{variable}: not a usable {algorithm} key (check S3GATE_JWT_ALGORITHMS)"
            ) from None
        expected_curve = _EC_CURVES.get(algorithm)
        if expected_curve is not None and fields.get("crv") != expected_curve:
            raise ConfigError(
                f"S3GATE_JWT_{variable}: {algorithm} needs a {expected_curve} key "
                "(check S3GATE_JWT_ALGORITHMS)"
            )
        return key

    async def start(self) -> None:
        """Fetch the JWKS once (JWKS mode); a failure is logged and left to later refreshes."""
        if self._jwks_url is not None:
            await self._refresh(force=True)

    async def aclose(self) -> None:
        """Close the HTTP client if this verifier created it."""
        if self._owns_http and self._http is not None:
            await self._http.aclose()
            self._owns_http = False

    @property
    def keys_loaded(self) -> bool:
        """Whether a token could be verified now (JWKS mode: at least one usable key cached)."""
        return self._jwks_url is None or self._jwks_usable > 0

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
            if now < cached[1] and not self._jwks_stale(now):
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
        keys = await self._keys_for(alg, kid)
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
        return Principal(sub=sub, is_admin=self._is_admin(claims))

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

    def _jwks_stale(self, now: float) -> bool:
        fetched = self._jwks_fetched_at
        return fetched is not None and now - fetched >= self._settings.jwt_jwks_cache_seconds

    async def _keys_for(self, alg: str, kid: str | None) -> list[Key]:
        if self._jwks_url is None:
            return [self._static_keys[alg]]
        if self._jwks_stale(self._clock()):
            await self._refresh()
        keys = self._jwks_lookup(alg, kid)
        if keys is None or not self._jwks_usable:
            # An unknown kid usually means the issuer rotated keys since our last fetch.
            await self._refresh()
            keys = self._jwks_lookup(alg, kid)
        if not keys:
            raise InvalidToken()
        return keys

    def _jwks_lookup(self, alg: str, kid: str | None) -> list[Key] | None:
        """Keys that may verify this token; None when the kid is not in the cached set."""
        if kid is None:
            sole = self._jwks_sole
            return [sole[alg]] if sole is not None and alg in sole else []
        by_alg = self._jwks_by_kid.get(kid)
        if by_alg is None:
            return None
        return by_alg.get(alg, [])

    async def _refresh(self, *, force: bool = False) -> None:
        async with self._jwks_lock:
            # Re-checked under the lock so a burst of unknown kids costs a single fetch.
            now = self._clock()
            last = self._jwks_attempted_at
            cooldown = self._settings.jwt_jwks_cooldown_seconds
            if not force and last is not None and now - last < cooldown:
                return
            self._jwks_attempted_at = now
            await self._fetch()

    async def _fetch(self) -> None:
        try:
            document = await self._download()
            by_kid, usable = self._parse(document)
        except _FetchFailed as exc:
            self._warn(exc.reason)
            return
        # Whatever else goes wrong must not fail the request that triggered the refresh.
        except Exception as exc:
            self._warn(type(exc).__name__)
            return
        self._jwks_by_kid = by_kid
        self._jwks_sole = usable[0] if len(usable) == 1 else None
        self._verified.clear()  # tokens of a key the issuer withdrew must stop working now
        self._jwks_usable = len(usable)
        self._jwks_fetched_at = self._clock()
        log.info("JWKS loaded from %s: %d usable key(s)", self._jwks_log_url, len(usable))

    async def _download(self) -> Any:
        import httpx

        assert self._jwks_url is not None
        assert self._http is not None
        body = bytearray()
        try:
            async with self._http.stream(
                "GET",
                self._jwks_url,
                headers={"Accept": "application/json"},
                timeout=JWKS_TIMEOUT_SECONDS,
            ) as response:
                if response.status_code != 200:
                    raise _FetchFailed(f"HTTP {response.status_code}")
                async for chunk in response.aiter_bytes():
                    body += chunk
                    if len(body) > MAX_JWKS_BYTES:
                        raise _FetchFailed("response too large")
        except (httpx.HTTPError, httpx.InvalidURL) as exc:
            # The type name only: httpx messages embed the full URL, query string included.
            raise _FetchFailed(type(exc).__name__) from None
        try:
            return json.loads(bytes(body))
        except ValueError:
            raise _FetchFailed("not JSON") from None

    def _parse(self, document: Any) -> tuple[_KidIndex, list[_KeysByAlg]]:
        if not isinstance(document, dict) or not isinstance(document.get("keys"), list):
            raise _FetchFailed("not a JWK set")
        by_kid: _KidIndex = {}
        usable: list[_KeysByAlg] = []
        for entry in document["keys"]:
            keys = self._jwk_keys(entry)
            if not keys:
                continue
            usable.append(keys)
            kid = entry.get("kid")
            if isinstance(kid, str):
                slot = by_kid.setdefault(kid, {})
                for algorithm, key in keys.items():
                    slot.setdefault(algorithm, []).append(key)
        if not usable:
            # Keep verifying with the old keys rather than lock everyone out on a bad publish.
            raise _FetchFailed("no usable signing key for the allowed algorithms")
        return by_kid, usable

    def _jwk_keys(self, entry: object) -> dict[str, Key]:
        """The jose keys (one per fitting allowed algorithm) for one JWK; empty if unusable."""
        if not isinstance(entry, dict):
            return {}
        if entry.get("use", "sig") != "sig":
            return {}
        if "kid" in entry and not isinstance(entry["kid"], str):
            return {}
        kty = entry.get("kty")
        declared = entry.get("alg")
        if declared is not None and not isinstance(declared, str):
            return {}
        candidates = [declared] if declared is not None else sorted(self._algorithms)
        # Only public members go to jose, so a JWKS that leaks private parts still yields
        # verify-only keys.
        members = _PUBLIC_MEMBERS.get(kty) if isinstance(kty, str) else None
        if members is None or not all(isinstance(entry.get(m), str) for m in members):
            return {}
        public = {"kty": kty, **{m: entry[m] for m in members}}
        keys: dict[str, Key] = {}
        for algorithm in candidates:
            if algorithm not in self._algorithms or _kty_for(algorithm) != kty:
                continue
            if kty == "EC" and _EC_CURVES.get(algorithm) != entry["crv"]:
                continue
            try:
                keys[algorithm] = jwk.construct(public, algorithm)
            # A malformed JWK (bad base64, off-curve point) is skipped, not fatal to the set.
            except Exception:  # noqa: S112
                continue
        return keys

    def _warn(self, reason: str) -> None:
        if self._jwks_usable:
            log.warning(
                "JWKS refresh from %s failed (%s); keeping %d cached key(s)",
                self._jwks_log_url,
                reason,
                self._jwks_usable,
            )
        else:
            log.warning(
                "JWKS fetch from %s failed (%s); no keys loaded", self._jwks_log_url, reason
            )


def bearer_description(settings: AuthSettings) -> str:
    """The OpenAPI text of the bearer scheme: the claims this deployment requires."""
    claim = settings.admin_roles_claim
    roles = f", or an element of the list `{claim}`" if claim is not None else ""
    return (
        "A JWT issued by your identity provider. `sub` (the owner id) is 1-255 printable "
        "characters: no control, lone surrogate, line/paragraph separator or invisible format "
        "character. `exp` (and `nbf`/`iat` when present) are finite numbers. "
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
) -> str:
    """Mint an HMAC-signed token (for `s3gate token` and tests)."""
    issued = int(time.time() if now is None else now)
    claims: dict[str, Any] = {"sub": sub, "iat": issued, "exp": issued + ttl_seconds}
    if admin_scope is not None:
        claims["scope"] = admin_scope
    if issuer is not None:
        claims["iss"] = issuer
    if audience is not None:
        claims["aud"] = audience
    return jwt.encode(claims, secret, algorithm=algorithm)
