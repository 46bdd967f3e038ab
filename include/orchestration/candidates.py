"""Task bodies around the NeMo steps: plan a candidate's payloads, record failures, aggregate, report.

The NeMo work itself is done by the provider-style operators in ``include.nemo``; these tasks
turn the run's settings into their payloads and turn their results into the results store's
documents. Every write is an upsert keyed by run and step, so retries do not duplicate.
"""

from __future__ import annotations

import logging
from typing import Any

from airflow.sdk import get_current_context
from airflow.sdk.exceptions import AirflowFailException, AirflowSkipException

from include.flywheel.config import WorkloadSettings
from include.orchestration.plan import datasets_by_kind, find_candidate, plan_candidate
from include.orchestration.tasks import current_run_settings, fail_without_retry_on_bad_input

log = logging.getLogger(__name__)

# Task ids inside a candidate's group, in the order they run.
CANDIDATE_STEPS = ("plan", "deploy_nim", "base_eval", "icl_eval", "customize", "wait_model_synced",
                   "customized_eval", "shutdown_nim")
EVAL_TASKS = {"base-eval": "base_eval", "icl-eval": "icl_eval", "customized-eval": "customized_eval"}


def candidate_group_id(slug: str) -> str:
    return f"candidate__{slug}"


def judge_base_url(settings: WorkloadSettings) -> str:
    """Where the evaluator reaches the judge: its own Connection (remote) or the NIM proxy (local)."""
    from include.nemo.hooks import NimHook

    conn_id = settings.judge.conn_id if settings.judge.type == "remote" else settings.nmp.nim_conn_id
    return NimHook(conn_id).base_url


def plan_candidate_task(workload_id: str, model_name: str) -> dict[str, Any]:
    """Compute one candidate's payloads for this run; skip the group if the run deselected it."""
    from include.nemo.hooks import NimHook

    with fail_without_retry_on_bad_input():
        settings, context = current_run_settings(workload_id)
    candidate = find_candidate(settings, model_name)
    if candidate is None:
        raise AirflowSkipException(f"{model_name} is not among this run's candidates; skipping its group.")
    ti = context["ti"]
    prepared = ti.xcom_pull(task_ids="prepare_datasets")
    uploaded = ti.xcom_pull(task_ids="upload_datasets")
    if not prepared or not uploaded:
        raise AirflowFailException("The prepared and uploaded dataset handles are missing from XCom.")
    plan = plan_candidate(
        settings,
        candidate,
        dag_id=context["dag"].dag_id,
        run_id=context["run_id"],
        datasets=datasets_by_kind(list(uploaded)),
        workload_type=prepared["workload_type"],
        nim_base_url=NimHook(settings.nmp.nim_conn_id).base_url,
        judge_base_url=judge_base_url(settings),
    )
    _store_step(settings, context, model_name, nim={"status": "deploying-nim", "deployment_name": plan["deployment"]["name"]})
    log.info(
        "Planned %s: deployment %s, customization %s.",
        model_name,
        plan["deployment"]["name"],
        plan["output_model"] or "disabled",
    )
    return flatten_plan(plan)


def flatten_plan(plan: dict[str, Any]) -> dict[str, Any]:
    """One top-level key per operator argument, so each is its own XCom (``plan["base_eval_job"]``)."""
    flat = {"model": plan["model"], "deployment": plan["deployment"], "output_model": plan["output_model"]}
    for step in ("base_eval", "icl_eval", "customized_eval"):
        flat[f"{step}_job"] = (plan[step] or {}).get("job")
        flat[f"{step}_label"] = (plan[step] or {}).get("label")
    flat["customization_config"] = (plan["customization"] or {}).get("config")
    flat["customization_job"] = (plan["customization"] or {}).get("job")
    return flat


def _store_step(settings: WorkloadSettings, context: dict[str, Any], model_name: str, **documents: dict) -> None:
    """Write a candidate's step documents as they happen (a failed run still shows how far it got)."""
    from include.flywheel.results import flywheel_run_id, open_result_store

    run = flywheel_run_id(context["dag"].dag_id, context["run_id"])
    with open_result_store(settings.results) as store:
        if "nim" in documents:
            store.upsert_nim(run, model_name, **documents["nim"])
        if "customization" in documents:
            store.upsert_customization(run, model_name, **documents["customization"])
        for eval_type, fields in (documents.get("evaluations") or {}).items():
            store.upsert_evaluation(run, model_name, eval_type, **fields)


def candidate_failure_recorder(workload_id: str, model_name: str):
    """The on_failure_callback of a candidate's tasks: it records which step failed and why."""

    def record_candidate_failure(context: dict[str, Any]) -> None:
        _record_candidate_failure(context, workload_id, model_name)

    return record_candidate_failure


