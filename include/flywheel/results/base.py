"""The results store: documents, their validation, and the ``ResultStore`` interface.

The documents are the ones users of NVIDIA's data-flywheel blueprint know, in the same five
collections, keyed for Airflow:

============== ===================================== =================================================
collection     one document per                      holds
============== ===================================== =================================================
flywheel_runs  DAG run (``dag_id``, ``run_id``)      workload/client, window, status, stage, counts
nims           run + candidate ``model_name``        deployment status, error, timings
evaluations    run + ``model_name`` + ``eval_type``  scores, intervals, progress, job id, timings
customizations run + ``model_name``                  job id, customized model, progress, epochs
llm_judge_runs run                                   judge model, type, status, error
============== ===================================== =================================================

A run is addressed by its ``flywheel_run_id``, ``"<dag_id>/<run_id>"`` (Airflow DAG ids never
contain ``/``, so the id splits back unambiguously); see :func:`flywheel_run_id`.

**Writes are idempotent upserts keyed by run and step.** Each ``upsert_*`` call names its key
and the fields it sets; fields it does not name keep their stored values (so a task can record a
job id when it submits and the scores when it collects, and a retried task that writes the same
step again leaves one document with the latest values). ``created_at`` and ``updated_at`` are kept
by the store; ``runtime_seconds`` follows from ``started_at``/``finished_at`` once both are known;
setting a terminal ``status`` without ``finished_at`` stamps ``finished_at`` with the current time
(unless the document already had that status: a repeated write keeps the first time), and
setting a non-terminal one clears it (a cleared task runs again); an evaluation or
customization set to ``completed`` without ``progress`` gets ``progress`` 100.

**Documents are JSON-compatible dicts.** Every method returns plain dicts of JSON types. Timestamps
are UTC and always come back as ISO 8601 strings with millisecond precision and a ``Z`` suffix
(``2026-11-18T02:00:00.000Z``: MongoDB keeps milliseconds, so both backends store exactly that,
and the fixed width sorts as text). Inputs may be tz-aware ``datetime`` objects or ISO strings
with an offset; naive timestamps are rejected because their zone is a guess. Values are validated
by the pydantic models below (unknown fields, wrong types, non-finite numbers and keys starting
with ``$`` are errors that name the collection, the document and the field).

Backends implement five small primitives (:meth:`ResultStore._find_one`, ``_upsert``,
``_find_children``, ``_find_runs``, ``_workload_summaries``); everything else (validation,
merging, derived fields, ordering) lives here once, so both backends behave identically and one
contract test suite covers them.
"""

from __future__ import annotations

import abc
import json
import math
from collections.abc import Callable, Iterable, Mapping
from datetime import datetime, timezone
from enum import Enum
from typing import Annotated, Any, ClassVar, Literal

from pydantic import (
    AfterValidator,
    AwareDatetime,
    BaseModel,
    ConfigDict,
    Field,
    JsonValue,
    ValidationError,
    model_validator,
)

RUNS = "flywheel_runs"
NIMS = "nims"
EVALUATIONS = "evaluations"
CUSTOMIZATIONS = "customizations"
LLM_JUDGE_RUNS = "llm_judge_runs"
COLLECTIONS = (RUNS, NIMS, EVALUATIONS, CUSTOMIZATIONS, LLM_JUDGE_RUNS)

# Divergent cases are for a human to spot-check: a bounded handful, never the whole eval set
# (a MongoDB document is capped at 16 MB).
MAX_DIVERGENT_CASES = 200


class ResultStoreError(RuntimeError):
    """The results store cannot do what was asked (unreachable, locked, newer schema, ...)."""


class InvalidDocumentError(ResultStoreError, ValueError):
    """A write carries invalid values. The message names the collection, the document and each field."""


class UnknownRunError(ResultStoreError, LookupError):
    """A write refers to a flywheel run that was never recorded (call ``upsert_run`` first)."""


# -- identifiers ------------------------------------------------------------------------------------


def flywheel_run_id(dag_id: str, run_id: str) -> str:
    """The id of the flywheel run of an Airflow DAG run: ``"<dag_id>/<run_id>"``.

    Args:
        dag_id: The Airflow DAG id (``flywheel__<workload_id>``); must not contain ``/``.
        run_id: The Airflow run id (``scheduled__2026-11-18T02:00:00+00:00``, ``manual__...``).

    Raises:
        InvalidDocumentError: When either part is empty or the DAG id contains ``/``.
    """
    if not isinstance(dag_id, str) or not dag_id.strip():
        raise InvalidDocumentError(f"dag_id must be a non-empty string, got {dag_id!r}")
    if "/" in dag_id:
        raise InvalidDocumentError(f"dag_id {dag_id!r} must not contain '/' (Airflow DAG ids never do)")
    if not isinstance(run_id, str) or not run_id.strip():
        raise InvalidDocumentError(f"run_id must be a non-empty string, got {run_id!r}")
    return f"{dag_id}/{run_id}"


