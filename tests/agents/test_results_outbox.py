"""The results outbox, on the real broker and both databases: an op whose outcome was committed
but whose result never reached ``sync.results`` (the process stopped in between) gets its result
re-sent once — and an op whose result was acknowledged is never reported twice."""

from __future__ import annotations

import json
from datetime import timedelta

import pytest
from aiokafka import AIOKafkaProducer
from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncEngine, async_sessionmaker

from agents.dispatcher import Dispatcher
from agents.dispatcher_process import ProducerAdapter, _ProducerOnly
from agents.runtime import Runtime
from channelsync.settings import Settings
from store.ledger import OpState
from store.models import ChannelOp, utcnow
from tests.harness import KafkaClient
from topics import names

pytestmark = pytest.mark.integration


def _op(key: str, state: OpState, emitted: bool, age: float) -> ChannelOp:
    at = utcnow() - timedelta(seconds=age)
    return ChannelOp(
        idempotency_key=key,
        order_id="naverpay:1",
        channel="naverpay",
        action="dispatch",
        unit_id=key,
        payload={"unit_id": key},
        payload_hash="x",
        state=state.value,
        attempts=1,
        source_event_id="5f0c6a8e-0000-4000-8000-000000000001",
        created_at=at,
        updated_at=at,
        result_emitted=emitted,
        last_error={"code": "E1", "message": "refused"} if state is OpState.FAILED else None,
    )


async def test_final_results_left_unsent_are_sent_once(
    kafka_bootstrap: str, engine: AsyncEngine, topic_prefix: str
) -> None:
    sessions = async_sessionmaker(engine, expire_on_commit=False)
    async with sessions() as s:
        s.add_all(
            [
                _op("lost-ok", OpState.SUCCEEDED, emitted=False, age=120),
                _op("lost-failed", OpState.FAILED, emitted=False, age=120),
                _op("reported", OpState.SUCCEEDED, emitted=True, age=120),
                _op("just-now", OpState.SUCCEEDED, emitted=False, age=0),  # result on its way
                _op("pending", OpState.PENDING, emitted=False, age=120),
            ]
        )
        await s.commit()
    producer = AIOKafkaProducer(bootstrap_servers=kafka_bootstrap, acks="all")
    await producer.start()
    try:
        settings = Settings(topic_prefix=topic_prefix)
        runtime = Runtime(settings, _ProducerOnly(ProducerAdapter(producer)), {}, engine)  # type: ignore[arg-type]
        dispatcher = Dispatcher(runtime)
        assert await dispatcher.resend_unreported() == 2
        assert await dispatcher.resend_unreported() == 0  # marked: not again
    finally:
        await producer.stop()
    async with KafkaClient(kafka_bootstrap, topic_prefix) as kafka:
        results = [json.loads(r)["payload"] for r in await kafka.read_all(names.SYNC_RESULTS)]
    by_key = {r["detail"]["idempotency_key"]: r["outcome"] for r in results}
    assert by_key == {"lost-ok": "succeeded", "lost-failed": "failed"}
    assert len(results) == 2
    async with sessions() as s:
        flags = dict((await s.execute(select(ChannelOp.unit_id, ChannelOp.result_emitted))).all())
    assert flags == {
        "lost-ok": True,
        "lost-failed": True,
        "reported": True,
        "just-now": False,
        "pending": False,
    }
