"""End to end on Qoo10: ingestion of new orders, R25 (a buyer cancel request blocks dispatch
until withdrawn), R23 (seller cancel: message first, seller-fault reasons only), S1 (a shipment
event delivered three times dispatches once)."""

from __future__ import annotations

import random
import uuid
from collections.abc import AsyncIterator
from pathlib import Path

import pytest

from store.carriers import Carrier
from store.domain import Channel, LineStatus
from store.invoices import generate_valid_number
from tests.e2e.conftest import start_stack
from tests.e2e.stack import Stack
from topics.commands import (
    LineStatusChange,
    OrderConfirm,
    PickupReached,
    SellerCancel,
    ShipmentRegistered,
)
from topics.envelope import new_envelope

pytestmark = pytest.mark.integration


@pytest.fixture(scope="module")
async def stack(kafka_bootstrap: str, e2e_tmp: Path, require_pg: None) -> AsyncIterator[Stack]:
    async for s in start_stack(kafka_bootstrap, e2e_tmp, ("qoo10",)):
        yield s


async def _ingested(stack: Stack, qty: int = 1) -> tuple[str, str, str]:
    """A paid Qoo10 order created in the sandbox and ingested: (order_no, order id, line id)."""
    sb = stack.sandboxes["qoo10"]
    order_no = sb.new_order(qty=qty, sku=f"SKU-{uuid.uuid4().hex[:4]}")
    pack = sb.order(order_no).pack_no
    order_id, line_id = f"qoo10:{pack}", f"qoo10:{pack}:{order_no}"

    async def known() -> bool:
        return await stack.order(order_id) is not None

    await stack.wait_until(known, f"order {order_id} ingested")
    return order_no, order_id, line_id


async def _confirm_and_invoice(stack: Stack, order_id: str, line_id: str) -> tuple[str, object]:
    confirm = new_envelope(
        "order.confirm", order_id, Channel.QOO10, OrderConfirm(line_ids=[line_id])
    )
    ready = new_envelope(
        "line.status",
        order_id,
        Channel.QOO10,
        LineStatusChange(line_ids=[line_id], to_status=LineStatus.READY_TO_SHIP),
    )
    number = generate_valid_number(Carrier.YAMATO, random.Random(uuid.uuid4().int))
    ship = new_envelope(
        "shipment.registered",
        order_id,
        Channel.QOO10,
        ShipmentRegistered(line_ids=[line_id], carrier=Carrier.YAMATO, tracking_number=number),
    )
    await stack.send(confirm, ready, ship)
    assert (await stack.wait_result(confirm.event_id))["outcome"] == "succeeded"
    assert (await stack.wait_result(ship.event_id))["outcome"] == "succeeded"
    return number, ship


async def test_ingests_new_paid_orders(stack: Stack) -> None:
    _, order_id, line_id = await _ingested(stack, qty=2)
    line = await stack.line(line_id)
    assert line.status == LineStatus.PREPARING and line.quantity == 2


async def test_s1_same_shipment_event_three_times_dispatches_once(stack: Stack) -> None:
    order_no, order_id, line_id = await _ingested(stack)
    await _confirm_and_invoice(stack, order_id, line_id)
    pickup = new_envelope(
        "pickup.reached",
        order_id,
        Channel.QOO10,
        PickupReached(line_ids=[line_id], scanned_at=_now()),
    )
    await stack.send(pickup, pickup, pickup)
    await stack.wait_until(lambda: stack.status_is(line_id, LineStatus.SHIPPING), "SHIPPING")
    results = (await stack.results())[str(pickup.event_id)]
    assert [r["outcome"] for r in results].count("succeeded") == 1
    assert stack.sandboxes["qoo10"].ledger.count("dispatch", order_no) == 1


async def test_r25_open_cancel_request_parks_dispatch_until_withdrawn(stack: Stack) -> None:
    sb = stack.sandboxes["qoo10"]
    order_no, order_id, line_id = await _ingested(stack)
    await _confirm_and_invoice(stack, order_id, line_id)
    assert sb.buyer_cancel(order_no) == "requested"  # shipping prepared: needs approval
    await stack.wait_until(
        lambda: stack.status_is(line_id, LineStatus.CANCEL_REQUESTED), "CANCEL_REQUESTED ingested"
    )

    pickup = new_envelope(
        "pickup.reached",
        order_id,
        Channel.QOO10,
        PickupReached(line_ids=[line_id], scanned_at=_now()),
    )
    await stack.send(pickup)
    parked = await stack.wait_result(pickup.event_id, "parked")
    assert parked["rule"] in ("R25", "R29")
    assert sb.ledger.count("dispatch", order_no) == 0

    sb.withdraw_cancel(order_no)
    await stack.wait_until(
        lambda: stack.status_is(line_id, LineStatus.SHIPPING), "dispatch after withdrawal"
    )
    assert sb.ledger.count("dispatch", order_no) == 1


async def test_r23_buyer_fault_reason_needs_a_request_and_message_goes_first(stack: Stack) -> None:
    sb = stack.sandboxes["qoo10"]
    order_no, order_id, line_id = await _ingested(stack)
    wrong = new_envelope(
        "seller.cancel",
        order_id,
        Channel.QOO10,
        SellerCancel(line_ids=[line_id], reason="CHANGED_MIND", buyer_message="sorry"),
    )
    await stack.send(wrong)
    refused = await stack.wait_result(wrong.event_id)
    assert refused["outcome"] == "refused" and refused["rule"] == "R23"

    ok = new_envelope(
        "seller.cancel",
        order_id,
        Channel.QOO10,
        SellerCancel(
            line_ids=[line_id], reason="SOLD_OUT", buyer_message="Out of stock, refunded."
        ),
    )
    await stack.send(ok)
    done = await stack.wait_result(ok.event_id, "succeeded")
    assert done["detail"]["attempts"] == 1
    assert (await stack.line(line_id)).status == LineStatus.CANCELED
    ops = [e.op for e in sb.ledger.entries if e.key == order_no]
    assert ops.index("message") < ops.index("seller_cancel")


async def test_r23_failed_buyer_message_blocks_the_cancel(stack: Stack) -> None:
    sb = stack.sandboxes["qoo10"]
    order_no, order_id, line_id = await _ingested(stack)
    sb.fail_messages(count=50)
    cancel = new_envelope(
        "seller.cancel",
        order_id,
        Channel.QOO10,
        SellerCancel(line_ids=[line_id], reason="SOLD_OUT", buyer_message="Out of stock."),
    )
    await stack.send(cancel)
    failed = await stack.wait_result(cancel.event_id, "failed")
    assert failed["error"]
    assert sb.ledger.count("seller_cancel", order_no) == 0
    assert (await stack.line(line_id)).status == LineStatus.PREPARING
    sb.fail_messages(count=0)


def _now():  # noqa: ANN202
    from datetime import UTC, datetime

    return datetime.now(UTC)
