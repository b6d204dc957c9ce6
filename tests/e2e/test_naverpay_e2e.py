"""End to end on Naver Pay through the real broker, PostgreSQL, the sandboxes and a worker:
R12 (address change holds delivery), R13, R15 (both directions), R16, R17 (late-visible change
applied once), R29 (open cancel request parks a dispatch), S4 (outage caught up)."""

from __future__ import annotations

import random
import uuid
from collections.abc import AsyncIterator
from datetime import UTC, date, datetime, timedelta
from pathlib import Path

import pytest
from sqlalchemy import func, select

from channelsync import ops as operator
from store.carriers import Carrier
from store.domain import Channel, LineStatus
from store.invoices import generate_valid_number
from store.models import ChannelChangeRow, Invoice
from tests.e2e.conftest import start_stack
from tests.e2e.stack import Stack
from topics.commands import (
    Address,
    BuyerCancelDecision,
    DispatchDelay,
    LineStatusChange,
    PickupReached,
    SellerCancel,
    ShipmentRegistered,
    WaybillRequest,
)
from topics.envelope import Envelope, new_envelope

pytestmark = pytest.mark.integration

NEW_ADDRESS = Address(
    name="Park", phone="010-9999-8888", zip_code="48058", line1="Busan Haeundae-gu", line2="7"
)


@pytest.fixture(scope="module")
async def stack(kafka_bootstrap: str, e2e_tmp: Path, require_pg: None) -> AsyncIterator[Stack]:
    async for s in start_stack(kafka_bootstrap, e2e_tmp, ("naverpay", "goodsflow")):
        yield s


def _cmd(type_: str, order_id: str, payload: object) -> Envelope:
    return new_envelope(type_, order_id, Channel.NAVERPAY, payload)  # type: ignore[arg-type]


async def _ingested(
    stack: Stack, quantity: int = 1, lag: float = 0.0, at: datetime | None = None
) -> tuple[str, str, str]:
    """(product order id, order id, line id) of a paid Naver order, once it is in the store."""
    sb = stack.sandboxes["naverpay"]
    kw: dict[str, object] = {"lag": lag}
    if at is not None:
        kw["at"] = at
    created = sb.new_paid_order(
        [{"name": "Tumbler", "quantity": quantity, "unit_price": 12000}], **kw
    )
    po = created["productOrderIds"][0]
    order_id = f"naverpay:{created['orderId']}"
    line_id = f"{order_id}:{po}"

    async def known() -> bool:
        return await stack.order(order_id) is not None

    await stack.wait_until(known, f"{order_id} ingested", timeout=60)
    return po, order_id, line_id


async def _ready_with_invoice(
    stack: Stack, order_id: str, line_id: str, **ship: object
) -> tuple[str, Envelope]:
    number = generate_valid_number(Carrier.HANJIN, random.Random(uuid.uuid4().int))
    ready = _cmd(
        "line.status",
        order_id,
        LineStatusChange(line_ids=[line_id], to_status=LineStatus.READY_TO_SHIP),
    )
    shipment = _cmd(
        "shipment.registered",
        order_id,
        ShipmentRegistered(
            line_ids=[line_id], carrier=Carrier.HANJIN, tracking_number=number, **ship
        ),  # type: ignore[arg-type]
    )
    await stack.send(ready, shipment)
    return number, shipment


def _pickup(order_id: str, line_id: str) -> Envelope:
    return _cmd(
        "pickup.reached", order_id, PickupReached(line_ids=[line_id], scanned_at=datetime.now(UTC))
    )


async def test_r15_partial_shipment_dispatches_the_whole_unit_and_records_the_collapse(
    stack: Stack,
) -> None:
    po, order_id, line_id = await _ingested(stack, quantity=3)
    _, shipment = await _ready_with_invoice(
        stack, order_id, line_id, dispatch_now=True, shipped_quantity={line_id: 1}
    )
    assert (await stack.wait_result(shipment.event_id, "succeeded"))["detail"][
        "idempotency_key"
    ].startswith("dispatch:")
    line = await stack.line(line_id)
    assert line.status == LineStatus.SHIPPING
    assert line.collapse == {"unit_id": po, "shipped_quantity": 1, "channel_quantity": 3}
    assert stack.sandboxes["naverpay"].ledger.count("dispatch", po) == 1


