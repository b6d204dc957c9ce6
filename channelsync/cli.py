"""``channelsync`` command line."""

from __future__ import annotations

import argparse
import asyncio
import json
import logging
import os
import sys
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from channelsync.settings import Settings, get_settings

SANDBOXES = ("naverpay", "qoo10", "goodsflow")


class CliError(Exception):
    """A user-facing error: printed without a traceback, exit code 2."""


def _setup_logging(level: str) -> None:
    logging.basicConfig(
        level=getattr(logging, level.upper(), logging.INFO),
        format="%(asctime)s %(levelname)s %(name)s: %(message)s",
    )
    for noisy in ("alembic", "aiokafka", "httpx"):
        logging.getLogger(noisy).setLevel(logging.WARNING)


def cmd_worker(args: argparse.Namespace, settings: Settings) -> int:
    from agents.worker import run_worker
    from channelsync.broker import EmbeddedBroker

    if settings.kafka_bootstrap_servers:
        run_worker(settings, settings.kafka_bootstrap_servers, settings.log_level.lower())
        return 0
    print("KAFKA_BOOTSTRAP_SERVERS not set: starting the embedded broker (memory only)")
    with EmbeddedBroker() as broker:
        print(f"embedded broker on {broker.bootstrap} (ready in {broker.started_in:.2f}s)")
        os.environ["KAFKA_BOOTSTRAP_SERVERS"] = broker.bootstrap
        run_worker(settings, broker.bootstrap, settings.log_level.lower())
    return 0


def cmd_dispatcher(args: argparse.Namespace, settings: Settings) -> int:
    from agents.dispatcher_process import DispatcherConfigError, run

    if not settings.kafka_bootstrap_servers:
        raise CliError("the dispatcher needs KAFKA_BOOTSTRAP_SERVERS (the workers' broker)")
    try:
        run(settings, settings.kafka_bootstrap_servers)
    except DispatcherConfigError as exc:
        raise CliError(str(exc)) from None
    return 0


def cmd_db_upgrade(args: argparse.Namespace, settings: Settings) -> int:
    from store.db import current_revision, make_engine, upgrade

    async def go() -> str | None:
        engine = make_engine(settings.database_url, settings.database_schema)
        try:
            await upgrade(engine)
            return await current_revision(engine)
        finally:
            await engine.dispose()

    rev = asyncio.run(go())
    print(f"database at revision {rev}")
    return 0


def cmd_schema(args: argparse.Namespace, settings: Settings) -> int:
    from topics.registry import json_schemas

    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    schemas = json_schemas()
    for name, schema in schemas.items():
        (out / f"{name}.json").write_text(json.dumps(schema, indent=2, ensure_ascii=False) + "\n")
    print(f"wrote {len(schemas)} JSON Schemas to {out}/")
    if args.markdown:
        from topics.docs import render_markdown

        Path(args.markdown).write_text(render_markdown())
        print(f"wrote {args.markdown}")
    return 0


def cmd_sandbox(args: argparse.Namespace, settings: Settings) -> int:
    import importlib

    module = importlib.import_module(f"connectors.{args.name}.sandbox")
    try:
        asyncio.run(module.main(args.host, args.port))
    except KeyboardInterrupt:
        pass
    return 0


def cmd_demo(args: argparse.Namespace, settings: Settings) -> int:
    from channelsync.demo import run_demo

    return asyncio.run(run_demo(settings, quick=args.quick))


def _engine(settings: Settings) -> Any:
    from store.db import make_engine

    return make_engine(settings.database_url, settings.database_schema)


def _parse_time(value: str) -> datetime:
    try:
        t = datetime.fromisoformat(value)
    except ValueError:
        raise CliError(f"not an ISO time: {value!r} (e.g. 2026-11-22T09:00+09:00)") from None
    if t.tzinfo is None:
        raise CliError(f"time {value!r} needs a zone offset (e.g. +09:00 or Z)")
    return t


