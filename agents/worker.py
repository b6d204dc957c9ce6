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
  broker_watch         exits the worker when the broker lost its state (see watch_broker)

Before faust starts, :func:`prepare_topics` creates every topic with ``TOPIC_PARTITIONS``
partitions (the broker would otherwise auto-create the consumed ones with its default).
"""

from __future__ import annotations

import asyncio
import logging
import os
import threading
import time
from collections.abc import Awaitable, Callable
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
from channelsync.broker import BrokerEpoch, BrokerStateLost, ensure_topics
from channelsync.settings import Settings
from connectors.registry import build_goodsflow, build_marketplaces
from store import timers
from store.db import make_engine
from topics import names

log = logging.getLogger("channelsync.worker")

#: one-partition topic (prefixed) holding each worker incarnation's broker marker
EPOCH_TOPIC = "channelsync.epoch"
BROKER_CHECK_SECONDS = 2.0
#: how long /health answers 503 (reason: broker_state) before the worker exits
BROKER_LOST_GRACE_SECONDS = 3.0
#: hard exit (os._exit) when the orderly shutdown after a lost broker has not finished by then
BROKER_LOST_HARD_EXIT_SECONDS = 30.0
EXIT_BROKER_LOST = 75  # EX_TEMPFAIL: the status of the hard exit; the orderly crash exits 1


def topic_names(settings: Settings) -> list[str]:
    return [settings.topic_prefix + name for name in names.ALL_TOPICS]


async def prepare_topics(settings: Settings, bootstrap: str) -> dict[str, int]:
    """Create the worker's topics with ``TOPIC_PARTITIONS`` partitions (and the marker topic
    with one) before faust subscribes: the first metadata request naming a missing topic
    auto-creates it with the broker's default (Tansu: 4). Existing topics are left alone."""
    counts = await ensure_topics(
        bootstrap, topic_names(settings), settings.topic_partitions, settings.topic_replicas
    )
    counts.update(
        await ensure_topics(
            bootstrap, [settings.topic_prefix + EPOCH_TOPIC], 1, settings.topic_replicas
        )
    )
    return counts


async def watch_broker(
    epoch: BrokerEpoch,
    on_lost: Callable[[str], Awaitable[None]],
    interval: float = BROKER_CHECK_SECONDS,
) -> None:
    """Watch for a broker that lost its state under this worker; call ``on_lost(reason)``.

    Why it is needed: after a restart of a memory-only broker (the embedded Tansu) the broker
    has no topics, offsets or groups, but faust's consumer carries on with its old assignment
    and positions: every offset commit fails (UnknownTopicOrPartition) and nothing is consumed,
    or it rejoins and commits its pre-restart offsets into the new broker's group, so the
    first messages of each partition are skipped. Neither shows in faust's own state, so the
    evidence is taken from the broker itself: this worker's marker (:class:`BrokerEpoch`) is
    gone. It does not depend on traffic, and an unreachable broker (a restart of a broker that
    keeps its data) is "cannot tell", never "lost".

    What the worker does then (see :func:`build`): ``/health`` answers 503 with the reason,
    then the worker **exits non-zero** so its supervisor starts a fresh one; it does not try to
    recover in place. A fresh process re-creates the topics (:func:`prepare_topics`) and joins
    a fresh group from the earliest offsets — the same path as a first start — whereas an
    in-place recovery would have to reset faust's per-partition acked/committed bookkeeping,
    the consumer's positions and the group membership from outside faust (fragile internals,
    faust-notes.md P3/P4/P5). Every effect is idempotent and the ledger survives a kill -9, so
    exiting mid-work is safe; the OMS re-sends what the broker lost.
    """
    while True:
        try:
            if epoch.offset is None:
                await epoch.plant()
                log.info("broker marker planted at %s@%s", epoch.topic, epoch.offset)
            reason = await epoch.check()
        except asyncio.CancelledError:
            raise
        except Exception as exc:  # the broker is unreachable or slow: cannot tell
            log.debug("broker check inconclusive: %r", exc)
            reason = None
        if reason is not None:
            await on_lost(reason)
            return
        await asyncio.sleep(interval)


