"""The end of a run: aggregate every candidate's scores, write the report, settle the run's state.

``aggregate_results`` reads the evaluation jobs' full results (per-row scores, usage) from the
Evaluator, computes confidence intervals, latency (mean, p95) and tokens per request, compares with
the workload's earlier runs (a regression is stored on the evaluation as ``extra.regressions`` and
in the run summary), decides which candidates to surface (nothing is promoted), and upserts it all
into the results store; the ``scoring`` settings section sets the intervals and the rules.
``write_report`` renders the markdown report (also returned in its XCom). ``finalize`` fails the
run when a candidate failed, after everything has been recorded.
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
# Earlier runs read for the comparison with history.
HISTORY_RUNS = 20
# The report's markdown in the report task's XCom is cut beyond this (the staged file is whole).
MAX_REPORT_XCOM_BYTES = 32 * 1024


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


def per_request_usage(results: dict[str, Any]) -> tuple[dict[str, float | int | None], dict[str, float | int | None]]:
    """Latency and tokens per request of one evaluation: ``(latency, tokens)`` for the results store.

    ``latency`` is ``{"mean_ms", "p95_ms", "n"}`` and ``tokens`` ``{"mean_prompt", "mean_completion",
    "mean_total", "p95_total", "n"}``, computed from the per-row ``usage`` of the evaluator's rows
    (``latency_ms``, ``prompt_tokens``, ``completion_tokens``, ``total_tokens``). Rows without it are
    counted in ``rows_without_usage``; when no row has it, the task-level means
    (``usage.mean_latency_ms``...) are used and the percentiles are ``None``.
    """
    from include.flywheel.scoring import summarize_distribution

    columns: dict[str, list[float]] = {"latency_ms": [], "prompt_tokens": [], "completion_tokens": [],
                                       "total_tokens": []}
    missing = 0
    task_usage: dict[str, Any] = {}
    for task in (results.get("tasks") or {}).values():
        task_usage = task_usage or (task.get("usage") or {})
        for row in task.get("rows") or []:
            usage = row.get("usage") if isinstance(row, dict) else None
            values = {name: (usage or {}).get(name) for name in columns}
            if not all(isinstance(v, (int, float)) and not isinstance(v, bool) for v in values.values()):
                missing += 1
                continue
            for name, value in values.items():
                columns[name].append(float(value))
    if missing:
        log.warning("%d evaluation rows carry no per-request usage; latency/tokens use the other rows.", missing)
    if not columns["latency_ms"]:
        latency = {"mean_ms": task_usage.get("mean_latency_ms"), "p95_ms": None, "n": 0}
        tokens = {"mean_prompt": task_usage.get("mean_prompt_tokens"),
                  "mean_completion": task_usage.get("mean_completion_tokens"),
                  "mean_total": task_usage.get("mean_total_tokens"), "p95_total": None, "n": 0}
    else:
        stats = {name: summarize_distribution(values) for name, values in columns.items()}
        latency = {"mean_ms": round(stats["latency_ms"]["mean"], 3), "p95_ms": round(stats["latency_ms"]["p95"], 3),
                   "n": stats["latency_ms"]["n"]}
        tokens = {"mean_prompt": stats["prompt_tokens"]["mean"], "mean_completion": stats["completion_tokens"]["mean"],
                  "mean_total": stats["total_tokens"]["mean"], "p95_total": stats["total_tokens"]["p95"],
                  "n": stats["total_tokens"]["n"]}
    if missing:
        latency["rows_without_usage"] = tokens["rows_without_usage"] = missing
    return latency, tokens


def _regression_entry(comparison: Any, current: dict[str, Any], previous: dict[str, Any]) -> dict[str, Any]:
    """A flagged regression as stored: the comparison plus both runs' intervals of that score."""
    entry = comparison.as_dict()
    for side, intervals in (("current_interval", current), ("previous_interval", previous)):
        interval = intervals.get(comparison.key)
        entry[side] = interval.as_dict() if interval is not None else None
    return entry


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
    scoring_settings = settings.scoring
    leaderboard = []
    with open_result_store(settings.results) as store, EvaluatorHook(settings.nmp.nemo_conn_id) as evaluator:
        # The newest earlier runs are enough: a score is compared with the latest run that has it.
        history = [r for r in store.list_runs(workload_id, status=["completed", "completed_with_errors"],
                                              limit=HISTORY_RUNS, with_children=True)
                   if r["flywheel_run_id"] != run]
        for candidate in settings.candidates:
            group = candidate_group_id(candidate.slug)
            model = candidate.model_name
            entry: dict[str, Any] = {"model": model, "scores": {}, "intervals": {}, "failed_steps": [], "verdicts": {},
                                     "regressions": {}, "compared_with": {}}
            group_states = {tid.split(".", 1)[1]: st for tid, st in states.items() if tid.startswith(group + ".")}
            entry["failed_steps"] = sorted(step for step, state in group_states.items()
                                           if state in ("failed", "upstream_failed"))
            intervals_by_eval: dict[str, dict[str, Any]] = {}
            comparisons_by_eval: dict[str, list[Any]] = {}
            for eval_type, task_id in EVAL_TASKS.items():
                outcome = ti.xcom_pull(task_ids=f"{group}.{task_id}")
                if not outcome:
                    continue
                results = evaluator.get_results(outcome["job_id"])
                extracted = scoring.extract_scores(results, workload_type)
                intervals = extracted.intervals(
                    confidence=scoring_settings.confidence,
                    resamples=scoring_settings.resamples,
                    seed=settings.data_split.random_seed,
                )
                previous = _previous_intervals(history, model, eval_type)
                comparisons = scoring.compare_with_history(
                    intervals, previous, tolerance=scoring_settings.regression_tolerance
                )
                previous_by_run = dict(previous)
                regressions = [
                    _regression_entry(c, intervals, previous_by_run.get(c.previous_run, {}))
                    for c in comparisons if c.regression
                ]
                compared_with = sorted({c.previous_run for c in comparisons})
                latency, tokens = per_request_usage(results)
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
                    latency=latency,
                    tokens=tokens,
                    divergent_cases=_divergent_cases(results, workload_type, primary, eval_rows),
                    finished_at=datetime.now(timezone.utc),
                    # What the comparison with the workload's earlier runs found (empty: nothing dropped).
                    extra={"regressions": regressions, "compared_with": compared_with},
                )
                intervals_by_eval[eval_type] = intervals
                comparisons_by_eval[eval_type] = comparisons
                entry["scores"][eval_type] = extracted.values()
                entry["intervals"][eval_type] = {k: v.as_dict() for k, v in intervals.items()}
                entry["regressions"][eval_type] = regressions
                entry["compared_with"][eval_type] = compared_with
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
                    verdict = scoring.surface(
                        intervals_by_eval[eval_type], base, workload_type=workload_type,
                        thresholds=scoring_settings.surfacing,
                        history=comparisons_by_eval[eval_type], label=f"{model} {eval_type}",
                    )
                    entry["verdicts"][eval_type] = verdict.as_dict()
            # Candidates this run deselected are not in settings.candidates: every one here was planned.
            nim_status = "failed" if entry["failed_steps"] else "completed"
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
        regressed = [
            f"{e['model']} ({eval_type}: {', '.join(r['key'] for r in flagged)})"
            for e in leaderboard for eval_type, flagged in e["regressions"].items() if flagged
        ]
        summary = {
            "primary_score": primary,
            "confidence": scoring_settings.confidence,
            "leaderboard": leaderboard,
            "surfaced": surfaced,
            "failed": failed,
            "regressed": regressed,
            "earlier_runs": len(history),
        }
        store.update_run(run, stage="aggregate_results", summary=summary)
    for line in leaderboard_lines(leaderboard, primary, confidence=scoring_settings.confidence):
        log.info("%s", line)
    if regressed:
        log.warning("Regressions against earlier runs: %s", "; ".join(regressed))
    return {"primary_score": primary, "surfaced": surfaced, "failed": failed, "regressed": regressed}


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


