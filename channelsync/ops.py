"""Operator commands over the store: holds, ops, replay, status (``channelsync holds|ops|replay|status``).

They act on the store directly with the same functions the agents use, so a running worker
sees their effect at its next dispatcher round (≈1 s): a released hold un-parks its ops, a
replayed op is re-driven. Every command is idempotent.
"""

from __future__ import annotations

from collections import Counter
from datetime import UTC, datetime
from typing import Any

from sqlalchemy import func, select
from sqlalchemy.exc import IntegrityError
from sqlalchemy.ext.asyncio import AsyncEngine, AsyncSession, async_sessionmaker

from channelsync.settings import Settings
from store import ledger, repo
from store import outbound as ob
from store.apply_changes import apply_change, record_change
from store.ledger import OpState
from store.models import ChannelChangeRow, ChannelOp, FailedEvent, IngestCursor, OrderLine


def _iso(value: datetime | None) -> str | None:
    return value.isoformat() if value else None


async def list_holds(engine: AsyncEngine) -> list[dict[str, Any]]:
    now = datetime.now(UTC)
    async with async_sessionmaker(engine)() as session:
        holds = await repo.open_holds(session)
        return [
            {
                "order_id": h.order_id,
                "reason": h.reason,
                "raised_by": h.raised_by,
                "raised_at": _iso(h.raised_at),
                "age_seconds": round((now - h.raised_at).total_seconds()),
            }
            for h in holds
        ]


async def release_hold(
    engine: AsyncEngine, order_id: str, by: str, note: str = ""
) -> dict[str, Any]:
    """R12: lift the order's holds and un-park its work."""
    async with async_sessionmaker(engine, expire_on_commit=False)() as session:
        order = await repo.get_order(session, order_id, lock=True)
        released = await repo.release_holds(session, order, by, note)
        resumed = await ob.unpark(session, order_id)
        await session.commit()
    return {"order_id": order_id, "released": released, "resumed_ops": resumed, "by": by}


def op_row(op: ChannelOp) -> dict[str, Any]:
    return {
        "id": op.id,
        "order_id": op.order_id,
        "channel": op.channel,
        "action": op.action,
        "state": op.state,
        "attempts": op.attempts,
        "idempotency_key": op.idempotency_key,
        "last_error": op.last_error,
        "updated_at": _iso(op.updated_at),
    }


async def list_ops(
    engine: AsyncEngine, states: list[str] | None, order_id: str | None, limit: int
) -> list[dict[str, Any]]:
    async with async_sessionmaker(engine)() as session:
        return [op_row(op) for op in await ledger.list_ops(session, states, order_id, limit=limit)]


def _retryable(op: ChannelOp) -> bool:
    err = op.last_error or {}
    return err.get("error") in ("RetryableError", "RateLimitedError") or any(
        item.get("retryable") for item in err.get("items", []) if isinstance(item, dict)
    )


async def replay_outbound(
    engine: AsyncEngine, since: datetime | None, order_id: str | None
) -> dict[str, Any]:
    """Re-drive pending / retrying ops and failed ops whose failure was retryable (retries
    exhausted). Succeeded ops and permanent refusals are never re-sent (S1)."""
    now = datetime.now(UTC)
    counts: Counter[str] = Counter()
    async with async_sessionmaker(engine, expire_on_commit=False)() as session:
        ops = await ledger.list_ops(
            session,
            [OpState.PENDING, OpState.RETRY, OpState.SENT, OpState.FAILED],
            order_id,
            since,
            limit=100_000,
        )
        for op in ops:
            if op.state == OpState.FAILED and not _retryable(op):
                counts["skipped_permanent"] += 1
                continue
            op.state = OpState.RETRY.value
            op.next_attempt_at = now
            counts["requeued"] += 1
        await session.commit()
    return dict(counts)


async def replay_ingest(
    engine: AsyncEngine, connector: Any, since: datetime, until: datetime
) -> dict[str, Any]:
    """Re-read ``[since, until)`` from the marketplace and apply what the store lacks.
    De-duplicated by change key: replaying the same window twice changes nothing.

    Safe to run next to a worker: when the apply agent commits the same change first (a new
    order: both paths insert it), this change's transaction fails with ``IntegrityError``; it
    is retried once in a fresh transaction, where the change's dedupe answers ``duplicate``
    (counted under ``raced``). A second ``IntegrityError`` is a real conflict and is raised."""
    changes = await connector.changes_since(since, until)
    counts: Counter[str] = Counter(seen=len(changes))
    maker = async_sessionmaker(engine, expire_on_commit=False)
    for change in sorted(changes, key=lambda c: c.changed_at):
        try:
            new, outcome = await _replay_one(maker, change)
        except IntegrityError:
            counts["raced"] += 1
            new, outcome = await _replay_one(maker, change)
        counts["new"] += new
        if outcome.startswith("refused:"):
            counts["refused"] += 1
        counts[outcome] += 1
    return dict(counts)


async def _replay_one(maker: async_sessionmaker[AsyncSession], change: Any) -> tuple[bool, str]:
    """Record and apply one change in its own transaction: (newly recorded, outcome)."""
    async with maker() as session:
        new = await record_change(session, change)
        try:
            applied = await apply_change(session, change)
        except (ValueError, LookupError) as exc:
            await session.rollback()
            return new, f"refused:{type(exc).__name__}"
        if applied.outcome == "applied":
            row = (
                await session.execute(
                    select(ChannelChangeRow).where(ChannelChangeRow.dedupe_key == change.change_key)
                )
            ).scalar_one()
            row.outcome = "applied"
        await session.commit()
        return new, applied.outcome


async def status(engine: AsyncEngine, settings: Settings) -> dict[str, Any]:
    now = datetime.now(UTC)
    async with async_sessionmaker(engine)() as session:
        lines = dict(
            (
                await session.execute(
                    select(OrderLine.status, func.count()).group_by(OrderLine.status)
                )
            ).all()
        )
        ops = [
            {"channel": c, "action": a, "state": s, "count": n}
            for c, a, s, n in (
                await session.execute(
                    select(
                        ChannelOp.channel, ChannelOp.action, ChannelOp.state, func.count()
                    ).group_by(ChannelOp.channel, ChannelOp.action, ChannelOp.state)
                )
            ).all()
        ]
        holds = await repo.open_holds(session)
        cursors = [
            {
                "channel": c.channel,
                "account": c.account,
                "cursor": _iso(c.cursor),
                "lag_seconds": round((now - c.cursor).total_seconds()),
            }
            for c in (await session.execute(select(IngestCursor))).scalars()
        ]
        failed = dict(
            (
                await session.execute(
                    select(FailedEvent.reason, func.count()).group_by(FailedEvent.reason)
                )
            ).all()
        )
        unapplied = await session.scalar(
            select(func.count())
            .select_from(ChannelChangeRow)
            .where(ChannelChangeRow.applied_at.is_(None))
        )
    return {
        "at": now.isoformat(),
        "lines_by_status": lines,
        "ops": ops,
        "open_holds": len(holds),
        "oldest_hold_age_seconds": round((now - holds[0].raised_at).total_seconds())
        if holds
        else 0,
        "ingest_cursors": cursors,
        "dead_lettered_by_reason": failed,
        "changes_not_applied": unapplied,
    }
