"""The sandbox's control API and entry point (what the demo and other agents drive over HTTP)."""

from __future__ import annotations

import asyncio
import re

import httpx
import pytest

from connectors.qoo10 import codes
from connectors.qoo10.client import Qoo10Client
from connectors.qoo10.sandbox import Qoo10Sandbox, main
from tests.qoo10.helpers import around_now, item, ship_date
from topics.changes import ChangeKind


async def test_control_api_drives_a_whole_order_life(
    sandbox: Qoo10Sandbox, client: Qoo10Client
) -> None:
    async with httpx.AsyncClient(base_url=sandbox.url or "") as http:
        created = (await http.post("/_control/orders", json={"qty": 2, "sku": "X-9"})).json()
        order_no = created["order_no"]
        await client.confirm_orders([order_no], ship_date())
        await client.dispatch([item(order_no)])
        for path in ("/_control/delivery", "/_control/buyer/purchase_decision"):
            assert (await http.post(path, json={"order_no": order_no})).status_code == 200
        again = await http.post("/_control/delivery", json={"order_no": order_no})
        view = (await http.get(f"/_control/orders/{order_no}")).json()
        ledger = (await http.get("/_control/ledger")).json()
        missing = await http.post("/_control/buyer/withdraw", json={})
    assert again.status_code == 409
    assert missing.status_code == 400
    assert view["shipping"]["ShippingStatus"].endswith("(5)")
    assert view["shipping"]["SellerItemCode"] == "X-9"
    assert ledger["counts"]["dispatch"] == {order_no: 1}
    assert ledger["counts"]["purchase_decided"] == {order_no: 1}
    changes = await client.changes_since(*around_now())
    assert ChangeKind.PURCHASE_DECIDED in [c.kind for c in changes]


async def test_control_keys_messages_and_result_codes(
    sandbox: Qoo10Sandbox, client: Qoo10Client
) -> None:
    order_no = sandbox.new_order()
    await client.claim_states([order_no])
    async with httpx.AsyncClient(base_url=sandbox.url or "") as http:
        assert (await http.post("/_control/keys", json={"expire": True})).status_code == 200
        await http.post("/_control/messages", json={"fail": 1})
        await http.post(
            "/_control/result_codes",
            json={"method": codes.GET_ORDER_DETAIL, "result_code": codes.SYSTEM_BUSY, "count": 1},
        )
    assert order_no in await client.claim_states([order_no])
    assert client.keys.renewals == 1
    assert client.stats.retries == 1
    [result] = await client.cancel([order_no], "SOLD_OUT", "Out of stock.")
    assert (result.ok, result.code) == (False, "R23")


async def test_control_reset_forgets_orders(sandbox: Qoo10Sandbox, client: Qoo10Client) -> None:
    order_no = sandbox.new_order()
    async with httpx.AsyncClient(base_url=sandbox.url or "") as http:
        assert (await http.post("/_control/reset")).status_code == 200
        assert (await http.get(f"/_control/orders/{order_no}")).status_code == 404
    assert await client.claim_states([order_no]) == {}
    assert sandbox.ledger.count("buyer_order") == 0


async def test_main_serves_the_sandbox_until_cancelled(capsys: pytest.CaptureFixture[str]) -> None:
    task = asyncio.create_task(main("127.0.0.1", 0))
    url = None
    for _ in range(100):
        await asyncio.sleep(0.02)
        found = re.search(r"listening on (http://\S+)", capsys.readouterr().out)
        if found:
            url = found.group(1)
            break
    try:
        assert url is not None
        async with httpx.AsyncClient() as http:
            health = (await http.get(f"{url}/_control/health")).json()
        assert health == {"ok": True, "sandbox": "qoo10"}
    finally:
        task.cancel()
        with pytest.raises(asyncio.CancelledError):
            await task
