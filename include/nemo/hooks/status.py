"""Job and deployment states of the NeMo microservices.

A status the service invents later (or a typo in an emulator) must never crash a poll loop:
an unknown value becomes the ``UNKNOWN`` member, which is not terminal (the wait goes on until
its deadline), and the raw string stays available as ``.raw`` for the log. Matching ignores case
(the services have used both ``running`` and ``RUNNING``).

Compare with ``==`` or ``in``, not ``is``: the ``UNKNOWN`` returned for an unknown value is a
copy that remembers that value.
"""

from __future__ import annotations

import logging
from enum import StrEnum
from typing import Any, ClassVar

log = logging.getLogger(__name__)


class _ApiStatus(StrEnum):
    """Base of the status enums: case-insensitive lookup, aliases, UNKNOWN for anything else."""

    # Alternative spellings seen in the wild, mapped to the member value they mean.
    _ALIASES: ClassVar[dict[str, str]]
    TERMINAL_STATUSES: ClassVar[frozenset[Any]]
    SUCCESS_STATUSES: ClassVar[frozenset[Any]]

    @classmethod
    def _missing_(cls, value: object) -> Any:
        if isinstance(value, str):
            key = value.strip().lower()
            key = cls._aliases().get(key, key)
            for member in cls:
                if member.value == key:
                    return member
        log.warning("Unknown %s value %r; treating it as unknown (not terminal).", cls.__name__, value)
        # A pseudo-member equal to UNKNOWN that keeps the raw value for messages.
        pseudo = str.__new__(cls, "unknown")
        pseudo._name_ = "UNKNOWN"
        pseudo._value_ = "unknown"
        pseudo._raw = value  # type: ignore[attr-defined]
        return pseudo

    @classmethod
    def _aliases(cls) -> dict[str, str]:
        return getattr(cls, "_ALIASES", {}) or {}

    @classmethod
    def parse(cls, value: object) -> Any:
        """The member for an API value (``None`` and non-strings included), never raising."""
        return cls(value) if value is not None else cls._missing_(value)

    @property
    def raw(self) -> object:
        """The value the API sent (differs from ``value`` only for UNKNOWN)."""
        return getattr(self, "_raw", self.value)

    def is_terminal(self) -> bool:
        """Whether the state will not change any more (a wait can stop)."""
        return self in type(self).TERMINAL_STATUSES

    def is_success(self) -> bool:
        """Whether this is the state the flywheel waits for (completed / ready)."""
        return self in type(self).SUCCESS_STATUSES

    def describe(self) -> str:
        """For logs: the value, plus the raw API value when it was not recognised."""
        if self.raw != self.value:
            return f"{self.value} (API sent {self.raw!r})"
        return self.value


class CustomizationStatus(_ApiStatus):
    """``GET /v1/customization/jobs/{id}/status`` -> ``status``."""

    CREATED = "created"
    PENDING = "pending"
    RUNNING = "running"
    CANCELLING = "cancelling"
    COMPLETED = "completed"
    FAILED = "failed"
    CANCELLED = "cancelled"
    UNKNOWN = "unknown"


class EvaluationStatus(_ApiStatus):
    """``GET /v1/evaluation/jobs/{id}`` -> ``status``."""

    CREATED = "created"
    PENDING = "pending"
    RUNNING = "running"
    CANCELLING = "cancelling"
    COMPLETED = "completed"
    FAILED = "failed"
    CANCELLED = "cancelled"
    UNKNOWN = "unknown"


class DeploymentStatus(_ApiStatus):
    """``GET /v1/deployment/model-deployments/{ns}/{name}`` -> ``status_details.status``."""

    CREATED = "created"
    PENDING = "pending"
    READY = "ready"
    FAILED = "failed"
    DELETING = "deleting"
    DELETED = "deleted"
    LOST = "lost"
    UNKNOWN = "unknown"


_JOB_ALIASES = {"canceled": "cancelled", "canceling": "cancelling", "succeeded": "completed", "success": "completed"}

CustomizationStatus._ALIASES = _JOB_ALIASES  # type: ignore[misc]
CustomizationStatus.TERMINAL_STATUSES = frozenset(  # type: ignore[misc]
    {CustomizationStatus.COMPLETED, CustomizationStatus.FAILED, CustomizationStatus.CANCELLED}
)
CustomizationStatus.SUCCESS_STATUSES = frozenset({CustomizationStatus.COMPLETED})  # type: ignore[misc]

EvaluationStatus._ALIASES = _JOB_ALIASES  # type: ignore[misc]
EvaluationStatus.TERMINAL_STATUSES = frozenset(  # type: ignore[misc]
    {EvaluationStatus.COMPLETED, EvaluationStatus.FAILED, EvaluationStatus.CANCELLED}
)
EvaluationStatus.SUCCESS_STATUSES = frozenset({EvaluationStatus.COMPLETED})  # type: ignore[misc]

DeploymentStatus._ALIASES = {"running": "ready"}  # type: ignore[misc]
# A deployment wait ends when it is ready, or when it can never become ready.
DeploymentStatus.TERMINAL_STATUSES = frozenset(  # type: ignore[misc]
    {DeploymentStatus.READY, DeploymentStatus.FAILED, DeploymentStatus.DELETED, DeploymentStatus.LOST}
)
DeploymentStatus.SUCCESS_STATUSES = frozenset({DeploymentStatus.READY})  # type: ignore[misc]


def customization_status_of(payload: Any) -> CustomizationStatus:
    """The status in a customization status/job payload (``{"status": ...}``)."""
    return CustomizationStatus.parse(payload.get("status") if isinstance(payload, dict) else None)


def evaluation_status_of(payload: Any) -> EvaluationStatus:
    """The status in an evaluation job payload (``{"status": ...}``)."""
    return EvaluationStatus.parse(payload.get("status") if isinstance(payload, dict) else None)


def deployment_status_of(payload: Any) -> DeploymentStatus:
    """The status in a deployment payload (``{"status_details": {"status": ...}}``)."""
    details = payload.get("status_details") if isinstance(payload, dict) else None
    value = details.get("status") if isinstance(details, dict) else None
    if value is None and isinstance(payload, dict):
        # Some releases put it at the top level.
        value = payload.get("status")
    return DeploymentStatus.parse(value)
