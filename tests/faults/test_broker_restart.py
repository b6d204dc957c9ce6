"""S1/S4 across a broker restart. The embedded broker (Tansu) keeps everything in memory, so a
restart loses every topic and every committed offset. What is lost, and how it comes back:

* **commands not yet consumed** (and commands sent while the broker was down) are gone: the OMS
  must re-send them. Re-sent commands are answered ``duplicate`` when their effect was already
  committed, or executed once (S1);
* **every result** on ``sync.results`` (and every dead letter) is gone: a re-sent command is
  answered again (``duplicate`` / ``succeeded``), which is how the OMS learns the outcome;
* **marketplace changes published but not yet applied** are gone from ``channel.changes``;
  their rows stay in ``channel_changes`` (published, not applied), so the ingestor does not
  publish them again: ``channelsync.ops.replay_ingest`` over the window applies them. Changes
  recorded while the broker was down were never published and are published by the next poll;
* **ledger ops** live in the store: the dispatcher re-drives them by itself.

A worker that lives through the restart used to stay stuck — its consumer kept the old
assignment, every offset commit failed with UnknownTopicOrPartition, ``/health`` still answered
200 (measured: > 150 s) — or rejoin and commit its pre-restart offsets into the new broker's
group, skipping the first messages of every partition. It now notices that the broker lost its
marker (``agents.worker.watch_broker``), answers 503 on ``/health`` with the reason and exits
non-zero; its supervisor (here: the test) starts a fresh worker, which re-creates the topics and
joins a fresh group (second test). The first test stops the worker while the broker is down,
replays ingestion, then starts a new worker after the broker. Replaying while a worker runs
used to dead-letter a new-order change now and then (the apply agent lost the insert race on
the orders primary key); both paths now retry an IntegrityError once in a fresh transaction
(tests/agents/test_concurrent_apply.py).
"""

from __future__ import annotations

import asyncio
import os
import signal
import time
from collections.abc import AsyncIterator, Callable, Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import httpx
import pytest
from sqlalchemy import func, select

from channelsync import ops as operator
from channelsync.broker import EmbeddedBroker, free_port
from channelsync.settings import Settings
from connectors.registry import build_marketplaces
from store.models import ChannelChangeRow, Order, ProcessedEvent
from tests.faults.stack import FaultStack, outcomes_summary

pytestmark = [pytest.mark.slow, pytest.mark.integration]

N_ORDERS = 1000  # ingestion is on in this test: every dispatch also comes back through the feed
N_INGESTED_BEFORE = 150  # new sandbox orders published just before the broker stops
N_INGESTED_DURING = 50  # new sandbox orders created while the broker is down
DOWN_SECONDS = 5.0


@pytest.fixture
def broker() -> Iterator[EmbeddedBroker]:
    b = EmbeddedBroker(port=free_port())
    b.start()
    try:
        yield b
    finally:
        b.stop()


@pytest.fixture
async def stack(
    broker: EmbeddedBroker, require_pg: str, tmp_path: Path
) -> AsyncIterator[FaultStack]:
    st = FaultStack(
        broker.bootstrap,
        require_pg,
        tmp_path,
        rng_seed=53,
        env_extra={"POLL_INTERVAL_SECONDS": "1", "METRICS_PORT": str(free_port())},
    )
    await st.start()
    try:
        yield st
    finally:
        await st.stop()


async def _count(stack: FaultStack, stmt: Any) -> int:
    async with stack.sessions() as s:
        return int(await s.scalar(stmt) or 0)


def _unapplied() -> Any:
    return (
        select(func.count())
        .select_from(ChannelChangeRow)
        .where(ChannelChangeRow.outcome == "published", ChannelChangeRow.applied_at.is_(None))
    )


