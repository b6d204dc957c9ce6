"""The QAPI wire form: how one request is built and one answer is read.

Request (qoo10.md §1-3): ``POST {host}/GMKT.INC.Front.QAPIService/ebayjapan.qapi/{Class}.{Method}``
with a UTF-8 ``application/x-www-form-urlencoded`` body (``returnType=application/json`` plus the
method's parameters; empty optional parameters are sent as ``""``), and the headers
``GiosisCertificationKey`` (the seller authorization key; the issued API key for
CreateCertificationKey) and ``QAPIVersion``.

Answer (§4): HTTP 200 with ``{"ResultCode", "ResultMsg", "ResultObject"}``; framework failures
answer ``{"ErrorCode", "ErrorMsg"}``; an unknown class/method answers plain text ("Can't find
…"). :func:`read_answer` returns ``ResultObject`` or raises the error the code table names.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Mapping
from typing import Any

import httpx

from connectors.base import parse_retry_after, status_error
from connectors.contract import UnsupportedOperationError
from connectors.errors import PermanentError, RetryableError
from connectors.qoo10.codes import OK, QAPI_PATH, classify, code_rule, qapi_version
from connectors.qoo10.errors import KeyRejectedError

KEY_HEADER = "GiosisCertificationKey"
VERSION_HEADER = "QAPIVersion"
RETURN_TYPE = "application/json"


def method_path(method: str) -> str:
    return f"{QAPI_PATH}/{method}"


def request_headers(key: str, method: str) -> dict[str, str]:
    return {
        KEY_HEADER: key,
        VERSION_HEADER: qapi_version(method),
        "Content-Type": "application/x-www-form-urlencoded; charset=utf-8",
        "Accept": "application/json",
    }


def request_form(params: Mapping[str, object]) -> dict[str, str]:
    """Form fields as strings; None becomes "" (null reportedly yields -90001)."""
    form = {"returnType": RETURN_TYPE}
    for name, value in params.items():
        form[name] = "" if value is None else str(value)
    return form


def read_answer(method: str, response: httpx.Response, redact: Callable[[str], str]) -> Any:
    """``ResultObject`` of a successful answer.

    Raises: the :mod:`connectors.errors` class of a non-200 status (429/5xx retryable,
    ``Retry-After`` honoured); :class:`KeyRejectedError` when the code asks for a key renewal;
    the class :func:`connectors.qoo10.codes.classify` names for any other non-zero code;
    :class:`UnsupportedOperationError` for "Can't find service/method"; RetryableError for a
    non-JSON 200 answer (a gateway page, not the API).
    """
    body_text = response.text
    payload: Any
    try:
        payload = json.loads(body_text) if body_text.strip() else None
    except ValueError:
        payload = None
    if response.status_code != 200:
        code, message = _code_and_message(payload)
        raise status_error(
            response.status_code,
            redact(f"{method}: HTTP {response.status_code} {message or body_text[:200]}"),
            code=str(code) if code is not None else None,
            retry_after=parse_retry_after(response.headers.get("Retry-After")),
        )
    if not isinstance(payload, dict):
        snippet = redact(body_text.strip()[:200])
        if snippet.lower().startswith("can't find"):
            raise UnsupportedOperationError(f"{method}: {snippet}", code="NOT_FOUND", status=200)
        if payload is None:
            raise RetryableError(f"{method}: answer is not JSON: {snippet!r}", status=200)
        raise PermanentError(f"{method}: unexpected answer shape", status=200)
    code, message = _code_and_message(payload)
    if code is None:
        raise PermanentError(f"{method}: answer without ResultCode/ErrorCode", status=200)
    if code == OK:
        return payload.get("ResultObject")
    error = classify(method, code, redact(message))
    if code_rule(method, code).renew_key:
        raise KeyRejectedError(error)
    raise error


def _code_and_message(payload: Any) -> tuple[int | None, str]:
    if not isinstance(payload, dict):
        return None, ""
    for code_name, msg_name in (("ResultCode", "ResultMsg"), ("ErrorCode", "ErrorMsg")):
        if code_name in payload:
            try:
                return int(payload[code_name]), str(payload.get(msg_name) or "")
            except (TypeError, ValueError):
                return None, str(payload.get(msg_name) or "")
    return None, ""
