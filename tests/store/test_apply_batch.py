"""The batched apply path (``ApplyHandler.handle_batch`` / ``apply_changes_batch``) against the
one-by-one path (``ApplyHandler.__call__``), on SQLite and PostgreSQL.

The same changes are applied to two fresh databases, one message at a time in the first and as
one batch in the second; the store states (orders, lines, history, holds, invoices, claims, ops,
change log) and the result messages must be the same: R12 (address change → hold, dispatch
parked, waybill flagged), R15 (dispatch done elsewhere → SHIPPING, op reconciled), R25/R29
(cancel request parks the dispatch), R07, new orders created and then changed inside the same
batch (S2: per-order order kept), duplicate change keys. A batch with a bad message or an
unknown order falls back to one by one and nothing is lost.

The databases are real; the result producer is a stand-in (``FakeRuntime``) that records the
messages and can fail on demand — these tests compare store states, not Kafka (the apply agent
over the real broker runs in tests/e2e/ and tests/faults/).
"""

from __future__ import annotations

import json
from collections.abc import AsyncIterator
from datetime import UTC, datetime, timedelta
from decimal import Decimal
from typing import Any

import pytest
from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncEngine, async_sessionmaker

from agents.apply import ApplyHandler
from agents.loop import handle_one, run_batched
from agents.runtime import MessageMeta, Runtime
from store import outbound as ob
from store.apply_changes import apply_change
from store.db import make_engine, upgrade
from store.domain import Channel
from store.ledger import OpState
from store.models import (
    ChannelChangeRow,
    ChannelOp,
    Claim,
    Hold,
    Invoice,
    Order,
    OrderLine,
    StatusHistory,
)
from tests.conftest import PG_URL, _drop_schema
from topics import names
from topics.changes import ChangeKind, ChannelChange, ChannelLine, ChannelOrder
from topics.commands import Address
from topics.envelope import new_envelope
from topics.registry import encode
from topics.results import Outcome

T0 = datetime(2026, 11, 20, 9, 0, tzinfo=UTC)


def addr(line1: str) -> Address:
    return Address(name="Kim", phone="010-1111-2222", zip_code="06236", line1=line1)


def paid(co: str, units: int = 1, i: int = 0) -> ChannelChange:
    return ChannelChange(
        channel=Channel.NAVERPAY,
        change_key=f"naverpay:{co}:PAYED:{i}",
        kind=ChangeKind.ORDER_PAID,
        channel_order_id=co,
        unit_ids=[f"{co}-{u}" for u in range(units)],
        changed_at=T0 + timedelta(seconds=i),
        raw_type="PAYED",
        order=ChannelOrder(
            channel_order_id=co,
            buyer_name="Kim",
            address=addr("Seoul 1"),
            lines=[
                ChannelLine(
                    unit_id=f"{co}-{u}",
                    sku=f"SKU-{u}",
                    quantity=1,
                    unit_price=Decimal(1000),
                    amount=Decimal(1000),
                )
                for u in range(units)
            ],
        ),
    )


def change(co: str, kind: ChangeKind, i: int, units: list[str] | None = None, **kw: Any) -> Any:
    return ChannelChange(
        channel=Channel.NAVERPAY,
        change_key=f"naverpay:{co}:{kind.value}:{i}",
        kind=kind,
        channel_order_id=co,
        unit_ids=units if units is not None else [f"{co}-0"],
        changed_at=T0 + timedelta(seconds=i),
        raw_type=kind.value.upper(),
        **kw,
    )


def message(c: ChannelChange) -> bytes:
    env = new_envelope(
        f"change.{c.kind.value}",
        f"{c.channel.value}:{c.channel_order_id}",
        c.channel,
        c,
        occurred_at=c.changed_at,
    )
    return encode(env)


