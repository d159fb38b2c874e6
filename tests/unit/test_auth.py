"""TokenVerifier: signatures, algorithm allow-list, claim rules, JWKS caching, error shape."""

from __future__ import annotations

import ast
import asyncio
import base64
import hashlib
import hmac
import json
import logging
from collections.abc import Callable
from pathlib import Path
from typing import Any
from unittest import mock

import httpx
import pytest
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec, padding, rsa
from cryptography.hazmat.primitives.asymmetric.utils import decode_dss_signature
from jose import jws

from app.auth import (
    VERIFIED_CACHE_MAX_ENTRIES,
    VERIFIED_CACHE_SECONDS,
    Principal,
    TokenVerifier,
    bearer_description,
    mint_token,
)
from app.config import AuthSettings, ConfigError
from app.errors import InvalidToken, MissingToken

SECRET = "unit-test-hmac-key-0123456789abcdefghij"
NOW = 1_700_000_000.0
JWKS_URL = "https://idp.example/.well-known/jwks.json"


# --- helpers -----------------------------------------------------------------------------------


class FakeClock:
    def __init__(self, now: float = NOW) -> None:
        self.now = now

    def __call__(self) -> float:
        return self.now


def b64url(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode()


def _int_b64(value: int, length: int | None = None) -> str:
    size = length or (value.bit_length() + 7) // 8
    return b64url(value.to_bytes(size, "big"))


_HASHES: dict[str, Callable[[], hashes.HashAlgorithm]] = {
    "256": hashes.SHA256,
    "384": hashes.SHA384,
    "512": hashes.SHA512,
}


def _signature(signing_input: bytes, key: Any, alg: str) -> bytes:
    bits = alg[2:]
    if alg.startswith("HS"):
        secret = key.encode() if isinstance(key, str) else key
        return hmac.new(secret, signing_input, getattr(hashlib, f"sha{bits}")).digest()
    if alg.startswith("RS"):
        return key.sign(signing_input, padding.PKCS1v15(), _HASHES[bits]())
    der = key.sign(signing_input, ec.ECDSA(_HASHES[bits]()))
    r, s = decode_dss_signature(der)
    size = (key.curve.key_size + 7) // 8
    return r.to_bytes(size, "big") + s.to_bytes(size, "big")


def encode(
    payload: dict[str, Any] | str,
    key: Any = SECRET,
    alg: str = "HS256",
    *,
    header: dict[str, Any] | None = None,
) -> str:
    """Sign by hand, so the tests do not trust the library under test to build tokens."""
    head = {"alg": alg, "typ": "JWT", **(header or {})}
    body = payload if isinstance(payload, str) else json.dumps(payload)
    signing_input = f"{b64url(json.dumps(head).encode())}.{b64url(body.encode())}"
    return f"{signing_input}.{b64url(_signature(signing_input.encode(), key, alg))}"


def claims(**overrides: Any) -> dict[str, Any]:
    base: dict[str, Any] = {"sub": "alice", "iat": NOW, "exp": NOW + 600}
    base.update(overrides)
    return {k: v for k, v in base.items() if v is not _DROP}


_DROP = object()


def settings(**kwargs: Any) -> AuthSettings:
    if not {"jwt_secret", "jwt_public_key", "jwt_jwks_url"} & kwargs.keys():
        kwargs["jwt_secret"] = SECRET
    elif "jwt_audience" not in kwargs:
        # The key tests sign tokens without `aud`; the audience rule is tested in test_config.
        kwargs.setdefault("jwt_audience_optional", True)
    return AuthSettings(_env_file=None, **kwargs)


def verifier(clock: FakeClock | None = None, **kwargs: Any) -> TokenVerifier:
    return TokenVerifier(settings(**kwargs), clock=clock or FakeClock())


def public_pem(private_key: Any) -> str:
    return (
        private_key.public_key()
        .public_bytes(serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo)
        .decode()
    )


def rsa_jwk(private_key: rsa.RSAPrivateKey, kid: str | None, **extra: Any) -> dict[str, Any]:
    numbers = private_key.public_key().public_numbers()
    jwk = {"kty": "RSA", "n": _int_b64(numbers.n), "e": _int_b64(numbers.e), **extra}
    if kid is not None:
        jwk["kid"] = kid
    return jwk


def ec_jwk(private_key: ec.EllipticCurvePrivateKey, kid: str, **extra: Any) -> dict[str, Any]:
    numbers = private_key.public_key().public_numbers()
    return {
        "kty": "EC",
        "crv": "P-256",
        "x": _int_b64(numbers.x, 32),
        "y": _int_b64(numbers.y, 32),
        "kid": kid,
        **extra,
    }


class JwksServer:
    """A MockTransport JWKS endpoint that counts requests and can be made to fail."""

    def __init__(self, keys: list[dict[str, Any]]) -> None:
        self.keys = keys
        self.calls = 0
        self.status = 200
        self.body: bytes | None = None
        self.raise_error = False
        self.delay = 0.0

    async def handler(self, request: httpx.Request) -> httpx.Response:
        self.calls += 1
        if self.delay:
            await asyncio.sleep(self.delay)
        if self.raise_error:
            raise httpx.ConnectError("connection refused", request=request)
        if self.body is not None:
            return httpx.Response(self.status, content=self.body)
        return httpx.Response(self.status, json={"keys": self.keys})

    def client(self) -> httpx.AsyncClient:
        return httpx.AsyncClient(transport=httpx.MockTransport(self.handler))


def jwks_verifier(
    server: JwksServer, clock: FakeClock, url: str = JWKS_URL, **kwargs: Any
) -> TokenVerifier:
    kwargs.setdefault("jwt_algorithms", ["RS256"])
    return TokenVerifier(settings(jwt_jwks_url=url, **kwargs), http=server.client(), clock=clock)


# --- fixtures ----------------------------------------------------------------------------------


@pytest.fixture(autouse=True)
def _no_dotenv(monkeypatch: pytest.MonkeyPatch, tmp_path: Any) -> None:
    # conftest clears S3GATE_* variables; an empty cwd keeps a developer's .env out too.
    monkeypatch.chdir(tmp_path)


@pytest.fixture(scope="module")
def rsa_key() -> rsa.RSAPrivateKey:
    return rsa.generate_private_key(public_exponent=65537, key_size=2048)


@pytest.fixture(scope="module")
def rsa_key_2() -> rsa.RSAPrivateKey:
    return rsa.generate_private_key(public_exponent=65537, key_size=2048)


@pytest.fixture(scope="module")
def ec_key() -> ec.EllipticCurvePrivateKey:
    return ec.generate_private_key(ec.SECP256R1())


# --- HMAC mode: happy path and admin -----------------------------------------------------------


async def test_valid_hs256_token_gives_principal() -> None:
    principal = await verifier().verify(encode(claims()))
    assert principal == Principal(sub="alice", is_admin=False)


async def test_admin_scope_among_other_scopes_makes_admin() -> None:
    token = encode(claims(scope="files:read s3gate:admin files:write"))
    assert (await verifier().verify(token)).is_admin


async def test_admin_role_in_roles_list_makes_admin() -> None:
    token = encode(claims(roles=["user", "s3gate:admin"]))
    assert (await verifier(admin_roles_claim="roles").verify(token)).is_admin


async def test_roles_grant_nothing_unless_a_roles_claim_is_configured() -> None:
    token = encode(claims(roles=["user", "s3gate:admin"]))
    assert await verifier().verify(token) == Principal(sub="alice", is_admin=False)


async def test_the_configured_roles_claim_is_the_only_one_read() -> None:
    v = verifier(admin_roles_claim="groups")
    assert (await v.verify(encode(claims(groups=["s3gate:admin"])))).is_admin
    assert not (await v.verify(encode(claims(roles=["s3gate:admin"])))).is_admin


@pytest.mark.parametrize(
    "role", ["s3gate:admin ", "S3GATE:ADMIN", "files:read s3gate:admin", "s3gate:admin\u00a0"]
)
async def test_a_role_grants_admin_only_when_exactly_equal(role: str) -> None:
    token = encode(claims(roles=["user", role]))
    assert not (await verifier(admin_roles_claim="roles").verify(token)).is_admin


@pytest.mark.parametrize(
    "separator", ["\u00a0", "\u3000", "\u001f", "\u0085", "\t", "\n", "\u2028", "\u2003"]
)
async def test_scope_is_split_on_space_only(separator: str) -> None:
    token = encode(claims(scope=f"files:read{separator}s3gate:admin"))
    assert await verifier().verify(token) == Principal(sub="alice", is_admin=False)


async def test_scope_with_repeated_or_edge_spaces_still_finds_the_admin_token() -> None:
    token = encode(claims(scope="  files:read   s3gate:admin "))
    assert (await verifier().verify(token)).is_admin


def test_the_openapi_bearer_text_names_the_admin_claims_this_deployment_reads() -> None:
    assert "`roles`" not in bearer_description(settings())
    assert "`roles`" in bearer_description(settings(admin_roles_claim="roles"))
    assert "`ops`" in bearer_description(settings(admin_scope="ops"))


async def test_custom_admin_scope_is_honoured() -> None:
    token = encode(claims(scope="ops"))
    assert (await verifier(admin_scope="ops").verify(token)).is_admin


@pytest.mark.parametrize(
    "extra",
    [
        {"scope": "s3gate:administrator"},
        {"scope": ["s3gate:admin"]},
        {"roles": "s3gate:admin"},
        {"roles": [1, "s3gate:admin"]},
        {"roles": {"s3gate:admin": True}},
    ],
    ids=["scope-prefix-only", "scope-list", "roles-string", "roles-mixed-types", "roles-object"],
)
async def test_admin_claims_of_wrong_shape_are_not_admin_but_still_valid(
    extra: dict[str, Any],
) -> None:
    principal = await verifier(admin_roles_claim="roles").verify(encode(claims(**extra)))
    assert principal == Principal(sub="alice", is_admin=False)


# --- time claims -------------------------------------------------------------------------------


async def test_expired_beyond_leeway_is_rejected() -> None:
    token = encode(claims(exp=NOW - 31))
    with pytest.raises(InvalidToken):
        await verifier(jwt_leeway_seconds=30).verify(token)


async def test_expired_within_leeway_is_accepted() -> None:
    token = encode(claims(exp=NOW - 29))
    assert (await verifier(jwt_leeway_seconds=30).verify(token)).sub == "alice"


async def test_expiry_uses_the_injected_clock() -> None:
    clock = FakeClock()
    v = verifier(clock, jwt_leeway_seconds=0)
    token = encode(claims(exp=NOW + 10))
    await v.verify(token)
    clock.now = NOW + 10
    with pytest.raises(InvalidToken):
        await v.verify(token)


async def test_nbf_in_the_future_is_rejected() -> None:
    with pytest.raises(InvalidToken):
        await verifier(jwt_leeway_seconds=30).verify(encode(claims(nbf=NOW + 31)))


async def test_nbf_within_leeway_is_accepted() -> None:
    assert await verifier(jwt_leeway_seconds=30).verify(encode(claims(nbf=NOW + 29)))


async def test_iat_in_the_future_beyond_leeway_is_rejected() -> None:
    with pytest.raises(InvalidToken):
        await verifier(jwt_leeway_seconds=30).verify(encode(claims(iat=NOW + 3600)))


@pytest.mark.parametrize(
    "payload",
    [
        claims(exp=_DROP),
        claims(exp=str(int(NOW + 600))),
        claims(exp=True),
        claims(exp=None),
        claims(nbf="0"),
        claims(iat=False),
        '{"sub": "alice", "exp": 1e400}',
        '{"sub": "alice", "exp": NaN}',
        '{"sub": "alice", "exp": Infinity}',
    ],
    ids=[
        "missing-exp",
        "exp-string",
        "exp-bool",
        "exp-null",
        "nbf-string",
        "iat-bool",
        "exp-overflows-to-inf",
        "exp-nan",
        "exp-infinity",
    ],
)
async def test_time_claims_that_are_not_finite_numbers_are_rejected(
    payload: dict[str, Any] | str,
) -> None:
    with pytest.raises(InvalidToken):
        await verifier().verify(encode(payload))


async def test_float_exp_is_accepted() -> None:
    assert await verifier().verify(encode(claims(exp=NOW + 0.5 + 600)))


@pytest.mark.parametrize(
    "extra",
    [{"exp": 10**400}, {"nbf": -(10**400)}, {"iat": 10**309}],
    ids=["exp-10e400", "nbf-minus-10e400", "iat-10e309"],
)
async def test_integer_time_claims_beyond_float_range_are_rejected(extra: dict[str, Any]) -> None:
    v = verifier()
    token = encode(claims(**extra))
    with pytest.raises(InvalidToken):
        await v.verify(token)
    assert token not in v._verified


# --- sub ---------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "sub",
    [_DROP, "", 42, None, ["alice"], "a" * 256, "al\x00ice"],
    ids=["missing", "empty", "int", "null", "list", "256-chars", "nul-byte"],
)
async def test_bad_sub_is_rejected(sub: Any) -> None:
    with pytest.raises(InvalidToken):
        await verifier().verify(encode(claims(sub=sub)))


