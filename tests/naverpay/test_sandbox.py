"""The sandbox itself: feed semantics, token rules, control API over HTTP, the entry point."""

from __future__ import annotations

import asyncio
import socket
from datetime import UTC, datetime, timedelta
from typing import Any

import httpx

from connectors.naverpay import sandbox as sandbox_module
from connectors.naverpay.auth import client_secret_sign
from connectors.naverpay.dates import format_dt
from connectors.naverpay.sandbox import NaverPaySandbox
from tests.naverpay.conftest import SECRET, FakeClock

FEED = "/v1/pay-order/seller/product-orders/last-changed-statuses"


async def token(http: httpx.AsyncClient, clock: float | None = None) -> str:
    stamp = int(((clock or datetime.now(UTC).timestamp()) - 1) * 1000)
    form = {
        "client_id": "sandbox-client",
        "timestamp": str(stamp),
        "grant_type": "client_credentials",
        "client_secret_sign": client_secret_sign("sandbox-client", SECRET, stamp),
        "type": "SELF",
    }
    resp = await http.post("/v1/oauth2/token", data=form)
    assert resp.status_code == 200, resp.text
    return str(resp.json()["access_token"])


async def feed(
    http: httpx.AsyncClient, tok: str, since: datetime, until: datetime
) -> httpx.Response:
    return await http.get(
        FEED,
        params={"lastChangedFrom": format_dt(since), "lastChangedTo": format_dt(until)},
        headers={"Authorization": f"Bearer {tok}"},
    )


