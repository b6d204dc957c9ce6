"""The order state machine: the channel-independent rules R01–R11 of ``rules.md``.

Everything here is pure and synchronous over the frozen views of :mod:`store.rules_views`. A
``check_*`` function returns ``None`` (or a value it computed) when the operation is allowed and
raises a :class:`~store.errors.RuleViolation` subclass carrying the rule id otherwise; it never
writes anything, so calling it twice is harmless. The allowed status moves are data
(:data:`TRANSITIONS`, shown by :func:`render_transition_table`); :func:`check_transition` looks a
move up there and then applies the move's guard.

The claim rules (R09–R11, R12's dispatch gate) live in :mod:`store.rules_claims`, the line
operations (R03–R05) in :mod:`store.rules_lines`, the moves the daemons make by themselves (R06–R08)
in :mod:`store.rules_automatic`; this module re-exports them, so callers import from here only.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable
from dataclasses import dataclass
from enum import StrEnum

from store.domain import FINAL_STATUSES, FORWARD_PATH, LineStatus, ProductKind
from store.errors import InvoiceNotAllowedError, RuleViolation, TransitionError
from store.rules_automatic import (
    AUTO_CONFIRM_AFTER,
    pickup_moves_to_shipping,
    purchase_confirmation_due,
    unpaid_order_expired,
)
from store.rules_claims import (
    check_cancel,
    check_dispatch_allowed,
    check_exchange_approve,
    check_exchange_collect,
    check_exchange_collected,
    check_exchange_request,
    check_refund,
    check_return,
)
from store.rules_lines import check_add_items, check_attach_invoice, check_split
from store.rules_views import (
    CONFIRMED_AT_PAYMENT,
    SHIPPABLE_KINDS,
    ExchangePlan,
    LineView,
    OrderView,
)

__all__ = [
    "AUTO_CONFIRM_AFTER",
    "TRANSITIONS",
    "ExchangePlan",
    "Guard",
    "LineView",
    "Move",
    "OrderView",
    "allowed_targets",
    "check_add_items",
    "check_attach_invoice",
    "check_cancel",
    "check_dispatch_allowed",
    "check_exchange_approve",
    "check_exchange_collect",
    "check_exchange_collected",
    "check_exchange_request",
    "check_refund",
    "check_return",
    "check_split",
    "check_transition",
    "initial_status",
    "pickup_moves_to_shipping",
    "purchase_confirmation_due",
    "render_transition_table",
    "transition_table",
    "unpaid_order_expired",
]

S = LineStatus


class Guard(StrEnum):
    """The condition a move needs besides its source, target and product kind."""

    NONE = "always"
    INVOICE_IF_PARCEL = "a parcel line has an invoice attached (R05)"
    NOT_TOLD = "the marketplace has not been told of the current status (R01)"
    NOT_TOLD_NO_INVOICE = (
        "the marketplace has not been told of the current status, no invoice attached (R01, R05)"
    )
    CANCELLABLE = "check_cancel passes (R09)"
    RETURNABLE = "check_return passes (R09)"
    EXCHANGEABLE = "check_exchange_request passes (R10)"
    COLLECTED = "the exchanged item has been collected (R10)"


@dataclass(frozen=True)
class Move:
    """One allowed status move for lines of the given product kinds."""

    source: LineStatus
    target: LineStatus
    kinds: frozenset[ProductKind]
    rule: str
    guard: Guard
    note: str


_ALL = frozenset(ProductKind)
_SHIP = SHIPPABLE_KINDS
_NO_DELIVERY = frozenset({ProductKind.NO_DELIVERY})


def _moves(
    sources: Iterable[LineStatus],
    targets: Iterable[LineStatus],
    kinds: frozenset[ProductKind],
    rule: str,
    guard: Guard,
    note: str,
) -> list[Move]:
    targets = tuple(targets)
    return [Move(s, t, kinds, rule, guard, note) for s in sources for t in targets]


_PRE_SHIP = (S.PREPARING, S.READY_TO_SHIP)
_SHIPPED = (S.SHIPPING, S.DELIVERED)
_CANCELS = (S.CANCEL_REQUESTED, S.CANCELED)

#: Every allowed status move. Anything absent is refused by :func:`check_transition`.
TRANSITIONS: tuple[Move, ...] = tuple(
    [
        # payment decides where a line starts (R02)
        Move(S.PAYMENT_WAITING, S.PREPARING, _SHIP, "R02", Guard.NONE, "payment received"),
        Move(S.PAYMENT_WAITING, S.PURCHASE_CONFIRMED, CONFIRMED_AT_PAYMENT, "R02", Guard.NONE,
             "digital goods and memberships are confirmed at payment"),
        Move(S.PREPARING, S.PURCHASE_CONFIRMED, CONFIRMED_AT_PAYMENT, "R02", Guard.NONE,
             "a digital line found preparing is confirmed"),
        # the forward path, one step at a time (R01)
        Move(S.PREPARING, S.READY_TO_SHIP, _SHIP, "R01", Guard.NONE, "forward"),
        Move(S.READY_TO_SHIP, S.SHIPPING, _SHIP, "R01", Guard.INVOICE_IF_PARCEL,
             "forward; by itself on the pickup scan (R06)"),
        Move(S.SHIPPING, S.DELIVERED, _SHIP, "R01", Guard.NONE, "forward"),
        Move(S.DELIVERED, S.PURCHASE_CONFIRMED, _SHIP, "R07", Guard.NONE,
             "buyer or operator confirms; automatic after 7 days"),
        Move(S.PREPARING, S.DELIVERED, _NO_DELIVERY, "R02", Guard.NONE,
             "no-delivery shortcut, no invoice"),
        # one step back while the marketplace has not been told (R01)
        Move(S.READY_TO_SHIP, S.PREPARING, _SHIP, "R01", Guard.NOT_TOLD_NO_INVOICE, "back"),
        Move(S.SHIPPING, S.READY_TO_SHIP, _SHIP, "R01", Guard.NOT_TOLD, "back"),
        Move(S.DELIVERED, S.SHIPPING, _SHIP, "R01", Guard.NOT_TOLD, "back"),
        Move(S.DELIVERED, S.PREPARING, _NO_DELIVERY, "R02", Guard.NOT_TOLD,
             "undo the no-delivery shortcut"),
        # cancels (R08 unpaid, R09 before any invoice)
        *_moves([S.PAYMENT_WAITING], _CANCELS, _ALL, "R08", Guard.CANCELLABLE,
                "unpaid order cancelled (automatically at its deadline)"),
        *_moves(_PRE_SHIP, _CANCELS, _ALL, "R09", Guard.CANCELLABLE, "cancel before shipping"),
        Move(S.CANCEL_REQUESTED, S.CANCELED, _ALL, "R09", Guard.NONE, "cancel approved"),
        *_moves([S.CANCEL_REQUESTED], [S.PAYMENT_WAITING, *_PRE_SHIP], _ALL, "R09", Guard.NONE,
                "cancel request withdrawn or refused: back to where it was"),
        # returns (R09: from SHIPPING on only a return is possible; R14 hold)
        *_moves(_SHIPPED, [S.RETURN_REQUESTED, S.RETURNED], _SHIP, "R09", Guard.RETURNABLE,
                "return requested, or reported complete by the marketplace"),
        Move(S.RETURN_REQUESTED, S.RETURN_HELD, _SHIP, "R14", Guard.NONE, "return put on hold"),
        Move(S.RETURN_HELD, S.RETURN_REQUESTED, _SHIP, "R14", Guard.NONE, "return hold released"),
        *_moves([S.RETURN_REQUESTED, S.RETURN_HELD], [S.RETURNED], _SHIP, "R09", Guard.NONE,
                "return completed"),
        *_moves([S.RETURN_REQUESTED, S.RETURN_HELD], _SHIPPED, _SHIP, "R09", Guard.NONE,
                "return withdrawn or refused: back to where it was"),
        # exchanges (R10: collected, then approved)
        *_moves(_SHIPPED, [S.EXCHANGE_REQUESTED], _SHIP, "R10", Guard.EXCHANGEABLE,
                "exchange requested"),
        Move(S.EXCHANGE_REQUESTED, S.EXCHANGED, _SHIP, "R10", Guard.COLLECTED,
             "exchange approved; a re-shipment line is added (check_exchange_approve)"),
        *_moves([S.EXCHANGE_REQUESTED], _SHIPPED, _SHIP, "R10", Guard.NONE,
                "exchange withdrawn or refused: back to where it was"),
    ]
)  # fmt: skip

_INDEX: dict[tuple[LineStatus, LineStatus], Move] = {(m.source, m.target): m for m in TRANSITIONS}


def transition_table() -> tuple[Move, ...]:
    """Every allowed move (the same tuple as :data:`TRANSITIONS`), for docs and tooling."""
    return TRANSITIONS


def allowed_targets(line: LineView) -> tuple[LineStatus, ...]:
    """The statuses the table allows from ``line.status`` for its kind (guards not evaluated)."""
    return tuple(m.target for m in TRANSITIONS if m.source is line.status and line.kind in m.kinds)


def render_transition_table() -> str:
    """The table as Markdown (from | to | kinds | rule | condition | note) for the README."""
    rows = [
        "| from | to | kinds | rule | condition | note |",
        "| --- | --- | --- | --- | --- | --- |",
    ]
    for m in TRANSITIONS:
        kinds = "all" if m.kinds == _ALL else ", ".join(sorted(k.value for k in m.kinds))
        guard = "" if m.guard is Guard.NONE else m.guard.value
        rows.append(f"| {m.source} | {m.target} | {kinds} | {m.rule} | {guard} | {m.note} |")
    return "\n".join(rows)


def initial_status(kind: ProductKind, paid: bool) -> LineStatus:
    """R02: the status a new line starts in.

    Unpaid → ``PAYMENT_WAITING``; paid digital goods and membership passes →
    ``PURCHASE_CONFIRMED``; any other paid line → ``PREPARING``. Never raises.
    """
    if not paid:
        return S.PAYMENT_WAITING
    if kind in CONFIRMED_AT_PAYMENT:
        return S.PURCHASE_CONFIRMED
    return S.PREPARING


def check_transition(order: OrderView, line: LineView, to: LineStatus) -> None:
    """Check that ``line`` may move to ``to`` (R01, R02, R05, R08–R10).

    Allowed: the moves of :data:`TRANSITIONS` whose guard holds. Moving to the current status is
    accepted as a no-op, so re-applying a change is harmless.

    Raises :class:`~store.errors.TransitionError` with rule ``R01`` for a skipped step, a move out
    of a final status or a move back after the marketplace was told of the current status,
    ``R02`` for a shipping status on a digital/membership line, ``R05`` for ``SHIPPING`` without an
    invoice on a parcel line, ``R08`` for resuming an unpaid order cancelled at its deadline,
    ``R10`` for approving an exchange not collected yet; moving back to ``PREPARING`` with an
    invoice attached raises :class:`~store.errors.InvoiceNotAllowedError` (``R05``); a move into a
    cancel, return or exchange raises what :func:`check_cancel`, :func:`check_return` or
    :func:`check_exchange_request` raise.
    """
    here = line.status
    if to is here:
        return
    move = _INDEX.get((here, to))
    if move is None or line.kind not in move.kinds:
        raise _refusal(order, line, to)
    _apply_guard(move.guard, order, line, to)


def _refusal(order: OrderView, line: LineView, to: LineStatus) -> RuleViolation:
    """The error for a move absent from the table: the claim check's own error for a move into a
    cancel, return or exchange (so the message says what is possible instead), else R08/R01/R02."""
    here = line.status
    claim_check = _CLAIM_CHECKS.get(to)
    if claim_check is not None and here not in FINAL_STATUSES:
        try:
            claim_check(order, line)
        except RuleViolation as err:
            return err
    where = f"line {line.line_id} ({line.kind}) is {here}"
    if here is S.CANCELED and not order.paid:
        return TransitionError(
            "R08", f"{where}: an unpaid order cancelled cannot be resumed; a new order is needed"
        )
    if here in FINAL_STATUSES:
        return TransitionError("R01", f"{where}, a final status: it cannot move to {to}")
    if line.kind in CONFIRMED_AT_PAYMENT:
        return TransitionError(
            "R02", f"{where}: digital goods and memberships are not shipped, cannot move to {to}"
        )
    allowed = ", ".join(allowed_targets(line)) or "nothing"
    if here in FORWARD_PATH and to in FORWARD_PATH:
        step = FORWARD_PATH.index(to) - FORWARD_PATH.index(here)
        kind = "skips a step" if step > 1 else "goes back more than one step"
        return TransitionError(
            "R01", f"{where}: the move to {to} {kind} (allowed from here: {allowed})"
        )
    return TransitionError("R01", f"{where}: no move to {to} (allowed from here: {allowed})")


_CLAIM_CHECKS: dict[LineStatus, Callable[[OrderView, LineView], None]] = {
    S.CANCEL_REQUESTED: check_cancel,
    S.CANCELED: check_cancel,
    S.RETURN_REQUESTED: check_return,
    S.RETURNED: check_return,
    S.EXCHANGE_REQUESTED: check_exchange_request,
}


def _told_of_current(line: LineView) -> bool:
    """Whether the marketplace was told of the current status or of a later one on the path."""
    if line.status not in FORWARD_PATH:
        return line.status in line.channel_notified
    later = FORWARD_PATH[FORWARD_PATH.index(line.status) :]
    return any(s in line.channel_notified for s in later)


def _apply_guard(guard: Guard, order: OrderView, line: LineView, to: LineStatus) -> None:
    if guard is Guard.NONE:
        return
    if guard is Guard.INVOICE_IF_PARCEL:
        if line.kind is ProductKind.PARCEL and not line.has_invoice:
            raise TransitionError(
                "R05", f"line {line.line_id} has no invoice: attach one before {to}"
            )
        return
    if guard in (Guard.NOT_TOLD, Guard.NOT_TOLD_NO_INVOICE):
        if _told_of_current(line):
            raise TransitionError(
                "R01",
                f"line {line.line_id}: {order.channel} has been told the line is "
                f"{line.status}; it cannot move back to {to}",
            )
        if guard is Guard.NOT_TOLD_NO_INVOICE and line.has_invoice:
            raise InvoiceNotAllowedError(
                "R05",
                f"line {line.line_id} has an invoice: delete it before moving back to {to}",
            )
        return
    if guard is Guard.CANCELLABLE:
        check_cancel(order, line)
    elif guard is Guard.RETURNABLE:
        check_return(order, line)
    elif guard is Guard.EXCHANGEABLE:
        check_exchange_request(order, line)
    elif guard is Guard.COLLECTED:
        check_exchange_collected(order, line)
