"""Errors raised by the NeMo microservices and NIM hooks.

Every API error leads with the object it concerns (a job id, a dataset name), carries the
HTTP method, URL, status code and a truncated response body, and ends with what to do next.
Nothing here imports Airflow, so triggers, operators, scripts and tests share these classes.
"""

from __future__ import annotations

from typing import Any

# Response bodies can be whole HTML error pages; keep enough to diagnose, not to flood a log.
MAX_BODY_CHARS = 1000


def truncate_body(body: str | bytes | None, limit: int = MAX_BODY_CHARS) -> str:
    """Return a response body as text, cut to ``limit`` characters with a marker saying how much was cut."""
    if body is None:
        return ""
    if isinstance(body, bytes):
        body = body.decode("utf-8", errors="replace")
    body = body.strip()
    if len(body) <= limit:
        return body
    return f"{body[:limit]}... [{len(body) - limit} more characters]"


class NemoError(Exception):
    """Base class of every error raised by the NeMo integration."""


class NemoConfigurationError(NemoError, ValueError):
    """A Connection (or a hook argument) is unusable: missing host, malformed extra JSON, bad timeout."""


class NemoApiError(NemoError):
    """A NeMo or NIM API call failed.

    Attributes:
        method: HTTP method of the failing request.
        url: Full URL of the failing request.
        status_code: HTTP status, or ``None`` when no response arrived (connection error, timeout).
        body: The response body, truncated to ``MAX_BODY_CHARS``.
        object_id: What the call was about (``customization job cust-123``), or ``None``.
        attempts: How many times the request was sent.
        hint: The advice that ends the message.
    """

    def __init__(
        self,
        *,
        method: str,
        url: str,
        status_code: int | None = None,
        body: str | bytes | None = None,
        object_id: str | None = None,
        attempts: int = 1,
        reason: str | None = None,
        hint: str | None = None,
    ) -> None:
        self.method = method.upper()
        self.url = url
        self.status_code = status_code
        self.body = truncate_body(body)
        self.object_id = object_id
        self.attempts = attempts
        self.reason = reason
        self.hint = hint or default_hint(status_code)
        super().__init__(self._format())

    def _format(self) -> str:
        parts = []
        if self.object_id:
            parts.append(f"{self.object_id}: ")
        parts.append(f"{self.method} {self.url}")
        if self.status_code is not None:
            parts.append(f" returned HTTP {self.status_code}")
        if self.reason:
            parts.append(f" ({self.reason})" if self.status_code is not None else f" failed: {self.reason}")
        if self.body:
            parts.append(f"; response body: {self.body}")
        if self.attempts > 1:
            parts.append(f". The request failed {self.attempts} times. Giving up")
        parts.append(f". {self.hint}")
        return "".join(parts)

    def to_dict(self) -> dict[str, Any]:
        """A JSON-safe summary for XCom, trigger events or the results store (no secrets: no headers)."""
        return {
            "error": type(self).__name__,
            "method": self.method,
            "url": self.url,
            "status_code": self.status_code,
            "body": self.body,
            "object_id": self.object_id,
            "attempts": self.attempts,
            "message": str(self),
        }


class NemoNotFoundError(NemoApiError):
    """HTTP 404: the object does not exist (never created, already deleted, or the wrong namespace)."""


class NemoConflictError(NemoApiError):
    """HTTP 409: the object already exists, or its state forbids the operation (cancel a finished job)."""


class NemoAuthError(NemoApiError):
    """HTTP 401/403: the API key in the Connection is missing, wrong or lacks permission."""


class NemoConnectionError(NemoApiError):
    """No HTTP response: the service could not be reached (refused, DNS, TLS, reset) after every retry."""


class NemoTimeoutError(NemoConnectionError):
    """The service did not answer within the configured timeout, after every retry."""


def default_hint(status_code: int | None) -> str:
    """What to do about a failure with this status (the end of every error message)."""
    if status_code is None:
        return "Check that the Connection's host is reachable from the worker and the service is up."
    if status_code in (401, 403):
        return "Check the API key in the Connection's password field and its permissions."
    if status_code == 404:
        return "Check that the object exists in this namespace and that the Connection points at the right service."
    if status_code == 409:
        return "The object already exists or is in a state that forbids this call; reuse it or delete it first."
    if status_code in (400, 422):
        return "Fix the request fields named in the response body (they must match the NeMo API version you run)."
    if status_code == 429:
        return "The service is rate limiting; lower the task concurrency (pool slots) or raise the retry settings."
    if status_code >= 500:
        return "The service kept failing; check its health and logs, then clear the task to retry."
    return "See the response body for details."