def _record_candidate_failure(context: dict[str, Any], workload_id: str, model_name: str) -> None:
    from datetime import datetime, timezone

    task = context["task"]
    step = task.task_id.split(".")[-1]
    error = f"{step}: {context.get('exception')}"
    try:
        settings, _ = current_run_settings(workload_id, context)
        now = datetime.now(timezone.utc)
        documents: dict[str, Any] = {"nim": {"status": "failed", "error": error, "finished_at": now}}
        eval_type = {v: k for k, v in EVAL_TASKS.items()}.get(step)
        if eval_type:
            documents["evaluations"] = {eval_type: {"status": "failed", "error": error}}
        if step in ("customize", "wait_model_synced"):
            documents["customization"] = {"status": "failed", "error": error}
        _store_step(settings, context, model_name, **documents)
    except Exception:  # noqa: BLE001 - a callback must never hide the task's own failure
        log.exception("Could not record the failure of %s in the results store.", task.task_id)


def candidate_success_recorder(workload_id: str, model_name: str):
    """The on_success_callback of a candidate's NeMo steps: it records what the step produced, at once.

    ``deploy_nim`` -> the NIM is ``running-evals`` on its deployment; ``base_eval`` / ``icl_eval`` /
    ``customized_eval`` -> the evaluation is ``completed`` with its job id, summary scores and mean
    usage; ``customize`` -> the customization is ``completed`` with its job id and customized model.
    So a run that fails or is cancelled later still shows every step that finished.
    ``aggregate_results`` upserts the same documents again with intervals, p95 latency, divergent
    cases and the comparison with earlier runs (upserts are idempotent).

    The step's output is its return value, read back from XCom: Airflow pushes a task's return
    value before it runs the success callback, in the same process.
    """

    def record_candidate_success(context: dict[str, Any]) -> None:
        _record_candidate_success(context, workload_id, model_name)

    return record_candidate_success


def _aware_timestamp(value: Any):
    """A job's ``created_at``/``updated_at`` as a tz-aware datetime, or None (a naive or unknown one is skipped)."""
    from datetime import datetime

    if not isinstance(value, str) or not value:
        return None
    try:
        parsed = datetime.fromisoformat(value.replace("Z", "+00:00"))
    except ValueError:
        return None
    return parsed if parsed.tzinfo is not None else None


def step_documents(
    step: str, output: dict[str, Any], *, workload_type: str | None, epochs: int | None
) -> dict[str, Any]:
    """The results-store documents one finished candidate step writes (``_store_step`` keywords).

    Args:
        step: The task id inside the candidate's group (``deploy_nim``, ``base_eval``, ``customize``...).
        output: The step operator's return value (its XCom).
        workload_type: ``generic`` / ``tool_calling`` (maps evaluator score names to flywheel keys);
            None leaves the scores to ``aggregate_results``.
        epochs: The run's training epochs (recorded on the customization).

    Returns:
        ``{}`` for a step that records nothing, else ``{"nim": {...}}``, ``{"evaluations": {eval_type:
        {...}}}`` or ``{"customization": {...}}``.
    """
    from datetime import datetime, timezone

    eval_type = {v: k for k, v in EVAL_TASKS.items()}.get(step)
    if step == "deploy_nim":
        return {"nim": {"status": "running-evals", "deployment_name": output.get("name"), "deployment_status": "ready"}}
    if eval_type:
        fields: dict[str, Any] = {"status": "completed", "job_id": output.get("job_id"), "progress": 100.0}
        if workload_type:
            from include.flywheel.scoring import extract_scores

            fields["scores"] = extract_scores(output.get("results") or {}, workload_type).values()
        usage = next(iter((output.get("usage") or {}).values()), None) or {}
        if usage:
            fields["latency"] = {"mean_ms": usage.get("mean_latency_ms")}
            fields["tokens"] = {
                "mean_prompt": usage.get("mean_prompt_tokens"),
                "mean_completion": usage.get("mean_completion_tokens"),
                "mean_total": usage.get("mean_total_tokens"),
            }
        started, finished = _aware_timestamp(output.get("started_at")), _aware_timestamp(output.get("finished_at"))
        if started is not None and finished is not None and finished >= started:
            fields["started_at"], fields["finished_at"] = started, finished
        else:
            fields["finished_at"] = datetime.now(timezone.utc)
        return {"evaluations": {eval_type: fields}}
    if step == "customize":
        return {
            "customization": {
                "status": "completed",
                "job_id": output.get("job_id"),
                "customized_model": output.get("output_model"),
                "progress": 100.0,
                "epochs": epochs,
            }
        }
    return {}


def _record_candidate_success(context: dict[str, Any], workload_id: str, model_name: str) -> None:
    task = context["task"]
    step = task.task_id.split(".")[-1]
    try:
        ti = context["ti"]
        output = ti.xcom_pull(task_ids=task.task_id)
        if not isinstance(output, dict):
            log.warning("%s returned no result to record (%r); aggregate_results will record it.", task.task_id, output)
            return
        settings, _ = current_run_settings(workload_id, context)
        prepared = ti.xcom_pull(task_ids="prepare_datasets") or {}
        documents = step_documents(
            step, output, workload_type=prepared.get("workload_type"), epochs=settings.training.epochs
        )
        if documents:
            _store_step(settings, context, model_name, **documents)
            log.info("Recorded %s of %s in the results store.", step, model_name)
    except Exception:  # noqa: BLE001 - recording must never fail a step that succeeded
        log.exception("Could not record the success of %s in the results store.", task.task_id)
