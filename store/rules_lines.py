"""Line operations: quantity splits (R03), external-checkout limits (R04), invoices (R05).

Pure checks over :mod:`store.rules_views`; import them from :mod:`store.state_machine`.
"""

from __future__ import annotations

from collections.abc import Sequence

from store.domain import LineStatus, ProductKind
from store.errors import InvoiceNotAllowedError, SplitNotAllowedError
from store.rules_views import CONFIRMED_AT_PAYMENT, LineView, OrderView


def check_split(order: OrderView, line: LineView, quantities: Sequence[int]) -> tuple[int, ...]:
    """R03/R04: check a quantity split of ``line`` and return the parts as a tuple.

    Allowed only on an order not checked out on a marketplace (R04), for a line in ``PREPARING``
    (R03), into at least two whole parts of at least 1 each that sum to the line's quantity.
    Raises :class:`~store.errors.SplitNotAllowedError` with rule ``R04`` (naming the channel) or
    ``R03``.
    """
    if order.external_checkout:
        raise SplitNotAllowedError(
            "R04",
            f"{order.channel} order {order.order_id}: lines cannot be split by quantity "
            "(no partial shipping, cancel, return or exchange)",
        )
    if line.status is not LineStatus.PREPARING:
        raise SplitNotAllowedError(
            "R03", f"line {line.line_id} is {line.status}: only a PREPARING line can be split"
        )
    parts = tuple(quantities)
    if any(isinstance(q, bool) or not isinstance(q, int) for q in parts):
        raise SplitNotAllowedError("R03", f"split quantities must be whole numbers: {parts}")
    if len(parts) < 2:
        raise SplitNotAllowedError("R03", f"a split needs at least two parts, got {parts}")
    if any(q < 1 for q in parts):
        raise SplitNotAllowedError("R03", f"every part of a split needs at least 1: {parts}")
    if sum(parts) != line.quantity:
        raise SplitNotAllowedError(
            "R03",
            f"split parts {parts} sum to {sum(parts)}, not to line {line.line_id}'s "
            f"quantity {line.quantity}",
        )
    return parts


def check_add_items(order: OrderView) -> None:
    """R04: may quantities or items be added to ``order``? Not on a marketplace checkout.

    Raises :class:`~store.errors.SplitNotAllowedError` (``R04``) naming the channel."""
    if order.external_checkout:
        raise SplitNotAllowedError(
            "R04",
            f"{order.channel} order {order.order_id}: no quantity or item can be added",
        )


def check_attach_invoice(order: OrderView, line: LineView) -> None:
    """R05: may an invoice (carrier + tracking number) be attached to ``line``?

    Only in ``READY_TO_SHIP``, and only to a line that is shipped at all (no-delivery lines,
    digital goods and memberships take none). Several invoices per line are not refused here.
    Raises :class:`~store.errors.InvoiceNotAllowedError` (``R05``).
    """
    if line.kind is ProductKind.NO_DELIVERY or line.kind in CONFIRMED_AT_PAYMENT:
        raise InvoiceNotAllowedError(
            "R05", f"line {line.line_id} is {line.kind}: it is not shipped and takes no invoice"
        )
    if line.status is not LineStatus.READY_TO_SHIP:
        raise InvoiceNotAllowedError(
            "R05",
            f"line {line.line_id} is {line.status}: an invoice can be attached only in "
            "READY_TO_SHIP",
        )
