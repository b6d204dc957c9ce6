"""The Goodsflow sandbox's state, without HTTP: centers, contracts, registrations, the clock,
the webhook queue, and the JSON shapes Goodsflow answers with (goodsflow.md §3-§5).

:class:`GoodsflowWorld` is what :class:`connectors.goodsflow.sandbox.GoodsflowSandbox` serves.
Every side effect is recorded in the shared ledger keyed by the caller's ``uniqueId``:
``waybill.registered``, ``waybill.printed``, ``waybill.cancelled``, ``tracking.registered``.
"""

from __future__ import annotations

import itertools
import random
import re
from collections.abc import Callable
from datetime import datetime, timedelta
from typing import Any

from connectors.goodsflow.mapping import KST, format_time
from connectors.goodsflow.models import Center
from connectors.goodsflow.sandbox_checks import (
    SENDER_FIELDS,
    TRANSPORTER_NAMES,
    carrier_for,
    check_print_item,
    check_tracking_item,
)
from connectors.goodsflow.sandbox_parcels import STATUS_LABELS, Parcel, ParcelStateError
from connectors.sandbox import Ledger
from store.invoices import generate_valid_number, inspect_invoice

PRINT_CARRIERS = ("KOREX", "EPOST", "HANJIN", "LOTTE", "LOGEN", "ILYANG")
CANCEL_REASONS = frozenset(
    {
        "NOT_SEND",
        "RE_RECEIVED",
        "SENDER_CANCEL",
        "PICKUP_DELAY",
        "OTHER_SERVICE",
        "PICKUP_OTHER",
        "ETC",
    }
)
Answer = dict[str, Any]


def _item_answer(idx: int, ok: bool, data: Any = None, problem: Any = None) -> Answer:
    error = None if ok else {"message": problem[0], "detail": problem[1]}
    return {"idx": idx, "success": ok, "data": data, "error": error}


def strip_number(raw: str) -> str:
    """Goodsflow keeps letters and digits only."""
    return re.sub(r"[^A-Za-z0-9]", "", raw).upper()