def split_flywheel_run_id(value: str) -> tuple[str, str]:
    """Split a ``flywheel_run_id`` back into ``(dag_id, run_id)``.

    Raises:
        InvalidDocumentError: When ``value`` is not of the form ``"<dag_id>/<run_id>"``.
    """
    if not isinstance(value, str) or "/" not in value:
        raise InvalidDocumentError(
            f"flywheel_run_id {value!r} is not of the form '<dag_id>/<run_id>' (build it with flywheel_run_id())"
        )
    dag_id, _, run_id = value.partition("/")
    flywheel_run_id(dag_id, run_id)  # validates both parts
    return dag_id, run_id


# -- timestamps -------------------------------------------------------------------------------------


def utc_now() -> datetime:
    """The current time, UTC, truncated to milliseconds (what both backends can store)."""
    return truncate_to_millis(datetime.now(timezone.utc))


def truncate_to_millis(value: datetime) -> datetime:
    """Convert a tz-aware datetime to UTC and drop the sub-millisecond part."""
    value = value.astimezone(timezone.utc)
    return value.replace(microsecond=value.microsecond - value.microsecond % 1000)


def format_timestamp(value: datetime) -> str:
    """The stored and returned text form of a timestamp: ``2026-11-18T02:00:00.000Z`` (fixed width, sorts)."""
    if value.tzinfo is None:
        raise ValueError(f"timestamp {value.isoformat()} has no time zone; pass a tz-aware datetime (UTC)")
    value = truncate_to_millis(value)
    return value.strftime("%Y-%m-%dT%H:%M:%S.") + f"{value.microsecond // 1000:03d}Z"


def to_json_document(value: Any) -> Any:
    """Turn a stored document (with ``datetime`` values) into JSON types, timestamps as text."""
    if isinstance(value, datetime):
        return format_timestamp(value)
    if isinstance(value, Enum):
        return value.value
    if isinstance(value, Mapping):
        return {str(key): to_json_document(item) for key, item in value.items()}
    if isinstance(value, list | tuple):
        return [to_json_document(item) for item in value]
    return value


UtcDateTime = Annotated[AwareDatetime, AfterValidator(truncate_to_millis)]


# -- statuses ---------------------------------------------------------------------------------------


class RunStatus(str, Enum):
    """Status of a flywheel run (one DAG run)."""

    PENDING = "pending"
    RUNNING = "running"
    COMPLETED = "completed"
    # Some candidates failed, the others finished: what the run learned is still recorded.
    COMPLETED_WITH_ERRORS = "completed_with_errors"
    FAILED = "failed"
    CANCELLED = "cancelled"


class NimStatus(str, Enum):
    """Status of one candidate NIM within a run (the blueprint's values)."""

    PENDING = "pending"
    DEPLOYING = "deploying-nim"
    RUNNING = "running-evals"
    COMPLETED = "completed"
    FAILED = "failed"
    CANCELLED = "cancelled"


class EvalType(str, Enum):
    """The three evaluations of a candidate."""

    BASE = "base-eval"
    ICL = "icl-eval"
    CUSTOMIZED = "customized-eval"


EVAL_TYPE_ORDER = {eval_type.value: index for index, eval_type in enumerate(EvalType)}
TERMINAL_RUN_STATUSES = frozenset(
    {RunStatus.COMPLETED, RunStatus.COMPLETED_WITH_ERRORS, RunStatus.FAILED, RunStatus.CANCELLED}
)
TERMINAL_NIM_STATUSES = frozenset({NimStatus.COMPLETED, NimStatus.FAILED, NimStatus.CANCELLED})
# Remote job states (Evaluator, Customizer) are stored as reported; these end a job.
TERMINAL_JOB_STATUSES = frozenset({"completed", "failed", "cancelled"})


def _lower(value: str | None) -> str | None:
    return value.strip().lower() if isinstance(value, str) else value


# Statuses reported by remote services: kept as text (an unknown value must not lose the write).
RemoteStatus = Annotated[str, AfterValidator(_lower)]


