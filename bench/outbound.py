"""Outbound throughput: N dispatch commands (half Naver, half Qoo10) end to end — command consumed
→ intent → claim check → marketplace acknowledged → result emitted — against unlimited
sandboxes, the embedded broker, PostgreSQL and one worker; plus the broker's raw consume rate
of the same messages with a bare aiokafka consumer."""

from __future__ import annotations

import asyncio
import json
import time
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from sqlalchemy import select

from bench.harness import Env, Worker, consume, insert_orders, produce, quantiles
from connectors.naverpay.sandbox import NaverPaySandbox
from connectors.qoo10.sandbox import Qoo10Sandbox
from store.domain import Channel
from store.ledger import OpState
from store.models import ChannelOp
from topics import names
from topics.commands import PickupReached
from topics.envelope import new_envelope
from topics.registry import encode


async def run(bootstrap: str, n: int, workdir: Path) -> dict[str, Any]:
    env = Env(bootstrap)
    engine = await env.engine()
    naver = NaverPaySandbox(visibility_lag=0.0, rates={}, seed=1)
    qoo10 = Qoo10Sandbox(rates={}, seed=1)
    urls = {"naverpay": await naver.start(), "qoo10": await qoo10.start()}
    rows = []
    for i in range(n):
        if i % 2 == 0:
            created = naver.new_paid_order(
                [{"name": "B", "quantity": 1, "unit_price": 1000}], lag=0
            )
            po = created["productOrderIds"][0]
            oid = f"naverpay:{created['orderId']}"
            rows.append(
                {
                    "order_id": oid,
                    "channel": "naverpay",
                    "channel_order_id": created["orderId"],
                    "line_id": f"{oid}:{po}",
                    "unit_id": po,
                    "carrier": "CJ",
                    "number": f"{600000000000 + i}",
                }
            )
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
                    "number": f"{700000000000 + i}",
                }
            )
    await insert_orders(engine, rows)
    worker = Worker(
        env.worker_env(
            urls,
            NAVERPAY_RATE_PER_SECOND="100000",
            QOO10_RATE_PER_SECOND="100000",
            POLL_INTERVAL_SECONDS="3600",
        ),
        workdir / f"outbound-{n}.log",
    )
    await worker.start()
    try:
        now = datetime.now(UTC)
        envs = [
            new_envelope(
                "pickup.reached",
                r["order_id"],
                Channel(r["channel"]),
                PickupReached(line_ids=[r["line_id"]], scanned_at=now),
            )
            for r in rows
        ]
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
        rss = worker.peak_rss()
        raw_n, raw_s = await consume(bootstrap, env.prefix + names.OMS_COMMANDS, n, timeout=120)
        async with engine.connect() as conn:
            ops = (
                await conn.execute(
                    select(ChannelOp.created_at, ChannelOp.updated_at, ChannelOp.state)
                )
            ).all()
        push = [(u - c).total_seconds() for c, u, s in ops if s == OpState.SUCCEEDED]
        twice = sum(
            1 for (op, _), k in naver.ledger.counts.items() if op == "dispatch" and k > 1
        ) + sum(1 for (op, _), k in qoo10.ledger.counts.items() if op == "dispatch" and k > 1)
        rate = len(done) / elapsed if elapsed > 0 else 0.0
        raw_rate = raw_n / raw_s if raw_s > 0 else 0.0
        return {
            "n": n,
            "completed": len(done),
            "seconds": round(elapsed, 2),
            "events_per_second": round(rate, 1),
            "produce_seconds": round(produce_s, 2),
            "intent_to_ack_seconds": quantiles(push),
            "raw_consume_per_second": round(raw_rate, 1),
            "pipeline_over_raw": round(rate / raw_rate, 4) if raw_rate else None,
            "worker_peak_rss_mib": rss,
            "worker_ready_seconds": round(worker.ready_after, 2),
            "dispatched_naver": naver.ledger.count("dispatch"),
            "dispatched_qoo10": qoo10.ledger.count("dispatch"),
            "units_dispatched_more_than_once": twice,
        }
    finally:
        worker.stop()
        await naver.stop()
        await qoo10.stop()
        await engine.dispose()
        await env.drop()
