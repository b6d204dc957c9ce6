"""Builders shared by the Goodsflow tests."""

from __future__ import annotations

from connectors.goodsflow import GoodsflowClient, WaybillItem, WaybillRequest
from connectors.goodsflow.sandbox import GoodsflowSandbox
from store.carriers import Carrier
from topics.commands import Address

API_KEY = "gf-test-key-0f3a9c"
HOUR = 3600.0


def address(name: str = "Buyer Kim", line1: str = "12 Teheran-ro, Seoul") -> Address:
    return Address(name=name, phone="010-1234-5678", zip_code="06236", line1=line1, line2="5F")


def waybill(
    unique_id: str, carrier: Carrier = Carrier.HANJIN, receiver: Address | None = None
) -> WaybillRequest:
    return WaybillRequest(
        unique_id=unique_id,
        carrier=carrier,
        receiver=receiver or address(),
        items=[WaybillItem(order_no=f"o-{unique_id}", name="T-shirt", quantity=1, price=19000)],
    )


async def issue_and_print(
    client: GoodsflowClient, sandbox: GoodsflowSandbox, request: WaybillRequest
) -> tuple[str, str]:
    """Register, open the print page over HTTP, read the waybill number back."""
    import httpx

    result = (await client.request_waybills([request]))[0]
    assert result.ok and result.service_id, result
    link = await client.print_link([result.service_id])
    async with httpx.AsyncClient() as http:
        page = await http.get(link.uri)
    assert page.status_code == 200
    waybills = await client.get_waybills([result.service_id])
    assert waybills[0].invoice_no, waybills
    return result.service_id, waybills[0].invoice_no
