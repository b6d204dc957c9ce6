"""Every Qoo10 code table, in one place: method names, result codes, status codes, and the
operations the public QAPI does not confirm.

This is the file to change when the real QAPI turns out to differ from ``specs/qoo10.md``. Each
entry says how sure we are (confirmed = two or more public sources agree; otherwise the comment
says where the value comes from). The client and the sandbox both read these tables, so changing
a value here changes both sides at once.

Tables:

* :data:`RESULT_CODES` — ``ResultCode`` / ``ErrorCode`` → error class (and whether the seller key
  is renewed first), looked up by :func:`classify` from the most to the least specific scope:
  ``"Class.Method"`` → ``"Class"`` → ``"*"``; unknown codes fall back to :data:`UNKNOWN_CODE`.
* :data:`SHIPPING_STATUS` and :data:`CLAIM_STATUS` — the two status axes of an order.
* :data:`CANCEL_REASON_CODES`, :data:`DELAY_TYPES` — ``Claim.SetCancelProcess`` /
  ``SetSellerCheckYN_V2`` input codes.
* :data:`OPERATIONS` — how the operations the spec did NOT find in QAPI are carried out
  (buyer message, approve/reject a buyer cancel request, refund after dispatch).
"""

from __future__ import annotations

from dataclasses import dataclass
from enum import StrEnum

from connectors.contract import UnsupportedOperationError
from connectors.errors import (
    AuthenticationError,
    ConflictError,
    ConnectorError,
    PermanentError,
    RetryableError,
    ValidationError,
)

# --- methods (qoo10.md §5; all confirmed unless marked) -------------------------------------------

QAPI_PATH = "/GMKT.INC.Front.QAPIService/ebayjapan.qapi"
"""Per-method POST form: ``{host}{QAPI_PATH}/{Class}.{Method}`` (confirmed, §1)."""

CREATE_CERTIFICATION_KEY = "CertificationAPI.CreateCertificationKey"
GET_SHIPPING_INFO = "ShippingBasic.GetShippingInfo_v3"
GET_CLAIM_INFO = "ShippingBasic.GetClaimInfo_V3"
GET_ORDER_DETAIL = "ShippingBasic.GetShippingAndClaimInfoByOrderNo_V2"
SET_SELLER_CHECK = "ShippingBasic.SetSellerCheckYN_V2"
SET_SENDING_INFO = "ShippingBasic.SetSendingInfo"
SET_SENDING_INFO_BULK = "ShippingBasic.SetSendingInfoBulk"
"""Dispatch of up to :data:`MAX_BULK_ROWS` orders in one call (§5.6, DOC + SDK): form field
:data:`SENDING_INFO_JSON_FIELD` holds a JSON array of ``{"OrderNo","ShippingCorp","TrackingNo"}``;
``ResultObject`` is one row per order (see :data:`BULK_ROW_ORDER_FIELDS`)."""
SET_CANCEL_PROCESS = "Claim.SetCancelProcess"
SEND_BUYER_MESSAGE = "CSCenter.SendMessageToBuyer"
"""UNCONFIRMED (§8, §10): no QAPI method to start a message to a buyer was found; QSM does it on a
screen (the "send a note to the customer" popup). This name is the sandbox's. Against the real
QAPI it answers "Can't find method", which the client reports as
:class:`~connectors.qoo10.errors.BuyerMessageFailedError`, so a seller cancel is blocked (R23's
safe side) until the real method is known and written here."""

# --- bulk methods (§3, §5.5, §5.6, §7) ------------------------------------------------------------

MAX_BULK_ROWS = 500
"""Rows per bulk call (confirmed, §7 "Bulk set methods: ≤500 orders per call"; -10011 beyond)."""
SENDING_INFO_JSON_FIELD = "ShippingInfoJson"
"""SetSendingInfoBulk's one form field, a JSON array string (confirmed, §3, §5.6)."""
BULK_ROW_ORDER_FIELDS = ("contr_no", "cont_no", "ContrNo", "OrderNo")
"""UNCONFIRMED spelling: the order number of a bulk answer row. §5.6 names it ``contr_no`` for
SetSendingInfoBulk, §5.5 ``cont_no`` for SetSellerCheckYNBulk (DOC only); every spelling seen is
read. A requested order without a row is an unknown outcome, never a success."""
BULK_ROW_CODE_FIELDS = ("result_cd", "ResultCode")
"""The per-row result code (``result_cd``, §5.6; same code space as ``ResultCode``, §4 — L)."""
BULK_ROW_MESSAGE_FIELDS = ("result_msg", "ResultMsg", "transc_nm")
"""UNCONFIRMED: the per-row text. §5.6 lists ``transc_nm`` without its meaning (a message, or
the carrier name echoed back); it is only ever used as the item's message, never decided on. The
sandbox answers its refusal text there."""