def _print(data: Any, as_json: bool, columns: list[str] | None = None) -> None:
    if as_json:
        print(json.dumps(data, indent=2, ensure_ascii=False, default=str))
        return
    if isinstance(data, list):
        if not data:
            print("(none)")
            return
        cols = columns or list(data[0])
        widths = {c: max(len(c), *(len(str(row.get(c, ""))) for row in data)) for c in cols}
        print("  ".join(c.ljust(widths[c]) for c in cols))
        for row in data:
            print("  ".join(str(row.get(c, "")).ljust(widths[c]) for c in cols))
        print(f"({len(data)} rows)")
        return
    for key, value in data.items():
        print(
            f"{key}: {json.dumps(value, ensure_ascii=False, default=str) if isinstance(value, dict | list) else value}"
        )


async def _with_engine(settings: Settings, fn: Any) -> Any:
    from store.db import upgrade

    engine = _engine(settings)
    try:
        await upgrade(engine)
        return await fn(engine)
    finally:
        await engine.dispose()


def cmd_holds(args: argparse.Namespace, settings: Settings) -> int:
    from channelsync import ops
    from store.errors import NotFoundError

    if args.holds_command == "list":
        rows = asyncio.run(_with_engine(settings, ops.list_holds))
        _print(rows, args.json, ["order_id", "reason", "age_seconds", "raised_at", "raised_by"])
        return 0
    try:
        result = asyncio.run(
            _with_engine(settings, lambda e: ops.release_hold(e, args.order, args.by, args.note))
        )
    except NotFoundError as exc:
        raise CliError(str(exc)) from None
    _print(result, args.json)
    return 0


def cmd_ops(args: argparse.Namespace, settings: Settings) -> int:
    from channelsync import ops

    states = [s.strip() for s in args.state.split(",")] if args.state else None
    rows = asyncio.run(
        _with_engine(settings, lambda e: ops.list_ops(e, states, args.order, args.limit))
    )
    _print(
        rows, args.json, ["id", "order_id", "channel", "action", "state", "attempts", "last_error"]
    )
    return 0


def cmd_replay(args: argparse.Namespace, settings: Settings) -> int:
    from channelsync import ops

    if args.replay_command == "outbound":
        since = _parse_time(args.since) if args.since else None
        result = asyncio.run(
            _with_engine(settings, lambda e: ops.replay_outbound(e, since, args.order))
        )
        _print(result, args.json)
        return 0
    from connectors.registry import build_marketplaces

    since = _parse_time(args.since)
    until = _parse_time(args.until) if args.until else datetime.now(UTC)
    if until <= since:
        raise CliError("--until must be after --since")
    connectors = build_marketplaces(settings)
    if args.channel not in connectors:
        raise CliError(
            f"channel {args.channel!r} is not enabled (enabled: {', '.join(connectors) or 'none'})"
        )

    async def go(engine: Any) -> Any:
        try:
            return await ops.replay_ingest(engine, connectors[args.channel], since, until)
        finally:
            for c in connectors.values():
                await c.aclose()

    result = asyncio.run(_with_engine(settings, go))
    _print(result, args.json)
    return 0


