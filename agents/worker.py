"""Build the worker: Faust app + runtime + agents, and run it (``channelsync worker``)."""

from __future__ import annotations

import logging
import time
from typing import Any

import faust

from agents.app import create_app, declare_topics
from agents.commands import CommandHandler
from agents.loop import run_safely
from agents.runtime import Runtime
from channelsync.settings import Settings
from store.db import make_engine
from topics import names

log = logging.getLogger("channelsync.worker")


def build(settings: Settings, bootstrap: str) -> tuple[faust.App, Runtime]:
    """A Faust app with every agent registered (each ``concurrency=1``)."""
    app = create_app(settings, bootstrap)
    topics = declare_topics(app, settings.topic_prefix)
    engine = make_engine(settings.database_url, settings.database_schema)
    runtime = Runtime(settings, app, topics, engine)
    commands = CommandHandler(runtime)

    @app.agent(topics[names.OMS_COMMANDS], concurrency=1, name="commands")
    async def commands_agent(stream: Any) -> None:
        await run_safely(stream, commands, runtime)

    started = time.monotonic()
    ready = {"logged": False}

    @app.on_rebalance_complete.connect
    async def _on_ready(sender: Any, **kwargs: Any) -> None:
        if not ready["logged"]:
            ready["logged"] = True
            log.info("channelsync worker ready in %.2fs", time.monotonic() - started)
            print(f"channelsync worker ready in {time.monotonic() - started:.2f}s", flush=True)

    async def _dispose(app: Any, **kwargs: Any) -> None:
        await engine.dispose()

    app.on_before_shutdown.connect(_dispose)
    return app, runtime


def run_worker(settings: Settings, bootstrap: str, loglevel: str = "info") -> None:
    """Run until SIGTERM/SIGINT. Migrates the store first."""
    import asyncio

    from store.db import upgrade

    engine = make_engine(settings.database_url, settings.database_schema)
    asyncio.run(_migrate(engine, upgrade))
    app, _ = build(settings, bootstrap)
    worker = faust.Worker(app, loglevel=loglevel, quiet=True, redirect_stdouts=False)
    worker.execute_from_commandline()


async def _migrate(engine: Any, upgrade: Any) -> None:
    await upgrade(engine)
    await engine.dispose()