# -- documents --------------------------------------------------------------------------------------


def _check_json_values(value: Any, path: str) -> None:
    """Reject what MongoDB and strict JSON cannot both hold: non-finite floats and ``$`` keys."""
    if isinstance(value, float) and not math.isfinite(value):
        raise ValueError(f"{path or 'value'} is {value!r}; only finite numbers can be stored (count it instead)")
    if isinstance(value, Mapping):
        for key, item in value.items():
            if not isinstance(key, str):
                raise ValueError(f"{path or 'value'} has a non-string key {key!r}")
            if key.startswith("$"):
                raise ValueError(f"{path or 'value'} has the key {key!r}; keys must not start with '$'")
            _check_json_values(item, f"{path}.{key}" if path else key)
    elif isinstance(value, list | tuple):
        for index, item in enumerate(value):
            _check_json_values(item, f"{path}[{index}]")


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", use_enum_values=True, validate_default=True)


class ScoreInterval(_Strict):
    """A confidence interval of a score's mean (see :mod:`include.flywheel.scoring`)."""

    mean: float
    low: float
    high: float
    n: int = Field(ge=0)
    confidence: float = Field(default=0.95, gt=0.0, lt=1.0)
    method: str = "bootstrap"

    @model_validator(mode="after")
    def _ordered(self) -> ScoreInterval:
        if not self.low <= self.mean <= self.high:
            raise ValueError(f"interval must satisfy low <= mean <= high, got {self.low} / {self.mean} / {self.high}")
        return self


class LogWindowDoc(_Strict):
    """The half-open log window ``[start, end)`` a run read."""

    start: UtcDateTime
    end: UtcDateTime
    source: str | None = None


class DatasetDoc(_Strict):
    """A dataset a run produced (``eval``, ``icl``, ``train``, ``val``)."""

    name: str = Field(min_length=1)
    kind: str | None = None
    num_records: int | None = Field(default=None, ge=0)
    uri: str | None = None
    sha256: str | None = None


class Document(_Strict):
    """Fields every document has. ``extra`` holds JSON this schema does not name (nothing is dropped)."""

    collection: ClassVar[str]
    key_fields: ClassVar[tuple[str, ...]]
    terminal_statuses: ClassVar[frozenset[str]] = frozenset()

    created_at: UtcDateTime
    updated_at: UtcDateTime
    extra: dict[str, JsonValue] = Field(default_factory=dict)

    @model_validator(mode="after")
    def _json_safe(self) -> Document:
        _check_json_values(self.model_dump(mode="python"), "")
        started = getattr(self, "started_at", None)
        finished = getattr(self, "finished_at", None)
        if started is not None and finished is not None:
            if finished < started:
                raise ValueError(
                    f"finished_at ({format_timestamp(finished)}) is before started_at ({format_timestamp(started)})"
                )
            # Derived, so it can never disagree with the timestamps it comes from.
            object.__setattr__(self, "runtime_seconds", round((finished - started).total_seconds(), 3))
        return self


class _Timed(_Strict):
    started_at: UtcDateTime | None = None
    finished_at: UtcDateTime | None = None
    # Elapsed so far while running (the caller may set it); derived once both timestamps exist.
    runtime_seconds: float | None = Field(default=None, ge=0.0)
    error: str | None = None


class FlywheelRunDoc(_Timed, Document):
    """One flywheel run: one Airflow DAG run of one workload."""

    collection: ClassVar[str] = RUNS
    key_fields: ClassVar[tuple[str, ...]] = ("flywheel_run_id",)
    terminal_statuses: ClassVar[frozenset[str]] = frozenset(status.value for status in TERMINAL_RUN_STATUSES)

    flywheel_run_id: str
    dag_id: str = Field(min_length=1)
    run_id: str = Field(min_length=1)
    workload_id: str = Field(min_length=1)
    client_id: str = Field(min_length=1)
    status: RunStatus = RunStatus.PENDING
    started_at: UtcDateTime
    # The last step that reported (e.g. "prepare_datasets"): how far a failed run got.
    stage: str | None = None
    data_interval_start: UtcDateTime | None = None
    data_interval_end: UtcDateTime | None = None
    log_window: LogWindowDoc | None = None
    workload_type: str | None = None
    num_records: int | None = Field(default=None, ge=0)
    # Counts by stage and reason, e.g. {"extraction": {"read": 120, "other_client": 5},
    # "preparation": {"dropped": {"invalid_format": 3}, "duplicates": 7}}.
    record_counts: dict[str, JsonValue] = Field(default_factory=dict)
    datasets: list[DatasetDoc] = Field(default_factory=list)
    # The run's settings overrides (what differed from the workload's configuration).
    overrides: dict[str, JsonValue] = Field(default_factory=dict)
    # What aggregate/report concluded: comparisons with earlier runs, verdicts per candidate.
    summary: dict[str, JsonValue] = Field(default_factory=dict)

    @model_validator(mode="after")
    def _id_matches(self) -> FlywheelRunDoc:
        expected = flywheel_run_id(self.dag_id, self.run_id)
        if self.flywheel_run_id != expected:
            raise ValueError(f"flywheel_run_id {self.flywheel_run_id!r} does not match dag_id/run_id ({expected!r})")
        return self


