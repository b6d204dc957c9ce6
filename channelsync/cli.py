"""``channelsync`` command line."""

from __future__ import annotations

import argparse
import asyncio
import json
import logging
import os
import sys
from pathlib import Path

from channelsync.settings import Settings, get_settings

SANDBOXES = ("naverpay", "qoo10", "goodsflow")


class CliError(Exception):
    """A user-facing error: printed without a traceback, exit code 2."""


def _setup_logging(level: str) -> None:
    logging.basicConfig(
        level=getattr(logging, level.upper(), logging.INFO),
        format="%(asctime)s %(levelname)s %(name)s: %(message)s",
    )


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


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="channelsync", description=__doc__)
    sub = p.add_subparsers(dest="command", required=True)

    sub.add_parser("worker", help="run the Faust worker (embedded broker when no bootstrap set)")

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

    demo = sub.add_parser("demo", help="embedded broker + SQLite + sandboxes + worker + traffic")
    demo.add_argument("--quick", action="store_true", help="shorter scripted day")
    return p


HANDLERS = {
    "worker": cmd_worker,
    "db": cmd_db_upgrade,
    "schema": cmd_schema,
    "sandbox": cmd_sandbox,
    "demo": cmd_demo,
}


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    try:
        settings = get_settings()
    except Exception as exc:  # pydantic ValidationError: bad environment
        print(f"channelsync: invalid configuration: {exc}", file=sys.stderr)
        return 2
    _setup_logging(settings.log_level)
    try:
        return HANDLERS[args.command](args, settings)
    except CliError as exc:
        print(f"channelsync: {exc}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    sys.exit(main())
