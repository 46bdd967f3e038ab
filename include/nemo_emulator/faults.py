"""Fault injection: error rates, bursts of 5xx/429, added latency, and matchers for failing jobs.

The HTTP-level faults are applied by a middleware before (or after) the real handler; the job and
deployment faults are read by the state machines when a job or deployment is created.
"""

from __future__ import annotations

import random
import threading
from typing import Literal

from pydantic import BaseModel, ConfigDict, Field, field_validator

from include.nemo_emulator.options import EmulatorOptions

class Burst(BaseModel):
    """The next ``count`` requests that match answer ``status``."""

    model_config = ConfigDict(extra="forbid")

    count: int = Field(ge=1)
    status: int = 503
    path_prefix: str | None = None
    method: str | None = None
    # "before": the request is refused (nothing happens). "after": the handler runs, then its answer
    # is replaced by the error, as when a response is lost on the way back (tests idempotent retries).
    when: Literal["before", "after"] = "before"

    @field_validator("status")
    @classmethod
    def _error_status(cls, value: int) -> int:
        if not 400 <= value < 600:
            raise ValueError(f"status must be an HTTP error status (4xx/5xx), got {value}")
        return value

    def matches(self, method: str, path: str) -> bool:
        if self.path_prefix and not path.startswith(self.path_prefix):
            return False
        return not self.method or self.method.upper() == method.upper()


class FaultSettings(BaseModel):
    """Every fault knob. ``POST /emulator/faults`` merges the fields it is given over the current ones."""

    model_config = ConfigDict(extra="forbid")

    error_rate: float = Field(default=0.0, ge=0.0, le=1.0)
    error_statuses: list[int] = Field(default_factory=lambda: [500, 503])
    error_path_prefix: str | None = None
    seed: int = 0
    bursts: list[Burst] = Field(default_factory=list)
    latency: float = Field(default=0.0, ge=0.0)
    latency_path_prefix: str | None = None
    # Substring patterns. A customization job fails when its name, output model or config contains one;
    # an evaluation job when its target model id or one of its custom_fields values contains one;
    # a deployment when its name or model contains one.
    fail_customizations: list[str] = Field(default_factory=list)
    fail_evaluations: list[str] = Field(default_factory=list)
    stuck_deployments: list[str] = Field(default_factory=list)
    fail_deployments: list[str] = Field(default_factory=list)

    @classmethod
    def from_options(cls, options: EmulatorOptions) -> FaultSettings:
        bursts = []
        if options.burst_5xx:
            bursts.append(Burst(count=options.burst_5xx, status=503))
        if options.burst_429:
            bursts.append(Burst(count=options.burst_429, status=429))
        return cls(
            error_rate=options.error_rate,
            seed=options.seed,
            bursts=bursts,
            latency=options.latency,
            fail_customizations=list(options.fail_customization),
            fail_evaluations=list(options.fail_evaluation),
            stuck_deployments=list(options.stuck_deployment),
            fail_deployments=list(options.fail_deployment),
        )


def matching_pattern(patterns: list[str], *values: str | None) -> str | None:
    """The first pattern contained in one of ``values``, or None."""
    for pattern in patterns:
        for value in values:
            if value and pattern in value:
                return pattern
    return None


class FaultInjector:
    """Thread-safe holder of the current :class:`FaultSettings` and the burst counters."""

    def __init__(self, settings: FaultSettings) -> None:
        self._lock = threading.Lock()
        self._initial = settings
        self._settings = settings.model_copy(deep=True)
        self._random = random.Random(settings.seed)
        self.injected: dict[str, int] = {}

    @property
    def settings(self) -> FaultSettings:
        with self._lock:
            return self._settings.model_copy(deep=True)

    def update(self, changes: dict) -> FaultSettings:
        """Merge ``changes`` (validated) over the current settings; bursts given replace the current ones."""
        with self._lock:
            merged = self._settings.model_dump()
            merged.update(changes)
            self._settings = FaultSettings.model_validate(merged)
            if "seed" in changes:
                self._random = random.Random(self._settings.seed)
            return self._settings.model_copy(deep=True)

    def clear(self) -> None:
        with self._lock:
            self._settings = FaultSettings()

    def reset(self) -> None:
        """Back to the start-up faults (used by ``POST /emulator/reset``)."""
        with self._lock:
            self._settings = self._initial.model_copy(deep=True)
            self._random = random.Random(self._initial.seed)
            self.injected = {}

    def latency_for(self, path: str) -> float:
        with self._lock:
            s = self._settings
            if s.latency and (not s.latency_path_prefix or path.startswith(s.latency_path_prefix)):
                return s.latency
            return 0.0

    def draw(self, method: str, path: str) -> tuple[int, str] | None:
        """Decide whether this request gets an injected error: ``(status, when)`` or None."""
        with self._lock:
            s = self._settings
            for burst in s.bursts:
                if burst.matches(method, path):
                    burst.count -= 1
                    if burst.count <= 0:
                        s.bursts.remove(burst)
                    return burst.status, burst.when
            if s.error_rate and (not s.error_path_prefix or path.startswith(s.error_path_prefix)):
                if self._random.random() < s.error_rate:
                    return self._random.choice(s.error_statuses or [503]), "before"
            return None

    def count(self, status: int) -> None:
        with self._lock:
            key = str(status)
            self.injected[key] = self.injected.get(key, 0) + 1