def _hard_exit_after(seconds: float, code: int) -> None:
    """Backstop: faust/aiokafka shutdown can hang against a broker in a bad state (aiokafka
    #1101), the supervisor must still see the process end."""

    def kill() -> None:
        log.critical("shutdown did not finish within %.0fs: hard exit %d", seconds, code)
        logging.shutdown()
        os._exit(code)

    timer = threading.Timer(seconds, kill)
    timer.daemon = True
    timer.start()


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
        await run_batched(stream, apply, apply.handle_batch, runtime)

    @app.agent(topics[names.TRACKING_EVENTS], concurrency=1, name="tracking")
    async def tracking_agent(stream: Any) -> None:
        await run_safely(stream, tracking, runtime)

    if settings.dispatcher_mode == "inline":  # "off": `channelsync dispatcher` processes do it

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
        runtime.ready = True
        if not ready["logged"]:
            ready["logged"] = True
            took = time.monotonic() - started
            log.info("channelsync worker ready in %.2fs", took)
            print(f"channelsync worker ready in {took:.2f}s", flush=True)

    async def _on_revoked(sender: Any, *args: Any, **kwargs: Any) -> None:
        runtime.ready = False  # rebalancing: not a group member until it completes

    app.on_rebalance_complete.connect(_on_ready)  # type: ignore[arg-type]
    app.on_partitions_revoked.connect(_on_revoked)  # type: ignore[arg-type]

    epoch = BrokerEpoch(bootstrap, settings.topic_prefix + EPOCH_TOPIC)

    async def _broker_lost(reason: str) -> None:
        runtime.mark_broker_lost(reason)
        runtime.ready = False
        log.critical(
            "the broker lost its state (%s): /health answers 503; exiting in %.0fs so the "
            "supervisor starts a fresh worker",
            reason,
            BROKER_LOST_GRACE_SECONDS,
        )
        await asyncio.sleep(BROKER_LOST_GRACE_SECONDS)
        _hard_exit_after(BROKER_LOST_HARD_EXIT_SECONDS, EXIT_BROKER_LOST)
        await app.crash(BrokerStateLost(reason))

    @app.task
    async def broker_watch() -> None:
        await watch_broker(epoch, _broker_lost)

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


def faust_worker(app: faust.App, loglevel: str) -> faust.Worker:
    """The faust Worker for ``app``, without its terminal spinner: the spinner sets the root
    logger to DEBUG whatever ``loglevel`` says, so every library's debug record gets built
    (~4 % of the worker's CPU under load, httpcore's per-request traces alone)."""
    worker = faust.Worker(app, loglevel=loglevel, quiet=True, redirect_stdouts=False)
    worker.spinner = None
    return worker


async def _prepare_topics_patiently(
    settings: Settings, bootstrap: str, patience: float = 60.0
) -> None:
    """:func:`prepare_topics`, retried while the broker does not answer; after ``patience``
    the worker starts anyway (faust waits for the broker; missing topics then get the broker's
    default partition count, which is logged)."""
    deadline = time.monotonic() + patience
    while True:
        try:
            await prepare_topics(settings, bootstrap)
            return
        except Exception as exc:
            if time.monotonic() > deadline:
                log.warning("could not create the topics (%r): starting anyway", exc)
                return
            log.warning("creating the topics failed (%r), retrying", exc)
            await asyncio.sleep(2.0)


def run_worker(settings: Settings, bootstrap: str, loglevel: str = "info") -> None:
    """Run until SIGTERM/SIGINT (exit 0), or until the broker lost its state (non-zero: see
    :func:`watch_broker`). Migrates the store and creates the topics first."""
    from store.db import upgrade

    async def migrate() -> None:
        engine = make_engine(settings.database_url, settings.database_schema)
        try:
            await upgrade(engine)
        finally:
            await engine.dispose()

    asyncio.run(migrate())
    asyncio.run(_prepare_topics_patiently(settings, bootstrap))
    app, _ = build(settings, bootstrap)
    worker = faust_worker(app, loglevel)
    worker.execute_from_commandline()
