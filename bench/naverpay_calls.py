"""Measure the Naver Pay client against its sandbox over loopback (prints figures; not a test).

    .venv/bin/python bench/naverpay_calls.py [--calls 300] [--limited-calls 12]

Rows:

* read calls/s (``claim_states`` = one ``POST …/query``), sequential and 10 concurrent, with no
  rate limit on either side; with the documented limits on both sides (client 2/s per endpoint,
  sandbox 2/s burst 4); and with an unlimited client against the limited sandbox (429s +
  Retry-After waits);
* dispatches/s with one product order per call vs. the API's 30 per call, unlimited and limited.
"""

from __future__ import annotations

import argparse
import asyncio
import logging
import random
import sys
import time
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from connectors.contract import DispatchItem  # noqa: E402
from connectors.naverpay.client import NaverPayClient  # noqa: E402
from connectors.naverpay.sandbox import DEFAULT_SECRET, NaverPaySandbox  # noqa: E402
from store.carriers import Carrier  # noqa: E402
from store.invoices import generate_valid_number  # noqa: E402

UNLIMITED: dict[str, float] = {}


@dataclass
class Row:
    name: str
    units: int
    seconds: float
    requests: int
    rejected_429: int
    failed: int = 0

    def show(self, unit: str) -> str:
        rate = self.units / self.seconds if self.seconds else float("inf")
        return (
            f"{self.name:<58} {self.units:>5} {unit:<10} {self.seconds:7.2f} s "
            f"{rate:9.1f} {unit}/s  http={self.requests:<5} 429s={self.rejected_429:<4} "
            f"failed={self.failed}"
        )


async def _setup(
    sandbox_rates: dict[str, float] | None, client_rate: float | None
) -> tuple[NaverPaySandbox, NaverPayClient]:
    sb = NaverPaySandbox(visibility_lag=0, rates=sandbox_rates, seed=1)
    url = await sb.start()
    client = NaverPayClient(url, sb.client_id, DEFAULT_SECRET, rate_per_second=client_rate)
    await client.tokens.get()
    return sb, client


async def reads(
    name: str,
    calls: int,
    concurrency: int,
    sandbox_rates: dict[str, float] | None,
    client_rate: float | None,
) -> Row:
    sb, client = await _setup(sandbox_rates, client_rate)
    try:
        ids = sb.new_paid_order()["productOrderIds"]
        sem = asyncio.Semaphore(concurrency)

        async def one() -> None:
            async with sem:
                await client.claim_states(ids)

        started = time.perf_counter()
        outcomes = await asyncio.gather(*(one() for _ in range(calls)), return_exceptions=True)
        elapsed = time.perf_counter() - started
        failed = sum(isinstance(o, Exception) for o in outcomes)  # retries exhausted (429s)
        row = Row(name, calls - failed, elapsed, sb.requests["query"], sb.quota.rejected["query"])
        row.failed = failed
        return row
    finally:
        await client.aclose()
        await sb.stop()


async def dispatches(
    name: str,
    units: int,
    batch: int,
    sandbox_rates: dict[str, float] | None,
    client_rate: float | None,
) -> Row:
    sb, client = await _setup(sandbox_rates, client_rate)
    rng = random.Random(3)
    try:
        pos = [sb.new_paid_order()["productOrderIds"][0] for _ in range(units)]
        items = [
            DispatchItem(po, Carrier.CJ, generate_valid_number(Carrier.CJ, rng), datetime.now(UTC))
            for po in pos
        ]
        started = time.perf_counter()
        ok = 0
        for i in range(0, len(items), batch):
            ok += sum(r.ok for r in await client.dispatch(items[i : i + batch]))
        elapsed = time.perf_counter() - started
        assert ok == units, f"{units - ok} dispatches failed"
        assert all(sb.ledger.count("dispatch", po) == 1 for po in pos)
        return Row(name, units, elapsed, sb.requests["dispatch"], sb.quota.rejected["dispatch"])
    finally:
        await client.aclose()
        await sb.stop()


async def run(calls: int, limited_calls: int) -> None:
    print("naverpay client vs sandbox on loopback (one process, one event loop)\n")
    rows = [
        await reads("reads, no limits, sequential", calls, 1, UNLIMITED, None),
        await reads("reads, no limits, 10 concurrent", calls, 10, UNLIMITED, None),
        await reads(
            "reads, limits both sides (2/s; sandbox burst 4)", limited_calls, 10, None, 2.0
        ),
        await reads(
            "reads, client unlimited vs sandbox 2/s (429+Retry-After)",
            limited_calls,
            10,
            None,
            None,
        ),
    ]
    for row in rows:
        print(row.show("calls"))
    print()
    drows = [
        await dispatches("dispatch, no limits, batch 1", calls, 1, UNLIMITED, None),
        await dispatches("dispatch, no limits, batch 30", calls, 30, UNLIMITED, None),
        await dispatches("dispatch, limits 2/s, batch 1", limited_calls, 1, None, 2.0),
        await dispatches("dispatch, limits 2/s, batch 30", limited_calls * 10, 30, None, 2.0),
    ]
    for row in drows:
        print(row.show("dispatches"))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--calls", type=int, default=300)
    parser.add_argument("--limited-calls", type=int, default=12)
    args = parser.parse_args()
    logging.basicConfig(level=logging.ERROR)  # the retry warnings of the 429 row are expected
    asyncio.run(run(args.calls, args.limited_calls))


if __name__ == "__main__":
    main()
