"""Ingest recording and publishing in bulk (R17), on SQLite and PostgreSQL.

A poll records its new changes (dedupe by change key, also inside one poll) and the cursor in
one transaction, then publishes every unpublished change oldest first, chunk by chunk, marking a
chunk published only after the broker acked it: a failed publish loses nothing (the next poll
publishes what is left), and a row already applied is never marked back to ``published``.

The database is real (both backends); the producer and the marketplace are stand-ins
(``FakeRuntime``, ``FakeConnector``) so that a failing produce or read can be injected at an
exact point. These tests are about the store's bookkeeping, not Kafka: the same path over the
real broker runs in tests/e2e/test_naverpay_e2e.py and tests/faults/.
"""

from __future__ import annotations

import asyncio
import json
from datetime import UTC, datetime, timedelta
from decimal import Decimal
from typing import Any

import pytest
from sqlalchemy import select, update
from sqlalchemy.ext.asyncio import AsyncEngine, async_sessionmaker

from agents.ingest import Ingestor
from agents.runtime import ProduceTimeoutError
from connectors.errors import ConnectorError
from store.domain import Channel
from store.models import ChannelChangeRow, IngestCursor
from topics import names
from topics.changes import ChangeKind, ChannelChange, ChannelLine, ChannelOrder
from topics.commands import Address

NOW = datetime(2026, 11, 20, 12, 0, tzinfo=UTC)


def paid(i: int, at: datetime | None = None) -> ChannelChange:
    co = f"ORD{i:05d}"
    return ChannelChange(
        channel=Channel.NAVERPAY,
        change_key=f"naverpay:{co}-1:PAYED:{i}",
        kind=ChangeKind.ORDER_PAID,
        channel_order_id=co,
        unit_ids=[f"{co}-1"],
        changed_at=at or NOW - timedelta(hours=2) + timedelta(seconds=i),
        raw_type="PAYED",
        order=ChannelOrder(
            channel_order_id=co,
            address=Address(name="Kim", phone="010", zip_code="06236", line1="Seoul"),
            lines=[
                ChannelLine(
                    unit_id=f"{co}-1", sku="S", quantity=1, unit_price=Decimal(5), amount=Decimal(5)
                )
            ],
        ),
    )


class FakeRuntime:
    def __init__(self, engine: AsyncEngine) -> None:
        self.sessions = async_sessionmaker(engine, expire_on_commit=False)
        self.sent: list[tuple[str, dict[str, Any]]] = []
        self.fail_after: int | None = None  # produce calls that succeed before one fails

    async def produce_many(self, topic: str, items: list[tuple[str, bytes]]) -> None:
        assert topic == names.CHANNEL_CHANGES
        if self.fail_after is not None:
            if self.fail_after == 0:
                raise ProduceTimeoutError("produce timed out")
            self.fail_after -= 1
        for key, value in items:
            env = json.loads(value)
            assert key == env["order_id"]
            self.sent.append((key, env))


class FakeConnector:
    channel = "naverpay"

    def __init__(self, changes: list[ChannelChange], log: list[str] | None = None) -> None:
        self.changes = changes
        self.reads: list[tuple[datetime, datetime]] = []
        self.log = log if log is not None else []
        self.fail_at: int | None = None  # index of the read that fails

    async def changes_since(self, since: datetime, until: datetime) -> list[ChannelChange]:
        self.reads.append((since, until))
        self.log.append(f"read {len(self.reads)}")
        if self.fail_at == len(self.reads) - 1:
            raise ConnectorError("naverpay answered 503")
        await asyncio.sleep(0)
        return [c for c in self.changes if since <= c.changed_at < until]


async def rows(engine: AsyncEngine) -> list[tuple[str, str | None]]:
    async with async_sessionmaker(engine)() as s:
        stmt = select(ChannelChangeRow.dedupe_key, ChannelChangeRow.outcome).order_by(
            ChannelChangeRow.id
        )
        return [(k, o) for k, o in (await s.execute(stmt)).all()]


def step_of(ing: Ingestor, change: ChannelChange) -> tuple[datetime, datetime]:
    """The read step of a first poll at NOW that holds ``change``."""
    steps = ing.steps(NOW - ing.initial_lookback, NOW)
    return next(s for s in steps if s[0] <= change.changed_at < s[1])


def keys(rt: FakeRuntime) -> list[str]:
    return [env["payload"]["change_key"] for _, env in rt.sent]


async def test_r17_poll_records_in_bulk_and_publishes_in_order(engine: AsyncEngine) -> None:
    changes = [paid(i, at=NOW - timedelta(minutes=5) + timedelta(seconds=i)) for i in range(7)]
    rt = FakeRuntime(engine)
    conn = FakeConnector(list(reversed(changes)) + [changes[3]])  # a key twice in one poll
    ing = Ingestor(rt, conn)
    stats = await ing.poll_once(now=NOW)
    assert (stats.seen, stats.new, stats.published) == (8, 7, 7)
    assert keys(rt) == [c.change_key for c in changes]  # oldest first
    env = rt.sent[0][1]
    assert env["type"] == "change.order_paid" and rt.sent[0][0] == "naverpay:ORD00000"
    assert ChannelChange.model_validate(env["payload"]) == changes[0]
    assert [o for _, o in await rows(engine)] == ["published"] * 7
    assert await ing.cursor() == NOW

    # the next poll re-reads the overlap: only the new change is recorded and published
    rt.sent.clear()
    conn.changes = changes + [paid(7, at=NOW + timedelta(seconds=10))]
    stats = await ing.poll_once(now=NOW + timedelta(seconds=30))
    assert (stats.seen, stats.new, stats.published) == (8, 1, 1)
    assert keys(rt) == [conn.changes[-1].change_key]
    assert len(await rows(engine)) == 8


