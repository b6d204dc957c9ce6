"""Error mapping, retries, rate limits and secret redaction of the Goodsflow client (S4)."""

from __future__ import annotations

import logging
import time

import pytest

from connectors.base import RetryPolicy, set_testing
from connectors.errors import (
    AuthenticationError,
    RateLimitedError,
    RetryableError,
    ValidationError,
)
from connectors.goodsflow import GoodsflowClient
from connectors.goodsflow.sandbox import GoodsflowSandbox
from tests.goodsflow.helpers import issue_and_print, waybill

SECRET = "gf-live-SECRET-7d1e42b9"


async def test_wrong_key_is_an_authentication_error_without_the_key_in_text_or_logs(
    sandbox: GoodsflowSandbox, caplog: pytest.LogCaptureFixture
) -> None:
    """The sandbox echoes the presented key in its 401 body; the client must not repeat it."""
    assert sandbox.url
    caplog.set_level(logging.DEBUG)
    async with GoodsflowClient(sandbox.url, SECRET) as gf:
        with pytest.raises(AuthenticationError) as err:
            await gf.get_center()
    assert err.value.status == 401
    assert "***" in str(err.value)
    for text in (str(err.value), repr(err.value), str(err.value.as_dict()), caplog.text):
        assert SECRET not in text
    assert sandbox.requests["centers"] == 1  # never retried


async def test_bearer_prefix_is_refused(sandbox: GoodsflowSandbox) -> None:
    """The key goes raw in ``Authorization`` (no ``Bearer``)."""
    assert sandbox.url
    async with GoodsflowClient(sandbox.url, f"Bearer {sandbox.api_key}") as gf:
        with pytest.raises(AuthenticationError):
            await gf.get_center()


async def test_s4_server_errors_are_retried_then_reported(
    client: GoodsflowClient, sandbox: GoodsflowSandbox, caplog: pytest.LogCaptureFixture
) -> None:
    client.retry = RetryPolicy(max_attempts=3)
    sandbox.faults.update({"error_rate": 1.0, "error_status": 503})
    with pytest.raises(RetryableError) as err:
        await client.get_center()
    assert err.value.status == 503
    assert sandbox.requests["centers"] == 3 and client.stats.retries == 2
    assert sandbox.api_key not in caplog.text + str(err.value)


async def test_s4_outage_then_recovery_succeeds(
    client: GoodsflowClient, sandbox: GoodsflowSandbox
) -> None:
    """S4: retried through a short outage with real (small) backoff."""
    set_testing(False)
    client.retry = RetryPolicy(max_attempts=8, backoff_base=0.05, backoff_max=0.2)
    sandbox.faults.update({"outage_seconds": 0.3})
    center = await client.get_center()
    assert center.code == sandbox.sender.code and client.stats.retries >= 1


async def test_s4_rate_limit_backoff_honours_retry_after(sandbox: GoodsflowSandbox) -> None:
    """S4: a 429 with ``Retry-After: 0.4`` makes the client wait at least 0.4 s (real sleep)."""
    assert sandbox.url
    set_testing(False)
    sandbox.retry_after_seconds = 0.4
    async with GoodsflowClient(
        sandbox.url, sandbox.api_key, retry=RetryPolicy(max_attempts=3, backoff_base=0.01)
    ) as gf:
        sandbox.faults.update({"rate_limit_burst_seconds": 0.2})
        started = time.monotonic()
        center = await gf.get_center()
        elapsed = time.monotonic() - started
    assert center.code == sandbox.sender.code
    assert elapsed >= 0.4 and gf.stats.retries == 1
    assert sandbox.faults.injected["429"] == 1


async def test_s4_exhausted_rate_limit_raises_rate_limited(
    client: GoodsflowClient, sandbox: GoodsflowSandbox
) -> None:
    client.retry = RetryPolicy(max_attempts=2)
    sandbox.faults.update({"rate_limit_burst_seconds": 30})
    with pytest.raises(RateLimitedError) as err:
        await client.pull_events()
    assert err.value.retry_after == sandbox.retry_after_seconds


async def test_client_limiter_keeps_tracking_under_goodsflow_quota(
    client: GoodsflowClient, sandbox: GoodsflowSandbox
) -> None:
    """Tracking reads are capped at 10/s by Goodsflow; the client's own bucket keeps 25 quick
    reads below it (no 429), taking ≥ 1.4 s."""
    sid, _ = await issue_and_print(client, sandbox, waybill("line-rate"))
    started = time.monotonic()
    for _ in range(25):
        await client.get_tracking(sid)
    elapsed = time.monotonic() - started
    assert sandbox.quota.rejected["tracking"] == 0
    assert sandbox.quota.accepted["tracking"] == 25
    assert elapsed >= 1.4


async def test_s4_timeout_is_retryable(sandbox: GoodsflowSandbox) -> None:
    assert sandbox.url
    sandbox.faults.update({"latency_seconds": 0.5})
    async with GoodsflowClient(
        sandbox.url, sandbox.api_key, timeout=0.1, retry=RetryPolicy(max_attempts=2)
    ) as gf:
        with pytest.raises(RetryableError) as err:
            await gf.get_center()
    assert "timeout" in str(err.value)


async def test_validation_errors_are_permanent_and_not_retried(
    client: GoodsflowClient, sandbox: GoodsflowSandbox
) -> None:
    with pytest.raises(ValidationError) as err:
        await client.get_center("9999999999")
    assert err.value.status == 404 and sandbox.requests["centers"] == 1
    with pytest.raises(ValidationError):
        await client.get_tracking("00000000000000000000")
