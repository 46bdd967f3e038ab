"""Async client for triggers: the same retry rules as the sync hooks, one HTTP client per poll loop.

A trigger carries only a ``conn_id``; the Connection is looked up inside the triggerer with the
Task SDK's async API (``BaseHook.aget_connection``, which never blocks the event loop)::

    async with NemoAsyncClient("nemo_default") as client:
        while True:
            status = customization_status_of(await client.get_customization_status(job_id))
            ...
            await asyncio.sleep(poll_interval)
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Awaitable, Callable, Mapping, Sequence
from typing import Any

import httpx
from tenacity import AsyncRetrying, retry_if_exception, stop_after_attempt

from include.nemo.exceptions import NemoConflictError, NemoNotFoundError
from include.nemo.hooks._common import (
    DEFAULT_EXPECTED,
    DEFAULT_READ_TIMEOUT,
    Endpoint,
    RetryableStatus,
    RetryPolicy,
    api_path,
    decode_body,
    endpoint_from_connection,
    error_from_response,
    error_from_transport,
    is_retryable_exception,
    is_retryable_status,
)
from include.nemo.hooks.base import log_retry
from include.nemo.hooks.nim import model_ids

log = logging.getLogger(__name__)


class NemoAsyncClient:
    """Async calls for triggers, built from a ``conn_id`` (a ``nemo`` or a ``nim`` Connection).

    Use it as ``async with`` so its ``httpx.AsyncClient`` lives exactly as long as the poll loop.
    Platform calls (customization, evaluation, deployment) need the ``nemo`` Connection;
    ``list_nim_models`` / ``is_model_served`` need the ``nim`` one.

    Args:
        conn_id: The Airflow Connection id.
        timeout: Overrides the Connection's timeout (seconds = read timeout, or an ``httpx.Timeout``).
        retry_limit: Total attempts per request.
        retry_delay: First backoff in seconds (doubles per attempt).
        retry_max_delay: Cap of the exponential backoff.
        max_retry_after: Cap on a server's ``Retry-After``.
        sleep: Async sleep between attempts (tests pass a recorder).
        transport: An ``httpx`` async transport (tests only).
    """

    def __init__(
        self,
        conn_id: str,
        *,
        timeout: float | httpx.Timeout | None = None,
        retry_limit: int = 5,
        retry_delay: float = 1.0,
        retry_max_delay: float = 30.0,
        max_retry_after: float = 60.0,
        sleep: Callable[[float], Awaitable[None]] | None = None,
        transport: httpx.AsyncBaseTransport | None = None,
        default_read_timeout: float = DEFAULT_READ_TIMEOUT,
    ) -> None:
        if not conn_id or not isinstance(conn_id, str):
            raise ValueError(f"conn_id must be a non-empty string, got {conn_id!r}")
        self.conn_id = conn_id
        self.timeout = timeout
        self.retry_policy = RetryPolicy(
            retry_limit=retry_limit, retry_delay=retry_delay, retry_max_delay=retry_max_delay,
            max_retry_after=max_retry_after,
        )
        self._sleep = sleep or asyncio.sleep
        self._transport = transport
        self._default_read_timeout = default_read_timeout
        self._endpoint: Endpoint | None = None
        self._client: httpx.AsyncClient | None = None

    async def open(self) -> NemoAsyncClient:
        """Resolve the Connection (async, via the Task SDK) and open the HTTP client."""
        if self._client is not None:
            return self
        if self._endpoint is None:
            from airflow.sdk import BaseHook

            conn = await BaseHook.aget_connection(self.conn_id)
            self._endpoint = endpoint_from_connection(
                conn, timeout=self.timeout, default_read_timeout=self._default_read_timeout
            )
        endpoint = self._endpoint
        self._client = httpx.AsyncClient(
            headers=endpoint.request_headers(), timeout=endpoint.timeout, verify=endpoint.verify,
            transport=self._transport, follow_redirects=False,
        )
        return self

    async def aclose(self) -> None:
        if self._client is not None:
            await self._client.aclose()
            self._client = None

    async def __aenter__(self) -> NemoAsyncClient:
        return await self.open()

    async def __aexit__(self, *exc_info: object) -> None:
        await self.aclose()

    @property
    def endpoint(self) -> Endpoint:
        if self._endpoint is None:
            raise RuntimeError("NemoAsyncClient is not open: use 'async with NemoAsyncClient(conn_id) as client'")
        return self._endpoint

    async def _request(
        self,
        method: str,
        path: str,
        *,
        json: Any = None,
        params: Mapping[str, Any] | None = None,
        expected: Sequence[int] = DEFAULT_EXPECTED,
        object_id: str | None = None,
        hint: str | None = None,
    ) -> Any:
        """The async twin of ``NemoBaseHook._request``: same retries, same exceptions."""
        if self._client is None:
            await self.open()
        assert self._client is not None
        method = method.upper()
        url = self.endpoint.url(path)
        policy = self.retry_policy
        attempts = 0
        retrying = AsyncRetrying(
            stop=stop_after_attempt(policy.retry_limit),
            wait=policy.wait_for,
            retry=retry_if_exception(is_retryable_exception),
            sleep=self._sleep,
            before_sleep=log_retry(method, url, object_id, policy),
            reraise=True,
        )
        try:
            async for attempt in retrying:
                with attempt:
                    attempts = attempt.retry_state.attempt_number
                    response = await self._client.request(method, url, params=params, json=json)
                    if response.status_code in expected:
                        return decode_body(method, url, response, object_id=object_id, attempts=attempts)
                    if is_retryable_status(response.status_code):
                        raise RetryableStatus(response)
                    raise error_from_response(method, url, response, object_id=object_id, attempts=attempts, hint=hint)
        except RetryableStatus as exc:
            raise error_from_response(method, url, exc.response, object_id=object_id, attempts=attempts, hint=hint) from None
        except httpx.TransportError as exc:
            raise error_from_transport(
                method, url, exc, object_id=object_id, attempts=attempts, timeout=self.endpoint.timeout,
                conn_id=self.conn_id,
            ) from exc
        raise AssertionError("unreachable")  # pragma: no cover

    # -- What triggers poll ------------------------------------------------------------------------------

    async def get_customization_status(self, job_id: str) -> dict[str, Any]:
        """``GET /v1/customization/jobs/{id}/status`` (parse with ``customization_status_of``)."""
        return await self._request(
            "GET", api_path("v1", "customization", "jobs", job_id, "status"), object_id=f"customization job {job_id}"
        )

    async def get_evaluation_job(self, job_id: str) -> dict[str, Any]:
        """``GET /v1/evaluation/jobs/{id}`` (parse with ``evaluation_status_of``)."""
        return await self._request("GET", api_path("v1", "evaluation", "jobs", job_id), object_id=f"evaluation job {job_id}")

    async def get_deployment(self, namespace: str, name: str) -> dict[str, Any]:
        """``GET /v1/deployment/model-deployments/{ns}/{name}`` (parse with ``deployment_status_of``)."""
        return await self._request(
            "GET", api_path("v1", "deployment", "model-deployments", namespace, name),
            object_id=f"deployment {namespace}/{name}",
        )

    async def list_nim_models(self) -> list[str]:
        """``GET /v1/models`` on a ``nim`` Connection -> served model ids."""
        return model_ids(await self._request("GET", "/v1/models", object_id="NIM models"))

    async def is_model_served(self, model_id: str) -> bool:
        return model_id in await self.list_nim_models()

    # -- Cleanup (on_kill / cancellation) ----------------------------------------------------------------

    async def cancel_customization_job(self, job_id: str) -> bool:
        """Cancel; ``False`` if the job already finished (409) or is gone (404)."""
        return await self._tolerant(
            "POST", api_path("v1", "customization", "jobs", job_id, "cancel"), f"customization job {job_id}"
        )

    async def cancel_evaluation_job(self, job_id: str) -> bool:
        """Cancel; ``False`` if the job already finished (409) or is gone (404)."""
        return await self._tolerant("POST", api_path("v1", "evaluation", "jobs", job_id, "cancel"), f"evaluation job {job_id}")

    async def delete_evaluation_job(self, job_id: str) -> bool:
        """Delete; ``False`` if it was already gone."""
        return await self._tolerant("DELETE", api_path("v1", "evaluation", "jobs", job_id), f"evaluation job {job_id}")

    async def delete_deployment(self, namespace: str, name: str) -> bool:
        """Delete; ``False`` if it was already gone."""
        return await self._tolerant(
            "DELETE", api_path("v1", "deployment", "model-deployments", namespace, name), f"deployment {namespace}/{name}"
        )

    async def _tolerant(self, method: str, path: str, object_id: str) -> bool:
        try:
            await self._request(method, path, object_id=object_id)
        except (NemoConflictError, NemoNotFoundError) as exc:
            log.info("%s: %s not needed (HTTP %s: already finished or gone).", object_id, method, exc.status_code)
            return False
        log.info("%s: %s done.", object_id, method)
        return True
