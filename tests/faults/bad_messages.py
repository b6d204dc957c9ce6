"""Generators of bad input for the S3 fault test, each labelled with the dead-letter reason the
worker must give it (``topics.registry.DecodeError`` reasons, plus the apply agent's
``unknown_change`` / ``unknown_order``). Deterministic for a given ``random.Random``."""

from __future__ import annotations

import json
import random
import uuid
from collections.abc import Callable
from datetime import UTC, datetime
from typing import Any

from topics import names

Message = tuple[bytes | None, bytes | None]  # (key, value)
Labelled = tuple[str, Message]  # (expected reason, message)


def _now() -> str:
    return datetime.now(UTC).isoformat()


def envelope(
    type_: str, payload: Any, *, order_id: str = "naverpay:1", **over: Any
) -> dict[str, Any]:
    env = {
        "event_id": str(uuid.uuid4()),
        "type": type_,
        "occurred_at": _now(),
        "order_id": order_id,
        "channel": order_id.split(":", 1)[0] if ":" in order_id else "oms",
        "schema_version": 1,
        "payload": payload,
    }
    env.update(over)
    return env


def _dump(obj: Any) -> bytes:
    return json.dumps(obj, ensure_ascii=False).encode()


# --- one generator per reason; each returns the message value -------------------------------


def not_json(rng: random.Random, topic: str) -> bytes | None:
    choice = rng.randrange(5)
    if choice == 0:
        # no NUL byte here: see nul_bytes() (a separate, known failure)
        return b"#" + bytes(rng.randint(1, 255) for _ in range(rng.randint(1, 200)))
    if choice == 1:
        whole = _dump(envelope("pickup.reached", {"line_ids": ["x"], "scanned_at": _now()}))
        return whole[: rng.randint(1, len(whole) - 1)]  # truncated JSON
    if choice == 2:
        return b'{"event_id": "\xff\xfe", "type": "x"}'  # invalid UTF-8
    if choice == 3:
        return b""
    return "{'single': 'quotes', 주문: 1}".encode()


def bad_envelope(rng: random.Random, topic: str) -> bytes | None:
    good = envelope("pickup.reached", {"line_ids": ["x"], "scanned_at": _now()})
    variants: list[Any] = [
        [],
        42,
        "a string",
        {},
        {k: v for k, v in good.items() if k != "event_id"},
        {**good, "event_id": "not-a-uuid"},
        {**good, "occurred_at": "2026-11-22T09:00:00"},  # naive: refused
        {**good, "channel": "amazon"},
        {**good, "schema_version": 99},
        {**good, "surprise": True},  # unknown field: extra="forbid"
        {**good, "payload": ["not", "an", "object"]},
        {**good, "type": ""},
    ]
    return _dump(rng.choice(variants))


UNKNOWN_TYPES = (
    "order.teleport",
    "pickup.reached.v2",
    "shipment.deleted",
    "change.vanished",
    "scan",
)


def unknown_type(rng: random.Random, topic: str) -> bytes | None:
    return _dump(envelope(rng.choice(UNKNOWN_TYPES), {"anything": rng.random()}))


WRONG_TOPIC_TYPES = {
    names.OMS_COMMANDS: ("tracking.scan", "change.order_paid", "sync.result"),
    names.CHANNEL_CHANGES: ("pickup.reached", "tracking.scan", "sync.result"),
    names.TRACKING_EVENTS: ("pickup.reached", "change.delivered", "sync.result"),
}


def wrong_topic(rng: random.Random, topic: str) -> bytes | None:
    return _dump(envelope(rng.choice(WRONG_TOPIC_TYPES[topic]), {}))