async def test_sub_of_255_chars_is_accepted() -> None:
    assert (await verifier().verify(encode(claims(sub="a" * 255)))).sub == "a" * 255


@pytest.mark.parametrize(
    "sub",
    [
        "\ud800",
        "al\udc00ice",
        "al\nice",
        "alice\r\n",
        "al\x1fice",
        "al\x7fice",
        "al\u0085ice",
        "al\u2028ice",
        "al\u2029ice",
        "al\u202eecila",
        "al\u200bice",
        "\ufeffalice",
    ],
    ids=[
        "lone-high-surrogate",
        "lone-low-surrogate",
        "newline",
        "crlf",
        "unit-separator",
        "del",
        "next-line-c1",
        "line-separator",
        "paragraph-separator",
        "bidi-override",
        "zero-width-space",
        "byte-order-mark",
    ],
)
async def test_sub_that_cannot_be_stored_or_would_forge_log_lines_is_rejected(sub: str) -> None:
    v = verifier()
    token = encode(claims(sub=sub))
    with pytest.raises(InvalidToken):
        await v.verify(token)
    assert token not in v._verified


@pytest.mark.parametrize(
    "sub", ["jürgen", "用户-42", "auth0|5f7c8ec7c33c6c004bbafe82", "alice smith", "a\u00a0b", "🙂"]
)
async def test_sub_of_printable_unicode_is_accepted(sub: str) -> None:
    assert (await verifier().verify(encode(claims(sub=sub)))).sub == sub


