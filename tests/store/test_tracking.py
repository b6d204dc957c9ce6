"""R06 (pickup moves to shipping), forward-only tracking states and stale invoices."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, datetime, timedelta

import pytest
from hypothesis import given
from hypothesis import strategies as st

from store.domain import FORWARD_PATH, PICKUP_OR_LATER, LineStatus, TrackingState
from store.tracking import decide, merge_state, stale_invoices

S, L = TrackingState, LineStatus


@pytest.mark.parametrize("scan", [S.PICKED_UP, S.IN_TRANSIT, S.OUT_FOR_DELIVERY])
def test_r06_pickup_or_later_scan_ships_and_dispatches(scan: TrackingState) -> None:
    decision = decide(L.READY_TO_SHIP, True, scan)
    assert decision.new_statuses == (L.SHIPPING,)
    assert decision.dispatch and decision.rule == "R06"


def test_r06_delivered_scan_with_missed_pickup_goes_through_shipping() -> None:
    decision = decide(L.READY_TO_SHIP, True, S.DELIVERED)
    assert decision.new_statuses == (L.SHIPPING, L.DELIVERED)
    assert decision.dispatch


def test_r06_shipping_line_is_delivered_without_a_second_dispatch() -> None:
    decision = decide(L.SHIPPING, True, S.DELIVERED)
    assert decision.new_statuses == (L.DELIVERED,) and not decision.dispatch


@pytest.mark.parametrize("scan", list(S))
def test_r06_invalid_invoice_never_ships(scan: TrackingState) -> None:
    """R06 needs a valid invoice (R18)."""
    decision = decide(L.READY_TO_SHIP, False, scan)
    assert not decision.changes and not decision.dispatch


@pytest.mark.parametrize("scan", [S.NONE, S.EXCEPTION])
@pytest.mark.parametrize("status", [L.READY_TO_SHIP, L.SHIPPING])
def test_r06_non_scans_move_nothing(status: LineStatus, scan: TrackingState) -> None:
    assert not decide(status, True, scan).changes


@pytest.mark.parametrize("scan", list(PICKUP_OR_LATER))
@pytest.mark.parametrize(
    "status",
    [
        L.PREPARING,
        L.DELIVERED,
        L.PURCHASE_CONFIRMED,
        L.CANCEL_REQUESTED,
        L.CANCELED,
        L.RETURN_REQUESTED,
        L.RETURNED,
    ],
)
def test_r06_scans_never_move_other_lines(status: LineStatus, scan: TrackingState) -> None:
    """Late, duplicate or out-of-order scans never move a line backwards (R01)."""
    decision = decide(status, True, scan)
    assert not decision.changes and not decision.dispatch


@given(st.lists(st.sampled_from(list(S)), max_size=12))
def test_r06_any_scan_sequence_moves_forward_one_step_at_a_time(scans: list[TrackingState]) -> None:
    """R06 + R01: replaying scans in any order with duplicates dispatches at most once, moves
    only forward one step at a time, and ends where the furthest scan says."""
    status, dispatches = L.READY_TO_SHIP, 0
    for scan in scans:
        decision = decide(status, True, scan)
        for new in decision.new_statuses:
            assert FORWARD_PATH.index(new) == FORWARD_PATH.index(status) + 1
            status = new
        dispatches += decision.dispatch
    assert dispatches == (1 if any(s in PICKUP_OR_LATER for s in scans) else 0)
    if S.DELIVERED in scans:
        assert status is L.DELIVERED
    elif any(s in PICKUP_OR_LATER for s in scans):
        assert status is L.SHIPPING
    else:
        assert status is L.READY_TO_SHIP


_ORDER = [S.NONE, S.PICKED_UP, S.IN_TRANSIT, S.OUT_FOR_DELIVERY, S.DELIVERED]


@given(st.lists(st.sampled_from(list(S)), max_size=12))
def test_merge_state_never_goes_backwards(scans: list[TrackingState]) -> None:
    state = S.NONE
    for scan in scans:
        new = merge_state(state, scan)
        if state is S.DELIVERED:
            assert new is S.DELIVERED
        elif new is not S.EXCEPTION and state is not S.EXCEPTION:
            assert _ORDER.index(new) >= _ORDER.index(state)
        state = new
    forward = [s for s in scans if s in PICKUP_OR_LATER]
    if S.DELIVERED in scans:
        assert state is S.DELIVERED
    elif forward and scans[-1] is not S.EXCEPTION and S.EXCEPTION not in scans:
        assert state is max(forward, key=_ORDER.index)


# --- stale invoices -----------------------------------------------------------------------------
@dataclass
class Inv:
    name: str
    issued_at: datetime
    last_scan_at: datetime | None = None
    tracking_state: str = "NONE"
    kind: str = "parcel"
    carrier: str = "HANJIN"
    deleted_at: datetime | None = None


NOW = datetime(2024, 5, 10, 12, 0, tzinfo=UTC)
AFTER = timedelta(days=3)


def test_stale_invoices_are_those_without_any_scan_after_the_window() -> None:
    invoices = [
        Inv("old-unscanned", NOW - AFTER - timedelta(minutes=1)),
        Inv("exactly-at-window", NOW - AFTER),
        Inv("young", NOW - AFTER + timedelta(minutes=1)),
        Inv("scanned", NOW - timedelta(days=9), NOW - timedelta(days=8), "PICKED_UP"),
        Inv("deleted", NOW - timedelta(days=9), deleted_at=NOW - timedelta(days=1)),
        Inv("quick", NOW - timedelta(days=9), kind="quick"),
        Inv("etc", NOW - timedelta(days=9), carrier="ETC"),
        Inv("naive-old", (NOW - timedelta(days=4)).replace(tzinfo=None)),
    ]
    stale = stale_invoices(invoices, NOW, AFTER)
    assert [i.name for i in stale] == ["old-unscanned", "exactly-at-window", "naive-old"]
    assert [i.name for i in stale_invoices(invoices, NOW, AFTER.total_seconds())] == [
        i.name for i in stale
    ]


def test_stale_invoices_ignore_pickup_failed_style_non_scans() -> None:
    """A PICKUP_FAILED event maps to NONE and sets no scan time: still stale."""
    inv = Inv("never-picked-up", NOW - timedelta(days=5), None, merge_state(S.NONE, S.NONE))
    assert stale_invoices([inv], NOW, AFTER) == [inv]
