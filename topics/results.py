"""Outcomes every agent emits on ``sync.results``, and the dead-letter record."""

from __future__ import annotations

import uuid
from enum import StrEnum
from typing import Any

from pydantic import Field

from topics.base import AwareDatetime, Model


class Outcome(StrEnum):
    SUCCEEDED = "succeeded"  # done (the external call acknowledged, or nothing external needed)
    DUPLICATE = "duplicate"  # already done for this event: no second side effect (S1)
    REFUSED = "refused"  # a rule refused it (``rule`` says which)
    PARKED = "parked"  # waiting: hold (R12) or open claim (R29); resumes later
    RETRYING = "retrying"  # a retryable failure; will be retried
    FAILED = "failed"  # permanent failure from the marketplace (``error`` has its reason)


class SyncResult(Model):
    source_event_id: uuid.UUID
    source_type: str
    outcome: Outcome
    rule: str | None = None
    message: str = ""
    error: dict[str, Any] | None = None
    detail: dict[str, Any] = Field(default_factory=dict)


class DeadLetter(Model):
    """What the DLQ carries: the raw bytes (as text, replacement chars for invalid UTF-8), the
    topic/partition/offset it came from, and why it was refused."""

    source_topic: str
    partition: int | None = None
    offset: int | None = None
    key: str | None = None
    reason: str
    error: str
    raw: str = Field(max_length=1_100_000)
    raw_truncated: bool = False
    at: AwareDatetime


RESULT_MODELS: dict[str, type[Model]] = {"sync.result": SyncResult}