async def test_an_unexpected_error_in_a_claim_check_is_invalid_token_logged_without_the_token(
    caplog: pytest.LogCaptureFixture,
) -> None:
    v = verifier()
    token = encode(claims())
    failure = RuntimeError(f"a future claim check failed on {token}")
    with (
        mock.patch.object(TokenVerifier, "_is_admin", side_effect=failure),
        caplog.at_level(logging.WARNING, logger="s3gate.auth"),
        pytest.raises(InvalidToken),
    ):
        await v.verify(token)
    assert [r.levelno for r in caplog.records] == [logging.WARNING]
    assert "RuntimeError" in caplog.text
    assert token not in caplog.text
    assert token not in v._verified  # refused, so not remembered: the next call checks again
    with mock.patch("app.auth.verifier.jws.verify", wraps=jws.verify) as checked:
        assert (await v.verify(token)).sub == "alice"
    assert checked.call_count == 1


async def test_duplicate_claim_names_are_rejected() -> None:
    payload = f'{{"sub": "alice", "sub": "admin", "exp": {NOW + 600}}}'
    with pytest.raises(InvalidToken):
        await verifier().verify(encode(payload))


async def test_payload_that_is_not_a_json_object_is_rejected() -> None:
    with pytest.raises(InvalidToken):
        await verifier().verify(encode('["sub", "alice"]'))


