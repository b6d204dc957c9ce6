"""Keep credentials out of logs and exception text."""

from __future__ import annotations

import re
from collections.abc import Iterable

_SECRET_PARAM = re.compile(
    r"(?i)(client_secret(?:_sign)?|access_token|api_key|apikey|key|password|pwd|authorization)"
    r"(\s*[=:]\s*|\"\s*:\s*\")([^&\s\",]+)"
)
_BEARER = re.compile(r"(?i)bearer\s+[A-Za-z0-9._~+/=-]+")


def redact(text: str, secrets: Iterable[str] = ()) -> str:
    """Return ``text`` with every known secret value and secret-looking parameter masked."""
    for value in secrets:
        if value and len(value) >= 4:
            text = text.replace(value, "***")
    text = _BEARER.sub("Bearer ***", text)
    return _SECRET_PARAM.sub(lambda m: f"{m.group(1)}{m.group(2)}***", text)
