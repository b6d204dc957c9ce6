"""Store effects of ledger ops once the marketplace has answered (used by the dispatcher).

Pure store work in the caller's transaction: no I/O beyond the session, never a commit.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncSession

from store import outbound as ob
from store import repo
from store.domain import ClaimStatus, LineStatus
from store.models import ChannelOp, Claim, Invoice, utcnow


async def apply_success(session: AsyncSession, op: ChannelOp) -> None:
    """The store effects of an op the marketplace acknowledged, in the caller's transaction:
    a waybill becomes the line's invoice (an R12 reprint replaces the old one); a dispatch moves
    the lines to SHIPPING (R06; through READY_TO_SHIP for an R15 collapse) and records the
    collapse; a cancel, return or claim decision moves the lines and their claims. ``op`` may
    be detached: only its fields are read. The order must be loadable (or loaded) in ``session``."""
    order = await repo.get_order(session, op.order_id)
    lines = [ln for ln in order.lines if ln.id in set(op.payload.get("line_ids", []))]
    source = f"op:{op.idempotency_key}"
    if op.action == ob.REQUEST_WAYBILL:
        item = ((op.response or {}).get("items") or [{}])[0]
        for line in lines:
            for inv in await repo.active_invoices(session, [line.id]):
                if inv.reprint_required:
                    inv.deleted_at = utcnow()  # replaced by the reprint (R12)
            session.add(
                Invoice(
                    order_id=order.id,
                    line_id=line.id,
                    carrier=op.payload["carrier"],
                    tracking_number=item.get("invoice_no") or "",
                    valid=bool(item.get("invoice_no")),
                    waybill_id=item.get("service_id"),
                )
            )
    elif op.action == ob.DISPATCH:
        collapse = op.payload.get("collapse")
        for line in lines:
            if LineStatus(line.status) in (LineStatus.PREPARING, LineStatus.READY_TO_SHIP):
                if LineStatus(line.status) is LineStatus.PREPARING:
                    repo.set_status(session, line, LineStatus.READY_TO_SHIP, source, "R15 collapse")
                repo.set_status(session, line, LineStatus.SHIPPING, source, "dispatched")
            repo.mark_notified(line, LineStatus.SHIPPING)
            line.invoice_rejection = None
            if collapse:
                line.collapse = collapse
    elif op.action in (ob.CANCEL, ob.APPROVE_CANCEL):
        for line in lines:
            repo.set_status(session, line, LineStatus.CANCELED, source, op.action)
        await _set_claims(session, lines, ClaimStatus.COMPLETED)
    elif op.action == ob.REJECT_CANCEL:
        await _set_claims(session, lines, ClaimStatus.REJECTED)
    elif op.action == ob.RETURN_HOLD:
        for line in lines:
            repo.set_status(session, line, LineStatus.RETURN_HELD, source, "R14 return hold")
    elif op.action == ob.RETURN_HOLD_RELEASE:
        for line in lines:
            repo.set_status(
                session, line, LineStatus.RETURN_REQUESTED, source, "R14 hold released, fee reset"
            )
        await _reset_fee(session, lines)
    elif op.action == ob.RETURN_APPROVE:
        for line in lines:
            repo.set_status(session, line, LineStatus.RETURNED, source, "return approved")
        await _set_claims(session, lines, ClaimStatus.COMPLETED)


async def apply_refusal(session: AsyncSession, op: ChannelOp, reason: str) -> None:
    """R18: a marketplace refusal of a dispatch is recorded on its lines (``reason``, e.g.
    ``"CODE: message"``), which stay where they are."""
    if op.action != ob.DISPATCH:
        return
    order = await repo.get_order(session, op.order_id)
    for line in order.lines:
        if line.id in set(op.payload.get("line_ids", [])):
            line.invoice_rejection = reason


async def _set_claims(session: AsyncSession, lines: Sequence[Any], status: ClaimStatus) -> None:
    ids = [ln.id for ln in lines]
    if not ids:
        return
    for claim in (await session.execute(select(Claim).where(Claim.line_id.in_(ids)))).scalars():
        if claim.status not in (ClaimStatus.COMPLETED, ClaimStatus.WITHDRAWN):
            claim.status = status.value


async def _reset_fee(session: AsyncSession, lines: Sequence[Any]) -> None:
    ids = [ln.id for ln in lines]
    for claim in (await session.execute(select(Claim).where(Claim.line_id.in_(ids)))).scalars():
        claim.fee = None
        claim.fee_payment = None
        if claim.status == ClaimStatus.HELD:
            claim.status = ClaimStatus.REQUESTED.value