# --- iss / aud ---------------------------------------------------------------------------------


async def test_matching_issuer_and_audience_are_accepted() -> None:
    v = verifier(jwt_issuer="https://idp", jwt_audience="s3gate")
    assert await v.verify(encode(claims(iss="https://idp", aud="s3gate")))


async def test_audience_list_containing_ours_is_accepted() -> None:
    v = verifier(jwt_audience="s3gate")
    assert await v.verify(encode(claims(aud=["other", "s3gate"])))


@pytest.mark.parametrize(
    "extra",
    [
        {"iss": "https://evil", "aud": "s3gate"},
        {"aud": "s3gate"},
        {"iss": "https://idp", "aud": "other"},
        {"iss": "https://idp"},
        {"iss": "https://idp", "aud": ["other"]},
        {"iss": "https://idp", "aud": ["s3gate", 7]},
        {"iss": "https://idp", "aud": None},
        {"iss": ["https://idp"], "aud": "s3gate"},
    ],
    ids=[
        "wrong-iss",
        "missing-iss",
        "wrong-aud",
        "missing-aud",
        "aud-list-without-ours",
        "aud-list-non-string",
        "aud-null",
        "iss-list",
    ],
)
async def test_wrong_or_missing_issuer_or_audience_is_rejected(extra: dict[str, Any]) -> None:
    v = verifier(jwt_issuer="https://idp", jwt_audience="s3gate")
    with pytest.raises(InvalidToken):
        await v.verify(encode(claims(**extra)))


async def test_iss_and_aud_are_ignored_when_not_configured() -> None:
    assert await verifier().verify(encode(claims(iss="whoever", aud=["x"])))


# --- algorithms --------------------------------------------------------------------------------


@pytest.mark.parametrize("signature", ["", "c2ln"], ids=["empty-signature", "bogus-signature"])
@pytest.mark.parametrize("alg", ["none", "None", "NONE"])
async def test_alg_none_is_rejected(alg: str, signature: str) -> None:
    header = b64url(json.dumps({"alg": alg, "typ": "JWT"}).encode())
    payload = b64url(json.dumps(claims()).encode())
    with pytest.raises(InvalidToken):
        await verifier().verify(f"{header}.{payload}.{signature}")


async def test_alg_outside_allow_list_is_rejected() -> None:
    token = encode(claims(), alg="HS512")
    with pytest.raises(InvalidToken):
        await verifier().verify(token)


async def test_each_allowed_hmac_algorithm_verifies() -> None:
    v = verifier(jwt_algorithms=["HS256", "HS512"])
    assert await v.verify(encode(claims(), alg="HS512"))
    assert await v.verify(encode(claims(), alg="HS256"))


async def test_wrong_secret_is_rejected() -> None:
    with pytest.raises(InvalidToken):
        await verifier().verify(encode(claims(), key="t" * 40))


@pytest.mark.parametrize("header", [{"crit": ["b64"], "b64": False}, {"alg": ["HS256"]}])
async def test_unsupported_header_parameters_are_rejected(header: dict[str, Any]) -> None:
    with pytest.raises(InvalidToken):
        await verifier().verify(encode(claims(), header=header))


async def test_tampered_payload_is_rejected() -> None:
    head, _, sig = encode(claims()).split(".")
    forged = b64url(json.dumps(claims(sub="admin")).encode())
    with pytest.raises(InvalidToken):
        await verifier().verify(f"{head}.{forged}.{sig}")


# --- PEM public key mode -----------------------------------------------------------------------


async def test_rs256_token_verifies_against_pem_public_key(rsa_key: rsa.RSAPrivateKey) -> None:
    v = verifier(jwt_public_key=public_pem(rsa_key))
    principal = await v.verify(encode(claims(scope="s3gate:admin"), rsa_key, "RS256"))
    assert principal == Principal(sub="alice", is_admin=True)


async def test_rs256_token_from_another_key_is_rejected(
    rsa_key: rsa.RSAPrivateKey, rsa_key_2: rsa.RSAPrivateKey
) -> None:
    v = verifier(jwt_public_key=public_pem(rsa_key))
    with pytest.raises(InvalidToken):
        await v.verify(encode(claims(), rsa_key_2, "RS256"))


async def test_hs256_signed_with_public_key_pem_as_secret_is_rejected(
    rsa_key: rsa.RSAPrivateKey,
) -> None:
    pem = public_pem(rsa_key)
    v = verifier(jwt_public_key=pem)
    with pytest.raises(InvalidToken):
        await v.verify(encode(claims(), pem.encode(), "HS256"))


