"""Async triggers that wait for NeMo jobs, deployments and NIM models without holding a worker slot.

Every trigger follows one shape (see the dbt Cloud and Databricks providers):

* its kwargs are JSON primitives only (a ``conn_id``, ids, floats); they cross a serialization
  boundary into the triggerer, so ``__init__`` validates them and never accepts a secret;
* ``run()`` opens ONE :class:`~include.nemo.hooks.NemoAsyncClient` for the whole poll loop,
  sleeps with ``await asyncio.sleep``, yields exactly one :class:`TriggerEvent` and returns;
* the event payload is small: ``status`` (``success`` | ``failed`` | ``cancelled`` | ``timeout`` |
  ``error``), the object (``job_id`` or ``namespace``/``name`` or ``model_id``), a ``message`` that
  says what happened and what to check, and the last progress seen;
* ``deadline`` is an absolute epoch time (``time.time()`` clock): past it, the trigger yields a
  ``timeout`` event instead of waiting forever;
* transient API failures are retried inside the client (connection errors, timeouts, 5xx, 429);
  a failure that outlives those retries becomes an ``error`` event, never an exception loop;
* ``on_kill()`` (a user marked the deferred task failed or cleared it) cancels the remote job or
  deletes the deployment. ``cleanup()`` is not used for that: it also runs on triggerer restarts.
"""

from __future__ import annotations

import asyncio
import logging
import math
import time
from collections.abc import AsyncIterator, Mapping
from typing import Any

from airflow.triggers.base import BaseTrigger, TriggerEvent

from include.nemo.exceptions import NemoError, NemoNotFoundError
from include.nemo.hooks import (
    CustomizationStatus,
    DeploymentStatus,
    EvaluationStatus,
    NemoAsyncClient,
    customization_status_of,
    deployment_status_of,
    evaluation_status_of,
)

log = logging.getLogger(__name__)

# Event statuses: the complete vocabulary operators must handle.
SUCCESS = "success"
FAILED = "failed"
CANCELLED = "cancelled"
TIMEOUT = "timeout"
ERROR = "error"
EVENT_STATUSES = (SUCCESS, FAILED, CANCELLED, TIMEOUT, ERROR)

# on_kill gets a bounded time from the triggerer: a cleanup call must not retry for minutes.
ON_KILL_TIMEOUT = 10.0
ON_KILL_RETRY_LIMIT = 2
ON_KILL_RETRY_DELAY = 0.5

# Status logs can grow with every epoch; an event carries only the last message.
MAX_MESSAGE_CHARS = 500


# -- validation of kwargs (they come back from the database on the triggerer) ---------------------------


def _check_str(owner: str, name: str, value: Any) -> str:
    if not isinstance(value, str) or not value.strip():
        raise ValueError(f"{owner}: {name} must be a non-empty string, got {value!r}.")
    return value


def _check_number(owner: str, name: str, value: Any, *, positive: bool = True) -> float:
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not math.isfinite(value):
        raise ValueError(f"{owner}: {name} must be a finite number of seconds, got {value!r}.")
    if positive and value <= 0:
        raise ValueError(f"{owner}: {name} must be > 0 seconds, got {value!r}.")
    return float(value)


def _check_int(owner: str, name: str, value: Any, minimum: int) -> int:
    if isinstance(value, bool) or not isinstance(value, int) or value < minimum:
        raise ValueError(f"{owner}: {name} must be an integer >= {minimum}, got {value!r}.")
    return value


def _short(text: Any) -> str:
    text = "" if text is None else str(text)
    return text if len(text) <= MAX_MESSAGE_CHARS else text[:MAX_MESSAGE_CHARS] + "..."


def _clause(detail: str) -> str:
    """A detail to embed mid-sentence: a placeholder when empty, no trailing period (one is added)."""
    return (detail or "no detail given").rstrip(". ")


def _last_log_message(status_payload: Mapping[str, Any]) -> str:
    logs = status_payload.get("status_logs")
    if isinstance(logs, list) and logs and isinstance(logs[-1], Mapping):
        last = logs[-1]
        detail = last.get("detail")
        return _short(f"{last.get('message', '')}: {detail}" if detail else last.get("message", ""))
    return ""