def bad_payload(rng: random.Random, topic: str) -> bytes | None:
    if topic == names.OMS_COMMANDS:
        options = [
            ("pickup.reached", {"line_ids": 5, "scanned_at": _now()}),
            ("pickup.reached", {"line_ids": ["naverpay:1:1"]}),
            (
                "shipment.registered",
                {"line_ids": ["x"], "carrier": "TELEPORT", "tracking_number": "1"},
            ),
            (
                "shipment.registered",
                {"line_ids": ["x"], "carrier": "CJ", "tracking_number": "9" * 41},
            ),
            ("line.status", {"line_ids": [], "to_status": "SHIPPING"}),
            ("seller.cancel", {"line_ids": ["x"], "reason": 7, "extra": "field"}),
        ]
    elif topic == names.CHANNEL_CHANGES:
        options = [
            ("change.order_paid", {"channel": "naverpay", "kind": "order_paid"}),
            (
                "change.delivered",
                {
                    "channel": "naverpay",
                    "change_key": "",
                    "kind": "delivered",
                    "channel_order_id": "1",
                    "changed_at": _now(),
                },
            ),
            (
                "change.dispatched",
                {
                    "channel": "mars",
                    "change_key": "k",
                    "kind": "dispatched",
                    "channel_order_id": "1",
                    "changed_at": _now(),
                },
            ),
        ]
    else:
        options = [
            (
                "tracking.scan",
                {"carrier": "CJ", "tracking_number": "1", "state": "LOST", "scanned_at": _now()},
            ),
            (
                "tracking.scan",
                {
                    "carrier": "CJ",
                    "tracking_number": "",
                    "state": "PICKED_UP",
                    "scanned_at": _now(),
                },
            ),
            (
                "tracking.scan",
                {
                    "carrier": "CJ",
                    "tracking_number": "1",
                    "state": "PICKED_UP",
                    "scanned_at": "yesterday",
                },
            ),
        ]
    type_, payload = rng.choice(options)
    return _dump(envelope(type_, payload))


def _change(kind: str, **over: Any) -> dict[str, Any]:
    co = f"GHOST{uuid.uuid4().hex[:10]}"
    change = {
        "channel": "naverpay",
        "change_key": f"naverpay:{co}:{kind}:{uuid.uuid4().hex[:6]}",
        "kind": kind,
        "channel_order_id": co,
        "unit_ids": [f"{co}-1"],
        "changed_at": _now(),
        "raw_type": kind.upper(),
        **over,
    }
    return envelope(f"change.{kind}", change, order_id=f"naverpay:{co}")


def unknown_change(rng: random.Random, topic: str) -> bytes | None:
    """A marketplace change type nobody mapped (kind ``unknown``)."""
    return _dump(_change("unknown", raw_type=rng.choice(["MERCHANT_PING", "GIFT_WRAPPED"])))


def unknown_order(rng: random.Random, topic: str) -> bytes | None:
    """A change for an order the store never saw, without the order's detail."""
    return _dump(_change(rng.choice(["delivered", "purchase_decided", "cancel_requested"])))


Generator = Callable[[random.Random, str], bytes | None]

#: reason → generator, per topic (the change-only reasons exist only on channel.changes)
COMMON: dict[str, Generator] = {
    "not_json": not_json,
    "bad_envelope": bad_envelope,
    "unknown_type": unknown_type,
    "wrong_topic": wrong_topic,
    "bad_payload": bad_payload,
}
BY_TOPIC: dict[str, dict[str, Generator]] = {
    names.OMS_COMMANDS: COMMON,
    names.CHANNEL_CHANGES: {
        **COMMON,
        "unknown_change": unknown_change,
        "unknown_order": unknown_order,
    },
    names.TRACKING_EVENTS: COMMON,
}


def bad_messages(rng: random.Random, topic: str, n: int) -> list[Labelled]:
    """``n`` bad messages for ``topic``, reasons spread evenly, keys random or absent."""
    reasons = sorted(BY_TOPIC[topic])
    out: list[Labelled] = []
    for i in range(n):
        reason = reasons[i % len(reasons)]
        key = None if rng.random() < 0.2 else f"naverpay:{rng.randrange(10**9)}".encode()
        out.append((reason, (key, BY_TOPIC[topic][reason](rng, topic))))
    return out


def nul_bytes(rng: random.Random) -> bytes:
    """Not JSON, and carrying NUL bytes (a binary payload, a C string with its terminator)."""
    return b"\x00" + bytes(rng.getrandbits(8) for _ in range(rng.randint(8, 64))) + b"\x00"


def oversized(rng: random.Random, korean: bool) -> bytes:
    """A message over the 1 MB limit: a valid-looking envelope with a huge field (ASCII, or
    Korean text — 3 bytes a character in UTF-8, 6 once JSON-escaped)."""
    filler = "가나다라마바사" * 60_000 if korean else "x" * 1_100_000
    return _dump(
        envelope("pickup.reached", {"line_ids": ["x"], "scanned_at": _now(), "note": filler})
    )
