"""The shared sync hook: one ``_request`` for every NeMo / NIM call.

Every call goes through :meth:`NemoBaseHook._request`: explicit connect/read timeouts, tenacity
retries with exponential backoff on connection errors, timeouts, HTTP 5xx and HTTP 429 only
(honouring ``Retry-After``, capped), and domain exceptions that carry method, URL, status,
truncated body and the object id. A 4xx other than 429 fails at once.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable, Iterator, Mapping, Sequence
from functools import cached_property
from typing import Any

import httpx
from tenacity import RetryCallState, Retrying, retry_if_exception, stop_after_attempt

from airflow.sdk import BaseHook
from include.nemo.exceptions import NemoApiError, NemoError
from include.nemo.hooks._common import (
    DEFAULT_EXPECTED,
    DEFAULT_READ_TIMEOUT,
    Endpoint,
    RetryableStatus,
    RetryPolicy,
    decode_body,
    describe_attempt_failure,
    endpoint_from_connection,
    error_from_response,
    error_from_transport,
    is_retryable_exception,
    is_retryable_status,
    pages,
)
from include.nemo.provider_info import ui_field_behaviour

log = logging.getLogger(__name__)

# A safety stop for list endpoints: a server that always reports one more page must not loop forever.
MAX_PAGES = 1000


def log_retry(method: str, url: str, object_id: str | None, policy: RetryPolicy) -> Callable[[RetryCallState], None]:
    """A tenacity ``before_sleep`` callback that says what failed and when the next attempt comes."""

    def _log(state: RetryCallState) -> None:
        exc = state.outcome.exception() if state.outcome else None
        wait = state.next_action.sleep if state.next_action else 0.0
        log.warning(
            "%s%s %s failed on attempt %d of %d (%s); retrying in %.2fs.",
            f"{object_id}: " if object_id else "",
            method,
            url,
            state.attempt_number,
            policy.retry_limit,
            describe_attempt_failure(exc) if exc else "?",
            wait,
        )

    return _log


class NemoBaseHook(BaseHook):
    """Base of the NeMo and NIM hooks: Connection handling and the single request function.

    Args:
        conn_id: The Airflow Connection to use (defaults to the class's ``default_conn_name``).
        timeout: Overrides the Connection's timeout: seconds (read timeout) or an ``httpx.Timeout``.
        retry_limit: Total attempts per request, the first included.
        retry_delay: First backoff in seconds (doubles per attempt).
        retry_max_delay: Cap of the exponential backoff.
        max_retry_after: Cap on a server's ``Retry-After``.
        sleep: The sleep function between attempts (tests pass a recorder instead of waiting).
        transport: An ``httpx`` transport (tests use ``httpx.MockTransport``; production leaves it ``None``).
    """

    conn_name_attr = "conn_id"
    default_conn_name = "nemo_default"
    conn_type = "nemo"
    hook_name = "NVIDIA NeMo Microservices"
    # The read timeout when neither the hook nor the Connection sets one.
    default_read_timeout: float = DEFAULT_READ_TIMEOUT
    # A cheap GET used by test_connection().
    test_connection_path = "/v1/namespaces"
    test_connection_params: Mapping[str, Any] = {"page_size": 1}

    def __init__(
        self,
        conn_id: str | None = None,
        *,
        timeout: float | httpx.Timeout | None = None,
        retry_limit: int = 5,
        retry_delay: float = 1.0,
        retry_max_delay: float = 30.0,
        max_retry_after: float = 60.0,
        sleep: Callable[[float], None] | None = None,
        transport: httpx.BaseTransport | None = None,
    ) -> None:
        super().__init__()
        self.conn_id = conn_id or self.default_conn_name
        self.timeout = timeout
        self.retry_policy = RetryPolicy(
            retry_limit=retry_limit,
            retry_delay=retry_delay,
            retry_max_delay=retry_max_delay,
            max_retry_after=max_retry_after,
        )
        self._sleep = sleep or time.sleep
        self._transport = transport
        self._client: httpx.Client | None = None

    # -- Connection -------------------------------------------------------------------------------------

    @classmethod
    def get_ui_field_behaviour(cls) -> dict[str, Any]:
        """Connection form: relabel host/password, hide login (see ``include.nemo.provider_info``)."""
        return ui_field_behaviour(cls.conn_type)

    @cached_property
    def endpoint(self) -> Endpoint:
        """The resolved base URL, API key, timeouts and TLS settings of this hook's Connection."""
        conn = self.get_connection(self.conn_id)
        return endpoint_from_connection(conn, timeout=self.timeout, default_read_timeout=self.default_read_timeout)

    @property
    def base_url(self) -> str:
        return self.endpoint.base_url

    def get_conn(self) -> httpx.Client:
        """The ``httpx.Client`` shared by this hook's calls (created on first use)."""
        if self._client is None:
            endpoint = self.endpoint
            self._client = httpx.Client(
                headers=endpoint.request_headers(),
                timeout=endpoint.timeout,
                verify=endpoint.verify,
                transport=self._transport,
                follow_redirects=False,
            )
        return self._client

    def close(self) -> None:
        """Close the HTTP client (the hook stays usable: the next call opens a new one)."""
        if self._client is not None:
            self._client.close()
            self._client = None

    def __enter__(self) -> NemoBaseHook:
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.close()

    def test_connection(self) -> tuple[bool, str]:
        """Call a cheap endpoint once (no retries) and report whether the service answered 2xx."""
        try:
            url = self.endpoint.url(self.test_connection_path)
            self._request("GET", self.test_connection_path, params=dict(self.test_connection_params), retry=False)
        except NemoError as exc:
            return False, str(exc)
        except Exception as exc:  # the UI shows the message; a traceback helps nobody there
            return False, f"{type(exc).__name__}: {exc}"
        return True, f"Connection {self.conn_id!r} works: GET {url} answered."

    # -- The one request function -------------------------------------------------------------------

    def _request(
        self,
        method: str,
        path: str,
        *,
        json: Any = None,
        params: Mapping[str, Any] | None = None,
        data: Mapping[str, Any] | None = None,
        expected: Sequence[int] = DEFAULT_EXPECTED,
        object_id: str | None = None,
        hint: str | None = None,
        retry: bool = True,
        timeout: float | httpx.Timeout | None = None,
        recover: Callable[[], Any] | None = None,
    ) -> Any:
        """Send one API request with retries; return the decoded JSON body (``None`` when empty).

        Args:
            method: HTTP method.
            path: Path below the Connection's base URL, starting with ``/`` (build it with ``api_path``).
            json: JSON body.
            params: Query parameters.
            data: Form fields (``application/x-www-form-urlencoded``).
            expected: Statuses that count as success. Any other status raises.
            object_id: What the call is about, for messages (``"customization job cust-1"``).
            hint: What to do on failure, replacing the per-status default.
            retry: ``False`` sends exactly once (test_connection).
            timeout: Overrides the timeout for this call.
            recover: For non-idempotent creates: called before each retry; if it returns something
                (the object the lost attempt created), that is returned instead of sending again.

        Raises:
            NemoNotFoundError: HTTP 404.
            NemoConflictError: HTTP 409.
            NemoAuthError: HTTP 401/403.
            NemoTimeoutError: no answer in time, after every attempt.
            NemoConnectionError: no answer at all, after every attempt.
            NemoApiError: any other failure (after retries the message says "failed N times. Giving up.").
        """
        method = method.upper()
        url = self.endpoint.url(path)
        client = self.get_conn()
        policy = self.retry_policy
        attempts = 0
        request_kwargs: dict[str, Any] = {"params": params, "json": json, "data": data}
        if timeout is not None:
            request_kwargs["timeout"] = timeout
        retrying = Retrying(
            stop=stop_after_attempt(policy.retry_limit if retry else 1),
            wait=policy.wait_for,
            retry=retry_if_exception(is_retryable_exception),
            sleep=self._sleep,
            before_sleep=log_retry(method, url, object_id, policy),
            reraise=True,
        )
        try:
            for attempt in retrying:
                with attempt:
                    attempts = attempt.retry_state.attempt_number
                    if attempts > 1 and recover is not None:
                        recovered = self._recover(recover, object_id or url)
                        if recovered is not None:
                            return recovered
                    response = client.request(method, url, **request_kwargs)
                    if response.status_code in expected:
                        return decode_body(method, url, response, object_id=object_id, attempts=attempts)
                    if is_retryable_status(response.status_code):
                        raise RetryableStatus(response)
                    raise error_from_response(method, url, response, object_id=object_id, attempts=attempts, hint=hint)
        except RetryableStatus as exc:
            raise error_from_response(method, url, exc.response, object_id=object_id, attempts=attempts, hint=hint) from None
        except httpx.TransportError as exc:
            raise error_from_transport(
                method, url, exc, object_id=object_id, attempts=attempts,
                timeout=self.endpoint.timeout if timeout is None else httpx.Timeout(timeout), conn_id=self.conn_id,
            ) from exc
        raise AssertionError("unreachable: tenacity either returns or raises")  # pragma: no cover

    @staticmethod
    def _recover(recover: Callable[[], Any], what: str) -> Any:
        """Look for the object a lost attempt may have created; a failed look-up just means "send again"."""
        try:
            recovered = recover()
        except NemoError as exc:
            log.warning("%s: could not check whether the previous attempt succeeded (%s); sending again.", what, exc)
            return None
        if recovered is not None:
            log.info("%s: the previous attempt did create it; using it instead of sending again.", what)
        return recovered

    def _paginate(
        self, path: str, *, params: Mapping[str, Any] | None = None, object_id: str | None = None, page_size: int = 100
    ) -> Iterator[dict[str, Any]]:
        """Yield the items of a NeMo list endpoint page by page (``{"data": [...], "pagination": {...}}``)."""
        query = dict(params or {})
        query.setdefault("page_size", page_size)
        page = 1
        while True:
            query["page"] = page
            body = self._request("GET", path, params=query, object_id=object_id)
            items, total_pages = pages(body)
            yield from items
            if total_pages is None or page >= total_pages or not items:
                return
            page += 1
            if page > MAX_PAGES:
                raise NemoApiError(
                    method="GET", url=self.endpoint.url(path), object_id=object_id,
                    reason=f"more than {MAX_PAGES} pages", hint="Narrow the listing with filters.",
                )
