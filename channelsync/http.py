"""The worker's own HTTP endpoint (faust's web server is off): ``/metrics`` and ``/health``.

``/health`` answers 200 only when the worker has joined its group, the broker still holds its
state (it did not lose its topics and offsets under the worker: ``broker_state``), the broker
answered the last produce, the database answers, and each enabled connector's last call did
not fail; otherwise 503 with the reasons.
"""

from __future__ import annotations

import asyncio
from typing import Any

from aiohttp import web
from prometheus_client import CONTENT_TYPE_LATEST, generate_latest
from sqlalchemy import text


async def health_report(runtime: Any) -> dict[str, Any]:
    checks: dict[str, Any] = {}
    checks["joined"] = {"ok": bool(getattr(runtime, "ready", False))}
    lost = getattr(runtime, "broker_lost", None)
    checks["broker_state"] = {"ok": lost is None, "error": lost}
    try:
        async with asyncio.timeout(3):
            async with runtime.engine.connect() as conn:
                await conn.execute(text("select 1"))
        checks["database"] = {"ok": True}
    except Exception as exc:  # report, never raise
        checks["database"] = {"ok": False, "error": type(exc).__name__}
    checks["broker"] = {
        "ok": runtime.last_produce_error is None,
        "error": runtime.last_produce_error,
    }
    for name, client in list(runtime.connectors.items()) + [("goodsflow", runtime.goodsflow)]:
        if client is None:
            continue
        last = runtime.connector_health.get(name)
        checks[f"connector:{name}"] = {"ok": last is None or last == "ok", "last_outcome": last}
    return {"ok": all(c["ok"] for c in checks.values()), "checks": checks}


async def serve(runtime: Any, port: int, host: str = "0.0.0.0") -> None:
    async def metrics_view(request: web.Request) -> web.Response:
        return web.Response(body=generate_latest(), headers={"Content-Type": CONTENT_TYPE_LATEST})

    async def health_view(request: web.Request) -> web.Response:
        report = await health_report(runtime)
        return web.json_response(report, status=200 if report["ok"] else 503)

    app = web.Application()
    app.router.add_get("/metrics", metrics_view)
    app.router.add_get("/health", health_view)
    runner = web.AppRunner(app, access_log=None)
    await runner.setup()
    site = web.TCPSite(runner, host, port)
    await site.start()
    try:
        await asyncio.Event().wait()
    finally:
        await runner.cleanup()
