"""Settings, read from `S3GATE_*` environment variables and `.env`; validated and bounded.

One class per concern (store, URLs, uploads, quotas, rate limits, reaper, HTTP in service.py;
auth; the ledger's database; logging; events); `Settings` combines them for `s3gate serve`."""

from __future__ import annotations

from typing import Any

from pydantic import ValidationError
from pydantic_settings import BaseSettings

from app.config.auth import (
    ASYMMETRIC_ALGORITHMS,
    HMAC_ALGORITHMS,
    HOW_TO_GENERATE,
    MIN_HMAC_SECRET_BYTES,
    UNSUPPORTED_BY_JOSE,
    AuthSettings,
    jwt_secret_problem,
)
from app.config.base import (
    MAX_OBJECT_BYTES,
    MAX_PARTS,
    MAX_URL_TTL_SECONDS,
    MIN_PART_BYTES,
    SINGLE_PUT_MAX_BYTES,
    ConfigError,
    CsvList,
    OptionalSecret,
    OptionalText,
    SettingsT,
)
from app.config.events import EventSettings, WebhookSettings
from app.config.ledger import (
    DATABASE_URL_VARIABLE,
    DatabaseSettings,
    LoggingSettings,
    MigrateSettings,
    ledger_url,
)
from app.config.service import (
    HttpSettings,
    QuotaSettings,
    RateLimitSettings,
    ReaperSettings,
    StoreSettings,
    UploadSettings,
    UrlSettings,
)
from app.config.sharing import SharingSettings
from app.config.verification import VerificationSettings

__all__ = [
    "ASYMMETRIC_ALGORITHMS",
    "DATABASE_URL_VARIABLE",
    "HMAC_ALGORITHMS",
    "HOW_TO_GENERATE",
    "MAX_OBJECT_BYTES",
    "MAX_PARTS",
    "MAX_URL_TTL_SECONDS",
    "MIN_HMAC_SECRET_BYTES",
    "MIN_PART_BYTES",
    "SINGLE_PUT_MAX_BYTES",
    "UNSUPPORTED_BY_JOSE",
    "AuthSettings",
    "ConfigError",
    "CsvList",
    "DatabaseSettings",
    "EventSettings",
    "HttpSettings",
    "LoggingSettings",
    "MigrateSettings",
    "OptionalSecret",
    "OptionalText",
    "QuotaSettings",
    "RateLimitSettings",
    "ReaperSettings",
    "Settings",
    "SharingSettings",
    "StoreSettings",
    "UploadSettings",
    "UrlSettings",
    "VerificationSettings",
    "WebhookSettings",
    "describe_validation_error",
    "jwt_secret_problem",
    "ledger_url",
    "load_settings",
]


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
    EventSettings,
    WebhookSettings,
    VerificationSettings,
    SharingSettings,
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