async def test_r17_failed_publish_loses_nothing(engine: AsyncEngine) -> None:
    """Recorded + cursor committed, then the produce fails: the next poll publishes them."""
    changes = [paid(i) for i in range(5)]
    rt = FakeRuntime(engine)
    ing = Ingestor(rt, FakeConnector(changes), catchup_changes=0)  # every step of the plan
    rt.fail_after = 0
    with pytest.raises(ProduceTimeoutError):
        await ing.poll_once(now=NOW)
    # the steps before committed (empty), and so did the step of the changes (record +
    # cursor in one transaction): only its publish failed, and the poll stopped there
    assert await ing.cursor() == step_of(ing, changes[0])[1]
    assert [o for _, o in await rows(engine)] == [None] * 5
    rt.fail_after = None
    ing.connector = FakeConnector([])
    stats = await ing.poll_once(now=NOW + timedelta(seconds=30))
    assert stats.published == 5
    assert keys(rt) == [c.change_key for c in changes]
    assert [o for _, o in await rows(engine)] == ["published"] * 5


async def test_publish_marks_only_acked_chunks(engine: AsyncEngine) -> None:
    changes = [paid(i) for i in range(5)]
    rt = FakeRuntime(engine)
    ing = Ingestor(rt, FakeConnector(changes))
    rt.fail_after = 10**6  # record without publishing: publish fails at once below
    async with rt.sessions() as session:
        from store.apply_batch import record_changes

        assert await record_changes(session, changes) == [True] * 5
        assert await record_changes(session, changes[:2]) == [False, False]
        await session.commit()
    rt.fail_after = 1  # first chunk acked, second fails
    with pytest.raises(ProduceTimeoutError):
        await ing.publish_pending(chunk=2)
    assert [o for _, o in await rows(engine)] == ["published"] * 2 + [None] * 3
    rt.fail_after = None
    rt.sent.clear()
    assert await ing.publish_pending(chunk=2) == 3  # payloads read back from the store
    assert keys(rt) == [c.change_key for c in changes[2:]]
    assert [ChannelChange.model_validate(e["payload"]) for _, e in rt.sent] == changes[2:]


async def test_publish_never_overwrites_applied(engine: AsyncEngine) -> None:
    """The apply agent may apply a change before the ingestor marks it published."""
    changes = [paid(i) for i in range(3)]
    rt = FakeRuntime(engine)
    ing = Ingestor(rt, FakeConnector(changes))

    async def produce_and_apply(topic: str, items: list[tuple[str, bytes]]) -> None:
        async with rt.sessions() as s:  # "applied" while the ingestor awaits the acks
            await s.execute(
                update(ChannelChangeRow)
                .where(ChannelChangeRow.dedupe_key == changes[1].change_key)
                .values(outcome="applied")
            )
            await s.commit()

    rt.produce_many = produce_and_apply  # type: ignore[method-assign]
    await ing.poll_once(now=NOW)
    assert [o for _, o in await rows(engine)] == ["published", "applied", "published"]


async def test_publish_skips_rows_locked_by_apply(engine: AsyncEngine) -> None:
    """PostgreSQL: a row the apply agent holds locked (its batch not committed yet) is not
    waited for; it is being applied, so it is left as it is."""
    if engine.dialect.name != "postgresql":
        pytest.skip("row locks are PostgreSQL's")
    changes = [paid(i) for i in range(3)]
    rt = FakeRuntime(engine)
    ing = Ingestor(rt, FakeConnector(changes))
    rt.fail_after = 0
    with pytest.raises(ProduceTimeoutError):
        await ing.poll_once(now=NOW)
    rt.fail_after = None
    maker = async_sessionmaker(engine)
    async with maker() as apply_tx:
        await apply_tx.execute(
            update(ChannelChangeRow)
            .where(ChannelChangeRow.dedupe_key == changes[0].change_key)
            .values(outcome="applied", applied_at=NOW)
        )
        async with asyncio.timeout(10):
            assert await ing.publish_pending() == 3
        await apply_tx.commit()
    assert [o for _, o in await rows(engine)] == ["applied", "published", "published"]