async def test_hs256_signed_with_public_key_der_as_secret_is_rejected(
    rsa_key: rsa.RSAPrivateKey,
) -> None:
    der = rsa_key.public_key().public_bytes(
        serialization.Encoding.DER, serialization.PublicFormat.SubjectPublicKeyInfo
    )
    v = verifier(jwt_public_key=public_pem(rsa_key))
    with pytest.raises(InvalidToken):
        await v.verify(encode(claims(), der, "HS256"))


async def test_es256_token_verifies_against_pem_public_key(
    ec_key: ec.EllipticCurvePrivateKey,
) -> None:
    v = verifier(jwt_public_key=public_pem(ec_key), jwt_algorithms=["ES256"])
    assert (await v.verify(encode(claims(), ec_key, "ES256"))).sub == "alice"


async def test_private_pem_is_accepted_as_verification_key(rsa_key: rsa.RSAPrivateKey) -> None:
    pem = rsa_key.private_bytes(
        serialization.Encoding.PEM,
        serialization.PrivateFormat.PKCS8,
        serialization.NoEncryption(),
    ).decode()
    assert await verifier(jwt_public_key=pem).verify(encode(claims(), rsa_key, "RS256"))


@pytest.mark.parametrize("algorithms", [["ES256"], ["RS256", "ES256"]])
def test_rsa_pem_with_ec_algorithm_is_a_config_error(
    rsa_key: rsa.RSAPrivateKey, algorithms: list[str]
) -> None:
    with pytest.raises(ConfigError, match="S3GATE_JWT_PUBLIC_KEY"):
        verifier(jwt_public_key=public_pem(rsa_key), jwt_algorithms=algorithms)


def test_p256_pem_with_es384_is_a_config_error(ec_key: ec.EllipticCurvePrivateKey) -> None:
    with pytest.raises(ConfigError, match="P-384"):
        verifier(jwt_public_key=public_pem(ec_key), jwt_algorithms=["ES384"])


# --- JWKS mode ---------------------------------------------------------------------------------


async def test_jwks_token_verifies_by_kid(
    rsa_key: rsa.RSAPrivateKey, rsa_key_2: rsa.RSAPrivateKey
) -> None:
    server = JwksServer([rsa_jwk(rsa_key, "k1"), rsa_jwk(rsa_key_2, "k2")])
    v = jwks_verifier(server, FakeClock())
    await v.start()
    assert v.keys_loaded
    assert await v.verify(encode(claims(), rsa_key_2, "RS256", header={"kid": "k2"}))
    with pytest.raises(InvalidToken):
        await v.verify(encode(claims(), rsa_key_2, "RS256", header={"kid": "k1"}))
    assert server.calls == 1
    await v.aclose()


async def test_jwks_unknown_kid_refetches_once_and_rotated_key_verifies(
    rsa_key: rsa.RSAPrivateKey, rsa_key_2: rsa.RSAPrivateKey
) -> None:
    clock = FakeClock()
    server = JwksServer([rsa_jwk(rsa_key, "old")])
    v = jwks_verifier(server, clock, jwt_jwks_cooldown_seconds=60)
    await v.start()
    server.keys = [rsa_jwk(rsa_key, "old"), rsa_jwk(rsa_key_2, "new")]
    clock.now += 60
    token = encode(claims(exp=clock.now + 600), rsa_key_2, "RS256", header={"kid": "new"})
    assert (await v.verify(token)).sub == "alice"
    assert server.calls == 2
    assert await v.verify(token)
    assert server.calls == 2


async def test_jwks_unknown_kid_within_cooldown_does_not_refetch_and_fails(
    rsa_key: rsa.RSAPrivateKey, rsa_key_2: rsa.RSAPrivateKey
) -> None:
    clock = FakeClock()
    server = JwksServer([rsa_jwk(rsa_key, "k1")])
    v = jwks_verifier(server, clock, jwt_jwks_cooldown_seconds=60)
    await v.start()
    clock.now += 61
    with pytest.raises(InvalidToken):
        await v.verify(encode(claims(), rsa_key_2, "RS256", header={"kid": "k2"}))
    assert server.calls == 2

    server.keys = [rsa_jwk(rsa_key, "k1"), rsa_jwk(rsa_key_2, "k3")]
    clock.now += 30
    token = encode(claims(), rsa_key_2, "RS256", header={"kid": "k3"})
    with pytest.raises(InvalidToken):
        await v.verify(token)
    assert server.calls == 2

    clock.now += 31
    assert (await v.verify(token)).sub == "alice"
    assert server.calls == 3


async def test_jwks_burst_of_unknown_kids_causes_one_fetch(
    rsa_key: rsa.RSAPrivateKey, rsa_key_2: rsa.RSAPrivateKey
) -> None:
    clock = FakeClock()
    server = JwksServer([rsa_jwk(rsa_key, "old")])
    v = jwks_verifier(server, clock)
    await v.start()
    server.keys = [rsa_jwk(rsa_key_2, "new")]
    server.delay = 0.02
    clock.now += 61
    token = encode(claims(exp=clock.now + 600), rsa_key_2, "RS256", header={"kid": "new"})
    results = await asyncio.gather(*(v.verify(token) for _ in range(20)))
    assert {p.sub for p in results} == {"alice"}
    assert server.calls == 2


