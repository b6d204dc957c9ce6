"""Bulk dispatch (SetSendingInfoBulk) and the bulk claim view (GetClaimInfo_V3) of a batch."""

from __future__ import annotations

import json
from datetime import UTC, datetime, timedelta

import pytest

from connectors.errors import RetryableError, ValidationError
from connectors.qoo10 import codes
from connectors.qoo10.client import Qoo10Client
from connectors.qoo10.dispatch import NOT_ATTEMPTED, UNKNOWN_OUTCOME
from connectors.qoo10.mapping import UNREAD_STATUS
from connectors.qoo10.sandbox import Qoo10Sandbox
from store.carriers import Carrier, channel_code
from store.domain import ClaimType
from tests.qoo10.helpers import confirmed_order, dispatched_order, item, make_client

SENDS = (codes.SET_SENDING_INFO, codes.SET_SENDING_INFO_BULK)


def sends(sandbox: Qoo10Sandbox) -> list[int]:
    """(SetSendingInfo, SetSendingInfoBulk) HTTP requests so far."""
    return [sandbox.requests[m] for m in SENDS]


async def test_bulk_dispatch_sends_the_whole_batch_in_one_call(
    sandbox: Qoo10Sandbox, client: Qoo10Client
) -> None:
    orders = [await confirmed_order(sandbox, client) for _ in range(6)]
    batch = [item(no, f"1000-2000-{i:04d}", Carrier.SAGAWA) for i, no in enumerate(orders)]
    results = await client.dispatch(batch, check_claims=False)
    assert [(r.unit_id, r.ok) for r in results] == [(no, True) for no in orders]
    assert sends(sandbox) == [0, 1]
    for i, no in enumerate(orders):
        order = sandbox.order(no)
        assert order.status == codes.ShippingStatus.SHIPPING
        assert (order.carrier, order.tracking_no) == (
            channel_code(Carrier.SAGAWA, "qoo10"),
            f"1000-2000-{i:04d}",
        )
        assert sandbox.ledger.counts[("dispatch", no)] == 1


async def test_s1_bulk_dispatch_repeated_has_one_effect(
    sandbox: Qoo10Sandbox, client: Qoo10Client
) -> None:
    orders = [await confirmed_order(sandbox, client) for _ in range(5)]
    for _ in range(2):
        results = await client.dispatch([item(no) for no in orders], check_claims=False)
        assert all(r.ok for r in results)
    assert [sandbox.ledger.counts[("dispatch", no)] for no in orders] == [1] * 5


async def test_bulk_dispatch_mixed_per_item_outcomes(
    sandbox: Qoo10Sandbox, client: Qoo10Client
) -> None:
    """Each order gets its own result from its own answer row; refusals do not stop the rest."""
    good = [await confirmed_order(sandbox, client) for _ in range(2)]
    requested = await confirmed_order(sandbox, client)
    sandbox.buyer_cancel(requested)  # R25: open request, refused by the marketplace (-10004)
    delivered = await dispatched_order(sandbox, client)
    sandbox.deliver(delivered)
    busy = await confirmed_order(sandbox, client)
    sandbox.inject_item_code(busy, codes.SYSTEM_BUSY)
    odd = await confirmed_order(sandbox, client)
    sandbox.inject_item_code(odd, -10103)  # an undocumented per-row code
    unknown = "123"
    batch = [good[0], requested, delivered, busy, unknown, odd, good[1]]
    items = [item(no) for no in batch] + [item("456", tracking="x" * 51)]
    results = {r.unit_id: r for r in await client.dispatch(items, check_claims=False)}

    assert sends(sandbox)[1] == 2  # dispatched_order's own call + this batch
    assert [results[no].ok for no in good] == [True, True]
    assert [sandbox.ledger.counts[("dispatch", no)] for no in good] == [1, 1]
    r25 = results[requested]
    assert (r25.ok, r25.code, r25.detail["rule"], r25.retryable) == (
        False,
        str(codes.ORDER_STATUS_INVALID),
        "R25",
        False,
    )
    assert sandbox.ledger.counts[("dispatch", requested)] == 0
    assert (results[delivered].ok, results[delivered].code) == (
        False,
        str(codes.ORDER_STATUS_INVALID),
    )
    assert (results[busy].ok, results[busy].retryable) == (False, True)
    assert results[busy].code == str(codes.SYSTEM_BUSY)
    assert sandbox.ledger.counts[("dispatch", busy)] == 0
    assert (results[unknown].ok, results[unknown].code, results[unknown].retryable) == (
        False,
        str(codes.SELLER_OR_ORDER_INVALID),
        False,
    )
    assert results[unknown].detail["error"] == "ValidationError"
    assert (results[odd].ok, results[odd].retryable, results[odd].code) == (False, False, "-10103")
    assert (results["456"].ok, results["456"].code) == (False, "TRACKING")
    assert list(results) == [*batch, "456"]


