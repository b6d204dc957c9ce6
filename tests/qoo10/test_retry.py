"""Outages (S4): retryable result codes, 5xx and 429 are retried with backoff; final codes are not."""

from __future__ import annotations

import time

import pytest

from connectors.base import RetryPolicy
from connectors.errors import ValidationError
from connectors.qoo10 import codes
from connectors.qoo10.client import Qoo10Client
from connectors.qoo10.sandbox import Qoo10Sandbox
from tests.qoo10.helpers import confirmed_order, item, make_client


async def test_s4_retryable_result_code_is_retried(
    sandbox: Qoo10Sandbox, client: Qoo10Client
) -> None:
    order_no = sandbox.new_order()
    sandbox.inject_result_code(codes.GET_ORDER_DETAIL, codes.SYSTEM_BUSY, count=2)
    states = await client.claim_states([order_no])
    assert order_no in states
    assert client.stats.retries == 2
    assert sandbox.requests[codes.GET_ORDER_DETAIL] == 3


async def test_s4_final_result_code_is_not_retried(
    sandbox: Qoo10Sandbox, client: Qoo10Client
) -> None:
    order_no = sandbox.new_order()
    sandbox.inject_result_code(codes.GET_ORDER_DETAIL, codes.SELLER_OR_ORDER_INVALID)
    with pytest.raises(ValidationError):
        await client.claim_states([order_no])
    assert client.stats.retries == 0
    assert sandbox.requests[codes.GET_ORDER_DETAIL] == 1


async def test_s4_5xx_outage_is_survived_with_real_backoff(sandbox: Qoo10Sandbox) -> None:
    c = make_client(sandbox, retry=RetryPolicy(max_attempts=30, backoff_base=0.05, backoff_max=0.1))
    try:
        order_no = sandbox.new_order()
        await c.claim_states([order_no])  # key obtained before the outage
        sandbox.faults.update({"outage_seconds": 0.4, "error_status": 503})
        started = time.monotonic()
        states = await c.claim_states([order_no])
        elapsed = time.monotonic() - started
    finally:
        await c.aclose()
    assert order_no in states
    assert c.stats.retries >= 1
    assert sandbox.faults.injected["outage"] >= 1
    assert elapsed >= 0.35


async def test_s4_429_backs_off_for_retry_after(sandbox: Qoo10Sandbox) -> None:
    """The quota answer's Retry-After (1 s) is honoured: a real wait, not an instant retry."""
    sandbox.quota.rates[codes.GET_ORDER_DETAIL] = 1.0
    c = make_client(sandbox, retry=RetryPolicy(max_attempts=5, backoff_base=0.01, backoff_max=0.02))
    try:
        order_no = sandbox.new_order()
        started = time.monotonic()
        for _ in range(2):
            await c.claim_states([order_no])
        elapsed = time.monotonic() - started
    finally:
        await c.aclose()
    assert sandbox.quota.rejected[codes.GET_ORDER_DETAIL] >= 1
    assert c.stats.retries >= 1
    assert 0.95 <= elapsed < 5


async def test_client_rate_limit_keeps_under_the_marketplace_quota(sandbox: Qoo10Sandbox) -> None:
    sandbox.quota.rates[codes.GET_ORDER_DETAIL] = 20.0
    c = make_client(sandbox, endpoint_rates={codes.GET_ORDER_DETAIL: 15.0}, rate_per_second=50.0)
    try:
        order_no = sandbox.new_order()
        started = time.monotonic()
        for _ in range(30):
            await c.order_detail(order_no)
        elapsed = time.monotonic() - started
    finally:
        await c.aclose()
    assert sandbox.quota.rejected[codes.GET_ORDER_DETAIL] == 0
    assert c.stats.retries == 0
    assert elapsed >= 0.9  # 30 calls, 15 in the first burst, then 15 per second


async def test_s4_exhausted_retries_report_the_rest_not_attempted(
    sandbox: Qoo10Sandbox, client: Qoo10Client
) -> None:
    first = await confirmed_order(sandbox, client)
    second = await confirmed_order(sandbox, client)
    sandbox.faults.update({"outage_seconds": 30})
    results = await client.dispatch([item(first), item(second)])
    sandbox.faults.clear()
    assert [(r.ok, r.retryable) for r in results] == [(False, True), (False, True)]
    assert results[1].code == "NOT_ATTEMPTED"
    assert sandbox.ledger.count("dispatch") == 0


async def test_account_rate_limit_is_shared_by_every_method(sandbox: Qoo10Sandbox) -> None:
    c = make_client(sandbox, account_rate_per_second=40.0)
    try:
        order_no = sandbox.new_order()
        await c.claim_states([order_no])  # key + first call use the burst
        started = time.monotonic()
        for _ in range(30):
            await c.claim_states([order_no])
            await c.qapi(
                codes.GET_CLAIM_INFO,
                {"ClaimStat": "", "search_Sdate": "20240101", "search_Edate": "20240102"},
            )
        elapsed = time.monotonic() - started
    finally:
        await c.aclose()
    assert elapsed >= (60 - 40) / 40.0 * 0.9  # 60 calls over two methods, 40 in the burst
