"""``channelsync demo``: everything embedded — a Kafka-protocol broker, SQLite, the three
sandboxes, a worker — and a scripted day of traffic on both channels, then a summary of what
happened and of what each marketplace's ledger shows. Exits 0 only when the store and the
ledgers agree (every dispatched unit dispatched exactly once, nothing held, nothing failed)."""

from __future__ import annotations

import asyncio
import os
import random
import signal
import subprocess
import sys
import tempfile
import time
import uuid
from datetime import UTC, date, datetime, timedelta
from pathlib import Path
from typing import Any

from aiokafka import AIOKafkaProducer
from sqlalchemy import select
from sqlalchemy.ext.asyncio import async_sessionmaker

from channelsync import ops as operator
from channelsync.broker import EmbeddedBroker
from channelsync.demo_report import agreement, latencies, print_summary
from channelsync.settings import Settings
from connectors.goodsflow.sandbox import GoodsflowSandbox
from connectors.naverpay.sandbox import NaverPaySandbox
from connectors.qoo10.sandbox import Qoo10Sandbox
from store.carriers import Carrier
from store.db import make_engine, upgrade
from store.domain import Channel, LineStatus
from store.invoices import generate_valid_number
from store.models import Order, OrderLine
from topics import names
from topics.commands import (
    Address,
    DispatchDelay,
    LineStatusChange,
    OrderConfirm,
    PickupReached,
    ShipmentRegistered,
    WaybillRequest,
)
from topics.envelope import Envelope, new_envelope
from topics.registry import encode

RNG = random.Random(20261122)


