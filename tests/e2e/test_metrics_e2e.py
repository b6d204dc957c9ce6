"""Metrics and health after a scripted run: the exposition format is parsed (not grepped) and
the values must match what the run did."""

from __future__ import annotations

import asyncio
import json
import urllib.request
from collections.abc import AsyncIterator
from datetime import UTC, datetime
from pathlib import Path

import pytest
from prometheus_client.parser import text_string_to_metric_families

from channelsync.broker import free_port
from store.carriers import Carrier
from store.domain import Channel, LineStatus
from tests.e2e.conftest import start_stack
from tests.e2e.stack import Stack
from topics import names
from topics.commands import Address, LineStatusChange, PickupReached, ShipmentRegistered
from topics.envelope import new_envelope

pytestmark = pytest.mark.integration

PORT = free_port()


@pytest.fixture(scope="module")
async def stack(kafka_bootstrap: str, e2e_tmp: Path, require_pg: None) -> AsyncIterator[Stack]:
    async for s in start_stack(kafka_bootstrap, e2e_tmp, ("naverpay",), METRICS_PORT=str(PORT)):
        yield s


def _get(path: str) -> tuple[int, str]:
    try:
        with urllib.request.urlopen(f"http://127.0.0.1:{PORT}{path}", timeout=5) as resp:
            return resp.status, resp.read().decode()
    except urllib.error.HTTPError as err:
        return err.code, err.read().decode()


def _samples() -> dict[tuple[str, tuple[tuple[str, str], ...]], float]:
    _, text = _get("/metrics")
    out = {}
    for family in text_string_to_metric_families(text):
        for s in family.samples:
            out[(s.name, tuple(sorted(s.labels.items())))] = s.value
    return out


def _value(samples: dict, name: str, **labels: str) -> float:
    return samples.get((name, tuple(sorted(labels.items()))), 0.0)


async def test_metrics_and_health_reflect_a_scripted_run(stack: Stack) -> None:
    sb = stack.sandboxes["naverpay"]
    orders = [
        sb.new_paid_order([{"name": "Cup", "quantity": 1, "unit_price": 9000}], lag=0)
        for _ in range(3)
    ]
    ids = [
        (f"naverpay:{o['orderId']}", f"naverpay:{o['orderId']}:{o['productOrderIds'][0]}")
        for o in orders
    ]
    for oid, _ in ids:
        await stack.wait_until(lambda oid=oid: _known(stack, oid), f"{oid} ingested", timeout=60)

    for n, (oid, line) in enumerate(ids[:2]):
        ready = new_envelope(
            "line.status",
            oid,
            Channel.NAVERPAY,
            LineStatusChange(line_ids=[line], to_status=LineStatus.READY_TO_SHIP),
        )
        ship = new_envelope(
            "shipment.registered",
            oid,
            Channel.NAVERPAY,
            ShipmentRegistered(
                line_ids=[line], carrier=Carrier.CJ, tracking_number=f"12345678901{n}"
            ),
        )
        pickup = new_envelope(
            "pickup.reached",
            oid,
            Channel.NAVERPAY,
            PickupReached(line_ids=[line], scanned_at=datetime.now(UTC)),
        )
        await stack.send(ready, ship, pickup)
        await stack.wait_until(
            lambda line=line: stack.status_is(line, LineStatus.SHIPPING), "dispatched"
        )
    sb.change_address(
        ids[2][0].split(":", 1)[1], Address(name="Han", phone="010-1", zip_code="1", line1="Daegu")
    )
    await stack.kafka.send_raw(names.OMS_COMMANDS, b"x", b"{broken")

    async def settled() -> bool:
        s = _samples()
        return (
            _value(s, "channelsync_open_holds") == 1
            and _value(
                s,
                "channelsync_events_dead_lettered_total",
                topic=names.OMS_COMMANDS,
                reason="not_json",
            )
            == 1
        )

    await stack.wait_until(settled, "hold gauge and DLQ counter", timeout=40)
    s = _samples()
    assert (
        _value(
            s, "channelsync_ops_total", channel="naverpay", action="dispatch", outcome="succeeded"
        )
        == 2
    )
    assert (
        _value(
            s,
            "channelsync_events_consumed_total",
            topic=names.OMS_COMMANDS,
            type="pickup.reached",
            outcome="succeeded",
        )
        == 2
    )
    assert (
        _value(
            s,
            "channelsync_events_consumed_total",
            topic=names.OMS_COMMANDS,
            type="line.status",
            outcome="succeeded",
        )
        == 2
    )
    assert (
        _value(s, "channelsync_push_delay_seconds_count", channel="naverpay", action="dispatch")
        == 2
    )
    assert (
        _value(s, "channelsync_collection_delay_seconds_count", channel="naverpay") >= 4
    )  # 3 orders + address
    assert _value(s, "channelsync_ledger_ops", channel="naverpay", state="succeeded") == 2
    calls = sum(
        v
        for (name, labels), v in s.items()
        if name == "channelsync_external_calls_total" and ("connector", "naverpay") in labels
    )
    assert calls >= 5
    assert (
        _value(s, "channelsync_ingest_cursor_lag_seconds", channel="naverpay", account="default")
        < 30
    )

    status, body = _get("/health")
    report = json.loads(body)
    assert status == 200 and report["ok"], report
    assert report["checks"]["database"]["ok"] and report["checks"]["connector:naverpay"]["ok"]

    sb.faults.update({"outage_seconds": 30, "error_status": 503})
    await asyncio.sleep(3)  # the next polls fail
    status, body = _get("/health")
    assert status == 503 and not json.loads(body)["checks"]["connector:naverpay"]["ok"]
    sb.faults.clear()


async def _known(stack: Stack, order_id: str) -> bool:
    return await stack.order(order_id) is not None