class FakeRuntime:
    """What ``ApplyHandler`` and ``agents.loop`` use of :class:`agents.runtime.Runtime`."""

    def result_message(self, *args: Any, **kw: Any) -> tuple[str, bytes]:
        return Runtime.result_message(self, *args, **kw)  # type: ignore[arg-type]

    def __init__(self, engine: AsyncEngine) -> None:
        self.sessions = async_sessionmaker(engine, expire_on_commit=False)
        self.results: list[tuple[str, str, dict[str, Any]]] = []
        self.quarantined: list[tuple[str, str]] = []
        self.produce_fails = 0

    async def emit_result(
        self, source: Any, outcome: Outcome, message: str = "", **kw: Any
    ) -> None:
        key, value = self.result_message(source, outcome, message, **kw)
        await self.produce_many(names.SYNC_RESULTS, [(key, value)])

    async def produce_many(self, topic: str, items: list[tuple[str, bytes]]) -> None:
        assert topic == names.SYNC_RESULTS
        if self.produce_fails:
            self.produce_fails -= 1
            raise ConnectionError("broker away")
        for key, value in items:
            payload = json.loads(value)["payload"]
            assert key == json.loads(value)["order_id"]
            self.results.append((payload["outcome"], payload["message"], payload["detail"]))

    async def quarantine(self, meta: MessageMeta, raw: Any, reason: str, error: str) -> None:
        self.quarantined.append((reason, error))


def meta(i: int) -> MessageMeta:
    return MessageMeta(topic=names.CHANNEL_CHANGES, partition=0, offset=i, key=None)


@pytest.fixture
async def engines(db_config: tuple[str, str | None]) -> AsyncIterator[list[AsyncEngine]]:
    """Two fresh migrated databases of the same backend: one-by-one and batched."""
    url, schema = db_config
    made: list[AsyncEngine] = []
    extra: str | None = None
    pairs: list[tuple[str, str | None]]
    if schema is None:
        second_url = url.replace("store.db", "store2.db")
        pairs = [(url, None), (second_url, None)]
    else:
        extra = f"{schema}_b"
        pairs = [(url, schema), (PG_URL, extra)]
    for u, s in pairs:
        eng = make_engine(u, s)
        await upgrade(eng)
        made.append(eng)
    yield made
    for eng in made:
        await eng.dispose()
    if extra is not None:
        await _drop_schema(extra)


async def seed(engine: AsyncEngine) -> None:
    """Two orders already in the store, each with one line READY_TO_SHIP, a printed waybill and
    an open (pending) dispatch op."""
    maker = async_sessionmaker(engine, expire_on_commit=False)
    async with maker() as session:
        for n, co in enumerate(("OLD-D", "OLD-E")):
            await apply_change(session, paid(co, i=100 + n))
        await session.flush()
        for co in ("OLD-D", "OLD-E"):
            line = await session.get(OrderLine, f"naverpay:{co}:{co}-0")
            assert line is not None
            line.status = "READY_TO_SHIP"
            session.add(
                Invoice(
                    order_id=f"naverpay:{co}",
                    line_id=line.id,
                    carrier="CJ",
                    tracking_number="123456789012",
                )
            )
            session.add(
                ChannelOp(
                    idempotency_key=f"ev-{co}:dispatch",
                    order_id=f"naverpay:{co}",
                    channel="naverpay",
                    action=ob.DISPATCH,
                    unit_id=f"{co}-0",
                    payload={"unit_id": f"{co}-0"},
                    payload_hash="x",
                    state=OpState.PENDING.value,
                    source_event_id=f"ev-{co}",
                )
            )
        await session.commit()


def mixed_batch() -> list[ChannelChange]:
    """New orders, changes on them inside the same batch, changes on existing orders, and a
    duplicate change key (the redelivered ORDER_PAID of A)."""
    return [
        paid("NEW-A", i=1),
        paid("NEW-B", units=2, i=2),
        change("NEW-A", ChangeKind.ADDRESS_CHANGED, 3, address=addr("Busan 9")),  # R12
        paid("NEW-C", i=4),
        paid("NEW-F", units=2, i=11),  # only created by the batch (bulk rows)
        change(
            "NEW-B",
            ChangeKind.DISPATCHED,
            5,
            units=["NEW-B-1"],
            carrier="CJ",
            tracking_number="555566667777",
        ),  # R15 on a new order, one unit of two
        change("NEW-C", ChangeKind.CANCEL_REQUESTED, 6, claim_id="CL-C"),  # R25/R29
        paid("NEW-A", i=1),  # duplicate key inside the batch
        change("OLD-D", ChangeKind.ADDRESS_CHANGED, 7, address=addr("Incheon 3")),  # R12
        change("OLD-E", ChangeKind.DISPATCHED, 8, carrier="CJ", tracking_number="123456789012"),
        change("NEW-B", ChangeKind.DELIVERED, 9, units=["NEW-B-1"]),
        change("NEW-B", ChangeKind.PURCHASE_DECIDED, 10, units=["NEW-B-1"]),  # R07
        change("OLD-D", ChangeKind.ADDRESS_CHANGED, 7, address=addr("Incheon 3")),  # duplicate
        paid("NEW-F", units=2, i=12),  # the same order paid again under another key
    ]


