"""Benchmark harness: the embedded broker, PostgreSQL, in-process sandboxes and one worker
subprocess (the same shape as the end-to-end tests, sized for load)."""

from __future__ import annotations

import asyncio
import json
import os
import signal
import statistics
import subprocess
import sys
import time
import uuid
from dataclasses import dataclass, field
from decimal import Decimal
from pathlib import Path
from typing import Any

from aiokafka import AIOKafkaConsumer, AIOKafkaProducer
from sqlalchemy import insert, text

from store.db import make_engine, upgrade
from store.models import Invoice, Order, OrderLine

ROOT = Path(__file__).resolve().parent.parent
RESULTS = ROOT / "bench" / "results"
PG_URL = os.environ.get("TEST_POSTGRES_URL", "postgresql+asyncpg://postgres@127.0.0.1:5432/test")


def quantiles(values: list[float]) -> dict[str, float]:
    if not values:
        return {"n": 0, "p50": 0.0, "p99": 0.0, "max": 0.0}
    v = sorted(values)
    return {
        "n": len(v),
        "p50": round(statistics.median(v), 4),
        "p99": round(v[min(len(v) - 1, int(round(0.99 * (len(v) - 1))))], 4),
        "max": round(v[-1], 4),
    }


def save(name: str, data: dict[str, Any]) -> Path:
    RESULTS.mkdir(parents=True, exist_ok=True)
    data = {
        "benchmark": name,
        "at": time.strftime("%Y-%m-%dT%H:%M:%S%z"),
        "machine": machine(),
        **data,
    }
    path = RESULTS / f"{name}.json"
    path.write_text(json.dumps(data, indent=2, default=str) + "\n")
    return path


def machine() -> dict[str, Any]:
    cpu = "?"
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    mem = os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES") / 2**30
    return {
        "cpus": os.cpu_count(),
        "cpu": cpu,
        "memory_gib": round(mem, 1),
        "python": sys.version.split()[0],
    }


def peak_rss_mib(pid: int) -> float:
    """VmHWM of the process (peak resident set)."""
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmHWM:"):
            return round(int(line.split()[1]) / 1024, 1)
    return 0.0


@dataclass
class Worker:
    """A ``channelsync worker`` subprocess (or ``command="dispatcher"``)."""

    env: dict[str, str]
    log: Path
    proc: subprocess.Popen[bytes] | None = None
    ready_after: float = 0.0
    command: str = "worker"

    async def start(self) -> None:
        started = time.monotonic()
        self.proc = subprocess.Popen(
            [sys.executable, "-m", "channelsync.cli", self.command],
            cwd=ROOT,
            env={**os.environ, **self.env, "PYTHONUNBUFFERED": "1"},
            stdout=open(self.log, "wb"),  # noqa: SIM115
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )
        while f"channelsync {self.command} ready".encode() not in self.log.read_bytes():
            if self.proc.poll() is not None or time.monotonic() - started > 120:
                raise RuntimeError(self.log.read_text(errors="replace")[-3000:])
            await asyncio.sleep(0.1)
        self.ready_after = time.monotonic() - started

    def peak_rss(self) -> float:
        return peak_rss_mib(self.proc.pid) if self.proc and self.proc.poll() is None else 0.0

    def stop(self) -> None:
        if self.proc and self.proc.poll() is None:
            os.killpg(self.proc.pid, signal.SIGTERM)
            try:
                self.proc.wait(30)
            except subprocess.TimeoutExpired:
                os.killpg(self.proc.pid, signal.SIGKILL)


@dataclass
class Env:
    bootstrap: str
    schema: str = field(default_factory=lambda: f"bench_{uuid.uuid4().hex[:8]}")
    prefix: str = field(default_factory=lambda: f"b{uuid.uuid4().hex[:6]}.")

    def worker_env(self, urls: dict[str, str], **extra: str) -> dict[str, str]:
        env = {
            "KAFKA_BOOTSTRAP_SERVERS": self.bootstrap,
            "DATABASE_URL": PG_URL,
            "DATABASE_SCHEMA": self.schema,
            "TOPIC_PREFIX": self.prefix,
            "APP_ID": f"bench-{uuid.uuid4().hex[:6]}",
            "TOPIC_PARTITIONS": "4",
            "METRICS_PORT": "0",
            "LOG_LEVEL": "WARNING",
            "NAVERPAY_ENABLED": str("naverpay" in urls).lower(),
            "QOO10_ENABLED": str("qoo10" in urls).lower(),
            "GOODSFLOW_ENABLED": "false",
        }
        for name, url in urls.items():
            env[f"{name.upper()}_API_URL"] = url
        env.update(extra)
        return env

    async def engine(self) -> Any:
        engine = make_engine(PG_URL, self.schema)
        await upgrade(engine)
        return engine

    async def drop(self) -> None:
        engine = make_engine(PG_URL)
        async with engine.begin() as conn:
            await conn.execute(text(f'DROP SCHEMA IF EXISTS "{self.schema}" CASCADE'))
        await engine.dispose()


