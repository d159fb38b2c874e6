"""Bearer-token authentication, in two parts.

- `app.auth.keys`: where keys come from (the static HMAC secret or PEM public key, the JWKS
  fetch-and-cache). Imports no JWT library.
- `app.auth.verifier`: what a valid token is (signature, algorithm allow-list, claims, the
  admin rule, the verified-token cache, `Principal`) and dev-token minting. The only module
  that imports python-jose.

The names other modules use are importable from `app.auth` itself.
"""

from app.auth.verifier import (
    MAX_GROUPS,
    MAX_SUB_CHARS,
    MAX_TOKEN_CHARS,
    VERIFIED_CACHE_MAX_ENTRIES,
    VERIFIED_CACHE_MAX_TOKEN_CHARS,
    VERIFIED_CACHE_SECONDS,
    Principal,
    Quota,
    TokenVerifier,
    bearer_description,
    mint_token,
)

__all__ = [
    "MAX_GROUPS",
    "MAX_SUB_CHARS",
    "MAX_TOKEN_CHARS",
    "VERIFIED_CACHE_MAX_ENTRIES",
    "VERIFIED_CACHE_MAX_TOKEN_CHARS",
    "VERIFIED_CACHE_SECONDS",
    "Principal",
    "Quota",
    "TokenVerifier",
    "bearer_description",
    "mint_token",
]