async def test_bulk_dispatch_row_missing_from_the_answer_is_never_a_success(
    sandbox: Qoo10Sandbox, client: Qoo10Client
) -> None:
    """The sandbox applies the row but loses it from the answer: unknown outcome, retryable;
    sending again (same invoice) is accepted without a second effect."""
    orders = [await confirmed_order(sandbox, client) for _ in range(3)]
    sandbox.drop_item_rows(orders[1])
    results = await client.dispatch([item(no) for no in orders], check_claims=False)
    assert [r.ok for r in results] == [True, False, True]
    assert (results[1].code, results[1].retryable) == (UNKNOWN_OUTCOME, True)
    assert sandbox.ledger.counts[("dispatch", orders[1])] == 1
    [again] = await client.dispatch([item(orders[1])], check_claims=False)
    assert again.ok
    assert sandbox.ledger.counts[("dispatch", orders[1])] == 1


async def test_bulk_dispatch_whole_call_refusal_is_no_success_for_any_item(
    sandbox: Qoo10Sandbox, client: Qoo10Client
) -> None:
    """-10012 means "already done" for order confirmation, not for a dispatch."""
    orders = [await confirmed_order(sandbox, client) for _ in range(2)]
    sandbox.inject_result_code(codes.SET_SENDING_INFO_BULK, codes.ALREADY_CONFIRMED)
    results = await client.dispatch([item(no) for no in orders], check_claims=False)
    assert [(r.ok, r.code) for r in results] == [(False, str(codes.ALREADY_CONFIRMED))] * 2
    assert sandbox.ledger.count("dispatch") == 0


async def test_bulk_dispatch_chunks_at_500_orders(
    sandbox: Qoo10Sandbox, client: Qoo10Client
) -> None:
    """1001 orders: three calls (500 + 500 + 1); the sandbox refuses any call over 500 rows."""
    assert Qoo10Client.max_dispatch_batch == codes.MAX_BULK_ROWS == 500
    orders = [sandbox.new_order() for _ in range(1001)]
    results = await client.dispatch([item(no) for no in orders], check_claims=False)
    assert all(r.ok for r in results) and len(results) == 1001
    assert sends(sandbox) == [0, 3]
    assert sandbox.ledger.count("dispatch") == 1001


async def test_sandbox_refuses_a_bulk_call_over_500_rows(
    sandbox: Qoo10Sandbox, client: Qoo10Client
) -> None:
    rows = [{"OrderNo": sandbox.new_order(), "ShippingCorp": "Qxpress", "TrackingNo": "1"}] * 501
    with pytest.raises(ValidationError) as caught:
        await client.qapi(codes.SET_SENDING_INFO_BULK, {"ShippingInfoJson": json.dumps(rows)})
    assert caught.value.code == str(codes.BULK_TOO_LARGE)
    assert sandbox.ledger.count("dispatch") == 0


async def test_s4_retryable_outage_mid_batch(sandbox: Qoo10Sandbox, client: Qoo10Client) -> None:
    """The first chunk is sent, then the service goes down: the chunk whose call exhausted its
    retries is retryable, the chunk after it NOT_ATTEMPTED; nothing is reported done that was
    not, and a later retry of the whole batch dispatches each order exactly once."""
    client.max_dispatch_batch = 3
    orders = [sandbox.new_order() for _ in range(8)]

    def outage_after_first_chunk(endpoint: str, outcome: str, seconds: float) -> None:
        if endpoint == codes.SET_SENDING_INFO_BULK and outcome == "ok":
            sandbox.faults.update({"outage_seconds": 30})

    client.observer = outage_after_first_chunk
    results = await client.dispatch([item(no) for no in orders], check_claims=False)
    client.observer = None
    sandbox.faults.clear()

    assert [r.ok for r in results] == [True] * 3 + [False] * 5
    assert all(r.retryable for r in results[3:])
    assert [r.code for r in results[6:]] == [NOT_ATTEMPTED] * 2
    assert results[3].code != NOT_ATTEMPTED
    assert sandbox.requests[codes.SET_SENDING_INFO_BULK] == 1 + client.retry.max_attempts
    assert sandbox.ledger.keys("dispatch") == sorted(orders[:3])

    again = await client.dispatch([item(no) for no in orders], check_claims=False)
    assert all(r.ok for r in again)
    assert [sandbox.ledger.counts[("dispatch", no)] for no in orders] == [1] * 8


async def test_single_order_path_behind_the_setting(sandbox: Qoo10Sandbox) -> None:
    c = make_client(sandbox, bulk_dispatch=False)
    try:
        orders = [sandbox.new_order() for _ in range(2)]
        results = await c.dispatch([item(no) for no in orders], check_claims=False)
    finally:
        await c.aclose()
    assert all(r.ok for r in results)
    assert sends(sandbox) == [2, 0]


# --- bulk claim view (R25) -----------------------------------------------------------------------


