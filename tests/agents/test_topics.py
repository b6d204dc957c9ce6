"""TOPIC_PARTITIONS applies to every topic of the worker, consumed ones included: the worker
creates its topics before faust subscribes (the broker would auto-create the consumed ones with
its own default, 4 on the embedded broker, on the consumer's first metadata request)."""

from __future__ import annotations

import uuid
from pathlib import Path

import pytest
from aiokafka.admin import AIOKafkaAdminClient

from agents.worker import EPOCH_TOPIC, prepare_topics
from channelsync.settings import Settings
from tests.harness import WorkerProcess
from topics import names

pytestmark = pytest.mark.integration


async def partitions(bootstrap: str, topics: list[str]) -> dict[str, int]:
    admin = AIOKafkaAdminClient(bootstrap_servers=bootstrap)
    await admin.start()
    try:
        return {t["topic"]: len(t["partitions"]) for t in await admin.describe_topics(topics)}
    finally:
        await admin.close()


async def test_prepare_topics_creates_every_topic_with_topic_partitions(
    kafka_bootstrap: str, topic_prefix: str
) -> None:
    settings = Settings(topic_prefix=topic_prefix, topic_partitions=3)
    wanted = [topic_prefix + t for t in names.ALL_TOPICS]
    counts = await prepare_topics(settings, kafka_bootstrap)
    assert {t: counts[t] for t in wanted} == dict.fromkeys(wanted, 3)
    assert counts[topic_prefix + EPOCH_TOPIC] == 1
    assert await partitions(kafka_bootstrap, wanted) == dict.fromkeys(wanted, 3)
    # idempotent; an existing topic is left as it is
    again = await prepare_topics(
        Settings(topic_prefix=topic_prefix, topic_partitions=5), kafka_bootstrap
    )
    assert {t: again[t] for t in wanted} == dict.fromkeys(wanted, 3)


async def test_worker_consumes_topics_with_topic_partitions(
    kafka_bootstrap: str, topic_prefix: str, tmp_path: Path
) -> None:
    env = {
        "KAFKA_BOOTSTRAP_SERVERS": kafka_bootstrap,
        "DATABASE_URL": f"sqlite+aiosqlite:///{tmp_path}/store.db",
        "TOPIC_PREFIX": topic_prefix,
        "APP_ID": f"cs-{uuid.uuid4().hex[:8]}",
        "TOPIC_PARTITIONS": "3",
        "METRICS_PORT": "0",
        "NAVERPAY_ENABLED": "false",
        "QOO10_ENABLED": "false",
        "GOODSFLOW_ENABLED": "false",
    }
    worker = WorkerProcess(env, tmp_path / "worker.log")
    worker.start()
    try:
        consumed = [topic_prefix + t for t in names.CONSUMED_TOPICS]
        assert await partitions(kafka_bootstrap, consumed) == dict.fromkeys(consumed, 3)
    finally:
        worker.stop()
