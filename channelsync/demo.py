"""``channelsync demo``: everything embedded — broker, SQLite, sandboxes, a worker — plus
scripted traffic, then a summary. Exits 0 only when the store agrees with what was expected."""

from __future__ import annotations

import asyncio
import json
import os
import signal
import subprocess
import sys
import tempfile
import time
import uuid
from collections import Counter
from dataclasses import dataclass, field
from decimal import Decimal
from pathlib import Path
from typing import Any

from aiokafka import AIOKafkaConsumer, AIOKafkaProducer
from sqlalchemy import select

from channelsync.broker import EmbeddedBroker
from channelsync.settings import Settings
from store.db import make_engine, upgrade
from store.domain import Channel, LineStatus
from store.models import OrderLine
from topics import names
from topics.commands import Address, LineSpec, LineStatusChange, OrderImport
from topics.envelope import Envelope, new_envelope
from topics.registry import encode


@dataclass
class DemoRun:
    bootstrap: str
    database_url: str
    workdir: Path
    sent: list[Envelope] = field(default_factory=list)
    log: list[str] = field(default_factory=list)

    def say(self, text: str) -> None:
        stamp = time.strftime("%H:%M:%S")
        line = f"[{stamp}] {text}"
        self.log.append(line)
        print(line, flush=True)


def _worker_env(run: DemoRun, settings: Settings) -> dict[str, str]:
    return {
        **os.environ,
        "KAFKA_BOOTSTRAP_SERVERS": run.bootstrap,
        "DATABASE_URL": run.database_url,
        "APP_ID": f"demo-{uuid.uuid4().hex[:6]}",
        "TOPIC_PARTITIONS": "2",
        "METRICS_PORT": str(settings.metrics_port),
        "LOG_LEVEL": "WARNING",
        "PYTHONUNBUFFERED": "1",
    }


def _start_worker(run: DemoRun, settings: Settings) -> tuple[subprocess.Popen[bytes], Path]:
    log_path = run.workdir / "worker.log"
    log_file = open(log_path, "wb")
    proc = subprocess.Popen(
        [sys.executable, "-m", "channelsync.cli", "worker"],
        env=_worker_env(run, settings),
        stdout=log_file,
        stderr=subprocess.STDOUT,
        start_new_session=True,
    )
    return proc, log_path


async def _wait_ready(proc: subprocess.Popen[bytes], log_path: Path, timeout: float = 90) -> float:
    started = time.monotonic()
    while time.monotonic() - started < timeout:
        if proc.poll() is not None:
            raise RuntimeError("worker exited:\n" + log_path.read_text(errors="replace")[-3000:])
        if b"channelsync worker ready" in log_path.read_bytes():
            return time.monotonic() - started
        await asyncio.sleep(0.2)
    raise TimeoutError("worker did not become ready")


async def _collect_results(
    run: DemoRun, want: set[str], timeout: float = 60
) -> list[dict[str, Any]]:
    consumer = AIOKafkaConsumer(
        names.SYNC_RESULTS,
        bootstrap_servers=run.bootstrap,
        auto_offset_reset="earliest",
        enable_auto_commit=False,
        group_id=None,
    )
    await consumer.start()
    got: dict[str, dict[str, Any]] = {}
    deadline = time.monotonic() + timeout
    try:
        while time.monotonic() < deadline and not want <= set(got):
            batch = await consumer.getmany(timeout_ms=500)
            for records in batch.values():
                for rec in records:
                    if rec.value is None:
                        continue
                    payload = json.loads(rec.value)["payload"]
                    got.setdefault(payload["source_event_id"], payload)
    finally:
        await consumer.stop()
    return list(got.values())


