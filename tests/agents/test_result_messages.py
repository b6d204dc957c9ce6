"""Result messages are built without validation (for speed); they must still be exactly what
the schema accepts: decoding one with the strict models gives back every field."""

from __future__ import annotations

import uuid
from datetime import UTC, datetime
from typing import Any

import pytest

from agents.runtime import Runtime
from channelsync.settings import Settings
from store.domain import Channel
from topics.envelope import Envelope
from topics.registry import decode
from topics.results import Outcome, SyncResult


def _runtime() -> Runtime:
    return Runtime(Settings(), None, {}, None)  # type: ignore[arg-type]  # only builds messages


@pytest.mark.parametrize(
    ("outcome", "rule", "error", "detail"),
    [
        (Outcome.SUCCEEDED, None, None, {"op_id": 7, "idempotency_key": "k", "attempts": 1}),
        (Outcome.FAILED, "R18", {"code": "E1", "message": "bad invoice", "items": []}, {}),
        (Outcome.PARKED, "R29", None, {"ops": [1, 2]}),
        (Outcome.RETRYING, None, {"items": [{"unit_id": "u", "ok": False}]}, {"n": 1.5}),
    ],
)
def test_result_message_decodes_with_the_strict_schema(
    outcome: Outcome, rule: str | None, error: dict[str, Any] | None, detail: dict[str, Any]
) -> None:
    source = Envelope.model_construct(  # as the dispatcher builds its sources
        event_id=uuid.uuid4(),
        type="op.dispatch",
        occurred_at=datetime.now(UTC),
        order_id="naverpay:2026112200001",
        channel=Channel.NAVERPAY,
        payload={},
    )
    key, raw = _runtime().result_message(
        source, outcome, "msg", rule=rule, error=error, detail=detail
    )
    env, result = decode(raw)
    assert key == env.order_id == source.order_id
    assert env.type == "sync.result" and env.channel is Channel.NAVERPAY
    assert isinstance(result, SyncResult)
    assert result.source_event_id == source.event_id
    assert result.source_type == "op.dispatch"
    assert result.outcome is outcome
    assert (result.rule, result.message, result.error, result.detail) == (
        rule,
        "msg",
        error,
        detail,
    )


def test_each_result_has_its_own_event_id() -> None:
    source = Envelope.model_construct(
        event_id=uuid.uuid4(),
        type="x",
        occurred_at=datetime.now(UTC),
        order_id="o",
        channel=Channel.OMS,
        payload={},
    )
    rt = _runtime()
    ids = {decode(rt.result_message(source, Outcome.SUCCEEDED)[1])[0].event_id for _ in range(3)}
    assert len(ids) == 3
