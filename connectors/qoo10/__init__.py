"""Qoo10 Japan QAPI connector (channel ``qoo10``): client, mapping, rules and sandbox.

Start with :class:`Qoo10Client`; every code table (and every unconfirmed choice) lives in
:mod:`connectors.qoo10.codes`.
"""

from connectors.qoo10.cancels import SellerCancelResult
from connectors.qoo10.client import Qoo10Client
from connectors.qoo10.errors import BuyerMessageFailedError, SellerCancelRefusedError

__all__ = [
    "BuyerMessageFailedError",
    "Qoo10Client",
    "SellerCancelRefusedError",
    "SellerCancelResult",
]
