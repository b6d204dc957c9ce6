"""Seller cancel: the buyer message first (R23), reasons (R23), after dispatch (R24), whole lines (R04)."""

from __future__ import annotations

import pytest

from connectors.errors import ConflictError
from connectors.qoo10 import codes
from connectors.qoo10.client import Qoo10Client
from connectors.qoo10.errors import BuyerMessageFailedError, SellerCancelRefusedError
from connectors.qoo10.rules import CancelPath
from connectors.qoo10.sandbox import Qoo10Sandbox
from store.errors import SplitNotAllowedError
from tests.qoo10.helpers import around_now, confirmed_order, dispatched_order
from topics.changes import ChangeKind


def ops(sandbox: Qoo10Sandbox, order_no: str) -> list[str]:
    return [e.op for e in sandbox.ledger.entries if e.key == order_no]


@pytest.mark.parametrize(
    ("reason", "code"), [("SOLD_OUT", ""), ("UNDELIVERABLE_AREA", "2"), ("DELAYED_DELIVERY", "3")]
)
async def test_r23_seller_fault_reasons_cancel_without_a_buyer_request(
    sandbox: Qoo10Sandbox, client: Qoo10Client, reason: str, code: str
) -> None:
    order_no = sandbox.new_order()
    done = await client.seller_cancel(order_no, reason, "Sorry, we must cancel your order.")
    assert (done.path, done.cancel_reason_code) == (CancelPath.CANCEL, code)
    [entry] = [e for e in sandbox.ledger.entries if e.op == "seller_cancel"]
    assert entry.details["reason"] == code
    assert sandbox.order(order_no).canceled


async def test_r23_buyer_message_is_sent_before_the_cancel(
    sandbox: Qoo10Sandbox, client: Qoo10Client
) -> None:
    order_no = await confirmed_order(sandbox, client)
    [result] = await client.cancel([order_no], "SOLD_OUT", "Out of stock, sorry.")
    assert result.ok
    assert ops(sandbox, order_no)[-2:] == ["message", "seller_cancel"]
    message = next(e for e in sandbox.ledger.entries if e.op == "message")
    assert message.details["text"] == "Out of stock, sorry."


async def test_r23_failed_message_blocks_the_cancel(
    sandbox: Qoo10Sandbox, client: Qoo10Client
) -> None:
    order_no = sandbox.new_order()
    sandbox.fail_messages(1)
    with pytest.raises(BuyerMessageFailedError) as caught:
        await client.seller_cancel(order_no, "SOLD_OUT", "Out of stock.")
    assert caught.value.rule == "R23"
    assert not caught.value.retryable
    assert sandbox.ledger.count("seller_cancel") == 0
    assert not sandbox.order(order_no).canceled


async def test_r23_failed_message_reported_per_item_by_cancel(
    sandbox: Qoo10Sandbox, client: Qoo10Client
) -> None:
    failing, fine = sandbox.new_order(), sandbox.new_order()
    sandbox.fail_messages(1)
    results = await client.cancel([failing, fine], "SOLD_OUT", "Out of stock.")
    assert [(r.unit_id, r.ok, r.code) for r in results] == [
        (failing, False, "R23"),
        (fine, True, None),
    ]
    assert results[0].detail["message_sent"] is False
    assert sandbox.ledger.count("seller_cancel") == 1


async def test_r23_transient_message_failure_is_retryable_and_still_blocks(
    sandbox: Qoo10Sandbox, client: Qoo10Client
) -> None:
    order_no = sandbox.new_order()
    sandbox.fail_messages(client.retry.max_attempts, codes.SYSTEM_BUSY)
    with pytest.raises(BuyerMessageFailedError) as caught:
        await client.seller_cancel(order_no, "SOLD_OUT", "Out of stock.")
    assert caught.value.retryable
    assert sandbox.ledger.count("message_failed", order_no) == client.retry.max_attempts
    assert sandbox.ledger.count("seller_cancel") == 0


async def test_r23_message_already_sent_is_not_sent_twice_on_retry(
    sandbox: Qoo10Sandbox, client: Qoo10Client
) -> None:
    order_no = sandbox.new_order()
    await client.send_buyer_message(order_no, "We will cancel.")
    await client.seller_cancel(order_no, "SOLD_OUT", "We will cancel.", message_sent=True)
    assert sandbox.ledger.count("message", order_no) == 1
    assert sandbox.ledger.count("seller_cancel", order_no) == 1