async def test_s1_broker_restart_loses_topics_and_recovery_dispatches_exactly_once(
    stack: FaultStack, broker: EmbeddedBroker, report: Callable[..., Any]
) -> None:
    """S1/S4: stop the broker mid-run (commands half sent, dispatches in flight, ingested
    changes published but not applied), start a new one on the same port, restart the worker,
    replay ingestion over the window and re-send every command: every unit is dispatched
    exactly once, every ingested order is in the store, every re-sent command is answered."""
    started = time.monotonic()
    window_start = datetime.now(UTC) - timedelta(minutes=1)
    orders = await stack.seed_orders(N_ORDERS)
    commands = [stack.command_for(o) for o in orders]
    first, burst = (
        commands[:400],
        commands[400:700],
    )  # the last 300 reach the broker only when re-sent
    for i in range(0, len(first), 100):
        await stack.send_commands(first[i : i + 100])
        await asyncio.sleep(0.5)

    # new marketplace orders, ingested and published; stop the broker while some are unapplied,
    # right after a burst of commands the (paused) worker has not consumed yet
    ingested = stack.create_in_sandboxes(N_INGESTED_BEFORE)
    wave = (
        select(func.count())
        .select_from(ChannelChangeRow)
        .where(
            ChannelChangeRow.outcome == "published",
            ChannelChangeRow.applied_at.is_(None),
            ChannelChangeRow.channel_order_id.in_([o.channel_order_id for o in ingested]),
        )
    )

    async def wave_unapplied() -> bool:
        return await _count(stack, wave) > 0

    await stack.poll(wave_unapplied, timeout=60)
    assert stack.worker.proc is not None
    os.killpg(stack.worker.proc.pid, signal.SIGSTOP)  # the consumer lags behind the burst
    await asyncio.sleep(1.5)  # its pending long-poll fetch is answered (empty) meanwhile
    await stack.send_commands(burst)
    await asyncio.to_thread(broker.stop)
    stopped_at = time.monotonic()
    os.killpg(stack.worker.proc.pid, signal.SIGCONT)
    unapplied_at_stop = await _count(stack, _unapplied())
    wave_unapplied_at_stop = await _count(stack, wave)
    states_at_stop = dict(await stack.op_states())
    ingested += stack.create_in_sandboxes(N_INGESTED_DURING)  # recorded, cannot be published
    await asyncio.sleep(DOWN_SECONDS)
    ids = [str(c.event_id) for c in commands]
    consumed = await _count(
        stack,
        select(func.count()).select_from(ProcessedEvent).where(ProcessedEvent.event_id.in_(ids)),
    )
    health = await stack.health()
    # recovery 1: the supervisor stops the worker before the broker comes back (a worker that
    # lives through the restart exits by itself: see the second test)
    stack.kill_worker()
    await asyncio.to_thread(broker.start)  # a new, empty broker on the same port
    restarted_after = time.monotonic() - stopped_at
    # recovery 2: replay ingestion over the window (applies what was published, not applied),
    # before the worker is back
    values: dict[str, Any] = {k.lower(): v for k, v in stack.env.items()}
    settings = Settings(**values)
    assert stack.engine is not None
    replayed: dict[str, dict[str, Any]] = {}
    for name, client in build_marketplaces(settings).items():
        try:
            replayed[name] = await operator.replay_ingest(
                stack.engine, client, window_start, datetime.now(UTC)
            )
        finally:
            await client.aclose()
    ready = await asyncio.to_thread(stack.start_worker)  # re-declares topics, fresh group
    # recovery 3: the OMS re-sends every command
    await stack.send_commands(commands)
    settle = await stack.wait_shipped(N_ORDERS, timeout=240)

    invariants = await stack.check_exactly_once(orders)
    ingested_ids = [o.order_id for o in ingested]

    async def all_ingested() -> bool:
        n = await _count(
            stack, select(func.count()).select_from(Order).where(Order.id.in_(ingested_ids))
        )
        return n == len(ingested)

    await stack.wait_until(all_ingested, "every marketplace order in the store", 60)
    results = await stack.results_by_event()
    answered = outcomes_summary(results, ids)
    assert answered["no_result"] == 0, answered
    assert answered["succeeded"] + answered["duplicate_only"] == len(commands), answered
    assert consumed < len(first) + len(burst), "every command sent was consumed before the stop"
    assert wave_unapplied_at_stop > 0, "no published change was left unapplied at the stop"
    dead = await stack.dead_letters()
    assert all(not v for v in dead.values()), {k: len(v) for k, v in dead.items()}
    leaks = await stack.scan_secrets()
    report(
        commands=len(commands),
        commands_sent_before_stop=len(first) + len(burst),
        commands_consumed_before_stop=consumed,
        commands_lost_unconsumed=len(first) + len(burst) - consumed,
        ops_at_stop=states_at_stop,
        changes_published_unapplied_at_stop=unapplied_at_stop,
        new_order_changes_published_unapplied_at_stop=wave_unapplied_at_stop,
        orders_created_while_down=N_INGESTED_DURING,
        broker_down_seconds=round(restarted_after, 1),
        health_while_broker_down=health,
        new_worker_ready_seconds=round(ready, 1),
        replay_ingest=replayed,
        settle_after_resend_seconds=round(settle, 1),
        invariants=invariants,
        resent_commands_answered=dict(answered),
        ingested_orders_in_store=len(ingested),
        secrets_scanned_bytes=sum(leaks.values()),
        wall_seconds=round(time.monotonic() - started, 1),
    )


