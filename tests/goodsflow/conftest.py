"""Goodsflow fixtures: a sandbox on a free loopback port and a client pointed at it.

Parcels move on the sandbox's clock (``advance_clock``), so tests jump hours without waiting.
Retries are instant here except where a test switches real backoff back on.
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Iterator

import pytest

from connectors.base import set_testing
from connectors.goodsflow import GoodsflowClient, WaybillItem, WaybillRequest
from connectors.goodsflow.sandbox import GoodsflowSandbox
from store.carriers import Carrier
from topics.commands import Address

API_KEY = "gf-test-key-0f3a9c"
HOUR = 3600.0


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


def address(name: str = "Buyer Kim", line1: str = "12 Teheran-ro, Seoul") -> Address:
    return Address(name=name, phone="010-1234-5678", zip_code="06236", line1=line1, line2="5F")


def waybill(unique_id: str, carrier: Carrier = Carrier.HANJIN, **kw: object) -> WaybillRequest:
    return WaybillRequest(
        unique_id=unique_id,
        carrier=carrier,
        receiver=kw.pop("receiver", address()),  # type: ignore[arg-type]
        items=[WaybillItem(order_no=f"o-{unique_id}", name="T-shirt", quantity=1, price=19000)],
    )