QAPI_VERSIONS: dict[str, str] = {}
"""``QAPIVersion`` header per method; absent = ``"1.0"`` (every method used here is 1.0)."""


def qapi_version(method: str) -> str:
    return QAPI_VERSIONS.get(method, "1.0")


# --- result codes (§4) ---------------------------------------------------------------------------

OK = 0
CHECK_SELLER_KEY = -10000
SELLER_OR_ORDER_INVALID = -10001
ORDER_NOT_FOUND_OR_DATE_ERROR = -10002
PERIOD_TOO_LONG_OR_SELLER_INVALID = -10003
ORDER_STATUS_INVALID = -10004
BULK_TOO_LARGE = -10011
ALREADY_CONFIRMED = -10012
NOT_SHIPPING_REQUEST = -10013
EST_SHIP_DATE_MISSING = -10016
EST_SHIP_DATE_TOO_LATE = -10017
EST_SHIP_DATE_NOT_FUTURE = -10018
API_NOT_FOUND = -90001
NOT_AUTHORIZED = -90002
NOT_AUTHORIZED_2 = -90003
KEY_EXPIRED = -90004
KEY_EXPIRED_2 = -90005
SYSTEM_BUSY = -99999
"""UNCONFIRMED: no retryable ResultCode is documented. The sandbox answers -99999 for an injected
transient failure; the client retries it. Add the real one here when it is known."""


@dataclass(frozen=True)
class CodeRule:
    """What one result code means to the client.

    ``error`` is the class raised; ``renew_key`` = renew the seller authorization key once and
    repeat the call before raising; ``rule`` names the rules.md id the refusal enforces;
    ``already_done`` = the code says the requested state already holds (an idempotent success).
    """

    error: type[ConnectorError]
    meaning: str
    confirmed: bool = True
    renew_key: bool = False
    rule: str | None = None
    already_done: bool = False