async def snapshot(engine: AsyncEngine) -> dict[str, Any]:
    async with async_sessionmaker(engine)() as s:

        async def rows(stmt: Any) -> list[Any]:
            return [tuple(r) for r in (await s.execute(stmt)).all()]

        return {
            "orders": await rows(
                select(
                    Order.id,
                    Order.channel,
                    Order.account,
                    Order.channel_order_id,
                    Order.on_hold,
                    Order.address,
                    Order.total_paid,
                ).order_by(Order.id)
            ),
            "lines": await rows(
                select(
                    OrderLine.id,
                    OrderLine.order_id,
                    OrderLine.status,
                    OrderLine.channel_notified,
                    OrderLine.collapse,
                    OrderLine.channel_unit_id,
                ).order_by(OrderLine.id)
            ),
            "history": await rows(
                select(
                    StatusHistory.order_id,
                    StatusHistory.line_id,
                    StatusHistory.from_status,
                    StatusHistory.to_status,
                    StatusHistory.source,
                    StatusHistory.note,
                ).order_by(StatusHistory.order_id, StatusHistory.id)  # per order, in order
            ),
            "holds": await rows(
                select(Hold.order_id, Hold.reason, Hold.raised_by, Hold.released_at).order_by(
                    Hold.order_id, Hold.raised_by
                )
            ),
            "invoices": await rows(
                select(
                    Invoice.order_id,
                    Invoice.line_id,
                    Invoice.carrier,
                    Invoice.tracking_number,
                    Invoice.reprint_required,
                    Invoice.deleted_at,
                ).order_by(Invoice.line_id, Invoice.tracking_number)
            ),
            "claims": await rows(
                select(
                    Claim.order_id,
                    Claim.line_id,
                    Claim.claim_type,
                    Claim.status,
                    Claim.channel_claim_id,
                ).order_by(Claim.line_id, Claim.claim_type)
            ),
            "ops": await rows(
                select(ChannelOp.idempotency_key, ChannelOp.state, ChannelOp.last_error).order_by(
                    ChannelOp.idempotency_key
                )
            ),
            "changes": await rows(
                select(
                    ChannelChangeRow.dedupe_key,
                    ChannelChangeRow.order_id,
                    ChannelChangeRow.outcome,
                    ChannelChangeRow.applied_at.is_not(None),
                    ChannelChangeRow.kind,
                    ChannelChangeRow.channel_order_id,
                ).order_by(ChannelChangeRow.dedupe_key)
            ),
        }


async def one_by_one(rt: FakeRuntime, raws: list[bytes]) -> None:
    handler = ApplyHandler(rt)
    for raw in raws:
        await handler(raw, meta(0))


