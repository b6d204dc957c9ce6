"""Consumer settings faust does not expose.

faust 0.15.3 builds its aiokafka consumer with ``fetch_max_wait_ms=1500`` hard-coded
(``faust/transport/drivers/aiokafka.py``, ``_create_worker_consumer``). Apache Kafka answers a
fetch as soon as data arrives, so there the value only bounds idle polling; the embedded broker
(Tansu) answers only when the wait has run out, even with data waiting, so every hop through a
topic costs up to the whole wait (measured: 0.22-0.47 s per message at 500 ms, 0.01-0.02 s at
50 ms). :func:`install` makes the worker's consumer use ``CONSUMER_FETCH_MAX_WAIT_MS`` instead.

It sets aiokafka's private ``_fetch_max_wait_ms`` on the freshly built consumer, before
``start()`` creates the fetcher from it (aiokafka 0.14.0, pinned); a test checks the value
reaches the fetcher, so a version bump that moves it fails loudly instead of silently.
"""

from __future__ import annotations

from typing import Any

from faust.transport.drivers.aiokafka import AIOKafkaConsumerThread

_ORIGINAL = AIOKafkaConsumerThread._create_worker_consumer
_WAIT_MS: list[int] = []


def _create_worker_consumer(self: Any, transport: Any) -> Any:
    consumer = _ORIGINAL(self, transport)
    if _WAIT_MS:
        consumer._fetch_max_wait_ms = _WAIT_MS[-1]
    return consumer


def install(fetch_max_wait_ms: int) -> None:
    """Worker consumers built from now on in this process wait at most ``fetch_max_wait_ms``."""
    _WAIT_MS[:] = [fetch_max_wait_ms]
    AIOKafkaConsumerThread._create_worker_consumer = _create_worker_consumer  # type: ignore[method-assign]