RESULT_CODES: dict[tuple[str, int], CodeRule] = {
    # -- authentication / framework (every method's table in DOC; confirmed) --
    ("*", CHECK_SELLER_KEY): CodeRule(
        AuthenticationError, "check the seller authorization key", renew_key=True
    ),
    ("*", API_NOT_FOUND): CodeRule(
        UnsupportedOperationError,
        # Also answered (as ErrorCode) for an existing method called with a bad key (X5), so the
        # key is renewed once; a -90001 with a fresh key means the method really does not exist.
        "the API does not exist",
        renew_key=True,
    ),
    ("*", NOT_AUTHORIZED): CodeRule(AuthenticationError, "not authorized for this API"),
    ("*", NOT_AUTHORIZED_2): CodeRule(AuthenticationError, "not authorized for this API"),
    ("*", KEY_EXPIRED): CodeRule(AuthenticationError, "seller key expired", renew_key=True),
    ("*", KEY_EXPIRED_2): CodeRule(AuthenticationError, "seller key expired", renew_key=True),
    # -- ShippingBasic (DOC per-method tables) --
    ("ShippingBasic", SELLER_OR_ORDER_INVALID): CodeRule(
        ValidationError, "seller info not found (order not of this seller)"
    ),
    ("ShippingBasic", ORDER_NOT_FOUND_OR_DATE_ERROR): CodeRule(
        ValidationError, "search date error"
    ),
    ("ShippingBasic", PERIOD_TOO_LONG_OR_SELLER_INVALID): CodeRule(
        # Documented for GetClaimInfo_V3; assumed for GetShippingInfo_v3 (same 90-day rule).
        ValidationError,
        "search period exceeds 90 days",
    ),
    ("ShippingBasic", BULK_TOO_LARGE): CodeRule(
        ValidationError, "more than 500 rows", confirmed=False
    ),
    ("ShippingBasic", ALREADY_CONFIRMED): CodeRule(
        # Documented for SetSellerCheckYNBulk (M); read as "the confirmation already holds".
        ConflictError,
        "order already confirmed",
        confirmed=False,
        already_done=True,
    ),
    ("ShippingBasic", NOT_SHIPPING_REQUEST): CodeRule(
        # Documented for SetSellerCheckYNBulk (M); the sandbox also answers it for the single form.
        ConflictError,
        "order is not in the shipping-request state",
        confirmed=False,
    ),
    ("ShippingBasic", EST_SHIP_DATE_MISSING): CodeRule(
        ValidationError, "EstShipDt missing", confirmed=False
    ),
    ("ShippingBasic", EST_SHIP_DATE_TOO_LATE): CodeRule(
        ValidationError, "EstShipDt beyond the allowed maximum", confirmed=False
    ),
    ("ShippingBasic", EST_SHIP_DATE_NOT_FUTURE): CodeRule(
        ValidationError, "EstShipDt must be after today (JST)", confirmed=False
    ),
    ("ShippingBasic.SetSendingInfo", ORDER_STATUS_INVALID): CodeRule(
        # UNCONFIRMED (§10): whether SetSendingInfo is refused while a buyer cancel request is
        # open, and with which code, is unknown. The sandbox refuses it with -10004 (§9.4).
        ConflictError,
        "order status does not allow dispatch (open cancel request, cancelled or delivered)",
        confirmed=False,
        rule="R25",
    ),
    ("ShippingBasic.SetSendingInfoBulk", ORDER_STATUS_INVALID): CodeRule(
        # Per-row twin of the SetSendingInfo entry above (UNCONFIRMED, same reasons).
        ConflictError,
        "order status does not allow dispatch (open cancel request, cancelled or delivered)",
        confirmed=False,
        rule="R25",
    ),
    ("ShippingBasic.SetSendingInfo", ALREADY_CONFIRMED): CodeRule(
        # -10012 is documented for SetSellerCheckYNBulk only: "already confirmed" says nothing
        # about a dispatch, so for the send methods it is a refusal, never an idempotent success.
        ConflictError,
        "already confirmed (meaning for a dispatch unknown)",
        confirmed=False,
    ),
    ("ShippingBasic.SetSendingInfoBulk", ALREADY_CONFIRMED): CodeRule(
        ConflictError,
        "already confirmed (meaning for a dispatch unknown)",
        confirmed=False,
    ),
    ("ShippingBasic.SetSellerCheckYN_V2", ORDER_STATUS_INVALID): CodeRule(
        ConflictError, "order status does not allow confirmation", confirmed=False
    ),
    # -- Claim (DOC SetCancelProcess table; confirmed codes, M meanings) --
    ("Claim", SELLER_OR_ORDER_INVALID): CodeRule(ValidationError, "order number invalid"),
    ("Claim", ORDER_NOT_FOUND_OR_DATE_ERROR): CodeRule(ValidationError, "order not found"),
    ("Claim", PERIOD_TOO_LONG_OR_SELLER_INVALID): CodeRule(ValidationError, "seller info invalid"),
    ("Claim", ORDER_STATUS_INVALID): CodeRule(
        ConflictError,
        "order status not valid for this action (already shipped or cancelled)",
        confirmed=False,
        rule="R24",
    ),
    # -- CSCenter (DOC SetInquiryMessage table: -10001 argument error, -10002 "Fail") --
    ("CSCenter", SELLER_OR_ORDER_INVALID): CodeRule(ValidationError, "argument error"),
    ("CSCenter", ORDER_NOT_FOUND_OR_DATE_ERROR): CodeRule(
        PermanentError, "message not delivered", rule="R23"
    ),
    # -- transient (UNCONFIRMED, sandbox convention; see SYSTEM_BUSY) --
    ("*", SYSTEM_BUSY): CodeRule(RetryableError, "system busy, try again", confirmed=False),
}

UNKNOWN_CODE = CodeRule(
    # A code nobody documented: never retried in a loop (style.md: 4xx-like answers are final).
    PermanentError,
    "undocumented result code",
    confirmed=False,
)


