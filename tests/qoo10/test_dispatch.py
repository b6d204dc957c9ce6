"""Order confirmation (estimated ship date) and dispatch (carrier + tracking number)."""

from __future__ import annotations

from datetime import date, timedelta

import pytest

from connectors.contract import UnsupportedOperationError
from connectors.qoo10 import codes
from connectors.qoo10.client import Qoo10Client
from connectors.qoo10.sandbox import Qoo10Sandbox
from store.carriers import Carrier, channel_code
from tests.qoo10.helpers import confirmed_order, dispatched_order, item, ship_date


async def test_confirm_enters_the_estimated_ship_date(
    sandbox: Qoo10Sandbox, client: Qoo10Client
) -> None:
    order_no = sandbox.new_order()
    day = ship_date(4)
    [result] = await client.confirm_orders(
        [order_no], day, delay_type="CUSTOM_BUILD", memo="made to order"
    )
    assert result.ok
    order = sandbox.order(order_no)
    assert (order.status, order.est_ship_date) == (codes.ShippingStatus.PREPARED, day)
    assert sandbox.ledger.entries[-1].details["delay"] == "2"


async def test_confirm_again_updates_the_date_without_a_second_confirmation(
    sandbox: Qoo10Sandbox, client: Qoo10Client
) -> None:
    order_no = await confirmed_order(sandbox, client)
    [result] = await client.confirm_orders([order_no], ship_date(6))
    assert result.ok
    assert sandbox.ledger.count("confirm", order_no) == 1
    assert sandbox.ledger.count("est_ship_date_changed", order_no) == 1
    assert sandbox.order(order_no).est_ship_date == ship_date(6)


async def test_confirm_refuses_a_ship_date_not_after_today_jst(
    sandbox: Qoo10Sandbox, client: Qoo10Client
) -> None:
    order_no = sandbox.new_order()
    [result] = await client.confirm_orders([order_no], ship_date(0))
    assert not result.ok
    assert result.code == str(codes.EST_SHIP_DATE_NOT_FUTURE)
    assert sandbox.order(order_no).status == codes.ShippingStatus.REQUESTED


async def test_confirm_after_dispatch_is_a_conflict(
    sandbox: Qoo10Sandbox, client: Qoo10Client
) -> None:
    order_no = await dispatched_order(sandbox, client)
    [result] = await client.confirm_orders([order_no], ship_date())
    assert (result.ok, result.code, result.detail["error"]) == (
        False,
        str(codes.NOT_SHIPPING_REQUEST),
        "ConflictError",
    )


async def test_dispatch_sends_the_carrier_name_and_tracking_number(
    sandbox: Qoo10Sandbox, client: Qoo10Client
) -> None:
    order_no = await confirmed_order(sandbox, client)
    [result] = await client.dispatch([item(order_no, "9988-7766-5544", Carrier.SAGAWA)])
    assert result.ok
    order = sandbox.order(order_no)
    assert order.status == codes.ShippingStatus.SHIPPING
    assert (order.carrier, order.tracking_no) == (
        channel_code(Carrier.SAGAWA, "qoo10"),
        "9988-7766-5544",
    )
    assert sandbox.ledger.count("dispatch", order_no) == 1


async def test_s1_repeated_dispatch_has_one_effect(
    sandbox: Qoo10Sandbox, client: Qoo10Client
) -> None:
    order_no = await confirmed_order(sandbox, client)
    for _ in range(3):
        [result] = await client.dispatch([item(order_no)])
        assert result.ok
    assert sandbox.ledger.count("dispatch", order_no) == 1


async def test_dispatch_answers_one_result_per_unit(
    sandbox: Qoo10Sandbox, client: Qoo10Client
) -> None:
    good = await confirmed_order(sandbox, client)
    unknown = "123"
    results = await client.dispatch([item(good), item(unknown)])
    assert [(r.unit_id, r.ok) for r in results] == [(good, True), (unknown, False)]
    assert results[1].code == "NOT_FOUND"


async def test_r25_client_refuses_dispatch_while_a_cancel_request_is_open(
    sandbox: Qoo10Sandbox, client: Qoo10Client
) -> None:
    order_no = await confirmed_order(sandbox, client)
    sandbox.buyer_cancel(order_no)
    [result] = await client.dispatch([item(order_no)])
    assert (result.ok, result.code) == (False, "R25")
    sends = (codes.SET_SENDING_INFO, codes.SET_SENDING_INFO_BULK)
    assert [sandbox.requests[m] for m in sends] == [0, 0]  # never sent


async def test_r25_marketplace_refuses_dispatch_while_a_cancel_request_is_open(
    sandbox: Qoo10Sandbox, client: Qoo10Client
) -> None:
    order_no = await confirmed_order(sandbox, client)
    sandbox.buyer_cancel(order_no)
    [result] = await client.dispatch([item(order_no)], check_claims=False)
    assert (result.ok, result.code, result.detail["rule"]) == (
        False,
        str(codes.ORDER_STATUS_INVALID),
        "R25",
    )
    assert result.detail["error"] == "ConflictError"
    assert sandbox.ledger.count("dispatch", order_no) == 0


@pytest.mark.parametrize("how", ["withdraw", "qsm_reject"])
async def test_r25_dispatch_allowed_once_the_request_is_closed(
    sandbox: Qoo10Sandbox, client: Qoo10Client, how: str
) -> None:
    order_no = await confirmed_order(sandbox, client)
    sandbox.buyer_cancel(order_no)
    sandbox.withdraw_cancel(order_no) if how == "withdraw" else sandbox.qsm_reject_cancel(order_no)
    [result] = await client.dispatch([item(order_no)])
    assert result.ok
    assert sandbox.ledger.count("dispatch", order_no) == 1


async def test_r04_partial_quantity_dispatch_refused(
    sandbox: Qoo10Sandbox, client: Qoo10Client
) -> None:
    order_no = await confirmed_order(sandbox, client, qty=3)
    [result] = await client.dispatch([item(order_no)], quantities={order_no: 2})
    assert (result.ok, result.code) == (False, "R04")
    assert "qoo10" in result.message
    assert sandbox.ledger.count("dispatch", order_no) == 0
    [whole] = await client.dispatch([item(order_no)], quantities={order_no: 3})
    assert whole.ok


async def test_tracking_number_longer_than_the_api_allows_refused(
    sandbox: Qoo10Sandbox, client: Qoo10Client
) -> None:
    order_no = await confirmed_order(sandbox, client)
    [result] = await client.dispatch([item(order_no, "1" * 51)])
    assert (result.ok, result.code) == (False, "TRACKING")
    sends = (codes.SET_SENDING_INFO, codes.SET_SENDING_INFO_BULK)
    assert [sandbox.requests[m] for m in sends] == [0, 0]


async def test_r13_dispatch_delay_is_not_a_qoo10_operation(client: Qoo10Client) -> None:
    with pytest.raises(UnsupportedOperationError):
        await client.delay_dispatch(["1"], date.today() + timedelta(days=3), "ETC", "late")
