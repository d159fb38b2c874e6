"""Key sources: the static HMAC secret or PEM public key, and the JWKS fetch-and-cache.

This module imports no JWT library. The verifier hands it a `KeyFactory` that turns key
material into its library's key objects, so parsing and its failure modes stay the verifier's
while choosing, fetching, caching and refreshing keys live here.
"""

from __future__ import annotations

import asyncio
import json
import logging
from collections.abc import Callable
from typing import TYPE_CHECKING, Any, Generic, Protocol, TypeVar
from urllib.parse import urlsplit

from app.config import AuthSettings, ConfigError

if TYPE_CHECKING:
    import httpx

log = logging.getLogger("s3gate.auth")

MAX_JWKS_BYTES = 512 * 1024
JWKS_TIMEOUT_SECONDS = 3.0

# RFC 7518 §3.4: each ES algorithm is defined for exactly one curve.
EC_CURVES = {"ES256": "P-256", "ES384": "P-384", "ES512": "P-521"}
_PUBLIC_MEMBERS = {"RSA": ("n", "e"), "EC": ("crv", "x", "y")}

KeyT = TypeVar("KeyT")
KeyT_co = TypeVar("KeyT_co", covariant=True)


def kty_for(algorithm: str) -> str:
    """The JWK key type an algorithm needs: oct, RSA or EC ("" for none of them)."""
    return {"HS": "oct", "RS": "RSA", "ES": "EC"}.get(algorithm[:2], "")


class KeyFactory(Protocol[KeyT_co]):
    """Builds verify-only keys of the JWT library; any exception means "not usable"."""

    def from_material(self, material: str, algorithm: str) -> tuple[KeyT_co, str | None]:
        """The key for an HMAC secret or a PEM (a private PEM yields only its public half),
        and its curve (the JWK `crv`, None unless EC)."""
        ...

    def from_jwk(self, public: dict[str, str], algorithm: str) -> KeyT_co:
        """The key for the public members of one JWK (`kty` included)."""
        ...


class KeySource(Protocol[KeyT]):
    """Where the verifier gets the keys a token's signature may be checked with."""

    @property
    def keys_loaded(self) -> bool:
        """Whether a token could be verified now."""
        ...

    def stale(self, now: float) -> bool:
        """Whether the keys are due for a refresh (a verified token must be checked again)."""
        ...

    async def keys_for(self, alg: str, kid: str | None) -> list[KeyT]:
        """The candidate keys for a token's `alg` and `kid`; empty when there are none."""
        ...

    async def start(self) -> None: ...

    async def aclose(self) -> None: ...


def key_source(
    settings: AuthSettings,
    factory: KeyFactory[KeyT],
    *,
    http: httpx.AsyncClient | None,
    clock: Callable[[], float],
    on_rotate: Callable[[], None],
) -> KeySource[KeyT]:
    """The configured source: S3GATE_JWT_SECRET, S3GATE_JWT_PUBLIC_KEY or S3GATE_JWT_JWKS_URL."""
    if settings.jwt_secret is not None:
        return StaticKeys(settings.jwt_secret.get_secret_value(), "SECRET", settings, factory)
    if settings.jwt_public_key is not None:
        pem = settings.jwt_public_key.get_secret_value()
        return StaticKeys(pem, "PUBLIC_KEY", settings, factory)
    return JwksKeys(settings, factory, http=http, clock=clock, on_rotate=on_rotate)


class StaticKeys(Generic[KeyT]):
    """One key per allowed algorithm, built once so requests never parse key material."""

    def __init__(
        self, material: str, variable: str, settings: AuthSettings, factory: KeyFactory[KeyT]
    ) -> None:
        self._keys = {
            algorithm: self._load(factory, material, algorithm, variable)
            for algorithm in frozenset(settings.jwt_algorithms)
        }

    @staticmethod
    def _load(factory: KeyFactory[KeyT], material: str, algorithm: str, variable: str) -> KeyT:
        try:
            key, curve = factory.from_material(material, algorithm)
        # jose signals a mismatched key with assorted exception types (AttributeError included).
        except Exception:
            raise ConfigError(
                f"S3GATE_JWT_{variable}: not a usable {algorithm} key (check S3GATE_JWT_ALGORITHMS)"
            ) from None
        expected_curve = EC_CURVES.get(algorithm)
        if expected_curve is not None and curve != expected_curve:
            raise ConfigError(
                f"S3GATE_JWT_{variable}: {algorithm} needs a {expected_curve} key "
                "(check S3GATE_JWT_ALGORITHMS)"
            )
        return key

    @property
    def keys_loaded(self) -> bool:
        return True

    def stale(self, now: float) -> bool:
        return False

    async def keys_for(self, alg: str, kid: str | None) -> list[KeyT]:
        return [self._keys[alg]]

    async def start(self) -> None:
        pass

    async def aclose(self) -> None:
        pass


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


