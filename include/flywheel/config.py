"""Settings for the flywheel: one validated pydantic tree, loaded from YAML.

The file has global sections (``nmp``, ``logs``, ``candidates``, ...) and a list of
``workloads``. A workload may override any section; a manual run may override again
through its ``conf``. Overrides merge *over the workload's effective values*, never over
the class defaults, so a run that changes ``data_split.eval_size`` keeps the workload's
``data_split.limit``.

Nothing here imports Airflow: DAG files, tasks, tests and benchmarks share it.
"""

from __future__ import annotations

import copy
import os
import re
from enum import Enum
from pathlib import Path
from typing import Any, Literal

import yaml
from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator, model_validator

from include.flywheel.scoring import (
    DEFAULT_CONFIDENCE,
    DEFAULT_RESAMPLES,
    SCORE_RANGES,
    SurfacingThresholds,
)

PROJECT_ROOT = Path(__file__).resolve().parents[2]
DEFAULT_CONFIG_PATH = PROJECT_ROOT / "include" / "config" / "flywheel.yaml"
CONFIG_PATH_ENV = "FLYWHEEL_CONFIG"
STAGING_BASE_ENV = "FLYWHEEL_STAGING_BASE_URI"

# Sections a workload or a run may override.
OVERRIDABLE_SECTIONS = (
    "nmp", "logs", "staging", "results", "candidates", "judge", "training", "data_split", "icl", "scoring",
)

_ID_PATTERN = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.-]*$")
_CRON_PRESETS = {"@hourly", "@daily", "@weekly", "@monthly", "@quarterly", "@yearly", "@annually"}


class ConfigError(ValueError):
    """Raised when the settings file or a run override is invalid. The message names each field and rule."""


class _Section(BaseModel):
    # Unknown keys are errors: a typo such as ``eval_szie`` must not be silently ignored.
    model_config = ConfigDict(extra="forbid", frozen=True)


class NmpSettings(_Section):
    """Where NeMo lives. Endpoints and secrets come from Airflow Connections, never from this file."""

    namespace: str = "flywheel"
    nemo_conn_id: str = "nemo_default"
    nim_conn_id: str = "nim_default"
    datastore_conn_id: str = "nemo_datastore_default"


class LogSourceKind(str, Enum):
    FILES = "files"
    ELASTICSEARCH = "elasticsearch"


class LogSettings(_Section):
    """Where production logs are read from."""

    source: LogSourceKind = LogSourceKind.FILES
    # files: a JSONL file (optionally .gz) or a directory of them, relative to the project root.
    path: str = "include/sample_data/logs"
    # elasticsearch
    es_conn_id: str = "elasticsearch_default"
    index: str = "flywheel"
    page_size: int = Field(default=1000, ge=1, le=10000)

    def resolved_path(self) -> Path:
        path = Path(self.path)
        return path if path.is_absolute() else PROJECT_ROOT / path


class StagingSettings(_Section):
    """Where prepared dataset files are staged (an ObjectStoragePath URI: file://, s3://, ...)."""

    base_uri: str = ""  # empty: $FLYWHEEL_STAGING_BASE_URI, else file://<project>/.staging

    def resolved_base_uri(self) -> str:
        return self.base_uri or os.environ.get(STAGING_BASE_ENV) or (PROJECT_ROOT / ".staging").as_uri()


class ResultsBackend(str, Enum):
    SQLITE = "sqlite"
    MONGO = "mongo"


class ResultsSettings(_Section):
    backend: ResultsBackend = ResultsBackend.SQLITE
    sqlite_path: str = ".flywheel/results.sqlite3"
    mongo_conn_id: str = "mongo_default"
    database: str = "flywheel"


class CustomizerSettings(_Section):
    target: str
    gpus: int = Field(default=1, ge=1)
    num_nodes: int = Field(default=1, ge=1)
    tensor_parallel_size: int = Field(default=1, ge=1)
    data_parallel_size: int = Field(default=1, ge=1)
    use_sequence_parallel: bool = False
    micro_batch_size: int = Field(default=1, ge=1)
    training_precision: Literal["bf16-mixed", "bf16", "fp16", "fp32", "int8"] = "bf16-mixed"
    max_seq_length: int = Field(default=4096, ge=128)


