"""End to end: Goodsflow tracking drives the shop's own orders (R06) and reports stale invoices."""

from __future__ import annotations

import uuid
from collections.abc import AsyncIterator
from decimal import Decimal
from pathlib import Path

import pytest

from store.carriers import Carrier
from store.domain import Channel, LineStatus
from store.invoices import generate_valid_number
from tests.e2e.conftest import start_stack
from tests.e2e.stack import Stack
from topics.commands import Address, LineSpec, LineStatusChange, OrderImport, ShipmentRegistered
from topics.envelope import Envelope, new_envelope

pytestmark = pytest.mark.integration

ADDRESS = Address(name="Lee", phone="010-2222-3333", zip_code="06236", line1="Gangnam-gu")


@pytest.fixture(scope="module")
async def stack(kafka_bootstrap: str, e2e_tmp: Path, require_pg: None) -> AsyncIterator[Stack]:
    async for s in start_stack(
        kafka_bootstrap, e2e_tmp, ("goodsflow",), STALE_INVOICE_AFTER_SECONDS="2"
    ):
        yield s


def _ready_commands() -> tuple[str, str, list[Envelope]]:
    """(order id, line id, [import, move to READY_TO_SHIP]) of a new shop order."""
    oid = f"OMS-{uuid.uuid4().hex[:8]}"
    line = f"{oid}-1"
    spec = LineSpec(line_id=line, sku="A", quantity=1, unit_price=Decimal(5000))
    imp = new_envelope("order.import", oid, Channel.OMS, OrderImport(address=ADDRESS, lines=[spec]))
    move = LineStatusChange(line_ids=[line], to_status=LineStatus.READY_TO_SHIP)
    return oid, line, [imp, new_envelope("line.status", oid, Channel.OMS, move)]


async def _ready_order(stack: Stack, carrier: Carrier, number: str) -> str:
    oid, line, setup = _ready_commands()
    ship = new_envelope(
        "shipment.registered",
        oid,
        Channel.OMS,
        ShipmentRegistered(line_ids=[line], carrier=carrier, tracking_number=number),
    )
    await stack.send(*setup, ship)
    result = await stack.wait_result(ship.event_id)
    assert result["outcome"] == "succeeded", result
    return line


async def test_r06_pickup_scan_moves_line_to_shipping_then_delivered(stack: Stack) -> None:
    import random

    number = generate_valid_number(Carrier.HANJIN, random.Random(1))
    line = await _ready_order(stack, Carrier.HANJIN, number)
    gf = stack.sandboxes["goodsflow"]

    async def registered() -> bool:
        return gf.ledger.count("tracking.registered") > 0 and any(
            p.invoice_no == number for p in gf.world.parcels.values()
        )

    await stack.wait_until(registered, "Goodsflow tracking registration")
    gf.advance(number, "PICKUP")
    await stack.wait_until(
        lambda: stack.status_is(line, LineStatus.SHIPPING), "SHIPPING after pickup scan"
    )
    gf.advance(number, "COMPLETED")
    await stack.wait_until(
        lambda: stack.status_is(line, LineStatus.DELIVERED), "DELIVERED after delivered scan"
    )


async def test_r18_invalid_invoice_refused_before_anything_is_sent(stack: Stack) -> None:
    oid, line, setup = _ready_commands()
    bad = new_envelope(
        "shipment.registered",
        oid,
        Channel.OMS,
        ShipmentRegistered(line_ids=[line], carrier=Carrier.EPOST, tracking_number="12345"),
    )
    await stack.send(*setup, bad)
    result = await stack.wait_result(bad.event_id)
    assert result["outcome"] == "refused" and result["rule"] == "R18"
    assert "EPOST" in result["message"]
    assert (await stack.line(line)).status == LineStatus.READY_TO_SHIP


async def test_stale_invoice_without_scan_is_reported(stack: Stack) -> None:
    import random

    number = generate_valid_number(Carrier.LOTTE, random.Random(2))
    await _ready_order(stack, Carrier.LOTTE, number)
    gf = stack.sandboxes["goodsflow"]
    await stack.wait_until(lambda: _has_parcel(gf, number), "registration")
    gf.never_pickup(number)

    async def reported() -> bool:
        for results in (await stack.results()).values():
            for r in results:
                if (
                    r["outcome"] == "failed"
                    and (r.get("error") or {}).get("code") == "STALE_INVOICE"
                    and number in r["message"]
                ):
                    return True
        return False

    await stack.wait_until(reported, "stale invoice report", timeout=30)


