"""Per-run inputs: trigger-form parameters -> settings overrides, and the log window.

Plain Python (no Airflow import) so the mapping is unit-tested directly and the DAG
factory, the tasks and the docs all read one table.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from datetime import datetime, timedelta, timezone
from typing import Any

from include.flywheel.config import ConfigError, WorkloadSettings, deep_merge

# Trigger-form parameter -> (settings section, key). Their defaults are the workload's values,
# so an untouched form overrides nothing.
PARAM_TO_SETTING: dict[str, tuple[str, str]] = {
    "eval_size": ("data_split", "eval_size"),
    "val_ratio": ("data_split", "val_ratio"),
    "min_total_records": ("data_split", "min_total_records"),
    "limit": ("data_split", "limit"),
    "random_seed": ("data_split", "random_seed"),
    "stratify": ("data_split", "stratify"),
    "icl_example_selection": ("icl", "example_selection"),
    "icl_max_examples": ("icl", "max_examples"),
    "icl_min_examples": ("icl", "min_examples"),
    "icl_max_context_length": ("icl", "max_context_length"),
    "icl_reserved_tokens": ("icl", "reserved_tokens"),
}
WINDOW_START_PARAM = "log_window_start"
WINDOW_END_PARAM = "log_window_end"
CANDIDATES_PARAM = "candidates"
OVERRIDES_PARAM = "overrides"

# A run whose data interval is empty (a manual run of an unscheduled DAG) reads this much history.
DEFAULT_WINDOW = timedelta(days=1)


@dataclass(frozen=True)
class LogWindow:
    """The half-open time window [start, end) of the logs a run reads, in UTC."""

    start: datetime
    end: datetime
    source: str  # "data_interval", "params" or "default"

    def as_dict(self) -> dict[str, str]:
        return {"start": self.start.isoformat(), "end": self.end.isoformat(), "source": self.source}


def param_defaults(workload: WorkloadSettings) -> dict[str, Any]:
    """The trigger-form defaults for a workload: its own effective values."""
    sections = workload.model_dump(mode="json")
    defaults = {name: sections[section][key] for name, (section, key) in PARAM_TO_SETTING.items()}
    defaults[CANDIDATES_PARAM] = [candidate.model_name for candidate in workload.candidates]
    return defaults


def overrides_from_params(workload: WorkloadSettings, params: dict[str, Any]) -> dict[str, Any]:
    """Turn a run's params into a settings override document (only values that differ)."""
    current = workload.model_dump(mode="json")
    overrides: dict[str, Any] = {}
    for name, (section, key) in PARAM_TO_SETTING.items():
        if name in params and params[name] != current[section][key]:
            overrides.setdefault(section, {})[key] = params[name]
    selected = params.get(CANDIDATES_PARAM)
    if selected is not None:
        known = {candidate.model_name: candidate for candidate in workload.candidates}
        unknown = [name for name in selected if name not in known]
        if unknown:
            raise ConfigError(
                f"param {CANDIDATES_PARAM}: unknown model(s) {unknown}; configured candidates: {sorted(known)}"
            )
        if list(selected) != [c.model_name for c in workload.candidates]:
            overrides["candidates"] = [known[name].model_dump(mode="json") for name in selected]
    advanced = params.get(OVERRIDES_PARAM) or {}
    if not isinstance(advanced, dict):
        raise ConfigError(f"param {OVERRIDES_PARAM}: expected a JSON object, got {type(advanced).__name__}")
    return deep_merge(overrides, advanced)


def run_settings(workload: WorkloadSettings, params: dict[str, Any]) -> WorkloadSettings:
    """The settings a run uses: the workload's values with the run's params merged over them."""
    return workload.with_overrides(overrides_from_params(workload, params))


def _parse_instant(name: str, value: Any) -> datetime | None:
    if value in (None, ""):
        return None
    if isinstance(value, datetime):
        parsed = value
    else:
        text = str(value).strip()
        try:
            parsed = datetime.fromisoformat(text.replace("Z", "+00:00"))
        except ValueError:
            raise ConfigError(
                f"param {name}: {text!r} is not an ISO 8601 date or date-time (e.g. 2026-11-18 or 2026-11-18T00:00:00Z)"
            ) from None
    return parsed if parsed.tzinfo else parsed.replace(tzinfo=timezone.utc)


def resolve_window(
    params: dict[str, Any],
    data_interval_start: datetime | None,
    data_interval_end: datetime | None,
) -> LogWindow:
    """Pick the log window: params override the data interval; an empty interval reads the last day."""
    start = _parse_instant(WINDOW_START_PARAM, params.get(WINDOW_START_PARAM))
    end = _parse_instant(WINDOW_END_PARAM, params.get(WINDOW_END_PARAM))
    if start or end:
        end = end or data_interval_end or datetime.now(timezone.utc)
        start = start or end - DEFAULT_WINDOW
        source = "params"
    elif data_interval_start and data_interval_end and data_interval_start < data_interval_end:
        start, end, source = data_interval_start, data_interval_end, "data_interval"
    else:
        end = data_interval_end or datetime.now(timezone.utc)
        start, source = end - DEFAULT_WINDOW, "default"
    if start >= end:
        raise ConfigError(f"log window is empty: start {start.isoformat()} is not before end {end.isoformat()}")
    return LogWindow(start=start.astimezone(timezone.utc), end=end.astimezone(timezone.utc), source=source)


def run_key(run_id: str) -> str:
    """A storage- and name-safe key for a run id (``scheduled__2026-11-18T02:00:00+00:00`` -> ...)."""
    return re.sub(r"[^A-Za-z0-9_.-]+", "-", run_id).strip("-")
