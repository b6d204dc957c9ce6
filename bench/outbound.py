"""Outbound: shipment commands (``shipment.registered`` with ``dispatch_now``; half Naver, half
Qoo10) end to end — command consumed → invoice checked and attached → intent → claim check →
marketplace acknowledged → result emitted — against unlimited sandboxes, the embedded broker,
PostgreSQL and one worker. Two phases per size:

* **burst**: N commands produced at once; throughput = N / (first produce → last result), and
  the intent → acknowledged time of every op (the ledger's own timestamps);
* **paced**: commands produced at a steady rate (half the burst throughput, for 20 s) on fresh
  orders; latency = command produced → its result consumed, i.e. what a seller waits at a load
  the worker sustains. A burst's latency is mostly queueing, so the paced p99 is the figure to
  hold against "p99 command → marketplace call ≤ 5 s".

Also the broker's raw consume rate of the burst's messages with a bare aiokafka consumer.
"""

from __future__ import annotations

import asyncio
import json
import time
from pathlib import Path
from typing import Any

from aiokafka import AIOKafkaProducer
from sqlalchemy import select

from bench.harness import (
    Env,
    Worker,
    consume,
    insert_orders,
    naver_order_row,
    produce,
    quantiles,
)
from connectors.naverpay.sandbox import NaverPaySandbox
from connectors.qoo10.sandbox import Qoo10Sandbox
from store.domain import Channel
from store.ledger import OpState
from store.models import ChannelOp
from topics import names
from topics.commands import ShipmentRegistered
from topics.envelope import Envelope, new_envelope
from topics.registry import encode

PACED_SECONDS = 20.0
UNIT_LINE = {"name": "B", "quantity": 1, "unit_price": 1000}


def _yamato(i: int) -> str:
    body = f"{70000000000 + i}"  # 11 digits + the mod-7 check digit
    return body + str(int(body) % 7)


def _make_orders(naver: NaverPaySandbox, qoo10: Qoo10Sandbox, n: int, base: int) -> list[dict]:
    rows = []
    for i in range(base, base + n):
        if i % 2 == 0:
            rows.append(naver_order_row(naver, f"{600000000000 + i}", UNIT_LINE))
        else:
            no = qoo10.new_order(qty=1, price=1000)
            pack = qoo10.order(no).pack_no
            oid = f"qoo10:{pack}"
            rows.append(
                {
                    "order_id": oid,
                    "channel": "qoo10",
                    "channel_order_id": pack,
                    "line_id": f"{oid}:{no}",
                    "unit_id": no,
                    "carrier": "YAMATO",
                    "number": _yamato(i),
                }
            )
    return rows


def _commands(rows: list[dict]) -> list[Envelope]:
    return [
        new_envelope(
            "shipment.registered",
            r["order_id"],
            Channel(r["channel"]),
            ShipmentRegistered(
                line_ids=[r["line_id"]],
                carrier=r["carrier"],
                tracking_number=r["number"],
                dispatch_now=True,
            ),
        )
        for r in rows
    ]


async def _paced(
    bootstrap: str, env: Env, envs: list[Envelope], rate: float
) -> tuple[dict[str, float], dict[str, float]]:
    """Produce ``envs`` at ``rate``/s (in 20 ms ticks); returns (sent, acknowledged) monotonic
    times by event id."""
    wanted = {str(e.event_id) for e in envs}
    sent: dict[str, float] = {}
    done: dict[str, float] = {}

    all_done = asyncio.Event()

    def on_result(rec: Any, at: float) -> None:
        payload = json.loads(rec.value)["payload"]
        if payload["source_event_id"] in wanted and payload["outcome"] == "succeeded":
            done.setdefault(payload["source_event_id"], at)
            if len(done) == len(wanted):
                all_done.set()

    consumer = asyncio.create_task(
        consume(
            bootstrap,
            env.prefix + names.SYNC_RESULTS,
            10**9,
            timeout=PACED_SECONDS + 90,
            on_message=on_result,
        )
    )
    producer = AIOKafkaProducer(bootstrap_servers=bootstrap, acks="all", linger_ms=0)
    await producer.start()
    try:
        started = time.monotonic()
        i = 0
        while i < len(envs):
            due = int((time.monotonic() - started) * rate) + 1
            while i < min(due, len(envs)):
                e = envs[i]
                sent[str(e.event_id)] = time.monotonic()
                await producer.send(
                    env.prefix + names.OMS_COMMANDS, encode(e), key=e.order_id.encode()
                )
                i += 1
            await asyncio.sleep(0.02)
        await producer.flush()
    finally:
        await producer.stop()
    try:
        async with asyncio.timeout(90):
            await all_done.wait()
    except TimeoutError:
        pass
    consumer.cancel()
    try:
        await consumer
    except asyncio.CancelledError:
        pass
    return sent, done


async def run(bootstrap: str, n: int, workdir: Path) -> dict[str, Any]:
    """One worker executing its own ledger (``DISPATCHER_MODE=inline``, the default)."""
    return await _run(bootstrap, n, workdir, separate_dispatcher=False)