async def test_r15_dispatch_done_in_the_seller_centre_collapses_store_lines(stack: Stack) -> None:
    po, order_id, line_id = await _ingested(stack, quantity=2)
    stack.sandboxes["naverpay"].seller_centre_dispatch([po], "CJGLS", "123456789012")
    await stack.wait_until(
        lambda: stack.status_is(line_id, LineStatus.SHIPPING), "collapse to SHIPPING", timeout=60
    )
    line = await stack.line(line_id)
    assert line.collapse and line.collapse["by"] == "marketplace"
    assert stack.sandboxes["naverpay"].ledger.count("dispatch", po) == 0  # nothing pushed by us


async def test_r12_address_change_holds_until_released_and_the_waybill_is_reprinted(
    stack: Stack,
) -> None:
    sb = stack.sandboxes["naverpay"]
    po, order_id, line_id = await _ingested(stack)
    ready = _cmd(
        "line.status",
        order_id,
        LineStatusChange(line_ids=[line_id], to_status=LineStatus.READY_TO_SHIP),
    )
    waybill = _cmd(
        "waybill.request", order_id, WaybillRequest(line_ids=[line_id], carrier=Carrier.CJ)
    )
    await stack.send(ready, waybill)
    await stack.wait_result(waybill.event_id, "succeeded")

    sb.change_address(order_id.split(":", 1)[1], NEW_ADDRESS)

    async def held() -> bool:
        order = await stack.order(order_id)
        return bool(order and order.on_hold)

    await stack.wait_until(held, "delivery hold from the address change", timeout=60)
    order = await stack.order(order_id)
    assert order is not None and order.address["line1"] == NEW_ADDRESS.line1
    async with stack.sessions() as s:
        invoices = list(
            (await s.execute(select(Invoice).where(Invoice.line_id == line_id))).scalars()
        )
    assert invoices and all(inv.reprint_required for inv in invoices)

    again = _cmd(
        "waybill.request", order_id, WaybillRequest(line_ids=[line_id], carrier=Carrier.CJ)
    )
    pickup = _pickup(order_id, line_id)
    await stack.send(again, pickup)
    assert (await stack.wait_result(again.event_id))["rule"] == "R12"
    assert (await stack.wait_result(pickup.event_id, "refused"))["rule"] == "R12"
    assert sb.ledger.count("dispatch", po) == 0

    released = await operator.release_hold(stack.engine, order_id, by="ops-kim")
    assert released["released"] == 1
    assert released["resumed_ops"] == 0
    assert sb.ledger.count("dispatch", po) == 0

    old_number = invoices[0].tracking_number
    reprint = _cmd(
        "waybill.request", order_id, WaybillRequest(line_ids=[line_id], carrier=Carrier.CJ)
    )
    await stack.send(reprint)
    await stack.wait_result(reprint.event_id, "succeeded")
    gf = stack.sandboxes["goodsflow"]
    assert gf.ledger.count("waybill.cancelled") >= 1
    async with stack.sessions() as s:
        active = list(
            (
                await s.execute(
                    select(Invoice).where(Invoice.line_id == line_id, Invoice.deleted_at.is_(None))
                )
            ).scalars()
        )
    assert (
        len(active) == 1
        and active[0].tracking_number != old_number
        and not active[0].reprint_required
    )
    assert gf.ledger.count("waybill.registered", f"{line_id}:r1") == 1
    reprint_op = next(
        op for op in await stack.ops_of(order_id) if op.idempotency_key == f"waybill:{line_id}:r1"
    )
    assert (
        reprint_op.payload["receiver"]["line1"] == NEW_ADDRESS.line1
        and reprint_op.payload["replaces"]
    )

    await stack.send(_pickup(order_id, line_id))
    await stack.wait_until(
        lambda: stack.status_is(line_id, LineStatus.SHIPPING), "dispatch of the reprinted waybill"
    )
    assert sb.ledger.count("dispatch", po) == 1
    assert active[0].tracking_number in str(
        [e.details for e in sb.ledger.entries if e.op == "dispatch" and e.key == po]
    )


async def test_r29_open_cancel_request_parks_dispatch_until_operator_refuses_the_cancel(
    stack: Stack,
) -> None:
    sb = stack.sandboxes["naverpay"]
    po, order_id, line_id = await _ingested(stack)
    _, shipment = await _ready_with_invoice(stack, order_id, line_id)
    await stack.wait_result(shipment.event_id, "succeeded")
    sb.buyer_cancel_request(po)
    await stack.wait_until(
        lambda: stack.status_is(line_id, LineStatus.CANCEL_REQUESTED),
        "cancel request ingested",
        timeout=60,
    )

    pickup = _pickup(order_id, line_id)
    await stack.send(pickup)
    parked = await stack.wait_result(pickup.event_id, "parked")
    assert parked["rule"] == "R29"
    assert sb.ledger.count("dispatch", po) == 0

    refuse = _cmd(
        "buyer_cancel.reject",
        order_id,
        BuyerCancelDecision(line_ids=[line_id], reason="already packed"),
    )
    await stack.send(refuse)
    await stack.wait_until(
        lambda: stack.status_is(line_id, LineStatus.SHIPPING), "dispatch after operator decision"
    )
    assert sb.ledger.count("dispatch", po) == 1
    assert sb.ledger.count("cancel_refused_by_dispatch", po) == 1