class CandidateSettings(_Section):
    """A NIM to evaluate (and optionally customize)."""

    model_name: str
    tag: str = "latest"
    context_length: int = Field(default=8192, ge=512)
    gpus: int = Field(default=1, ge=1)
    pvc_size: str = "25Gi"
    customization_enabled: bool = True
    customizer: CustomizerSettings | None = None

    @model_validator(mode="after")
    def _customizer_when_enabled(self) -> CandidateSettings:
        if self.customization_enabled and self.customizer is None:
            raise ValueError(
                f"candidate {self.model_name!r} has customization_enabled: true but no customizer section "
                "(set customizer.target, or customization_enabled: false)"
            )
        return self

    @property
    def slug(self) -> str:
        """A task-id and job-name safe form of the model name."""
        return re.sub(r"[^a-z0-9]+", "-", self.model_name.lower()).strip("-")


class JudgeSettings(_Section):
    """The LLM judge: a remote OpenAI-compatible endpoint, or a NIM deployed like a candidate."""

    type: Literal["remote", "local"] = "remote"
    model_name: str = "meta/llama-3.3-70b-instruct"
    # remote: the endpoint and api key come from this Connection (host = base URL, password = api key).
    conn_id: str = "nim_default"
    # local: deployment details, as for a candidate.
    tag: str = "latest"
    gpus: int = Field(default=1, ge=1)
    pvc_size: str = "25Gi"


class LoraSettings(_Section):
    adapter_dim: int = Field(default=32, ge=1)
    adapter_dropout: float = Field(default=0.1, ge=0.0, lt=1.0)


class TrainingSettings(_Section):
    training_type: Literal["sft"] = "sft"
    finetuning_type: Literal["lora", "all_weights"] = "lora"
    epochs: int = Field(default=2, ge=1)
    batch_size: int = Field(default=16, ge=1)
    learning_rate: float = Field(default=1e-4, gt=0.0)
    lora: LoraSettings = LoraSettings()


class DataSplitSettings(_Section):
    eval_size: int = Field(default=20, ge=1)
    val_ratio: float = Field(default=0.1, ge=0.0, lt=1.0)
    min_total_records: int = Field(default=50, ge=1)
    random_seed: int = 42
    limit: int | None = Field(default=10000, ge=1)
    parse_function_arguments: bool = True
    stratify: bool = True
    # A label seen fewer times than this is pooled with the other rare labels for stratification.
    min_label_count: int = Field(default=2, ge=1)

    @model_validator(mode="after")
    def _limit_and_minimum(self) -> DataSplitSettings:
        if self.limit is not None and self.limit < self.min_total_records:
            raise ValueError(
                f"limit ({self.limit}) must be >= min_total_records ({self.min_total_records}), "
                "or null for no limit"
            )
        if self.eval_size > self.min_total_records:
            raise ValueError(
                f"eval_size ({self.eval_size}) must be <= min_total_records ({self.min_total_records}): "
                "a run that passes the minimum must be able to fill the eval set"
            )
        return self


class ExampleSelection(str, Enum):
    UNIFORM = "uniform_distribution"
    SEMANTIC = "semantic_similarity"


class SimilaritySettings(_Section):
    relevance_ratio: float = Field(default=0.7, ge=0.0, le=1.0)
    # OpenAI-compatible /v1/embeddings endpoint: base URL and key from this Connection.
    embedding_conn_id: str = "nim_default"
    embedding_model: str = "nvidia/llama-3.2-nv-embedqa-1b-v2"
    batch_size: int = Field(default=64, ge=1)
    # Candidate pool size embedded for semantic selection (examples are drawn from it).
    pool_size: int = Field(default=500, ge=1)


class IclSettings(_Section):
    max_context_length: int = Field(default=8192, ge=256)
    reserved_tokens: int = Field(default=2048, ge=0)
    max_examples: int = Field(default=3, ge=0)
    min_examples: int = Field(default=1, ge=0)
    example_selection: ExampleSelection = ExampleSelection.UNIFORM
    similarity: SimilaritySettings = SimilaritySettings()
    encoding: str = "cl100k_base"

    @model_validator(mode="after")
    def _bounds(self) -> IclSettings:
        if self.min_examples > self.max_examples:
            raise ValueError(f"min_examples ({self.min_examples}) must be <= max_examples ({self.max_examples})")
        if self.reserved_tokens >= self.max_context_length:
            raise ValueError(
                f"reserved_tokens ({self.reserved_tokens}) must be < max_context_length ({self.max_context_length})"
            )
        return self


class WaitSettings(_Section):
    """Deadlines and poll intervals of the deferrable waits, in seconds."""

    poll_interval: float = Field(default=30.0, gt=0)
    deployment_timeout: float = Field(default=3600.0, gt=0)
    evaluation_timeout: float = Field(default=7200.0, gt=0)
    customization_timeout: float = Field(default=6 * 3600.0, gt=0)
    model_sync_timeout: float = Field(default=1800.0, gt=0)
    # Task retries (transient failures: a 5xx burst that outlived the hook's own retries, a lost worker).
    retries: int = Field(default=2, ge=0)
    retry_delay: float = Field(default=30.0, ge=0)


