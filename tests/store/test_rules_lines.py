"""Line operations: R03 (split only while preparing), R04 (no split / no additions on external
checkout channels), R05 (invoices only in READY_TO_SHIP)."""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

from store.domain import (
    EXTERNAL_CHECKOUT_CHANNELS,
    Channel,
    LineStatus,
    PaymentMethod,
    ProductKind,
)
from store.errors import InvoiceNotAllowedError, SplitNotAllowedError
from store.state_machine import (
    LineView,
    OrderView,
    check_add_items,
    check_attach_invoice,
    check_split,
)

S = LineStatus


def make(
    status: LineStatus = S.PREPARING,
    quantity: int = 5,
    *,
    channel: Channel = Channel.OMS,
    kind: ProductKind = ProductKind.PARCEL,
) -> tuple[OrderView, LineView]:
    line = LineView("L1", status, quantity, kind)
    return OrderView("O1", channel, PaymentMethod.CARD, (line,)), line


@st.composite
def partitions(draw: st.DrawFn) -> tuple[int, list[int]]:
    """A quantity and a split of it into at least two parts of at least 1."""
    parts = draw(st.lists(st.integers(min_value=1, max_value=20), min_size=2, max_size=8))
    return sum(parts), parts


@given(partitions())
def test_r03_any_split_summing_to_the_quantity_is_accepted(case: tuple[int, list[int]]) -> None:
    """R03: any split of a PREPARING line into >= 2 parts of >= 1 that sum to the quantity."""
    quantity, parts = case
    order, line = make(quantity=quantity)
    assert check_split(order, line, parts) == tuple(parts)


@given(st.integers(min_value=1, max_value=30), st.lists(st.integers(-5, 40), max_size=8))
def test_r03_any_other_split_is_refused(quantity: int, parts: list[int]) -> None:
    """R03: a split that is not >= 2 parts of >= 1 summing to the quantity is refused."""
    valid = len(parts) >= 2 and all(q >= 1 for q in parts) and sum(parts) == quantity
    order, line = make(quantity=quantity)
    if valid:
        assert check_split(order, line, parts) == tuple(parts)
        return
    with pytest.raises(SplitNotAllowedError) as err:
        check_split(order, line, parts)
    assert err.value.rule == "R03"


@pytest.mark.parametrize("status", [s for s in LineStatus if s is not S.PREPARING])
def test_r03_split_refused_outside_preparing(status: LineStatus) -> None:
    """R03: READY_TO_SHIP and every other status refuse a quantity split."""
    order, line = make(status)
    with pytest.raises(SplitNotAllowedError, match="only a PREPARING line") as err:
        check_split(order, line, [2, 3])
    assert err.value.rule == "R03"


def test_r03_split_quantities_must_be_whole_numbers() -> None:
    """R03: parts are counts; a bool or a float is not one."""
    order, line = make(quantity=2)
    for parts in ([True, True], [1.0, 1.0]):
        with pytest.raises(SplitNotAllowedError) as err:
            check_split(order, line, parts)  # type: ignore[arg-type]
        assert err.value.rule == "R03"


@pytest.mark.parametrize("channel", sorted(EXTERNAL_CHECKOUT_CHANNELS))
def test_r04_split_refused_on_external_checkout_naming_the_channel(channel: Channel) -> None:
    """R04: Naver Pay / Qoo10 lines cannot be split, even a valid split while preparing; the
    error names the channel. R04 is reported before R03."""
    for status in (S.PREPARING, S.READY_TO_SHIP):
        order, line = make(status, channel=channel)
        with pytest.raises(SplitNotAllowedError) as err:
            check_split(order, line, [2, 3])
        assert err.value.rule == "R04"
        assert str(channel) in err.value.message


@pytest.mark.parametrize("channel", sorted(EXTERNAL_CHECKOUT_CHANNELS))
def test_r04_no_items_added_on_external_checkout(channel: Channel) -> None:
    """R04: no quantity or item can be added to a marketplace checkout order."""
    order, _ = make(channel=channel)
    with pytest.raises(SplitNotAllowedError) as err:
        check_add_items(order)
    assert err.value.rule == "R04"
    assert str(channel) in err.value.message


def test_r04_own_checkout_allows_split_and_additions() -> None:
    """R04: the shop's own checkout is not limited."""
    order, line = make(quantity=3)
    check_add_items(order)
    assert check_split(order, line, [1, 1, 1]) == (1, 1, 1)


def test_r05_invoice_attached_in_ready_to_ship() -> None:
    """R05: an invoice attaches to a READY_TO_SHIP parcel line, also a second one."""
    order, line = make(S.READY_TO_SHIP)
    check_attach_invoice(order, line)
    check_attach_invoice(order, LineView("L1", S.READY_TO_SHIP, 5, has_invoice=True))


@pytest.mark.parametrize("status", [s for s in LineStatus if s is not S.READY_TO_SHIP])
def test_r05_invoice_refused_outside_ready_to_ship(status: LineStatus) -> None:
    """R05: PREPARING, SHIPPING and every other status refuse an invoice."""
    order, line = make(status)
    with pytest.raises(InvoiceNotAllowedError, match="only in READY_TO_SHIP") as err:
        check_attach_invoice(order, line)
    assert err.value.rule == "R05"


@pytest.mark.parametrize(
    "kind", [ProductKind.NO_DELIVERY, ProductKind.DIGITAL, ProductKind.MEMBERSHIP]
)
def test_r05_lines_that_are_not_shipped_take_no_invoice(kind: ProductKind) -> None:
    """R02/R05: no-delivery, digital and membership lines need no invoice and take none."""
    order, line = make(S.READY_TO_SHIP, kind=kind)
    with pytest.raises(InvoiceNotAllowedError) as err:
        check_attach_invoice(order, line)
    assert err.value.rule == "R05"