async def test_batch_same_store_state_as_one_by_one(engines: list[AsyncEngine]) -> None:
    """R12, R15, R25/R29, R07, S2 and R17 dedupe: the batch leaves what one by one leaves."""
    single, batched = engines
    for eng in engines:
        await seed(eng)
    raws = [message(c) for c in mixed_batch()]
    rt1, rt2 = FakeRuntime(single), FakeRuntime(batched)
    await one_by_one(rt1, raws)
    nudged: list[bool] = []
    await ApplyHandler(rt2, on_ops=lambda: nudged.append(True)).handle_batch(
        [(raw, meta(i)) for i, raw in enumerate(raws)]
    )
    assert nudged == [True]
    assert rt2.results == rt1.results
    assert [r[0] for r in rt2.results].count("duplicate") == 2
    s1, s2 = await snapshot(single), await snapshot(batched)
    for table in s1:
        assert s2[table] == s1[table], table

    # the rules themselves (so that "equal" is not "equally wrong")
    orders = {o[0]: o for o in s2["orders"]}
    assert orders["naverpay:NEW-A"][4] is True  # R12 hold raised on a new order
    assert orders["naverpay:NEW-A"][5]["line1"] == "Busan 9"
    assert orders["naverpay:OLD-D"][4] is True
    assert orders["naverpay:NEW-C"][4] is False
    lines = {ln[0]: ln for ln in s2["lines"]}
    assert lines["naverpay:NEW-B:NEW-B-1"][2] == "PURCHASE_CONFIRMED"  # R15 → R07
    assert lines["naverpay:NEW-B:NEW-B-0"][2] == "PREPARING"
    assert lines["naverpay:NEW-C:NEW-C-0"][2] == "CANCEL_REQUESTED"
    assert lines["naverpay:OLD-E:OLD-E-0"][2] == "SHIPPING"
    assert lines["naverpay:OLD-E:OLD-E-0"][4]["by"] == "marketplace"
    ops = {o[0]: o for o in s2["ops"]}
    assert ops["ev-OLD-D:dispatch"][1] == "parked" and ops["ev-OLD-D:dispatch"][2]["rule"] == "R12"
    assert ops["ev-OLD-E:dispatch"][1] == "succeeded"
    invoices = {(i[1], i[3]): i for i in s2["invoices"]}
    assert invoices[("naverpay:OLD-D:OLD-D-0", "123456789012")][4] is True  # flagged for reprint
    assert ("naverpay:NEW-B:NEW-B-1", "555566667777") in invoices
    assert [c for c in s2["claims"] if c[0] == "naverpay:NEW-C"][0][2:4] == ("cancel", "requested")
    assert lines["naverpay:NEW-F:NEW-F-1"][2] == "PREPARING"
    assert [h[3] for h in s2["history"] if h[0] == "naverpay:NEW-F"] == ["PREPARING"] * 2
    assert rt2.results[-1] == (
        "succeeded",
        "order naverpay:NEW-F with 2 line(s)",
        {"change_key": "naverpay:NEW-F:PAYED:12"},
    )
    assert all(c[3] for c in s2["changes"])  # every change applied
    assert len(s2["changes"]) == 2 + len({c.change_key for c in mixed_batch()})


async def test_batch_redelivered_answers_duplicate(engines: list[AsyncEngine]) -> None:
    """R17: a batch delivered twice changes nothing the second time; every answer duplicate."""
    eng = engines[1]
    await seed(eng)
    raws = [message(c) for c in mixed_batch()]
    rt = FakeRuntime(eng)
    handler = ApplyHandler(rt)
    items: list[tuple[bytes | None, MessageMeta]] = [(raw, meta(i)) for i, raw in enumerate(raws)]
    await handler.handle_batch(items)
    before = await snapshot(eng)
    rt.results.clear()
    await handler.handle_batch(items)
    assert {r[0] for r in rt.results} == {"duplicate"}
    assert await snapshot(eng) == before


class FakeStream:
    def __init__(self, raws: list[bytes | None]) -> None:
        self.raws = raws

    async def take_events(self, n: int, within: float) -> AsyncIterator[list[Any]]:
        class Msg:
            def __init__(self, i: int) -> None:
                self.topic, self.partition, self.offset, self.key = (
                    names.CHANNEL_CHANGES,
                    0,
                    i,
                    None,
                )

        class Ev:
            def __init__(self, i: int, raw: bytes | None) -> None:
                self.message, self.value = Msg(i), raw

        yield [Ev(i, raw) for i, raw in enumerate(self.raws)]


class SpyHandler(ApplyHandler):
    def __init__(self, rt: Any) -> None:
        super().__init__(rt)
        self.fell_back: list[str] = []

    async def handle_batch(self, items: list[tuple[bytes | None, MessageMeta]]) -> None:
        try:
            await super().handle_batch(items)
        except Exception as exc:
            self.fell_back.append(type(exc).__name__)
            raise


@pytest.mark.parametrize("bad", ["undecodable", "unknown_order", "unknown_kind"])
async def test_batch_with_bad_message_falls_back_nothing_lost(
    engines: list[AsyncEngine], bad: str
) -> None:
    """S3 + S1: one bad message in a batch → the batch is re-run one by one: the bad one is
    quarantined, every other change is applied once, results as one by one."""
    single, batched = engines
    for eng in engines:
        await seed(eng)
    changes = mixed_batch()
    bad_raw = {
        "undecodable": b'{"not": "an envelope"',
        "unknown_order": message(change("NOWHERE", ChangeKind.DELIVERED, 50)),
        "unknown_kind": message(change("NEW-A", ChangeKind.UNKNOWN, 51)),
    }[bad]
    raws: list[bytes | None] = [message(c) for c in changes[:5]]
    raws += [bad_raw] + [message(c) for c in changes[5:]]
    rt1 = FakeRuntime(single)
    handler1 = ApplyHandler(rt1)
    for i, raw in enumerate(raws):
        await handle_one(rt1, handler1, raw, meta(i))  # type: ignore[arg-type]
    rt2 = FakeRuntime(batched)
    spy = SpyHandler(rt2)
    await run_batched(FakeStream(raws), spy, spy.handle_batch, rt2)  # type: ignore[arg-type]
    assert spy.fell_back == ["BatchFallback"]
    assert len(rt2.quarantined) == 1
    assert [q[0] for q in rt2.quarantined] == [q[0] for q in rt1.quarantined]
    assert rt2.results == rt1.results
    assert await snapshot(batched) == await snapshot(single)