async def test_r17_change_shows_only_after_its_visibility_lag() -> None:
    clock = FakeClock()
    sb = NaverPaySandbox(visibility_lag=0, rates={}, clock=clock)
    url = await sb.start()
    try:
        async with httpx.AsyncClient(base_url=url) as http:
            tok = await token(http, clock.now)
            at = clock.dt()
            sb.new_paid_order(lag=120)
            window = (at - timedelta(minutes=1), at + timedelta(minutes=1))
            assert (await feed(http, tok, *window)).json()["data"]["count"] == 0
            clock.advance(119)
            assert (await feed(http, tok, *window)).json()["data"]["count"] == 0
            clock.advance(1)
            body = (await feed(http, tok, *window)).json()
    finally:
        await sb.stop()
    (record,) = body["data"]["lastChangeStatuses"]
    assert record["lastChangedType"] == "PAYED"
    assert record["lastChangedDate"] == format_dt(
        at.replace(microsecond=at.microsecond // 1000 * 1000)
    )


async def test_r17_an_older_change_made_visible_late_never_replaces_a_newer_one() -> None:
    clock = FakeClock()
    sb = NaverPaySandbox(visibility_lag=0, rates={}, clock=clock)
    url = await sb.start()
    try:
        async with httpx.AsyncClient(base_url=url) as http:
            tok = await token(http, clock.now)
            po = sb.new_paid_order(lag=0)["productOrderIds"][0]
            clock.advance(1)
            sb.buyer_cancel_request(po, lag=300)  # visible in 5 minutes
            clock.advance(1)
            sb.withdraw_cancel(po, lag=0)  # newer, visible at once
            window = (clock.dt() - timedelta(minutes=5), clock.dt() + timedelta(minutes=10))
            now_types = [
                r["lastChangedType"]
                for r in (await feed(http, tok, *window)).json()["data"]["lastChangeStatuses"]
            ]
            clock.advance(400)
            later_types = [
                r["lastChangedType"]
                for r in (await feed(http, tok, *window)).json()["data"]["lastChangeStatuses"]
            ]
    finally:
        await sb.stop()
    assert now_types == ["CLAIM_REJECTED"] and later_types == ["CLAIM_REJECTED"]


async def test_window_over_24_hours_and_unencoded_offset_are_refused(
    sandbox: NaverPaySandbox,
) -> None:
    async with httpx.AsyncClient(base_url=str(sandbox.url)) as http:
        tok = await token(http)
        now = datetime.now(UTC)
        too_long = await feed(http, tok, now - timedelta(hours=24, milliseconds=1), now)
        raw = await http.get(
            f"{FEED}?lastChangedFrom=2026-03-02T10:00:00.000+09:00",
            headers={"Authorization": f"Bearer {tok}"},
        )
    assert (too_long.status_code, too_long.json()["code"]) == (400, "104139")
    assert too_long.headers["GNCP-GW-Trace-ID"] == too_long.json()["traceId"]
    assert raw.status_code == 400  # '+' not percent-encoded (spec §1)


async def test_non_standard_token_call_penalises_the_whole_app(sandbox: NaverPaySandbox) -> None:
    """Spec §2.5: parameters in the query string → every API answers 429 GW.QUOTA_LIMIT."""
    async with httpx.AsyncClient(base_url=str(sandbox.url)) as http:
        tok = await token(http)
        stamp = int(datetime.now(UTC).timestamp() * 1000) - 1000
        bad = await http.post(
            "/v1/oauth2/token",
            params={
                "client_id": "sandbox-client",
                "timestamp": str(stamp),
                "grant_type": "client_credentials",
                "client_secret_sign": client_secret_sign("sandbox-client", SECRET, stamp),
                "type": "SELF",
            },
        )
        after = await http.post(
            "/v1/pay-order/seller/product-orders/query",
            json={"productOrderIds": ["1"]},
            headers={"Authorization": f"Bearer {tok}"},
        )
    assert bad.status_code == 400
    assert (after.status_code, after.json()["code"]) == (429, "GW.QUOTA_LIMIT")
    assert after.headers["GNCP-GW-Quota-Period"] == "HOURS"
    assert sandbox.ledger.count("token_penalty") == 1


async def test_token_is_reused_while_30_minutes_remain(sandbox: NaverPaySandbox) -> None:
    async with httpx.AsyncClient(base_url=str(sandbox.url)) as http:
        first, second = await token(http), await token(http)
    assert first == second and sandbox.ledger.count("token_issued") == 1


async def test_rate_limit_answers_429_in_naver_shape_with_headers() -> None:
    sb = NaverPaySandbox(visibility_lag=0)  # documented default: 2/s, burst 4
    url = await sb.start()
    try:
        async with httpx.AsyncClient(base_url=url) as http:
            tok = await token(http)
            answers = [
                await http.post(
                    "/v1/pay-order/seller/product-orders/query",
                    json={"productOrderIds": ["1"]},
                    headers={"Authorization": f"Bearer {tok}"},
                )
                for _ in range(6)
            ]
    finally:
        await sb.stop()
    codes = [a.status_code for a in answers]
    assert codes[:4] == [200] * 4 and 429 in codes[4:]
    refused = answers[codes.index(429)]
    assert refused.json()["code"] == "GW.RATE_LIMIT"
    assert refused.headers["Retry-After"] == "1"
    assert answers[0].headers["GNCP-GW-RateLimit-Replenish-Rate"] == "2"
    assert answers[0].headers["GNCP-GW-RateLimit-Burst-Capacity"] == "4"


async def test_control_api_injects_buyer_events_and_shows_the_ledger(
    sandbox: NaverPaySandbox,
) -> None:
    async with httpx.AsyncClient(base_url=str(sandbox.url)) as http:

        async def post(path: str, body: dict[str, Any] | None = None) -> httpx.Response:
            return await http.post(f"/_control/{path}", json=body or {})

        made = (
            await post("orders", {"lines": [{"name": "A", "quantity": 2}], "mileage_used": 500})
        ).json()
        order, (po,) = made["result"]["orderId"], made["result"]["productOrderIds"]
        assert (
            await post(f"orders/{order}/address", {"address": {"name": "Lee", "line1": "Busan"}})
        ).status_code == 200
        assert (
            await post(f"product-orders/{po}/cancel-request", {"reason": "INTENT_CHANGED"})
        ).status_code == 200
        assert (await post(f"product-orders/{po}/cancel-withdraw")).status_code == 200
        shipped = await post(
            "seller-centre/dispatch",
            {
                "productOrderIds": [po],
                "deliveryCompanyCode": "CJGLS",
                "trackingNumber": "123456789012",
            },
        )
        assert shipped.json()["result"] == {po: "ok"}
        assert (await post(f"product-orders/{po}/deliver")).status_code == 200
        assert (await post(f"product-orders/{po}/return-request")).status_code == 200
        assert (await post(f"product-orders/{po}/collect-done")).status_code == 200
        refused = await post(f"product-orders/{po}/purchase-decision")  # open return claim
        detail = (await http.get(f"/_control/product-orders/{po}")).json()
        ledger = (await http.get("/_control/ledger")).json()
        expired = (await post("tokens/expire")).json()
    assert refused.status_code == 409 and "error" in refused.json()
    assert detail["currentClaim"]["return"]["claimStatus"] == "COLLECT_DONE"
    assert detail["productOrder"]["shippingAddress"]["baseAddress"] == "Busan"
    assert detail["order"]["naverMileagePaymentAmount"] == 500
    assert ledger["counts"]["seller_centre_dispatch"] == {po: 1}
    assert expired["ok"] is True


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


async def test_main_entry_point_serves_until_cancelled() -> None:
    port = free_port()
    task = asyncio.create_task(sandbox_module.main("127.0.0.1", port))
    try:
        async with httpx.AsyncClient() as http:
            for _ in range(50):
                try:
                    resp = await http.get(f"http://127.0.0.1:{port}/_control/health")
                    break
                except httpx.ConnectError:
                    await asyncio.sleep(0.05)
    finally:
        task.cancel()
        await asyncio.gather(task, return_exceptions=True)
    assert resp.json() == {"ok": True, "sandbox": "naverpay"}
