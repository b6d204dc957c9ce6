"""Ingestion: poll each marketplace account's change feed into ``channel.changes`` (R17).

Each poll reads ``[cursor - overlap, now)`` (the overlap re-reads late-visible changes), records
new facts in ``channel_changes`` (unique change key) and advances the cursor in the *same*
transaction, then publishes every recorded-but-unpublished change. A crash between the commit
and the publish republishes on the next poll; the apply agent de-duplicates by change key. After
an outage the cursor is simply further behind: the next polls catch up in ``max_catchup`` steps,
each read in parts of decreasing size (:meth:`Ingestor.steps`) that are recorded (with the
cursor) and published one after the other while the next part is being read.

Recording is a few statements per poll whatever its size (one look-up of the keys already
logged, one bulk insert: :func:`store.apply_batch.record_changes`); publishing sends a chunk
of rows at a time (one produce, every ack awaited) and only then marks that chunk published, so
a failed produce leaves its rows unpublished for the next poll.
"""

from __future__ import annotations

import asyncio
import logging
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any

from sqlalchemy import and_, or_, select, update

from channelsync import metrics
from connectors.errors import ConnectorError
from store.apply_batch import record_changes
from store.apply_changes import order_id_for
from store.models import ChannelChangeRow, IngestCursor
from topics import names
from topics.changes import ChannelChange
from topics.envelope import new_envelope
from topics.registry import encode

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
        catchup_step: timedelta = timedelta(minutes=30),
        catchup_changes: int = 1500,
    ) -> None:
        self.rt = runtime
        self.connector = connector
        self.channel = str(connector.channel)
        self.account = account
        self.overlap = overlap
        self.initial_lookback = initial_lookback
        self.max_catchup = max_catchup
        self.catchup_step = catchup_step
        self.catchup_changes = catchup_changes

    async def cursor(self) -> datetime | None:
        async with self.rt.sessions() as session:
            row = await session.get(IngestCursor, (self.channel, self.account))
            return None if row is None else row.cursor

    def steps(self, start: datetime, end: datetime) -> list[tuple[datetime, datetime]]:
        """``[start, end)`` as contiguous read steps, each half of what is left but at least
        ``catchup_step``: while the store records, publishes and applies one step, the next
        (smaller) one is read, so what is left to do after the last read is small. The last
        step is at least ``overlap`` long, so every inner boundary lies ``overlap`` or more
        before ``end`` (changes that old are visible already, and the next poll re-reads the
        overlap behind ``end`` anyway). A steady-state poll is one step."""
        bounds = [start]
        while True:
            left = end - bounds[-1]
            step = max(self.catchup_step, left / 2)
            if left - step < max(self.catchup_step, self.overlap):
                break
            bounds.append(bounds[-1] + step)
        bounds.append(end)
        return list(zip(bounds, bounds[1:], strict=False))

    async def poll_once(self, now: datetime | None = None) -> PollStats:
        """Read ``[cursor - overlap, now)`` (at most ``max_catchup`` past the cursor) step by
        step (:meth:`steps`, the rest at once when it looks small: :meth:`_next_step`). Each
        step is a poll of its own: its new changes and the cursor at
        its end in one transaction, then publish. The next step's read runs while a step is
        recorded and published, so after an outage the store works through the backlog while
        the marketplace is still being read."""
        now = now or datetime.now(UTC)
        cursor = await self.cursor()
        start = (cursor - self.overlap) if cursor else now - self.initial_lookback
        end = min(now, start + self.overlap + self.max_catchup)
        stats = PollStats(start, end)
        current = self.steps(start, end)[0]
        reading = asyncio.ensure_future(self.connector.changes_since(*current))
        try:
            while True:
                step_start, step_end = current
                try:
                    changes: list[ChannelChange] = await reading
                except ConnectorError as exc:
                    stats.error = str(exc)
                    log.warning(
                        "%s poll %s..%s failed: %s", self.channel, step_start, step_end, exc
                    )
                    return stats
                if step_end < end:  # read the next step while this one is stored
                    current = self._next_step(step_start, step_end, end, len(changes))
                    reading = asyncio.ensure_future(self.connector.changes_since(*current))
                await self._record(changes, step_end, stats)
                stats.published += await self.publish_pending(
                    known={c.change_key: c for c in changes}
                )
                metrics.INGEST_CURSOR_LAG.labels(self.channel, self.account).set(
                    (datetime.now(UTC) - step_end).total_seconds()
                )
                if step_end >= end:
                    return stats
        finally:
            if not reading.done():
                reading.cancel()
                await asyncio.gather(reading, return_exceptions=True)
        return stats

    def _next_step(
        self, done_start: datetime, done_end: datetime, end: datetime, seen: int
    ) -> tuple[datetime, datetime]:
        """The step after ``[done_start, done_end)`` (which held ``seen`` changes): the rest of
        the window at once when, at the same density, it holds fewer than ``catchup_changes``
        (each step costs marketplace calls of its own), else the next step of :meth:`steps`."""
        density = seen / max((done_end - done_start).total_seconds(), 1.0)
        if density * (end - done_end).total_seconds() < self.catchup_changes:
            return done_end, end
        return self.steps(done_end, end)[0]

    async def _record(self, changes: list[ChannelChange], end: datetime, stats: PollStats) -> None:
        """The step's new changes and the cursor ``end`` in one transaction (R17)."""
        stats.seen += len(changes)
        async with self.rt.sessions() as session:
            for change, is_new in zip(changes, await record_changes(session, changes), strict=True):
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

    async def publish_pending(
        self,
        limit: int = 100_000,
        *,
        chunk: int = 2000,
        known: dict[str, ChannelChange] | None = None,
    ) -> int:
        """Publish recorded changes not yet on the topic (outcome NULL), oldest first, ``chunk``
        rows per produce, until none is left or ``limit`` were published. A chunk is marked
        published only after the broker acked all of it; a failed produce raises and leaves it
        for the next poll. ``known``: changes by key already in memory (this poll's), so their
        payloads need not be read back and validated again."""
        published = 0
        after: tuple[datetime, int] | None = None  # keyset: a skipped row is not read again
        while published < limit:
            async with self.rt.sessions() as session:
                stmt = (
                    select(
                        ChannelChangeRow.id,
                        ChannelChangeRow.dedupe_key,
                        ChannelChangeRow.changed_at,
                    )
                    .where(
                        ChannelChangeRow.channel == self.channel,
                        ChannelChangeRow.account == self.account,
                        ChannelChangeRow.outcome.is_(None),
                    )
                    .order_by(ChannelChangeRow.changed_at, ChannelChangeRow.id)
                    .limit(min(chunk, limit - published))
                )
                if after is not None:
                    stmt = stmt.where(
                        or_(
                            ChannelChangeRow.changed_at > after[0],
                            and_(
                                ChannelChangeRow.changed_at == after[0],
                                ChannelChangeRow.id > after[1],
                            ),
                        )
                    )
                rows = (await session.execute(stmt)).all()
                if not rows:
                    return published
                after = (rows[-1][2], rows[-1][0])
                changes = {key: (known or {}).get(key) for _, key, _ in rows}
                missing = [row_id for row_id, key, _ in rows if changes[key] is None]
                if missing:
                    stmt_p = select(ChannelChangeRow.dedupe_key, ChannelChangeRow.payload).where(
                        ChannelChangeRow.id.in_(missing)
                    )
                    for key, payload in (await session.execute(stmt_p)).all():
                        changes[key] = ChannelChange.model_validate(payload)
                messages: list[tuple[str, bytes]] = []
                for _, key, _ in rows:
                    change = changes[key]
                    assert change is not None
                    env = new_envelope(
                        f"change.{change.kind.value}",
                        order_id_for(change.channel.value, change.channel_order_id),
                        change.channel,
                        change,
                        occurred_at=change.changed_at,
                    )
                    messages.append((env.order_id, encode(env)))
                await self.rt.produce_many(names.CHANNEL_CHANGES, messages)
                # rows the apply agent is updating right now (locked) are skipped, not waited
                # for: they are being applied (outcome "applied"), and waiting could deadlock
                # against its batch; should its transaction roll back, they stay unpublished
                # and the next poll publishes them again (the apply agent answers duplicate)
                ids = [row_id for row_id, _, _ in rows]
                pick = (
                    select(ChannelChangeRow.id)
                    .where(ChannelChangeRow.id.in_(ids), ChannelChangeRow.outcome.is_(None))
                    .with_for_update(skip_locked=True)
                )
                await session.execute(
                    update(ChannelChangeRow)
                    .where(ChannelChangeRow.id.in_(pick.scalar_subquery()))
                    .values(outcome="published")
                    .execution_options(synchronize_session=False)
                )
                await session.commit()
            published += len(rows)
        return published
