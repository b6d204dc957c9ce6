"""The Naver Commerce API surface the connector uses: endpoint names, paths, limits, enums.

Endpoint *names* are the keys of the per-endpoint rate limiters on both sides (client
:class:`connectors.base.RateLimiter` and sandbox quota), because Naver counts its token bucket
per API and per application (spec §6.3). Paths are relative to the base URL
(``https://api.commerce.naver.com/external`` in production).
"""

from __future__ import annotations

SELLER = "/v1/pay-order/seller"
PO = f"{SELLER}/product-orders"

#: name -> (method, path template). ``{id}`` is a productOrderId, ``{order_id}`` an orderId.
ENDPOINTS: dict[str, tuple[str, str]] = {
    "token": ("POST", "/v1/oauth2/token"),
    "last_changed": ("GET", f"{PO}/last-changed-statuses"),
    "query": ("POST", f"{PO}/query"),
    "product_order_ids": ("GET", f"{SELLER}/orders/{{order_id}}/product-order-ids"),
    "condition": ("GET", PO),  # condition query (spec §4.5)
    "confirm": ("POST", f"{PO}/confirm"),
    "dispatch": ("POST", f"{PO}/dispatch"),
    "delay": ("POST", f"{PO}/{{id}}/delay"),
    "cancel_request": ("POST", f"{PO}/{{id}}/claim/cancel/request"),
    "cancel_approve": ("POST", f"{PO}/{{id}}/claim/cancel/approve"),
    "return_request": ("POST", f"{PO}/{{id}}/claim/return/request"),
    "return_approve": ("POST", f"{PO}/{{id}}/claim/return/approve"),
    "return_reject": ("POST", f"{PO}/{{id}}/claim/return/reject"),
    "return_holdback": ("POST", f"{PO}/{{id}}/claim/return/holdback"),
    "return_holdback_release": ("POST", f"{PO}/{{id}}/claim/return/holdback/release"),
    "exchange_collect_approve": ("POST", f"{PO}/{{id}}/claim/exchange/collect/approve"),
    "exchange_dispatch": ("POST", f"{PO}/{{id}}/claim/exchange/dispatch"),
    "exchange_reject": ("POST", f"{PO}/{{id}}/claim/exchange/reject"),
    "exchange_holdback": ("POST", f"{PO}/{{id}}/claim/exchange/holdback"),
    "exchange_holdback_release": ("POST", f"{PO}/{{id}}/claim/exchange/holdback/release"),
}

API_ENDPOINTS = tuple(name for name in ENDPOINTS if name != "token")


def path(name: str, **ids: str) -> str:
    return ENDPOINTS[name][1].format(**ids)


# --- limits (spec §3.1, §4.1, §5.1) ----------------------------------------------------------
FEED_PAGE_MAX = 300  # limitCount above this is treated as 300
QUERY_BATCH_MAX = 300  # productOrderIds per detail query
WRITE_BATCH_MAX = 30  # confirm / dispatch ids per call
FEED_WINDOW_MAX_HOURS = 24  # lastChangedTo - lastChangedFrom; longer spans are refused (400)
CONDITION_PAGE_MAX = 300  # pageSize of the condition query (1..300)
CONDITION_WINDOW_MAX_HOURS = 24  # to - from of the condition query
DOCUMENTED_RATE = 2.0  # observed replenish rate per API for "my store" apps (M)
DOCUMENTED_BURST = 2.0  # burst capacity = 2 x rate

# --- enums (spec §3.3, §4.3, §5.6) ------------------------------------------------------------
LAST_CHANGED_TYPES = frozenset(
    {
        "PAY_WAITING",
        "PAYED",
        "EXCHANGE_OPTION",
        "DELIVERY_ADDRESS_CHANGED",
        "GIFT_RECEIVED",
        "CLAIM_REJECTED",
        "DISPATCHED",
        "CLAIM_REQUESTED",
        "COLLECT_DONE",
        "CLAIM_COMPLETED",
        "PURCHASE_DECIDED",
        "HOPE_DELIVERY_INFO_CHANGED",
        "CLAIM_REDELIVERING",
        "CLAIM_HOLDBACK_RELEASED",  # legacy
    }
)

#: ``rangeType`` of the condition query (spec §4.5); the default is PAYED_DATETIME.
RANGE_TYPES = frozenset(
    {
        "PAYED_DATETIME",
        "ORDERED_DATETIME",
        "DISPATCHED_DATETIME",
        "PURCHASE_DECIDED_DATETIME",
        "CLAIM_REQUESTED_DATETIME",
        "CLAIM_COMPLETED_DATETIME",
        "COLLECT_COMPLETED_DATETIME",
        "GIFT_RECEIVED_DATETIME",
        "HOPE_DELIVERY_INFO_CHANGED_DATETIME",
    }
)

