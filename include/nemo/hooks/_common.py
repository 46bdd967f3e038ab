"""What the sync hooks and the async client share: endpoint settings, the retry policy, error building.

Nothing here imports Airflow. A Connection is read through the attributes every Airflow
Connection has (``conn_id``, ``host``, ``schema``, ``port``, ``password``, ``extra_dejson``), so
the same parsing serves the Task SDK, the triggerer and plain tests.
"""

from __future__ import annotations

import email.utils
import json as jsonlib
import logging
import math
import os
import time
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import quote, urlsplit, urlunsplit

import httpx
from tenacity import RetryCallState

from include.nemo.exceptions import (
    NemoApiError,
    NemoAuthError,
    NemoConfigurationError,
    NemoConflictError,
    NemoConnectionError,
    NemoNotFoundError,
    NemoTimeoutError,
)

log = logging.getLogger(__name__)

DEFAULT_CONNECT_TIMEOUT = 10.0
DEFAULT_READ_TIMEOUT = 60.0
DEFAULT_EXPECTED = (200, 201, 202, 204)

# Keys a Connection's extra JSON may hold. Anything else is reported (a typo must not pass unnoticed).
KNOWN_EXTRA_KEYS = frozenset({"timeout", "verify", "headers"})


@dataclass(frozen=True)
class RetryPolicy:
    """How often and how patiently a request is retried.

    Only connection errors, timeouts, HTTP 5xx and HTTP 429 are retried; any other status fails at once.

    Attributes:
        retry_limit: Total attempts, the first included (1 = no retry).
        retry_delay: Wait before the second attempt, in seconds; doubles on each further attempt.
        retry_max_delay: Upper bound of the exponential wait.
        max_retry_after: Upper bound on a server's ``Retry-After`` (a hostile or buggy value must not
            park a worker for hours).
    """

    retry_limit: int = 5
    retry_delay: float = 1.0
    retry_max_delay: float = 30.0
    max_retry_after: float = 60.0

    def __post_init__(self) -> None:
        if not isinstance(self.retry_limit, int) or self.retry_limit < 1:
            raise NemoConfigurationError(f"retry_limit must be an integer >= 1 (total attempts), got {self.retry_limit!r}")
        for name in ("retry_delay", "retry_max_delay", "max_retry_after"):
            value = getattr(self, name)
            if not isinstance(value, (int, float)) or value < 0 or math.isnan(value):
                raise NemoConfigurationError(f"{name} must be a number >= 0 (seconds), got {value!r}")

    def backoff(self, attempt_number: int) -> float:
        """Exponential wait after the given (1-based) failed attempt."""
        return min(self.retry_max_delay, self.retry_delay * (2 ** max(attempt_number - 1, 0)))

    def wait_for(self, retry_state: RetryCallState) -> float:
        """Tenacity ``wait`` callback: the server's ``Retry-After`` when it sent one (capped), else the backoff."""
        exc = retry_state.outcome.exception() if retry_state.outcome else None
        if isinstance(exc, RetryableStatus) and exc.retry_after is not None:
            return min(exc.retry_after, self.max_retry_after)
        return self.backoff(retry_state.attempt_number)


class RetryableStatus(Exception):
    """Internal: a response with a retryable status (5xx, 429). Becomes a NemoApiError once retries run out."""

    def __init__(self, response: httpx.Response) -> None:
        self.response = response
        self.retry_after = parse_retry_after(response.headers.get("Retry-After"))
        super().__init__(f"HTTP {response.status_code}")


def is_retryable_exception(exc: BaseException) -> bool:
    """Whether a failed attempt may be retried: retryable statuses and transport failures."""
    if isinstance(exc, RetryableStatus):
        return True
    # A bad scheme is a configuration error; retrying cannot fix it.
    if isinstance(exc, httpx.UnsupportedProtocol):
        return False
    return isinstance(exc, httpx.TransportError)


def is_retryable_status(status_code: int) -> bool:
    return status_code == 429 or status_code >= 500


def parse_retry_after(value: str | None, now: float | None = None) -> float | None:
    """Seconds to wait from a ``Retry-After`` header (delta-seconds or an HTTP date), or ``None``."""
    if not value:
        return None
    value = value.strip()
    try:
        seconds = float(value)
    except ValueError:
        try:
            when = email.utils.parsedate_to_datetime(value)
        except (TypeError, ValueError):
            log.warning("Ignoring an unparseable Retry-After header %r.", value)
            return None
        seconds = when.timestamp() - (time.time() if now is None else now)
    if math.isnan(seconds) or math.isinf(seconds):
        return None
    return max(seconds, 0.0)


