"""Settings: defaults, bounds, key-material rules, parsing, and ConfigError messages."""

from __future__ import annotations

import os
import re
from pathlib import Path
from typing import Any

import pytest
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import rsa
from pydantic import ValidationError

from app.config import ConfigError, Settings, load_settings

SECRET = "unit-test-hmac-key-0123456789abcdefghij"
BUCKET = "my-bucket"
AUDIENCE = "s3gate"


@pytest.fixture(scope="module")
def public_pem() -> str:
    key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    return (
        key.public_key()
        .public_bytes(serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo)
        .decode()
    )


def make(**overrides: Any) -> Settings:
    """Settings with only what the test passes (plus a bucket and a secret unless overridden;
    an audience when the secret is replaced by a public key or JWKS, which require one)."""
    values: dict[str, Any] = {"s3_bucket": BUCKET, "jwt_secret": SECRET}
    values.update(overrides)
    if values["jwt_secret"] is None and not {"jwt_audience", "jwt_audience_optional"} & set(
        overrides
    ):
        values["jwt_audience"] = AUDIENCE
    values = {k: v for k, v in values.items() if v is not None}
    return Settings(_env_file=None, **values)


# --- defaults ----------------------------------------------------------------------------------


def test_the_defaults_are_the_ones_env_example_documents(monkeypatch: pytest.MonkeyPatch) -> None:
    # .env.example is the documented starting point: read as it ships (bar its two values that
    # must be replaced), it configures exactly what no configuration at all does.
    for name in [n for n in os.environ if n.startswith("S3GATE_")]:
        monkeypatch.delenv(name)
    from_example = Settings(_env_file=ROOT / ".env.example", jwt_secret=SECRET)
    from_defaults = Settings(_env_file=None, s3_bucket="my-private-bucket", jwt_secret=SECRET)
    assert from_example.model_dump() == from_defaults.model_dump()


def test_the_defaults_are_private_and_short_lived() -> None:
    settings = make()
    assert settings.upload_url_ttl_seconds <= 15 * 60
    assert settings.download_url_ttl_seconds <= 60
    assert (settings.cors_origins, settings.demo, settings.proxy_headers) == ([], False, False)
    assert settings.host == "127.0.0.1"
    assert settings.s3_endpoint_url is None
    assert settings.signing_endpoint_url is None


def test_secret_defaults_to_hs256() -> None:
    assert make().jwt_algorithms == ["HS256"]


def test_public_key_defaults_to_rs256(public_pem: str) -> None:
    settings = make(jwt_secret=None, jwt_public_key=public_pem)
    assert settings.jwt_algorithms == ["RS256"]
    assert settings.jwt_public_key is not None
    assert settings.jwt_public_key.get_secret_value() == public_pem


def test_algorithm_names_are_upper_cased() -> None:
    assert make(jwt_algorithms=["hs384", "HS512"]).jwt_algorithms == ["HS384", "HS512"]


# --- TTL bounds --------------------------------------------------------------------------------


@pytest.mark.parametrize("field", ["upload_url_ttl_seconds", "download_url_ttl_seconds"])
@pytest.mark.parametrize("ttl", [0, -1, 604801])
def test_ttl_outside_one_second_to_seven_days_is_refused(field: str, ttl: int) -> None:
    with pytest.raises(ValidationError) as info:
        make(**{field: ttl})
    assert info.value.errors()[0]["loc"] == (field,)


@pytest.mark.parametrize("field", ["upload_url_ttl_seconds", "download_url_ttl_seconds"])
@pytest.mark.parametrize("ttl", [1, 604800])
def test_ttl_at_the_bounds_is_accepted(field: str, ttl: int) -> None:
    assert getattr(make(**{field: ttl}), field) == ttl


def test_max_file_size_above_the_s3_object_limit_is_refused() -> None:
    assert make(max_file_size=5 * 1024**4).max_file_size == 5 * 1024**4  # multipart reaches it
    with pytest.raises(ValidationError, match="max_file_size"):
        make(max_file_size=5 * 1024**4 + 1)


