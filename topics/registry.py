"""Event type → payload model, and the codec used on every topic (JSON bytes).

:func:`decode` is the only way agents read a message: it never trusts the bytes and raises
:class:`DecodeError` (with a short ``reason``) for anything that is not a valid, known event.
"""

from __future__ import annotations

import json
from typing import Any

import pydantic

from topics.base import Model
from topics.changes import ChangeKind, ChannelChange
from topics.commands import COMMAND_MODELS
from topics.envelope import Envelope
from topics.results import RESULT_MODELS
from topics.tracking import TRACKING_MODELS

#: Largest message an agent accepts (bytes); anything larger is dead-lettered.
MAX_MESSAGE_BYTES = 1_000_000

CHANGE_MODELS: dict[str, type[Model]] = {f"change.{k.value}": ChannelChange for k in ChangeKind}

EVENT_MODELS: dict[str, type[Model]] = {
    **COMMAND_MODELS,
    **CHANGE_MODELS,
    **TRACKING_MODELS,
    **RESULT_MODELS,
}


class DecodeError(ValueError):
    """A message that is not a valid event. ``reason`` is one of: too_large, not_json,
    bad_envelope, unknown_type, bad_payload, wrong_topic."""

    def __init__(self, reason: str, detail: str) -> None:
        super().__init__(f"{reason}: {detail}")
        self.reason = reason
        self.detail = detail


def encode(envelope: Envelope) -> bytes:
    return envelope.model_dump_json().encode()


def decode(
    raw: bytes | str | None, allowed: dict[str, type[Model]] | None = None
) -> tuple[Envelope, Model]:
    """Parse and validate one message. ``allowed`` restricts the types (per topic)."""
    if raw is None:
        raise DecodeError("not_json", "empty message")
    if isinstance(raw, str):
        raw = raw.encode()
    if len(raw) > MAX_MESSAGE_BYTES:
        raise DecodeError("too_large", f"{len(raw)} bytes > {MAX_MESSAGE_BYTES}")
    try:
        data: Any = json.loads(raw)
    except (UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise DecodeError("not_json", str(exc)[:300]) from None
    try:
        envelope = Envelope.model_validate(data)
    except pydantic.ValidationError as exc:
        raise DecodeError("bad_envelope", _short(exc)) from None
    models = allowed if allowed is not None else EVENT_MODELS
    model = models.get(envelope.type)
    if model is None:
        reason = "unknown_type" if envelope.type not in EVENT_MODELS else "wrong_topic"
        raise DecodeError(reason, f"type {envelope.type!r}")
    try:
        payload = model.model_validate(envelope.payload)
    except pydantic.ValidationError as exc:
        raise DecodeError("bad_payload", _short(exc)) from None
    return envelope, payload


def _short(exc: pydantic.ValidationError) -> str:
    parts = []
    for err in exc.errors()[:5]:
        loc = ".".join(str(p) for p in err["loc"])
        parts.append(f"{loc}: {err['msg']}")
    return "; ".join(parts)


def json_schemas() -> dict[str, dict[str, Any]]:
    """JSON Schema of the envelope and of every payload model, by name."""
    out: dict[str, dict[str, Any]] = {"Envelope": Envelope.model_json_schema()}
    seen: set[type[Model]] = set()
    for _type_name, model in sorted(EVENT_MODELS.items()):
        if model in seen:
            continue
        seen.add(model)
        schema = model.model_json_schema()
        schema["x-event-types"] = sorted(t for t, m in EVENT_MODELS.items() if m is model)
        out[model.__name__] = schema
    return out
