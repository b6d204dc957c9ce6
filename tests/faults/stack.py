"""A chaos stack for the fault tests: PostgreSQL (one schema per test), a Kafka-protocol broker,
the Naver Pay and Qoo10 sandboxes (distinctive non-default credentials, a per-unit oracle of
dispatch attempts) and ``channelsync worker`` subprocesses that the tests kill and restart.

Orders are seeded in bulk: created in the sandboxes through their Python methods and inserted
in the store as ``READY_TO_SHIP`` lines (half of them with an invoice, to be dispatched by a
``pickup.reached`` command; the other half get their invoice and an immediate dispatch from a
``shipment.registered`` command with ``dispatch_now``). The invariants are checked against the
sandboxes' ledgers and the oracle, never against what the worker says about itself.
"""

from __future__ import annotations

import asyncio
import json
import random
import secrets
import time
import uuid
from collections import Counter
from collections.abc import Awaitable, Callable, Iterable
from dataclasses import dataclass, field
from datetime import UTC, datetime
from decimal import Decimal
from pathlib import Path
from typing import Any

import bcrypt
import httpx
from aiokafka import AIOKafkaProducer
from sqlalchemy import func, insert, select, text
from sqlalchemy.exc import DBAPIError
from sqlalchemy.ext.asyncio import AsyncEngine, async_sessionmaker

from connectors.naverpay import endpoints as naver_endpoints
from connectors.naverpay.sandbox import NaverPaySandbox
from connectors.qoo10.sandbox import Qoo10Sandbox
from store.carriers import Carrier
from store.db import make_engine, upgrade
from store.domain import Channel, LineStatus
from store.invoices import generate_valid_number
from store.ledger import OpState
from store.models import ChannelChangeRow, ChannelOp, FailedEvent, Invoice, Order, OrderLine
from tests.harness import KafkaClient, WorkerProcess
from topics import names
from topics.commands import PickupReached, ShipmentRegistered
from topics.envelope import Envelope, new_envelope
from topics.registry import encode

NAVER_DISPATCH_PATH = naver_endpoints.ENDPOINTS["dispatch"][1]
CARRIER = {"naverpay": Carrier.CJ, "qoo10": Carrier.YAMATO}
ADDRESS = {
    "name": "Kim",
    "phone": "010-1234-5678",
    "zip_code": "04524",
    "line1": "Seoul",
    "line2": "1",
}


@dataclass(frozen=True)
class Secrets:
    """Distinctive, non-default credential values (S: never logged / dead-lettered)."""

    naverpay_client_secret: str
    qoo10_api_key: str
    qoo10_password: str
    goodsflow_api_key: str

    @classmethod
    def fresh(cls) -> Secrets:
        tag = secrets.token_hex(6)
        return cls(
            naverpay_client_secret=bcrypt.gensalt(rounds=4).decode(),
            qoo10_api_key=f"QK-fault-{tag}-{secrets.token_hex(8)}",
            qoo10_password=f"QP-fault-{tag}-{secrets.token_hex(8)}",
            goodsflow_api_key=f"GK-fault-{tag}-{secrets.token_hex(8)}",
        )

    def env(self) -> dict[str, str]:
        return {
            "NAVERPAY_CLIENT_SECRET": self.naverpay_client_secret,
            "QOO10_API_KEY": self.qoo10_api_key,
            "QOO10_PASSWORD": self.qoo10_password,
            "GOODSFLOW_API_KEY": self.goodsflow_api_key,
        }

    def needles(self) -> dict[str, bytes]:
        """What must never appear: each value, and the bcrypt salt body on its own."""
        out = {k.lower(): v.encode() for k, v in self.env().items()}
        out["naverpay_client_secret_salt"] = self.naverpay_client_secret[7:].encode()
        return out


class DispatchOracle:
    """Counts every dispatch request that reached a sandbox's business logic, per unit (Naver
    product order / Qoo10 order number) — including ones the marketplace refuses or ignores (a
    repeated Naver dispatch is refused, a repeated Qoo10 one answers OK without a new ledger
    entry), so a second call cannot hide behind the marketplace's own idempotency."""

    def __init__(self) -> None:
        self.attempts: Counter[tuple[str, str]] = Counter()

    def watch_naver(self, sb: NaverPaySandbox) -> None:
        desk = sb.desk
        original = desk.dispatch

        def dispatch(item: dict[str, Any], *, source: str = "api") -> None:
            if source == "api":
                self.attempts[("naverpay", str(item.get("productOrderId", "")))] += 1
            original(item, source=source)

        desk.dispatch = dispatch  # type: ignore[method-assign]

    def watch_qoo10(self, sb: Qoo10Sandbox) -> None:
        world = sb.world
        original = world.send

        def send(order_no: str, corp: str, tracking: str) -> Any:
            self.attempts[("qoo10", order_no)] += 1
            return original(order_no, corp, tracking)

        world.send = send  # type: ignore[method-assign]


