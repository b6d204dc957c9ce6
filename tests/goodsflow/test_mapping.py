"""The one Goodsflow status table, JSON → models, and the callback parser (R06 inputs)."""

from __future__ import annotations

import json
from datetime import UTC, datetime

import pytest

from connectors.goodsflow import CallbackFormatError, map_status, parse_callback, to_scan
from connectors.goodsflow.mapping import (
    KST,
    STATUS_TABLE,
    event_from,
    parse_time,
    tracking_from,
    waybill_from,
)
from store.carriers import Carrier
from store.domain import PICKUP_OR_LATER, TrackingState

S = TrackingState

#: goodsflow.md §5.1: every documented code and the state R06 needs from it.
DOCUMENTED = {
    "PRINTED": S.NONE,
    "TRANSFERRED": S.NONE,
    "PICKUP_FAILED": S.NONE,
    "PICKUP": S.PICKED_UP,
    "IN_TRANSIT": S.IN_TRANSIT,
    "DLV_START": S.OUT_FOR_DELIVERY,
    "DLV_FAILED": S.OUT_FOR_DELIVERY,
    "COMPLETED": S.DELIVERED,
    "RETURNED": S.EXCEPTION,
    "CANCELED": S.NONE,
    "ERROR": S.EXCEPTION,
    "27": S.NONE,
    "29": S.NONE,
    "30": S.PICKED_UP,
    "50": S.IN_TRANSIT,
    "70": S.DELIVERED,
    "99": S.EXCEPTION,
}

#: OAS "Webhook 자료 데이터" example values.
OAS_EVENT = {
    "seq": 1,
    "serviceId": "22120513202300012459",
    "uniqueId": "22120513202300012459",
    "orderNo": "2022120622",
    "transporter": "HANJIN",
    "invoiceNo": "534000964792",
    "statusDateTime": "2023-01-02 09:19:00",
    "deliveryStatus": "COMPLETED",
    "location": "강서방화(대)",
}


@pytest.mark.parametrize(("code", "state"), DOCUMENTED.items())
def test_r06_documented_codes_map_to_tracking_states(code: str, state: TrackingState) -> None:
    assert map_status(code) is state
    assert map_status(code.lower()) is state


def test_r06_only_pickup_or_later_codes_count_as_scans() -> None:
    scans = {code for code, state in STATUS_TABLE.items() if state in PICKUP_OR_LATER}
    assert scans == {
        "PICKUP",
        "IN_TRANSIT",
        "DLV_START",
        "DLV_FAILED",
        "COMPLETED",
        "30",
        "40",
        "50",
        "60",
        "70",
    }


@pytest.mark.parametrize(
    ("code", "state"),
    [("31", S.PICKED_UP), ("41", S.IN_TRANSIT), ("62", S.OUT_FOR_DELIVERY), ("71", S.DELIVERED)],
)
def test_undocumented_numeric_codes_fall_back_to_their_decade(
    code: str, state: TrackingState
) -> None:
    assert map_status(code) is state


@pytest.mark.parametrize("code", ["", None, "TELEPORTED", "8", "123", "10"])
def test_unknown_codes_map_to_none(code: str | None) -> None:
    assert map_status(code) is None


def test_times_are_korean_local_time() -> None:
    at = parse_time("2023-01-02 09:19:00")
    assert at == datetime(2023, 1, 2, 0, 19, tzinfo=UTC)
    assert at is not None and at.tzinfo is KST
    assert parse_time("2023-01-02 09:19") == at
    assert parse_time("yesterday") is None and parse_time(None) is None


def test_oas_webhook_example_maps_to_a_delivered_scan() -> None:
    event = event_from(OAS_EVENT)
    assert (event.carrier, event.invoice_no, event.state, event.seq) == (
        Carrier.HANJIN,
        "534000964792",
        S.DELIVERED,
        1,
    )
    scan = to_scan(event)
    assert scan is not None and scan.raw_code == "COMPLETED" and scan.location == "강서방화(대)"


def test_oas_tracking_example_reads_state_and_details() -> None:
    data = {
        "id": "22092914030000000001",
        "transporter": "HANJIN",
        "invoiceNo": "571772733630",
        "uniqueId": "20221130201433587694",
        "pickupDateTime": "2022-12-06 09:50:00",
        "completeDateTime": "2022-12-07 14:50:00",
        "lastDlvStatType": "70",
        "lastStatus": "COMPLETED",
        "lastStatusDateTime": "2022-12-07 14:50:00",
        "details": [
            {
                "seq": 1,
                "statusDateTime": "2022-12-07 14:50:00",
                "status": "COMPLETED",
                "dlvStatType": "70",
                "location": "학동대리점",
            }
        ],
    }
    info = tracking_from(data)
    assert info.state is S.DELIVERED and info.carrier is Carrier.HANJIN
    assert info.events[0].invoice_no == "571772733630" and info.events[0].state is S.DELIVERED
    del data["lastStatus"]
    assert tracking_from(data).state is S.DELIVERED  # numeric code alone is enough


def test_cj_transporter_code_is_korex() -> None:
    wb = waybill_from({"id": "1", "transporter": "KOREX", "invoiceNo": "684809623814"})
    assert wb.carrier is Carrier.CJ and wb.state is None


@pytest.mark.parametrize(
    "body",
    [
        json.dumps({"transactionId": "x", "success": True, "data": [OAS_EVENT]}),
        json.dumps([OAS_EVENT]).encode(),
        OAS_EVENT,
        {"data": [OAS_EVENT]},
    ],
)
def test_callback_shapes_parse_to_the_same_event(body: object) -> None:
    [event] = parse_callback(body)  # type: ignore[arg-type]
    assert event == event_from(OAS_EVENT)


@pytest.mark.parametrize(
    "body", [b"not json", b"42", json.dumps({"data": ["x"]}), json.dumps([{"invoiceNo": "1"}])]
)
def test_malformed_callbacks_are_refused(body: bytes | str) -> None:
    with pytest.raises(CallbackFormatError):
        parse_callback(body)


def test_unknown_status_or_carrier_gives_no_scan() -> None:
    assert to_scan(event_from({**OAS_EVENT, "deliveryStatus": "TELEPORTED"})) is None
    assert to_scan(event_from({**OAS_EVENT, "transporter": "UNKNOWN"})) is None
    assert parse_callback(json.dumps({"data": []})) == []
