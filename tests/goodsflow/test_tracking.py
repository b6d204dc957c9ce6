"""Tracking over loopback HTTP: progression to delivered (R06), stale invoices, webhooks."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime, timedelta

from aiohttp import web

from channelsync.settings import Settings
from connectors.goodsflow import (
    GoodsflowClient,
    IdType,
    TrackingEvent,
    TrackingRegistration,
    parse_callback,
    to_scan,
)
from connectors.goodsflow.sandbox import GoodsflowSandbox
from store.carriers import Carrier
from store.domain import LineStatus, TrackingState
from store.invoices import generate_valid_number, inspect_invoice
from store.tracking import decide, merge_state, stale_invoices
from tests.goodsflow.helpers import HOUR, issue_and_print, waybill


@dataclass
class Line:
    """A store line and its invoice, as the tracking agent would keep them."""

    invoice_no: str
    carrier: Carrier
    issued_at: datetime
    status: LineStatus = LineStatus.READY_TO_SHIP
    tracking_state: str = "NONE"
    last_scan_at: datetime | None = None
    dispatches: int = 0

    def apply(self, event: TrackingEvent) -> None:
        assert event.state is not None, event
        valid = inspect_invoice(self.carrier, self.invoice_no).valid
        decision = decide(self.status, valid, event.state)
        for status in decision.new_statuses:
            self.status = status
        self.dispatches += decision.dispatch
        self.tracking_state = merge_state(TrackingState(self.tracking_state), event.state)
        if event.is_scan:
            self.last_scan_at = event.at


async def test_r06_tracking_progresses_to_delivered_and_dispatches_once(
    client: GoodsflowClient, sandbox: GoodsflowSandbox
) -> None:
    """R06: pickup scan → SHIPPING with one dispatch; later scans never dispatch again; the
    delivered scan → DELIVERED."""
    sid, number = await issue_and_print(client, sandbox, waybill("line-6"))
    line = Line(number, Carrier.HANJIN, datetime.now().astimezone())
    seen: list[tuple[str, LineStatus]] = []
    for _ in range(6):  # pickup at +2h, then one stage per hour
        for event in await client.pull_events():
            line.apply(event)
            seen.append((event.raw_status, line.status))
        sandbox.advance_clock(HOUR)
    assert seen == [
        ("PRINTED", LineStatus.READY_TO_SHIP),
        ("PICKUP", LineStatus.SHIPPING),
        ("IN_TRANSIT", LineStatus.SHIPPING),
        ("DLV_START", LineStatus.SHIPPING),
        ("COMPLETED", LineStatus.DELIVERED),
    ]
    assert line.dispatches == 1 and line.tracking_state == "DELIVERED"
    info = await client.get_tracking(sid)
    assert info.state is TrackingState.DELIVERED and info.invoice_no == number
    assert [e.raw_status for e in info.events] == ["PICKUP", "IN_TRANSIT", "DLV_START", "COMPLETED"]
    assert info.picked_up_at and info.delivered_at
    assert info.delivered_at - info.picked_up_at == timedelta(hours=3)
    assert (await client.track_number(Carrier.HANJIN, number)).state is TrackingState.DELIVERED


async def test_r06_late_first_poll_replays_history_in_order(
    client: GoodsflowClient, sandbox: GoodsflowSandbox
) -> None:
    """R06: a poller that wakes after delivery still sees pickup first (one dispatch), and a
    line that only learns "delivered" goes through SHIPPING (R01)."""
    sid, number = await issue_and_print(client, sandbox, waybill("line-late"))
    sandbox.advance_clock(30 * HOUR)
    events = await client.pull_events()
    assert [e.seq for e in events] == [0, 1, 2, 3, 4]
    line = Line(number, Carrier.HANJIN, datetime.now().astimezone())
    for event in events:
        line.apply(event)
    assert line.status is LineStatus.DELIVERED and line.dispatches == 1
    only_last = decide(
        LineStatus.READY_TO_SHIP, True, (await client.get_tracking(sid)).state or TrackingState.NONE
    )
    assert only_last.new_statuses == (LineStatus.SHIPPING, LineStatus.DELIVERED)


async def test_r06_webhook_pull_is_consume_once(
    client: GoodsflowClient, sandbox: GoodsflowSandbox
) -> None:
    sid, _ = await issue_and_print(client, sandbox, waybill("line-once"))
    sandbox.advance_clock(3 * HOUR)
    first = await client.pull_events()
    assert [e.raw_status for e in first] == ["PRINTED", "PICKUP", "IN_TRANSIT"]
    assert await client.pull_events() == []
    again = await client.events_for(sid)  # per-registration read stays available
    assert [e.raw_status for e in again] == ["PRINTED", "PICKUP", "IN_TRANSIT"]


async def test_never_picked_up_invoice_is_reported_stale(
    client: GoodsflowClient, sandbox: GoodsflowSandbox
) -> None:
    """A parcel the carrier never collects gets no scan; after the configured window its
    invoice is stale while a collected one is not."""
    after = timedelta(seconds=Settings().stale_invoice_after_seconds)
    issued = datetime.now().astimezone()
    lines = {}
    for uid in ("line-lost", "line-ok"):
        _, number = await issue_and_print(client, sandbox, waybill(uid))
        lines[uid] = Line(number, Carrier.HANJIN, issued)
    sandbox.never_pickup(lines["line-lost"].invoice_no)
    sandbox.advance_clock(after.total_seconds() + HOUR)
    by_number = {line.invoice_no: line for line in lines.values()}
    events = await client.pull_events()
    for event in events:
        by_number[event.invoice_no or ""].apply(event)
    lost = [e.raw_status for e in events if e.unique_id == "line-lost"]
    assert lost == ["PRINTED", "PICKUP_FAILED"]
    now = issued + after + timedelta(hours=1)
    assert [line.invoice_no for line in stale_invoices(lines.values(), now, after)] == [
        lines["line-lost"].invoice_no
    ]
    assert lines["line-lost"].status is LineStatus.READY_TO_SHIP
    assert lines["line-ok"].status is LineStatus.DELIVERED
    info = await client.get_tracking("line-lost", IdType.UNIQUE_ID)
    assert info.state is TrackingState.NONE and info.raw_status == "PICKUP_FAILED"


async def test_forced_status_on_the_test_endpoint(
    client: GoodsflowClient, sandbox: GoodsflowSandbox
) -> None:
    sid, _ = await issue_and_print(client, sandbox, waybill("line-ret"))
    info = await client.force_status(sid, "RETURNED")
    assert info.state is TrackingState.EXCEPTION and info.raw_status == "RETURNED"


async def test_r18_manual_invoice_registered_for_tracking(
    client: GoodsflowClient, sandbox: GoodsflowSandbox
) -> None:
    """R18: a valid manual waybill can be tracked; an invalid one is refused per item."""
    import random

    good = generate_valid_number(Carrier.LOTTE, random.Random(3))
    bad = good[:-1] + str((int(good[-1]) + 1) % 7)
    results = await client.register_tracking(
        [
            TrackingRegistration("m-1", Carrier.LOTTE, good, "Mug"),
            TrackingRegistration("m-2", Carrier.LOTTE, bad, "Mug"),
        ]
    )
    assert [r.ok for r in results] == [True, False]
    again = await client.register_tracking([TrackingRegistration("m-1", Carrier.LOTTE, good)])
    assert again[0].ok and again[0].duplicate
    assert sandbox.ledger.count("tracking.registered") == 1
    sandbox.advance_clock(2 * HOUR + 1)
    info = await client.track_number(Carrier.LOTTE, good)
    assert info.state is TrackingState.PICKED_UP


async def test_r18_goodsflow_number_check_agrees_with_store_rules(client: GoodsflowClient) -> None:
    checks = await client.check_numbers(Carrier.CJ, ["6848-0962-3814", "68480962381"])
    assert [(c.invoice_no, c.valid) for c in checks] == [
        ("684809623814", True),
        ("68480962381", False),
    ]


async def test_callback_push_is_parsed_by_the_receiver(
    client: GoodsflowClient, sandbox: GoodsflowSandbox
) -> None:
    """Webhook push: events posted to our receiver parse into the same events the pull gives;
    a failing receiver leaves them queued for the pull."""
    received: list[TrackingEvent] = []
    fail = {"on": True}

    async def receiver(request: web.Request) -> web.Response:
        if fail["on"]:
            return web.Response(status=500)
        received.extend(parse_callback(await request.read()))
        return web.json_response({"ok": True})

    app = web.Application()
    app.router.add_post("/hook", receiver)
    runner = web.AppRunner(app)
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", 0)
    await site.start()
    port = site._server.sockets[0].getsockname()[1]  # type: ignore[union-attr]
    url = f"http://127.0.0.1:{port}/hook"
    try:
        _, number = await issue_and_print(client, sandbox, waybill("line-cb"))
        sandbox.advance_clock(2 * HOUR)
        assert await sandbox.push_callbacks(url) == 0
        fail["on"] = False
        assert await sandbox.push_callbacks(url) == 2
    finally:
        await runner.cleanup()
    assert [e.raw_status for e in received] == ["PRINTED", "PICKUP"]
    assert await client.pull_events() == []
    scan = to_scan(received[1])
    assert scan is not None and scan.state is TrackingState.PICKED_UP
    assert scan.tracking_number == number and scan.carrier is Carrier.HANJIN
