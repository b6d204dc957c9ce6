"""Event envelope and payload models: strict parsing, named decode failures (S3), docs in sync."""

from __future__ import annotations

import json
import uuid
from datetime import datetime
from pathlib import Path

import pytest

from store.domain import Channel
from topics.commands import DispatchDelay
from topics.docs import render_markdown
from topics.envelope import new_envelope
from topics.registry import MAX_MESSAGE_BYTES, DecodeError, decode, encode

ROOT = Path(__file__).resolve().parents[2]


def _delay() -> DispatchDelay:
    return DispatchDelay(
        line_ids=["L1"], due_date="2026-12-01", reason="PRODUCT_PREPARE", detail="late stock"
    )


def test_round_trip_keeps_type_and_payload() -> None:
    env = new_envelope("dispatch.delay", "O1", Channel.NAVERPAY, _delay())
    decoded, payload = decode(encode(env))
    assert decoded == env
    assert payload == _delay()


@pytest.mark.parametrize(
    ("raw", "reason"),
    [
        (b"\xff\xfe", "not_json"),
        (b"[1,2", "not_json"),
        (b'{"type": "dispatch.delay"}', "bad_envelope"),
        (None, "not_json"),
    ],
)
def test_s3_malformed_messages_have_named_reasons(raw: bytes | None, reason: str) -> None:
    with pytest.raises(DecodeError) as err:
        decode(raw)
    assert err.value.reason == reason


def test_s3_unknown_type_and_extra_fields_refused() -> None:
    env = json.loads(encode(new_envelope("dispatch.delay", "O1", Channel.NAVERPAY, _delay())))
    env["type"] = "no.such.type"
    with pytest.raises(DecodeError) as err:
        decode(json.dumps(env).encode())
    assert err.value.reason == "unknown_type"

    env["type"] = "dispatch.delay"
    env["payload"]["surprise"] = 1
    with pytest.raises(DecodeError) as err:
        decode(json.dumps(env).encode())
    assert err.value.reason == "bad_payload" and "surprise" in err.value.detail

    env["payload"].pop("surprise")
    env["unexpected"] = True
    with pytest.raises(DecodeError) as err:
        decode(json.dumps(env).encode())
    assert err.value.reason == "bad_envelope"


def test_s3_oversized_and_naive_timestamps_refused() -> None:
    with pytest.raises(DecodeError) as err:
        decode(b" " * (MAX_MESSAGE_BYTES + 1))
    assert err.value.reason == "too_large"
    env = json.loads(encode(new_envelope("dispatch.delay", "O1", Channel.NAVERPAY, _delay())))
    env["occurred_at"] = datetime(2026, 1, 1).isoformat()
    with pytest.raises(DecodeError) as err:
        decode(json.dumps(env).encode())
    assert err.value.reason == "bad_envelope"


def test_wrong_topic_type_is_refused_with_allowed_set() -> None:
    from topics.commands import COMMAND_MODELS

    env = new_envelope("sync.result", "O1", Channel.OMS, {"x": 1}, event_id=uuid.uuid4())
    with pytest.raises(DecodeError) as err:
        decode(encode(env), COMMAND_MODELS)
    assert err.value.reason == "wrong_topic"


def test_events_doc_is_generated_from_the_models() -> None:
    """docs/events.md must match `channelsync schema` output (regenerate it when this fails)."""
    assert (ROOT / "docs" / "events.md").read_text() == render_markdown()
