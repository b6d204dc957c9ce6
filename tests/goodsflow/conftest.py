"""Goodsflow fixtures: a sandbox on a free loopback port and a client pointed at it.

Parcels move on the sandbox's clock (``advance_clock``), so tests jump hours without waiting.
Retries are instant here except where a test switches real backoff back on.
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Iterator

import pytest

from connectors.base import set_testing
from connectors.goodsflow import GoodsflowClient
from connectors.goodsflow.sandbox import GoodsflowSandbox
from tests.goodsflow.helpers import API_KEY, HOUR


@pytest.fixture(autouse=True)
def instant() -> Iterator[None]:
    set_testing(True)
    yield
    set_testing(False)


@pytest.fixture
async def sandbox() -> AsyncIterator[GoodsflowSandbox]:
    sb = GoodsflowSandbox(api_key=API_KEY, step_seconds=HOUR, pickup_after_seconds=2 * HOUR, seed=5)
    await sb.start()
    yield sb
    await sb.stop()


@pytest.fixture
async def client(sandbox: GoodsflowSandbox) -> AsyncIterator[GoodsflowClient]:
    assert sandbox.url is not None
    gf = GoodsflowClient(sandbox.url, API_KEY, timeout=5.0)
    yield gf
    await gf.aclose()