async def test_cursor_and_changes_in_one_transaction(engine: AsyncEngine) -> None:
    """A failure while recording leaves neither the changes nor the cursor."""
    rt = FakeRuntime(engine)
    bad = paid(1)
    ing = Ingestor(rt, FakeConnector([paid(0), bad]), catchup_changes=0)
    original = ChannelChange.model_dump

    def boom(self: ChannelChange, **kw: Any) -> Any:
        if self.change_key == bad.change_key:
            raise RuntimeError("disk full")
        return original(self, **kw)

    mp = pytest.MonkeyPatch()
    mp.setattr(ChannelChange, "model_dump", boom)
    try:
        with pytest.raises(RuntimeError):
            await ing.poll_once(now=NOW)
    finally:
        mp.undo()
    assert await rows(engine) == []
    async with rt.sessions() as s:
        cursor = await s.get(IngestCursor, ("naverpay", "default"))
        # the (empty) steps before committed; the failing step's cursor did not
        assert cursor is not None and cursor.cursor == step_of(ing, bad)[0]


def test_steps_cover_the_window_and_keep_the_overlap_behind_the_end() -> None:
    ing = Ingestor(None, FakeConnector([]))
    start, end = NOW - timedelta(days=1), NOW
    steps = ing.steps(start, end)
    assert steps[0][0] == start and steps[-1][1] == end
    assert all(a[1] == b[0] for a, b in zip(steps, steps[1:], strict=False))  # contiguous
    sizes = [e - s for s, e in steps]
    assert sizes == sorted(sizes, reverse=True) and len(steps) == 6  # halving: 12 h, 6 h, …
    assert all(size >= ing.catchup_step for size in sizes)
    assert all(e <= end - ing.overlap for _, e in steps[:-1])
    assert steps[-1][1] - steps[-1][0] >= ing.overlap
    fine = Ingestor(None, FakeConnector([]), catchup_step=timedelta(minutes=1))
    for minutes in (11, 15, 21, 30, 95, 1440):
        steps = fine.steps(NOW - timedelta(minutes=minutes), NOW)
        assert all(e <= NOW - fine.overlap for _, e in steps[:-1]), minutes
        assert steps[-1][1] - steps[-1][0] >= fine.overlap, minutes
    short = ing.steps(NOW - timedelta(minutes=12), NOW)  # a steady-state poll
    assert short == [(NOW - timedelta(minutes=12), NOW)]


async def test_r17_catch_up_in_steps_each_committed_then_published(engine: AsyncEngine) -> None:
    """A 24 h backlog: each step's changes + cursor committed, then published, oldest first,
    while the next step is already being read; a failing read keeps the steps done."""
    backlog = [paid(i, at=NOW - timedelta(hours=23) + timedelta(minutes=30 * i)) for i in range(46)]
    rt = FakeRuntime(engine)
    log: list[str] = []
    conn = FakeConnector(backlog, log)
    ing = Ingestor(rt, conn, catchup_changes=0)  # never "the rest looks small"
    cursors: list[datetime | None] = []

    async def produce(topic: str, items: list[tuple[str, bytes]]) -> None:
        cursors.append(await ing.cursor())
        log.append(f"publish {len(items)}")
        for key, value in items:
            rt.sent.append((key, json.loads(value)))

    rt.produce_many = produce  # type: ignore[method-assign]
    conn.fail_at = 3
    stats = await ing.poll_once(now=NOW)
    assert stats.error and len(conn.reads) == 4
    steps = ing.steps(NOW - timedelta(days=1), NOW)
    assert conn.reads == steps[:4]
    assert await ing.cursor() == steps[2][1]  # three steps committed before the failure
    done = [c for c in backlog if c.changed_at < steps[2][1]]
    assert keys(rt) == [c.change_key for c in done]
    assert cursors == [s[1] for s in steps[:3]]  # each step published after its commit
    # step k+1 is read before step k is published (pipelined)
    first = sum(1 for c in backlog if c.changed_at < steps[0][1])
    assert log[:4] == ["read 1", "read 2", f"publish {first}", "read 3"]

    conn.fail_at = None
    stats = await ing.poll_once(now=NOW + timedelta(seconds=5))
    assert await ing.cursor() == NOW + timedelta(seconds=5)
    assert keys(rt) == [c.change_key for c in backlog]  # nothing lost, nothing twice
    assert [o for _, o in await rows(engine)] == ["published"] * len(backlog)


async def test_small_backlog_read_in_two_steps(engine: AsyncEngine) -> None:
    """Each step costs marketplace calls: once a step shows the rest of the window is small at
    its density, the rest is read at once."""
    backlog = [paid(i, at=NOW - timedelta(hours=23) + timedelta(minutes=30 * i)) for i in range(46)]
    rt = FakeRuntime(engine)
    conn = FakeConnector(backlog)
    ing = Ingestor(rt, conn, catchup_changes=100)
    stats = await ing.poll_once(now=NOW)
    first = ing.steps(NOW - timedelta(days=1), NOW)[0]
    assert conn.reads == [first, (first[1], NOW)]
    assert (stats.seen, stats.new, stats.published) == (46, 46, 46)
    assert keys(rt) == [c.change_key for c in backlog]
    # a dense first step: the next one halves what is left instead
    conn.reads.clear()
    dense = Ingestor(FakeRuntime(engine), conn, account="other", catchup_changes=10)
    await dense.poll_once(now=NOW)
    assert conn.reads[:2] == dense.steps(NOW - timedelta(days=1), NOW)[:2]