def code_rule(method: str, code: int) -> CodeRule:
    """The :class:`CodeRule` for ``code`` answered by ``method`` (``Class.Method``)."""
    cls = method.split(".", 1)[0]
    for scope in (method, cls, "*"):
        rule = RESULT_CODES.get((scope, code))
        if rule is not None:
            return rule
    return UNKNOWN_CODE


def classify(method: str, code: int, message: str) -> ConnectorError:
    """The error instance for a non-zero ``code`` (message already redacted by the caller)."""
    rule = code_rule(method, code)
    return rule.error(f"{method}: {message or rule.meaning}", code=str(code))


# --- shipping status (§6.1: codes confirmed, labels M) ---------------------------------------------


class ShippingStatus(StrEnum):
    """``ShippingStatus`` codes. Responses carry a label with the code in parentheses."""

    WAITING = "1"  # 배송대기 / 配送待ち: meaning uncertain (unpaid or reservation wait), L
    REQUESTED = "2"  # 배송요청 / 配送要請: paid, new, not confirmed by the seller
    PREPARED = "3"  # 배송준비 / 発送予定: estimated ship date entered (SetSellerCheckYN_V2)
    SHIPPING = "4"  # 배송중 / 配送中: dispatched (SetSendingInfo)
    DELIVERED = "5"  # 배송완료 / 配送完了: delivered (and receipt confirmed, per the buyer guide)


SHIPPING_STATUS_LABELS: dict[ShippingStatus, str] = {
    ShippingStatus.WAITING: "配送待ち",
    ShippingStatus.REQUESTED: "配送要請",
    ShippingStatus.PREPARED: "配送準備",
    ShippingStatus.SHIPPING: "配送中",
    ShippingStatus.DELIVERED: "配送完了",
}

DISPATCHED_STATUSES = frozenset({ShippingStatus.SHIPPING, ShippingStatus.DELIVERED})

#: GetShippingInfo_v3 ``SearchCondition`` values (confirmed).
SEARCH_BY_ORDER_DATE = "1"
SEARCH_BY_PAYMENT_DATE = "2"
SEARCH_BY_SHIP_DATE = "3"
SEARCH_BY_DELIVERED_DATE = "4"
#: GetClaimInfo_V3 ``search_condition`` values (confirmed).
CLAIM_SEARCH_BY_ORDER_DATE = "1"
CLAIM_SEARCH_BY_REQUEST_DATE = "2"
CLAIM_SEARCH_BY_COMPLETION_DATE = "3"


# --- claim status (§6.2: confirmed, except code 0) -------------------------------------------------


class ClaimCode(StrEnum):
    WITHDRAWN = "0"
    """UNCONFIRMED, sandbox convention: a buyer cancel request that was withdrawn (or declined in
    QSM). QAPI documents no such code; the real list may simply drop the request. The store does
    not depend on it: before any dispatch it reads :meth:`Qoo10Client.claim_states` (R29), which
    shows whether a request is still open."""
    CANCEL_REQUESTED = "1"
    CANCELLING = "2"
    CANCELED = "3"
    RETURN_REQUESTED = "4"
    RETURNING = "5"
    RETURNED = "6"
    EXCHANGE_REQUESTED = "11"
    EXCHANGE_APPROVED = "12"
    REDELIVERING = "13"
    NON_RECEIPT_REFUNDED = "14"
    NON_RECEIPT_PARTLY_REFUNDED = "15"
    UNPAID_CANCELED = "16"


OPEN_CANCEL_REQUEST_STAT = ClaimCode.CANCEL_REQUESTED
"""``ClaimStat`` asked of GetClaimInfo_V3 to list the open buyer cancel requests in bulk
(:meth:`Qoo10Client.claim_states`, R25). UNCONFIRMED: the doc does not say whether a claim is
listed under its current status (assumed; the sandbox does) or the status it was requested with,
so the client counts a listed row as open when its ``claimStatus`` reads 1 *or cannot be read*,
and as closed only when it clearly reads another code."""