@dataclass(frozen=True)
class Endpoint:
    """Where and how to call one service, resolved from an Airflow Connection.

    Attributes:
        conn_id: The Connection it came from (for messages).
        base_url: Scheme, host, optional port and path prefix, without a trailing slash.
        api_key: Bearer token from the Connection's password, or ``None``.
        timeout: Connect/read/write/pool timeouts.
        verify: TLS verification: ``True``, ``False`` or a CA bundle path.
        headers: Extra static headers from the Connection's extra ``headers``.
    """

    conn_id: str
    base_url: str
    api_key: str | None = None
    timeout: httpx.Timeout = field(default_factory=lambda: httpx.Timeout(DEFAULT_READ_TIMEOUT, connect=DEFAULT_CONNECT_TIMEOUT))
    verify: bool | str = True
    headers: Mapping[str, str] = field(default_factory=dict)

    def request_headers(self) -> dict[str, str]:
        headers = {"Accept": "application/json", **self.headers}
        if self.api_key:
            headers["Authorization"] = f"Bearer {self.api_key}"
        return headers

    def url(self, path: str) -> str:
        if not path.startswith("/"):
            raise ValueError(f"API paths must start with '/', got {path!r}")
        return f"{self.base_url}{path}"


def api_path(*segments: str) -> str:
    """Join path segments, quoting each one so an id or name can never add a path level.

    ``api_path("v1", "datasets", ns, name)`` -> ``/v1/datasets/<ns>/<name>``.
    """
    parts = []
    for segment in segments:
        if segment is None or str(segment) == "":
            raise ValueError(f"empty path segment in {segments!r}: every id and name must be non-empty")
        parts.append(quote(str(segment), safe=""))
    return "/" + "/".join(parts)


def _to_float(value: Any, what: str, conn_id: str) -> float:
    try:
        number = float(value)
    except (TypeError, ValueError):
        raise NemoConfigurationError(
            f"Connection {conn_id!r}: {what} must be a number of seconds, got {value!r}. Fix the extra JSON."
        ) from None
    if number <= 0 or math.isnan(number) or math.isinf(number):
        raise NemoConfigurationError(f"Connection {conn_id!r}: {what} must be > 0 seconds, got {value!r}.")
    return number


def parse_timeout(value: Any, conn_id: str, default: httpx.Timeout) -> httpx.Timeout:
    """A timeout from a Connection extra: a number (read timeout) or ``{"connect": s, "read": s, ...}``."""
    if value is None or value == "":
        return default
    if isinstance(value, Mapping):
        unknown = sorted(set(value) - {"connect", "read", "write", "pool"})
        if unknown:
            raise NemoConfigurationError(
                f"Connection {conn_id!r}: extra timeout has unknown key(s) {unknown}; "
                "use connect, read, write, pool (seconds)."
            )
        parts = {key: _to_float(val, f"timeout.{key}", conn_id) for key, val in value.items()}
        read = parts.get("read", default.read)
        return httpx.Timeout(
            read,
            connect=parts.get("connect", default.connect),
            write=parts.get("write", read),
            pool=parts.get("pool", default.pool),
        )
    read = _to_float(value, "timeout", conn_id)
    return httpx.Timeout(read, connect=min(read, default.connect or read))


def parse_verify(value: Any, conn_id: str) -> bool | str:
    """TLS verification from a Connection extra: a bool, "true"/"false", or a CA bundle path that exists."""
    if value is None or value == "":
        return True
    if isinstance(value, bool):
        return value
    if isinstance(value, str):
        lowered = value.strip().lower()
        if lowered in ("true", "1", "yes"):
            return True
        if lowered in ("false", "0", "no"):
            return False
        if os.path.exists(value):
            return value
        raise NemoConfigurationError(
            f"Connection {conn_id!r}: extra verify={value!r} is neither true/false nor an existing CA bundle path. "
            "Give the path of a PEM file readable by the worker and the triggerer."
        )
    raise NemoConfigurationError(f"Connection {conn_id!r}: extra verify must be a bool or a CA bundle path, got {value!r}.")