class _NemoPollTrigger(BaseTrigger):
    """What every trigger here shares: kwargs validation, the poll loop, one event, error handling.

    Subclasses implement :meth:`_poll` (one look at the remote object: a terminal event payload or
    ``None`` to keep waiting), :meth:`_timeout_payload`, :meth:`_identity` and, when there is
    something to stop, :meth:`_kill`.

    Args:
        conn_id: The Airflow Connection the client uses (never a token).
        poll_interval: Seconds between two looks.
        deadline: Absolute epoch time (``time.time()``) after which a ``timeout`` event is yielded.
        retry_limit: Attempts per API call inside the client (connection errors, timeouts, 5xx, 429).
        retry_delay: First backoff of those retries, in seconds (doubles per attempt).
    """

    def __init__(
        self,
        conn_id: str,
        poll_interval: float,
        deadline: float,
        retry_limit: int = 5,
        retry_delay: float = 1.0,
    ) -> None:
        super().__init__()
        owner = type(self).__name__
        self.conn_id = _check_str(owner, "conn_id", conn_id)
        self.poll_interval = _check_number(owner, "poll_interval", poll_interval)
        self.deadline = _check_number(owner, "deadline", deadline)
        self.retry_limit = _check_int(owner, "retry_limit", retry_limit, 1)
        self.retry_delay = _check_number(owner, "retry_delay", retry_delay, positive=False)
        if self.retry_delay < 0:
            raise ValueError(f"{owner}: retry_delay must be >= 0 seconds, got {retry_delay!r}.")
        # The last progress seen, for the timeout and error events.
        self._last: dict[str, Any] = {}

    # -- what subclasses provide ----------------------------------------------------------------------

    def _identity(self) -> dict[str, Any]:
        """The object this trigger waits for, as event fields (``{"job_id": ...}``)."""
        raise NotImplementedError

    def _describe(self) -> str:
        """The object in words, for messages (``customization job cust-1``)."""
        raise NotImplementedError

    def _extra_kwargs(self) -> dict[str, Any]:
        """The subclass's own serialized kwargs."""
        raise NotImplementedError

    async def _poll(self, client: NemoAsyncClient) -> dict[str, Any] | None:
        """One look: a terminal event payload, or ``None`` to keep waiting (update ``self._last``)."""
        raise NotImplementedError

    async def _kill(self, client: NemoAsyncClient) -> None:
        """Stop the remote work (on_kill). The default: nothing to stop."""

    # -- serialization ----------------------------------------------------------------------------------

    def serialize(self) -> tuple[str, dict[str, Any]]:
        """Classpath and JSON-primitive kwargs (no secrets: only the ``conn_id``)."""
        kwargs: dict[str, Any] = {"conn_id": self.conn_id, **self._extra_kwargs()}
        kwargs.update(
            poll_interval=self.poll_interval,
            deadline=self.deadline,
            retry_limit=self.retry_limit,
            retry_delay=self.retry_delay,
        )
        return f"{type(self).__module__}.{type(self).__qualname__}", kwargs

    # -- the loop ---------------------------------------------------------------------------------------

    def _event(self, status: str, message: str, **fields: Any) -> dict[str, Any]:
        # The deadline rides along so an operator that waits again (deploy, then NIM) keeps one deadline.
        return {"status": status, **self._identity(), "message": _short(message), **self._last, **fields,
                "deadline": self.deadline}

    def _timeout_payload(self) -> dict[str, Any]:
        waited = time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(self.deadline))
        return self._event(
            TIMEOUT,
            f"{self._describe()} did not finish before the deadline {waited}; last status "
            f"{self._last.get('remote_status', 'unknown')}. Check the service's queue and GPU capacity, "
            "or raise the operator's timeout.",
        )

    def _client(self, *, on_kill: bool = False) -> NemoAsyncClient:
        if on_kill:
            return NemoAsyncClient(
                self.conn_id, timeout=ON_KILL_TIMEOUT, retry_limit=ON_KILL_RETRY_LIMIT, retry_delay=ON_KILL_RETRY_DELAY
            )
        return NemoAsyncClient(self.conn_id, retry_limit=self.retry_limit, retry_delay=self.retry_delay)

    async def _wait(self) -> dict[str, Any]:
        try:
            async with self._client() as client:
                while True:
                    payload = await self._poll(client)
                    if payload is not None:
                        return payload
                    remaining = self.deadline - time.time()
                    if remaining <= 0:
                        return self._timeout_payload()
                    log.info(
                        "%s is %s; next check in %.1fs.",
                        self._describe(), self._last.get("remote_status", "unknown"),
                        min(self.poll_interval, remaining),
                    )
                    await asyncio.sleep(min(self.poll_interval, remaining))
        except asyncio.CancelledError:
            raise
        except NemoError as exc:
            # The client already retried what can be retried: this failure persists.
            log.error("%s: giving up the wait: %s", self._describe(), exc)
            return self._event(ERROR, f"{self._describe()}: {exc}")
        except Exception as exc:  # anything else must still end the wait with one event, not loop
            log.exception("%s: unexpected error while waiting.", self._describe())
            return self._event(ERROR, f"{self._describe()}: unexpected {type(exc).__name__}: {exc}")

    async def run(self) -> AsyncIterator[TriggerEvent]:
        """Poll until the object is terminal, the deadline passes or the API keeps failing; yield one event."""
        payload = await self._wait()
        log.info("%s: %s (%s).", self._describe(), payload["status"], payload["message"])
        yield TriggerEvent(payload)

    async def on_kill(self) -> None:
        """The user killed the deferred task: stop the remote work (best effort, bounded, never raises)."""
        try:
            async with self._client(on_kill=True) as client:
                await self._kill(client)
        except Exception as exc:  # the triggerer only logs it; say what was left behind
            log.warning("%s: could not clean up on kill (%s); check it by hand.", self._describe(), exc)


