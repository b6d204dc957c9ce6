"""``make bench``: run every benchmark at three sizes, write bench/results/<name>.json and print
a summary table. Needs PostgreSQL (TEST_POSTGRES_URL) and starts the embedded broker itself
(or uses KAFKA_BOOTSTRAP_SERVERS).

    .venv/bin/python -m bench.run [--only outbound,ratelimit,collection,catchup] [--scale 1.0]
"""

from __future__ import annotations

import argparse
import asyncio
import json
import logging
import os
import sys
import tempfile
from pathlib import Path
from typing import Any

from bench import ingest, outbound
from bench.harness import RESULTS, save
from channelsync.broker import EmbeddedBroker

SIZES = {
    "outbound": (1000, 4000, 20000),
    "outbound_split": (1000, 4000, 20000),
    "ratelimit": (600, 1200, 2400),
    "collection": (100, 200, 400),
    "catchup": (2000, 5000, 20000),
}
RUNNERS = {
    "outbound": outbound.run,
    "outbound_split": outbound.run_split,
    "ratelimit": ingest.rate_limit,
    "collection": ingest.collection,
    "catchup": ingest.catch_up,
}
HEADLINE: dict[str, Any] = {
    "outbound": lambda r: (
        f"{r['events_per_second']} ev/s, burst intent→ack p50 {r['intent_to_ack_seconds']['p50']}s p99 {r['intent_to_ack_seconds']['p99']}s; paced {r.get('paced', {}).get('rate_per_second')}/s command→ack p50 {r.get('paced', {}).get('command_to_ack_seconds', {}).get('p50')}s p99 {r.get('paced', {}).get('command_to_ack_seconds', {}).get('p99')}s; pipeline/raw {r['pipeline_over_raw']}, RSS {r['worker_peak_rss_mib']} MiB, dup {r['units_dispatched_more_than_once']}"
    ),
    "outbound_split": lambda r: HEADLINE["outbound"](r) + " (worker + dispatcher process)",
    "ratelimit": lambda r: (
        f"{r['dispatches_per_second']}/s of ideal {r['ideal_per_second']}/s = {r['ratio_to_ideal']}, 429s {r['http_429_answers']}"
    ),
    "collection": lambda r: (
        f"change→stored p50 {r['change_to_stored_seconds']['p50']}s p99 {r['change_to_stored_seconds']['p99']}s (poll {r['poll_interval_seconds']}s, target ≤ {r['target_p99_seconds']}s)"
    ),
    "catchup": lambda r: (
        f"n={r['n']} quotas on: {r['seconds_to_caught_up']}s ({r['changes_per_second']}/s); quota-bound ideal {r['quota_bound_ideal_seconds_at_2_per_s']}s, ratio {r.get('ratio_to_ideal')} (API reads {r.get('seconds_reading_api')}s), calls {r.get('api_calls_needed')}, 429s {r.get('http_429_answers')}; unlimited {r.get('unlimited', {}).get('seconds_to_caught_up')}s ({r.get('unlimited', {}).get('changes_per_second')}/s)"
    ),
}


async def main(only: list[str], scale: float) -> int:
    logging.basicConfig(level=logging.WARNING)
    workdir = Path(tempfile.mkdtemp(prefix="channelsync-bench-"))
    external = os.environ.get("KAFKA_BOOTSTRAP_SERVERS")
    broker = None if external else EmbeddedBroker()
    bootstrap = external or broker.start()  # type: ignore[union-attr]
    summary: dict[str, list[dict[str, Any]]] = {}
    try:
        for name in only:
            summary[name] = []
            for size in SIZES[name]:
                n = max(10, int(size * scale))
                print(f"--- {name} n={n}", flush=True)
                try:
                    result = await RUNNERS[name](bootstrap, n, workdir)
                except Exception as exc:  # report and go on with the next size
                    result = {"n": n, "error": repr(exc)}
                summary[name].append(result)
                print(
                    f"    {HEADLINE[name](result) if 'error' not in result else result['error']}",
                    flush=True,
                )
            path = save(name, {"runs": summary[name]})
            print(f"    wrote {path}")
    finally:
        if broker is not None:
            broker.stop()
    merged: dict[str, Any] = {}
    for name in RUNNERS:  # every benchmark's latest runs, also those not re-run now
        path = RESULTS / f"{name}.json"
        if path.exists():
            runs = json.loads(path.read_text())["runs"]
            merged[name] = [HEADLINE[name](r) if "error" not in r else r["error"] for r in runs]
    save("summary", {"results": merged})
    print(json.dumps({k: len(v) for k, v in summary.items()}))
    return 0


if __name__ == "__main__":
    p = argparse.ArgumentParser()
    p.add_argument("--only", default=",".join(RUNNERS))
    p.add_argument(
        "--scale", type=float, default=1.0, help="multiply every size (e.g. 0.1 for a quick look)"
    )
    a = p.parse_args()
    sys.exit(asyncio.run(main([s.strip() for s in a.only.split(",") if s.strip()], a.scale)))