@pytest.mark.parametrize(
    ("field", "value"),
    [
        ("part_size", 5 * 1024**2 - 1),
        ("part_size", 5 * 1024**3 + 1),
        ("multipart_threshold", 5 * 1024**3 + 1),
    ],
)
def test_part_sizes_outside_s3_limits_are_refused(field: str, value: int) -> None:
    with pytest.raises(ValidationError, match=field):
        make(**{field: value})


# --- key material ------------------------------------------------------------------------------


def test_no_key_material_is_refused_naming_jwt_secret() -> None:
    with pytest.raises(ValidationError, match="S3GATE_JWT_SECRET") as info:
        make(jwt_secret=None)
    assert "found: none" in str(info.value)


def test_two_key_materials_are_refused(public_pem: str) -> None:
    with pytest.raises(ValidationError, match="set exactly one of") as info:
        make(jwt_public_key=public_pem)
    assert "found: S3GATE_JWT_SECRET, S3GATE_JWT_PUBLIC_KEY" in str(info.value)


def test_secret_and_jwks_url_together_are_refused() -> None:
    with pytest.raises(ValidationError, match="set exactly one of"):
        make(jwt_jwks_url="https://idp.example/jwks.json")


def test_hmac_and_asymmetric_algorithms_together_are_refused(public_pem: str) -> None:
    with pytest.raises(ValidationError, match="S3GATE_JWT_ALGORITHMS") as info:
        make(jwt_secret=None, jwt_public_key=public_pem, jwt_algorithms=["HS256", "RS256"])
    assert "must not be allowed together" in str(info.value)


def test_secret_with_rs256_is_refused() -> None:
    with pytest.raises(ValidationError, match="S3GATE_JWT_SECRET works only with HS"):
        make(jwt_algorithms=["RS256"])


def test_public_key_with_hs256_is_refused(public_pem: str) -> None:
    with pytest.raises(ValidationError, match="works only with RS/ES"):
        make(jwt_secret=None, jwt_public_key=public_pem, jwt_algorithms=["HS256"])


def test_jwks_url_with_hs256_is_refused() -> None:
    with pytest.raises(ValidationError, match="works only with RS/ES"):
        make(jwt_secret=None, jwt_jwks_url="https://idp.example/jwks", jwt_algorithms=["HS256"])


@pytest.mark.parametrize("alg", ["PS256", "ps384", "PS512"])
def test_pss_algorithms_are_refused_naming_python_jose(public_pem: str, alg: str) -> None:
    with pytest.raises(ValidationError, match="python-jose"):
        make(jwt_secret=None, jwt_public_key=public_pem, jwt_algorithms=[alg])


@pytest.mark.parametrize("alg", ["none", "None", "HS1", "EdDSA"])
def test_unknown_algorithms_including_none_are_refused(alg: str) -> None:
    with pytest.raises(ValidationError, match="unsupported algorithm"):
        make(jwt_algorithms=[alg])


def test_secret_shorter_than_32_bytes_is_refused() -> None:
    with pytest.raises(ValidationError, match="32 bytes"):
        make(jwt_secret=SECRET[:31])


def test_secret_of_exactly_32_bytes_is_accepted() -> None:
    assert make(jwt_secret=SECRET[:32]).jwt_secret is not None


def test_secret_length_is_counted_in_utf8_bytes() -> None:
    # 16 characters, 32 bytes of UTF-8
    assert make(jwt_secret="éèêëàâäîïôöùûüçñ").jwt_secret is not None


def test_blank_secret_counts_as_unset() -> None:
    with pytest.raises(ValidationError, match="found: none"):
        make(jwt_secret="   ")