class _NemoJobTrigger(_NemoPollTrigger):
    """A poll trigger for one NeMo job, identified by its id."""

    def __init__(
        self, conn_id: str, job_id: str, poll_interval: float, deadline: float, retry_limit: int = 5,
        retry_delay: float = 1.0,
    ) -> None:
        super().__init__(conn_id, poll_interval, deadline, retry_limit, retry_delay)
        self.job_id = _check_str(type(self).__name__, "job_id", job_id)

    def _identity(self) -> dict[str, Any]:
        return {"job_id": self.job_id}

    def _extra_kwargs(self) -> dict[str, Any]:
        return {"job_id": self.job_id}


class NemoCustomizationJobTrigger(_NemoJobTrigger):
    """Wait for a customization job (``GET /v1/customization/jobs/{id}/status``) to finish.

    Args:
        conn_id: The ``nemo`` Connection.
        job_id: The customization job id.
        poll_interval: Seconds between two looks.
        deadline: Absolute epoch time of the ``timeout`` event.
        retry_limit: Attempts per API call.
        retry_delay: First backoff between attempts, in seconds.
    """

    def _describe(self) -> str:
        return f"Customization job {self.job_id}"

    async def _poll(self, client: NemoAsyncClient) -> dict[str, Any] | None:
        body = await client.get_customization_status(self.job_id)
        status = customization_status_of(body)
        self._last = {
            "remote_status": status.describe(),
            "percentage_done": body.get("percentage_done"),
            "epochs_completed": body.get("epochs_completed"),
            "steps_completed": body.get("steps_completed"),
        }
        if not status.is_terminal():
            return None
        detail = _last_log_message(body) or _short(body.get("message"))
        if status == CustomizationStatus.COMPLETED:
            return self._event(SUCCESS, f"{self._describe()} completed.")
        if status == CustomizationStatus.CANCELLED:
            return self._event(CANCELLED, f"{self._describe()} was cancelled ({detail or 'no detail'}).")
        return self._event(
            FAILED,
            f"{self._describe()} failed: {_clause(detail)}. Check the job's status_logs and the "
            "training dataset.",
        )

    async def _kill(self, client: NemoAsyncClient) -> None:
        if await client.cancel_customization_job(self.job_id):
            log.info("%s cancelled on kill.", self._describe())