def _extra_of(conn: Any) -> dict[str, Any]:
    extra = getattr(conn, "extra_dejson", None)
    if extra is None:
        raw = getattr(conn, "extra", None)
        if not raw:
            return {}
        try:
            extra = jsonlib.loads(raw)
        except ValueError:
            raise NemoConfigurationError(f"Connection {conn.conn_id!r}: extra is not valid JSON.") from None
    if not isinstance(extra, dict):
        raise NemoConfigurationError(f"Connection {conn.conn_id!r}: extra must be a JSON object, got {type(extra).__name__}.")
    return dict(extra)


def base_url_from_connection(conn: Any) -> str:
    """The service base URL from ``host`` (a full URL, or a bare host name), ``schema`` (scheme) and ``port``."""
    conn_id = conn.conn_id
    host = (conn.host or "").strip()
    if not host:
        raise NemoConfigurationError(
            f"Connection {conn_id!r} has no host. Set host to the service base URL, e.g. http://nemo.example.com:8000."
        )
    schema = (conn.schema or "").strip().lower()
    if schema and schema not in ("http", "https"):
        raise NemoConfigurationError(
            f"Connection {conn_id!r}: schema {conn.schema!r} is not http or https. The schema field is the URL scheme, "
            "used when host has none; put a path prefix into host as a full URL instead."
        )
    port = conn.port
    if "://" in host:
        parts = urlsplit(host)
        if parts.scheme not in ("http", "https") or not parts.hostname:
            raise NemoConfigurationError(
                f"Connection {conn_id!r}: host {host!r} is not an http(s) URL. Use e.g. https://nemo.example.com."
            )
        if schema and schema != parts.scheme:
            raise NemoConfigurationError(
                f"Connection {conn_id!r}: host says {parts.scheme}:// but schema says {schema}. Leave schema empty."
            )
        netloc = parts.netloc
        if port:
            if parts.port and parts.port != int(port):
                raise NemoConfigurationError(
                    f"Connection {conn_id!r}: host has port {parts.port} but the port field says {port}. Keep one."
                )
            if not parts.port:
                netloc = f"{netloc}:{int(port)}"
        if parts.query or parts.fragment:
            raise NemoConfigurationError(f"Connection {conn_id!r}: host {host!r} must not carry a query or fragment.")
        return urlunsplit((parts.scheme, netloc, parts.path.rstrip("/"), "", ""))
    if "/" in host:
        raise NemoConfigurationError(
            f"Connection {conn_id!r}: host {host!r} has a path but no scheme. Write it as a full URL (https://...)."
        )
    scheme = schema or ("https" if port and int(port) == 443 else "http")
    netloc = f"{host}:{int(port)}" if port else host
    return f"{scheme}://{netloc}"


def endpoint_from_connection(conn: Any, *, timeout: float | httpx.Timeout | None = None, default_read_timeout: float = DEFAULT_READ_TIMEOUT) -> Endpoint:
    """Resolve an Airflow Connection into an :class:`Endpoint`.

    Args:
        conn: An Airflow Connection (Task SDK or core): ``host`` is the base URL, ``password`` an optional API key,
            extra JSON ``timeout``, ``verify``, ``headers``.
        timeout: A hook argument that overrides the Connection's timeout (number = read timeout).
        default_read_timeout: The read timeout when neither the hook nor the Connection sets one.

    Raises:
        NemoConfigurationError: naming the Connection and the field to fix.
    """
    conn_id = conn.conn_id
    extra = _extra_of(conn)
    unknown = sorted(key for key in extra if key not in KNOWN_EXTRA_KEYS and not key.startswith("extra__"))
    if unknown:
        # Not an error: other tools may share a Connection. But say so, a typo ("timout") would otherwise be silent.
        log.warning("Connection %s: ignoring unknown extra key(s) %s (known: %s).", conn_id, unknown, sorted(KNOWN_EXTRA_KEYS))
    default = httpx.Timeout(default_read_timeout, connect=DEFAULT_CONNECT_TIMEOUT)
    if isinstance(timeout, httpx.Timeout):
        resolved_timeout = timeout
    elif timeout is not None:
        resolved_timeout = parse_timeout(timeout, conn_id, default)
    else:
        resolved_timeout = parse_timeout(extra.get("timeout"), conn_id, default)
    headers = extra.get("headers") or {}
    if not isinstance(headers, Mapping) or not all(isinstance(k, str) and isinstance(v, str) for k, v in headers.items()):
        raise NemoConfigurationError(f"Connection {conn_id!r}: extra headers must be an object of string values.")
    api_key = conn.password or None
    return Endpoint(
        conn_id=conn_id,
        base_url=base_url_from_connection(conn),
        api_key=api_key,
        timeout=resolved_timeout,
        verify=parse_verify(extra.get("verify"), conn_id),
        headers=dict(headers),
    )


