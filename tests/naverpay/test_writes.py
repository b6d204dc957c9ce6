"""Confirm, dispatch, delay and cancels against the sandbox (R13, R16, R18, R29)."""

from __future__ import annotations

from datetime import UTC, date, datetime, timedelta

import pytest

from connectors.contract import DispatchItem, MarketplaceConnector, UnsupportedOperationError
from connectors.errors import ValidationError
from connectors.naverpay.client import NaverPayClient
from connectors.naverpay.sandbox import NaverPaySandbox
from store.carriers import Carrier
from store.domain import InvoiceKind
from tests.naverpay.conftest import make_client, recent, valid_number
from topics.changes import ChangeKind


def item(po: str, number: str | None = None, carrier: Carrier = Carrier.CJ) -> DispatchItem:
    return DispatchItem(po, carrier, number or valid_number(carrier), datetime.now(UTC))


def new_units(sb: NaverPaySandbox, n: int) -> list[str]:
    return [sb.new_paid_order()["productOrderIds"][0] for _ in range(n)]


def test_client_implements_the_connector_contract() -> None:
    client = NaverPayClient("http://x", "id", "$2a$04$sandboxsandboxsandboxu")
    assert isinstance(client, MarketplaceConnector)
    assert client.max_dispatch_batch == 30


async def test_confirm_in_batches_of_30_and_refuses_a_repeat(
    sandbox: NaverPaySandbox, client: NaverPayClient
) -> None:
    units = new_units(sandbox, 31)
    results = await client.confirm_orders(units)
    assert [r.unit_id for r in results] == units and all(r.ok for r in results)
    assert sandbox.requests["confirm"] == 2
    (again,) = await client.confirm_orders(units[:1])
    assert (again.ok, again.code) == (False, "105306")
    assert sandbox.ledger.count("confirm") == 31


async def test_dispatch_batches_up_to_30_per_call_and_dispatches_each_once(
    sandbox: NaverPaySandbox, client: NaverPayClient
) -> None:
    units = new_units(sandbox, 35)
    results = await client.dispatch([item(u, valid_number(seed=i)) for i, u in enumerate(units)])
    assert all(r.ok for r in results) and {r.unit_id for r in results} == set(units)
    assert sandbox.requests["dispatch"] == 2
    assert all(sandbox.ledger.count("dispatch", u) == 1 for u in units)


async def test_dispatch_reads_per_item_failures_from_the_answer(
    sandbox: NaverPaySandbox, client: NaverPayClient
) -> None:
    ok, done = new_units(sandbox, 2)
    await client.dispatch([item(done)])
    results = {
        r.unit_id: r
        for r in await client.dispatch([item(ok), item(done), item("2099010199999999")])
    }
    assert results[ok].ok
    assert (results[done].ok, results[done].code) == (False, "104442")  # already dispatched
    assert results["2099010199999999"].code == "100001"  # unknown product order
    assert not results[done].retryable
    assert sandbox.requests["dispatch"] == 2  # one call for the mixed batch
    assert sandbox.ledger.count("dispatch", done) == 1


async def test_r18_invalid_tracking_number_refused_before_any_call(
    sandbox: NaverPaySandbox, client: NaverPayClient
) -> None:
    (po,) = new_units(sandbox, 1)
    (result,) = await client.dispatch([item(po, "12345", Carrier.LOTTE)])
    assert (result.ok, result.code, result.detail["rule"]) == (False, "R18", "R18")
    assert sandbox.requests["dispatch"] == 0


async def test_r18_marketplace_rejection_recorded_then_corrected_invoice_accepted(
    sandbox: NaverPaySandbox, instant: None
) -> None:
    client = make_client(sandbox, prevalidate_invoices=False)
    try:
        (po,) = new_units(sandbox, 1)
        (refused,) = await client.dispatch([item(po, "123456789019", Carrier.LOTTE)])  # bad mod 7
        assert (refused.ok, refused.code) == (False, "104122")
        assert "tracking" in refused.message
        state = (await client.claim_states([po]))[po]
        assert (state.status, state.dispatched) == ("PAYED", False)
        (fixed,) = await client.dispatch([item(po, valid_number(Carrier.LOTTE), Carrier.LOTTE)])
        assert fixed.ok
        assert sandbox.ledger.count("dispatch", po) == 1
    finally:
        await client.aclose()


async def test_quick_service_dispatch_sends_no_company_or_number(
    sandbox: NaverPaySandbox, client: NaverPayClient
) -> None:
    (po,) = new_units(sandbox, 1)
    quick = DispatchItem(po, Carrier.ETC, "rider 7", datetime.now(UTC), InvoiceKind.QUICK)
    (result,) = await client.dispatch([quick])
    assert result.ok
    assert sandbox.detail(po)["delivery"]["deliveryMethod"] == "QUICK_SVC"  # type: ignore[index]