CLAIM_LABELS: dict[ClaimCode, str] = {
    ClaimCode.WITHDRAWN: "キャンセル要請撤回",
    ClaimCode.CANCEL_REQUESTED: "キャンセル要請",
    ClaimCode.CANCELLING: "キャンセル中",
    ClaimCode.CANCELED: "キャンセル完了",
    ClaimCode.RETURN_REQUESTED: "返品要請",
    ClaimCode.RETURNING: "返品中",
    ClaimCode.RETURNED: "返品完了",
    ClaimCode.EXCHANGE_REQUESTED: "交換要請",
    ClaimCode.EXCHANGE_APPROVED: "交換承認",
    ClaimCode.REDELIVERING: "再配送中",
    ClaimCode.NON_RECEIPT_REFUNDED: "未受取返金完了",
    ClaimCode.NON_RECEIPT_PARTLY_REFUNDED: "未受取一部返金完了",
    ClaimCode.UNPAID_CANCELED: "未入金キャンセル",
}


# --- input codes -----------------------------------------------------------------------------------

#: ``Claim.SetCancelProcess`` ``CancelReason`` per seller cancel reason (§5.7; DOC only, M).
#: Blank = out of stock. "1" (order change) is the only non-seller-fault value: R23 allows it only
#: with an open buyer request.
CANCEL_REASON_CODES: dict[str, str] = {
    "SOLD_OUT": "",
    "UNDELIVERABLE_AREA": "2",
    "DELAYED_DELIVERY": "3",
    "CHANGED_MIND": "1",
    "OPTION_CHANGE": "1",
}
BUYER_REQUEST_CANCEL_REASON = "1"

#: ``SetSellerCheckYN_V2`` ``DelayType`` (§5.5, confirmed): 1 preparing goods, 2 made to order,
#: 3 customer request, 4 other.
DELAY_TYPES: dict[str, str] = {
    "PRODUCT_PREPARE": "1",
    "CUSTOM_BUILD": "2",
    "CUSTOMER_REQUEST": "3",
}
DEFAULT_DELAY_TYPE = "4"


# --- operations QAPI does not confirm (§5.9, §8, §10) --------------------------------------------


@dataclass(frozen=True)
class Operation:
    """How the client carries out one operation: ``method`` None = no API (raise
    UnsupportedOperationError with ``note``); ``params`` are fixed extra form fields."""

    method: str | None
    params: tuple[tuple[str, str], ...] = ()
    confirmed: bool = False
    note: str = ""


OPERATIONS: dict[str, Operation] = {
    "buyer_message": Operation(
        SEND_BUYER_MESSAGE,
        note="no QAPI method found to message a buyer; sandbox method (see SEND_BUYER_MESSAGE)",
    ),
    "approve_cancel": Operation(
        # Most plausible: the seller executes the cancel of an order that carries an open buyer
        # request, with the buyer-side reason "1" (order change). Unverified (§5.9).
        SET_CANCEL_PROCESS,
        params=(("CancelReason", BUYER_REQUEST_CANCEL_REASON),),
        note="SetCancelProcess on an order with an open cancel request (unverified)",
    ),
    "reject_cancel": Operation(
        None,
        note="Qoo10 QAPI has no method to decline a buyer cancel request (qoo10.md §5.9); "
        "decline it in J-QSM, then dispatch",
    ),
    "refund_after_dispatch": Operation(
        # R24: the seller guide refunds a dispatched order as a return with reason delivery delay
        # from the same QSM cancel tab. QAPI may refuse it (-10004, DOC note); the client then
        # reports ConflictError R24 and the refund is done in J-QSM.
        SET_CANCEL_PROCESS,
        params=(("CancelReason", CANCEL_REASON_CODES["DELAYED_DELIVERY"]),),
        note="SetCancelProcess (delivery delay) on a dispatched order (unverified)",
    ),
}


# --- response fields the spec does not list -------------------------------------------------------

PURCHASE_DECIDED_FIELD = "PurchaseDecisionDate"
"""UNCONFIRMED, sandbox-only: QAPI lists no purchase-decision field (§5.1). The sandbox reports a
buyer's purchase decision in this GetShippingInfo_v3 field; against the real QAPI it is absent, no
PURCHASE_DECIDED change is produced, and the store's own 7-day rule (R07) confirms the line."""
