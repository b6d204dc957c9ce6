"""Errors raised by the store's rules.

The tree::

    StoreError
    ├── RuleViolation(rule, message)       a domain rule (rules.md id) refuses the operation
    │   ├── TransitionError                R01/R02: not a legal status move
    │   ├── SplitNotAllowedError           R03/R04: quantity split refused
    │   ├── InvoiceNotAllowedError         R05/R09: invoice attach/cancel refused
    │   ├── InvalidInvoiceError            R18: tracking number fails the carrier's rule
    │   ├── HoldActiveError                R12: the order is on delivery hold
    │   ├── OpenClaimError                 R25/R29: an open buyer cancel request blocks dispatch
    │   └── PartialRefundError             R11: virtual-account refunds are whole
    └── NotFoundError                      no such order / line

Every ``RuleViolation`` carries ``rule`` (e.g. ``"R09"``) so results and the ledger can name it.
"""

from __future__ import annotations


class StoreError(Exception):
    """Base of all store errors."""


class NotFoundError(StoreError):
    """The order, line or record does not exist."""


class RuleViolation(StoreError):
    """A domain rule refuses the operation. ``rule`` is the id from rules.md."""

    def __init__(self, rule: str, message: str) -> None:
        super().__init__(f"[{rule}] {message}")
        self.rule = rule
        self.message = message


class TransitionError(RuleViolation):
    pass


class SplitNotAllowedError(RuleViolation):
    pass


class InvoiceNotAllowedError(RuleViolation):
    pass


class InvalidInvoiceError(RuleViolation):
    def __init__(self, carrier: str, check: str, message: str) -> None:
        super().__init__("R18", f"{carrier}: {message} ({check})")
        self.carrier = carrier
        self.check = check


class HoldActiveError(RuleViolation):
    def __init__(self, order_id: str, reason: str = "delivery hold") -> None:
        super().__init__("R12", f"order {order_id} is on {reason}; release it first")
        self.order_id = order_id


class OpenClaimError(RuleViolation):
    pass


class PartialRefundError(RuleViolation):
    pass