#: Status enums (spec §4.3), used to validate condition-query filters.
PRODUCT_ORDER_STATUSES = frozenset(
    {
        "PAYMENT_WAITING",
        "PAYED",
        "DELIVERING",
        "DELIVERED",
        "PURCHASE_DECIDED",
        "EXCHANGED",
        "CANCELED",
        "RETURNED",
        "CANCELED_BY_NOPAYMENT",
    }
)
PLACE_ORDER_STATUSES = frozenset({"NOT_YET", "OK", "CANCEL"})
CLAIM_STATUSES = frozenset(
    {
        "CANCEL_REQUEST",
        "CANCELING",
        "CANCEL_DONE",
        "CANCEL_REJECT",
        "RETURN_REQUEST",
        "EXCHANGE_REQUEST",
        "COLLECTING",
        "COLLECT_DONE",
        "EXCHANGE_REDELIVERING",
        "RETURN_DONE",
        "EXCHANGE_DONE",
        "RETURN_REJECT",
        "EXCHANGE_REJECT",
        "PURCHASE_DECISION_HOLDBACK",
        "PURCHASE_DECISION_REQUEST",
        "PURCHASE_DECISION_HOLDBACK_RELEASE",
        "ADMIN_CANCELING",
        "ADMIN_CANCEL_DONE",
        "ADMIN_CANCEL_REJECT",
    }
)

CANCEL_REASONS = frozenset(
    {
        "INTENT_CHANGED",
        "COLOR_AND_SIZE",
        "WRONG_ORDER",
        "PRODUCT_UNSATISFIED",
        "DELAYED_DELIVERY",
        "SOLD_OUT",
        "INCORRECT_INFO",
    }
)
RETURN_REASONS = CANCEL_REASONS | {"DROPPED_DELIVERY", "BROKEN", "WRONG_DELIVERY", "WRONG_OPTION"}

DELAY_REASONS = frozenset(
    {
        "PRODUCT_PREPARE",
        "CUSTOMER_REQUEST",
        "CUSTOM_BUILD",
        "RESERVED_DISPATCH",
        "OVERSEA_DELIVERY",
        "ETC",
    }
)

HOLDBACK_CLASSES = frozenset(
    {
        "RETURN_DELIVERYFEE",
        "EXTRAFEEE",  # sic
        "RETURN_DELIVERYFEE_AND_EXTRAFEEE",
        "RETURN_PRODUCT_NOT_DELIVERED",
        "ETC",
        "EXCHANGE_DELIVERYFEE",
        "EXCHANGE_EXTRAFEE",
        "EXCHANGE_PRODUCT_READY",
        "EXCHANGE_PRODUCT_NOT_DELIVERED",
        "EXCHANGE_HOLDBACK",
        "SELLER_CONFIRM_NEED",
        "PURCHASER_CONFIRM_NEED",
        "SELLER_REMIT",
        "ETC2",
    }
)

DELIVERY_METHODS = frozenset(
    {
        "DELIVERY",
        "GDFW_ISSUE_SVC",
        "VISIT_RECEIPT",
        "DIRECT_DELIVERY",
        "QUICK_SVC",
        "NOTHING",
        "RETURN_DESIGNATED",
        "RETURN_DELIVERY",
        "RETURN_INDIVIDUAL",
        "RETURN_MERCHANT",
    }
)
#: Methods that need a delivery company and a tracking number (spec §5.3).
TRACKED_METHODS = frozenset({"DELIVERY", "GDFW_ISSUE_SVC"})

#: Per-item failure codes (spec §5.4) the connector and the sandbox use by name.
CODE_BAD_REQUEST = "4000"
CODE_NOT_FOUND = "100001"
CODE_ORDER_NOT_FOUND = "100003"
CODE_NOT_OWNED = "101009"
CODE_DUE_DATE_RANGE = "104105"
CODE_COMPANY_MISSING = "104118"
CODE_COMPANY_INVALID = "104119"
CODE_TRACKING_MISSING = "104120"
CODE_TRACKING_INVALID = "104122"
CODE_DUPLICATE_ID = "104131"
CODE_RANGE_EXCEEDED = "104139"
CODE_EXCHANGE_STATE = "104417"
CODE_WRONG_STATE = "104442"
CODE_NOT_CONFIRMED = "104443"
CODE_SAME_STATE = "105306"
#: Codes meaning "the remote state forbids it" (ConflictError when whole-call).
CONFLICT_CODES = frozenset(
    {CODE_WRONG_STATE, CODE_NOT_CONFIRMED, CODE_SAME_STATE, CODE_EXCHANGE_STATE}
)
