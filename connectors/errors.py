"""Errors raised by every connector.

The tree (catch at the level you can act on)::

    ConnectorError                    anything a marketplace / Goodsflow call can raise
    ├── RetryableError                transient: timeout, connection reset, 5xx, 429; retry later
    │   └── RateLimitedError          429 / quota answer; ``retry_after`` seconds when known
    └── PermanentError                the service refused the request; never retried
        ├── AuthenticationError       credentials refused (after one token renewal)
        ├── ValidationError           4xx validation answer (bad payload, unknown id)
        └── ConflictError             the remote state forbids it (wrong status, open claim);
                                      re-read the remote state before deciding

``PermanentError`` carries the service's own ``code``, ``message`` and ``trace_id`` so the ledger
and the dead-letter topic can show the marketplace's reason. No error text ever contains a
credential: clients pass messages through :func:`connectors.redact.redact` first.
"""

from __future__ import annotations


class ConnectorError(Exception):
    """Base of all connector errors."""

    def __init__(
        self,
        message: str,
        *,
        code: str | None = None,
        trace_id: str | None = None,
        status: int | None = None,
    ) -> None:
        super().__init__(message)
        self.message = message
        self.code = code
        self.trace_id = trace_id
        self.status = status

    def __str__(self) -> str:
        parts = [self.message]
        if self.code:
            parts.append(f"code={self.code}")
        if self.status is not None:
            parts.append(f"http={self.status}")
        if self.trace_id:
            parts.append(f"traceId={self.trace_id}")
        return " ".join(parts)

    def as_dict(self) -> dict[str, object]:
        return {
            "error": type(self).__name__,
            "message": self.message,
            "code": self.code,
            "trace_id": self.trace_id,
            "status": self.status,
        }


class RetryableError(ConnectorError):
    """A transient failure; the same request may succeed later."""

    def __init__(self, message: str, *, retry_after: float | None = None, **kw: object) -> None:
        super().__init__(message, **kw)  # type: ignore[arg-type]
        self.retry_after = retry_after


class RateLimitedError(RetryableError):
    """The service answered 429 (or its quota equivalent)."""


class PermanentError(ConnectorError):
    """The service refused the request; retrying the same request cannot help."""


class AuthenticationError(PermanentError):
    """Credentials or token refused even after a renewal."""


class ValidationError(PermanentError):
    """The request itself was invalid (4xx validation answer, unknown id, bad field)."""


class ConflictError(PermanentError):
    """The remote state forbids the operation (wrong status, open claim, already done)."""
