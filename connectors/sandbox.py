"""Machinery shared by the three sandboxes (local HTTP servers that behave like the services).

A sandbox is an :class:`aiohttp.web.Application` built by :class:`Sandbox`. The service-specific
subclass adds its routes in ``setup_routes`` and records every side effect in ``self.ledger``.
Shared here:

* :class:`Ledger` — every side effect (dispatch, cancel, message, waybill …) with counts per
  (operation, id), so tests can assert "dispatched exactly once".
* :class:`Faults` — fault injection: error rate, added latency, outage window (5xx or hang).
* :class:`QuotaLimiter` — per-endpoint rate limit that answers 429 (never waits), like the
  real gateways.
* control API under ``/_control/``: ``GET ledger``, ``POST faults``, ``POST reset``,
  ``GET health``; subclasses add their own injection endpoints under ``/_control/``.

:meth:`Sandbox.start` binds a loopback port (0 = free port) and returns the base URL.
"""

from __future__ import annotations

import asyncio
import json
import random
import time
from collections import Counter
from collections.abc import Awaitable, Callable
from dataclasses import asdict, dataclass, field
from datetime import UTC, datetime
from typing import Any

from aiohttp import web

Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]

ENDPOINT_KEY = web.AppKey("endpoint_of", dict)


def utcnow() -> datetime:
    return datetime.now(UTC)


@dataclass
class LedgerEntry:
    op: str
    key: str
    at: str
    details: dict[str, Any]


class Ledger:
    """Append-only record of side effects."""

    def __init__(self) -> None:
        self.entries: list[LedgerEntry] = []
        self.counts: Counter[tuple[str, str]] = Counter()

    def record(self, op: str, key: str, **details: Any) -> None:
        self.entries.append(LedgerEntry(op, key, utcnow().isoformat(), details))
        self.counts[(op, key)] += 1

    def count(self, op: str, key: str | None = None) -> int:
        if key is not None:
            return self.counts[(op, key)]
        return sum(n for (o, _), n in self.counts.items() if o == op)

    def keys(self, op: str) -> list[str]:
        return sorted({k for (o, k) in self.counts if o == op})

    def snapshot(self) -> dict[str, Any]:
        by_op: dict[str, dict[str, int]] = {}
        for (op, key), n in self.counts.items():
            by_op.setdefault(op, {})[key] = n
        return {"counts": by_op, "entries": [asdict(e) for e in self.entries]}

    def clear(self) -> None:
        self.entries.clear()
        self.counts.clear()


@dataclass
class Faults:
    """Fault injection settings. ``outage_until`` is a monotonic deadline."""

    error_rate: float = 0.0
    error_status: int = 503
    latency_seconds: float = 0.0
    outage_until: float = 0.0
    outage_mode: str = "5xx"  # "5xx" answers error_status; "hang" sleeps past client timeouts
    hang_seconds: float = 30.0
    rate_limit_burst_until: float = 0.0  # every request answers 429 until then
    injected: Counter[str] = field(default_factory=Counter)

    def update(self, body: dict[str, Any]) -> None:
        now = time.monotonic()
        if "error_rate" in body:
            self.error_rate = float(body["error_rate"])
        if "error_status" in body:
            self.error_status = int(body["error_status"])
        if "latency_seconds" in body:
            self.latency_seconds = float(body["latency_seconds"])
        if "outage_seconds" in body:
            self.outage_until = now + float(body["outage_seconds"])
        if "outage_mode" in body:
            self.outage_mode = str(body["outage_mode"])
        if "hang_seconds" in body:
            self.hang_seconds = float(body["hang_seconds"])
        if "rate_limit_burst_seconds" in body:
            self.rate_limit_burst_until = now + float(body["rate_limit_burst_seconds"])

    def clear(self) -> None:
        self.error_rate = 0.0
        self.latency_seconds = 0.0
        self.outage_until = 0.0
        self.rate_limit_burst_until = 0.0