async def test_r25_bulk_claim_states_find_every_open_cancel_request(
    sandbox: Qoo10Sandbox, client: Qoo10Client
) -> None:
    """R25: in a batch, an order with an open buyer cancel request shows open_cancel_request,
    found by the claim list (two GetClaimInfo_V3 calls, no per-order read) — also a request
    made 120 days ago (second search window). Closed requests do not count."""
    plain = [await confirmed_order(sandbox, client) for _ in range(4)]
    open_now, open_old, withdrawn, approved = [
        await confirmed_order(sandbox, client) for _ in range(4)
    ]
    sandbox.buyer_cancel(open_now)
    sandbox.world.buyer_cancel(open_old, at=datetime.now(UTC) - timedelta(days=120))
    sandbox.buyer_cancel(withdrawn)
    sandbox.withdraw_cancel(withdrawn)
    sandbox.buyer_cancel(approved)
    sandbox.qsm_approve_cancel(approved)
    shipped = await dispatched_order(sandbox, client)
    asked = [*plain, open_now, open_old, withdrawn, approved, shipped, "999"]
    details = sandbox.requests[codes.GET_ORDER_DETAIL]

    states = await client.claim_states(asked)

    assert sandbox.requests[codes.GET_ORDER_DETAIL] == details
    assert sandbox.requests[codes.GET_CLAIM_INFO] == 2
    assert set(states) == set(asked)
    assert {u for u, s in states.items() if s.open_cancel_request} == {open_now, open_old}
    for unit in (open_now, open_old):
        assert states[unit].claim_type == ClaimType.CANCEL.value
        assert states[unit].claim_status == codes.ClaimCode.CANCEL_REQUESTED.value
        assert not states[unit].dispatched
    assert states[plain[0]].status == UNREAD_STATUS
    assert states[plain[0]].claim_status is None


async def test_r25_bulk_dispatch_with_claim_check_refuses_the_open_request_unsent(
    sandbox: Qoo10Sandbox, client: Qoo10Client
) -> None:
    """R25: the client's own claim check is bulk too (one claim list, one bulk send), and an
    order with an open cancel request is refused before anything is sent for it."""
    orders = [await confirmed_order(sandbox, client) for _ in range(5)]
    sandbox.buyer_cancel(orders[2])
    results = await client.dispatch([item(no) for no in orders])
    assert [r.ok for r in results] == [True, True, False, True, True]
    assert (results[2].code, results[2].detail["rule"]) == ("R25", "R25")
    assert sandbox.requests[codes.GET_ORDER_DETAIL] == 0
    assert sandbox.requests[codes.GET_CLAIM_INFO] == 2
    assert sends(sandbox) == [0, 1]
    assert sandbox.ledger.counts[("dispatch", orders[2])] == 0
    assert sandbox.order(orders[2]).open_cancel_request


async def test_s4_claim_list_outage_sends_nothing(
    sandbox: Qoo10Sandbox, client: Qoo10Client
) -> None:
    orders = [await confirmed_order(sandbox, client) for _ in range(4)]
    sandbox.inject_result_code(codes.GET_CLAIM_INFO, codes.SYSTEM_BUSY, count=50)
    results = await client.dispatch([item(no) for no in orders])
    assert all(not r.ok and r.retryable for r in results)
    assert sends(sandbox) == [0, 0]
    with pytest.raises(RetryableError):
        await client.claim_states(orders)


async def test_small_batches_keep_the_per_order_detail(
    sandbox: Qoo10Sandbox, client: Qoo10Client
) -> None:
    prepared = await confirmed_order(sandbox, client)
    shipped = await dispatched_order(sandbox, client)
    details = sandbox.requests[codes.GET_ORDER_DETAIL]
    states = await client.claim_states([prepared, shipped, prepared])
    assert sandbox.requests[codes.GET_ORDER_DETAIL] == details + 2
    assert sandbox.requests[codes.GET_CLAIM_INFO] == 0
    assert states[shipped].dispatched
    assert states[prepared].status == codes.ShippingStatus.PREPARED.value


async def test_s1_exact_claim_states_show_a_large_batch_already_dispatched(
    sandbox: Qoo10Sandbox, client: Qoo10Client
) -> None:
    """Reconciling sends of unknown outcome (``exact=True``): every order is read in detail,
    whatever the batch size, so one Qoo10 already shows dispatched is never sent again."""
    shipped = [await dispatched_order(sandbox, client) for _ in range(3)]
    prepared = [await confirmed_order(sandbox, client) for _ in range(2)]
    details = sandbox.requests[codes.GET_ORDER_DETAIL]
    bulk = await client.claim_states(shipped + prepared)
    assert not any(bulk[u].dispatched for u in shipped)  # the claim list cannot tell
    states = await client.claim_states(shipped + prepared, exact=True)
    assert sandbox.requests[codes.GET_ORDER_DETAIL] == details + 5
    assert all(states[u].dispatched for u in shipped)
    assert not any(states[u].dispatched for u in prepared)
