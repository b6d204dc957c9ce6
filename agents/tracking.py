"""Tracking: Goodsflow scans → ``tracking.events`` → R06 (pickup → SHIPPING + dispatch push).

:class:`TrackingPoller` (leader-only timer) registers invoices Goodsflow does not know yet
(manual invoices, R28 ones excluded), reads each open invoice's tracking, and publishes a
``tracking.scan`` when its state moved forward. It also reports stale invoices (no scan after
``STALE_INVOICE_AFTER_SECONDS``) as ``sync.results`` with outcome ``failed`` and code
``STALE_INVOICE`` — once per invoice.

:class:`TrackingHandler` (agent) applies a scan: the invoice's tracking state only moves
forward (store.tracking.merge_state); the lines move per store.tracking.decide; a channel order's
pickup becomes a dispatch op (the line turns SHIPPING when the marketplace acknowledged it), the
shop's own orders move at once. A replayed scan does nothing more (no second dispatch: the
dispatch op key is per unit and invoice).
"""

from __future__ import annotations

import logging
from datetime import UTC, datetime, timedelta
from typing import Any

from sqlalchemy import select

from agents.runtime import MessageMeta
from channelsync import metrics
from connectors.errors import ConnectorError
from connectors.goodsflow.models import TrackingRegistration
from store import outbound as ob
from store import repo
from store.apply_changes import channel_of_order
from store.carriers import Carrier
from store.domain import InvoiceKind, LineStatus, TrackingState
from store.models import Invoice
from store.tracking import decide, merge_state, stale_invoices
from topics import names
from topics.envelope import new_envelope
from topics.registry import decode
from topics.results import Outcome
from topics.tracking import TRACKING_MODELS, TrackingScan

log = logging.getLogger(__name__)


class TrackingHandler:
    def __init__(self, runtime: Any, on_ops: Any = None) -> None:
        self.rt = runtime
        self.on_ops = on_ops

    async def __call__(self, raw: bytes | None, meta: MessageMeta) -> None:
        env, scan = decode(raw, TRACKING_MODELS)
        assert isinstance(scan, TrackingScan)
        moved, planned, message = 0, 0, ""
        async with self.rt.sessions() as session:
            invoices = await ob.invoice_for(session, scan.carrier.value, scan.tracking_number)
            if not invoices:
                message = f"no open invoice {scan.carrier}:{scan.tracking_number}"
            for inv in invoices:
                inv.tracking_state = merge_state(
                    TrackingState(inv.tracking_state), scan.state
                ).value
                inv.last_scan_at = max(filter(None, [inv.last_scan_at, scan.scanned_at]))
                order = await repo.get_order(session, inv.order_id, lock=True)
                line = next(ln for ln in order.lines if ln.id == inv.line_id)
                decision = decide(LineStatus(line.status), inv.valid, scan.state)
                if not decision.changes:
                    continue
                if decision.dispatch and ob.is_channel_order(order):
                    ops = await ob.plan_dispatch(
                        session,
                        order,
                        [line],
                        str(env.event_id),
                        scan.scanned_at,
                        reason="pickup scan",
                    )
                    planned += len(ops)
                    continue
                for status in decision.new_statuses:
                    if (
                        ob.is_channel_order(order)
                        and LineStatus(line.status) is not LineStatus.SHIPPING
                    ):
                        break  # a channel line reaches SHIPPING only once the dispatch is acknowledged
                    repo.set_status(
                        session,
                        line,
                        status,
                        f"event:{env.event_id}",
                        f"R06 {scan.state}",
                        at=scan.scanned_at,
                    )
                    moved += 1
            await session.commit()
        if planned and self.on_ops is not None:
            self.on_ops()
        metrics.EVENTS_CONSUMED.labels(names.TRACKING_EVENTS, env.type, "succeeded").inc()
        text = message or f"{moved} move(s), {planned} dispatch op(s)"
        await self.rt.emit_result(
            env,
            Outcome.SUCCEEDED,
            text,
            rule="R06",
            detail={"moved": moved, "dispatch_ops": planned},
        )


class TrackingPoller:
    def __init__(self, runtime: Any, batch: int = 200) -> None:
        self.rt = runtime
        self.batch = batch
        self.reported_stale: set[int] = set()

    async def poll_once(self) -> dict[str, int]:
        gf = self.rt.goodsflow
        stats = {"registered": 0, "polled": 0, "scans": 0, "stale": 0}
        async with self.rt.sessions() as session:
            stmt = (
                select(Invoice)
                .where(
                    Invoice.deleted_at.is_(None),
                    Invoice.valid.is_(True),
                    Invoice.kind == InvoiceKind.PARCEL.value,
                    Invoice.carrier != Carrier.ETC.value,
                    Invoice.tracking_state != TrackingState.DELIVERED.value,
                )
                .order_by(Invoice.id)
                .limit(self.batch)
            )
            invoices = list((await session.execute(stmt)).scalars())
            unregistered = [inv for inv in invoices if not inv.waybill_id]
            if unregistered:
                try:
                    results = await gf.register_tracking(
                        [
                            TrackingRegistration(
                                unique_id=f"inv-{inv.id}",
                                carrier=Carrier(inv.carrier),
                                invoice_no=inv.tracking_number,
                            )
                            for inv in unregistered
                        ]
                    )
                except ConnectorError as exc:
                    log.warning("goodsflow tracking registration failed: %s", exc)
                    results = []
                by_uid = {r.unique_id: r for r in results}
                for inv in unregistered:
                    r = by_uid.get(f"inv-{inv.id}")
                    if r is not None and r.ok and r.service_id:
                        inv.waybill_id = r.service_id
                        stats["registered"] += 1
                await session.commit()
            scans: list[TrackingScan] = []
            for inv in invoices:
                if not inv.waybill_id:
                    continue
                try:
                    info = await gf.get_tracking(inv.waybill_id)
                except ConnectorError as exc:
                    log.warning("goodsflow tracking of %s failed: %s", inv.waybill_id, exc)
                    continue
                stats["polled"] += 1
                if info.state is None:
                    continue
                current = TrackingState(inv.tracking_state)
                if merge_state(current, info.state) != current:
                    at = info.last_status_at or info.picked_up_at or datetime.now(UTC)
                    scans.append(
                        TrackingScan(
                            carrier=Carrier(inv.carrier),
                            tracking_number=inv.tracking_number,
                            state=info.state,
                            scanned_at=at,
                            raw_code=info.raw_status or "",
                        )
                    )
            orders = {inv.tracking_number: inv.order_id for inv in invoices}
            stale = stale_invoices(
                [inv for inv in invoices if inv.id not in self.reported_stale],
                datetime.now(UTC),
                timedelta(seconds=self.rt.settings.stale_invoice_after_seconds),
            )
        for scan in scans:
            env = new_envelope(
                "tracking.scan",
                orders[scan.tracking_number],
                channel_of_order(orders[scan.tracking_number]),
                scan,
            )
            await self.rt.emit(names.TRACKING_EVENTS, env)
            stats["scans"] += 1
        for inv in stale:
            self.reported_stale.add(inv.id)
            stats["stale"] += 1
            source = new_envelope("invoice.stale", inv.order_id, channel_of_order(inv.order_id), {})
            await self.rt.emit_result(
                source,
                Outcome.FAILED,
                f"invoice {inv.carrier}:{inv.tracking_number} has no carrier scan since {inv.issued_at.isoformat()}",
                error={"code": "STALE_INVOICE", "line_id": inv.line_id},
            )
        metrics.STALE_INVOICES.set(len(self.reported_stale))
        return stats