class QuotaLimiter:
    """Per-endpoint token buckets that refuse (429) instead of waiting.

    ``rates`` maps endpoint name → requests per second; capacity = ``burst`` × rate (at least 1).
    Endpoints without a rate are unlimited. ``rejected`` counts the 429s given per endpoint.
    """

    def __init__(self, rates: dict[str, float] | None = None, burst: float = 1.0) -> None:
        self.rates = dict(rates or {})
        self.burst = burst
        self._state: dict[str, tuple[float, float]] = {}
        self.rejected: Counter[str] = Counter()
        self.accepted: Counter[str] = Counter()

    def try_acquire(self, endpoint: str) -> bool:
        rate = self.rates.get(endpoint)
        if rate is None:
            self.accepted[endpoint] += 1
            return True
        capacity = max(1.0, rate * self.burst)
        now = time.monotonic()
        tokens, updated = self._state.get(endpoint, (capacity, now))
        tokens = min(capacity, tokens + (now - updated) * rate)
        if tokens >= 1.0:
            self._state[endpoint] = (tokens - 1.0, now)
            self.accepted[endpoint] += 1
            return True
        self._state[endpoint] = (tokens, now)
        self.rejected[endpoint] += 1
        return False


class Sandbox:
    """Base class of the sandboxes. Subclasses implement :meth:`setup_routes` and may override
    :meth:`error_response` / :meth:`rate_limited_response` to answer in their service's shape."""

    name = "sandbox"

    def __init__(self, *, rates: dict[str, float] | None = None, seed: int | None = None) -> None:
        self.ledger = Ledger()
        self.faults = Faults()
        self.quota = QuotaLimiter(rates)
        self.random = random.Random(seed)
        self.requests: Counter[str] = Counter()
        self.app = web.Application(middlewares=[self._middleware])
        self._endpoint_of: dict[str, str] = {}
        self.app.router.add_get("/_control/ledger", self._ctl_ledger)
        self.app.router.add_post("/_control/faults", self._ctl_faults)
        self.app.router.add_post("/_control/reset", self._ctl_reset)
        self.app.router.add_get("/_control/health", self._ctl_health)
        self.app.router.add_get("/_control/metrics", self._ctl_metrics)
        self.setup_routes(self.app.router)
        self._runner: web.AppRunner | None = None
        self.url: str | None = None

    # --- to override -------------------------------------------------------------------------
    def setup_routes(self, router: web.UrlDispatcher) -> None:
        raise NotImplementedError

    def error_response(self, status: int, code: str, message: str) -> web.Response:
        return web.json_response({"code": code, "message": message}, status=status)

    def rate_limited_response(self, endpoint: str) -> web.Response:
        resp = self.error_response(429, "GW.RATE_LIMIT", f"rate limit exceeded on {endpoint}")
        resp.headers["Retry-After"] = "1"
        return resp

    def reset(self) -> None:
        """Forget all state (subclasses extend)."""
        self.ledger.clear()
        self.faults.clear()
        self.requests.clear()

    # --- helpers for subclasses --------------------------------------------------------------
    def route(
        self, router: web.UrlDispatcher, method: str, path: str, endpoint: str, handler: Handler
    ) -> None:
        """Add a route whose requests are counted, rate-limited and fault-injected as
        ``endpoint`` (the name used in ``rates``)."""
        resource = router.add_route(method, path, handler)
        self._endpoint_of[resource.resource.canonical if resource.resource else path] = endpoint

    # --- lifecycle ---------------------------------------------------------------------------
    async def start(self, host: str = "127.0.0.1", port: int = 0) -> str:
        self._runner = web.AppRunner(self.app, access_log=None)
        await self._runner.setup()
        site = web.TCPSite(self._runner, host, port)
        await site.start()
        server: Any = site._server
        bound = server.sockets[0].getsockname()[1]
        self.url = f"http://{host}:{bound}"
        return self.url

    async def stop(self) -> None:
        if self._runner is not None:
            await self._runner.cleanup()
            self._runner = None

    async def __aenter__(self) -> Sandbox:
        await self.start()
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.stop()

    # --- middleware and control --------------------------------------------------------------
    @web.middleware
    async def _middleware(self, request: web.Request, handler: Handler) -> web.StreamResponse:
        if request.path.startswith("/_control/"):
            return await handler(request)
        info = request.match_info.route.resource
        endpoint = self._endpoint_of.get(info.canonical if info else request.path, request.path)
        self.requests[endpoint] += 1
        now = time.monotonic()
        faults = self.faults
        if faults.latency_seconds:
            await asyncio.sleep(faults.latency_seconds)
        if now < faults.outage_until:
            faults.injected["outage"] += 1
            if faults.outage_mode == "hang":
                await asyncio.sleep(faults.hang_seconds)
            return self.error_response(faults.error_status, "SANDBOX.OUTAGE", "service outage")
        if now < faults.rate_limit_burst_until:
            faults.injected["429"] += 1
            return self.rate_limited_response(endpoint)
        if faults.error_rate and self.random.random() < faults.error_rate:
            faults.injected["error"] += 1
            return self.error_response(faults.error_status, "SANDBOX.FAULT", "injected fault")
        if not self.quota.try_acquire(endpoint):
            return self.rate_limited_response(endpoint)
        return await handler(request)

    async def _ctl_ledger(self, request: web.Request) -> web.Response:
        snap = self.ledger.snapshot()
        snap["requests"] = dict(self.requests)
        snap["rate_limited"] = dict(self.quota.rejected)
        snap["faults_injected"] = dict(self.faults.injected)
        return web.json_response(snap, dumps=lambda o: json.dumps(o, default=str))

    async def _ctl_faults(self, request: web.Request) -> web.Response:
        body = await request.json() if request.can_read_body else {}
        if body.get("clear"):
            self.faults.clear()
        self.faults.update(body)
        return web.json_response({"ok": True})

    async def _ctl_reset(self, request: web.Request) -> web.Response:
        self.reset()
        return web.json_response({"ok": True})

    def metrics_text(self) -> str:
        """Prometheus text exposition of the sandbox's ledger and traffic (labels: op and
        endpoint names only, never an id)."""
        by_op: Counter[str] = Counter()
        for (op, _), n in self.ledger.counts.items():
            by_op[op] += n
        out = [
            "# HELP sandbox_side_effects_total Side effects recorded in the sandbox ledger",
            "# TYPE sandbox_side_effects_total counter",
        ]
        out += [
            f'sandbox_side_effects_total{{sandbox="{self.name}",op="{op}"}} {n}'
            for op, n in sorted(by_op.items())
        ]
        out += [
            "# HELP sandbox_requests_total Requests served",
            "# TYPE sandbox_requests_total counter",
        ]
        out += [
            f'sandbox_requests_total{{sandbox="{self.name}",endpoint="{e}"}} {n}'
            for e, n in sorted(self.requests.items())
        ]
        out += [
            "# HELP sandbox_rate_limited_total 429 answers given",
            "# TYPE sandbox_rate_limited_total counter",
        ]
        out += [
            f'sandbox_rate_limited_total{{sandbox="{self.name}",endpoint="{e}"}} {n}'
            for e, n in sorted(self.quota.rejected.items())
        ]
        return "\n".join(out) + "\n"

    async def _ctl_metrics(self, request: web.Request) -> web.Response:
        return web.Response(text=self.metrics_text(), content_type="text/plain")

    async def _ctl_health(self, request: web.Request) -> web.Response:
        return web.json_response({"ok": True, "sandbox": self.name})


async def serve_forever(sandbox: Sandbox, host: str, port: int) -> None:
    """Run a sandbox until cancelled (the ``channelsync sandbox NAME`` command)."""
    url = await sandbox.start(host, port)
    print(f"{sandbox.name} sandbox listening on {url} (control API under {url}/_control/)")
    try:
        await asyncio.Event().wait()
    finally:
        await sandbox.stop()
