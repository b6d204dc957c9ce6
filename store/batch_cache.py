"""A per-transaction read cache for batches of commands on a known set of orders.

The command agent plans a whole batch of commands in one transaction. Without this cache every
command asks the database the same small questions (the order's active invoices, open claims,
ledger ops) one statement at a time, which is what bounded throughput. :func:`prefetch` loads
the answers for every order of the batch in three statements; the repository functions
(:func:`store.repo.active_invoices`, :func:`store.repo.open_claim_states`,
:func:`store.ledger.record_intent`, :func:`store.outbound.plan_dispatch`) consult it for lines and
orders it covers and fall back to the database for anything else.

Promises:

* It holds the session's own ORM objects, so changes made in the transaction (an invoice
  deleted, a claim's status set, an op's state moved) are seen, because filters are applied when
  asked, not when loaded.
* Rows added in the transaction must be registered (:func:`register_invoice`,
  :func:`register_op`) — the only places that add invoices or ops in the command path do so.
  Claims are never added by commands; a covered order's claims are complete.
* A key the cache does not hold is taken as absent for covered orders (keys embed the order's
  own units or the source event id). Should another order hold it, the unique constraint refuses
  the insert at flush and the batch is re-run one by one without the cache.
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field

from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncSession

from store.models import ChannelOp, Claim, Invoice, Order

_KEY = "batch_cache"


@dataclass
class BatchCache:
    """Invoices, claims and ledger ops of the orders ``order_ids`` (see module docstring)."""

    order_ids: set[str]
    line_ids: set[str]
    invoices: dict[str, list[Invoice]] = field(default_factory=lambda: defaultdict(list))
    claims: dict[str, list[Claim]] = field(default_factory=lambda: defaultdict(list))
    ops_by_order: dict[str, list[ChannelOp]] = field(default_factory=lambda: defaultdict(list))
    ops_by_key: dict[str, ChannelOp] = field(default_factory=dict)

    def covers_lines(self, line_ids: Iterable[str]) -> bool:
        return all(lid in self.line_ids for lid in line_ids)

    def active_invoices(self, line_ids: Iterable[str]) -> list[Invoice]:
        return [
            inv for lid in line_ids for inv in self.invoices.get(lid, ()) if inv.deleted_at is None
        ]

    def add_invoice(self, inv: Invoice) -> None:
        self.invoices[inv.line_id].append(inv)

    def add_op(self, op: ChannelOp) -> None:
        self.ops_by_order[op.order_id].append(op)
        self.ops_by_key[op.idempotency_key] = op


async def prefetch(session: AsyncSession, orders: Sequence[Order]) -> BatchCache:
    """Load the invoices, claims and ops of ``orders`` (lines already loaded) and install the
    cache on the session until :func:`drop` (or the session's end)."""
    order_ids = {o.id for o in orders}
    line_ids = {ln.id for o in orders for ln in o.lines}
    cache = BatchCache(order_ids=order_ids, line_ids=line_ids)
    if order_ids:
        ids = sorted(order_ids)
        for inv in (
            await session.execute(select(Invoice).where(Invoice.order_id.in_(ids)))
        ).scalars():
            cache.add_invoice(inv)
        for claim in (
            await session.execute(
                select(Claim).where(Claim.line_id.in_(sorted(line_ids))).order_by(Claim.id)
            )
        ).scalars():
            cache.claims[claim.line_id].append(claim)
        for op in (
            await session.execute(
                select(ChannelOp).where(ChannelOp.order_id.in_(ids)).order_by(ChannelOp.id)
            )
        ).scalars():
            cache.add_op(op)
    session.info[_KEY] = cache
    return cache


def get(session: AsyncSession) -> BatchCache | None:
    cache = session.info.get(_KEY)
    return cache if isinstance(cache, BatchCache) else None


def drop(session: AsyncSession) -> None:
    session.info.pop(_KEY, None)


def register_invoice(session: AsyncSession, inv: Invoice) -> None:
    cache = get(session)
    if cache is not None and inv.order_id in cache.order_ids:
        cache.add_invoice(inv)


def register_op(session: AsyncSession, op: ChannelOp) -> None:
    cache = get(session)
    if cache is not None and op.order_id in cache.order_ids:
        cache.add_op(op)
