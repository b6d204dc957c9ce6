"""S3 at volume: 10,000 malformed, wrong-type and unknown-type messages mixed into
``oms.commands``, ``channel.changes`` and ``tracking.events`` among ~2,200 valid ones. Every
valid message is processed exactly once, every bad one ends in ``<topic>.dlq`` with the expected
reason and in ``failed_events``, and the worker keeps running (same process throughout).

Messages over 1 MB and binary messages carrying NUL bytes are in their own tests below (both
used to block their partition for good: a NUL cannot be stored in PostgreSQL text, and a 1 MB
dead letter exceeded the producer's request size; the failure record now replaces NULs and keeps
at most 64 Ki characters of the message)."""

from __future__ import annotations

import random
import time
from collections import Counter
from collections.abc import AsyncIterator, Callable
from datetime import UTC, datetime
from decimal import Decimal
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import func, select

from store.domain import Channel, LineStatus, TrackingState
from store.models import FailedEvent, Order, OrderLine
from tests.faults.bad_messages import Labelled, Message, bad_messages, nul_bytes, oversized
from tests.faults.stack import FaultStack, Seeded, outcomes_summary
from topics import names
from topics.changes import ChangeKind, ChannelChange, ChannelLine, ChannelOrder
from topics.commands import Address
from topics.envelope import Envelope, new_envelope
from topics.registry import encode
from topics.tracking import TrackingScan

pytestmark = [pytest.mark.slow, pytest.mark.integration]

N_ORDERS = 2000
N_SCANNED = 400  # of the invoiced orders: dispatched by a tracking scan instead of a command
N_NEW_ORDERS = 200  # valid change.order_paid messages
BAD = {names.OMS_COMMANDS: 5000, names.CHANNEL_CHANGES: 2500, names.TRACKING_EVENTS: 2500}


@pytest.fixture
async def stack(kafka_bootstrap: str, require_pg: str, tmp_path: Path) -> AsyncIterator[FaultStack]:
    st = FaultStack(kafka_bootstrap, require_pg, tmp_path, rng_seed=41)
    await st.start()
    try:
        yield st
    finally:
        await st.stop()


def _scan(s: Seeded) -> Envelope:
    scan = TrackingScan(
        carrier=s.carrier,
        tracking_number=s.number,
        state=TrackingState.PICKED_UP,
        scanned_at=datetime.now(UTC),
    )
    return new_envelope("tracking.scan", s.order_id, Channel(s.channel), scan)


def _new_order(i: int) -> Envelope:
    co = f"NEW{i:06d}"
    change = ChannelChange(
        channel=Channel.NAVERPAY,
        change_key=f"naverpay:{co}:PAYED:fault-test",
        kind=ChangeKind.ORDER_PAID,
        channel_order_id=co,
        unit_ids=[f"{co}-1"],
        changed_at=datetime.now(UTC),
        raw_type="PAYED",
        order=ChannelOrder(
            channel_order_id=co,
            buyer_name="Lee",
            address=Address(name="Lee", phone="010-2222-3333", zip_code="06236", line1="Seoul"),
            lines=[
                ChannelLine(
                    unit_id=f"{co}-1",
                    sku="SKU-N",
                    quantity=1,
                    unit_price=Decimal(9000),
                    amount=Decimal(9000),
                )
            ],
        ),
    )
    return new_envelope(f"change.{change.kind.value}", f"naverpay:{co}", Channel.NAVERPAY, change)


def _mix(rng: random.Random, valid: list[Envelope], bad: list[Labelled]) -> list[Message]:
    stream: list[Message] = [(e.order_id.encode(), encode(e)) for e in valid]
    stream += [m for _, m in bad]
    rng.shuffle(stream)
    return stream