class JwksKeys(Generic[KeyT]):
    """The issuer's JWK set: fetched at start, refreshed when old or when a kid is unknown."""

    def __init__(
        self,
        settings: AuthSettings,
        factory: KeyFactory[KeyT],
        *,
        http: httpx.AsyncClient | None,
        clock: Callable[[], float],
        on_rotate: Callable[[], None],
    ) -> None:
        assert settings.jwt_jwks_url is not None
        self._settings = settings
        self._factory = factory
        self._algorithms = frozenset(settings.jwt_algorithms)
        self._clock = clock
        # Called when a new set replaces the old: tokens of a withdrawn key must stop working.
        self._on_rotate = on_rotate
        # kid -> alg -> keys (a kid may repeat, e.g. mid-rotation), plus the keys of the set's
        # only usable JWK: the one a token without `kid` may use.
        self._by_kid: dict[str, dict[str, list[KeyT]]] = {}
        self._sole: dict[str, KeyT] | None = None
        self._usable = 0
        self._fetched_at: float | None = None
        self._attempted_at: float | None = None
        self._lock = asyncio.Lock()
        self._url = settings.jwt_jwks_url
        self._log_url = _redacted_url(self._url)
        self._owns_http = http is None
        if http is None:
            import httpx  # only JWKS mode needs an HTTP client (~3 MB per worker otherwise)

            http = httpx.AsyncClient(timeout=JWKS_TIMEOUT_SECONDS)
        self._http = http

    async def start(self) -> None:
        """Fetch the set once; a failure is logged and left to later refreshes."""
        await self._refresh(force=True)

    async def aclose(self) -> None:
        """Close the HTTP client if this source created it."""
        if self._owns_http:
            await self._http.aclose()
            self._owns_http = False

    @property
    def keys_loaded(self) -> bool:
        return self._usable > 0

    def stale(self, now: float) -> bool:
        fetched = self._fetched_at
        return fetched is not None and now - fetched >= self._settings.jwt_jwks_cache_seconds

    async def keys_for(self, alg: str, kid: str | None) -> list[KeyT]:
        if self.stale(self._clock()):
            await self._refresh()
        keys = self._lookup(alg, kid)
        if keys is None or not self._usable:
            # An unknown kid usually means the issuer rotated keys since our last fetch.
            await self._refresh()
            keys = self._lookup(alg, kid)
        return keys or []

    def _lookup(self, alg: str, kid: str | None) -> list[KeyT] | None:
        """Keys that may verify this token; None when the kid is not in the cached set."""
        if kid is None:
            sole = self._sole
            return [sole[alg]] if sole is not None and alg in sole else []
        by_alg = self._by_kid.get(kid)
        if by_alg is None:
            return None
        return by_alg.get(alg, [])

    async def _refresh(self, *, force: bool = False) -> None:
        async with self._lock:
            # Re-checked under the lock so a burst of unknown kids costs a single fetch.
            now = self._clock()
            last = self._attempted_at
            cooldown = self._settings.jwt_jwks_cooldown_seconds
            if not force and last is not None and now - last < cooldown:
                return
            self._attempted_at = now
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
        self._by_kid = by_kid
        self._sole = usable[0] if len(usable) == 1 else None
        self._on_rotate()
        self._usable = len(usable)
        self._fetched_at = self._clock()
        log.info("JWKS loaded from %s: %d usable key(s)", self._log_url, len(usable))

    async def _download(self) -> Any:
        import httpx

        body = bytearray()
        try:
            async with self._http.stream(
                "GET",
                self._url,
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

    def _parse(
        self, document: Any
    ) -> tuple[dict[str, dict[str, list[KeyT]]], list[dict[str, KeyT]]]:
        if not isinstance(document, dict) or not isinstance(document.get("keys"), list):
            raise _FetchFailed("not a JWK set")
        by_kid: dict[str, dict[str, list[KeyT]]] = {}
        usable: list[dict[str, KeyT]] = []
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

    def _jwk_keys(self, entry: object) -> dict[str, KeyT]:
        """The keys (one per fitting allowed algorithm) for one JWK; empty if unusable."""
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
        # Only public members go to the library, so a JWKS that leaks private parts still
        # yields verify-only keys.
        members = _PUBLIC_MEMBERS.get(kty) if isinstance(kty, str) else None
        if members is None or not all(isinstance(entry.get(m), str) for m in members):
            return {}
        public = {"kty": kty, **{m: entry[m] for m in members}}
        keys: dict[str, KeyT] = {}
        for algorithm in candidates:
            if algorithm not in self._algorithms or kty_for(algorithm) != kty:
                continue
            if kty == "EC" and EC_CURVES.get(algorithm) != entry["crv"]:
                continue
            try:
                keys[algorithm] = self._factory.from_jwk(public, algorithm)
            # A malformed JWK (bad base64, off-curve point) is skipped, not fatal to the set.
            except Exception:  # noqa: S112
                continue
        return keys

    def _warn(self, reason: str) -> None:
        if self._usable:
            log.warning(
                "JWKS refresh from %s failed (%s); keeping %d cached key(s)",
                self._log_url,
                reason,
                self._usable,
            )
        else:
            log.warning("JWKS fetch from %s failed (%s); no keys loaded", self._log_url, reason)
