"""Helpers shared by the Qoo10 tests."""

from __future__ import annotations

from datetime import UTC, date, datetime, timedelta

from connectors.contract import DispatchItem
from connectors.qoo10.client import Qoo10Client
from connectors.qoo10.dates import JST
from connectors.qoo10.sandbox import Qoo10Sandbox
from store.carriers import Carrier


def make_client(sandbox: Qoo10Sandbox, **kw: object) -> Qoo10Client:
    assert sandbox.url is not None
    options: dict[str, object] = {"rate_per_second": None}
    options.update(kw)
    return Qoo10Client(
        sandbox.url,
        sandbox.api_key,
        sandbox.user_id,
        sandbox.password,
        **options,  # type: ignore[arg-type]
    )


def around_now(before: timedelta = timedelta(minutes=5)) -> tuple[datetime, datetime]:
    """A change window covering the last minutes and the next seconds."""
    now = datetime.now(UTC)
    return now - before, now + timedelta(seconds=2)


def ship_date(days: int = 3) -> date:
    return datetime.now(JST).date() + timedelta(days=days)


def item(
    unit_id: str, tracking: str = "4455-6677-8899", carrier: Carrier = Carrier.YAMATO
) -> DispatchItem:
    return DispatchItem(unit_id, carrier, tracking, datetime.now(UTC))


async def confirmed_order(sandbox: Qoo10Sandbox, client: Qoo10Client, **kw: object) -> str:
    """A paid order with an estimated ship date entered (state 3, "shipping prepared")."""
    order_no = sandbox.new_order(**kw)
    [result] = await client.confirm_orders([order_no], ship_date())
    assert result.ok, result
    return order_no


async def dispatched_order(sandbox: Qoo10Sandbox, client: Qoo10Client, **kw: object) -> str:
    order_no = await confirmed_order(sandbox, client, **kw)
    [result] = await client.dispatch([item(order_no)])
    assert result.ok, result
    return order_no
