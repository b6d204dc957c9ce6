"""Seller authorization key: obtained once, renewed when refused, never shown."""

from __future__ import annotations

import logging

import httpx
import pytest

from connectors.contract import UnsupportedOperationError
from connectors.errors import AuthenticationError
from connectors.qoo10 import codes
from connectors.qoo10.client import Qoo10Client
from connectors.qoo10.sandbox import Qoo10Sandbox


async def test_seller_key_obtained_once_and_reused(
    sandbox: Qoo10Sandbox, client: Qoo10Client
) -> None:
    order_no = sandbox.new_order()
    await client.claim_states([order_no])
    await client.claim_states([order_no])
    assert sandbox.ledger.count("key_issued") == 1
    assert client.keys.renewals == 0
    assert list(sandbox.keys.values()) == ["valid"]


@pytest.mark.parametrize("how", ["expire", "revoke"])
async def test_refused_seller_key_is_renewed_once_and_call_repeated(
    sandbox: Qoo10Sandbox, client: Qoo10Client, how: str
) -> None:
    """-90004 (expired) and -10000 (check the key, e.g. after revocation) renew the key."""
    order_no = sandbox.new_order()
    await client.claim_states([order_no])
    sandbox.expire_keys() if how == "expire" else sandbox.revoke_keys()
    states = await client.claim_states([order_no])
    assert states[order_no].status == codes.ShippingStatus.REQUESTED
    assert client.keys.renewals == 1
    assert sandbox.ledger.count("key_issued") == 2
    assert sorted(sandbox.keys.values()) == sorted([how + "d", "valid"])


async def test_concurrent_refusals_renew_the_key_only_once(
    sandbox: Qoo10Sandbox, client: Qoo10Client
) -> None:
    import asyncio

    orders = [sandbox.new_order() for _ in range(5)]
    await client.claim_states(orders[:1])
    sandbox.expire_keys()
    await asyncio.gather(*(client.claim_states([o]) for o in orders))
    assert client.keys.renewals == 1


async def test_password_change_is_authentication_error_without_secrets(
    sandbox: Qoo10Sandbox, client: Qoo10Client, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.DEBUG)
    order_no = sandbox.new_order()
    await client.claim_states([order_no])
    issued = list(sandbox.keys)
    sandbox.revoke_keys(new_password="a-new-qsm-password")
    with pytest.raises(AuthenticationError) as caught:
        await client.claim_states([order_no])
    secrets = [sandbox.api_key, "sandbox-password", *issued]
    text = f"{caught.value} {caught.value.as_dict()} {caught.value!r}"
    logs = "\n".join(r.getMessage() for r in caplog.records)
    for secret in secrets:
        assert secret not in text
        assert secret not in logs
        assert secret not in repr(client)


async def test_wrong_api_key_is_authentication_error(sandbox: Qoo10Sandbox, instant: None) -> None:
    assert sandbox.url
    bad = Qoo10Client(
        sandbox.url, "not-the-key", sandbox.user_id, sandbox.password, rate_per_second=None
    )
    try:
        with pytest.raises(AuthenticationError) as caught:
            await bad.claim_states(["1"])
        assert "not-the-key" not in str(caught.value)
        assert sandbox.ledger.count("key_issued") == 0
    finally:
        await bad.aclose()


async def test_secret_echoed_by_the_service_is_redacted(
    sandbox: Qoo10Sandbox, client: Qoo10Client
) -> None:
    """Even a message that quotes the seller key or password never reaches the exception."""
    order_no = sandbox.new_order()
    await client.claim_states([order_no])
    [key] = list(sandbox.keys)
    sandbox.inject_result_code(
        codes.GET_ORDER_DETAIL, -10001, message=f"bad key {key} for pwd={sandbox.password}"
    )
    with pytest.raises(Exception) as caught:
        await client.claim_states([order_no])
    assert key not in str(caught.value)
    assert sandbox.password not in str(caught.value)


async def test_unknown_method_is_unsupported(client: Qoo10Client) -> None:
    with pytest.raises(UnsupportedOperationError):
        await client.qapi("ShippingBasic.NoSuchMethod", {})


async def test_sandbox_serves_the_legacy_single_endpoint_form(
    sandbox: Qoo10Sandbox, client: Qoo10Client
) -> None:
    """``…/ebayjapan.qapi?method=…&key=…`` answers like the per-method form."""
    order_no = sandbox.new_order()
    await client.claim_states([order_no])
    [key] = list(sandbox.keys)
    async with httpx.AsyncClient(base_url=sandbox.url or "") as http:
        resp = await http.get(
            codes.QAPI_PATH,
            params={
                "v": "1.0",
                "method": codes.GET_ORDER_DETAIL.lower(),
                "key": key,
                "returnType": "json",
                "OrderNo": order_no,
            },
        )
    body = resp.json()
    assert body["ResultCode"] == 0
    assert body["ResultObject"][0]["orderNo"] == order_no


async def test_missing_key_answers_the_framework_error_shape(sandbox: Qoo10Sandbox) -> None:
    async with httpx.AsyncClient(base_url=sandbox.url or "") as http:
        resp = await http.post(f"{codes.QAPI_PATH}/{codes.GET_ORDER_DETAIL}", data={"OrderNo": "1"})
    assert resp.status_code == 200
    assert resp.json()["ErrorCode"] == codes.API_NOT_FOUND


async def test_from_settings_talks_to_a_sandbox_with_default_credentials(
    sandbox: Qoo10Sandbox, instant: None
) -> None:
    from channelsync.settings import Settings

    settings = Settings(qoo10_api_url=sandbox.url or "", qoo10_rate_per_second=50.0)
    c = Qoo10Client.from_settings(settings)
    try:
        order_no = sandbox.new_order()
        assert order_no in await c.claim_states([order_no])
        assert c.account == settings.qoo10_account_id
    finally:
        await c.aclose()


async def test_client_implements_the_marketplace_contract(client: Qoo10Client) -> None:
    from connectors.contract import MarketplaceConnector
    from store.domain import Channel

    connector: MarketplaceConnector = client  # mypy checks the signatures
    assert isinstance(connector, MarketplaceConnector)
    assert connector.channel == Channel.QOO10
