"""The outbound op ledger (``channel_ops``): one row per intended external call (S1).

Life of an op::

    PENDING ──send──► SENT ──ok──► SUCCEEDED
       │               ├──retryable──► RETRY (next_attempt_at) ──► SENT …
       │               └──permanent / item refused──► FAILED
       ├── PARKED (hold R12 / open claim R29) ──release──► PENDING
       └── CANCELLED (superseded before sending: a dispatch whose waybill must be reprinted)

The intent row is committed *before* the call and the outcome *after* it. The idempotency key is
derived from the source event (``<event_id>:<action>[:<part>]``), so a redelivered or replayed
event finds its op and never calls twice. An op found in SENT (a crash between call and outcome)
is reconciled against the marketplace's state before anything is re-sent.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Sequence
from datetime import datetime, timedelta
from enum import StrEnum
from typing import Any

from sqlalchemy import or_, select
from sqlalchemy.ext.asyncio import AsyncSession

from store import batch_cache
from store.models import ChannelOp, utcnow


class OpState(StrEnum):
    PENDING = "pending"
    SENT = "sent"
    RETRY = "retry"
    SUCCEEDED = "succeeded"
    FAILED = "failed"
    PARKED = "parked"
    CANCELLED = "cancelled"  # superseded before it was sent (e.g. waybill to be reprinted, R12)


OPEN_STATES = frozenset({OpState.PENDING, OpState.SENT, OpState.RETRY, OpState.PARKED})


def idempotency_key(event_id: str, action: str, part: str = "") -> str:
    return f"{event_id}:{action}" + (f":{part}" if part else "")


def payload_hash(payload: dict[str, Any]) -> str:
    return hashlib.sha256(json.dumps(payload, sort_keys=True, default=str).encode()).hexdigest()


async def get_op(session: AsyncSession, key: str) -> ChannelOp | None:
    stmt = select(ChannelOp).where(ChannelOp.idempotency_key == key)
    return (await session.execute(stmt)).scalar_one_or_none()


async def record_intent(
    session: AsyncSession,
    *,
    key: str,
    order_id: str,
    channel: str,
    action: str,
    payload: dict[str, Any],
    source_event_id: str,
    state: OpState = OpState.PENDING,
    unit_id: str | None = None,
) -> tuple[ChannelOp, bool]:
    """The op for ``key``: (existing, False) or (new row added to the session, True).

    Inside a batch (:mod:`store.batch_cache`) the lookup is answered from the cache and the new
    row is flushed with the rest of the batch; otherwise it is flushed at once (ids assigned)."""
    cache = batch_cache.get(session)
    cached = cache is not None and order_id in cache.order_ids
    if cached:
        assert cache is not None
        existing = cache.ops_by_key.get(key)
    else:
        existing = await get_op(session, key)
    if existing is not None:
        return existing, False
    op = ChannelOp(
        idempotency_key=key,
        order_id=order_id,
        channel=channel,
        action=action,
        unit_id=unit_id,
        payload=payload,
        payload_hash=payload_hash(payload),
        state=state.value,
        attempts=0,
        source_event_id=source_event_id,
    )
    session.add(op)
    if cached:
        batch_cache.register_op(session, op)
    else:
        await session.flush()
    return op, True


def mark_sent(op: ChannelOp) -> None:
    op.state = OpState.SENT.value
    op.attempts += 1
    op.updated_at = utcnow()


def mark_done(op: ChannelOp, response: dict[str, Any] | None = None) -> None:
    op.state = OpState.SUCCEEDED.value
    op.response = response
    op.last_error = None
    op.next_attempt_at = None


def mark_failed(
    op: ChannelOp, error: dict[str, Any], response: dict[str, Any] | None = None
) -> None:
    op.state = OpState.FAILED.value
    op.last_error = error
    op.response = response
    op.next_attempt_at = None


def mark_retry(op: ChannelOp, error: dict[str, Any], delay: float) -> None:
    op.state = OpState.RETRY.value
    op.last_error = error
    op.next_attempt_at = utcnow() + timedelta(seconds=delay)


def mark_cancelled(op: ChannelOp, why: dict[str, Any]) -> None:
    op.state = OpState.CANCELLED.value
    op.last_error = why
    op.next_attempt_at = None


def mark_parked(op: ChannelOp, why: dict[str, Any]) -> None:
    op.state = OpState.PARKED.value
    op.last_error = why


async def due_ops(session: AsyncSession, now: datetime, limit: int = 100) -> list[ChannelOp]:
    """Ops to (re-)drive now: RETRY past their time, and PENDING/SENT left behind (crash)."""
    stmt = (
        select(ChannelOp)
        .where(
            or_(
                (ChannelOp.state == OpState.RETRY.value) & (ChannelOp.next_attempt_at <= now),
                (ChannelOp.state.in_([OpState.PENDING.value, OpState.SENT.value]))
                & (ChannelOp.updated_at <= now - timedelta(seconds=30)),
            )
        )
        .order_by(ChannelOp.id)
        .limit(limit)
    )
    return list((await session.execute(stmt)).scalars())


async def parked_ops(session: AsyncSession, order_id: str) -> list[ChannelOp]:
    stmt = (
        select(ChannelOp)
        .where(ChannelOp.order_id == order_id, ChannelOp.state == OpState.PARKED.value)
        .order_by(ChannelOp.id)
    )
    return list((await session.execute(stmt)).scalars())


async def list_ops(
    session: AsyncSession,
    states: Sequence[str] | None = None,
    order_id: str | None = None,
    since: datetime | None = None,
    limit: int = 1000,
) -> list[ChannelOp]:
    stmt = select(ChannelOp).order_by(ChannelOp.id).limit(limit)
    if states:
        stmt = stmt.where(ChannelOp.state.in_(list(states)))
    if order_id:
        stmt = stmt.where(ChannelOp.order_id == order_id)
    if since:
        stmt = stmt.where(ChannelOp.created_at >= since)
    return list((await session.execute(stmt)).scalars())