async def _health(stack: FaultStack) -> tuple[int, dict[str, Any]]:
    async with httpx.AsyncClient(timeout=5) as client:
        resp = await client.get(f"http://127.0.0.1:{stack.env['METRICS_PORT']}/health")
        return resp.status_code, resp.json()


async def test_s1_worker_living_through_a_broker_restart_exits_and_its_successor_answers(
    stack: FaultStack, broker: EmbeddedBroker, report: Callable[..., Any]
) -> None:
    """S1/S4: the broker restarts (empty) under a running worker. The worker notices, answers
    503 on /health with the reason, and exits non-zero; the supervisor starts a new worker and
    the OMS re-sends every command (the README's recovery): each is answered (duplicate or
    executed once) and every unit is dispatched exactly once."""
    orders = await stack.seed_orders(200)
    commands = [stack.command_for(o) for o in orders]
    await stack.send_commands(commands[:100])
    await stack.wait_shipped(100, timeout=60)
    assert await stack.health() == 200
    old = stack.worker
    assert old.proc is not None
    await asyncio.to_thread(broker.stop)
    stopped = time.monotonic()
    await asyncio.sleep(3.0)
    await asyncio.to_thread(broker.start)
    restarted = time.monotonic()

    unhealthy: dict[str, Any] = {}

    async def reports_lost_broker() -> bool:
        try:
            status, body = await _health(stack)
        except httpx.HTTPError:
            return False
        if status == 503 and not body["checks"]["broker_state"]["ok"]:
            unhealthy.update(body)
            return True
        return False

    assert await stack.poll(reports_lost_broker, timeout=30, interval=0.2), stack.worker.tail()
    detected = time.monotonic() - restarted
    code = await asyncio.to_thread(old.proc.wait, 60)
    exited = time.monotonic() - restarted
    assert code != 0, old.tail()
    old.stop()  # closes its log
    ready = await asyncio.to_thread(stack.start_worker)  # the supervisor restarts it

    await stack.send_commands(commands)
    ids = [str(c.event_id) for c in commands]
    answered: Any = {}

    async def all_answered() -> bool:
        nonlocal answered
        answered = outcomes_summary(await stack.results_by_event(), ids)
        return answered["no_result"] == 0

    try:
        await stack.wait_shipped(len(orders), timeout=120)
        await stack.wait_until(all_answered, "an answer to every re-sent command", 60)
    finally:
        report(
            broker_down_seconds=round(restarted - stopped, 1),
            lost_broker_reported_after_seconds=round(detected, 1),
            worker_exit_code=code,
            worker_exited_after_seconds=round(exited, 1),
            health_reason=unhealthy.get("checks", {}).get("broker_state"),
            new_worker_ready_seconds=round(ready, 1),
            answered=dict(answered),
        )
    assert answered["succeeded"] + answered["duplicate_only"] == len(commands), answered
    await stack.check_exactly_once(orders)
    assert await stack.health() == 200
