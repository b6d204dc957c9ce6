"""Render the simulator's product orders as Naver's detail JSON (``POST …/query``, spec §4.2).

Claims appear in the current shape: ``productOrder.claimType/claimStatus/claimId``,
``currentClaim.{cancel|return|exchange}`` (the latest claim) and ``completedClaims[]`` (finished
ones). The legacy top-level blocks are not written (the client reads both shapes).
"""

from __future__ import annotations

from typing import Any

from connectors.naverpay.sim_state import SimClaim, SimOrder, SimProductOrder, ms_text


def _drop_none(block: dict[str, Any]) -> dict[str, Any]:
    return {k: v for k, v in block.items() if v is not None}


def render_claim(claim: SimClaim) -> dict[str, Any]:
    common: dict[str, Any] = {
        "claimId": claim.claim_id,
        "claimStatus": claim.status,
        "claimRequestDate": ms_text(claim.requested_at),
        "requestChannel": claim.channel,
        "requestQuantity": claim.quantity,
    }
    if claim.claim_type == "CANCEL":
        common.update(
            cancelReason=claim.reason,
            cancelDetailedReason=claim.detail,
            cancelCompletedDate=ms_text(claim.completed_at)
            if claim.status == "CANCEL_DONE"
            else None,
        )
        return _drop_none(common)
    prefix = "return" if claim.claim_type == "RETURN" else "exchange"
    common.update(
        {
            f"{prefix}Reason": claim.reason,
            f"{prefix}DetailedReason": claim.detail,
            "collectDeliveryMethod": "RETURN_DESIGNATED",
            "collectStatus": "DELIVERED" if claim.collected_at else "COLLECT_WAITING",
            "collectCompletedDate": ms_text(claim.collected_at),
            "holdbackStatus": claim.holdback,
            "holdbackReason": claim.holdback_class,
            "holdbackDetailedReason": claim.holdback_detail or None,
            "holdbackConfigDate": ms_text(claim.holdback_at),
            "holdbackReleaseDate": ms_text(claim.released_at),
            "claimDeliveryFeeDemandAmount": 0,
            "etcFeeDemandAmount": claim.fee,
        }
    )
    if claim.claim_type == "RETURN" and claim.status == "RETURN_DONE":
        common["returnCompletedDate"] = ms_text(claim.completed_at)
    if claim.redelivery:
        common.update(
            {
                **claim.redelivery,
                "reDeliveryOperationDate": ms_text(claim.redelivery["reDeliveryOperationDate"]),
            }
        )
    return _drop_none(common)


def render_detail(order: SimOrder, po: SimProductOrder) -> dict[str, Any]:
    general = max(0, order.total - order.mileage)
    detail: dict[str, Any] = {
        "order": _drop_none(
            {
                "orderId": order.order_id,
                "orderDate": ms_text(order.ordered_at),
                "paymentDate": ms_text(order.paid_at),
                "paymentMeans": order.payment_means,
                "payLocationType": "MOBILE",
                "ordererId": f"buyer{order.order_id[-4:]}",
                "ordererName": order.orderer_name,
                "ordererTel": order.orderer_tel,
                "orderDiscountAmount": 0,
                "naverMileagePaymentAmount": order.mileage,
                "generalPaymentAmount": general,
                "isMembershipSubscribed": False,
            }
        ),
    }
    product: dict[str, Any] = {
        "productOrderId": po.product_order_id,
        "productOrderStatus": po.status,
        "placeOrderStatus": po.place_status,
        "placeOrderDate": ms_text(po.placed_at),
        "productId": f"P{po.sku}",
        "productName": po.name,
        "productOption": po.option or None,
        "sellerProductCode": po.sku,
        "quantity": po.quantity,
        "initialQuantity": po.quantity,
        "remainQuantity": po.quantity,
        "unitPrice": po.unit_price,
        "optionPrice": 0,
        "totalPaymentAmount": po.amount,
        "totalProductAmount": po.amount,
        "deliveryFeeAmount": 0,
        "expectedDeliveryMethod": "DELIVERY",
        "shippingDueDate": ms_text(po.shipping_due),
        "delayedDispatchReason": po.delay_reason,
        "delayedDispatchDetailedReason": po.delay_detail,
        "decisionDate": ms_text(po.decided_at),
        "shippingAddress": dict(po.address),
    }
    if po.claim is not None:
        product.update(
            claimType=po.claim.claim_type,
            claimStatus=po.claim.status,
            claimId=po.claim.claim_id,
        )
        detail["currentClaim"] = {po.claim.claim_type.lower(): render_claim(po.claim)}
    detail["productOrder"] = _drop_none(product)
    if po.delivery is not None:
        detail["delivery"] = _drop_none(
            {
                **po.delivery,
                "sendDate": ms_text(po.delivery.get("sendDate")),
                "deliveredDate": ms_text(po.delivery.get("deliveredDate")),
                "deliveryStatus": "DELIVERY_COMPLETION"
                if po.delivery.get("deliveredDate")
                else "DELIVERING",
            }
        )
    if po.completed:
        detail["completedClaims"] = [
            {"claimType": c.claim_type, **render_claim(c)} for c in po.completed
        ]
    return detail
