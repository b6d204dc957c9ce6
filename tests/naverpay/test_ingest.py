"""Ingestion over loopback: windows, paging, late visibility, latest-only feed (R12, R17, R19–R22)."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from decimal import Decimal

import httpx

from connectors.naverpay.client import NaverPayClient
from connectors.naverpay.dates import format_dt
from connectors.naverpay.sandbox import NaverPaySandbox
from store.domain import PaymentMethod
from tests.naverpay.conftest import FakeClock, make_client, recent, valid_number
from topics.changes import ChangeKind, ChannelChange, ChannelOrder
from topics.commands import Address


def of_kind(changes: list[ChannelChange], kind: ChangeKind) -> list[ChannelChange]:
    return [c for c in changes if c.kind is kind]


async def raw_feed(
    sb: NaverPaySandbox, client: NaverPayClient, since: datetime, until: datetime
) -> list[dict]:
    token = await client.tokens.get()
    async with httpx.AsyncClient(base_url=str(sb.url)) as http:
        resp = await http.get(
            "/v1/pay-order/seller/product-orders/last-changed-statuses",
            params={"lastChangedFrom": format_dt(since), "lastChangedTo": format_dt(until)},
            headers={"Authorization": f"Bearer {token}"},
        )
    resp.raise_for_status()
    return list(resp.json()["data"]["lastChangeStatuses"])


async def test_r17_paging_follows_more_sequence_across_equal_timestamps(
    sandbox: NaverPaySandbox, instant: None
) -> None:
    """10 orders paid in the same millisecond, pages of 3: every one exactly once."""
    at = datetime.now(UTC) - timedelta(minutes=1)
    orders = [sandbox.new_paid_order(at=at) for _ in range(10)]
    client = make_client(sandbox, feed_page_size=3)
    try:
        entries = await client.feed_entries(*recent())
        changes = await client.changes_since(*recent())
    finally:
        await client.aclose()
    fed = [e.product_order_id for e in entries]
    assert sorted(fed) == sorted(o["productOrderIds"][0] for o in orders)
    assert len(fed) == len(set(fed)) == 10
    assert sandbox.requests["last_changed"] == 2 * 4  # 4 pages per read (3+3+3+1)
    paid = of_kind(changes, ChangeKind.ORDER_PAID)
    assert sorted(c.channel_order_id for c in paid) == sorted(o["orderId"] for o in orders)


async def test_r17_a_range_longer_than_the_api_allows_is_split_into_windows(
    sandbox: NaverPaySandbox, client: NaverPayClient
) -> None:
    now = datetime.now(UTC)
    hours = (70, 47, 25, 2)
    orders = [sandbox.new_paid_order(at=now - timedelta(hours=h)) for h in hours]
    changes = await client.changes_since(now - timedelta(hours=72), now)
    paid = {c.channel_order_id for c in of_kind(changes, ChangeKind.ORDER_PAID)}
    assert paid == {o["orderId"] for o in orders}
    assert sandbox.requests["last_changed"] == 4  # 72 h in windows of at most 23 h 59 m
    assert client.stats.failures == 0


async def test_r17_late_visible_change_is_found_by_the_overlap_and_applied_once(
    instant: None,
) -> None:
    """A change whose record becomes visible 5 min after its change time: a poller reading
    only [last poll, now) loses it; re-reading a 10 min overlap finds it; keys de-duplicate."""
    clock = FakeClock()
    sb = NaverPaySandbox(visibility_lag=0, rates={}, clock=clock)
    await sb.start()
    client = make_client(sb, clock=clock)
    overlap = timedelta(minutes=10)
    applied: dict[str, ChannelChange] = {}
    try:
        late = sb.new_paid_order(lag=300)["orderId"]
        first_until = clock.dt()
        first = await client.changes_since(first_until - overlap, first_until)
        assert not of_kind(first, ChangeKind.ORDER_PAID)  # not visible yet
        clock.advance(400)
        second_until = clock.dt()
        naive = await client.changes_since(first_until, second_until)
        assert late not in {c.channel_order_id for c in naive}  # lost without an overlap
        polls = [
            await client.changes_since(second_until - overlap, second_until),
            await client.changes_since(second_until - overlap, second_until + timedelta(seconds=1)),
        ]
        seen = [c for poll in polls for c in poll if c.channel_order_id == late]
        for change in seen:
            applied.setdefault(change.change_key, change)
    finally:
        await client.aclose()
        await sb.stop()
    assert len(seen) == 2  # read twice ...
    assert [c.kind for c in applied.values()] == [ChangeKind.ORDER_PAID]  # ... applied once


async def test_r15_r17_feed_keeps_only_the_latest_change_and_facts_come_from_the_detail(
    sandbox: NaverPaySandbox, client: NaverPayClient
) -> None:
    """Paid then dispatched in the seller centre before the first poll: the feed shows only
    DISPATCHED, yet the order arrives (ORDER_PAID from the detail) and the dispatch (R15)."""
    order = sandbox.new_paid_order([{"name": "A", "quantity": 3}])
    po = order["productOrderIds"][0]
    number = valid_number()
    assert sandbox.seller_centre_dispatch([po], "CJGLS", number) == {po: "ok"}
    feed = await raw_feed(sandbox, client, *recent())
    assert [(r["productOrderId"], r["lastChangedType"]) for r in feed] == [(po, "DISPATCHED")]
    changes = await client.changes_since(*recent())
    kinds = [c.kind for c in changes]
    assert kinds.index(ChangeKind.ORDER_PAID) < kinds.index(ChangeKind.DISPATCHED)
    (dispatched,) = of_kind(changes, ChangeKind.DISPATCHED)
    assert dispatched.tracking_number == number
    assert dispatched.carrier == "CJ"
    assert dispatched.extra["quantity"] == 3


async def test_r17_stale_feed_status_is_overridden_by_the_detail(
    sandbox: NaverPaySandbox, client: NaverPayClient
) -> None:
    po = sandbox.new_paid_order()["productOrderIds"][0]
    sandbox.seller_centre_dispatch([po], "CJGLS", valid_number())
    sandbox.deliver(po)  # not a feed event
    (record,) = await raw_feed(sandbox, client, *recent())
    assert record["productOrderStatus"] == "DELIVERING"
    changes = await client.changes_since(*recent())
    assert len(of_kind(changes, ChangeKind.DELIVERED)) == 1


async def test_r17_change_keys_are_stable_across_reads(
    sandbox: NaverPaySandbox, client: NaverPayClient
) -> None:
    o = sandbox.new_paid_order([{"name": "A"}, {"name": "B"}])
    sandbox.buyer_cancel_request(o["productOrderIds"][1])
    first = await client.changes_since(*recent())
    second = await client.changes_since(*recent())
    assert [c.change_key for c in first] == [c.change_key for c in second]
    assert {c.kind for c in first} == {ChangeKind.ORDER_PAID, ChangeKind.CANCEL_REQUESTED}


async def test_unknown_feed_type_becomes_unknown_not_dropped(
    sandbox: NaverPaySandbox, client: NaverPayClient
) -> None:
    po = sandbox.new_paid_order()["productOrderIds"][0]
    sandbox.touch(po, "SOMETHING_NEW")
    changes = await client.changes_since(*recent())
    (unknown,) = of_kind(changes, ChangeKind.UNKNOWN)
    assert unknown.raw_type == "SOMETHING_NEW" and unknown.unit_ids == [po]


async def test_order_paid_lists_every_line_even_when_a_sibling_moved_out_of_the_window(
    sandbox: NaverPaySandbox, client: NaverPayClient
) -> None:
    now = datetime.now(UTC)
    order = sandbox.new_paid_order([{"name": "A"}, {"name": "B"}], at=now - timedelta(minutes=5))
    a, b = order["productOrderIds"]
    sandbox.buyer_cancel_request(b, at=now + timedelta(minutes=5))  # B's record moves later
    changes = await client.changes_since(now - timedelta(minutes=10), now)
    (paid,) = of_kind(changes, ChangeKind.ORDER_PAID)
    assert paid.order is not None
    assert [line.unit_id for line in paid.order.lines] == [a, b]


async def test_r20_r21_r22_order_paid_carries_the_order_and_mileage_amounts(
    sandbox: NaverPaySandbox, client: NaverPayClient
) -> None:
    address = Address(name="Kim", phone="010-1234-5678", zip_code="06236", line1="Teheran-ro 1")
    order = sandbox.new_paid_order(
        [{"name": "A", "quantity": 2, "unit_price": 5000}, {"name": "B", "unit_price": 8000}],
        address=address,
        mileage_used=3000,
    )
    (paid,) = of_kind(await client.changes_since(*recent()), ChangeKind.ORDER_PAID)
    assert paid.order is not None
    assert paid.order.channel_order_id == order["orderId"]
    assert paid.order.address == address
    assert paid.order.payment_method is PaymentMethod.CARD
    assert [(ln.quantity, ln.amount) for ln in paid.order.lines] == [
        (2, Decimal(10000)),
        (1, Decimal(8000)),
    ]
    assert paid.order.mileage_used == Decimal(3000)
    assert paid.order.earning_base == Decimal(15000)  # R21: purchase 18,000 - mileage 3,000


async def test_r19_naver_orders_are_guest_orders(
    sandbox: NaverPaySandbox, client: NaverPayClient
) -> None:
    sandbox.new_paid_order()
    (paid,) = of_kind(await client.changes_since(*recent()), ChangeKind.ORDER_PAID)
    assert paid.extra["guest_order"] is True
    assert paid.extra["member_grade"] is None
    assert not any("grade" in name or "member" in name for name in ChannelOrder.model_fields)


async def test_r12_address_change_carries_the_new_address(
    sandbox: NaverPaySandbox, client: NaverPayClient
) -> None:
    order = sandbox.new_paid_order([{"name": "A"}, {"name": "B"}])
    new = Address(name="Lee", phone="010-9999-0000", zip_code="04524", line1="Sejong-daero 110")
    sandbox.change_address(order["orderId"], new)
    changes = await client.changes_since(*recent())
    (moved,) = of_kind(changes, ChangeKind.ADDRESS_CHANGED)
    assert moved.address == new
    assert moved.channel_order_id == order["orderId"]
    assert moved.unit_ids == sorted(order["productOrderIds"])


async def test_r12_confirm_answer_reports_the_address_change_flag(
    sandbox: NaverPaySandbox, client: NaverPayClient
) -> None:
    moved = sandbox.new_paid_order()
    still = sandbox.new_paid_order()
    sandbox.change_address(moved["orderId"], {"name": "Lee", "line1": "Busan"})
    results = await client.confirm_orders(moved["productOrderIds"] + still["productOrderIds"])
    flags = {r.unit_id: r.detail["receiver_address_changed"] for r in results}
    assert flags == {moved["productOrderIds"][0]: True, still["productOrderIds"][0]: False}
