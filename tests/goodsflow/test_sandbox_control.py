"""The sandbox's HTTP control API and settings wiring (what the demo and other suites use)."""

from __future__ import annotations

import httpx
from pydantic import SecretStr

from channelsync.settings import Settings
from connectors.goodsflow import GoodsflowClient
from connectors.goodsflow.sandbox import GoodsflowSandbox
from store.carriers import Carrier
from store.domain import TrackingState
from tests.goodsflow.helpers import API_KEY, HOUR, waybill


async def test_control_endpoints_drive_the_parcels(
    client: GoodsflowClient, sandbox: GoodsflowSandbox
) -> None:
    [a, b] = await client.request_waybills([waybill("c-a"), waybill("c-b", Carrier.LOTTE)])
    async with httpx.AsyncClient(base_url=sandbox.url or "") as http:
        printed = (await http.post("/_control/print", json={})).json()["printed"]
        assert set(printed) == {a.service_id, b.service_id}
        assert (await http.post("/_control/never_pickup", json={"ref": "c-a"})).status_code == 200
        assert (await http.post("/_control/never_pickup", json={"ref": "zz"})).status_code == 404
        moved = await http.post("/_control/advance", json={"ref": "c-b", "status": "DLV_START"})
        assert moved.json() == {"ok": True, "status": "DLV_START"}
        await http.post("/_control/clock", json={"seconds": 5 * HOUR})
        rows = {r["unique_id"]: r for r in (await http.get("/_control/parcels")).json()}
        refused = await http.post(
            "/_control/contract", json={"transporter": "HANJIN", "status": "REFUSED"}
        )
        assert refused.status_code == 200
        ledger = (await http.get("/_control/ledger")).json()
    assert rows["c-a"]["last_status"] == "PICKUP_FAILED"
    assert rows["c-b"]["last_status"] == "COMPLETED"
    assert ledger["counts"]["waybill.printed"] == {"c-a": 1, "c-b": 1}
    [again] = await client.request_waybills([waybill("c-c")])
    assert not again.ok
    info = await client.get_tracking(b.service_id or "")
    assert info.state is TrackingState.DELIVERED


async def test_unsupported_carrier_is_refused_without_a_call(
    client: GoodsflowClient, sandbox: GoodsflowSandbox
) -> None:
    results = await client.request_waybills([waybill("k-1", Carrier.KDEXP), waybill("k-2")])
    assert [r.ok for r in results] == [False, True]
    assert "no Goodsflow transporter code" in results[0].message
    assert sandbox.ledger.count("waybill.registered") == 1


async def test_client_from_settings_talks_to_the_sandbox(sandbox: GoodsflowSandbox) -> None:
    settings = Settings(
        goodsflow_api_url=sandbox.url or "",
        goodsflow_api_key=SecretStr(API_KEY),
        retry_max_attempts=2,
    )
    assert API_KEY not in repr(settings)
    async with GoodsflowClient.from_settings(settings) as gf:
        assert gf.retry.max_attempts == 2
        assert (await gf.get_center()).code == sandbox.sender.code
