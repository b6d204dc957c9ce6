"""Token, signature, renewal, clock skew and credential hygiene (spec §2)."""

from __future__ import annotations

import base64
import logging
import time
from urllib.parse import parse_qs

import bcrypt
import httpx
import pytest

from connectors.errors import AuthenticationError
from connectors.naverpay.auth import client_secret_sign
from connectors.naverpay.client import NaverPayClient
from connectors.naverpay.sandbox import NaverPaySandbox
from tests.naverpay.conftest import SECRET, FakeClock, make_client

DOC_CLIENT_ID = "aaaabbbbcccc"
DOC_TIMESTAMP = 1643961623299
DOC_SIGN = "JDJhJDEwJGFiY2RlZmdoaWprbG1ub3BxcnN0dXVCVldZSk42T0VPdEx1OFY0cDQxa2IuTnpVaUEzbmsy"


def test_signature_reproduces_documented_example() -> None:
    """Spec §2.2 test vector (canonical form of the doc's salt)."""
    sign = client_secret_sign(DOC_CLIENT_ID, "$2a$10$abcdefghijklmnopqrstuu", DOC_TIMESTAMP)
    assert sign == DOC_SIGN
    assert base64.b64decode(sign).startswith(b"$2a$10$abcdefghijklmnopqrstuu")


def test_non_canonical_salt_is_refused_without_echoing_it() -> None:
    literal = "$2a$10$abcdefghijklmnopqrstuv"  # the doc's literal value (pyca bcrypt refuses it)
    with pytest.raises(ValueError) as info:
        client_secret_sign(DOC_CLIENT_ID, literal, DOC_TIMESTAMP)
    assert literal not in str(info.value)


async def test_token_request_is_form_encoded_with_exactly_the_documented_fields() -> None:
    """Spec §2.1/§2.5: form body, nothing in the query string, SELF without account_id."""
    seen: list[httpx.Request] = []

    def handler(request: httpx.Request) -> httpx.Response:
        seen.append(request)
        if request.url.path.endswith("/oauth2/token"):
            return httpx.Response(200, json={"access_token": "t1", "expires_in": 10800})
        return httpx.Response(200, json={"data": []})

    client = NaverPayClient(
        "http://naver.test", "cid", SECRET, transport=httpx.MockTransport(handler)
    )
    await client.product_orders(["1"])
    await client.aclose()
    token_call = seen[0]
    assert token_call.method == "POST"
    assert token_call.headers["content-type"] == "application/x-www-form-urlencoded"
    assert token_call.url.query == b""
    form = {k: v[0] for k, v in parse_qs(token_call.content.decode()).items()}
    assert set(form) == {"client_id", "timestamp", "grant_type", "client_secret_sign", "type"}
    assert form["grant_type"] == "client_credentials" and form["type"] == "SELF"
    assert len(form["timestamp"]) == 13
    expected = bcrypt.hashpw(f"cid_{form['timestamp']}".encode(), SECRET.encode())
    assert base64.b64decode(form["client_secret_sign"]) == expected
    assert seen[1].headers["authorization"] == "Bearer t1"


async def test_token_is_cached_across_calls(
    sandbox: NaverPaySandbox, client: NaverPayClient
) -> None:
    ids = sandbox.new_paid_order()["productOrderIds"]
    for _ in range(5):
        await client.claim_states(ids)
    assert sandbox.requests["token"] == 1
    assert sandbox.ledger.count("token_issued") == 1


async def test_token_renewed_before_expiry_without_a_401(instant: None) -> None:
    clock = FakeClock()
    sb = NaverPaySandbox(visibility_lag=0, rates={}, clock=clock, token_ttl=10800)
    await sb.start()
    client = make_client(sb, clock=clock)
    try:
        ids = sb.new_paid_order()["productOrderIds"]
        await client.claim_states(ids)
        clock.advance(10800 - 1700)  # less than 30 minutes left
        await client.claim_states(ids)
        assert sb.ledger.count("token_issued") == 2
        assert sb.requests["query"] == 2  # no request was refused with 401 and repeated
        clock.advance(1700 + 60)  # the first token is now expired; the renewed one is not
        await client.claim_states(ids)
        assert sb.requests["query"] == 3
    finally:
        await client.aclose()
        await sb.stop()


