"""A chaos stack for the fault tests: PostgreSQL (one schema per test), a Kafka-protocol broker,
the Naver Pay and Qoo10 sandboxes (distinctive non-default credentials, a per-unit oracle of
dispatch attempts) and ``channelsync worker`` subprocesses that the tests kill and restart.

Orders are seeded in bulk (:mod:`tests.faults.seeding`); the invariants are checked against the
sandboxes' ledgers and the oracle (:mod:`tests.faults.oracle`), never against what the worker
says about itself; credentials are scanned for with :mod:`tests.faults.credentials`.
"""

from __future__ import annotations

import asyncio
import json
import random
import time
import uuid
from collections import Counter
from collections.abc import Awaitable, Callable, Iterable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx
from aiokafka import AIOKafkaProducer
from sqlalchemy import func, select, text
from sqlalchemy.exc import DBAPIError
from sqlalchemy.ext.asyncio import AsyncEngine, async_sessionmaker

from connectors.naverpay import endpoints as naver_endpoints
from connectors.naverpay.sandbox import NaverPaySandbox
from connectors.qoo10.sandbox import Qoo10Sandbox
from store.db import make_engine, upgrade
from store.domain import LineStatus
from store.ledger import OpState
from store.models import ChannelOp, FailedEvent, OrderLine
from tests.faults.credentials import Secrets, SecretScan
from tests.faults.oracle import DispatchOracle, check_exactly_once, outcomes_summary
from tests.faults.seeding import Seeded, command_for, create_in_sandboxes, insert_ready
from tests.harness import KafkaClient, WorkerProcess
from topics import names
from topics.envelope import Envelope
from topics.registry import encode

NAVER_DISPATCH_PATH = naver_endpoints.ENDPOINTS["dispatch"][1]


def worker_env(
    bootstrap: str,
    url: str,
    schema: str,
    prefix: str,
    urls: dict[str, str],
    sec: Secrets,
    **extra: str,
) -> dict[str, str]:
    env = {
        "KAFKA_BOOTSTRAP_SERVERS": bootstrap,
        "DATABASE_URL": url,
        "DATABASE_SCHEMA": schema,
        "TOPIC_PREFIX": prefix,
        "APP_ID": f"faults-{uuid.uuid4().hex[:8]}",
        "TOPIC_PARTITIONS": "2",
        "METRICS_PORT": "0",
        "POLL_INTERVAL_SECONDS": "3600",
        "TRACKING_POLL_INTERVAL_SECONDS": "3600",
        "OVERLAP_WINDOW_SECONDS": "600",
        "HTTP_TIMEOUT_SECONDS": "5",
        "RETRY_MAX_ATTEMPTS": "3",
        "RETRY_BACKOFF_BASE_SECONDS": "0.05",
        "RETRY_BACKOFF_MAX_SECONDS": "1",
        "NAVERPAY_RATE_PER_SECOND": "1000",
        "QOO10_RATE_PER_SECOND": "1000",
        "NAVERPAY_ENABLED": str("naverpay" in urls).lower(),
        "QOO10_ENABLED": str("qoo10" in urls).lower(),
        "GOODSFLOW_ENABLED": str("goodsflow" in urls).lower(),
        "LOG_LEVEL": "INFO",
        **sec.env(),
    }
    for name, base in urls.items():
        env[f"{name.upper()}_API_URL"] = base
    env.update(extra)
    return env


