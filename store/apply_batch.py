"""Marketplace changes in bulk: record a poll's changes, apply a batch of them, in a few
statements per batch instead of a few per change (the catch-up after an outage is tens of
thousands of changes). Same rules and outcomes as :mod:`store.apply_changes` one by one, which
is also the fallback (``agents.apply``): a batch either commits whole or is re-run change by
change.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any, cast

from sqlalchemy import Table, select, update
from sqlalchemy.dialects.postgresql import insert as pg_insert
from sqlalchemy.dialects.sqlite import insert as sqlite_insert
from sqlalchemy.ext.asyncio import AsyncSession

from store import repo
from store.apply_changes import (
    HANDLERS,
    ChangeApplied,
    UnknownChangeError,
    UnknownOrderError,
    build_order,
    change_row,
    order_values,
)
from store.models import ChannelChangeRow, Order, OrderLine, StatusHistory, utcnow
from topics.changes import ChangeKind, ChannelChange


def _chunks(items: Sequence[Any], size: int = 1000) -> list[Sequence[Any]]:
    return [items[i : i + size] for i in range(0, len(items), size)]


async def record_changes(session: AsyncSession, changes: Sequence[ChannelChange]) -> list[bool]:
    """:func:`record_change` for many changes in a few statements: one look-up of the keys
    already logged and one bulk insert (``ON CONFLICT (dedupe_key) DO NOTHING``, so a concurrent
    writer of the same key cannot fail the transaction). Returns, per change, whether it was
    new (a key repeated in ``changes`` is new only at its first occurrence)."""
    first: dict[str, ChannelChange] = {}
    for change in changes:
        first.setdefault(change.change_key, change)
    keys = list(first)
    existing: set[str] = set()
    for chunk in _chunks(keys):
        stmt = select(ChannelChangeRow.dedupe_key).where(ChannelChangeRow.dedupe_key.in_(chunk))
        existing.update((await session.execute(stmt)).scalars())
    now = utcnow()
    rows = [
        {
            "dedupe_key": key,
            "channel": change.channel.value,
            "account": change.account,
            "kind": change.kind.value,
            "channel_order_id": change.channel_order_id,
            "changed_at": change.changed_at,
            "stored_at": now,
            "payload": change.model_dump(mode="json"),
        }
        for key, change in first.items()
        if key not in existing
    ]
    if rows:
        dialect = session.bind.dialect.name if session.bind is not None else "sqlite"
        table = cast(Table, ChannelChangeRow.__table__)
        insert_ = pg_insert(table) if dialect == "postgresql" else sqlite_insert(table)
        stmt_ins = insert_.on_conflict_do_nothing(index_elements=["dedupe_key"])
        for chunk in _chunks(rows):
            await session.execute(stmt_ins, list(chunk))
    seen: set[str] = set()
    out: list[bool] = []
    for change in changes:
        key = change.change_key
        out.append(key not in existing and key not in seen)
        seen.add(key)
    return out


async def apply_changes_batch(
    session: AsyncSession, changes: Sequence[ChannelChange]
) -> list[ChangeApplied]:
    """:func:`apply_change` for a batch of changes in the caller's one transaction, in order.

    Statements for the whole batch: one look-up of the changes' log rows (dedupe by change
    key), one load (on PostgreSQL: lock) of the orders they name, then the rule functions of
    :func:`apply_change` change by change (orders created by the batch are found by later
    changes of the batch), one flush and one bulk update of the log rows. The answers, messages
    and store effects are those of :func:`apply_change` called change by change (a key repeated
    in the batch answers ``duplicate`` the second time). Raises :class:`UnknownChangeError` /
    :class:`UnknownOrderError` like :func:`apply_change`; the caller then rolls back and applies
    the changes one by one."""
    keys = list(dict.fromkeys(c.change_key for c in changes))
    logged: dict[str, tuple[int, Any, str | None]] = {}
    for chunk in _chunks(keys):
        stmt = select(
            ChannelChangeRow.dedupe_key,
            ChannelChangeRow.id,
            ChannelChangeRow.applied_at,
            ChannelChangeRow.order_id,
        ).where(ChannelChangeRow.dedupe_key.in_(chunk))
        for key, row_id, applied_at, order_id in (await session.execute(stmt)).all():
            logged[key] = (row_id, applied_at, order_id)
    order_keys = {
        (c.channel.value, c.account, c.channel_order_id)
        for c in changes
        if c.change_key not in logged or logged[c.change_key][1] is None
    }
    orders = await repo.lock_channel_orders(session, order_keys)
    # new orders whose every change in the batch is ORDER_PAID: bulk rows, no ORM objects
    kinds: dict[tuple[str, str, str], set[ChangeKind]] = {}
    fresh: set[str] = set()
    for change in changes:
        key = change.change_key
        if key in fresh or (key in logged and logged[key][1] is not None):
            continue
        fresh.add(key)
        okey = (change.channel.value, change.account, change.channel_order_id)
        kinds.setdefault(okey, set()).add(change.kind)
    plain = {k for k, ks in kinds.items() if k not in orders and ks == {ChangeKind.ORDER_PAID}}
    new_rows = _NewOrderRows()
    done: dict[str, str] = {}  # change key applied by this batch -> order id
    updates: list[dict[str, Any]] = []
    out: list[ChangeApplied] = []
    now = utcnow()
    for change in changes:
        key = change.change_key
        row = logged.get(key)
        if key in done or (row is not None and row[1] is not None):
            order_id = done[key] if key in done else row[2]  # type: ignore[index]
            out.append(ChangeApplied("duplicate", f"change {key} already applied", order_id))
            continue
        if change.kind is ChangeKind.UNKNOWN:
            raise UnknownChangeError(f"unmapped marketplace change {change.raw_type!r}")
        handler = HANDLERS.get(change.kind)
        if handler is None:
            raise UnknownChangeError(f"no handler for change kind {change.kind}")
        okey = (change.channel.value, change.account, change.channel_order_id)
        if okey in plain:
            if okey in new_rows.ids:
                order_id, n_lines = new_rows.ids[okey]
            elif change.order is None:
                raise UnknownOrderError(
                    f"{change.channel}:{change.channel_order_id} is not in the store"
                )
            else:
                order_id, n_lines = new_rows.add(okey, change)
            message = f"order {order_id} with {n_lines} line(s)"  # as _paid
        else:
            order = orders.get(okey)
            if order is None:
                if change.order is None:
                    raise UnknownOrderError(
                        f"{change.channel}:{change.channel_order_id} is not in the store"
                    )
                order = orders[okey] = build_order(session, change)
            message = await handler(session, order, change, f"change:{key}")
            order_id = order.id
        done[key] = order_id
        if row is None:
            session.add(change_row(change, applied_at=now, order_id=order_id, outcome="applied"))
        else:
            updates.append(
                {"id": row[0], "applied_at": now, "order_id": order_id, "outcome": "applied"}
            )
        out.append(ChangeApplied("applied", message, order_id))
    await session.flush()
    await new_rows.insert(session)
    for chunk in _chunks(updates):
        await session.execute(update(ChannelChangeRow), list(chunk))
    return out


class _NewOrderRows:
    """Rows of new orders that a batch only creates (no other change of theirs in the batch),
    inserted in bulk after the batch's ORM flush instead of one ORM object graph each."""

    def __init__(self) -> None:
        self.orders: list[dict[str, Any]] = []
        self.lines: list[dict[str, Any]] = []
        self.history: list[dict[str, Any]] = []
        self.ids: dict[tuple[str, str, str], tuple[str, int]] = {}  # key -> (order id, lines)

    def add(self, key: tuple[str, str, str], change: ChannelChange) -> tuple[str, int]:
        order, lines = order_values(change)
        now = utcnow()
        self.orders.append(order)
        for line in lines:
            line["status_changed_at"] = now
            self.lines.append(line)
            self.history.append(
                {
                    "order_id": line["order_id"],
                    "line_id": line["id"],
                    "from_status": None,
                    "to_status": line["status"],
                    "at": now,
                    "source": f"change:{change.change_key}",
                    "note": "order paid",
                }
            )
        self.ids[key] = (order["id"], len(lines))
        return self.ids[key]

    async def insert(self, session: AsyncSession) -> None:
        for model, rows in (
            (Order, self.orders),
            (OrderLine, self.lines),
            (StatusHistory, self.history),
        ):
            table = cast(Table, model.__table__)
            for chunk in _chunks(rows):
                await session.execute(table.insert(), list(chunk))
