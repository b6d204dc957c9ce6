"""Build the worker: Faust app + runtime + agents + timers, and run it (``channelsync worker``).

Agents (each ``concurrency=1``, raw bytes, catch-all loop — see agents/loop.py):
  commands  oms.commands    → store + ledger intents        (agents/commands.py)
  apply     channel.changes → store                          (agents/apply.py)
  tracking  tracking.events → R06 moves + dispatch intents   (agents/tracking.py)
Tasks / timers:
  dispatcher           executes ledger ops against the marketplaces (agents/dispatcher.py)
  ingest:<channel>     polls each marketplace's change feed (leader only; agents/ingest.py)
  tracking poll        polls Goodsflow for scans (leader only)
  rules timers         R07 purchase confirmation, R08/R22 unpaid cancel (leader only)
  http                 /metrics and /health on METRICS_PORT
"""

from __future__ import annotations

import logging
import time
from datetime import UTC, datetime, timedelta
from typing import Any

import faust

from agents.app import create_app, declare_topics
from agents.apply import ApplyHandler
from agents.commands import CommandHandler
from agents.dispatcher import Dispatcher
from agents.ingest import Ingestor
from agents.loop import run_batched, run_safely
from agents.runtime import Runtime
from agents.tracking import TrackingHandler, TrackingPoller
from channelsync import http, metrics
from channelsync.settings import Settings
from connectors.registry import build_goodsflow, build_marketplaces
from store import timers
from store.db import make_engine
from topics import names

log = logging.getLogger("channelsync.worker")


def call_observer(connector: str, health: dict[str, str] | None = None) -> Any:
    def observe(endpoint: str, outcome: str, seconds: float) -> None:
        if health is not None:
            health[connector] = outcome
        metrics.EXTERNAL_CALLS.labels(connector, endpoint, outcome).inc()
        metrics.EXTERNAL_CALL_SECONDS.labels(connector, endpoint).observe(seconds)

    return observe


def build(settings: Settings, bootstrap: str) -> tuple[faust.App, Runtime]:
    """A Faust app with every agent, task and timer registered."""
    app = create_app(settings, bootstrap)
    topics = declare_topics(app, settings.topic_prefix)
    engine = make_engine(settings.database_url, settings.database_schema)
    runtime = Runtime(settings, app, topics, engine)
    runtime.connectors = build_marketplaces(settings)
    for name, client in runtime.connectors.items():
        client.observer = call_observer(name, runtime.connector_health)
    runtime.goodsflow = build_goodsflow(
        settings, call_observer("goodsflow", runtime.connector_health)
    )

    dispatcher = Dispatcher(runtime)
    runtime.dispatcher = dispatcher
    commands = CommandHandler(runtime, on_ops=dispatcher.nudge)
    apply = ApplyHandler(runtime, on_ops=dispatcher.nudge)
    tracking = TrackingHandler(runtime, on_ops=dispatcher.nudge)

    @app.agent(topics[names.OMS_COMMANDS], concurrency=1, name="commands")
    async def commands_agent(stream: Any) -> None:
        await run_batched(stream, commands, commands.handle_batch, runtime)

    @app.agent(topics[names.CHANNEL_CHANGES], concurrency=1, name="apply")
    async def apply_agent(stream: Any) -> None:
        await run_safely(stream, apply, runtime)

    @app.agent(topics[names.TRACKING_EVENTS], concurrency=1, name="tracking")
    async def tracking_agent(stream: Any) -> None:
        await run_safely(stream, tracking, runtime)

    @app.task
    async def dispatcher_task() -> None:
        await dispatcher.run_forever()

    overlap = timedelta(seconds=settings.overlap_window_seconds)
    runtime.ingestors = {}
    for channel, connector in runtime.connectors.items():
        account = getattr(settings, f"{channel}_account_id", "default")
        ingestor = Ingestor(runtime, connector, account=account, overlap=overlap)
        runtime.ingestors[channel] = ingestor
        _register_timer(
            app, f"ingest_{channel}", settings.poll_interval_seconds, ingestor.poll_once
        )

    if runtime.goodsflow is not None:
        poller = TrackingPoller(runtime)
        runtime.tracking_poller = poller
        _register_timer(
            app, "tracking_poll", settings.tracking_poll_interval_seconds, poller.poll_once
        )

    async def rules_timers() -> None:
        now = datetime.now(UTC)
        async with runtime.sessions() as session:
            confirmed = await timers.confirm_due_purchases(session, now)
            cancelled = await timers.cancel_unpaid(session, now)
            await session.commit()
        if confirmed or cancelled:
            log.info(
                "timers: %d line(s) purchase-confirmed (R07), %d unpaid order(s) cancelled (R08)",
                confirmed,
                cancelled,
            )

    _register_timer(app, "rules_timers", 300.0, rules_timers)

    @app.timer(15.0, name="store_gauges")
    async def store_gauges() -> None:
        try:
            await metrics.refresh_store_gauges(runtime.sessions)
        except Exception:
            log.exception("refreshing store gauges failed")

    started = time.monotonic()
    ready = {"logged": False}

    async def _on_ready(sender: Any, **kwargs: Any) -> None:
        if not ready["logged"]:
            ready["logged"] = True
            runtime.ready = True
            took = time.monotonic() - started
            log.info("channelsync worker ready in %.2fs", took)
            print(f"channelsync worker ready in {took:.2f}s", flush=True)

    app.on_rebalance_complete.connect(_on_ready)  # type: ignore[arg-type]

    if settings.metrics_port:

        @app.task
        async def http_task() -> None:
            await http.serve(runtime, settings.metrics_port)

    async def _dispose(app: Any, **kwargs: Any) -> None:
        for client in list(runtime.connectors.values()) + [runtime.goodsflow]:
            if client is not None:
                await client.aclose()
        await engine.dispose()

    app.on_before_shutdown.connect(_dispose)  # type: ignore[arg-type]
    return app, runtime


def _register_timer(app: faust.App, name: str, interval: float, fn: Any) -> None:
    """A leader-only timer whose body never raises (a failing poll is logged and retried at
    the next tick)."""

    async def tick() -> None:
        try:
            await fn()
        except Exception:
            log.exception("timer %s failed", name)

    tick.__name__ = tick.__qualname__ = name
    app.timer(interval, on_leader=True, name=name)(tick)


def run_worker(settings: Settings, bootstrap: str, loglevel: str = "info") -> None:
    """Run until SIGTERM/SIGINT. Migrates the store first."""
    import asyncio

    from store.db import upgrade

    async def migrate() -> None:
        engine = make_engine(settings.database_url, settings.database_schema)
        try:
            await upgrade(engine)
        finally:
            await engine.dispose()

    asyncio.run(migrate())
    app, _ = build(settings, bootstrap)
    worker = faust.Worker(app, loglevel=loglevel, quiet=True, redirect_stdouts=False)
    worker.execute_from_commandline()
