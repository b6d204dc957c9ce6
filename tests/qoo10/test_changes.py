"""changes_since: orders and claims listed in JST windows, mapped to ChannelChange."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import httpx
import pytest

from connectors.errors import ValidationError
from connectors.qoo10 import codes
from connectors.qoo10.client import Qoo10Client
from connectors.qoo10.dates import JST
from connectors.qoo10.sandbox import Qoo10Sandbox
from store.carriers import Carrier
from store.domain import Channel
from tests.qoo10.helpers import around_now, confirmed_order, dispatched_order, make_client
from topics.changes import ChangeKind, ChannelChange


def kinds(changes: list[ChannelChange], order_no: str) -> list[ChangeKind]:
    return [c.kind for c in changes if order_no in c.unit_ids]


async def test_new_paid_cart_ingested_as_one_order_with_its_lines(
    sandbox: Qoo10Sandbox, client: Qoo10Client
) -> None:
    paid = datetime(2024, 3, 1, 3, 4, 5, tzinfo=UTC)
    first = sandbox.new_order(qty=2, price=1500, sku="A-1", paid_at=paid)
    pack = sandbox.order(first).pack_no
    second = sandbox.new_order(qty=1, price=800, sku="B-2", pack_no=pack, paid_at=paid)

    changes = await client.changes_since(paid - timedelta(hours=1), paid + timedelta(hours=1))

    [change] = changes
    assert change.kind == ChangeKind.ORDER_PAID
    assert change.channel == Channel.QOO10
    assert change.channel_order_id == pack
    assert change.unit_ids == [first, second]
    assert change.changed_at == paid
    assert change.changed_at.utcoffset() == timedelta(hours=9)
    assert change.order is not None
    lines = {line.unit_id: line for line in change.order.lines}
    assert (lines[first].sku, lines[first].quantity, str(lines[first].amount)) == ("A-1", 2, "3000")
    assert (lines[second].sku, lines[second].quantity) == ("B-2", 1)
    assert change.order.address.zip_code == sandbox.order(first).zip_code


class RecordingTransport(httpx.AsyncHTTPTransport):
    def __init__(self) -> None:
        super().__init__()
        self.forms: list[dict[str, str]] = []

    async def handle_async_request(self, request: httpx.Request) -> httpx.Response:
        from urllib.parse import parse_qsl

        self.forms.append(dict(parse_qsl(request.content.decode(), keep_blank_values=True)))
        return await super().handle_async_request(request)


async def test_search_bounds_are_sent_in_jst(sandbox: Qoo10Sandbox, instant: None) -> None:
    transport = RecordingTransport()
    c = make_client(sandbox, transport=transport)
    try:
        since = datetime(2024, 1, 1, 15, 0, 0, 700000, tzinfo=UTC)  # 2024-01-02 00:00:00.7 JST
        await c.changes_since(since, since + timedelta(hours=1))
    finally:
        await c.aclose()
    shipping = [f for f in transport.forms if "SearchStartDate" in f]
    claims = [f for f in transport.forms if "search_Sdate" in f]
    assert {f["SearchStartDate"] for f in shipping} == {"20240102000000"}
    assert {f["SearchEndDate"] for f in shipping} == {"20240102010000"}
    assert {f["search_Sdate"] for f in claims} == {"20240102000000"}
    assert {f["returnType"] for f in transport.forms} == {"application/json"}


async def test_windows_split_a_long_period_and_lose_nothing(
    sandbox: Qoo10Sandbox, instant: None
) -> None:
    """No paging in GetShippingInfo_v3: the client splits the period into windows."""
    base = datetime(2024, 5, 1, tzinfo=UTC)
    orders = {sandbox.new_order(paid_at=base + timedelta(minutes=50 * i)): i for i in range(12)}
    c = make_client(sandbox, max_window=timedelta(hours=2))
    try:
        changes = await c.changes_since(base, base + timedelta(hours=10))
    finally:
        await c.aclose()
    paid = [ch for ch in changes if ch.kind == ChangeKind.ORDER_PAID]
    assert sorted(u for ch in paid for u in ch.unit_ids) == sorted(orders)
    assert len({ch.change_key for ch in changes}) == len(changes)
    windows = 5
    assert sandbox.requests[codes.GET_SHIPPING_INFO] == windows * 5
    assert sandbox.requests[codes.GET_CLAIM_INFO] == windows * 2


async def test_search_over_90_days_is_refused_by_the_marketplace(
    client: Qoo10Client,
) -> None:
    with pytest.raises(ValidationError) as caught:
        await client.qapi(
            codes.GET_CLAIM_INFO,
            {
                "ClaimStat": "",
                "search_Sdate": "20240101",
                "search_Edate": "20240501",
                "search_condition": "2",
            },
        )
    assert caught.value.code == str(codes.PERIOD_TOO_LONG_OR_SELLER_INVALID)


async def test_a_200_day_period_is_read_in_windows_the_api_accepts(
    sandbox: Qoo10Sandbox, client: Qoo10Client
) -> None:
    base = datetime(2023, 1, 1, tzinfo=UTC)
    late = sandbox.new_order(paid_at=base + timedelta(days=150))
    changes = await client.changes_since(base, base + timedelta(days=200))
    assert kinds(changes, late) == [ChangeKind.ORDER_PAID]


async def test_r17_overlapping_polls_give_the_same_change_keys(
    sandbox: Qoo10Sandbox, client: Qoo10Client
) -> None:
    order_no = await dispatched_order(sandbox, client)
    since, until = around_now()
    first = await client.changes_since(since, until)
    second = await client.changes_since(since + timedelta(minutes=1), until + timedelta(seconds=1))
    keys = {c.change_key for c in first if order_no in c.unit_ids}
    assert keys == {c.change_key for c in second if order_no in c.unit_ids}
    assert len(keys) == 2  # order paid, dispatched


async def test_r17_visibility_lag_needs_the_overlap_window() -> None:
    """A change listed late is missed by a poll that starts at its cursor, found with overlap."""
    now = [datetime(2024, 6, 1, 12, 0, tzinfo=UTC)]
    sandbox = Qoo10Sandbox(seed=1, lag_seconds=300, clock=lambda: now[0])
    await sandbox.start()
    c = make_client(sandbox)
    try:
        order_no = sandbox.new_order(paid_at=now[0] - timedelta(seconds=30))
        assert await c.changes_since(now[0] - timedelta(minutes=1), now[0]) == []
        cursor = now[0]
        now[0] += timedelta(minutes=6)
        assert await c.changes_since(cursor, now[0]) == []  # the fact lies before the cursor
        found = await c.changes_since(cursor - timedelta(minutes=10), now[0])
        assert kinds(found, order_no) == [ChangeKind.ORDER_PAID]
    finally:
        await c.aclose()
        await sandbox.stop()


async def test_dispatch_delivery_and_purchase_decision_ingested(
    sandbox: Qoo10Sandbox, client: Qoo10Client
) -> None:
    order_no = await dispatched_order(sandbox, client)
    sandbox.deliver(order_no)
    sandbox.decide_purchase(order_no)
    changes = await client.changes_since(*around_now())
    assert sorted(kinds(changes, order_no)) == sorted(
        [
            ChangeKind.ORDER_PAID,
            ChangeKind.DISPATCHED,
            ChangeKind.DELIVERED,
            ChangeKind.PURCHASE_DECIDED,
        ]
    )
    [dispatched] = [c for c in changes if c.kind == ChangeKind.DISPATCHED]
    assert dispatched.carrier == Carrier.YAMATO
    assert dispatched.tracking_number == sandbox.order(order_no).tracking_no


async def test_r25_buyer_cancel_of_a_new_order_arrives_completed(
    sandbox: Qoo10Sandbox, client: Qoo10Client
) -> None:
    order_no = sandbox.new_order()
    assert sandbox.buyer_cancel(order_no) == "canceled"
    changes = await client.changes_since(*around_now())
    assert ChangeKind.CANCELED in kinds(changes, order_no)
    assert ChangeKind.CANCEL_REQUESTED not in kinds(changes, order_no)


async def test_r25_buyer_cancel_after_ship_date_is_a_request_then_withdrawn(
    sandbox: Qoo10Sandbox, client: Qoo10Client
) -> None:
    order_no = await confirmed_order(sandbox, client)
    assert sandbox.buyer_cancel(order_no) == "requested"
    first = await client.changes_since(*around_now())
    [requested] = [c for c in first if c.kind == ChangeKind.CANCEL_REQUESTED]
    assert requested.unit_ids == [order_no]
    assert requested.claim_id

    sandbox.withdraw_cancel(order_no)
    second = await client.changes_since(*around_now())
    assert ChangeKind.CANCEL_WITHDRAWN in kinds(second, order_no)
    assert ChangeKind.CANCELED not in kinds(second, order_no)
    [again] = [c for c in second if c.kind == ChangeKind.CANCEL_REQUESTED]
    assert again.change_key == requested.change_key  # the same fact, de-duplicated downstream


async def test_r25_cancel_request_approved_in_qsm_arrives_as_canceled(
    sandbox: Qoo10Sandbox, client: Qoo10Client
) -> None:
    order_no = await confirmed_order(sandbox, client)
    sandbox.buyer_cancel(order_no)
    sandbox.qsm_approve_cancel(order_no)
    changes = await client.changes_since(*around_now())
    assert ChangeKind.CANCELED in kinds(changes, order_no)


async def test_return_request_and_completion_ingested(
    sandbox: Qoo10Sandbox, client: Qoo10Client
) -> None:
    order_no = await dispatched_order(sandbox, client)
    sandbox.return_request(order_no, reason="wrong size")
    changes = await client.changes_since(*around_now())
    [request] = [c for c in changes if c.kind == ChangeKind.RETURN_REQUESTED]
    assert request.reason == "wrong size"
    sandbox.complete_return(order_no)
    changes = await client.changes_since(*around_now())
    assert ChangeKind.RETURNED in kinds(changes, order_no)


async def test_changes_are_sorted_by_time_and_in_jst(
    sandbox: Qoo10Sandbox, client: Qoo10Client
) -> None:
    base = datetime.now(UTC) - timedelta(minutes=30)
    for minutes in (20, 5, 12):
        sandbox.new_order(paid_at=base + timedelta(minutes=minutes))
    changes = await client.changes_since(base, base + timedelta(minutes=31))
    times = [c.changed_at for c in changes]
    assert times == sorted(times)
    assert all(
        t.tzinfo is not None and t.astimezone(JST).utcoffset() == timedelta(hours=9) for t in times
    )