async def test_r29_claim_state_shows_open_cancel_and_dispatch_refuses_it(
    sandbox: NaverPaySandbox, client: NaverPayClient
) -> None:
    (po,) = new_units(sandbox, 1)
    sandbox.buyer_cancel_request(po)
    before = (await client.claim_states([po]))[po]
    assert before.open_cancel_request and not before.dispatched
    assert (before.claim_type, before.claim_status) == ("CANCEL", "CANCEL_REQUEST")
    (result,) = await client.dispatch([item(po)])
    assert result.ok  # Naver ships and refuses the buyer's cancel in the same step
    assert sandbox.ledger.count("cancel_refused_by_dispatch", po) == 1
    after = (await client.claim_states([po]))[po]
    assert not after.open_cancel_request and after.dispatched
    changes = await client.changes_since(*recent())
    assert {ChangeKind.DISPATCHED, ChangeKind.CANCEL_WITHDRAWN} <= {c.kind for c in changes}


async def test_r29_reject_cancel_is_unsupported_and_says_dispatch_refuses(
    client: NaverPayClient,
) -> None:
    with pytest.raises(UnsupportedOperationError) as info:
        await client.reject_cancel(["2026010100000001"], "shipping anyway")
    assert "R29" in str(info.value) and "dispatch" in str(info.value)


async def test_r13_delay_is_one_request_per_product_order_with_reason_and_due_date(
    sandbox: NaverPaySandbox, client: NaverPayClient
) -> None:
    order = sandbox.new_paid_order([{"name": "A"}, {"name": "B"}])
    due = date.today() + timedelta(days=5)
    results = await client.delay_dispatch(
        order["productOrderIds"], due, "PRODUCT_PREPARE", "restock"
    )
    assert all(r.ok for r in results)
    assert sandbox.requests["delay"] == 2  # no batch form
    detail = sandbox.detail(order["productOrderIds"][0])
    assert detail is not None
    assert detail["productOrder"]["delayedDispatchReason"] == "PRODUCT_PREPARE"
    assert detail["productOrder"]["shippingDueDate"].startswith(due.isoformat())


async def test_r13_delay_refused_after_dispatch_and_bad_reason_never_sent(
    sandbox: NaverPaySandbox, client: NaverPayClient
) -> None:
    (po,) = new_units(sandbox, 1)
    with pytest.raises(ValidationError):
        await client.delay_dispatch([po], date.today() + timedelta(days=2), "BORED", "x")
    assert sandbox.requests["delay"] == 0
    await client.dispatch([item(po)])
    (late,) = await client.delay_dispatch([po], date.today() + timedelta(days=2), "ETC", "x")
    assert (late.ok, late.code) == (False, "104442")


async def test_r16_cancel_is_whole_and_a_dispatched_unit_becomes_a_return(
    sandbox: NaverPaySandbox, client: NaverPayClient
) -> None:
    waiting, shipped = new_units(sandbox, 2)
    await client.dispatch([item(shipped)])
    results = {r.unit_id: r for r in await client.cancel([waiting, shipped], "SOLD_OUT", "sorry")}
    assert results[waiting].ok and "converted_to_return" not in results[waiting].detail
    assert results[shipped].ok and results[shipped].detail["converted_to_return"] is True
    assert sandbox.ledger.count("seller_cancel", waiting) == 1
    assert sandbox.ledger.count("return_request", shipped) == 1
    assert sandbox.ledger.count("seller_cancel", shipped) == 0
    states = await client.claim_states([waiting, shipped])
    assert states[waiting].status == "CANCELED"
    assert (states[shipped].claim_type, states[shipped].claim_status) == (
        "RETURN",
        "RETURN_REQUEST",
    )


async def test_cancel_reason_without_a_naver_value_is_refused(client: NaverPayClient) -> None:
    with pytest.raises(ValidationError):
        await client.cancel(["2026010100000001"], "OTHER")


async def test_approve_buyer_cancel_completes_it(
    sandbox: NaverPaySandbox, client: NaverPayClient
) -> None:
    (po,) = new_units(sandbox, 1)
    sandbox.buyer_cancel_request(po)
    (result,) = await client.approve_cancel([po])
    assert result.ok and sandbox.ledger.count("cancel_approve", po) == 1
    (again,) = await client.approve_cancel([po])
    assert again.code == "105306"
    kinds = {c.kind for c in await client.changes_since(*recent())}
    assert ChangeKind.CANCELED in kinds
