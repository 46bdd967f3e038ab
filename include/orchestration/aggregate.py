"""The end of a run: aggregate every candidate's scores, write the report, settle the run's state.

``aggregate_results`` reads the evaluation jobs' full results (per-row scores, usage) from the
Evaluator, computes confidence intervals, compares with the workload's earlier runs, decides which
candidates to surface (nothing is promoted), and upserts it all into the results store.
``finalize`` fails the run when a candidate failed, after everything has been recorded.
"""

from __future__ import annotations

import json
import logging
from datetime import datetime, timezone
from typing import Any

from airflow.sdk.exceptions import AirflowFailException

from include.flywheel.config import WorkloadSettings
from include.orchestration.candidates import EVAL_TASKS, candidate_group_id
from include.orchestration.tasks import current_run_settings

log = logging.getLogger(__name__)

REPORT_FILE = "report.md"
# Eval cases kept per evaluation for human spot-checks.
MAX_DIVERGENT_CASES = 20


def _task_states(context: dict[str, Any]) -> dict[str, str | None]:
    ti = context["ti"]
    states = ti.get_task_states(dag_id=context["dag"].dag_id, run_ids=[context["run_id"]])
    return dict(states.get(context["run_id"], {}))


def _eval_file_rows(prepared: dict[str, Any]) -> list[dict[str, Any]]:
    """The eval set's records (to show the reference next to a divergent output)."""
    from airflow.sdk import ObjectStoragePath

    uri = prepared["datasets"]["eval"]["uri"]
    with (ObjectStoragePath(uri) / "eval_data.jsonl").open("rb") as source:
        return [json.loads(line) for line in source]


def _last_user_text(record: dict[str, Any]) -> str:
    for message in reversed(record.get("request", {}).get("messages", [])):
        if message.get("role") == "user" and isinstance(message.get("content"), str):
            return message["content"]
    return ""


def _reference(record: dict[str, Any]) -> Any:
    message = (record.get("response", {}).get("choices") or [{}])[0].get("message", {})
    return message.get("tool_calls") or message.get("content")


def _divergent_cases(
    results: dict[str, Any], workload_type: str, primary: str, eval_rows: list[dict[str, Any]]
) -> list[dict]:
    """Rows where the candidate's answer differs from the reference (its primary row score is not perfect)."""
    from include.flywheel.scoring import SCORE_RANGES

    best = SCORE_RANGES.get(primary, (0.0, 1.0))[1]
    cases = []
    for task in (results.get("tasks") or {}).values():
        for row in task.get("rows") or []:
            row_scores = _flatten_row_scores(row.get("scores") or {}, workload_type)
            value = row_scores.get(primary)
            if value is None or value >= best:
                continue
            index = row.get("index")
            record = eval_rows[index] if isinstance(index, int) and 0 <= index < len(eval_rows) else {}
            cases.append(
                {
                    "index": index,
                    "prompt": _last_user_text(record)[:2000],
                    "reference": _reference(record),
                    "output": row.get("output"),
                    "scores": row_scores,
                }
            )
            if len(cases) >= MAX_DIVERGENT_CASES:
                return cases
    return cases


def _flatten_row_scores(scores: dict[str, Any], workload_type: str) -> dict[str, float]:
    """Per-row ``{metric: {score: v}}`` -> ``{flywheel key: v}``."""
    from include.flywheel.scoring import EVALUATOR_SCORE_NAMES

    names = EVALUATOR_SCORE_NAMES[workload_type]
    flat: dict[str, float] = {}
    for metric, metric_scores in scores.items():
        items = metric_scores.items() if isinstance(metric_scores, dict) else [(metric, metric_scores)]
        for name, value in items:
            if isinstance(value, dict):
                value = value.get("value")
            if isinstance(value, (int, float)) and not isinstance(value, bool):
                flat[names.get(name, name)] = float(value)
    return flat


