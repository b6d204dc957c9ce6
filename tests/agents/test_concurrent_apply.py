"""``channelsync replay ingest`` racing the apply agent over the same new-order change.

Both paths read the change row (published, not applied), find no order and insert it; the one
that commits second fails on the orders primary key. The loser must retry in a fresh
transaction, where the change's dedupe (``applied_at``) answers ``duplicate``: nothing is
dead-lettered, replay does not abort, the order exists once.

The race is made deterministic by running the winner *inside* the loser's order look-up (after
the loser saw no order, before it inserts one), on SQLite and PostgreSQL.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from datetime import UTC, datetime, timedelta
from decimal import Decimal
from typing import Any

import pytest
from sqlalchemy import func, select
from sqlalchemy.exc import IntegrityError
from sqlalchemy.ext.asyncio import AsyncEngine, async_sessionmaker

from agents.apply import ApplyHandler
from agents.loop import handle_one
from agents.runtime import MessageMeta
from channelsync import ops
from store import repo
from store.apply_changes import record_change
from store.domain import Channel
from store.models import ChannelChangeRow, Order
from topics.changes import ChangeKind, ChannelChange, ChannelLine, ChannelOrder
from topics.commands import Address
from topics.envelope import Envelope, new_envelope
from topics.registry import encode
from topics.results import Outcome

CO = "RACE000001"


def new_order_change() -> tuple[ChannelChange, Envelope]:
    change = ChannelChange(
        channel=Channel.NAVERPAY,
        change_key=f"naverpay:{CO}:PAYED:race",
        kind=ChangeKind.ORDER_PAID,
        channel_order_id=CO,
        unit_ids=[f"{CO}-1"],
        changed_at=datetime.now(UTC) - timedelta(seconds=5),
        raw_type="PAYED",
        order=ChannelOrder(
            channel_order_id=CO,
            buyer_name="Lee",
            address=Address(name="Lee", phone="010-2222-3333", zip_code="06236", line1="Seoul"),
            lines=[
                ChannelLine(
                    unit_id=f"{CO}-1",
                    sku="SKU-R",
                    quantity=1,
                    unit_price=Decimal(9000),
                    amount=Decimal(9000),
                )
            ],
        ),
    )
    env = new_envelope(f"change.{change.kind.value}", f"naverpay:{CO}", Channel.NAVERPAY, change)
    return change, env


class FakeRuntime:
    """What ``handle_one`` and ``ApplyHandler`` use of :class:`agents.runtime.Runtime`."""

    def __init__(self, engine: AsyncEngine) -> None:
        self.sessions = async_sessionmaker(engine, expire_on_commit=False)
        self.results: list[Outcome] = []
        self.quarantined: list[tuple[str, str]] = []

    async def emit_result(self, source: Envelope, outcome: Outcome, *a: Any, **kw: Any) -> None:
        self.results.append(outcome)

    async def quarantine(self, meta: MessageMeta, raw: Any, reason: str, error: str) -> None:
        self.quarantined.append((reason, error))


class FakeConnector:
    def __init__(self, changes: list[ChannelChange]) -> None:
        self.changes = changes

    async def changes_since(self, since: datetime, until: datetime) -> list[ChannelChange]:
        return list(self.changes)


def race_once(monkeypatch: pytest.MonkeyPatch, winner: Callable[[], Awaitable[Any]]) -> list[Any]:
    """The first order look-up that finds nothing runs ``winner`` to completion before it
    returns (the loser then inserts an order that now exists)."""
    original = repo.find_order
    ran: list[Any] = []
    started: list[bool] = []

    async def find_order(session: Any, *args: Any) -> Any:
        found = await original(session, *args)
        if found is None and not started:
            started.append(True)  # the winner's own look-up passes through
            ran.append(await winner())
        return found

    monkeypatch.setattr(repo, "find_order", find_order)
    return ran


async def published(engine: AsyncEngine, change: ChannelChange) -> None:
    """The ingestor's state: change row recorded (published on channel.changes), not applied."""
    async with async_sessionmaker(engine)() as session:
        assert await record_change(session, change)
        await session.commit()


async def orders_and_change(engine: AsyncEngine, key: str) -> tuple[int, Any]:
    async with async_sessionmaker(engine)() as session:
        n = await session.scalar(
            select(func.count()).select_from(Order).where(Order.channel_order_id == CO)
        )
        row = (
            await session.execute(
                select(ChannelChangeRow).where(ChannelChangeRow.dedupe_key == key)
            )
        ).scalar_one()
        return int(n or 0), row


META = MessageMeta(topic="channel.changes", partition=0, offset=7, key=f"naverpay:{CO}".encode())


async def test_apply_agent_losing_the_race_to_replay_answers_duplicate(
    engine: AsyncEngine, monkeypatch: pytest.MonkeyPatch
) -> None:
    change, env = new_order_change()
    await published(engine, change)
    rt = FakeRuntime(engine)
    now = datetime.now(UTC)
    ran = race_once(
        monkeypatch,
        lambda: ops.replay_ingest(
            engine, FakeConnector([change]), now - timedelta(hours=1), now + timedelta(hours=1)
        ),
    )

    await handle_one(rt, ApplyHandler(rt), encode(env), META)  # type: ignore[arg-type]

    assert ran and ran[0]["applied"] == 1, ran  # replay won the race and applied the change
    assert rt.quarantined == []  # the agent's IntegrityError was retried, not dead-lettered
    assert rt.results == [Outcome.DUPLICATE]
    n, row = await orders_and_change(engine, change.change_key)
    assert n == 1
    assert row.applied_at is not None and row.order_id == f"naverpay:{CO}"


async def test_replay_losing_the_race_to_the_apply_agent_answers_duplicate(
    engine: AsyncEngine, monkeypatch: pytest.MonkeyPatch
) -> None:
    change, env = new_order_change()
    await published(engine, change)
    rt = FakeRuntime(engine)

    async def agent() -> str:
        await handle_one(rt, ApplyHandler(rt), encode(env), META)  # type: ignore[arg-type]
        return "agent"

    ran = race_once(monkeypatch, agent)
    now = datetime.now(UTC)
    counts = await ops.replay_ingest(
        engine, FakeConnector([change]), now - timedelta(hours=1), now + timedelta(hours=1)
    )

    assert ran == ["agent"]
    assert rt.results == [Outcome.SUCCEEDED] and rt.quarantined == []
    assert counts.get("duplicate") == 1 and "applied" not in counts, counts
    n, row = await orders_and_change(engine, change.change_key)
    assert n == 1
    assert row.applied_at is not None and row.outcome == "applied"


def _integrity() -> IntegrityError:
    return IntegrityError("INSERT INTO orders ...", {}, Exception("duplicate key"))


async def test_integrity_error_is_retried_once_then_quarantined() -> None:
    rt = FakeRuntime.__new__(FakeRuntime)
    rt.results, rt.quarantined = [], []
    calls: list[int] = []

    async def always(raw: Any, meta: MessageMeta) -> None:
        calls.append(1)
        raise _integrity()

    await handle_one(rt, always, b"x", META)  # type: ignore[arg-type]
    assert len(calls) == 2  # the first attempt and one retry in a fresh transaction
    assert [r for r, _ in rt.quarantined] == ["handler_error"]
    assert "IntegrityError" in rt.quarantined[0][1]

    calls.clear()
    rt.quarantined.clear()

    async def once(raw: Any, meta: MessageMeta) -> None:
        calls.append(1)
        if len(calls) == 1:
            raise _integrity()

    await handle_one(rt, once, b"x", META)  # type: ignore[arg-type]
    assert len(calls) == 2 and rt.quarantined == []