@dataclass
class FaultStack:
    bootstrap: str
    pg_url: str
    tmp: Path
    secrets: Secrets = field(default_factory=Secrets.fresh)
    env_extra: dict[str, str] = field(default_factory=dict)
    goodsflow: bool = False
    rng_seed: int = 7

    def __post_init__(self) -> None:
        self.schema = f"faults_{uuid.uuid4().hex[:10]}"
        self.prefix = f"f{uuid.uuid4().hex[:8]}."
        self.rng = random.Random(self.rng_seed)
        self.oracle = DispatchOracle()
        self.sandboxes: dict[str, Any] = {}
        #: seconds a Naver dispatch answer is held *after* the dispatch was executed (the
        #: client times out: outcome unknown); 0 = off
        self.naver_dispatch_answer_delay = 0.0
        self.late_dispatch_answers = 0
        self.workers: list[WorkerProcess] = []
        self.env: dict[str, str] = {}
        self.engine: AsyncEngine | None = None
        self.sessions: Any = None

    # --- lifecycle ---------------------------------------------------------------------------
    async def start(self, *, start_worker: bool = True) -> FaultStack:
        self.engine = make_engine(self.pg_url, self.schema)
        await upgrade(self.engine)
        self.sessions = async_sessionmaker(self.engine, expire_on_commit=False)
        naver = NaverPaySandbox(
            client_secret=self.secrets.naverpay_client_secret,
            visibility_lag=0.0,
            rates={},
            seed=self.rng_seed,
        )
        qoo10 = Qoo10Sandbox(
            api_key=self.secrets.qoo10_api_key,
            password=self.secrets.qoo10_password,
            rates={},
            seed=self.rng_seed,
        )
        self.oracle.watch_naver(naver)
        self.oracle.watch_qoo10(qoo10)
        naver.app.on_response_prepare.append(self._late_dispatch_answer)
        self.sandboxes = {"naverpay": naver, "qoo10": qoo10}
        if self.goodsflow:
            from connectors.goodsflow.sandbox import GoodsflowSandbox

            self.sandboxes["goodsflow"] = GoodsflowSandbox(
                api_key=self.secrets.goodsflow_api_key,
                step_seconds=1.0,
                pickup_after_seconds=3600.0,
                auto_print=True,
                seed=self.rng_seed,
            )
        urls = {name: await sb.start() for name, sb in self.sandboxes.items()}
        self.env = worker_env(
            self.bootstrap,
            self.pg_url,
            self.schema,
            self.prefix,
            urls,
            self.secrets,
            **self.env_extra,
        )
        if start_worker:
            self.start_worker()
        return self

    def start_worker(self) -> float:
        """A new worker incarnation with the same environment (same APP_ID: it resumes from the
        group's committed offsets). Returns its time to 'ready'."""
        worker = WorkerProcess(self.env, self.tmp / f"worker-{len(self.workers) + 1}.log")
        self.workers.append(worker)
        return worker.start(timeout=120)

    async def _late_dispatch_answer(self, request: Any, response: Any) -> None:
        if self.naver_dispatch_answer_delay and request.path.endswith(NAVER_DISPATCH_PATH):
            self.late_dispatch_answers += 1
            await asyncio.sleep(self.naver_dispatch_answer_delay)

    @property
    def worker(self) -> WorkerProcess:
        return self.workers[-1]

    def kill_worker(self) -> None:
        self.worker.kill()
        self.worker.stop()  # closes its log file

    async def stop(self) -> None:
        for worker in self.workers:
            worker.stop()
        for sb in self.sandboxes.values():
            await sb.stop()
        if self.engine is not None:
            await self.engine.dispose()
        await drop_schema(self.pg_url, self.schema)

    def kafka(self, bootstrap: str | None = None) -> KafkaClient:
        return KafkaClient(bootstrap or self.bootstrap, self.prefix)

    # --- seeding -----------------------------------------------------------------------------
    def create_in_sandboxes(self, n: int) -> list[Seeded]:
        """``n`` paid one-line orders, alternating Naver Pay / Qoo10 (not yet in the store)."""
        return create_in_sandboxes(self.sandboxes["naverpay"], self.sandboxes["qoo10"], self.rng, n)

    async def insert_ready(self, orders: list[Seeded]) -> None:
        assert self.engine is not None
        await insert_ready(self.engine, orders)

    async def seed_orders(self, n: int) -> list[Seeded]:
        orders = self.create_in_sandboxes(n)
        await self.insert_ready(orders)
        return orders

    # --- commands ----------------------------------------------------------------------------
    command_for = staticmethod(command_for)

    async def produce(
        self,
        topic: str,
        messages: Iterable[tuple[bytes | None, bytes | None]],
        bootstrap: str | None = None,
    ) -> int:
        """Send raw (key, value) messages to ``<prefix><topic>`` and wait for every ack."""
        producer = AIOKafkaProducer(
            bootstrap_servers=bootstrap or self.bootstrap,
            acks="all",
            linger_ms=5,
            max_request_size=4_000_000,
        )
        await producer.start()
        n = 0
        try:
            futures = []
            for key, value in messages:
                futures.append(await producer.send(self.prefix + topic, value, key=key))
                n += 1
            async with asyncio.timeout(120):
                await asyncio.gather(*futures)
        finally:
            await producer.stop()
        return n

    async def send_commands(self, envelopes: list[Envelope], bootstrap: str | None = None) -> int:
        return await self.produce(
            names.OMS_COMMANDS, [(e.order_id.encode(), encode(e)) for e in envelopes], bootstrap
        )

    # --- observation -------------------------------------------------------------------------
    async def line_statuses(self) -> Counter[str]:
        async with self.sessions() as s:
            rows = await s.execute(
                select(OrderLine.status, func.count()).group_by(OrderLine.status)
            )
            return Counter({status: n for status, n in rows.all()})

    async def op_states(self) -> Counter[str]:
        async with self.sessions() as s:
            rows = await s.execute(select(ChannelOp.state, func.count()).group_by(ChannelOp.state))
            return Counter({state: n for state, n in rows.all()})

    async def wait_until(
        self, check: Callable[[], Awaitable[bool]], what: str, timeout: float
    ) -> float:
        """Seconds it took; TimeoutError (with the worker's log tail) after ``timeout``."""
        started = time.monotonic()
        while time.monotonic() - started < timeout:
            try:
                if await check():
                    return time.monotonic() - started
            except (OSError, DBAPIError):
                pass  # the store may be restarting
            await asyncio.sleep(0.5)
        raise TimeoutError(
            f"timed out after {timeout}s waiting for {what}; lines {dict(await self.line_statuses())}, "
            f"ops {dict(await self.op_states())}\n{self.worker.tail(3000)}"
        )

    async def poll(
        self, check: Callable[[], Awaitable[bool]], timeout: float, interval: float = 0.02
    ) -> bool:
        """Whether ``check()`` became true within ``timeout`` (polled every ``interval``)."""
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if await check():
                return True
            await asyncio.sleep(interval)
        return False

    async def health(self) -> int:
        """Status of the worker's ``/health`` (``METRICS_PORT`` must be set)."""
        async with httpx.AsyncClient(timeout=5) as client:
            resp = await client.get(f"http://127.0.0.1:{self.env['METRICS_PORT']}/health")
            return resp.status_code

    async def wait_shipped(self, n: int, timeout: float = 240.0) -> float:
        async def done() -> bool:
            ops = await self.op_states()
            open_ops = sum(ops[s.value] for s in (OpState.PENDING, OpState.SENT, OpState.RETRY))
            return (await self.line_statuses())[LineStatus.SHIPPING.value] >= n and open_ops == 0

        return await self.wait_until(done, f"{n} lines SHIPPING and no open op", timeout)

    async def results_by_event(self, bootstrap: str | None = None) -> dict[str, list[str]]:
        """source event id → outcomes seen on sync.results."""
        out: dict[str, list[str]] = {}
        async with self.kafka(bootstrap) as k:
            for raw in await k.read_all(names.SYNC_RESULTS, 1.0):
                p = json.loads(raw)["payload"]
                out.setdefault(p["source_event_id"], []).append(p["outcome"])
        return out

    async def dead_letters(self, bootstrap: str | None = None) -> dict[str, list[dict[str, Any]]]:
        out: dict[str, list[dict[str, Any]]] = {}
        async with self.kafka(bootstrap) as k:
            for topic in names.CONSUMED_TOPICS:
                out[topic] = [json.loads(raw) for raw in await k.read_all(names.dlq(topic), 1.0)]
        return out

    async def failed_events(self) -> Counter[tuple[str, str]]:
        """(base topic, reason) → rows in failed_events."""
        async with self.sessions() as s:
            rows = await s.execute(
                select(FailedEvent.topic, FailedEvent.reason, func.count()).group_by(
                    FailedEvent.topic, FailedEvent.reason
                )
            )
            return Counter({(t.removeprefix(self.prefix), r): n for t, r, n in rows.all()})

    # --- invariants --------------------------------------------------------------------------
    async def check_exactly_once(self, orders: list[Seeded]) -> dict[str, int]:
        """S1 against the marketplaces (see :func:`tests.faults.oracle.check_exactly_once`)."""
        async with self.sessions() as s:
            lines = {ln.id: ln.status for ln in (await s.execute(select(OrderLine))).scalars()}
            ops = list((await s.execute(select(ChannelOp))).scalars())
        return check_exactly_once(
            orders, lines, ops, self.sandboxes["naverpay"], self.sandboxes["qoo10"], self.oracle
        )

    async def scan_secrets(
        self, bootstrap: str | None = None, control: bytes | None = None
    ) -> dict[str, int]:
        """Look for every credential value in worker logs, every DLQ, sync.results and the
        failed_events / channel_ops / channel_changes tables (and ``control``, a planted blob
        that proves the scan can fail). Returns bytes scanned per place; raises AssertionError
        naming where a secret was found (never the secret itself)."""
        scan = SecretScan(self.secrets.needles())
        if control is not None:
            scan.look("control", control)
        for worker in self.workers:
            scan.look(f"log {worker.log_path.name}", worker.log_path.read_bytes())
        async with self.kafka(bootstrap) as k:
            for topic in [*(names.dlq(t) for t in names.CONSUMED_TOPICS), names.SYNC_RESULTS]:
                scan.look(topic, b"\n".join(await k.read_all(topic, 1.0)))
        assert self.engine is not None
        async with self.engine.connect() as conn:
            for table in ("failed_events", "channel_ops", "channel_changes"):
                rows = (await conn.execute(text(f"SELECT * FROM {table}"))).all()
                scan.look(table, "\n".join(json.dumps([str(c) for c in r]) for r in rows).encode())
        return scan.assert_clean()


async def drop_schema(url: str, schema: str) -> None:
    engine = make_engine(url)
    try:
        async with engine.begin() as conn:
            await conn.execute(text(f'DROP SCHEMA IF EXISTS "{schema}" CASCADE'))
    finally:
        await engine.dispose()


__all__ = [
    "DispatchOracle",
    "FaultStack",
    "Secrets",
    "Seeded",
    "drop_schema",
    "outcomes_summary",
    "worker_env",
]