def leaderboard_lines(leaderboard: list[dict[str, Any]], primary: str, *, confidence: float = 0.95) -> list[str]:
    """A fixed-width table: one row per candidate, the primary score of each evaluation."""
    header = f"{'candidate':<34} {'base':>18} {'icl':>18} {'customized':>18}  status / verdict"
    lines = [f"Leaderboard ({primary}, mean [{confidence * 100:g}% CI])", header, "-" * len(header)]
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
    """A markdown report of the run, from the results store, next to the run's staged files.

    Returns:
        ``{"uri": <report.md>, "markdown": <the report>}`` (the task's XCom: the report shows in
        the Airflow UI's XCom tab; cut at :data:`MAX_REPORT_XCOM_BYTES`).
    """
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
    # The markdown rides along in XCom so the run's report is visible in the task's XCom tab; XCom
    # stays small (a report is a few KB), and a longer one is cut there (the file keeps it whole).
    markdown = text
    if len(text.encode("utf-8")) > MAX_REPORT_XCOM_BYTES:
        markdown = text.encode("utf-8")[:MAX_REPORT_XCOM_BYTES].decode("utf-8", "ignore")
        markdown += f"\n\n... (cut at {MAX_REPORT_XCOM_BYTES} bytes; the whole report is at {target})\n"
    return {"uri": str(target), "markdown": markdown}