class NemoEvaluationJobTrigger(_NemoJobTrigger):
    """Wait for an evaluation job (``GET /v1/evaluation/jobs/{id}``) to finish.

    Args:
        conn_id: The ``nemo`` Connection.
        job_id: The evaluation job id.
        poll_interval: Seconds between two looks.
        deadline: Absolute epoch time of the ``timeout`` event.
        retry_limit: Attempts per API call.
        retry_delay: First backoff between attempts, in seconds.
    """

    def _describe(self) -> str:
        return f"Evaluation job {self.job_id}"

    async def _poll(self, client: NemoAsyncClient) -> dict[str, Any] | None:
        body = await client.get_evaluation_job(self.job_id)
        status = evaluation_status_of(body)
        details = body.get("status_details") if isinstance(body.get("status_details"), Mapping) else {}
        detail = _short(details.get("message"))
        self._last = {"remote_status": status.describe(), "progress": details.get("progress")}
        if not status.is_terminal():
            return None
        if status == EvaluationStatus.COMPLETED:
            return self._event(SUCCESS, f"{self._describe()} completed.")
        if status == EvaluationStatus.CANCELLED:
            return self._event(CANCELLED, f"{self._describe()} was cancelled ({detail or 'no detail'}).")
        return self._event(
            FAILED,
            f"{self._describe()} failed: {_clause(detail)}. Check the target model is served, the "
            "judge is reachable and the dataset files exist.",
        )

    async def _kill(self, client: NemoAsyncClient) -> None:
        if await client.cancel_evaluation_job(self.job_id):
            log.info("%s cancelled on kill.", self._describe())


class NemoDeploymentTrigger(_NemoPollTrigger):
    """Wait for a NIM deployment to become ready (or fail) in Deployment Management.

    ``success`` when ``status_details.status`` is ``ready``; ``failed`` when it is failed, deleted,
    lost or the deployment disappeared (404); ``timeout`` past the deadline. ``on_kill`` deletes the
    deployment.

    Args:
        conn_id: The ``nemo`` Connection.
        namespace: The deployment's namespace.
        name: The deployment's name.
        poll_interval: Seconds between two looks.
        deadline: Absolute epoch time of the ``timeout`` event.
        retry_limit: Attempts per API call.
        retry_delay: First backoff between attempts, in seconds.
    """

    def __init__(
        self, conn_id: str, namespace: str, name: str, poll_interval: float, deadline: float, retry_limit: int = 5,
        retry_delay: float = 1.0,
    ) -> None:
        super().__init__(conn_id, poll_interval, deadline, retry_limit, retry_delay)
        owner = type(self).__name__
        self.namespace = _check_str(owner, "namespace", namespace)
        self.name = _check_str(owner, "name", name)

    def _identity(self) -> dict[str, Any]:
        return {"namespace": self.namespace, "name": self.name}

    def _describe(self) -> str:
        return f"Deployment {self.namespace}/{self.name}"

    def _extra_kwargs(self) -> dict[str, Any]:
        return {"namespace": self.namespace, "name": self.name}

    async def _poll(self, client: NemoAsyncClient) -> dict[str, Any] | None:
        try:
            body = await client.get_deployment(self.namespace, self.name)
        except NemoNotFoundError:
            return self._event(
                FAILED, f"{self._describe()} no longer exists (deleted while waiting?). Create it again.",
                remote_status="not found",
            )
        status = deployment_status_of(body)
        details = body.get("status_details") if isinstance(body.get("status_details"), Mapping) else {}
        description = _short(details.get("description") or details.get("message"))
        self._last = {"remote_status": status.describe(), "description": description}
        if status == DeploymentStatus.READY:
            return self._event(SUCCESS, f"{self._describe()} is ready.")
        if status.is_terminal():
            return self._event(
                FAILED,
                f"{self._describe()} is {status.describe()}: {_clause(description)}. Check the NIM "
                "image name and tag, the GPU and PVC quota, and the Deployment Management logs.",
            )
        return None

    async def _kill(self, client: NemoAsyncClient) -> None:
        if await client.delete_deployment(self.namespace, self.name):
            log.info("%s deleted on kill.", self._describe())


