"""Buyer cancel requests (R25): outcome by state, approval, decline, claim state (R29)."""

from __future__ import annotations

import httpx
import pytest

from connectors.contract import UnsupportedOperationError
from connectors.qoo10 import codes
from connectors.qoo10.client import Qoo10Client
from connectors.qoo10.sandbox import Qoo10Sandbox
from store.domain import ClaimType
from tests.qoo10.helpers import around_now, confirmed_order, dispatched_order
from topics.changes import ChangeKind


async def test_r25_buyer_cancel_outcome_depends_on_the_order_state(
    sandbox: Qoo10Sandbox, client: Qoo10Client
) -> None:
    """Over the control API: new → refunded at once; ship date entered → request; dispatched → 409."""
    new = sandbox.new_order()
    prepared = await confirmed_order(sandbox, client)
    shipped = await dispatched_order(sandbox, client)
    async with httpx.AsyncClient(base_url=sandbox.url or "") as http:
        answers = [
            await http.post("/_control/buyer/cancel", json={"order_no": no})
            for no in (new, prepared, shipped)
        ]
    assert [a.status_code for a in answers] == [200, 200, 409]
    assert [a.json().get("outcome") for a in answers[:2]] == ["canceled", "requested"]


async def test_r25_claim_states_show_the_open_request(
    sandbox: Qoo10Sandbox, client: Qoo10Client
) -> None:
    prepared = await confirmed_order(sandbox, client)
    shipped = await dispatched_order(sandbox, client)
    sandbox.buyer_cancel(prepared)
    states = await client.claim_states([prepared, shipped, "999"])
    assert set(states) == {prepared, shipped}
    assert states[prepared].open_cancel_request
    assert states[prepared].claim_type == ClaimType.CANCEL.value
    assert states[prepared].claim_status == codes.ClaimCode.CANCEL_REQUESTED.value
    assert not states[prepared].dispatched
    assert states[shipped].dispatched and not states[shipped].open_cancel_request
    assert states[shipped].status == codes.ShippingStatus.SHIPPING.value


async def test_r25_approve_cancel_request_cancels_the_order(
    sandbox: Qoo10Sandbox, client: Qoo10Client
) -> None:
    order_no = await confirmed_order(sandbox, client)
    sandbox.buyer_cancel(order_no)
    [result] = await client.approve_cancel([order_no])
    assert result.ok
    assert sandbox.ledger.count("cancel_approved", order_no) == 1
    assert not (await client.claim_states([order_no]))[order_no].open_cancel_request
    changes = await client.changes_since(*around_now())
    assert ChangeKind.CANCELED in [c.kind for c in changes if order_no in c.unit_ids]


async def test_r25_approve_is_idempotent(sandbox: Qoo10Sandbox, client: Qoo10Client) -> None:
    order_no = await confirmed_order(sandbox, client)
    sandbox.buyer_cancel(order_no)
    await client.approve_cancel([order_no])
    [again] = await client.approve_cancel([order_no])
    assert again.ok
    assert sandbox.ledger.count("cancel_approved", order_no) == 1


async def test_r25_approve_without_an_open_request_refused(
    sandbox: Qoo10Sandbox, client: Qoo10Client
) -> None:
    order_no = await confirmed_order(sandbox, client)
    [result] = await client.approve_cancel([order_no])
    assert (result.ok, result.code, result.detail["rule"]) == (False, "NO_OPEN_REQUEST", "R25")
    assert not sandbox.order(order_no).canceled


async def test_r25_reject_has_no_qapi_method(sandbox: Qoo10Sandbox, client: Qoo10Client) -> None:
    order_no = await confirmed_order(sandbox, client)
    sandbox.buyer_cancel(order_no)
    with pytest.raises(UnsupportedOperationError) as caught:
        await client.reject_cancel([order_no], "already packed")
    assert "QSM" in str(caught.value)
    assert sandbox.order(order_no).open_cancel_request  # nothing happened


async def test_r25_request_declined_in_qsm_is_ingested_as_closed(
    sandbox: Qoo10Sandbox, client: Qoo10Client
) -> None:
    order_no = await confirmed_order(sandbox, client)
    sandbox.buyer_cancel(order_no)
    async with httpx.AsyncClient(base_url=sandbox.url or "") as http:
        resp = await http.post("/_control/qsm/reject_cancel", json={"order_no": order_no})
    assert resp.status_code == 200
    changes = await client.changes_since(*around_now())
    mine = [c.kind for c in changes if order_no in c.unit_ids]
    assert ChangeKind.CANCEL_WITHDRAWN in mine and ChangeKind.CANCELED not in mine


@pytest.mark.parametrize("operation", ["hold_return", "release_return_hold", "approve_return"])
async def test_operations_qoo10_lacks_are_unsupported(client: Qoo10Client, operation: str) -> None:
    with pytest.raises(UnsupportedOperationError):
        await getattr(client, operation)(["1"])
