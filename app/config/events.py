"""What backends hear of: the event feed's retention and the webhooks."""

from __future__ import annotations

from pydantic import Field, SecretStr, field_validator
from pydantic_settings import BaseSettings

from app.config.base import _MODEL_CONFIG
from app.webhooks.endpoints import WebhookEndpoint, parse_endpoints


class EventSettings(BaseSettings):
    """The outbox of file events: how long `GET /events` can replay them."""

    model_config = _MODEL_CONFIG

    # Events older than this are pruned by the reaper (in-process or `s3gate reap`). At least a
    # day: a webhook delivery retries for about 18 hours before it gives up.
    event_retention_days: int = Field(default=30, ge=1, le=3650)


class WebhookSettings(BaseSettings):
    """Signed webhooks from the outbox (docs/events.md)."""

    model_config = _MODEL_CONFIG

    # A JSON array: [{"name": "billing", "url": "https://...", "secrets": ["whsec_..."],
    # "events": ["file.available"]}]; `events` left out means every type, two secrets sign
    # with both while receivers rotate. Secret: it holds the signing keys.
    webhook_endpoints: SecretStr | None = None
    # Dispatch in this process (every replica may: they never take the same delivery). Off:
    # run `s3gate deliver` from cron, or leave the deliveries to another replica.
    webhook_dispatch: bool = False
    webhook_timeout_seconds: float = Field(default=5.0, ge=0.5, le=60)
    webhook_concurrency: int = Field(default=8, ge=1, le=64)
    # How often an idle dispatcher looks for deliveries that another replica's changes made
    # due (its own process's changes wake it at once).
    webhook_poll_seconds: float = Field(default=1.0, ge=0.05, le=60)

    @field_validator("webhook_endpoints", mode="after")
    @classmethod
    def _endpoints(cls, value: SecretStr | None) -> SecretStr | None:
        if value is not None:
            parse_endpoints(value.get_secret_value())  # its ValueError names what is wrong
        return value

    def webhook_endpoint_list(self) -> tuple[WebhookEndpoint, ...]:
        """The endpoints configured (none when unset)."""
        if self.webhook_endpoints is None:
            return ()
        return parse_endpoints(self.webhook_endpoints.get_secret_value())