async def test_batch_committed_but_results_not_produced(engines: list[AsyncEngine]) -> None:
    """The batch committed, then producing its results failed: the loop re-runs it one by one,
    which answers duplicate for every change (nothing applied twice, every result sent)."""
    eng = engines[1]
    raws: list[bytes | None] = [message(paid(f"P-{i}", i=i)) for i in range(5)]
    rt = FakeRuntime(eng)
    rt.produce_fails = 1
    handler = ApplyHandler(rt)
    await run_batched(FakeStream(raws), handler, handler.handle_batch, rt)  # type: ignore[arg-type]
    assert [r[0] for r in rt.results] == ["duplicate"] * 5
    snap = await snapshot(eng)
    assert len(snap["orders"]) == 5 and all(c[3] for c in snap["changes"])
    assert len(snap["history"]) == 5


async def test_batch_order_created_elsewhere_meanwhile(engines: list[AsyncEngine]) -> None:
    """A concurrent writer created one of the batch's new orders first: the flush fails on the
    primary key, the batch falls back and one by one applies the rest (the raced one against
    the order that now exists)."""
    eng = engines[1]
    rt = FakeRuntime(eng)
    batch = [paid(f"R-{i}", i=i) for i in range(4)]
    # the winner: R-2 is recorded under another change key by another path
    async with rt.sessions() as session:
        await apply_change(session, paid("R-2", i=99))
        await session.commit()
    handler = SpyHandler(rt)
    raws: list[bytes | None] = [message(c) for c in batch]
    original = handler.handle_batch

    async def racing(items: list[tuple[bytes | None, MessageMeta]]) -> None:
        # hide R-2 from the batch's order look-up, as if it were created after it
        from store import repo

        real = repo.lock_channel_orders

        async def blind(session: Any, keys: Any) -> Any:
            found = await real(session, keys)
            return {k: v for k, v in found.items() if k[2] != "R-2"}

        repo.lock_channel_orders = blind
        try:
            await original(items)
        finally:
            repo.lock_channel_orders = real

    await run_batched(FakeStream(raws), handler, racing, rt)  # type: ignore[arg-type]
    assert handler.fell_back == ["IntegrityError"]
    assert [r[0] for r in rt.results] == ["succeeded"] * 4
    snap = await snapshot(eng)
    assert len(snap["orders"]) == 4 and rt.quarantined == []


async def test_batch_many_new_orders_statement_count(engines: list[AsyncEngine]) -> None:
    """The fast path's point: a batch of 200 new orders is a handful of statements, not a few
    per change."""
    from sqlalchemy import event

    eng = engines[1]
    rt = FakeRuntime(eng)
    raws = [message(paid(f"S-{i:04d}", i=i)) for i in range(200)]
    statements: list[str] = []

    def count(conn: Any, cursor: Any, statement: str, *a: Any) -> None:
        statements.append(statement)

    event.listen(eng.sync_engine, "before_cursor_execute", count)
    try:
        await ApplyHandler(rt).handle_batch([(raw, meta(i)) for i, raw in enumerate(raws)])
    finally:
        event.remove(eng.sync_engine, "before_cursor_execute", count)
    assert [r[0] for r in rt.results] == ["succeeded"] * 200
    if eng.dialect.name == "sqlite":  # its driver inserts RETURNING rows one at a time
        statements = [s for s in statements if "RETURNING" not in s]
    assert len(statements) < 12, [s[:80] for s in statements[:50]]
    snap = await snapshot(eng)
    assert len(snap["orders"]) == 200 and len(snap["changes"]) == 200