def cmd_status(args: argparse.Namespace, settings: Settings) -> int:
    from channelsync import ops

    report = asyncio.run(_with_engine(settings, lambda e: ops.status(e, settings)))
    if args.json:
        _print(report, True)
        return 0
    print(f"channelsync status at {report['at']}")
    print(
        "lines by status: "
        + ", ".join(f"{k}={v}" for k, v in sorted(report["lines_by_status"].items()))
    )
    print(f"open holds: {report['open_holds']} (oldest {report['oldest_hold_age_seconds']} s)")
    print("ledger ops:")
    _print(report["ops"], False, ["channel", "action", "state", "count"])
    print("ingest cursors:")
    _print(report["ingest_cursors"], False)
    print(
        "dead-lettered by reason: "
        + (", ".join(f"{k}={v}" for k, v in report["dead_lettered_by_reason"].items()) or "none")
    )
    print(f"changes recorded but not applied: {report['changes_not_applied']}")
    return 0


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="channelsync", description=__doc__)
    sub = p.add_subparsers(dest="command", required=True)

    sub.add_parser("worker", help="run the Faust worker (embedded broker when no bootstrap set)")

    sub.add_parser(
        "dispatcher",
        help="execute the outbound ledger in a process of its own (workers: DISPATCHER_MODE=off)",
    )
    db = sub.add_parser("db", help="database operations")
    dbsub = db.add_subparsers(dest="db_command", required=True)
    dbsub.add_parser("upgrade", help="apply migrations")

    sc = sub.add_parser("schema", help="write the event JSON Schemas")
    sc.add_argument("--out", default="docs/schemas")
    sc.add_argument("--markdown", default="docs/events.md", help="'' to skip")

    sb = sub.add_parser("sandbox", help="serve a marketplace sandbox on loopback")
    sb.add_argument("name", choices=SANDBOXES)
    sb.add_argument("--host", default="127.0.0.1")
    sb.add_argument("--port", type=int, default=0)

    holds = sub.add_parser("holds", help="delivery holds (R12)")
    hsub = holds.add_subparsers(dest="holds_command", required=True)
    hl = hsub.add_parser("list", help="open holds")
    hl.add_argument("--json", action="store_true")
    hr = hsub.add_parser("release", help="lift an order's holds; parked work resumes")
    hr.add_argument("order")
    hr.add_argument("--by", required=True, help="who releases (recorded)")
    hr.add_argument("--note", default="")
    hr.add_argument("--json", action="store_true")

    opsp = sub.add_parser("ops", help="outbound ledger")
    osub = opsp.add_subparsers(dest="ops_command", required=True)
    ol = osub.add_parser("list", help="ledger ops")
    ol.add_argument("--state", help="comma-separated: pending,sent,retry,succeeded,failed,parked")
    ol.add_argument("--order")
    ol.add_argument("--limit", type=int, default=200)
    ol.add_argument("--json", action="store_true")

    rp = sub.add_parser("replay", help="re-drive a window")
    rsub = rp.add_subparsers(dest="replay_command", required=True)
    ri = rsub.add_parser("ingest", help="re-read a marketplace window (de-duplicated)")
    ri.add_argument("--channel", required=True, choices=["naverpay", "qoo10"])
    ri.add_argument("--since", required=True, help="ISO time with zone")
    ri.add_argument("--until", help="ISO time with zone (default now)")
    ri.add_argument("--json", action="store_true")
    ro = rsub.add_parser("outbound", help="re-drive pending / retryable-failed ledger ops")
    ro.add_argument("--since", help="ops created since (ISO time with zone)")
    ro.add_argument("--order")
    ro.add_argument("--json", action="store_true")

    st = sub.add_parser("status", help="the picture in the terminal: flow, holds, ledger, lag")
    st.add_argument("--json", action="store_true")

    demo = sub.add_parser("demo", help="embedded broker + SQLite + sandboxes + worker + traffic")
    demo.add_argument("--quick", action="store_true", help="shorter scripted day")
    return p


HANDLERS = {
    "worker": cmd_worker,
    "dispatcher": cmd_dispatcher,
    "db": cmd_db_upgrade,
    "schema": cmd_schema,
    "sandbox": cmd_sandbox,
    "demo": cmd_demo,
    "holds": cmd_holds,
    "ops": cmd_ops,
    "replay": cmd_replay,
    "status": cmd_status,
}


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    try:
        settings = get_settings()
    except Exception as exc:  # pydantic ValidationError: bad environment
        print(f"channelsync: invalid configuration: {exc}", file=sys.stderr)
        return 2
    _setup_logging(settings.log_level)
    from store.db import DatabaseConfigError

    try:
        return HANDLERS[args.command](args, settings)
    except (CliError, DatabaseConfigError) as exc:
        print(f"channelsync: {exc}", file=sys.stderr)
        return 2
    except OSError as exc:  # database or broker unreachable
        print(f"channelsync: cannot reach a service: {exc}", file=sys.stderr)
        return 3


if __name__ == "__main__":
    sys.exit(main())