async def test_jwks_burst_of_random_unknown_kids_causes_one_fetch(
    rsa_key: rsa.RSAPrivateKey,
) -> None:
    clock = FakeClock()
    server = JwksServer([rsa_jwk(rsa_key, "k1")])
    v = jwks_verifier(server, clock)
    await v.start()
    server.delay = 0.01
    clock.now += 61
    tokens = [encode(claims(), rsa_key, "RS256", header={"kid": f"x{i}"}) for i in range(20)]
    results = await asyncio.gather(*(v.verify(t) for t in tokens), return_exceptions=True)
    assert all(isinstance(r, InvalidToken) for r in results)
    assert server.calls == 2


@pytest.mark.parametrize("failure", ["status", "network", "bad-json", "not-a-set", "no-keys"])
async def test_jwks_failed_refresh_keeps_stale_keys(
    rsa_key: rsa.RSAPrivateKey, failure: str
) -> None:
    clock = FakeClock()
    server = JwksServer([rsa_jwk(rsa_key, "k1")])
    v = jwks_verifier(server, clock, jwt_jwks_cache_seconds=300)
    await v.start()
    if failure == "status":
        server.status = 503
    elif failure == "network":
        server.raise_error = True
    elif failure == "bad-json":
        server.body = b"{not json"
    elif failure == "not-a-set":
        server.body = b'{"keys": "nope"}'
    else:
        server.keys = [{"kty": "oct", "k": "c2VjcmV0", "kid": "k1"}]
    clock.now += 301
    token = encode(claims(exp=clock.now + 600), rsa_key, "RS256", header={"kid": "k1"})
    assert (await v.verify(token)).sub == "alice"
    assert server.calls == 2
    assert v.keys_loaded


async def test_jwks_is_refreshed_when_older_than_cache_time(
    rsa_key: rsa.RSAPrivateKey, rsa_key_2: rsa.RSAPrivateKey
) -> None:
    clock = FakeClock()
    server = JwksServer([rsa_jwk(rsa_key, "k1")])
    v = jwks_verifier(server, clock, jwt_jwks_cache_seconds=300)
    await v.start()
    token = encode(claims(exp=NOW + 9999), rsa_key, "RS256", header={"kid": "k1"})
    clock.now += 299
    await v.verify(token)
    assert server.calls == 1
    server.keys = [rsa_jwk(rsa_key_2, "k2")]  # k1 revoked
    clock.now += 1
    with pytest.raises(InvalidToken):
        await v.verify(token)
    assert server.calls == 2


async def test_keys_loaded_is_false_when_initial_jwks_fetch_fails(
    rsa_key: rsa.RSAPrivateKey,
) -> None:
    clock = FakeClock()
    server = JwksServer([rsa_jwk(rsa_key, "k1")])
    server.raise_error = True
    v = jwks_verifier(server, clock)
    await v.start()
    assert not v.keys_loaded
    token = encode(claims(), rsa_key, "RS256", header={"kid": "k1"})
    with pytest.raises(InvalidToken):
        await v.verify(token)
    server.raise_error = False
    clock.now += 60
    assert await v.verify(token)
    assert v.keys_loaded


def test_keys_loaded_is_true_for_secret_and_pem_modes(rsa_key: rsa.RSAPrivateKey) -> None:
    assert verifier().keys_loaded
    assert verifier(jwt_public_key=public_pem(rsa_key)).keys_loaded


async def test_jwks_failure_log_has_no_query_string(
    rsa_key: rsa.RSAPrivateKey, caplog: pytest.LogCaptureFixture
) -> None:
    server = JwksServer([])
    server.raise_error = True
    url = "https://user:pw@idp.example/jwks?api_key=hunter2"
    v = jwks_verifier(server, FakeClock(), url=url)
    with caplog.at_level(logging.WARNING, logger="s3gate.auth"):
        await v.start()
    assert "idp.example/jwks" in caplog.text
    assert "hunter2" not in caplog.text
    assert "pw@" not in caplog.text


async def test_jwks_token_without_kid_uses_the_only_key(rsa_key: rsa.RSAPrivateKey) -> None:
    server = JwksServer([rsa_jwk(rsa_key, None)])
    v = jwks_verifier(server, FakeClock())
    await v.start()
    assert await v.verify(encode(claims(), rsa_key, "RS256"))


async def test_jwks_token_without_kid_is_rejected_when_set_has_several_keys(
    rsa_key: rsa.RSAPrivateKey, rsa_key_2: rsa.RSAPrivateKey
) -> None:
    server = JwksServer([rsa_jwk(rsa_key, "k1"), rsa_jwk(rsa_key_2, "k2")])
    v = jwks_verifier(server, FakeClock())
    await v.start()
    with pytest.raises(InvalidToken):
        await v.verify(encode(claims(), rsa_key, "RS256"))


