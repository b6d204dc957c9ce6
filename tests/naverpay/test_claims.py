"""Returns (R14) and exchanges over loopback."""

from __future__ import annotations

from datetime import UTC, datetime

from connectors.contract import DispatchItem
from connectors.naverpay.client import NaverPayClient
from connectors.naverpay.mapping import return_completion_steps
from connectors.naverpay.sandbox import NaverPaySandbox
from store.carriers import Carrier
from tests.naverpay.conftest import recent, valid_number
from topics.changes import ChangeKind


async def delivered_unit(sb: NaverPaySandbox, client: NaverPayClient, price: int = 20000) -> str:
    po = sb.new_paid_order([{"name": "A", "unit_price": price}])["productOrderIds"][0]
    (r,) = await client.dispatch([DispatchItem(po, Carrier.CJ, valid_number(), datetime.now(UTC))])
    assert r.ok
    sb.deliver(po)
    return po


def claim_block(sb: NaverPaySandbox, po: str, kind: str) -> dict:
    detail = sb.detail(po)
    assert detail is not None
    return dict(detail["currentClaim"][kind])


async def test_r14_hold_sets_the_fee_and_release_resets_it(
    sandbox: NaverPaySandbox, client: NaverPayClient
) -> None:
    po = await delivered_unit(sandbox, client)
    sandbox.return_request(po)
    (held,) = await client.return_hold([po], "RETURN_DELIVERYFEE", 3000)
    assert held.ok
    block = claim_block(sandbox, po, "return")
    assert (block["holdbackStatus"], block["etcFeeDemandAmount"]) == ("HOLDBACK", 3000)
    changes = await client.changes_since(*recent())
    assert ChangeKind.RETURN_HELD in {c.kind for c in changes}
    (released,) = await client.return_hold_release([po])
    assert released.ok
    block = claim_block(sandbox, po, "return")
    assert (block["holdbackStatus"], block["etcFeeDemandAmount"]) == ("RELEASED", 0)
    (twice,) = await client.return_hold_release([po])
    assert twice.code == "105306"


async def test_r14_fee_deducted_from_refund_completes_while_held(
    sandbox: NaverPaySandbox, client: NaverPayClient
) -> None:
    po = await delivered_unit(sandbox, client, price=20000)
    sandbox.return_request(po)
    await client.return_hold([po], "RETURN_DELIVERYFEE", 3000)
    assert return_completion_steps("deduct_refund", held=True, money_received=False) == [
        "return_approve"
    ]
    (done,) = await client.return_approve([po])
    assert done.ok
    (entry,) = [e for e in sandbox.ledger.entries if e.op == "return_approve"]
    assert entry.details == {"refund": 17000, "fee": 3000}
    assert {c.kind for c in await client.changes_since(*recent())} >= {ChangeKind.RETURNED}


async def test_r14_fee_by_transfer_releases_first_then_completes(
    sandbox: NaverPaySandbox, client: NaverPayClient
) -> None:
    po = await delivered_unit(sandbox, client, price=20000)
    sandbox.return_request(po)
    await client.return_hold([po], "RETURN_DELIVERYFEE", 3000)
    steps = return_completion_steps("transfer", held=True, money_received=True)
    assert steps == ["return_hold_release", "return_approve"]
    for step in steps:
        (result,) = await getattr(client, step)([po])
        assert result.ok
    (entry,) = [e for e in sandbox.ledger.entries if e.op == "return_approve"]
    assert entry.details == {"refund": 20000, "fee": 0}
    assert return_completion_steps("in_box", held=True, money_received=False) == [
        "return_hold_release"
    ]


async def test_held_return_cannot_be_rejected(
    sandbox: NaverPaySandbox, client: NaverPayClient
) -> None:
    po = await delivered_unit(sandbox, client)
    sandbox.return_request(po)
    await client.return_hold([po], "EXTRAFEEE", 1000, "extra packing")
    (rejected,) = await client.return_reject([po], "not received")
    assert (rejected.ok, rejected.code) == (False, "104442")
    await client.return_hold_release([po])
    (rejected,) = await client.return_reject([po], "not received")
    assert rejected.ok
    assert (await client.claim_states([po]))[po].status == "DELIVERED"  # back to pre-claim


async def test_exchange_collect_hold_redeliver_and_done(
    sandbox: NaverPaySandbox, client: NaverPayClient
) -> None:
    po = await delivered_unit(sandbox, client)
    sandbox.exchange_request(po)
    (early,) = await client.exchange_redeliver(
        [DispatchItem(po, Carrier.HANJIN, valid_number(Carrier.HANJIN), datetime.now(UTC))]
    )
    assert early.code == "104417"  # not collected yet
    assert (await client.exchange_hold([po], "EXCHANGE_DELIVERYFEE", 2500))[0].ok
    assert (await client.exchange_hold_release([po]))[0].ok
    assert (await client.exchange_collect_approve([po]))[0].ok
    (sent,) = await client.exchange_redeliver(
        [DispatchItem(po, Carrier.HANJIN, valid_number(Carrier.HANJIN), datetime.now(UTC))]
    )
    assert sent.ok and sandbox.ledger.count("exchange_redeliver", po) == 1
    sandbox.deliver(po)
    kinds = [c.kind for c in await client.changes_since(*recent())]
    assert ChangeKind.EXCHANGED in kinds


async def test_exchange_reject(sandbox: NaverPaySandbox, client: NaverPayClient) -> None:
    po = await delivered_unit(sandbox, client)
    sandbox.exchange_request(po)
    (rejected,) = await client.exchange_reject([po], "option out of stock")
    assert rejected.ok and sandbox.ledger.count("exchange_reject", po) == 1
    (raw,) = [c for c in await client.changes_since(*recent()) if c.kind is ChangeKind.UNKNOWN]
    assert raw.raw_type == "EXCHANGE:EXCHANGE_REJECT"  # no kind for it: surfaced, not dropped
