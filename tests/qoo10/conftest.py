"""Fixtures: a Qoo10 sandbox on a free loopback port and a client talking to it over HTTP."""

from __future__ import annotations

from collections.abc import AsyncIterator, Iterator

import pytest

from connectors.base import set_testing
from connectors.qoo10.client import Qoo10Client
from connectors.qoo10.sandbox import Qoo10Sandbox
from tests.qoo10.helpers import make_client


@pytest.fixture
def instant() -> Iterator[None]:
    """Retries without sleeping (the policy still counts attempts)."""
    set_testing(True)
    yield
    set_testing(False)


@pytest.fixture
async def sandbox() -> AsyncIterator[Qoo10Sandbox]:
    sb = Qoo10Sandbox(seed=7)
    await sb.start()
    yield sb
    await sb.stop()


@pytest.fixture
async def client(sandbox: Qoo10Sandbox, instant: None) -> AsyncIterator[Qoo10Client]:
    c = make_client(sandbox)
    yield c
    await c.aclose()