def aggregate_results(workload_id: str) -> dict[str, Any]:
    """Turn every candidate's evaluations into stored scores, intervals and verdicts."""
    from include.flywheel import scoring
    from include.flywheel.results import flywheel_run_id, open_result_store
    from include.nemo.hooks import EvaluatorHook

    settings, context = current_run_settings(workload_id)
    ti = context["ti"]
    dag_id, run_id = context["dag"].dag_id, context["run_id"]
    run = flywheel_run_id(dag_id, run_id)
    prepared = ti.xcom_pull(task_ids="prepare_datasets")
    if not prepared:
        raise AirflowFailException("No prepared datasets: the data tasks failed, nothing to aggregate.")
    workload_type = prepared["workload_type"]
    primary = scoring.PRIMARY_SCORE[workload_type]
    states = _task_states(context)
    eval_rows = _eval_file_rows(prepared)
    leaderboard = []
    with open_result_store(settings.results) as store, EvaluatorHook(settings.nmp.nemo_conn_id) as evaluator:
        history = [r for r in store.list_runs(workload_id, status=["completed", "completed_with_errors"], with_children=True)
                   if r["flywheel_run_id"] != run]
        for candidate in settings.candidates:
            group = candidate_group_id(candidate.slug)
            model = candidate.model_name
            entry: dict[str, Any] = {"model": model, "scores": {}, "intervals": {}, "failed_steps": [], "verdicts": {}}
            group_states = {tid.split(".", 1)[1]: st for tid, st in states.items() if tid.startswith(group + ".")}
            entry["failed_steps"] = sorted(step for step, state in group_states.items()
                                           if state in ("failed", "upstream_failed"))
            intervals_by_eval: dict[str, dict[str, Any]] = {}
            for eval_type, task_id in EVAL_TASKS.items():
                outcome = ti.xcom_pull(task_ids=f"{group}.{task_id}")
                if not outcome:
                    continue
                results = evaluator.get_results(outcome["job_id"])
                extracted = scoring.extract_scores(results, workload_type)
                intervals = extracted.intervals(seed=settings.data_split.random_seed)
                usage = next(iter((results.get("tasks") or {}).values()), {}).get("usage") or {}
                store.upsert_evaluation(
                    run,
                    model,
                    eval_type,
                    status="completed",
                    job_id=outcome["job_id"],
                    progress=100.0,
                    scores=extracted.values(),
                    ci={key: interval.as_dict() for key, interval in intervals.items()},
                    counts=extracted.counts(),
                    latency={"mean_ms": usage.get("mean_latency_ms")},
                    tokens={
                        "mean_prompt": usage.get("mean_prompt_tokens"),
                        "mean_completion": usage.get("mean_completion_tokens"),
                        "mean_total": usage.get("mean_total_tokens"),
                    },
                    divergent_cases=_divergent_cases(results, workload_type, primary, eval_rows),
                    finished_at=datetime.now(timezone.utc),
                )
                intervals_by_eval[eval_type] = intervals
                entry["scores"][eval_type] = extracted.values()
                entry["intervals"][eval_type] = {k: v.as_dict() for k, v in intervals.items()}
            customized = ti.xcom_pull(task_ids=f"{group}.customize")
            if customized:
                store.upsert_customization(
                    run, model, status="completed", job_id=customized["job_id"],
                    customized_model=customized.get("output_model"), progress=100.0,
                    epochs=settings.training.epochs,
                )
            base = intervals_by_eval.get("base-eval", {})
            for eval_type in ("icl-eval", "customized-eval"):
                if eval_type in intervals_by_eval:
                    previous = _previous_intervals(history, model, eval_type)
                    comparisons = scoring.compare_with_history(intervals_by_eval[eval_type], previous)
                    verdict = scoring.surface(
                        intervals_by_eval[eval_type], base, workload_type=workload_type,
                        history=comparisons, label=f"{model} {eval_type}",
                    )
                    entry["verdicts"][eval_type] = verdict.as_dict()
                    entry.setdefault("regressions", {})[eval_type] = [c.as_dict() for c in comparisons if c.regression]
            nim_status = "failed" if entry["failed_steps"] else ("cancelled" if not group_states.get("plan") == "success" else "completed")
            if group_states.get("plan") == "skipped":
                nim_status = "cancelled"
            nim_fields: dict[str, Any] = {"status": nim_status}
            if not entry["failed_steps"]:
                nim_fields["finished_at"] = datetime.now(timezone.utc)
            store.upsert_nim(run, model, **nim_fields)
            entry["status"] = nim_status
            leaderboard.append(entry)
        failed = [e["model"] for e in leaderboard if e["status"] == "failed"]
        surfaced = [
            f"{e['model']} ({eval_type})"
            for e in leaderboard for eval_type, v in e["verdicts"].items() if v["decision"] == "surface"
        ]
        summary = {"primary_score": primary, "leaderboard": leaderboard, "surfaced": surfaced, "failed": failed}
        store.update_run(run, stage="aggregate_results", summary=summary)
    for line in leaderboard_lines(leaderboard, primary):
        log.info("%s", line)
    return {"primary_score": primary, "surfaced": surfaced, "failed": failed}


def _previous_intervals(history: list[dict[str, Any]], model: str, eval_type: str) -> list[tuple[str, dict]]:
    """Earlier runs' intervals of this model and eval type, newest first: ``[(run id, {key: interval})]``."""
    from include.flywheel.scoring import ConfidenceInterval

    found = []
    for previous in history:
        for evaluation in previous.get("evaluations") or []:
            if evaluation.get("model_name") == model and evaluation.get("eval_type") == eval_type and evaluation.get("ci"):
                intervals = {key: ConfidenceInterval.from_mapping(value) for key, value in evaluation["ci"].items()}
                found.append((previous["run_id"], intervals))
    return found