class ScoringSettings(_Section):
    """How aggregate_results scores a run: intervals, the comparison with history, the surfacing rule.

    The defaults are the behaviour before this section existed: 95% percentile-bootstrap intervals
    over 2000 resamples (seeded by ``data_split.random_seed``), any drop beyond the intervals is a
    regression, and :class:`~include.flywheel.scoring.SurfacingThresholds` as they default.
    """

    # Coverage of every score's bootstrap interval.
    confidence: float = Field(default=DEFAULT_CONFIDENCE, gt=0.0, lt=1.0)
    # Bootstrap resamples per interval (more: steadier bounds, slower aggregate).
    resamples: int = Field(default=DEFAULT_RESAMPLES, ge=100, le=100_000)
    # Smallest drop (score units: 0-1, similarity 1-10) that counts as a regression against an
    # earlier run, on top of the intervals being apart.
    regression_tolerance: float = Field(default=0.0, ge=0.0)
    # When a candidate is surfaced for human review (nothing is ever promoted automatically).
    surfacing: SurfacingThresholds = SurfacingThresholds()

    @model_validator(mode="after")
    def _known_primary_score(self) -> ScoringSettings:
        primary = self.surfacing.primary_score
        if primary is not None and primary not in SCORE_RANGES:
            raise ValueError(
                f"surfacing.primary_score {primary!r} is not a score key; use one of {sorted(SCORE_RANGES)} "
                "or null for the workload type's default"
            )
        return self


class FlywheelSections(_Section):
    """Every section that a workload or a run may override (the effective settings of one run)."""

    nmp: NmpSettings = NmpSettings()
    logs: LogSettings = LogSettings()
    staging: StagingSettings = StagingSettings()
    results: ResultsSettings = ResultsSettings()
    candidates: list[CandidateSettings] = Field(default_factory=list)
    judge: JudgeSettings = JudgeSettings()
    training: TrainingSettings = TrainingSettings()
    data_split: DataSplitSettings = DataSplitSettings()
    icl: IclSettings = IclSettings()
    scoring: ScoringSettings = ScoringSettings()
    waits: WaitSettings = WaitSettings()

    @model_validator(mode="after")
    def _cross_section(self) -> FlywheelSections:
        if self.icl.max_examples > self.data_split.eval_size:
            raise ValueError(
                f"icl.max_examples ({self.icl.max_examples}) must be <= data_split.eval_size "
                f"({self.data_split.eval_size})"
            )
        names = [c.model_name for c in self.candidates]
        duplicates = sorted({n for n in names if names.count(n) > 1})
        if duplicates:
            raise ValueError(f"candidates: model_name must be unique, repeated: {duplicates}")
        slugs = [c.slug for c in self.candidates]
        if len(set(slugs)) != len(slugs):
            raise ValueError(f"candidates: model names map to the same task id: {slugs}")
        return self


class WorkloadSettings(FlywheelSections):
    """One workload: its identity and schedule, plus its effective sections."""

    workload_id: str
    client_id: str
    description: str = ""
    schedule: str | None = "0 2 * * *"
    start_date: str = "2026-01-01"
    catchup: bool = False
    tags: list[str] = Field(default_factory=list)

    @field_validator("workload_id", "client_id")
    @classmethod
    def _safe_id(cls, value: str) -> str:
        if not _ID_PATTERN.match(value):
            raise ValueError(f"{value!r} must start with a letter or digit and use only letters, digits, '_', '.', '-'")
        return value

    @field_validator("schedule")
    @classmethod
    def _cron_or_preset(cls, value: str | None) -> str | None:
        if value is None or value in _CRON_PRESETS:
            return value
        from croniter import croniter  # ships with Airflow; imported here so the module stays light

        if len(value.split()) not in (5, 6) or not croniter.is_valid(value):
            raise ValueError(f"{value!r} is neither a valid cron expression, an @preset (@daily, ...), nor null")
        return value

    @field_validator("start_date")
    @classmethod
    def _iso_date(cls, value: str) -> str:
        from datetime import date

        try:
            date.fromisoformat(value)
        except ValueError as exc:
            raise ValueError(f"{value!r} is not an ISO date (YYYY-MM-DD)") from exc
        return value

    @property
    def dag_id(self) -> str:
        return f"flywheel__{self.workload_id}"

    def sections(self) -> dict[str, Any]:
        """The overridable sections as plain data (the base a run override merges over)."""
        return self.model_dump(mode="json", include=set(OVERRIDABLE_SECTIONS) | {"waits"})

    def with_overrides(self, overrides: dict[str, Any] | None) -> WorkloadSettings:
        """Return these settings with a run's overrides merged over them, validated again."""
        if not overrides:
            return self
        unknown = sorted(set(overrides) - set(OVERRIDABLE_SECTIONS) - {"waits"})
        if unknown:
            raise ConfigError(f"run overrides: unknown section(s) {unknown}; allowed: {sorted(OVERRIDABLE_SECTIONS)}")
        merged = deep_merge(self.model_dump(mode="json"), overrides)
        return _validate(WorkloadSettings, merged, source=f"run overrides for {self.workload_id}")