class _RunChild(Document):
    flywheel_run_id: str
    # Copied from the run, so a workload's history can be read without joining.
    workload_id: str


class NimDoc(_Timed, _RunChild):
    """One candidate NIM within a run."""

    collection: ClassVar[str] = NIMS
    key_fields: ClassVar[tuple[str, ...]] = ("flywheel_run_id", "model_name")
    terminal_statuses: ClassVar[frozenset[str]] = frozenset(status.value for status in TERMINAL_NIM_STATUSES)

    model_name: str = Field(min_length=1)
    status: NimStatus = NimStatus.PENDING
    # The Deployment Management status as reported (created, pending, ready, ...; unknown kept).
    deployment_status: RemoteStatus | None = None
    deployment_name: str | None = None


class EvaluationDoc(_Timed, _RunChild):
    """One evaluation of one candidate in one run (``eval_type`` base / icl / customized)."""

    collection: ClassVar[str] = EVALUATIONS
    key_fields: ClassVar[tuple[str, ...]] = ("flywheel_run_id", "model_name", "eval_type")
    terminal_statuses: ClassVar[frozenset[str]] = TERMINAL_JOB_STATUSES

    model_name: str = Field(min_length=1)
    eval_type: EvalType
    # The Evaluator job status as reported (created, pending, running, completed, failed, ...).
    status: RemoteStatus | None = None
    job_id: str | None = None
    nmp_uri: str | None = None
    progress: float = Field(default=0.0, ge=0.0, le=100.0)
    # Flywheel score keys: similarity | function_name, function_name_and_args_accuracy,
    # tool_calling_correctness (see include.flywheel.scoring).
    scores: dict[str, float] = Field(default_factory=dict)
    ci: dict[str, ScoreInterval] = Field(default_factory=dict)
    # Rows scored and rows the evaluator could not score, per score key.
    counts: dict[str, dict[str, int]] = Field(default_factory=dict)
    # Per-request test-time compute, e.g. {"mean_ms": 412.0, "p95_ms": 900.0, "n": 20}.
    latency: dict[str, float | int | None] = Field(default_factory=dict)
    tokens: dict[str, float | int | None] = Field(default_factory=dict)
    # A few rows where candidate and reference disagree, for a human to spot-check.
    divergent_cases: list[dict[str, JsonValue]] = Field(default_factory=list, max_length=MAX_DIVERGENT_CASES)
    dataset: str | None = None

    @model_validator(mode="after")
    def _intervals_for_scores(self) -> EvaluationDoc:
        orphans = sorted(set(self.ci) - set(self.scores))
        if orphans:
            raise ValueError(f"ci has intervals for {orphans} but scores has no such keys")
        return self


class CustomizationDoc(_Timed, _RunChild):
    """The customization (fine-tuning) of one candidate in one run."""

    collection: ClassVar[str] = CUSTOMIZATIONS
    key_fields: ClassVar[tuple[str, ...]] = ("flywheel_run_id", "model_name")
    terminal_statuses: ClassVar[frozenset[str]] = TERMINAL_JOB_STATUSES

    # The base model that is customized.
    model_name: str = Field(min_length=1)
    status: RemoteStatus | None = None
    job_id: str | None = None
    nmp_uri: str | None = None
    # The output model the job produces (the blueprint calls it customized_model).
    customized_model: str | None = None
    config_name: str | None = None
    dataset: str | None = None
    progress: float = Field(default=0.0, ge=0.0, le=100.0)
    epochs: int | None = Field(default=None, ge=0)
    epochs_completed: int | None = Field(default=None, ge=0)
    steps_completed: int | None = Field(default=None, ge=0)


