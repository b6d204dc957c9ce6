"""Errors specific to the Qoo10 connector.

They extend the shared trees, so callers can catch at the level they act on::

    connectors.errors.PermanentError
    └── BuyerMessageFailedError        R23: the buyer message failed, the cancel was NOT sent
    store.errors.RuleViolation
    ├── SellerCancelRefusedError       R23 / R24 / R09: this seller cancel is not allowed
    ├── store.errors.OpenClaimError    R25: an open buyer cancel request blocks dispatch
    └── store.errors.SplitNotAllowedError   R04: Qoo10 order lines are never split by quantity

Result codes become :mod:`connectors.errors` classes through :mod:`connectors.qoo10.codes`.
No message here ever holds a credential (the client redacts before raising).
"""

from __future__ import annotations

from connectors.errors import AuthenticationError, ConnectorError, PermanentError
from store.errors import OpenClaimError, RuleViolation, SplitNotAllowedError

__all__ = [
    "BuyerMessageFailedError",
    "KeyRejectedError",
    "OpenClaimError",
    "SellerCancelRefusedError",
    "SplitNotAllowedError",
]


class BuyerMessageFailedError(PermanentError):
    """R23: the message to the buyer could not be sent, so the cancel was not executed.

    ``retryable`` tells whether the message failure itself was transient (a later attempt of
    the whole seller cancel may succeed); ``cause`` is the underlying connector error.
    """

    rule = "R23"

    def __init__(self, order_no: str, cause: ConnectorError) -> None:
        super().__init__(
            f"R23: message to the buyer of Qoo10 order {order_no} failed; cancel not sent "
            f"({type(cause).__name__}: {cause.message})",
            code=cause.code,
            status=cause.status,
        )
        self.order_no = order_no
        self.cause = cause
        self.retryable = not isinstance(cause, PermanentError)


class SellerCancelRefusedError(RuleViolation):
    """A seller cancel refused before any call: buyer-fault reason without an open buyer
    request (R23), a non delivery-delay refund after dispatch (R24), or an unknown reason."""


class KeyRejectedError(AuthenticationError):
    """Internal signal: the answer asks for a seller key renewal. ``final`` is the error to raise
    when the renewed key is refused too. Never escapes :class:`~connectors.qoo10.client.Qoo10Client`."""

    def __init__(self, final: ConnectorError) -> None:
        super().__init__(final.message, code=final.code, status=final.status)
        self.final = final
