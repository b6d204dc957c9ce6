"""Client ↔ sandbox contract over loopback HTTP: issuing, idempotency, cancel and re-issue."""

from __future__ import annotations

import dataclasses

import pytest

from connectors.errors import ConflictError, ValidationError
from connectors.goodsflow import CancelReason, GoodsflowClient, IdType, WaybillRequest
from connectors.goodsflow.sandbox import GoodsflowSandbox
from store.carriers import Carrier
from store.domain import InvoiceKind
from store.invoices import inspect_invoice
from tests.goodsflow.helpers import HOUR, address, issue_and_print, waybill

PRINT_CARRIERS = [
    Carrier.CJ,
    Carrier.EPOST,
    Carrier.HANJIN,
    Carrier.LOTTE,
    Carrier.LOGEN,
    Carrier.ILYANG,
]


async def test_r27_waybill_sender_is_the_contract_center(
    client: GoodsflowClient, sandbox: GoodsflowSandbox
) -> None:
    """R27: the sender on the waybill is the center registered with the Goodsflow contract;
    the request type has no sender field at all (no shop-profile address can leak in)."""
    assert not any(
        "sender" in f.name or f.name.startswith("from")
        for f in dataclasses.fields(WaybillRequest)
        if f.name != "sender_pays"
    )
    result = (await client.request_waybills([waybill("line-27")]))[0]
    assert result.ok
    entry = next(e for e in sandbox.ledger.entries if e.op == "waybill.registered")
    center = sandbox.sender
    assert (
        entry.details["fromName"],
        entry.details["fromAddress1"],
        entry.details["fromAddress2"],
        entry.details["fromZipcode"],
        entry.details["fromPhoneNo"],
    ) == (center.name, center.address1, center.address2, center.zip_code, center.phone)


async def test_r27_sender_follows_a_re_registered_contract(sandbox: GoodsflowSandbox) -> None:
    """R27: changing the sender means re-registering the contract on Goodsflow's side; a new
    client picks the new center up, nothing is read from the shop."""
    assert sandbox.url
    sandbox.world.sender = dataclasses.replace(sandbox.sender, address1="99 New-ro, Busan")
    async with GoodsflowClient(sandbox.url, sandbox.api_key) as fresh:
        assert (await fresh.request_waybills([waybill("line-27b")]))[0].ok
    entry = next(e for e in sandbox.ledger.entries if e.op == "waybill.registered")
    assert entry.details["fromAddress1"] == "99 New-ro, Busan"


@pytest.mark.parametrize("carrier", PRINT_CARRIERS)
async def test_r18_issued_waybill_numbers_follow_the_carrier_rule(
    client: GoodsflowClient, sandbox: GoodsflowSandbox, carrier: Carrier
) -> None:
    """R18: numbers the sandbox prints pass the carrier's rule without a warning."""
    _, number = await issue_and_print(client, sandbox, waybill(f"line-{carrier}", carrier))
    check = inspect_invoice(carrier, number, InvoiceKind.PARCEL)
    assert check.valid and check.warnings == (), check
    assert sandbox.ledger.count("waybill.printed", f"line-{carrier}") == 1


async def test_no_waybill_number_before_printing(client: GoodsflowClient) -> None:
    result = (await client.request_waybills([waybill("line-np")]))[0]
    assert result.ok and result.invoice_no is None
    [wb] = await client.get_waybills([result.service_id or ""])
    assert wb.invoice_no is None and wb.status is None


async def test_s1_retried_registration_returns_the_existing_waybill(
    client: GoodsflowClient, sandbox: GoodsflowSandbox
) -> None:
    """S1: a registration re-sent with the same uniqueId (lost answer, redelivered event)
    creates no second waybill."""
    first = (await client.request_waybills([waybill("line-s1")]))[0]
    again = (await client.request_waybills([waybill("line-s1")]))[0]
    assert again.ok and again.duplicate and again.service_id == first.service_id
    assert sandbox.ledger.count("waybill.registered", "line-s1") == 1


async def test_items_are_refused_one_by_one(
    client: GoodsflowClient, sandbox: GoodsflowSandbox
) -> None:
    """A carrier without an APPROVED contract refuses that item only; order is kept."""
    sandbox.set_contract("HANJIN", "REFUSED")
    results = await client.request_waybills(
        [waybill("a", Carrier.LOTTE), waybill("b", Carrier.HANJIN), waybill("c", Carrier.CJ)]
    )
    assert [(r.unique_id, r.ok) for r in results] == [("a", True), ("b", False), ("c", True)]
    assert "contract" in results[1].message and results[1].detail
    assert sandbox.ledger.count("waybill.registered") == 2