class LlmJudgeRunDoc(_Timed, _RunChild):
    """The LLM judge of one run."""

    collection: ClassVar[str] = LLM_JUDGE_RUNS
    key_fields: ClassVar[tuple[str, ...]] = ("flywheel_run_id",)
    terminal_statuses: ClassVar[frozenset[str]] = frozenset({"ready", "failed", "cancelled"})

    model_name: str = Field(min_length=1)
    type: Literal["remote", "local"]
    # Whether the flywheel can use the judge: pending, ready, failed, cancelled.
    status: RemoteStatus | None = None
    # For a local judge, the Deployment Management status as reported.
    deployment_status: RemoteStatus | None = None


DOCUMENT_MODELS: dict[str, type[Document]] = {
    model.collection: model for model in (FlywheelRunDoc, NimDoc, EvaluationDoc, CustomizationDoc, LlmJudgeRunDoc)
}
# Fields the store sets; a caller passing one gets a clear error instead of a silent override.
_STORE_FIELDS = frozenset({"created_at", "updated_at", "flywheel_run_id", "workload_id"})


def _format_validation_error(exc: ValidationError, what: str) -> str:
    lines = []
    for error in exc.errors():
        location = ".".join(str(part) for part in error["loc"]) or "(document)"
        message = error["msg"].removeprefix("Value error, ")
        if error["type"] == "extra_forbidden":
            message = "unknown field (check the spelling, or put it under 'extra')"
        lines.append(f"  {location}: {message}")
    plural = "s" if len(lines) > 1 else ""
    return f"{what}: {len(lines)} invalid field{plural}:\n" + "\n".join(lines)


# -- the interface ----------------------------------------------------------------------------------

Builder = Callable[[dict[str, Any] | None], dict[str, Any]]


