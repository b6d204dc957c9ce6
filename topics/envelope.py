"""The event envelope every message on every topic carries."""

from __future__ import annotations

import uuid
from datetime import UTC, datetime
from typing import Any

from pydantic import Field

from store.domain import Channel
from topics.base import AwareDatetime, Model

SCHEMA_VERSION = 1


class Envelope(Model):
    """``event_id`` is the idempotency root: every side effect derived from an event is keyed by
    it. ``payload`` is validated against the model registered for ``type``
    (:mod:`topics.registry`)."""

    event_id: uuid.UUID
    type: str = Field(min_length=1, max_length=64)
    occurred_at: AwareDatetime
    order_id: str = Field(min_length=1, max_length=128)
    channel: Channel
    schema_version: int = Field(default=SCHEMA_VERSION, ge=1, le=SCHEMA_VERSION)
    payload: dict[str, Any]


def new_envelope(
    type: str,
    order_id: str,
    channel: Channel,
    payload: Model | dict[str, Any],
    *,
    event_id: uuid.UUID | None = None,
    occurred_at: datetime | None = None,
) -> Envelope:
    body = payload.model_dump(mode="json") if isinstance(payload, Model) else payload
    return Envelope(
        event_id=event_id or uuid.uuid4(),
        type=type,
        occurred_at=occurred_at or datetime.now(UTC),
        order_id=order_id,
        channel=channel,
        payload=body,
    )
