"""Sensors for NIM endpoints."""

from __future__ import annotations

import logging
import time
from collections.abc import Sequence
from datetime import timedelta
from typing import TYPE_CHECKING, Any

from airflow.sdk import BaseSensorOperator
from airflow.sdk.exceptions import AirflowException, AirflowSensorTimeout, AirflowSkipException

from include.nemo.hooks import NimHook
from include.nemo.triggers import EVENT_STATUSES, SUCCESS, TIMEOUT, NimModelServedTrigger

if TYPE_CHECKING:
    from airflow.sdk import Context

log = logging.getLogger(__name__)

# Airflow's deferral timeout only backs up the trigger's own deadline event.
DEFER_TIMEOUT_GRACE = 300.0


class NimModelServedSensor(BaseSensorOperator):
    """Wait until a NIM lists ``model_id`` in ``GET /v1/models``.

    Used after a customization (the LoRA adapter must sync before it can be evaluated) and as
    the health check of a remote judge. Deferrable by default: it pokes once, then defers on
    :class:`~include.nemo.triggers.NimModelServedTrigger` with an absolute deadline, so the wait
    holds no worker slot. With ``deferrable=False`` it is a classic poke/reschedule sensor.

    A timeout raises :class:`AirflowSensorTimeout` (or skips with ``soft_fail=True``); an endpoint
    that keeps failing fails the task with the API error.

    Args:
        model_id: The model id the NIM must list (e.g. ``flywheel/fw-customize-...``).
        nim_conn_id: The ``nim`` Connection (NIM proxy, or the remote judge's endpoint).
        poll_interval: Seconds between two looks.
        timeout: Seconds until the sensor gives up.
        deferrable: Wait in the triggerer (default) instead of a worker.
        **kwargs: Passed to :class:`BaseSensorOperator` (``soft_fail``, ``mode``, ...).
    """

    template_fields: Sequence[str] = ("model_id",)
    ui_color = "#76b900"

    def __init__(
        self,
        *,
        model_id: str,
        nim_conn_id: str = "nim_default",
        poll_interval: float = 30.0,
        timeout: float = 3600.0,
        deferrable: bool = True,
        **kwargs: Any,
    ) -> None:
        if isinstance(poll_interval, bool) or not isinstance(poll_interval, (int, float)) or poll_interval <= 0:
            raise ValueError(
                f"NimModelServedSensor: poll_interval must be a number of seconds > 0, got {poll_interval!r}."
            )
        if isinstance(timeout, bool) or not isinstance(timeout, (int, float)) or timeout <= 0:
            raise ValueError(f"NimModelServedSensor: timeout must be a number of seconds > 0, got {timeout!r}.")
        super().__init__(poke_interval=poll_interval, timeout=timeout, **kwargs)
        self.model_id = model_id
        self.nim_conn_id = nim_conn_id
        self.deferrable = deferrable

    def poke(self, context: Context) -> bool:
        if not isinstance(self.model_id, str) or not self.model_id.strip():
            raise AirflowException(f"NimModelServedSensor: model_id must be a non-empty string, got {self.model_id!r}.")
        with NimHook(self.nim_conn_id) as hook:
            served = hook.list_models()
        if self.model_id in served:
            log.info("The NIM (%s) serves %s.", self.nim_conn_id, self.model_id)
            return True
        log.info("The NIM (%s) does not serve %s yet (%d model(s) served).", self.nim_conn_id, self.model_id,
                 len(served))
        return False

    def execute(self, context: Context) -> None:
        if not self.deferrable:
            super().execute(context)
            return
        if self.poke(context):
            return
        deadline = time.time() + float(self.timeout)
        self.defer(
            trigger=NimModelServedTrigger(
                conn_id=self.nim_conn_id, model_id=self.model_id, poll_interval=float(self.poke_interval),
                deadline=deadline,
            ),
            method_name="execute_complete",
            timeout=timedelta(seconds=float(self.timeout) + max(DEFER_TIMEOUT_GRACE, 2 * float(self.poke_interval))),
        )

    def execute_complete(self, context: Context, event: dict[str, Any]) -> None:
        """Resumed after the trigger: success returns; timeout times out (or skips); anything else fails."""
        if not isinstance(event, dict) or event.get("status") not in EVENT_STATUSES:
            raise AirflowException(
                f"NimModelServedSensor: unexpected trigger event {event!r}; treating it as a failure."
            )
        if event["status"] == SUCCESS:
            return
        message = f"NimModelServedSensor: {event.get('message') or event['status']}"
        if event["status"] == TIMEOUT:
            if self.soft_fail:
                raise AirflowSkipException(message)
            raise AirflowSensorTimeout(message)
        raise AirflowException(message)