class ResultStore(abc.ABC):
    """Where flywheel runs and their steps are recorded (SQLite file or MongoDB).

    Use :func:`include.flywheel.results.open_result_store` to get the configured one. Writes are
    idempotent upserts (see the module docstring); reads return JSON-compatible dicts. A store is
    safe to use from several threads, and (SQLite: on a local disk) from several processes.

    Example:
        >>> store = open_result_store(settings.results)  # doctest: +SKIP
        >>> run = store.upsert_run("flywheel__support", run_id, workload_id="support",
        ...                        client_id="acme", status="running")  # doctest: +SKIP
        >>> store.upsert_evaluation(run["flywheel_run_id"], "meta/llama-3.2-1b-instruct", "base-eval",
        ...                         job_id="eval-123", status="running")  # doctest: +SKIP
    """

    # -- writes -------------------------------------------------------------------------------------

    def upsert_run(self, dag_id: str, run_id: str, **fields: Any) -> dict[str, Any]:
        """Create or update the flywheel run of a DAG run.

        Args:
            dag_id: The Airflow DAG id.
            run_id: The Airflow run id.
            **fields: Fields of :class:`FlywheelRunDoc` to set. ``workload_id`` and ``client_id``
                are required when the run is first recorded; ``status`` defaults to ``pending``
                and ``started_at`` to now.

        Returns:
            The stored run document (without its children).

        Raises:
            InvalidDocumentError: On unknown fields or invalid values.
        """
        key = {"flywheel_run_id": flywheel_run_id(dag_id, run_id)}
        self._reject_store_fields(RUNS, fields, allowed={"workload_id"})
        for name in ("dag_id", "run_id"):
            if name in fields:
                raise InvalidDocumentError(f"{RUNS}: {name} is given as an argument; do not repeat it in fields")
        fields = {**fields, "dag_id": dag_id, "run_id": run_id}
        return self._write(FlywheelRunDoc, key, fields, parent=None, must_exist=False)

    def update_run(self, run: str, **fields: Any) -> dict[str, Any]:
        """Update fields of a recorded run (status, stage, counts, error, summary, ...).

        Setting a terminal ``status`` (completed, completed_with_errors, failed, cancelled) without
        ``finished_at`` stamps it now; a failed run keeps everything recorded so far (its stage,
        counts, NIMs, evaluations): pass ``error`` to say what went wrong.

        Args:
            run: The ``flywheel_run_id``.
            **fields: Fields of :class:`FlywheelRunDoc` to set.

        Raises:
            UnknownRunError: When the run was never recorded.
            InvalidDocumentError: On unknown fields or invalid values.
        """
        split_flywheel_run_id(run)
        self._reject_store_fields(RUNS, fields, allowed=set())
        for name in ("dag_id", "run_id"):
            if name in fields:
                raise InvalidDocumentError(f"{RUNS} {run}: {name} is part of the run's key and cannot change")
        return self._write(FlywheelRunDoc, {"flywheel_run_id": run}, fields, parent=None, must_exist=True)

    def upsert_nim(self, run: str, model_name: str, **fields: Any) -> dict[str, Any]:
        """Create or update a candidate NIM of a run (key: run + ``model_name``).

        Raises:
            UnknownRunError: When the run was never recorded.
            InvalidDocumentError: On unknown fields or invalid values.
        """
        key = {"flywheel_run_id": run, "model_name": model_name}
        return self._write_child(NimDoc, key, fields)

    def upsert_evaluation(self, run: str, model_name: str, eval_type: str | EvalType, **fields: Any) -> dict[str, Any]:
        """Create or update an evaluation (key: run + ``model_name`` + ``eval_type``).

        Args:
            run: The ``flywheel_run_id``.
            model_name: The candidate that was evaluated (its base model name, also for a
                customized-eval: the customized model is on the customization document).
            eval_type: ``base-eval``, ``icl-eval`` or ``customized-eval``.
            **fields: Fields of :class:`EvaluationDoc` (``scores``, ``ci``, ``progress``, ``job_id``,
                ``status``, ``started_at``, ``finished_at``, ``error``, ``latency``, ``tokens``,
                ``divergent_cases``, ...).

        Raises:
            UnknownRunError: When the run was never recorded.
            InvalidDocumentError: On an unknown ``eval_type``, unknown fields or invalid values.
        """
        eval_type = eval_type.value if isinstance(eval_type, EvalType) else eval_type
        if eval_type not in EVAL_TYPE_ORDER:
            raise InvalidDocumentError(
                f"{EVALUATIONS}: eval_type {eval_type!r} is unknown; use one of {list(EVAL_TYPE_ORDER)}"
            )
        key = {"flywheel_run_id": run, "model_name": model_name, "eval_type": eval_type}
        return self._write_child(EvaluationDoc, key, fields)

    def upsert_customization(self, run: str, model_name: str, **fields: Any) -> dict[str, Any]:
        """Create or update the customization of a candidate (key: run + ``model_name``).

        Raises:
            UnknownRunError: When the run was never recorded.
            InvalidDocumentError: On unknown fields or invalid values.
        """
        key = {"flywheel_run_id": run, "model_name": model_name}
        return self._write_child(CustomizationDoc, key, fields)

    def upsert_judge_run(self, run: str, **fields: Any) -> dict[str, Any]:
        """Create or update the LLM judge record of a run (key: run).

        ``model_name`` and ``type`` (remote | local) are required when first recorded.

        Raises:
            UnknownRunError: When the run was never recorded.
            InvalidDocumentError: On unknown fields or invalid values.
        """
        return self._write_child(LlmJudgeRunDoc, {"flywheel_run_id": run}, fields)

    # -- reads --------------------------------------------------------------------------------------

    def get_run(self, run: str) -> dict[str, Any] | None:
        """A run with its children, or ``None`` when it was never recorded.

        Returns:
            The run document plus ``nims``, ``evaluations`` and ``customizations`` (lists sorted by
            model name, then eval type base -> icl -> customized) and ``llm_judge`` (a document
            or ``None``).
        """
        split_flywheel_run_id(run)
        document = self._find_one(RUNS, {"flywheel_run_id": run})
        if document is None:
            return None
        return self._with_children(document)

    def list_runs(
        self,
        workload_id: str,
        *,
        status: str | RunStatus | Iterable[str | RunStatus] | None = None,
        limit: int | None = None,
        with_children: bool = False,
    ) -> list[dict[str, Any]]:
        """The runs of a workload, newest first (by ``started_at``, then ``run_id``).

        Args:
            workload_id: The workload.
            status: Only runs in this status (or any of these statuses).
            limit: At most this many runs (``None``: all).
            with_children: Attach ``nims``/``evaluations``/``customizations``/``llm_judge`` as
                :meth:`get_run` does (one more query per run).

        Raises:
            InvalidDocumentError: On an unknown status or a limit below 1.
        """
        statuses = self._statuses(status)
        if limit is not None and (not isinstance(limit, int) or limit < 1):
            raise InvalidDocumentError(f"limit must be a positive integer or None, got {limit!r}")
        runs = self._find_runs(workload_id, statuses, limit)
        return [self._with_children(run) for run in runs] if with_children else runs

    def list_workloads(self) -> list[dict[str, Any]]:
        """Every workload with recorded runs, sorted by ``workload_id``.

        Returns:
            Dicts with ``workload_id``, ``runs`` (count), ``statuses`` (count per status) and the
            latest run's ``client_id``, ``dag_id``, ``last_run_id`` (its flywheel_run_id),
            ``last_status`` and ``last_started_at``.
        """
        return sorted(self._workload_summaries(), key=lambda summary: summary["workload_id"])

    # -- lifecycle ----------------------------------------------------------------------------------

    @abc.abstractmethod
    def ensure_indexes(self) -> None:
        """Create the tables/collections and indexes the store needs (idempotent)."""

    def close(self) -> None:  # noqa: B027 - optional for backends
        """Release connections. The store reconnects if used again."""

    def __enter__(self) -> ResultStore:
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.close()

    # -- backend primitives -------------------------------------------------------------------------

    @abc.abstractmethod
    def _find_one(self, collection: str, key: Mapping[str, str]) -> dict[str, Any] | None:
        """The stored document with this key, as JSON types (see :func:`to_json_document`), or ``None``."""

    @abc.abstractmethod
    def _upsert(
        self,
        collection: str,
        key: Mapping[str, str],
        explicit: frozenset[str],
        build: Builder,
        must_exist: bool,
    ) -> dict[str, Any]:
        """Atomically read the document with ``key``, ``build`` the new one, store it, return it.

        ``build(current_or_None)`` returns the complete new document with ``datetime`` values; it
        raises to abort. ``explicit`` names the fields this write sets (a backend that updates
        field by field must always write those). Returns the stored document as JSON types.
        """

    @abc.abstractmethod
    def _find_children(self, collection: str, run: str) -> list[dict[str, Any]]:
        """All documents of a child collection that belong to a run (any order)."""

    @abc.abstractmethod
    def _find_runs(self, workload_id: str, statuses: list[str] | None, limit: int | None) -> list[dict[str, Any]]:
        """Runs of a workload, newest first (``started_at`` desc, then ``run_id`` desc)."""

    @abc.abstractmethod
    def _workload_summaries(self) -> list[dict[str, Any]]:
        """One summary per workload (the fields :meth:`list_workloads` documents), any order."""

    # -- shared machinery ---------------------------------------------------------------------------

    @staticmethod
    def _statuses(status: str | RunStatus | Iterable[str | RunStatus] | None) -> list[str] | None:
        if status is None:
            return None
        values = [status] if isinstance(status, str | RunStatus) else list(status)
        known = [member.value for member in RunStatus]
        result = []
        for value in values:
            value = value.value if isinstance(value, RunStatus) else value
            if value not in known:
                raise InvalidDocumentError(f"run status {value!r} is unknown; use one of {known}")
            result.append(value)
        return result

    @staticmethod
    def _reject_store_fields(collection: str, fields: Mapping[str, Any], allowed: set[str]) -> None:
        managed = sorted((set(fields) & _STORE_FIELDS) - allowed)
        if managed:
            raise InvalidDocumentError(f"{collection}: {managed} are set by the store; do not pass them")

    def _write_child(self, model: type[Document], key: dict[str, str], fields: dict[str, Any]) -> dict[str, Any]:
        split_flywheel_run_id(key["flywheel_run_id"])
        for name, value in key.items():
            if not isinstance(value, str) or not value.strip():
                raise InvalidDocumentError(f"{model.collection}: {name} must be a non-empty string, got {value!r}")
        self._reject_store_fields(model.collection, fields, allowed=set())
        clash = sorted(set(fields) & set(key))
        if clash:
            raise InvalidDocumentError(f"{model.collection}: {clash} are given as key arguments; do not repeat them")
        parent = self._find_one(RUNS, {"flywheel_run_id": key["flywheel_run_id"]})
        if parent is None:
            raise UnknownRunError(
                f"{model.collection}: flywheel run {key['flywheel_run_id']!r} is not recorded; "
                "call upsert_run(dag_id, run_id, ...) before recording its steps"
            )
        return self._write(model, key, fields, parent=parent, must_exist=False)

    def _write(
        self,
        model: type[Document],
        key: dict[str, str],
        fields: dict[str, Any],
        *,
        parent: Mapping[str, Any] | None,
        must_exist: bool,
    ) -> dict[str, Any]:
        what = f"{model.collection} {'/'.join(key.values())}"
        status = fields.get("status")
        status = _lower(status.value if isinstance(status, Enum) else status)
        if status == "completed" and "progress" in model.model_fields and "progress" not in fields:
            fields = {**fields, "progress": 100.0}  # a completed job is done, whatever it last reported
        explicit = set(fields) | {"updated_at"}
        if parent is not None:
            explicit.add("workload_id")
        if "status" in fields and "finished_at" not in fields and fields["status"] is not None:
            explicit.add("finished_at")

        def build(current: dict[str, Any] | None) -> dict[str, Any]:
            if current is None and must_exist:
                raise UnknownRunError(f"{what}: not recorded; call upsert_run(dag_id, run_id, ...) first")
            now = utc_now()
            # Stored fields this version does not know are kept by the backend, not re-validated.
            known = {name: value for name, value in (current or {}).items() if name in model.model_fields}
            if current is not None and "workload_id" in fields and fields["workload_id"] != current.get("workload_id"):
                raise InvalidDocumentError(
                    f"{what}: workload_id is {current.get('workload_id')!r} and cannot change to "
                    f"{fields['workload_id']!r} (its steps are recorded under it)"
                )
            data: dict[str, Any] = {**known, **fields, **key}
            data["created_at"] = known.get("created_at", now)
            data["updated_at"] = now
            if parent is not None:
                data["workload_id"] = parent["workload_id"]
            if model is FlywheelRunDoc and "started_at" not in data:
                data["started_at"] = now
            if "finished_at" in explicit and "finished_at" not in fields:
                if status not in model.terminal_statuses:
                    data["finished_at"] = None
                elif not (current and current.get("status") == status and known.get("finished_at")):
                    # Stamp the transition; writing the same terminal status again keeps its time.
                    data["finished_at"] = now
            if "finished_at" in explicit and data.get("finished_at") is None and "runtime_seconds" not in fields:
                data["runtime_seconds"] = None  # derived from the finish that was just cleared
            try:
                document = model.model_validate(data)
            except ValidationError as exc:
                raise InvalidDocumentError(_format_validation_error(exc, what)) from None
            return document.model_dump(mode="python")

        try:
            return self._upsert(model.collection, key, frozenset(explicit), build, must_exist)
        except ResultStoreError:
            raise
        except (TypeError, ValueError) as exc:
            # e.g. a value the backend cannot encode: name the document rather than leak a driver error.
            raise InvalidDocumentError(f"{what}: {exc}") from exc

    def _with_children(self, run: dict[str, Any]) -> dict[str, Any]:
        run_key = run["flywheel_run_id"]
        nims = sorted(self._find_children(NIMS, run_key), key=lambda doc: doc["model_name"])
        evaluations = sorted(
            self._find_children(EVALUATIONS, run_key),
            key=lambda doc: (doc["model_name"], EVAL_TYPE_ORDER.get(doc["eval_type"], len(EVAL_TYPE_ORDER))),
        )
        customizations = sorted(self._find_children(CUSTOMIZATIONS, run_key), key=lambda doc: doc["model_name"])
        judges = self._find_children(LLM_JUDGE_RUNS, run_key)
        return {
            **run,
            "nims": nims,
            "evaluations": evaluations,
            "customizations": customizations,
            "llm_judge": judges[0] if judges else None,
        }