_ERROR_CLASSES: dict[int, type[NemoApiError]] = {
    401: NemoAuthError,
    403: NemoAuthError,
    404: NemoNotFoundError,
    409: NemoConflictError,
}


def error_from_response(
    method: str, url: str, response: httpx.Response, *, object_id: str | None, attempts: int, hint: str | None = None
) -> NemoApiError:
    """The domain exception for a failed response (404 -> NemoNotFoundError, 409 -> NemoConflictError, ...)."""
    cls = _ERROR_CLASSES.get(response.status_code, NemoApiError)
    return cls(
        method=method,
        url=url,
        status_code=response.status_code,
        body=response.content,
        object_id=object_id,
        attempts=attempts,
        reason=response.reason_phrase or None,
        hint=hint,
    )


def error_from_transport(
    method: str, url: str, exc: httpx.HTTPError, *, object_id: str | None, attempts: int, timeout: httpx.Timeout, conn_id: str
) -> NemoApiError:
    """The domain exception for a request that got no response (refused, reset, timed out)."""
    if isinstance(exc, httpx.TimeoutException):
        which = type(exc).__name__
        return NemoTimeoutError(
            method=method,
            url=url,
            object_id=object_id,
            attempts=attempts,
            reason=f"{which} after connect={timeout.connect}s/read={timeout.read}s",
            hint=(
                f"The service did not answer in time. Check its load, or raise the timeout in Connection "
                f"{conn_id!r} extra, e.g. {{\"timeout\": {{\"connect\": 10, \"read\": 300}}}}."
            ),
        )
    if isinstance(exc, httpx.UnsupportedProtocol):
        return NemoConnectionError(
            method=method, url=url, object_id=object_id, attempts=attempts, reason=str(exc),
            hint=f"Fix the scheme of Connection {conn_id!r}: it must be http or https.",
        )
    return NemoConnectionError(
        method=method,
        url=url,
        object_id=object_id,
        attempts=attempts,
        reason=f"{type(exc).__name__}: {exc}" if str(exc) else type(exc).__name__,
        hint=f"Check that Connection {conn_id!r} points at a reachable host and the service is up.",
    )


def decode_body(method: str, url: str, response: httpx.Response, *, object_id: str | None, attempts: int) -> Any:
    """Parse a successful response as JSON (``None`` when empty); a non-JSON body is a clear error."""
    if not response.content or response.status_code == 204:
        return None
    try:
        return response.json()
    except ValueError:
        raise NemoApiError(
            method=method,
            url=url,
            status_code=response.status_code,
            body=response.content,
            object_id=object_id,
            attempts=attempts,
            reason="the response is not JSON",
            hint="Check that the Connection's host is the API base URL, not a web page or a proxy login.",
        ) from None


def describe_attempt_failure(exc: BaseException) -> str:
    if isinstance(exc, RetryableStatus):
        return f"HTTP {exc.response.status_code}"
    return type(exc).__name__


def pages(first: Any, key: str = "data") -> tuple[list[Any], int | None]:
    """Items and total page count of one NeMo list response (``{"data": [...], "pagination": {...}}``)."""
    if isinstance(first, list):
        return first, None
    if not isinstance(first, Mapping):
        return [], None
    items = first.get(key) or []
    pagination = first.get("pagination") or {}
    total = pagination.get("total_pages") if isinstance(pagination, Mapping) else None
    return list(items), total if isinstance(total, int) else None


def first_match(items: Iterable[Mapping[str, Any]], predicate: Any) -> Mapping[str, Any] | None:
    """The most recently created item that satisfies ``predicate`` (ISO timestamps sort as text)."""
    matches = [item for item in items if predicate(item)]
    if not matches:
        return None
    if len(matches) > 1:
        log.warning("%d objects match; using the most recently created one.", len(matches))
    return max(matches, key=lambda item: str(item.get("created_at") or ""))
