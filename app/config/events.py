"""What backends hear of: the event feed's retention (webhooks and scanning join it)."""

from __future__ import annotations

from pydantic import Field
from pydantic_settings import BaseSettings

from app.config.base import _MODEL_CONFIG


class EventSettings(BaseSettings):
    """The outbox of file events: how long `GET /events` can replay them."""

    model_config = _MODEL_CONFIG

    # Events older than this are pruned by the reaper (in-process or `s3gate reap`). At least a
    # day: a webhook delivery retries for about 18 hours before it gives up.
    event_retention_days: int = Field(default=30, ge=1, le=3650)
