"""Carrier scans on ``tracking.events`` (from the Goodsflow poller / callback)."""

from __future__ import annotations

from pydantic import Field

from store.carriers import Carrier
from store.domain import TrackingState
from topics.base import AwareDatetime, Model


class TrackingScan(Model):
    carrier: Carrier
    tracking_number: str = Field(min_length=1, max_length=40)
    state: TrackingState
    scanned_at: AwareDatetime
    location: str = ""
    raw_code: str = ""


TRACKING_MODELS: dict[str, type[Model]] = {"tracking.scan": TrackingScan}
