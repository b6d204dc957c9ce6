"""Integration: a real ``channelsync worker`` over the real broker and both databases.

A command on ``oms.commands`` is decoded, checked by the state machine, recorded in the store and
answered on ``sync.results``; malformed messages go to the dead-letter topic with their reason
and the agent keeps going (S3); a redelivered command has no second effect (S1).
"""

from __future__ import annotations

import json
import uuid
from decimal import Decimal
from pathlib import Path

import pytest
from sqlalchemy import func, select
from sqlalchemy.ext.asyncio import AsyncEngine

from store.domain import Channel, LineStatus
from store.models import FailedEvent, OrderLine, ProcessedEvent, StatusHistory
from tests.harness import KafkaClient, WorkerProcess, result_for
from topics import names
from topics.commands import Address, LineSpec, LineStatusChange, OrderImport
from topics.envelope import new_envelope

pytestmark = pytest.mark.integration

ADDRESS = Address(name="Kim", phone="010-0000-0000", zip_code="04524", line1="Seoul", line2="1")


def _order_import(order_id: str) -> OrderImport:
    return OrderImport(
        address=ADDRESS,
        lines=[
            LineSpec(line_id=f"{order_id}-1", sku="SKU1", quantity=2, unit_price=Decimal("1000"))
        ],
    )


@pytest.fixture
def worker(
    kafka_bootstrap: str,
    db_config: tuple[str, str | None],
    topic_prefix: str,
    tmp_path: Path,
    engine: AsyncEngine,
) -> object:
    url, schema = db_config
    env = {
        "KAFKA_BOOTSTRAP_SERVERS": kafka_bootstrap,
        "DATABASE_URL": url,
        "DATABASE_SCHEMA": schema or "",
        "TOPIC_PREFIX": topic_prefix,
        "APP_ID": f"cs-{uuid.uuid4().hex[:8]}",
        "TOPIC_PARTITIONS": "2",
        "METRICS_PORT": "0",
        "NAVERPAY_ENABLED": "false",
        "QOO10_ENABLED": "false",
        "GOODSFLOW_ENABLED": "false",
    }
    w = WorkerProcess(env, tmp_path / "worker.log")
    w.start()
    yield w
    w.stop()


async def test_s1_s3_command_flows_end_to_end(
    worker: WorkerProcess, kafka_bootstrap: str, topic_prefix: str, engine: AsyncEngine
) -> None:
    """S1/S3: import + status move flow through; garbage is dead-lettered; duplicates are no-ops."""
    order_id = f"O-{uuid.uuid4().hex[:8]}"
    imp = new_envelope("order.import", order_id, Channel.OMS, _order_import(order_id))
    move = new_envelope(
        "line.status",
        order_id,
        Channel.OMS,
        LineStatusChange(line_ids=[f"{order_id}-1"], to_status=LineStatus.READY_TO_SHIP),
    )
    skip = new_envelope(  # R01: PREPARING/READY_TO_SHIP -> DELIVERED skips a step
        "line.status",
        order_id,
        Channel.OMS,
        LineStatusChange(line_ids=[f"{order_id}-1"], to_status=LineStatus.DELIVERED),
    )
    async with KafkaClient(kafka_bootstrap, topic_prefix) as kafka:
        await kafka.send(names.OMS_COMMANDS, imp)
        await kafka.send_raw(names.OMS_COMMANDS, order_id.encode(), b"{not json")
        await kafka.send_raw(
            names.OMS_COMMANDS, order_id.encode(), json.dumps({"type": "x"}).encode()
        )
        await kafka.send(names.OMS_COMMANDS, move)
        await kafka.send(names.OMS_COMMANDS, move)  # redelivery of the same event
        await kafka.send(names.OMS_COMMANDS, skip)
        results = await kafka.wait_for(
            names.SYNC_RESULTS, result_for([imp.event_id, move.event_id, skip.event_id]), count=4
        )
        dlq = await kafka.wait_for(names.dlq(names.OMS_COMMANDS), lambda m: True, count=2)

    outcomes = [(r["payload"]["source_event_id"], r["payload"]["outcome"]) for r in results]
    assert (str(imp.event_id), "succeeded") in outcomes
    assert [o for e, o in outcomes if e == str(move.event_id)] == ["succeeded", "duplicate"]
    refused = [
        r["payload"] for r in results if r["payload"]["source_event_id"] == str(skip.event_id)
    ]
    assert refused[0]["outcome"] == "refused" and refused[0]["rule"] == "R01"
    assert sorted(d["reason"] for d in dlq) == ["bad_envelope", "not_json"]

    async with engine.connect() as conn:
        line = (await conn.execute(select(OrderLine).where(OrderLine.id == f"{order_id}-1"))).one()
        assert line.status == LineStatus.READY_TO_SHIP.value
        moves = await conn.scalar(
            select(func.count())
            .select_from(StatusHistory)
            .where(StatusHistory.order_id == order_id)
        )
        assert moves == 2  # imported + one move, not two
        assert await conn.scalar(select(func.count()).select_from(ProcessedEvent)) == 3
        failed = (await conn.execute(select(FailedEvent.reason, FailedEvent.dead_lettered))).all()
        assert sorted(failed) == [("bad_envelope", True), ("not_json", True)]