async def test_jwks_skips_encryption_and_mismatched_keys(
    rsa_key: rsa.RSAPrivateKey, rsa_key_2: rsa.RSAPrivateKey, ec_key: ec.EllipticCurvePrivateKey
) -> None:
    server = JwksServer(
        [
            rsa_jwk(rsa_key, "enc", use="enc"),
            rsa_jwk(rsa_key, "rs512", alg="RS512"),
            rsa_jwk(rsa_key, "bad-n", n="!!!"),
            ec_jwk(ec_key, "p384", crv="P-384"),
            ec_jwk(ec_key, "ec"),
            rsa_jwk(rsa_key_2, "good", alg="RS256", use="sig"),
            "not-an-object",
        ]
    )
    v = jwks_verifier(server, FakeClock(), jwt_algorithms=["RS256", "ES256"])
    await v.start()
    assert await v.verify(encode(claims(), rsa_key_2, "RS256", header={"kid": "good"}))
    assert await v.verify(encode(claims(), ec_key, "ES256", header={"kid": "ec"}))
    for kid in ("enc", "rs512", "bad-n"):
        with pytest.raises(InvalidToken):
            await v.verify(encode(claims(), rsa_key, "RS256", header={"kid": kid}))
    with pytest.raises(InvalidToken):
        await v.verify(encode(claims(), ec_key, "ES256", header={"kid": "p384"}))


async def test_jwks_rs256_kid_rejects_es256_token(
    rsa_key: rsa.RSAPrivateKey, ec_key: ec.EllipticCurvePrivateKey
) -> None:
    server = JwksServer([rsa_jwk(rsa_key, "k1")])
    v = jwks_verifier(server, FakeClock(), jwt_algorithms=["RS256", "ES256"])
    await v.start()
    with pytest.raises(InvalidToken):
        await v.verify(encode(claims(), ec_key, "ES256", header={"kid": "k1"}))


async def test_aclose_leaves_an_injected_client_open(rsa_key: rsa.RSAPrivateKey) -> None:
    server = JwksServer([rsa_jwk(rsa_key, "k1")])
    client = server.client()
    v = TokenVerifier(settings(jwt_jwks_url=JWKS_URL), http=client)
    await v.aclose()
    assert not client.is_closed
    await client.aclose()


async def test_aclose_closes_its_own_client() -> None:
    v = TokenVerifier(settings(jwt_jwks_url=JWKS_URL))
    own = v._keys._http
    assert isinstance(own, httpx.AsyncClient)
    assert not own.is_closed
    await v.aclose()
    assert own.is_closed
    await v.aclose()  # a second close is harmless


async def test_aclose_leaves_a_client_it_was_given_open() -> None:
    async with httpx.AsyncClient() as given:
        v = TokenVerifier(settings(jwt_jwks_url=JWKS_URL), http=given)
        await v.aclose()
        assert not given.is_closed  # its owner closes it


# --- garbage input -----------------------------------------------------------------------------


def _header_token(header: bytes) -> str:
    return f"{b64url(header)}.{b64url(json.dumps(claims()).encode())}.c2ln"


@pytest.mark.parametrize(
    "token",
    [
        "",
        "a.b",
        "a.b.c",
        "a.b.c.d",
        "....",
        "not base64!.x.y",
        "é.é.é",
        "eyJ.eyJ.sig",
        _header_token(b'["alg", "HS256"]'),
        _header_token(b'"HS256"'),
        _header_token(b"null"),
        _header_token(b"\xff\xfe"),
        _header_token(b'{"alg": "HS256", "kid": {"x": 1}}'),
        _header_token(b'{"alg": 256}'),
        _header_token(b'{"alg": null}'),
        _header_token(b"{}"),
        "a" * 10 * 1024,
        encode(claims()) + "A" * 10 * 1024,
        encode(claims()) + "\n",
        " " + encode(claims()),
        encode(claims()).replace(".", "..", 1),
    ],
)
async def test_garbage_tokens_raise_invalid_token(token: str) -> None:
    with pytest.raises(InvalidToken):
        await verifier().verify(token)


async def test_correctly_signed_token_over_8_kib_is_rejected() -> None:
    token = encode(claims(pad="x" * 8 * 1024))
    with pytest.raises(InvalidToken):
        await verifier().verify(token)


async def test_correctly_signed_token_just_under_8_kib_is_accepted() -> None:
    token = encode(claims(pad="x" * 5 * 1024))
    assert 6 * 1024 < len(token) <= 8 * 1024
    assert await verifier().verify(token)


@pytest.mark.parametrize("stray", ["!", "!!!!", "====", "++++", "/", "    "])
async def test_token_with_stray_characters_in_signature_is_rejected(stray: str) -> None:
    head, body, sig = encode(claims()).split(".")
    with pytest.raises(InvalidToken):
        await verifier().verify(f"{head}.{body}.{sig[:10]}{stray}{sig[10:]}")


async def test_garbage_tokens_in_jwks_mode_raise_invalid_token(rsa_key: rsa.RSAPrivateKey) -> None:
    server = JwksServer([rsa_jwk(rsa_key, "k1")])
    v = jwks_verifier(server, FakeClock())
    await v.start()
    for token in ["a.b.c", _header_token(b'{"alg": "RS256", "kid": 5}'), "x" * 9000]:
        with pytest.raises(InvalidToken):
            await v.verify(token)