def leaderboard_lines(leaderboard: list[dict[str, Any]], primary: str) -> list[str]:
    """A fixed-width table: one row per candidate, the primary score of each evaluation."""
    header = f"{'candidate':<34} {'base':>18} {'icl':>18} {'customized':>18}  status / verdict"
    lines = [f"Leaderboard ({primary}, mean [95% CI])", header, "-" * len(header)]
    for entry in leaderboard:
        cells = []
        for eval_type in ("base-eval", "icl-eval", "customized-eval"):
            interval = entry["intervals"].get(eval_type, {}).get(primary)
            value = entry["scores"].get(eval_type, {}).get(primary)
            if interval:
                cells.append(f"{interval['mean']:.3g} [{interval['low']:.2g},{interval['high']:.2g}]")
            elif value is not None:
                cells.append(f"{value:.3g}")
            else:
                cells.append("-")
        verdicts = ", ".join(f"{k.split('-')[0]}: {v['decision']}" for k, v in entry["verdicts"].items())
        status = entry["status"] + (f" ({', '.join(entry['failed_steps'])})" if entry["failed_steps"] else "")
        lines.append(f"{entry['model']:<34} {cells[0]:>18} {cells[1]:>18} {cells[2]:>18}  {status}; {verdicts}")
    return lines


def write_report(workload_id: str) -> dict[str, Any]:
    """A markdown report of the run, from the results store, next to the run's staged files."""
    from include.flywheel.results import flywheel_run_id, open_result_store
    from include.orchestration.staging import run_staging_dir

    settings, context = current_run_settings(workload_id)
    dag_id, run_id = context["dag"].dag_id, context["run_id"]
    with open_result_store(settings.results) as store:
        run = store.get_run(flywheel_run_id(dag_id, run_id)) or {}
    text = render_report(settings, run)
    target = run_staging_dir(settings, dag_id, run_id) / REPORT_FILE
    with target.open("wb") as sink:
        sink.write(text.encode("utf-8"))
    log.info("Run report (%s):\n%s", target, text)
    return {"uri": str(target)}


def render_report(settings: WorkloadSettings, run: dict[str, Any]) -> str:
    summary = run.get("summary") or {}
    window = run.get("log_window") or {}
    counts = (run.get("record_counts") or {}).get("preparation") or {}
    lines = [
        f"# Flywheel run `{run.get('run_id', '?')}` of workload `{settings.workload_id}`",
        "",
        f"- log window: {window.get('start', '?')} .. {window.get('end', '?')}",
        f"- workload type: {run.get('workload_type', '?')}; records read: {counts.get('read', '?')}, "
        f"eval {counts.get('eval_size', '?')}, train {counts.get('train_size', '?')}, val {counts.get('val_size', '?')}",
        "",
    ]
    if summary.get("leaderboard"):
        lines += ["```", *leaderboard_lines(summary["leaderboard"], summary["primary_score"]), "```", ""]
        lines.append("Surfaced for human review (nothing is promoted automatically): "
                     + (", ".join(summary["surfaced"]) or "none"))
        if summary.get("failed"):
            lines.append(f"Failed candidates: {', '.join(summary['failed'])}")
        for entry in summary["leaderboard"]:
            for eval_type, verdict in entry["verdicts"].items():
                lines.append(f"- {entry['model']} {eval_type}: **{verdict['decision']}**: " + "; ".join(verdict["reasons"]))
    else:
        lines.append("No candidate results (see the task logs).")
    return "\n".join(lines) + "\n"


def finalize(workload_id: str) -> dict[str, Any]:
    """Settle the run's status in the store; fail the DAG run if a candidate or a data step failed.

    A run whose every step completed updates the workload's results Asset
    (:func:`include.orchestration.factory.results_asset`) with ``extra`` = ``flywheel_run_id``,
    ``dag_id``, ``run_id``, ``workload_id``, ``status`` and ``surfaced`` (candidates surfaced for
    human review), so other DAGs can react to new results.
    """
    from include.flywheel.results import flywheel_run_id, open_result_store

    settings, context = current_run_settings(workload_id)
    dag_id, run_id = context["dag"].dag_id, context["run_id"]
    states = _task_states(context)
    failed_tasks = sorted(t for t, s in states.items() if s in ("failed", "upstream_failed") and t != "finalize")
    failed_candidates = sorted({t.split(".", 1)[0] for t in failed_tasks if t.startswith("candidate__")})
    data_failed = [t for t in failed_tasks if not t.startswith("candidate__")]
    if data_failed:
        status = "failed"
    elif failed_candidates:
        status = "completed_with_errors"
    else:
        status = "completed"
    run = flywheel_run_id(dag_id, run_id)
    with open_result_store(settings.results) as store:
        stored = store.update_run(
            run,
            status=status,
            stage="finalize",
            error=(f"failed tasks: {', '.join(failed_tasks)}" if failed_tasks else None),
        )
    if failed_tasks:
        # A failed task emits no Asset event: consumers only ever see runs that completed.
        raise AirflowFailException(
            f"Run finished as {status}: failed tasks {failed_tasks}. Results of the other candidates are recorded."
        )
    surfaced = list((stored.get("summary") or {}).get("surfaced") or [])
    # Small and JSON-only: a consumer reads the details from the results store by flywheel_run_id.
    results_event = {
        "flywheel_run_id": run,
        "dag_id": dag_id,
        "run_id": run_id,
        "workload_id": workload_id,
        "status": status,
        "surfaced": surfaced,
    }
    from include.orchestration.factory import results_asset

    context["outlet_events"][results_asset(workload_id)].extra = results_event
    log.info("Run completed: every candidate finished. Surfaced for review: %s.", surfaced or "none")
    return {"status": status, "surfaced": surfaced}
