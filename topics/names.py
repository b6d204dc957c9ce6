"""Topic names (one place). Every topic is keyed by the internal order id (S2); ingested
changes are keyed by ``channel:channel_order_id`` until the order is resolved."""

from __future__ import annotations

OMS_COMMANDS = "oms.commands"
CHANNEL_CHANGES = "channel.changes"
TRACKING_EVENTS = "tracking.events"
SYNC_RESULTS = "sync.results"

CONSUMED_TOPICS = (OMS_COMMANDS, CHANNEL_CHANGES, TRACKING_EVENTS)
ALL_TOPICS = (OMS_COMMANDS, CHANNEL_CHANGES, TRACKING_EVENTS, SYNC_RESULTS) + tuple(
    f"{t}.dlq" for t in CONSUMED_TOPICS
)


def dlq(topic: str) -> str:
    """The dead-letter topic of ``topic``."""
    return f"{topic}.dlq"
