"""Pure mapping: R15 collapse, R16 cancel plan, R19, R29 claim view, feed → facts, windows."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Any

import httpx
import pytest
from hypothesis import given
from hypothesis import strategies as st

from connectors.contract import DispatchItem
from connectors.errors import (
    AuthenticationError,
    ConflictError,
    RateLimitedError,
    RetryableError,
    ValidationError,
)
from connectors.naverpay.changes import FeedEntry, build_changes
from connectors.naverpay.dates import KST, format_dt, parse_dt
from connectors.naverpay.endpoints import LAST_CHANGED_TYPES
from connectors.naverpay.errors import error_from_response
from connectors.naverpay.feed import windows
from connectors.naverpay.mapping import (
    CancelUnit,
    ShippedLine,
    claim_state,
    collapse_partial_shipment,
    dispatch_payload,
    inbound_cancel_kind,
    is_guest_order,
    item_results,
    member_grade,
    plan_cancel,
)
from store.carriers import Carrier
from store.domain import InvoiceKind
from store.errors import SplitNotAllowedError
from topics.changes import ChangeKind

T0 = datetime(2026, 3, 2, 10, 0, tzinfo=KST)


def detail(
    po_id: str = "2026030200000002",
    status: str = "PAYED",
    *,
    fields: dict[str, Any] | None = None,
    **blocks: Any,
) -> dict[str, Any]:
    base: dict[str, Any] = {
        "order": {
            "orderId": "2026030200000001",
            "paymentDate": format_dt(T0),
            "paymentMeans": "신용카드",
            "ordererName": "Kim",
            "naverMileagePaymentAmount": 0,
        },
        "productOrder": {
            "productOrderId": po_id,
            "productOrderStatus": status,
            "productName": "Mug",
            "quantity": 2,
            "unitPrice": 5000,
            "totalPaymentAmount": 10000,
            "shippingAddress": {"name": "Kim", "tel1": "010", "zipCode": "1", "baseAddress": "A"},
        },
    }
    base["productOrder"].update(fields or {})
    base.update(blocks)
    return base


def entry(change_type: str, po: str = "2026030200000002", **kw: Any) -> FeedEntry:
    return FeedEntry("2026030200000001", po, change_type, T0 + timedelta(minutes=1), **kw)


# --- R15 -----------------------------------------------------------------------------------------
def test_r15_partial_shipment_becomes_a_whole_unit_dispatch_with_a_collapse_record() -> None:
    lines = [ShippedLine("l1", 3, 1), ShippedLine("l2", 2, 0)]
    item, record = collapse_partial_shipment(
        "PO1", lines, carrier=Carrier.CJ, tracking_number="123456789012", dispatched_at=T0
    )
    assert item == DispatchItem("PO1", Carrier.CJ, "123456789012", T0, InvoiceKind.PARCEL)
    assert (record.unit_id, record.shipped_quantity, record.channel_quantity) == ("PO1", 1, 5)
    assert record.collapsed and record.line_ids == ("l1", "l2")


def test_r15_full_shipment_is_not_a_collapse_and_nothing_shipped_is_refused() -> None:
    _item, record = collapse_partial_shipment(
        "PO1", [ShippedLine("l1", 2, 2)], carrier=Carrier.CJ, tracking_number="1", dispatched_at=T0
    )
    assert not record.collapsed
    with pytest.raises(ValueError):
        collapse_partial_shipment(
            "PO1",
            [ShippedLine("l1", 2, 0)],
            carrier=Carrier.CJ,
            tracking_number="1",
            dispatched_at=T0,
        )
    with pytest.raises(ValueError):
        collapse_partial_shipment(
            "PO1",
            [ShippedLine("l1", 2, 3)],
            carrier=Carrier.CJ,
            tracking_number="1",
            dispatched_at=T0,
        )


# --- R16 -----------------------------------------------------------------------------------------
def test_r16_partial_cancel_refused_and_dispatched_units_become_returns() -> None:
    plan = plan_cancel([CancelUnit("a", 2, 2, False), CancelUnit("b", 1, 1, True)])
    assert (plan.cancel, plan.returns) == (("a",), ("b",))
    with pytest.raises(SplitNotAllowedError) as info:
        plan_cancel([CancelUnit("a", 3, 1, False)])
    assert info.value.rule == "R16"


def test_r16_inbound_cancel_for_a_shipped_line_is_a_return() -> None:
    assert inbound_cancel_kind(line_dispatched=True) is ChangeKind.RETURN_REQUESTED
    assert inbound_cancel_kind(line_dispatched=False) is ChangeKind.CANCELED


# --- R19 / R29 -------------------------------------------------------------------------------------
def test_r19_every_naver_order_is_a_guest_order_without_grade() -> None:
    assert is_guest_order(detail()) is True
    assert member_grade(detail()) is None


def test_r29_claim_state_reads_the_legacy_claim_block_too() -> None:
    legacy = detail(
        fields={"claimType": "CANCEL", "claimStatus": "CANCEL_REQUEST"},
        cancel={"claimId": "C1", "claimStatus": "CANCEL_REQUEST", "cancelReason": "SOLD_OUT"},
    )
    state = claim_state(legacy)
    assert state.open_cancel_request and not state.dispatched
    (change,) = [
        c
        for c in build_changes([], {"2026030200000002": legacy})
        if c.kind is not ChangeKind.ORDER_PAID
    ]
    assert (change.kind, change.claim_id, change.reason) == (
        ChangeKind.CANCEL_REQUESTED,
        "C1",
        "SOLD_OUT",
    )


# --- outbound shapes --------------------------------------------------------------------------------
def test_dispatch_payload_uses_naver_codes_and_omits_unused_keys() -> None:
    lotte = dispatch_payload(DispatchItem("P", Carrier.LOTTE, "1", T0))
    assert lotte["deliveryCompanyCode"] == "HYUNDAI"  # Naver has no LOTTE code
    assert lotte["dispatchDate"] == "2026-03-02T10:00:00.000+09:00"
    assert (
        dispatch_payload(DispatchItem("P", Carrier.LOGEN, "1", T0))["deliveryCompanyCode"] == "KGB"
    )
    quick = dispatch_payload(DispatchItem("P", Carrier.ETC, "x", T0, InvoiceKind.QUICK))
    assert quick == {
        "productOrderId": "P",
        "deliveryMethod": "QUICK_SVC",
        "dispatchDate": lotte["dispatchDate"],
    }


def test_item_results_account_for_every_requested_id() -> None:
    data = {
        "successProductOrderIds": ["a"],
        "failProductOrderInfos": [{"productOrderId": "b", "code": "104442", "message": "state"}],
    }
    a, b, c = item_results(data, ["a", "b", "c"], trace_id="t")
    assert a.ok and a.detail == {"trace_id": "t"}
    assert (b.ok, b.code, b.retryable) == (False, "104442", False)
    assert (c.ok, c.code, c.retryable) == (False, "NO_RESULT", True)


@pytest.mark.parametrize(
    ("status", "body", "headers", "kind"),
    [
        (400, {"code": "104442"}, {}, ConflictError),
        (400, {"code": "4000"}, {}, ValidationError),
        (401, {"code": "GW.AUTHN"}, {}, AuthenticationError),
        (403, {"code": "GW.IP_NOT_ALLOWED"}, {}, AuthenticationError),
        (
            429,
            {"code": "GW.RATE_LIMIT"},
            {"GNCP-GW-RateLimit-Replenish-Rate": "2"},
            RateLimitedError,
        ),
        (503, {"code": "GW.BLOCK.02"}, {}, RetryableError),
        (504, {"code": "GW.TIMEOUT.01"}, {}, RetryableError),
    ],
)
def test_error_mapping_follows_the_table(
    status: int, body: dict, headers: dict, kind: type
) -> None:
    resp = httpx.Response(status, json={**body, "message": "m", "traceId": "T"}, headers=headers)
    error = error_from_response(resp, "query")
    assert type(error) is kind
    assert (error.code, error.trace_id) == (body["code"], "T")
    if status == 429:
        assert isinstance(error, RateLimitedError) and error.retry_after == 0.5


# --- feed → facts ------------------------------------------------------------------------------------
DELIVERED = {"sendDate": format_dt(T0), "deliveryCompany": "CJGLS", "trackingNumber": "1"}
CASES: dict[str, tuple[dict[str, Any], set[ChangeKind]]] = {
    "PAYED": (detail(), {ChangeKind.ORDER_PAID}),
    "DELIVERY_ADDRESS_CHANGED": (detail(), {ChangeKind.ORDER_PAID, ChangeKind.ADDRESS_CHANGED}),
    "DISPATCHED": (
        detail(status="DELIVERING", delivery=DELIVERED),
        {ChangeKind.ORDER_PAID, ChangeKind.DISPATCHED},
    ),
    "PURCHASE_DECIDED": (
        detail(
            status="PURCHASE_DECIDED", delivery=DELIVERED, fields={"decisionDate": format_dt(T0)}
        ),
        {ChangeKind.ORDER_PAID, ChangeKind.DISPATCHED, ChangeKind.PURCHASE_DECIDED},
    ),
    "CLAIM_REQUESTED": (
        detail(fields={"claimType": "CANCEL", "claimStatus": "CANCEL_REQUEST", "claimId": "C"}),
        {ChangeKind.ORDER_PAID, ChangeKind.CANCEL_REQUESTED},
    ),
    "CLAIM_COMPLETED": (
        detail(
            status="CANCELED",
            fields={"claimType": "CANCEL", "claimStatus": "CANCEL_DONE", "claimId": "C"},
        ),
        {ChangeKind.ORDER_PAID, ChangeKind.CANCELED},
    ),
    "CLAIM_REJECTED": (
        detail(fields={"claimType": "CANCEL", "claimStatus": "CANCEL_REJECT", "claimId": "C"}),
        {ChangeKind.ORDER_PAID, ChangeKind.CANCEL_WITHDRAWN},
    ),
    "COLLECT_DONE": (
        detail(
            status="DELIVERED",
            delivery=DELIVERED,
            fields={"claimType": "RETURN", "claimStatus": "COLLECT_DONE", "claimId": "R"},
        ),
        {ChangeKind.ORDER_PAID, ChangeKind.DISPATCHED, ChangeKind.RETURN_REQUESTED},
    ),
    "CLAIM_REDELIVERING": (
        detail(
            status="DELIVERED",
            delivery=DELIVERED,
            fields={
                "claimType": "EXCHANGE",
                "claimStatus": "EXCHANGE_REDELIVERING",
                "claimId": "X",
            },
        ),
        {ChangeKind.ORDER_PAID, ChangeKind.DISPATCHED, ChangeKind.EXCHANGE_REQUESTED},
    ),
    "CLAIM_HOLDBACK_RELEASED": (
        detail(
            status="DELIVERED",
            delivery=DELIVERED,
            fields={"claimType": "RETURN", "claimStatus": "RETURN_REQUEST", "claimId": "R"},
            currentClaim={
                "return": {
                    "claimId": "R",
                    "holdbackStatus": "RELEASED",
                    "holdbackReleaseDate": format_dt(T0),
                }
            },
        ),
        {
            ChangeKind.ORDER_PAID,
            ChangeKind.DISPATCHED,
            ChangeKind.RETURN_REQUESTED,
            ChangeKind.RETURN_HOLD_RELEASED,
        },
    ),
    "EXCHANGE_OPTION": (detail(), {ChangeKind.ORDER_PAID, ChangeKind.UNKNOWN}),
    "GIFT_RECEIVED": (detail(), {ChangeKind.ORDER_PAID, ChangeKind.UNKNOWN}),
    "HOPE_DELIVERY_INFO_CHANGED": (detail(), {ChangeKind.ORDER_PAID, ChangeKind.UNKNOWN}),
    "PAY_WAITING": (detail(status="PAYMENT_WAITING"), set()),
}


def test_every_last_changed_type_is_mapped() -> None:
    assert set(CASES) == LAST_CHANGED_TYPES
    for change_type, (state, kinds) in CASES.items():
        if change_type == "PAY_WAITING":
            state["order"].pop("paymentDate")
        changes = build_changes([entry(change_type)], {"2026030200000002": state})
        assert {c.kind for c in changes} == kinds, change_type


def test_feed_entry_without_a_detail_is_passed_on_as_unknown() -> None:
    (change,) = build_changes([entry("DISPATCHED")], {})
    assert change.kind is ChangeKind.UNKNOWN and change.extra["detail_missing"] is True


def test_r12_address_flag_on_a_later_record_still_raises_an_address_change() -> None:
    flagged = entry("CLAIM_REJECTED", address_changed=True)
    state = detail(fields={"claimType": "CANCEL", "claimStatus": "CANCEL_REJECT", "claimId": "C"})
    state["productOrder"].pop("claimType")  # withdrawn: no current claim
    kinds = [c.kind for c in build_changes([flagged], {"2026030200000002": state})]
    assert ChangeKind.ADDRESS_CHANGED in kinds


def test_r17_facts_are_keyed_by_themselves_not_by_the_read() -> None:
    state = detail(status="DELIVERING", delivery=DELIVERED)
    one = build_changes([entry("DISPATCHED")], {"2026030200000002": state})
    later = FeedEntry("2026030200000001", "2026030200000002", "DISPATCHED", T0 + timedelta(hours=1))
    two = build_changes([later], {"2026030200000002": state}, now=T0 + timedelta(days=1))
    assert [c.change_key for c in one] == [c.change_key for c in two]


# --- windows ----------------------------------------------------------------------------------------
def test_r17_a_72_hour_range_is_split_into_contiguous_windows_under_24_hours() -> None:
    since = datetime(2026, 3, 1, tzinfo=UTC)
    parts = windows(since, since + timedelta(hours=72))
    assert len(parts) == 4
    assert parts[0].start == since
    assert parts[-1].end == since + timedelta(hours=72) - timedelta(milliseconds=1)
    for a, b in zip(parts, parts[1:], strict=False):
        assert b.start - a.end == timedelta(milliseconds=1)
    assert all(p.end - p.start < timedelta(hours=24) for p in parts)


@given(
    st.datetimes(min_value=datetime(2020, 1, 1), max_value=datetime(2030, 1, 1)),
    st.integers(min_value=0, max_value=10 * 24 * 3600 * 1000),
)
def test_windows_cover_every_millisecond_once(start: datetime, span_ms: int) -> None:
    since = start.replace(tzinfo=UTC)
    until = since + timedelta(milliseconds=span_ms)
    parts = windows(since, until)
    if span_ms == 0:
        assert parts == []
        return
    one = timedelta(milliseconds=1)
    assert parts[0].start <= since < parts[0].start + one  # truncated to Naver's resolution
    for a, b in zip(parts, parts[1:], strict=False):
        assert b.start == a.end + one  # contiguous, no overlap
    assert parts[-1].end < until <= parts[-1].end + one
    assert all(timedelta(0) <= p.end - p.start < timedelta(hours=24) for p in parts)


def test_dates_round_trip_in_naver_format() -> None:
    text = format_dt(datetime(2022, 4, 11, 6, 21, 44, tzinfo=UTC))
    assert text == "2022-04-11T15:21:44.000+09:00"
    assert parse_dt(text) == datetime(2022, 4, 11, 6, 21, 44, tzinfo=UTC)
    with pytest.raises(ValueError):
        parse_dt("2022-04-11 15:21:44")