async def test_r17_change_visible_late_is_applied_once(stack: Stack) -> None:
    """An order paid 9 minutes ago that shows up in the feed only now is still collected (the
    overlap window), and re-reading the window does not apply it twice."""
    at = datetime.now(UTC) - timedelta(minutes=9)
    po, order_id, line_id = await _ingested(stack, at=at, lag=9 * 60 + 3)
    async with stack.sessions() as s:
        rows = await s.scalar(
            select(func.count())
            .select_from(ChannelChangeRow)
            .where(ChannelChangeRow.order_id == order_id)
        )
    assert rows == 1
    replay = await operator.replay_ingest(
        stack.engine, _client(stack), datetime.now(UTC) - timedelta(minutes=15), datetime.now(UTC)
    )
    assert replay.get("applied", 0) == 0 and replay["duplicate"] >= 1
    assert len(await stack.lines_of(order_id)) == 1


async def test_r13_dispatch_delay_only_while_preparing(stack: Stack) -> None:
    sb = stack.sandboxes["naverpay"]
    po, order_id, line_id = await _ingested(stack)
    delay = _cmd(
        "dispatch.delay",
        order_id,
        DispatchDelay(
            line_ids=[line_id],
            due_date=date.today() + timedelta(days=5),
            reason="PRODUCT_PREPARE",
            detail="restock",
        ),
    )
    await stack.send(delay)
    await stack.wait_result(delay.event_id, "succeeded")
    assert sb.ledger.count("delay", po) == 1

    ready = _cmd(
        "line.status",
        order_id,
        LineStatusChange(line_ids=[line_id], to_status=LineStatus.READY_TO_SHIP),
    )
    late = _cmd(
        "dispatch.delay",
        order_id,
        DispatchDelay(
            line_ids=[line_id],
            due_date=date.today() + timedelta(days=6),
            reason="PRODUCT_PREPARE",
            detail="again",
        ),
    )
    await stack.send(ready, late)
    refused = await stack.wait_result(late.event_id)
    assert refused["outcome"] == "refused" and refused["rule"] == "R13"
    assert sb.ledger.count("delay", po) == 1


async def test_r16_seller_cancel_cancels_the_whole_line(stack: Stack) -> None:
    sb = stack.sandboxes["naverpay"]
    po, order_id, line_id = await _ingested(stack, quantity=4)
    cancel = _cmd("seller.cancel", order_id, SellerCancel(line_ids=[line_id], reason="SOLD_OUT"))
    await stack.send(cancel)
    await stack.wait_result(cancel.event_id, "succeeded")
    line = await stack.line(line_id)
    assert line.status == LineStatus.CANCELED and line.quantity == 4
    assert sb.ledger.count("seller_cancel", po) == 1


async def test_s4_marketplace_outage_is_retried_and_caught_up(stack: Stack) -> None:
    sb = stack.sandboxes["naverpay"]
    po, order_id, line_id = await _ingested(stack)
    _, shipment = await _ready_with_invoice(stack, order_id, line_id)
    await stack.wait_result(shipment.event_id, "succeeded")
    sb.faults.update({"outage_seconds": 4, "error_status": 503})
    pickup = _pickup(order_id, line_id)
    await stack.send(pickup)
    retrying = await stack.wait_result(pickup.event_id, "retrying")
    assert retrying["error"]
    await stack.wait_until(
        lambda: stack.status_is(line_id, LineStatus.SHIPPING),
        "dispatch after the outage",
        timeout=60,
    )
    assert sb.ledger.count("dispatch", po) == 1


def _client(stack: Stack):  # noqa: ANN202
    from connectors.naverpay.client import NaverPayClient

    sb = stack.sandboxes["naverpay"]
    return NaverPayClient(sb.url, "sandbox-client", sb_secret(sb))


def sb_secret(sb: object) -> str:
    from channelsync.settings import Settings

    return Settings().naverpay_client_secret.get_secret_value()
