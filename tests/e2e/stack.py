"""An end-to-end stack: the real broker, PostgreSQL, in-process sandboxes on loopback and a
``channelsync worker`` subprocess pointed at them. Tests drive it through Kafka and the
sandboxes' control methods, and read the store and the sandboxes' ledgers."""

from __future__ import annotations

import asyncio
import json
import time
import uuid
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any

from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncEngine, async_sessionmaker

from store.models import ChannelOp, Order, OrderLine
from tests.harness import KafkaClient, WorkerProcess
from topics import names
from topics.envelope import Envelope


class Stack:
    def __init__(
        self,
        kafka: KafkaClient,
        engine: AsyncEngine,
        sandboxes: dict[str, Any],
        worker: WorkerProcess,
    ) -> None:
        self.kafka = kafka
        self.engine = engine
        self.sandboxes = sandboxes
        self.worker = worker
        self.sessions = async_sessionmaker(engine, expire_on_commit=False)
        self._results: dict[str, list[dict[str, Any]]] = {}

    async def send(self, *envelopes: Envelope) -> None:
        for env in envelopes:
            await self.kafka.send(names.OMS_COMMANDS, env)

    async def results(self) -> dict[str, list[dict[str, Any]]]:
        out: dict[str, list[dict[str, Any]]] = {}
        for raw in await self.kafka.read_all(names.SYNC_RESULTS, 0.3):
            payload = json.loads(raw)["payload"]
            out.setdefault(payload["source_event_id"], []).append(payload)
        return out

    async def wait_result(
        self, event_id: uuid.UUID | str, outcome: str | None = None, timeout: float = 45.0
    ) -> dict[str, Any]:
        """The first result for the event (with ``outcome`` if given)."""
        deadline = time.monotonic() + timeout
        seen: list[dict[str, Any]] = []
        while time.monotonic() < deadline:
            seen = (await self.results()).get(str(event_id), [])
            for r in seen:
                if outcome is None or r["outcome"] == outcome:
                    return r
            await asyncio.sleep(0.3)
        raise TimeoutError(
            f"no {outcome or ''} result for {event_id}; saw {seen}\n{self.worker.tail(3000)}"
        )

    async def wait_until(
        self, check: Callable[[], Awaitable[bool]], what: str, timeout: float = 45.0
    ) -> None:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if await check():
                return
            await asyncio.sleep(0.3)
        raise TimeoutError(f"timed out waiting for {what}\n{self.worker.tail(3000)}")

    async def line(self, line_id: str) -> OrderLine:
        async with self.sessions() as s:
            line = await s.get(OrderLine, line_id)
            assert line is not None, line_id
            return line

    async def order(self, order_id: str) -> Order | None:
        async with self.sessions() as s:
            return await s.get(Order, order_id)

    async def lines_of(self, order_id: str) -> list[OrderLine]:
        async with self.sessions() as s:
            return list(
                (
                    await s.execute(
                        select(OrderLine)
                        .where(OrderLine.order_id == order_id)
                        .order_by(OrderLine.id)
                    )
                ).scalars()
            )

    async def ops_of(self, order_id: str) -> list[ChannelOp]:
        async with self.sessions() as s:
            return list(
                (
                    await s.execute(
                        select(ChannelOp)
                        .where(ChannelOp.order_id == order_id)
                        .order_by(ChannelOp.id)
                    )
                ).scalars()
            )

    async def status_is(self, line_id: str, status: str) -> bool:
        return (await self.line(line_id)).status == status


def worker_env(
    bootstrap: str, url: str, schema: str | None, prefix: str, urls: dict[str, str], **extra: str
) -> dict[str, str]:
    env = {
        "KAFKA_BOOTSTRAP_SERVERS": bootstrap,
        "DATABASE_URL": url,
        "DATABASE_SCHEMA": schema or "",
        "TOPIC_PREFIX": prefix,
        "APP_ID": f"e2e-{uuid.uuid4().hex[:8]}",
        "TOPIC_PARTITIONS": "2",
        "METRICS_PORT": "0",
        "POLL_INTERVAL_SECONDS": "1",
        "OVERLAP_WINDOW_SECONDS": "600",
        "TRACKING_POLL_INTERVAL_SECONDS": "1",
        "RETRY_BACKOFF_BASE_SECONDS": "0.05",
        "RETRY_BACKOFF_MAX_SECONDS": "0.5",
        "NAVERPAY_ENABLED": str("naverpay" in urls).lower(),
        "QOO10_ENABLED": str("qoo10" in urls).lower(),
        "GOODSFLOW_ENABLED": str("goodsflow" in urls).lower(),
        "LOG_LEVEL": "INFO",
    }
    for name, base in urls.items():
        env[f"{name.upper()}_API_URL"] = base
    env.update(extra)
    return env


def log_dir(tmp: Path) -> Path:
    tmp.mkdir(parents=True, exist_ok=True)
    return tmp