async def test_s3_ten_thousand_bad_messages_are_dead_lettered_and_valid_ones_applied_once(
    stack: FaultStack, report: Callable[..., Any]
) -> None:
    """S3/S1: each bad message is quarantined with its reason (failed_events first, then the
    topic's DLQ), the agents keep going, and the valid commands, changes and scans interleaved
    with them take effect exactly once."""
    rng = random.Random(8)
    started = time.monotonic()
    orders = await stack.seed_orders(N_ORDERS)
    invoiced = [o for o in orders if o.with_invoice]
    scanned = set(o.unit_id for o in rng.sample(invoiced, N_SCANNED))
    commands = [stack.command_for(o) for o in orders if o.unit_id not in scanned]
    scans = [_scan(o) for o in orders if o.unit_id in scanned]
    new_orders = [_new_order(i) for i in range(N_NEW_ORDERS)]
    bad = {topic: bad_messages(rng, topic, n) for topic, n in BAD.items()}
    valid = {
        names.OMS_COMMANDS: commands,
        names.CHANNEL_CHANGES: new_orders,
        names.TRACKING_EVENTS: scans,
    }
    pid = stack.worker.proc.pid if stack.worker.proc else None

    produced = 0
    for topic in BAD:
        produced += await stack.produce(topic, _mix(rng, valid[topic], bad[topic]))
    sent_at = time.monotonic()
    expected = Counter((topic, reason) for topic, items in bad.items() for reason, _ in items)

    async def all_quarantined() -> bool:
        async with stack.sessions() as s:
            n = await s.scalar(
                select(func.count()).select_from(FailedEvent).where(FailedEvent.dead_lettered)
            )
        return n == sum(BAD.values())

    settle = await stack.wait_shipped(N_ORDERS, timeout=300)
    quarantine = await stack.wait_until(all_quarantined, "every bad message dead-lettered", 300)
    drained = time.monotonic() - sent_at

    assert stack.worker.proc is not None and stack.worker.proc.poll() is None, "worker died"
    assert stack.worker.proc.pid == pid and len(stack.workers) == 1
    invariants = await stack.check_exactly_once(orders)
    async with stack.sessions() as s:
        new_lines = list(
            (
                await s.execute(
                    select(OrderLine.status).join(Order).where(Order.channel_order_id.like("NEW%"))
                )
            ).scalars()
        )
    assert len(new_lines) == N_NEW_ORDERS and set(new_lines) == {LineStatus.PREPARING.value}

    dead = await stack.dead_letters()
    in_dlq = Counter(
        (topic, letter["reason"]) for topic, letters in dead.items() for letter in letters
    )
    assert in_dlq == expected, {"missing": expected - in_dlq, "unexpected": in_dlq - expected}
    assert await stack.failed_events() == expected
    results = await stack.results_by_event()
    answered = outcomes_summary(results, [str(e.event_id) for e in commands + scans + new_orders])
    assert answered["succeeded"] == len(commands) + len(scans) + len(new_orders), answered
    leaks = await stack.scan_secrets()

    by_topic: dict[str, dict[str, int]] = {}
    for (topic, reason), n in sorted(expected.items()):
        by_topic.setdefault(topic, {})[reason] = n
    report(
        valid_messages={t: len(v) for t, v in valid.items()},
        bad_messages=sum(BAD.values()),
        messages_produced=produced,
        dead_lettered_by_topic_and_reason=by_topic,
        drained_seconds=round(drained, 1),
        dispatch_settle_seconds=round(settle, 1),
        quarantine_settle_seconds=round(quarantine, 1),
        invariants=invariants,
        new_orders_applied=len(new_lines),
        answered=dict(answered),
        secrets_scanned_bytes=sum(leaks.values()),
        wall_seconds=round(time.monotonic() - started, 1),
    )


async def _poison_then_commands(
    stack: FaultStack, report: Callable[..., Any], poison: Callable[[random.Random, int], bytes]
) -> None:
    """Five poison messages on ``oms.commands``, each keyed like (so on the partition of) an
    order whose valid command follows it; all commands must still take effect, and the poison
    must be dead-lettered (DLQ + failed_events)."""
    rng = random.Random(9)
    orders = await stack.seed_orders(40)
    commands = [stack.command_for(o) for o in orders]
    bad: list[Message] = [(orders[i].order_id.encode(), poison(rng, i)) for i in range(5)]
    await stack.produce(names.OMS_COMMANDS, bad)
    await stack.send_commands(commands)
    log_errors = 0
    try:
        settle = await stack.wait_shipped(len(orders), timeout=15)
    finally:
        log = stack.worker.log_path.read_text(errors="replace")
        log_errors = log.count("record failed event failed") + log.count(
            "produce dead letter failed"
        )
        report(
            poison_messages=len(bad), commands=len(commands), quarantine_retries_logged=log_errors
        )
    await stack.check_exactly_once(orders)
    dead = await stack.dead_letters()
    assert len(dead[names.OMS_COMMANDS]) == len(bad)
    failed = await stack.failed_events()
    assert sum(failed.values()) == len(bad)
    report(
        settle_seconds=round(settle, 1),
        reasons=sorted(d["reason"] for d in dead[names.OMS_COMMANDS]),
    )


async def test_s3_message_with_nul_bytes_is_dead_lettered_without_blocking_its_partition(
    stack: FaultStack, report: Callable[..., Any]
) -> None:
    """S3: binary messages containing NUL bytes are quarantined as ``not_json`` (failed_events
    on PostgreSQL, then the DLQ) and the commands behind them on their partitions proceed."""
    await _poison_then_commands(stack, report, lambda rng, i: nul_bytes(rng))


async def test_s3_oversized_messages_are_dead_lettered_without_blocking_their_partition(
    stack: FaultStack, report: Callable[..., Any]
) -> None:
    """S3: five messages over 1 MB (ASCII and Korean text), each followed on its partition by
    valid commands: the oversized ones go to the DLQ as ``too_large`` and the commands behind
    them are still processed."""
    await _poison_then_commands(stack, report, lambda rng, i: oversized(rng, korean=i % 2 == 1))
