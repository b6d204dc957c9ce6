"""The condition query (spec §4.5) and order completion with few calls (R17, benchmark issue).

An order paid in the polled window arrives whole from the condition query by pay date (300 per
page); product-order-ids is asked only for an order the condition query did not return whole.
Call counts come from the sandbox's request counter.
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from datetime import UTC, datetime, timedelta
from typing import Any

import httpx
import pytest
from aiohttp import web

from connectors.naverpay.changes import build_changes, latest_per_product_order
from connectors.naverpay.client import NaverPayClient
from connectors.naverpay.dates import format_dt
from connectors.naverpay.feed import Window
from connectors.naverpay.sandbox import NaverPaySandbox
from connectors.naverpay.sandbox_api import SandboxApi
from tests.naverpay.conftest import FakeClock, make_client, recent, valid_number
from tests.naverpay.test_sandbox import token
from topics.changes import ChangeKind, ChannelChange

CONDITION = "/v1/pay-order/seller/product-orders"
FEED = "/v1/pay-order/seller/product-orders/last-changed-statuses"


def of_kind(changes: list[ChannelChange], kind: ChangeKind) -> list[ChannelChange]:
    return [c for c in changes if c.kind is kind]


def lines_of(change: ChannelChange) -> list[str]:
    assert change.order is not None
    return [line.unit_id for line in change.order.lines]


@pytest.fixture
async def http(sandbox: NaverPaySandbox) -> AsyncIterator[tuple[httpx.AsyncClient, str]]:
    assert sandbox.url is not None
    async with httpx.AsyncClient(base_url=sandbox.url) as client:
        yield client, await token(client)


async def condition(
    http: tuple[httpx.AsyncClient, str], since: datetime, until: datetime, **params: Any
) -> httpx.Response:
    client, tok = http
    query = {"from": format_dt(since), "to": format_dt(until), **params}
    return await client.get(CONDITION, params=query, headers={"Authorization": f"Bearer {tok}"})


# --- the sandbox's condition query ---------------------------------------------------------------
async def test_condition_query_pages_by_number_in_pay_date_order(
    sandbox: NaverPaySandbox, http: tuple[httpx.AsyncClient, str]
) -> None:
    now = datetime.now(UTC)
    inside = [
        sandbox.new_paid_order([{"name": "A"}, {"name": "B"}], at=now - timedelta(minutes=m))
        for m in (50, 40, 30, 20)
    ]
    sandbox.new_paid_order(at=now - timedelta(hours=2))  # paid before the range
    sandbox.new_paid_order(paid=False)  # never paid
    expected = [po for o in inside for po in o["productOrderIds"]]  # ascending pay date, id
    pages = []
    for page in (1, 2, 3):
        resp = await condition(http, now - timedelta(hours=1), now, pageSize="3", page=str(page))
        assert resp.status_code == 200, resp.text
        pages.append(resp.json()["data"])
    assert [p["pagination"] for p in pages] == [
        {"page": 1, "size": 3, "hasNext": True},
        {"page": 2, "size": 3, "hasNext": True},
        {"page": 3, "size": 3, "hasNext": False},
    ]
    got = [c["productOrderId"] for p in pages for c in p["contents"]]
    assert got == expected
    first = pages[0]["contents"][0]
    assert first["content"] == sandbox.detail(first["productOrderId"])
    default = (await condition(http, now - timedelta(hours=1), now)).json()["data"]
    assert len(default["contents"]) == 8 and default["pagination"]["hasNext"] is False


async def test_condition_query_filters_by_range_type_and_status(
    sandbox: NaverPaySandbox, http: tuple[httpx.AsyncClient, str]
) -> None:
    now = datetime.now(UTC)
    a, b = sandbox.new_paid_order([{"name": "A"}, {"name": "B"}])["productOrderIds"]
    sandbox.seller_centre_dispatch([a], "CJGLS", valid_number())
    since, until = now - timedelta(minutes=1), now + timedelta(minutes=1)

    async def ids(**params: str) -> list[str]:
        resp = await condition(http, since, until, **params)
        assert resp.status_code == 200, resp.text
        return [c["productOrderId"] for c in resp.json()["data"]["contents"]]

    assert await ids(rangeType="DISPATCHED_DATETIME") == [a]
    assert await ids(productOrderStatuses="PAYED") == [b]
    assert await ids(productOrderStatuses="PAYED,DELIVERING") == [a, b]
    assert await ids(rangeType="GIFT_RECEIVED_DATETIME") == []


@pytest.mark.parametrize(
    ("params", "code"),
    [
        ({"pageSize": "301"}, "4000"),
        ({"pageSize": "0"}, "4000"),
        ({"page": "0"}, "4000"),
        ({"rangeType": "SHIPPED_DATETIME"}, "4000"),
        ({"productOrderStatuses": "PAID"}, "4000"),
        ({"span_hours": 25}, "104139"),
        ({"span_hours": -1}, "104133"),
    ],
)
async def test_condition_query_refuses_bad_parameters(
    sandbox: NaverPaySandbox, http: tuple[httpx.AsyncClient, str], params: dict, code: str
) -> None:
    now = datetime.now(UTC)
    span = timedelta(hours=params.pop("span_hours", 1))
    resp = await condition(http, now, now + span, **params)
    assert resp.status_code == 400
    assert resp.json()["code"] == code


async def test_condition_query_is_rate_limited_per_endpoint_like_the_others() -> None:
    """Documented limits: burst 4 per endpoint; the 5th quick call answers 429 with the same
    body as the feed's 429, while the feed's own bucket is untouched by condition calls."""
    sb = NaverPaySandbox(visibility_lag=0, rates=None)
    url = await sb.start()
    try:
        async with httpx.AsyncClient(base_url=url) as client:
            tok = await token(client)
            auth = {"Authorization": f"Bearer {tok}"}
            now = datetime.now(UTC)
            cond = {"from": format_dt(now - timedelta(hours=1)), "to": format_dt(now)}
            feed = {"lastChangedFrom": cond["from"], "lastChangedTo": cond["to"]}
            answers = [(await client.get(CONDITION, params=cond, headers=auth)) for _ in range(5)]
            assert [r.status_code for r in answers] == [200, 200, 200, 200, 429]
            feed_answers = [(await client.get(FEED, params=feed, headers=auth)) for _ in range(5)]
            assert [r.status_code for r in feed_answers] == [200, 200, 200, 200, 429]
    finally:
        await sb.stop()
    cond_429, feed_429 = answers[-1], feed_answers[-1]
    assert cond_429.json()["code"] == feed_429.json()["code"] == "GW.RATE_LIMIT"
    assert sorted(cond_429.json()) == sorted(feed_429.json())
    assert cond_429.headers["GNCP-GW-Trace-ID"] == cond_429.json()["traceId"]
    assert cond_429.headers["Retry-After"] == feed_429.headers["Retry-After"]
    assert sb.quota.rejected["condition"] == 1 and sb.quota.rejected["last_changed"] == 1


# --- the client ----------------------------------------------------------------------------------
async def test_client_reads_every_condition_page(sandbox: NaverPaySandbox, instant: None) -> None:
    now = datetime.now(UTC)
    orders = [sandbox.new_paid_order(at=now - timedelta(seconds=i)) for i in range(10)]
    client = make_client(sandbox, condition_page_size=3)
    try:
        details, whole = await client.paid_in_window(Window(now - timedelta(minutes=1), now))
    finally:
        await client.aclose()
    assert sandbox.requests["condition"] == 4  # 3 + 3 + 3 + 1
    assert sorted(details) == sorted(o["productOrderIds"][0] for o in orders)
    assert whole == {o["orderId"] for o in orders}


async def test_new_orders_are_completed_from_the_condition_query_with_few_calls(
    sandbox: NaverPaySandbox, instant: None
) -> None:
    """120 product orders in 40 three-line orders: one feed page, pages of the condition query,
    no detail query and no product-order-ids call; every ORDER_PAID lists its three lines."""
    now = datetime.now(UTC)
    orders = [
        sandbox.new_paid_order(
            [{"name": "A"}, {"name": "B"}, {"name": "C"}], at=now - timedelta(seconds=i)
        )
        for i in range(40)
    ]
    client = make_client(sandbox, condition_page_size=50)
    try:
        changes = await client.changes_since(*recent())
    finally:
        await client.aclose()
    paid = {c.channel_order_id: lines_of(c) for c in of_kind(changes, ChangeKind.ORDER_PAID)}
    assert paid == {o["orderId"]: o["productOrderIds"] for o in orders}
    assert sandbox.requests["last_changed"] == 1
    assert sandbox.requests["condition"] == 3  # 120 / 50
    assert sandbox.requests["query"] == 0
    assert sandbox.requests["product_order_ids"] == 0


async def test_a_poll_without_feed_entries_makes_no_condition_call(
    sandbox: NaverPaySandbox, client: NaverPayClient
) -> None:
    sandbox.new_paid_order(at=datetime.now(UTC) - timedelta(hours=3))
    assert await client.changes_since(*recent()) == []
    assert sandbox.requests["last_changed"] == 1 and sandbox.requests["condition"] == 0


async def test_an_order_paid_before_the_window_falls_back_to_product_order_ids(
    sandbox: NaverPaySandbox, client: NaverPayClient
) -> None:
    """Paid 2 h ago, one line dispatched now: the window's condition query cannot return it, so
    its siblings come from product-order-ids (once; the set is cached)."""
    order = sandbox.new_paid_order(
        [{"name": "A"}, {"name": "B"}], at=datetime.now(UTC) - timedelta(hours=2)
    )
    a, b = order["productOrderIds"]
    sandbox.seller_centre_dispatch([a], "CJGLS", valid_number())
    sandbox.new_paid_order()  # something paid inside the window, so the condition query runs
    for _ in range(2):
        changes = await client.changes_since(*recent())
        (paid,) = [
            c
            for c in of_kind(changes, ChangeKind.ORDER_PAID)
            if c.channel_order_id == order["orderId"]
        ]
        assert lines_of(paid) == [a, b]
        assert len(of_kind(changes, ChangeKind.DISPATCHED)) == 1
    assert sandbox.requests["condition"] == 2
    assert sandbox.requests["product_order_ids"] == 1


async def test_an_order_not_yet_searchable_falls_back_to_product_order_ids(instant: None) -> None:
    """The feed shows the order before the condition query finds it: completed one by one."""
    sb = NaverPaySandbox(visibility_lag=0, rates={}, condition_lag=300)
    await sb.start()
    client = make_client(sb)
    try:
        order = sb.new_paid_order([{"name": "A"}, {"name": "B"}])
        (paid,) = of_kind(await client.changes_since(*recent()), ChangeKind.ORDER_PAID)
    finally:
        await client.aclose()
        await sb.stop()
    assert lines_of(paid) == order["productOrderIds"]
    assert sb.requests["condition"] == 1 and sb.requests["product_order_ids"] == 1


async def test_a_refused_condition_query_falls_back_to_product_order_ids(
    monkeypatch: pytest.MonkeyPatch, instant: None
) -> None:
    async def refuse(self: SandboxApi, request: web.Request) -> web.StreamResponse:
        return self._bad(request, "not available for this application")

    monkeypatch.setattr(SandboxApi, "condition", refuse)
    sb = NaverPaySandbox(visibility_lag=0, rates={})
    await sb.start()
    client = make_client(sb)
    try:
        orders = [sb.new_paid_order([{"name": "A"}, {"name": "B"}]) for _ in range(3)]
        changes = await client.changes_since(*recent())
    finally:
        await client.aclose()
        await sb.stop()
    paid = {c.channel_order_id: lines_of(c) for c in of_kind(changes, ChangeKind.ORDER_PAID)}
    assert paid == {o["orderId"]: o["productOrderIds"] for o in orders}
    assert sb.requests["condition"] == 1 and sb.requests["product_order_ids"] == 3


async def test_r17_late_visible_sibling_is_collected_and_applied_once(instant: None) -> None:
    """Line B's feed record becomes visible 5 min after line A's. The first poll sees only A in
    the feed, yet its ORDER_PAID lists A and B (the condition query reads the order, not the
    feed); the overlap re-read finds B's own entry; the keys de-duplicate; no
    product-order-ids call at all."""
    clock = FakeClock()
    sb = NaverPaySandbox(visibility_lag=0, rates={}, clock=clock)
    await sb.start()
    client = make_client(sb, clock=clock)
    overlap = timedelta(minutes=10)
    applied: dict[str, ChannelChange] = {}
    try:
        order = sb.new_paid_order([{"name": "A", "lag": 0}, {"name": "B", "lag": 300}])
        a, b = order["productOrderIds"]
        until = clock.dt() + timedelta(seconds=1)
        fed_first = {e.product_order_id for e in await client.feed_entries(until - overlap, until)}
        first = await client.changes_since(until - overlap, until)
        clock.advance(400)
        until2 = clock.dt()
        fed_second = {
            e.product_order_id for e in await client.feed_entries(until2 - overlap, until2)
        }
        second = await client.changes_since(until2 - overlap, until2)
        for change in first + second:
            applied.setdefault(change.change_key, change)
    finally:
        await client.aclose()
        await sb.stop()
    assert fed_first == {a} and fed_second == {a, b}
    (paid1,), (paid2,) = (
        of_kind(first, ChangeKind.ORDER_PAID),
        of_kind(second, ChangeKind.ORDER_PAID),
    )
    assert lines_of(paid1) == lines_of(paid2) == [a, b]
    assert paid1.change_key == paid2.change_key
    assert [c.kind for c in applied.values()] == [ChangeKind.ORDER_PAID]
    assert sb.requests["product_order_ids"] == 0 and sb.requests["query"] == 0


async def test_r17_order_late_visible_as_a_whole_is_completed_on_the_overlap_re_read(
    instant: None,
) -> None:
    clock = FakeClock()
    sb = NaverPaySandbox(visibility_lag=0, rates={}, clock=clock)
    await sb.start()
    client = make_client(sb, clock=clock)
    overlap = timedelta(minutes=10)
    try:
        order = sb.new_paid_order([{"name": "A"}, {"name": "B"}], lag=300)
        first = await client.changes_since(clock.dt() - overlap, clock.dt())
        clock.advance(400)
        second = await client.changes_since(clock.dt() - overlap, clock.dt())
    finally:
        await client.aclose()
        await sb.stop()
    assert first == []
    (paid,) = of_kind(second, ChangeKind.ORDER_PAID)
    assert lines_of(paid) == order["productOrderIds"]
    assert sb.requests["product_order_ids"] == 0 and sb.requests["query"] == 0


async def one_by_one(
    client: NaverPayClient, since: datetime, until: datetime
) -> list[ChannelChange]:
    """The former algorithm: details of the feed's product orders, then product-order-ids for
    every paid order and the details of the siblings missing."""
    latest = latest_per_product_order(await client.feed_entries(since, until))
    details = await client.product_orders(list(latest))
    paid = {
        str(d["order"]["orderId"])
        for d in details.values()
        if (d.get("order") or {}).get("paymentDate")
    }
    missing: list[str] = []
    for order_id in sorted({e.order_id for e in latest.values()} & paid):
        missing.extend(u for u in await client.product_order_ids(order_id) if u not in details)
    details.update(await client.product_orders(missing))
    return build_changes(latest.values(), details, account=client.account, now=client._now())


async def test_changes_are_the_same_facts_as_with_one_call_per_order(instant: None) -> None:
    """A mixed window (multi-line orders, a sibling whose record moved out of the window, an
    order paid before the window and dispatched in it, an unpaid order, an address change,
    claims): the same facts, keys and payloads as the one-call-per-order algorithm."""
    clock = FakeClock()
    sb = NaverPaySandbox(visibility_lag=0, rates={}, clock=clock)
    await sb.start()
    client = make_client(sb, clock=clock)
    try:
        t0 = clock.dt()
        old = sb.new_paid_order([{"name": "D"}, {"name": "E"}], at=t0 - timedelta(hours=5))
        big = sb.new_paid_order([{"name": "A"}, {"name": "B"}, {"name": "C"}])
        clock.advance(60)
        sb.new_paid_order(paid=False)
        moved = sb.new_paid_order([{"name": "F"}, {"name": "G"}])
        sb.change_address(moved["orderId"], {"name": "Lee", "line1": "Busan"})
        clock.advance(60)
        sb.seller_centre_dispatch([old["productOrderIds"][0]], "CJGLS", valid_number())
        sb.buyer_cancel_request(moved["productOrderIds"][0])
        clock.advance(600)
        moved_out = big["productOrderIds"][1]
        sb.buyer_cancel_request(moved_out)  # B's record leaves the window
        since, until = t0 - timedelta(minutes=1), t0 + timedelta(minutes=3)
        fed = {e.product_order_id for e in await client.feed_entries(since, until)}
        assert moved_out not in fed and old["productOrderIds"][1] not in fed
        new = await client.changes_since(since, until)
        reference = await one_by_one(client, since, until)
    finally:
        await client.aclose()
        await sb.stop()

    def facts(changes: list[ChannelChange]) -> list[dict[str, Any]]:
        return [c.model_dump() for c in changes]

    assert [c.change_key for c in new] == [c.change_key for c in reference]
    assert facts(new) == facts(reference)
    assert {c.kind for c in new} >= {
        ChangeKind.ORDER_PAID,
        ChangeKind.DISPATCHED,
        ChangeKind.CANCEL_REQUESTED,
        ChangeKind.ADDRESS_CHANGED,
    }
    paid = {c.channel_order_id: lines_of(c) for c in of_kind(new, ChangeKind.ORDER_PAID)}
    assert paid == {o["orderId"]: o["productOrderIds"] for o in (old, big, moved)}