async def test_401_renews_the_token_once_and_the_call_succeeds(
    sandbox: NaverPaySandbox, client: NaverPayClient
) -> None:
    ids = sandbox.new_paid_order()["productOrderIds"]
    await client.claim_states(ids)
    sandbox.expire_tokens()
    states = await client.claim_states(ids)
    assert set(states) == set(ids)
    assert sandbox.requests["token"] == 2
    assert sandbox.requests["query"] == 3  # ok, 401, ok


async def test_persistent_401_raises_after_exactly_one_renewal(
    sandbox: NaverPaySandbox, client: NaverPayClient
) -> None:
    sandbox.deny_api_group = True  # e.g. the app lacks the order API group (spec §7.15)
    with pytest.raises(AuthenticationError) as info:
        await client.claim_states(["2026010100000001"])
    assert info.value.code == "GW.AUTHN"
    assert info.value.trace_id
    assert sandbox.requests["token"] == 2
    assert sandbox.requests["query"] == 2


@pytest.mark.parametrize("skew", [+120.0, -400.0])
async def test_clock_skew_is_learned_from_the_server_time(skew: float, instant: None) -> None:
    """A client clock 2 min fast ('must be before now') or 400 s slow ('expired') still gets a
    token on the second try, signing with the server's time."""
    sb = NaverPaySandbox(visibility_lag=0, rates={})
    await sb.start()
    client = make_client(sb, clock=lambda: time.time() + skew)
    try:
        ids = sb.new_paid_order()["productOrderIds"]
        assert set(await client.claim_states(ids)) == set(ids)
        assert abs(client.tokens.offset + skew) < 5
        assert sb.requests["token"] == 2
    finally:
        await client.aclose()
        await sb.stop()


async def test_bad_secret_is_refused_and_never_echoed(
    sandbox: NaverPaySandbox, instant: None, caplog: pytest.LogCaptureFixture
) -> None:
    wrong = "$2a$04$wrongwrongwrongwrongwu"
    client = make_client(sandbox, secret=wrong)
    caplog.set_level(logging.DEBUG)
    try:
        with pytest.raises(AuthenticationError) as info:
            await client.claim_states(["2026010100000001"])
    finally:
        await client.aclose()
    assert info.value.code == "BAD_REQUEST"
    assert "client_secret_sign" in str(info.value)
    assert sandbox.requests["token"] == 1  # a refusal is not retried
    for text in (str(info.value), repr(info.value), caplog.text):
        assert wrong not in text
        assert SECRET not in text


async def test_no_credential_in_any_log_line(
    sandbox: NaverPaySandbox, client: NaverPayClient, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.DEBUG)
    ids = sandbox.new_paid_order()["productOrderIds"]
    await client.claim_states(ids)
    sandbox.expire_tokens()
    await client.claim_states(ids)
    assert caplog.text  # the renewal was logged
    assert len(sandbox.tokens) == 2
    for secret in [SECRET, *sandbox.tokens]:
        assert secret not in caplog.text


async def test_from_settings_uses_the_naverpay_settings() -> None:
    from channelsync.settings import Settings

    settings = Settings(naverpay_api_url="http://127.0.0.1:9/", naverpay_account_id="shop-a")
    client = NaverPayClient.from_settings(settings)
    try:
        assert client.base_url == "http://127.0.0.1:9"
        assert client.account == "shop-a"
        assert client.tokens.client_id == settings.naverpay_client_id
        assert client.retry.max_attempts == settings.retry_max_attempts
        assert settings.naverpay_client_secret.get_secret_value() not in repr(vars(client.tokens))
    finally:
        await client.aclose()