async def _has_parcel(gf: object, number: str) -> bool:
    return any(p.invoice_no == number for p in gf.world.parcels.values())  # type: ignore[attr-defined]


async def test_r27_r05_waybill_requested_once_with_contract_sender(stack: Stack) -> None:
    """R05: a waybill only for READY_TO_SHIP lines; R27: the sender is the Goodsflow contract's;
    S1: the same request delivered twice registers one waybill."""
    from sqlalchemy import select

    from store.models import Invoice
    from topics.commands import WaybillRequest

    oid = f"OMS-{uuid.uuid4().hex[:8]}"
    line = f"{oid}-1"
    imp = new_envelope(
        "order.import",
        oid,
        Channel.OMS,
        OrderImport(
            address=ADDRESS,
            lines=[LineSpec(line_id=line, sku="B", quantity=2, unit_price=Decimal(7000))],
        ),
    )
    early = new_envelope(
        "waybill.request", oid, Channel.OMS, WaybillRequest(line_ids=[line], carrier=Carrier.CJ)
    )
    await stack.send(imp, early)
    refused = await stack.wait_result(early.event_id)
    assert refused["outcome"] == "refused" and refused["rule"] == "R05"

    ready = new_envelope(
        "line.status",
        oid,
        Channel.OMS,
        LineStatusChange(line_ids=[line], to_status=LineStatus.READY_TO_SHIP),
    )
    req = new_envelope(
        "waybill.request", oid, Channel.OMS, WaybillRequest(line_ids=[line], carrier=Carrier.CJ)
    )
    await stack.send(ready, req, req)
    done = await stack.wait_result(req.event_id, "succeeded")
    assert done["detail"]["idempotency_key"] == f"waybill:{line}"
    gf = stack.sandboxes["goodsflow"]
    assert gf.ledger.count("waybill.registered", line) == 1
    entry = next(e for e in gf.ledger.entries if e.op == "waybill.registered" and e.key == line)
    assert gf.sender.address1 in str(entry.details), entry.details
    async with stack.sessions() as s:
        invoices = list((await s.execute(select(Invoice).where(Invoice.line_id == line))).scalars())
    assert len(invoices) == 1 and invoices[0].tracking_number and invoices[0].carrier == "CJ"


async def test_s2_each_orders_commands_apply_in_order_under_interleaving(stack: Stack) -> None:
    """S2: 30 orders × 4 dependent commands, interleaved in one burst; each step is only legal
    after the previous one (R01), so any reordering within an order would be refused."""
    import random

    rng = random.Random(5)
    orders = [f"S2-{uuid.uuid4().hex[:8]}" for _ in range(30)]
    per_order = []
    for oid in orders:
        line = f"{oid}-1"
        number = generate_valid_number(Carrier.CJ, rng)
        per_order.append(
            [
                new_envelope(
                    "order.import",
                    oid,
                    Channel.OMS,
                    OrderImport(
                        address=ADDRESS,
                        lines=[
                            LineSpec(line_id=line, sku="S", quantity=1, unit_price=Decimal(100))
                        ],
                    ),
                ),
                new_envelope(
                    "line.status",
                    oid,
                    Channel.OMS,
                    LineStatusChange(line_ids=[line], to_status=LineStatus.READY_TO_SHIP),
                ),
                new_envelope(
                    "shipment.registered",
                    oid,
                    Channel.OMS,
                    ShipmentRegistered(
                        line_ids=[line],
                        carrier=Carrier.CJ,
                        tracking_number=number,
                        dispatch_now=True,
                    ),
                ),
                new_envelope(
                    "line.status",
                    oid,
                    Channel.OMS,
                    LineStatusChange(line_ids=[line], to_status=LineStatus.DELIVERED),
                ),
            ]
        )
    burst = [
        cmds[step] for step in range(4) for cmds in per_order
    ]  # step-major: maximal interleaving
    await stack.send(*burst)
    for cmds in per_order:
        for env in cmds:
            result = await stack.wait_result(env.event_id)
            assert result["outcome"] == "succeeded", result
    for oid in orders:
        assert (await stack.line(f"{oid}-1")).status == LineStatus.DELIVERED
