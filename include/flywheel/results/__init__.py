"""The results store: where each flywheel run and its steps are recorded.

``open_result_store(settings.results)`` returns the configured :class:`ResultStore`: the
embedded SQLite file (default) or MongoDB through the Airflow Connection ``results.mongo_conn_id``.
The MongoDB module (and with it Airflow and the Mongo provider) is imported only when that
backend is configured, so the embedded path stays light and Airflow-free.

Typical use from a task::

    store = open_result_store(settings.results)
    run = store.upsert_run(dag_id, run_id, workload_id=..., client_id=..., status="running")
    store.upsert_evaluation(run["flywheel_run_id"], model, "base-eval", scores={...}, ci={...})
    store.update_run(run["flywheel_run_id"], status="completed")
"""

from __future__ import annotations

from pathlib import Path

from include.flywheel.config import PROJECT_ROOT, ResultsBackend, ResultsSettings
from include.flywheel.results.base import (
    COLLECTIONS,
    EVAL_TYPE_ORDER,
    MAX_DIVERGENT_CASES,
    CustomizationDoc,
    DatasetDoc,
    EvalType,
    EvaluationDoc,
    FlywheelRunDoc,
    InvalidDocumentError,
    LlmJudgeRunDoc,
    LogWindowDoc,
    NimDoc,
    NimStatus,
    ResultStore,
    ResultStoreError,
    RunStatus,
    ScoreInterval,
    UnknownRunError,
    flywheel_run_id,
    format_timestamp,
    split_flywheel_run_id,
)
from include.flywheel.results.sqlite import SqliteResultStore

__all__ = [
    "COLLECTIONS",
    "EVAL_TYPE_ORDER",
    "MAX_DIVERGENT_CASES",
    "CustomizationDoc",
    "DatasetDoc",
    "EvalType",
    "EvaluationDoc",
    "FlywheelRunDoc",
    "InvalidDocumentError",
    "LlmJudgeRunDoc",
    "LogWindowDoc",
    "NimDoc",
    "NimStatus",
    "ResultStore",
    "ResultStoreError",
    "RunStatus",
    "ScoreInterval",
    "SqliteResultStore",
    "UnknownRunError",
    "flywheel_run_id",
    "format_timestamp",
    "open_result_store",
    "resolve_sqlite_path",
    "split_flywheel_run_id",
]


def resolve_sqlite_path(settings: ResultsSettings) -> Path:
    """``results.sqlite_path``: absolute as given, else relative to the project root (``~`` expanded)."""
    path = Path(settings.sqlite_path).expanduser()
    return path if path.is_absolute() else PROJECT_ROOT / path


def open_result_store(settings: ResultsSettings) -> ResultStore:
    """Build the results store the settings name (``results.backend``).

    Nothing connects until the first read or write, so this is cheap and safe anywhere.

    Args:
        settings: The ``results`` section of the run's effective settings.

    Returns:
        A :class:`SqliteResultStore` on ``results.sqlite_path``, or a ``MongoResultStore`` on
        database ``results.database`` through the Airflow Connection ``results.mongo_conn_id``.
    """
    backend = ResultsBackend(settings.backend)
    if backend == ResultsBackend.SQLITE:
        return SqliteResultStore(resolve_sqlite_path(settings))
    if backend == ResultsBackend.MONGO:
        from include.flywheel.results.mongo import MongoResultStore

        return MongoResultStore(mongo_conn_id=settings.mongo_conn_id, database=settings.database)
    raise ValueError(  # pragma: no cover - the settings model only admits the members above
        f"unknown results.backend {settings.backend!r}; expected one of {[member.value for member in ResultsBackend]}"
    )