class Demo:
    def __init__(self, settings: Settings, workdir: Path) -> None:
        self.settings = settings
        self.workdir = workdir
        self.broker = EmbeddedBroker()
        self.naver = NaverPaySandbox(visibility_lag=lambda: RNG.uniform(0, 2.0), rates={}, seed=1)
        self.qoo10 = Qoo10Sandbox(rates={}, seed=1)
        self.goodsflow = GoodsflowSandbox(
            step_seconds=2.0, pickup_after_seconds=3600, auto_print=True, seed=1
        )
        self.engine = make_engine(f"sqlite+aiosqlite:///{workdir}/demo.db")
        self.sessions = async_sessionmaker(self.engine, expire_on_commit=False)
        self.proc: subprocess.Popen[bytes] | None = None
        self.producer: AIOKafkaProducer | None = None
        self.started = time.monotonic()

    def say(self, text: str) -> None:
        print(f"[{time.monotonic() - self.started:6.1f}s] {text}", flush=True)

    # --- plumbing ------------------------------------------------------------------------------
    async def start(self) -> None:
        external = self.settings.kafka_bootstrap_servers
        bootstrap: str = external if external else await asyncio.to_thread(self.broker.start)
        self.bootstrap = bootstrap
        self.say(
            f"broker on {bootstrap}"
            + ("" if self.settings.kafka_bootstrap_servers else " (embedded Tansu, memory only)")
        )
        await upgrade(self.engine)
        urls = {
            "NAVERPAY_API_URL": await self.naver.start(),
            "QOO10_API_URL": await self.qoo10.start(),
            "GOODSFLOW_API_URL": await self.goodsflow.start(),
        }
        self.say(
            "sandboxes: " + ", ".join(f"{k.split('_')[0].lower()} {v}" for k, v in urls.items())
        )
        env = {
            **os.environ,
            **urls,
            "KAFKA_BOOTSTRAP_SERVERS": bootstrap,
            "DATABASE_URL": f"sqlite+aiosqlite:///{self.workdir}/demo.db",
            "APP_ID": f"demo-{uuid.uuid4().hex[:6]}",
            "TOPIC_PARTITIONS": "2",
            "POLL_INTERVAL_SECONDS": "1",
            "TRACKING_POLL_INTERVAL_SECONDS": "1",
            "OVERLAP_WINDOW_SECONDS": "600",
            "RETRY_BACKOFF_BASE_SECONDS": "0.1",
            "LOG_LEVEL": "WARNING",
            "PYTHONUNBUFFERED": "1",
        }
        log_path = self.workdir / "worker.log"
        self.log_path = log_path
        self.proc = subprocess.Popen(
            [sys.executable, "-m", "channelsync.cli", "worker"],
            env=env,
            stdout=open(log_path, "wb"),  # noqa: SIM115 - closed with the process
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )
        began = time.monotonic()
        while b"channelsync worker ready" not in log_path.read_bytes():
            if self.proc.poll() is not None or time.monotonic() - began > 90:
                raise RuntimeError(
                    "worker did not start:\n" + log_path.read_text(errors="replace")[-3000:]
                )
            await asyncio.sleep(0.2)
        self.say(f"worker ready in {time.monotonic() - began:.1f}s (log: {log_path})")
        self.producer = AIOKafkaProducer(bootstrap_servers=bootstrap, acks="all")
        await self.producer.start()

    async def stop(self) -> None:
        if self.producer is not None:
            await self.producer.stop()
        if self.proc is not None and self.proc.poll() is None:
            os.killpg(self.proc.pid, signal.SIGTERM)
            try:
                await asyncio.to_thread(self.proc.wait, 20)
            except subprocess.TimeoutExpired:
                os.killpg(self.proc.pid, signal.SIGKILL)
        for sb in (self.naver, self.qoo10, self.goodsflow):
            await sb.stop()
        await self.engine.dispose()
        if not self.settings.kafka_bootstrap_servers:
            await asyncio.to_thread(self.broker.stop)

    async def send(self, *envelopes: Envelope) -> None:
        assert self.producer is not None
        for env in envelopes:
            async with asyncio.timeout(15):
                await self.producer.send_and_wait(
                    names.OMS_COMMANDS, encode(env), key=env.order_id.encode()
                )

    async def until(self, what: str, check: Any, timeout: float = 60) -> None:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if await check():
                return
            await asyncio.sleep(0.25)
        raise TimeoutError(f"timed out waiting for {what}")

    async def status(self, line_id: str) -> str | None:
        async with self.sessions() as s:
            line = await s.get(OrderLine, line_id)
            return None if line is None else line.status

    async def is_status(self, line_id: str, status: LineStatus) -> bool:
        return await self.status(line_id) == status.value

    async def order(self, order_id: str) -> Order | None:
        async with self.sessions() as s:
            return await s.get(Order, order_id)

    # --- the scripted day ----------------------------------------------------------------------
    async def naver_order(self, qty: int = 1) -> tuple[str, str, str]:
        created = self.naver.new_paid_order(
            [{"name": "Ceramic mug", "quantity": qty, "unit_price": 15000}], mileage_used=1000
        )
        po = created["productOrderIds"][0]
        oid = f"naverpay:{created['orderId']}"
        return po, oid, f"{oid}:{po}"

    def qoo10_order(self) -> tuple[str, str, str]:
        no = self.qoo10.new_order(qty=1, price=2400, sku="JP-MUG")
        pack = self.qoo10.order(no).pack_no
        return no, f"qoo10:{pack}", f"qoo10:{pack}:{no}"

    def cmd(self, type_: str, order_id: str, payload: Any) -> Envelope:
        channel = Channel(order_id.split(":", 1)[0])
        return new_envelope(type_, order_id, channel, payload)

    def ready(self, order_id: str, line_id: str) -> Envelope:
        return self.cmd(
            "line.status",
            order_id,
            LineStatusChange(line_ids=[line_id], to_status=LineStatus.READY_TO_SHIP),
        )

    def invoice(self, order_id: str, line_id: str, carrier: Carrier, **kw: Any) -> Envelope:
        number = generate_valid_number(carrier, RNG)
        return self.cmd(
            "shipment.registered",
            order_id,
            ShipmentRegistered(line_ids=[line_id], carrier=carrier, tracking_number=number, **kw),
        )

    def pickup(self, order_id: str, line_id: str) -> Envelope:
        return self.cmd(
            "pickup.reached",
            order_id,
            PickupReached(line_ids=[line_id], scanned_at=datetime.now(UTC)),
        )

    async def run(self) -> dict[str, str]:
        """The day; returns line id → what the line should end as."""
        expect: dict[str, str] = {}
        a, b, c, f = [await self.naver_order(q) for q in (1, 3, 1, 1)]
        d, e = self.qoo10_order(), self.qoo10_order()
        self.say(
            f"09:00 buyers pay: Naver orders {a[1]}, {b[1]} (qty 3), {c[1]}, {f[1]}; Qoo10 {d[1]}, {e[1]}"
        )
        for _, oid, _ in (a, b, c, f, d, e):
            await self.until(f"{oid} collected", lambda oid=oid: self._known(oid))
        self.say(
            "09:01 every paid order collected from the change feeds (visibility lag up to 2 s)"
        )
        await self.send(
            *[
                self.cmd("order.confirm", o, OrderConfirm(line_ids=[ln]))
                for _, o, ln in (a, b, c, f, d, e)
            ]
        )

        # A: Goodsflow waybill → pickup scan → SHIPPING + dispatch (R06)
        await self.send(
            self.ready(a[1], a[2]),
            self.cmd("waybill.request", a[1], WaybillRequest(line_ids=[a[2]], carrier=Carrier.CJ)),
        )
        await self.until("waybill for A", lambda: self._waybill(a[2]))
        number = self.goodsflow.ledger.entries[-1].details.get("invoiceNo") or await self._number(
            a[2]
        )
        self.say(f"10:00 Goodsflow printed waybill {number} for {a[2]}")
        self.goodsflow.advance(number, "PICKUP")
        await self.until(
            "A shipping after pickup", lambda: self.is_status(a[2], LineStatus.SHIPPING)
        )
        self.say("10:30 carrier pickup scan → A is SHIPPING and dispatched to Naver (R06)")
        expect[a[2]] = "DELIVERED"  # the Goodsflow sandbox delivers it a few seconds later

        # B: 1 of 3 shipped → the whole product order is dispatched, collapse recorded (R15)
        await self.send(
            self.ready(b[1], b[2]),
            self.invoice(b[1], b[2], Carrier.HANJIN, dispatch_now=True, shipped_quantity={b[2]: 1}),
        )
        await self.until("B dispatched", lambda: self.is_status(b[2], LineStatus.SHIPPING))
        self.say(
            "11:00 B shipped 1 of 3 → Naver sees the whole product order dispatched; collapse recorded (R15)"
        )
        expect[b[2]] = "SHIPPING"

        # C: waybill printed, then the buyer changes the address → hold (R12), then release
        await self.send(
            self.ready(c[1], c[2]),
            self.cmd(
                "waybill.request", c[1], WaybillRequest(line_ids=[c[2]], carrier=Carrier.LOTTE)
            ),
        )
        await self.until("waybill for C", lambda: self._waybill(c[2]))
        self.naver.change_address(
            c[1].split(":", 1)[1],
            Address(
                name="Choi",
                phone="010-5555-6666",
                zip_code="61452",
                line1="Gwangju Dong-gu",
                line2="3",
            ),
        )
        await self.until("C on hold", lambda: self._held(c[1]))
        pickup_c = self.pickup(c[1], c[2])
        await self.send(pickup_c)
        await asyncio.sleep(2)
        self.say(
            f"12:00 buyer changed C's address after printing → delivery hold, waybill flagged for reprint, dispatch parked (R12); C is {await self.status(c[2])}"
        )
        released = await operator.release_hold(
            self.engine, c[1], by="demo-operator", note="reprint for the new address"
        )
        old_number = await self._number(c[2])
        reprint = self.cmd(
            "waybill.request", c[1], WaybillRequest(line_ids=[c[2]], carrier=Carrier.LOTTE)
        )
        await self.send(reprint)
        await self.until("reprinted waybill for C", lambda: self._new_number(c[2], old_number))
        new_number = await self._number(c[2])
        self.say(
            f"12:10 operator released the hold ({released['resumed_ops']} stale dispatch resumed); waybill "
            f"{old_number} cancelled at Goodsflow and reissued as {new_number} for the new address"
        )
        self.goodsflow.advance(new_number, "PICKUP")
        await self.until(
            "C shipping after release", lambda: self.is_status(c[2], LineStatus.SHIPPING)
        )
        self.say("12:30 pickup scan of the new waybill → C dispatched to Naver with it")
        expect[c[2]] = "DELIVERED"  # tracked by Goodsflow, delivered a few seconds later

        # D (Qoo10): buyer cancel request blocks dispatch (R25) until withdrawn
        await self.send(self.ready(d[1], d[2]), self.invoice(d[1], d[2], Carrier.YAMATO))
        await asyncio.sleep(1.5)
        outcome = self.qoo10.buyer_cancel(d[0])
        await self.until(
            "D cancel request", lambda: self.is_status(d[2], LineStatus.CANCEL_REQUESTED)
        )
        await self.send(self.pickup(d[1], d[2]))
        await asyncio.sleep(2)
        self.say(
            f"13:00 Qoo10 buyer asked to cancel D ({outcome}) → dispatch parked (R25); D is {await self.status(d[2])}, Qoo10 dispatches: {self.qoo10.ledger.count('dispatch', d[0])}"
        )
        self.qoo10.withdraw_cancel(d[0])
        await self.until(
            "D shipping after withdrawal", lambda: self.is_status(d[2], LineStatus.SHIPPING)
        )
        self.say("13:10 buyer withdrew the request → D dispatched")
        expect[d[2]] = "SHIPPING"

        # F: dispatch delay (R13)
        delay = self.cmd(
            "dispatch.delay",
            f[1],
            DispatchDelay(
                line_ids=[f[2]],
                due_date=date.today() + timedelta(days=4),
                reason="PRODUCT_PREPARE",
                detail="glaze restock",
            ),
        )
        await self.send(delay)
        await self.until("delay registered", lambda: self._ledger(self.naver, "delay", f[0]))
        self.say("14:00 F: dispatch delay registered on Naver (R13)")
        expect[f[2]] = "PREPARING"

        # E (Qoo10) during a Qoo10 outage + a Naver order paid during a Naver feed outage (S4)
        self.qoo10.faults.update({"outage_seconds": 4, "error_status": 503})
        self.naver.faults.update({"outage_seconds": 4, "error_status": 503})
        g = await self.naver_order(1)
        await self.send(
            self.ready(e[1], e[2]), self.invoice(e[1], e[2], Carrier.SAGAWA, dispatch_now=True)
        )
        self.say(
            "15:00 both marketplaces down for 4 s: Qoo10 dispatch of E and Naver order G paid meanwhile"
        )
        await self.until(
            "E dispatched after the outage", lambda: self.is_status(e[2], LineStatus.SHIPPING)
        )
        await self.until("G collected after the outage", lambda: self._known(g[1]))
        self.say(
            "15:01 outage over: E dispatched after retries, G collected by the catching-up poller (S4)"
        )
        expect[e[2]] = "SHIPPING"
        expect[g[2]] = "PREPARING"

        # duplicate delivery: the pickup of C again → no second dispatch (S1)
        await self.send(pickup_c, pickup_c)
        await asyncio.sleep(1.5)
        self.say("16:00 C's pickup event delivered twice more → answered as duplicates (S1)")
        await self.until("A delivered", lambda: self.is_status(a[2], LineStatus.DELIVERED))
        await self.until("C delivered", lambda: self.is_status(c[2], LineStatus.DELIVERED))
        self.say(
            "17:00 Goodsflow shows A and C delivered → DELIVERED (R07 confirms them after 7 days)"
        )
        return expect

    async def _known(self, order_id: str) -> bool:
        return await self.order(order_id) is not None

    async def _held(self, order_id: str) -> bool:
        o = await self.order(order_id)
        return bool(o and o.on_hold)

    async def _waybill(self, line_id: str) -> bool:
        return self.goodsflow.ledger.count("waybill.registered", line_id) > 0 and bool(
            await self._number(line_id)
        )

    async def _number(self, line_id: str) -> str:
        from store.models import Invoice

        async with self.sessions() as s:
            inv = (
                (
                    await s.execute(
                        select(Invoice).where(
                            Invoice.line_id == line_id, Invoice.deleted_at.is_(None)
                        )
                    )
                )
                .scalars()
                .first()
            )
            return inv.tracking_number if inv else ""

    async def _new_number(self, line_id: str, old: str) -> bool:
        number = await self._number(line_id)
        return bool(number) and number != old

    async def _ledger(self, sb: Any, op: str, key: str) -> bool:
        return bool(sb.ledger.count(op, key))


async def run_demo(settings: Settings, quick: bool = False) -> int:
    workdir = Path(tempfile.mkdtemp(prefix="channelsync-demo-"))
    print(
        f"channelsync demo — broker, SQLite, sandboxes and a worker, all local (files in {workdir})"
    )
    demo = Demo(settings, workdir)
    try:
        await demo.start()
        expect = await demo.run()
        await asyncio.sleep(1.5)
        ok, report = await agreement(demo, expect)
        print_summary(report, await latencies(demo.engine))
        print(f"\nstore and marketplace ledgers agree: {'YES' if ok else 'NO'}")
        return 0 if ok else 1
    except Exception as exc:
        print(f"demo failed: {exc}", file=sys.stderr)
        if demo.proc is not None:
            print(demo.log_path.read_text(errors="replace")[-3000:], file=sys.stderr)
        return 1
    finally:
        await demo.stop()