def test_public_key_given_as_a_file_path_is_read(tmp_path: Path, public_pem: str) -> None:
    path = tmp_path / "jwt.pem"
    path.write_text(public_pem, encoding="ascii")
    settings = make(jwt_secret=None, jwt_public_key=str(path))
    assert settings.jwt_public_key is not None
    assert settings.jwt_public_key.get_secret_value() == public_pem


def test_public_key_path_from_environment_is_read(
    tmp_path: Path, public_pem: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    path = tmp_path / "jwt.pem"
    path.write_text(public_pem, encoding="ascii")
    monkeypatch.setenv("S3GATE_JWT_PUBLIC_KEY", str(path))
    monkeypatch.setenv("S3GATE_JWT_AUDIENCE", AUDIENCE)
    settings = Settings(_env_file=None, s3_bucket=BUCKET)
    assert settings.jwt_public_key is not None
    assert settings.jwt_public_key.get_secret_value() == public_pem


def test_public_key_path_that_does_not_exist_is_refused(tmp_path: Path) -> None:
    with pytest.raises(ValidationError, match="not a readable PEM file"):
        make(jwt_secret=None, jwt_public_key=str(tmp_path / "missing.pem"))


# --- admin ----------------------------------------------------------------------------------------


def test_no_roles_claim_grants_admin_by_default() -> None:
    assert make().admin_roles_claim is None


def test_roles_claim_from_environment_is_read_and_blank_means_unset(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setenv("S3GATE_ADMIN_ROLES_CLAIM", "roles")
    assert (
        Settings(_env_file=None, s3_bucket=BUCKET, jwt_secret=SECRET).admin_roles_claim == "roles"
    )
    monkeypatch.setenv("S3GATE_ADMIN_ROLES_CLAIM", "  ")
    assert Settings(_env_file=None, s3_bucket=BUCKET, jwt_secret=SECRET).admin_roles_claim is None


def test_roles_claim_with_stray_whitespace_is_refused() -> None:
    with pytest.raises(ConfigError, match="S3GATE_ADMIN_ROLES_CLAIM"):
        load_settings(
            Settings,
            _env_file=None,
            s3_bucket=BUCKET,
            jwt_secret=SECRET,
            admin_roles_claim="roles ",
        )


@pytest.mark.parametrize("scope", ["s3gate admin", "s3gate:admin\n", "adm\u00a0in", "ädmin", 'a"b'])
def test_admin_scope_that_is_not_one_scope_token_is_refused(scope: str) -> None:
    with pytest.raises(ConfigError, match="S3GATE_ADMIN_SCOPE"):
        load_settings(
            Settings, _env_file=None, s3_bucket=BUCKET, jwt_secret=SECRET, admin_scope=scope
        )


# --- audience ------------------------------------------------------------------------------------


@pytest.mark.parametrize("source", ["public-key", "jwks"])
def test_public_key_or_jwks_without_audience_is_refused_naming_jwt_audience(
    public_pem: str, source: str
) -> None:
    key = (
        {"jwt_public_key": public_pem}
        if source == "public-key"
        else {"jwt_jwks_url": "https://idp.example/jwks"}
    )
    with pytest.raises(ConfigError, match="S3GATE_JWT_AUDIENCE") as refused:
        load_settings(Settings, _env_file=None, s3_bucket=BUCKET, **key)
    assert "S3GATE_JWT_AUDIENCE_OPTIONAL=true" in str(refused.value)
    assert "BEGIN" not in str(refused.value)


def test_public_key_with_audience_is_accepted(public_pem: str) -> None:
    settings = make(jwt_secret=None, jwt_public_key=public_pem, jwt_audience="files-api")
    assert settings.jwt_audience == "files-api"
    assert not settings.jwt_audience_optional


def test_audience_optional_from_environment_lets_jwks_run_without_audience(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setenv("S3GATE_JWT_JWKS_URL", "https://idp.example/jwks")
    monkeypatch.setenv("S3GATE_JWT_AUDIENCE_OPTIONAL", "true")
    settings = Settings(_env_file=None, s3_bucket=BUCKET)
    assert settings.jwt_audience is None
    assert settings.jwt_audience_optional


def test_hmac_secret_needs_no_audience() -> None:
    settings = make()
    assert settings.jwt_audience is None
    assert not settings.jwt_audience_optional


# --- content types, CORS, endpoints --------------------------------------------------------------


@pytest.mark.parametrize(
    "pattern", ["image", "image/*/x", "*/png", "image/", "/png", "image /png", "*"]
)
def test_malformed_content_type_patterns_are_refused(pattern: str) -> None:
    with pytest.raises(ValidationError, match="allowed_content_types"):
        make(allowed_content_types=[pattern])


def test_empty_content_type_allow_list_is_refused() -> None:
    with pytest.raises(ValidationError, match="at least one pattern"):
        make(allowed_content_types=[])


def test_content_type_patterns_are_lower_cased() -> None:
    settings = make(allowed_content_types=["Image/*", "APPLICATION/PDF", "*/*"])
    assert settings.allowed_content_types == ["image/*", "application/pdf", "*/*"]


def test_content_types_from_environment_are_comma_separated(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setenv("S3GATE_ALLOWED_CONTENT_TYPES", "image/*, application/pdf")
    settings = Settings(_env_file=None, s3_bucket=BUCKET, jwt_secret=SECRET)
    assert settings.allowed_content_types == ["image/*", "application/pdf"]


def test_cors_origins_from_environment_are_comma_separated(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setenv("S3GATE_CORS_ORIGINS", "https://app.example, http://localhost:3000,")
    settings = Settings(_env_file=None, s3_bucket=BUCKET, jwt_secret=SECRET)
    assert settings.cors_origins == ["https://app.example", "http://localhost:3000"]


def test_jwt_algorithms_from_environment_are_comma_separated(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setenv("S3GATE_JWT_ALGORITHMS", "HS256, hs512")
    settings = Settings(_env_file=None, s3_bucket=BUCKET, jwt_secret=SECRET)
    assert settings.jwt_algorithms == ["HS256", "HS512"]


@pytest.mark.parametrize("origin", ["https://app.example/", "https://app.example/path", "app.ex"])
def test_cors_origin_with_path_or_without_scheme_is_refused(origin: str) -> None:
    with pytest.raises(ValidationError, match="cors_origins"):
        make(cors_origins=[origin])


def test_blank_endpoint_url_from_environment_means_aws(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("S3GATE_S3_ENDPOINT_URL", "  ")
    settings = Settings(_env_file=None, s3_bucket=BUCKET, jwt_secret=SECRET)
    assert settings.s3_endpoint_url is None
    assert settings.signing_endpoint_url is None


def test_public_endpoint_defaults_to_the_internal_one() -> None:
    settings = make(s3_endpoint_url="http://minio:9000/")
    assert settings.s3_endpoint_url == "http://minio:9000"
    assert settings.signing_endpoint_url == "http://minio:9000"


def test_public_endpoint_is_used_for_signing_when_set() -> None:
    settings = make(
        s3_endpoint_url="http://minio:9000", s3_public_endpoint_url="https://files.example"
    )
    assert settings.signing_endpoint_url == "https://files.example"


@pytest.mark.parametrize(
    "url", ["minio:9000", "ftp://minio", "http://minio:9000/path", "http://minio?x=1", "http://"]
)
def test_endpoint_that_is_not_a_bare_http_url_is_refused(url: str) -> None:
    with pytest.raises(ValidationError, match="s3_endpoint_url"):
        make(s3_endpoint_url=url)


def test_endpoint_with_trailing_newline_is_refused() -> None:
    with pytest.raises(ValidationError):
        make(s3_endpoint_url="http://minio:9000\n")


# --- bucket, key prefix, root path ---------------------------------------------------------------


@pytest.mark.parametrize("bucket", ["my-bucket", "abc", "a.b-c.9", "a" * 63])
def test_valid_bucket_names_are_accepted(bucket: str) -> None:
    assert make(s3_bucket=bucket).s3_bucket == bucket


@pytest.mark.parametrize(
    "bucket", ["ab", "a" * 64, "My-Bucket", "-abc", "abc-", ".abc", "a..b", "a_b", "a b", ""]
)
def test_invalid_bucket_names_are_refused(bucket: str) -> None:
    with pytest.raises(ValidationError, match="s3_bucket"):
        make(s3_bucket=bucket)


def test_missing_bucket_is_refused() -> None:
    with pytest.raises(ValidationError, match="s3_bucket"):
        Settings(_env_file=None, jwt_secret=SECRET)


def test_bucket_name_with_trailing_newline_is_refused() -> None:
    with pytest.raises(ValidationError):
        make(s3_bucket="my-bucket\n")


@pytest.mark.parametrize("prefix", ["", "uploads/", "a/b-c/", "Tenant_1/x.y/"])
def test_valid_key_prefixes_are_accepted(prefix: str) -> None:
    assert make(s3_key_prefix=prefix).s3_key_prefix == prefix


@pytest.mark.parametrize("prefix", ["uploads", "/uploads/", "a//", "a b/", "ä/", "a/b"])
def test_key_prefix_not_made_of_slash_terminated_segments_is_refused(prefix: str) -> None:
    with pytest.raises(ValidationError, match="s3_key_prefix"):
        make(s3_key_prefix=prefix)


def test_key_prefix_with_trailing_newline_is_refused() -> None:
    with pytest.raises(ValidationError):
        make(s3_key_prefix="uploads/\n")


@pytest.mark.parametrize("prefix", ["../", "./", "a/../"])
def test_key_prefix_with_dot_segments_is_refused(prefix: str) -> None:
    with pytest.raises(ValidationError):
        make(s3_key_prefix=prefix)


@pytest.mark.parametrize(
    ("given", "expected"), [("", ""), ("/", ""), ("/api", "/api"), ("/api/", "/api")]
)
def test_root_path_loses_its_trailing_slash(given: str, expected: str) -> None:
    assert make(root_path=given).root_path == expected


def test_root_path_without_leading_slash_is_refused() -> None:
    with pytest.raises(ValidationError, match="must start with '/'"):
        make(root_path="api")


# --- load_settings ---------------------------------------------------------------------------


def test_load_settings_names_the_environment_variable_and_hides_the_secret(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    secret = "very-secret-value-0123456789-abcdef"
    monkeypatch.setenv("S3GATE_JWT_SECRET", secret)
    monkeypatch.setenv("S3GATE_S3_BUCKET", BUCKET)
    monkeypatch.setenv("S3GATE_UPLOAD_URL_TTL_SECONDS", "604801")
    with pytest.raises(ConfigError) as info:
        load_settings(Settings, _env_file=None)
    text = str(info.value)
    assert "S3GATE_UPLOAD_URL_TTL_SECONDS" in text
    assert secret not in text
    assert info.value.__cause__ is None


def test_load_settings_lists_every_offending_variable() -> None:
    with pytest.raises(ConfigError) as info:
        load_settings(
            Settings, _env_file=None, s3_bucket="Bad_Bucket", jwt_secret=SECRET, root_path="x"
        )
    lines = str(info.value).splitlines()
    assert any(line.startswith("S3GATE_S3_BUCKET: ") for line in lines)
    assert any(line.startswith("S3GATE_ROOT_PATH: ") for line in lines)


def test_load_settings_never_quotes_a_too_short_secret() -> None:
    secret = "short-sekrit-42"
    with pytest.raises(ConfigError, match="S3GATE_JWT_SECRET") as info:
        load_settings(Settings, _env_file=None, s3_bucket=BUCKET, jwt_secret=secret)
    assert secret not in str(info.value)


def test_load_settings_returns_valid_settings() -> None:
    settings = load_settings(Settings, _env_file=None, s3_bucket=BUCKET, jwt_secret=SECRET)
    assert isinstance(settings, Settings)
    assert settings.s3_bucket == BUCKET


@pytest.mark.parametrize(
    "url",
    [
        "https://login.example.com/.well-known/jwks.json",
        "http://localhost:8080/jwks",
        "http://127.0.0.1/jwks",
        "http://[::1]:9000/jwks",
    ],
)
def test_jwks_url_over_https_or_loopback_is_accepted(url: str) -> None:
    settings = make(jwt_secret=None, jwt_jwks_url=url)
    assert settings.jwt_jwks_url == url


@pytest.mark.parametrize(
    "url", ["http://login.example.com/jwks", "ftp://example.com/jwks", "not a url", "https://"]
)
def test_jwks_url_over_plain_http_or_garbage_is_refused(url: str) -> None:
    with pytest.raises(ConfigError, match="S3GATE_JWT_JWKS_URL"):
        load_settings(Settings, _env_file=None, s3_bucket=BUCKET, jwt_jwks_url=url)


def test_a_key_that_cannot_serve_the_algorithm_stops_app_creation(public_pem: str) -> None:
    from app.main import create_app

    settings = make(jwt_secret=None, jwt_public_key=public_pem, jwt_algorithms=["ES256"])
    with pytest.raises(ConfigError, match="S3GATE_JWT_PUBLIC_KEY") as refused:
        create_app(settings)
    assert "BEGIN" not in str(refused.value)


def test_env_example_lists_every_setting_and_nothing_else() -> None:
    example = (Path(__file__).resolve().parents[2] / ".env.example").read_text()
    listed = set(re.findall(r"^#?\s*(S3GATE_[A-Z0-9_]+)=", example, re.MULTILINE))
    assert listed == {f"S3GATE_{name.upper()}" for name in Settings.model_fields}


# --- placeholders, the ledger URL, every problem at once ----------------------------------------

ROOT = Path(__file__).resolve().parents[2]


def _env_example_secret() -> str:
    found = re.search(r"^S3GATE_JWT_SECRET=(.*)$", (ROOT / ".env.example").read_text(), re.M)
    assert found is not None
    return found.group(1).strip()


@pytest.mark.parametrize(
    "secret",
    [
        _env_example_secret(),
        "change-me-to-something-long-and-random-please",
        "CHANGEME-CHANGEME-0123456789-abcdefghij",
        "your-secret-here-replace-before-production",
        "an-example-hmac-secret-for-the-s3gate-docs",
        "placeholder-placeholder-placeholder",
        "x" * 40,
        "secret" * 6,
        "0123" * 10,
    ],
)
def test_placeholder_secrets_are_refused_with_how_to_generate_one(secret: str) -> None:
    with pytest.raises(ConfigError) as info:
        load_settings(Settings, _env_file=None, s3_bucket=BUCKET, jwt_secret=secret)
    text = str(info.value)
    assert text.startswith("S3GATE_JWT_SECRET: is a placeholder")
    assert "secrets.token_urlsafe(48)" in text
    assert secret not in text


def test_a_generated_secret_is_accepted() -> None:
    import secrets

    assert make(jwt_secret=secrets.token_urlsafe(48)).jwt_secret is not None


@pytest.mark.parametrize(
    ("url", "problem"),
    [
        ("mysql://user:hunter2@db.example/s3gate", "does not run on 'mysql'"),
        ("nonsense", "not a database URL"),
        ("sqlite:////nonexistent-dir-s3gate/ledger.db", "does not exist"),
        ("sqlite:///{tmp}", "is a directory"),
    ],
)
def test_unusable_database_urls_name_the_variable_and_what_works(
    tmp_path: Path, url: str, problem: str
) -> None:
    url = url.format(tmp=tmp_path)
    with pytest.raises(ConfigError) as info:
        load_settings(
            Settings, _env_file=None, s3_bucket=BUCKET, jwt_secret=SECRET, database_url=url
        )
    text = str(info.value)
    assert text.startswith("S3GATE_DATABASE_URL: ")
    assert problem in text
    assert "sqlite:///" in text
    assert "postgresql://" in text
    assert "hunter2" not in text


@pytest.mark.parametrize(
    "url", ["sqlite:///./s3gate.db", "sqlite://", "postgresql://u@127.0.0.1/db", "postgres://h/db"]
)
def test_usable_database_urls_are_accepted(url: str) -> None:
    assert make(database_url=url).database_url == url


def test_every_invalid_setting_is_named_in_one_message() -> None:
    with pytest.raises(ConfigError) as info:
        load_settings(
            Settings,
            _env_file=None,
            s3_bucket=BUCKET,
            jwt_secret=SECRET,
            # a cross-field rule (checked by pydantic only once every field is valid) ...
            jwt_algorithms="RS256",
            # ... and field errors
            database_url="mysql://db/s3gate",
            port=70000,
        )
    named = {line.split(":", 1)[0] for line in str(info.value).splitlines()}
    assert {"S3GATE_DATABASE_URL", "S3GATE_PORT", "S3GATE_JWT_ALGORITHMS"} <= named


def test_every_key_material_problem_is_named_at_once(public_pem: str) -> None:
    with pytest.raises(ConfigError) as info:
        load_settings(
            Settings,
            _env_file=None,
            s3_bucket=BUCKET,
            jwt_public_key=public_pem,
            jwt_algorithms="PS256,HS256",
        )
    lines = str(info.value).splitlines()
    assert any("RSASSA-PSS" in line for line in lines)
    assert any("works only with RS/ES" in line for line in lines)
    assert any(line.startswith("S3GATE_JWT_AUDIENCE: required") for line in lines)


def test_the_ledger_url_check_guards_migrations_and_drivers_too() -> None:
    # Settings built without validation (model_copy) still meet the same check further in.
    import asyncio

    from app.ledger import open_driver
    from app.migrate import sync_url

    for url in ("nonsense", "mysql://user:hunter2@db/s3gate"):
        with pytest.raises(ValueError, match=r"^S3GATE_DATABASE_URL: .*postgresql://") as info:
            sync_url(url)
        assert "hunter2" not in str(info.value)
        with pytest.raises(ValueError, match=r"^S3GATE_DATABASE_URL: .*sqlite:///"):
            asyncio.run(open_driver(url, 1))


# --- concerns -------------------------------------------------------------------------------------


def test_every_setting_belongs_to_exactly_one_concern() -> None:
    # Settings only combines the concerns; a field declared on it directly (or on two concerns)
    # would reach code typed to take one concern without that concern saying so.
    from app import config

    concerns = [
        base for base in Settings.__mro__[1:] if base.__module__.startswith(config.__name__)
    ]
    owners: dict[str, list[str]] = {}
    for concern in concerns:
        for name in concern.__annotations__:
            if name in concern.model_fields:
                owners.setdefault(name, []).append(concern.__name__)
    assert set(owners) == set(Settings.model_fields)
    assert {name: found for name, found in owners.items() if len(found) != 1} == {}
    assert "__annotations__" not in vars(Settings) or not vars(Settings)["__annotations__"]


def test_an_empty_variable_means_the_default(monkeypatch: pytest.MonkeyPatch) -> None:
    # `S3GATE_S3_REGION=` in a compose file or .env is "not set", not an invalid region.
    monkeypatch.setenv("S3GATE_S3_REGION", "")
    monkeypatch.setenv("S3GATE_PORT", "")
    settings = Settings(_env_file=None, s3_bucket=BUCKET, jwt_secret=SECRET)
    assert (settings.s3_region, settings.port) == ("us-east-1", 8000)