@dataclass(frozen=True)
class Seeded:
    """One seeded order with one line (one marketplace unit)."""

    channel: str
    order_id: str
    channel_order_id: str
    line_id: str
    unit_id: str
    carrier: Carrier
    number: str
    with_invoice: bool  # True: pickup.reached dispatches it; False: shipment.registered does


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
    def _number(self, carrier: Carrier) -> str:
        return generate_valid_number(carrier, self.rng)

    def create_in_sandboxes(self, n: int) -> list[Seeded]:
        """``n`` paid one-line orders, alternating Naver Pay / Qoo10 (not yet in the store)."""
        naver: NaverPaySandbox = self.sandboxes["naverpay"]
        qoo10: Qoo10Sandbox = self.sandboxes["qoo10"]
        out: list[Seeded] = []
        for i in range(n):
            if i % 2 == 0:
                created = naver.new_paid_order(
                    [{"name": "Tumbler", "quantity": 1, "unit_price": 12000}], lag=0
                )
                po, co = created["productOrderIds"][0], created["orderId"]
                oid = f"naverpay:{co}"
                out.append(
                    Seeded(
                        "naverpay",
                        oid,
                        co,
                        f"{oid}:{po}",
                        po,
                        Carrier.CJ,
                        self._number(Carrier.CJ),
                        i % 4 == 0,
                    )
                )
            else:
                no = qoo10.new_order(qty=1, price=1500, sku="SKU-F")
                pack = qoo10.order(no).pack_no
                oid = f"qoo10:{pack}"
                out.append(
                    Seeded(
                        "qoo10",
                        oid,
                        pack,
                        f"{oid}:{no}",
                        no,
                        Carrier.YAMATO,
                        self._number(Carrier.YAMATO),
                        i % 4 == 1,
                    )
                )
        return out

    async def insert_ready(self, orders: list[Seeded]) -> None:
        """The orders as READY_TO_SHIP lines in the store (with their invoice when
        ``with_invoice``), as if ingested and prepared earlier."""
        assert self.engine is not None
        for i in range(0, len(orders), 1000):
            chunk = orders[i : i + 1000]
            async with self.engine.begin() as conn:
                await conn.execute(
                    insert(Order),
                    [
                        {
                            "id": s.order_id,
                            "channel": s.channel,
                            "account": "default",
                            "channel_order_id": s.channel_order_id,
                            "payment_method": "card",
                            "paid": True,
                            "buyer_name": "Kim",
                            "address": ADDRESS,
                            "on_hold": False,
                            "total_paid": Decimal(1000),
                            "refunded": Decimal(0),
                            "mileage_used": Decimal(0),
                        }
                        for s in chunk
                    ],
                )
                await conn.execute(
                    insert(OrderLine),
                    [
                        {
                            "id": s.line_id,
                            "order_id": s.order_id,
                            "sku": "SKU-F",
                            "name": "Tumbler",
                            "kind": "parcel",
                            "quantity": 1,
                            "unit_price": Decimal(1000),
                            "amount": Decimal(1000),
                            "status": LineStatus.READY_TO_SHIP.value,
                            "channel_unit_id": s.unit_id,
                            "channel_notified": [],
                        }
                        for s in chunk
                    ],
                )
                invoiced = [s for s in chunk if s.with_invoice]
                if invoiced:
                    await conn.execute(
                        insert(Invoice),
                        [
                            {
                                "order_id": s.order_id,
                                "line_id": s.line_id,
                                "carrier": s.carrier.value,
                                "tracking_number": s.number,
                                "kind": "parcel",
                                "valid": True,
                                "tracking_state": "NONE",
                                "reprint_required": False,
                            }
                            for s in invoiced
                        ],
                    )

    async def seed_orders(self, n: int) -> list[Seeded]:
        orders = self.create_in_sandboxes(n)
        await self.insert_ready(orders)
        return orders

    # --- commands ----------------------------------------------------------------------------
    @staticmethod
    def command_for(s: Seeded) -> Envelope:
        """``pickup.reached`` for an invoiced line, else ``shipment.registered`` + dispatch_now."""
        if s.with_invoice:
            payload: Any = PickupReached(line_ids=[s.line_id], scanned_at=datetime.now(UTC))
            return new_envelope("pickup.reached", s.order_id, Channel(s.channel), payload)
        payload = ShipmentRegistered(
            line_ids=[s.line_id], carrier=s.carrier, tracking_number=s.number, dispatch_now=True
        )
        return new_envelope("shipment.registered", s.order_id, Channel(s.channel), payload)

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
        """S1 against the marketplaces: every seeded unit reached each marketplace's dispatch
        exactly once (oracle and ledger), its store line is SHIPPING ⇔ the marketplace shows it
        dispatched, and its ledger op succeeded. Returns the counts (raises AssertionError)."""
        async with self.sessions() as s:
            lines = {ln.id: ln.status for ln in (await s.execute(select(OrderLine))).scalars()}
            ops = list((await s.execute(select(ChannelOp))).scalars())
        naver: NaverPaySandbox = self.sandboxes["naverpay"]
        qoo10: Qoo10Sandbox = self.sandboxes["qoo10"]
        counts: Counter[str] = Counter()
        problems: list[str] = []
        for o in orders:
            sb = naver if o.channel == "naverpay" else qoo10
            ledger_n = sb.ledger.count("dispatch", o.unit_id)
            attempts = self.oracle.attempts[(o.channel, o.unit_id)]
            if o.channel == "naverpay":
                detail = naver.detail(o.unit_id) or {}
                shipped_there = _naver_status(detail) == "DELIVERING"
            else:
                shipped_there = qoo10.order(o.unit_id).shipped_at is not None
            shipped_here = lines.get(o.line_id) == LineStatus.SHIPPING.value
            counts[f"ledger_dispatch=={ledger_n}"] += 1
            counts[f"attempts=={attempts}"] += 1
            if ledger_n != 1 or attempts != 1:
                problems.append(f"{o.channel} {o.unit_id}: ledger {ledger_n}, attempts {attempts}")
            if shipped_here != shipped_there:
                problems.append(
                    f"{o.line_id}: store SHIPPING={shipped_here}, marketplace={shipped_there}"
                )
            counts["store_and_marketplace_agree"] += shipped_here == shipped_there
        keys = Counter(op.idempotency_key for op in ops)
        counts["ops"] = len(ops)
        counts["ops_succeeded"] = sum(op.state == OpState.SUCCEEDED for op in ops)
        counts["op_keys_duplicated"] = sum(1 for n in keys.values() if n > 1)
        counts["op_sent_more_than_once"] = sum(op.attempts > 1 for op in ops)
        units = Counter((op.channel, op.unit_id) for op in ops if op.action == "dispatch")
        counts["units_with_two_dispatch_ops"] = sum(1 for n in units.values() if n > 1)
        if counts["ops_succeeded"] != len(orders) or len(ops) != len(orders):
            problems.append(
                f"ops by state {Counter(op.state for op in ops)} for {len(orders)} units"
            )
        if counts["units_with_two_dispatch_ops"]:
            problems.append("a unit has two dispatch ops")
        assert not problems, f"{len(problems)} violation(s): {problems[:20]}"
        return dict(counts)

    async def scan_secrets(
        self, bootstrap: str | None = None, control: bytes | None = None
    ) -> dict[str, int]:
        """Look for every credential value in worker logs, every DLQ, sync.results and the
        failed_events / channel_ops / channel_changes tables. Returns how much was scanned;
        raises AssertionError naming where a secret was found (never the secret itself)."""
        needles = self.secrets.needles()
        found: list[str] = []
        scanned: Counter[str] = Counter()

        def look(where: str, blob: bytes) -> None:
            scanned[where] += len(blob)
            for name, value in needles.items():
                if value in blob:
                    found.append(f"{name} in {where}")

        if control is not None:  # a planted blob: proves the scan can fail
            look("control", control)
        for worker in self.workers:
            look(f"log {worker.log_path.name}", worker.log_path.read_bytes())
        async with self.kafka(bootstrap) as k:
            for topic in [*(names.dlq(t) for t in names.CONSUMED_TOPICS), names.SYNC_RESULTS]:
                look(topic, b"\n".join(await k.read_all(topic, 1.0)))
        assert self.engine is not None
        async with self.engine.connect() as conn:
            for table in ("failed_events", "channel_ops", "channel_changes"):
                rows = (await conn.execute(text(f"SELECT * FROM {table}"))).all()
                look(table, "\n".join(json.dumps([str(c) for c in r]) for r in rows).encode())
        assert not found, f"credential values leaked: {sorted(set(found))}"
        return dict(scanned)


def _naver_status(detail: dict[str, Any]) -> str:
    po = detail.get("productOrder") or detail
    return str(po.get("productOrderStatus", ""))


async def drop_schema(url: str, schema: str) -> None:
    engine = make_engine(url)
    try:
        async with engine.begin() as conn:
            await conn.execute(text(f'DROP SCHEMA IF EXISTS "{schema}" CASCADE'))
    finally:
        await engine.dispose()


def outcomes_summary(results: dict[str, list[str]], event_ids: Iterable[str]) -> Counter[str]:
    """How the given commands were answered: final outcome classes counted once per command."""
    summary: Counter[str] = Counter()
    for eid in event_ids:
        seen = results.get(eid, [])
        if "succeeded" in seen:
            summary["succeeded"] += 1
        elif "duplicate" in seen:
            summary["duplicate_only"] += 1
        elif seen:
            summary["other:" + ",".join(sorted(set(seen)))] += 1
        else:
            summary["no_result"] += 1
        summary["results_total"] += len(seen)
    return summary


__all__ = [
    "ChannelChangeRow",
    "DispatchOracle",
    "FaultStack",
    "Secrets",
    "Seeded",
    "drop_schema",
    "outcomes_summary",
]
