"""Bulk seeding for the fault tests: paid one-line orders created in the Naver Pay / Qoo10
sandboxes through their Python methods, inserted in the store as ``READY_TO_SHIP`` lines (half
with an invoice: a ``pickup.reached`` command dispatches them; the other half get their invoice
and an immediate dispatch from ``shipment.registered`` with ``dispatch_now``)."""

from __future__ import annotations

import random
from dataclasses import dataclass
from datetime import UTC, datetime
from decimal import Decimal
from typing import Any

from sqlalchemy import insert
from sqlalchemy.ext.asyncio import AsyncEngine

from connectors.naverpay.sandbox import NaverPaySandbox
from connectors.qoo10.sandbox import Qoo10Sandbox
from store.carriers import Carrier
from store.domain import Channel, LineStatus
from store.invoices import generate_valid_number
from store.models import Invoice, Order, OrderLine
from topics.commands import PickupReached, ShipmentRegistered
from topics.envelope import Envelope, new_envelope

ADDRESS = {
    "name": "Kim",
    "phone": "010-1234-5678",
    "zip_code": "04524",
    "line1": "Seoul",
    "line2": "1",
}


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


def create_in_sandboxes(
    naver: NaverPaySandbox, qoo10: Qoo10Sandbox, rng: random.Random, n: int
) -> list[Seeded]:
    """``n`` paid one-line orders, alternating Naver Pay / Qoo10 (not yet in the store)."""
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
                    generate_valid_number(Carrier.CJ, rng),
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
                    generate_valid_number(Carrier.YAMATO, rng),
                    i % 4 == 1,
                )
            )
    return out


async def insert_ready(engine: AsyncEngine, orders: list[Seeded]) -> None:
    """The orders as READY_TO_SHIP lines in the store (with their invoice when
    ``with_invoice``), as if ingested and prepared earlier."""
    for i in range(0, len(orders), 1000):
        chunk = orders[i : i + 1000]
        async with engine.begin() as conn:
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


def command_for(s: Seeded) -> Envelope:
    """``pickup.reached`` for an invoiced line, else ``shipment.registered`` + dispatch_now."""
    if s.with_invoice:
        payload: Any = PickupReached(line_ids=[s.line_id], scanned_at=datetime.now(UTC))
        return new_envelope("pickup.reached", s.order_id, Channel(s.channel), payload)
    payload = ShipmentRegistered(
        line_ids=[s.line_id], carrier=s.carrier, tracking_number=s.number, dispatch_now=True
    )
    return new_envelope("shipment.registered", s.order_id, Channel(s.channel), payload)
