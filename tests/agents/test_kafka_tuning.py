"""The worker's consumer waits at most CONSUMER_FETCH_MAX_WAIT_MS per fetch (faust hard-codes
1500 ms; the embedded broker answers a fetch only when the wait ends), checked on the consumer
faust really builds and on the fetcher aiokafka creates from it against the real broker."""

from __future__ import annotations

import uuid

import pytest

from agents.app import create_app
from channelsync.settings import Settings

pytestmark = pytest.mark.integration


async def test_worker_consumer_uses_configured_fetch_wait(kafka_bootstrap: str) -> None:
    settings = Settings(app_id=f"tune-{uuid.uuid4().hex[:6]}", consumer_fetch_max_wait_ms=37)
    app = create_app(settings, kafka_bootstrap)
    thread = app.consumer._thread  # type: ignore[attr-defined]
    consumer = thread._create_worker_consumer(app.transport)
    assert consumer._fetch_max_wait_ms == 37
    await consumer.start()
    try:
        assert consumer._fetcher._fetch_max_wait_ms == 37  # what fetch requests carry
    finally:
        await consumer.stop()


async def test_default_is_far_below_fausts_hard_coded_wait(kafka_bootstrap: str) -> None:
    app = create_app(Settings(app_id=f"tune-{uuid.uuid4().hex[:6]}"), kafka_bootstrap)
    consumer = app.consumer._thread._create_worker_consumer(app.transport)  # type: ignore[attr-defined]
    assert consumer._fetch_max_wait_ms == Settings().consumer_fetch_max_wait_ms < 1500


def test_worker_keeps_the_root_log_level(kafka_bootstrap: str) -> None:
    """faust's spinner would lower the root logger to DEBUG at start-up."""
    import logging

    from agents.worker import faust_worker

    app = create_app(Settings(app_id=f"tune-{uuid.uuid4().hex[:6]}"), kafka_bootstrap)
    root = logging.getLogger()
    before = root.level
    try:
        root.setLevel(logging.WARNING)
        faust_worker(app, "warning").on_setup_root_logger(root, logging.WARNING)
        assert root.level == logging.WARNING
    finally:
        root.setLevel(before)
