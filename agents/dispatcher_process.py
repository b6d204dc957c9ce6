"""``channelsync dispatcher``: the ledger's executor in a process of its own.

By default (``DISPATCHER_MODE=inline``) every worker runs :class:`agents.dispatcher.Dispatcher`
as a task next to its agents, on one event loop and so on one core. Under load the dispatcher
is half of a worker's CPU (measured: store work around each marketplace call, result
messages), so a deployment can move it out: workers with ``DISPATCHER_MODE=off`` and one or
more ``channelsync dispatcher`` processes.

Contract:

* Same ledger, same rules: it is the very same ``Dispatcher``; only how it learns about new
  ops differs — no in-process nudge, it polls the ledger every ``DISPATCHER_POLL_SECONDS`` when
  idle (one indexed query).
* Any number of dispatchers (inline or separate) may run against one store: an op is taken by
  a conditional UPDATE (:func:`store.op_queue.claim`), so exactly one of them sends it.
* Results and dead letters go to Kafka through a plain aiokafka producer (``acks=all``), every
  send bounded by ``PRODUCE_TIMEOUT_SECONDS`` like the worker's.
* PostgreSQL only: SQLite (the embedded default) allows one writer at a time, so a second
  process would make the worker wait on ``database is locked``; it is refused at start.
* ``/metrics`` and ``/health`` on ``METRICS_PORT`` like the worker (``joined`` means: the
  producer is connected).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import signal
from typing import Any

from aiokafka import AIOKafkaProducer

from agents.dispatcher import Dispatcher
from agents.runtime import Runtime
from channelsync import http
from channelsync.settings import Settings
from connectors.registry import build_goodsflow, build_marketplaces
from store.db import make_engine

log = logging.getLogger("channelsync.dispatcher")


class DispatcherConfigError(ValueError):
    """The settings do not allow a separate dispatcher process."""


class ProducerAdapter:
    """An aiokafka producer behind the two calls :class:`agents.runtime.Runtime` makes of
    faust's producer (``send`` returning a future, ``send_and_wait``)."""

    def __init__(self, producer: AIOKafkaProducer) -> None:
        self._producer = producer

    async def send(
        self,
        topic: str,
        key: bytes | None,
        value: bytes | None,
        partition: int | None = None,
        timestamp: float | None = None,
        headers: Any = None,
    ) -> Any:
        return await self._producer.send(topic, value=value, key=key, partition=partition)

    async def send_and_wait(
        self,
        topic: str,
        key: bytes | None,
        value: bytes | None,
        partition: int | None = None,
        timestamp: float | None = None,
        headers: Any = None,
    ) -> Any:
        return await self._producer.send_and_wait(topic, value=value, key=key, partition=partition)


class _ProducerOnly:
    """What the runtime needs of an app here: its producer."""

    def __init__(self, producer: ProducerAdapter) -> None:
        self.producer = producer


def check_settings(settings: Settings) -> None:
    if settings.database_url.startswith("sqlite"):
        raise DispatcherConfigError(
            "a separate dispatcher needs PostgreSQL (DATABASE_URL): SQLite allows one writer "
            "at a time; keep DISPATCHER_MODE=inline with SQLite"
        )


async def serve(settings: Settings, bootstrap: str, stop: asyncio.Event | None = None) -> None:
    """Run the dispatcher until ``stop`` is set (or SIGTERM/SIGINT when ``stop`` is None)."""
    check_settings(settings)
    from agents.worker import call_observer

    stop = stop or _signal_event()
    producer = AIOKafkaProducer(
        bootstrap_servers=bootstrap,
        acks="all",
        linger_ms=2,
        request_timeout_ms=int(settings.produce_timeout_seconds * 1000),
    )
    await producer.start()
    engine = make_engine(settings.database_url, settings.database_schema)
    runtime = Runtime(settings, _ProducerOnly(ProducerAdapter(producer)), {}, engine)  # type: ignore[arg-type]
    runtime.connectors = build_marketplaces(settings)
    for name, client in runtime.connectors.items():
        client.observer = call_observer(name, runtime.connector_health)
    runtime.goodsflow = build_goodsflow(
        settings, call_observer("goodsflow", runtime.connector_health)
    )
    dispatcher = Dispatcher(runtime, idle_seconds=settings.dispatcher_poll_seconds)
    runtime.dispatcher = dispatcher
    runtime.ready = True
    tasks = [asyncio.create_task(dispatcher.run_forever(), name="dispatcher")]
    if settings.metrics_port:
        tasks.append(asyncio.create_task(http.serve(runtime, settings.metrics_port)))
    log.info("channelsync dispatcher ready")
    print("channelsync dispatcher ready", flush=True)
    try:
        done = asyncio.create_task(stop.wait())
        await asyncio.wait([done, *tasks], return_when=asyncio.FIRST_COMPLETED)
        done.cancel()
    finally:
        for task in tasks:
            task.cancel()
        for task in tasks:
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await task
        for client in list(runtime.connectors.values()) + [runtime.goodsflow]:
            if client is not None:
                await client.aclose()
        with contextlib.suppress(Exception):
            async with asyncio.timeout(settings.produce_timeout_seconds):
                await producer.stop()
        await engine.dispose()


def _signal_event() -> asyncio.Event:
    event = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, event.set)
    return event


def run(settings: Settings, bootstrap: str) -> None:
    asyncio.run(serve(settings, bootstrap))
