"""Module-scoped end-to-end stack on PostgreSQL (one worker per test module; tests use their
own order ids so they do not see each other)."""

from __future__ import annotations

import uuid
from collections.abc import AsyncIterator
from pathlib import Path

import pytest

from connectors.goodsflow.sandbox import GoodsflowSandbox
from store.db import make_engine, upgrade
from tests.conftest import PG_URL, _drop_schema
from tests.e2e.stack import Stack, worker_env
from tests.harness import KafkaClient, WorkerProcess

pytestmark = pytest.mark.integration


def build_sandboxes(names: tuple[str, ...]) -> dict[str, object]:
    out: dict[str, object] = {}
    if "goodsflow" in names:
        out["goodsflow"] = GoodsflowSandbox(
            step_seconds=1.0, pickup_after_seconds=3600.0, auto_print=True, seed=7
        )
    if "naverpay" in names:
        from connectors.naverpay.sandbox import NaverPaySandbox

        out["naverpay"] = NaverPaySandbox(visibility_lag=0.0, rates={}, seed=7)
    if "qoo10" in names:
        from connectors.qoo10.sandbox import Qoo10Sandbox

        out["qoo10"] = Qoo10Sandbox(rates={}, seed=7)
    return out


async def start_stack(
    kafka_bootstrap: str, tmp: Path, sandbox_names: tuple[str, ...], **env_extra: str
) -> AsyncIterator[Stack]:
    schema = f"e2e_{uuid.uuid4().hex[:10]}"
    engine = make_engine(PG_URL, schema)
    await upgrade(engine)
    sandboxes = build_sandboxes(sandbox_names)
    urls = {name: await sb.start() for name, sb in sandboxes.items()}  # type: ignore[attr-defined]
    prefix = f"e{uuid.uuid4().hex[:8]}."
    worker = WorkerProcess(
        worker_env(kafka_bootstrap, PG_URL, schema, prefix, urls, **env_extra), tmp / "worker.log"
    )
    try:
        worker.start()
        async with KafkaClient(kafka_bootstrap, prefix) as kafka:
            yield Stack(kafka, engine, sandboxes, worker)
    finally:
        worker.stop()
        for sb in sandboxes.values():
            await sb.stop()  # type: ignore[attr-defined]
        await engine.dispose()
        await _drop_schema(schema)


@pytest.fixture(scope="module")
def e2e_tmp(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return tmp_path_factory.mktemp("e2e")


@pytest.fixture(scope="module")
def require_pg() -> None:
    from tests.conftest import IN_CI, _pg_reachable

    if not _pg_reachable():
        if IN_CI:
            pytest.fail("PostgreSQL not reachable (CI must test it)")
        pytest.skip("PostgreSQL not reachable")
