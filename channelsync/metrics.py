"""Prometheus metrics (prometheus-client). Names follow the conventions: units in names,
``_total`` counters, bounded label sets (never an order id in a label)."""

from __future__ import annotations

from prometheus_client import Counter, Gauge, Histogram

DELAY_BUCKETS = (0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60, 120, 300, 600, 1800, 3600)
CALL_BUCKETS = (0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30)

EVENTS_CONSUMED = Counter(
    "channelsync_events_consumed_total", "Messages consumed", ["topic", "type", "outcome"]
)
EVENTS_DEAD_LETTERED = Counter(
    "channelsync_events_dead_lettered_total",
    "Messages sent to a dead-letter topic",
    ["topic", "reason"],
)
EXTERNAL_CALLS = Counter(
    "channelsync_external_calls_total",
    "Calls to marketplaces / Goodsflow",
    ["connector", "endpoint", "outcome"],
)
EXTERNAL_CALL_SECONDS = Histogram(
    "channelsync_external_call_duration_seconds",
    "Latency of calls to marketplaces / Goodsflow",
    ["connector", "endpoint"],
    buckets=CALL_BUCKETS,
)
OPS = Counter(
    "channelsync_ops_total", "Outbound ledger op outcomes", ["channel", "action", "outcome"]
)
LEDGER_OPS = Gauge("channelsync_ledger_ops", "Ledger ops by state", ["channel", "state"])
OPEN_HOLDS = Gauge("channelsync_open_holds", "Orders on delivery hold")
OLDEST_HOLD_SECONDS = Gauge("channelsync_oldest_hold_age_seconds", "Age of the oldest open hold")
INGEST_CURSOR_LAG = Gauge(
    "channelsync_ingest_cursor_lag_seconds", "now - ingest cursor", ["channel", "account"]
)
COLLECTION_DELAY = Histogram(
    "channelsync_collection_delay_seconds",
    "Marketplace change time -> stored",
    ["channel"],
    buckets=DELAY_BUCKETS,
)
PUSH_DELAY = Histogram(
    "channelsync_push_delay_seconds",
    "Command time -> marketplace acknowledged",
    ["channel", "action"],
    buckets=DELAY_BUCKETS,
)
CHANGES_INGESTED = Counter(
    "channelsync_changes_ingested_total",
    "Marketplace changes found by polling",
    ["channel", "kind", "new"],
)
STALE_INVOICES = Gauge(
    "channelsync_stale_invoices", "Invoices with no carrier scan after STALE_INVOICE_AFTER_SECONDS"
)


async def refresh_store_gauges(sessions: object) -> None:
    """Ledger-by-state and hold gauges, read from the store (the store is the truth)."""
    from datetime import UTC, datetime

    from sqlalchemy import func, select

    from store.ledger import OpState
    from store.models import ChannelOp, Hold

    async with sessions() as session:  # type: ignore[operator]
        rows = (
            await session.execute(
                select(ChannelOp.channel, ChannelOp.state, func.count()).group_by(
                    ChannelOp.channel, ChannelOp.state
                )
            )
        ).all()
        holds = (
            await session.execute(
                select(func.count(), func.min(Hold.raised_at)).where(Hold.released_at.is_(None))
            )
        ).one()
    seen = set()
    for channel, state, n in rows:
        LEDGER_OPS.labels(channel, state).set(n)
        seen.add((channel, state))
    for channel in {c for c, _ in seen}:
        for state in OpState:
            if (channel, state.value) not in seen:
                LEDGER_OPS.labels(channel, state.value).set(0)
    count, oldest = holds
    OPEN_HOLDS.set(count or 0)
    if oldest is not None and oldest.tzinfo is None:
        oldest = oldest.replace(tzinfo=UTC)
    OLDEST_HOLD_SECONDS.set((datetime.now(UTC) - oldest).total_seconds() if oldest else 0)