class NimModelServedTrigger(_NemoPollTrigger):
    """Wait until a NIM lists a model in ``GET /v1/models`` (a deployed base model, a synced LoRA, a judge).

    Nothing runs on the NIM for this wait, so ``on_kill`` stops nothing unless ``kill_deployment``
    names a deployment (``"namespace/name"``, deleted with ``nemo_conn_id``): the operator that
    deployed a NIM and now waits for its model uses that, so a kill during this second wait still
    frees the GPUs.

    Args:
        conn_id: The ``nim`` Connection.
        model_id: The model id the NIM must list.
        poll_interval: Seconds between two looks.
        deadline: Absolute epoch time of the ``timeout`` event.
        retry_limit: Attempts per API call.
        retry_delay: First backoff between attempts, in seconds.
        kill_deployment: Optional ``"namespace/name"`` of a deployment to delete on kill.
        nemo_conn_id: The ``nemo`` Connection for that deletion (required with ``kill_deployment``).
    """

    def __init__(
        self,
        conn_id: str,
        model_id: str,
        poll_interval: float,
        deadline: float,
        retry_limit: int = 5,
        retry_delay: float = 1.0,
        kill_deployment: str | None = None,
        nemo_conn_id: str | None = None,
    ) -> None:
        super().__init__(conn_id, poll_interval, deadline, retry_limit, retry_delay)
        owner = type(self).__name__
        self.model_id = _check_str(owner, "model_id", model_id)
        if kill_deployment is not None:
            _check_str(owner, "kill_deployment", kill_deployment)
            if kill_deployment.count("/") != 1 or not all(kill_deployment.split("/")):
                raise ValueError(f"{owner}: kill_deployment must be 'namespace/name', got {kill_deployment!r}.")
            if nemo_conn_id is None:
                raise ValueError(f"{owner}: kill_deployment needs nemo_conn_id (the Connection that can delete it).")
        if nemo_conn_id is not None:
            _check_str(owner, "nemo_conn_id", nemo_conn_id)
        self.kill_deployment = kill_deployment
        self.nemo_conn_id = nemo_conn_id

    def _identity(self) -> dict[str, Any]:
        return {"model_id": self.model_id}

    def _describe(self) -> str:
        return f"Model {self.model_id} on NIM Connection {self.conn_id!r}"

    def _extra_kwargs(self) -> dict[str, Any]:
        kwargs: dict[str, Any] = {"model_id": self.model_id}
        if self.kill_deployment is not None:
            kwargs["kill_deployment"] = self.kill_deployment
            kwargs["nemo_conn_id"] = self.nemo_conn_id
        return kwargs

    def _timeout_payload(self) -> dict[str, Any]:
        waited = time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(self.deadline))
        return self._event(
            TIMEOUT,
            f"{self._describe()} was not listed in GET /v1/models before the deadline {waited} "
            f"({self._last.get('served_count', 0)} other model(s) served). Check the deployment is ready, the "
            "model id is spelled as the NIM lists it, and (for a customized model) that the adapter synced.",
        )

    async def _poll(self, client: NemoAsyncClient) -> dict[str, Any] | None:
        served = await client.list_nim_models()
        self._last = {"remote_status": "served" if self.model_id in served else "not served",
                      "served_count": len(served)}
        if self.model_id in served:
            return self._event(SUCCESS, f"{self._describe()} is served.")
        return None

    async def on_kill(self) -> None:
        """Delete ``kill_deployment`` if one was given (the NIM itself has nothing to cancel)."""
        if self.kill_deployment is None or self.nemo_conn_id is None:
            return
        namespace, name = self.kill_deployment.split("/")
        try:
            async with NemoAsyncClient(
                self.nemo_conn_id, timeout=ON_KILL_TIMEOUT, retry_limit=ON_KILL_RETRY_LIMIT,
                retry_delay=ON_KILL_RETRY_DELAY,
            ) as client:
                if await client.delete_deployment(namespace, name):
                    log.info("Deployment %s deleted on kill.", self.kill_deployment)
        except Exception as exc:  # the triggerer only logs it; say what was left behind
            log.warning("Could not delete deployment %s on kill (%s); delete it by hand.", self.kill_deployment, exc)
