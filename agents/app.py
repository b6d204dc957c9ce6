"""The Faust app, built from settings (faust-notes.md §3: every setting here is deliberate).

* ``processing_guarantee="at_least_once"`` + idempotent effects (P7); no exactly-once.
* ``store="memory://"``: no faust tables; PostgreSQL/SQLite hold all state (P8).
* ``web_enabled=False``: faust's web server is off; metrics are served by prometheus-client (P12).
* ``producer_threaded=False`` (P10); agents run with ``concurrency=1`` (P2).
* small session/rebalance timeouts so a group joins in seconds on the embedded broker.
* topics carry raw bytes (``value_serializer="raw"``): agents parse with pydantic inside their
  catch-all, so a bad payload can never kill the consumer (P9).
"""

from __future__ import annotations

import os

import faust

from agents import kafka_tuning
from channelsync.settings import Settings
from topics import names

os.environ.setdefault("NO_CYTHON", "1")  # P11: the same (pure-Python) code path everywhere


def create_app(settings: Settings, bootstrap: str) -> faust.App:
    """A configured, agent-less Faust app; :func:`agents.worker.build` registers the agents."""
    kafka_tuning.install(settings.consumer_fetch_max_wait_ms)
    app = faust.App(
        settings.app_id,
        broker=[f"kafka://{b.strip()}" for b in bootstrap.split(",") if b.strip()],
        store="memory://",
        processing_guarantee="at_least_once",
        consumer_auto_offset_reset="earliest",
        broker_commit_interval=settings.broker_commit_interval,
        broker_commit_every=500,
        broker_session_timeout=settings.broker_session_timeout,
        broker_heartbeat_interval=settings.broker_heartbeat_interval,
        broker_rebalance_timeout=settings.broker_rebalance_timeout,
        broker_request_timeout=max(30.0, settings.broker_session_timeout * 3),
        consumer_group_instance_id=settings.consumer_group_instance_id,
        stream_processing_timeout=120.0,
        producer_acks=-1,
        producer_threaded=False,
        producer_request_timeout=settings.produce_timeout_seconds,
        topic_partitions=settings.topic_partitions,
        topic_replication_factor=settings.topic_replicas,
        topic_allow_declare=True,
        web_enabled=False,
        autodiscover=False,
        table_cleanup_interval=3600.0,
    )
    return app


def declare_topics(app: faust.App, prefix: str = "") -> dict[str, faust.TopicT]:
    """Every topic (by its base name), raw bytes in and out, keyed by order id."""
    return {
        name: app.topic(
            prefix + name,
            key_type=bytes,
            value_type=bytes,
            value_serializer="raw",
            key_serializer="raw",
        )
        for name in names.ALL_TOPICS
    }