class GoodsflowWorld:
    def __init__(
        self,
        ledger: Ledger,
        sender: Center,
        *,
        step_seconds: float,
        pickup_after_seconds: float,
        auto_print: bool,
        seed: int | None,
        clock: Callable[[], float],
    ) -> None:
        self.ledger = ledger
        self.sender = sender
        self.step_seconds = step_seconds
        self.pickup_after_seconds = pickup_after_seconds
        self.auto_print = auto_print
        self._clock = clock
        self._offset = 0.0
        self._epoch = (clock(), datetime.now(KST))
        self._ids = itertools.count(1)
        self._rng = random.Random(seed)
        self.contracts: dict[tuple[str, str], str] = {}
        self.parcels: dict[str, Parcel] = {}
        self.pending: list[Answer] = []
        self.reset()

    def reset(self) -> None:
        self.parcels.clear()
        self.pending.clear()
        self.contracts = {(self.sender.code, code): "APPROVED" for code in PRINT_CARRIERS}

    # --- clock -------------------------------------------------------------------------------
    def now(self) -> float:
        return self._clock() + self._offset

    def wall(self, at: float) -> datetime:
        return self._epoch[1] + timedelta(seconds=at - self._epoch[0])

    def stamp(self, at: float, *, seconds: bool = True) -> str:
        return format_time(self.wall(at), seconds=seconds)

    def advance_clock(self, seconds: float) -> None:
        self._offset += seconds

    # --- parcels -----------------------------------------------------------------------------
    def emit(self, parcel: Parcel, event: dict[str, Any]) -> None:
        self.pending.append(self.event_json(parcel, event))

    def sync(self, parcel: Parcel) -> Parcel:
        parcel.sync(self.now(), self.pickup_after_seconds, self.step_seconds, self.emit)
        return parcel

    def sync_all(self) -> None:
        for parcel in self.parcels.values():
            self.sync(parcel)

    def find(self, ref: str) -> Parcel:
        """By service id, unique id or waybill number; KeyError when unknown."""
        if ref in self.parcels:
            return self.parcels[ref]
        for parcel in self.parcels.values():
            if ref in (parcel.unique_id, parcel.invoice_no):
                return parcel
        raise KeyError(ref)

    def by_id(self, ref: str, by_unique: bool) -> Parcel | None:
        for parcel in self.parcels.values():
            if (parcel.unique_id if by_unique else parcel.service_id) == ref:
                return self.sync(parcel)
        return None

    def print_waybills(self, ids: list[str] | None = None) -> dict[str, str]:
        printed: dict[str, str] = {}
        targets = [self.find(i) for i in ids] if ids else list(self.parcels.values())
        for parcel in targets:
            if parcel.cancelled or parcel.stage >= 0 or parcel.service_type != "PRINT":
                continue
            parcel.invoice_no = generate_valid_number(parcel.carrier, self._rng)
            parcel.start(self.now(), self.emit, printed=True)
            self.ledger.record(
                "waybill.printed",
                parcel.unique_id,
                invoiceNo=parcel.invoice_no,
                serviceId=parcel.service_id,
            )
            printed[parcel.service_id] = parcel.invoice_no
        return printed

    def _new_service_id(self) -> str:
        return f"{self.wall(self.now()):%y%m%d%H%M%S}{next(self._ids):08d}"

    def _duplicate(self, unique_id: str) -> bool:
        return bool(unique_id) and any(p.unique_id == unique_id for p in self.parcels.values())

    def register_print(self, idx: int, item: Any, grouped: bool) -> Answer:
        """One print item → its ``idx``/``success``/``data``/``error`` answer."""
        if not isinstance(item, dict):
            return _item_answer(idx, False, problem=("validation error", {"item": "object"}))
        problem = check_print_item(item, grouped)
        transporter = str(item.get("transporter") or "")
        found = carrier_for(transporter)
        center = str(item.get("centerCode") or "")
        if problem is None and (found is None or center != self.sender.code):
            problem = ("validation error", {"centerCode": "unknown center or transporter"})
        elif problem is None and self.contracts.get((center, transporter)) != "APPROVED":
            problem = ("no approved contract", {"transporter": f"{transporter}: not APPROVED"})
        unique_id = str(item.get("uniqueId") or "")
        if problem is None and self._duplicate(unique_id):
            problem = ("duplicate uniqueId", {"uniqueId": "already registered"})
        if problem is not None or found is None:
            return _item_answer(idx, False, problem=problem)
        sender = {k: str(item.get(k) or "") for k in SENDER_FIELDS}
        if not any(sender.values()):  # blank sender: the contract's center fills it (R27)
            s = self.sender
            values = (s.name, s.phone, s.zip_code, s.address1, s.address2)
            sender = dict(zip(SENDER_FIELDS, values, strict=True))
        goods = item.get("deliveryItems") if grouped else [item]
        first = goods[0] if isinstance(goods, list) and goods else {}
        service_id = self._new_service_id()
        parcel = Parcel(
            service_id=service_id,
            unique_id=unique_id or service_id,
            service_type="PRINT",
            carrier=found[1],
            transporter=found[0],
            order_no=str(first.get("orderNo") or ""),
            item_name=str(first.get("name") or first.get("itemName") or ""),
            sender=sender,
            receiver={
                k: str(item.get(k) or "")
                for k in ("toName", "toPhoneNo", "toZipcode", "toAddress1", "toAddress2")
            },
            center_code=center,
            created_at=self.now(),
        )
        self.parcels[service_id] = parcel
        self.ledger.record(
            "waybill.registered",
            parcel.unique_id,
            serviceId=service_id,
            transporter=parcel.transporter,
            orderNo=parcel.order_no,
            **sender,
        )
        if self.auto_print:
            self.print_waybills([service_id])
        data = {"uniqueId": parcel.unique_id, "serviceId": service_id}
        if parcel.invoice_no:
            data["invoiceNo"] = parcel.invoice_no
        return _item_answer(idx, True, data)

    def register_tracking(self, idx: int, item: Any) -> Answer:
        """One ``POST /api/deliveries/tracking`` item: track a waybill printed elsewhere."""
        if not isinstance(item, dict):
            return _item_answer(idx, False, problem=("validation error", {"item": "object"}))
        problem = check_tracking_item(item)
        unique_id = str(item.get("uniqueId") or "")
        if problem is None and self._duplicate(unique_id):
            problem = ("duplicate uniqueId", {"uniqueId": "already registered"})
        found = carrier_for(str(item.get("transporter") or ""))
        number = strip_number(str(item.get("invoiceNo") or ""))
        if (
            problem is None
            and found
            and not unique_id
            and any(
                p.invoice_no == number and p.transporter == found[0] for p in self.parcels.values()
            )
        ):
            problem = ("already registered", {"invoiceNo": "already registered"})
        if problem is not None or found is None:
            return _item_answer(idx, False, problem=problem)
        service_id = self._new_service_id()
        parcel = Parcel(
            service_id,
            unique_id or service_id,
            "TRACKING",
            found[1],
            found[0],
            "",
            str(item.get("itemName") or ""),
            {},
            {},
            None,
            self.now(),
            invoice_no=number,
        )
        parcel.start(self.now(), self.emit, printed=False)
        self.parcels[service_id] = parcel
        self.ledger.record("tracking.registered", parcel.unique_id, invoiceNo=number)
        return _item_answer(idx, True, {"uniqueId": parcel.unique_id, "serviceId": service_id})

    def cancel(self, items: list[Any]) -> tuple[list[Answer], dict[str, str]]:
        """Cancel before pickup: (cancelled ``{uniqueId, serviceId}``, refused id → reason)."""
        done: list[Answer] = []
        refused: dict[str, str] = {}
        for item in items:
            sid = str(item.get("id") or "") if isinstance(item, dict) else ""
            parcel = self.parcels.get(sid)
            if parcel is None or not isinstance(item, dict):
                refused[sid] = "unknown serviceId"
                continue
            if item.get("reasonType") not in CANCEL_REASONS:
                refused[sid] = "unknown reasonType"
                continue
            self.sync(parcel)
            was_cancelled = parcel.cancelled
            try:
                parcel.cancel(self.now(), self.emit)
            except ParcelStateError as exc:
                refused[sid] = str(exc)
                continue
            if not was_cancelled:
                self.ledger.record(
                    "waybill.cancelled",
                    parcel.unique_id,
                    serviceId=sid,
                    reasonType=item.get("reasonType"),
                )
            done.append({"uniqueId": parcel.unique_id, "serviceId": sid})
        return done, refused

    def drain(self, limit: int = 1000) -> list[Answer]:
        """The consume-once webhook pull."""
        self.sync_all()
        batch, self.pending = self.pending[:limit], self.pending[limit:]
        return batch

    # --- JSON shapes -------------------------------------------------------------------------
    def center_json(self) -> Answer:
        s = self.sender
        return {
            "code": s.code,
            "name": s.name,
            "zipCode": s.zip_code,
            "address1": s.address1,
            "address2": s.address2,
            "phoneNo1": s.phone,
            "defaultCenter": True,
            "enabled": True,
            "defaultSeller": True,
        }

    def contracts_json(self) -> list[Answer]:
        return [
            {
                "contractId": f"{center}{code}",
                "transporter": code,
                "status": status,
                "center": self.center_json(),
            }
            for (center, code), status in self.contracts.items()
            if center == self.sender.code
        ]

    def event_json(self, parcel: Parcel, event: dict[str, Any]) -> Answer:
        return {
            "seq": event["seq"],
            "serviceId": parcel.service_id,
            "uniqueId": parcel.unique_id,
            "orderNo": parcel.order_no,
            "transporter": parcel.transporter,
            "invoiceNo": parcel.invoice_no,
            "statusDateTime": self.stamp(event["at"]),
            "deliveryStatus": event["status"],
            "location": "Sandbox hub",
            "locationPhoneNo": "",
            "driverName": "",
            "driverPhoneNo": "",
            "errorName": "",
            "exceptionName": "",
        }

    def trace_json(self, p: Parcel) -> Answer:
        details = [e for e in p.events if e["seq"] > 0]
        last = details[-1] if details else None
        pickup = next((e for e in details if e["status"] == "PICKUP"), None)
        done = next((e for e in details if e["status"] == "COMPLETED"), None)
        labels = STATUS_LABELS.get(last["status"], ("", "", "")) if last else ("", "", "")
        return {
            "id": p.service_id,
            "transporter": p.transporter,
            "transporterName": TRANSPORTER_NAMES.get(p.transporter, p.transporter),
            "invoiceNo": p.invoice_no,
            "uniqueId": p.unique_id,
            "pickupDateTime": self.stamp(pickup["at"]) if pickup else None,
            "completeDateTime": self.stamp(done["at"]) if done else None,
            "lastStatus": last["status"] if last else None,
            "lastStatusName": labels[0],
            "lastDlvStatType": labels[1],
            "lastDlvStatName": labels[2],
            "lastStatusDateTime": self.stamp(last["at"]) if last else None,
            "fromName": p.sender.get("fromName", ""),
            "toName": p.receiver.get("toName", ""),
            "itemName": p.item_name,
            "details": [
                {
                    "seq": e["seq"],
                    "statusDateTime": self.stamp(e["at"]),
                    "location": "Sandbox hub",
                    "status": e["status"],
                    "statusName": STATUS_LABELS[e["status"]][0],
                    "dlvStatType": STATUS_LABELS[e["status"]][1],
                    "dlvStatName": STATUS_LABELS[e["status"]][2],
                }
                for e in details
            ],
        }

    def delivery_json(self, p: Parcel) -> Answer:
        return {
            "id": p.service_id,
            "uniqueId": p.unique_id,
            "createdDateTime": self.stamp(p.created_at),
            "transporter": p.transporter,
            "transporterName": TRANSPORTER_NAMES.get(p.transporter, p.transporter),
            "invoiceNo": p.invoice_no,
            "serviceType": p.service_type,
            "itemName": p.item_name,
            "status": p.last_status,
            "statusName": STATUS_LABELS.get(p.last_status or "", ("",))[0],
            "fromName": p.sender.get("fromName", ""),
            "toName": p.receiver.get("toName", ""),
            "inflowType": "API",
            "centerCode": p.center_code,
        }

    def validation_json(self, asked: str, numbers: str) -> Answer | None:
        """``validateInvoiceNo``; ``None`` for an unknown transporter."""
        found = carrier_for(asked)
        if found is None:
            return None
        rows = []
        for raw in numbers.split(",")[:100]:
            number = strip_number(raw)
            rows.append(
                {
                    "requestInvoiceNo": raw,
                    "invoiceNo": number,
                    "valid": inspect_invoice(found[1], number).valid,
                }
            )
        return {
            "requestTransporter": asked,
            "transporter": found[0],
            "transporterName": TRANSPORTER_NAMES.get(found[0], found[0]),
            "invoiceNoList": rows,
        }