async def run_split(bootstrap: str, n: int, workdir: Path) -> dict[str, Any]:
    """One worker (``DISPATCHER_MODE=off``) plus one ``channelsync dispatcher`` process."""
    return await _run(bootstrap, n, workdir, separate_dispatcher=True)


async def _run(
    bootstrap: str, n: int, workdir: Path, *, separate_dispatcher: bool
) -> dict[str, Any]:
    env = Env(bootstrap)
    engine = await env.engine()
    naver = NaverPaySandbox(visibility_lag=0.0, rates={}, seed=1)
    qoo10 = Qoo10Sandbox(rates={}, seed=1)
    urls = {"naverpay": await naver.start(), "qoo10": await qoo10.start()}
    rows = _make_orders(naver, qoo10, n, 0)
    await insert_orders(engine, rows, invoices=False)
    worker_env = env.worker_env(
        urls,
        NAVERPAY_RATE_PER_SECOND="100000",
        QOO10_RATE_PER_SECOND="100000",
        POLL_INTERVAL_SECONDS="3600",
        DISPATCHER_MODE="off" if separate_dispatcher else "inline",
    )
    worker = Worker(worker_env, workdir / f"outbound-{n}.log")
    dispatcher = Worker(worker_env, workdir / f"outbound-{n}-dispatcher.log", command="dispatcher")
    await worker.start()
    if separate_dispatcher:
        await dispatcher.start()

    def rss() -> float:
        return round(worker.peak_rss() + dispatcher.peak_rss(), 1)

    try:
        # --- burst
        envs = _commands(rows)
        wanted = {str(e.event_id) for e in envs}
        messages = [(e.order_id.encode(), encode(e)) for e in envs]
        done: dict[str, float] = {}

        def on_result(rec: Any, at: float) -> None:
            payload = json.loads(rec.value)["payload"]
            if payload["source_event_id"] in wanted and payload["outcome"] == "succeeded":
                done.setdefault(payload["source_event_id"], at)

        started = time.monotonic()
        consumer = asyncio.create_task(
            consume(
                bootstrap,
                env.prefix + names.SYNC_RESULTS,
                n,
                timeout=max(120, n / 20),
                on_message=on_result,
            )
        )
        produce_s = await produce(bootstrap, env.prefix + names.OMS_COMMANDS, messages)
        await consumer
        finished = max(done.values()) if done else time.monotonic()
        elapsed = finished - started
        peak = rss()
        rate = len(done) / elapsed if elapsed > 0 else 0.0
        burst_ops = await _op_times(engine)
        raw_n, raw_s = await consume(bootstrap, env.prefix + names.OMS_COMMANDS, n, timeout=120)
        raw_rate = raw_n / raw_s if raw_s > 0 else 0.0

        # --- paced, on fresh orders, at half the burst throughput
        pace = max(10.0, round(rate / 2))
        paced_rows = _make_orders(naver, qoo10, int(pace * PACED_SECONDS), n)
        await insert_orders(engine, paced_rows, invoices=False)
        sent, acked = await _paced(bootstrap, env, _commands(paced_rows), pace)
        latency = [acked[k] - sent[k] for k in acked if k in sent]
        peak = max(peak, rss())

        twice = sum(
            1 for (op, _), k in naver.ledger.counts.items() if op == "dispatch" and k > 1
        ) + sum(1 for (op, _), k in qoo10.ledger.counts.items() if op == "dispatch" and k > 1)
        return {
            "n": n,
            "command": "shipment.registered (dispatch_now)",
            "completed": len(done),
            "seconds": round(elapsed, 2),
            "events_per_second": round(rate, 1),
            "produce_seconds": round(produce_s, 2),
            "intent_to_ack_seconds": quantiles(burst_ops),
            "paced": {
                "rate_per_second": pace,
                "commands": len(paced_rows),
                "completed": len(acked),
                "command_to_ack_seconds": quantiles(latency),
            },
            "raw_consume_per_second": round(raw_rate, 1),
            "pipeline_over_raw": round(rate / raw_rate, 4) if raw_rate else None,
            "dispatcher": "separate process" if separate_dispatcher else "inline",
            "worker_peak_rss_mib": peak,
            "worker_ready_seconds": round(worker.ready_after, 2),
            "dispatched_naver": naver.ledger.count("dispatch"),
            "dispatched_qoo10": qoo10.ledger.count("dispatch"),
            "naver_dispatch_calls": naver.requests.get("dispatch", 0),
            "qoo10_calls": dict(getattr(qoo10, "requests", {})),
            "units_dispatched_more_than_once": twice,
        }
    finally:
        dispatcher.stop()
        worker.stop()
        await naver.stop()
        await qoo10.stop()
        await engine.dispose()
        await env.drop()


async def _op_times(engine: Any) -> list[float]:
    async with engine.connect() as conn:
        ops = (
            await conn.execute(select(ChannelOp.created_at, ChannelOp.updated_at, ChannelOp.state))
        ).all()
    return [(u - c).total_seconds() for c, u, s in ops if s == OpState.SUCCEEDED]
