"""Rate limits, retries and error mapping over loopback (spec §6; S4)."""

from __future__ import annotations

import time
from datetime import UTC, datetime

import httpx
import pytest

from connectors.base import RetryPolicy
from connectors.contract import DispatchItem
from connectors.errors import RateLimitedError, RetryableError, ValidationError
from connectors.naverpay.client import NaverPayClient
from connectors.naverpay.errors import WriteOutcomeUnknownError
from connectors.naverpay.sandbox import NaverPaySandbox
from store.carriers import Carrier
from tests.naverpay.conftest import make_client, valid_number


async def test_429_backoff_honours_retry_after() -> None:
    """Real sleeping here: the sandbox allows 1 query/s (burst 2); the third quick call gets 429
    with Retry-After: 1 and the client waits that long before succeeding."""
    sb = NaverPaySandbox(visibility_lag=0, rates={"query": 1.0})
    await sb.start()
    client = make_client(sb, retry=RetryPolicy(max_attempts=3, backoff_base=0.01))
    try:
        ids = sb.new_paid_order()["productOrderIds"]
        await client.claim_states(ids)
        await client.claim_states(ids)
        started = time.monotonic()
        assert set(await client.claim_states(ids)) == set(ids)
        waited = time.monotonic() - started
    finally:
        await client.aclose()
        await sb.stop()
    assert sb.quota.rejected["query"] == 1
    assert client.stats.retries == 1
    assert waited >= 0.95  # Retry-After, not the 0.01 s backoff base


async def test_client_rate_limit_keeps_under_the_sandbox_quota() -> None:
    sb = NaverPaySandbox(visibility_lag=0, rates=10.0)
    await sb.start()
    client = make_client(sb, rate_per_second=10.0)
    try:
        ids = sb.new_paid_order()["productOrderIds"]
        started = time.monotonic()
        for _ in range(14):
            await client.claim_states(ids)
        elapsed = time.monotonic() - started
    finally:
        await client.aclose()
        await sb.stop()
    assert sum(sb.quota.rejected.values()) == 0
    assert elapsed >= 0.35  # 14 calls, burst 10, then 10/s


async def test_429_exhausted_raises_rate_limited_with_naver_code(
    sandbox: NaverPaySandbox, client: NaverPayClient
) -> None:
    await client.tokens.get()
    sandbox.faults.update({"rate_limit_burst_seconds": 30})
    with pytest.raises(RateLimitedError) as info:
        await client.claim_states(["2026010100000001"])
    assert info.value.code == "GW.RATE_LIMIT"
    assert info.value.retry_after == 1.0
    assert sandbox.requests["query"] == client.retry.max_attempts


async def test_5xx_on_a_read_is_retried(sandbox: NaverPaySandbox, client: NaverPayClient) -> None:
    ids = sandbox.new_paid_order()["productOrderIds"]
    sandbox.faults.update({"error_rate": 0.5, "error_status": 500})
    for _ in range(4):
        assert set(await client.claim_states(ids)) == set(ids)
    assert sandbox.faults.injected["error"] >= 1
    assert client.stats.retries == sandbox.faults.injected["error"]


async def test_4xx_is_not_retried_and_carries_code_message_trace(
    sandbox: NaverPaySandbox, client: NaverPayClient
) -> None:
    with pytest.raises(ValidationError) as info:
        await client.product_order_ids("2099010100000000")
    assert info.value.code == "100003"
    assert "order not found" in info.value.message
    assert info.value.trace_id and info.value.trace_id.startswith("sandbox-")
    assert info.value.status == 400
    assert sandbox.requests["product_order_ids"] == 1


async def test_write_timeout_is_not_resent_and_the_outcome_is_reconciled(
    sandbox: NaverPaySandbox, instant: None
) -> None:
    """A dispatch whose answer never arrives raises at once (no blind resend); re-reading the
    product order shows Naver did execute it."""
    po = sandbox.new_paid_order()["productOrderIds"][0]
    client = make_client(sandbox, timeout=0.3)
    try:
        await client.claim_states([po])  # token first
        sandbox.answer_delay = 0.6
        with pytest.raises(WriteOutcomeUnknownError) as info:
            await client.dispatch([DispatchItem(po, Carrier.CJ, valid_number(), datetime.now(UTC))])
        assert isinstance(info.value, RetryableError)
        assert sandbox.requests["dispatch"] == 1
        sandbox.answer_delay = 0.0
        state = (await client.claim_states([po]))[po]
        assert state.dispatched
        assert sandbox.ledger.count("dispatch", po) == 1
    finally:
        await client.aclose()


class FailSecondDispatch(httpx.AsyncBaseTransport):
    """Real HTTP, except that the second dispatch call answers 502."""

    def __init__(self) -> None:
        self.inner = httpx.AsyncHTTPTransport()
        self.dispatches = 0

    async def handle_async_request(self, request: httpx.Request) -> httpx.Response:
        if request.url.path.endswith("/dispatch"):
            self.dispatches += 1
            if self.dispatches == 2:
                return httpx.Response(502, json={"code": "GW.PROXY.01", "message": "bad gateway"})
        return await self.inner.handle_async_request(request)

    async def aclose(self) -> None:
        await self.inner.aclose()


async def test_partial_success_is_kept_when_a_later_batch_fails(
    sandbox: NaverPaySandbox, instant: None
) -> None:
    units = [sandbox.new_paid_order()["productOrderIds"][0] for _ in range(35)]
    client = make_client(sandbox, transport=FailSecondDispatch())
    items = [
        DispatchItem(u, Carrier.CJ, valid_number(seed=i), datetime.now(UTC))
        for i, u in enumerate(units)
    ]
    try:
        results = await client.dispatch(items)
    finally:
        await client.aclose()
    assert [r.ok for r in results] == [True] * 30 + [False] * 5
    assert all(r.retryable and r.detail["outcome_unknown"] for r in results[30:])
    assert sandbox.requests["dispatch"] == 1  # the 502 was not resent


async def test_write_refused_by_rate_limit_is_retried_in_place_once() -> None:
    """429 proves the write was not executed, so it is resent after Retry-After (real wait)."""
    sb = NaverPaySandbox(visibility_lag=0, rates={"dispatch": 1.0})
    await sb.start()
    client = make_client(sb, retry=RetryPolicy(max_attempts=3, backoff_base=0.01))
    try:
        units = [sb.new_paid_order()["productOrderIds"][0] for _ in range(3)]
        results = []
        started = time.monotonic()
        for i, unit in enumerate(units):
            item = DispatchItem(unit, Carrier.CJ, valid_number(seed=i), datetime.now(UTC))
            results.extend(await client.dispatch([item]))
        elapsed = time.monotonic() - started
    finally:
        await client.aclose()
        await sb.stop()
    assert all(r.ok for r in results)
    assert sb.quota.rejected["dispatch"] == 1
    assert elapsed >= 0.95
    assert all(sb.ledger.count("dispatch", u) == 1 for u in units)