class FlywheelConfig(_Section):
    """The whole settings file: global sections plus the workloads."""

    defaults: FlywheelSections
    workloads: list[WorkloadSettings]

    def workload(self, workload_id: str) -> WorkloadSettings:
        for workload in self.workloads:
            if workload.workload_id == workload_id:
                return workload
        known = [w.workload_id for w in self.workloads]
        raise ConfigError(f"workload {workload_id!r} is not configured; configured workloads: {known}")


def deep_merge(base: dict[str, Any], override: dict[str, Any]) -> dict[str, Any]:
    """Merge ``override`` into a copy of ``base``: dicts merge key by key, anything else replaces."""
    merged = copy.deepcopy(base)
    for key, value in override.items():
        if isinstance(value, dict) and isinstance(merged.get(key), dict):
            merged[key] = deep_merge(merged[key], value)
        else:
            merged[key] = copy.deepcopy(value)
    return merged


def _format_errors(exc: ValidationError, source: str) -> str:
    lines = []
    for error in exc.errors():
        location = ".".join(str(part) for part in error["loc"]) or "(top level)"
        message = error["msg"].removeprefix("Value error, ")
        if error["type"] == "extra_forbidden":
            message = "unknown setting (check the spelling)"
        lines.append(f"  {location}: {message}")
    plural = "s" if len(lines) > 1 else ""
    return f"{source}: {len(lines)} invalid setting{plural}:\n" + "\n".join(lines)


def _validate(model: type[BaseModel], data: Any, source: str) -> Any:
    try:
        return model.model_validate(data)
    except ValidationError as exc:
        raise ConfigError(_format_errors(exc, source)) from None


def parse_config(raw: dict[str, Any], source: str = "settings") -> FlywheelConfig:
    """Validate a settings document (already parsed from YAML)."""
    if not isinstance(raw, dict):
        raise ConfigError(f"{source}: expected a mapping at the top level, got {type(raw).__name__}")
    allowed_top = set(OVERRIDABLE_SECTIONS) | {"waits", "workloads"}
    unknown = sorted(set(raw) - allowed_top)
    if unknown:
        raise ConfigError(f"{source}: unknown top-level section(s) {unknown}; allowed: {sorted(allowed_top)}")
    defaults_raw = {key: value for key, value in raw.items() if key != "workloads"}
    defaults = _validate(FlywheelSections, defaults_raw, source)
    workloads_raw = raw.get("workloads") or []
    if not isinstance(workloads_raw, list):
        raise ConfigError(f"{source}: workloads must be a list")
    base = defaults.model_dump(mode="json")
    workloads = []
    for index, workload_raw in enumerate(workloads_raw):
        if not isinstance(workload_raw, dict):
            raise ConfigError(f"{source}: workloads[{index}] must be a mapping")
        label = f"{source}: workloads[{index}] ({workload_raw.get('workload_id', '?')})"
        workloads.append(_validate(WorkloadSettings, deep_merge(base, workload_raw), label))
    ids = [w.workload_id for w in workloads]
    repeated = sorted({i for i in ids if ids.count(i) > 1})
    if repeated:
        raise ConfigError(f"{source}: workload_id must be unique, repeated: {repeated}")
    return FlywheelConfig(defaults=defaults, workloads=workloads)


def config_path() -> Path:
    return Path(os.environ.get(CONFIG_PATH_ENV) or DEFAULT_CONFIG_PATH)


def load_config(path: str | Path | None = None) -> FlywheelConfig:
    """Load and validate the settings file (``$FLYWHEEL_CONFIG`` or the bundled one)."""
    path = Path(path) if path else config_path()
    try:
        text = path.read_text(encoding="utf-8")
    except OSError as exc:
        raise ConfigError(f"cannot read settings file {path}: {exc.strerror or exc}") from None
    try:
        raw = yaml.safe_load(text) or {}
    except yaml.YAMLError as exc:
        raise ConfigError(f"{path}: not valid YAML: {exc}") from None
    return parse_config(raw, source=str(path))
