"""The ledger as a work queue: which ops are due, and taking them (used by the dispatcher).

* :func:`ready_ops` — due ops, oldest first, one open op per order at a time (S2);
* :func:`claim` — takes ops for sending with conditional UPDATEs, atomic per row, so any number
  of dispatchers (workers' inline ones, ``channelsync dispatcher`` processes) share one store
  and each op is sent by exactly one of them; held (R12) and claim-parked (R29/R25) ops are
  parked in the same transaction;
* :func:`load_orders` / :func:`preload` — fill a session's identity map in one query each.
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Sequence
from datetime import timedelta
from typing import Any

from sqlalchemy import and_, or_, select, update

from store import outbound as ob
from store.domain import Channel
from store.ledger import OpState
from store.models import ChannelOp, Order, utcnow
from store.sql import in_list

#: a SENT op older than this is taken for a crash's leftover and reconciled (never one that is
#: in flight in this process: see ``Dispatcher.inflight``)
SENT_STALE_SECONDS = 30.0


async def load_orders(session: Any, order_ids: set[str]) -> list[Any]:
    """The orders (with their lines) into the session's identity map in one query."""
    if not order_ids:
        return []
    return list(
        (
            await session.execute(select(Order).where(Order.id.in_(in_list(sorted(order_ids)))))
        ).scalars()
    )


async def preload(session: Any, ops: Sequence[ChannelOp]) -> list[Any]:
    """Load the ops and their orders (with lines) in two queries, so the per-op
    ``session.get`` / ``repo.get_order`` calls that follow hit the identity map."""
    ids = [op.id for op in ops]
    if not ids:
        return []
    loaded: list[Any] = list(
        (await session.execute(select(ChannelOp).where(ChannelOp.id.in_(in_list(ids))))).scalars()
    )
    orders = select(Order).where(Order.id.in_(in_list(sorted({op.order_id for op in ops}))))
    loaded.extend((await session.execute(orders)).scalars())
    return loaded  # the caller keeps it: the identity map holds objects only weakly


async def claim(
    session: Any,
    ops: Sequence[ChannelOp],
    verdicts: dict[int, tuple[str, str]],
    *,
    any_held: bool = True,
) -> tuple[list[tuple[ChannelOp, str]], list[ChannelOp], dict[int, int]]:
    """In the caller's transaction, with conditional UPDATEs (atomic per row, so two workers'
    dispatchers never both take an op): ops of held orders → PARKED (R12); ops the claim gate
    parked → PARKED (R29/R25); the rest → SENT with attempts + 1. Only ops still due are
    touched: PENDING, RETRY, or SENT left stale by a crash. Returns (parked with their rule,
    "already dispatched" ops still due — the caller records them done —, op id → attempts of
    the ops now SENT)."""
    now = utcnow()
    due = or_(
        ChannelOp.state.in_([OpState.PENDING.value, OpState.RETRY.value]),
        and_(
            ChannelOp.state == OpState.SENT.value,
            ChannelOp.updated_at < now - timedelta(seconds=SENT_STALE_SECONDS),
        ),
    )
    held = and_(
        ChannelOp.action.in_([ob.DISPATCH, ob.REQUEST_WAYBILL]),
        ChannelOp.order_id.in_(select(Order.id).where(Order.on_hold.is_(True))),
    )
    by_id = {op.id: op for op in ops}
    parked: list[tuple[ChannelOp, str]] = []

    async def park(ids: list[int], why: dict[str, Any], extra: Any = None) -> list[int]:
        if not ids:
            return []
        stmt = update(ChannelOp).where(ChannelOp.id.in_(in_list(ids)), due)
        if extra is not None:
            stmt = stmt.where(extra)
        stmt = stmt.values(state=OpState.PARKED.value, last_error=why, updated_at=now)
        return list((await session.execute(stmt.returning(ChannelOp.id))).scalars())

    # ``any_held=False`` (no order of these ops was held when they were selected) skips the
    # parking statement; an order held since is still never sent (the claim below excludes
    # held orders) and is parked the next round
    if any_held:
        for op_id in await park(
            list(by_id), {"rule": "R12", "message": "order on delivery hold"}, held
        ):
            parked.append((by_id.pop(op_id), "R12"))
    by_status: dict[str, list[int]] = defaultdict(list)
    for op_id, (verdict, status) in verdicts.items():
        if verdict == "park" and op_id in by_id:
            by_status[status].append(op_id)
    for status, ids in by_status.items():
        rule = "R25" if by_id[ids[0]].channel == Channel.QOO10 else "R29"
        why = {"rule": rule, "message": f"open buyer cancel request ({status})"}
        for op_id in await park(ids, why):
            parked.append((by_id[op_id], rule))
        for op_id in ids:
            by_id.pop(op_id, None)
    already = [op for i, op in list(by_id.items()) if verdicts.get(i, ("", ""))[0] == "already"]
    if already:
        still = set(
            (
                await session.execute(
                    select(ChannelOp.id).where(
                        ChannelOp.id.in_(in_list(o.id for o in already)), due
                    )
                )
            ).scalars()
        )
        for op in already:
            by_id.pop(op.id)
        already = [op for op in already if op.id in still]
    claimed: dict[int, int] = {}
    if by_id:
        stmt = (
            update(ChannelOp)
            .where(ChannelOp.id.in_(in_list(by_id)), due, ~held)
            .values(state=OpState.SENT.value, attempts=ChannelOp.attempts + 1, updated_at=now)
            .returning(ChannelOp.id, ChannelOp.attempts)
        )
        claimed = {i: a for i, a in (await session.execute(stmt)).all()}
    return parked, already, claimed


async def ready_ops(
    session: Any,
    limit: int,
    skip: set[int] | frozenset[int] = frozenset(),
    held: set[str] | None = None,
) -> list[ChannelOp]:
    """Due ops, oldest first, at most one open op per order unless they are dispatches of
    different units (S2: an order's later op waits for its earlier one). Ops in ``skip`` (in
    flight in this process) are not due, and block their order's later ops. ``held`` (if
    given) receives the ids of the returned ops' orders that are on delivery hold now."""
    now = utcnow()
    stmt = (
        select(ChannelOp, Order.on_hold)
        .outerjoin(Order, Order.id == ChannelOp.order_id)
        .where(
            ChannelOp.state.in_([OpState.PENDING.value, OpState.RETRY.value, OpState.SENT.value])
        )
        .order_by(ChannelOp.id)
        .limit(limit * 4)
    )
    out: list[ChannelOp] = []
    blocked: set[str] = set()
    for op, on_hold in (await session.execute(stmt)).tuples():
        due = (
            op.state == OpState.PENDING
            or (
                op.state == OpState.RETRY
                and (op.next_attempt_at is None or op.next_attempt_at <= now)
            )
            or (
                op.state == OpState.SENT
                and (now - op.updated_at).total_seconds() > SENT_STALE_SECONDS
            )
        )
        if op.order_id in blocked:
            continue
        if not due or op.id in skip:
            blocked.add(op.order_id)
            continue
        if op.action != ob.DISPATCH:
            blocked.add(op.order_id)
        if on_hold and held is not None:
            held.add(op.order_id)
        out.append(op)
        if len(out) >= limit:
            break
    return out