def render_report(settings: WorkloadSettings, run: dict[str, Any]) -> str:
    """The markdown report of a stored run: window and counts, leaderboard, verdicts, history."""
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
        confidence = summary.get("confidence", 0.95)
        lines += ["```", *leaderboard_lines(summary["leaderboard"], summary["primary_score"], confidence=confidence),
                  "```", ""]
        lines.append("Surfaced for human review (nothing is promoted automatically): "
                     + (", ".join(summary["surfaced"]) or "none"))
        if summary.get("failed"):
            lines.append(f"Failed candidates: {', '.join(summary['failed'])}")
        for entry in summary["leaderboard"]:
            for eval_type, verdict in entry["verdicts"].items():
                lines.append(f"- {entry['model']} {eval_type}: **{verdict['decision']}**: " + "; ".join(verdict["reasons"]))
        lines += ["", *compute_lines(run.get("evaluations") or []), "", *history_lines(summary)]
    else:
        lines.append("No candidate results (see the task logs).")
    return "\n".join(lines) + "\n"


def compute_lines(evaluations: list[dict[str, Any]]) -> list[str]:
    """The report's test-time compute table: latency (mean, p95) and tokens per request of each evaluation."""
    def number(value: Any, digits: int = 1) -> str:
        return f"{value:,.{digits}f}" if isinstance(value, (int, float)) and not isinstance(value, bool) else "-"

    rows = []
    for evaluation in evaluations:
        latency, tokens = evaluation.get("latency") or {}, evaluation.get("tokens") or {}
        if not latency and not tokens:
            continue
        rows.append(
            f"| {evaluation.get('model_name')} | {evaluation.get('eval_type')} | {number(latency.get('mean_ms'))} "
            f"| {number(latency.get('p95_ms'))} | {number(tokens.get('mean_prompt'), 0)} + "
            f"{number(tokens.get('mean_completion'), 0)} = {number(tokens.get('mean_total'), 0)} |"
        )
    if not rows:
        return []
    return ["## Test-time compute per request", "",
            "| candidate | evaluation | latency mean (ms) | latency p95 (ms) | tokens: prompt + completion |",
            "| --- | --- | ---: | ---: | ---: |", *rows]


def _interval_text(interval: dict[str, Any] | None, value: float) -> str:
    if not interval:
        return f"{value:.4g}"
    return f"{interval['mean']:.4g} [{interval['low']:.4g}, {interval['high']:.4g}]"


def history_lines(summary: dict[str, Any]) -> list[str]:
    """The report's "Compared with earlier runs" section: every flagged regression, or why there is none."""
    lines = ["## Compared with earlier runs", ""]
    leaderboard = summary.get("leaderboard") or []
    flagged = [
        (entry["model"], eval_type, regression)
        for entry in leaderboard
        for eval_type, regressions in (entry.get("regressions") or {}).items()
        for regression in regressions
    ]
    compared = sorted({run for entry in leaderboard for runs in (entry.get("compared_with") or {}).values()
                       for run in runs})
    if not compared:
        lines.append("No earlier completed run of this workload has these candidates' scores: nothing to compare with.")
        return lines
    for model, eval_type, regression in flagged:
        lines.append(
            f"- **REGRESSION** {model} {eval_type} `{regression['key']}`: "
            f"{_interval_text(regression.get('previous_interval'), regression['previous'])} in run "
            f"`{regression['previous_run']}` -> {_interval_text(regression.get('current_interval'), regression['current'])} "
            f"now ({regression['delta']:+.4g}, beyond both intervals)"
        )
    if not flagged:
        lines.append(f"No regression: no score dropped beyond its interval against run(s) {', '.join(f'`{r}`' for r in compared)}.")
    else:
        lines += ["", f"Compared with run(s) {', '.join(f'`{r}`' for r in compared)}; a regression holds the candidate "
                  "(see its verdict above)."]
    return lines


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
