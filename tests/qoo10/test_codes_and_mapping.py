"""The code table and the row mapping (pure)."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest

from connectors.contract import UnsupportedOperationError
from connectors.errors import (
    AuthenticationError,
    ConflictError,
    PermanentError,
    RetryableError,
    ValidationError,
)
from connectors.qoo10 import codes
from connectors.qoo10.dates import JST, parse_qoo10_datetime, search_windows
from connectors.qoo10.fields import claim_code, shipping_status
from connectors.qoo10.mapping import (
    bulk_outcomes,
    claim_changes,
    listed_claim_state,
    shipping_changes,
)
from topics.changes import ChangeKind


@pytest.mark.parametrize(
    ("method", "code", "error", "rule"),
    [
        (codes.SET_SENDING_INFO, -10004, ConflictError, "R25"),
        (codes.SET_SENDING_INFO_BULK, -10004, ConflictError, "R25"),
        (codes.SET_SENDING_INFO_BULK, -10001, ValidationError, None),
        (codes.SET_SENDING_INFO_BULK, -10011, ValidationError, None),
        (codes.SET_SENDING_INFO_BULK, codes.SYSTEM_BUSY, RetryableError, None),
        (codes.SET_CANCEL_PROCESS, -10004, ConflictError, "R24"),
        (codes.GET_CLAIM_INFO, -10003, ValidationError, None),
        (codes.SET_CANCEL_PROCESS, -10003, ValidationError, None),
        (codes.GET_ORDER_DETAIL, -90004, AuthenticationError, None),
        (codes.GET_ORDER_DETAIL, -90001, UnsupportedOperationError, None),
        (codes.GET_ORDER_DETAIL, codes.SYSTEM_BUSY, RetryableError, None),
        (codes.GET_ORDER_DETAIL, -12345, PermanentError, None),
    ],
)
def test_result_codes_resolve_from_the_most_specific_scope(
    method: str, code: int, error: type, rule: str | None
) -> None:
    found = codes.code_rule(method, code)
    assert found.error is error
    assert found.rule == rule
    assert type(codes.classify(method, code, "msg")) is error


def test_undocumented_codes_are_never_retried() -> None:
    assert not isinstance(codes.classify(codes.SET_SENDING_INFO, -777, ""), RetryableError)
    assert not codes.code_rule(codes.SET_SENDING_INFO, -777).confirmed


def test_only_key_codes_renew_the_key() -> None:
    renewing = {code for (_, code), rule in codes.RESULT_CODES.items() if rule.renew_key}
    assert renewing == {-10000, -90001, -90004, -90005}


@pytest.mark.parametrize(
    ("raw", "expected"),
    [
        ("配送要請(2)", "2"),
        ("Shipping(4)", "4"),
        ("3", "3"),
        ("配送完了", "5"),
        ("", None),
        ("?", None),
    ],
)
def test_shipping_status_read_from_label_or_code(raw: str, expected: str | None) -> None:
    status = shipping_status(raw)
    assert (status.value if status else None) == expected


def test_claim_status_read_from_label_or_code() -> None:
    assert claim_code("キャンセル要請(1)") == codes.ClaimCode.CANCEL_REQUESTED
    assert claim_code("11") == codes.ClaimCode.EXCHANGE_REQUESTED
    assert claim_code("99") is None


@pytest.mark.parametrize(
    "raw",
    ["2024-03-01 12:04:05", "2024/03/01 12:04:05", "20240301120405", "2024-03-01T12:04:05.123"],
)
def test_response_dates_are_jst(raw: str) -> None:
    parsed = parse_qoo10_datetime(raw)
    assert parsed == datetime(2024, 3, 1, 3, 4, 5, tzinfo=UTC)


def test_placeholder_dates_are_empty() -> None:
    assert parse_qoo10_datetime("1900-01-01 00:00:00") is None
    assert parse_qoo10_datetime("") is None
    with pytest.raises(ValueError):
        parse_qoo10_datetime("yesterday")


def test_windows_cover_the_period_without_gaps() -> None:
    since = datetime(2024, 1, 1, 0, 0, 0, 500000, tzinfo=UTC)
    until = since + timedelta(days=200)
    windows = list(search_windows(since, until, timedelta(days=89)))
    assert windows[0][0] == since.replace(microsecond=0)
    assert windows[-1][1] == until
    assert all(
        a[1].replace(microsecond=0) == b[0] for a, b in zip(windows, windows[1:], strict=False)
    )
    assert all(end - start <= timedelta(days=89) for start, end in windows)
    assert list(search_windows(until, since)) == []


def _window() -> tuple[datetime, datetime]:
    return datetime(2024, 1, 1, tzinfo=JST), datetime(2024, 1, 2, tzinfo=JST)


def test_unmapped_claim_status_is_ingested_as_unknown_not_dropped() -> None:
    row = {
        "orderNo": "5",
        "packNo": "50",
        "claimStatus": "(15)",
        "requestDate": "2024-01-01 10:00:00",
    }
    [change] = claim_changes([row], *_window())
    assert change.kind == ChangeKind.UNKNOWN
    assert change.extra["row"]["claimStatus"] == "(15)"


def test_unreadable_order_row_is_ingested_as_unknown() -> None:
    row = {"OrderNo": "5", "PackNo": "50", "OrderQty": 0, "PaymentDate": "2024-01-01 10:00:00"}
    [change] = shipping_changes([row], *_window())
    assert change.kind == ChangeKind.UNKNOWN
    assert change.unit_ids == ["5"]


def test_facts_outside_the_window_are_left_out() -> None:
    row = {
        "OrderNo": "5",
        "PackNo": "50",
        "OrderQty": 1,
        "OrderPrice": "10",
        "PaymentDate": "2023-12-31 10:00:00",
        "ShippingDate": "2024-01-01 09:00:00",
        "ShippingStatus": "配送中(4)",
        "DeliveryCompany": "ヤマト運輸",
        "TrackingNo": "1",
    }
    assert [c.kind for c in shipping_changes([row], *_window())] == [ChangeKind.DISPATCHED]


@pytest.mark.parametrize("method", [codes.SET_SENDING_INFO, codes.SET_SENDING_INFO_BULK])
def test_already_confirmed_is_not_an_already_done_dispatch(method: str) -> None:
    rule = codes.code_rule(method, codes.ALREADY_CONFIRMED)
    assert (rule.error, rule.already_done) == (ConflictError, False)
    assert codes.code_rule(codes.SET_SELLER_CHECK, codes.ALREADY_CONFIRMED).already_done


def test_bulk_answer_rows_read_per_order() -> None:
    rows = [
        {"contr_no": "1", "result_cd": 0, "transc_nm": "SUCCESS"},
        {"cont_no": "2", "result_cd": "-10004", "transc_nm": "open request"},
        {"contr_no": "3", "result_cd": "n/a"},
        {"contr_no": "4"},
        {"contr_no": "5", "result_cd": 0},
        {"contr_no": "5", "result_cd": -10001},
        {"contr_no": "6", "result_cd": 0},
        {"contr_no": "6", "result_cd": "0"},
        {"result_cd": 0},
    ]
    assert bulk_outcomes(rows) == {
        "1": (0, "SUCCESS"),
        "2": (-10004, "open request"),
        "3": (None, ""),
        "4": (None, ""),
        "5": (None, ""),
        "6": (0, ""),
    }


def test_r25_listed_claim_row_counts_as_open_unless_it_clearly_reads_closed() -> None:
    """R25's safe side: a row listed under ClaimStat 1 whose status cannot be read is open."""
    assert listed_claim_state("1", [{"claimStatus": "キャンセル要請(1)"}]).open_cancel_request
    assert listed_claim_state("1", [{"claimStatus": "???"}]).open_cancel_request
    assert not listed_claim_state("1", [{"claimStatus": "キャンセル完了(3)"}]).open_cancel_request
    assert not listed_claim_state("1", []).open_cancel_request
    shipped = listed_claim_state("1", [{"claimStatus": "1", "shippingDate": "2024-05-01 10:00:00"}])
    assert shipped.dispatched
    assert not listed_claim_state("1", [{"claimStatus": "1", "shippingDate": "bad"}]).dispatched