# --- authenticate and error shape --------------------------------------------------------------


@pytest.mark.parametrize("header", [None, "", "   "])
async def test_authenticate_without_credentials_raises_missing_token(header: str | None) -> None:
    with pytest.raises(MissingToken) as caught:
        await verifier().authenticate(header)
    assert caught.value.status == 401
    assert caught.value.code == "missing_token"
    assert caught.value.headers == {"WWW-Authenticate": "Bearer"}


@pytest.mark.parametrize("header", ["Basic xyz", "Bearer", "Bearer ", "Token abc", "Bearer a b"])
async def test_authenticate_with_non_bearer_header_raises_invalid_token(header: str) -> None:
    with pytest.raises(InvalidToken):
        await verifier().authenticate(header)


@pytest.mark.parametrize("scheme", ["Bearer", "bearer", "BEARER"])
async def test_authenticate_accepts_bearer_scheme_in_any_case(scheme: str) -> None:
    principal = await verifier().authenticate(f"{scheme} {encode(claims())}")
    assert principal.sub == "alice"


async def test_invalid_token_error_has_fixed_body_and_rfc6750_header() -> None:
    token = encode(claims(exp=NOW - 3600))
    with pytest.raises(InvalidToken) as caught:
        await verifier().verify(token)
    error = caught.value
    assert error.status == 401
    assert error.code == "invalid_token"
    assert error.headers == {"WWW-Authenticate": 'Bearer error="invalid_token"'}
    assert error.body()["code"] == "invalid_token"
    assert token not in str(error.body())
    assert error.body() == InvalidToken().body()


# --- mint_token --------------------------------------------------------------------------------


async def test_mint_token_round_trips_through_verify() -> None:
    token = mint_token(SECRET, "bob", now=NOW)
    assert await verifier().verify(token) == Principal(sub="bob", is_admin=False)


async def test_mint_token_with_admin_scope_issuer_and_audience_round_trips() -> None:
    token = mint_token(
        SECRET,
        "root",
        algorithm="HS384",
        admin_scope="s3gate:admin",
        issuer="https://idp",
        audience="s3gate",
        now=NOW,
    )
    v = verifier(jwt_algorithms=["HS384"], jwt_issuer="https://idp", jwt_audience="s3gate")
    assert await v.verify(token) == Principal(sub="root", is_admin=True)


async def test_mint_token_ttl_sets_expiry() -> None:
    clock = FakeClock()
    v = verifier(clock, jwt_leeway_seconds=0)
    token = mint_token(SECRET, "bob", ttl_seconds=60, now=NOW)
    await v.verify(token)
    clock.now = NOW + 60
    with pytest.raises(InvalidToken):
        await v.verify(token)


# --- the verified-token cache -----------------------------------------------------------------


async def test_a_cached_token_still_expires_at_its_exp() -> None:
    clock = FakeClock()
    v = verifier(clock, jwt_leeway_seconds=0)
    token = encode(claims(exp=NOW + 10))
    await v.verify(token)
    clock.now = NOW + 9
    await v.verify(token)  # served from the cache
    clock.now = NOW + 10
    with pytest.raises(InvalidToken):
        await v.verify(token)


async def test_repeat_verifications_skip_the_signature_check() -> None:
    v = verifier(FakeClock())
    token = encode(claims())
    with mock.patch("app.auth.verifier.jws.verify", wraps=jws.verify) as checked:
        for _ in range(5):
            assert (await v.verify(token)).sub == "alice"
    assert checked.call_count == 1


async def test_cache_entries_are_rechecked_after_the_cache_window() -> None:
    clock = FakeClock()
    v = verifier(clock)
    token = encode(claims(exp=NOW + 10_000))
    with mock.patch("app.auth.verifier.jws.verify", wraps=jws.verify) as checked:
        await v.verify(token)
        clock.now += VERIFIED_CACHE_SECONDS + 1
        await v.verify(token)
    assert checked.call_count == 2


async def test_failed_tokens_are_never_cached() -> None:
    v = verifier(FakeClock())
    forged = encode(claims(), key="another-secret-of-at-least-32-bytes!!")
    for _ in range(2):
        with pytest.raises(InvalidToken):
            await v.verify(forged)


async def test_the_cache_stays_bounded() -> None:
    v = verifier(FakeClock())
    for index in range(VERIFIED_CACHE_MAX_ENTRIES + 10):
        await v.verify(encode(claims(sub=f"user-{index}")))
    assert len(v._verified) <= VERIFIED_CACHE_MAX_ENTRIES


# --- module boundaries ------------------------------------------------------------------------


def test_python_jose_is_imported_by_the_verifier_module_alone() -> None:
    root = Path(__file__).resolve().parents[2]
    importers = set()
    for path in (root / "app").rglob("*.py"):
        for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
            if isinstance(node, ast.Import):
                names = [alias.name for alias in node.names]
            elif isinstance(node, ast.ImportFrom):
                names = [node.module or ""]
            else:
                continue
            if any(name == "jose" or name.startswith("jose.") for name in names):
                importers.add(path.relative_to(root).as_posix())
    assert importers == {"app/auth/verifier.py"}
