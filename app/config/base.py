"""What every settings group shares: the store's limits, ConfigError, the field types that
read lists and blanks, and the environment they are read from (`S3GATE_*`, `.env`)."""

from __future__ import annotations

from typing import Annotated, Any, TypeVar

from pydantic import (
    BeforeValidator,
    SecretStr,
)
from pydantic_settings import BaseSettings, NoDecode, SettingsConfigDict

MAX_URL_TTL_SECONDS = 7 * 24 * 3600  # SigV4's hard ceiling for presigned URLs
SINGLE_PUT_MAX_BYTES = 5 * 1024**3  # S3's limit for one PutObject (and for one part)
MAX_OBJECT_BYTES = 5 * 1024**4  # S3's limit for one object (multipart)
MIN_PART_BYTES = 5 * 1024**2  # S3's smallest part (all but the last)
MAX_PARTS = 10_000

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


_MODEL_CONFIG = SettingsConfigDict(
    env_prefix="S3GATE_", env_file=".env", extra="ignore", frozen=True, env_ignore_empty=True
)