async def test_invalid_receiver_is_refused_with_field_detail(client: GoodsflowClient) -> None:
    bad = address(line1="x" * 101)
    [result] = await client.request_waybills([waybill("line-bad", receiver=bad)])
    assert not result.ok and "toAddress1" in result.detail


async def test_print_batch_must_be_one_carrier(client: GoodsflowClient) -> None:
    results = await client.request_waybills(
        [waybill("m1", Carrier.LOTTE), waybill("m2", Carrier.HANJIN)]
    )
    with pytest.raises(ValidationError) as err:
        await client.print_link([r.service_id or "" for r in results])
    assert "one carrier" in str(err.value)


async def test_r12_reissue_after_address_change_cancels_the_printed_waybill(
    client: GoodsflowClient, sandbox: GoodsflowSandbox
) -> None:
    """R12: an address change after printing → cancel (RE_RECEIVED) and a new waybill for the
    new address; the old one is cancelled exactly once and never picked up."""
    old_sid, old_no = await issue_and_print(client, sandbox, waybill("line-12"))
    moved = waybill("line-12:r1", receiver=address(line1="7 Haeundae-ro, Busan"))
    result = await client.reissue_waybill(old_sid, moved)
    assert result.ok and result.service_id != old_sid
    assert sandbox.ledger.count("waybill.cancelled", "line-12") == 1
    assert sandbox.ledger.count("waybill.registered", "line-12:r1") == 1
    new_sid = result.service_id or ""
    new_no = await _print(client, sandbox, new_sid)
    assert new_no != old_no
    sandbox.advance_clock(10 * HOUR)
    [old] = await client.get_waybills([old_sid])
    assert old.status == "CANCELED"
    [new] = await client.get_waybills([new_sid])
    assert new.status == "COMPLETED"
    [entry] = [
        e for e in sandbox.ledger.entries if e.op == "waybill.registered" and e.key == "line-12:r1"
    ]
    assert entry.details["orderNo"] == "o-line-12:r1"


async def _print(client: GoodsflowClient, sandbox: GoodsflowSandbox, service_id: str) -> str:
    printed = sandbox.print_waybills([service_id])
    [wb] = await client.get_waybills([service_id])
    assert wb.invoice_no == printed[service_id]
    return wb.invoice_no


async def test_cancel_after_pickup_is_refused_and_reissue_registers_nothing(
    client: GoodsflowClient, sandbox: GoodsflowSandbox
) -> None:
    sid, _ = await issue_and_print(client, sandbox, waybill("line-late"))
    sandbox.advance_clock(2 * HOUR + 1)
    [res] = await client.cancel_waybills([sid])
    assert not res.ok and "picked up" in res.message
    with pytest.raises(ConflictError):
        await client.reissue_waybill(sid, waybill("line-late:r1"))
    assert sandbox.ledger.count("waybill.registered", "line-late:r1") == 0
    assert sandbox.ledger.count("waybill.cancelled") == 0


async def test_cancel_twice_is_harmless(client: GoodsflowClient, sandbox: GoodsflowSandbox) -> None:
    [result] = await client.request_waybills([waybill("line-cc")])
    sid = result.service_id or ""
    first = await client.cancel_waybills([sid], CancelReason.NOT_SEND, "buyer cancelled")
    second = await client.cancel_waybills([sid], CancelReason.NOT_SEND)
    assert first[0].ok and second[0].ok and first[0].unique_id == "line-cc"
    assert sandbox.ledger.count("waybill.cancelled", "line-cc") == 1
    link = await client.print_link([sid])
    assert link.print_count == 0 and link.request_count == 1


async def test_unknown_ids_are_absent_from_lookups(client: GoodsflowClient) -> None:
    assert await client.get_waybills(["nope"], IdType.UNIQUE_ID) == []
    [res] = await client.cancel_waybills(["00000000000000000000"])
    assert not res.ok and "unknown" in res.message


async def test_s1_unique_id_of_a_cancelled_waybill_is_not_reused(
    client: GoodsflowClient, sandbox: GoodsflowSandbox
) -> None:
    """A re-issue must use a new unique id: the cancelled registration is not handed back."""
    [first] = await client.request_waybills([waybill("line-cx")])
    await client.cancel_waybills([first.service_id or ""])
    [again] = await client.request_waybills([waybill("line-cx")])
    assert not again.ok and not again.duplicate and "duplicate" in again.message
