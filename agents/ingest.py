"""Ingestion: poll each marketplace account's change feed into ``channel.changes`` (R17).

Each poll reads ``[cursor - overlap, now)`` (the overlap re-reads late-visible changes), records
new facts in ``channel_changes`` (unique change key) and advances the cursor in the *same*
transaction, then publishes every recorded-but-unpublished change. A crash between the commit
and the publish republishes on the next poll; the apply agent de-duplicates by change key. After
an outage the cursor is simply further behind: the next polls catch up in ``max_catchup`` steps.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any

from sqlalchemy import select

from channelsync import metrics
from connectors.errors import ConnectorError
from store.apply_changes import order_id_for, record_change
from store.models import ChannelChangeRow, IngestCursor
from topics import names
from topics.changes import ChannelChange
from topics.envelope import new_envelope

log = logging.getLogger(__name__)


@dataclass
class PollStats:
    window_start: datetime
    window_end: datetime
    seen: int = 0
    new: int = 0
    published: int = 0
    error: str | None = None


class Ingestor:
    def __init__(
        self,
        runtime: Any,
        connector: Any,
        *,
        account: str = "default",
        overlap: timedelta = timedelta(minutes=10),
        initial_lookback: timedelta = timedelta(days=1),
        max_catchup: timedelta = timedelta(days=1),
    ) -> None:
        self.rt = runtime
        self.connector = connector
        self.channel = str(connector.channel)
        self.account = account
        self.overlap = overlap
        self.initial_lookback = initial_lookback
        self.max_catchup = max_catchup

    async def cursor(self) -> datetime | None:
        async with self.rt.sessions() as session:
            row = await session.get(IngestCursor, (self.channel, self.account))
            return None if row is None else row.cursor

    async def poll_once(self, now: datetime | None = None) -> PollStats:
        now = now or datetime.now(UTC)
        cursor = await self.cursor()
        start = (cursor - self.overlap) if cursor else now - self.initial_lookback
        end = min(now, start + self.overlap + self.max_catchup)
        stats = PollStats(start, end)
        try:
            changes: list[ChannelChange] = await self.connector.changes_since(start, end)
        except ConnectorError as exc:
            stats.error = str(exc)
            log.warning("%s poll %s..%s failed: %s", self.channel, start, end, exc)
            return stats
        stats.seen = len(changes)
        async with self.rt.sessions() as session:
            for change in changes:
                is_new = await record_change(session, change)
                stats.new += is_new
                metrics.CHANGES_INGESTED.labels(
                    self.channel, change.kind.value, str(is_new).lower()
                ).inc()
            row = await session.get(IngestCursor, (self.channel, self.account))
            if row is None:
                session.add(IngestCursor(channel=self.channel, account=self.account, cursor=end))
            elif end > row.cursor:
                row.cursor = end
            await session.commit()
        stats.published = await self.publish_pending()
        metrics.INGEST_CURSOR_LAG.labels(self.channel, self.account).set(
            (datetime.now(UTC) - end).total_seconds()
        )
        return stats

    async def publish_pending(self, limit: int = 5000) -> int:
        """Publish recorded changes not yet on the topic (outcome NULL), oldest first."""
        published = 0
        while True:
            async with self.rt.sessions() as session:
                stmt = (
                    select(ChannelChangeRow)
                    .where(
                        ChannelChangeRow.channel == self.channel,
                        ChannelChangeRow.account == self.account,
                        ChannelChangeRow.outcome.is_(None),
                    )
                    .order_by(ChannelChangeRow.changed_at, ChannelChangeRow.id)
                    .limit(500)
                )
                rows = list((await session.execute(stmt)).scalars())
                if not rows:
                    return published
                for row in rows:
                    change = ChannelChange.model_validate(row.payload)
                    env = new_envelope(
                        f"change.{change.kind.value}",
                        order_id_for(change.channel.value, change.channel_order_id),
                        change.channel,
                        change,
                        occurred_at=change.changed_at,
                    )
                    await self.rt.emit(names.CHANNEL_CHANGES, env)
                    row.outcome = "published"
                    published += 1
                await session.commit()
            if published >= limit:
                return published