@pytest.mark.parametrize("reason", ["CHANGED_MIND", "OPTION_CHANGE"])
async def test_r23_buyer_fault_reason_needs_an_open_buyer_request(
    sandbox: Qoo10Sandbox, client: Qoo10Client, reason: str
) -> None:
    order_no = await confirmed_order(sandbox, client)
    with pytest.raises(SellerCancelRefusedError) as caught:
        await client.seller_cancel(order_no, reason, "Cancelled as you asked.")
    assert caught.value.rule == "R23"
    assert sandbox.ledger.count("message", order_no) == 0  # refused before the message

    sandbox.buyer_cancel(order_no)
    done = await client.seller_cancel(order_no, reason, "Cancelled as you asked.")
    assert done.cancel_reason_code == codes.BUYER_REQUEST_CANCEL_REASON
    assert sandbox.order(order_no).canceled


async def test_r23_marketplace_refuses_a_buyer_reason_without_request(
    sandbox: Qoo10Sandbox, client: Qoo10Client
) -> None:
    order_no = sandbox.new_order()
    with pytest.raises(ConflictError) as caught:
        await client.qapi(codes.SET_CANCEL_PROCESS, {"ContrNo": order_no, "CancelReason": "1"})
    assert caught.value.code == str(codes.ORDER_STATUS_INVALID)
    assert not sandbox.order(order_no).canceled


@pytest.mark.parametrize("message", ["", "   "])
async def test_r23_cancel_without_a_buyer_message_refused(
    sandbox: Qoo10Sandbox, client: Qoo10Client, message: str
) -> None:
    order_no = sandbox.new_order()
    [result] = await client.cancel([order_no], "SOLD_OUT", message)
    assert (result.ok, result.code) == (False, "R23")
    assert sandbox.ledger.count("seller_cancel") == 0


async def test_r23_unknown_reason_refused(sandbox: Qoo10Sandbox, client: Qoo10Client) -> None:
    order_no = sandbox.new_order()
    [result] = await client.cancel([order_no], "OTHER", "Cancelled.")
    assert (result.ok, result.code) == (False, "R23")
    assert sandbox.ledger.count("message") == 0


async def test_r24_after_dispatch_only_a_delivery_delay_refund(
    sandbox: Qoo10Sandbox, client: Qoo10Client
) -> None:
    order_no = await dispatched_order(sandbox, client)
    with pytest.raises(SellerCancelRefusedError) as caught:
        await client.seller_cancel(order_no, "SOLD_OUT", "Sorry.")
    assert caught.value.rule == "R24"
    assert sandbox.ledger.count("message", order_no) == 0

    done = await client.seller_cancel(order_no, "DELAYED_DELIVERY", "Delivery is late, refunded.")
    assert done.path == CancelPath.REFUND_AFTER_DISPATCH
    assert ops(sandbox, order_no)[-2:] == ["message", "refund_after_dispatch"]
    changes = await client.changes_since(*around_now())
    assert ChangeKind.RETURNED in [c.kind for c in changes if order_no in c.unit_ids]


async def test_r24_marketplace_refuses_other_reasons_after_dispatch(
    sandbox: Qoo10Sandbox, client: Qoo10Client
) -> None:
    order_no = await dispatched_order(sandbox, client)
    with pytest.raises(ConflictError) as caught:
        await client.qapi(codes.SET_CANCEL_PROCESS, {"ContrNo": order_no, "CancelReason": "2"})
    assert caught.value.code == str(codes.ORDER_STATUS_INVALID)
    assert sandbox.ledger.count("refund_after_dispatch") == 0


async def test_s1_cancel_of_a_cancelled_order_sends_nothing_again(
    sandbox: Qoo10Sandbox, client: Qoo10Client
) -> None:
    order_no = sandbox.new_order()
    for _ in range(2):
        [result] = await client.cancel([order_no], "SOLD_OUT", "Out of stock.")
        assert result.ok
    assert sandbox.ledger.count("message", order_no) == 1
    assert sandbox.ledger.count("seller_cancel", order_no) == 1


async def test_r04_partial_cancel_refused(sandbox: Qoo10Sandbox, client: Qoo10Client) -> None:
    order_no = sandbox.new_order(qty=2)
    with pytest.raises(SplitNotAllowedError) as caught:
        await client.seller_cancel(order_no, "SOLD_OUT", "Partly out of stock.", quantity=1)
    assert caught.value.rule == "R04"
    assert sandbox.ledger.count("message") == 0
    assert sandbox.ledger.count("seller_cancel") == 0