def summarize_workloads(runs: Iterable[Mapping[str, Any]]) -> list[dict[str, Any]]:
    """Build :meth:`ResultStore.list_workloads` summaries from runs sorted newest first.

    Backends that cannot aggregate on the server use this on a projection of the runs
    (``workload_id``, ``client_id``, ``dag_id``, ``flywheel_run_id``, ``status``, ``started_at``).
    """
    summaries: dict[str, dict[str, Any]] = {}
    for run in runs:
        summary = summaries.get(run["workload_id"])
        if summary is None:
            summary = summaries[run["workload_id"]] = {
                "workload_id": run["workload_id"],
                "client_id": run.get("client_id"),
                "dag_id": run.get("dag_id"),
                "runs": 0,
                "statuses": {},
                "last_run_id": run["flywheel_run_id"],
                "last_status": run.get("status"),
                "last_started_at": run.get("started_at"),
            }
        summary["runs"] += 1
        status = run.get("status")
        summary["statuses"][status] = summary["statuses"].get(status, 0) + 1
    return list(summaries.values())


def document_json(document: Mapping[str, Any]) -> str:
    """A document as compact JSON text (sorted keys; NaN/Infinity rejected)."""
    return json.dumps(to_json_document(document), sort_keys=True, separators=(",", ":"), allow_nan=False,
                      ensure_ascii=False)

