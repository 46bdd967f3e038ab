"""Bodies of the flywheel's data tasks: extract the run's logs, prepare the datasets.

They run on a worker (never at parse time), stream their data through staged files, and
return small handles (URIs, counts, checksums) for XCom: never records.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import logging
from collections.abc import Iterator
from typing import Any

from airflow.sdk import get_current_context
from airflow.sdk.exceptions import AirflowFailException

from include.flywheel.config import ConfigError, ExampleSelection, LogSourceKind, WorkloadSettings, load_config
from include.flywheel.runs import LogWindow, resolve_window, run_settings
from include.orchestration.staging import run_staging_dir

log = logging.getLogger(__name__)

EXTRACT_FILE = "extract/records.jsonl"
REPORT_FILE = "preparation_report.json"


@contextlib.contextmanager
def fail_without_retry_on_bad_input() -> Iterator[None]:
    """Bad settings or too little data will not fix themselves: fail at once instead of retrying."""
    from include.flywheel.partition import InsufficientDataError

    try:
        yield
    except (ConfigError, InsufficientDataError) as exc:
        raise AirflowFailException(str(exc)) from exc


def current_run_settings(
    workload_id: str, context: dict[str, Any] | None = None
) -> tuple[WorkloadSettings, dict[str, Any]]:
    """Load the workload's settings and merge this run's params over them."""
    context = context if context is not None else get_current_context()
    workload = load_config().workload(workload_id)
    return run_settings(workload, dict(context["params"])), context


def record_run(settings: WorkloadSettings, context: dict[str, Any], **fields: Any) -> None:
    """Create or update this run's document in the results store."""
    from include.flywheel.results import open_result_store

    with open_result_store(settings.results) as store:
        store.upsert_run(
            context["dag"].dag_id,
            context["run_id"],
            workload_id=settings.workload_id,
            client_id=settings.client_id,
            **fields,
        )


def _window(context: dict[str, Any]) -> LogWindow:
    return resolve_window(dict(context["params"]), context.get("data_interval_start"), context.get("data_interval_end"))


def extract_logs(workload_id: str) -> dict[str, Any]:
    """Stream the run's log window from the configured source into a staged JSONL file."""
    from include.flywheel.logs import open_log_source

    with fail_without_retry_on_bad_input():
        settings, context = current_run_settings(workload_id)
        window = _window(context)
    record_run(
        settings,
        context,
        status="running",
        stage="extract_logs",
        log_window={"start": window.start, "end": window.end, "source": window.source},
        data_interval_start=context.get("data_interval_start"),
        data_interval_end=context.get("data_interval_end"),
        overrides=dict(context["params"]),
    )
    source = open_log_source(settings.logs)
    target = run_staging_dir(settings, context["dag"].dag_id, context["run_id"]) / EXTRACT_FILE
    target.parent.mkdir(parents=True, exist_ok=True)
    log.info(
        "Extracting %s logs of workload %s (client %s) from %s in [%s, %s) (window from %s).",
        settings.logs.source.value,
        settings.workload_id,
        settings.client_id,
        settings.logs.resolved_path() if settings.logs.source is LogSourceKind.FILES else settings.logs.index,
        window.start.isoformat(),
        window.end.isoformat(),
        window.source,
    )
    digest = hashlib.sha256()
    count = 0
    size = 0
    with target.open("wb") as sink:
        for record in source.iter_records(settings.workload_id, settings.client_id, window.start, window.end):
            line = json.dumps(record, ensure_ascii=False, separators=(",", ":")).encode("utf-8") + b"\n"
            sink.write(line)
            digest.update(line)
            size += len(line)
            count += 1
            if count % 100_000 == 0:
                log.info("Extracted %d records so far.", count)
    stats = source.stats.as_dict()
    log.info("Extraction finished: %d records staged at %s.\n%s", count, target, source.stats.summary())
    return {
        "uri": str(target),
        "records": count,
        "sha256": digest.hexdigest(),
        "bytes": size,
        "window": window.as_dict(),
        "stats": stats,
    }


def _staged_records(uri: str):
    from airflow.sdk import ObjectStoragePath

    with ObjectStoragePath(uri).open("rb") as source:
        for line in source:
            yield json.loads(line)


def prepare_datasets(workload_id: str, extracted: dict[str, Any]) -> dict[str, Any]:
    """Validate, deduplicate and split the staged records; write eval / ICL / train / val files."""
    from include.flywheel.datasets import write_datasets
    from include.flywheel.pipeline import prepare_datasets as run_preparation

    with fail_without_retry_on_bad_input():
        settings, context = current_run_settings(workload_id)
        embedder = None
        if settings.icl.example_selection is ExampleSelection.SEMANTIC:
            embedder = _embedding_client(settings)
        log.info("Preparing datasets from %d extracted records (%s).", extracted["records"], extracted["uri"])
        prepared = run_preparation(_staged_records(extracted["uri"]), settings, embedder=embedder)
    directory = run_staging_dir(settings, context["dag"].dag_id, context["run_id"]) / "datasets"
    directory.mkdir(parents=True, exist_ok=True)
    handles = write_datasets(prepared, directory)
    report = prepared.report
    log.info("Preparation of workload %s finished.\n%s", settings.workload_id, report.summary())
    result = {
        "workload_type": prepared.workload_type,
        "datasets": {kind: handle.model_dump(mode="json") for kind, handle in handles.items()},
        "report": report.model_dump(mode="json"),
        "extraction": extracted["stats"],
        "window": extracted["window"],
    }
    record_run(
        settings,
        context,
        stage="prepare_datasets",
        workload_type=prepared.workload_type,
        num_records=extracted["records"],
        record_counts={"extraction": extracted["stats"], "preparation": result["report"]},
        datasets=[
            {"name": kind, "kind": kind, "num_records": handle["total_records"], "uri": handle["uri"]}
            for kind, handle in result["datasets"].items()
        ],
    )
    # A durable copy next to the datasets: what this run read, dropped and produced.
    with (directory / REPORT_FILE).open("wb") as sink:
        sink.write(json.dumps(result, indent=2, sort_keys=True).encode("utf-8"))
    return result


def _embedding_client(settings: WorkloadSettings):
    """An embeddings client for semantic ICL selection, at the endpoint of its Airflow Connection."""
    from include.flywheel.embeddings import EmbeddingClient
    from include.nemo.hooks import NimHook

    similarity = settings.icl.similarity
    endpoint = NimHook(similarity.embedding_conn_id).endpoint
    return EmbeddingClient(
        base_url=endpoint.base_url,
        model=similarity.embedding_model,
        api_key=endpoint.api_key,
        batch_size=similarity.batch_size,
    )