def naver_order_row(
    sandbox: Any, number: str, line: dict[str, Any] | None = None
) -> dict[str, Any]:
    """A paid one-line order created in the Naver sandbox (``line``: its line spec), as a row
    for :func:`insert_orders` shipped with CJ under tracking ``number``."""
    created = sandbox.new_paid_order([line or {"name": "B", "quantity": 1}], lag=0)
    po, oid = created["productOrderIds"][0], f"naverpay:{created['orderId']}"
    return {
        "order_id": oid,
        "channel": "naverpay",
        "channel_order_id": created["orderId"],
        "line_id": f"{oid}:{po}",
        "unit_id": po,
        "carrier": "CJ",
        "number": number,
    }


async def insert_orders(engine: Any, rows: list[dict[str, Any]], *, invoices: bool = True) -> None:
    """Bulk-insert ready-to-ship channel orders (with an invoice unless ``invoices`` is False):
    rows of {order_id, channel, channel_order_id, line_id, unit_id, carrier, number}."""
    address = {"name": "Bench", "phone": "010", "zip_code": "04524", "line1": "Seoul", "line2": ""}
    for i in range(0, len(rows), 2000):
        chunk = rows[i : i + 2000]
        async with engine.begin() as conn:
            await conn.execute(
                insert(Order),
                [
                    {
                        "id": r["order_id"],
                        "channel": r["channel"],
                        "account": "default",
                        "channel_order_id": r["channel_order_id"],
                        "payment_method": "card",
                        "paid": True,
                        "buyer_name": "",
                        "address": address,
                        "on_hold": False,
                        "total_paid": Decimal(1000),
                        "refunded": Decimal(0),
                        "mileage_used": Decimal(0),
                    }
                    for r in chunk
                ],
            )
            await conn.execute(
                insert(OrderLine),
                [
                    {
                        "id": r["line_id"],
                        "order_id": r["order_id"],
                        "sku": "B",
                        "name": "",
                        "kind": "parcel",
                        "quantity": 1,
                        "unit_price": Decimal(1000),
                        "amount": Decimal(1000),
                        "status": "READY_TO_SHIP",
                        "channel_unit_id": r["unit_id"],
                        "channel_notified": [],
                    }
                    for r in chunk
                ],
            )
            if not invoices:
                continue
            await conn.execute(
                insert(Invoice),
                [
                    {
                        "order_id": r["order_id"],
                        "line_id": r["line_id"],
                        "carrier": r["carrier"],
                        "tracking_number": r["number"],
                        "kind": "parcel",
                        "valid": True,
                        "tracking_state": "NONE",
                        "reprint_required": False,
                    }
                    for r in chunk
                ],
            )


async def produce(bootstrap: str, topic: str, messages: list[tuple[bytes, bytes]]) -> float:
    """Send every (key, value); returns seconds taken."""
    producer = AIOKafkaProducer(
        bootstrap_servers=bootstrap, acks="all", linger_ms=5, max_batch_size=262144
    )
    await producer.start()
    started = time.monotonic()
    try:
        futures = [await producer.send(topic, value, key=key) for key, value in messages]
        async with asyncio.timeout(300):
            await asyncio.gather(*futures)
    finally:
        await producer.stop()
    return time.monotonic() - started


async def consume(
    bootstrap: str, topic: str, want: int, timeout: float, on_message: Any = None
) -> tuple[int, float]:
    """Read ``topic`` from the beginning until ``want`` messages (or timeout): (count, seconds from
    the consumer's start to the last message)."""
    consumer = AIOKafkaConsumer(
        topic,
        bootstrap_servers=bootstrap,
        auto_offset_reset="earliest",
        enable_auto_commit=False,
        group_id=None,
        max_poll_records=5000,
        fetch_max_bytes=52428800,
        # the embedded broker answers a fetch only when its max wait ends, even with data
        # waiting: a short wait keeps the measuring consumer from adding its own latency
        fetch_max_wait_ms=20,
    )
    await consumer.start()
    n, first, last = 0, time.monotonic(), time.monotonic()
    deadline = time.monotonic() + timeout
    try:
        while n < want and time.monotonic() < deadline:
            batch = await consumer.getmany(timeout_ms=500, max_records=5000)
            for records in batch.values():
                for rec in records:
                    now = time.monotonic()
                    last = now
                    n += 1
                    if on_message is not None:
                        on_message(rec, now)
    finally:
        await consumer.stop()
    return n, last - first
