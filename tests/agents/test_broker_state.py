"""A broker that lost its state under the worker (memory-only broker restarted) is noticed:
the worker's marker is gone, ``/health`` answers 503 with the reason, ``watch_broker`` calls
its handler (the worker then exits non-zero: agents/worker.py)."""

from __future__ import annotations

import asyncio
from collections.abc import Iterator
from typing import Any

import pytest

from agents.worker import watch_broker
from channelsync.broker import BrokerEpoch, EmbeddedBroker, free_port
from channelsync.http import health_report

pytestmark = pytest.mark.integration


@pytest.fixture
def broker() -> Iterator[EmbeddedBroker]:
    b = EmbeddedBroker(port=free_port())
    b.start()
    try:
        yield b
    finally:
        b.stop()


async def test_marker_survives_while_the_broker_keeps_its_state(broker: EmbeddedBroker) -> None:
    epoch = BrokerEpoch(broker.bootstrap, "t.epoch", timeout=5)
    other = BrokerEpoch(broker.bootstrap, "t.epoch", timeout=5)
    assert await epoch.plant() == 0
    assert await other.plant() == 1  # another worker's marker does not disturb this one
    assert await epoch.check() is None
    assert await other.check() is None


async def test_restart_of_a_memory_broker_is_noticed(broker: EmbeddedBroker) -> None:
    epoch = BrokerEpoch(broker.bootstrap, "t.epoch", timeout=3)
    await epoch.plant()
    await asyncio.to_thread(broker.stop)
    with pytest.raises(Exception):  # noqa: B017 - unreachable: cannot tell, not "lost"
        await epoch.check()
    await asyncio.to_thread(broker.start)
    reason = await epoch.check()
    assert reason is not None and "lost its data" in reason


async def test_restart_noticed_when_the_new_broker_was_written_to_since(
    broker: EmbeddedBroker,
) -> None:
    epoch = BrokerEpoch(broker.bootstrap, "t.epoch", timeout=3)
    await BrokerEpoch(broker.bootstrap, "t.epoch", timeout=3).plant()
    assert await epoch.plant() == 1
    await asyncio.to_thread(broker.stop)
    await asyncio.to_thread(broker.start)
    for _ in range(3):  # others' markers fill the new log past this worker's offset
        await BrokerEpoch(broker.bootstrap, "t.epoch", timeout=3).plant()
    reason = await epoch.check()
    assert reason is not None and "another record" in reason


async def test_watch_broker_reports_the_loss(broker: EmbeddedBroker) -> None:
    epoch = BrokerEpoch(broker.bootstrap, "t.epoch", timeout=3)
    lost: list[str] = []

    async def on_lost(reason: str) -> None:
        lost.append(reason)

    task = asyncio.create_task(watch_broker(epoch, on_lost, interval=0.2))
    await asyncio.sleep(1.0)
    assert epoch.offset is not None and not lost and not task.done()
    await asyncio.to_thread(broker.stop)
    await asyncio.sleep(0.5)
    await asyncio.to_thread(broker.start)
    async with asyncio.timeout(20):
        await task
    assert len(lost) == 1 and "lost its data" in lost[0]


class _Conn:
    async def __aenter__(self) -> _Conn:
        return self

    async def __aexit__(self, *exc: object) -> None:
        return None

    async def execute(self, *a: Any) -> None:
        return None


class _Engine:
    def connect(self) -> _Conn:
        return _Conn()


class _Runtime:
    def __init__(self) -> None:
        self.ready = True
        self.engine = _Engine()
        self.last_produce_error = None
        self.connectors: dict[str, Any] = {}
        self.goodsflow = None
        self.connector_health: dict[str, str] = {}
        self.broker_lost: str | None = None


async def test_health_reports_a_lost_broker() -> None:
    rt = _Runtime()
    assert (await health_report(rt))["ok"]
    rt.broker_lost = "t.epoch ends at offset 0"
    report = await health_report(rt)
    assert not report["ok"]
    assert report["checks"]["broker_state"] == {"ok": False, "error": "t.epoch ends at offset 0"}