def _traffic() -> tuple[list[Envelope], dict[str, LineStatus]]:
    """A small scripted batch: orders imported and moved; one refused skip (R01)."""
    address = Address(name="Demo Buyer", phone="010-1234-5678", zip_code="04524", line1="Seoul")
    events: list[Envelope] = []
    expected: dict[str, LineStatus] = {}
    for i in range(1, 4):
        oid = f"DEMO-{i}"
        line = f"{oid}-1"
        events.append(
            new_envelope(
                "order.import",
                oid,
                Channel.OMS,
                OrderImport(
                    address=address,
                    lines=[
                        LineSpec(line_id=line, sku=f"SKU-{i}", quantity=i, unit_price=Decimal(9900))
                    ],
                ),
            )
        )
        events.append(
            new_envelope(
                "line.status",
                oid,
                Channel.OMS,
                LineStatusChange(line_ids=[line], to_status=LineStatus.READY_TO_SHIP),
            )
        )
        expected[line] = LineStatus.READY_TO_SHIP
    events.append(  # refused by R01: READY_TO_SHIP -> DELIVERED skips SHIPPING
        new_envelope(
            "line.status",
            "DEMO-1",
            Channel.OMS,
            LineStatusChange(line_ids=["DEMO-1-1"], to_status=LineStatus.DELIVERED),
        )
    )
    return events, expected


async def run_demo(settings: Settings, quick: bool = False) -> int:
    workdir = Path(tempfile.mkdtemp(prefix="channelsync-demo-"))
    database_url = f"sqlite+aiosqlite:///{workdir}/demo.db"
    broker = EmbeddedBroker()
    external = settings.kafka_bootstrap_servers
    print("channelsync demo — everything embedded; working directory", workdir)
    bootstrap = external if external else await asyncio.to_thread(broker.start)
    run = DemoRun(bootstrap, database_url, workdir)
    run.say(f"broker {'(external) ' if external else '(embedded Tansu) '}on {bootstrap}")
    engine = make_engine(database_url)
    await upgrade(engine)
    run.say(f"store: SQLite at {workdir}/demo.db (migrated)")
    proc, log_path = _start_worker(run, settings)
    try:
        ready = await _wait_ready(proc, log_path)
        run.say(f"worker ready in {ready:.1f}s")
        events, expected = _traffic()
        producer = AIOKafkaProducer(bootstrap_servers=bootstrap, acks="all")
        await producer.start()
        try:
            for env in events:
                async with asyncio.timeout(15):
                    await producer.send_and_wait(
                        names.OMS_COMMANDS, encode(env), key=env.order_id.encode()
                    )
            async with asyncio.timeout(15):
                await producer.send_and_wait(names.OMS_COMMANDS, b"{garbage", key=b"DEMO-X")
        finally:
            await producer.stop()
        run.say(f"sent {len(events)} commands and 1 malformed message")
        results = await _collect_results(run, {str(e.event_id) for e in events})
        outcomes = Counter(r["outcome"] for r in results)
        run.say("results: " + ", ".join(f"{k}={v}" for k, v in sorted(outcomes.items())))
        for r in results:
            if r["outcome"] == "refused":
                run.say(f"  refused ({r['rule']}): {r['message']}")
        async with engine.connect() as conn:
            rows = (await conn.execute(select(OrderLine.id, OrderLine.status))).all()
        actual = {row.id: row.status for row in rows}
        mismatches = {
            k: (v.value, actual.get(k)) for k, v in expected.items() if actual.get(k) != v.value
        }
        ok = not mismatches and len(results) == len(events) and outcomes.get("refused") == 1
        print("\n=== summary ===")
        print(f"commands sent: {len(events)}; results: {len(results)}")
        for line_id in sorted(actual):
            print(f"  {line_id}: {actual[line_id]}")
        print(f"store agrees with expectations: {'yes' if ok else 'NO ' + str(mismatches)}")
        return 0 if ok else 1
    finally:
        if proc.poll() is None:
            os.killpg(proc.pid, signal.SIGTERM)
            try:
                proc.wait(20)
            except subprocess.TimeoutExpired:
                os.killpg(proc.pid, signal.SIGKILL)
        await engine.dispose()
        if not external:
            await asyncio.to_thread(broker.stop)
