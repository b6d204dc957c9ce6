"""Fixtures: a Naver Pay sandbox on a loopback port and a client pointed at it over real HTTP."""

from __future__ import annotations

import random
import time
from collections.abc import AsyncIterator, Iterator
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest

from connectors.base import set_testing
from connectors.naverpay.client import NaverPayClient
from connectors.naverpay.sandbox import DEFAULT_SECRET, NaverPaySandbox
from store.carriers import Carrier
from store.invoices import generate_valid_number

SECRET = DEFAULT_SECRET


class FakeClock:
    """A settable epoch clock shared by the sandbox and the client."""

    def __init__(self, start: float | None = None) -> None:
        self.now = start if start is not None else time.time()

    def __call__(self) -> float:
        return self.now

    def advance(self, seconds: float) -> None:
        self.now += seconds

    def dt(self) -> datetime:
        return datetime.fromtimestamp(self.now, UTC)


def valid_number(carrier: Carrier = Carrier.CJ, seed: int = 0) -> str:
    return generate_valid_number(carrier, random.Random(seed))


def recent(minutes: float = 10.0) -> tuple[datetime, datetime]:
    now = datetime.now(UTC)
    return now - timedelta(minutes=minutes), now + timedelta(seconds=1)


@pytest.fixture
def instant() -> Iterator[None]:
    set_testing(True)
    yield
    set_testing(False)


@pytest.fixture
async def sandbox() -> AsyncIterator[NaverPaySandbox]:
    """Unlimited rates and no visibility lag (tests that need them build their own)."""
    sb = NaverPaySandbox(visibility_lag=0, rates={}, seed=7)
    await sb.start()
    yield sb
    await sb.stop()


def make_client(sb: NaverPaySandbox, **kw: Any) -> NaverPayClient:
    kw.setdefault("rate_per_second", None)
    assert sb.url is not None
    return NaverPayClient(sb.url, sb.client_id, kw.pop("secret", SECRET), **kw)


@pytest.fixture
async def client(sandbox: NaverPaySandbox, instant: None) -> AsyncIterator[NaverPayClient]:
    c = make_client(sandbox)
    yield c
    await c.aclose()
